"""PageRank over IPDC: runs the one-step job in this folder, then again on
its own output by CID (`--input-cid`), until no rank moves by more than
--tolerance.

    python3 driver.py [--ipdc COMMAND] [--tolerance T] [--max-steps N] -- ARGS...

ARGS go to `ipdc-submit run` (e.g. `--local 2`). Prints one line per step
on stderr and the final ranks as JSON on stdout.
"""
import argparse, json, os, shlex, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(ipdc, out, args):
    cmd = shlex.split(ipdc) + ["run", HERE, "--json", "--overwrite", "--out", out] + args
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, universal_newlines=True)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    last = events[-1] if events else {"event": "failed", "error": "no output"}
    if proc.returncode != 0 or last["event"] != "done" or not last["output_cid"]:
        sys.exit("step failed: %s" % last.get("error", last))
    ranks = {}
    for part in last["summary"]["parts"]:
        for line in open(os.path.join(out, part["name"])):
            page, value = line.rstrip("\n").split("\t", 1)
            ranks[page] = json.loads(value)[0]
    return last["output_cid"], ranks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ipdc", default="ipdc-submit", help="how to run ipdc-submit")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--out", default=os.path.join(HERE, "output"))
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.args if x != "--"]
    cid, ranks = run(a.ipdc, a.out, args)
    steps = 1
    while steps < a.max_steps:
        cid, new = run(a.ipdc, a.out, args + ["--input-cid", cid])
        steps += 1
        moved = max(abs(new[p] - ranks[p]) for p in new)
        print("step %d: moved %.3g" % (steps, moved), file=sys.stderr)
        ranks = new
        if moved <= a.tolerance:
            break
    print(json.dumps({"steps": steps, "ranks": ranks}, sort_keys=True))


if __name__ == "__main__":
    main()
