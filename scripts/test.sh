#!/usr/bin/env bash
# test.sh - installs what is missing, builds from scratch and runs every test:
#   1. plain build (debugoptimized), all suites;
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, all suites;
#      (with CT_LEAN_WOLFSSL=PREFIX, a wolfSSL built by
#      scripts/build-tuned-wolfssl.sh --lean: also a plain build against it,
#      all suites, labelled "lean");
#   3. valgrind (memcheck) over the unit and conformance suites;
#   4. every libFuzzer target in fuzz/ briefly (clang, ASan+UBSan);
#   5. meson install into a temporary prefix, then an outside consumer built
#      with `pkg-config --cflags --libs cloudtaser` and run;
#   6. packaging: the ABI against abi/libcloudtaser.abi (abidiff), the Python
#      binding against the installed library, the man pages against each
#      tool's --help, the systemd units (systemd-analyze), the Helm charts
#      (rendered by tests/packaging/minihelm.py), the Containerfiles (lint)
#      and the deployment examples; each check counts once.
# Ends with the line "N passed, N failed" (plus ", N skipped" if any) and
# exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
. scripts/deps.sh
ct_install_deps

out=${CT_BUILD_ROOT:-$top/build-test}
rm -rf "$out"
mkdir -p "$out"
jobs=$(nproc 2>/dev/null || echo 2)
summary="$out/summary.txt"
: > "$summary"

count_log() { # count_log LABEL TESTLOG.json
  python3 - "$1" "$2" >> "$summary" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
p = f = s = 0
for line in open(path):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(f"{label} {p} {f} {s}")
PY
}

run_meson_tests() { # run_meson_tests LABEL BUILDDIR [meson test args...]
  local label=$1 dir=$2; shift 2
  echo "=== $label ==="
  set +e
  meson test -C "$dir" --num-processes "$jobs" --print-errorlogs "$@"
  local rc=$?
  set -e
  count_log "$label" "$dir/meson-logs/testlog${CT_LOG_SUFFIX:-}.json"
  return 0
}

echo "=== build: plain ==="
meson setup "$out/plain" --buildtype=debugoptimized >/dev/null
ninja -C "$out/plain" -j "$jobs"
run_meson_tests plain "$out/plain"

echo "=== build: asan+ubsan ==="
meson setup "$out/asan" --buildtype=debug -Db_sanitize=address,undefined >/dev/null
ninja -C "$out/asan" -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 CK_FORK=no \
  run_meson_tests asan+ubsan "$out/asan"

if [ -n "${CT_LEAN_WOLFSSL:-}" ]; then
  echo "=== build: lean wolfSSL ($CT_LEAN_WOLFSSL) ==="
  meson setup "$out/lean" --buildtype=debugoptimized -Dwolfssl_prefix="$CT_LEAN_WOLFSSL" >/dev/null
  ninja -C "$out/lean" -j "$jobs"
  run_meson_tests lean "$out/lean"
fi

CT_LOG_SUFFIX=-valgrind run_meson_tests valgrind "$out/plain" --setup valgrind --suite unit --suite conformance

echo "=== fuzz (libFuzzer, ${CT_FUZZ_SECONDS:-15} s per target) ==="
if CC=clang meson setup "$out/fuzz" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
     -Db_lundef=false >/dev/null && ninja -C "$out/fuzz" -j "$jobs" >/dev/null; then
  fp=0; ff=0
  for t in "$out"/fuzz/fuzz/fuzz_*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus="$out/fuzz-corpus/$name"
    mkdir -p "$corpus"
    cp -r "fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
    if "$t" -max_total_time="${CT_FUZZ_SECONDS:-15}" -timeout=10 -rss_limit_mb=2048 \
         -artifact_prefix="$out/fuzz-" "$corpus" > "$out/$name.log" 2>&1; then
      echo "$name: OK ($(grep -o 'Done [0-9]* runs' "$out/$name.log"))"
      fp=$((fp + 1))
    else
      echo "$name: FAIL (see below; crashing input saved as $out/fuzz-*)"
      tail -40 "$out/$name.log"
      ff=$((ff + 1))
    fi
  done
  echo "fuzz $fp $ff 0" >> "$summary"
