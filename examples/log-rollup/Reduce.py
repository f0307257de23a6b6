def combine(status, values):
    requests = size = 0
    for n, b in values:
        requests += n
        size += b
    yield status, [requests, size]


def reduce(status, values):
    for _, (requests, size) in combine(status, values):
        yield status, {"requests": requests, "bytes": size}
