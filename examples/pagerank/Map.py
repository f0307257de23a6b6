# One PageRank step: each page sends its rank, shared out, to the pages it
# links to, and passes its links on to itself.
import json


def map(line):
    page, value = line.split("\t", 1)
    rank, links = json.loads(value)
    yield page, ["links", links]
    for target in links:
        yield target, ["rank", rank / len(links)]
