#!/usr/bin/env bash
# test_beacon_tool.sh BEACON PAIR_CLIENT - drives the real cloudtaser-beacon
# binary on loopback: command line, dev mode, the operations port, pairings
# through it (PAIR_CLIENT is one peer, via ct_beacon_connect), SIGHUP
# certificate reloads, SIGTERM drains and the key file mode check.
# Only 127.0.0.1 and ::1; every wait is bounded.
set -euo pipefail

beacon=$1
pair=$2
tmp=$(mktemp -d)
pids=()
rooms=()
cur_err=

cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [ -n "$cur_err" ] && [ -f "$cur_err" ]; then
    echo "--- last lines of $cur_err" >&2
    tail -n 40 "$cur_err" >&2
  fi
  exit 1
}
checks=0
ok() {
  checks=$((checks + 1))
  echo "ok $checks - $*"
}

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds; 1 on timeout.
wait_for() {
  local n=$(($1 * 10)) i
  shift
  for ((i = 0; i < n; i++)); do
    if "$@"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

running() { # running PID: alive and not a zombie
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# wait_exit PID SECONDS: sets st to the exit status, or "timeout". (Not in
# a command substitution: only this shell can reap its children.)
wait_exit() {
  st=0
  if ! wait_for "$2" eval "! running $1"; then
    st=timeout
    return 0
  fi
  wait "$1" || st=$?
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 -g "http://$1$2" || true; }
http_body() { curl -s --max-time 5 -g "http://$1$2" || true; }
metric() { # metric MADDR NAME: the value of one metric
  http_body "$1" /metrics | awk -v n="$2" '$1 == n {print $2}'
}
metric_ge() { # metric_ge MADDR NAME MIN
  local v
  v=$(metric "$1" "$2")
  [ -n "$v" ] && [ "$v" -ge "$3" ]
}
readyz_is() { [ "$(http_code "$1" /readyz)" = "$2" ]; }
log_has() { grep -q -- "$2" "$1"; }

# start_beacon NAME ARGS...: starts the beacon in the background (stdout and
# stderr in $tmp/NAME.out/.err) and waits for its "pin" line; sets bpid,
# addr, port, maddr, pin.
start_beacon() {
  local name=$1
  shift
  "$beacon" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  bpid=$!
  pids+=("$bpid")
  cur_err=$tmp/$name.err
  wait_for 20 grep -q '^pin ' "$tmp/$name.out" || fail "$name: the beacon did not come up"
  addr=$(awk '$1 == "listening" {print $2}' "$tmp/$name.out")
  port=${addr##*:}
  maddr=$(awk '$1 == "metrics" {print $2}' "$tmp/$name.out")
  pin=$(awk '$1 == "pin" {print $2}' "$tmp/$name.out")
  if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -eq 0 ]; then
    fail "$name: bad listening line '$addr'"
  fi
  [[ $pin =~ ^[0-9a-f]{64}$ ]] || fail "$name: bad pin line '$pin'"
}

# pair NAME ARGS...: an operator-side and a bridge-side peer meet in a fresh
# room through the beacon on $port (ARGS: how to verify it) and exchange a
# line each way. Sets room.
pair() {
  local name=$1 b o rb=0 ro=0
  shift
  room="room-$name-$RANDOM$RANDOM"
  rooms+=("$room")
  timeout 30 "$pair" --port "$port" "$@" --role bridge --room-name "$room" \
    --send "from bridge $name" >"$tmp/$name.br" 2>"$tmp/$name.br.err" &
  b=$!
  timeout 30 "$pair" --port "$port" "$@" --role operator --room-name "$room" \
    --send "from operator $name" >"$tmp/$name.op" 2>"$tmp/$name.op.err" &
  o=$!
  wait "$b" || rb=$?
  wait "$o" || ro=$?
  if [ "$rb" -ne 0 ] || [ "$ro" -ne 0 ]; then
    fail "pair $name: bridge exit $rb ($(cat "$tmp/$name.br.err")), operator exit $ro ($(cat "$tmp/$name.op.err"))"
  fi
  grep -qx "got from operator $name" "$tmp/$name.br" || fail "pair $name: bridge did not get the line"
  grep -qx "got from bridge $name" "$tmp/$name.op" || fail "pair $name: operator did not get the line"
}

# one_peer ARGS...: a single bridge-side peer with a short pair timeout;
# prints its exit status.
one_peer() {
  local rc=0
  timeout 30 "$pair" --port "$port" "$@" --role bridge --room-name "alone-$RANDOM" \
    --send x --pair-timeout 500 >"$tmp/one.out" 2>"$tmp/one.err" || rc=$?
  echo "$rc"
}

# held_pair NAME ARGS...: a pair that stays open after its exchange until
# the beacon ends it (up to 30 s). Sets held_b, held_o.
held_pair() {
  local name=$1
  shift
  room="room-$name-$RANDOM$RANDOM"
  rooms+=("$room")
  timeout 40 "$pair" --port "$port" "$@" --role bridge --room-name "$room" --send b --hold 30000 \
    >"$tmp/$name.br" 2>"$tmp/$name.br.err" &
  held_b=$!
  timeout 40 "$pair" --port "$port" "$@" --role operator --room-name "$room" --send o \
    --hold 30000 >"$tmp/$name.op" 2>"$tmp/$name.op.err" &
  held_o=$!
  pids+=("$held_b" "$held_o")
  wait_for 20 grep -q '^got ' "$tmp/$name.br" || fail "$name: held pair did not exchange"
  wait_for 20 grep -q '^got ' "$tmp/$name.op" || fail "$name: held pair did not exchange"
}

all_json() { # all_json FILE: every line is one JSON object
  python3 - "$1" <<'PY'
import json, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    if not isinstance(json.loads(line), dict):
        sys.exit(f"line {n} is not an object: {line!r}")
PY
}

room_hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

# A fresh P-256 key and self-signed server certificate for 127.0.0.1/::1,
# made by openssl (an independent implementation), swapped in atomically.
mkcert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -keyout "$tmp/key.new" -out "$tmp/cert.new" 2>/dev/null || fail "openssl req failed"
  chmod 600 "$tmp/key.new"
  mv "$tmp/key.new" "$tmp/key.pem"
  mv "$tmp/cert.new" "$tmp/cert.pem"
}
openssl_pin() {
  openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum |
    cut -d' ' -f1
}

expect_usage_error() { # expect_usage_error PATTERN ARGS...
  local pattern=$1 rc=0
  shift
  timeout 20 "$beacon" "$@" >"$tmp/usage.out" 2>"$tmp/usage.err" || rc=$?
  [ "$rc" -eq 2 ] || fail "'$*' exited $rc, want 2 ($(cat "$tmp/usage.err"))"
  grep -q -- "$pattern" "$tmp/usage.err" || fail "'$*': no '$pattern' in: $(cat "$tmp/usage.err")"
}

# ---------------------------------------------------------------- command line

help=$("$beacon" --help) || fail "--help exited non-zero"
for o in --listen --cert --key --threads --hello-timeout --wait-timeout --keepalive --linger \
  --drain-timeout --max-conns --max-conns-per-ip --accept-rate-per-ip --max-waiting-per-room \
  --metrics --metrics-allow-remote --log-level --dev --dev-name --dev-ca-out --help \
  --version SIGTERM SIGINT SIGHUP "Exit status" "default 10000" "default 900000" \
  "default 20000" "default 30000" "default 100000" "default 64" "default 8" \
  "127.0.0.1:9443" "\[::\]:443"; do
  grep -q -- "$o" <<<"$help" || fail "--help does not mention $o"
done
ok "--help lists every option, defaults, signals and exit codes"
"$beacon" --version | grep -q '^cloudtaser-beacon [0-9]' || fail "--version"
ok "--version"

expect_usage_error "unknown or malformed option '--bogus'" --bogus
expect_usage_error "expected a number" --dev --threads abc
expect_usage_error "expected a number" --dev --drain-timeout -5
expect_usage_error "needs a value" --dev --listen
expect_usage_error "brackets" --dev --listen ::1:443
expect_usage_error "port must be" --dev --listen 127.0.0.1:70000
expect_usage_error "not a numeric IPv4" --dev --listen localhost:443
expect_usage_error "are required" --listen 127.0.0.1:0
expect_usage_error "drop --cert" --dev --cert /nonexistent --key /nonexistent
expect_usage_error "need --dev" --dev-name foo --cert /a --key /b
expect_usage_error "expected error, warning" --dev --log-level loud
expect_usage_error "unexpected argument" --dev extra
ok "bad command lines exit 2 with a message"
expect_usage_error "--metrics-allow-remote" --dev --metrics 0.0.0.0:0
expect_usage_error "--metrics-allow-remote" --dev --metrics "[::]:0"
ok "a non-loopback --metrics address is refused without --metrics-allow-remote"

# ---------------------------------------------------------------- dev mode

start_beacon dev --dev --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --threads 2 \
  --dev-ca-out "$tmp/ca.pem" --dev-name beacon.test --drain-timeout 3000
[[ $addr == 127.0.0.1:* ]] || fail "listening line: $addr"
grep -qx "ca $tmp/ca.pem" "$tmp/dev.out" || fail "no ca line"
openssl x509 -in "$tmp/ca.pem" -noout 2>/dev/null || fail "--dev-ca-out is not a PEM certificate"
log_has "$tmp/dev.err" '"event":"dev_mode"' || fail "dev mode is not announced on stderr"
ok "dev mode starts and prints listening, metrics, pin and ca lines"

# ct_process_harden at start: no core dumps, not dumpable (as bridge and operator)
grep -Eq '^Max core file size +0 +0 ' "/proc/$bpid/limits" || fail "the beacon may dump core"
log_has "$tmp/dev.err" '"event":"harden_failed"' && fail "hardening failed: $(grep harden_failed "$tmp/dev.err")"
ok "the beacon hardened itself (RLIMIT_CORE 0, no harden_failed)"

[ "$(http_body "$maddr" /healthz)" = ok ] || fail "/healthz"
[ "$(http_code "$maddr" /readyz)" = 200 ] || fail "/readyz"
http_body "$maddr" /metrics >"$tmp/metrics.txt"
grep -q '^cloudtaser_beacon_accepted_total 0$' "$tmp/metrics.txt" || fail "/metrics: no accepted_total"
grep -q '^cloudtaser_beacon_conns_open 0$' "$tmp/metrics.txt" || fail "/metrics: no conns_open gauge"
awk '/^# TYPE/ {t[$3] = $4} /^# HELP/ {h[$3] = 1}
     /^[a-z]/ {n++; if (!t[$1] || !h[$1]) {print "no HELP/TYPE for " $1; bad = 1}
               if ($1 ~ /_total$/ && t[$1] != "counter") {print $1 " is not a counter"; bad = 1}
               if ($1 !~ /_total$/ && t[$1] != "gauge") {print $1 " is not a gauge"; bad = 1}}
     END {if (n < 21) {print "only " n " metrics"; bad = 1}; exit bad}' "$tmp/metrics.txt" ||
  fail "/metrics format"
curl -s -D - -o /dev/null --max-time 5 "http://$maddr/metrics" |
  grep -qi '^content-type: text/plain; version=0.0.4' || fail "/metrics content type"
[ "$(http_code "$maddr" /nope)" = 404 ] || fail "unknown path is not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST "http://$maddr/metrics")" = 405 ] ||
  fail "POST is not 405"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -I "http://$maddr/healthz")" = 200 ] ||
  fail "HEAD /healthz"
