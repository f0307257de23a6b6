# WordCount reducer: called once per word with all its counts.
# With `combiner = true` it also runs on each map's output (there is no
# separate `combine` function here, so `reduce` serves as the combiner).
def reduce(key, values):
    yield key, sum(values)
