/*
 * cloudtaser/pki.h - an in-memory PKI: ECDSA P-256 keys, a per-cluster CA,
 * certificate requests, issuing leaf certificates from requests, and chain
 * verification. Certificates are public and returned as plain DER buffers;
 * private keys are ct_secret-backed and wiped when freed.
 *
 * Clocks: validity periods are computed from, and checked against, the
 * context's wall clock (ct_ctx_wall_ms), never the system clock directly.
 * notBefore is backdated by one hour to tolerate clock skew between peers.
 * Randomness: keys and ECDSA signatures use wolfSSL's DRBG; serial numbers
 * (16 bytes, 126 random bits) come from the context's generator.
 *
 * Thread-safety: a ct_key is immutable after creation; unlike most objects
 * (common.h) it may be used by several threads at once (each operation works
 * on a private, wiped copy of the key). Everything else is stateless.
 * With the stock Debian wolfSSL, every thread that runs ECC operations keeps
 * a per-thread FP_ECC cache (up to ~12 MB); short-lived threads should release
 * it with ct_thread_cleanup() (context.h) before they exit.
 */
#ifndef CLOUDTASER_PKI_H
#define CLOUDTASER_PKI_H

#include "common.h"
#include "context.h"
#include "secret.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_key ct_key;

typedef enum ct_cert_usage {
    CT_CERT_CA = 1,     /* basicConstraints CA, keyCertSign + cRLSign */
    CT_CERT_SERVER = 2, /* digitalSignature, extendedKeyUsage serverAuth */
    CT_CERT_CLIENT = 3, /* digitalSignature, extendedKeyUsage clientAuth */
    CT_CERT_USAGE_FORCE_INT32_ = 0x7fffffff
} ct_cert_usage;

#define CT_CERT_OPTIONS_VERSION 1
#define CT_CERT_MAX_NAMES 8

/* Pointers are borrowed for the duration of the call only. */
typedef struct ct_cert_options {
    uint32_t version;           /* CT_CERT_OPTIONS_VERSION */
    const char *common_name;    /* required, 1..63 bytes */
    const char *organization;   /* optional, <= 63 bytes */
    uint32_t days_valid;        /* 0: 365 (CA: 3650) */
    /* Subject alternative names: DNS names and IP literals (v4 or v6). */
    const char *const *dns_names;
    size_t n_dns_names;         /* <= CT_CERT_MAX_NAMES */
    const char *const *ip_addrs;
    size_t n_ip_addrs;          /* <= CT_CERT_MAX_NAMES */
} ct_cert_options;

#define CT_CERT_OPTIONS_INIT { .version = CT_CERT_OPTIONS_VERSION }

/* Generates an ECDSA P-256 private key. Free with ct_key_free. */
CT_API ct_err ct_key_generate(ct_ctx *ctx, ct_key **out, ct_error *err);

/*
 * Loads a P-256 private key from PEM or DER, SEC1 ("EC PRIVATE KEY") or
 * unencrypted PKCS#8 ("PRIVATE KEY"). The scalar is range-checked and a
 * public key stored in the file must match it. `data` is not kept.
 * Errors: CT_E_INVALID (NULL/empty), CT_E_TOOBIG (> 64 KiB), CT_E_CRYPTO
 * (anything that is not such a key: other algorithms or curves, encrypted
 * keys, malformed input).
 */
CT_API ct_err ct_key_load(ct_ctx *ctx, const uint8_t *data, size_t len, ct_key **out,
                          ct_error *err);

/*
 * Exports the private key as SEC1 ("EC PRIVATE KEY") PEM (pem != 0) or DER,
 * into a new secret (free with ct_secret_free). PEM is NUL-terminated.
 */
CT_API ct_err ct_key_export(const ct_key *key, int pem, ct_secret **out, ct_error *err);

/* SubjectPublicKeyInfo DER of the key's public half (free with ct_free). */
CT_API ct_err ct_key_public_der(const ct_key *key, uint8_t **der, size_t *len,
                                ct_error *err);

/* Wipes and frees. NULL is a no-op. */
CT_API void ct_key_free(ct_key *key);

/*
 * Creates a self-signed CA certificate for `key` (usage CT_CERT_CA):
 * basicConstraints CA:TRUE, pathlen:0 (non-critical: wolfSSL 5.5.4 cannot
 * mark it critical; OpenSSL and wolfSSL accept it), keyUsage keyCertSign and
 * cRLSign (critical), subject key identifier, ECDSA with SHA-256. A CA has
 * no subject alternative names: names in `opts` are CT_E_INVALID.
 * *der: free with ct_free. Errors: CT_E_INVALID, CT_E_VERSION, CT_E_CRYPTO.
 */
CT_API ct_err ct_ca_create(ct_ctx *ctx, const ct_key *key, const ct_cert_options *opts,
                           uint8_t **der, size_t *len, ct_error *err);

