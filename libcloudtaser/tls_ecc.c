/*
 * tls_ecc.c - the ECDSA operations of a TLS handshake without wolfSSL's
 * per-thread fixed-point tables (Debian's build only; see wolf.h).
 *
 * With FP_ECC and no SP math, every point a thread multiplies gets a cache
 * entry of ~820 KB in thread-local storage, and the base point's table is
 * computed on its second use (5-10 ms of CPU). Our handshakes run on threads
 * that make a handful of ECC operations each (one per beacon connection and
 * waiter), so the cache never paid back: it added CPU to every bootstrap and
 * session and held several MB in each waiting thread of the bridge
 * (docs/PERFORMANCE.md). These PK callbacks make the signature and the
 * verifications of a handshake (CertificateVerify and the chain) themselves
 * and drop the thread's cache entries after each one (ctp_ecc_release).
 * Builds with SP math (WOLFSSL_HAVE_SP_ECC: the tuned and lean builds) have
 * no such cache and keep wolfSSL's own code. The beacon's server context
 * (relay.c) keeps the cache too: its workers are long-lived and sign on
 * every handshake, so there the table pays back.
 */
#include "wolf.h"
#include "tls_internal.h"

#include <string.h>

#ifdef CTP_ECC_NO_TABLES

static int ecc_sign_cb(WOLFSSL *ssl, const unsigned char *in, unsigned int in_len,
                       unsigned char *out, word32 *out_len, const unsigned char *key_der,
                       unsigned int key_len, void *user)
{
    ecc_key k;
    WC_RNG rng;
    word32 idx = 0;
    int r;

    (void)ssl;
    (void)user;
    ctp_ecc_release(); /* whatever this thread counted before */
    if ((r = wc_InitRng(&rng)) != 0)
        return r;
    if ((r = wc_ecc_init(&k)) != 0) {
        wc_FreeRng(&rng);
        return r;
    }
    r = wc_EccPrivateKeyDecode(key_der, &idx, &k, key_len);
    if (r == 0)
        r = wc_ecc_sign_hash(in, in_len, out, out_len, &rng, &k);
    wc_ecc_free(&k); /* zeroes the private scalar */
    ct_secure_wipe(&k, sizeof k);
    wc_FreeRng(&rng);
    ctp_ecc_release();
    return r;
}

static int ecc_verify_cb(WOLFSSL *ssl, const unsigned char *sig, unsigned int sig_len,
                         const unsigned char *hash, unsigned int hash_len,
                         const unsigned char *key_der, unsigned int key_len, int *result,
                         void *user)
{
    ecc_key k;
    word32 idx = 0;
    int r;

    (void)ssl;
    (void)user;
    *result = 0;
    ctp_ecc_release();
    if ((r = wc_ecc_init(&k)) != 0)
        return r;
    r = wc_EccPublicKeyDecode(key_der, &idx, &k, key_len);
    if (r == 0)
        r = wc_ecc_verify_hash(sig, sig_len, hash, hash_len, result, &k);
    wc_ecc_free(&k);
    ctp_ecc_release();
    return r;
}

void ctp_tls_install_ecc_cbs(WOLFSSL_CTX *wctx)
{
    wolfSSL_CTX_SetEccSignCb(wctx, ecc_sign_cb);
    wolfSSL_CTX_SetEccVerifyCb(wctx, ecc_verify_cb);
}

#else

void ctp_tls_install_ecc_cbs(WOLFSSL_CTX *wctx)
{
    (void)wctx;
}

#endif
