#!/usr/bin/env bash
# test_cli_source.sh CLOUDTASER - drives the real `cloudtaser source ...`
# commands on a temporary SQLite store: register, status, list (text and
# -o json), deregister, exit codes, the store file mode, and that no output
# ever carries private key text.
set -euo pipefail
# the SQLite store: no Vault from the environment
unset VAULT_ADDR VAULT_TOKEN

ct=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
store=$tmp/store.db
out=$tmp/out
err=$tmp/err
all=$tmp/all-output
: > "$all"

FP=0ad50c05-1153-4508-9237-4cb2912e2c23
FP2=11111111-2222-4333-8444-555555555555

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() {
  echo "FAIL: $*" >&2
  echo "--- stdout" >&2; cat "$out" >&2 || true
  echo "--- stderr" >&2; cat "$err" >&2 || true
  exit 1
}
# run WANT_EXIT ARGS...: runs the tool, keeps its output, checks the status.
run() {
  local want=$1 rc=0
  shift
  "$ct" "$@" > "$out" 2> "$err" || rc=$?
  cat "$out" "$err" >> "$all"
  [ "$rc" -eq "$want" ] || fail "'cloudtaser $*' exited $rc, want $want"
}
is_json() { python3 -c 'import json,sys; json.load(sys.stdin)' < "$out" || fail "not JSON"; }

run 0 --help;                 grep -q "source register" "$out" || fail "--help"; ok "--help"
run 0 --version;              grep -q "^cloudtaser " "$out" || fail "--version"; ok "--version"
for c in register deregister status list; do
  run 0 source "$c" --help;   grep -q "Usage: cloudtaser source $c" "$out" || fail "$c --help"
done
ok "every command has --help"

run 2 source register --store "$store"
grep -q -- "--fingerprint is required" "$err" || fail "missing --fingerprint message"
[ ! -e "$store" ] || fail "a usage error created the store"
ok "missing --fingerprint exits 2"
run 2 source register --fingerprint "$FP" --store "$store" --expiry 10x;  ok "bad --expiry exits 2"
run 2 source frobnicate;                                                 ok "unknown command exits 2"
run 2 source list --store "$store" --bogus;                              ok "unknown option exits 2"
run 2 source status --fingerprint "$FP" --store "$store" -o yaml;        ok "bad -o exits 2"

run 1 source register --fingerprint not-a-uuid --store "$store"
grep -q "fingerprint" "$err" || fail "bad fingerprint message"
ok "bad fingerprint exits 1 with a message"

run 0 source register --fingerprint "${FP^^}" --store "$store" --expiry 90m
grep -q "^Registered cluster $FP" "$out" || fail "register output"
grep -q "$store" "$out" || fail "register names the store"
grep -Eq "Init room: +[0-9a-f]{16}\.\.\.$" "$out" || fail "init room prefix"
grep -Eq "Operational room: +[0-9a-f]{16}\.\.\.$" "$out" || fail "operational room prefix"
grep -q "Expires:" "$out" || fail "expiry"
ok "register"
[ "$(stat -c %a "$store")" = 600 ] || fail "store mode $(stat -c %a "$store")"
ok "store file mode 0600"

run 1 source register --fingerprint "$FP" --store "$store"
grep -q "already registered; deregister first" "$err" || fail "conflict message"
ok "second register exits 1 (already registered)"

CLOUDTASER_STORE=$store run 0 source register --fingerprint "$FP2" --expiry 3600s
ok "register through \$CLOUDTASER_STORE"

run 0 source status --fingerprint "$FP" --store "$store"
grep -q "^FINGERPRINT  *STATE  *REGISTERED  *EXPIRES" "$out" || fail "status header"
grep -q "^$FP  *registered " "$out" || fail "status row"
ok "status (text)"
run 0 source status --fingerprint "$FP" --store "$store" -o json; is_json
python3 -c '
import json,sys
d = json.load(sys.stdin)
assert d["fingerprint"] == sys.argv[1] and d["state"] == "registered", d
assert d["expires_at_ms"] - d["registered_at_ms"] == 90 * 60 * 1000, d
assert len(d["init_room_prefix"]) == 16, d
' "$FP" < "$out" || fail "status json fields"
ok "status -o json"

# --ca-out: the public CA certificate; its DER hashes to the operational room
room=$(sed -n 's/.*"operational_room":"\([0-9a-f]*\)".*/\1/p' "$out")
run 0 source status --fingerprint "$FP" --store "$store" --ca-out "$tmp/ca.crt"
[ "$(stat -c %a "$tmp/ca.crt")" = 644 ] || fail "--ca-out file mode"
grep -q 'BEGIN CERTIFICATE' "$tmp/ca.crt" || fail "--ca-out is not PEM"
grep -q PRIVATE "$tmp/ca.crt" && fail "--ca-out carries a key"
[ "$(openssl x509 -in "$tmp/ca.crt" -outform DER | sha256sum | cut -c1-64)" = "$room" ] \
  || fail "--ca-out: not the certificate of the operational room"
