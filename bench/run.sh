#!/usr/bin/env bash
# bench/run.sh - measures the beacon (libcloudtaser's ct_relay) against its
# peers, side by side in one run, and prints a table of medians and ratios.
#
#   bench/run.sh [--builds stock,tuned,lean] [--only PHASES] [--runs N] [--quick] [--out FILE]
#
#   --builds   which libcloudtaser builds to measure (default: stock,tuned).
#              stock: Debian's libwolfssl; tuned: wolfSSL with AES-NI and SP
#              P-256 from $CT_TUNED_WOLFSSL (default build-wolfssl-tuned/prefix,
#              built by scripts/build-tuned-wolfssl.sh if missing); lean: the
#              lean wolfSSL flavour from $CT_LEAN_WOLFSSL (default
#              build-wolfssl-lean/prefix, built by
#              scripts/build-tuned-wolfssl.sh --lean if missing).
#   --only     a comma-separated subset of the phases tput,hs,rooms (default:
#              all three). rooms = memory per waiting peer + pairing latency.
#   --runs     repetitions of every measurement (default 5; rooms: at most 3); the
#              table shows the median and the spread (max-min)/median.
#   --quick    small sizes, one run: a smoke test of the whole pipeline.
#   --out      where the raw results go (TSV; default build-bench/results.tsv).
#
# Peers: nginx + libnginx-mod-stream (TLS on both legs), socat (plain TCP
# floor), magic-wormhole-transit-relay (pairing). Missing Debian packages
# are installed with apt-get. Everything listens on 127.0.0.1; every load
# loop is bounded in count and time; every server started here is stopped
# by the EXIT trap.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

builds=stock,tuned
only=tput,hs,rooms
runs=5
quick=0
out=$top/build-bench/results.tsv
while [ $# -gt 0 ]; do
  case "$1" in
    --builds) builds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# ---- packages ----
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ct_install_deps
bench_pkgs=(nginx libnginx-mod-stream socat magic-wormhole-transit-relay procps)
missing=()
for p in "${bench_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's nginx package starts a system nginx on port 80; it is not ours
# and not in the way (we use free loopback ports), so it is left alone.

# ---- sizes ----
if [ "$quick" -eq 1 ]; then
  runs=1; rooms_runs=1
  bytes_stock=$((16 << 20)); bytes_tuned=$((32 << 20))
  hs_seconds=1; rooms=1000; pairs=100
else
  rooms_runs=$(( runs < 3 ? runs : 3 ))
  bytes_stock=$((256 << 20)); bytes_tuned=$((1 << 30))
  hs_seconds=3; rooms=10000; pairs=1000
fi
hs_conns=32
hs_procs=2

# ---- servers: started here, stopped by the trap ----
work=$(mktemp -d /tmp/ct-bench.XXXXXX)
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_file() { # wait_file PATH: up to 20 s
  local _
  for _ in $(seq 200); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  echo "run.sh: $1 did not appear" >&2
  return 1
}

wait_port() { # wait_port PORT: up to 20 s
  local _
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "run.sh: nothing listens on port $1" >&2
  return 1
}

# ---- results ----
mkdir -p "$(dirname "$out")"
: > "$out"
record() { # record BUILD METRIC VARIANT VALUE
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$out"
}
result() { # result NAME < ct-bench output
  awk -v k="$1" '$1 == "RESULT" && $2 == k { print $3 }'
}

