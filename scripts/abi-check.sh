#!/usr/bin/env bash
# abi-check.sh - compares the ABI of a freshly built libcloudtaser.so with the
# committed baseline (abi/libcloudtaser.abi, written by abidw) using abidiff
# from Debian's abigail-tools.
#
#   scripts/abi-check.sh [BUILD_DIR]            check (default BUILD_DIR: build)
#   scripts/abi-check.sh --update [BUILD_DIR]   rewrite the baseline deliberately
#   scripts/abi-check.sh --lib SO --baseline XML --headers DIR [--update]
#                                               any library (tests/abi uses this)
#
# Passes when the new library is a compatible superset of the baseline:
#   - functions added (listed as a report, never a failure);
#   - enumerators appended to an enum (e.g. a new ct_err code);
#   - members appended at the end of a versioned option struct or vtable
#     (ct_*_options, ct_*_ops: they start with a version field, STYLE.md §6);
#   - any change inside an opaque type (typedef struct ct_x ct_x; in a public
#     header: callers never see its layout).
# Fails on anything else: a function or variable removed, a changed
# signature, a public struct changed (ct_error is frozen), a member inserted
# before the end, a renumbered enumerator, a changed soname.
#
# On a deliberate break: bump CT_ABI_VERSION in include/cloudtaser/version.h
# (the soname follows it), rebuild, run `scripts/abi-check.sh --update` and
# commit the new baseline together with the change. Additions need no update,
# but updating after them keeps later reports short.
#
# The library must carry DWARF debug information (meson's default
# debugoptimized or debug build types; not `release`).
#
# Exit status: 0 compatible (or baseline written), 1 incompatible change,
# 2 usage or tool error.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

update=0 lib="" baseline="$here/abi/libcloudtaser.abi" headers="$here/include/cloudtaser" build=""
while [ $# -gt 0 ]; do
  case $1 in
    --update) update=1 ;;
    --lib) lib=${2:?--lib needs a path}; shift ;;
    --baseline) baseline=${2:?--baseline needs a path}; shift ;;
    --headers) headers=${2:?--headers needs a directory}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "abi-check: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) build=$1 ;;
  esac
  shift
done
if [ -z "$lib" ]; then
  lib=${build:-$here/build}/libcloudtaser/libcloudtaser.so
fi

for t in abidw abidiff readelf; do
  command -v "$t" >/dev/null 2>&1 || {
    echo "abi-check: $t not found (Debian: apt-get install abigail-tools binutils; scripts/deps.sh installs them)" >&2
    exit 2; }
done
[ -e "$lib" ] || { echo "abi-check: no library at $lib (build first, or pass BUILD_DIR / --lib)" >&2; exit 2; }
[ -d "$headers" ] || { echo "abi-check: no header directory $headers" >&2; exit 2; }
if ! readelf -S "$lib" 2>/dev/null | grep -c '\.debug_info' >/dev/null; then
  echo "abi-check: $lib has no debug information: build with --buildtype=debugoptimized (or debug)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/abi-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --exported-interfaces-only: abidw 2.2 otherwise binds a function to the first
# (declaration-only) DIE it meets in another translation unit and loses its
# ELF symbol, so half the API would be missing from the corpus.
# No paths, no DT_NEEDED: the baseline must not depend on where or against
# which dependency versions the library was built.
abidw --exported-interfaces-only --no-corpus-path --no-comp-dir-path --short-locs --no-elf-needed \
  "$lib" > "$tmp/current.abi"

soname_of() { sed -n "/<abi-corpus /{s/.*soname='\([^']*\)'.*/\1/p;q}" "$1"; }

if [ "$update" = 1 ]; then
  mkdir -p "$(dirname "$baseline")"
  if [ -f "$baseline" ]; then
    old=$(soname_of "$baseline") new=$(soname_of "$tmp/current.abi")
    echo "abi-check: updating $baseline ($old -> $new)"
    abidiff "$baseline" "$tmp/current.abi" | sed 's/^/  /' || true
  fi
  cp "$tmp/current.abi" "$baseline"
  n=$(grep -c "<elf-symbol name='ct_" "$baseline" || true)
  echo "abi-check: baseline written: $baseline ($n exported functions, soname $(soname_of "$baseline"))"
  echo "abi-check: commit it together with the change that needed it"
  exit 0
