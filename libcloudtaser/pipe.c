/*
 * pipe.c - ct_pipe_pair: two connected in-memory ends, for tests and
 * examples (TLS over a pipe, relays without sockets).
 *
 * Shape: one shared object holds two directions. Direction i carries the
 * bytes that end i sends and end 1-i receives. Each direction is a bounded
 * ring buffer with two condition variables (data arrived / space freed) that
 * wait on CLOCK_MONOTONIC, so deadlines do not move with the wall clock.
 * One mutex guards the whole shared object; nothing blocks while holding it
 * except pthread_cond_timedwait, which releases it.
 *
 * Lifetime: the shared object is reference-counted by the two ends and freed
 * (under no lock) when the second end is closed. Closing an end marks its
 * outgoing direction finished (the peer drains it, then CT_E_CLOSED) and its
 * incoming direction abandoned (bytes in it are dropped; the peer's sends
 * fail with CT_E_RESET), then wakes every waiter.
 *
 * Thread-safety: the two ends may be used from different threads, and one
 * end may be used by one sending and one receiving thread at the same time.
 * ct_conn_free of an end must not race with calls on that same end (the
 * library's one-thread rule), but may race freely with calls on the peer.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PIPE_DEFAULT_CAPACITY (64u * 1024u)
/* Sanity bound: each end allocates `capacity` bytes per direction up front. */
#define PIPE_MAX_CAPACITY (64u * 1024u * 1024u)

struct pipe_dir {
    uint8_t *buf;
    size_t head; /* next byte to read */
    size_t len;  /* bytes buffered */
    int eof;     /* the sender shut down or closed: drain, then CT_E_CLOSED */
    int gone;    /* the receiver closed: sends fail with CT_E_RESET */
    pthread_cond_t readable; /* len > 0, eof or gone changed */
    pthread_cond_t writable; /* space freed or gone changed */
};

struct pipe_shared {
    pthread_mutex_t mu;
    size_t cap; /* per direction */
    int refs;   /* ends still open, guarded by mu */
    int shut[2]; /* end i called shutdown_write: its sends are CT_E_STATE */
    struct pipe_dir dir[2];
};

struct pipe_end {
    struct pipe_shared *sh;
    int side; /* sends into dir[side], receives from dir[1 - side] */
    ct_ctx *ctx; /* borrowed, for the default timeout; may be NULL */
};

/* Absolute CLOCK_MONOTONIC time timeout_ms from now. */
static struct timespec abs_deadline(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/*
 * Waits on cv until signalled or the deadline. Returns 0 when woken (the
 * caller re-checks its condition) or ETIMEDOUT. timeout_ms == 0 never waits.
 */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int timeout_ms,
                      const struct timespec *deadline)
{
    int r;
    if (timeout_ms == 0)
        return ETIMEDOUT;
    r = pthread_cond_timedwait(cv, mu, deadline);
    return r == ETIMEDOUT ? ETIMEDOUT : 0;
}

