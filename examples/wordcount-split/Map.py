from collections import Counter

import ipdc
from textutil import load_words

STOP = load_words("stopwords.txt")  # a side file, beside this one on every agent


def map_split(lines):
    counts = Counter()
    for line in lines:
        counts.update(line.split())
    for word, n in counts.items():
        if word.lower() in STOP:
            ipdc.counter("stop_words", n)
        else:
            yield word, n
