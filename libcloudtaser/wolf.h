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

/*
 * Stock wolfSSL (generic P-256 math with FP_ECC, no SP math) keeps a cache of
 * fixed-point tables in thread-local storage: every point a thread multiplies
 * gets an entry of 256 preallocated points (about 820 KB), and the second
 * time the same point is used (the base point: every signature and
 * verification) its table is computed, 5-10 ms of CPU. Our threads make a
 * handful of ECC operations each (one beacon connection, one handshake), so
 * the tables never pay back, and every waiting thread of the bridge kept
 * several MB. ctp_ecc_release() drops this thread's entries after each
 * operation, so no table is ever computed or kept in our worker threads
 * (tls_ecc.c routes the handshake's signatures through it too). A no-op in builds with SP math
 * (the tuned and lean builds), which have no such cache.
 */
#if defined(FP_ECC) && !defined(WOLFSSL_HAVE_SP_ECC) && !defined(WOLFSSL_SP_MATH)
#define CTP_ECC_NO_TABLES 1
#include <unistd.h>
static inline void ctp_ecc_release(void)
{
    /*
     * Not on the process's main thread: that is where a command-line tool
     * makes its batch of operations (ct_register: two keys, two signatures),
     * and there a table pays back, while dropping the entries after each
     * operation costs more (glibc trims the main heap, and the next
     * operation faults the pages in again: register 4 ms -> 21-27 ms).
     * One thread's tables are a bounded cost; a thread per connection's are
     * not.
     */
    if (gettid() != getpid())
        wc_ecc_fp_free();
}
#else
static inline void ctp_ecc_release(void)
{
}
#endif

#endif
