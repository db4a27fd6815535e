/*
 * pki.c - ECDSA P-256 keys, a self-signed per-cluster CA, PKCS#10 requests,
 * leaf issuance from requests, and chain verification (wolfSSL 5.5.4).
 *
 * Design notes (see also pki.h):
 * - A ct_key holds only its canonical SEC1 DER (in a ct_secret) and its public
 *   half. Every operation that needs the private key decodes a private
 *   ecc_key on the heap for the duration of the call and wipes it afterwards,
 *   so a ct_key is immutable and may be used by several threads at once.
 * - Keys and signatures use wolfSSL's DRBG (wc_InitRng), never the context's
 *   rng hook; serial numbers use the context's generator (context.h).
 * - Validity periods are computed from, and checked against, the context's
 *   wall clock (ct_ctx_wall_ms), never wolfSSL's view of the system clock.
 * - A request's self-signature is verified once, by us, over the
 *   CertificationRequestInfo bytes we extract ourselves (see csr_open): the
 *   check does not depend on how a wolfSSL build treats requests, and the key
 *   verified is the key certified. (wolfSSL 5.5.4 would also verify it in
 *   wc_ParseCert(CERTREQ_TYPE, VERIFY); a second verify of a one-time key
 *   costs ~3 ms and an ~800 KB FP_ECC table, so it is not done twice.)
 * - Public keys from requests and certificates get full P-256 validation
 *   (point_valid) rather than wc_ecc_check_key, whose order check costs ~5 ms
 *   with the Debian build's generic math and adds nothing for cofactor 1.
 */
#include "internal.h"
#include "wolf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest certificate, request or key accepted as input. */
#define CTP_PKI_MAX_INPUT ((size_t)64 * 1024)
/* notBefore is backdated by this much to tolerate clock skew between peers. */
#define CTP_PKI_BACKDATE_S ((int64_t)3600)
#define CTP_PKI_DAYS_CA 3650
#define CTP_PKI_DAYS_LEAF 365
#define CTP_PKI_DAYS_MAX 36500u
#define CTP_PKI_NAME_MAX 63
#define CTP_PKI_SERIAL_LEN 16

struct ct_key {
    ct_secret *der;      /* SEC1 ECPrivateKey with curve OID and public key */
    uint8_t *spki;       /* SubjectPublicKeyInfo DER (public) */
    size_t spki_len;
    uint8_t point[65];   /* uncompressed public point 04||X||Y (public) */
};

/* ------------------------------------------------------------------------ */
/* Small DER reader (what the key and request formats need).               */

typedef struct der_rd {
    const uint8_t *p;
    size_t n;
} der_rd;

/* Reads one TLV (single-byte tag, definite minimal length). 0 on success. */
static int der_get(der_rd *r, uint8_t *tag, der_rd *val)
{
    size_t len, hdr = 2;
    if (r->n < 2 || (r->p[0] & 0x1f) == 0x1f)
        return -1;
    *tag = r->p[0];
    len = r->p[1];
    if (len & 0x80) {
        size_t nl = len & 0x7f, k;
        if (nl == 0 || nl > 3 || r->n < 2 + nl || r->p[2] == 0)
            return -1;
        len = 0;
        for (k = 0; k < nl; k++)
            len = (len << 8) | r->p[2 + k];
        if (len < 0x80)
            return -1;
        hdr += nl;
    }
    if (len > r->n - hdr)
        return -1;
    val->p = r->p + hdr;
    val->n = len;
    r->p += hdr + len;
    r->n -= hdr + len;
    return 0;
}

static int der_expect(der_rd *r, uint8_t tag, der_rd *val)
{
    uint8_t t;
    return (der_get(r, &t, val) == 0 && t == tag) ? 0 : -1;
}

static int der_is(const der_rd *v, const uint8_t *bytes, size_t n)
{
    return v->n == n && memcmp(v->p, bytes, n) == 0;
}

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

/* ------------------------------------------------------------------------ */
/* wolfSSL helpers                                                          */

static ecc_key *ecc_new(void)
{
    ecc_key *k = ctp_calloc(1, sizeof *k);
    if (k && wc_ecc_init(k) != 0) {
        free(k);
        return NULL;
    }
    return k;
}

/* Frees an ecc_key from ecc_new, wiping any private scalar it held. */
static void ecc_release(ecc_key *k)
{
    if (!k)
        return;
    wc_ecc_free(k);
    ct_secure_wipe(k, sizeof *k);
    free(k);
}

static ct_err crypto_err(ct_error *err, int wolf_rc, const char *what)
{
    return ctp_err(err, CT_E_CRYPTO, wolf_rc, "%s failed: %s (wolfSSL %d)", what,
                   wc_GetErrorString(wolf_rc), wolf_rc);
}

static ct_err rng_open(WC_RNG *rng, ct_error *err)
{
    int rc = wc_InitRng(rng);
    if (rc != 0)
        return crypto_err(err, rc, "initialising wolfSSL's random generator");
    return CT_OK;
}

/* Decodes the key's private copy for one operation. Release with ecc_release. */
static ct_err key_open(const ct_key *key, ecc_key **out, ct_error *err)
{
    word32 idx = 0;
    ecc_key *k = ecc_new();
    int rc;
    *out = NULL;
    if (!k)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
    rc = wc_EccPrivateKeyDecode(ct_secret_data(key->der), &idx, k,
                                (word32)ct_secret_len(key->der));
    if (rc != 0) {
        ecc_release(k);
        return crypto_err(err, rc, "decoding the private key");
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
        rc = crypto_err(err, sz, "sizing the private key DER");
        goto out;
    }
    if ((rc = ct_secret_new((size_t)sz, &key->der, err)) != CT_OK)
        goto out;
    n = wc_EccKeyToDer(k, ct_secret_data(key->der), (word32)sz);
    if (n <= 0) {
        rc = crypto_err(err, n, "encoding the private key");
        goto out;
    }
    if ((rc = ct_secret_truncate(key->der, (size_t)n)) != CT_OK) {
        rc = ctp_err(err, rc, 0, "encoding the private key: size mismatch");
        goto out;
    }
    sz = wc_EccPublicKeyDerSize(k, 1);
    if (sz <= 0) {
        rc = crypto_err(err, sz, "sizing the public key DER");
        goto out;
    }
    key->spki = malloc((size_t)sz);
    if (!key->spki) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a public key");
        goto out;
    }
    n = wc_EccPublicKeyToDer(k, key->spki, (word32)sz, 1);
    if (n <= 0) {
        rc = crypto_err(err, n, "encoding the public key");
        goto out;
    }
    key->spki_len = (size_t)n;
    n = wc_ecc_export_x963(k, key->point, &plen);
    if (n != 0 || plen != sizeof key->point) {
        rc = crypto_err(err, n, "exporting the public point");
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
    if ((rc = rng_open(&rng, err)) != CT_OK)
        return rc;
    have_rng = 1;
    if (!(k = ecc_new())) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
        goto out;
    }
    wrc = wc_ecc_make_key_ex(&rng, 32, k, ECC_SECP256R1);
    if (wrc != 0) {
        rc = crypto_err(err, wrc, "generating a P-256 key");
        goto out;
    }
    rc = key_wrap(k, out, err);
