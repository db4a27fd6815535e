/*
 * pki_key.c - ECDSA P-256 keys (ct_key: generate, load, export) and the
 * P-256 public keys taken from requests and certificates.
 *
 * Design notes (see also pki.h):
 * - A ct_key holds only its canonical SEC1 DER (in a ct_secret) and its public
 *   half. Every operation that needs the private key decodes a private
 *   ecc_key on the heap for the duration of the call and wipes it afterwards,
 *   so a ct_key is immutable and may be used by several threads at once.
 * - Keys and signatures use wolfSSL's DRBG (wc_InitRng), never the context's
 *   rng hook; serial numbers use the context's generator (context.h).
 * - Public keys from requests and certificates get full P-256 validation
 *   (point_valid) rather than wc_ecc_check_key, whose order check costs ~5 ms
 *   with the Debian build's generic math and adds nothing for cofactor 1.
 */
#include "pki_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* P-256                                                                    */

/* 1.2.840.10045.2.1 id-ecPublicKey, 1.2.840.10045.3.1.7 prime256v1 */
static const uint8_t k_oid_ec_public_key[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
static const uint8_t k_oid_p256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

/* The order n of the P-256 group, big endian. */
static const uint8_t k_p256_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};

/* The field prime p of P-256, big endian. */
static const uint8_t k_p256_p[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* 1 if 0 < d < n, in time independent of d. */
static int scalar_in_range(const uint8_t d[32])
{
    unsigned borrow = 0, nz = 0;
    int i;
    for (i = 31; i >= 0; i--) {
        unsigned t = (unsigned)d[i] - (unsigned)k_p256_n[i] - borrow;
        borrow = (t >> 8) & 1u;
        nz |= d[i];
    }
    return (int)(borrow & ((nz + 0xffu) >> 8));
}

/*
 * Full public-key validation for P-256 (SP 800-56A 5.6.2.3.3 with cofactor 1:
 * coordinates in [0, p), not the point at infinity, on the curve; n*Q = O
 * then holds by itself). wc_ecc_check_key would also compute n*Q, which
 * costs ~5 ms with the generic math of the Debian build.
 */
static int point_valid(ecc_key *k)
{
    uint8_t pt[65];
    word32 n = sizeof pt;
    if (wc_ecc_export_x963(k, pt, &n) != 0 || n != sizeof pt || pt[0] != 0x04)
        return 0;
    if (memcmp(pt + 1, k_p256_p, 32) >= 0 || memcmp(pt + 33, k_p256_p, 32) >= 0)
        return 0;
    return wc_ecc_point_is_at_infinity(&k->pubkey) == 0 &&
           wc_ecc_point_is_on_curve(&k->pubkey, k->idx) == 0;
}

/* ------------------------------------------------------------------------ */
/* wolfSSL helpers                                                          */

ecc_key *ctp_pki_ecc_new(void)
{
    ecc_key *k = ctp_calloc(1, sizeof *k);
    if (k && wc_ecc_init(k) != 0) {
        free(k);
        return NULL;
    }
    return k;
}

/* Frees an ecc_key from ctp_pki_ecc_new, wiping any private scalar it held. */
void ctp_pki_ecc_release(ecc_key *k)
{
    if (!k)
        return;
    wc_ecc_free(k);
    ct_secure_wipe(k, sizeof *k);
    free(k);
    ctp_ecc_release(); /* no fixed-point tables for our few operations (wolf.h) */
}

ct_err ctp_pki_crypto_err(ct_error *err, int wolf_rc, const char *what)
{
    return ctp_err(err, CT_E_CRYPTO, wolf_rc, "%s failed: %s (wolfSSL %d)", what,
                   wc_GetErrorString(wolf_rc), wolf_rc);
}

ct_err ctp_pki_rng_open(WC_RNG *rng, ct_error *err)
{
    int rc = wc_InitRng(rng);
    if (rc != 0)
        return ctp_pki_crypto_err(err, rc, "initialising wolfSSL's random generator");
    return CT_OK;
}

/* Decodes the key's private copy for one operation. Release with ctp_pki_ecc_release. */
ct_err ctp_pki_key_open(const ct_key *key, ecc_key **out, ct_error *err)
{
    word32 idx = 0;
    ecc_key *k = ctp_pki_ecc_new();
    int rc;
    *out = NULL;
    if (!k)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
    rc = wc_EccPrivateKeyDecode(ct_secret_data(key->der), &idx, k,
                                (word32)ct_secret_len(key->der));
    if (rc != 0) {
        ctp_pki_ecc_release(k);
        return ctp_pki_crypto_err(err, rc, "decoding the private key");
    }
    *out = k;
    return CT_OK;
}

/* Builds a ct_key from a complete (private + public) P-256 ecc_key. */
static ct_err key_wrap(ecc_key *k, ct_key **out, ct_error *err)
{
    ct_key *key;
    ct_err rc;
    int sz, n;
    word32 plen = sizeof key->point;

    *out = NULL;
    key = ctp_calloc(1, sizeof *key);
    if (!key)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a key");
    sz = wc_EccKeyDerSize(k, 1);
    if (sz <= 0) {
        rc = ctp_pki_crypto_err(err, sz, "sizing the private key DER");
        goto out;
    }
    if ((rc = ct_secret_new((size_t)sz, &key->der, err)) != CT_OK)
        goto out;
    n = wc_EccKeyToDer(k, ct_secret_data(key->der), (word32)sz);
    if (n <= 0) {
        rc = ctp_pki_crypto_err(err, n, "encoding the private key");
        goto out;
    }
    if ((rc = ct_secret_truncate(key->der, (size_t)n)) != CT_OK) {
        rc = ctp_err(err, rc, 0, "encoding the private key: size mismatch");
        goto out;
    }
    sz = wc_EccPublicKeyDerSize(k, 1);
    if (sz <= 0) {
        rc = ctp_pki_crypto_err(err, sz, "sizing the public key DER");
        goto out;
    }
    key->spki = malloc((size_t)sz);
    if (!key->spki) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a public key");
        goto out;
    }
    n = wc_EccPublicKeyToDer(k, key->spki, (word32)sz, 1);
    if (n <= 0) {
        rc = ctp_pki_crypto_err(err, n, "encoding the public key");
        goto out;
    }
    key->spki_len = (size_t)n;
    n = wc_ecc_export_x963(k, key->point, &plen);
    if (n != 0 || plen != sizeof key->point) {
        rc = ctp_pki_crypto_err(err, n, "exporting the public point");
        goto out;
    }
    *out = key;
    key = NULL;
    rc = CT_OK;
out:
    ct_key_free(key);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

ct_err ct_key_generate(ct_ctx *ctx, ct_key **out, ct_error *err)
{
    WC_RNG rng;
    int have_rng = 0, wrc;
    ecc_key *k = NULL;
    ct_err rc;

    (void)ctx; /* keys never come from the context's rng hook */
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_generate: out is NULL");
    *out = NULL;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if ((rc = ctp_pki_rng_open(&rng, err)) != CT_OK)
        return rc;
    have_rng = 1;
    if (!(k = ctp_pki_ecc_new())) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
        goto out;
    }
    wrc = wc_ecc_make_key_ex(&rng, 32, k, ECC_SECP256R1);
    if (wrc != 0) {
        rc = ctp_pki_crypto_err(err, wrc, "generating a P-256 key");
        goto out;
    }
    rc = key_wrap(k, out, err);
out:
    ctp_pki_ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    return rc;
}

