/*
 * cloudtaser/tls.h - TLS 1.3 over any ct_conn: client and server, mutual
 * certificate authentication, external pre-shared keys, nestable (TLS inside
 * TLS).
 *
 * Peer verification is on in every configuration; a configuration that
 * could not verify its peer is refused when it is created:
 *  - a client needs trust anchors (ca / ca_file / system CAs), a pinned
 *    SHA-256 of the server's public key, or a PSK;
 *  - a server with client CA anchors requires and verifies a client
 *    certificate (mTLS); a server that accepts anonymous clients must say
 *    so with CT_TLS_F_ANONYMOUS_CLIENTS.
 * Only TLS 1.3 is negotiated. ChaCha20-Poly1305 and X25519 are preferred,
 * then AES-GCM and P-256. With a PSK only psk_dhe_ke is accepted: a
 * handshake without (EC)DHE is aborted (forward secrecy is mandatory), and a
 * PSK configuration never falls back to certificates.
 */
#ifndef CLOUDTASER_TLS_H
#define CLOUDTASER_TLS_H

#include "common.h"
#include "context.h"
#include "secret.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_tls_config ct_tls_config;

typedef enum ct_tls_role {
    CT_TLS_CLIENT = 1,
    CT_TLS_SERVER = 2,
    CT_TLS_ROLE_FORCE_INT32_ = 0x7fffffff
} ct_tls_role;

/* Server only: accept clients without a certificate (e.g. a public relay). */
#define CT_TLS_F_ANONYMOUS_CLIENTS (1u << 0)
/* Client: also trust the operating system's CA bundle. */
#define CT_TLS_F_SYSTEM_CA (1u << 1)

#define CT_TLS_OPTIONS_VERSION 1

/*
 * Every pointer is borrowed for the duration of ct_tls_config_new only; all
 * data is copied. Certificates, keys and CAs are PEM or DER (detected).
 */
typedef struct ct_tls_options {
    uint32_t version;      /* CT_TLS_OPTIONS_VERSION */
    ct_tls_role role;      /* required */
    uint32_t flags;        /* CT_TLS_F_* */
    /* Own certificate (leaf; PEM may carry the chain) and private key. */
    const uint8_t *cert;
    size_t cert_len;
    const ct_secret *key;
    /* Trust anchors for the peer's certificate. */
    const uint8_t *ca;
    size_t ca_len;
    const char *ca_file;
    /*
     * Client: the name (DNS or IP literal) the server certificate must carry
     * in its subject alternative names; also sent as SNI. Required with
     * certificate verification (CA based), ignored with a pin or PSK.
     */
    const char *server_name;
    /* Client: SHA-256 of the server's SubjectPublicKeyInfo DER (32 bytes). */
    const uint8_t *pin_sha256;
    /* External PSK (both roles). identity is a printable string. */
    const ct_secret *psk;
    const char *psk_identity;
    int handshake_timeout_ms; /* 0: context I/O timeout */
} ct_tls_options;

#define CT_TLS_OPTIONS_INIT { .version = CT_TLS_OPTIONS_VERSION }

/*
 * Builds a reusable configuration (certificates parsed once). Thread-safe to
 * use from several connections at once once built. Free with
 * ct_tls_config_free after every connection made with it is freed.
 * Errors: CT_E_INVALID (inconsistent options, e.g. no way to verify the
 * peer, PSK mixed with a certificate), CT_E_CERT (unparsable certificate or
 * key, key not matching certificate), CT_E_VERSION, CT_E_NOMEM, CT_E_TLS.
 */
CT_API ct_err ct_tls_config_new(ct_ctx *ctx, const ct_tls_options *opts,
                                ct_tls_config **out, ct_error *err);
CT_API void ct_tls_config_free(ct_tls_config *cfg);

/*
 * Runs a TLS handshake over `inner` and returns the secured connection.
 * Always takes ownership of `inner`, even on failure (it is then freed).
 * A client returns only after the server has accepted its certificate
 * (the server sends a confirmation record, so a rejected client certificate
 * is reported here, not on the first read).
 * Errors: CT_E_CERT (peer certificate not trusted, wrong name, wrong key
 * usage, pin mismatch), CT_E_AUTH (no client certificate, PSK mismatch,
 * PSK handshake without (EC)DHE), CT_E_TIMEOUT, CT_E_CLOSED/CT_E_RESET
 * (peer went away), CT_E_TLS (other protocol failures).
 */
CT_API ct_err ct_tls_wrap(ct_tls_config *cfg, ct_conn *inner, int timeout_ms,
                          ct_conn **out, ct_error *err);

/*
 * A transport that runs TLS over every connection of `inner` (dialled or
 * accepted). Takes ownership of `inner` on success only. `cfg` is borrowed
 * and must outlive the transport. A server config goes with listen/accept,
 * a client config with dial.
 */
CT_API ct_err ct_transport_new_tls(ct_ctx *ctx, ct_transport *inner, ct_tls_config *cfg,
                                   ct_transport **out, ct_error *err);

/* The negotiated cipher suite name of a TLS connection, or NULL if not TLS. */
CT_API const char *ct_tls_cipher(const ct_conn *c);

/*
 * Copies the peer's leaf certificate DER into a new buffer (*der, free with
 * ct_free). CT_E_NOTFOUND if the peer sent none (PSK), CT_E_INVALID if `c`
 * is not a TLS connection.
 */
CT_API ct_err ct_tls_peer_cert(const ct_conn *c, uint8_t **der, size_t *len, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
