"""Writes points/{a,b,c}.csv: 6000 points with integer coordinates around three
centres (integers keep every sum exact, so the distributed job and the
plain-Python reference compute the very same centroids)."""
import os, random

r = random.Random(7)
centres = [(200, 250), (700, 300), (450, 800)]
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "points"), exist_ok=True)
for name in "abc":
    with open(os.path.join(here, "points", name + ".csv"), "w") as f:
        for i in range(2000):
            cx, cy = centres[i % 3]
            f.write("%d,%d\n" % (round(r.gauss(cx, 90)), round(r.gauss(cy, 90))))
