#!/usr/bin/env bash
# test_abi_check.sh - builds tests/abi/fixture.c in seven versions and checks
# that scripts/abi-check.sh accepts the compatible one and refuses each
# incompatible one (so the ABI guard itself is tested, not only run).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=$top/tests/abi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/abi-fixture.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
build() { # build VARIANT
  cc -std=c11 -Wall -Wextra -Werror -g -O2 -fPIC -shared -fvisibility=hidden -DFX_VARIANT="$1" -I"$dir/include" \
     -Wl,-soname,libfx.so.0 -o "$tmp/libfx$1.so" "$dir/fixture.c"
}
check() { # check VARIANT EXPECTED_EXIT WHAT
  build "$1"
  local rc=0
  "$top/scripts/abi-check.sh" --lib "$tmp/libfx$1.so" --baseline "$tmp/base.abi" \
    --headers "$dir/include" > "$tmp/out$1" 2>&1 || rc=$?
  if [ "$rc" = "$2" ]; then
    echo "ok: variant $1 ($3): exit $rc"
  else
    echo "FAIL: variant $1 ($3): exit $rc, expected $2"; cat "$tmp/out$1"; fails=$((fails + 1))
  fi
}
fails=0
build 0
"$top/scripts/abi-check.sh" --update --lib "$tmp/libfx0.so" --baseline "$tmp/base.abi" \
  --headers "$dir/include" > /dev/null
check 0 0 "unchanged"
check 1 0 "function added, option member appended, enumerator appended, opaque type changed"
grep -q '+ int ct_fx_added(int)' "$tmp/out1" || { echo "FAIL: the added function is not reported"; fails=$((fails + 1)); }
check 2 1 "function removed"
check 3 1 "parameter type changed"
check 4 1 "member inserted in the middle of an option struct"
check 5 1 "member appended to a plain struct"
check 6 1 "enumerator renumbered"
[ "$fails" -eq 0 ] && echo "abi-check self-test: all 7 variants classified correctly"
exit "$fails"
