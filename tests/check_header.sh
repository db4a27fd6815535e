#!/bin/sh
# check_header.sh CC INCLUDE_DIR HEADER
# Compiles one public header on its own: pedantic C11 with every warning an
# error, and as C++ when a C++ compiler exists. Proves it is self-contained
# and pulls in no dependency header.
set -eu
cc=$1; inc=$2; h=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#include <cloudtaser/%s>\n#include <cloudtaser/%s>\nint ct_header_test_dummy;\n' "$h" "$h" > "$tmp/t.c"
"$cc" -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o"
if command -v c++ >/dev/null 2>&1; then
  cp "$tmp/t.c" "$tmp/t.cc"
  c++ -std=c++11 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.cc" -o "$tmp/t2.o"
fi
if grep -nE '#include *<(wolfssl|curl|jansson|sqlite3)' "$inc/cloudtaser/$h"; then
  echo "public header $h includes a dependency header" >&2; exit 1
fi
echo "ok: $h"
