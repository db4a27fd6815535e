#!/usr/bin/env bash
# test_cli_common.sh VERSION MAN_DIR TOOL... - what every cloudtaser program
# has in common: --version / -V print "NAME VERSION (libcloudtaser X.Y.Z)"
# and exit 0, --help / -h print a usage text with the exit status on stdout
# and exit 0, an unknown option exits 2 with a message that names the
# program and points at --help, -o takes only text or json (where the tool
# has -o), and the man page (if the tool has one) documents the exit status.
set -uo pipefail

version=$1
man_dir=$2
shift 2
checks=0
fails=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "not ok $checks - $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for tool in "$@"; do
  name=$(basename "$tool")
  for flag in --version -V; do
    out=$("$tool" "$flag" 2> "$tmp/err"); rc=$?
    if [ $rc = 0 ] && printf '%s\n' "$out" |
         grep -Eqx "$name $version \\(libcloudtaser [0-9]+\\.[0-9]+\\.[0-9]+\\)" &&
         [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [ ! -s "$tmp/err" ]; then
      ok "$name $flag: $out"
    else
      bad "$name $flag: exit $rc, got '$out' $(cat "$tmp/err")"
    fi
  done
  for flag in --help -h; do
    "$tool" "$flag" > "$tmp/out" 2> "$tmp/err"; rc=$?
    if [ $rc = 0 ] && grep -q "^Usage: $name" "$tmp/out" && grep -qi "exit status" "$tmp/out" &&
       grep -q -- "--version" "$tmp/out" && [ ! -s "$tmp/err" ]; then
      ok "$name $flag: usage on stdout with the exit status, exit 0"
    else
      bad "$name $flag: exit $rc; stdout: $(head -c 200 "$tmp/out"); stderr: $(head -c 200 "$tmp/err")"
    fi
  done
  "$tool" --no-such-option-xyz > "$tmp/out" 2> "$tmp/err"; rc=$?
  if [ $rc = 2 ] && [ ! -s "$tmp/out" ] && grep -q "^$name: " "$tmp/err" &&
     grep -q "no-such-option-xyz" "$tmp/err" && grep -q "Try '$name --help'" "$tmp/err"; then
    ok "$name: an unknown option exits 2 and points at --help"
  else
    bad "$name --no-such-option-xyz: exit $rc; stderr: $(cat "$tmp/err")"
  fi
  if grep -q -- "-o, --output" "$tmp/out" 2>/dev/null || "$tool" --help | grep -q -- "--output"; then
    "$tool" -o yaml > "$tmp/out" 2> "$tmp/err"; rc=$?
    if [ $rc = 2 ] && grep -q "^$name: " "$tmp/err"; then
      ok "$name -o yaml: refused (exit 2)"
    else
      bad "$name -o yaml: exit $rc; stderr: $(cat "$tmp/err")"
    fi
  fi
  if [ -f "$man_dir/$name.1.scd" ]; then
    if grep -q "^# EXIT STATUS" "$man_dir/$name.1.scd"; then
      ok "$name.1 documents the exit status"
    else
      bad "$name.1 has no EXIT STATUS section"
    fi
  fi
done
echo "1..$checks"
[ "$fails" = 0 ]
