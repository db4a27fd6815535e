/*
 * bootstrap_internal.h - private declarations shared by the bootstrap
 * modules (bootstrap.h, PROTOCOL.md section 2):
 *
 *   bootstrap_msg.c     the init messages: base64, request and answer
 *                       encode/decode, refusal names (no crypto, no store,
 *                       no I/O: the fuzz target links this file alone with
 *                       b64.c, error.c and the public library)
 *   bootstrap_chan.c    the init channel: ct_init_psk, the PSK TLS
 *                       configurations, u32-length framing over a ct_conn
 *   bootstrap_record.c  the clusters/<fp>/initialized record and its
 *                       replay list
 *   bootstrap_client.c  the operator side: ct_bootstrap_conn, ct_bootstrap
 *   bootstrap_server.c  the bridge side: ct_bootstrap_serve
 *   creds.c             ct_credentials, the operational TLS configurations,
 *                       reading key-pair records from the store
 *
 * Non-static internals are named ctp_boot_* and are never exported.
 */
#ifndef CTP_BOOTSTRAP_INTERNAL_H
#define CTP_BOOTSTRAP_INTERNAL_H

#include "internal.h"
#include "cloudtaser/bootstrap.h"
#include "cloudtaser/jwt.h"

/* Largest certificate request (DER) a bridge accepts. */
#define CTP_BOOT_MAX_CSR 4096
/* Largest certificate (DER) an operator accepts in an answer (CA or broker). */
#define CTP_BOOT_MAX_CERT 8192
/* A refusal's "message" is cut to this many bytes when decoded. */
#define CTP_BOOT_MAX_TEXT 200
/* Default exchange timeout (after pairing), both sides. */
#define CTP_BOOT_DEFAULT_TIMEOUT_MS 15000
/* Clock skew tolerated on token times (exp, nbf, iat). */
#define CTP_BOOT_LEEWAY_S 60u
/* The replay list in the initialized record holds at most this many entries. */
#define CTP_BOOT_MAX_JTIS 64
/* Check-and-set attempts on the initialized record before giving up. */
#define CTP_BOOT_CAS_TRIES 5
/* After its answer, how long the bridge waits for the operator to close. */
#define CTP_BOOT_LINGER_MS 2000
/* Subject and organisation of every broker certificate. */
#define CTP_BOOT_BROKER_CN "cloudtaser broker"
#define CTP_BOOT_ORG "cloudtaser"

/* ---- bootstrap_msg.c ---- */

/* Standard base64 (RFC 4648 section 4) with padding; NUL-terminated, ct_free. */
char *ctp_boot_b64_encode(const uint8_t *p, size_t n);
/*
 * Strict decode (b64.c: alphabet, padding, zero unused bits; one encoding
 * per byte string) into a new buffer (*out, ct_free). Returns 0, or -1
 * (malformed), -2 (decoded size > max), -3 (out of memory).
 */
int ctp_boot_b64_decode(const char *s, size_t len, size_t max, uint8_t **out, size_t *out_len);

/* The operator's request, decoded on the bridge. */
typedef struct ctp_boot_request {
    char fingerprint[CT_FINGERPRINT_LEN + 1]; /* canonical */
    uint8_t *csr;                             /* DER, ct_free */
    size_t csr_len;
    char *jwks;                               /* compact JSON text of "jwks", or NULL */
    size_t jwks_len;
    ct_secret *token;                         /* NUL-terminated, or NULL */
    int first;                                /* 1: first bootstrap, 0: re-bootstrap */
} ctp_boot_request;

/*
 * Encodes a request into a new secret (it carries the token). jwks is
 * JSON text of an object, or NULL; token may be NULL. A request with jwks
 * must carry a token. Errors: CT_E_INVALID, CT_E_TOOBIG (over
 * CT_BOOTSTRAP_MAX_MSG), CT_E_NOMEM.
 */
ct_err ctp_boot_request_encode(const char *fingerprint, const uint8_t *csr, size_t csr_len,
                               const char *jwks, size_t jwks_len, const char *token,
                               size_t token_len, ct_secret **out, ct_error *err);
/*
 * Decodes a request (hostile input). On success *r owns its buffers
 * (ctp_boot_request_clear). Errors: CT_E_PROTO (with a message naming the
 * problem, never quoting the token), CT_E_VERSION (v != 1), CT_E_NOMEM.
 */
ct_err ctp_boot_request_decode(const uint8_t *json, size_t len, ctp_boot_request *r,
                               ct_error *err);
void ctp_boot_request_clear(ctp_boot_request *r);

/* The bridge's answer, decoded on the operator. */
typedef struct ctp_boot_answer {
    int issued;                  /* 1: "issued", 0: "refused" */
    uint8_t *ca, *cert;          /* issued: DER, ct_free */
    size_t ca_len, cert_len;
    int reissue;
    ct_boot_refusal reason;      /* refused; CT_BOOT_R_NONE for an unknown reason name */
    char reason_name[32];        /* refused: as sent (printable ASCII, cut) */
    char message[CTP_BOOT_MAX_TEXT + 1]; /* refused: printable ASCII, cut */
} ctp_boot_answer;

