/*
 * relay_conn.c - one beacon connection, from accept to close: the wolfSSL
 * I/O callbacks over its socket, its epoll registration, the TLS handshake
 * (the wolfSSL object is created when the first byte arrives), the 40-byte
 * hello, refusals (status byte, close_notify, bounded discard), closing,
 * and the dispatch of its events and deadlines by state. Also the session
 * and refusal log lines (relay.h).
 */
#include "relay_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* wolfSSL I/O callbacks                                               */

int ctp_relay_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct conn *c = ctx;
    (void)ssl;
    for (;;) {
        ssize_t n = recv(c->fd, buf, (size_t)sz, 0);
        if (n > 0)
            return (int)n;
        if (n == 0) {
            c->eof = 1;
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_WANT_READ;
        if (errno == ECONNRESET)
            return WOLFSSL_CBIO_ERR_CONN_RST;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

int ctp_relay_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct conn *c = ctx;
    (void)ssl;
    for (;;) {
        ssize_t n = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_WANT_WRITE;
        if (errno == ECONNRESET || errno == EPIPE)
            return WOLFSSL_CBIO_ERR_CONN_RST;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

/* ------------------------------------------------------------------ */
/* epoll registration                                                  */

/* The events this conn waits for now. */
static uint32_t conn_want(const struct conn *c)
{
    uint32_t want = 0;
    switch (c->state) {
    case ST_NEW:
        want = EPOLLIN;
        break;
    case ST_TLS:
        want = c->hs_want_write ? EPOLLOUT : EPOLLIN;
        break;
    case ST_HELLO:
    case ST_WAITING:
        want = EPOLLIN;
        break;
    case ST_PAIRED:
        if (ctp_relay_can_read(c))
            want |= EPOLLIN;
        break;
    case ST_CLOSING:
        if (c->discarding)
            want = EPOLLIN;
        break;
    default:
        break;
    }
    if (c->wblocked)
        want |= EPOLLOUT;
    return want;
}

void ctp_relay_conn_unregister(struct conn *c)
{
    if (c->registered) {
        epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->registered = 0;
    }
}

/* Brings the epoll registration in line with conn_want. */
void ctp_relay_conn_arm(struct conn *c)
{
    struct worker *w = c->w;
    uint32_t want = conn_want(c);
    struct epoll_event ev;

    if (c->state == ST_DEAD || c->state == ST_TRANSIT)
        return;
    /*
     * EPOLLHUP cannot be masked: a conn that has seen it and waits for
     * nothing would be reported on every epoll_wait. Park it outside epoll
     * until it waits for something again.
     */
    if (want == 0 && c->hup_seen) {
        ctp_relay_conn_unregister(c);
        return;
    }
    if (c->registered && want == c->ev_mask)
        return;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = c;
    if (c->registered) {
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    } else if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0) {
        c->registered = 1;
        c->hup_seen = 0;
    }
    c->ev_mask = want;
}

/* ------------------------------------------------------------------ */
/* Logging                                                             */

static const char *const end_names[] = {"close", "reset", "linger", "drain", "stop"};

static const char *role_name(int role)
{
    return role == CT_ROLE_OPERATOR ? "operator" : role == CT_ROLE_BRIDGE ? "bridge" : "-";
}

/* Only the first 4 bytes (8 hex digits) of a room hash ever leave memory. */
static void room_prefix(const struct conn *c, char out[9])
{
    if (c->hello_len == CT_BEACON_HELLO_LEN && c->role)
        ct_hex(c->hello + 8, 4, out);
    else
        snprintf(out, 9, "-");
}

static void log_refusal(struct ct_relay *r, const struct conn *c, int status)
{
    char line[256], pfx[9];
    if (!r->o.session_log)
        return;
    room_prefix(c, pfx);
    snprintf(line, sizeof line,
             "{\"ts\":%lld,\"event\":\"refusal\",\"status\":\"%s\",\"role\":\"%s\","
             "\"room\":\"%s\"}",
             (long long)ct_ctx_wall_ms(r->ctx), ct_beacon_status_name(status),
             role_name(c->role), pfx);
    r->o.session_log(r->o.session_log_user, line);
}

void ctp_relay_log_session(struct ct_relay *r, const struct conn *a, const struct conn *b,
                           enum end_reason end, int64_t now)
{
    const struct conn *op = a->role == CT_ROLE_OPERATOR ? a : b;
    const struct conn *br = op == a ? b : a;
    char line[320], pfx[9];
    if (!r->o.session_log)
        return;
    room_prefix(op, pfx);
    snprintf(line, sizeof line,
             "{\"ts\":%lld,\"event\":\"session\",\"room\":\"%s\",\"duration_ms\":%lld,"
             "\"bytes_op_to_br\":%llu,\"bytes_br_to_op\":%llu,\"end\":\"%s\"}",
             (long long)ct_ctx_wall_ms(r->ctx), pfx, (long long)(now - op->t_paired),
             (unsigned long long)op->bytes_out, (unsigned long long)br->bytes_out,
             end_names[end]);
    r->o.session_log(r->o.session_log_user, line);
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

/* Closes one connection at once (no close_notify); freed after this wakeup. */
void ctp_relay_conn_close(struct conn *c)
{
    struct worker *w = c->w;
    struct ct_relay *r = w->r;

    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_WAITING)
        ctp_relay_room_leave(w, c);
    c->state = ST_DEAD;
    ctp_relay_timer_clear(w, c);
    ctp_relay_ready_del(w, c);
    if (c->peer) {
        c->peer->peer = NULL;
        c->peer = NULL;
    }
    if (c->ssl) {
        wolfSSL_free(c->ssl);
        c->ssl = NULL;
    }
    ctp_relay_cert_unref(c->cert);
    c->cert = NULL;
    ctp_relay_buf_put(w, c->rx);
    c->rx = NULL;
    c->rx_len = 0;
    ctp_relay_conn_unregister(c);
    close(c->fd);
    c->fd = -1;
    if (c->ip_counted)
        ctp_relay_ip_release(r, c->ip, w->now);
    ct_secure_wipe(c->hello, sizeof c->hello);
    STAT_DEC(r, conns_open);
    ctp_relay_all_del(w, c);
    c->gnext = w->grave;
    w->grave = c;
}

/* ------------------------------------------------------------------ */
/* Refusals                                                            */

static void count_refusal(struct ct_relay *r, int status)
{
    switch (status) {
    case CT_BEACON_BAD_HELLO:
        STAT_INC(r, hellos_bad);
        break;
    case CT_BEACON_BAD_VERSION:
        STAT_INC(r, refused_version);
        break;
    case CT_BEACON_ROOM_BUSY:
        STAT_INC(r, refused_room_busy);
        break;
    case CT_BEACON_RATE_LIMITED:
        break; /* counted at accept */
    case CT_BEACON_DRAINING:
        STAT_INC(r, refused_draining);
        break;
    case CT_BEACON_TIMEOUT:
        STAT_INC(r, timeouts);
        break;
    case CT_BEACON_OVERLOADED:
        STAT_INC(r, refused_overloaded);
        break;
    default:
        break;
    }
}

int ctp_relay_closing_enter(struct conn *c)
{
    struct worker *w = c->w;
    c->state = ST_CLOSING;
    ctp_relay_ready_del(w, c);
    if (ctp_relay_timer_set(w, c, w->now + CLOSING_MS) < 0) {
        ctp_relay_conn_close(c);
        return -1;
    }
    return 0;
}

static void closing_step(struct conn *c);

/* Sends a refusal status, close_notify, and closes (PROTOCOL.md 1.3). */
void ctp_relay_refuse(struct conn *c, int status)
{
    struct worker *w = c->w;
    if (c->state == ST_WAITING)
        ctp_relay_room_leave(w, c);
    count_refusal(w->r, status);
    log_refusal(w->r, c, status);
    ctp_relay_status_push(c, (uint8_t)status);
    if (ctp_relay_closing_enter(c) < 0)
        return;
    closing_step(c);
}

static void closing_step(struct conn *c)
{
    int rc = ctp_relay_conn_flush(c);
    if (rc == WR_FATAL) {
        ctp_relay_conn_close(c);
        return;
    }
    if (rc == WR_OK && c->wr_done)
        c->discarding = 1;
    ctp_relay_conn_arm(c);
}

/* CLOSING: drop what the peer still sends until it closes (bounded). */
static void closing_discard(struct conn *c)
{
    uint8_t sink[4096];
    for (int i = 0; i < 4; i++) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) {
            c->discarded += (uint32_t)n;
            if (c->discarded > DISCARD_MAX)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break; /* EOF or error */
    }
    if (c->discarded <= DISCARD_MAX && c->state == ST_CLOSING) {
        uint8_t probe;
        ssize_t n = recv(c->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0)
            return; /* read budget used up: level-triggered epoll calls again */
    }
    ctp_relay_conn_close(c); /* EOF, error, or too much */
}

/* ------------------------------------------------------------------ */
/* Handshake and hello                                                 */

void ctp_relay_do_hello(struct conn *c)
{
    ct_beacon_role role;
    ct_beacon_status st;
    uint8_t room[32];

    while (c->hello_len < CT_BEACON_HELLO_LEN) {
        int n = wolfSSL_read(c->ssl, c->hello + c->hello_len,
                             CT_BEACON_HELLO_LEN - c->hello_len);
        int e;
        if (n > 0) {
            c->hello_len = (uint8_t)(c->hello_len + n);
            continue;
        }
        e = wolfSSL_get_error(c->ssl, n);
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
            ctp_relay_conn_arm(c);
            return;
        }
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            /* close_notify in the middle of a hello: it can still read */
            c->hello_len = 0;
            ctp_relay_refuse(c, CT_BEACON_BAD_HELLO);
        } else {
            STAT_INC(c->w->r, hellos_bad); /* truncated hello, then gone */
            ctp_relay_conn_close(c);
        }
        return;
    }
    /* bytes beyond the hello before PAIRED are a violation (PROTOCOL 1.2) */
    if (wolfSSL_pending(c->ssl) > 0) {
        ctp_relay_refuse(c, CT_BEACON_BAD_HELLO);
        return;
    }
    if (ct_beacon_hello_decode(c->hello, CT_BEACON_HELLO_LEN, &role, room, &st) != CT_OK) {
        ctp_relay_refuse(c, (int)st);
        return;
    }
    ct_secure_wipe(room, sizeof room); /* the room stays in c->hello only */
    c->role = (uint8_t)role;
    ctp_relay_route(c->w, c);
}

