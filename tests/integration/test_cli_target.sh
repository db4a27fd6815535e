#!/usr/bin/env bash
# test_cli_target.sh CLOUDTASER FAKE_K8S - drives the real
# `cloudtaser target fingerprint` against tests/fake-k8s (HTTPS on
# 127.0.0.1): kubeconfig with a token, a token file and a client certificate
# (data and file forms), $KUBECONFIG (a merged list), in-cluster (service-account directory
# and KUBERNETES_SERVICE_HOST/PORT), text (the walkthrough's shape) and
# -o json, and the refusals (401, 403, unreachable, exec plugin, usage).
set -euo pipefail

ct=$1
fake=$2
tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
out=$tmp/out
err=$tmp/err

UID_MIXED=0AD50C05-1153-4508-9237-4cb2912e2c23
FP=0ad50c05-1153-4508-9237-4cb2912e2c23

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() {
  echo "FAIL: $*" >&2
  echo "--- stdout" >&2; cat "$out" >&2 || true
  echo "--- stderr" >&2; cat "$err" >&2 || true
  exit 1
}
run() { # run WANT_EXIT ARGS...
  local want=$1 rc=0
  shift
  timeout 60 "$ct" "$@" > "$out" 2> "$err" || rc=$?
  cat "$out" "$err" >> "$tmp/all"
  [ "$rc" -eq "$want" ] || fail "'cloudtaser $*' exited $rc, want $want"
}
# start_fake DIR ARGS...: starts tests/fake-k8s writing its configs into DIR;
# sets PORT.
start_fake() {
  local dir=$1 i
  shift
  mkdir -p "$dir"
  "$fake" --dir "$dir" --seconds 120 "$@" > "$dir/stdout" 2> "$dir/stderr" &
  pids+=($!)
  for i in $(seq 1 100); do
    if grep -q '^listening ' "$dir/stdout" 2>/dev/null; then break; fi
    sleep 0.05
  done
  PORT=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/stdout")
  [ -n "$PORT" ] || { cat "$dir/stderr" >&2; fail "fake-k8s did not start"; }
}

expected_text() {
  printf 'CloudTaser Cluster Fingerprint\n\n  Cluster ID: %s\n\nRegister this cluster on your secret store:\n  cloudtaser source register --fingerprint %s\n' "$1" "$1"
}

start_fake "$tmp/a" --uid "$UID_MIXED"
A=$tmp/a
APORT=$PORT

# --- usage
run 0 target fingerprint --help
grep -q "Usage: cloudtaser target fingerprint" "$out" || fail "--help"
run 0 --help; grep -q "target fingerprint" "$out" || fail "main --help lists target"
ok "--help"
run 2 target;                                        ok "missing command exits 2"
run 2 target frobnicate;                             ok "unknown command exits 2"
run 2 target fingerprint -o yaml;                    ok "bad -o exits 2"
run 2 target fingerprint --bogus;                    ok "unknown option exits 2"
run 2 target fingerprint extra;                      ok "extra argument exits 2"
run 2 target fingerprint --in-cluster --kubeconfig "$A/kubeconfig"; ok "--in-cluster with --kubeconfig exits 2"

# --- kubeconfig, token: exactly the walkthrough's output, canonical (lowercase) fingerprint
run 0 target fingerprint --kubeconfig "$A/kubeconfig"
diff <(expected_text "$FP") "$out" > "$tmp/diff" || { cat "$tmp/diff" >&2; fail "text output"; }
[ ! -s "$err" ] || fail "stderr not empty"
ok "kubeconfig (token): text output is the walkthrough's"

run 0 target fingerprint --kubeconfig "$A/kubeconfig" -o json
python3 - "$out" "$FP" "$PORT" <<'PY' || fail "json output"
import json, sys
d = json.load(open(sys.argv[1]))
fp, port = sys.argv[2], sys.argv[3]
assert d["fingerprint"] == fp and d["cluster_id"] == fp, d
assert d["source"] == "kubeconfig" and d["context"] == "fake", d
assert d["server"] == "https://127.0.0.1:" + port, d
assert d["register_command"] == "cloudtaser source register --fingerprint " + fp, d
PY
ok "kubeconfig (token): -o json"

for kc in kubeconfig-tokenfile kubeconfig-cert kubeconfig-files; do
  (cd "$A" && run 0 target fingerprint --kubeconfig "$kc")
  diff <(expected_text "$FP") "$out" > /dev/null || fail "$kc"
done
ok "kubeconfig with a token file (relative), client certificate data, client certificate files"

KUBECONFIG="$A/kubeconfig:/nonexistent" run 0 target fingerprint --context fake -o text
diff <(expected_text "$FP") "$out" > /dev/null || fail "KUBECONFIG"
ok "\$KUBECONFIG (a missing file skipped) and --context"