typedef struct key_parts {
    ctp_der priv;  /* private scalar, 1..32 bytes big endian */
    ctp_der pub;   /* public point from the file (n == 0: absent) */
} key_parts;

/*
 * ECPrivateKey (RFC 5915 / SEC1). `curve_known` is set when a PKCS#8 wrapper
 * already named P-256; otherwise the [0] parameters must.
 */
static ct_err parse_sec1(ctp_der in, int curve_known, key_parts *kp, ct_error *err)
{
    ctp_der seq, v, f;
    uint8_t tag;

    if (ctp_der_expect(&in, 0x30, &seq) != 0 || in.n != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: not a DER ECPrivateKey structure");
    if (ctp_der_expect(&seq, 0x02, &v) != 0 || v.n != 1 || v.p[0] != 1)
        return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: unsupported ECPrivateKey version");
    if (ctp_der_expect(&seq, 0x04, &v) != 0 || v.n == 0 || v.n > 32)
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "EC private key: the private scalar is not a P-256 scalar");
    kp->priv = v;
    while (seq.n) {
        ctp_der o;
        if (ctp_der_get(&seq, &tag, &f) != 0)
            return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: malformed DER");
        if (tag == 0xa0) {
            if (ctp_der_expect(&f, 0x06, &o) != 0 || f.n != 0 ||
                !ctp_der_is(&o, k_oid_p256, sizeof k_oid_p256))
                return ctp_err(err, CT_E_CRYPTO, 0,
                               "EC private key is not on curve P-256 (only ECDSA P-256 is "
                               "supported)");
            curve_known = 1;
        } else if (tag == 0xa1) {
            if (ctp_der_expect(&f, 0x03, &o) != 0 || f.n != 0 || o.n < 2 || o.p[0] != 0)
                return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: malformed public key");
            kp->pub.p = o.p + 1;
            kp->pub.n = o.n - 1;
        } else {
            return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: unexpected field");
        }
    }
    if (!curve_known)
        return ctp_err(err, CT_E_CRYPTO, 0, "EC private key does not name its curve");
    return CT_OK;
}

