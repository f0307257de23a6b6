# The N most frequent words, ties by word; the combiner keeps each map's N best.
import heapq

import ipdc

N = ipdc.params["n"]


def best(values):
    return heapq.nsmallest(N, values, key=lambda cw: (-cw[0], cw[1]))


def combine(key, values):
    for pair in best(values):
        yield key, pair


def reduce(key, values):
    for rank, (count, word) in enumerate(best(values), 1):
        yield rank, "%s %d" % (word, count)
