import ipdc


def map(line):
    fields = line.split()
    if len(fields) < 10 or not fields[8].isdigit():
        ipdc.counter("bad_rows")
        return
    status, size = fields[8], int(fields[9])
    yield status, [1, size]
