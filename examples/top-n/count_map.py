def map(line):
    for word in line.split():
        yield word, 1
