#!/usr/bin/env python3
"""The swarm path, measured: one WordCount job (native, 2 reducers) on the
same corpus with three agents

1. `one peer`: all agents and the submitter on one shared IPFS peer (as the
   tests did before the swarm harness): nothing moves between nodes;
2. `swarm`: every agent on its own peer and the submitter on a fourth, the
   peers joined on loopback: the input, map outputs and parts move over
   bitswap;
3. `swarm, 100 Mbit/s links` (root and `ip netns` only; `--no-cap` skips
   it): the same four peers, each in a network namespace of its own behind
   a veth pair on one bridge, every link shaped with `tc tbf` to
   `--rate` each way: a drawer of boards on one switch.

    python3 bench/swarm.py [--size 64M] [--runs 3] [--rate 100mbit]

The peers are the tests' js-ipfs (tests/ipfs-peer/peer.sh), the broker
Debian's Mosquitto; it uses target/release/ipdc-submit and ipdc-agent
(build them first: cargo build --release). Runs interleave the setups, a
fresh cluster for each run, so each input starts on the submitter's node
only. For each run it checks the counts against Python's and measures

- wall time of `ipdc-submit run`;
- bytes moved between nodes: of the blocks the nodes hold after the job
  and not before, by size, every copy but the first (a block is made on one
  node, the others fetched it; js-ipfs keeps no bitswap counters); and the
  least to move, each split once, each map output once and each part once
  (a map output a reducer finds on its own node moves less);
- with links shaped: the bytes over the busiest link (veth counters, both
  ways) and the time that link needs for them at `--rate`.

It prints a table of medians with ratios to the one-peer run.
"""
import argparse
import collections
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_SH = ROOT / "tests" / "ipfs-peer" / "peer.sh"
SUBMIT = ROOT / "target" / "release" / "ipdc-submit"
AGENT = ROOT / "target" / "release" / "ipdc-agent"
JOB = ROOT / "examples" / "wordcount"
BRIDGE, SUBNET = "ipdcbench0", "10.77.0"
AGENTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, ns=None, **kw):
    cmd = [str(c) for c in cmd]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Peer:
    """A js-ipfs peer with its repo in `dir`, in namespace `ns` (or none)."""

    def __init__(self, dir: Path, ns=None, host="127.0.0.1"):
        self.dir, self.ns = dir, ns
        port = free_port() if ns is None else 5001
        env = dict(os.environ, SWARM_HOST=host, SWARM_PORT=str(free_port() if ns is None else 4001))
        out = sh([PEER_SH, "start", dir, port], ns=ns, env=env)
        facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.api, self.swarm = facts["API"], facts["SWARM"]

    def call(self, path: str) -> str:
        return sh(["curl", "-sS", "-X", "POST", f"{self.api}/api/v0/{path}"], ns=self.ns)

    def blocks(self) -> set:
        return {json.loads(line)["Ref"] for line in self.call("refs/local").splitlines() if line}

    def size(self, key: str) -> int:
        return json.loads(self.call(f"block/stat?arg={key}"))["Size"]

    def stop(self):
        subprocess.run([PEER_SH, "stop", self.dir], capture_output=True)