ok "operations port: /healthz, /readyz, /metrics (HELP/TYPE for each), 404, 405, HEAD"

pair pin1 --pin "$pin"
pair ca1 --ca "$tmp/ca.pem"
pair name1 --ca "$tmp/ca.pem" --server-name beacon.test
ok "pairings through the binary: by pin, by CA, by CA with a --dev-name"
[ "$(one_peer --pin "$(room_hash wrong-pin)")" = 3 ] || fail "a wrong pin was not refused: $(cat "$tmp/one.err")"
ok "a wrong pin fails verification"
wait_for 10 metric_ge "$maddr" cloudtaser_beacon_pairs_total 3 || fail "pairs_total did not reach 3"
metric_ge "$maddr" cloudtaser_beacon_accepted_total 6 || fail "accepted_total"
metric_ge "$maddr" cloudtaser_beacon_bytes_relayed_total 1 || fail "bytes_relayed_total"
ok "metrics counters move (pairs_total $(metric "$maddr" cloudtaser_beacon_pairs_total))"
wait_for 10 log_has "$tmp/dev.err" '"event":"session"' || fail "no session line on stderr"
log_has "$tmp/dev.err" '"end":"close"' || fail "no cleanly closed session"
ok "session lines from the library reach stderr"

held_pair held --pin "$pin"
wait_for 10 metric_ge "$maddr" cloudtaser_beacon_paired_sessions 1 || fail "paired_sessions gauge"
t0=$SECONDS
kill -TERM "$bpid"
wait_for 5 readyz_is "$maddr" 503 || fail "/readyz did not turn 503 while draining"
[ "$(http_body "$maddr" /healthz)" = ok ] || fail "/healthz not ok while draining"
[ "$(metric "$maddr" cloudtaser_beacon_draining)" = 1 ] || fail "draining gauge"
[ "$(one_peer --pin "$pin")" != 0 ] || fail "a new peer was accepted while draining"
ok "SIGTERM drains: /readyz 503, /healthz ok, new peers refused"
wait_exit "$bpid" 15
[ "$st" = 0 ] || fail "drained beacon exit status: $st"
[ $((SECONDS - t0)) -le 10 ] || fail "drain took $((SECONDS - t0)) s with a 3 s deadline"
log_has "$tmp/dev.err" '"event":"drain"' || fail "no drain line"
log_has "$tmp/dev.err" '"end":"drain"' || fail "the held session was not ended by the drain deadline"
log_has "$tmp/dev.err" '"reason":"drained"' || fail "no exit line"
wait_for 10 grep -q '^ended' "$tmp/held.br" || fail "held bridge not released"
ok "the drain deadline ends held sessions; exit 0 in $((SECONDS - t0)) s"
all_json "$tmp/dev.err" || fail "stderr is not one JSON object per line"
for r in "${rooms[@]}"; do
  h=$(room_hash "$r")
  grep -q "\"${h:0:8}\"" "$tmp/dev.err" || fail "room $r (${h:0:8}) is not in the session log"
  if grep -q "${h:0:9}" "$tmp/dev.err"; then
    fail "more than 8 hex digits of a room hash in the log"
  fi
