#!/usr/bin/env python3
"""The task cache, measured: a WordCount job (Python, no combiner, 2 reducers)
under `--local 2` on one corpus, run as a user would re-run it.

    python3 bench/task_cache.py [--size 64M] [--runs 3]

Each round, with a fresh cache folder (so a fresh kept store and index):

1. first run (nothing cached);
2. the same job again (every task cached);
3. Reduce.py edited (a comment added: a new CID, the same output): only
   the reduces run;
4. the same job with --no-cache (everything runs).

Rounds interleave the four so a shared machine's drift falls on all alike.
It checks that every run's parts are byte for byte the first run's and
prints a table of median wall times and their ratio to the first run. It
uses target/release/ipdc-submit (build it first: cargo build --release).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMIT = ROOT / "target" / "release" / "ipdc-submit"


def corpus(size: str) -> Path:
    data = ROOT / "bench" / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"cache-corpus-{size}.txt"
    if not path.exists():
        with open(path.with_suffix(".tmp"), "wb") as f:
            subprocess.run([sys.executable, ROOT / "tests" / "corpus.py", size, "--seed", "1"], stdout=f, check=True)
        path.with_suffix(".tmp").rename(path)
    return path


def parts(out: Path) -> list:
    return sorted((p.name, p.read_bytes()) for p in out.iterdir() if p.name.startswith("part-"))


def run(job: Path, out: Path, cache: Path, extra: list) -> tuple:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), RUST_LOG="warn")
    cmd = [SUBMIT, "run", "--local", "2", job, "--out", out, "--overwrite", *extra]
    t = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}{p.stderr}")
    import json

    summary = json.loads((out / "summary.json").read_text())
    return wall, summary["cached_tasks"], summary["map_tasks"] + summary["reduce_tasks"], parts(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="64M")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not SUBMIT.exists():
        sys.exit(f"{SUBMIT} is missing: run cargo build --release first")
    data = corpus(a.size)
    work = Path(tempfile.mkdtemp(prefix="ipdc-cache-bench-"))
    job = work / "job"
    job.mkdir()
    for f in ["Map.py", "Reduce.py"]:
        shutil.copy(ROOT / "examples" / "wordcount" / f, job / f)
    (job / "ipdc.toml").write_text(f'name = "cachebench"\ninput = "{data}"\nreducers = 2\ncombiner = false\n')
    reduce_py = (job / "Reduce.py").read_text()
    rows = {"first run": [], "unchanged": [], "Reduce.py edited": [], "--no-cache": []}
    cached = {}
    reference = None
    for r in range(a.runs):
        cache = work / f"cache-{r}"
        (job / "Reduce.py").write_text(reduce_py)
        plan = [
            ("first run", []),
            ("unchanged", []),
            ("Reduce.py edited", None),
            ("--no-cache", ["--no-cache"]),
        ]
        for name, extra in plan:
            if extra is None:
                (job / "Reduce.py").write_text(reduce_py + f"# edited {r}\n")
                extra = []
            wall, n_cached, n_all, got = run(job, work / "out", cache, extra)
            if reference is None:
                reference = got
            elif got != reference:
                sys.exit(f"{name}: the parts differ from the first run's")
            rows[name].append(wall)
            cached[name] = f"{n_cached} of {n_all}"
        shutil.rmtree(cache)
    first = statistics.median(rows["first run"])
    print(f"\nTask cache, WordCount (Python, no combiner, 2 reducers), {a.size}, --local 2, medians of {a.runs}\n")
    print("| run | wall time | vs first run | tasks from the cache |")
    print("|---|---|---|---|")
    for name, walls in rows.items():
        m = statistics.median(walls)
        print(f"| {name} | {m:.2f} s | {m / first:.2f} | {cached[name]} |")
    print("\nEvery run's parts were byte for byte the first run's.")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
