"""The job's answer in plain Python: rank, word and count of the N most
frequent words, ties by word."""
import collections, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
c = collections.Counter()
for line in open(os.path.join(root, "data.dat"), encoding="utf-8", errors="surrogateescape"):
    c.update(line.split())
top = sorted(c.items(), key=lambda wc: (-wc[1], wc[0]))[:10]
out = sys.stdout.buffer
for rank, (word, count) in enumerate(top, 1):
    out.write(("%d\t%s %d\n" % (rank, word, count)).encode("utf-8", "surrogateescape"))
