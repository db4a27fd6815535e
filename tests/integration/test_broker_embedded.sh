#!/usr/bin/env bash
# test_broker_embedded.sh BUILD_DIR FIXTURES - per-pod scope on the embedded
# store, as real processes on loopback and with no Vault anywhere:
# cloudtaser-beacon, cloudtaser (register + source secret put on SQLite),
# cloudtaser-bridge --serve-pods --pod-policy FILE on that SQLite store,
# cloudtaser-operator --broker-listen. Pod service-account tokens come from
# ct-dev-issuer with the key the operator's bootstrap pinned; curl and hvac
# (a stock Vault client library, when installed) play two pods.
#
# Checks: Kubernetes-auth login with the pod's JWT gives a bridge token;
# each pod reads its own path and gets Vault's 403 on the other's; list,
# metadata, lookup-self, renew-self, health; forged, wrong-audience and
# unknown-role logins refused Vault-shaped; SIGHUP reloads the policy (an
# invalid file keeps the old one; a new one applies to live tokens at
# once); no token or JWT in any log. Every wait is bounded.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
BEACON=$build/tools/cloudtaser-beacon
CT=$build/tools/cloudtaser
BRIDGE=$build/tools/cloudtaser-bridge
OPERATOR=$build/tools/cloudtaser-operator
ISSUER=$build/examples/ct-dev-issuer

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

unset VAULT_ADDR VAULT_TOKEN VAULT_CACERT VAULT_NAMESPACE VAULT_SKIP_VERIFY CLOUDTASER_STORE
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

S=(--store "$tmp/store.db")
FP=$(cat /proc/sys/kernel/random/uuid)
"$CT" source register --fingerprint "$FP" "${S[@]}" > "$tmp/register.out"
"$CT" source secret put --path secret/team-a/app/db --data password=pod-a-secret --data user=a \
  "${S[@]}" > "$tmp/put.out"
"$CT" source secret put --path secret/team-a/app/api --data key=a-api "${S[@]}" >> "$tmp/put.out"
echo '{"password":"pod-b-secret","nested":{"x":1}}' > "$tmp/b.json"
"$CT" source secret put --path secret/team-b/db --from-json "$tmp/b.json" "${S[@]}" >> "$tmp/put.out"
grep -q 'secret/team-b/db: version 1' "$tmp/put.out" || fail "secret put: $(cat "$tmp/put.out")"
[ "$("$CT" source secret get --path secret/team-a/app/db "${S[@]}")" = '{"password":"pod-a-secret","user":"a"}' ] \
  || fail "secret get"
[ "$("$CT" source secret list --path secret/team-a "${S[@]}" | tr '\n' ' ')" = "secret/team-a/app/api secret/team-a/app/db " ] \
  || fail "secret list"
ok "cluster registered and three secrets put on the SQLite store (cloudtaser source secret)"

cat > "$tmp/pods.json" <<'JSON'
{"version": 1, "audience": "vault",
 "rules": [
  {"namespace": "team-a", "service_account": "app", "role": "app", "name": "team-a-app",
   "read": ["secret/data/team-a/app/", "secret/metadata/team-a/app/"],
   "list": ["secret/metadata/team-a/"]},
  {"namespace": "team-b", "service_account": "*",
   "read": ["secret/data/team-b/"], "list": ["secret/metadata/team-b/"]}
 ]}
JSON
# a policy file with a typo: refused at start, naming the file and the member
echo '{"version":1,"rules":[{"namespace":"a","service_acount":"b","read":["x/"]}]}' > "$tmp/bad.json"
rc=0
"$BRIDGE" "${B[@]}" "${S[@]}" --serve-pods --pod-policy "$tmp/bad.json" > /dev/null 2> "$tmp/bad.err" || rc=$?
[ "$rc" = 1 ] && grep -q 'bad.json: rules\[0\]: unknown member "service_acount"' "$tmp/bad.err" \
  || fail "bad policy file: rc $rc, $(cat "$tmp/bad.err")"
