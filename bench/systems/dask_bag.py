"""Dask bag on 2 worker processes: read_text -> str.split -> frequencies.

    dask_bag.py INPUT OUT_DIR      writes OUT_DIR/*.part (word<TAB>count)
"""
import sys

import dask
import dask.bag as db

if __name__ == "__main__":
    dask.config.set(scheduler="processes", num_workers=2)
    (
        db.read_text(sys.argv[1], blocksize="32MiB", encoding="utf-8", errors="surrogateescape")
        .map(str.split)
        .flatten()
        .frequencies(split_every=8)
        .map(lambda wc: "%s\t%d" % wc)
        .to_textfiles(sys.argv[2] + "/*.part", encoding="utf-8", errors="surrogateescape")
    )