class Namespaces:
    """One namespace per node behind a veth pair on one bridge, each link
    shaped to `rate` both ways; the broker listens on the bridge."""

    def __init__(self, n: int, rate: str):
        self.names = [f"ipdcb{i}" for i in range(n)]
        self.host = f"{SUBNET}.1"
        self.teardown()
        sh(["ip", "link", "add", BRIDGE, "type", "bridge"])
        sh(["ip", "addr", "add", f"{self.host}/24", "dev", BRIDGE])
        sh(["ip", "link", "set", BRIDGE, "up"])
        # Docker's FORWARD policy (DROP) would drop bridged traffic.
        if shutil.which("iptables"):
            subprocess.run(["iptables", "-I", "FORWARD", "-i", BRIDGE, "-j", "ACCEPT"], capture_output=True)
        shape = ["root", "tbf", "rate", rate, "burst", "64kb", "latency", "50ms"]
        for i, ns in enumerate(self.names):
            sh(["ip", "netns", "add", ns])
            sh(["ip", "link", "add", f"v{ns}", "type", "veth", "peer", "name", "eth0", "netns", ns])
            sh(["ip", "link", "set", f"v{ns}", "master", BRIDGE, "up"])
            sh(["ip", "addr", "add", f"{self.addr(i)}/24", "dev", "eth0"], ns=ns)
            sh(["ip", "link", "set", "eth0", "up"], ns=ns)
            sh(["ip", "link", "set", "lo", "up"], ns=ns)
            sh(["tc", "qdisc", "add", "dev", f"v{ns}", *shape])
            sh(["tc", "qdisc", "add", "dev", "eth0", *shape], ns=ns)

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{10 + i}"

    def link_bytes(self) -> list:
        """Bytes each node's link carried so far, both ways."""
        stats = Path("/sys/class/net")
        return [
            sum(int((stats / f"v{ns}" / "statistics" / f).read_text()) for f in ("rx_bytes", "tx_bytes"))
            for ns in self.names
        ]

    def teardown(self):
        for i in range(8):
            subprocess.run(["ip", "netns", "del", f"ipdcb{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        if shutil.which("iptables"):
            subprocess.run(["iptables", "-D", "FORWARD", "-i", BRIDGE, "-j", "ACCEPT"], capture_output=True)


def can_shape() -> str:
    """Why links cannot be shaped here, or '' when they can."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("tc") or not shutil.which("ip"):
        return "no tc or ip (Debian's iproute2)"
    p = subprocess.run(["ip", "netns", "add", "ipdcb-probe"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"ip netns: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "ipdcb-probe"], capture_output=True)
    return ""


class Cluster:
    """A broker, the peers and three agents (2 slots each) for one setup."""

    def __init__(self, setup: str, tmp: Path, rate: str):
        self.tmp, self.procs, self.peers, self.nets = tmp, [], [], None
        shaped = setup == "shaped"
        if shaped:
            self.nets = Namespaces(AGENTS + 1, rate)
        host = self.nets.host if shaped else "127.0.0.1"
        port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"persistence false\nlistener {port} {host}\nallow_anonymous true\n")
        mosquitto = "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "mosquitto"
        self.spawn([mosquitto, "-c", conf])
        self.broker = f"mqtt://{host}:{port}"
        if setup == "one peer":
            self.peers = [Peer(tmp / "peer")]
            nodes = [self.peers[0]] * (AGENTS + 1)
        else:
            for i in range(AGENTS + 1):
                ns = self.nets.names[i] if shaped else None
                addr = self.nets.addr(i) if shaped else "127.0.0.1"
                self.peers.append(Peer(tmp / f"peer{i}", ns=ns, host=addr))
            for i, a in enumerate(self.peers):
                for b in self.peers[i + 1:]:
                    a.call(f"swarm/connect?arg={b.swarm}")
            nodes = self.peers
        self.submitter = nodes[0]
        for i in range(1, AGENTS + 1):
            work = tmp / f"agent{i}"
            work.mkdir()
            ns = self.nets.names[i] if shaped else None
            cmd = [AGENT, "--broker", self.broker, "--ipfs", nodes[i].api, "--name", f"b{i}", "--slots", "2",
                   "--heartbeat-secs", "1", "--work-dir", work]
            self.spawn(cmd, ns=ns)
        deadline = time.monotonic() + 60
        while True:
            agents = json.loads(self.submit(["agents", "--json", "--broker", self.broker]).stdout or "[]")
            if sum(1 for a in agents if a.get("online") and a.get("ipfs") == "ok") >= AGENTS:
                break
            if time.monotonic() > deadline:
                sys.exit(f"the agents did not come up: {agents}")
            time.sleep(0.5)

    def spawn(self, cmd, ns=None):
        cmd = [str(c) for c in cmd]
        if ns:
            cmd = ["ip", "netns", "exec", ns, *cmd]
        log = open(self.tmp / f"log{len(self.procs)}", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn")))

    def submit(self, args, ns=None):
        cmd = [str(SUBMIT), *map(str, args)]
        if ns:
            cmd = ["ip", "netns", "exec", ns, *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, RUST_LOG="warn"))

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for peer in self.peers:
            peer.stop()
        if self.nets:
            self.nets.teardown()


def reference(path: Path) -> dict:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return collections.Counter(w for line in f for w in line.split())


def counts(out: Path) -> dict:
    got = {}
    for part in sorted(out.glob("part-*")):
        with open(part, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                word, n = line.rstrip("\n").rsplit("\t", 1)
                got[word] = int(n)
    return got


def one_run(setup: str, input: Path, want: dict, rate: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ipdc-swarm-bench-"))
    cluster = Cluster(setup, tmp, rate)
    try:
        distinct = {id(p): p for p in cluster.peers}.values()
        before = {id(p): p.blocks() for p in distinct}
        links = cluster.nets.link_bytes() if cluster.nets else None
        out = tmp / "out"
        ns = cluster.nets.names[0] if cluster.nets else None
        args = ["run", JOB, "--broker", cluster.broker, "--ipfs", cluster.submitter.api, "--input", input,
                "--out", out, "--workers", AGENTS, "--native", "wordcount", "--reducers", "2", "--no-cache"]
        t = time.monotonic()
        p = cluster.submit(args, ns=ns)
        wall = time.monotonic() - t
        if p.returncode != 0:
            sys.exit(f"{setup}: the job failed:\n{p.stdout}{p.stderr}")
        if counts(out) != want:
            sys.exit(f"{setup}: the counts differ from Python's")
        summary = json.loads((out / "summary.json").read_text())
        # Every block new to the cluster was made (added) on one node; each
        # other node that gained it fetched it over the swarm.
        gained = [p.blocks() - before[id(p)] for p in distinct]
        sizes = {}
        for peer, keys in zip(distinct, gained):
            for k in keys - sizes.keys():
                sizes[k] = peer.size(k)
        moved = sum(sizes[k] for keys in gained for k in keys) - sum(sizes.values())
        shuffle = sum(t["output_bytes"] for t in summary["tasks"] if t["task"].startswith("m"))
        parts = sum(p["bytes"] for p in summary["parts"])
        row = {"wall": wall, "moved": moved, "least": summary["input_bytes"] + shuffle + parts}
        if links is not None:
            after = cluster.nets.link_bytes()
            row["busiest"] = max(b - a for a, b in zip(links, after))
        return row
    finally:
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


def bits_per_s(rate: str) -> float:
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for u, m in units.items():
        if rate.lower().endswith(u):
            return float(rate[: -len(u)]) * m
    sys.exit(f"--rate {rate}: give it as tc does, e.g. 100mbit")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="64M", help="corpus size (tests/corpus.py), default 64M")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", default="100mbit", help="each shaped link's rate, as tc takes it (100mbit)")
    ap.add_argument("--no-cap", action="store_true", help="skip the shaped-links setup")
    a = ap.parse_args()
    for b in (SUBMIT, AGENT):
        if not b.exists():
            sys.exit(f"{b} is missing: cargo build --release first")
    setups = ["one peer", "swarm"]
    why = "--no-cap" if a.no_cap else can_shape()
    if not why:
        setups.append("shaped")
    data = ROOT / "bench" / "data"
    data.mkdir(parents=True, exist_ok=True)
    input = data / f"swarm-corpus-{a.size}.txt"
    if not input.exists():
        with open(input.with_suffix(".tmp"), "wb") as f:
            subprocess.run([sys.executable, ROOT / "tests" / "corpus.py", a.size, "--seed", "1"], stdout=f, check=True)
        input.with_suffix(".tmp").rename(input)
    want = reference(input)
    rows = {s: [] for s in setups}
    for r in range(a.runs):
        for s in setups:
            row = one_run(s, input, want, a.rate)
            rows[s].append(row)
            print(f"run {r + 1} {s}: {row['wall']:.2f} s, {row['moved'] / 2**20:.1f} MiB moved", file=sys.stderr)
    med = {s: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for s, rs in rows.items()}
    base = med["one peer"]["wall"]
    names = {"one peer": "one shared peer", "swarm": "swarm on loopback", "shaped": f"swarm, {a.rate} links"}
    print(f"\nWordCount (native, 2 reducers), {a.size} corpus, 3 agents x 2 slots, median of {a.runs} runs\n")
    print("| setup | wall time | vs one peer | moved between nodes | least to move | moved / least | busiest link | its time at the link rate | wall / that time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in setups:
        m = med[s]
        moved = f"{m['moved'] / 2**20:.1f} MiB" if s != "one peer" else "0 (one node)"
        ratio = f"{m['moved'] / m['least']:.2f}" if s != "one peer" else "-"
        link = wire = vs = "-"
        if "busiest" in m:
            secs = m["busiest"] * 8 / bits_per_s(a.rate)
            link, wire, vs = f"{m['busiest'] / 2**20:.1f} MiB", f"{secs:.2f} s", f"{m['wall'] / secs:.2f}"
        print(f"| {names[s]} | {m['wall']:.2f} s | {m['wall'] / base:.2f} | {moved} | {m['least'] / 2**20:.1f} MiB | {ratio} | {link} | {wire} | {vs} |")
    if why:
        print(f"\nshaped links not measured: {why}")


if __name__ == "__main__":
    main()
