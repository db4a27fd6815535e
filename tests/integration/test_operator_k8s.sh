#!/usr/bin/env bash
# test_operator_k8s.sh BUILD_DIR FIXTURES - cloudtaser-operator with no
# --fingerprint and no --jwks-file: it reads both from the Kubernetes API
# (tests/fake-k8s) through a kubeconfig, then bootstraps through a real
# beacon and bridge, and its request is answered. The fingerprint the CLI
# prints (cloudtaser target fingerprint) is what gets registered, as in the
# walkthrough. Every wait is bounded.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
BEACON=$build/tools/cloudtaser-beacon
CT=$build/tools/cloudtaser
BRIDGE=$build/tools/cloudtaser-bridge
OPERATOR=$build/tools/cloudtaser-operator
FAKE=$build/tests/fake-k8s
ISSUER=$build/examples/ct-dev-issuer

tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done
  exit 1
}
wait_for() { # FILE REGEX SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no line matching '$2' in $1 within $3 s"
}

# the cluster's service-account issuer (keys + a projected-style token); the
# fake API server serves its keys at /openid/v1/jwks
mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"
UID_=$(cat /proc/sys/kernel/random/uuid)
mkdir "$tmp/k8s"
"$FAKE" --dir "$tmp/k8s" --uid "$UID_" --jwks "$tmp/iss/jwks.json" --seconds 120 \
  > "$tmp/fake.log" 2>&1 &
pids+=($!)
wait_for "$tmp/fake.log" '^listening ' 10
KC=$tmp/k8s/kubeconfig

cp "$fixtures/tls/server.pem" "$tmp/beacon.pem"
cp "$fixtures/tls/server-key.pem" "$tmp/beacon-key.pem"
chmod 600 "$tmp/beacon-key.pem" # the beacon refuses a key others can read
"$BEACON" --cert "$tmp/beacon.pem" --key "$tmp/beacon-key.pem" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --log-level warning > "$tmp/beacon.out" 2> "$tmp/beacon.log" &
pids+=($!)
wait_for "$tmp/beacon.out" '^listening ' 15
addr=$(sed -n 's/^listening //p' "$tmp/beacon.out")
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")

# target side: the fingerprint; store side: register it
FP=$("$CT" target fingerprint --kubeconfig "$KC" -o json |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
[ "$FP" = "$UID_" ] || fail "target fingerprint gave '$FP', want '$UID_'"
export CLOUDTASER_STORE=$tmp/store.db
"$CT" source register --fingerprint "$FP" > "$tmp/register.log"
ok "target fingerprint -> source register"

"$BRIDGE" "${B[@]}" --scan-interval 300 -o json > "$tmp/bridge.log" 2>&1 &
pids+=($!)

# the operator: no --fingerprint, no --jwks-file
run_operator() { # LOG
  timeout 60 "$OPERATOR" "${B[@]}" --kubeconfig "$KC" --token-file "$tmp/iss/token" \
    --request '{"op":"ping"}' --exit-after-request --timeout 30 -o json > "$tmp/$1" 2>&1 \
    || fail "operator ($1)"
  grep -q "fingerprint ${FP:0:8}\.\.\. read from https://127.0.0.1:" "$tmp/$1" \
    || fail "operator did not say where the fingerprint came from"
  grep -q '"op":"pong"' "$tmp/$1" || fail "no answer ($1)"
  ! grep -q "warning" "$tmp/$1" || fail "the issuer keys were not read from the API ($1)"
}
run_operator op1.log
grep -q '"event":"bootstrap_issued"' "$tmp/op1.log" || fail "no first bootstrap"
ok "operator: fingerprint and issuer keys from the Kubernetes API, first bootstrap, request answered"

# a restart with a fresh token: the bridge checks it against the keys it
# pinned at the first bootstrap, which came from the API server
"$ISSUER" "$tmp/iss"
run_operator op2.log
grep -q '"event":"bootstrap_issued"' "$tmp/op2.log" || fail "no re-bootstrap"
ok "restart: re-bootstrap verified against the issuer keys read from the API"
if grep -q -- "$FP" "$tmp/op1.log" "$tmp/op2.log" "$tmp/bridge.log"; then
  fail "a daemon printed the full fingerprint"
fi
ok "no full fingerprint in the daemons' output"

# no RBAC on the API server: a clear error, exit 1, nothing else tried
mkdir "$tmp/deny"
"$FAKE" --dir "$tmp/deny" --deny --seconds 60 > "$tmp/deny.log" 2>&1 &
pids+=($!)
wait_for "$tmp/deny.log" '^listening ' 10
rc=0
timeout 30 "$OPERATOR" "${B[@]}" --kubeconfig "$tmp/deny/kubeconfig" > "$tmp/op-deny.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "operator without RBAC exited $rc, want 1"
grep -q 'cannot read the cluster fingerprint from the Kubernetes API (or pass --fingerprint): .*forbidden' \
  "$tmp/op-deny.log" || fail "no RBAC: message"
ok "operator without RBAC on the namespace: exit 1 with the API server's reason"

echo "$checks passed, 0 failed"
