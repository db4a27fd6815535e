/*
 * agent.c - the helpers shared by bridge.c and operator.c: cancellable
 * transport, stop signal, backoff, events, process hardening.
 */
#include "agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- cancellable transport ---- */

struct ctp_canceller {
    pthread_mutex_t mu;
    int fd;        /* the live connection's socket, -1 if none */
    int fired;
    ct_transport *tcp;
    ct_transport *self;
};

struct cconn {
    ctp_canceller *c;
    ct_conn *inner;
};

static ct_err cc_send(void *st, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                      ct_error *err, void *user)
{
    (void)user;
    return ct_conn_send(((struct cconn *)st)->inner, p, n, sent, timeout_ms, err);
}

static ct_err cc_recv(void *st, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                      ct_error *err, void *user)
{
    (void)user;
    return ct_conn_recv(((struct cconn *)st)->inner, p, cap, got, timeout_ms, err);
}

static ct_err cc_shutdown(void *st, int timeout_ms, ct_error *err, void *user)
{
    (void)user;
    return ct_conn_shutdown_write(((struct cconn *)st)->inner, timeout_ms, err);
}

static void cc_close(void *st, void *user)
{
    struct cconn *cc = st;
    (void)user;
    pthread_mutex_lock(&cc->c->mu);
    cc->c->fd = -1;
    pthread_mutex_unlock(&cc->c->mu);
    ct_conn_free(cc->inner);
    free(cc);
}

static int cc_get_fd(void *st, void *user)
{
    (void)user;
    return ct_conn_get_fd(((struct cconn *)st)->inner);
}

static size_t cc_pending(void *st, void *user)
{
    (void)user;
    return ct_conn_pending(((struct cconn *)st)->inner);
}

static const ct_conn_ops cc_ops = {
    .version = CT_CONN_OPS_VERSION,
    .send = cc_send,
    .recv = cc_recv,
    .shutdown_write = cc_shutdown,
    .close = cc_close,
    .get_fd = cc_get_fd,
    .pending = cc_pending,
};

static ct_err cc_dial(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                      ct_conn **out, ct_error *err, void *user)
{
    ctp_canceller *c = user;
    struct cconn *cc;
    ct_conn *inner = NULL;
    ct_err rc;

    if (ctp_canceller_fired(c))
        return ctp_err(err, CT_E_CLOSED, 0, "stopping");
    if ((rc = ct_transport_dial(c->tcp, host, port, timeout_ms, &inner, err)) != CT_OK)
        return rc;
    if (!(cc = calloc(1, sizeof *cc))) {
        ct_conn_free(inner);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    cc->c = c;
    cc->inner = inner;
    pthread_mutex_lock(&c->mu);
    if (c->fired) {
        pthread_mutex_unlock(&c->mu);
        ct_conn_free(inner);
        free(cc);
        return ctp_err(err, CT_E_CLOSED, 0, "stopping");
    }
    c->fd = ct_conn_get_fd(inner);
    pthread_mutex_unlock(&c->mu);
    if ((rc = ct_conn_new(ctx, &cc_ops, cc, NULL, out, err)) != CT_OK)
        cc_close(cc, NULL);
    return rc;
}

static const ct_transport_ops cc_tops = {
    .version = CT_TRANSPORT_OPS_VERSION,
    .dial = cc_dial,
};

ct_err ctp_canceller_new(ct_ctx *ctx, ctp_canceller **out, ct_error *err)
{
    ctp_canceller *c = calloc(1, sizeof *c);
    ct_err rc;

    *out = NULL;
    if (!c)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->fd = -1;
    if ((rc = ct_transport_new_tcp(ctx, &c->tcp, err)) != CT_OK ||
        (rc = ct_transport_new(ctx, &cc_tops, c, &c->self, err)) != CT_OK) {
        ctp_canceller_free(c);
        return rc;
    }
    *out = c;
    return CT_OK;
}

ct_transport *ctp_canceller_transport(ctp_canceller *c)
{
    return c->self;
}

void ctp_canceller_fire(ctp_canceller *c)
{
    pthread_mutex_lock(&c->mu);
    c->fired = 1;
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&c->mu);
}

int ctp_canceller_fired(ctp_canceller *c)
{
    int f;
    pthread_mutex_lock(&c->mu);
    f = c->fired;
    pthread_mutex_unlock(&c->mu);
    return f;
}

