#!/usr/bin/env bash
# The real IPFS peer of IPDC's end-to-end tests: js-ipfs 0.66.1, an
# implementation independent of ours, answering kubo's HTTP RPC API
# (/api/v0/add, cat, id, block/get, pin/ls, repo/gc, swarm/connect, ...) on
# 127.0.0.1 only, with no discovery, no bootstrap peers and no DHT.
#
#   peer.sh install                 install js-ipfs once (npm ci), see below
#   peer.sh start DIR [API_PORT]    start a daemon whose repo lives in DIR
#   peer.sh stop DIR                stop the daemon started for DIR
#   peer.sh connect DIR MULTIADDR   join DIR's daemon to another peer
#
# install: `npm ci` of the pinned package-lock.json beside this script into
#   $IPFS_PEER_HOME (default: target/ipfs-peer/ of this repository, so
#   `cargo clean` removes it). About 360 MB from the npm registry, about 2
#   minutes, once: later calls return at once unless package.json or
#   package-lock.json changed. npm's download cache goes to a
#   temp dir that is removed afterwards. `start` installs when needed.
#
# start: DIR gets repo/ (the IPFS repo, created on first start), daemon.log
#   and daemon.pid; nothing of the install is copied there, so any number of
#   peers share one install. API_PORT defaults to 5002. Environment:
#     SWARM_PORT=N     libp2p TCP listener on port N (default 0: any free port)
#     SWARM_HOST=IP    its address (default 127.0.0.1; bench/swarm.py gives each
#                      peer in a network namespace its own)
#     READY_TIMEOUT=S  seconds to wait for the API (default 120)
#   On success it prints, and leaves the daemon running:
#     API=http://127.0.0.1:API_PORT
#     PID=...
#     LOG=DIR/daemon.log
#     PEER_ID=...
#     SWARM=/ip4/127.0.0.1/tcp/N/p2p/PEER_ID
#
# A swarm on loopback: start each peer with its own DIR, API_PORT and
# SWARM_PORT, then `peer.sh connect DIR_A "$SWARM_OF_B"`; blocks then move
# between them over bitswap. js-ipfs 0.66 has no private networks (it
# ignores swarm.key) and redials a disconnected peer within seconds, so a
# peer meant to stay apart must never be connected.
#
# What differs from kubo (the client must tolerate both): `add` answers
# `Size` as a number, not a string; a missing CID makes `cat` wait forever
# unless the request carries `timeout=`; a malformed CID is a 400, not a
# 500; CIDv1 prints in base58 unless `cid-base=base32` is sent.
#
# Why package.json has overrides: electron-eval, deep in js-ipfs's optional
# dependencies, asks for `headless` from a GitHub tarball, which `npm ci`
# cannot fetch from the registry alone, so it is pinned to the registry's
# 1.2.0; and @multiformats/multiaddr 12.x is held at 12.1.14, the version
# this tree was resolved and tested with. node20-shim.cjs covers what js-ipfs
# needs on Node 20 (see the comments in it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEER_HOME=${IPFS_PEER_HOME:-$ROOT/target/ipfs-peer}
CLI=$PEER_HOME/node_modules/ipfs/src/cli.js
SHIM=$HERE/node20-shim.cjs

die() { echo "ipfs-peer: $*" >&2; exit 1; }

usage() {
  { echo "usage:"; sed -n '/^#   peer.sh /s/^#//p' "$0"; } >&2
  exit 2
}

need_node() {
  local missing=()
  command -v node >/dev/null || missing+=(node)
  command -v npm >/dev/null || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    local what=${missing[*]}
    die "${what/ / and } not found: the tests' IPFS peer (js-ipfs) runs on Node.js. Install Debian's packages: apt-get install nodejs npm"
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 18 ] || die "Node.js $(node --version) is too old for js-ipfs 0.66: 18 or later is needed (tested with 20)"
}

# A fingerprint of what an install is made from.
stamp() { cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1; }

installed() { [ -f "$CLI" ] && [ "$(cat "$PEER_HOME/installed" 2>/dev/null)" = "$(stamp)" ]; }

cmd_install() {
  need_node
  installed && return 0
  mkdir -p "$PEER_HOME"
  # One install at a time, even from several test processes.
  exec 9>"$PEER_HOME/.lock"
  flock 9
  if ! installed; then
    echo "ipfs-peer: installing js-ipfs 0.66.1 into $PEER_HOME (npm ci: about 360 MB, about 2 minutes, once) ..." >&2
    rm -rf "$PEER_HOME/node_modules" "$PEER_HOME/installed"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$PEER_HOME/"
    local cache status=0
    cache=$(mktemp -d "${TMPDIR:-/tmp}/ipfs-peer-npm-cache.XXXXXX")
    (cd "$PEER_HOME" && npm_config_cache="$cache" NO_UPDATE_NOTIFIER=1 \
      npm ci --omit=optional --ignore-scripts --no-audit --no-fund --no-update-notifier \
      >"$PEER_HOME/npm-install.log" 2>&1) || status=$?
    rm -rf "$cache"
    [ "$status" -eq 0 ] || die "npm ci failed (exit $status); its output is in $PEER_HOME/npm-install.log"
    [ -f "$CLI" ] || die "npm ci finished but $CLI is missing; see $PEER_HOME/npm-install.log"
    stamp >"$PEER_HOME/installed"
    echo "ipfs-peer: installed" >&2
  fi
  exec 9>&-
}