out:
    ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    return rc;
}

typedef struct key_parts {
    der_rd priv;  /* private scalar, 1..32 bytes big endian */
    der_rd pub;   /* public point from the file (n == 0: absent) */
} key_parts;

/*
 * ECPrivateKey (RFC 5915 / SEC1). `curve_known` is set when a PKCS#8 wrapper
 * already named P-256; otherwise the [0] parameters must.
 */
static ct_err parse_sec1(der_rd in, int curve_known, key_parts *kp, ct_error *err)
{
    der_rd seq, v, f;
    uint8_t tag;

    if (der_expect(&in, 0x30, &seq) != 0 || in.n != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: not a DER ECPrivateKey structure");
    if (der_expect(&seq, 0x02, &v) != 0 || v.n != 1 || v.p[0] != 1)
        return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: unsupported ECPrivateKey version");
    if (der_expect(&seq, 0x04, &v) != 0 || v.n == 0 || v.n > 32)
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "EC private key: the private scalar is not a P-256 scalar");
    kp->priv = v;
    while (seq.n) {
        der_rd o;
        if (der_get(&seq, &tag, &f) != 0)
            return ctp_err(err, CT_E_CRYPTO, 0, "EC private key: malformed DER");
        if (tag == 0xa0) {
            if (der_expect(&f, 0x06, &o) != 0 || f.n != 0 || !der_is(&o, k_oid_p256, sizeof k_oid_p256))
                return ctp_err(err, CT_E_CRYPTO, 0,
                               "EC private key is not on curve P-256 (only ECDSA P-256 is "
                               "supported)");
            curve_known = 1;
        } else if (tag == 0xa1) {
            if (der_expect(&f, 0x03, &o) != 0 || f.n != 0 || o.n < 2 || o.p[0] != 0)
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
    der_rd in = {der, len}, seq, v, alg, oid, body;
    uint8_t tag;

    memset(kp, 0, sizeof *kp);
    if (der_expect(&in, 0x30, &seq) != 0 || in.n != 0 || der_expect(&seq, 0x02, &v) != 0 ||
        der_get(&seq, &tag, &body) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "not a private key: expected PEM or DER, SEC1 (EC PRIVATE KEY) or "
                       "PKCS#8 (PRIVATE KEY)");
    if (tag == 0x04) /* version, privateKey OCTET STRING: SEC1 */
        return parse_sec1((der_rd){der, len}, 0, kp, err);
    if (tag != 0x30)
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "not an EC private key (SEC1 or PKCS#8); only ECDSA P-256 is supported");
    /* PKCS#8: version, AlgorithmIdentifier, OCTET STRING, [0] attrs, [1] pub */
    if (v.n != 1 || v.p[0] > 1)
        return ctp_err(err, CT_E_CRYPTO, 0, "PKCS#8 key: unsupported version");
    alg = body;
    if (der_expect(&alg, 0x06, &oid) != 0 ||
        !der_is(&oid, k_oid_ec_public_key, sizeof k_oid_ec_public_key))
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "PKCS#8 key is not an EC key (only ECDSA P-256 is supported)");
    if (der_expect(&alg, 0x06, &oid) != 0 || alg.n != 0 ||
        !der_is(&oid, k_oid_p256, sizeof k_oid_p256))
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "PKCS#8 EC key is not on curve P-256 (only ECDSA P-256 is supported)");
    if (der_expect(&seq, 0x04, &body) != 0)
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
    if ((rc = rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    if (!(k = ecc_new())) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
        goto out;
    }
    wrc = wc_ecc_import_private_key_ex(d, sizeof d, NULL, 0, k, ECC_SECP256R1);
    if (wrc == 0)
        wrc = wc_ecc_make_pub_ex(k, NULL, &rng);
    if (wrc != 0) {
        rc = crypto_err(err, wrc, "importing the EC private key");
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
    ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    return rc;
}

static const void *find_bytes(const void *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle));
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
    if (find_bytes(data, len, "-----BEGIN ")) {
        int n;
        if (find_bytes(data, len, "ENCRYPTED"))
            return ctp_err(err, CT_E_CRYPTO, 0,
                           "encrypted private keys are not supported; decrypt it first");
        if (!find_bytes(data, len, "-----BEGIN EC PRIVATE KEY-----") &&
            !find_bytes(data, len, "-----BEGIN PRIVATE KEY-----"))
            return ctp_err(err, CT_E_CRYPTO, 0,
                           "PEM does not hold an \"EC PRIVATE KEY\" or \"PRIVATE KEY\" block");
        buf = malloc(len);
        if (!buf)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory decoding PEM");
        n = wc_KeyPemToDer(data, (int)len, buf, (int)len, NULL);
        if (n <= 0) {
            rc = crypto_err(err, n, "decoding the PEM private key");
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
        return crypto_err(err, need, "sizing the PEM private key");
    /* PEM is written straight into secret memory: no plain intermediate. */
    if ((rc = ct_secret_new((size_t)need, &s, err)) != CT_OK)
        return rc;
    n = wc_DerToPem(der, der_len, ct_secret_data(s), (word32)need, ECC_PRIVATEKEY_TYPE);
    if (n <= 0 || n > need) {
        ct_secret_free(s);
        return crypto_err(err, n, "encoding the PEM private key");
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
/* Time: ASN.1 UTCTime / GeneralizedTime <-> Unix seconds (proleptic UTC).  */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
#define CTP_TIME_MIN ((int64_t)-631152000)    /* 1950-01-01T00:00:00Z */
#define CTP_TIME_MAX ((int64_t)253402300799)  /* 9999-12-31T23:59:59Z */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Writes tag, length and value; returns the size or -1 when out of range. */
static int time_encode(int64_t t, uint8_t out[CTC_DATE_SIZE])
{
    char buf[20];
    int64_t days, secs, y;
    int m, d, n;

    if (t < CTP_TIME_MIN || t > CTP_TIME_MAX)
        return -1;
    days = floor_div(t, 86400);
    secs = t - days * 86400;
    civil_from_days(days, &y, &m, &d);
    if (y < 2050)
        n = snprintf(buf, sizeof buf, "%02d%02d%02d%02d%02d%02dZ", (int)(y % 100), m, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    else
        n = snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02dZ", (int)y, m, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    if (n != 13 && n != 15)
        return -1;
    out[0] = y < 2050 ? 0x17 : 0x18;
    out[1] = (uint8_t)n;
    memcpy(out + 2, buf, (size_t)n);
    return n + 2;
}

static int digits(const uint8_t *p, int n, int *v)
{
    int i, x = 0;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return 0;
}

/* Parses a DER time (tag, length, value) in the RFC 5280 profile. */
static int time_decode(const uint8_t *p, int len, int64_t *t)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, s, off, n, leap;
    if (!p || len < 2 || p[1] + 2 != len)
        return -1;
    n = p[1];
    p += 2;
    if (n == 13 && p[-2] == 0x17) {
        if (digits(p, 2, &y) != 0)
            return -1;
        y += y < 50 ? 2000 : 1900;
        off = 2;
    } else if (n == 15 && p[-2] == 0x18) {
        if (digits(p, 4, &y) != 0)
            return -1;
        off = 4;
    } else {
        return -1;
    }
    if (p[n - 1] != 'Z' || digits(p + off, 2, &mo) || digits(p + off + 2, 2, &d) ||
        digits(p + off + 4, 2, &h) || digits(p + off + 6, 2, &mi) || digits(p + off + 8, 2, &s))
        return -1;
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
        mi > 59 || s > 59)
        return -1;
    *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}

/* "2035-01-02 03:04:05Z" for messages. */
static const char *time_str(int64_t t, char buf[32])
{
    int64_t days = floor_div(t, 86400), secs = t - days * 86400, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, 32, "%04lld-%02d-%02d %02d:%02d:%02dZ", (long long)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
    return buf;
}

static int64_t wall_seconds(const ct_ctx *ctx)
{
    return floor_div(ct_ctx_wall_ms(ctx), 1000);
}

/* ------------------------------------------------------------------------ */
/* Options and names                                                        */

/* Valid UTF-8 without control characters. */
static int text_ok(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k, extra;
        uint32_t cp;
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + extra >= n)
            return 0;
        for (k = 1; k <= extra; k++) {
            unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += extra + 1;
    }
    return 1;
}

/* 4 or 16 for a valid IPv4 / IPv6 literal, else 0. */
static int ip_parse(const char *s, uint8_t out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 16;
    return 0;
}

/* LDH labels of 1..63 bytes, total <= 253, optional leading "*." label. */
static int dns_name_ok(const char *s)
{
    size_t n = strnlen(s, 254), i = 0, label = 0;
    if (n == 0 || n > 253)
        return 0;
    if (s[0] == '*') {
        if (n < 3 || s[1] != '.')
            return 0;
        i = 2;
    }
    for (; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (c == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return label != 0 && s[n - 1] != '-';
}

static ct_err check_text(const char *what, const char *s, int required, ct_error *err)
{
    size_t n;
    if (!s || !*s) {
        if (required)
            return ctp_err(err, CT_E_INVALID, 0, "%s is required", what);
        return CT_OK;
    }
    n = strnlen(s, CTP_PKI_NAME_MAX + 1);
    if (n > CTP_PKI_NAME_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "%s is longer than %d bytes", what,
                       CTP_PKI_NAME_MAX);
    if (!text_ok(s, n))
        return ctp_err(err, CT_E_INVALID, 0,
                       "%s must be UTF-8 text without control characters", what);
    return CT_OK;
}

static ct_err check_opts(const ct_cert_options *o, int is_ca, ct_error *err)
{
    size_t i;
    uint8_t ip[16];
    ct_err rc;

    if (!o)
        return ctp_err(err, CT_E_INVALID, 0, "certificate options are required");
    if (o->version != CT_CERT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_cert_options version %u is not supported",
                       (unsigned)o->version);
    if ((rc = check_text("common_name", o->common_name, 1, err)) != CT_OK ||
        (rc = check_text("organization", o->organization, 0, err)) != CT_OK)
        return rc;
    if (o->days_valid > CTP_PKI_DAYS_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "days_valid %u exceeds %u", (unsigned)o->days_valid,
                       CTP_PKI_DAYS_MAX);
    if (o->n_dns_names > CT_CERT_MAX_NAMES || o->n_ip_addrs > CT_CERT_MAX_NAMES)
        return ctp_err(err, CT_E_INVALID, 0, "at most %d DNS names and %d IP addresses",
                       CT_CERT_MAX_NAMES, CT_CERT_MAX_NAMES);
    if ((o->n_dns_names && !o->dns_names) || (o->n_ip_addrs && !o->ip_addrs))
        return ctp_err(err, CT_E_INVALID, 0, "name count given but the name array is NULL");
    if (is_ca && (o->n_dns_names || o->n_ip_addrs))
        return ctp_err(err, CT_E_INVALID, 0,
                       "a CA certificate carries no subject alternative names");
    for (i = 0; i < o->n_dns_names; i++) {
        const char *s = o->dns_names[i];
        if (!s || !dns_name_ok(s))
            return ctp_err(err, CT_E_INVALID, 0,
                           "dns_names[%zu] is not a valid DNS name (letters, digits, '-', "
                           "'.', optional leading \"*.\", at most 253 bytes)",
                           i);
        if (inet_pton(AF_INET, s, ip) == 1)
            return ctp_err(err, CT_E_INVALID, 0,
                           "dns_names[%zu] is an IP address: put it in ip_addrs", i);
    }
    for (i = 0; i < o->n_ip_addrs; i++)
        if (!o->ip_addrs[i] || !ip_parse(o->ip_addrs[i], ip))
            return ctp_err(err, CT_E_INVALID, 0,
                           "ip_addrs[%zu] is not an IPv4 or IPv6 address literal", i);
    return CT_OK;
}

static size_t der_len_size(size_t n)
{
    return n < 0x80 ? 1 : n < 0x100 ? 2 : 3;
}

static uint8_t *der_put_hdr(uint8_t *p, uint8_t tag, size_t n)
{
    *p++ = tag;
    if (n < 0x80) {
        *p++ = (uint8_t)n;
    } else if (n < 0x100) {
        *p++ = 0x81;
        *p++ = (uint8_t)n;
    } else {
        *p++ = 0x82;
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)n;
    }
    return p;
}

/*
 * GeneralNames DER for the SANs of `o` (already validated): dNSName [2]
 * IA5String and iPAddress [7] OCTET STRING. Returns the size (0: no names).
 */
static int sans_encode(const ct_cert_options *o, uint8_t *out, size_t cap)
{
    size_t i, content = 0, total;
    uint8_t ip[16], *p;

    for (i = 0; i < o->n_dns_names; i++) {
        size_t l = strlen(o->dns_names[i]);
        content += 1 + der_len_size(l) + l;
    }
    for (i = 0; i < o->n_ip_addrs; i++)
        content += 2 + (size_t)ip_parse(o->ip_addrs[i], ip);
    if (content == 0)
        return 0;
    total = 1 + der_len_size(content) + content;
    if (total > cap || total > 0xffff)
        return -1;
    p = der_put_hdr(out, 0x30, content);
    for (i = 0; i < o->n_dns_names; i++) {
        size_t l = strlen(o->dns_names[i]);
        p = der_put_hdr(p, 0x82, l);
        memcpy(p, o->dns_names[i], l);
        p += l;
    }
    for (i = 0; i < o->n_ip_addrs; i++) {
        int l = ip_parse(o->ip_addrs[i], ip);
        p = der_put_hdr(p, 0x87, (size_t)l);
        memcpy(p, ip, (size_t)l);
        p += l;
    }
    return (int)total;
}

/* ------------------------------------------------------------------------ */
/* Certificate building                                                     */

static void cert_subject(Cert *c, const ct_cert_options *o)
{
    memcpy(c->subject.commonName, o->common_name, strlen(o->common_name) + 1);
    if (o->organization && *o->organization)
        memcpy(c->subject.org, o->organization, strlen(o->organization) + 1);
    c->sigType = CTC_SHA256wECDSA;
}

static ct_err cert_names(Cert *c, const ct_cert_options *o, ct_error *err)
{
    int n = sans_encode(o, c->altNames, sizeof c->altNames);
    if (n < 0)
        return ctp_err(err, CT_E_INVALID, 0, "subject alternative names are too long");
    c->altNamesSz = n;
    return CT_OK;
}

static ct_err cert_serial(const ct_ctx *ctx, Cert *c, ct_error *err)
{
    uint8_t s[CTP_PKI_SERIAL_LEN];
    ct_err rc = ct_ctx_random(ctx, s, sizeof s);
    if (rc != CT_OK)
        return ctp_err(err, rc, 0, "random serial number: %s", ct_strerror(rc));
    /* positive, and exactly 16 bytes long in DER (no leading zero byte) */
    s[0] = (uint8_t)((s[0] & 0x7f) | 0x40);
    memcpy(c->serial, s, sizeof s);
    c->serialSz = (int)sizeof s;
    return CT_OK;
}

static ct_err cert_validity(Cert *c, int64_t not_before, int64_t not_after, ct_error *err)
{
    int a = time_encode(not_before, c->beforeDate);
    int b = time_encode(not_after, c->afterDate);
    if (a < 0 || b < 0)
        return ctp_err(err, CT_E_INVALID, 0,
                       "validity period falls outside the years 1950..9999 (check the "
                       "context's wall clock and days_valid)");
    c->beforeDateSz = a;
    c->afterDateSz = b;
    return CT_OK;
}

/* Encodes the body with `subject` and signs it with `signer`. */
static ct_err cert_finish(Cert *c, int request, ecc_key *subject, ecc_key *signer, WC_RNG *rng,
                          uint8_t **der, size_t *len, ct_error *err)
{
    size_t cap = 4096 + (size_t)c->altNamesSz;
    uint8_t *buf = malloc(cap);
    int n;

    if (!buf)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a certificate");
    if (request)
        n = wc_MakeCertReq_ex(c, buf, (word32)cap, ECC_TYPE, subject);
    else
        n = wc_MakeCert_ex(c, buf, (word32)cap, ECC_TYPE, subject, rng);
    if (n < 0) {
        free(buf);
        return crypto_err(err, n, request ? "encoding the request" : "encoding the certificate");
    }
    n = wc_SignCert_ex(c->bodySz, c->sigType, buf, (word32)cap, ECC_TYPE, signer, rng);
    if (n <= 0) {
        free(buf);
        return crypto_err(err, n, "signing");
    }
    *der = buf;
    *len = (size_t)n;
    return CT_OK;
}

static DecodedCert *dc_new(const uint8_t *der, size_t len)
{
    DecodedCert *dc = ctp_calloc(1, sizeof *dc);
    if (dc)
        wc_InitDecodedCert(dc, der, (word32)len, NULL);
    return dc;
}

static void dc_free(DecodedCert *dc)
{
    if (!dc)
        return;
    wc_FreeDecodedCert(dc);
    free(dc);
}

static int dc_dates(const DecodedCert *dc, int64_t *not_before, int64_t *not_after)
{
    if (time_decode(dc->beforeDate, dc->beforeDateLen, not_before) != 0 ||
        time_decode(dc->afterDate, dc->afterDateLen, not_after) != 0)
        return -1;
    return 0;
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

static int ecc_point_eq(ecc_key *k, const uint8_t point[65])
{
    uint8_t pt[65];
    word32 n = sizeof pt;
    return wc_ecc_export_x963(k, pt, &n) == 0 && n == sizeof pt && memcmp(pt, point, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* CA and requests                                                          */

ct_err ct_ca_create(ct_ctx *ctx, const ct_key *key, const ct_cert_options *opts, uint8_t **der,
                    size_t *len, ct_error *err)
{
    Cert *c = NULL;
    ecc_key *k = NULL;
    WC_RNG rng;
    int have_rng = 0, wrc;
    int64_t now;
    uint32_t days;
    ct_err rc;

    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_ca_create: NULL output");
    *der = NULL;
    *len = 0;
    if (!key)
        return ctp_err(err, CT_E_INVALID, 0, "ct_ca_create: key is NULL");
    if ((rc = check_opts(opts, 1, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    days = opts->days_valid ? opts->days_valid : CTP_PKI_DAYS_CA;
    now = wall_seconds(ctx);

    if (!(c = wc_CertNew(NULL))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a certificate");
        goto out;
    }
    cert_subject(c, opts);
    c->isCA = 1;
    c->pathLen = 0; /* leaves only: the CA may not certify other CAs */
    c->pathLenSet = 1;
    if ((rc = key_open(key, &k, err)) != CT_OK)
        goto out;
    if ((wrc = wc_SetKeyUsage(c, "keyCertSign,cRLSign")) != 0 ||
        (wrc = wc_SetSubjectKeyIdFromPublicKey_ex(c, ECC_TYPE, k)) != 0) {
        rc = crypto_err(err, wrc, "setting CA extensions");
        goto out;
    }
    if ((rc = cert_validity(c, now - CTP_PKI_BACKDATE_S, now + (int64_t)days * 86400, err)) !=
            CT_OK ||
        (rc = cert_serial(ctx, c, err)) != CT_OK)
        goto out;
    if ((rc = rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    rc = cert_finish(c, 0, k, k, &rng, der, len, err);
    if (rc == CT_OK)
        ctp_log(ctx, CT_LOG_INFO, "pki.ca", "created CA certificate \"%s\" valid for %u days",
                opts->common_name, (unsigned)days);
out:
    ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    wc_CertFree(c);
    return rc;
}

ct_err ct_csr_create(ct_ctx *ctx, const ct_key *key, const ct_cert_options *opts, uint8_t **der,
                     size_t *len, ct_error *err)
{
    Cert *c = NULL;
    ecc_key *k = NULL;
    WC_RNG rng;
    int have_rng = 0;
    ct_err rc;

    (void)ctx;
    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_csr_create: NULL output");
    *der = NULL;
    *len = 0;
    if (!key)
        return ctp_err(err, CT_E_INVALID, 0, "ct_csr_create: key is NULL");
    if ((rc = check_opts(opts, 0, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if (!(c = wc_CertNew(NULL))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a request");
        goto out;
    }
    c->version = 0; /* PKCS#10 v1 */
    cert_subject(c, opts);
    if ((rc = cert_names(c, opts, err)) != CT_OK || (rc = key_open(key, &k, err)) != CT_OK ||
        (rc = rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    rc = cert_finish(c, 1, k, k, &rng, der, len, err);
out:
    ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    wc_CertFree(c);
    return rc;
}

/* ecdsa-with-SHA256/384/512: 1.2.840.10045.4.3.{2,3,4} */
static const uint8_t k_oid_ecdsa_sha2[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03};

/*
 * SubjectPublicKeyInfo that must hold a valid P-256 point. Errors carry `code`.
 */
static ct_err spki_p256(der_rd spki, ct_err code, const char *what, ecc_key **out,
                        ct_error *err)
{
    der_rd seq, alg, oid, bits;
    ecc_key *k;
    int wrc;

    *out = NULL;
    if (der_expect(&spki, 0x30, &seq) != 0 || spki.n != 0 || der_expect(&seq, 0x30, &alg) != 0 ||
        der_expect(&seq, 0x03, &bits) != 0 || seq.n != 0 || der_expect(&alg, 0x06, &oid) != 0)
        return ctp_err(err, code, 0, "%s: malformed public key", what);
    if (!der_is(&oid, k_oid_ec_public_key, sizeof k_oid_ec_public_key))
        return ctp_err(err, code, 0,
                       "%s: the public key is not an EC key (only ECDSA P-256 is supported)",
                       what);
    if (der_expect(&alg, 0x06, &oid) != 0 || alg.n != 0 ||
        !der_is(&oid, k_oid_p256, sizeof k_oid_p256))
        return ctp_err(err, code, 0, "%s: the public key is not a P-256 key", what);
    if (bits.n < 2 || bits.p[0] != 0)
        return ctp_err(err, code, 0, "%s: malformed public key", what);
    if (!(k = ecc_new()))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
    wrc = wc_ecc_import_x963_ex(bits.p + 1, (word32)(bits.n - 1), k, ECC_SECP256R1);
    if (wrc != 0 || !point_valid(k)) {
        ecc_release(k);
        return ctp_err(err, code, wrc, "%s: the public key is not a valid P-256 point", what);
    }
    *out = k;
    return CT_OK;
}

/*
 * Checks a PKCS#10 request and returns its public key, which the request's
 * self-signature proves the requester holds.
 *
 *   CertificationRequest ::= SEQUENCE { certificationRequestInfo,
 *                                       signatureAlgorithm, signature BIT STRING }
 *   CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name,
 *                                           subjectPKInfo, attributes [0] }
 *
 * wolfSSL's parser is only a well-formedness gate (NO_VERIFY). The signed
 * bytes, key, algorithm and signature are taken from our own walk of the
 * DER and the signature is verified exactly once, here: so the key that is
 * verified is the key that gets certified, and a one-time request key is
 * used only once (FP_ECC builds an ~800 KB table on a point's second use).
 */
static ct_err csr_open(const uint8_t *csr, size_t csr_len, ecc_key **key_out, ct_error *err)
{
    der_rd in = {csr, csr_len}, outer, tbs, v, spki, alg, oid, sig;
    const uint8_t *tbs_start;
    size_t tbs_len;
    DecodedCert *dc;
    ecc_key *k = NULL;
    uint8_t hash[WC_MAX_DIGEST_SIZE];
    enum wc_HashType ht;
    int wrc, hlen, ok = 0;
    ct_err rc;

    *key_out = NULL;
    if (!(dc = dc_new(csr, csr_len)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a request");
    wrc = wc_ParseCert(dc, CERTREQ_TYPE, NO_VERIFY, NULL);
    dc_free(dc);
    if (wrc != 0)
        return ctp_err(err, CT_E_CRYPTO, wrc,
                       "certificate request is not a valid PKCS#10 request: %s (wolfSSL %d)",
                       wc_GetErrorString(wrc), wrc);

    if (der_expect(&in, 0x30, &outer) != 0 || in.n != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed DER");
    tbs_start = outer.p;
    if (der_expect(&outer, 0x30, &tbs) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed request info");
    tbs_len = (size_t)(outer.p - tbs_start);
    if (der_expect(&tbs, 0x02, &v) != 0 || v.n != 1 || v.p[0] != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: unsupported version");
    if (der_expect(&tbs, 0x30, &v) != 0) /* subject: decided by the issuer, unused */
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed subject");
    spki.p = tbs.p;
    if (der_expect(&tbs, 0x30, &v) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed public key");
    spki.n = (size_t)(tbs.p - spki.p);
    if (der_expect(&tbs, 0xa0, &v) != 0 || tbs.n != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed attributes");
    if (der_expect(&outer, 0x30, &alg) != 0 || der_expect(&outer, 0x03, &sig) != 0 ||
        outer.n != 0 || sig.n < 2 || sig.p[0] != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed signature");
    /* the key first: "not a P-256 key" is the useful message for RSA requests */
    if ((rc = spki_p256(spki, CT_E_CRYPTO, "certificate request", &k, err)) != CT_OK)
        return rc;
    if (der_expect(&alg, 0x06, &oid) != 0 || alg.n != 0 ||
        oid.n != sizeof k_oid_ecdsa_sha2 + 1 ||
        memcmp(oid.p, k_oid_ecdsa_sha2, sizeof k_oid_ecdsa_sha2) != 0 ||
        oid.p[oid.n - 1] < 2 || oid.p[oid.n - 1] > 4) {
        ecc_release(k);
        return ctp_err(err, CT_E_CRYPTO, 0,
                       "certificate request: signature algorithm is not ECDSA with SHA-2");
    }
    ht = oid.p[oid.n - 1] == 2   ? WC_HASH_TYPE_SHA256
         : oid.p[oid.n - 1] == 3 ? WC_HASH_TYPE_SHA384
                                 : WC_HASH_TYPE_SHA512;
    hlen = wc_HashGetDigestSize(ht);
    wrc = hlen > 0 ? wc_Hash(ht, tbs_start, (word32)tbs_len, hash, (word32)hlen) : hlen;
    if (wrc == 0)
        wrc = wc_ecc_verify_hash(sig.p + 1, (word32)(sig.n - 1), hash, (word32)hlen, &ok, k);
    if (wrc != 0 || ok != 1) {
        ecc_release(k);
        return ctp_err(err, CT_E_CRYPTO, wrc, "certificate request: bad signature");
    }
    *key_out = k;
    return CT_OK;
}

/*
 * The public key of a parsed certificate (wolfSSL keeps the whole
 * SubjectPublicKeyInfo for EC keys), which must be a valid P-256 point.
 */
static ct_err dc_pubkey(const DecodedCert *dc, ct_err code, const char *what, ecc_key **out,
                        ct_error *err)
{
    der_rd spki = {dc->publicKey, dc->pubKeySize};
    *out = NULL;
    if (dc->keyOID != ECDSAk || !dc->publicKey || !dc->pubKeySize)
        return ctp_err(err, code, 0,
                       "%s: the public key is not an EC key (only ECDSA P-256 is supported)",
                       what);
    return spki_p256(spki, code, what, out, err);
}

/*
 * Parses a CA certificate (no signature check) and checks that it may sign
 * certificates. Errors carry `code`.
 */
static ct_err ca_open(const uint8_t *ca, size_t ca_len, ct_err code, DecodedCert **out,
                      int64_t *not_before, int64_t *not_after, ct_error *err)
{
    DecodedCert *dc;
    int wrc;
    *out = NULL;
    if (ca_len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, code, 0, "CA certificate of %zu bytes is too large", ca_len);
    if (!(dc = dc_new(ca, ca_len)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a certificate");
    wrc = wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL);
    if (wrc != 0) {
        dc_free(dc);
        return ctp_err(err, code, wrc, "CA certificate cannot be parsed: %s (wolfSSL %d)",
                       wc_GetErrorString(wrc), wrc);
    }
    if (!dc->isCA || (dc->extKeyUsageSet && !(dc->extKeyUsage & KEYUSE_KEY_CERT_SIGN))) {
        dc_free(dc);
        return ctp_err(err, code, 0,
                       "CA certificate is not a CA (basicConstraints CA:TRUE and keyUsage "
                       "keyCertSign required)");
    }
    if (dc_dates(dc, not_before, not_after) != 0) {
        dc_free(dc);
        return ctp_err(err, code, 0, "CA certificate has a malformed validity period");
    }
    *out = dc;
    return CT_OK;
}

ct_err ct_cert_issue(ct_ctx *ctx, const uint8_t *ca_der, size_t ca_len, const ct_key *ca_key,
                     const uint8_t *csr, size_t csr_len, ct_cert_usage usage,
                     const ct_cert_options *opts, uint8_t **der, size_t *len, ct_error *err)
{
    DecodedCert *cadc = NULL;
    ecc_key *ca_pub = NULL, *subject = NULL, *signer = NULL;
    Cert *c = NULL;
    WC_RNG rng;
    int have_rng = 0, wrc, clamped = 0;
    int64_t now, ca_nb, ca_na, nb, na;
    uint32_t days;
    char tbuf[32];
    ct_err rc;

    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_issue: NULL output");
    *der = NULL;
    *len = 0;
    if (!ca_der || !ca_len || !ca_key || !csr || !csr_len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_issue: NULL or empty argument");
    if (usage != CT_CERT_SERVER && usage != CT_CERT_CLIENT)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_cert_issue: usage must be CT_CERT_SERVER or CT_CERT_CLIENT");
    if ((rc = check_opts(opts, 0, err)) != CT_OK)
        return rc;
    if (csr_len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, CT_E_TOOBIG, 0, "certificate request of %zu bytes exceeds %zu",
                       csr_len, CTP_PKI_MAX_INPUT);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");

    /* The issuer: a CA whose key is ca_key, valid now. */
    if ((rc = ca_open(ca_der, ca_len, CT_E_INVALID, &cadc, &ca_nb, &ca_na, err)) != CT_OK ||
        (rc = dc_pubkey(cadc, CT_E_INVALID, "CA certificate", &ca_pub, err)) != CT_OK)
        goto out;
    if (!ecc_point_eq(ca_pub, ca_key->point)) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "ca_key does not match the CA certificate's public key");
        goto out;
    }
    now = wall_seconds(ctx);
    if (now < ca_nb || now > ca_na) {
        rc = ctp_err(err, CT_E_INVALID, 0, "the CA certificate is %s (%s)",
                     now < ca_nb ? "not yet valid" : "expired",
                     time_str(now < ca_nb ? ca_nb : ca_na, tbuf));
        goto out;
    }

    /* The request: well formed, correctly self-signed, P-256. */
    if ((rc = csr_open(csr, csr_len, &subject, err)) != CT_OK)
        goto out;

    /* Validity: never beyond the CA's (clamped), never before it. */
    days = opts->days_valid ? opts->days_valid : CTP_PKI_DAYS_LEAF;
    nb = now - CTP_PKI_BACKDATE_S;
    if (nb < ca_nb)
        nb = ca_nb;
    na = now + (int64_t)days * 86400;
    if (na > ca_na) {
        na = ca_na;
        clamped = 1;
    }

    if (!(c = wc_CertNew(NULL))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a certificate");
        goto out;
    }
    cert_subject(c, opts);
    if ((wrc = wc_SetIssuerBuffer(c, ca_der, (int)ca_len)) != 0) {
        rc = crypto_err(err, wrc, "copying the issuer name");
        goto out;
    }
    wrc = wc_SetAuthKeyIdFromCert(c, ca_der, (int)ca_len);
    if (wrc == ASN_NO_SKID) /* a CA made elsewhere without a key identifier */
        wrc = wc_SetAuthKeyIdFromPublicKey_ex(c, ECC_TYPE, ca_pub);
    if (wrc != 0 || (wrc = wc_SetSubjectKeyIdFromPublicKey_ex(c, ECC_TYPE, subject)) != 0 ||
        (wrc = wc_SetKeyUsage(c, "digitalSignature")) != 0 ||
        (wrc = wc_SetExtKeyUsage(c, usage == CT_CERT_SERVER ? "serverAuth" : "clientAuth")) !=
            0) {
        rc = crypto_err(err, wrc, "setting certificate extensions");
        goto out;
    }
    if ((rc = cert_names(c, opts, err)) != CT_OK ||
        (rc = cert_validity(c, nb, na, err)) != CT_OK || (rc = cert_serial(ctx, c, err)) != CT_OK ||
        (rc = key_open(ca_key, &signer, err)) != CT_OK || (rc = rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    rc = cert_finish(c, 0, subject, signer, &rng, der, len, err);
    if (rc != CT_OK)
        goto out;
    if (clamped)
        ctp_log(ctx, CT_LOG_NOTICE, "pki.issue",
                "certificate \"%s\" validity shortened to the CA's expiry %s", opts->common_name,
                time_str(na, tbuf));
    ctp_log(ctx, CT_LOG_INFO, "pki.issue", "issued %s certificate \"%s\" valid until %s",
            usage == CT_CERT_SERVER ? "server" : "client", opts->common_name, time_str(na, tbuf));
out:
    ecc_release(signer);
    ecc_release(subject);
    ecc_release(ca_pub);
    if (have_rng)
        wc_FreeRng(&rng);
    wc_CertFree(c);
    dc_free(cadc);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Verification                                                             */

static ct_err check_dates(const char *what, int64_t now, int64_t nb, int64_t na, ct_error *err)
{
    char a[32], b[32];
    if (now < nb)
        return ctp_err(err, CT_E_CERT, 0, "%s is not valid before %s (now %s)", what,
                       time_str(nb, a), time_str(now, b));
    if (now > na)
        return ctp_err(err, CT_E_CERT, 0, "%s expired at %s (now %s)", what, time_str(na, a),
                       time_str(now, b));
    return CT_OK;
}

ct_err ct_cert_verify(ct_ctx *ctx, const uint8_t *ca, size_t ca_len, const uint8_t *cert,
                      size_t cert_len, ct_cert_usage usage, ct_error *err)
{
    DecodedCert *cadc = NULL, *dc = NULL;
    WOLFSSL_CERT_MANAGER *cm = NULL;
    int64_t now, nb, na;
    int wrc;
    ct_err rc;

    if (!ca || !ca_len || !cert || !cert_len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_verify: NULL or empty argument");
    if (usage != CT_CERT_CA && usage != CT_CERT_SERVER && usage != CT_CERT_CLIENT)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_verify: unknown usage %d", (int)usage);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    now = wall_seconds(ctx);

    /* The trust anchor itself must be a CA that is valid now. */
    if ((rc = ca_open(ca, ca_len, CT_E_CERT, &cadc, &nb, &na, err)) != CT_OK ||
        (rc = check_dates("the CA certificate", now, nb, na, err)) != CT_OK)
        goto out;

    if (cert_len > CTP_PKI_MAX_INPUT) {
        rc = ctp_err(err, CT_E_CERT, 0, "certificate of %zu bytes is too large", cert_len);
        goto out;
    }
    /*
     * Chain: wolfSSL's own path check (the one wolfSSL_CertManagerVerifyBuffer
     * runs) against a manager holding only `ca`, but with VERIFY_SKIP_DATE:
     * wolfSSL reads the system clock, dates are checked below with the
     * context's clock.
     */
    if (!(cm = wolfSSL_CertManagerNew())) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a certificate manager");
        goto out;
    }
    wrc = wolfSSL_CertManagerLoadCABuffer(cm, ca, (long)ca_len, WOLFSSL_FILETYPE_ASN1);
    if (wrc != WOLFSSL_SUCCESS) {
        rc = ctp_err(err, CT_E_CERT, wrc, "the CA certificate was refused as a trust anchor: %s",
                     wc_GetErrorString(wrc));
        goto out;
    }
    if (!(dc = dc_new(cert, cert_len))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a certificate");
        goto out;
    }
    wrc = wc_ParseCert(dc, CERT_TYPE, VERIFY_SKIP_DATE, cm);
    if (wrc != 0) {
        const char *why = wrc == ASN_NO_SIGNER_E     ? "it was not issued by this CA"
                          : wrc == ASN_SIG_CONFIRM_E ? "its signature does not verify with the "
                                                       "CA's key"
                                                     : "it is malformed or was refused";
        rc = ctp_err(err, CT_E_CERT, wrc, "chain check failed: %s (wolfSSL %d: %s)", why, wrc,
                     wc_GetErrorString(wrc));
        goto out;
    }
    if (memcmp(dc->issuerHash, cadc->subjectHash, sizeof dc->issuerHash) != 0) {
        rc = ctp_err(err, CT_E_CERT, 0,
                     "chain check failed: the issuer name is not the CA's subject name");
        goto out;
    }
    if (dc_dates(dc, &nb, &na) != 0) {
        rc = ctp_err(err, CT_E_CERT, 0, "validity check failed: malformed validity period");
        goto out;
    }
    if ((rc = check_dates("the certificate", now, nb, na, err)) != CT_OK)
        goto out;

    if (usage == CT_CERT_CA) {
        if (!dc->isCA || !dc->extKeyUsageSet || !(dc->extKeyUsage & KEYUSE_KEY_CERT_SIGN)) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: not a CA (needs basicConstraints CA:TRUE and "
                         "keyUsage keyCertSign)");
            goto out;
        }
        if (!dc->selfSigned || dc->pubKeySize != cadc->pubKeySize ||
            memcmp(dc->publicKey, cadc->publicKey, dc->pubKeySize) != 0) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: the CA certificate is not self-signed by its own "
                         "key");
            goto out;
        }
    } else {
        unsigned want = usage == CT_CERT_SERVER ? EXTKEYUSE_SERVER_AUTH : EXTKEYUSE_CLIENT_AUTH;
        const char *name = usage == CT_CERT_SERVER ? "serverAuth" : "clientAuth";
        if (dc->isCA) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: a CA certificate is not a %s certificate",
                         usage == CT_CERT_SERVER ? "server" : "client");
            goto out;
        }
        if (!dc->extExtKeyUsageSet || !(dc->extExtKeyUsage & want)) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: extendedKeyUsage does not include %s", name);
            goto out;
        }
        if (dc->extKeyUsageSet && !(dc->extKeyUsage & KEYUSE_DIGITAL_SIG)) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: keyUsage does not include digitalSignature");
            goto out;
        }
    }
    rc = CT_OK;
out:
    dc_free(dc);
    dc_free(cadc);
    if (cm)
        wolfSSL_CertManagerFree(cm);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* PEM                                                                      */

/*
 * Sets *kind to CERT_TYPE or CERTREQ_TYPE (note: CERT_TYPE is 0) for a
 * parseable DER certificate / request. Returns 0, -1 if neither, -2 on ENOMEM.
 */
static int der_kind(const uint8_t *der, size_t len, int *kind)
{
    static const int kinds[] = {CERT_TYPE, CERTREQ_TYPE};
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        DecodedCert *dc = dc_new(der, len);
        int wrc;
        if (!dc)
            return -2;
        wrc = wc_ParseCert(dc, kinds[i], NO_VERIFY, NULL);
        dc_free(dc);
        if (wrc == 0) {
            *kind = kinds[i];
            return 0;
        }
    }
    return -1;
}

ct_err ct_cert_der_to_pem(const uint8_t *der, size_t len, char **pem, ct_error *err)
{
    int kind, need, n;
    char *buf;
    ct_err rc;

    if (!pem)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_der_to_pem: pem is NULL");
    *pem = NULL;
    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_der_to_pem: no data");
    if (len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, CT_E_TOOBIG, 0, "certificate of %zu bytes exceeds %zu", len,
                       CTP_PKI_MAX_INPUT);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    switch (der_kind(der, len, &kind)) {
    case 0:
        break;
    case -2:
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a certificate");
    default:
        return ctp_err(err, CT_E_INVALID, 0, "not a DER certificate or certificate request");
    }
    need = wc_DerToPem(der, (word32)len, NULL, 0, kind);
    if (need <= 0)
        return crypto_err(err, need, "sizing the PEM");
    if (!(buf = malloc((size_t)need + 1)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    n = wc_DerToPem(der, (word32)len, (uint8_t *)buf, (word32)need, kind);
    if (n <= 0 || n > need) {
        free(buf);
        return crypto_err(err, n, "encoding the PEM");
    }
    buf[n] = '\0';
    *pem = buf;
    return CT_OK;
}

ct_err ct_cert_pem_to_der(const char *pem, size_t len, uint8_t **der, size_t *der_len,
                          ct_error *err)
{
    uint8_t *buf;
    int kind, n;

    if (!der || !der_len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_pem_to_der: NULL output");
    *der = NULL;
    *der_len = 0;
    if (!pem || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_pem_to_der: no data");
    if (len > CTP_PKI_MAX_INPUT * 2)
        return ctp_err(err, CT_E_TOOBIG, 0, "PEM of %zu bytes is too large", len);
    if (find_bytes(pem, len, "-----BEGIN CERTIFICATE REQUEST-----"))
        kind = CERTREQ_TYPE;
    else if (find_bytes(pem, len, "-----BEGIN CERTIFICATE-----"))
        kind = CERT_TYPE;
    else
        return ctp_err(err, CT_E_INVALID, 0,
                       "no \"CERTIFICATE\" or \"CERTIFICATE REQUEST\" PEM block found");
    if (!(buf = malloc(len)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    n = wc_CertPemToDer((const uint8_t *)pem, (int)len, buf, (int)len, kind);
    if (n <= 0) {
        free(buf);
        return ctp_err(err, CT_E_INVALID, n, "malformed PEM: %s (wolfSSL %d)",
                       wc_GetErrorString(n), n);
    }
    *der = buf;
    *der_len = (size_t)n;
    return CT_OK;
}