run 2 source list --store "$store" --ca-out "$tmp/x.crt"
[ ! -e "$tmp/x.crt" ] || fail "list wrote --ca-out"
ok "status --ca-out writes the cluster CA certificate (the operational room's), no key"

run 0 source list --store "$store"
[ "$(grep -c registered "$out")" -eq 2 ] || fail "list rows"
ok "list (text)"
run 0 source list --store "$store" -o json; is_json
python3 -c '
import json,sys
d = json.load(sys.stdin)
assert sorted(x["fingerprint"] for x in d) == sorted(sys.argv[1:]), d
' "$FP" "$FP2" < "$out" || fail "list json"
ok "list -o json"

# Secrets migrated from the cluster (migrate_server.c layout): deregister
# refuses to delete them unless told to keep or delete them
migrated() { # N: puts N migration records below clusters/$FP/secrets/
  python3 - "$store" "$FP" "$1" <<'EOF'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
for i in range(int(sys.argv[3])):
    v = '{"v":1,"namespace":"apps","name":"s%d","state":"deleted"}' % i
    db.execute("INSERT INTO kv(key, value, version, updated_ms) VALUES (?, ?, 1, ?)",
               ("clusters/%s/secrets/apps/s%d" % (sys.argv[2], i), v.encode(), int(time.time() * 1000)))
db.commit()
EOF
}
keys() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM kv WHERE key LIKE ?", (sys.argv[2] + "%",)).fetchone()[0])' "$store" "$1"; }
migrated 3
before=$(keys "clusters/$FP/")
run 1 source deregister --fingerprint "$FP" --store "$store"
grep -q "3 migrated Secret copies" "$err" && grep -q -- "--keep-data" "$err" && grep -q -- "--delete-data" "$err" \
  || fail "refusal message"
[ "$(keys "clusters/$FP/")" = "$before" ] || fail "a refused deregister deleted records"
ok "deregister with migrated copies: exit 1, the count and both options named, nothing deleted"
run 2 source deregister --fingerprint "$FP" --store "$store" --keep-data --delete-data
run 2 source status --fingerprint "$FP" --store "$store" --keep-data
ok "--keep-data with --delete-data, or outside deregister: usage error"
run 0 source deregister --fingerprint "$FP" --store "$store" --keep-data
grep -q "^Deregistered cluster $FP" "$out" && grep -q "^Kept 3 migrated Secret copies" "$out" \
  || fail "keep-data output"
[ "$(keys "clusters/$FP/secrets/")" = 3 ] && [ "$(keys "clusters/$FP/")" = 3 ] || fail "keep-data kept the wrong records"
run 1 source status --fingerprint "$FP" --store "$store"
ok "deregister --keep-data: the cluster is revoked, its 3 migrated copies stay"
run 1 source deregister --fingerprint "$FP" --store "$store"
grep -q "not registered (3 migrated Secret copies are kept" "$err" || fail "kept-data message"
run 0 source register --fingerprint "$FP" --store "$store"
run 0 source deregister --fingerprint "$FP" --store "$store" --delete-data
grep -q "^Deleted 3 migrated Secret copies" "$out" || fail "delete-data output"
[ "$(keys "clusters/$FP/")" = 0 ] || fail "delete-data left records"
ok "re-register over kept copies works; deregister --delete-data deletes them, count printed"
run 0 source register --fingerprint "$FP" --store "$store"
run 0 source deregister --fingerprint "$FP" --store "$store"
grep -q "^Deregistered cluster $FP" "$out" || fail "deregister output"
ok "deregister"
run 1 source deregister --fingerprint "$FP" --store "$store"
grep -q "not registered" "$err" || fail "second deregister message"
ok "second deregister exits 1"
run 1 source status --fingerprint "$FP" --store "$store";  ok "status of a deregistered cluster exits 1"
run 1 source status --fingerprint "$FP" --store "$store" --ca-out "$tmp/gone.crt"
[ ! -e "$tmp/gone.crt" ] || fail "--ca-out of a deregistered cluster wrote a file"
run 0 source list --store "$store" -o json; is_json
python3 -c 'import json,sys; d = json.load(sys.stdin); assert len(d) == 1, d' < "$out" \
  || fail "list after deregister"
ok "list after deregister"
run 0 source deregister --fingerprint "$FP2" --store "$store"
run 0 source list --store "$store" -o json; is_json
[ "$(tr -d '[:space:]' < "$out")" = "[]" ] || fail "empty list json"
ok "empty list -o json is []"

# The store does hold key material; the output never does.
if grep -q "PRIVATE KEY" "$all"; then fail "private key text in CLI output"; fi
ok "no private key text in any output"
echo "all $checks checks passed"
