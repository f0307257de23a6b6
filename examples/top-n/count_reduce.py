def reduce(word, counts):
    yield word, sum(counts)
