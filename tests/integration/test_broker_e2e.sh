#!/usr/bin/env bash
# test_broker_e2e.sh BUILD_DIR FIXTURES - pods read secrets through the
# broker, as real processes on loopback: cloudtaser-beacon, tests/fake-vault
# (the bridge's record store and the pods' Vault, with two pod tokens whose
# policies cover different paths), cloudtaser (register), cloudtaser-bridge
# --serve-pods, cloudtaser-operator --broker-listen. curl plays the pods and
# trusts only the cluster CA the operator wrote (--broker-ca-out).
#
# Checks: each pod reads its own path and gets Vault's 403 on the other's
# (with curl, and with hvac, a stock Vault client library, when installed);
# list, metadata, login (table of JWTs in the fake), lookup-self,
# renew-self; health reports the tunnel (and 503 once the bridge is gone);
# endpoints outside the subset are refused Vault-shaped without reaching
# Vault; no token in any log. Every wait is bounded.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
BEACON=$build/tools/cloudtaser-beacon
CT=$build/tools/cloudtaser
BRIDGE=$build/tools/cloudtaser-bridge
OPERATOR=$build/tools/cloudtaser-operator
ISSUER=$build/examples/ct-dev-issuer
FAKE=$build/tests/fake-vault

tmp=$(mktemp -d)
[ -n "${KEEP_TMP:-}" ] && echo "tmp $tmp"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$tmp"/*.log "$tmp"/*.out; do
    [ -e "$f" ] || continue
    echo "--- $f" >&2; tail -n 40 "$f" >&2
  done
  exit 1
}
wait_for() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no line matching '$2' in $1 within $3 s"
}

cp "$fixtures/tls/server.pem" "$tmp/beacon.pem"
cp "$fixtures/tls/server-key.pem" "$tmp/beacon-key.pem"
chmod 600 "$tmp/beacon-key.pem"
"$BEACON" --cert "$tmp/beacon.pem" --key "$tmp/beacon-key.pem" \
  --listen "127.0.0.1:0" --metrics 127.0.0.1:0 --log-level warning \
  > "$tmp/beacon.out" 2>> "$tmp/beacon.log" &
pids+=($!)
wait_for "$tmp/beacon.out" '^listening ' 15
addr=$(sed -n 's/^listening //p' "$tmp/beacon.out")
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")
ok "beacon listening on $addr"

unset VAULT_ADDR VAULT_TOKEN VAULT_CACERT VAULT_NAMESPACE VAULT_SKIP_VERIFY
ROOT=hvs.CAESIBrokerE2eRootToken0123456789abcdefghijklmnopqrstuvw
POD1=hvs.CAESIPod1Token0123456789abcdefghijklmnopqrstuvwxyzABCDEF
POD2=hvs.CAESIPod2Token0123456789abcdefghijklmnopqrstuvwxyzABCDEF
"$FAKE" --flavour vault --token "$ROOT" --mount2 secret \
  --token-prefix "$POD1=secret/data/app1/,secret/metadata/app1/" \
  --token-prefix "$POD2=secret/data/app2/,secret/metadata/app2/" \
  --login "kubernetes:app1:jwt-of-pod-1:$POD1" \
  --cert "$fixtures/tls/server.pem" --key "$fixtures/tls/server-key.pem" --verbose \
  > "$tmp/vault.out" 2>> "$tmp/vault.log" &
pids+=($!)
wait_for "$tmp/vault.out" '^listening ' 15
export VAULT_ADDR=https://$(sed -n 's/^listening //p' "$tmp/vault.out")
export VAULT_CACERT=$fixtures/tls/ca.pem
export VAULT_TOKEN=$ROOT
put() { # PATH JSON
  curl -sf --cacert "$VAULT_CACERT" -H "X-Vault-Token: $ROOT" -d "$2" \
    "$VAULT_ADDR/v1/secret/data/$1" > /dev/null || fail "writing $1 to the fake Vault"
}
put app1/db '{"data":{"password":"pod-one-secret"}}'
put app2/db '{"data":{"password":"pod-two-secret"}}'
ok "fake Vault on $VAULT_ADDR: two pods' tokens with per-path policies, secrets written"

FP=$(cat /proc/sys/kernel/random/uuid)
"$CT" source register --fingerprint "$FP" > "$tmp/register.out"
mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"
ok "cluster registered in the Vault store"

"$BRIDGE" "${B[@]}" --scan-interval 300 --serve-pods --metrics 127.0.0.1:0 -o json \
  > "$tmp/bridge.log" 2>&1 &
bridge_pid=$!
pids+=($bridge_pid)
# the operator and the bridge need no token of the pods'; unset ours for them
(unset VAULT_TOKEN; exec "$OPERATOR" "${B[@]}" --fingerprint "$FP" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --broker-listen 127.0.0.1:0 --broker-name localhost \
  --broker-name 127.0.0.1 --broker-ca-out "$tmp/broker-ca.pem" --metrics 127.0.0.1:0 \
  -o json) > "$tmp/op.log" 2>&1 &
