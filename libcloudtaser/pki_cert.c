/*
 * pki_cert.c - certificates: the self-signed per-cluster CA, PKCS#10
 * requests, leaf issuance from a request, DER <-> PEM, certificate pins
 * (SHA-256 of the SPKI) and throwaway CA + server certificates for dev use.
 *
 * A request's self-signature is verified once, by us, over the
 * CertificationRequestInfo bytes we extract ourselves (see csr_open): the
 * check does not depend on how a wolfSSL build treats requests, and the key
 * verified is the key certified. (wolfSSL 5.5.4 would also verify it in
 * wc_ParseCert(CERTREQ_TYPE, VERIFY); a second verify of a one-time key
 * costs ~3 ms and an ~800 KB FP_ECC table, so it is not done twice.)
 */
#include "pki_internal.h"
#include "tls_internal.h" /* ctp_tls_cert_spki */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    int n = ctp_pki_sans_encode(o, c->altNames, sizeof c->altNames);
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
    int a = ctp_pki_time_encode(not_before, c->beforeDate);
    int b = ctp_pki_time_encode(not_after, c->afterDate);
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
        return ctp_pki_crypto_err(err, n,
                                  request ? "encoding the request" : "encoding the certificate");
    }
    n = wc_SignCert_ex(c->bodySz, c->sigType, buf, (word32)cap, ECC_TYPE, signer, rng);
    if (n <= 0) {
        free(buf);
        return ctp_pki_crypto_err(err, n, "signing");
    }
    *der = buf;
    *len = (size_t)n;
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading certificates and requests                                        */

DecodedCert *ctp_pki_dc_new(const uint8_t *der, size_t len)
{
    DecodedCert *dc = ctp_calloc(1, sizeof *dc);
    if (dc)
        wc_InitDecodedCert(dc, der, (word32)len, NULL);
    return dc;
}

void ctp_pki_dc_free(DecodedCert *dc)
{
    if (!dc)
        return;
    wc_FreeDecodedCert(dc);
    free(dc);
}

static int ecc_point_eq(ecc_key *k, const uint8_t point[65])
{
    uint8_t pt[65];
    word32 n = sizeof pt;
    return wc_ecc_export_x963(k, pt, &n) == 0 && n == sizeof pt && memcmp(pt, point, n) == 0;
}

