"""Reference: one Python process, collections.Counter over line.split().

    py_counter.py INPUT OUT_DIR      writes OUT_DIR/counts.tsv (word<TAB>count)
"""
import collections
import os
import sys


def main(inp, out_dir):
    with open(inp, encoding="utf-8", errors="surrogateescape") as f:
        c = collections.Counter(w for line in f for w in line.split())
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "counts.tsv"), "w", encoding="utf-8", errors="surrogateescape") as o:
        o.writelines("%s\t%d\n" % wc for wc in c.items())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
