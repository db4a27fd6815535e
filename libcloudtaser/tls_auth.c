/*
 * tls_auth.c - how a TLS peer is authenticated: the certificate verify
 * callback (CA anchors, SHA-256 SPKI pins, IP address SANs), the PSK
 * callbacks, and the session ticket that confirms a client certificate.
 *
 * Verification. Debian's wolfSSL defaults to verify NONE, so every
 * configuration sets a verify mode explicitly and installs verify_cb (called
 * for every certificate, WOLFSSL_ALWAYS_VERIFY_CB). A client verifies with CA
 * anchors (plus wolfSSL_check_domain_name), a SHA-256 SPKI pin, or both. A PSK
 * configuration rejects every certificate in verify_cb, so wolfSSL's silent
 * fallback from an unknown PSK identity to certificate authentication fails.
 *
 * Client learns of rejection inside ct_tls_wrap. In TLS 1.3 the client's
 * handshake ends before the server has checked the client certificate. A
 * TLS 1.3 server may send a NewSessionTicket only after it has received the
 * client's Finished, which follows the client's Certificate and
 * CertificateVerify; wolfSSL 5.5.4 sends it at the end of wolfSSL_accept,
 * after verifying them (a rejected client gets an alert and no ticket). So:
 *  - a server that requests client certificates sends one ticket; the ticket
 *    is only a confirmation: ticket_cb encrypts nothing into it (its contents
 *    are wiped) and refuses every ticket presented back, so no session can
 *    ever be resumed;
 *  - a client that received a CertificateRequest (cert_setup_cb) waits after
 *    the handshake, still within the handshake deadline, until the ticket has
 *    been processed: wolfSSL_peek() with io_recv returning WANT_READ as soon
 *    as ticket_seen_cb has run, so no application data is consumed. An alert
 *    or a close instead of the ticket fails ct_tls_wrap. If application data
 *    arrives before any ticket (a non-cloudtaser server that sends no
 *    tickets and speaks first) it is taken as the confirmation.
 *
 * PSK. Client and server TLS 1.3 callbacks hand wolfSSL the configured
 * secret as the PSK (16..64 bytes) with TLS13-CHACHA20-POLY1305-SHA256; the
 * server compares identities in constant time. wolfSSL 5.5.4 has no
 * "only psk_dhe_ke" switch, so after the handshake both sides require
 * wolfSSL_get_curve_name() != NULL, i.e. an (EC)DHE key share was used.
 * A wrong secret makes the server fail with BAD_BINDER without sending an
 * alert; ct_tls_wrap then frees the inner connection at once, so the client
 * sees the transport close (CT_E_CLOSED) immediately, not after its timeout.
 */
#include "tls_internal.h"
#include "der.h"

#include <string.h>

#define TLS_PSK_SUITE CTP_TLS_PREFERRED_SUITE

/*
 * The TBSCertificate of a certificate DER: Certificate ::= SEQ { tbs SEQ,
 * ... }. Lenient, like the rest of these walks (the certificate has been
 * through wolfSSL's parser before it gets here): lengths need not be
 * minimal, and the tbs is bounded by the end of der, not by the outer
 * SEQUENCE. 0 on success.
 */
static int cert_tbs(const uint8_t *der, size_t len, ctp_der *tbs)
{
    ctp_der in = {der, len}, cert;
    uint8_t tag;

    if (ctp_der_get_lax(&in, &tag, &cert) || tag != 0x30)
        return -1;
    in.p = cert.p;
    in.n = len - (size_t)(cert.p - der);
    if (ctp_der_get_lax(&in, &tag, tbs) || tag != 0x30)
        return -1;
    return 0;
}

/*
 * Locates the SubjectPublicKeyInfo (header included) in a certificate DER:
 * Certificate ::= SEQ { tbs SEQ { [0] version OPT, serial, sigAlg, issuer,
 * validity, subject, SPKI, ... }, ... }. Done by hand because wolfSSL 5.5.4
 * has no call that returns the SPKI for every key type (DecodedCert's
 * publicKey is the SPKI for ECC but the bare key for Ed25519, and
 * wolfSSL_X509_d2i fails on Ed25519 certificates).
 */
int ctp_tls_cert_spki(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len)
{
    ctp_der tbs, f;
    uint8_t tag;
    int field;

    if (cert_tbs(der, len, &tbs) != 0)
        return -1;
    for (field = 0; tbs.n; field++) {
        const uint8_t *start = tbs.p;
        if (ctp_der_get_lax(&tbs, &tag, &f))
            return -1;
        if (field == 0 && tag == 0xa0) { /* explicit version */
            field = -1;
            continue;
        }
        if (field == 5) { /* serial, sigAlg, issuer, validity, subject, SPKI */
            if (tag != 0x30)
                return -1;
            *spki = start;
            *spki_len = (size_t)(tbs.p - start);
            return 0;
        }
    }
    return -1;
}

