"""PageRank by plain power iteration, stopping as driver.py does: the
number of steps and the ranks as JSON."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
links, ranks = {}, {}
for line in open(os.path.join(root, "graph.txt")):
    page, value = line.rstrip("\n").split("\t", 1)
    ranks[page], links[page] = json.loads(value)
n, d = len(ranks), 0.85


def step(ranks):
    got = dict.fromkeys(ranks, 0.0)
    for page, outs in links.items():
        for target in outs:
            got[target] += ranks[page] / len(outs)
    return {p: (1 - d) / n + d * got[p] for p in ranks}


ranks, steps = step(ranks), 1
while steps < 50:
    new = step(ranks)
    steps += 1
    moved = max(abs(new[p] - ranks[p]) for p in new)
    ranks = new
    if moved <= 1e-6:
        break
print(json.dumps({"steps": steps, "ranks": ranks}, sort_keys=True))
