#!/usr/bin/env bash
# test_e2e_faults.sh BUILD_DIR FIXTURES - the bootstrap's fault cases as
# real processes on loopback (cloudtaser-beacon, cloudtaser,
# cloudtaser-bridge, cloudtaser-operator), the legitimate store being
# tests/fake-vault (OpenBao flavour), an attacker's a SQLite file:
#
#   a. a fingerprint one character off: nothing (no pairing, no certificate),
#      the registered cluster stays `registered`;
#   b. the bridge killed with SIGKILL after the one-time claim reached the
#      store and before its answer (the fake Vault commits the create-only
#      write of clusters/<fp>/initialized and holds its answer back): the
#      claim stays recorded, nobody got a certificate, a fresh bridge
#      refuses a second first bootstrap (already initialized), and
#      deregister + register lets the operator bootstrap;
#   c. an attacker's bridge (own store, own CA, same fingerprint) answering
#      the init room: an operator pinned to the legitimate operational room
#      discards its certificate, never opens a session with it, and
#      bootstraps against the legitimate bridge once that one is there;
#      without the pin, the attacker's bridge wins (why the pin exists);
#   d. an operator holding a certificate of a CA that is no longer the
#      cluster's (deregistered and registered again): it gets no
#      operational session with it and recovers by bootstrapping again;
#   e. a store whose layout record (system/layout) is newer than this
#      cloudtaser: the bridge exits 1 saying so, status refuses.
# Every wait is bounded; every process is killed on exit.
set -euo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_beacon
B=(--beacon "$addr" --beacon-ca "$fixtures/tls/ca.pem")
ok "beacon listening on $addr"

FP_A=$(cat /proc/sys/kernel/random/uuid)
FP_B=$(cat /proc/sys/kernel/random/uuid)
FP_C=$(cat /proc/sys/kernel/random/uuid)
FP_C2=$(cat /proc/sys/kernel/random/uuid)

# The legitimate store: fake OpenBao. The first write of FP_B's claim is
# committed and then answered only 8 s later (--hold-after-write);
# --verbose prints each request as it is executed.
vtoken=hvs.CAESIJe2eFaultToken0123456789abcdefghijklmnopqrstuvwxyzA
printf '%s' "$vtoken" > "$tmp/vault-token"
chmod 600 "$tmp/vault-token"
claim_path="clusters/$FP_B/initialized"
"$build/tests/fake-vault" --flavour openbao --token "$vtoken" --verbose \
  --cert "$fixtures/tls/server.pem" --key "$fixtures/tls/server-key.pem" \
  --hold-after-write "$claim_path:8000" > "$tmp/vault.out" 2>> "$tmp/vault.log" &
pids+=($!)
wait_for "$tmp/vault.out" '^listening ' 15
S1=(--vault-address "https://$(sed -n 's/^listening //p' "$tmp/vault.out")"
    --vault-cacert "$fixtures/tls/ca.pem" --vault-token-file "$tmp/vault-token")
# The attacker's store: a SQLite file of its own.
S2=(--store "$tmp/attacker.db")
ok "fake OpenBao (the legitimate store) and an attacker's SQLite store"

mkdir -m 700 "$tmp/iss"
"$ISSUER" "$tmp/iss"