# Every node process from here on (js-ipfs and the small scripts below)
# preloads the shim; js-ipfs uses the repo in $DIR/repo.
js_env() {
  export NODE_OPTIONS="--require \"$SHIM\" ${NODE_OPTIONS:-}"
  export NO_UPDATE_NOTIFIER=1 # or js-ipfs asks the npm registry for a newer version
  export IPFS_PATH=$DIR/repo
}

# True when $DIR has a live daemon of ours. The PID is checked against the
# process's environment (js-ipfs renames its command line to "ipfs"), so a
# recycled PID is never taken for it.
running() {
  local pid
  pid=$(cat "$DIR/daemon.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "IPFS_PATH=$DIR/repo"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  [ $# -ge 1 ] && [ $# -le 2 ] || usage
  need_node
  DIR=$(realpath -m "$1")
  local api_port=${2:-5002} swarm_port=${SWARM_PORT:-0} timeout=${READY_TIMEOUT:-120}
  cmd_install
  js_env
  mkdir -p "$DIR"
  if running; then die "a daemon already runs for $DIR (PID $(cat "$DIR/daemon.pid"))"; fi
  if [ ! -f "$DIR/repo/config" ]; then
    node "$CLI" init --empty-repo >"$DIR/init.log" 2>&1 || die "js-ipfs init failed; see $DIR/init.log"
  fi
  # The network settings are written on every start, so a DIR can be
  # started again on other ports.
  local swarm_host=${SWARM_HOST:-127.0.0.1}
  node - "$DIR/repo/config" "$api_port" "$swarm_port" "$swarm_host" <<'JS'
const fs = require('fs')
const [path, api, swarm, host] = process.argv.slice(2)
const config = JSON.parse(fs.readFileSync(path, 'utf8'))
const loopback = (port) => `/ip4/127.0.0.1/tcp/${port}`
config.Addresses = {
  ...config.Addresses,
  API: loopback(api),
  Gateway: [],            // no HTTP gateway: the tests use the RPC API only
  RPC: '',
  Swarm: [`/ip4/${host}/tcp/${swarm}`],
  Announce: [],
  NoAnnounce: [],
  Delegates: []           // no delegated routing servers on the internet
}
config.Bootstrap = []
config.Discovery = { MDNS: { Enabled: false, Interval: 10 }, webRTCStar: { Enabled: false } }
config.Routing = { Type: 'none' }
config.Swarm = { ...config.Swarm, DisableNatPortMap: true }
fs.writeFileSync(path, JSON.stringify(config, null, 2))
JS
  # Another daemon on the port would answer the readiness check below.
  if port_in_use "$api_port"; then die "127.0.0.1:$api_port is already in use"; fi
  local peer_id
  peer_id=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).Identity.PeerID' "$DIR/repo/config")
  # A daemon that was killed leaves its lock (a folder) and api file behind.
  rm -rf "$DIR/repo/repo.lock" "$DIR/repo/api"
  # In its own session, detached from this shell and its terminal.
  setsid node "$CLI" daemon --offline --enable-preload=false >"$DIR/daemon.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$DIR/daemon.pid"
  local deadline=$((SECONDS + timeout)) id=""
  while :; do
    id=$(curl -sf -m 2 -X POST "http://127.0.0.1:$api_port/api/v0/id" 2>/dev/null) || id=""
    case $id in *"\"ID\":\"$peer_id\""*) break ;; esac
    if ! kill -0 "$pid" 2>/dev/null; then
      start_failed "the daemon exited while starting"
    elif grep -q EADDRINUSE "$DIR/daemon.log"; then
      start_failed "a port it needs is already in use"
    elif [ $SECONDS -ge $deadline ]; then
      start_failed "its API did not answer within ${timeout}s"
    fi
    sleep 0.3
  done
  local swarm
  swarm=$(node -p 'JSON.parse(process.argv[1]).Addresses.find((a) => a.startsWith(`/ip4/${process.argv[2]}/tcp/`)) || ""' "$id" "$swarm_host")
  echo "API=http://127.0.0.1:$api_port"
  echo "PID=$pid"
  echo "LOG=$DIR/daemon.log"
  echo "PEER_ID=$peer_id"
  echo "SWARM=$swarm"
}

start_failed() {
  echo "ipfs-peer: $1; the end of $DIR/daemon.log:" >&2
  grep -v '^    at ' "$DIR/daemon.log" | tail -n 8 >&2 || true
  stop_daemon
  exit 1
}

stop_daemon() {
  local pid
  pid=$(cat "$DIR/daemon.pid" 2>/dev/null) || return 0
  if running; then
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do running || break; sleep 0.2; done
    if running; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$DIR/daemon.pid"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  DIR=$(realpath -m "$1")
  [ -f "$DIR/daemon.pid" ] || die "no daemon was started for $DIR (no daemon.pid)"
  local pid
  pid=$(cat "$DIR/daemon.pid")
  stop_daemon
  echo "stopped $pid"
}

cmd_connect() {
  [ $# -eq 2 ] || usage
  DIR=$(realpath -m "$1")
  running || die "no daemon runs for $DIR"
  local api
  api=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).Addresses.API.split("/")[4]' "$DIR/repo/config")
  curl -sSf -X POST "http://127.0.0.1:$api/api/v0/swarm/connect?arg=$2" ||
    die "swarm/connect to $2 failed"
  echo
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
  install) [ $# -eq 0 ] || usage; cmd_install ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  connect) cmd_connect "$@" ;;
  *) usage ;;
esac
