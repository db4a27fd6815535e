/*
 * tls_internal.h - private declarations shared by the TLS modules (TLS 1.3
 * over any ct_conn, wolfSSL; see also include/cloudtaser/tls.h):
 *
 *   tls_config.c     ct_tls_config: options, credentials, trust anchors
 *   tls_auth.c       peer authentication: verify and pin callbacks, PSK
 *                    callbacks, the ticket that confirms a client certificate
 *   tls_conn.c       ct_tls_wrap, the handshake, the I/O callbacks over the
 *                    inner ct_conn and the TLS ct_conn itself
 *   tls_error.c      wolfSSL errors and alerts -> ct_err and messages
 *   tls_transport.c  ct_transport_new_tls
 *
 * Non-static internals are named ctp_tls_* and are never exported.
 */
#ifndef CTP_TLS_INTERNAL_H
#define CTP_TLS_INTERNAL_H

#include "internal.h"
#include "wolf.h"

#define TLS_PSK_ID_MAX 127   /* wolfSSL MAX_PSK_ID_LEN is 128 with the NUL */
#define TLS_PIN_LEN 32

struct ct_tls_config {
    ct_ctx *ctx;
    WOLFSSL_CTX *wctx;
    ct_tls_role role;
    uint32_t flags;
    bool has_ca;       /* some trust anchor was loaded */
    bool has_pin;
    bool client_auth;  /* server: requests client certificates */
    uint8_t pin[TLS_PIN_LEN];
    char *server_name;
    bool server_name_ip;
    uint8_t ip[16];    /* server_name as an address, when an IP literal */
    size_t ip_len;
    ct_secret *psk;
    char psk_id[TLS_PSK_ID_MAX + 1]; /* zero padded */
    size_t psk_id_len;
    int handshake_timeout_ms;
};

typedef struct tls_conn {
    ct_tls_config *cfg; /* borrowed */
    ct_ctx *ctx;
    WOLFSSL *ssl;
    ct_conn *inner;
    /* The operation in progress. */
    int64_t deadline;
    bool nonblock;
    ct_err io_rc;      /* last non-OK result of the inner connection */
    ct_error io_err;   /* its detail */
    bool inner_eof;
    bool inner_reset;
    bool write_broken; /* the inner connection refused our bytes: peer gone */
    ct_error werr;     /* why */
    /* Handshake. */
    bool cert_requested;
    bool ticket_seen;
    bool confirming;
    bool pin_mismatch;
    bool ip_mismatch;
    bool psk_saw_cert;
    bool psk_unknown;  /* server: the client's identity is not ours */
    /*
     * The peer's leaf certificate (DER), copied by the verify callback.
     * Kept here rather than read back with wolfSSL_get_peer_chain, which
     * needs SESSION_CERTS: that option puts room for a whole peer chain
     * (37.5 KB) into every WOLFSSL_SESSION, and the lean wolfSSL build
     * leaves it out.
     */
    uint8_t *peer_der;
    size_t peer_der_len;
    /* Data phase. */
    bool peer_closed;
    bool wshut;        /* our close_notify is out */
    bool inner_wshut;  /* and the inner connection is half-closed too */
    ct_err fail_rc;    /* CT_OK, or the error that made the session unusable */
    /* Send journal: bytes committed to a record that is not fully written. */
    uint8_t *jbuf;
    size_t jcap, jlen, jacked;
    bool jflushed;
} tls_conn;

/* tls_conn.c: wolfSSL I/O callbacks over the inner connection. */
int ctp_tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *vctx);
int ctp_tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *vctx);

/* tls_auth.c: the callbacks that authenticate the peer. */
int ctp_tls_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store);
/* tls_ecc.c: ECDSA sign/verify callbacks that build no FP_ECC tables */
void ctp_tls_install_ecc_cbs(WOLFSSL_CTX *wctx);
int ctp_tls_cert_setup_cb(WOLFSSL *ssl, void *arg);
int ctp_tls_no_client_cert_cb(WOLFSSL *ssl, WOLFSSL_X509 **x509, WOLFSSL_EVP_PKEY **pkey);
int ctp_tls_ticket_seen_cb(WOLFSSL *ssl, const unsigned char *ticket, int len, void *ctx);
int ctp_tls_ticket_enc_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                          unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                          unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc,
                          unsigned char *ticket, int in_len, int *out_len, void *ctx);
unsigned int ctp_tls_psk_client_cb(WOLFSSL *ssl, const char *hint, char *identity,
                                   unsigned int id_max, unsigned char *key,
                                   unsigned int key_max, const char **suite);
unsigned int ctp_tls_psk_server_cb(WOLFSSL *ssl, const char *identity, unsigned char *key,
                                   unsigned int key_max, const char **suite);

/*
 * Locates the SubjectPublicKeyInfo (header included) in a certificate DER.
 * 0 on success.
 */
int ctp_tls_cert_spki(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len);

/* true if the SHA-256 of the certificate's SPKI is cfg's pin. */
bool ctp_tls_pin_matches(const ct_tls_config *cfg, const uint8_t *der, size_t len);

/* tls_error.c */
static inline bool ctp_tls_is_want(int e)
{
    return e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE;
}

/* CT_E_AGAIN for a non-blocking operation, else CT_E_TIMEOUT. */
ct_err ctp_tls_want_error(const tls_conn *t, const char *what, ct_error *err);

/*
 * Maps the failure of a wolfSSL call (return value ret) to a ct_err with a
 * readable message; `handshake` selects how an inner end of stream reads.
 */
ct_err ctp_tls_error(tls_conn *t, int ret, const char *what, bool handshake, ct_error *err);

#endif
