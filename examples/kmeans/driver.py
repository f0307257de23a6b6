"""k-means over IPDC: runs the one-step job in this folder again and again,
each time with the centroids of the last, until they stop moving.

    python3 driver.py [--ipdc COMMAND] [--max-steps N] -- ARGS...

ARGS go to `ipdc-submit run` (e.g. `--local 2`, or `--broker ... --ipfs
...`). It reads the job's JSON lines (`ipdc-submit run --json`), prints
one line per step on stderr, and the final centroids as JSON on stdout.
"""
import argparse, json, os, shlex, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
INITIAL = [[100, 100], [500, 500], [900, 100]]  # as in ipdc.toml


def step(ipdc, centroids, out, args):
    cmd = shlex.split(ipdc) + ["run", HERE, "--json", "--overwrite", "--out", out,
                               "--param", "centroids=" + json.dumps(centroids)] + args
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, universal_newlines=True)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    last = events[-1] if events else {"event": "failed", "error": "no output"}
    if proc.returncode != 0 or last["event"] != "done":
        sys.exit("step failed: %s" % last.get("error", last))
    new = [None] * len(centroids)
    names = sorted(p["name"] for p in last["summary"]["parts"])
    for name in names:
        for line in open(os.path.join(out, name)):
            key, value = line.rstrip("\n").split("\t")
            x, y, _n = json.loads(value)
            new[int(key)] = [x, y]
    # A centroid that lost all its points stays where it was.
    return [c if n is None else n for c, n in zip(centroids, new)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ipdc", default="ipdc-submit", help="how to run ipdc-submit")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(HERE, "output"))
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.args if x != "--"]
    centroids = INITIAL
    for n in range(1, a.max_steps + 1):
        new = step(a.ipdc, centroids, a.out, args)
        moved = max(abs(p - q) for c, d in zip(centroids, new) for p, q in zip(c, d))
        print("step %d: moved %.6f" % (n, moved), file=sys.stderr)
        centroids = new
        if moved == 0:
            break
    print(json.dumps({"steps": n, "centroids": centroids}))


if __name__ == "__main__":
    main()
