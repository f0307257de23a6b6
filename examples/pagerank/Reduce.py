# The new rank of a page from what links to it; its line has the same shape
# as the input's, so the next step reads this step's output (--input-cid).
import ipdc

D = ipdc.params["damping"]
N = ipdc.params["pages"]


def reduce(page, values):
    links, total = [], 0.0
    for kind, v in values:
        if kind == "links":
            links = v
        else:
            total += v
    yield page, [(1 - D) / N + D * total, links]
