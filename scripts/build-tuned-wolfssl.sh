#!/usr/bin/env bash
# build-tuned-wolfssl.sh [--lean] [PREFIX]
#
# Builds wolfSSL from Debian's own source package (the exact version the
# system library comes from) with the x86-64 fast paths Debian leaves out:
# AES-NI/AVX (--enable-aesni --enable-intelasm) and the single-precision
# P-256 code (--enable-sp --enable-sp-asm), into a private prefix (default
# ./build-wolfssl-tuned/prefix). Nothing is installed system-wide; the
# temporary deb-src entry and its index are removed afterwards.
#
# Two flavours:
#   (default) tuned: Debian's own configure flags (--enable-distro) plus the
#             fast paths. Same features as the system library.
#   --lean    lean: only what libcloudtaser, its tests and tools use (TLS 1.3,
#             ECC P-256/384 + X25519 + Ed25519, RSA verification, AES-GCM and
#             ChaCha20-Poly1305, HKDF, PSK, SNI, tickets, certificate and
#             request generation) plus the fast paths, and none of the
#             per-connection bloat of the distro build (no SESSION_CERTS: a
#             WOLFSSL_SESSION of 0.2 KB instead of 37.5 KB). An idle TLS 1.3
#             server session costs about 3 KB instead of about 57 KB; this is
#             the build for a beacon with many waiting peers
#             (docs/PERFORMANCE.md). Default prefix ./build-wolfssl-lean/prefix.
#
# Then build libcloudtaser against it:
#   meson setup build-tuned -Dwolfssl_prefix=$PWD/build-wolfssl-tuned/prefix
#   meson setup build-lean -Dwolfssl_prefix=$PWD/build-wolfssl-lean/prefix
#
# CT_WOLFSSL_SRC=DIR uses an already unpacked copy of Debian's source package
# (the directory dpkg-source -x made) instead of downloading it; the copy is
# built out of a fresh duplicate, DIR itself is not modified.
#
# The soname stays libwolfssl.so.35 but struct layouts differ from the system
# build, so never mix the system headers with this library: the meson option
# puts this prefix first for headers and library alike (rpath).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
flavour=tuned
if [ "${1:-}" = "--lean" ]; then flavour=lean; shift; fi
work=${CT_WOLFSSL_WORK:-$top/build-wolfssl-$flavour}
prefix=${1:-$work/prefix}
mkdir -p "$work"
work=$(cd "$work" && pwd)

if [ -f "$prefix/include/wolfssl/options.h" ] && [ -e "$prefix/lib/libwolfssl.so" ]; then
  echo "$flavour wolfSSL already in $prefix"; exit 0
fi
if [ -n "${CT_WOLFSSL_SRC:-}" ]; then
  [ -f "$CT_WOLFSSL_SRC/configure.ac" ] || { echo "CT_WOLFSSL_SRC=$CT_WOLFSSL_SRC is not a wolfSSL source tree" >&2; exit 1; }
elif [ "$(id -u)" -ne 0 ]; then
  echo "run as root (needs apt-get for the source package), or set CT_WOLFSSL_SRC" >&2; exit 1
fi

if [ -n "${CT_WOLFSSL_SRC:-}" ]; then
  rm -rf "$work/src" && mkdir -p "$work/src"
  cp -a "$CT_WOLFSSL_SRC" "$work/src/wolfssl"
  cd "$work/src/wolfssl"
  [ ! -f Makefile ] || make distclean >/dev/null 2>&1 || true
  cd "$work/src"
else
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
fi
cd wolfssl
./autogen.sh >/dev/null 2>&1 || autoreconf -fi >/dev/null
fast=(--enable-aesni --enable-intelasm --enable-sp --enable-sp-asm)
cflags=$(dpkg-buildflags --get CFLAGS 2>/dev/null || echo "-O2 -g")
ldflags=$(dpkg-buildflags --get LDFLAGS 2>/dev/null || true)
if [ "$flavour" = tuned ]; then
  # Debian's own flags (debian/rules) plus the fast paths.
  ./configure --prefix="$prefix" --enable-distro --enable-pkcs11 --disable-examples \
    "${fast[@]}" CFLAGS="$cflags" LDFLAGS="$ldflags" >"$work/configure.log"
else
  # What libcloudtaser calls, nothing else. The defines after CFLAGS are
  # behaviours the library relies on that have no configure switch of their
  # own in 5.5.4 (Debian's build gets them from --enable-distro):
  #  - the verify callback sees every certificate of the chain, also the
  #    ones that verify (pinning, IP SANs);
  #  - wolfSSL_read does not return early on a TLS 1.3 post-handshake
  #    message (NewSessionTicket) with no application data;
  #  - alternative chains (a trusted intermediate ends the path);
  #  - the alert history and extra alerts used in error messages;
  #  - OpenSSL-style return codes where wolfSSL offers both (as Debian's);
  #  - subject alternative names in generated certificates (5.5.4 has no
  #    --enable-altnames; other options turn it on in the distro build);
  #  - wc_ecc_point_is_on_curve (public key checks in pki_key.c);
  #  - OpenSSL-compatible defaults: X509_V_ERR codes in the verify callback
  #    (tls_auth.c tells "no trusted issuer" from other failures), a PSK
  #    client needs no certificate when the server's mode asks for one, and
  #    a CA is loaded as a trust anchor without checking its dates against
  #    the system clock (pki_verify.c checks them with the context's clock).
  ./configure --prefix="$prefix" --enable-option-checking=fatal --disable-examples --disable-crypttests \
    --enable-tls13 --disable-oldtls \
    --enable-ecc --enable-eccshamir --enable-supportedcurves \
    --enable-curve25519 --enable-ed25519 \
    --enable-aesgcm --enable-chacha --enable-poly1305 \
    --enable-sha384 --enable-sha512 --enable-hkdf \
    --enable-psk --enable-sni --enable-session-ticket \
    --enable-certgen --enable-certreq --enable-certext --enable-keygen \
    --enable-opensslextra --enable-sys-ca-certs --enable-ip-alt-name \
    "${fast[@]}" \
    CFLAGS="$cflags -DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_VERIFY_CB_ALL_CERTS \
      -DWOLFSSL_TLS13_NO_PEEK_HANDSHAKE_DONE -DWOLFSSL_ALT_CERT_CHAINS -DWOLFSSL_EXTRA_ALERTS -DWOLFSSL_ALT_NAMES -DUSE_ECC_B_PARAM \
      -DOPENSSL_COMPATIBLE_DEFAULTS \
      -DWOLFSSL_ERROR_CODE_OPENSSL" \
    LDFLAGS="$ldflags" >"$work/configure.log"
fi
make -j"$(nproc)" >"$work/make.log"
make install >/dev/null
# upstream make install does not install options.h (Debian's packaging does)
install -m 0644 wolfssl/options.h "$prefix/include/wolfssl/options.h"
grep -q WOLFSSL_AESNI "$prefix/include/wolfssl/options.h"
grep -q WOLFSSL_HAVE_SP_ECC "$prefix/include/wolfssl/options.h"
if [ "$flavour" = lean ]; then
  ! grep -q 'define SESSION_CERTS' "$prefix/include/wolfssl/options.h"
fi
echo "$flavour wolfSSL $(sed -n 's/#define LIBWOLFSSL_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/wolfssl/version.h") installed in $prefix"
