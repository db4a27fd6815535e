/*
 * tls.c - TLS 1.3 over any ct_conn (wolfSSL), the TLS transport wrapper.
 *
 * Design notes (see also include/cloudtaser/tls.h):
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
 *
 * I/O. Per-object wolfSSL I/O callbacks call ct_conn_send/ct_conn_recv on
 * the inner connection with the time left until the deadline of the current
 * operation (stored in the state before each wolfSSL call; 0 for a
 * non-blocking call). CT_E_AGAIN/CT_E_TIMEOUT -> WANT_READ/WANT_WRITE,
 * CT_E_CLOSED -> CONN_CLOSE, CT_E_RESET -> CONN_RST, other -> GENERAL.
 *
 * Sends. wolfSSL_write encrypts one record (we never give it more than
 * wolfSSL_GetMaxOutputSize bytes) before writing it out. If the inner
 * connection blocks half way, the record is already committed, and wolfSSL
 * requires the next write to repeat the same buffer and length. The state
 * keeps a copy of those bytes (the "journal"), send reports CT_E_AGAIN or
 * CT_E_TIMEOUT with *sent == 0, and the next send must start with the same
 * bytes (the natural retry of a caller that tracks what was sent; anything
 * else fails with CT_E_STATE). The journal is wiped once acknowledged.
 *
 * Half-close (verified on wolfSSL 5.5.4): after wolfSSL_shutdown sent our
 * close_notify, wolfSSL_read keeps delivering the peer's data; after
 * wolfSSL_read reported the peer's close_notify (ZERO_RETURN), wolfSSL_write
 * keeps working. shutdown_write sends close_notify without waiting for the
 * peer's, then half-closes the inner connection if it can.
 *
 * FP_ECC. Debian's wolfSSL keeps a per-thread ECC fixed-point cache (up to
 * about 12 MB) that a thread leaks when it exits without freeing it. The
 * library does not own the caller's threads, and freeing it after every
 * handshake would rebuild the tables each time, so a thread that ran TLS
 * handshakes should call ct_thread_cleanup() (context.h) before it exits.
 */
#include "internal.h"
#include "wolf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TLS_CIPHER_LIST \
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384"
#define TLS_PSK_SUITE "TLS13-CHACHA20-POLY1305-SHA256"
#define TLS_PSK_MIN 16
#define TLS_PSK_MAX 64       /* wolfSSL MAX_PSK_KEY_LEN */
#define TLS_PSK_ID_MAX 127   /* wolfSSL MAX_PSK_ID_LEN is 128 with the NUL */
#define TLS_NAME_MAX 253
#define TLS_PEM_MAX ((size_t)8 << 20)  /* largest certificate/CA input */
#define TLS_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
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

static const ct_conn_ops tls_conn_ops;

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static bool is_pem(const uint8_t *p, size_t n)
{
    return p && n >= 10 && memmem(p, n, "-----BEGIN", 10) != NULL;
}

static int wolf_format(const uint8_t *p, size_t n)
{
    return is_pem(p, n) ? WOLFSSL_FILETYPE_PEM : WOLFSSL_FILETYPE_ASN1;
}

/* Parses an IPv4 or IPv6 literal into buf; returns its length or 0. */
static size_t parse_ip_literal(const char *s, uint8_t buf[16])
{
    if (inet_pton(AF_INET, s, buf) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, buf) == 1)
        return 16;
    return 0;
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static const char *alert_name(int code)
{
    switch (code) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 109: return "missing_extension";
    case 112: return "unrecognized_name";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    default: return "alert";
    }
}

/*
 * Reads one DER header at d[*pos]: tag, content start (*pos on return) and
 * content length. Single-byte tags and definite lengths only (all that an
 * X.509 certificate's outer structure uses). 0 on success.
 */
