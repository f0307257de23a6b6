#!/usr/bin/env bash
# Builds IPDC's release artifacts into dist/ on a plain Debian machine, without
# the `cross` tool (it needs Docker and, on these machines, breaks the
# toolchain: see cross.toml for users who have Docker).
#
#   scripts/dist.sh            everything below, then dist/SHA256SUMS
#   scripts/dist.sh agent-aarch64   only dist/ipdc-agent-aarch64-linux-musl (CI's qemu test)
#   scripts/dist.sh setup      only install the tools
#
# Artifacts:
#   ipdc-agent-x86_64-linux-musl     static agent, profile `dist` (stripped, size-tuned)
#   ipdc-agent-aarch64-linux-musl    static agent for 64-bit ARM boards
#   ipdc-submit-x86_64-linux-gnu     the submitter (glibc, profile `release`)
#   ipdc-agent_<v>-1_amd64.deb, ipdc-agent_<v>-1_arm64.deb, ipdc-submit_<v>-1_amd64.deb
#   SHA256SUMS
# armv7 (armv7-unknown-linux-musleabihf) is configured in cross.toml but not
# built here: its rustup target is not downloadable on these machines (404).
#
# Honours CARGO_TARGET_DIR (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET_DIR
DIST=$ROOT/dist

log() { printf '\n==> %s\n' "$*" >&2; }

# The aarch64 recipe: Debian's cross gcc for any C code a -sys crate may bring
# (e.g. ring once MQTT gets TLS), rust-lld (shipped with rustup) as the linker.
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
# x86_64 musl: rustc's self-contained musl CRT and linker; the host cc serves C code.
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-cc}

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
}

rust_targets() {
  local installed
  installed=$(rustup target list --installed)
  for t in "$@"; do
    grep -qx "$t" <<<"$installed" || { log "rustup target add $t"; rustup target add "$t"; }
  done
}

setup_aarch64() {
  apt_install gcc-aarch64-linux-gnu
  rust_targets aarch64-unknown-linux-musl
}

setup() {
  apt_install gcc binutils gcc-aarch64-linux-gnu dpkg-dev file
  rust_targets x86_64-unknown-linux-musl aarch64-unknown-linux-musl
  if ! cargo deb --version >/dev/null 2>&1; then
    log "cargo install cargo-deb --locked"
    cargo install cargo-deb --locked
  fi
}

# build_agent TRIPLE: the static agent with the size profile.
build_agent() {
  log "ipdc-agent for $1 (profile dist)"
  cargo build --profile dist --locked -p ipdc-agent --bin ipdc-agent --target "$1"
}

agent_aarch64() {
  setup_aarch64
  build_agent aarch64-unknown-linux-musl
  mkdir -p "$DIST"
  cp "$TARGET_DIR/aarch64-unknown-linux-musl/dist/ipdc-agent" "$DIST/ipdc-agent-aarch64-linux-musl"
  echo "$DIST/ipdc-agent-aarch64-linux-musl"
}

all() {
  setup
  rm -rf "$DIST"
  mkdir -p "$DIST"
  build_agent x86_64-unknown-linux-musl
  build_agent aarch64-unknown-linux-musl
  log "ipdc-submit for the host (profile release)"
  cargo build --release --locked -p ipdc-submit --bin ipdc-submit

  cp "$TARGET_DIR/x86_64-unknown-linux-musl/dist/ipdc-agent" "$DIST/ipdc-agent-x86_64-linux-musl"
  cp "$TARGET_DIR/aarch64-unknown-linux-musl/dist/ipdc-agent" "$DIST/ipdc-agent-aarch64-linux-musl"
  strip -o "$DIST/ipdc-submit-x86_64-linux-gnu" "$TARGET_DIR/release/ipdc-submit"

  # The binaries are built above; cargo-deb only packs them (--no-build).
  log "packages (cargo-deb)"
  cargo deb --no-build --no-strip -p ipdc-agent --profile dist --target x86_64-unknown-linux-musl -o "$DIST/"
  cargo deb --no-build --no-strip -p ipdc-agent --profile dist --target aarch64-unknown-linux-musl -o "$DIST/"
  cargo deb --no-build -p ipdc-submit -o "$DIST/"

  # A static binary is what lets one .deb serve every Debian/Raspberry Pi OS release.
  for f in "$DIST"/ipdc-agent-*-musl; do
    file -b "$f" | grep -Eq 'statically linked|static-pie linked' || { echo "$f is not static: $(file -b "$f")" >&2; exit 1; }
  done
  echo "NOTE: armv7-unknown-linux-musleabihf is configured (cross.toml) but not built:" \
    "its rustup target cannot be downloaded on this machine (404)." >&2
  (cd "$DIST" && sha256sum -- * >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
  log "dist/:"
  ls -l "$DIST" >&2
}

case "${1:-all}" in
  all) all ;;
  setup) setup ;;
  agent-aarch64) agent_aarch64 ;;
  *) echo "usage: $0 [all|setup|agent-aarch64]" >&2; exit 2 ;;
esac
