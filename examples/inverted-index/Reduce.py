def reduce(word, docs):
    yield word, sorted(set(docs))
