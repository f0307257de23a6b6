# Sums per centroid in the combiner; the reducer turns them into the new
# centroid and the number of points it holds.


def combine(key, values):
    sx = sy = n = 0
    for x, y, count in values:
        sx, sy, n = sx + x, sy + y, n + count
    yield key, [sx, sy, n]


def reduce(key, values):
    for _, (sx, sy, n) in combine(key, values):
        yield key, [sx / n, sy / n, n]
