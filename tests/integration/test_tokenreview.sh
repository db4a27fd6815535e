#!/usr/bin/env bash
# test_tokenreview.sh BUILD_DIR FIXTURES - Vault's Kubernetes auth with no
# path from Vault to the cluster, as real processes on loopback:
#   tests/fake-k8s   the cluster's API server (TokenReview answers from a file;
#                    SIGHUP revokes)
#   tests/fake-vault Vault, whose auth/kubernetes login calls kubernetes_host's
#                    TokenReview with token_reviewer_jwt, verifying
#                    kubernetes_ca_cert, as Vault does
#   beacon, bridge (--tokenreview), operator (--kubeconfig for fake-k8s)
# cloudtaser source configure-auth points the auth mount at the bridge's
# endpoint; a pod token then logs in (valid: a token with the role's
# policies; expired and revoked: the fixture 403). Then the cluster rotates
# its issuer key: the operator pushes the new set and the bridge pins it.
# The offline fallback: configure-auth --jwt sets up Vault's JWT auth with the
# pinned keys; on each rotation the bridge (its own token, allowed only on
# auth/jwt-*) rewrites that config, so a pod token signed by the new key logs
# in and, once the old key is dropped, one signed by the old key does not.
# Every wait is bounded.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
BEACON=$build/tools/cloudtaser-beacon
CT=$build/tools/cloudtaser
BRIDGE=$build/tools/cloudtaser-bridge
OPERATOR=$build/tools/cloudtaser-operator
FAKE=$build/tests/fake-k8s
FAKEVAULT=$build/tests/fake-vault
ISSUER=$build/examples/ct-dev-issuer
API=$fixtures/api

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
  for f in "$tmp"/*.log "$tmp"/*.out; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
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
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- the pod tokens: the fixture's projected token (valid, later revoked)
# and one of the same shape the API server no longer accepts (expired)
JWT=$(json 'd["jwt"]' < "$API/vault-k8s-login-request.json")
payload=$(echo "$JWT" | cut -d. -f2)
EXPIRED=$(python3 - "$JWT" <<'EOF'
import base64, json, sys
h, p, s = sys.argv[1].split(".")
c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
c["jti"] = "0b7d3e55-1c2a-4f0e-8d6b-9a1c2e3f4a5b"
c["exp"] = c["iat"] + 600
p2 = base64.urlsafe_b64encode(json.dumps(c, separators=(",", ":")).encode()).decode().rstrip("=")
print(h + "." + p2 + "." + s)
EOF
)
[ -n "$payload" ] && [ "$EXPIRED" != "$JWT" ] || fail "tokens"
USER_JSON='{"username":"system:serviceaccount:payments:payments-api","uid":"3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"]}'
AUD=https://kubernetes.default.svc.cluster.local
echo "valid $JWT $USER_JSON $AUD" > "$tmp/reviews"

# --- the cluster
mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"
UID_=$(cat /proc/sys/kernel/random/uuid)
mkdir "$tmp/k8s"
cp "$tmp/iss/jwks.json" "$tmp/jwks-served.json"
"$FAKE" --dir "$tmp/k8s" --uid "$UID_" --jwks "$tmp/jwks-served.json" --reviews "$tmp/reviews" \
  --seconds 200 > "$tmp/fake-k8s.out" 2> "$tmp/fake-k8s.log" &
k8s_pid=$!
pids+=($k8s_pid)
wait_for "$tmp/fake-k8s.out" '^listening ' 10
KC=$tmp/k8s/kubeconfig

# --- Vault (no route to the cluster: it only knows the bridge's endpoint)
"$FAKEVAULT" --flavour vault --token root-token --token-prefix bridge-token=auth/jwt- \
  --cert "$fixtures/tls/server.pem" \
  --key "$fixtures/tls/server-key.pem" > "$tmp/vault.out" 2> "$tmp/vault.log" &
pids+=($!)
wait_for "$tmp/vault.out" '^listening ' 10
VADDR=https://$(sed -n 's/^listening //p' "$tmp/vault.out")
vault() { # METHOD PATH [BODY] [TOKEN] -> "STATUS BODY" in $tmp/resp
  local args=(-sS -o "$tmp/resp" -w '%{http_code}' --cacert "$fixtures/tls/ca.pem" -X "$1")
  [ -n "${4:-}" ] && args+=(-H "X-Vault-Token: $4")
  [ -n "${3:-}" ] && args+=(--data "$3")
  curl "${args[@]}" "$VADDR/v1/$2"
}

# --- beacon, registration, bridge with the TokenReview endpoint, operator
cp "$fixtures/tls/server.pem" "$tmp/beacon.pem"
cp "$fixtures/tls/server-key.pem" "$tmp/beacon-key.pem"
chmod 600 "$tmp/beacon-key.pem"
"$BEACON" --cert "$tmp/beacon.pem" --key "$tmp/beacon-key.pem" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --log-level warning > "$tmp/beacon.out" 2> "$tmp/beacon.log" &
pids+=($!)
wait_for "$tmp/beacon.out" '^listening ' 15
addr=$(sed -n 's/^listening //p' "$tmp/beacon.out")
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")

FP=$("$CT" target fingerprint --kubeconfig "$KC" -o json | json 'd["fingerprint"]')
export CLOUDTASER_STORE=$tmp/store.db
"$CT" source register --fingerprint "$FP" > "$tmp/register.out"

VAULT_ADDR=$VADDR VAULT_TOKEN=bridge-token VAULT_CACERT=$fixtures/tls/ca.pem \
"$BRIDGE" "${B[@]}" --store "$tmp/store.db" --scan-interval 300 --tokenreview "$FP=127.0.0.1" -o json -v \
  > "$tmp/bridge.out" 2> "$tmp/bridge.log" &
pids+=($!)
wait_for "$tmp/bridge.out" '^tokenreview ' 15
REVIEW_URL=$(sed -n 's/^tokenreview [0-9a-f]* //p' "$tmp/bridge.out")
case $REVIEW_URL in https://127.0.0.1:[0-9]*) ;; *) fail "endpoint URL '$REVIEW_URL'" ;; esac
grep -q "^tokenreview ${FP:0:8} " "$tmp/bridge.out" || fail "endpoint line"
ok "bridge serves the TokenReview endpoint at $REVIEW_URL"

# before any session: the endpoint answers 503 (Vault: permission denied)
VAULT_TOKEN=root-token "$CT" source configure-auth --fingerprint "$FP" \
  --review-url "$REVIEW_URL" --auth-vault-address "$VADDR" \
  --auth-vault-cacert "$fixtures/tls/ca.pem" > "$tmp/configure.out" 2>&1 \
  || fail "configure-auth: $(cat "$tmp/configure.out")"
MOUNT=kubernetes-${FP:0:8}
grep -q "configured auth/$MOUNT at $VADDR" "$tmp/configure.out" || fail "configure-auth output"
st=$(vault GET "auth/$MOUNT/config" "" root-token)
[ "$st" = 200 ] || fail "config read $st"
[ "$(json 'd["data"]["kubernetes_host"]' < "$tmp/resp")" = "$REVIEW_URL" ] || fail "kubernetes_host"
[ "$(json 'd["data"]["token_reviewer_jwt_set"]' < "$tmp/resp")" = True ] || fail "reviewer jwt"
json 'd["data"]["kubernetes_ca_cert"]' < "$tmp/resp" > "$tmp/ca.txt"
grep -q 'BEGIN CERTIFICATE' "$tmp/ca.txt" || fail "ca"
ok "configure-auth: auth/$MOUNT points at the endpoint with the cluster CA and the reviewer token"
# a token without the policy is refused with a clear message
rc=0
VAULT_TOKEN=nobody "$CT" source configure-auth --fingerprint "$FP" --review-url "$REVIEW_URL" \
  --auth-vault-address "$VADDR" --auth-vault-cacert "$fixtures/tls/ca.pem" \
  > "$tmp/configure-denied.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'Vault refused sys/auth/' "$tmp/configure-denied.out" \
  || fail "configure-auth without permission: rc $rc"
ok "configure-auth with an unauthorised token: exit 1, the path named"

st=$(vault POST "auth/$MOUNT/role/payments-api" \
  '{"bound_service_account_names":["payments-api"],"bound_service_account_namespaces":["payments"],"token_policies":["payments-read"],"token_ttl":3600}' root-token)
[ "$st" = 204 ] || fail "role write $st"
login() { vault POST "auth/$MOUNT/login" "{\"role\":\"payments-api\",\"jwt\":\"$1\"}"; }

st=$(login "$JWT")
[ "$st" = 403 ] || fail "login without a session gave $st"
python3 - "$tmp/resp" "$API/vault-k8s-login-error-403.json" <<'EOF' || fail "no-session body"
import json, sys
assert json.load(open(sys.argv[1])) == json.load(open(sys.argv[2]))
EOF
ok "no operator session yet: login refused with the fixture 403"

"$OPERATOR" "${B[@]}" --kubeconfig "$KC" --token-file "$tmp/iss/token" -o json \
  --jwks-interval 1 > "$tmp/operator.out" 2> "$tmp/operator.log" &
op_pid=$!
pids+=($op_pid)
wait_for "$tmp/bridge.out" '"event":"session_up"' 30
wait_for "$tmp/operator.out" '"event":"session_up"' 10

# valid: authenticated through the tunnel, the fixture login shape
st=$(login "$JWT")
[ "$st" = 200 ] || fail "valid login gave $st: $(cat "$tmp/resp")"
python3 - "$tmp/resp" "$API/vault-k8s-login-response.json" <<'EOF' || fail "login body"
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert list(got) == list(want), (list(got), list(want))
assert list(got["auth"]) == list(want["auth"]), (list(got["auth"]), list(want["auth"]))
a = got["auth"]
assert a["client_token"].startswith("hvs.") and len(a["client_token"]) == 28
assert a["policies"] == ["default", "payments-read"] == a["token_policies"]
assert a["metadata"] == want["auth"]["metadata"], a["metadata"]
assert a["lease_duration"] == 3600 and a["renewable"] is True
EOF
ok "valid pod token: login through the tunnel, token with the role's policies"

# expired: the API server says so; Vault answers the fixture 403
st=$(login "$EXPIRED")
[ "$st" = 403 ] || fail "expired login gave $st"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"errors":["permission denied"]}' "$tmp/resp" \
  || fail "expired body"
ok "expired pod token: 403 permission denied (the real review said expired)"

# revoked on the cluster: the very next login sees it
echo "revoked $JWT" >> "$tmp/reviews"
kill -HUP "$k8s_pid"
wait_for "$tmp/fake-k8s.log" 'reloaded' 5
st=$(login "$JWT")
[ "$st" = 403 ] || fail "revoked login gave $st"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"errors":["permission denied"]}' "$tmp/resp" \
  || fail "revoked body"
ok "revoked pod token: 403 at once (the review is live, not cached)"

# wrong role: Vault's own 400, no review
st=$(vault POST "auth/$MOUNT/login" "{\"role\":\"payments-ap\",\"jwt\":\"$JWT\"}")
[ "$st" = 400 ] || fail "unknown role gave $st"
python3 - "$tmp/resp" "$API/vault-k8s-login-error-role.json" <<'EOF' || fail "role body"
import json, sys
assert json.load(open(sys.argv[1])) == json.load(open(sys.argv[2]))
EOF
ok "unknown role: the fixture 400"

# the endpoint refuses anyone without the reviewer token
CA=$tmp/cluster-ca.pem
vault GET "auth/$MOUNT/config" "" root-token > /dev/null
json 'd["data"]["kubernetes_ca_cert"]' < "$tmp/resp" > "$CA"
code=$(curl -sS -o "$tmp/resp" -w '%{http_code}' --cacert "$CA" -X POST \
  -H 'Authorization: Bearer not-the-reviewer' --data '{"spec":{"token":"x"}}' \
  "$REVIEW_URL/apis/authentication.k8s.io/v1/tokenreviews")
[ "$code" = 401 ] && [ "$(json 'd["reason"]' < "$tmp/resp")" = Unauthorized ] || fail "endpoint 401: $code"
ok "the endpoint verifies with the cluster CA and refuses a wrong reviewer token (401 Status)"

if grep -q -- "$FP" "$tmp/bridge.out" "$tmp/bridge.log" "$tmp/operator.out" "$tmp/operator.log"; then
  fail "a daemon printed the full fingerprint"
fi
if grep -qF -- "$payload" "$tmp/bridge.log" "$tmp/operator.log" "$tmp/bridge.out" "$tmp/operator.out"; then
  fail "a daemon printed a pod token"
fi
ok "no full fingerprint and no token in the daemons' output"

# --- the offline fallback: Vault's JWT auth with the keys pinned at bootstrap
wait_for "$tmp/operator.log" 'issuer keys pushed' 15
JMOUNT=jwt-${FP:0:8}
VAULT_TOKEN=root-token "$CT" source configure-auth --jwt --fingerprint "$FP" \
  --auth-vault-address "$VADDR" --auth-vault-cacert "$fixtures/tls/ca.pem" > "$tmp/jwt.out" \
  || fail "configure-auth --jwt"
grep -q "configured auth/$JMOUNT at $VADDR" "$tmp/jwt.out" || fail "configure-auth --jwt output"
st=$(vault GET "auth/$JMOUNT/config" "" root-token)
[ "$st" = 200 ] || fail "jwt config read $st"
python3 - "$tmp/resp" <<'EOF' || fail "jwt config"
import json, sys
d = json.load(open(sys.argv[1]))["data"]
assert len(d["jwt_validation_pubkeys"]) == 1, d
assert d["jwt_validation_pubkeys"][0].startswith("-----BEGIN PUBLIC KEY-----\n")
assert d["bound_issuer"] == "https://kubernetes.default.svc.cluster.local", d
EOF
st=$(vault POST "auth/$JMOUNT/role/payments-api" \
  '{"role_type":"jwt","user_claim":"sub","bound_audiences":["vault"],"bound_subject":"system:serviceaccount:payments:payments-api","token_policies":["payments-read"],"token_ttl":600}' root-token)
[ "$st" = 204 ] || fail "jwt role write $st"
pod_token() { # ISSUER_DIR -> a pod token signed by that issuer's key
  rm -rf "$tmp/pod" && cp -r "$1" "$tmp/pod"
  "$ISSUER" "$tmp/pod" --sub payments:payments-api --aud vault > /dev/null
  cat "$tmp/pod/token"
}
jlogin() { vault POST "auth/$JMOUNT/login" "{\"role\":\"payments-api\",\"jwt\":\"$1\"}"; }
POD_OLD=$(pod_token "$tmp/iss")
st=$(jlogin "$POD_OLD")
[ "$st" = 200 ] || fail "jwt login with the pinned key gave $st: $(cat "$tmp/resp")"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["auth"]; assert a["policies"]==["default","payments-read"] and a["metadata"]=={"role":"payments-api"}, a' "$tmp/resp" \
  || fail "jwt login body"
ok "configure-auth --jwt: auth/$JMOUNT validates pod tokens offline with the pinned key"

# --- issuer key rotation: the API server publishes a new key beside the old
# one; the operator pushes the set, the bridge pins it (check-and-set), and a
# token signed by the NEW key then re-bootstraps (it would be bad_token if
# the pinned set had not been updated)
wait_for "$tmp/operator.log" 'issuer keys pushed' 15
mkdir -m 700 "$tmp/iss2"
"$ISSUER" "$tmp/iss2"
python3 - "$tmp/iss/jwks.json" "$tmp/iss2/jwks.json" > "$tmp/jwks-union.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
print(json.dumps({"keys": a["keys"] + b["keys"]}))
EOF
cp "$tmp/jwks-union.json" "$tmp/jwks-served.json"
kill -HUP "$k8s_pid"
wait_for "$tmp/bridge.log" 'pinned issuer keys updated \(2 keys\)' 20
ok "rotation: new issuer key published beside the old one -> pushed and pinned (2 keys)"
wait_for "$tmp/bridge.log" "Vault auth/$JMOUNT/config now has the rotated issuer keys" 20
st=$(vault GET "auth/$JMOUNT/config" "" root-token)
python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["data"]["jwt_validation_pubkeys"])==2' "$tmp/resp" \
  || fail "jwt config after the rotation"
POD_NEW=$(pod_token "$tmp/iss2")
st=$(jlogin "$POD_NEW")
[ "$st" = 200 ] || fail "jwt login with the rotated-in key gave $st: $(cat "$tmp/resp")"
st=$(jlogin "$POD_OLD")
[ "$st" = 200 ] || fail "jwt login with the old key during the rotation gave $st"
ok "rotation: the bridge rewrote auth/$JMOUNT/config (2 keys); a token of the new key logs in"
kill "$op_pid"
wait "$op_pid" 2>/dev/null || true
timeout 60 "$OPERATOR" "${B[@]}" --kubeconfig "$KC" --token-file "$tmp/iss2/token" \
  --jwks-interval 0 --request '{"op":"ping"}' --exit-after-request --timeout 30 -o json \
  > "$tmp/operator2.out" 2> "$tmp/operator2.log" || fail "operator with the new key's token"
grep -q '"event":"bootstrap_issued".*re-issued' "$tmp/operator2.out" || fail "no re-bootstrap"
grep -q '"op":"pong"' "$tmp/operator2.out" || fail "no answer after the re-bootstrap"
ok "a token signed by the rotated-in key re-bootstraps against the updated pinned set"

# the old key is dropped: pinned set and Vault's JWT config follow
"$ISSUER" "$tmp/iss2" > /dev/null # a fresh operator token (the last one is in the replay list)
cp "$tmp/iss2/jwks.json" "$tmp/jwks-served.json"
kill -HUP "$k8s_pid"
"$OPERATOR" "${B[@]}" --kubeconfig "$KC" --token-file "$tmp/iss2/token" -o json \
  --jwks-interval 1 > "$tmp/operator3.out" 2> "$tmp/operator3.log" &
pids+=($!)
wait_for "$tmp/bridge.log" 'pinned issuer keys updated \(1 keys\)' 30
n=0
until [ "$(grep -c "Vault auth/$JMOUNT/config now has the rotated issuer keys" "$tmp/bridge.log")" -ge 2 ]; do
  n=$((n + 1)); [ $n -lt 100 ] || fail "Vault JWT config not updated after the old key was dropped"
  sleep 0.2
done
st=$(vault GET "auth/$JMOUNT/config" "" root-token)
python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["data"]["jwt_validation_pubkeys"])==1' "$tmp/resp" \
  || fail "jwt config after the old key was dropped"
st=$(jlogin "$POD_OLD")
[ "$st" = 403 ] && grep -q 'no known key successfully validated' "$tmp/resp" \
  || fail "a token of the dropped key gave $st: $(cat "$tmp/resp")"
st=$(jlogin "$POD_NEW")
[ "$st" = 200 ] || fail "jwt login with the new key after the drop gave $st"
ok "old key dropped: Vault's JWT auth refuses its tokens (403), the new key's still log in"
if grep -qF -- "bridge-token" "$tmp/bridge.log" "$tmp/bridge.out"; then
  fail "the bridge printed its Vault token"
fi

echo "$checks passed, 0 failed"