done
if grep -qi 'PRIVATE KEY' "$tmp/dev.err" "$tmp/dev.out"; then
  fail "key material in the output"
fi
ok "stderr is JSON lines without keys or full room hashes"

# ---------------------------------------------------------------- second signal

start_beacon stop --dev --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --threads 1
held_pair held2 --pin "$pin"
kill -TERM "$bpid"
wait_for 5 readyz_is "$maddr" 503 || fail "/readyz did not turn 503"
kill -INT "$bpid"
wait_exit "$bpid" 5
[ "$st" = 3 ] || fail "second signal: exit status $st, want 3"
log_has "$tmp/stop.err" '"event":"stop"' || fail "no stop line"
ok "a second signal stops at once (exit 3)"

# ---------------------------------------------------------------- files, SIGHUP

mkcert
start_beacon hup --cert "$tmp/cert.pem" --key "$tmp/key.pem" --listen 127.0.0.1:0 \
  --metrics 127.0.0.1:0 --threads 2 --log-level notice
pin1=$pin
[ "$pin1" = "$(openssl_pin "$tmp/cert.pem")" ] || fail "printed pin differs from openssl's"
ok "files: an openssl certificate and key serve; the printed pin matches openssl's"
pair hup1 --pin "$pin1"
mkcert
pin2=$(openssl_pin "$tmp/cert.pem")
[ "$pin2" != "$pin1" ] || fail "mkcert made the same key twice"
kill -HUP "$bpid"
wait_for 10 log_has "$tmp/hup.err" '"event":"reload"' || fail "no reload line after SIGHUP"
grep '"event":"reload"' "$tmp/hup.err" | grep -q "\"pin\":\"$pin2\"" || fail "reload line lacks the new pin"
pair hup2 --pin "$pin2"
[ "$(one_peer --pin "$pin1")" = 3 ] || fail "the old pin still verifies after the reload"
ok "SIGHUP reloads: the new pin verifies, the old one fails"
echo "not a certificate" >"$tmp/cert.pem"
kill -HUP "$bpid"
wait_for 10 log_has "$tmp/hup.err" '"event":"reload_failed"' || fail "no reload_failed line"
pair hup3 --pin "$pin2"
[ "$(metric "$maddr" cloudtaser_beacon_cert_reloads_total)" = 1 ] || fail "cert_reloads_total"
[ "$(metric "$maddr" cloudtaser_beacon_cert_reload_failures_total)" = 1 ] || fail "reload failures"
ok "a bad certificate on SIGHUP is refused and the current one stays"
if grep -q '"event":"session"' "$tmp/hup.err"; then
  fail "--log-level notice still logs session lines"
