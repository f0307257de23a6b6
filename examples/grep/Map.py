import ipdc
import re

PATTERN = re.compile(ipdc.params["pattern"])


def map(line):
    if PATTERN.search(line):
        ipdc.counter("matched")
        yield line  # a single value: written as the line itself
