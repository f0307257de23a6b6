# One k-means step: each point goes to its nearest centroid. The centroids
# come with the job as a parameter (--param centroids=[[x, y], ...]).
import ipdc

CENTROIDS = ipdc.params["centroids"]


def map(line):
    x, y = (int(v) for v in line.split(","))
    best = min(range(len(CENTROIDS)), key=lambda i: (x - CENTROIDS[i][0]) ** 2 + (y - CENTROIDS[i][1]) ** 2)
    yield best, [x, y, 1]
