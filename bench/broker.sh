#!/usr/bin/env bash
# broker.sh BUILD_DIR [--conns C] [--seconds S] [--n N] - secret reads
# through broker -> beacon -> bridge -> fake Vault vs directly against the
# fake Vault, same run, real processes on loopback (the set-up of
# tests/integration/test_broker_e2e.sh). BUILD_DIR must be configured with
# -Dtests=true -Dbench=true (tests/fake-vault, bench/ct-bench-http).
# Prints one line per target (ct-bench-http's figures) and the overhead.
# BROKER_CPU=1 adds each process's CPU time after each phase; BROKER_PERF=FILE
# records a perf profile of the tunnel's processes during the broker phase.
set -euo pipefail
build=$(cd "$1" && pwd); shift
top=$(cd "$(dirname "$0")/.." && pwd)
fixtures=$top/tests/fixtures
tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
wait_for() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "broker.sh: no '$2' in $1" >&2; cat "$1" >&2; exit 1
}
cp "$fixtures/tls/server-key.pem" "$tmp/k.pem"; chmod 600 "$tmp/k.pem"
"$build/tools/cloudtaser-beacon" --cert "$fixtures/tls/server.pem" --key "$tmp/k.pem" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --log-level warning > "$tmp/beacon.out" 2>&1 &
pids+=($!)
wait_for "$tmp/beacon.out" '^listening ' 15
B=(--beacon "$(sed -n 's/^listening //p' "$tmp/beacon.out")" --beacon-ca "$fixtures/tls/ca.pem")
unset VAULT_ADDR VAULT_TOKEN VAULT_CACERT VAULT_NAMESPACE
ROOT=hvs.benchroot0123456789abcdefghij
POD=hvs.benchpod0123456789abcdefghijk
"$build/tests/fake-vault" --token "$ROOT" --mount2 secret \
  --token-prefix "$POD=secret/data/app1/" \
  --cert "$fixtures/tls/server.pem" --key "$fixtures/tls/server-key.pem" > "$tmp/vault.out" 2>&1 &
pids+=($!)
wait_for "$tmp/vault.out" '^listening ' 15
export VAULT_ADDR=https://$(sed -n 's/^listening //p' "$tmp/vault.out")
export VAULT_CACERT=$fixtures/tls/ca.pem VAULT_TOKEN=$ROOT
curl -sf --cacert "$VAULT_CACERT" -H "X-Vault-Token: $ROOT" \
  -d '{"data":{"password":"0123456789abcdef0123456789abcdef"}}' \
  "$VAULT_ADDR/v1/secret/data/app1/db" > /dev/null
FP=$(cat /proc/sys/kernel/random/uuid)
"$build/tools/cloudtaser" source register --fingerprint "$FP" > /dev/null
mkdir -m 700 "$tmp/iss"; "$build/examples/ct-dev-issuer" "$tmp/iss" > /dev/null
"$build/tools/cloudtaser-bridge" "${B[@]}" --serve-pods -o json > "$tmp/bridge.log" 2>&1 &
pids+=($!)
(unset VAULT_TOKEN; exec "$build/tools/cloudtaser-operator" "${B[@]}" --fingerprint "$FP" \
  --token-file "$tmp/iss/token" --jwks-file "$tmp/iss/jwks.json" \
  --broker-listen 127.0.0.1:0 --broker-ca-out "$tmp/ca.pem" --broker-max-in-flight 4096 \
  -o json) > "$tmp/op.log" 2>&1 &
pids+=($!)
wait_for "$tmp/op.log" '"event":"broker_serving"' 60
bport=$(sed -n 's/.*"event":"broker_serving","port":\([0-9]*\).*/\1/p' "$tmp/op.log")
# CPU seconds (user+system) each process used so far, for BROKER_CPU=1
cpu() {
  local tck p; tck=$(getconf CLK_TCK)
  for p in "${pids[@]}"; do
    [ -r "/proc/$p/stat" ] || continue
    awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%s=%.2fs ", n, ($12 + $13) / t }' \
      n="$(tr -d '\0' < "/proc/$p/comm")" "/proc/$p/stat"
  done
  echo
}
[ -n "${BROKER_CPU:-}" ] && echo "cpu before  $(cpu)"
direct=$(/usr/bin/time -f '%U %S' -o "$tmp/time.direct" "$build/bench/ct-bench-http" "$VAULT_ADDR/v1/secret/data/app1/db" "$POD" \
  "$VAULT_CACERT" "$@")
echo "direct  $direct"
[ -n "${BROKER_CPU:-}" ] && echo "cpu direct  $(cpu) client=$(awk '{print $1 + $2}' "$tmp/time.direct")s"
# BROKER_PERF=FILE: perf record (call graphs) of beacon, bridge and operator
# during the broker phase, for `perf report -i FILE`.
perf_pid=
if [ -n "${BROKER_PERF:-}" ]; then
  perf record -q -g -o "$BROKER_PERF" -p "${pids[0]},${pids[2]},${pids[3]}" > /dev/null 2>&1 &
  perf_pid=$!
  sleep 0.5
fi
broker=$(/usr/bin/time -f '%U %S' -o "$tmp/time.broker" "$build/bench/ct-bench-http" "https://localhost:$bport/v1/secret/data/app1/db" "$POD" \
  "$tmp/ca.pem" "$@")
echo "broker  $broker"
if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
[ -n "${BROKER_CPU:-}" ] && echo "cpu broker  $(cpu) client=$(awk '{print $1 + $2}' "$tmp/time.broker")s"
d=$(echo "$direct" | awk '{print $2}'); b=$(echo "$broker" | awk '{print $2}')
awk -v d="$d" -v b="$b" 'BEGIN { printf "p50 overhead %.3f ms\n", b - d }'
