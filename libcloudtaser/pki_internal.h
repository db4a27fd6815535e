/*
 * pki_internal.h - private declarations shared by the PKI modules: ECDSA
 * P-256 keys, a self-signed per-cluster CA, PKCS#10 requests, leaf issuance
 * from requests, and chain verification (wolfSSL 5.5.4; see also pki.h).
 *
 *   pki_key.c     ct_key: generate, load, export; P-256 public keys from
 *                 requests and certificates
 *   pki_names.c   certificate options: subject names, SAN checks and encoding
 *   pki_time.c    ASN.1 times <-> Unix seconds, the context's wall clock
 *   pki_cert.c    the CA, requests, issuing from a request, DER <-> PEM,
 *                 certificate pins, throwaway dev server certificates
 *   pki_verify.c  ct_cert_verify
 *
 * Keys and signatures use wolfSSL's DRBG (wc_InitRng), never the context's
 * rng hook; serial numbers use the context's generator (context.h).
 *
 * Non-static internals are named ctp_pki_* and are never exported.
 */
#ifndef CTP_PKI_INTERNAL_H
#define CTP_PKI_INTERNAL_H

#include "internal.h"
#include "der.h"
#include "wolf.h"

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

static inline const void *ctp_pki_find_bytes(const void *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle));
}

/* pki_key.c */
ecc_key *ctp_pki_ecc_new(void);
/* Frees an ecc_key from ctp_pki_ecc_new, wiping any private scalar it held. */
void ctp_pki_ecc_release(ecc_key *k);
ct_err ctp_pki_crypto_err(ct_error *err, int wolf_rc, const char *what);
ct_err ctp_pki_rng_open(WC_RNG *rng, ct_error *err);
/* Decodes the key's private copy for one operation. Release with ctp_pki_ecc_release. */
ct_err ctp_pki_key_open(const ct_key *key, ecc_key **out, ct_error *err);
/* SubjectPublicKeyInfo that must hold a valid P-256 point. Errors carry `code`. */
ct_err ctp_pki_spki_p256(ctp_der spki, ct_err code, const char *what, ecc_key **out,
                         ct_error *err);

/* pki_names.c */
/* Checks certificate options; a CA (is_ca) carries no subject alternative names. */
ct_err ctp_pki_check_opts(const ct_cert_options *o, int is_ca, ct_error *err);
/*
 * GeneralNames DER for the SANs of `o` (already validated): dNSName [2]
 * IA5String and iPAddress [7] OCTET STRING. Returns the size (0: no names).
 */
int ctp_pki_sans_encode(const ct_cert_options *o, uint8_t *out, size_t cap);

/* pki_time.c */
/* Writes tag, length and value; returns the size or -1 when out of range. */
int ctp_pki_time_encode(int64_t t, uint8_t out[CTC_DATE_SIZE]);
/* "2035-01-02 03:04:05Z" for messages. */
const char *ctp_pki_time_str(int64_t t, char buf[32]);
int64_t ctp_pki_wall_seconds(const ct_ctx *ctx);
/* The validity period of a parsed certificate. 0 on success. */
int ctp_pki_dc_dates(const DecodedCert *dc, int64_t *not_before, int64_t *not_after);

/* pki_cert.c */
DecodedCert *ctp_pki_dc_new(const uint8_t *der, size_t len);
void ctp_pki_dc_free(DecodedCert *dc);
/*
 * Parses a CA certificate (no signature check) and checks that it may sign
 * certificates. Errors carry `code`.
 */
ct_err ctp_pki_ca_open(const uint8_t *ca, size_t ca_len, ct_err code, DecodedCert **out,
                       int64_t *not_before, int64_t *not_after, ct_error *err);

/*
 * Checks a certificate request exactly as ct_cert_issue does (well formed,
 * P-256 key, signature), without issuing: for callers that must refuse a bad
 * request before committing to anything. ct_cert_issue verifies the
 * signature once more: one more ECDSA verification (measured with the stock
 * wolfSSL: a second ct_cert_issue from the same request costs what the first
 * did, ~4 ms on a loaded 2-core machine, and adds no FP_ECC cache memory;
 * the ~830 KB table of a new point is built at its first use).
 * Errors: CT_E_INVALID, CT_E_TOOBIG, CT_E_CRYPTO, CT_E_NOMEM.
 */
ct_err ctp_pki_csr_check(const uint8_t *csr, size_t csr_len, ct_error *err);

#endif