else
  echo "fuzz: build FAILED"
  echo "fuzz 0 1 0" >> "$summary"
fi

echo "=== install + pkg-config consumer ==="
prefix="$out/prefix"
meson setup "$out/install" --prefix "$prefix" -Dtests=false >/dev/null
ninja -C "$out/install" -j "$jobs" >/dev/null
meson install -C "$out/install" --quiet
pcdir=$(dirname "$(find "$prefix" -name cloudtaser.pc | head -1)")
libdir=$(dirname "$(find "$prefix" -name 'libcloudtaser.so' | head -1)")
pass=0; fail=0
if PKG_CONFIG_PATH="$pcdir" pkg-config --exists cloudtaser &&
   cc -std=c11 -Wall -Wextra -Werror examples/consumer/consumer.c -o "$out/consumer" \
      $(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs cloudtaser) &&
   LD_LIBRARY_PATH="$libdir" "$out/consumer" 0ad50c05-1153-4508-9237-4cb2912e2c23 \
      | grep -q 5af11b82299622a908c5aa10383bfcfd84f6cd251c7094e2246c7daf419dc463; then
  echo "consumer: OK (built with pkg-config against $prefix)"
  pass=1
else
  echo "consumer: FAIL"
  fail=1
fi
echo "install-consumer $pass $fail 0" >> "$summary"

echo "=== packaging: ABI, Python binding, man pages, systemd units, Helm charts, containers, examples ==="
# Debian's python3 (it has python3-yaml from scripts/deps.sh), whatever else is on PATH.
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
soname=$(cd "$libdir" && ls libcloudtaser.so.[0-9]* | sort | head -1)
pk_pass=0; pk_fail=0
pkg_check() { # pkg_check NAME COMMAND...: one line each; the log of a failure is shown
  local name=$1; shift
  local log="$out/packaging-$name.log"
  if "$@" > "$log" 2>&1; then
    echo "$name: OK ($(tail -n 1 "$log"))"
    pk_pass=$((pk_pass + 1))
  else
    echo "$name: FAIL"
    tail -n 60 "$log"
    pk_fail=$((pk_fail + 1))
  fi
}
pkg_check abi-baseline scripts/abi-check.sh "$out/plain"
pkg_check abi-check-selftest tests/abi/test_abi_check.sh
pkg_check python-binding env CLOUDTASER_LIB="$libdir/$soname" "$py" bindings/python/test_cloudtaser.py
pkg_check python-example sh -c 'CLOUDTASER_LIB="$1" "$2" examples/python/fingerprint.py 0AD50C05-1153-4508-9237-4cb2912e2c23 \
  | grep -x "init room hash: 5af11b82299622a908c5aa10383bfcfd84f6cd251c7094e2246c7daf419dc463"' _ "$libdir/$soname" "$py"
pkg_check man-pages env LD_LIBRARY_PATH="$libdir" "$py" tests/packaging/check_man.py --tools "$prefix/bin" \
  --man-src docs/man --installed "$prefix/share/man/man1" --self-test
pkg_check systemd-units env LD_LIBRARY_PATH="$libdir" "$py" tests/packaging/check_systemd.py --units deploy/systemd \
  --tools "$prefix/bin" --man "$prefix/share/man" --self-test
pkg_check helm-charts "$py" tests/packaging/test_helm.py --tools "$out/plain/tools"
pkg_check containers "$py" tests/packaging/check_containers.py --tools "$out/plain/tools" \
  --lib "$out/plain/libcloudtaser/$soname"
pkg_check examples "$py" tests/packaging/check_examples.py --tools "$out/plain/tools"
echo "packaging $pk_pass $pk_fail 0" >> "$summary"

echo "=== summary ==="
column -t "$summary" 2>/dev/null || cat "$summary"
read -r P F S < <(awk '{p+=$2; f+=$3; s+=$4} END {print p+0, f+0, s+0}' "$summary")
if [ "$S" -gt 0 ]; then
  echo "$P passed, $F failed, $S skipped"
else
  echo "$P passed, $F failed"
fi
[ "$F" -eq 0 ]