/*
 * Creates a PKCS#10 certificate request signed by `key`, carrying the
 * subject and names of `opts` (names as a requested extension).
 * *der: free with ct_free. Errors: CT_E_INVALID, CT_E_VERSION, CT_E_CRYPTO.
 */
CT_API ct_err ct_csr_create(ct_ctx *ctx, const ct_key *key, const ct_cert_options *opts,
                            uint8_t **der, size_t *len, ct_error *err);

/*
 * Issues a leaf certificate for the public key in `csr` (whose signature is
 * checked: CT_E_CRYPTO if bad). The subject and names come from `opts`, not
 * from the request: the issuer decides what it certifies. `usage` is
 * CT_CERT_SERVER or CT_CERT_CLIENT. *der: free with ct_free.
 *
 * The certificate has keyUsage digitalSignature (critical), extendedKeyUsage
 * serverAuth or clientAuth, subject and authority key identifiers and a
 * random serial. Validity: days_valid from now, clamped to the CA's notAfter
 * (a notice is logged) so an issued certificate never outlives its CA.
 *
 * Errors: CT_E_INVALID (arguments or options; ca_der is not a usable CA, is
 * not valid now, or `ca_key` is not its key), CT_E_VERSION, CT_E_TOOBIG,
 * CT_E_CRYPTO (the request is malformed, its signature does not verify, or
 * its key is not ECDSA P-256).
 */
CT_API ct_err ct_cert_issue(ct_ctx *ctx, const uint8_t *ca_der, size_t ca_len,
                            const ct_key *ca_key, const uint8_t *csr, size_t csr_len,
                            ct_cert_usage usage, const ct_cert_options *opts,
                            uint8_t **der, size_t *len, ct_error *err);

/*
 * Verifies that `cert` chains to `ca` and is valid now (context wall clock),
 * and that its extended key usage allows `usage` (CT_CERT_SERVER or
 * CT_CERT_CLIENT; CT_CERT_CA checks the CA itself). Returns CT_OK only if
 * all hold; CT_E_CERT otherwise.
 *
 * Checks: `ca` is a CA valid now; `cert` is signed by `ca`'s key and names it
 * as issuer; `cert` is valid now. SERVER/CLIENT: not a CA, extendedKeyUsage
 * includes serverAuth/clientAuth, keyUsage (if present) digitalSignature.
 * CA: CA:TRUE with keyCertSign, self-signed with the same key as `ca`.
 * CT_E_INVALID only for NULL arguments or an unknown usage; err->message
 * names the check that failed.
 */
CT_API CT_NODISCARD ct_err ct_cert_verify(ct_ctx *ctx, const uint8_t *ca, size_t ca_len,
                                          const uint8_t *cert, size_t cert_len,
                                          ct_cert_usage usage, ct_error *err);

/*
 * The pin of a certificate: SHA-256 of its SubjectPublicKeyInfo DER, exactly
 * what ct_beacon_options.pin_sha256 and ct_tls_options.pin_sha256 expect.
 * `cert` is DER or PEM (the first "CERTIFICATE" block: the leaf of a
 * chain); any key type. The certificate is only located, not verified.
 * Errors: CT_E_INVALID (NULL/empty, not a certificate), CT_E_TOOBIG,
 * CT_E_NOMEM. Thread-safe.
 */
CT_API ct_err ct_cert_pin_sha256(const uint8_t *cert, size_t len, uint8_t out[32],
                                 ct_error *err);

/*
 * For development and tests only: makes a throwaway CA and a server
 * certificate it issues, each with a fresh P-256 key. `opts` is the
 * server's (common name, names, days_valid); the CA is named "cloudtaser
 * throwaway CA" and lives 10 years or days_valid, whichever is given. The
 * CA's key is wiped before returning, so nothing else can ever be issued
 * under this CA: clients may trust *ca_der (or pin the server's key) for
 * exactly this one certificate. Outputs: *ca_der and *cert_der (free with
 * ct_free), *key the server's private key (free with ct_key_free); all
 * NULL on error. Errors: those of ct_key_generate, ct_ca_create,
 * ct_csr_create and ct_cert_issue (CT_E_INVALID for bad options).
 */
CT_API ct_err ct_cert_dev_server(ct_ctx *ctx, const ct_cert_options *opts, uint8_t **ca_der,
                                 size_t *ca_len, uint8_t **cert_der, size_t *cert_len,
                                 ct_key **key, ct_error *err);

/*
 * PEM <-> DER for certificates ("CERTIFICATE") and requests ("CERTIFICATE
 * REQUEST"; der_to_pem tells them apart by parsing). Outputs: free with
 * ct_free; PEM is NUL-terminated. `len` counts the input bytes.
 * Errors: CT_E_INVALID (not a certificate/request), CT_E_TOOBIG, CT_E_NOMEM.
 */
CT_API ct_err ct_cert_der_to_pem(const uint8_t *der, size_t len, char **pem,
                                 ct_error *err);
CT_API ct_err ct_cert_pem_to_der(const char *pem, size_t len, uint8_t **der,
                                 size_t *der_len, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
