#!/bin/sh
# check_symbols.sh LIB HEADER_DIR
# 1. Every dynamic symbol the library defines is ct_* (plus the version node).
# 2. Every function declared CT_API in the public headers is exported.
set -eu
lib=$1; hdrs=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported"
bad=$(grep -vE '^(ct_[a-z0-9_]+|CLOUDTASER_[0-9]+)$' "$tmp/exported" || true)
if [ -n "$bad" ]; then
  echo "symbols exported that are not ct_*:" >&2; echo "$bad" >&2; exit 1
fi
# Declared API: "CT_API <type...> ct_name(" possibly across two lines.
cat "$hdrs"/*.h | tr '\n' ' ' | grep -oE 'CT_API[^;(]*\(' | grep -oE 'ct_[a-z0-9_]+ *\($' \
  | tr -d ' (' | sort -u > "$tmp/declared"
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ]; then
  echo "declared CT_API but not exported (missing implementation?):" >&2; echo "$missing" >&2; exit 1
fi
n=$(wc -l < "$tmp/exported")
echo "ok: $n exported symbols, all ct_*, every declared function present"
# The soname comes from CT_ABI_VERSION.
abi=$(sed -n 's/^#define CT_ABI_VERSION \([0-9]*\).*/\1/p' "$hdrs/version.h")
soname=$(objdump -p "$lib" | awk '/SONAME/{print $2}')
[ "$soname" = "libcloudtaser.so.$abi" ] || { echo "soname $soname != libcloudtaser.so.$abi" >&2; exit 1; }
echo "ok: soname $soname"
