"""k-means in plain Python, the same steps as driver.py: the final
centroids as JSON."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
folder = os.path.join(root, "points")
points = [tuple(int(v) for v in l.split(",")) for f in sorted(os.listdir(folder)) for l in open(os.path.join(folder, f))]
centroids = [[100, 100], [500, 500], [900, 100]]
for n in range(1, 31):
    sums = [[0, 0, 0] for _ in centroids]
    for x, y in points:
        best = min(range(len(centroids)), key=lambda i: (x - centroids[i][0]) ** 2 + (y - centroids[i][1]) ** 2)
        s = sums[best]
        s[0], s[1], s[2] = s[0] + x, s[1] + y, s[2] + 1
    new = [c if s[2] == 0 else [s[0] / s[2], s[1] / s[2]] for c, s in zip(centroids, sums)]
    moved = max(abs(p - q) for c, d in zip(centroids, new) for p, q in zip(c, d))
    centroids = new
    if moved == 0:
        break
print(json.dumps({"steps": n, "centroids": centroids}))