/* SEC1 or PKCS#8 (RFC 5208 / 5958) DER: finds the P-256 scalar and point. */
static ct_err parse_private_der(const uint8_t *der, size_t len, key_parts *kp, ct_error *err)
{
    ctp_der in = {der, len}, seq, v, alg, oid, body;
    uint8_t tag;

    memset(kp, 0, sizeof *kp);
    if (ctp_der_expect(&in, 0x30, &seq) != 0 || in.n != 0 || ctp_der_expect(&seq, 0x02, &v) != 0 ||
        ctp_der_get(&seq, &tag, &body) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "not a private key: expected PEM or DER, SEC1 (EC PRIVATE KEY) or "
                       "PKCS#8 (PRIVATE KEY)");
    if (tag == 0x04) /* version, privateKey OCTET STRING: SEC1 */
        return parse_sec1((ctp_der){der, len}, 0, kp, err);
    if (tag != 0x30)
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "not an EC private key (SEC1 or PKCS#8); only ECDSA P-256 is supported");
    /* PKCS#8: version, AlgorithmIdentifier, OCTET STRING, [0] attrs, [1] pub */
    if (v.n != 1 || v.p[0] > 1)
        return ctp_err(err, CT_E_CRYPTO, 0, "PKCS#8 key: unsupported version");
    alg = body;
    if (ctp_der_expect(&alg, 0x06, &oid) != 0 ||
        !ctp_der_is(&oid, k_oid_ec_public_key, sizeof k_oid_ec_public_key))
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "PKCS#8 key is not an EC key (only ECDSA P-256 is supported)");
    if (ctp_der_expect(&alg, 0x06, &oid) != 0 || alg.n != 0 ||
        !ctp_der_is(&oid, k_oid_p256, sizeof k_oid_p256))
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "PKCS#8 EC key is not on curve P-256 (only ECDSA P-256 is supported)");
    if (ctp_der_expect(&seq, 0x04, &body) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "PKCS#8 key: missing private key");
    /* Trailing [0] attributes / [1] public key are ignored: the inner key
     * carries (or lets us derive) the public point. */
    return parse_sec1(body, 1, kp, err);
}

