#!/usr/bin/env bash
# test_e2e.sh BUILD_DIR FIXTURES [sqlite|vault|openbao] - the whole system
# as real processes on loopback: cloudtaser-beacon, cloudtaser
# (register/deregister), cloudtaser-bridge, cloudtaser-operator, with the
# embedded SQLite store (default) or tests/fake-vault in the Vault or OpenBao
# flavour (through VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, as users set them).
#
# Checks: the happy path (bootstrap, operational session, a request),
# operator restart (attested re-bootstrap), restart without a token
# (refused), a replayed token (refused), an expired registration, an
# unregistered cluster, two bridges racing for one claim, deregistration
# during a session, and the beacon killed and restarted (both sides recover
# on their own). Every wait is bounded.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_beacon
port=${addr##*:}
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")
ok "beacon listening on $addr"

export CLOUDTASER_STORE=$tmp/store.db
store_kind=${3:-sqlite}
if [ "$store_kind" != sqlite ]; then
  export VAULT_TOKEN=hvs.CAESIJe2eTestToken0123456789abcdefghijklmnopqrstuvwxyzAB
  "$build/tests/fake-vault" --flavour "$store_kind" --token "$VAULT_TOKEN" \
    --cert "$fixtures/tls/server.pem" --key "$fixtures/tls/server-key.pem" \
    > "$tmp/vault.out" 2>> "$tmp/vault.log" &
  pids+=($!)
  wait_for "$tmp/vault.out" '^listening ' 15
  export VAULT_ADDR=https://$(sed -n 's/^listening //p' "$tmp/vault.out")
  export VAULT_CACERT=$fixtures/tls/ca.pem
  ok "fake $store_kind on $VAULT_ADDR is the store of the CLI and the bridges"
fi
FP=$(cat /proc/sys/kernel/random/uuid)
"$CT" source register --fingerprint "$FP" > "$tmp/register.log"
mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"
ok "cluster registered, issuer keys and token made"

start_bridge() { # NAME
  "$BRIDGE" "${B[@]}" --scan-interval 300 --metrics 127.0.0.1:0 -o json > "$tmp/$1.log" 2>&1 &
  pids+=($!)
  eval "${1}_pid=$!"
}
start_bridge bridge1

# the bridge's operations endpoint (port 0: several processes never collide)
wait_for "$tmp/bridge1.log" '"event":"metrics"' 10
bops=$(ops_addr "$tmp/bridge1.log")
wait_code "$bops" /readyz 200 10
[ "$(http_code "$bops" /healthz)" = 200 ] || fail "bridge /healthz"
curl -s --max-time 5 "http://$bops/metrics" | grep -q '^cloudtaser_bridge_store_ok 1$' \
  || fail "bridge /metrics has no cloudtaser_bridge_store_ok 1"
[ "$(http_code "$bops" /nope)" = 404 ] || fail "bridge ops: unknown path is not 404"
ok "bridge operations endpoint on $bops: healthy, ready once the store is scanned"

# SIGHUP without --pod-policy: logged, never fatal (systemctl reload must not stop it)
kill -HUP "$bridge1_pid"
wait_for "$tmp/bridge1.log" 'SIGHUP: nothing to reload' 5
kill -0 "$bridge1_pid" 2>/dev/null || fail "SIGHUP stopped the bridge"
[ "$(http_code "$bops" /healthz)" = 200 ] || fail "bridge /healthz after SIGHUP"
ok "SIGHUP without --pod-policy is logged and ignored"

# --- happy path (with the optional operational-room pin) -------------------
room=$("$CT" source status --fingerprint "$FP" -o json | sed -n 's/.*"operational_room":"\([0-9a-f]*\)".*/\1/p')
[ ${#room} = 64 ] || fail "status -o json has no operational_room"
"$OPERATOR" "${B[@]}" --fingerprint "$FP" --token-file "$tmp/iss/token" --operational-room "$room" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 30 -o json > "$tmp/op1.log" 2>&1 || fail "operator: first bootstrap + request"
grep -q '"event":"bootstrap_issued"' "$tmp/op1.log" || fail "operator saw no certificate"
grep -q '"event":"session_up"' "$tmp/op1.log" || fail "operator saw no session"
grep -q '"op":"pong"' "$tmp/op1.log" || fail "no answer to the request"
wait_for "$tmp/bridge1.log" '"event":"claim_recorded"' 5
ok "first bootstrap, operational mTLS session, request answered"
# an operator that exits closes its session cleanly (GOAWAY), never a reset
grep '"event":"session_down"' "$tmp/op1.log" | grep -q 'operator stopping' \
  || fail "the operator's session did not end with a clean close: $(grep session_down "$tmp/op1.log")"
grep '"event":"session_down"' "$tmp/op1.log" | grep -q 'CT_E_RESET' \
  && fail "the operator's session ended with a reset"
ok "the exiting operator closed its session cleanly"
"$CT" source status --fingerprint "$FP" -o json | grep -q '"state": *"initialized"' \
  || fail "status is not initialized"
ok "registration is initialized"
# (register.log is the CLI's own answer to the operator, who typed the
# fingerprint; the daemons' output must never carry it)
if grep -hq -- "$FP" "$tmp"/bridge*.log "$tmp"/op*.log "$tmp"/beacon.log; then
  fail "a daemon's output carries the full fingerprint"
fi
grep -hq "$(head -c 40 "$tmp/iss/token")" "$tmp"/*.log && fail "a log line carries the token"
if [ "$store_kind" != sqlite ] && grep -hqF -- "$VAULT_TOKEN" "$tmp"/*.log; then
  fail "a log line carries the Vault token"
fi
ok "no full fingerprint and no token in the daemons' output"

# --- restart without a token: the one-time door stays shut ----------------
"$OPERATOR" "${B[@]}" --fingerprint "$FP" --request '{"op":"ping"}' --exit-after-request \
  --timeout 4 -o json > "$tmp/op-notoken.log" 2>&1 && fail "a tokenless restart got in"
grep -q '"event":"bootstrap_refused"' "$tmp/op-notoken.log" || fail "no refusal seen"
grep -q 'already_initialized\|bad_token\|BAD_TOKEN\|initialized' "$tmp/op-notoken.log" \
  || fail "refusal reason missing"
ok "restart without a token is refused"

# --- restart with a replayed token (same jti) -----------------------------
"$OPERATOR" "${B[@]}" --fingerprint "$FP" --token-file "$tmp/iss/token" \
  --request '{"op":"ping"}' --exit-after-request --timeout 4 -o json \
  > "$tmp/op-replay.log" 2>&1 && fail "a replayed token got in"
grep -qi 'replay' "$tmp/op-replay.log" || fail "replay not named in the refusal"
ok "replayed token is refused"

# --- restart with a fresh token: attested re-bootstrap ---------------------
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP" --token-file "$tmp/iss/token" \
  --request '{"op":"ping"}' --exit-after-request --timeout 30 -o json \
  > "$tmp/op-reboot.log" 2>&1 || fail "re-bootstrap with a fresh token"
grep -q 're-issued' "$tmp/op-reboot.log" || fail "not a re-issue"
grep -q '"op":"pong"' "$tmp/op-reboot.log" || fail "no answer after re-bootstrap"
ok "operator restart: attested re-bootstrap, same CA, request answered"

# --- a token from another issuer ------------------------------------------
mkdir -m 700 "$tmp/evil"
"$ISSUER" "$tmp/evil"
"$OPERATOR" "${B[@]}" --fingerprint "$FP" --token-file "$tmp/evil/token" \
  --request '{"op":"ping"}' --exit-after-request --timeout 4 -o json \
  > "$tmp/op-evil.log" 2>&1 && fail "a foreign issuer's token got in"
grep -q 'bad_token\|BAD_TOKEN\|signature\|key' "$tmp/op-evil.log" || fail "no bad-token refusal"
ok "token signed by a foreign issuer is refused"

# --- an unregistered cluster: no bridge answers its rooms -----------------
FP_UNREG=$(cat /proc/sys/kernel/random/uuid)
"$OPERATOR" "${B[@]}" --fingerprint "$FP_UNREG" --token-file "$tmp/iss/token" \
  --request '{"op":"ping"}' --exit-after-request --timeout 3 -o json \
  > "$tmp/op-unreg.log" 2>&1 && fail "an unregistered cluster got a session"
grep -q '"event":"session_up"' "$tmp/op-unreg.log" && fail "unregistered: session up"
grep -q '"event":"bootstrap_issued"' "$tmp/op-unreg.log" && fail "unregistered: issued"
ok "unregistered cluster gets nothing"

# --- an expired registration ---------------------------------------------
FP_EXP=$(cat /proc/sys/kernel/random/uuid)
"$CT" source register --fingerprint "$FP_EXP" --expiry 1s > /dev/null
sleep 1.5
wait_for "$tmp/bridge1.log" "\"cluster_added\".*\"cluster\":\"${FP_EXP:0:8}\"|\"cluster\":\"${FP_EXP:0:8}\".*cluster_added" 5
"$OPERATOR" "${B[@]}" --fingerprint "$FP_EXP" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 4 -o json > "$tmp/op-exp.log" 2>&1 && fail "an expired registration bootstrapped"
grep -q 'expired' "$tmp/op-exp.log" || fail "expiry not named in the refusal"
ok "expired registration is refused"
"$CT" source deregister --fingerprint "$FP_EXP" > /dev/null

# --- two bridges racing for one claim --------------------------------------
FP2=$(cat /proc/sys/kernel/random/uuid)
start_bridge bridge2
"$CT" source register --fingerprint "$FP2" > /dev/null
wait_for "$tmp/bridge2.log" "cluster_added.*${FP2:0:8}|${FP2:0:8}.*cluster_added" 10
wait_for "$tmp/bridge1.log" "cluster_added.*${FP2:0:8}|${FP2:0:8}.*cluster_added" 10
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP2" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 30 -o json > "$tmp/op2.log" 2>&1 || fail "bootstrap with two bridges"
sleep 0.5
claims=$(( $(count "$tmp/bridge1.log" "claim_recorded.*${FP2:0:8}|${FP2:0:8}.*claim_recorded") + \
           $(count "$tmp/bridge2.log" "claim_recorded.*${FP2:0:8}|${FP2:0:8}.*claim_recorded") ))
[ "$claims" = 1 ] || fail "two bridges: $claims claims recorded, want exactly 1"
ok "two bridges on one store: exactly one claim"

# --- a long-running operator: deregistration and beacon restart -------------
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP2" --token-file "$tmp/iss/token" -o json \
  --metrics 127.0.0.1:0 > "$tmp/op-long.log" 2>&1 &
op_long=$!
pids+=("$op_long")
wait_for "$tmp/op-long.log" '"event":"metrics"' 10
oops=$(ops_addr "$tmp/op-long.log")
[ "$(http_code "$oops" /healthz)" = 200 ] || fail "operator /healthz"
wait_for "$tmp/op-long.log" '"event":"session_up"' 30
ok "long-running operator connected"
wait_code "$oops" /readyz 200 5
curl -s --max-time 5 "http://$oops/metrics" | grep -q '^cloudtaser_operator_connected 1$' \
  || fail "operator /metrics does not say connected"
ok "operator /readyz 200 once bootstrapped and connected ($oops)"
sleep 0.3
"$CT" source status --fingerprint "$FP2" -o json | grep -q '"state":"connected"' \
  || fail "status does not say connected during a session"
ok "source status shows the cluster connected"

# beacon killed and restarted on the same port: both sides recover alone
kill -9 "$beacon_pid"
wait "$beacon_pid" 2>/dev/null || true
wait_for "$tmp/op-long.log" '"event":"session_down"' 10
wait_code "$oops" /readyz 503 5
[ "$(http_code "$oops" /healthz)" = 200 ] || fail "operator /healthz while reconnecting"
ok "operator /readyz 503 while the session is down, /healthz still 200"
sleep 1
start_beacon "$port"
ups_before=1
for ((i = 0; i < 300; i++)); do
  [ "$(count "$tmp/op-long.log" '"event":"session_up"')" -gt "$ups_before" ] && break
  sleep 0.1
done
[ "$(count "$tmp/op-long.log" '"event":"session_up"')" -gt "$ups_before" ] \
  || fail "the operator did not reconnect after the beacon restart"
ok "beacon killed and restarted: the session came back by itself"
wait_code "$oops" /readyz 200 10
curl -s --max-time 5 "http://$oops/metrics" | grep -q '^cloudtaser_operator_reconnects_total [1-9]' \
  || fail "operator /metrics counts no reconnect"
ok "operator ready again; /metrics counts the reconnect"

# deregistration during the session: closed within seconds, rooms refused
downs=$(count "$tmp/op-long.log" '"event":"session_down"')
"$CT" source deregister --fingerprint "$FP2" > /dev/null
t0=$(date +%s%3N)
for ((i = 0; i < 100; i++)); do
  [ "$(count "$tmp/op-long.log" '"event":"session_down"')" -gt "$downs" ] && break
  sleep 0.1
done
[ "$(count "$tmp/op-long.log" '"event":"session_down"')" -gt "$downs" ] \
  || fail "deregistration did not close the session within 10 s"
ok "deregistration closed the live session in $(( $(date +%s%3N) - t0 )) ms"
wait_for "$tmp/bridge1.log" "cluster_removed.*${FP2:0:8}|${FP2:0:8}.*cluster_removed" 5
sleep 1.5
ups=$(count "$tmp/op-long.log" '"event":"session_up"')
sleep 2
[ "$(count "$tmp/op-long.log" '"event":"session_up"')" = "$ups" ] \
  || fail "a deregistered cluster got a session again"
ok "deregistered cluster's rooms stay unanswered"

kill -TERM "$op_long"; wait "$op_long" 2>/dev/null || true
kill -TERM "$bridge1_pid" "$bridge2_pid"
wait "$bridge1_pid" 2>/dev/null || true
wait "$bridge2_pid" 2>/dev/null || true
ok "clean shutdown"
echo "1..$checks"
