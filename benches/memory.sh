#!/usr/bin/env bash
# toolwarden's resident memory (VmRSS in /proc/PID/status) one second into
# an idle session: around the mock server with the Fractera tools and
# policy, `initialize` answered, then nothing; with `--state memory` and
# with the default store (the LMDB map, in a fresh XDG_STATE_HOME). The
# median of RUNS sessions each (5 by default).
#
#   cargo dist && cargo build --release --bin toolwarden && cargo build --release -p mock_server
#   benches/memory.sh                                   # the static build
#   benches/memory.sh target/release/toolwarden         # the dynamic one
set -euo pipefail
cd "$(dirname "$0")/.."
toolwarden=${1:-target/x86_64-unknown-linux-gnu/dist/toolwarden}
mock=${2:-target/release/mock_server}
runs=${RUNS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
initialize='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"memory.sh","version":"1"}}}'

# One session's VmRSS in KiB, one second after `initialize` was sent.
one_session() {
  rm -rf "$tmp/state" "$tmp/in"
  mkfifo "$tmp/in"
  XDG_STATE_HOME="$tmp/state" "$toolwarden" --policy policies/fractera.json "$@" \
    -- "$mock" --tools examples/tools/fractera.json <"$tmp/in" >/dev/null 2>&1 &
  local pid=$!
  exec 3>"$tmp/in"
  printf '%s\n' "$initialize" >&3
  sleep 1
  awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"
  exec 3>&-
  wait "$pid" || true
}

# The median of RUNS sessions, in MiB.
median() {
  for _ in $(seq "$runs"); do one_session "$@"; done |
    sort -n | awk '{ v[NR] = $1 } END { printf "%.1f MiB\n", v[int((NR + 1) / 2)] / 1024 }'
}

echo "$toolwarden, one second into an idle session (median of $runs):"
echo "  --state memory:  $(median --state memory)"
echo "  default store:   $(median)"