/*
 * 1 if the certificate has an iPAddress subjectAltName equal to ip. Used
 * instead of wolfSSL_check_domain_name for IP literals: wolfSSL 5.5.4 matches
 * an IP string against DNS names and the CN too, and matches IPv6 only in
 * its fully expanded form ("::1" fails against an IP SAN ::1, measured).
 */
static bool cert_has_ip_san(const uint8_t *der, size_t len, const uint8_t *ip, size_t ip_len)
{
    static const uint8_t san_oid[] = {0x55, 0x1d, 0x11}; /* 2.5.29.17 */
    ctp_der tbs, f, exts;
    uint8_t tag;

    if (cert_tbs(der, len, &tbs) != 0)
        return false;
    do { /* tbs fields up to [3] extensions */
        if (ctp_der_get_lax(&tbs, &tag, &f))
            return false;
    } while (tag != 0xa3);
    if (ctp_der_get_lax(&f, &tag, &exts) || tag != 0x30)
        return false;
    while (exts.n) { /* Extension ::= SEQ { extnID, critical OPT, extnValue } */
        ctp_der ext, id, v, names, name;
        if (ctp_der_get_lax(&exts, &tag, &ext) || tag != 0x30)
            return false;
        if (ctp_der_get_lax(&ext, &tag, &id) || tag != 0x06)
            return false;
        if (ctp_der_get_lax(&ext, &tag, &v))
            return false;
        if (tag == 0x01 && ctp_der_get_lax(&ext, &tag, &v)) /* critical */
            return false;
        if (tag != 0x04)
            return false;
        if (!ctp_der_is(&id, san_oid, sizeof san_oid))
            continue;
        /* GeneralNames */
        if (ctp_der_get_lax(&v, &tag, &names) || tag != 0x30)
            return false;
        while (names.n) {
            if (ctp_der_get_lax(&names, &tag, &name))
                return false;
            if (tag == 0x87 && ctp_der_is(&name, ip, ip_len))
                return true;
        }
        return false;
    }
    return false;
}

bool ctp_tls_pin_matches(const ct_tls_config *cfg, const uint8_t *der, size_t len)
{
    const uint8_t *spki;
    size_t spki_len;
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    int ok;

    if (!der || ctp_tls_cert_spki(der, len, &spki, &spki_len) != 0)
        return false;
    if (wc_Sha256Hash(spki, (word32)spki_len, h) != 0)
        return false;
    ok = ct_memeq(h, cfg->pin, TLS_PIN_LEN);
    ct_secure_wipe(h, sizeof h);
    return ok == 1;
}

/* X509 errors that only say "no trusted issuer": acceptable with a pin alone. */
static bool untrusted_only(int x509_err)
{
    switch (x509_err) {
    case X509_V_OK:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return true;
    default:
        return false;
    }
}

/*
 * Keeps a copy of the peer's leaf for ct_tls_peer_cert and the pin re-check.
 * False only when there is a certificate and no memory to copy it (a client
 * that sends an empty Certificate message also reaches the callback).
 */
static bool keep_leaf(tls_conn *t, const WOLFSSL_X509_STORE_CTX *store)
{
    uint8_t *copy;

    if (store->totalCerts < 1 || !store->certs || store->certs[0].length <= 0)
        return true;
    copy = ctp_memdup(store->certs[0].buffer, (size_t)store->certs[0].length);
    if (!copy)
        return false;
    free(t->peer_der);
    t->peer_der = copy;
    t->peer_der_len = (size_t)store->certs[0].length;
    return true;
}

/*
 * Called for every certificate the peer sends (WOLFSSL_ALWAYS_VERIFY_CB,
 * WOLFSSL_VERIFY_CB_ALL_CERTS), leaf at depth 0. Returns 1 to accept.
 */
int ctp_tls_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    tls_conn *t = store ? store->userCtx : NULL;
    const ct_tls_config *cfg;

    if (!t)
        return 0;
    cfg = t->cfg;
    if (cfg->psk) { /* never fall back to certificates */
        t->psk_saw_cert = true;
        return 0;
    }
    /* Out of memory for the copy: refuse rather than lose the certificate. */
    if (store->error_depth == 0 && !keep_leaf(t, store))
        return 0;
    if (cfg->role == CT_TLS_SERVER)
        return preverify;
    if (store->error_depth > 0) /* chain certificate */
        return cfg->has_ca ? preverify : 1;
    /* The server's leaf. */
    if (cfg->has_ca && !preverify)
        return 0;
    if (cfg->has_ca && cfg->ip_len) {
        if (store->totalCerts < 1 || !store->certs ||
            !cert_has_ip_san(store->certs[0].buffer, store->certs[0].length, cfg->ip,
                             cfg->ip_len)) {
            t->ip_mismatch = true;
            return 0;
        }
    }
    if (!cfg->has_ca && !preverify && !untrusted_only(store->error))
        return 0;
    if (cfg->has_pin) {
        if (store->totalCerts < 1 || !store->certs ||
            !ctp_tls_pin_matches(cfg, store->certs[0].buffer, store->certs[0].length)) {
            t->pin_mismatch = true;
            return 0;
        }
    }
    return 1;
}