# $KUBECONFIG=a:b merged as kubectl does: the cluster and context in one file
# (no current-context), current-context and the user in another directory
mkdir -p "$tmp/split/users"
awk '/^users:/ { exit } !/^current-context:/ { print }' "$A/kubeconfig" > "$tmp/split/clusters.yaml"
{ echo "current-context: fake"; sed -n '/^users:/,$p' "$A/kubeconfig"; } > "$tmp/split/users/admin.yaml"
grep -q '^users:' "$tmp/split/clusters.yaml" && fail "split: users left in the first file"
grep -q '^clusters:' "$tmp/split/users/admin.yaml" && fail "split: clusters in the second file"
KUBECONFIG="$tmp/split/clusters.yaml:$tmp/split/users/admin.yaml" run 0 target fingerprint
diff <(expected_text "$FP") "$out" > /dev/null || fail "KUBECONFIG=a:b"
KUBECONFIG="::$tmp/split/nothing:$tmp/split/users/admin.yaml:$tmp/split/clusters.yaml" \
  run 0 target fingerprint -o json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["source"]=="kubeconfig" and d["context"]=="fake" and d["fingerprint"]==sys.argv[2], d' "$out" "$FP" || fail "KUBECONFIG=b:a json"
ok "\$KUBECONFIG=a:b merged (current-context and user from one file, cluster from the other)"
KUBECONFIG="$tmp/split/clusters.yaml" run 1 target fingerprint
grep -q "has no current-context" "$err" || fail "KUBECONFIG=a alone: message"
echo "clusters: [unclosed" > "$tmp/split/bad.yaml"
KUBECONFIG="$tmp/split/clusters.yaml:$tmp/split/users/admin.yaml:$tmp/split/bad.yaml" \
  run 1 target fingerprint
grep -q "$tmp/split/bad.yaml: not valid YAML" "$err" || fail "malformed third file: message"
ok "\$KUBECONFIG: one file alone lacks the context; a malformed file in the list is named"

# --- in-cluster: the service account directory plus KUBERNETES_SERVICE_*
env -u KUBECONFIG KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$PORT" \
  HOME="$tmp/nohome" "$ct" target fingerprint --service-account-dir "$A/serviceaccount" -o json \
  > "$out" 2> "$err" || fail "in-cluster"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["source"]=="in-cluster" and d["fingerprint"]==sys.argv[2] and d["context"]=="", d' "$out" "$FP" || fail "in-cluster json"
ok "in-cluster (--service-account-dir, KUBERNETES_SERVICE_HOST/PORT): -o json"
env -u KUBECONFIG KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$PORT" \
  "$ct" target fingerprint --in-cluster --service-account-dir "$A/serviceaccount" \
  > "$out" 2> "$err" || fail "in-cluster text"
diff <(expected_text "$FP") "$out" > /dev/null || fail "in-cluster text output"
ok "in-cluster: text"
env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT \
  "$ct" target fingerprint --in-cluster > "$out" 2> "$err" && fail "in-cluster outside a pod"
grep -q "not running in a cluster" "$err" || fail "in-cluster outside a pod: message"
ok "--in-cluster outside a pod: clear error"

# --- refusals
sed 's/token: fake-admin-token/token: wrong-token/' "$A/kubeconfig" > "$tmp/kc-bad"
run 1 target fingerprint --kubeconfig "$tmp/kc-bad"
grep -q "the token was rejected (401 Unauthorized)" "$err" || fail "401 message"
[ ! -s "$out" ] || fail "401 printed something on stdout"
ok "a rejected token: exit 1, 401 message"

start_fake "$tmp/deny" --deny
run 1 target fingerprint --kubeconfig "$tmp/deny/kubeconfig"
grep -qF 'namespaces "kube-system" is forbidden: User "system:serviceaccount:cloudtaser:cloudtaser-operator" cannot get resource "namespaces"' "$err" \
  || fail "403 message"
ok "no RBAC: exit 1, the API server's 403 message"

sed "s#server: https://127.0.0.1:$APORT#server: https://127.0.0.1:1#" "$A/kubeconfig" > "$tmp/kc-closed"
run 1 target fingerprint --kubeconfig "$tmp/kc-closed"
grep -q "refused" "$err" || fail "unreachable message"
ok "unreachable API server: exit 1"

cat > "$tmp/kc-exec" <<EOF
apiVersion: v1
kind: Config
current-context: eks
clusters:
- name: eks
  cluster: {server: "https://127.0.0.1:$APORT", certificate-authority-data: "$(base64 -w0 < "$A/serviceaccount/ca.crt")"}
contexts:
- name: eks
  context: {cluster: eks, user: aws}
users:
- name: aws
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws, args: [eks, get-token]}
EOF
run 1 target fingerprint --kubeconfig "$tmp/kc-exec"
grep -q "exec credential plugins are not supported; use a token or client certificate" "$err" \
  || fail "exec message"
ok "exec credential plugin: exit 1, not supported"

run 1 target fingerprint --kubeconfig "$tmp/nonexistent"
grep -q "$tmp/nonexistent" "$err" || fail "missing kubeconfig message"
ok "missing kubeconfig: exit 1, names the file"

start_fake "$tmp/flaky" --fault 500:2
run 0 target fingerprint --kubeconfig "$tmp/flaky/kubeconfig"
grep -q "Cluster ID: 6f2b8c3a-1d4e-4f5a-9b7c-8e0d1a2b3c4d" "$out" || fail "flaky"
ok "two 500s are retried (fixture kube-system UID)"

# nothing the CLI printed carries the token
! grep -q "fake-admin-token" "$tmp/all" || fail "token in output"
ok "no output carries the token"

echo "$checks passed, 0 failed"