fi

[ -f "$baseline" ] || { echo "abi-check: no baseline at $baseline (scripts/abi-check.sh --update writes one)" >&2; exit 2; }

# Suppressions, derived from the public headers on every run so that they
# follow the API: opaque types, and appended members of versioned structs.
opaque=$(cat "$headers"/*.h | grep -ohE '^typedef struct (ct_[a-z0-9_]+) \1;' | awk '{print $3}' | sort -u | paste -sd'|' -)
{
  if [ -n "$opaque" ]; then
    printf '[suppress_type]\n  type_kind = struct\n  name_regexp = ^(%s)$\n\n' "$opaque"
  fi
  printf '[suppress_type]\n  type_kind = struct\n  name_regexp = ^ct_[a-z0-9_]*_(options|ops)$\n'
  printf '  has_data_member_inserted_at = end\n'
} > "$tmp/suppressions"

set +e
abidiff --suppressions "$tmp/suppressions" "$baseline" "$tmp/current.abi" > "$tmp/report" 2>&1
rc=$?
set -e

# abidiff's exit status is a bit field: 1 error, 2 usage, 4 ABI change,
# 8 incompatible change. Bit 4 alone also covers compatible additions, so the
# summary lines decide: anything removed or changed fails.
old_soname=$(soname_of "$baseline") new_soname=$(soname_of "$tmp/current.abi")
bad=0 why=()
if [ $((rc & 3)) -ne 0 ]; then
  cat "$tmp/report" >&2
  echo "abi-check: abidiff failed (exit $rc)" >&2
  exit 2
fi
[ $((rc & 8)) -ne 0 ] && { bad=1; why+=("abidiff reports an incompatible change"); }
if grep -qE '([1-9][0-9]*) (Removed|Changed)' "$tmp/report"; then
  bad=1; why+=("$(grep -E 'changes summary' "$tmp/report" | grep -E '[1-9][0-9]* (Removed|Changed)' | sed 's/^ *//' | paste -sd';' -)")
fi
if [ "$old_soname" != "$new_soname" ]; then
  bad=1; why+=("soname changed from $old_soname to $new_soname")
fi
added=$(sed -n "s/^ *\[A\] 'function \(.*\)' *{.*/\1/p; s/^ *\[A\] 'function \(.*\)'\$/\1/p" "$tmp/report")
nadded=$(printf '%s' "$added" | grep -c . || true)

if [ "$bad" = 1 ]; then
  cat "$tmp/report"
  echo "abi-check: INCOMPATIBLE ABI change against $(basename "$baseline"): ${why[*]}"
  if [ "$old_soname" = "$new_soname" ]; then
    echo "abi-check: if the break is deliberate, bump CT_ABI_VERSION in include/cloudtaser/version.h,"
    echo "           rebuild and run scripts/abi-check.sh --update; otherwise restore the old interface"
    echo "           (add a new function or append to a versioned option struct instead)"
  else
    echo "abi-check: the soname moved on: run scripts/abi-check.sh --update and commit the new baseline"
  fi
  exit 1
fi
if [ "$nadded" -gt 0 ]; then
  echo "abi-check: compatible; $nadded function(s) added since the baseline:"
  printf '%s\n' "$added" | sed 's/^/  + /'
else
  echo "abi-check: compatible; no change against the baseline ($new_soname)"
fi
filtered=$(sed -n 's/.*(\([0-9][0-9]*\) filtered out).*/\1/p' "$tmp/report" | awk '{n+=$1} END {print n+0}')
if [ "$filtered" -gt 0 ]; then
  echo "abi-check: $filtered function(s) reach a compatible change (appended enumerators or option members, opaque types); abidiff lists them with --harmless"
fi
exit 0