# ---- noise: what else ran on the machine ----
noise_snapshot() { # noise_snapshot LABEL
  local load
  read -r load _ < /proc/loadavg
  record all "loadavg_$1" - "$load"
  {
    echo "== $1: loadavg $(cat /proc/loadavg)"
    ps -eo pid,ni,pcpu,etime,comm --sort=-pcpu | head -6
  } >> "${out%.tsv}.noise.txt"
}
: > "${out%.tsv}.noise.txt"
noise_snapshot start
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),"\
  "$(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"

# ---- builds ----
build_one() { # build_one NAME -> path of ct-bench
  local name=$1 dir=$top/build-bench/$1
  local -a opts=(-Dtests=false -Dbench=true -Dbuildtype=release)
  if [ "$name" = tuned ]; then
    local prefix=${CT_TUNED_WOLFSSL:-$top/build-wolfssl-tuned/prefix}
    if [ ! -e "$prefix/lib/libwolfssl.so" ]; then
      echo "run.sh: building the tuned wolfSSL into $prefix (about 3 minutes)" >&2
      bash scripts/build-tuned-wolfssl.sh "$prefix" >&2
    fi
    opts+=("-Dwolfssl_prefix=$prefix")
  elif [ "$name" = lean ]; then
    local prefix=${CT_LEAN_WOLFSSL:-$top/build-wolfssl-lean/prefix}
    if [ ! -e "$prefix/lib/libwolfssl.so" ]; then
      echo "run.sh: building the lean wolfSSL into $prefix (about 2 minutes)" >&2
      bash scripts/build-tuned-wolfssl.sh --lean "$prefix" >&2
    fi
    opts+=("-Dwolfssl_prefix=$prefix")
  fi
  if [ ! -d "$dir" ]; then
    meson setup "$dir" "${opts[@]}" >&2
  else
    meson configure "$dir" "${opts[@]}" >&2
  fi
  ninja -C "$dir" -j2 bench/ct-bench >&2
  echo "$dir/bench/ct-bench"
}

phase() { # phase NAME: is this phase selected by --only?
  case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

pki_ready=0
nginx_conf() { # nginx_conf DIR SINKPORT PCHACHA PAES PHS
  cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/nginx.err warn;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events { worker_connections 20000; }
stream {
  ssl_certificate $work/pki/cert.pem;
  ssl_certificate_key $work/pki/key.pem;
  ssl_protocols TLSv1.3;
  ssl_session_cache off;
  ssl_session_tickets off;
  ssl_ecdh_curve X25519:prime256v1;
  proxy_ssl_protocols TLSv1.3;
  proxy_ssl_session_reuse off;
  server {
    listen 127.0.0.1:$3 ssl;
    ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;
    proxy_ssl on;
    proxy_ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;
    proxy_pass 127.0.0.1:$2;
  }
  server {
    listen 127.0.0.1:$4 ssl;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    proxy_ssl on;
    proxy_ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    proxy_pass 127.0.0.1:$2;
  }
  server {
    # handshakes: one byte after the handshake, as the beacon's WAITING
    listen 127.0.0.1:$5 ssl backlog=4096;
    return "x";
  }
}
EOF
}

start_beacon() { # start_beacon BIN THREADS DIR -> sets started_pid, started_port
  rm -f "$3/port"
  "$1" beacon --dir "$work/pki" --threads "$2" --port-file "$3/port" 2>>"$3/beacon.err" &
  started_pid=$!
  pids+=("$started_pid")
  wait_file "$3/port"
  started_port=$(cat "$3/port")
}

start_wormhole() { # start_wormhole DIR -> started_pid, started_port
  started_port=$("$bin" ports 1)
  # The Debian package ships only a twistd plugin (dpkg -L shows no other
  # entry point): run it in the foreground (-n) so the trap can stop it.
  # backlog=4096 matches the beacon's SOMAXCONN; --blur-usage turns off its
  # per-connection log lines (the beacon here logs nothing either).
  twistd3 -n --pidfile= -l "$1/wormhole.log" transitrelay \
    --port="tcp:$started_port:interface=127.0.0.1:backlog=4096" --blur-usage=3600 &
  started_pid=$!
  pids+=("$started_pid")
  wait_port "$started_port"
}

for build in ${builds//,/ }; do
  case "$build" in stock|tuned|lean) ;; *) echo "run.sh: unknown build $build" >&2; exit 2 ;; esac
  echo "=== build: $build ==="
  bin=$(build_one "$build")
  if [ "$pki_ready" -eq 0 ]; then
    mkdir -p "$work/pki"
    "$bin" pki "$work/pki"
    pki_ready=1
  fi
  bytes=$bytes_stock
  [ "$build" = stock ] || bytes=$bytes_tuned
  d=$work/$build
  mkdir -p "$d/b1" "$d/b2" "$d/nginx"
  record "$build" bytes - "$bytes"
  record "$build" rooms - "$rooms"
  record "$build" pairs - "$pairs"

  if phase tput || phase hs; then
    # servers for throughput and handshakes
    start_beacon "$bin" 1 "$d/b1"; b1_pid=$started_pid; b1_port=$started_port
    start_beacon "$bin" 2 "$d/b2"; b2_port=$started_port
    rm -f "$d/sink.port" "$d/plain.port"
    "$bin" sink --dir "$work/pki" --port-file "$d/sink.port" 2>"$d/sink.err" &
    pids+=("$!")
    "$bin" sink --plain --port-file "$d/plain.port" 2>"$d/plain.err" &
    pids+=("$!")
    wait_file "$d/sink.port"
    wait_file "$d/plain.port"
    read -r p_chacha p_aes p_hs p_socat < <("$bin" ports 4)
    nginx_conf "$d/nginx" "$(cat "$d/sink.port")" "$p_chacha" "$p_aes" "$p_hs" > "$d/nginx/nginx.conf"
    nginx -p "$d/nginx" -c "$d/nginx/nginx.conf" -e "$d/nginx/early.err" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    socat -b 65536 "TCP-LISTEN:$p_socat,bind=127.0.0.1,reuseaddr,fork,backlog=64" \
      "TCP:127.0.0.1:$(cat "$d/plain.port")" &
    pids+=("$!")
    wait_port "$p_chacha"
    wait_port "$p_socat"
    nginx_workers=$(pgrep -P "$nginx_pid" | paste -sd, -)

    for r in $(seq "$runs"); do
      phase tput || break
      echo "--- $build: throughput, run $r of $runs ($((bytes >> 20)) MiB one way each)"
      for c in chacha20 aes128gcm; do
        port_nginx=$p_chacha
        [ "$c" = aes128gcm ] && port_nginx=$p_aes
        v=$("$bin" bound --cipher "$c" --bytes "$bytes" | result mbps)
        record "$build" tput_bound "$c" "$v"; echo "  bound $c: $v MB/s"
        v=$(timeout 300 "$bin" send --mode beacon --port "$b1_port" --cipher "$c" --bytes "$bytes" | result mbps)
        record "$build" tput_beacon_t1 "$c" "$v"; echo "  beacon threads=1 $c: $v MB/s"
        v=$(timeout 300 "$bin" send --mode beacon --port "$b2_port" --cipher "$c" --bytes "$bytes" | result mbps)
        record "$build" tput_beacon_t2 "$c" "$v"; echo "  beacon threads=2 $c: $v MB/s"
        v=$(timeout 300 "$bin" send --mode tls --port "$port_nginx" --cipher "$c" --bytes "$bytes" | result mbps)
        record "$build" tput_nginx "$c" "$v"; echo "  nginx $c: $v MB/s"
      done
      v=$(timeout 300 "$bin" send --mode plain --port "$p_socat" --bytes "$bytes" | result mbps)
      record "$build" tput_socat plain "$v"; echo "  socat plain TCP: $v MB/s"
    done

    for r in $(seq "$runs"); do
      phase hs || break
      echo "--- $build: handshakes, run $r of $runs (${hs_seconds} s each, $hs_conns in flight, $hs_procs client processes)"
      for g in x25519 p256; do
        o=$(timeout 120 "$bin" handshakes --mode beacon --port "$b1_port" --group "$g" --conns "$hs_conns" \
              --procs "$hs_procs" --seconds "$hs_seconds" --server-pids "$b1_pid")
        record "$build" hs_beacon "$g" "$(echo "$o" | result hs_per_s)"
        record "$build" hs_cpu_beacon "$g" "$(echo "$o" | result server_cpu_ms_per_hs)"
        record "$build" hs_client_cpu_beacon "$g" "$(echo "$o" | result client_cpu_ms_per_hs)"
        echo "  beacon $g: $(echo "$o" | result hs_per_s)/s, server $(echo "$o" | result server_cpu_ms_per_hs) ms CPU each, failed $(echo "$o" | result failed)"
        o=$(timeout 120 "$bin" handshakes --mode tls --port "$p_hs" --group "$g" --conns "$hs_conns" \
              --procs "$hs_procs" --seconds "$hs_seconds" --server-pids "$nginx_workers")
        record "$build" hs_nginx "$g" "$(echo "$o" | result hs_per_s)"
        record "$build" hs_cpu_nginx "$g" "$(echo "$o" | result server_cpu_ms_per_hs)"
        record "$build" hs_client_cpu_nginx "$g" "$(echo "$o" | result client_cpu_ms_per_hs)"
        echo "  nginx  $g: $(echo "$o" | result hs_per_s)/s, server $(echo "$o" | result server_cpu_ms_per_hs) ms CPU each, failed $(echo "$o" | result failed)"
      done
    done
    n_chacha=$(grep -c "cipher TLS13-CHACHA20" "$d/sink.err" || true)
    n_aes=$(grep -c "cipher TLS13-AES128" "$d/sink.err" || true)
    echo "  (the sink saw $n_chacha ChaCha20 and $n_aes AES-128-GCM upstream legs from nginx)"
    stop_all

  fi

  # memory per waiting peer and pairing latency: a fresh server per run
  for r in $(seq "$rooms_runs"); do
    phase rooms || break
    echo "--- $build: $rooms waiting rooms, $pairs pairings, run $r of $rooms_runs"
    mkdir -p "$d/rooms$r"
    start_beacon "$bin" 1 "$d/rooms$r"
    o=$(timeout 600 "$bin" rooms --proto beacon --port "$started_port" --server-pid "$started_pid" \
          --rooms "$rooms" --pairs "$pairs")
    for k in kib_per_conn p50_us p90_us p99_us max_us setup_secs; do
      record "$build" "rooms_beacon_$k" - "$(echo "$o" | result "$k")"
    done
    echo "  beacon: $(echo "$o" | result kib_per_conn) KiB per waiting peer;" \
      "pairing p50 $(echo "$o" | result p50_us) us, p99 $(echo "$o" | result p99_us) us, max $(echo "$o" | result max_us) us"
    stop_all
    start_wormhole "$d/rooms$r"
    o=$(timeout 600 "$bin" rooms --proto wormhole --port "$started_port" --server-pid "$started_pid" \
          --rooms "$rooms" --pairs "$pairs")
    for k in kib_per_conn p50_us p90_us p99_us max_us setup_secs; do
      record "$build" "rooms_wormhole_$k" - "$(echo "$o" | result "$k")"
    done
    echo "  wormhole: $(echo "$o" | result kib_per_conn) KiB per waiting peer;" \
      "pairing p50 $(echo "$o" | result p50_us) us, p99 $(echo "$o" | result p99_us) us, max $(echo "$o" | result max_us) us"
    stop_all
  done
  noise_snapshot "after_$build"
done

echo
echo "=== results (raw: $out; other processes seen: ${out%.tsv}.noise.txt) ==="
python3 "$top/bench/report.py" "$out"
