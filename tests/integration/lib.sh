# lib.sh - shell helpers shared by the end-to-end scripts (test_e2e.sh,
# test_e2e_faults.sh). Source it after setting `build` and `fixtures`:
# it makes a temporary directory ($tmp), registers every background
# process started through it in `pids` and kills them all on exit.
# Every wait here is bounded.

BEACON=$build/tools/cloudtaser-beacon
CT=$build/tools/cloudtaser
BRIDGE=$build/tools/cloudtaser-bridge
OPERATOR=$build/tools/cloudtaser-operator
ISSUER=$build/examples/ct-dev-issuer

tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$tmp"/*.log; do
    [ -e "$f" ] || continue
    echo "--- $f" >&2; tail -n 40 "$f" >&2
  done
  exit 1
}
# wait_for FILE REGEX SECONDS: until a line of FILE matches.
wait_for() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no line matching '$2' in $1 within $3 s"
}
count() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 -g "http://$1$2" || true; }
# ops_addr LOG: the operations endpoint a bridge or operator printed (-o json)
ops_addr() { sed -n 's/.*"event":"metrics","address":"\([^"]*\)".*/\1/p' "$1" | head -1; }
# wait_code ADDR PATH CODE SECONDS: until the endpoint answers CODE
wait_code() {
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    [ "$(http_code "$1" "$2")" = "$3" ] && return 0
    sleep 0.1
  done
  fail "http://$1$2 did not answer $3 within $4 s (last: $(http_code "$1" "$2"))"
}
# an event of cluster FP (first 8 characters, as the daemons print it)
ev() { echo "\"$1\".*${2:0:8}|${2:0:8}.*\"$1\""; }

# The beacon uses the fixture server certificate (IP 127.0.0.1), so it can
# be restarted with the same identity; clients verify it by the fixture CA.
cp "$fixtures/tls/server.pem" "$tmp/beacon.pem"
cp "$fixtures/tls/server-key.pem" "$tmp/beacon-key.pem"
chmod 600 "$tmp/beacon-key.pem"
beacon_pid=
# start_beacon [PORT]: sets beacon_pid and addr (127.0.0.1:PORT)
start_beacon() {
  "$BEACON" --cert "$tmp/beacon.pem" --key "$tmp/beacon-key.pem" \
    --listen "127.0.0.1:${1:-0}" --metrics 127.0.0.1:0 --log-level warning \
    > "$tmp/beacon.out" 2>> "$tmp/beacon.log" &
  beacon_pid=$!
  pids+=("$beacon_pid")
  wait_for "$tmp/beacon.out" '^listening ' 15
  addr=$(sed -n 's/^listening //p' "$tmp/beacon.out")
}

unset VAULT_ADDR VAULT_TOKEN VAULT_CACERT VAULT_NAMESPACE VAULT_SKIP_VERIFY