op_pid=$!
pids+=($op_pid)
wait_for "$tmp/op.log" '"event":"broker_serving"' 60
bport=$(sed -n 's/.*"event":"broker_serving","port":\([0-9]*\).*/\1/p' "$tmp/op.log")
[ -s "$tmp/broker-ca.pem" ] || fail "no broker CA written"
grep -q 'BEGIN CERTIFICATE' "$tmp/broker-ca.pem" || fail "the CA file is not PEM"
grep -q 'PRIVATE' "$tmp/broker-ca.pem" && fail "the CA file carries a key"
BR=https://localhost:$bport
ok "operator's broker serving on port $bport, CA written"

# pod HTTP: METHOD PATH TOKEN [BODY] -> "$status" and $tmp/body
pod() {
  local args=(-s -o "$tmp/body" -w '%{http_code}' --cacert "$tmp/broker-ca.pem" -X "$1" --max-time 20)
  [ -n "${3:-}" ] && args+=(-H "X-Vault-Token: $3")
  [ -n "${4:-}" ] && args+=(-d "$4")
  status=$(curl "${args[@]}" "$BR/v1/$2") || fail "curl $1 $2 failed"
}
pod GET secret/data/app1/db "$POD1"
[ "$status" = 200 ] || fail "pod 1 reading its path: $status $(cat "$tmp/body")"
grep -q '"password":"pod-one-secret"' "$tmp/body" || fail "pod 1 did not get its secret"
pod GET secret/data/app2/db "$POD2"
[ "$status" = 200 ] && grep -q 'pod-two-secret' "$tmp/body" || fail "pod 2 reading its path: $status"
ok "each pod reads its own path through broker -> beacon -> bridge -> Vault"
pod GET secret/data/app2/db "$POD1"
[ "$status" = 403 ] || fail "pod 1 on pod 2's path: $status"
grep -qF '{"errors":["1 error occurred:\n\t* permission denied\n\n"]}' "$tmp/body" \
  || fail "refusal is not Vault's: $(cat "$tmp/body")"
pod GET secret/data/app1/db "$POD2"
[ "$status" = 403 ] || fail "pod 2 on pod 1's path: $status"
pod GET secret/data/app1/db ""
[ "$status" = 403 ] || fail "no token: $status"
ok "each pod is refused (Vault's 403) on the other's path, and without a token"

pod LIST secret/metadata/app1/ "$POD1"
[ "$status" = 200 ] && grep -q '"keys":\["db"\]' "$tmp/body" || fail "list: $status $(cat "$tmp/body")"
pod GET 'secret/metadata/app2?list=true' "$POD2"
[ "$status" = 200 ] || fail "list via ?list=true: $status"
pod GET secret/metadata/app1/db "$POD1"
[ "$status" = 200 ] && grep -q current_version "$tmp/body" || fail "metadata: $status"
pod GET 'secret/data/app1/db?version=1' "$POD1"
[ "$status" = 200 ] || fail "read ?version=1: $status"
ok "KV v2 list (LIST and ?list=true), metadata, versioned read"

pod POST auth/kubernetes/login "" '{"role":"app1","jwt":"jwt-of-pod-1"}'
[ "$status" = 200 ] || fail "login: $status $(cat "$tmp/body")"
tok=$(sed -n 's/.*"client_token":"\([^"]*\)".*/\1/p' "$tmp/body")
[ "$tok" = "$POD1" ] || fail "login gave another token"
pod GET secret/data/app1/db "$tok"
[ "$status" = 200 ] || fail "read with the login token: $status"
pod POST auth/kubernetes/login "" '{"role":"app1","jwt":"forged"}'
[ "$status" = 403 ] && grep -qF '{"errors":["permission denied"]}' "$tmp/body" \
  || fail "forged login: $status $(cat "$tmp/body")"
pod GET auth/token/lookup-self "$POD2"
[ "$status" = 200 ] && grep -q "\"id\":\"$POD2\"" "$tmp/body" || fail "lookup-self: $status"
pod POST auth/token/renew-self "$POD2" '{"increment":"1h"}'
[ "$status" = 200 ] && grep -q '"lease_duration":3600' "$tmp/body" || fail "renew-self: $status"
ok "login (table of JWTs in the fake), lookup-self, renew-self"

pod GET sys/health ""
[ "$status" = 200 ] && grep -q '"cloudtaser_tunnel":"up"' "$tmp/body" || fail "health: $status"
grep -q '"version":"1.21.1"' "$tmp/body" || fail "health is not Vault's"
ok "health is Vault's answer plus the tunnel state"