start_bridge() { # NAME STORE-OPTIONS...
  local name=$1; shift
  "$BRIDGE" "${B[@]}" --scan-interval 300 -o json "$@" > "$tmp/$name.log" 2>&1 &
  pids+=($!)
  eval "${name}_pid=$!"
}
stop() { # PID...: SIGTERM, bounded wait, then SIGKILL
  local p i
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
state() { # FP STORE-OPTIONS...
  local fp=$1; shift
  "$CT" source status --fingerprint "$fp" "$@" -o json | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p'
}
op_room() { # FP STORE-OPTIONS...
  local fp=$1; shift
  "$CT" source status --fingerprint "$fp" "$@" -o json |
    sed -n 's/.*"operational_room": *"\([0-9a-f]*\)".*/\1/p'
}

# --- a. a fingerprint one character off -----------------------------------
"$CT" source register --fingerprint "$FP_A" "${S1[@]}" > /dev/null
start_bridge bridge1 "${S1[@]}"
wait_for "$tmp/bridge1.log" "$(ev cluster_added "$FP_A")" 15
last=${FP_A: -1}
FP_WRONG=${FP_A:0:35}$([ "$last" = 0 ] && echo 1 || echo 0)
[ "$FP_WRONG" != "$FP_A" ] && [ ${#FP_WRONG} = 36 ] || fail "could not make a near-miss fingerprint"
t0=$(date +%s%3N)
"$OPERATOR" "${B[@]}" --fingerprint "$FP_WRONG" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 4 -o json > "$tmp/op-wrong.log" 2>&1 && fail "a near-miss fingerprint got a session"
ok "near-miss fingerprint: the operator gave up after $(( $(date +%s%3N) - t0 )) ms"
grep -q '"event":"bootstrap_issued"' "$tmp/op-wrong.log" && fail "near miss: certificate issued"
grep -q '"event":"session_up"' "$tmp/op-wrong.log" && fail "near miss: session up"
[ "$(count "$tmp/bridge1.log" '"event":"init_paired"')" = 0 ] \
  || fail "the bridge was paired with the near-miss operator"
[ "$(state "$FP_A" "${S1[@]}")" = registered ] || fail "near miss changed the registration"
ok "near-miss fingerprint: no pairing, no certificate; the cluster stays registered"
# the door is still open for the right fingerprint
"$OPERATOR" "${B[@]}" --fingerprint "$FP_A" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 30 -o json > "$tmp/op-a.log" 2>&1 || fail "the right fingerprint did not bootstrap"
grep -q '"op":"pong"' "$tmp/op-a.log" || fail "no answer with the right fingerprint"
ok "the right fingerprint then bootstraps and is answered"

# --- b. the bridge killed between the claim and its answer ----------------
"$ISSUER" "$tmp/iss"
"$CT" source register --fingerprint "$FP_B" "${S1[@]}" > /dev/null
wait_for "$tmp/bridge1.log" "$(ev cluster_added "$FP_B")" 15
"$OPERATOR" "${B[@]}" --fingerprint "$FP_B" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" -o json > "$tmp/op-b1.log" 2>&1 &
op_b1=$!
pids+=("$op_b1")
wait_for "$tmp/vault.log" "POST /v1/cloudtaser/data/$claim_path -> 200" 20
kill -9 "$bridge1_pid"
wait "$bridge1_pid" 2>/dev/null || true
ok "the claim reached the store; the bridge was killed before answering"
[ "$(state "$FP_B" "${S1[@]}")" = initialized ] || fail "the claim is not recorded"
ok "the claim is recorded: status initialized"
sleep 1
grep -q '"event":"bootstrap_issued"' "$tmp/op-b1.log" && fail "the operator got a certificate"
grep -q '"event":"session_up"' "$tmp/op-b1.log" && fail "the operator has a session"
[ "$(count "$tmp/bridge1.log" "$(ev bootstrap_issued "$FP_B")")" = 0 ] \
  || fail "the killed bridge issued a certificate"
stop "$op_b1"
ok "the operator has no certificate and no session"
start_bridge bridge2 "${S1[@]}"
wait_for "$tmp/bridge2.log" "$(ev cluster_added "$FP_B")" 15
"$OPERATOR" "${B[@]}" --fingerprint "$FP_B" --request '{"op":"ping"}' --exit-after-request \
  --timeout 6 -o json > "$tmp/op-b2.log" 2>&1 && fail "a token-less operator got in"
grep -q '"event":"bootstrap_refused"' "$tmp/op-b2.log" || fail "no refusal seen by the operator"
grep -q 'already initialized\|already_initialized' "$tmp/op-b2.log" \
  || fail "the refusal does not say already initialized"
grep -q '"event":"bootstrap_issued"' "$tmp/op-b2.log" && fail "token-less: certificate issued"
[ "$(count "$tmp/bridge2.log" "$(ev bootstrap_issued "$FP_B")")" = 0 ] \
  || fail "the fresh bridge issued a second certificate"
wait_for "$tmp/bridge2.log" "$(ev bootstrap_refused "$FP_B")" 5
ok "a fresh bridge refuses a second first bootstrap (already initialized); no certificate issued"
"$CT" source deregister --fingerprint "$FP_B" "${S1[@]}" > /dev/null
wait_for "$tmp/bridge2.log" "$(ev cluster_removed "$FP_B")" 15
"$CT" source register --fingerprint "$FP_B" "${S1[@]}" > /dev/null
for ((i = 0; i < 150; i++)); do
  [ "$(count "$tmp/bridge2.log" "$(ev cluster_added "$FP_B")")" -ge 2 ] && break
  sleep 0.1
done
[ "$(count "$tmp/bridge2.log" "$(ev cluster_added "$FP_B")")" -ge 2 ] \
  || fail "the bridge did not pick up the new registration"
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP_B" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 30 -o json > "$tmp/op-b3.log" 2>&1 || fail "no bootstrap after re-registering"
grep -q '"event":"session_up"' "$tmp/op-b3.log" || fail "no session after re-registering"
grep -q '"op":"pong"' "$tmp/op-b3.log" || fail "no answer after re-registering"
[ "$(state "$FP_B" "${S1[@]}")" = initialized ] || fail "not initialized after recovery"
ok "deregister + register: the operator bootstraps and gets a session"
stop "$bridge2_pid"

# --- c. an attacker's bridge with its own CA -------------------------------
# (no legitimate bridge runs: the attacker's is alone in the init room)
"$CT" source register --fingerprint "$FP_C" "${S1[@]}" > /dev/null
"$CT" source register --fingerprint "$FP_C2" "${S1[@]}" > /dev/null
room=$(op_room "$FP_C" "${S1[@]}")
[ ${#room} = 64 ] || fail "status -o json has no operational_room"
"$CT" source register --fingerprint "$FP_C" "${S2[@]}" > /dev/null
"$CT" source register --fingerprint "$FP_C2" "${S2[@]}" > /dev/null
[ "$(op_room "$FP_C" "${S2[@]}")" != "$room" ] || fail "the attacker's CA is the same?"
start_bridge evil "${S2[@]}"
wait_for "$tmp/evil.log" "$(ev cluster_added "$FP_C")" 15
wait_for "$tmp/evil.log" "$(ev cluster_added "$FP_C2")" 15
ok "an attacker registered the same fingerprints with its own CA; its bridge waits"

# without the pin: the attacker's bridge is believed
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP_C2" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --request '{"op":"ping"}' --exit-after-request \
  --timeout 30 -o json > "$tmp/op-c2.log" 2>&1 || fail "unpinned operator: no session"
wait_for "$tmp/evil.log" "$(ev session_up "$FP_C2")" 5
[ "$(state "$FP_C2" "${S1[@]}")" = registered ] || fail "the legitimate store saw the bootstrap"
ok "without --operational-room the attacker's bridge wins (session with the attacker)"

# with the pin: its certificate is discarded
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP_C" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" --operational-room "$room" -o json \
  > "$tmp/op-c.log" 2>&1 &
op_c=$!
pids+=("$op_c")
wait_for "$tmp/op-c.log" 'not the expected one' 30
grep '"event":"bootstrap_refused"' "$tmp/op-c.log" | grep -q 'operational-room' \
  || fail "the refusal does not name --operational-room"
wait_for "$tmp/evil.log" "$(ev claim_recorded "$FP_C")" 5
stop "$evil_pid"
grep -q '"event":"session_up"' "$tmp/op-c.log" && fail "the pinned operator opened a session"
grep -q '"event":"bootstrap_issued"' "$tmp/op-c.log" && fail "the pinned operator took the certificate"
[ "$(count "$tmp/evil.log" "$(ev session_up "$FP_C")")" = 0 ] \
  || fail "the attacker's bridge got a session with the pinned operator"
ok "pinned operator: the attacker's certificate is discarded, clearly said, no session"
start_bridge bridge3 "${S1[@]}"
wait_for "$tmp/op-c.log" '"event":"session_up"' 60
grep '"event":"bootstrap_issued"' "$tmp/op-c.log" | grep -q 'received' \
  || fail "no first certificate from the legitimate bridge"
wait_for "$tmp/bridge3.log" "$(ev session_up "$FP_C")" 5
[ "$(state "$FP_C" "${S1[@]}")" != registered ] || fail "the legitimate claim is missing"
ok "the pinned operator bootstraps against the legitimate bridge once it is there"
stop "$op_c"

# --- d. an operator whose certificate's CA is no longer the cluster's ------
"$ISSUER" "$tmp/iss"
"$OPERATOR" "${B[@]}" --fingerprint "$FP_C" --token-file "$tmp/iss/token" \
  --jwks-file "$tmp/iss/jwks.json" -o json > "$tmp/op-d.log" 2>&1 &
op_d=$!
pids+=("$op_d")
wait_for "$tmp/op-d.log" '"event":"session_up"' 30
grep -q 're-issued' "$tmp/op-d.log" || fail "not an attested re-bootstrap"
ok "a long-running operator (re-bootstrapped with a fresh token) has a session"
old_room=$(op_room "$FP_C" "${S1[@]}")
"$CT" source deregister --fingerprint "$FP_C" "${S1[@]}" > /dev/null
wait_for "$tmp/bridge3.log" "$(ev cluster_removed "$FP_C")" 15
"$ISSUER" "$tmp/iss"
"$CT" source register --fingerprint "$FP_C" "${S1[@]}" > /dev/null
[ "$(op_room "$FP_C" "${S1[@]}")" != "$old_room" ] || fail "re-registering kept the CA"
wait_for "$tmp/op-d.log" '"event":"session_down"' 15
ok "re-registered under a new CA: the session with the old certificate is closed"
t0=$(date +%s)
# The old certificate leads only to the old operational room, where no
# bridge waits any more: after 3 pairing timeouts (20 s each) the
# operator bootstraps again.
wait_for "$tmp/op-d.log" 'bootstrapping again' 90
# (the re-bootstrap may already be through: count the sessions before it)
[ "$(awk '/bootstrapping again/ { exit } /"event":"session_up"/ { n++ } END { print n + 0 }' \
     "$tmp/op-d.log")" = 1 ] || fail "a session came up with the stale certificate"
ok "no session with the stale certificate; the operator bootstraps again after $(( $(date +%s) - t0 )) s"
for ((i = 0; i < 300; i++)); do
  [ "$(count "$tmp/op-d.log" '"event":"session_up"')" -ge 2 ] && break
  sleep 0.1
done
[ "$(count "$tmp/op-d.log" '"event":"session_up"')" -ge 2 ] || fail "no session after re-bootstrap"
[ "$(state "$FP_C" "${S1[@]}")" != registered ] || fail "no claim for the new registration"
ok "the operator recovered: new certificate from the new CA, session up"

# no daemon printed a full fingerprint or the token (the fake Vault's own
# request log is the test's, not a daemon's)
for f in "$FP_A" "$FP_B" "$FP_C" "$FP_C2"; do
  if grep -hq -- "$f" "$tmp"/bridge*.log "$tmp"/evil.log "$tmp"/op*.log "$tmp"/beacon.log; then
    fail "a daemon's output carries a full fingerprint"
  fi
done
grep -hqF -- "$vtoken" "$tmp"/bridge*.log "$tmp"/evil.log "$tmp"/op*.log \
  && fail "a log line carries the Vault token"
ok "no full fingerprint and no token in the daemons' output"

stop "$op_d" "$bridge3_pid"
ok "clean shutdown"

# --- e. a store laid out by a newer cloudtaser ------------------------------
curl -sS -o /dev/null --max-time 5 --cacert "$fixtures/tls/ca.pem" -H "X-Vault-Token: $vtoken" \
  -X POST -d '{"data":{"created_at":1,"layout":2,"v":1}}' \
  "${S1[1]}/v1/cloudtaser/data/system/layout"
rc=0
timeout 20 "$BRIDGE" "${B[@]}" "${S1[@]}" -o json > "$tmp/bridge-newer.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a bridge on a newer store layout exited $rc, want 1"
grep -q 'store layout 2 is newer than this cloudtaser (1): upgrade' "$tmp/bridge-newer.log" \
  || fail "the bridge does not say why it refuses the store"
"$CT" source status --fingerprint "$FP_A" "${S1[@]}" > /dev/null 2>&1 \
  && fail "status read a store with a newer layout"
ok "a store with a newer layout: the bridge exits 1 saying so, status refuses"
echo "1..$checks"
