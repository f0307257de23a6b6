import ipdc


def map(line):
    doc = ipdc.input_file()  # e.g. "docs/more/gamma.txt"
    for word in line.split():
        yield word.lower(), doc
