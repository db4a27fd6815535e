/*
 * wolf.h - the one place wolfSSL headers are included. options.h must come
 * first so every struct matches the library we link against.
 */
#ifndef CTP_WOLF_H
#define CTP_WOLF_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfio.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>


/*
 * Cipher suite preference, one definition for every TLS context we make.
 * Debian's wolfSSL has no AES-NI: ChaCha20-Poly1305 is about 2.5x faster
 * and constant-time there, so it comes first. A build with AES-NI (the tuned
 * build, scripts/build-tuned-wolfssl.sh) relays AES-128-GCM about 1.24x
 * faster than ChaCha20 (docs/PERFORMANCE.md), so AES-GCM comes first there.
 */
#ifdef WOLFSSL_AESNI
#define CTP_TLS_PREFERRED_SUITE "TLS13-AES128-GCM-SHA256"
#define CTP_TLS_CIPHER_LIST \
    "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES256-GCM-SHA384"
#else
#define CTP_TLS_PREFERRED_SUITE "TLS13-CHACHA20-POLY1305-SHA256"
#define CTP_TLS_CIPHER_LIST \
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384"
#endif

#endif