rc=0
"$BRIDGE" "${B[@]}" "${S[@]}" --pod-policy "$tmp/pods.json" > /dev/null 2> "$tmp/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "--pod-policy without --serve-pods: rc $rc"
# SQLite and no Vault, no policy: the embedded store, every pod refused, said at start
"$BRIDGE" "${B[@]}" "${S[@]}" --scan-interval 300 --serve-pods > /dev/null 2> "$tmp/nopolicy.log" &
np_pid=$!
pids+=($np_pid)
wait_for "$tmp/nopolicy.log" "no --pod-policy: every pod's login is refused" 10
kill -TERM "$np_pid"
wait "$np_pid" 2>/dev/null || true
ok "a bad policy file is refused at start (file and member named); without one every pod is refused"

"$BRIDGE" "${B[@]}" "${S[@]}" --scan-interval 300 --serve-pods --pod-policy "$tmp/pods.json" \
  -o json > "$tmp/bridge.out" 2> "$tmp/bridge.log" &
bridge_pid=$!
pids+=($bridge_pid)
wait_for "$tmp/bridge.log" "pods are answered from the store under .*pods.json \(2 rules\)" 15
mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --broker-listen 127.0.0.1:0 --broker-name localhost \
  --broker-ca-out "$tmp/broker-ca.pem" -o json > "$tmp/op.log" 2>&1 &
op_pid=$!
pids+=($op_pid)
wait_for "$tmp/op.log" '"event":"broker_serving"' 60
bport=$(sed -n 's/.*"event":"broker_serving","port":\([0-9]*\).*/\1/p' "$tmp/op.log")
BR=https://localhost:$bport
ok "bridge on SQLite with --pod-policy; operator bootstrapped (issuer keys pinned), broker on $bport"

# pods' service-account tokens: the same issuer key, audience "vault"
jwt_for() { # DIR SUB AUD [fresh issuer]
  mkdir -m 700 "$tmp/$1"
  [ -z "${4:-}" ] && cp "$tmp/iss/issuer-key.pem" "$tmp/$1/"
  "$ISSUER" "$tmp/$1" --sub "$2" --aud "$3" > /dev/null
  cat "$tmp/$1/token"
}
JWT_A=$(jwt_for pa team-a:app vault)
JWT_B=$(jwt_for pb team-b:worker vault)
JWT_FORGED=$(jwt_for pf team-a:app vault fresh)
JWT_AUD=$(jwt_for pw team-a:app https://kubernetes.default.svc.cluster.local)
JWT_X=$(jwt_for px team-x:app vault)

pod() { # METHOD PATH TOKEN [BODY] -> "$status" and $tmp/body
  local args=(-s -o "$tmp/body" -w '%{http_code}' --cacert "$tmp/broker-ca.pem" -X "$1" --max-time 20)
  [ -n "${3:-}" ] && args+=(-H "X-Vault-Token: $3")
  [ -n "${4:-}" ] && args+=(-d "$4")
  status=$(curl "${args[@]}" "$BR/v1/$2") || fail "curl $1 $2 failed"
}
login() { # ROLE JWT -> $tok
  pod POST auth/kubernetes/login "" "{\"role\":\"$1\",\"jwt\":\"$2\"}"
  tok=$(sed -n 's/.*"client_token":"\([^"]*\)".*/\1/p' "$tmp/body")
}
login app "$JWT_A"
[ "$status" = 200 ] || fail "pod A login: $status $(cat "$tmp/body")"
TA=$tok
case $TA in ctb.*) ;; *) fail "pod A's token is not a bridge token";; esac
grep -q '"policies":\["default","team-a-app"\]' "$tmp/body" || fail "login policies: $(cat "$tmp/body")"
grep -q '"service_account_namespace":"team-a"' "$tmp/body" || fail "login metadata"
login anything "$JWT_B"
[ "$status" = 200 ] || fail "pod B login: $status $(cat "$tmp/body")"
TB=$tok
ok "Kubernetes-auth login with each pod's own JWT (verified offline) gives a bridge token"

pod GET secret/data/team-a/app/db "$TA"
[ "$status" = 200 ] && grep -q '"data":{"password":"pod-a-secret","user":"a"}' "$tmp/body" \
  || fail "pod A reading its path: $status $(cat "$tmp/body")"
