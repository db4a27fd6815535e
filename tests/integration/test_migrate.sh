#!/usr/bin/env bash
# test_migrate.sh BUILD_DIR FIXTURES [N] - the Secret migration with real
# processes: tests/fake-k8s with N (default 1000) Secrets plus four that must
# stay, a beacon, a bridge on the SQLite store, `cloudtaser source register`,
# and `cloudtaser target migrate plan|apply|restore` (apply and restore run
# cloudtaser-operator --migrate). Checks: every migrated Secret is in the
# store byte for byte and gone from Kubernetes; the skipped kinds stay; a
# Secret modified between its copy and its delete (fake-k8s
# --touch-before-delete) is kept, then migrated by a re-run; restore
# recreates them all; then apply again with the migrating operator killed
# (kill -9) at random points 20 times and resumed: nothing lost or
# duplicated. Prints the throughput in Secrets/s. Every wait is bounded.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
N=${3:-1000}
BEACON=$build/tools/cloudtaser-beacon
CT=$build/tools/cloudtaser
BRIDGE=$build/tools/cloudtaser-bridge
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
  for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
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

mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"
UID_=$(cat /proc/sys/kernel/random/uuid)
mkdir "$tmp/k8s"
"$FAKE" --dir "$tmp/k8s" --uid "$UID_" --jwks "$tmp/iss/jwks.json" --seconds 900 \
  --populate "apps:$N" --touch-before-delete apps/s-0005 > "$tmp/fake.log" 2>&1 &
pids+=($!)
wait_for "$tmp/fake.log" '^listening ' 10
KC=$tmp/k8s/kubeconfig

cp "$fixtures/tls/server.pem" "$tmp/beacon.pem"
cp "$fixtures/tls/server-key.pem" "$tmp/beacon-key.pem"
chmod 600 "$tmp/beacon-key.pem"
"$BEACON" --cert "$tmp/beacon.pem" --key "$tmp/beacon-key.pem" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --log-level warning > "$tmp/beacon.out" 2> "$tmp/beacon.log" &
pids+=($!)
wait_for "$tmp/beacon.out" '^listening ' 15
addr=$(sed -n 's/^listening //p' "$tmp/beacon.out")
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")

export CLOUDTASER_STORE=$tmp/store.db
"$CT" source register --fingerprint "$UID_" > "$tmp/register.log"
"$BRIDGE" "${B[@]}" --scan-interval 300 -o json > "$tmp/bridge.log" 2>&1 &
pids+=($!)

# the store, read directly: {name: (state, data)} of the migrated records
store_dump() {
  python3 - "$CLOUDTASER_STORE" "$UID_" <<'EOF'
import json, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
prefix = "clusters/%s/secrets/apps/" % sys.argv[2]
out = {}
for k, v in db.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                       (prefix, prefix + "\x7f")):
    r = json.loads(v)
    out[k[len(prefix):]] = [r["state"], r["data"]]
print(json.dumps(out))
EOF
}
# checks the dump against what fake-k8s --populate made: ARGS: dump file, N
check_store() {
  python3 - "$1" "$2" <<'EOF' || fail "store check: see above"
import base64, json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2])
want = {"s-%04d" % i: {"username": base64.b64encode(b"user-%d" % i).decode(),
                       "password": base64.b64encode(b'p@ss"word\\%d\n' % (i * 7919)).decode()}
        for i in range(n)}
bad = [k for k in want if k not in d or d[k][1] != want[k]]
extra = [k for k in d if k not in want]
if bad or extra:
    print("missing or different: %s; unexpected: %s" % (bad[:5], extra[:5])); sys.exit(1)
EOF
}
plan_left() { # the names still in Kubernetes (namespace apps), sorted
  "$CT" target migrate plan --kubeconfig "$KC" --namespace apps -o json |
    python3 -c 'import json,sys; print(" ".join(sorted(s["name"] for s in json.load(sys.stdin)["secrets"])))'
}
words() { python3 -c 'import sys; print(" ".join(sorted(sys.argv[1:])))' "$@"; }
SKIPPED="bootstrap-token-abcdef owned-tls sa-token sh.helm.release.v1.web.v1"

# plan: no vault token, only the cluster
"$CT" target migrate plan --kubeconfig "$KC" --namespace apps -o json > "$tmp/plan.json"
python3 - "$tmp/plan.json" "$N" <<'EOF' || fail "plan"
import json, sys
p = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert p["migrate"] == n and p["skip"] == 4, (p["migrate"], p["skip"])
why = {s["name"]: s["reason"] for s in p["secrets"] if s["action"] == "skip"}
assert why == {"sa-token": "service-account-token", "sh.helm.release.v1.web.v1": "helm-release",
               "bootstrap-token-abcdef": "bootstrap-token", "owned-tls": "owned"}, why
EOF
"$CT" target migrate plan --kubeconfig "$KC" --namespace apps | grep -q "^skip     apps/sa-token (kubernetes.io/service-account-token): a service-account token" \
  || fail "plan text"
ok "plan: $N to migrate, four skipped with their reasons"