vcalls() { grep -Ec 'fake-vault: [A-Z]+ /v1/(sys/mounts|auth/token/create|secret/)' "$tmp/vault.log" || true; }
before=$(vcalls)
pod GET sys/mounts "$ROOT"
[ "$status" = 404 ] && grep -q '^{"errors":\["no handler for route' "$tmp/body" || fail "sys/mounts: $status"
pod POST auth/token/create "$ROOT" '{}'
[ "$status" = 404 ] || fail "token create: $status"
pod DELETE secret/metadata/app1/db "$ROOT"
[ "$status" = 405 ] || fail "delete: $status"
pod POST secret/data/app1/db "$ROOT" '{"data":{"password":"overwritten"}}'
[ "$status" = 405 ] || fail "write: $status"
pod GET 'secret/data/app1/%2e%2e/%2e%2e/sys/mounts' "$ROOT"
[ "$status" = 404 ] || fail "dot-dot: $status"
after=$(vcalls)
[ "$before" = "$after" ] || fail "a refused call reached Vault"
ok "endpoints outside the subset refused Vault-shaped (404/405), none reached Vault"

# a standard Vault client library (hvac, python3-hvac) against the broker
py=
for c in python3 /usr/bin/python3; do
  if command -v "$c" > /dev/null && "$c" -c 'import hvac' 2> /dev/null; then py=$c; break; fi
done
if [ -n "$py" ]; then
  "$py" - "$BR" "$tmp/broker-ca.pem" > "$tmp/hvac.out" 2>&1 <<'PY' || fail "hvac: $(tail -5 "$tmp/hvac.out")"
import sys, hvac
url, ca = sys.argv[1], sys.argv[2]
c = hvac.Client(url=url, verify=ca)
c.auth.kubernetes.login(role="app1", jwt="jwt-of-pod-1")
assert c.is_authenticated()
r = c.secrets.kv.v2.read_secret_version(path="app1/db", mount_point="secret")
assert r["data"]["data"]["password"] == "pod-one-secret", r
try:
    c.secrets.kv.v2.read_secret_version(path="app2/db", mount_point="secret")
    raise SystemExit("read another pod's path")
except hvac.exceptions.Forbidden:
    pass
assert c.secrets.kv.v2.list_secrets(path="app1", mount_point="secret")["data"]["keys"] == ["db"]
assert c.secrets.kv.v2.read_secret_metadata(path="app1/db", mount_point="secret")["data"]["current_version"] == 1
assert c.auth.token.lookup_self()["data"]["policies"] == ["default", "secret/data/app1/"]
c.auth.token.renew_self()
try:
    c.sys.list_mounted_secrets_engines()
    raise SystemExit("sys/mounts answered")
except hvac.exceptions.InvalidPath:
    pass
print("hvac ok")
PY
  ok "hvac (a stock Vault client library): login, read, refused on the other path, list, metadata, lookup/renew-self, sys refused"
else
  echo "# skip: no python3 with hvac for the client-library check"
fi

for f in "$tmp"/*.log "$tmp"/op.log; do
  grep -qF -- "$POD1" "$f" && fail "$f carries a pod token"
  grep -qF -- "$POD2" "$f" && fail "$f carries a pod token"
done
ok "no pod token in any log"

# the operations endpoints count what was served: the bridge its vault.http
# and broker.cert answers, the operator its broker
ops_addr() { sed -n 's/.*"event":"metrics","address":"\([^"]*\)".*/\1/p' "$1" | head -1; }
metric() { curl -s --max-time 5 "http://$1/metrics" | sed -n "s/^$2 //p"; }
bops=$(ops_addr "$tmp/bridge.log")
oops=$(ops_addr "$tmp/op.log")
[ -n "$bops" ] && [ -n "$oops" ] || fail "no metrics line from the bridge or the operator"
served=$(metric "$bops" cloudtaser_bridge_requests_served_total)
[ "${served:-0}" -ge 10 ] || fail "bridge requests_served_total is '$served' after the pods' calls"
[ "$(metric "$oops" cloudtaser_operator_broker_serving)" = 1 ] || fail "operator broker_serving"
[ "$(metric "$oops" cloudtaser_operator_connected)" = 1 ] || fail "operator connected"
ok "metrics: the bridge served $served requests, the operator's broker serves"

kill "$bridge_pid"
wait "$bridge_pid" 2>/dev/null || true
for ((i = 0; i < 100; i++)); do
  pod GET sys/health ""
  [ "$status" = 503 ] && break
  sleep 0.2
done
[ "$status" = 503 ] && grep -q '"cloudtaser_tunnel":"down"' "$tmp/body" \
  || fail "health with the bridge gone: $status $(cat "$tmp/body")"
pod GET secret/data/app1/db "$POD1"
[ "$status" = 503 ] || [ "$status" = 504 ] || fail "read with the tunnel down: $status"
grep -q '^{"errors":\[' "$tmp/body" || fail "tunnel-down answer is not Vault-shaped"
ok "tunnel down: health 503 with the tunnel state, reads answered Vault-shaped $status"

kill -TERM "$op_pid"
rc=0
wait "$op_pid" || rc=$?
[ "$rc" = 0 ] || fail "operator exit status $rc after SIGTERM"
grep -q 'Sanitizer\|runtime error' "$tmp"/*.log && fail "a sanitizer report"
ok "operator with a busy-then-idle broker stops cleanly on SIGTERM"

echo "all $checks checks passed"
