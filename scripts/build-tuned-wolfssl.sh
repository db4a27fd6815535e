#!/usr/bin/env bash
# build-tuned-wolfssl.sh [PREFIX]
#
# Builds wolfSSL from Debian's own source package (the exact version the
# system library comes from) with the x86-64 fast paths Debian leaves out:
# AES-NI/AVX (--enable-aesni --enable-intelasm) and the single-precision
# P-256 code (--enable-sp --enable-sp-asm), into a private prefix (default
# ./build-wolfssl-tuned/prefix). Nothing is installed system-wide; the
# temporary deb-src entry and its index are removed afterwards.
#
# Then build libcloudtaser against it:
#   meson setup build-tuned -Dwolfssl_prefix=$PWD/build-wolfssl-tuned/prefix
#
# The soname stays libwolfssl.so.35 but struct layouts differ from the system
# build, so never mix the system headers with this library: the meson option
# puts this prefix first for headers and library alike (rpath).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
work=${CT_WOLFSSL_WORK:-$top/build-wolfssl-tuned}
prefix=${1:-$work/prefix}
mkdir -p "$work"
[ "$(id -u)" -eq 0 ] || { echo "run as root (needs apt-get for the source package)" >&2; exit 1; }

if [ -f "$prefix/include/wolfssl/options.h" ] && [ -e "$prefix/lib/libwolfssl.so" ]; then
  echo "tuned wolfSSL already in $prefix"; exit 0
fi

export DEBIAN_FRONTEND=noninteractive
need=()
for p in dpkg-dev autoconf automake libtool make gcc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# A deb-src entry mirroring the configured binary sources (deb822 or
# one-line format), used for this one download and removed afterwards.
srclist=$(mktemp -d)
trap 'rm -rf "$srclist"' EXIT
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/*.sources > "$srclist/src.sources"
  srcopt=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$srclist")
else
  grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$srclist/src.list"
  srcopt=(-o "Dir::Etc::sourcelist=$srclist/src.list" -o "Dir::Etc::sourceparts=-")
fi
state=$(mktemp -d)
trap 'rm -rf "$srclist" "$state"' EXIT
aptopt=("${srcopt[@]}" -o "Dir::State::Lists=$state" -o "Dir::State::status=/var/lib/dpkg/status")
mkdir -p "$state/partial"
apt-get "${aptopt[@]}" update -q
version=$(dpkg-query -W -f='${Version}' libwolfssl-dev 2>/dev/null || true)
cd "$work"
rm -rf src && mkdir src && cd src
if [ -n "$version" ]; then
  apt-get "${aptopt[@]}" source -q --download-only "wolfssl=$version" || apt-get "${aptopt[@]}" source -q --download-only wolfssl
else
  apt-get "${aptopt[@]}" source -q --download-only wolfssl
fi
dpkg-source -x --no-check ./*.dsc wolfssl >/dev/null
cd wolfssl
./autogen.sh >/dev/null 2>&1 || autoreconf -fi >/dev/null
# Debian's own flags (debian/rules) plus the fast paths.
./configure --prefix="$prefix" --enable-distro --enable-pkcs11 --disable-examples \
  --enable-aesni --enable-intelasm --enable-sp --enable-sp-asm \
  CFLAGS="$(dpkg-buildflags --get CFLAGS)" LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" >/dev/null
make -j"$(nproc)" >/dev/null
make install >/dev/null
# upstream make install does not install options.h (Debian's packaging does)
install -m 0644 wolfssl/options.h "$prefix/include/wolfssl/options.h"
grep -q WOLFSSL_AESNI "$prefix/include/wolfssl/options.h"
grep -q WOLFSSL_HAVE_SP_ECC "$prefix/include/wolfssl/options.h"
echo "tuned wolfSSL $(sed -n 's/#define LIBWOLFSSL_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/wolfssl/version.h") installed in $prefix"