static int der_header(const uint8_t *d, size_t len, size_t *pos, uint8_t *tag, size_t *clen)
{
    size_t i = *pos, n;
    if (i >= len || len - i < 2)
        return -1;
    *tag = d[i++];
    if ((*tag & 0x1f) == 0x1f)
        return -1;
    n = d[i++];
    if (n & 0x80) {
        size_t k = n & 0x7f;
        if (k == 0 || k > 4 || len - i < k)
            return -1;
        n = 0;
        while (k--)
            n = (n << 8) | d[i++];
    }
    if (n > len - i)
        return -1;
    *pos = i;
    *clen = n;
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
static int cert_spki(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len)
{
    size_t pos = 0, clen, end;
    uint8_t tag;
    int field;

    if (der_header(der, len, &pos, &tag, &clen) || tag != 0x30)
        return -1;
    if (der_header(der, len, &pos, &tag, &clen) || tag != 0x30)
        return -1;
    end = pos + clen;
    for (field = 0; pos < end; field++) {
        size_t start = pos;
        if (der_header(der, end, &pos, &tag, &clen))
            return -1;
        if (field == 0 && tag == 0xa0) { /* explicit version */
            field = -1;
            pos += clen;
            continue;
        }
        if (field == 5) { /* serial, sigAlg, issuer, validity, subject, SPKI */
            if (tag != 0x30)
                return -1;
            *spki = der + start;
            *spki_len = pos - start + clen;
            return 0;
        }
        pos += clen;
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
    size_t pos = 0, clen, end;
    uint8_t tag;

    if (der_header(der, len, &pos, &tag, &clen) || tag != 0x30)
        return false;
    if (der_header(der, len, &pos, &tag, &clen) || tag != 0x30)
        return false;
    end = pos + clen;
    while (pos < end) { /* tbs fields up to [3] extensions */
        if (der_header(der, end, &pos, &tag, &clen))
            return false;
        if (tag == 0xa3)
            break;
        pos += clen;
    }
    if (pos >= end || tag != 0xa3)
        return false;
    end = pos + clen;
    if (der_header(der, end, &pos, &tag, &clen) || tag != 0x30)
        return false;
    end = pos + clen;
    while (pos < end) { /* Extension ::= SEQ { extnID, critical OPT, extnValue } */
        size_t ext_end, vlen;
        bool is_san;
        if (der_header(der, end, &pos, &tag, &clen) || tag != 0x30)
            return false;
        ext_end = pos + clen;
        if (der_header(der, ext_end, &pos, &tag, &clen) || tag != 0x06)
            return false;
        is_san = clen == sizeof san_oid && memcmp(der + pos, san_oid, sizeof san_oid) == 0;
        pos += clen;
        if (der_header(der, ext_end, &pos, &tag, &clen))
            return false;
        if (tag == 0x01) { /* critical */
            pos += clen;
            if (der_header(der, ext_end, &pos, &tag, &clen))
                return false;
        }
        if (tag != 0x04)
            return false;
        if (!is_san) {
            pos = ext_end;
            continue;
        }
        /* GeneralNames */
        if (der_header(der, pos + clen, &pos, &tag, &vlen) || tag != 0x30)
            return false;
        end = pos + vlen;
        while (pos < end) {
            if (der_header(der, end, &pos, &tag, &clen))
                return false;
            if (tag == 0x87 && clen == ip_len && memcmp(der + pos, ip, ip_len) == 0)
                return true;
            pos += clen;
        }
        return false;
    }
    return false;
}

static bool pin_matches(const ct_tls_config *cfg, const uint8_t *der, size_t len)
{
    const uint8_t *spki;
    size_t spki_len;
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    int ok;

    if (!der || cert_spki(der, len, &spki, &spki_len) != 0)
        return false;
    if (wc_Sha256Hash(spki, (word32)spki_len, h) != 0)
        return false;
    ok = ct_memeq(h, cfg->pin, TLS_PIN_LEN);
    ct_secure_wipe(h, sizeof h);
    return ok == 1;
}

/*
 * wolfSSL 5.5.4's wolfSSL_CTX_check_private_key() accepts an ECC key of the
 * right curve that belongs to another certificate (measured), so for ECC and
 * Ed25519 the public key derived from the private key is compared with the
 * certificate's. Other key types rely on wolfSSL's check alone.
 */
static ct_err check_key_matches(const uint8_t *cert, size_t cert_len, const uint8_t *key,
                                size_t key_len, ct_error *err)
{
    uint8_t *cder = NULL, *kder = NULL;
    uint8_t pub[160];
    size_t clen = cert_len, klen = key_len, spki_len = 0;
    const uint8_t *spki = NULL;
    DecodedCert dc;
    bool dc_init = false, match = false, known = true;
    WC_RNG rng;
    bool rng_init = false;
    int r;

    cder = malloc(cert_len);
    kder = malloc(key_len);
    if (!cder || !kder) {
        free(cder);
        free(kder);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    if (is_pem(cert, cert_len)) {
        r = wc_CertPemToDer(cert, (int)cert_len, cder, (int)cert_len, CERT_TYPE);
        clen = r > 0 ? (size_t)r : 0;
    } else {
        memcpy(cder, cert, cert_len);
    }
    if (is_pem(key, key_len)) {
        r = wc_KeyPemToDer(key, (int)key_len, kder, (int)key_len, NULL);
        klen = r > 0 ? (size_t)r : 0;
    } else {
        memcpy(kder, key, key_len);
    }
    if (clen == 0 || klen == 0 || cert_spki(cder, clen, &spki, &spki_len) != 0)
        goto out;
    wc_InitDecodedCert(&dc, cder, (word32)clen, NULL);
    dc_init = true;
    if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0)
        goto out;
    if (dc.keyOID == ECDSAk) {
        ecc_key k;
        word32 idx = 0;
        if (wc_GetPkcs8TraditionalOffset(kder, &idx, (word32)klen) < 0)
            idx = 0;
        if (wc_InitRng(&rng) != 0)
            goto out;
        rng_init = true;
        if (wc_ecc_init(&k) != 0)
            goto out;
        r = wc_EccPrivateKeyDecode(kder, &idx, &k, (word32)klen);
        if (r == 0) /* recompute: never trust a public key stored with the private */
            r = wc_ecc_make_pub_ex(&k, NULL, &rng);
        if (r == 0)
            r = wc_EccPublicKeyToDer(&k, pub, sizeof pub, 1);
        wc_ecc_free(&k);
        match = r > 0 && (size_t)r == spki_len && memcmp(pub, spki, spki_len) == 0;
    } else if (dc.keyOID == ED25519k) {
        ed25519_key k;
        word32 idx = 0;
        if (wc_ed25519_init(&k) != 0)
            goto out;
        r = wc_Ed25519PrivateKeyDecode(kder, &idx, &k, (word32)klen);
        if (r == 0)
            r = wc_ed25519_make_public(&k, pub, ED25519_PUB_KEY_SIZE);
        wc_ed25519_free(&k);
        match = r == 0 && dc.publicKey && dc.pubKeySize == ED25519_PUB_KEY_SIZE &&
                memcmp(pub, dc.publicKey, ED25519_PUB_KEY_SIZE) == 0;
    } else {
        known = false;
    }
out:
    if (rng_init)
        wc_FreeRng(&rng);
    if (dc_init)
        wc_FreeDecodedCert(&dc);
    ct_secure_wipe(kder, key_len);
    free(kder);
    free(cder);
    ct_secure_wipe(pub, sizeof pub);
    if (known && !match)
        return ctp_err(err, CT_E_CERT, 0, "the private key does not match the certificate");
    return CT_OK;
}

static ct_err read_file_bounded(const char *path, uint8_t **out, size_t *out_len, ct_error *err)
{
    int fd;
    struct stat st;
    uint8_t *buf = NULL;
    size_t done = 0;
    ct_err rc = CT_OK;

    *out = NULL;
    *out_len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ctp_err(err, errno == ENOENT ? CT_E_NOTFOUND : ctp_errno_to_err(errno), errno,
                       "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ctp_err(err, CT_E_INVALID, errno, "%s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > TLS_PEM_MAX) {
        rc = ctp_err(err, CT_E_TOOBIG, 0, "%s is larger than %zu bytes", path, TLS_PEM_MAX);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory reading %s", path);
        goto out;
    }
    while (done < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + done, (size_t)st.st_size - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ctp_err(err, CT_E_IO, errno, "reading %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *out = buf;
    *out_len = done;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ */
/* wolfSSL callbacks                                                    */

static int io_timeout(const tls_conn *t)
{
    return t->nonblock ? 0 : ctp_remaining(t->deadline);
}

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *vctx)
{
    tls_conn *t = vctx;
    size_t got = 0;
    ct_err rc;

    (void)ssl;
    /* Confirmation wait: stop reading once the ticket has been processed. */
    if (t->confirming && t->ticket_seen)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    if (sz <= 0)
        return WOLFSSL_CBIO_ERR_GENERAL;
    rc = ct_conn_recv(t->inner, buf, (size_t)sz, &got, io_timeout(t), &t->io_err);
    switch (rc) {
    case CT_OK:
        return (int)got;
    case CT_E_AGAIN:
    case CT_E_TIMEOUT:
        t->io_rc = rc;
        return WOLFSSL_CBIO_ERR_WANT_READ;
    case CT_E_CLOSED:
        t->inner_eof = true;
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    case CT_E_RESET:
        t->inner_reset = true;
        t->io_rc = rc;
        return WOLFSSL_CBIO_ERR_CONN_RST;
    default:
        t->io_rc = rc;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *vctx)
{
    tls_conn *t = vctx;
    size_t sent = 0;
    ct_err rc;

    (void)ssl;
    if (sz <= 0)
        return WOLFSSL_CBIO_ERR_GENERAL;
    if (t->write_broken)
        return sz;
    rc = ct_conn_send(t->inner, buf, (size_t)sz, &sent, io_timeout(t), &t->io_err);
    switch (rc) {
    case CT_OK:
        return (int)sent;
    case CT_E_AGAIN:
    case CT_E_TIMEOUT:
        t->io_rc = rc;
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    case CT_E_CLOSED:
    case CT_E_RESET:
        /*
         * The peer has gone away. Telling wolfSSL would put the session in
         * an error state that also refuses to read, yet what the peer sent
         * before leaving may still be buffered (TCP semantics: writes fail,
         * buffered data stays readable). So our direction is marked dead
         * here, the bytes are dropped, and tls_send reports CT_E_RESET.
         */
        t->write_broken = true;
        t->werr = t->io_err;
        return sz;
    default:
        t->io_rc = rc;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
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
 * Called for every certificate the peer sends (WOLFSSL_ALWAYS_VERIFY_CB,
 * WOLFSSL_VERIFY_CB_ALL_CERTS), leaf at depth 0. Returns 1 to accept.
 */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
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
            !pin_matches(cfg, store->certs[0].buffer, store->certs[0].length)) {
            t->pin_mismatch = true;
            return 0;
        }
    }
    return 1;
}

/* Client: the server sent a CertificateRequest. */
static int cert_setup_cb(WOLFSSL *ssl, void *arg)
{
    tls_conn *t = wolfSSL_GetIOReadCtx(ssl);
    (void)arg;
    if (t)
        t->cert_requested = true;
    return 1;
}

/* Client without a certificate: the server sent a CertificateRequest. */
static int no_client_cert_cb(WOLFSSL *ssl, WOLFSSL_X509 **x509, WOLFSSL_EVP_PKEY **pkey)
{
    (void)x509;
    (void)pkey;
    cert_setup_cb(ssl, NULL);
    return 0; /* no certificate to offer */
}

/* Client: a NewSessionTicket was processed (our confirmation). */
static int ticket_seen_cb(WOLFSSL *ssl, const unsigned char *ticket, int len, void *ctx)
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
static int ticket_enc_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
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

static unsigned int psk_client_cb(WOLFSSL *ssl, const char *hint, char *identity,
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

static unsigned int psk_server_cb(WOLFSSL *ssl, const char *identity, unsigned char *key,
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

/* ------------------------------------------------------------------ */
/* Error mapping                                                        */

static bool is_want(int e)
{
    return e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE;
}

/* Starts an operation: deadline and non-blocking flag for the callbacks. */
static void op_begin(tls_conn *t, int timeout_ms)
{
    t->nonblock = timeout_ms == 0;
    t->deadline = ctp_deadline(t->ctx, timeout_ms);
    t->io_rc = CT_OK;
    t->io_err.code = CT_OK;
    t->io_err.os_error = 0;
    t->io_err.message[0] = '\0';
}

/* After WANT_*: may the operation go on (time left, blocking call)? */
static bool may_retry(const tls_conn *t)
{
    return !t->nonblock && ctp_remaining(t->deadline) > 0;
}

static ct_err want_error(const tls_conn *t, const char *what, ct_error *err)
{
    if (t->nonblock)
        return ctp_err(err, CT_E_AGAIN, 0, "%s would block", what);
    return ctp_err(err, CT_E_TIMEOUT, 0, "%s timed out", what);
}

static ct_err map_wolf_error(int e)
{
    switch (e) {
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
    case ASN_AFTER_DATE_E:
    case ASN_BEFORE_DATE_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_PATHLEN_SIZE_E:
    case ASN_PATHLEN_INV_E:
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
    case EXTKEYUSE_AUTH_E:
    case KEYUSE_SIGNATURE_E:
    case NOT_CA_ERROR:
    case VERIFY_CERT_ERROR:
        return CT_E_CERT;
    case NO_PEER_CERT:
    case BAD_BINDER:
    case PSK_KEY_ERROR:
        return CT_E_AUTH;
    case SOCKET_PEER_CLOSED_E:
        return CT_E_CLOSED;
    default:
        return CT_E_TLS;
    }
}

/*
 * Maps the failure of a wolfSSL call (return value ret) to a ct_err with a
 * readable message; `handshake` selects how an inner end of stream reads.
 */
static ct_err tls_error(tls_conn *t, int ret, const char *what, bool handshake, ct_error *err)
{
    int e = wolfSSL_get_error(t->ssl, ret);
    char wmsg[WOLFSSL_MAX_ERROR_SZ];

    if (is_want(e))
        return want_error(t, what, err);
    if (t->pin_mismatch)
        return ctp_err(err, CT_E_CERT, e,
                       "%s: the server's public key does not match the pinned SHA-256", what);
    if (t->ip_mismatch)
        return ctp_err(err, CT_E_CERT, DOMAIN_NAME_MISMATCH,
                       "%s: the server certificate has no IP address SAN %s", what,
                       t->cfg->server_name);
    if (t->psk_saw_cert)
        return ctp_err(err, CT_E_AUTH, e,
                       "%s: the server did not accept our PSK and presented a certificate; "
                       "a PSK configuration never falls back to certificates",
                       what);
    if (e == WOLFSSL_ERROR_ZERO_RETURN)
        return ctp_err(err, CT_E_CLOSED, 0, "%s: the peer closed the TLS session", what);
    if (t->inner_reset)
        return ctp_err(err, CT_E_RESET, t->io_err.os_error, "%s: connection reset: %s", what,
                       t->io_err.message);
    if (t->inner_eof && handshake && t->cfg->psk && t->cfg->role == CT_TLS_CLIENT)
        return ctp_err(err, CT_E_CLOSED, 0,
                       "%s: the server closed the connection (with a PSK: most likely a wrong "
                       "key or an unknown identity; servers send no alert for those)",
                       what);
    if (t->inner_eof)
        return handshake ? ctp_err(err, CT_E_CLOSED, 0,
                                   "%s: the peer closed the connection (wolfSSL %d)", what, e)
                         : ctp_err(err, CT_E_RESET, 0,
                                   "%s: the peer closed the connection without TLS "
                                   "close_notify (possible truncation)",
                                   what);
    if (t->io_rc != CT_OK)
        return ctp_err(err, t->io_rc, t->io_err.os_error, "%s: %s", what, t->io_err.message);
    wolfSSL_ERR_error_string_n((unsigned long)e, wmsg, sizeof wmsg);
    if (e == FATAL_ERROR) {
        WOLFSSL_ALERT_HISTORY h;
        int code = -1;
        if (wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS)
            code = h.last_rx.code;
        switch (code) {
        case 42: case 43: case 44: case 45: case 46: case 48: case 49: case 116:
            return ctp_err(err, CT_E_AUTH, e, "%s: the peer rejected our certificate "
                                              "(TLS alert %d %s)",
                           what, code, alert_name(code));
        case 51:
            return ctp_err(err, CT_E_AUTH, e, "%s: the peer failed to authenticate us "
                                              "(TLS alert %d %s)",
                           what, code, alert_name(code));
        default:
            return ctp_err(err, CT_E_TLS, e, "%s: the peer sent TLS alert %d %s", what, code,
                           alert_name(code));
        }
    }
    if (t->psk_unknown && map_wolf_error(e) == CT_E_TLS) /* wolfSSL says BUFFER_ERROR */
        return ctp_err(err, CT_E_AUTH, e, "%s: the client offered an unknown PSK identity",
                       what);
    return ctp_err(err, map_wolf_error(e), e, "%s: %s (wolfSSL %d)", what, wmsg, e);
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */

static ct_err load_ca(ct_tls_config *cfg, const uint8_t *p, size_t n, const char *what,
                      ct_error *err)
{
    int r;
    if (n == 0 || n > TLS_PEM_MAX || n > INT_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "%s: empty or too large", what);
    r = wolfSSL_CTX_load_verify_buffer(cfg->wctx, p, (long)n, wolf_format(p, n));
    if (r != WOLFSSL_SUCCESS)
        return ctp_err(err, CT_E_CERT, r, "%s: no usable CA certificate (wolfSSL %d)", what, r);
    cfg->has_ca = true;
    return CT_OK;
}

static ct_err load_system_ca(ct_tls_config *cfg, ct_error *err)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    ct_err rc;

    if (wolfSSL_CTX_load_system_CA_certs(cfg->wctx) == WOLFSSL_SUCCESS) {
        cfg->has_ca = true;
        return CT_OK;
    }
    rc = read_file_bounded(TLS_SYSTEM_CA_BUNDLE, &buf, &n, err);
    if (rc == CT_OK)
        rc = load_ca(cfg, buf, n, "system CA bundle " TLS_SYSTEM_CA_BUNDLE, err);
    free(buf);
    return rc;
}

static ct_err check_options(const ct_tls_options *o, ct_error *err)
{
    bool server = o->role == CT_TLS_SERVER;
    bool any_ca = o->ca || o->ca_file || (o->flags & CT_TLS_F_SYSTEM_CA);

    if (o->role != CT_TLS_CLIENT && o->role != CT_TLS_SERVER)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_options.role must be client or server");
    if (o->flags & ~(CT_TLS_F_ANONYMOUS_CLIENTS | CT_TLS_F_SYSTEM_CA))
        return ctp_err(err, CT_E_INVALID, 0, "unknown CT_TLS_F_* flags 0x%x",
                       (unsigned)o->flags);
    if (!server && (o->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
        return ctp_err(err, CT_E_INVALID, 0, "CT_TLS_F_ANONYMOUS_CLIENTS is a server option");
    if (server && (o->flags & CT_TLS_F_SYSTEM_CA))
        return ctp_err(err, CT_E_INVALID, 0, "CT_TLS_F_SYSTEM_CA is a client option");
    if (server && (o->pin_sha256 || o->server_name))
        return ctp_err(err, CT_E_INVALID, 0, "pin_sha256 and server_name are client options");
    if ((o->cert != NULL) != (o->key != NULL) || (o->cert && o->cert_len == 0))
        return ctp_err(err, CT_E_INVALID, 0, "cert and key must be given together");
    if ((o->ca != NULL) != (o->ca_len != 0))
        return ctp_err(err, CT_E_INVALID, 0, "ca and ca_len must be given together");
    if (o->handshake_timeout_ms < 0)
        return ctp_err(err, CT_E_INVALID, 0, "handshake_timeout_ms must not be negative");
    if (o->server_name) {
        size_t n = strnlen(o->server_name, TLS_NAME_MAX + 1);
        if (n == 0 || n > TLS_NAME_MAX || !printable(o->server_name, n))
            return ctp_err(err, CT_E_INVALID, 0, "server_name must be 1..%d printable characters",
                           TLS_NAME_MAX);
    }
    if (o->psk || o->psk_identity) {
        size_t n, klen;
        if (!o->psk || !o->psk_identity)
            return ctp_err(err, CT_E_INVALID, 0, "psk and psk_identity must be given together");
        n = strnlen(o->psk_identity, TLS_PSK_ID_MAX + 1);
        if (n == 0 || n > TLS_PSK_ID_MAX || !printable(o->psk_identity, n))
            return ctp_err(err, CT_E_INVALID, 0,
                           "psk_identity must be 1..%d printable ASCII characters",
                           TLS_PSK_ID_MAX);
        klen = ct_secret_len(o->psk);
        if (klen < TLS_PSK_MIN || klen > TLS_PSK_MAX)
            return ctp_err(err, CT_E_INVALID, 0, "the PSK must be %d..%d bytes long",
                           TLS_PSK_MIN, TLS_PSK_MAX);
        if (o->cert || any_ca || o->pin_sha256 || (o->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
            return ctp_err(err, CT_E_INVALID, 0,
                           "a PSK configuration must not carry certificates, CAs, a pin or "
                           "CT_TLS_F_ANONYMOUS_CLIENTS: it never falls back to certificates");
        return CT_OK;
    }
    if (server) {
        if (!o->cert)
            return ctp_err(err, CT_E_INVALID, 0,
                           "a TLS server needs a certificate and key (or a PSK)");
        if (!any_ca && !(o->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
            return ctp_err(err, CT_E_INVALID, 0,
                           "a TLS server without client CA must set CT_TLS_F_ANONYMOUS_CLIENTS "
                           "to accept unauthenticated clients");
        return CT_OK;
    }
    if (!any_ca && !o->pin_sha256)
        return ctp_err(err, CT_E_INVALID, 0,
                       "a TLS client needs a way to verify the server: ca, ca_file, "
                       "CT_TLS_F_SYSTEM_CA, pin_sha256 or a PSK");
    if (any_ca && !o->server_name)
        return ctp_err(err, CT_E_INVALID, 0,
                       "CA-based server verification needs server_name (the DNS name or IP "
                       "address the certificate must carry)");
    return CT_OK;
}

void ct_tls_config_free(ct_tls_config *cfg)
{
    if (!cfg)
        return;
    if (cfg->wctx)
        wolfSSL_CTX_free(cfg->wctx);
    ct_secret_free(cfg->psk);
    free(cfg->server_name);
    ct_secure_wipe(cfg, sizeof *cfg);
    free(cfg);
}

ct_err ct_tls_config_new(ct_ctx *ctx, const ct_tls_options *opts, ct_tls_config **out,
                         ct_error *err)
{
    ct_tls_config *cfg = NULL;
    uint8_t *file = NULL;
    size_t file_len = 0;
    ct_err rc;
    int r, mode;
    int groups[2] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};

    if (!out || !opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_config_new: NULL argument");
    *out = NULL;
    if (opts->version != CT_TLS_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_tls_options version %u is not supported",
                       (unsigned)opts->version);
    if ((rc = check_options(opts, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");

    cfg = ctp_calloc(1, sizeof *cfg);
    if (!cfg)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    cfg->ctx = ctx;
    cfg->role = opts->role;
    cfg->flags = opts->flags;
    cfg->handshake_timeout_ms = opts->handshake_timeout_ms;
    cfg->wctx = wolfSSL_CTX_new(opts->role == CT_TLS_CLIENT ? wolfTLSv1_3_client_method()
                                                             : wolfTLSv1_3_server_method());
    if (!cfg->wctx) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "wolfSSL_CTX_new failed");
        goto out;
    }
    if (wolfSSL_CTX_set_cipher_list(cfg->wctx, TLS_CIPHER_LIST) != WOLFSSL_SUCCESS) {
        rc = ctp_err(err, CT_E_TLS, 0, "cannot set the TLS 1.3 cipher suites");
        goto out;
    }
    if ((r = wolfSSL_CTX_set_groups(cfg->wctx, groups, 2)) != WOLFSSL_SUCCESS) {
        rc = ctp_err(err, CT_E_TLS, r, "cannot set the key exchange groups (wolfSSL %d)", r);
        goto out;
    }
    /* No session cache: sessions are never resumed (see ticket_enc_cb). */
    wolfSSL_CTX_set_session_cache_mode(cfg->wctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_SetIORecv(cfg->wctx, io_recv);
    wolfSSL_CTX_SetIOSend(cfg->wctx, io_send);

    if (opts->cert) {
        const uint8_t *key = ct_secret_data(opts->key);
        size_t key_len = ct_secret_len(opts->key);
        if (opts->cert_len > TLS_PEM_MAX || !key || key_len == 0 || key_len > TLS_PEM_MAX) {
            rc = ctp_err(err, CT_E_INVALID, 0, "certificate or key empty or too large");
            goto out;
        }
        r = wolfSSL_CTX_use_certificate_chain_buffer_format(
            cfg->wctx, opts->cert, (long)opts->cert_len, wolf_format(opts->cert, opts->cert_len));
        if (r != WOLFSSL_SUCCESS) {
            rc = ctp_err(err, CT_E_CERT, r, "cannot parse the certificate (wolfSSL %d)", r);
            goto out;
        }
        /* wolfSSL copies (and on free zeroes) the key; no copy of ours to wipe. */
        r = wolfSSL_CTX_use_PrivateKey_buffer(cfg->wctx, key, (long)key_len,
                                              wolf_format(key, key_len));
        if (r != WOLFSSL_SUCCESS) {
            rc = ctp_err(err, CT_E_CERT, r, "cannot parse the private key (wolfSSL %d)", r);
            goto out;
        }
        r = wolfSSL_CTX_check_private_key(cfg->wctx);
        if (r != WOLFSSL_SUCCESS) {
            rc = ctp_err(err, CT_E_CERT, r, "the private key does not match the certificate");
            goto out;
        }
        if ((rc = check_key_matches(opts->cert, opts->cert_len, key, key_len, err)) != CT_OK)
            goto out;
    }
    if (opts->ca && (rc = load_ca(cfg, opts->ca, opts->ca_len, "ca", err)) != CT_OK)
        goto out;
    if (opts->ca_file) {
        if ((rc = read_file_bounded(opts->ca_file, &file, &file_len, err)) != CT_OK)
            goto out;
        if ((rc = load_ca(cfg, file, file_len, "ca_file", err)) != CT_OK)
            goto out;
    }
    if ((opts->flags & CT_TLS_F_SYSTEM_CA) && (rc = load_system_ca(cfg, err)) != CT_OK)
        goto out;
    if (opts->pin_sha256) {
        memcpy(cfg->pin, opts->pin_sha256, TLS_PIN_LEN);
        cfg->has_pin = true;
    }
    if (opts->server_name) {
        cfg->server_name = ctp_strdup(opts->server_name);
        if (!cfg->server_name) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        cfg->ip_len = parse_ip_literal(cfg->server_name, cfg->ip);
        cfg->server_name_ip = cfg->ip_len > 0;
    }
    if (opts->psk) {
        if ((rc = ct_secret_dup(opts->psk, &cfg->psk, err)) != CT_OK)
            goto out;
        cfg->psk_id_len = strlen(opts->psk_identity);
        memcpy(cfg->psk_id, opts->psk_identity, cfg->psk_id_len);
        if (opts->role == CT_TLS_CLIENT)
            wolfSSL_CTX_set_psk_client_tls13_callback(cfg->wctx, psk_client_cb);
        else
            wolfSSL_CTX_set_psk_server_tls13_callback(cfg->wctx, psk_server_cb);
    }

    /* Peer verification, explicit in every configuration. */
    if (opts->role == CT_TLS_CLIENT) {
        mode = WOLFSSL_VERIFY_PEER;
        /*
         * Learn whether the server asks for a certificate. wolfSSL 5.5.4
         * fails a certificate-less client with BUFFER_ERROR once a cert
         * setup callback is installed, so such clients get the
         * client_cert_cb instead, which it calls only for them.
         */
        if (opts->cert)
            wolfSSL_CTX_set_cert_cb(cfg->wctx, cert_setup_cb, NULL);
        else
            wolfSSL_CTX_set_client_cert_cb(cfg->wctx, no_client_cert_cb);
    } else if (cfg->psk) {
        mode = WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    } else if (cfg->has_ca) {
        mode = WOLFSSL_VERIFY_PEER;
        if (!(opts->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
            mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        cfg->client_auth = true;
    } else {
        mode = WOLFSSL_VERIFY_NONE; /* CT_TLS_F_ANONYMOUS_CLIENTS, checked above */
    }
    wolfSSL_CTX_set_verify(cfg->wctx, mode, verify_cb);

    if (opts->role == CT_TLS_SERVER) {
        if (cfg->client_auth) {
            /* The ticket is the client's confirmation (see the top of this file). */
            if (wolfSSL_CTX_set_TicketEncCb(cfg->wctx, ticket_enc_cb) != WOLFSSL_SUCCESS) {
                rc = ctp_err(err, CT_E_TLS, 0, "cannot install the ticket callback");
                goto out;
            }
        } else {
            wolfSSL_CTX_no_ticket_TLSv13(cfg->wctx);
        }
    }
    *out = cfg;
    cfg = NULL;
    rc = CT_OK;
out:
    free(file);
    ct_tls_config_free(cfg);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Connection                                                           */

static void tls_conn_destroy(tls_conn *t)
{
    if (!t)
        return;
    if (t->ssl)
        wolfSSL_free(t->ssl); /* zeroes its keys */
    ct_conn_free(t->inner);
    if (t->jbuf) {
        ct_secure_wipe(t->jbuf, t->jcap);
        free(t->jbuf);
    }
    ct_secure_wipe(t, sizeof *t);
    free(t);
}

static tls_conn *tls_of(const ct_conn *c)
{
    if (!c || ctp_conn_ops(c)->recv != tls_conn_ops.recv)
        return NULL;
    return ctp_conn_state(c);
}

static ct_err fail(tls_conn *t, ct_err rc)
{
    if (rc != CT_E_AGAIN && rc != CT_E_TIMEOUT && t->fail_rc == CT_OK)
        t->fail_rc = rc;
    return rc;
}

static ct_err failed_error(const tls_conn *t, ct_error *err)
{
    return ctp_err(err, t->fail_rc, 0, "the TLS session failed earlier (%s)",
                   ct_err_name(t->fail_rc));
}

/* Verifies the pin once more on the finished session (defence in depth). */
static ct_err post_check_pin(tls_conn *t, ct_error *err)
{
    WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(t->ssl);
    const uint8_t *der = NULL;
    int len = 0;

    if (chain && wolfSSL_get_chain_count(chain) > 0) {
        der = wolfSSL_get_chain_cert(chain, 0);
        len = wolfSSL_get_chain_length(chain, 0);
    }
    if (!der || len <= 0 || !pin_matches(t->cfg, der, (size_t)len))
        return ctp_err(err, CT_E_CERT, 0,
                       "TLS handshake: the server's public key does not match the pinned SHA-256");
    return CT_OK;
}

static ct_err handshake(tls_conn *t, ct_error *err)
{
    const ct_tls_config *cfg = t->cfg;
    bool client = cfg->role == CT_TLS_CLIENT;
    int r;

    for (;;) {
        r = client ? wolfSSL_connect(t->ssl) : wolfSSL_accept(t->ssl);
        if (r == WOLFSSL_SUCCESS)
            break;
        if (is_want(wolfSSL_get_error(t->ssl, r)) && may_retry(t))
            continue;
        return tls_error(t, r, "TLS handshake", true, err);
    }
    if (cfg->psk && wolfSSL_get_curve_name(t->ssl) == NULL)
        return ctp_err(err, CT_E_AUTH, 0,
                       "TLS handshake: the PSK handshake used no (EC)DHE key share (psk_ke); "
                       "forward secrecy is required");
    if (client && cfg->has_pin) {
        ct_err rc = post_check_pin(t, err);
        if (rc != CT_OK)
            return rc;
    }
    if (client && t->cert_requested && !cfg->psk) {
        /* Wait for the server's verdict on our certificate (its ticket). */
        t->confirming = true;
        for (;;) {
            uint8_t b;
            r = wolfSSL_peek(t->ssl, &b, 1);
            if (r > 0 || t->ticket_seen)
                break;
            if (is_want(wolfSSL_get_error(t->ssl, r)) && may_retry(t))
                continue;
            t->confirming = false;
            if (is_want(wolfSSL_get_error(t->ssl, r)))
                return ctp_err(err, CT_E_TIMEOUT, 0,
                               "TLS handshake: the server did not confirm our client "
                               "certificate (no NewSessionTicket) before the deadline");
            if (t->inner_eof && !t->inner_reset)
                return ctp_err(err, CT_E_CLOSED, 0,
                               "TLS handshake: the server closed the connection instead of "
                               "accepting our client certificate");
            return tls_error(t, r, "TLS handshake (server's verdict on our certificate)",
                             true, err);
        }
        t->confirming = false;
    }
    return CT_OK;
}

ct_err ct_tls_wrap(ct_tls_config *cfg, ct_conn *inner, int timeout_ms, ct_conn **out,
                   ct_error *err)
{
    tls_conn *t = NULL;
    ct_error local;
    ct_err rc;
    int r;

    if (!err)
        err = &local; /* for the log line below */
    if (out)
        *out = NULL;
    if (!cfg || !inner || !out) {
        ct_conn_free(inner);
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_wrap: NULL argument");
    }
    t = ctp_calloc(1, sizeof *t);
    if (!t) {
        ct_conn_free(inner);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    t->cfg = cfg;
    t->ctx = cfg->ctx;
    t->inner = inner;
    t->ssl = wolfSSL_new(cfg->wctx);
    if (!t->ssl) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "wolfSSL_new failed");
        goto out;
    }
    wolfSSL_SSLSetIORecv(t->ssl, io_recv);
    wolfSSL_SSLSetIOSend(t->ssl, io_send);
    wolfSSL_SetIOReadCtx(t->ssl, t);
    wolfSSL_SetIOWriteCtx(t->ssl, t);
    wolfSSL_SetCertCbCtx(t->ssl, t);
    if (cfg->role == CT_TLS_CLIENT) {
        if (cfg->server_name && !cfg->server_name_ip) {
            r = wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, cfg->server_name,
                               (unsigned short)strlen(cfg->server_name));
            if (r != WOLFSSL_SUCCESS) {
                rc = ctp_err(err, CT_E_TLS, r, "cannot set SNI (wolfSSL %d)", r);
                goto out;
            }
        }
        if (cfg->has_ca && !cfg->server_name_ip) { /* IP literals: verify_cb */
            r = wolfSSL_check_domain_name(t->ssl, cfg->server_name);
            if (r != WOLFSSL_SUCCESS) {
                rc = ctp_err(err, CT_E_TLS, r, "cannot set the expected server name");
                goto out;
            }
        }
        wolfSSL_set_SessionTicket_cb(t->ssl, ticket_seen_cb, t);
    }
    if (timeout_ms <= 0)
        timeout_ms = cfg->handshake_timeout_ms > 0 ? cfg->handshake_timeout_ms : -1;
    op_begin(t, ctp_timeout(cfg->ctx, timeout_ms));
    t->nonblock = false;
    if ((rc = handshake(t, err)) != CT_OK) {
        ctp_log(cfg->ctx, CT_LOG_INFO, "tls.handshake", "TLS %s handshake failed: %s (%s)",
                cfg->role == CT_TLS_CLIENT ? "client" : "server", err->message,
                ct_err_name(rc));
        goto out;
    }
    {
        const char *group = wolfSSL_get_curve_name(t->ssl);
        ctp_log(cfg->ctx, CT_LOG_DEBUG, "tls.handshake", "TLS %s handshake done: %s, %s, %s",
                cfg->role == CT_TLS_CLIENT ? "client" : "server",
                wolfSSL_get_cipher_name(t->ssl), group ? group : "no key share",
                cfg->psk ? "PSK with (EC)DHE" : "certificates");
    }
    rc = ct_conn_new(cfg->ctx, &tls_conn_ops, t, NULL, out, err);
    if (rc == CT_OK)
        t = NULL;
out:
    tls_conn_destroy(t); /* frees inner too: the peer sees the close at once */
    return rc;
}

/* Retries the committed record until it is fully written (or would block). */
static ct_err journal_flush(tls_conn *t, const char *what, ct_error *err)
{
    while (t->jlen && !t->jflushed) {
        int r = wolfSSL_write(t->ssl, t->jbuf, (int)t->jlen);
        if (r == (int)t->jlen) {
            t->jflushed = true;
            break;
        }
        if (is_want(wolfSSL_get_error(t->ssl, r))) {
            if (may_retry(t))
                continue;
            return want_error(t, what, err);
        }
        return fail(t, tls_error(t, r, what, false, err));
    }
    return CT_OK;
}

static void journal_clear(tls_conn *t)
{
    ct_secure_wipe(t->jbuf, t->jlen);
    t->jlen = t->jacked = 0;
    t->jflushed = false;
}

static ct_err tls_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                       ct_error *err, void *user)
{
    tls_conn *t = state;
    size_t m;
    int max, r;
    ct_err rc;

    (void)user;
    *sent = 0;
    if (t->fail_rc != CT_OK)
        return failed_error(t, err);
    if (t->wshut)
        return ctp_err(err, CT_E_STATE, 0, "TLS send after shutdown_write");
    op_begin(t, timeout_ms);
    for (;;) {
        if (t->write_broken)
            return ctp_err(err, CT_E_RESET, t->werr.os_error,
                           "TLS send: the peer is gone (%s)", t->werr.message);
        if ((rc = journal_flush(t, "TLS send", err)) != CT_OK)
            return rc;
        if (t->write_broken)
            continue;
        if (t->jlen) {
            /* The caller resumes after CT_E_AGAIN/TIMEOUT: acknowledge. */
            size_t k = t->jlen - t->jacked;
            if (k > n)
                k = n;
            if (memcmp(p, t->jbuf + t->jacked, k) != 0)
                return fail(t, ctp_err(err, CT_E_STATE, 0,
                                       "TLS send: after CT_E_AGAIN/CT_E_TIMEOUT the next send "
                                       "must repeat the bytes not yet sent"));
            t->jacked += k;
            if (t->jacked == t->jlen)
                journal_clear(t);
            *sent = k;
            return CT_OK;
        }
        max = wolfSSL_GetMaxOutputSize(t->ssl);
        if (max <= 0)
            return fail(t, ctp_err(err, CT_E_TLS, max, "TLS send: no record size"));
        if (!t->jbuf || t->jcap < (size_t)max) {
            uint8_t *nb = malloc((size_t)max);
            if (!nb)
                return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            if (t->jbuf) {
                ct_secure_wipe(t->jbuf, t->jcap);
                free(t->jbuf);
            }
            t->jbuf = nb;
            t->jcap = (size_t)max;
        }
        m = n < (size_t)max ? n : (size_t)max;
        r = wolfSSL_write(t->ssl, p, (int)m);
        if (r > 0 && !t->write_broken) {
            *sent = (size_t)r;
            return CT_OK;
        }
        if (r > 0)
            continue; /* reports write_broken */
        if (!is_want(wolfSSL_get_error(t->ssl, r)))
            return fail(t, tls_error(t, r, "TLS send", false, err));
        /* The record is committed; wolfSSL wants the same bytes again. */
        memcpy(t->jbuf, p, m);
        t->jlen = m;
        t->jacked = 0;
        t->jflushed = false;
    }
}

static ct_err tls_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                       ct_error *err, void *user)
{
    tls_conn *t = state;
    int n = cap > INT_MAX ? INT_MAX : (int)cap;
    int r;

    (void)user;
    *got = 0;
    if (t->fail_rc != CT_OK)
        return failed_error(t, err);
    if (t->peer_closed)
        return ctp_err(err, CT_E_CLOSED, 0, "the peer closed the TLS session (close_notify)");
    op_begin(t, timeout_ms);
    if (t->jlen && !t->jflushed) {
        /* Push a pending record along, without waiting for it. */
        bool nb = t->nonblock;
        ct_err rc;
        t->nonblock = true;
        rc = journal_flush(t, "TLS send", err);
        t->nonblock = nb;
        if (rc != CT_OK && rc != CT_E_AGAIN)
            return rc;
        t->io_rc = CT_OK;
    }
    for (;;) {
        int e;
        r = wolfSSL_read(t->ssl, p, n);
        if (r > 0) {
            *got = (size_t)r;
            return CT_OK;
        }
        e = wolfSSL_get_error(t->ssl, r);
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            t->peer_closed = true;
            return ctp_err(err, CT_E_CLOSED, 0, "the peer closed the TLS session (close_notify)");
        }
        if (is_want(e)) {
            if (may_retry(t))
                continue;
            return want_error(t, "TLS receive", err);
        }
        return fail(t, tls_error(t, r, "TLS receive", false, err));
    }
}

static ct_err tls_shutdown_write(void *state, int timeout_ms, ct_error *err, void *user)
{
    tls_conn *t = state;
    ct_err rc;
    int r;

    (void)user;
    if (t->fail_rc != CT_OK)
        return failed_error(t, err);
    if (t->wshut && t->inner_wshut)
        return CT_OK;
    op_begin(t, timeout_ms);
    if (!t->wshut) {
        if ((rc = journal_flush(t, "TLS shutdown", err)) != CT_OK)
            return rc;
        for (;;) {
            /* Sends close_notify; does not wait for the peer's. */
            r = wolfSSL_shutdown(t->ssl);
            if (r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE)
                break;
            if (is_want(wolfSSL_get_error(t->ssl, r))) {
                if (may_retry(t))
                    continue;
                return want_error(t, "TLS shutdown", err);
            }
            return fail(t, tls_error(t, r, "TLS shutdown", false, err));
        }
        t->wshut = true;
    }
    if (t->write_broken) { /* the peer is gone: nothing left to half-close */
        t->inner_wshut = true;
        return CT_OK;
    }
    /*
     * Then half-close the inner connection where it can. Our close_notify
     * is already out, so a peer that has gone away meanwhile (reset or
     * closed) or an inner connection without half-close is not an error.
     */
    rc = ct_conn_shutdown_write(t->inner, t->nonblock ? 0 : ctp_remaining(t->deadline), err);
    if (rc == CT_E_UNSUPPORTED || rc == CT_E_RESET || rc == CT_E_CLOSED)
        rc = CT_OK;
    if (rc == CT_OK)
        t->inner_wshut = true;
    return rc;
}

static void tls_close(void *state, void *user)
{
    (void)user;
    tls_conn_destroy(state);
}

static int tls_get_fd(void *state, void *user)
{
    tls_conn *t = state;
    (void)user;
    return ct_conn_get_fd(t->inner);
}

/*
 * Decrypted bytes ready; if there are none but the inner connection holds
 * buffered bytes, 1 (a recv may progress without the fd becoming readable).
 */
static size_t tls_pending(void *state, void *user)
{
    tls_conn *t = state;
    int n;
    (void)user;
    n = wolfSSL_pending(t->ssl);
    if (n > 0)
        return (size_t)n;
    return ct_conn_pending(t->inner) > 0 ? 1 : 0;
}

static const ct_conn_ops tls_conn_ops = {
    CT_CONN_OPS_VERSION, 0, tls_send, tls_recv, tls_shutdown_write, tls_close,
    tls_get_fd, tls_pending, NULL,
};

const char *ct_tls_cipher(const ct_conn *c)
{
    tls_conn *t = tls_of(c);
    return t ? wolfSSL_get_cipher_name(t->ssl) : NULL;
}

ct_err ct_tls_peer_cert(const ct_conn *c, uint8_t **der, size_t *len, ct_error *err)
{
    tls_conn *t = tls_of(c);
    WOLFSSL_X509_CHAIN *chain;
    const uint8_t *p;
    int n;

    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_peer_cert: NULL argument");
    *der = NULL;
    *len = 0;
    if (!t)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_peer_cert: not a TLS connection");
    chain = wolfSSL_get_peer_chain(t->ssl);
    if (!chain || wolfSSL_get_chain_count(chain) <= 0)
        return ctp_err(err, CT_E_NOTFOUND, 0, "the peer sent no certificate");
    p = wolfSSL_get_chain_cert(chain, 0);
    n = wolfSSL_get_chain_length(chain, 0);
    if (!p || n <= 0)
        return ctp_err(err, CT_E_NOTFOUND, 0, "the peer sent no certificate");
    *der = ctp_memdup(p, (size_t)n);
    if (!*der)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    *len = (size_t)n;
    return CT_OK;
}

/* ------------------------------------------------------------------ */
/* Transport                                                            */

typedef struct tls_transport {
    ct_transport *inner;
    ct_tls_config *cfg;
} tls_transport;

static ct_err tt_dial(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                      ct_conn **out, ct_error *err, void *user)
{
    tls_transport *tt = user;
    ct_conn *c = NULL;
    int64_t deadline = ctp_deadline(ctx, timeout_ms);
    int left;
    ct_err rc;

    if (tt->cfg->role != CT_TLS_CLIENT)
        return ctp_err(err, CT_E_INVALID, 0, "TLS transport: dial needs a client configuration");
    rc = ct_transport_dial(tt->inner, host, port, timeout_ms, &c, err);
    if (rc != CT_OK)
        return rc;
    /* One deadline for the connect and the handshake. */
    left = ctp_remaining(deadline);
    return ct_tls_wrap(tt->cfg, c, left > 0 ? left : 1, out, err);
}

static ct_err tt_listen(ct_ctx *ctx, const char *host, uint16_t port, void **lst,
                        ct_error *err, void *user)
{
    tls_transport *tt = user;
    ct_listener *l = NULL;
    ct_err rc;

    (void)ctx;
    if (tt->cfg->role != CT_TLS_SERVER)
        return ctp_err(err, CT_E_INVALID, 0,
                       "TLS transport: listen needs a server configuration");
    rc = ct_transport_listen(tt->inner, host, port, &l, err);
    if (rc == CT_OK)
        *lst = l;
    return rc;
}

/* timeout_ms bounds the wait for a connection; the handshake has its own. */
static ct_err tt_accept(void *lst, int timeout_ms, ct_conn **out, ct_error *err, void *user)
{
    tls_transport *tt = user;
    ct_conn *c = NULL;
    ct_err rc = ct_listener_accept(lst, timeout_ms, &c, err);
    if (rc != CT_OK)
        return rc;
    return ct_tls_wrap(tt->cfg, c, -1, out, err);
}

static uint16_t tt_listener_port(void *lst, void *user)
{
    (void)user;
    return ct_listener_port(lst);
}

static void tt_listener_close(void *lst, void *user)
{
    (void)user;
    ct_listener_free(lst);
}

static void tt_destroy(void *user)
{
    tls_transport *tt = user;
    ct_transport_free(tt->inner);
    free(tt);
}

ct_err ct_transport_new_tls(ct_ctx *ctx, ct_transport *inner, ct_tls_config *cfg,
                            ct_transport **out, ct_error *err)
{
    static const ct_transport_ops ops = {
        CT_TRANSPORT_OPS_VERSION, 0, tt_dial, tt_listen, tt_accept, tt_listener_port,
        tt_listener_close, tt_destroy,
    };
    tls_transport *tt;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_new_tls: out is NULL");
    *out = NULL;
    if (!inner || !cfg)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_new_tls: NULL argument");
    tt = ctp_calloc(1, sizeof *tt);
    if (!tt)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    tt->inner = inner;
    tt->cfg = cfg;
    rc = ct_transport_new(ctx, &ops, tt, out, err);
    if (rc != CT_OK)
        free(tt); /* the caller keeps inner */
    return rc;
}