void ctp_canceller_free(ctp_canceller *c)
{
    if (!c)
        return;
    ct_transport_free(c->self);
    ct_transport_free(c->tcp);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- stop signal ---- */

ct_err ctp_stopper_init(ctp_stopper *s, ct_error *err)
{
    s->raised = 0;
    if (pipe2(s->fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        s->fds[0] = s->fds[1] = -1;
        return ctp_err(err, CT_E_INTERNAL, errno, "pipe: %s", strerror(errno));
    }
    return CT_OK;
}

void ctp_stopper_raise(ctp_stopper *s)
{
    int e = errno;
    ssize_t r;
    s->raised = 1;
    if (s->fds[1] >= 0)
        r = write(s->fds[1], "x", 1);
    (void)r;
    errno = e;
}

int ctp_stopper_wait(ctp_stopper *s, int ms)
{
    struct pollfd p = { .fd = s->fds[0], .events = POLLIN };
    int64_t deadline = ctp_mono_ms() + (ms < 0 ? 0 : ms);
    for (;;) {
        int left;
        if (s->raised)
            return 1;
        left = ctp_remaining(deadline);
        if (left <= 0)
            return 0;
        if (poll(&p, 1, left) > 0)
            return 1; /* never drained: stays readable once raised */
    }
}

void ctp_stopper_destroy(ctp_stopper *s)
{
    if (s->fds[0] >= 0)
        close(s->fds[0]);
    if (s->fds[1] >= 0)
        close(s->fds[1]);
    s->fds[0] = s->fds[1] = -1;
}

int ctp_backoff_ms(const ct_ctx *ctx, int min_ms, int max_ms, unsigned attempt)
{
    int64_t cap = min_ms;
    uint32_t r = 0;
    while (attempt-- > 0 && cap < max_ms)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    if (ct_ctx_random(ctx, (uint8_t *)&r, sizeof r) != CT_OK)
        r = (uint32_t)ctp_mono_ms();
    if (cap <= min_ms)
        return min_ms;
    return (int)(min_ms + (int64_t)(r % (uint32_t)(cap - min_ms + 1)));
}

void ctp_agent_emit(ct_agent_event_fn fn, void *arg, int64_t t0, ct_agent_event_type type,
                    const char *fp8, const char *room, ct_err code, const char *fmt, ...)
{
    ct_agent_event ev;
    char detail[320];
    va_list ap;

    if (!fn)
        return;
    detail[0] = 0;
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
    }
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.cluster = fp8;
    ev.room = room;
    ev.detail = fmt ? detail : NULL;
    ev.code = code;
    ev.elapsed_ms = ctp_mono_ms() - t0;
    fn(arg, &ev);
}

const char *ct_agent_event_name(ct_agent_event_type t)
{
    switch (t) {
    case CT_EV_CLUSTER_ADDED: return "cluster_added";
    case CT_EV_CLUSTER_REMOVED: return "cluster_removed";
    case CT_EV_WAITING: return "waiting";
    case CT_EV_INIT_PAIRED: return "init_paired";
    case CT_EV_BOOTSTRAP_ISSUED: return "bootstrap_issued";
    case CT_EV_BOOTSTRAP_REFUSED: return "bootstrap_refused";
    case CT_EV_CLAIM_RECORDED: return "claim_recorded";
    case CT_EV_SESSION_UP: return "session_up";
    case CT_EV_SESSION_DOWN: return "session_down";
    case CT_EV_ERROR: return "error";
    default: return "unknown";
    }
}

ct_err ct_process_harden(ct_error *err)
{
    struct rlimit rl = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        return ctp_err(err, CT_E_INTERNAL, errno, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return ctp_err(err, CT_E_INTERNAL, errno, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
    return CT_OK;
}

ct_err ctp_session_hold(const ctp_held_session *h, ct_session *s, void (*tick)(void *arg),
                        const char *(*stop)(void *arg), void *arg, int close_ms, ct_error *err)
{
    const char *why;
    ct_err rc;

    pthread_mutex_lock(h->mu);
    *h->slot = s;
    *h->closing = 0;
    pthread_cond_broadcast(h->cv);
    pthread_mutex_unlock(h->mu);
    err->message[0] = 0;
    for (;;) {
        if (tick)
            tick(arg);
        rc = ct_session_wait(s, 200, err);
        if (rc != CT_E_TIMEOUT)
            break;
        if ((why = stop(arg)) != NULL) {
            rc = ct_session_close(s, close_ms, err);
            if (rc == CT_OK)
                snprintf(err->message, sizeof err->message, "%s", why);
            break;
        }
    }
    pthread_mutex_lock(h->mu);
    *h->closing = 1;
    while (*h->users > 0)
        pthread_cond_wait(h->cv, h->mu);
    *h->slot = NULL;
    pthread_mutex_unlock(h->mu);
    return rc;
}