static void do_handshake(struct conn *c)
{
    int n = wolfSSL_accept(c->ssl);
    int e;
    if (n == WOLFSSL_SUCCESS) {
        wolfSSL_FreeHandshakeResources(c->ssl);
        c->state = ST_HELLO;
        c->hs_want_write = 0;
        if (c->refuse_on_tls) {
            ctp_relay_refuse(c, c->refuse_on_tls);
            return;
        }
        ctp_relay_do_hello(c);
        return;
    }
    e = wolfSSL_get_error(c->ssl, n);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
        c->hs_want_write = e == WOLFSSL_ERROR_WANT_WRITE;
        ctp_relay_conn_arm(c);
        return;
    }
    STAT_INC(c->w->r, handshakes_failed);
    ctp_relay_conn_close(c);
}

static void start_tls(struct conn *c)
{
    struct ct_relay *r = c->w->r;
    c->cert = ctp_relay_cert_acquire(r);
    c->ssl = wolfSSL_new(c->cert->ctx);
    if (!c->ssl) {
        STAT_INC(r, refused_overloaded);
        STAT_INC(r, closed_without_status);
        ctp_relay_conn_close(c);
        return;
    }
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    c->state = ST_TLS;
    do_handshake(c);
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

void ctp_relay_conn_event(struct conn *c, uint32_t ev)
{
    struct worker *w = c->w;
    if (c->state == ST_DEAD || c->state == ST_TRANSIT)
        return;
    w->gone = NULL;
    if (ev & EPOLLERR) {
        if (c->state != ST_PAIRED) {
            ctp_relay_conn_close(c);
            return;
        }
        ctp_relay_pump_error(c); /* still reads what c sent before the error */
        if (c->state != ST_PAIRED)
            return;
    }
    if (ev & EPOLLHUP)
        c->hup_seen = 1;
    switch (c->state) {
    case ST_NEW:
        start_tls(c);
        break;
    case ST_TLS:
        do_handshake(c);
        break;
    case ST_HELLO:
        ctp_relay_do_hello(c);
        break;
    case ST_WAITING:
        if (ev & EPOLLOUT) {
            if (ctp_relay_conn_flush(c) == WR_FATAL) {
                ctp_relay_conn_close(c);
                return;
            }
        }
        if (ev & (EPOLLIN | EPOLLHUP))
            ctp_relay_waiting_readable(c);
        break;
    case ST_PAIRED:
        if (ev & EPOLLOUT) {
            ctp_relay_pump_writable(c);
            if (c->state != ST_PAIRED)
                return;
        }
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
            ctp_relay_pump(c);
        break;
    case ST_CLOSING:
        if (c->discarding)
            closing_discard(c);
        else
            closing_step(c);
        break;
    default:
        break;
    }
    if (w->gone == c)
        return; /* handed over to the room's worker, maybe already freed there */
    if (c->state != ST_DEAD)
        ctp_relay_conn_arm(c);
}

void ctp_relay_conn_deadline(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    switch (c->state) {
    case ST_NEW:
    case ST_TLS:
        STAT_INC(r, timeouts);
        ctp_relay_conn_close(c);
        break;
    case ST_HELLO:
        ctp_relay_refuse(c, CT_BEACON_TIMEOUT);
        break;
    case ST_WAITING:
        ctp_relay_waiting_deadline(w, c);
        break;
    case ST_PAIRED:
        ctp_relay_pair_close(c, END_LINGER);
        break;
    default:
        ctp_relay_conn_close(c);
        break;
    }
}