grep -q '"version":1' "$tmp/body" || fail "no version in the metadata"
pod GET secret/data/team-b/db "$TB"
[ "$status" = 200 ] && grep -q 'pod-b-secret' "$tmp/body" || fail "pod B reading its path: $status"
ok "each pod reads its own path (broker -> beacon -> bridge -> SQLite)"
pod GET secret/data/team-b/db "$TA"
[ "$status" = 403 ] || fail "pod A on pod B's path: $status"
grep -qF '{"errors":["1 error occurred:\n\t* permission denied\n\n"]}' "$tmp/body" \
  || fail "refusal is not Vault's: $(cat "$tmp/body")"
pod GET secret/data/team-a/app/db "$TB"
[ "$status" = 403 ] || fail "pod B on pod A's path: $status"
pod GET secret/data/team-a/app/db ""
[ "$status" = 403 ] || fail "no token: $status"
pod GET secret/data/team-a/app/db "ctb.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
[ "$status" = 403 ] && grep -q 'invalid token' "$tmp/body" || fail "unknown token: $status"
ok "each pod is refused (Vault's 403) on the other's path, without a token and with a made-up one"

pod LIST secret/metadata/team-a/app/ "$TA"
[ "$status" = 200 ] && grep -q '"keys":\["api","db"\]' "$tmp/body" || fail "list: $status $(cat "$tmp/body")"
pod GET 'secret/metadata/team-a?list=true' "$TA"
[ "$status" = 200 ] && grep -q '"keys":\["app/"\]' "$tmp/body" || fail "?list=true: $status $(cat "$tmp/body")"
pod LIST secret/metadata/team-b/ "$TA"
[ "$status" = 403 ] || fail "list of B's folder by A: $status"
pod GET secret/metadata/team-a/app/db "$TA"
[ "$status" = 200 ] && grep -q '"current_version":1' "$tmp/body" || fail "metadata: $status"
pod GET 'secret/data/team-a/app/db?version=1' "$TA"
[ "$status" = 200 ] || fail "read ?version=1: $status"
pod GET 'secret/data/team-a/app/db?version=2' "$TA"
[ "$status" = 404 ] && [ "$(cat "$tmp/body")" = '{"errors":[]}' ] || fail "read ?version=2: $status"
ok "KV v2 list (LIST and ?list=true), metadata, versioned read, 404 shapes"

pod GET auth/token/lookup-self "$TA"
[ "$status" = 200 ] && grep -q "\"id\":\"$TA\"" "$tmp/body" && grep -q '"display_name":"kubernetes-team-a-app"' "$tmp/body" \
  || fail "lookup-self: $status $(cat "$tmp/body")"
pod POST auth/token/renew-self "$TA" '{"increment":"1h"}'
[ "$status" = 200 ] && grep -q '"lease_duration":3600' "$tmp/body" || fail "renew-self: $status"
pod GET sys/health ""
[ "$status" = 200 ] && grep -q '"cloudtaser_tunnel":"up"' "$tmp/body" && grep -q '"sealed":false' "$tmp/body" \
  || fail "health: $status $(cat "$tmp/body")"
ok "lookup-self, renew-self, health (with the tunnel state)"

login app "$JWT_FORGED"
[ "$status" = 403 ] && [ "$(cat "$tmp/body")" = '{"errors":["permission denied"]}' ] \
  || fail "forged JWT: $status $(cat "$tmp/body")"
login app "$JWT_AUD"
[ "$status" = 403 ] || fail "JWT for another audience: $status"
login app "$JWT_X"
[ "$status" = 403 ] || fail "a pod no rule names: $status"
pod POST auth/kubernetes/login "" '{"role":"app","jwt":"not-a-jwt"}'
[ "$status" = 403 ] || fail "garbage JWT: $status"
pod POST auth/kubernetes/login "" '{"jwt":"x"}'
[ "$status" = 400 ] && grep -q 'missing role' "$tmp/body" || fail "missing role: $status"
grep -q 'pod login refused' "$tmp/bridge.log" || fail "refusals not logged"
ok "forged, wrong-audience, unknown-pod and garbage JWTs refused (403 permission denied), logged"

