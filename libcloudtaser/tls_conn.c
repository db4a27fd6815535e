/*
 * tls_conn.c - a TLS 1.3 session over any ct_conn: ct_tls_wrap and the
 * handshake, the wolfSSL I/O callbacks over the inner connection, and the
 * TLS connection's ct_conn_ops (a TLS conn is itself a ct_conn, so TLS nests).
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
#include "tls_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const ct_conn_ops tls_conn_ops;

/* ------------------------------------------------------------------ */
/* wolfSSL I/O callbacks                                                */

static int io_timeout(const tls_conn *t)
{
    return t->nonblock ? 0 : ctp_remaining(t->deadline);
}

int ctp_tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *vctx)
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

int ctp_tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *vctx)
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

/* ------------------------------------------------------------------ */
/* Operations                                                           */

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

/* ------------------------------------------------------------------ */
/* Connection                                                           */

static void tls_conn_destroy(tls_conn *t)
{
    if (!t)
        return;
    if (t->ssl)
        wolfSSL_free(t->ssl); /* zeroes its keys */
    ct_conn_free(t->inner);
    free(t->peer_der); /* a certificate: public */
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
    if (!t->peer_der || !ctp_tls_pin_matches(t->cfg, t->peer_der, t->peer_der_len))
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
        if (ctp_tls_is_want(wolfSSL_get_error(t->ssl, r)) && may_retry(t))
            continue;
        return ctp_tls_error(t, r, "TLS handshake", true, err);
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
        /* Wait for the server's verdict on our certificate (its ticket, see tls_auth.c). */
        t->confirming = true;
        for (;;) {
            uint8_t b;
            r = wolfSSL_peek(t->ssl, &b, 1);
            if (r > 0 || t->ticket_seen)
                break;
            if (ctp_tls_is_want(wolfSSL_get_error(t->ssl, r)) && may_retry(t))
                continue;
            t->confirming = false;
            if (ctp_tls_is_want(wolfSSL_get_error(t->ssl, r)))
                return ctp_err(err, CT_E_TIMEOUT, 0,
                               "TLS handshake: the server did not confirm our client "
                               "certificate (no NewSessionTicket) before the deadline");
            if (t->inner_eof && !t->inner_reset)
                return ctp_err(err, CT_E_CLOSED, 0,
                               "TLS handshake: the server closed the connection instead of "
                               "accepting our client certificate");
            return ctp_tls_error(t, r, "TLS handshake (server's verdict on our certificate)",
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
    wolfSSL_SSLSetIORecv(t->ssl, ctp_tls_io_recv);
    wolfSSL_SSLSetIOSend(t->ssl, ctp_tls_io_send);
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
        wolfSSL_set_SessionTicket_cb(t->ssl, ctp_tls_ticket_seen_cb, t);
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
        if (ctp_tls_is_want(wolfSSL_get_error(t->ssl, r))) {
            if (may_retry(t))
                continue;
            return ctp_tls_want_error(t, what, err);
        }
        return fail(t, ctp_tls_error(t, r, what, false, err));
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
        if (!ctp_tls_is_want(wolfSSL_get_error(t->ssl, r)))
            return fail(t, ctp_tls_error(t, r, "TLS send", false, err));
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
        if (ctp_tls_is_want(e)) {
            if (may_retry(t))
                continue;
            return ctp_tls_want_error(t, "TLS receive", err);
        }
        return fail(t, ctp_tls_error(t, r, "TLS receive", false, err));
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
            if (ctp_tls_is_want(wolfSSL_get_error(t->ssl, r))) {
                if (may_retry(t))
                    continue;
                return ctp_tls_want_error(t, "TLS shutdown", err);
            }
            return fail(t, ctp_tls_error(t, r, "TLS shutdown", false, err));
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

    if (!der || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_peer_cert: NULL argument");
    *der = NULL;
    *len = 0;
    if (!t)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_peer_cert: not a TLS connection");
    if (!t->peer_der)
        return ctp_err(err, CT_E_NOTFOUND, 0, "the peer sent no certificate");
    *der = ctp_memdup(t->peer_der, t->peer_der_len);
    if (!*der)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    *len = t->peer_der_len;
    return CT_OK;
}
