"""The job's answer in plain Python, then `#counters`."""
import json, os, sys
from collections import Counter

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
stop = {w.strip() for w in open(os.path.join(root, "stopwords.txt")) if w.strip()}
counts = Counter()
for line in open(os.path.join(root, "data.dat"), encoding="utf-8"):
    counts.update(line.split())
for word in sorted(counts):
    if word.lower() not in stop:
        print("%s\t%d" % (word, counts[word]))
print("#counters\t" + json.dumps({"stop_words": sum(n for w, n in counts.items() if w.lower() in stop)}))
