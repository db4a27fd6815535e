#!/usr/bin/env bash
# flow.sh BUILD_DIR - the whole cloudtaser flow on loopback with real
# processes (see demo.sh). Exits non-zero if any phase fails.
set -euo pipefail
build=$(cd "${1:?usage: flow.sh BUILD_DIR}" && pwd)
now_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }  # no fork per line
T0=$(now_ms)
work=$(mktemp -d "${TMPDIR:-/tmp}/cloudtaser-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ms() { echo $(( $(now_ms) - T0 )); }
say() { printf '[+%6s ms] %-9s %s\n' "$(ms)" "$1" "$2"; }
# Prefixes every line of a process's output.
tag() { local who=$1; while IFS= read -r line; do say "$who" "$line"; done; }
fail() { say demo "FAILED: $*"; exit 1; }

# 0. the cluster fingerprint: in a cluster, the kube-system namespace UID
#    (cloudtaser target fingerprint); here a fresh UUID.
fp=$(cat /proc/sys/kernel/random/uuid)
say demo "fingerprint ${fp:0:8}... (the kube-system namespace UID; only 8 characters are ever shown)"

# 1. the beacon: a stateless relay with a throwaway certificate, on loopback
mkfifo "$work/beacon.out"
"$build/tools/cloudtaser-beacon" --dev --listen 127.0.0.1:0 --metrics 127.0.0.1:0 \
    --log-level warning >"$work/beacon.out" 2>"$work/beacon.err" &
pids+=($!)
exec 3<"$work/beacon.out"
addr= pin=
for _ in 1 2 3 4; do
  IFS=' ' read -r -t 15 key val <&3 || fail "the beacon did not start: $(cat "$work/beacon.err")"
  case $key in listening) addr=$val ;; pin) pin=$val ;; esac
  [ -n "$addr" ] && [ -n "$pin" ] && break
done
[ -n "$addr" ] && [ -n "$pin" ] || fail "the beacon did not print its address and pin"
say beacon "listening on $addr, certificate pin ${pin:0:16}..."
beacon=(--beacon "$addr" --beacon-pin "$pin")

# 2. register the cluster in the embedded SQLite store
export CLOUDTASER_STORE="$work/store.db"
t=$(now_ms)
"$build/tools/cloudtaser" source register --fingerprint "$fp" | tag register
say register "registered in $(( $(now_ms) - t )) ms (per-cluster CA + bridge certificate, all in memory, stored in $CLOUDTASER_STORE)"

# 3. a stand-in for the cluster's service-account issuer: its public keys
#    (JWKS) and a token for the operator's own service account
mkdir -m 700 "$work/issuer"
"$build/examples/ct-dev-issuer" "$work/issuer"
say issuer "service-account issuer keys (JWKS) and an operator token written (stand-ins for the cluster's)"

# 4. the bridge, next to the store
"$build/tools/cloudtaser-bridge" "${beacon[@]}" --scan-interval 500 \
    > >(tag bridge) 2> >(tag bridge) &
pids+=($!)

# 5. the operator, in the cluster: bootstrap, operational mTLS, one request
say operator "starting: knows only the beacon address and the fingerprint"
"$build/tools/cloudtaser-operator" "${beacon[@]}" --fingerprint "$fp" \
    --token-file "$work/issuer/token" --jwks-file "$work/issuer/jwks.json" \
    --request '{"op":"ping"}' --exit-after-request --timeout 30 2>&1 | tag operator
[ "${PIPESTATUS[0]}" = 0 ] || fail "the operator did not get an answer"

"$build/tools/cloudtaser" source status --fingerprint "$fp" | tag status

# 6. an operator restart: credentials lived only in memory, so it bootstraps
#    again; the one-time door stays shut, and a fresh token of the operator's
#    own service account, verified against the pinned keys, gets it a new
#    certificate under the same CA
"$build/examples/ct-dev-issuer" "$work/issuer"
say operator "restarting (credentials were in memory only): attested re-bootstrap"
"$build/tools/cloudtaser-operator" "${beacon[@]}" --fingerprint "$fp" \
    --token-file "$work/issuer/token" --request '{"op":"ping"}' --exit-after-request \
    --timeout 30 2>&1 | tag operator
[ "${PIPESTATUS[0]}" = 0 ] || fail "the restarted operator did not get an answer"

say demo "done: beacon, register, bridge, operator; no inbound port, no Kubernetes Secret, no vault token"