static ct_err pipe_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                        ct_error *err, void *user)
{
    struct pipe_end *e = state;
    struct pipe_shared *sh = e->sh;
    struct pipe_dir *d = &sh->dir[e->side];
    struct timespec dl;
    ct_err rc;
    (void)user;

    *sent = 0;
    timeout_ms = ctp_timeout(e->ctx, timeout_ms);
    dl = abs_deadline(timeout_ms);
    pthread_mutex_lock(&sh->mu);
    for (;;) {
        size_t space, tail, k, first;
        if (sh->shut[e->side]) {
            rc = ctp_err(err, CT_E_STATE, 0, "pipe end %d: send after shutdown_write",
                         e->side);
            goto out;
        }
        if (d->gone) {
            rc = ctp_err(err, CT_E_RESET, 0, "pipe end %d: the peer end was freed", e->side);
            goto out;
        }
        if (n == 0) {
            rc = CT_OK;
            goto out;
        }
        space = sh->cap - d->len;
        if (space > 0) {
            /* Partial send: take what fits, in at most two pieces. */
            k = n < space ? n : space;
            tail = (d->head + d->len) % sh->cap;
            first = sh->cap - tail;
            if (first > k)
                first = k;
            memcpy(d->buf + tail, p, first);
            memcpy(d->buf, p + first, k - first);
            d->len += k;
            *sent = k;
            pthread_cond_broadcast(&d->readable);
            rc = CT_OK;
            goto out;
        }
        if (wait_until(&d->writable, &sh->mu, timeout_ms, &dl) == ETIMEDOUT) {
            /* One last look: space may have been freed just as we timed out. */
            if (sh->cap - d->len > 0 || d->gone || sh->shut[e->side])
                continue;
            rc = ctp_err(err, timeout_ms == 0 ? CT_E_AGAIN : CT_E_TIMEOUT, 0,
                         "pipe end %d: peer did not read within %d ms (%zu bytes buffered)",
                         e->side, timeout_ms, d->len);
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static ct_err pipe_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                        ct_error *err, void *user)
{
    struct pipe_end *e = state;
    struct pipe_shared *sh = e->sh;
    struct pipe_dir *d = &sh->dir[1 - e->side];
    struct timespec dl;
    ct_err rc;
    (void)user;

    *got = 0;
    if (cap == 0)
        return ctp_err(err, CT_E_INVALID, 0, "pipe end %d: recv with zero capacity", e->side);
    timeout_ms = ctp_timeout(e->ctx, timeout_ms);
    dl = abs_deadline(timeout_ms);
    pthread_mutex_lock(&sh->mu);
    for (;;) {
        size_t k, first;
        if (d->len > 0) {
            k = cap < d->len ? cap : d->len;
            first = sh->cap - d->head;
            if (first > k)
                first = k;
            memcpy(p, d->buf + d->head, first);
            memcpy(p + first, d->buf, k - first);
            d->head = (d->head + k) % sh->cap;
            d->len -= k;
            if (d->len == 0)
                d->head = 0;
            *got = k;
            pthread_cond_broadcast(&d->writable);
            rc = CT_OK;
            goto out;
        }
        if (d->eof) {
            rc = ctp_err(err, CT_E_CLOSED, 0, "pipe end %d: the peer finished sending",
                         e->side);
            goto out;
        }
        if (wait_until(&d->readable, &sh->mu, timeout_ms, &dl) == ETIMEDOUT) {
            if (d->len > 0 || d->eof)
                continue;
            rc = ctp_err(err, timeout_ms == 0 ? CT_E_AGAIN : CT_E_TIMEOUT, 0,
                         "pipe end %d: no data within %d ms", e->side, timeout_ms);
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static ct_err pipe_shutdown_write(void *state, int timeout_ms, ct_error *err, void *user)
{
    struct pipe_end *e = state;
    struct pipe_shared *sh = e->sh;
    (void)timeout_ms;
    (void)err;
    (void)user;

    pthread_mutex_lock(&sh->mu);
    sh->shut[e->side] = 1;
    sh->dir[e->side].eof = 1;
    pthread_cond_broadcast(&sh->dir[e->side].readable);
    pthread_cond_broadcast(&sh->dir[e->side].writable);
    pthread_mutex_unlock(&sh->mu);
    return CT_OK;
}

static size_t pipe_pending(void *state, void *user)
{
    struct pipe_end *e = state;
    size_t n;
    (void)user;
    pthread_mutex_lock(&e->sh->mu);
    n = e->sh->dir[1 - e->side].len;
    pthread_mutex_unlock(&e->sh->mu);
    return n;
}

static int pipe_get_fd(void *state, void *user)
{
    (void)state;
    (void)user;
    return -1;
}

/* Frees the shared object. Only when no end refers to it any more. */
static void shared_destroy(struct pipe_shared *sh)
{
    int i;
    for (i = 0; i < 2; i++) {
        pthread_cond_destroy(&sh->dir[i].readable);
        pthread_cond_destroy(&sh->dir[i].writable);
        free(sh->dir[i].buf);
    }
    pthread_mutex_destroy(&sh->mu);
    free(sh);
}

/* Drops one reference; the last one frees the shared object. */
static void shared_unref(struct pipe_shared *sh)
{
    int last;
    pthread_mutex_lock(&sh->mu);
    last = --sh->refs == 0;
    pthread_mutex_unlock(&sh->mu);
    if (last)
        shared_destroy(sh);
}

/* Closing an end: like close(2) on a socket (see the file comment). */
static void pipe_close(void *state, void *user)
{
    struct pipe_end *e = state;
    struct pipe_shared *sh = e->sh;
    struct pipe_dir *out = &sh->dir[e->side], *in = &sh->dir[1 - e->side];
    (void)user;

    pthread_mutex_lock(&sh->mu);
    out->eof = 1;
    in->gone = 1;
    in->len = 0; /* unread bytes are dropped */
    in->head = 0;
    pthread_cond_broadcast(&out->readable);
    pthread_cond_broadcast(&out->writable);
    pthread_cond_broadcast(&in->readable);
    pthread_cond_broadcast(&in->writable);
    pthread_mutex_unlock(&sh->mu);
    free(e);
    shared_unref(sh);
}

static const ct_conn_ops pipe_ops = {
    .version = CT_CONN_OPS_VERSION,
    .flags = 0,
    .send = pipe_send,
    .recv = pipe_recv,
    .shutdown_write = pipe_shutdown_write,
    .close = pipe_close,
    .get_fd = pipe_get_fd,
    .pending = pipe_pending,
    .destroy = NULL,
};

/* A new shared object with refs == 2 (one per end still to be made). */
static ct_err shared_new(size_t cap, struct pipe_shared **out, ct_error *err)
{
    struct pipe_shared *sh = NULL;
    pthread_condattr_t ca;
    int have_ca = 0, have_mu = 0, ncv = 0, i, r;
    ct_err rc;

    sh = ctp_calloc(1, sizeof *sh);
    if (!sh) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a pipe pair");
        goto out;
    }
    sh->cap = cap;
    sh->refs = 2;
    for (i = 0; i < 2; i++) {
        sh->dir[i].buf = malloc(cap);
        if (!sh->dir[i].buf) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for %zu-byte pipe buffers",
                         cap);
            goto out;
        }
    }
    if ((r = pthread_condattr_init(&ca)) != 0) {
        rc = ctp_err(err, CT_E_NOMEM, r, "pthread_condattr_init failed");
        goto out;
    }
    have_ca = 1;
    if ((r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0) {
        rc = ctp_err(err, CT_E_INTERNAL, r, "pthread_condattr_setclock(CLOCK_MONOTONIC) failed");
        goto out;
    }
    if ((r = pthread_mutex_init(&sh->mu, NULL)) != 0) {
        rc = ctp_err(err, CT_E_NOMEM, r, "pthread_mutex_init failed");
        goto out;
    }
    have_mu = 1;
    for (i = 0; i < 2; i++) {
        if ((r = pthread_cond_init(&sh->dir[i].readable, &ca)) != 0)
            break;
        ncv++;
        if ((r = pthread_cond_init(&sh->dir[i].writable, &ca)) != 0)
            break;
        ncv++;
    }
    if (ncv < 4) {
        rc = ctp_err(err, CT_E_NOMEM, r, "pthread_cond_init failed");
        goto out;
    }
    *out = sh;
    sh = NULL;
    rc = CT_OK;
out:
    if (have_ca)
        pthread_condattr_destroy(&ca);
    if (sh) {
        /* condvars were initialised in order: readable0, writable0, ... */
        for (i = 0; i < ncv; i++)
            pthread_cond_destroy(i % 2 ? &sh->dir[i / 2].writable : &sh->dir[i / 2].readable);
        if (have_mu)
            pthread_mutex_destroy(&sh->mu);
        free(sh->dir[0].buf);
        free(sh->dir[1].buf);
        free(sh);
    }
    return rc;
}

ct_err ct_pipe_pair(ct_ctx *ctx, size_t capacity, ct_conn **a, ct_conn **b, ct_error *err)
{
    struct pipe_shared *sh = NULL;
    struct pipe_end *end[2] = {NULL, NULL};
    ct_conn *conn[2] = {NULL, NULL};
    ct_err rc;
    int i;

    if (a)
        *a = NULL;
    if (b)
        *b = NULL;
    if (!a || !b || a == b) {
        rc = ctp_err(err, CT_E_INVALID, 0, "ct_pipe_pair: need two distinct out pointers");
        goto out;
    }
    if (capacity == 0)
        capacity = PIPE_DEFAULT_CAPACITY;
    if (capacity > PIPE_MAX_CAPACITY) {
        rc = ctp_err(err, CT_E_INVALID, 0, "ct_pipe_pair: capacity %zu exceeds the %u limit",
                     capacity, PIPE_MAX_CAPACITY);
        goto out;
    }
    rc = shared_new(capacity, &sh, err);
    if (rc != CT_OK)
        goto out;
    for (i = 0; i < 2; i++) {
        end[i] = ctp_calloc(1, sizeof *end[i]);
        if (!end[i]) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a pipe end");
            goto out;
        }
        end[i]->sh = sh;
        end[i]->side = i;
        end[i]->ctx = ctx;
    }
    for (i = 0; i < 2; i++) {
        rc = ct_conn_new(ctx, &pipe_ops, end[i], NULL, &conn[i], err);
        if (rc != CT_OK)
            goto out;
    }
    *a = conn[0];
    *b = conn[1];
    rc = CT_OK;
out:
    if (rc != CT_OK && sh) {
        /* Each end's reference is dropped exactly once: by its conn's close,
         * or here for an end that never got a conn. */
        for (i = 0; i < 2; i++) {
            if (conn[i]) {
                ct_conn_free(conn[i]);
            } else {
                free(end[i]);
                shared_unref(sh);
            }
        }
    }
    return rc;
}