/* ecdsa-with-SHA256/384/512: 1.2.840.10045.4.3.{2,3,4} */
static const uint8_t k_oid_ecdsa_sha2[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03};

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
    ctp_der in = {csr, csr_len}, outer, tbs, v, spki, alg, oid, sig;
    const uint8_t *tbs_start;
    size_t tbs_len;
    DecodedCert *dc;
    ecc_key *k = NULL;
    uint8_t hash[WC_MAX_DIGEST_SIZE];
    enum wc_HashType ht;
    int wrc, hlen, ok = 0;
    ct_err rc;

    *key_out = NULL;
    if (!(dc = ctp_pki_dc_new(csr, csr_len)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a request");
    wrc = wc_ParseCert(dc, CERTREQ_TYPE, NO_VERIFY, NULL);
    ctp_pki_dc_free(dc);
    if (wrc != 0)
        return ctp_err(err, CT_E_CRYPTO, wrc,
                       "certificate request is not a valid PKCS#10 request: %s (wolfSSL %d)",
                       wc_GetErrorString(wrc), wrc);

    if (ctp_der_expect(&in, 0x30, &outer) != 0 || in.n != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed DER");
    tbs_start = outer.p;
    if (ctp_der_expect(&outer, 0x30, &tbs) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed request info");
    tbs_len = (size_t)(outer.p - tbs_start);
    if (ctp_der_expect(&tbs, 0x02, &v) != 0 || v.n != 1 || v.p[0] != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: unsupported version");
    if (ctp_der_expect(&tbs, 0x30, &v) != 0) /* subject: decided by the issuer, unused */
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed subject");
    spki.p = tbs.p;
    if (ctp_der_expect(&tbs, 0x30, &v) != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed public key");
    spki.n = (size_t)(tbs.p - spki.p);
    if (ctp_der_expect(&tbs, 0xa0, &v) != 0 || tbs.n != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed attributes");
    if (ctp_der_expect(&outer, 0x30, &alg) != 0 || ctp_der_expect(&outer, 0x03, &sig) != 0 ||
        outer.n != 0 || sig.n < 2 || sig.p[0] != 0)
        return ctp_err(err, CT_E_CRYPTO, 0, "certificate request: malformed signature");
    /* the key first: "not a P-256 key" is the useful message for RSA requests */
    if ((rc = ctp_pki_spki_p256(spki, CT_E_CRYPTO, "certificate request", &k, err)) != CT_OK)
        return rc;
    if (ctp_der_expect(&alg, 0x06, &oid) != 0 || alg.n != 0 ||
        oid.n != sizeof k_oid_ecdsa_sha2 + 1 ||
        memcmp(oid.p, k_oid_ecdsa_sha2, sizeof k_oid_ecdsa_sha2) != 0 ||
        oid.p[oid.n - 1] < 2 || oid.p[oid.n - 1] > 4) {
        ctp_pki_ecc_release(k);
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
        ctp_pki_ecc_release(k);
        return ctp_err(err, CT_E_CRYPTO, wrc, "certificate request: bad signature");
    }
    *key_out = k;
    return CT_OK;
}

ct_err ctp_pki_csr_check(const uint8_t *csr, size_t csr_len, ct_error *err)
{
    ecc_key *k = NULL;
    ct_err rc;
    if (!csr || !csr_len)
        return ctp_err(err, CT_E_INVALID, 0, "empty certificate request");
    if (csr_len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, CT_E_TOOBIG, 0, "certificate request of %zu bytes exceeds %zu",
                       csr_len, CTP_PKI_MAX_INPUT);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    rc = csr_open(csr, csr_len, &k, err);
    ctp_pki_ecc_release(k);
    return rc;
}

/*
 * The public key of a parsed certificate (wolfSSL keeps the whole
 * SubjectPublicKeyInfo for EC keys), which must be a valid P-256 point.
 */
static ct_err dc_pubkey(const DecodedCert *dc, ct_err code, const char *what, ecc_key **out,
                        ct_error *err)
{
    ctp_der spki = {dc->publicKey, dc->pubKeySize};
    *out = NULL;
    if (dc->keyOID != ECDSAk || !dc->publicKey || !dc->pubKeySize)
        return ctp_err(err, code, 0,
                       "%s: the public key is not an EC key (only ECDSA P-256 is supported)",
                       what);
    return ctp_pki_spki_p256(spki, code, what, out, err);
}

/*
 * Parses a CA certificate (no signature check) and checks that it may sign
 * certificates. Errors carry `code`.
 */
ct_err ctp_pki_ca_open(const uint8_t *ca, size_t ca_len, ct_err code, DecodedCert **out,
                       int64_t *not_before, int64_t *not_after, ct_error *err)
{
    DecodedCert *dc;
    int wrc;
    *out = NULL;
    if (ca_len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, code, 0, "CA certificate of %zu bytes is too large", ca_len);
    if (!(dc = ctp_pki_dc_new(ca, ca_len)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a certificate");
    wrc = wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL);
    if (wrc != 0) {
        ctp_pki_dc_free(dc);
        return ctp_err(err, code, wrc, "CA certificate cannot be parsed: %s (wolfSSL %d)",
                       wc_GetErrorString(wrc), wrc);
    }
    if (!dc->isCA || (dc->extKeyUsageSet && !(dc->extKeyUsage & KEYUSE_KEY_CERT_SIGN))) {
        ctp_pki_dc_free(dc);
        return ctp_err(err, code, 0,
                       "CA certificate is not a CA (basicConstraints CA:TRUE and keyUsage "
                       "keyCertSign required)");
    }
    if (ctp_pki_dc_dates(dc, not_before, not_after) != 0) {
        ctp_pki_dc_free(dc);
        return ctp_err(err, code, 0, "CA certificate has a malformed validity period");
    }
    *out = dc;
    return CT_OK;
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
    if ((rc = ctp_pki_check_opts(opts, 1, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    days = opts->days_valid ? opts->days_valid : CTP_PKI_DAYS_CA;
    now = ctp_pki_wall_seconds(ctx);

    if (!(c = wc_CertNew(NULL))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a certificate");
        goto out;
    }
    cert_subject(c, opts);
    c->isCA = 1;
    c->pathLen = 0; /* leaves only: the CA may not certify other CAs */
    c->pathLenSet = 1;
    if ((rc = ctp_pki_key_open(key, &k, err)) != CT_OK)
        goto out;
    if ((wrc = wc_SetKeyUsage(c, "keyCertSign,cRLSign")) != 0 ||
        (wrc = wc_SetSubjectKeyIdFromPublicKey_ex(c, ECC_TYPE, k)) != 0) {
        rc = ctp_pki_crypto_err(err, wrc, "setting CA extensions");
        goto out;
    }
    if ((rc = cert_validity(c, now - CTP_PKI_BACKDATE_S, now + (int64_t)days * 86400, err)) !=
            CT_OK ||
        (rc = cert_serial(ctx, c, err)) != CT_OK)
        goto out;
    if ((rc = ctp_pki_rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    rc = cert_finish(c, 0, k, k, &rng, der, len, err);
    if (rc == CT_OK)
        ctp_log(ctx, CT_LOG_INFO, "pki.ca", "created CA certificate \"%s\" valid for %u days",
                opts->common_name, (unsigned)days);
out:
    ctp_pki_ecc_release(k);
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
    if ((rc = ctp_pki_check_opts(opts, 0, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if (!(c = wc_CertNew(NULL))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a request");
        goto out;
    }
    c->version = 0; /* PKCS#10 v1 */
    cert_subject(c, opts);
    if ((rc = cert_names(c, opts, err)) != CT_OK ||
        (rc = ctp_pki_key_open(key, &k, err)) != CT_OK ||
        (rc = ctp_pki_rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    rc = cert_finish(c, 1, k, k, &rng, der, len, err);
out:
    ctp_pki_ecc_release(k);
    if (have_rng)
        wc_FreeRng(&rng);
    wc_CertFree(c);
    return rc;
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
    if ((rc = ctp_pki_check_opts(opts, 0, err)) != CT_OK)
        return rc;
    if (csr_len > CTP_PKI_MAX_INPUT)
        return ctp_err(err, CT_E_TOOBIG, 0, "certificate request of %zu bytes exceeds %zu",
                       csr_len, CTP_PKI_MAX_INPUT);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");

    /* The issuer: a CA whose key is ca_key, valid now. */
    if ((rc = ctp_pki_ca_open(ca_der, ca_len, CT_E_INVALID, &cadc, &ca_nb, &ca_na, err)) != CT_OK ||
        (rc = dc_pubkey(cadc, CT_E_INVALID, "CA certificate", &ca_pub, err)) != CT_OK)
        goto out;
    if (!ecc_point_eq(ca_pub, ca_key->point)) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "ca_key does not match the CA certificate's public key");
        goto out;
    }
    now = ctp_pki_wall_seconds(ctx);
    if (now < ca_nb || now > ca_na) {
        rc = ctp_err(err, CT_E_INVALID, 0, "the CA certificate is %s (%s)",
                     now < ca_nb ? "not yet valid" : "expired",
                     ctp_pki_time_str(now < ca_nb ? ca_nb : ca_na, tbuf));
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
        rc = ctp_pki_crypto_err(err, wrc, "copying the issuer name");
        goto out;
    }
    wrc = wc_SetAuthKeyIdFromCert(c, ca_der, (int)ca_len);
    if (wrc == ASN_NO_SKID) /* a CA made elsewhere without a key identifier */
        wrc = wc_SetAuthKeyIdFromPublicKey_ex(c, ECC_TYPE, ca_pub);
    if (wrc != 0 || (wrc = wc_SetSubjectKeyIdFromPublicKey_ex(c, ECC_TYPE, subject)) != 0 ||
        (wrc = wc_SetKeyUsage(c, "digitalSignature")) != 0 ||
        (wrc = wc_SetExtKeyUsage(c, usage == CT_CERT_SERVER ? "serverAuth" : "clientAuth")) !=
            0) {
        rc = ctp_pki_crypto_err(err, wrc, "setting certificate extensions");
        goto out;
    }
    if ((rc = cert_names(c, opts, err)) != CT_OK ||
        (rc = cert_validity(c, nb, na, err)) != CT_OK || (rc = cert_serial(ctx, c, err)) != CT_OK ||
        (rc = ctp_pki_key_open(ca_key, &signer, err)) != CT_OK ||
        (rc = ctp_pki_rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    rc = cert_finish(c, 0, subject, signer, &rng, der, len, err);
    if (rc != CT_OK)
        goto out;
    if (clamped)
        ctp_log(ctx, CT_LOG_NOTICE, "pki.issue",
                "certificate \"%s\" validity shortened to the CA's expiry %s", opts->common_name,
                ctp_pki_time_str(na, tbuf));
    ctp_log(ctx, CT_LOG_INFO, "pki.issue", "issued %s certificate \"%s\" valid until %s",
            usage == CT_CERT_SERVER ? "server" : "client", opts->common_name,
            ctp_pki_time_str(na, tbuf));
out:
    ctp_pki_ecc_release(signer);
    ctp_pki_ecc_release(subject);
    ctp_pki_ecc_release(ca_pub);
    if (have_rng)
        wc_FreeRng(&rng);
    wc_CertFree(c);
    ctp_pki_dc_free(cadc);
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
        DecodedCert *dc = ctp_pki_dc_new(der, len);
        int wrc;
        if (!dc)
            return -2;
        wrc = wc_ParseCert(dc, kinds[i], NO_VERIFY, NULL);
        ctp_pki_dc_free(dc);
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
        return ctp_pki_crypto_err(err, need, "sizing the PEM");
    if (!(buf = malloc((size_t)need + 1)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    n = wc_DerToPem(der, (word32)len, (uint8_t *)buf, (word32)need, kind);
    if (n <= 0 || n > need) {
        free(buf);
        return ctp_pki_crypto_err(err, n, "encoding the PEM");
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
    if (ctp_pki_find_bytes(pem, len, "-----BEGIN CERTIFICATE REQUEST-----"))
        kind = CERTREQ_TYPE;
    else if (ctp_pki_find_bytes(pem, len, "-----BEGIN CERTIFICATE-----"))
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

/* ------------------------------------------------------------------------ */
/* Pins and throwaway server certificates                                   */

ct_err ct_cert_pin_sha256(const uint8_t *cert, size_t len, uint8_t out[32], ct_error *err)
{
    uint8_t *der = NULL;
    size_t der_len = len;
    const uint8_t *spki;
    size_t spki_len;
    ct_err rc = CT_OK;

    if (!cert || !len || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_pin_sha256: NULL or empty argument");
    if (ctp_pki_find_bytes(cert, len, "-----BEGIN CERTIFICATE-----")) {
        if ((rc = ct_cert_pem_to_der((const char *)cert, len, &der, &der_len, err)) != CT_OK)
            return rc;
        cert = der;
    } else if (len > CTP_PKI_MAX_INPUT) {
        return ctp_err(err, CT_E_TOOBIG, 0, "certificate of %zu bytes exceeds %zu", len,
                       CTP_PKI_MAX_INPUT);
    }
    if (ctp_tls_cert_spki(cert, der_len, &spki, &spki_len) != 0) {
        rc = ctp_err(err, CT_E_INVALID, 0, "not a certificate (no SubjectPublicKeyInfo found)");
        goto out;
    }
    if ((rc = ct_sha256(spki, spki_len, out)) != CT_OK)
        rc = ctp_err(err, rc, 0, "SHA-256 failed");
out:
    free(der);
    return rc;
}

ct_err ct_cert_dev_server(ct_ctx *ctx, const ct_cert_options *opts, uint8_t **ca_der,
                          size_t *ca_len, uint8_t **cert_der, size_t *cert_len, ct_key **key,
                          ct_error *err)
{
    ct_cert_options cao = CT_CERT_OPTIONS_INIT;
    ct_key *ca_key = NULL, *k = NULL;
    uint8_t *ca = NULL, *csr = NULL, *cert = NULL;
    size_t ca_n = 0, csr_n = 0, cert_n = 0;
    ct_err rc;

    if (!ca_der || !ca_len || !cert_der || !cert_len || !key)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_dev_server: NULL output");
    *ca_der = *cert_der = NULL;
    *ca_len = *cert_len = 0;
    *key = NULL;
    if (!opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_dev_server: opts is NULL");
    cao.common_name = "cloudtaser throwaway CA";
    cao.organization = opts->organization;
    cao.days_valid = opts->days_valid;
    if ((rc = ct_key_generate(ctx, &ca_key, err)) != CT_OK ||
        (rc = ct_ca_create(ctx, ca_key, &cao, &ca, &ca_n, err)) != CT_OK ||
        (rc = ct_key_generate(ctx, &k, err)) != CT_OK ||
        (rc = ct_csr_create(ctx, k, opts, &csr, &csr_n, err)) != CT_OK ||
        (rc = ct_cert_issue(ctx, ca, ca_n, ca_key, csr, csr_n, CT_CERT_SERVER, opts, &cert,
                            &cert_n, err)) != CT_OK)
        goto out;
    *ca_der = ca;
    *ca_len = ca_n;
    *cert_der = cert;
    *cert_len = cert_n;
    *key = k;
    ca = cert = NULL;
    k = NULL;
out:
    ct_free(csr);
    ct_free(ca);
    ct_free(cert);
    ct_key_free(k);
    ct_key_free(ca_key);
    return rc;
}
