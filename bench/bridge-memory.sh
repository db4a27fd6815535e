#!/usr/bin/env bash
# bridge-memory.sh BUILD_DIR [--clusters N] [--settle S] - what a bridge holds
# per registered cluster: a beacon and a SQLite store on loopback, N clusters
# registered, one cloudtaser-bridge keeping its waiters (one init and two
# operational connections per cluster) in their rooms. Prints the bridge's
# RSS and threads with no cluster (the baseline, same run) and with N, and
# the difference per cluster. Real processes; nothing leaves 127.0.0.1.
set -euo pipefail
build=$(cd "$1" && pwd); shift
n=40 settle=10
while [ $# -gt 0 ]; do
  case $1 in
    --clusters) n=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    *) echo "usage: bridge-memory.sh BUILD_DIR [--clusters N] [--settle S]" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
fixtures=$top/tests/fixtures
# the end-to-end scripts' helpers: $tmp, pids + cleanup on exit, wait_for,
# start_beacon (the fixture certificate on 127.0.0.1)
. "$top/tests/integration/lib.sh"
start_beacon
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")

# measure STORE: start a bridge on it, let its waiters settle, print "rss_kb threads"
measure() {
  CLOUDTASER_STORE=$1 "$BRIDGE" "${B[@]}" --scan-interval 300 \
    -o json > "$tmp/bridge.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  sleep "$settle"
  kill -0 "$pid" || { cat "$tmp/bridge.log" >&2; return; }
  echo "$(awk '/^VmRSS/{print $2}' /proc/$pid/status) $(awk '/^Threads/{print $2}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
CLOUDTASER_STORE=$tmp/empty.db "$CT" source list > /dev/null
read -r rss0 thr0 < <(measure "$tmp/empty.db")
[ -n "$rss0" ] || fail "the bridge on an empty store did not stay up"
for ((i = 0; i < n; i++)); do
  CLOUDTASER_STORE=$tmp/store.db "$CT" source register \
    --fingerprint "$(cat /proc/sys/kernel/random/uuid)" > /dev/null
done
read -r rss thr < <(measure "$tmp/store.db")
[ -n "$rss" ] || fail "the bridge with $n clusters did not stay up"
echo "bridge, no cluster (baseline): RSS $rss0 KiB, $thr0 threads"
echo "bridge, $n clusters waiting:    RSS $rss KiB, $thr threads"
awk -v a="$rss0" -v b="$rss" -v n="$n" 'BEGIN { printf "per cluster: %.0f KiB (%.1fx the baseline over %d clusters)\n", (b - a) / n, b / a, n }'