py=
for c in python3 /usr/bin/python3; do
  if command -v "$c" > /dev/null && "$c" -c 'import hvac' 2> /dev/null; then py=$c; break; fi
done
if [ -n "$py" ]; then
  "$py" - "$BR" "$tmp/broker-ca.pem" "$JWT_A" > "$tmp/hvac.out" 2>&1 <<'PY' || fail "hvac: $(tail -5 "$tmp/hvac.out")"
import sys, hvac
url, ca, jwt = sys.argv[1], sys.argv[2], sys.argv[3]
c = hvac.Client(url=url, verify=ca)
c.auth.kubernetes.login(role="app", jwt=jwt)
assert c.is_authenticated()
r = c.secrets.kv.v2.read_secret_version(path="team-a/app/db", mount_point="secret")
assert r["data"]["data"]["password"] == "pod-a-secret", r
try:
    c.secrets.kv.v2.read_secret_version(path="team-b/db", mount_point="secret")
    raise SystemExit("read another pod's path")
except hvac.exceptions.Forbidden:
    pass
assert c.secrets.kv.v2.list_secrets(path="team-a/app", mount_point="secret")["data"]["keys"] == ["api", "db"]
assert c.secrets.kv.v2.read_secret_metadata(path="team-a/app/db", mount_point="secret")["data"]["current_version"] == 1
assert c.auth.token.lookup_self()["data"]["policies"] == ["default", "team-a-app"]
c.auth.token.renew_self()
try:
    c.sys.list_mounted_secrets_engines()
    raise SystemExit("sys/mounts answered")
except hvac.exceptions.InvalidPath:
    pass
print("hvac ok")
PY
  ok "hvac (a stock Vault client library): login, read, refused on the other path, list, metadata, lookup/renew-self"
else
  echo "# skip: no python3 with hvac for the client-library check"
fi

# SIGHUP: an invalid file keeps the old policy; a valid one applies at once
echo '{"version":1,"rules":[],"typo":true}' > "$tmp/pods.json"
kill -HUP "$bridge_pid"
wait_for "$tmp/bridge.log" 'keeping the previous pod policy: .*"typo"' 10
pod GET secret/data/team-a/app/db "$TA"
[ "$status" = 200 ] || fail "after an invalid reload: $status"
cat > "$tmp/pods.json" <<'JSON'
{"version": 1, "audience": "vault",
 "rules": [{"namespace": "team-b", "service_account": "*", "read": ["secret/data/team-b/"]}]}
JSON
kill -HUP "$bridge_pid"
wait_for "$tmp/bridge.log" 'pod policy reloaded from .*\(1 rules\)' 10
pod GET secret/data/team-a/app/db "$TA"
[ "$status" = 403 ] || fail "pod A after its rule was removed: $status"
pod GET secret/data/team-b/db "$TB"
[ "$status" = 200 ] || fail "pod B after the reload: $status"
login app "$JWT_A"
[ "$status" = 400 ] || [ "$status" = 403 ] || fail "pod A login after the reload: $status"
ok "SIGHUP: an invalid policy file is refused (old policy kept), a new one applies to live tokens at once"

for f in "$tmp"/*.log "$tmp"/*.out; do
  for s in "$TA" "$TB" "${TA#ctb.}" "${JWT_A#*.}" "${JWT_B#*.}"; do
    grep -qF -- "${s:0:40}" "$f" && fail "$f carries a pod token or JWT"
  done
done
ok "no pod token or JWT in any log"

kill -TERM "$bridge_pid"
rc=0
wait "$bridge_pid" || rc=$?
[ "$rc" = 0 ] || fail "bridge exit status $rc after SIGTERM"
kill -TERM "$op_pid"
rc=0
wait "$op_pid" || rc=$?
[ "$rc" = 0 ] || fail "operator exit status $rc after SIGTERM"
grep -q 'Sanitizer\|runtime error' "$tmp"/*.log && fail "a sanitizer report"
ok "bridge and operator stop cleanly on SIGTERM"

echo "all $checks checks passed"