/* Imports the scalar, derives the public point, checks the file's point. */
static ct_err key_from_parts(const key_parts *kp, ct_key **out, ct_error *err)
{
    uint8_t d[32], pt[65];
    word32 ptlen = sizeof pt;
    ecc_key *k = NULL;
    WC_RNG rng;
    int have_rng = 0, wrc;
    ct_err rc;

    memset(d, 0, sizeof d);
    memcpy(d + (32 - kp->priv.n), kp->priv.p, kp->priv.n);
    if (!scalar_in_range(d)) {
        rc = ctp_err(err, CT_E_CRYPTO, 0, "EC private key: scalar out of range for P-256");
        goto out;
    }
    if ((rc = ctp_pki_rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    if (!(k = ctp_pki_ecc_new())) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
        goto out;
    }
    wrc = wc_ecc_import_private_key_ex(d, sizeof d, NULL, 0, k, ECC_SECP256R1);
    if (wrc == 0)
        wrc = wc_ecc_make_pub_ex(k, NULL, &rng);
    if (wrc != 0) {
        rc = ctp_pki_crypto_err(err, wrc, "importing the EC private key");
        goto out;
    }
    if (kp->pub.n) {
        /* The file's public key must be the one the scalar gives. */
        int compressed = kp->pub.n == 33;
        wrc = wc_ecc_export_x963_ex(k, pt, &ptlen, compressed);
        if (wrc != 0 || ptlen != kp->pub.n || memcmp(pt, kp->pub.p, ptlen) != 0) {
            rc = ctp_err(err, CT_E_CRYPTO, 0,
                         "EC private key: the stored public key does not match the private key");
            goto out;
        }
    }
    rc = key_wrap(k, out, err);
out:
    ct_secure_wipe(d, sizeof d);
    ctp_pki_ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    return rc;
}

ct_err ct_key_load(ct_ctx *ctx, const uint8_t *data, size_t len, ct_key **out, ct_error *err)
{
    uint8_t *buf = NULL;
    key_parts kp;
    ct_err rc;

    (void)ctx;
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_load: out is NULL");
    *out = NULL;
    if (!data || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_load: no data");
    if (len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, CT_E_TOOBIG, 0, "private key of %zu bytes exceeds %zu", len,
                       CTP_PKI_MAX_INPUT);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if (ctp_pki_find_bytes(data, len, "-----BEGIN ")) {
        int n;
        if (ctp_pki_find_bytes(data, len, "ENCRYPTED"))
            return ctp_err(err, CT_E_CRYPTO, 0,
                           "encrypted private keys are not supported; decrypt it first");
        if (!ctp_pki_find_bytes(data, len, "-----BEGIN EC PRIVATE KEY-----") &&
            !ctp_pki_find_bytes(data, len, "-----BEGIN PRIVATE KEY-----"))
            return ctp_err(err, CT_E_CRYPTO, 0,
                           "PEM does not hold an \"EC PRIVATE KEY\" or \"PRIVATE KEY\" block");
        buf = malloc(len);
        if (!buf)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory decoding PEM");
        n = wc_KeyPemToDer(data, (int)len, buf, (int)len, NULL);
        if (n <= 0) {
            rc = ctp_pki_crypto_err(err, n, "decoding the PEM private key");
            goto out;
        }
        rc = parse_private_der(buf, (size_t)n, &kp, err);
    } else {
        rc = parse_private_der(data, len, &kp, err);
    }
    if (rc == CT_OK)
        rc = key_from_parts(&kp, out, err);
out:
    if (buf) {
        ct_secure_wipe(buf, len);
        free(buf);
    }
    return rc;
}

ct_err ct_key_export(const ct_key *key, int pem, ct_secret **out, ct_error *err)
{
    ct_secret *s = NULL;
    ct_err rc;
    int need, n;
    const uint8_t *der;
    word32 der_len;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_export: out is NULL");
    *out = NULL;
    if (!key)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_export: key is NULL");
    if (!pem)
        return ct_secret_dup(key->der, out, err);
    der = ct_secret_data(key->der);
    der_len = (word32)ct_secret_len(key->der);
    need = wc_DerToPem(der, der_len, NULL, 0, ECC_PRIVATEKEY_TYPE);
    if (need <= 0)
        return ctp_pki_crypto_err(err, need, "sizing the PEM private key");
    /* PEM is written straight into secret memory: no plain intermediate. */
    if ((rc = ct_secret_new((size_t)need, &s, err)) != CT_OK)
        return rc;
    n = wc_DerToPem(der, der_len, ct_secret_data(s), (word32)need, ECC_PRIVATEKEY_TYPE);
    if (n <= 0 || n > need) {
        ct_secret_free(s);
        return ctp_pki_crypto_err(err, n, "encoding the PEM private key");
    }
    if ((rc = ct_secret_truncate(s, (size_t)n)) != CT_OK) {
        ct_secret_free(s);
        return ctp_err(err, rc, 0, "encoding the PEM private key: size mismatch");
    }
    *out = s;
    return CT_OK;
}

ct_err ct_key_public_der(const ct_key *key, uint8_t **der, size_t *len, ct_error *err)
{
    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_public_der: NULL output");
    *der = NULL;
    *len = 0;
    if (!key)
        return ctp_err(err, CT_E_INVALID, 0, "ct_key_public_der: key is NULL");
    *der = ctp_memdup(key->spki, key->spki_len);
    if (!*der)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    *len = key->spki_len;
    return CT_OK;
}

void ct_key_free(ct_key *key)
{
    if (!key)
        return;
    ct_secret_free(key->der);
    free(key->spki);
    free(key);
}

/* ------------------------------------------------------------------------ */
/* Public keys from requests and certificates                               */

/*
 * SubjectPublicKeyInfo that must hold a valid P-256 point. Errors carry `code`.
 */
ct_err ctp_pki_spki_p256(ctp_der spki, ct_err code, const char *what, ecc_key **out,
                         ct_error *err)
{
    ctp_der seq, alg, oid, bits;
    ecc_key *k;
    int wrc;

    *out = NULL;
    if (ctp_der_expect(&spki, 0x30, &seq) != 0 || spki.n != 0 ||
        ctp_der_expect(&seq, 0x30, &alg) != 0 || ctp_der_expect(&seq, 0x03, &bits) != 0 ||
        seq.n != 0 || ctp_der_expect(&alg, 0x06, &oid) != 0)
        return ctp_err(err, code, 0, "%s: malformed public key", what);
    if (!ctp_der_is(&oid, k_oid_ec_public_key, sizeof k_oid_ec_public_key))
        return ctp_err(err, code, 0,
                       "%s: the public key is not an EC key (only ECDSA P-256 is supported)",
                       what);
    if (ctp_der_expect(&alg, 0x06, &oid) != 0 || alg.n != 0 ||
        !ctp_der_is(&oid, k_oid_p256, sizeof k_oid_p256))
        return ctp_err(err, code, 0, "%s: the public key is not a P-256 key", what);
    if (bits.n < 2 || bits.p[0] != 0)
        return ctp_err(err, code, 0, "%s: malformed public key", what);
    if (!(k = ctp_pki_ecc_new()))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
    wrc = wc_ecc_import_x963_ex(bits.p + 1, (word32)(bits.n - 1), k, ECC_SECP256R1);
    if (wrc != 0 || !point_valid(k)) {
        ctp_pki_ecc_release(k);
        return ctp_err(err, code, wrc, "%s: the public key is not a valid P-256 point", what);
    }
    *out = k;
    return CT_OK;
}