migrate() { # LOG WHAT [extra...] -> exit status
  local log=$1 what=$2
  shift 2
  "$ISSUER" "$tmp/iss" # a fresh token for the (re-)bootstrap
  timeout 300 "$CT" target migrate "$what" "${B[@]}" --kubeconfig "$KC" \
    --token-file "$tmp/iss/token" --namespace apps -o json "$@" > "$tmp/$log.json" 2> "$tmp/$log.log"
}

# apply: everything but the modified one; it is kept
rc=0
migrate apply1 apply || rc=$?
[ "$rc" = 1 ] || fail "apply with a Secret modified meanwhile exited $rc, want 1"
python3 - "$tmp/apply1.json" "$N" <<'EOF' || fail "apply report"
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert (r["migrated"], r["kept"], r["skipped"], r["failed"]) == (n - 1, 1, 4, 0), r
kept = [i for i in r["items"] if i["outcome"] == "kept"]
assert kept[0]["name"] == "s-0005" and "re-run" in kept[0]["message"], kept
print("apply: %d Secrets in %.2f s = %.0f Secrets/s (operator -> beacon -> bridge -> SQLite; "
      "deletes on fake-k8s)" % (r["total"], r["seconds"], r["rate"]))
EOF
grep -q "Secrets/s" "$tmp/apply1.log" || fail "no progress display on stderr"
[ "$(plan_left)" = "$(words $SKIPPED s-0005)" ] || fail "left in Kubernetes: $(plan_left)"
store_dump > "$tmp/dump1.json"
check_store "$tmp/dump1.json" "$N"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["s-0005"][0]=="copied" and d["s-0004"][0]=="deleted"' \
  "$tmp/dump1.json" || fail "states"
ok "apply: $((N - 1)) in the store byte for byte and gone from Kubernetes; skipped kinds stay; the modified one kept"

migrate apply2 apply || fail "re-run exited $?"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert (r["migrated"], r["skipped"]) == (1, 4), r' \
  "$tmp/apply2.json" || fail "re-run report"
[ "$(plan_left)" = "$SKIPPED" ] || fail "left after re-run: $(plan_left)"
ok "re-run: the modified Secret migrated; only the skipped kinds remain"

migrate restore1 restore || fail "restore exited $?"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert (r["restored"], r["failed"]) == (int(sys.argv[2]), 0), r' \
  "$tmp/restore1.json" "$N" || fail "restore report"
[ "$("$CT" target migrate plan --kubeconfig "$KC" --namespace apps -o json |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["migrate"])')" = "$N" ] || fail "restore count"
ok "restore: $N Secrets recreated"

# kill -9 at random points, 20 times, then resume
killed=0
for round in $(seq 1 20); do
  if [ "$("$CT" target migrate plan --kubeconfig "$KC" --namespace apps -o json |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["migrate"])')" = 0 ]; then
    migrate "restore-r$round" restore || fail "restore before round $round" # work to kill
  fi
  "$ISSUER" "$tmp/iss"
  "$CT" target migrate apply "${B[@]}" --kubeconfig "$KC" --token-file "$tmp/iss/token" \
    --namespace apps -o json > "$tmp/kill.json" 2> "$tmp/kill-$round.log" &
  p=$!
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.2, 0.9), 2))')"
  if kill -9 "$p" 2>/dev/null; then killed=$((killed + 1)); fi
  wait "$p" 2>/dev/null || true
  echo "# round $round: $(grep -c 'Secrets/s' "$tmp/kill-$round.log" || true) progress lines; $(tail -n 1 "$tmp/kill-$round.log")"
done
left=$("$CT" target migrate plan --kubeconfig "$KC" --namespace apps -o json |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["migrate"])')
echo "# kill -9: $killed of 20 rounds killed mid-run; $left of $N Secrets still in Kubernetes"
# with the default N a run lasts longer than a round, so most rounds die mid-run
[ "$killed" -ge $((N >= 500 ? 15 : 1)) ] || fail "only $killed rounds were killed mid-run"
migrate apply3 apply || fail "resume exited $?"
[ "$(plan_left)" = "$SKIPPED" ] || fail "left after resume: $(plan_left)"
store_dump > "$tmp/dump3.json"
check_store "$tmp/dump3.json" "$N"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s={v[0] for v in d.values()}; assert s=={"deleted"}, s' \
  "$tmp/dump3.json" || fail "states after resume"
ok "kill -9 x20 (restoring when all was done) + resume: all $N in the store byte for byte, none duplicated, gone from Kubernetes"

migrate restore2 restore || fail "second restore exited $?"
[ "$("$CT" target migrate plan --kubeconfig "$KC" --namespace apps -o json |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["migrate"])')" = "$N" ] || fail "restore count"
ok "restore after the killed runs: $N recreated"

if grep -q -- "$UID_" "$tmp"/apply1.log "$tmp/bridge.log"; then fail "full fingerprint printed"; fi
if grep -q 'p@ss' "$tmp"/*.log "$tmp"/*.json; then fail "a Secret value was printed"; fi
ok "no full fingerprint and no Secret value in the output"
echo "$checks passed, 0 failed"
