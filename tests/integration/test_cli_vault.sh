#!/usr/bin/env bash
# test_cli_vault.sh CLOUDTASER FAKE_VAULT FIXTURES - the real `cloudtaser
# source ...` commands against tests/fake-vault (HashiCorp Vault and OpenBao
# flavours), as the system's walkthrough runs them:
#   cloudtaser source register --fingerprint FP --vault-address URL --vault-token T
# then status, list, deregister; the records as Vault shows them under
# cloudtaser/data/clusters/<fp>/...; VAULT_* variables, token files, and the
# refusals (bad token, no policy, skip-verify without force, http://, mixed
# stores). No output carries the token or private key text.
set -euo pipefail

ct=$1
fake=$2
fixtures=$3
ca=$fixtures/tls/ca.pem
tmp=$(mktemp -d)
fv_pid=
cleanup() {
  if [ -n "$fv_pid" ]; then kill "$fv_pid" 2>/dev/null || true; wait "$fv_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
out=$tmp/out
err=$tmp/err
all=$tmp/all-output
: > "$all"
unset VAULT_ADDR VAULT_TOKEN VAULT_NAMESPACE VAULT_CACERT VAULT_CAPATH VAULT_CLIENT_CERT \
      VAULT_CLIENT_KEY VAULT_SKIP_VERIFY VAULT_MAX_RETRIES VAULT_CLIENT_TIMEOUT CLOUDTASER_STORE
export HOME=$tmp  # no ~/.vault-token from the machine

FP=0ad50c05-1153-4508-9237-4cb2912e2c23
FP2=11111111-2222-4333-8444-555555555555
TOKEN=hvs.CAESIJ0cliTestToken0123456789abcdefghijklmnopqrstuvwxyzABCD
WEAK=hvs.CAESIJ0weakToken0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() {
  echo "FAIL: $*" >&2
  echo "--- stdout" >&2; cat "$out" >&2 || true
  echo "--- stderr" >&2; cat "$err" >&2 || true
  exit 1
}
run() {
  local want=$1 rc=0
  shift
  "$ct" "$@" > "$out" 2> "$err" || rc=$?
  cat "$out" "$err" >> "$all"
  [ "$rc" -eq "$want" ] || fail "'cloudtaser $*' exited $rc, want $want"
}
# vget PATH: the fake's answer to GET /v1/PATH (with the token), to stdout
vget() { curl -sS --cacert "$ca" -H "X-Vault-Token: $TOKEN" "$addr/v1/$1"; }
vstatus() { curl -sS -o /dev/null -w '%{http_code}' --cacert "$ca" -H "X-Vault-Token: $TOKEN" \
              -X "${2:-GET}" "$addr/v1/$1"; }

start_fake() { # start_fake FLAVOUR
  "$fake" --flavour "$1" --token "$TOKEN" --token-nopolicy "$WEAK" \
    --cert "$fixtures/tls/server.pem" --key "$fixtures/tls/server-key.pem" \
    > "$tmp/fv.out" 2> "$tmp/fv.err" &
  fv_pid=$!
  local i
  for i in $(seq 1 100); do
    grep -q '^listening ' "$tmp/fv.out" 2>/dev/null && break
    kill -0 "$fv_pid" 2>/dev/null || { cat "$tmp/fv.err" >&2; fail "fake-vault died"; }
    sleep 0.1
  done
  port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/fv.out")
  [ -n "$port" ] || fail "fake-vault did not start"
  addr=https://127.0.0.1:$port
}
stop_fake() {
  kill "$fv_pid"; wait "$fv_pid" 2>/dev/null || true; fv_pid=
}

for flavour in vault openbao; do
  start_fake "$flavour"
  V=(--vault-address "$addr" --vault-token "$TOKEN" --vault-cacert "$ca")

  run 0 source register --fingerprint "$FP" "${V[@]}" --expiry 2h
  grep -q "^Registered cluster $FP" "$out" || fail "register output"
  grep -Fq "Store:            vault $addr (KV v2 mount cloudtaser)" "$out" || fail "store line"
  grep -Fq "Records:          cloudtaser/data/clusters/$FP/{ca,bridge,registered}" "$out" \
    || fail "records line"
  grep -Eq "Init room: +[0-9a-f]{16}\.\.\.$" "$out" || fail "init room prefix"
  ok "$flavour: register --vault-address --vault-token"

  # the records as Vault shows them: readable JSON under cloudtaser/data/clusters/<fp>/
  vget "cloudtaser/data/clusters/$FP/registered" > "$tmp/reg.json"
  python3 - "$FP" "$tmp/reg.json" "$flavour" <<'PY' || fail "registered record in vault"
import json, sys
fp, path, flavour = sys.argv[1], sys.argv[2], sys.argv[3]
d = json.load(open(path))
rec = d["data"]["data"]
assert rec["v"] == 1 and rec["fingerprint"] == fp, rec
assert rec["expires_at"] - rec["registered_at"] == 2 * 3600 * 1000, rec
assert len(rec["init_room"]) == 64 and len(rec["operational_room"]) == 64, rec
assert d["data"]["metadata"]["version"] == 1, d
assert ("mount_type" in d) == (flavour == "vault"), d
PY
  vget "cloudtaser/data/clusters/$FP/ca" | python3 -c '
import json, sys
rec = json.load(sys.stdin)["data"]["data"]
assert rec["cert"].startswith("-----BEGIN CERTIFICATE-----"), rec.keys()
assert "PRIVATE KEY" in rec["key"]
' || fail "ca record in vault"
  vget "cloudtaser/metadata/clusters/$FP/?list=true" | python3 -c '
import json, sys
assert json.load(sys.stdin)["data"]["keys"] == ["bridge", "ca", "registered"]
' || fail "LIST of the cluster folder"
  ok "$flavour: records under cloudtaser/data/clusters/<fp>/{ca,bridge,registered}"

  # the store's layout record, readable as KV data
  vget "cloudtaser/data/system/layout" | python3 -c '
import json, sys
rec = json.load(sys.stdin)["data"]["data"]
assert rec["v"] == 1 and rec["layout"] == 1 and rec["created_at"] > 1700000000000, rec
assert sorted(rec) == ["created_at", "layout", "v"], rec
' || fail "system/layout record in vault"
  ok "$flavour: cloudtaser/data/system/layout says layout 1"
  # a store laid out by a newer cloudtaser: status, list and register refuse
  curl -sS -o /dev/null --cacert "$ca" -H "X-Vault-Token: $TOKEN" -X POST \
    -d '{"data":{"created_at":1,"layout":2,"v":1}}' "$addr/v1/cloudtaser/data/system/layout"
  for cmd in "status --fingerprint $FP" "list" "register --fingerprint $FP2"; do
    # shellcheck disable=SC2086
    run 1 source $cmd "${V[@]}"
    grep -q "store layout 2 is newer than this cloudtaser (1): upgrade" "$err" \
      || fail "$cmd on a newer layout: $(cat "$err")"
  done
  curl -sS -o /dev/null --cacert "$ca" -H "X-Vault-Token: $TOKEN" -X POST \
    -d '{"data":{"created_at":1,"layout":1,"v":1}}' "$addr/v1/cloudtaser/data/system/layout"
  ok "$flavour: a newer store layout is refused by status, list and register"

  run 0 source status --fingerprint "$FP" "${V[@]}"
  grep -q "^$FP  *registered " "$out" || fail "status row"
  run 0 source status --fingerprint "$FP" "${V[@]}" -o json
  python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["fingerprint"] == sys.argv[1] and d["state"] == "registered", d
' "$FP" < "$out" || fail "status json"
  ok "$flavour: status (text, json)"

  run 1 source register --fingerprint "$FP" "${V[@]}"
  grep -q "already registered; deregister first" "$err" || fail "conflict message"
  ok "$flavour: second register refused (create-only in vault)"

  # the same through the environment, and a token file
  printf '%s\n' "$TOKEN" > "$tmp/token"
  VAULT_ADDR=$addr VAULT_CACERT=$ca run 0 source register --fingerprint "$FP2" \
    --vault-token-file "$tmp/token"
  VAULT_ADDR=$addr VAULT_TOKEN=$TOKEN VAULT_CACERT=$ca run 0 source list -o json
  python3 -c '
import json, sys
d = json.load(sys.stdin)
assert sorted(x["fingerprint"] for x in d) == sorted(sys.argv[1:]), d
' "$FP" "$FP2" < "$out" || fail "list json"
  printf '%s\n' "$TOKEN" > "$HOME/.vault-token"
  VAULT_ADDR=$addr VAULT_CACERT=$ca run 0 source list
  [ "$(grep -c registered "$out")" -eq 2 ] || fail "list rows"
  rm -f "$HOME/.vault-token"
  ok "$flavour: VAULT_ADDR/VAULT_TOKEN/VAULT_CACERT, --vault-token-file, ~/.vault-token"

  # refusals, with messages a user can act on
  run 1 source list --vault-address "$addr" --vault-token hvs.not-a-real-token --vault-cacert "$ca"
  grep -q "check the token" "$err" || fail "bad token message"
  run 1 source status --fingerprint "$FP" --vault-address "$addr" --vault-token "$WEAK" \
    --vault-cacert "$ca"
  grep -q "permission denied" "$err" || fail "no-policy message"
  ok "$flavour: unknown token and token without policy (exit 1, actionable)"
  run 1 source list --vault-address "$addr" --vault-token "$TOKEN"
  grep -q "not trusted" "$err" || fail "untrusted certificate message"
  run 2 source list "${V[@]}" --vault-skip-verify
  grep -q -- "--force-insecure" "$err" || fail "skip-verify message"
  run 0 source list --vault-address "$addr" --vault-token "$TOKEN" --vault-skip-verify \
    --force-insecure
  ok "$flavour: untrusted certificate; --vault-skip-verify only with --force-insecure"
  run 2 source list --vault-address "http://127.0.0.1:$port" --vault-token "$TOKEN"
  grep -q "in the clear" "$err" || fail "http:// message"
  run 2 source list --store "$tmp/x.db" --vault-address "$addr"
  run 2 source list --vault-token "$TOKEN"
  grep -q -- "need --vault-address" "$err" || fail "missing address message"
  [ ! -e "$tmp/x.db" ] || fail "a usage error created a store"
  ok "$flavour: http://, --store with --vault-*, --vault-* without an address (exit 2)"

  run 0 source deregister --fingerprint "$FP" "${V[@]}"
  grep -q "^Deregistered cluster $FP" "$out" || fail "deregister output"
  [ "$(vstatus "cloudtaser/metadata/clusters/$FP/registered")" = 404 ] || fail "record left"
  [ "$(vstatus "cloudtaser/metadata/clusters/$FP/" LIST)" = 404 ] || fail "folder left"
  run 1 source status --fingerprint "$FP" "${V[@]}"
  grep -q "not registered" "$err" || fail "status after deregister"
  run 0 source deregister --fingerprint "$FP2" "${V[@]}"
  run 0 source list "${V[@]}" -o json
  [ "$(tr -d '[:space:]' < "$out")" = "[]" ] || fail "empty list json"
  [ "$(vstatus "cloudtaser/data/system/layout")" = 200 ] || fail "deregister removed system/layout"
  ok "$flavour: deregister removes every record and version (the layout record stays)"

  stop_fake
done

if grep -q "PRIVATE KEY" "$all"; then fail "private key text in CLI output"; fi
if grep -qF "$TOKEN" "$all"; then fail "the token in CLI output"; fi
ok "no private key text and no token in any output"
echo "all $checks checks passed"