fi
kill -TERM "$bpid"
wait_exit "$bpid" 10
[ "$st" = 0 ] || fail "idle drain exit status $st"
all_json "$tmp/hup.err" || fail "stderr is not JSON lines"
ok "an idle beacon drains at once and exits 0"

# ---------------------------------------------------------------- key file mode

mkcert
chmod 644 "$tmp/key.pem"
rc=0
timeout 20 "$beacon" --cert "$tmp/cert.pem" --key "$tmp/key.pem" --listen 127.0.0.1:0 \
  --metrics 127.0.0.1:0 >"$tmp/mode.out" 2>"$tmp/mode.err" || rc=$?
[ "$rc" = 1 ] || fail "a 0644 key file: exit $rc, want 1"
grep -q 'chmod 600' "$tmp/mode.err" || fail "no chmod hint: $(cat "$tmp/mode.err")"
[ ! -s "$tmp/mode.out" ] || fail "it printed a listening line"
ok "a key file readable by others is refused (exit 1, says chmod 600)"

# ---------------------------------------------------------------- IPv6 loopback

if python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
  start_beacon v6 --dev --listen "[::1]:0" --metrics "[::1]:0" --threads 1
  [[ $addr == "[::1]:"* ]] || fail "IPv6 listening line: $addr"
  [ "$(http_body "$maddr" /healthz)" = ok ] || fail "/healthz over ::1"
  pair v6 --host ::1 --pin "$pin"
  kill -TERM "$bpid"
  wait_exit "$bpid" 10
  [ "$st" = 0 ] || fail "v6 exit status $st"
  ok "IPv6 loopback: listen, operations port and a pairing on ::1"
else
  echo "skip: no IPv6 loopback here"
fi

echo "all $checks checks passed"
