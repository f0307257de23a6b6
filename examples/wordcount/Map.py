# WordCount mapper: called once per input line (without its line ending).
def map(line):
    for word in line.split():
        yield word, 1
