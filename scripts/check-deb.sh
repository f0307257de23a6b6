#!/usr/bin/env bash
# Checks the .deb packages in dist/ (made by scripts/dist.sh) the way an
# operator would find them, without touching this machine:
#   - contents and control data of every package (binary, unit, config,
#     conffile mark, architecture, dependencies);
#   - the amd64 agent package installed, reinstalled, removed and purged in
#     a throwaway root (`dpkg --root=DIR --force-script-chrootless`; the
#     maintainer scripts honour DPKG_ROOT): files land where the README says,
#     the `ipdc` user and /var/lib/ipdc are created, the unit is not enabled,
#     an edited config survives a reinstall and `remove`, and `purge` leaves
#     the root as it was.
# Usage: scripts/check-deb.sh [DIST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${1:-dist}
fails=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAILED: $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

one() { # one GLOB: the single file matching it
  local m=( $1 )
  [ ${#m[@]} -eq 1 ] && [ -f "${m[0]}" ] || { echo "expected one file matching $1, found: ${m[*]}" >&2; exit 1; }
  echo "${m[0]}"
}
agent_amd64=$(one "$DIST/ipdc-agent_*_amd64.deb")
agent_arm64=$(one "$DIST/ipdc-agent_*_arm64.deb")
submit_amd64=$(one "$DIST/ipdc-submit_*_amd64.deb")

# Where the README says things land.
UNIT=usr/lib/systemd/system/ipdc-agent.service
agent_paths=(usr/bin/ipdc-agent etc/ipdc/agent.toml "$UNIT" usr/share/doc/ipdc-agent/README.md)

contents() { dpkg-deb -c "$1" | awk '{ print $NF }' | sed 's|^\./||'; }

for deb in "$agent_amd64" "$agent_arm64"; do
  echo "== $deb"
  arch=amd64; [[ $deb == *arm64.deb ]] && arch=arm64
  files=$(contents "$deb")
  for p in "${agent_paths[@]}"; do
    check "contains /$p" grep -qx "$p" <<<"$files"
  done
  check "Package: ipdc-agent" [ "$(dpkg-deb -f "$deb" Package)" = ipdc-agent ]
  check "Architecture: $arch" [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ]
  check "no Depends (static binary)" [ -z "$(dpkg-deb -f "$deb" Depends)" ]
  check "/etc/ipdc/agent.toml is a conffile" \
    grep -qx /etc/ipdc/agent.toml <(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
  x=$(mktemp -d)
  dpkg-deb -x "$deb" "$x"
  bin_info=$(file -b "$x/usr/bin/ipdc-agent" 2>/dev/null || true)
  if [ -n "$bin_info" ]; then
    want=x86-64; [ "$arch" = arm64 ] && want=aarch64
    check "binary is $want and static ($bin_info)" \
      bash -c "grep -q '$want' <<<'$bin_info' && grep -Eq 'statically linked|static-pie' <<<'$bin_info'"
  fi
  check "unit runs /usr/bin/ipdc-agent --config /etc/ipdc/agent.toml as ipdc" \
    bash -c "grep -qx 'ExecStart=/usr/bin/ipdc-agent --config /etc/ipdc/agent.toml' '$x/$UNIT' && grep -qx 'User=ipdc' '$x/$UNIT'"
  rm -rf "$x"
done

echo "== $submit_amd64"
files=$(contents "$submit_amd64")
check "contains /usr/bin/ipdc-submit" grep -qx usr/bin/ipdc-submit <<<"$files"
check "Architecture: amd64" [ "$(dpkg-deb -f "$submit_amd64" Architecture)" = amd64 ]
check "Depends names libc6 (glibc build)" grep -q libc6 <<<"$(dpkg-deb -f "$submit_amd64" Depends)"

echo "== install, reinstall, remove, purge $agent_amd64 in a throwaway root"
R=$(mktemp -d)
L=$(mktemp -d) # logs, outside the root
trap 'rm -rf "$R" "$L"' EXIT
mkdir -p "$R"/var/lib/dpkg/{info,updates,triggers} "$R/etc" "$R/var/log"
# As on any systemd machine (deb-systemd-helper keeps its state there).
mkdir -p "$R/etc/systemd/system" "$R/var/lib/systemd"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$R/etc/shadow"
printf 'root:*::\n' >"$R/etc/gshadow"
chmod 640 "$R/etc/shadow" "$R/etc/gshadow"
cp "$R/etc/passwd" "$L/passwd.before"
snapshot() { (cd "$R" && find . -path ./var/lib/dpkg -prune -o -path ./var/log -prune -o -name '*-' -prune -o -print | sort); }
before=$(snapshot)
host_had_ipdc=no; grep -q '^ipdc:' /etc/passwd && host_had_ipdc=yes

dpkg_r() { dpkg --root="$R" --force-script-chrootless --log="$R/var/log/dpkg.log" "$@"; }

if dpkg_r -i "$agent_amd64" >"$L/install.log" 2>&1; then ok "dpkg -i"; else bad "dpkg -i"; cat "$L/install.log"; fi
check "status: install ok installed" [ "$(dpkg-query --root="$R" -W -f='${Status}' ipdc-agent)" = "install ok installed" ]
check "/usr/bin/ipdc-agent is executable" [ -x "$R/usr/bin/ipdc-agent" ]
check "/$UNIT installed" [ -f "$R/$UNIT" ]
check "/etc/ipdc/agent.toml installed" cmp -s "$R/etc/ipdc/agent.toml" packaging/agent.toml
version=$("$R/usr/bin/ipdc-agent" --version 2>&1 || true)
check "installed binary names its build ($version)" \
  bash -c "grep -q 'x86_64-unknown-linux-musl, dist)' <<<'$version'"
check "the installed binary accepts the installed config (exit 0 or 1, not 2)" \
  bash -c "'$R/usr/bin/ipdc-agent' --config '$R/etc/ipdc/agent.toml' --check --broker mqtt://127.0.0.1:9 --ipfs http://127.0.0.1:9 --work-dir '$R/tmp-check' >/dev/null 2>&1; [ \$? -le 1 ]"
rm -rf "$R/tmp-check"
user=$(grep '^ipdc:' "$R/etc/passwd" || true)
check "system user ipdc created ($user)" \
  bash -c "[ -n '$user' ] && [ \$(cut -d: -f3 <<<'$user') -lt 1000 ] && [ \$(cut -d: -f7 <<<'$user') = /usr/sbin/nologin ]"
check "group ipdc created" grep -q '^ipdc:' "$R/etc/group"
uid=$(cut -d: -f3 <<<"$user")
check "/var/lib/ipdc/work exists, owned by ipdc, mode 750" \
  bash -c "[ \"\$(stat -c '%u %a' '$R/var/lib/ipdc/work')\" = '$uid 750' ] && [ \"\$(stat -c '%u' '$R/var/lib/ipdc')\" = '$uid' ]"
check "unit not enabled (operator enables it after configuring)" \
  bash -c "! ls '$R'/etc/systemd/system/*.wants/ipdc-agent.service >/dev/null 2>&1"
if [ "$host_had_ipdc" = no ]; then
  check "this machine's /etc/passwd untouched" bash -c "! grep -q '^ipdc:' /etc/passwd"
fi

echo '# edited by the operator' >>"$R/etc/ipdc/agent.toml"
if dpkg_r -i "$agent_amd64" >"$L/reinstall.log" 2>&1; then ok "dpkg -i again (upgrade path)"; else bad "dpkg -i again"; cat "$L/reinstall.log"; fi
check "edited config kept on reinstall" grep -q '^# edited by the operator' "$R/etc/ipdc/agent.toml"

if dpkg_r -r ipdc-agent >"$L/remove.log" 2>&1; then ok "dpkg -r"; else bad "dpkg -r"; cat "$L/remove.log"; fi
check "binary and unit gone after remove" bash -c "[ ! -e '$R/usr/bin/ipdc-agent' ] && [ ! -e '$R/$UNIT' ]"
check "edited config kept after remove" grep -q '^# edited by the operator' "$R/etc/ipdc/agent.toml"
check "status: deinstall ok config-files" [ "$(dpkg-query --root="$R" -W -f='${Status}' ipdc-agent)" = "deinstall ok config-files" ]

if dpkg_r -P ipdc-agent >"$L/purge.log" 2>&1; then ok "dpkg -P"; else bad "dpkg -P"; cat "$L/purge.log"; fi
check "user and group ipdc gone after purge" \
  bash -c "! grep -q '^ipdc:' '$R/etc/passwd' && ! grep -q '^ipdc:' '$R/etc/group'"
check "/etc/passwd as before" cmp -s "$L/passwd.before" "$R/etc/passwd"
after=$(snapshot)
check "purge leaves the root as before (no leftover files)" [ "$before" = "$after" ]
[ "$before" = "$after" ] || diff <(echo "$before") <(echo "$after") || true

if [ "$fails" -gt 0 ]; then
  echo "check-deb: $fails check(s) FAILED"
  exit 1
fi
echo "check-deb: all checks passed"