/* Client: the server sent a CertificateRequest. */
int ctp_tls_cert_setup_cb(WOLFSSL *ssl, void *arg)
{
    tls_conn *t = wolfSSL_GetIOReadCtx(ssl);
    (void)arg;
    if (t)
        t->cert_requested = true;
    return 1;
}

/* Client without a certificate: the server sent a CertificateRequest. */
int ctp_tls_no_client_cert_cb(WOLFSSL *ssl, WOLFSSL_X509 **x509, WOLFSSL_EVP_PKEY **pkey)
{
    (void)x509;
    (void)pkey;
    ctp_tls_cert_setup_cb(ssl, NULL);
    return 0; /* no certificate to offer */
}

/* Client: a NewSessionTicket was processed (our confirmation). */
int ctp_tls_ticket_seen_cb(WOLFSSL *ssl, const unsigned char *ticket, int len, void *ctx)
{
    tls_conn *t = ctx;
    (void)ssl;
    (void)ticket;
    (void)len;
    t->ticket_seen = true;
    return 0;
}

/*
 * Server: "encrypts" a ticket by wiping its contents (it only serves as the
 * confirmation message) and refuses every ticket presented for resumption.
 */
int ctp_tls_ticket_enc_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                         unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                         unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc,
                         unsigned char *ticket, int in_len, int *out_len, void *ctx)
{
    (void)ssl;
    (void)ctx;
    if (!enc)
        return WOLFSSL_TICKET_RET_REJECT;
    /*
     * wolfSSL insists on non-zero name, IV and MAC and on changed contents.
     * The bytes protect nothing; they come from the OS (never the context's
     * test hook, which must not reach TLS).
     */
    if (ct_ctx_random(NULL, key_name, WOLFSSL_TICKET_NAME_SZ) != CT_OK ||
        ct_ctx_random(NULL, iv, WOLFSSL_TICKET_IV_SZ) != CT_OK ||
        ct_ctx_random(NULL, mac, WOLFSSL_TICKET_MAC_SZ) != CT_OK)
        return WOLFSSL_TICKET_RET_FATAL;
    key_name[0] |= 1;
    iv[0] |= 1;
    mac[0] |= 1;
    if (ticket && in_len > 0) {
        ct_secure_wipe(ticket, (size_t)in_len);
        ticket[0] = 0xc7; /* "not the plaintext" for wolfSSL's sanity check */
    }
    *out_len = in_len;
    return WOLFSSL_TICKET_RET_OK;
}

unsigned int ctp_tls_psk_client_cb(WOLFSSL *ssl, const char *hint, char *identity,
                                  unsigned int id_max, unsigned char *key,
                                  unsigned int key_max, const char **suite)
{
    tls_conn *t = wolfSSL_GetIOReadCtx(ssl);
    const ct_tls_config *cfg;
    size_t klen;

    (void)hint;
    if (!t || !t->cfg->psk)
        return 0;
    cfg = t->cfg;
    klen = ct_secret_len(cfg->psk);
    if (cfg->psk_id_len + 1 > id_max || klen > key_max)
        return 0;
    memcpy(identity, cfg->psk_id, cfg->psk_id_len + 1);
    memcpy(key, ct_secret_data(cfg->psk), klen);
    *suite = TLS_PSK_SUITE;
    return (unsigned int)klen;
}

unsigned int ctp_tls_psk_server_cb(WOLFSSL *ssl, const char *identity, unsigned char *key,
                                  unsigned int key_max, const char **suite)
{
    tls_conn *t = wolfSSL_GetIOReadCtx(ssl);
    const ct_tls_config *cfg;
    char got[TLS_PSK_ID_MAX + 1];
    size_t n, klen;
    int same;

    if (!t || !t->cfg->psk || !identity)
        return 0;
    cfg = t->cfg;
    n = strnlen(identity, TLS_PSK_ID_MAX + 1);
    if (n > TLS_PSK_ID_MAX)
        return 0;
    memset(got, 0, sizeof got);
    memcpy(got, identity, n);
    /* Constant time in the identity's contents. */
    same = ct_memeq(got, cfg->psk_id, sizeof got) & (n == cfg->psk_id_len);
    klen = ct_secret_len(cfg->psk);
    if (!same) {
        t->psk_unknown = true; /* idempotent; only for the error report */
        return 0;
    }
    if (klen > key_max)
        return 0;
    memcpy(key, ct_secret_data(cfg->psk), klen);
    *suite = TLS_PSK_SUITE;
    return (unsigned int)klen;
}
