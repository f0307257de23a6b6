"""Writes graph.txt: 300 pages, each linking to 1 to 6 others (none
without links), one line per page as every step reads and writes it:
`page<TAB>[rank, [pages it links to]]`, each rank 1/300 to start."""
import json, os, random

r = random.Random(11)
pages = ["p%03d" % i for i in range(300)]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "graph.txt"), "w") as f:
    for p in pages:
        # A few popular pages, so the ranks differ.
        links = sorted(set(r.choice(pages[:20] if r.random() < 0.4 else pages) for _ in range(r.randint(1, 6))) - {p})
        if not links:
            links = [pages[(pages.index(p) + 1) % len(pages)]]
        f.write("%s\t%s\n" % (p, json.dumps([1 / len(pages), links])))
