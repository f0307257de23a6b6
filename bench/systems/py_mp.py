"""Ideal parallel Python: multiprocessing, N processes (default 2), each
counting the lines that start in its byte range of the file (Hadoop's rule),
then one merge of the Counters.

    py_mp.py INPUT OUT_DIR [N]      writes OUT_DIR/counts.tsv
"""
import collections
import multiprocessing
import os
import sys


def count(args):
    path, start, end = args
    c = collections.Counter()
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            f.readline()  # the line that started before `start` belongs to the previous range
        pos = f.tell()
        lines = []
        while pos < end:
            line = f.readline()
            if not line:
                break
            pos += len(line)
            lines.append(line)
            if len(lines) >= 10000:
                c.update(w for l in lines for w in l.decode("utf-8", "surrogateescape").split())
                lines = []
        c.update(w for l in lines for w in l.decode("utf-8", "surrogateescape").split())
    return c


def main(inp, out_dir, n):
    size = os.path.getsize(inp)
    ranges = [(inp, size * i // n, size * (i + 1) // n) for i in range(n)]
    with multiprocessing.Pool(n) as pool:
        parts = pool.map(count, ranges)
    total = parts[0]
    for p in parts[1:]:
        total.update(p)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "counts.tsv"), "w", encoding="utf-8", errors="surrogateescape") as o:
        o.writelines("%s\t%d\n" % wc for wc in total.items())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