/* Errors: CT_E_NOMEM, CT_E_INVALID. *out: ct_free. */
ct_err ctp_boot_answer_issued(const uint8_t *ca, size_t ca_len, const uint8_t *cert,
                              size_t cert_len, int reissue, char **out, size_t *out_len,
                              ct_error *err);
ct_err ctp_boot_answer_refused(ct_boot_refusal reason, const char *message, char **out,
                               size_t *out_len, ct_error *err);
/* Decodes an answer (hostile input). Errors: CT_E_PROTO, CT_E_VERSION, CT_E_NOMEM. */
ct_err ctp_boot_answer_decode(const uint8_t *json, size_t len, ctp_boot_answer *a,
                              ct_error *err);
void ctp_boot_answer_clear(ctp_boot_answer *a);

/* The reason whose wire name is `name`, or CT_BOOT_R_NONE. */
ct_boot_refusal ctp_boot_refusal_from_name(const char *name);

/* ---- bootstrap_chan.c ---- */

/* A TLS configuration with the init PSK of `fp` (validated) for `role`. */
ct_err ctp_boot_psk_config(ct_ctx *ctx, ct_tls_role role, const char *fp,
                           ct_tls_config **out, ct_error *err);

/*
 * Framing: u32 big-endian length (1..CT_BOOTSTRAP_MAX_MSG) + body, before
 * `deadline` (monotonic ms, ctp_deadline).
 * send: errors of ct_conn_send_all, CT_E_TIMEOUT, CT_E_INVALID (length).
 * recv: *out a new secret with the body. CT_E_TOOBIG when the announced
 * length exceeds the limit (*announced tells it; nothing more is read),
 * CT_E_PROTO for a zero length, CT_E_TIMEOUT, CT_E_CLOSED, transport errors.
 */
ct_err ctp_boot_send_frame(ct_conn *c, const void *body, size_t len, int64_t deadline,
                           ct_error *err);
ct_err ctp_boot_recv_frame(ct_conn *c, int64_t deadline, ct_secret **out, uint32_t *announced,
                           ct_error *err);

/* ---- bootstrap_record.c ---- */

typedef struct ctp_boot_jti {
    char id[CT_JWT_CLAIM_MAX];   /* the token's jti, or "sha256:<hex of the token>" */
    int64_t exp;                 /* the token's exp (Unix seconds) */
} ctp_boot_jti;

/* clusters/<fp>/initialized */
typedef struct ctp_boot_record {
    char fingerprint[CT_FINGERPRINT_LEN + 1];
    int64_t initialized_at;      /* ms */
    int64_t updated_at;          /* ms: the claim or the last re-bootstrap */
    char *jwks;                  /* canonical key set JSON text, or NULL (nothing pinned) */
    char issuer[CT_JWT_CLAIM_MAX];
    char subject[CT_JWT_CLAIM_MAX];
    char audience[CT_JWT_CLAIM_MAX];
    uint32_t reissues;
    size_t n_jtis;
    ctp_boot_jti jtis[CTP_BOOT_MAX_JTIS];
} ctp_boot_record;

/* Serialises (compact, sorted keys). *out: ct_free. Errors: CT_E_NOMEM, CT_E_INVALID. */
ct_err ctp_boot_record_encode(const ctp_boot_record *r, char **out, size_t *out_len,
                              ct_error *err);
/*
 * Parses a record read from the store for cluster `fp`; *out: free with
 * ctp_boot_record_free. Errors: CT_E_STORE (malformed; the message names
 * `key`), CT_E_NOMEM.
 */
ct_err ctp_boot_record_decode(const char *key, const char *fp, const uint8_t *data, size_t len,
                              ctp_boot_record **out, ct_error *err);
void ctp_boot_record_free(ctp_boot_record *r);
/* Drops entries whose exp + leeway is before now_s. */
void ctp_boot_record_prune(ctp_boot_record *r, int64_t now_s);
/* 1 if `id` is in the replay list. */
int ctp_boot_record_has_jti(const ctp_boot_record *r, const char *id);
/* Appends; -1 if the list is full. */
int ctp_boot_record_add_jti(ctp_boot_record *r, const char *id, int64_t exp);

/* ---- creds.c ---- */

/* "clusters/<fp>/<name>" into buf (CT_STORE_KEY_MAX bytes). */
void ctp_boot_key(char *buf, size_t n, const char *fp, const char *name);

/*
 * Reads a key-pair record ({"v":1,"cert":"<PEM>","key":"<PEM>"}, as
 * register.c writes them): the certificate as DER (*der, ct_free) and the
 * private key PEM in a new secret (*key_pem, NUL-terminated; key_pem NULL:
 * only the certificate). jansson's copy of the key string is wiped before
 * its tree is freed.
 * Errors: CT_E_NOTFOUND, CT_E_STORE (malformed record), CT_E_NOMEM, and
 * the store's.
 */
ct_err ctp_boot_read_keypair(ct_store *store, const char *fp, const char *name, uint8_t **der,
                             size_t *der_len, ct_secret **key_pem, ct_error *err);

/* Takes ownership of ca, cert and key (all non-NULL). */
ct_err ctp_boot_credentials_new(uint8_t *ca, size_t ca_len, uint8_t *cert, size_t cert_len,
                                ct_key *key, int reissued, int64_t not_after_ms,
                                ct_credentials **out, ct_error *err);

#endif
