import ipdc
from fileinfo import describe


def map(name, data):
    # Called once per whole file (input_format = "files"), data as bytes.
    kind, facts = describe(name, data)
    if kind == "broken":
        ipdc.counter("broken_images")
    yield kind, facts
