/*
 * session.c - ct_session: multiplexed request/response frames over one
 * connection (include/cloudtaser/session.h; frames and the protocol state
 * machine are in session_frame.c).
 *
 * Threads.
 *  - One I/O thread owns the ct_conn: it alone sends, receives, shuts down
 *    and frees it (wolfSSL objects must never be used by two threads). It
 *    never blocks on the connection: every send and receive has timeout 0,
 *    and it sleeps in poll() on the connection's fd plus an eventfd that
 *    other threads write to wake it. Bytes already buffered inside the
 *    connection (ct_conn_pending, e.g. decrypted TLS data) are read before
 *    sleeping. A connection without an fd (ct_pipe_pair, TLS over it) is
 *    polled: the thread sleeps on the eventfd for at most FDLESS_WAIT_MS,
 *    so received bytes wait at most that long.
 *  - `handler_threads` threads take the peer's requests from a FIFO and run
 *    the handler. A handler may defer its request (ct_session_defer): the
 *    work item then stays in the core's table, counted as outstanding,
 *    until ct_session_reply_send answers it from any thread; whichever of
 *    the handler thread and the reply comes last frees the item. After
 *    ct_session_free the struct lives on (without its connection and
 *    threads) until the last deferred reply has been sent.
 *  - Callers of ct_session_request encode their REQ into the send queue and
 *    wait on their own condition variable for the answer.
 * One mutex guards the state shared by them (queues, the protocol core,
 * counters); nothing blocks while holding it except condition waits.
 *
 * Send queues (both bounded, both under the mutex):
 *  - `data`: REQ, handler RESP, CANCEL and GOAWAY frames, in order (a
 *    GOAWAY must not overtake the requests queued before it). A writer
 *    waits while it would push the queue beyond DATA_QUEUE_MAX (a single
 *    frame always fits into an empty queue). CANCEL and GOAWAY are tiny and
 *    never wait; nor do deferred answers (ct_session_reply_send), which
 *    max_streams x max_frame bounds.
 *  - `ctl`: PING, PONG and the error answers the I/O thread makes itself
 *    (busy, no handler); they jump the data queue. They are only made while
 *    reading, and the I/O thread stops reading while ctl holds more than
 *    CTL_QUEUE_MAX bytes: a peer that floods PINGs but never reads cannot
 *    grow our memory.
 * The I/O thread moves both queues into its own send buffer (control
 * first) and writes it with as few calls as the connection takes: a TLS
 * connection encrypts up to one full record (16 KiB) per call, so small
 * frames are coalesced into full records. After CT_E_AGAIN the same bytes
 * are offered again (tls_conn.c's journal rule); new frames are appended
 * only behind them.
 *
 * Close: ct_session_close queues GOAWAY. A peer that receives GOAWAY
 * answers with its own. Once both were exchanged and nothing is
 * outstanding either way, each side sends close_notify (shutdown_write) and
 * the session ends cleanly when the peer's end of stream arrives. A
 * deadline (the closer's timeout) bounds all of it. ct_session_free on a
 * session that is still up aborts: the connection is freed without
 * close_notify (for TLS an abort the peer sees as CT_E_RESET).
 *
 * Calls from the session's own threads: ct_session_close from a handler
 * (or from on_close) starts the close but cannot wait for the end it is
 * holding up, so it returns CT_OK at once (or the end reason if the session
 * has already ended); ct_session_wait there returns CT_E_TIMEOUT while the
 * session is up. on_close runs before ct_session_wait/close return.
 *
 * Memory a peer can make us hold: max_streams requests of its own whose
 * payloads total at most IN_BYTES_MAX (or 2 x max_frame; beyond: a
 * CT_E_AGAIN answer), the data queue (writers wait), the control queue
 * (reads stop) and one frame being received.
 *
 * Secrets: request and answer payloads may carry secrets, so every buffer
 * that held them is wiped before it is freed or reused; payloads handed to
 * callers (answers) are theirs to wipe.
 */
#include "internal.h"
#include "session_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DATA_QUEUE_MAX (256u * 1024u) /* bytes of queued data frames before writers wait */
#define CTL_QUEUE_MAX (64u * 1024u)   /* bytes of queued control frames before reads stop */
#define REFILL_BELOW (64u * 1024u)    /* refill the send buffer when less is left in it */
#define RECV_BUF (64u * 1024u)
#define RECV_BURST 16                 /* reads per loop turn before sending again */
#define SEND_BURST 64                 /* sends per loop turn before reading again */
#define FDLESS_WAIT_MS 1              /* poll period of a connection without an fd */
#define MAX_POLL_MS 1000
#define LINGER_MS 5000                /* after our close_notify, wait this long for the peer's */
#define BUF_SHRINK (1u << 20)         /* free an idle buffer larger than this */
#define IN_BYTES_MAX (64u << 20)      /* payload bytes of the peer's requests held at once */

/* ------------------------------------------------------------------ */
/* Byte buffers                                                         */

typedef struct bytebuf {
    uint8_t *p;
    size_t len, cap;
} bytebuf;

static int bb_reserve(bytebuf *b, size_t extra)
{
    size_t want, cap;
    uint8_t *np;
    if (extra > SIZE_MAX - b->len)
        return -1;
    want = b->len + extra;
    if (want <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    np = malloc(cap);
    if (!np)
        return -1;
    if (b->p) {
        memcpy(np, b->p, b->len);
        ct_secure_wipe(b->p, b->len);
        free(b->p);
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static int bb_append2(bytebuf *b, const uint8_t *h, size_t hn, const uint8_t *p, size_t n)
{
    if (bb_reserve(b, hn + n) != 0)
        return -1;
    if (hn)
        memcpy(b->p + b->len, h, hn);
    if (n)
        memcpy(b->p + b->len + hn, p, n);
    b->len += hn + n;
    return 0;
}

/* Empties b (wiping what it held) and frees a large idle allocation. */
static void bb_clear(bytebuf *b)
{
    if (b->p)
        ct_secure_wipe(b->p, b->len);
    b->len = 0;
    if (b->cap > BUF_SHRINK) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static void bb_free(bytebuf *b)
{
    if (b->p) {
        ct_secure_wipe(b->p, b->len);
        free(b->p);
    }
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ */
/* Types                                                                */

/* A request of ours waiting for its answer (on its caller's stack). */
typedef struct pending {
    pthread_cond_t cv;
    bool done;
    ct_err rc;
    uint8_t *buf; /* answer: malloc'd, goes to the caller */
    size_t len;
    char msg[256];
} pending;

/* A request of the peer's that we serve. */
typedef struct work {
    struct work *next;
    uint32_t stream;
    uint8_t *payload;
    size_t len;
    bool cancelled;
    bool queued;     /* still in the FIFO (not taken by a handler thread) */
    bool in_handler; /* a handler thread runs the handler for it */
    bool deferred;   /* ct_session_defer: a ct_session_reply answers it */
    bool replied;    /* ... and has (the handler thread frees w if still in it) */
} work;

struct ct_session_reply {
    ct_session *s;
    work *w;
};

struct ct_session {
    ct_ctx *ctx;
    ct_session_options o; /* defaults resolved */
    uint32_t nhandlers;

    pthread_mutex_t mu;
    pthread_cond_t space_cv; /* data queue space, or the session is ending */
    pthread_cond_t work_cv;  /* work queued, or handler threads must stop */
    pthread_cond_t end_cv;   /* ended */
    int wake_fd;             /* eventfd */
    bool io_sleeping;

    /* ---- under mu ---- */
    ctp_sess_core core;
    bytebuf ctl, data;
    work *work_head, *work_tail;
    size_t in_bytes;     /* payload bytes of the peer's requests we hold */
    size_t in_bytes_max;
    bool ending;        /* the end reason is decided; no new traffic */
    bool ended;         /* on_close has run and the I/O thread is done */
    bool abort_req;     /* ct_session_free on a live session */
    bool stop_handlers;
    ct_err end_rc;
    char end_msg[256];
    bool close_deadline_set;
    int64_t close_deadline;
    int64_t last_rx_ms;
    uint32_t ping_token;  /* the PING whose PONG we wait for, 0 none */
    int64_t ping_sent_us;
    ct_session_stats st;

    pthread_t io_thread;
    pthread_t *handlers;
    bool io_started;
    uint32_t handlers_started;
    uint32_t handlers_idle;  /* handler threads waiting for work */
    size_t replies;          /* deferred-reply handles not yet sent (under mu) */
    bool freed;              /* ct_session_free ran; the last handle frees s (under mu) */

    /* ---- I/O thread only ---- */
    ct_conn *conn;
    bytebuf sb;      /* being sent */
    size_t sb_off;
    bool send_blocked;
    bool wshut;      /* our close_notify is out */
    bool peer_eof;
    int64_t linger_deadline;
    int64_t last_ping_ms;
    uint8_t *rbuf;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct timespec abs_ms(int64_t deadline_ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ms / 1000);
    ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
    return ts;
}

static int cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int r = pthread_condattr_init(&ca);
    if (r != 0)
        return r;
    r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (r == 0)
        r = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return r;
}

/* Waits on cv until signalled or deadline_ms (monotonic); 1 if it passed. */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
    struct timespec ts = abs_ms(deadline_ms);
    return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT;
}

/* Wakes the I/O thread if it sleeps (under mu). */
static void wake_io(ct_session *s)
{
    if (s->io_sleeping) {
        uint64_t one = 1;
        s->io_sleeping = false;
        if (write(s->wake_fd, &one, sizeof one) < 0) {
            /* EAGAIN: the counter is saturated, so a wake-up is pending anyway */
        }
    }
}

static bool is_own_thread(const ct_session *s)
{
    pthread_t self = pthread_self();
    if (s->io_started && pthread_equal(self, s->io_thread))
        return true;
    for (uint32_t i = 0; i < s->handlers_started; i++)
        if (pthread_equal(self, s->handlers[i]))
            return true;
    return false;
}

/* Copies a peer's message into dst (NUL-terminated), replacing control bytes. */
static void copy_message(char *dst, size_t cap, const uint8_t *m, size_t n)
{
    size_t i;
    if (n > cap - 1)
        n = cap - 1;
    for (i = 0; i < n; i++)
        dst[i] = (m[i] < 0x20 || m[i] == 0x7f) ? '?' : (char)m[i];
    dst[n] = '\0';
}

/* Marks an incoming request finished and frees it (under mu). */
static void work_done(ct_session *s, work *w)
{
    ctp_sess_finish_incoming(&s->core, w->stream);
    s->in_bytes -= w->len;
    if (w->payload) {
        ct_secure_wipe(w->payload, w->len);
        free(w->payload);
    }
    free(w);
}

/*
 * Ends the session (under mu): records the reason, fails our outstanding
 * requests, cancels the peer's, drops queued work and wakes every waiter.
 * The I/O thread then releases the connection and calls on_close.
 */
static void end_locked(ct_session *s, ct_err rc, const char *fmt, ...) CTP_PRINTF(3, 4);

static void end_locked(ct_session *s, ct_err rc, const char *fmt, ...)
{
    char note[300];
    va_list ap;
    work *w, *next;

    if (s->ending)
        return;
    s->ending = true;
    s->end_rc = rc;
    va_start(ap, fmt);
    vsnprintf(s->end_msg, sizeof s->end_msg, fmt, ap);
    va_end(ap);
    snprintf(note, sizeof note, "the session ended before the answer came: %s", s->end_msg);
    ctp_sess_fail_all(&s->core, CT_E_CLOSED, note);
    /* Queued work is dropped; running work is cancelled and its answer dropped. */
    for (w = s->work_head; w; w = next) {
        next = w->next;
        work_done(s, w);
    }
    s->work_head = s->work_tail = NULL;
    for (size_t i = 0; i < s->core.in.cap; i++) {
        if (s->core.in.keys[i] != 0) {
            w = s->core.in.vals[i];
            w->cancelled = true;
        }
    }
    pthread_cond_broadcast(&s->space_cv);
    pthread_cond_broadcast(&s->work_cv);
    s->io_sleeping = true; /* force the write: the I/O thread must notice */
    wake_io(s);
    ctp_log(s->ctx, rc == CT_OK ? CT_LOG_DEBUG : CT_LOG_INFO, "session.end",
            "session ended: %s (%s)", s->end_msg, ct_err_name(rc));
}

/* Appends a frame to the data queue (under mu; never waits). */
static int queue_data(ct_session *s, const uint8_t hdr[CT_SESSION_HEADER_LEN],
                      const uint8_t *payload, size_t len)
{
    if (bb_append2(&s->data, hdr, CT_SESSION_HEADER_LEN, payload, len) != 0)
        return -1;
    wake_io(s);
    return 0;
}

/* May a frame of `n` bytes enter the data queue now? */
static bool data_fits(const ct_session *s, size_t n)
{
    return s->data.len == 0 || s->data.len + n <= DATA_QUEUE_MAX;
}

/* ------------------------------------------------------------------ */
/* Core callbacks (all under mu)                                        */

static void cb_deliver(void *arg, void *vp, ct_err code, uint8_t *buf, const uint8_t *data,
                       size_t len, const char *note)
{
    ct_session *s = arg;
    pending *p = vp;

    p->done = true;
    p->rc = code;
    if (code == CT_OK) {
        p->buf = buf;
        p->len = len;
        s->st.responses_received++;
    } else {
        if (note)
            snprintf(p->msg, sizeof p->msg, "%s", note);
        else if (len)
            copy_message(p->msg, sizeof p->msg, data, len);
        else
            snprintf(p->msg, sizeof p->msg, "%s", ct_strerror(code));
        if (buf) {
            ct_secure_wipe(buf, (size_t)(data - buf) + len);
            free(buf);
        }
        if (!note)
            s->st.responses_received++;
    }
    pthread_cond_signal(&p->cv);
}

static void *handler_main(void *arg);

static ct_err cb_request(void *arg, uint32_t stream, uint8_t *payload, size_t len, void **item)
{
    ct_session *s = arg;
    work *w;

    if (s->ending)
        return CT_E_CLOSED;
    if (!s->o.handler)
        return CT_E_UNSUPPORTED;
    if (len > s->in_bytes_max - s->in_bytes)
        return CT_E_AGAIN; /* max_streams large requests at once: memory is bounded too */
    w = calloc(1, sizeof *w);
    if (!w)
        return CT_E_NOMEM;
    w->stream = stream;
    w->payload = payload;
    w->len = len;
    w->queued = true;
    s->in_bytes += len;
    if (s->work_tail)
        s->work_tail->next = w;
    else
        s->work_head = w;
    s->work_tail = w;
    /*
     * Handler threads start on demand, not in ct_session_open: a new thread
     * costs its TLS block (wolfSSL keeps per-thread caches there: 49 KB in
     * Debian's build, 1.4 MB in an SP build), which made opening a session
     * take tens of milliseconds. A pool grows to handler_threads and stays.
     */
    if (s->handlers_idle == 0 && s->handlers_started < s->nhandlers &&
        pthread_create(&s->handlers[s->handlers_started], NULL, handler_main, s) == 0)
        s->handlers_started++;
    if (s->handlers_started == 0) {
        /* no thread could be started: undo, the core answers the error */
        s->work_head = s->work_tail = NULL;
        s->in_bytes -= len;
        free(w);
        return CT_E_NOMEM;
    }
    pthread_cond_signal(&s->work_cv);
    *item = w;
    return CT_OK;
}

static void cb_cancel(void *arg, void *item)
{
    work *w = item;
    (void)arg;
    w->cancelled = true;
}

static void cb_emit(void *arg, int ordered, const uint8_t hdr[CT_SESSION_HEADER_LEN],
                    const uint8_t *payload, size_t len)
{
    ct_session *s = arg;
    if (bb_append2(ordered ? &s->data : &s->ctl, hdr, CT_SESSION_HEADER_LEN, payload, len) != 0)
        end_locked(s, CT_E_NOMEM, "out of memory for the send queue");
    wake_io(s);
}

static void cb_pong(void *arg, uint32_t token)
{
    ct_session *s = arg;
    if (token == s->ping_token && s->ping_token != 0) {
        s->st.last_rtt_us = mono_us() - s->ping_sent_us;
        s->ping_token = 0;
    }
}

static void cb_goaway(void *arg)
{
    ct_session *s = arg;
    ctp_log(s->ctx, CT_LOG_DEBUG, "session.goaway", "the peer is closing the session");
    wake_io(s);
}

static const ctp_sess_cb core_cb = {
    cb_deliver, cb_request, cb_cancel, cb_emit, cb_pong, cb_goaway,
};

/* ------------------------------------------------------------------ */
/* Handler threads                                                      */

/*
 * Queues the answer to w (under mu). A handler thread (may_wait) waits for
 * queue space; a deferred answer never waits: it is sent from threads that
 * serve other sessions too (a peer that stops reading must not stall them),
 * and the queue stays bounded by max_streams answers of max_frame each.
 */
static void answer(ct_session *s, work *w, ct_err rc, const uint8_t *resp, size_t resp_len,
                   const ct_error *herr, bool may_wait)
{
    uint8_t hdr[CT_SESSION_HEADER_LEN], epl[4 + sizeof herr->message];
    const uint8_t *pl = resp;
    size_t n = resp_len;
    uint8_t flags = 0;

    if (rc == CT_OK && resp_len > s->o.max_frame) {
        char m[160];
        snprintf(m, sizeof m, "the handler's answer (%zu bytes) exceeds max_frame (%lu)",
                 resp_len, (unsigned long)s->o.max_frame);
        rc = CT_E_TOOBIG;
        n = ctp_sess_error_payload(epl, sizeof epl, s->o.max_frame, rc, m);
        pl = epl;
        flags = CTP_SF_F_ERROR;
    } else if (rc != CT_OK) {
        if (rc > 0)
            rc = CT_E_INTERNAL; /* a handler bug: never send a non-error code */
        n = ctp_sess_error_payload(epl, sizeof epl, s->o.max_frame, rc,
                                   herr->message[0] ? herr->message : ct_strerror(rc));
        pl = epl;
        flags = CTP_SF_F_ERROR;
    }
    while (may_wait && !s->ending && !w->cancelled &&
           !data_fits(s, CT_SESSION_HEADER_LEN + n))
        pthread_cond_wait(&s->space_cv, &s->mu);
    if (s->ending || w->cancelled)
        return;
    ctp_sframe_put(hdr, CTP_SF_RESP, flags, w->stream, (uint32_t)n);
    if (queue_data(s, hdr, pl, n) != 0) {
        end_locked(s, CT_E_NOMEM, "out of memory for the send queue");
        return;
    }
    s->st.responses_sent++;
}

static void *handler_main(void *arg)
{
    ct_session *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        work *w;
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        ct_error herr;
        ct_err rc;

        s->handlers_idle++;
        while (!s->work_head && !s->stop_handlers)
            pthread_cond_wait(&s->work_cv, &s->mu);
        s->handlers_idle--;
        if (!s->work_head)
            break;
        w = s->work_head;
        s->work_head = w->next;
        if (!s->work_head)
            s->work_tail = NULL;
        w->queued = false;
        w->in_handler = true;
        if (w->cancelled || s->ending) {
            work_done(s, w);
            wake_io(s); /* a close may be waiting for this */
            continue;
        }
        pthread_mutex_unlock(&s->mu);

        ct_error_clear(&herr);
        rc = s->o.handler(s->o.handler_arg, s, w->stream, w->payload, w->len, &resp,
                          &resp_len, &herr);
        if (rc != CT_OK && resp) { /* a handler that failed should not answer data */
            ct_secure_wipe(resp, resp_len);
            free(resp);
            resp = NULL;
            resp_len = 0;
        }
        if (!resp)
            resp_len = 0;

        pthread_mutex_lock(&s->mu);
        w->in_handler = false;
        if (!w->deferred) {
            answer(s, w, rc, resp, resp_len, &herr, true);
            work_done(s, w);
        } else if (w->replied) {
            work_done(s, w); /* answered before the handler even returned */
        } /* else: the reply handle finishes w */
        wake_io(s);
        if (resp) {
            ct_secure_wipe(resp, resp_len);
            free(resp);
        }
    }
    pthread_mutex_unlock(&s->mu);
    ct_thread_cleanup();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The I/O thread                                                       */

/* Moves queued frames into the send buffer, control frames first (under mu). */
static void refill(ct_session *s)
{
    size_t left = s->sb.len - s->sb_off;
    bool took_data = false;

    if (s->wshut) { /* nothing can be sent any more */
        bb_clear(&s->ctl);
        bb_clear(&s->data);
        return;
    }
    if ((!s->ctl.len && !s->data.len) || left >= REFILL_BELOW)
        return;
    if (left == 0 && s->ctl.len == 0) {
        /* Common case: hand the whole data queue over without copying. */
        bytebuf t = s->sb;
        s->sb = s->data;
        s->data = t;
        s->data.len = 0;
        s->sb_off = 0;
        took_data = true;
    } else {
        if (s->sb_off) { /* keep the unsent bytes (same bytes, so TLS may retry) */
            memmove(s->sb.p, s->sb.p + s->sb_off, left);
            ct_secure_wipe(s->sb.p + left, s->sb_off);
            s->sb.len = left;
            s->sb_off = 0;
        }
        if (bb_append2(&s->sb, s->ctl.p, s->ctl.len, s->data.p, s->data.len) != 0) {
            end_locked(s, CT_E_NOMEM, "out of memory for the send buffer");
            return;
        }
        took_data = s->data.len > 0;
        bb_clear(&s->ctl);
        bb_clear(&s->data);
    }
    if (took_data)
        pthread_cond_broadcast(&s->space_cv);
}

/* GOAWAY both ways and no request outstanding either way (under mu)? */
static bool streams_done(const ct_session *s)
{
    return s->core.goaway_sent && s->core.goaway_recv && s->core.out.count == 0 &&
           s->core.in.count == 0;
}

/* ... and nothing left to queue for sending: time for close_notify. */
static bool close_ready(const ct_session *s)
{
    return streams_done(s) && s->ctl.len == 0 && s->data.len == 0;
}

/* Checks the timers (under mu); returns the next wake-up time in ms. */
static int64_t timers(ct_session *s, int64_t now)
{
    int64_t next = now + MAX_POLL_MS;
    const ct_session_options *o = &s->o;

    if (o->dead_after_ms > 0) {
        int64_t dl = s->last_rx_ms + o->dead_after_ms;
        if (now >= dl) {
            end_locked(s, CT_E_TIMEOUT,
                       "the peer is unresponsive: nothing received for %d ms (dead_after_ms)",
                       o->dead_after_ms);
            return now;
        }
        if (dl < next)
            next = dl;
    }
    if (s->close_deadline_set && !s->wshut) {
        if (now >= s->close_deadline) {
            size_t n = s->core.out.count + s->core.in.count;
            if (n)
                end_locked(s, CT_E_TIMEOUT,
                           "close: %zu request(s) still outstanding at the deadline", n);
            else
                end_locked(s, CT_E_TIMEOUT,
                           "close: the peer did not complete the close before the deadline");
            return now;
        }
        if (s->close_deadline < next)
            next = s->close_deadline;
    }
    if (s->wshut) {
        if (now >= s->linger_deadline) {
            /* Everything was answered; the peer just did not close its side. */
            end_locked(s, CT_OK, "closed (the peer did not send its close_notify in time)");
            return now;
        }
        if (s->linger_deadline < next)
            next = s->linger_deadline;
    }
    if (o->ping_interval_ms > 0 && !s->wshut) {
        int64_t due = s->last_rx_ms + o->ping_interval_ms;
        int64_t again = s->last_ping_ms + o->ping_interval_ms;
        if (again > due)
            due = again;
        if (now >= due) {
            s->ping_token = ctp_sess_ping(&s->core);
            s->ping_sent_us = mono_us();
            s->last_ping_ms = now;
            s->st.pings_sent++;
            due = now + o->ping_interval_ms;
        }
        if (due < next)
            next = due;
    }
    return next;
}

/* The peer finished sending (under mu). */
static void on_peer_eof(ct_session *s)
{
    s->peer_eof = true;
    if (s->wshut) {
        end_locked(s, CT_OK, "closed");
        return;
    }
    if (streams_done(s))
        return; /* clean: ends once what is queued and our close_notify are out */
    if (s->core.goaway_recv)
        end_locked(s, CT_E_CLOSED,
                   "the peer closed the connection with %zu request(s) still outstanding",
                   s->core.out.count + s->core.in.count);
    else
        end_locked(s, CT_E_CLOSED, "the peer closed the connection without GOAWAY");
}

/* Sends what the send buffer holds; false if the session ended. */
static bool do_send(ct_session *s, bool *progress)
{
    ct_error e;
    for (int i = 0; i < SEND_BURST && s->sb_off < s->sb.len; i++) {
        size_t k = 0;
        ct_err rc = ct_conn_send(s->conn, s->sb.p + s->sb_off, s->sb.len - s->sb_off, &k, 0, &e);
        if (rc == CT_OK) {
            s->sb_off += k;
            s->send_blocked = false;
            *progress = true;
            pthread_mutex_lock(&s->mu);
            s->st.bytes_sent += k;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (rc == CT_E_AGAIN || rc == CT_E_TIMEOUT) {
            s->send_blocked = true;
            break;
        }
        pthread_mutex_lock(&s->mu);
        end_locked(s, rc, "sending to the peer failed: %s", e.message);
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    if (s->sb_off == s->sb.len && s->sb.len) {
        s->sb_off = 0;
        bb_clear(&s->sb);
    }
    return true;
}

static bool do_recv(ct_session *s, bool *progress)
{
    ct_error e;
    for (int i = 0; i < RECV_BURST; i++) {
        size_t got = 0;
        ct_err rc = ct_conn_recv(s->conn, s->rbuf, RECV_BUF, &got, 0, &e);
        if (rc == CT_E_AGAIN || rc == CT_E_TIMEOUT)
            return true;
        *progress = true;
        pthread_mutex_lock(&s->mu);
        if (rc == CT_OK) {
            ct_err frc;
            s->last_rx_ms = ctp_mono_ms();
            s->st.bytes_received += got;
            frc = ctp_sess_feed(&s->core, s->rbuf, got);
            ct_secure_wipe(s->rbuf, got);
            if (frc == CT_E_PROTO)
                end_locked(s, CT_E_PROTO, "protocol violation by the peer: %s", s->core.why);
            else if (frc != CT_OK)
                end_locked(s, frc, "%s", s->core.why);
        } else if (rc == CT_E_CLOSED) {
            if (s->core.in_body || s->core.hdr_have)
                end_locked(s, CT_E_CLOSED, "the peer closed the connection in the middle of a "
                                           "frame");
            else
                on_peer_eof(s);
        } else {
            end_locked(s, rc, "receiving from the peer failed: %s", e.message);
        }
        bool go_on = !s->ending && !s->peer_eof && s->ctl.len < CTL_QUEUE_MAX;
        bool alive = !s->ending;
        pthread_mutex_unlock(&s->mu);
        if (!go_on)
            return alive;
    }
    return true;
}

static void *io_main(void *arg)
{
    ct_session *s = arg;
    int fd = ct_conn_get_fd(s->conn);
    ct_session_options *o = &s->o;
    ct_err end_rc;
    char end_msg[256];
    bool pending_retry = false;

    pthread_mutex_lock(&s->mu);
    s->last_rx_ms = ctp_mono_ms();
    s->last_ping_ms = s->last_rx_ms;
    pthread_mutex_unlock(&s->mu);

    for (;;) {
        bool progress = false, reading, shut_now, want_out;
        int64_t now, next;
        struct pollfd pf[2];
        int nfds = 0, wait_ms;

        pthread_mutex_lock(&s->mu);
        if (s->abort_req)
            end_locked(s, CT_E_CLOSED, "the session was freed while it was up");
        if (!s->ending)
            refill(s);
        now = ctp_mono_ms();
        next = s->ending ? now : timers(s, now);
        if (!s->ending)
            refill(s); /* a PING may have been queued */
        if (s->ending) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        shut_now = !s->wshut && close_ready(s) && s->sb_off == s->sb.len;
        reading = !s->peer_eof && s->ctl.len < CTL_QUEUE_MAX;
        pthread_mutex_unlock(&s->mu);

        if (s->sb_off < s->sb.len && !do_send(s, &progress))
            break;
        if (shut_now && s->sb_off == s->sb.len) {
            ct_error e;
            ct_err rc = ct_conn_shutdown_write(s->conn, 0, &e);
            if (rc == CT_OK || rc == CT_E_UNSUPPORTED) {
                s->wshut = true;
                progress = true;
                pthread_mutex_lock(&s->mu);
                if (s->peer_eof)
                    end_locked(s, CT_OK, "closed");
                s->linger_deadline = now + LINGER_MS;
                if (s->close_deadline_set && s->close_deadline > now &&
                    s->close_deadline < s->linger_deadline)
                    s->linger_deadline = s->close_deadline;
                pthread_mutex_unlock(&s->mu);
            } else if (rc == CT_E_AGAIN || rc == CT_E_TIMEOUT) {
                s->send_blocked = true;
            } else {
                pthread_mutex_lock(&s->mu);
                end_locked(s, rc, "close: sending close_notify failed: %s", e.message);
                pthread_mutex_unlock(&s->mu);
                break;
            }
        }
        if (reading && !do_recv(s, &progress))
            break;
        if (progress) {
            pending_retry = false;
            continue;
        }

        /*
         * Nothing moved: sleep until the fd, a wake-up or a timer. The reads
         * above went on until CT_E_AGAIN, so nothing decrypted is left inside
         * the connection; bytes that arrived since (ct_conn_pending) get one
         * more read before sleeping, not an endless loop.
         */
        if (reading && !pending_retry && ct_conn_pending(s->conn) > 0) {
            pending_retry = true;
            continue;
        }
        pending_retry = false;
        pthread_mutex_lock(&s->mu);
        if (s->ending || ((s->ctl.len || s->data.len) && s->sb.len - s->sb_off < REFILL_BELOW &&
                          !s->wshut)) {
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        s->io_sleeping = true;
        reading = !s->peer_eof && s->ctl.len < CTL_QUEUE_MAX;
        if (s->close_deadline_set && s->close_deadline < next)
            next = s->close_deadline; /* set by ct_session_close since the timers ran */
        pthread_mutex_unlock(&s->mu);

        want_out = s->sb_off < s->sb.len || (shut_now && s->send_blocked);
        pf[nfds].fd = s->wake_fd;
        pf[nfds].events = POLLIN;
        pf[nfds].revents = 0;
        nfds++;
        if (fd >= 0 && (reading || want_out)) {
            pf[nfds].fd = fd;
            pf[nfds].events = (short)((reading ? POLLIN : 0) | (want_out ? POLLOUT : 0));
            pf[nfds].revents = 0;
            nfds++;
        }
        now = ctp_mono_ms();
        wait_ms = next > now ? (int)(next - now) : 0;
        if (wait_ms > MAX_POLL_MS)
            wait_ms = MAX_POLL_MS;
        if (fd < 0 && wait_ms > FDLESS_WAIT_MS)
            wait_ms = FDLESS_WAIT_MS;
        if (poll(pf, (nfds_t)nfds, wait_ms) > 0 && (pf[0].revents & POLLIN)) {
            uint64_t v;
            if (read(s->wake_fd, &v, sizeof v) < 0) {
                /* EAGAIN: someone else's wake-up was consumed already */
            }
        }
        pthread_mutex_lock(&s->mu);
        s->io_sleeping = false;
        pthread_mutex_unlock(&s->mu);
    }

    /* The session has ended: release the connection (an abort unless the
     * close completed), then tell the application. */
    ct_conn_free(s->conn);
    s->conn = NULL;
    bb_free(&s->sb);
    s->sb_off = 0;
    pthread_mutex_lock(&s->mu);
    end_rc = s->end_rc;
    snprintf(end_msg, sizeof end_msg, "%s", s->end_msg);
    bb_clear(&s->ctl);
    bb_clear(&s->data);
    pthread_mutex_unlock(&s->mu);
    if (o->on_close)
        o->on_close(o->on_close_arg, s, end_rc, end_msg);
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    s->stop_handlers = true;
    pthread_cond_broadcast(&s->end_cv);
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->mu);
    ct_thread_cleanup();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public API                                                           */

static ct_err resolve_options(const ct_session_options *in, ct_session_options *o,
                              ct_error *err)
{
    if (!in) {
        ct_session_options d = CT_SESSION_OPTIONS_INIT;
        *o = d;
    } else {
        if (in->version != CT_SESSION_OPTIONS_VERSION)
            return ctp_err(err, CT_E_VERSION, 0, "ct_session_options version %u is not supported",
                           (unsigned)in->version);
        *o = *in;
    }
    if (o->max_frame == 0)
        o->max_frame = CT_SESSION_DEFAULT_MAX_FRAME;
    if (o->max_frame < CTP_SESSION_MIN_FRAME || o->max_frame > CT_SESSION_MAX_FRAME_LIMIT)
        return ctp_err(err, CT_E_INVALID, 0, "max_frame %lu is outside [%u, %u]",
                       (unsigned long)o->max_frame, CTP_SESSION_MIN_FRAME,
                       CT_SESSION_MAX_FRAME_LIMIT);
    if (o->max_streams == 0)
        o->max_streams = CT_SESSION_DEFAULT_MAX_STREAMS;
    if (o->max_streams > CTP_SESSION_MAX_STREAMS_LIMIT)
        return ctp_err(err, CT_E_INVALID, 0, "max_streams %lu exceeds %u",
                       (unsigned long)o->max_streams, CTP_SESSION_MAX_STREAMS_LIMIT);
    if (o->handler_threads == 0)
        o->handler_threads = CT_SESSION_DEFAULT_HANDLER_THREADS;
    if (o->handler_threads > 256)
        return ctp_err(err, CT_E_INVALID, 0, "handler_threads %lu exceeds 256",
                       (unsigned long)o->handler_threads);
    if (o->ping_interval_ms == 0)
        o->ping_interval_ms = CT_SESSION_DEFAULT_PING_INTERVAL_MS;
    if (o->dead_after_ms == 0)
        o->dead_after_ms = CT_SESSION_DEFAULT_DEAD_AFTER_MS;
    return CT_OK;
}

/* Frees a session whose threads have all been joined (or never started). */
static void session_destroy(ct_session *s)
{
    work *w, *next;
    for (w = s->work_head; w; w = next) {
        next = w->next;
        work_done(s, w);
    }
    ct_conn_free(s->conn);
    ctp_sess_free(&s->core);
    bb_free(&s->ctl);
    bb_free(&s->data);
    bb_free(&s->sb);
    free(s->rbuf);
    free(s->handlers);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_cond_destroy(&s->space_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->end_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

ct_err ct_session_open(ct_ctx *ctx, ct_conn *conn, const ct_session_options *opts,
                       ct_session **out, ct_error *err)
{
    ct_session *s = NULL;
    ct_session_options o;
    ct_err rc;
    int ncv = 0, r;

    if (out)
        *out = NULL;
    if (!conn || !out) {
        ct_conn_free(conn);
        return ctp_err(err, CT_E_INVALID, 0, "ct_session_open: NULL argument");
    }
    if ((rc = resolve_options(opts, &o, err)) != CT_OK) {
        ct_conn_free(conn);
        return rc;
    }
    s = ctp_calloc(1, sizeof *s);
    if (!s) {
        ct_conn_free(conn);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    s->ctx = ctx ? ctx : ct_conn_ctx(conn);
    s->o = o;
    s->conn = conn;
    s->wake_fd = -1;
    s->st.last_rtt_us = -1;
    if ((r = pthread_mutex_init(&s->mu, NULL)) != 0) {
        free(s);
        ct_conn_free(conn);
        return ctp_err(err, CT_E_NOMEM, r, "pthread_mutex_init failed");
    }
    if ((r = cond_init_mono(&s->space_cv)) == 0 && ++ncv &&
        (r = cond_init_mono(&s->work_cv)) == 0 && ++ncv &&
        (r = cond_init_mono(&s->end_cv)) == 0)
        ncv++;
    if (ncv < 3) {
        if (ncv > 1)
            pthread_cond_destroy(&s->work_cv);
        if (ncv > 0)
            pthread_cond_destroy(&s->space_cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        ct_conn_free(conn);
        return ctp_err(err, CT_E_NOMEM, r, "pthread_cond_init failed");
    }
    /* From here session_destroy cleans up everything. */
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0) {
        rc = ctp_err(err, CT_E_INTERNAL, errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    s->rbuf = malloc(RECV_BUF);
    s->handlers = ctp_calloc(o.handler_threads, sizeof *s->handlers);
    if (!s->rbuf || !s->handlers ||
        ctp_sess_init(&s->core, o.initiator, o.max_frame, o.max_streams, &core_cb, s) !=
            CT_OK) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a session");
        goto fail;
    }
    s->nhandlers = o.handler ? o.handler_threads : 0; /* no handler: the core answers */
    s->in_bytes_max = IN_BYTES_MAX > 2 * (size_t)o.max_frame ? IN_BYTES_MAX
                                                              : 2 * (size_t)o.max_frame;
    if ((r = pthread_create(&s->io_thread, NULL, io_main, s)) != 0) {
        rc = ctp_err(err, CT_E_INTERNAL, r, "cannot start the session's I/O thread: %s",
                     strerror(r));
        goto fail;
    }
    s->io_started = true;
    *out = s;
    return CT_OK;
fail:
    pthread_mutex_lock(&s->mu);
    s->stop_handlers = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < s->handlers_started; i++)
        pthread_join(s->handlers[i], NULL);
    session_destroy(s);
    return rc;
}

ct_err ct_session_request(ct_session *s, const void *req, size_t req_len, int timeout_ms,
                          uint8_t **resp, size_t *resp_len, ct_error *err)
{
    uint8_t hdr[CT_SESSION_HEADER_LEN];
    pending p;
    int64_t deadline;
    uint32_t id = 0;
    ct_err rc;
    int r;

    if (resp)
        *resp = NULL;
    if (resp_len)
        *resp_len = 0;
    if (!s || (!req && req_len) || !resp || !resp_len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_session_request: NULL argument");
    if (timeout_ms == 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_session_request: a timeout of 0 ms cannot work");
    if (req_len > s->o.max_frame)
        return ctp_err(err, CT_E_TOOBIG, 0, "request of %zu bytes exceeds max_frame (%lu)",
                       req_len, (unsigned long)s->o.max_frame);
    if (timeout_ms < 0)
        timeout_ms = CT_SESSION_DEFAULT_REQUEST_TIMEOUT_MS;
    deadline = ctp_mono_ms() + timeout_ms;
    memset(&p, 0, sizeof p);
    if ((r = cond_init_mono(&p.cv)) != 0)
        return ctp_err(err, CT_E_NOMEM, r, "pthread_cond_init failed");

    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->ending) {
            rc = ctp_err(err, CT_E_CLOSED, 0, "the session has ended: %s", s->end_msg);
            goto out;
        }
        if (s->core.goaway_sent || s->core.goaway_recv) {
            rc = ctp_err(err, CT_E_CLOSED, 0, "the session is closing (%s)",
                         s->core.goaway_sent ? "ct_session_close was called"
                                             : "the peer sent GOAWAY");
            goto out;
        }
        if (s->core.out.count >= s->o.max_streams) {
            rc = ctp_err(err, CT_E_AGAIN, 0,
                         "%lu requests are outstanding already (max_streams); retry later",
                         (unsigned long)s->o.max_streams);
            goto out;
        }
        if (data_fits(s, CT_SESSION_HEADER_LEN + req_len))
            break;
        if (wait_until(&s->space_cv, &s->mu, deadline) && ctp_mono_ms() >= deadline) {
            rc = ctp_err(err, CT_E_TIMEOUT, 0,
                         "the request could not be queued within %d ms (the peer is not "
                         "reading)",
                         timeout_ms);
            goto out;
        }
    }
    rc = ctp_sess_open_stream(&s->core, &p, &id);
    if (rc != CT_OK) {
        rc = ctp_err(err, rc, 0, "%s", s->core.why);
        goto out;
    }
    ctp_sframe_put(hdr, CTP_SF_REQ, 0, id, (uint32_t)req_len);
    if (queue_data(s, hdr, req, req_len) != 0) {
        ctp_sess_forget_stream(&s->core, id, false);
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for the send queue");
        goto out;
    }
    s->st.requests_sent++;
    while (!p.done) {
        if (wait_until(&p.cv, &s->mu, deadline) && !p.done && ctp_mono_ms() >= deadline) {
            /* Give up: the peer is told, and a late answer will be dropped. */
            ctp_sess_forget_stream(&s->core, id, true);
            if (!s->ending) {
                ctp_sframe_put(hdr, CTP_SF_CANCEL, 0, id, 0);
                if (queue_data(s, hdr, NULL, 0) != 0)
                    end_locked(s, CT_E_NOMEM, "out of memory for the send queue");
            }
            rc = ctp_err(err, CT_E_TIMEOUT, 0,
                         "no answer within %d ms (stream %lu; the request was cancelled)",
                         timeout_ms, (unsigned long)id);
            goto out;
        }
    }
    rc = p.rc;
    if (rc == CT_OK) {
        *resp = p.len ? p.buf : NULL;
        *resp_len = p.len;
        if (!p.len)
            free(p.buf);
    } else {
        ctp_err(err, rc, 0, "%s", p.msg);
    }
out:
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&p.cv);
    return rc;
}

int ct_session_cancelled(ct_session *s, uint32_t stream)
{
    work *w;
    int r;
    if (!s)
        return 1;
    pthread_mutex_lock(&s->mu);
    w = ctp_idmap_get(&s->core.in, stream);
    r = s->ending || !w || w->cancelled;
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* The end reason as an error return (under mu). */
static ct_err end_result(const ct_session *s, ct_error *err)
{
    if (s->end_rc == CT_OK) {
        ct_error_clear(err);
        return CT_OK;
    }
    return ctp_err(err, s->end_rc, 0, "%s", s->end_msg);
}

ct_err ct_session_close(ct_session *s, int timeout_ms, ct_error *err)
{
    ct_err rc;
    if (!s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_session_close: NULL session");
    pthread_mutex_lock(&s->mu);
    if (!s->ending) {
        int64_t dl = ctp_mono_ms() + ctp_timeout(s->ctx, timeout_ms);
        ctp_sess_goaway(&s->core);
        if (!s->close_deadline_set || dl < s->close_deadline) {
            s->close_deadline = dl;
            s->close_deadline_set = true;
        }
        wake_io(s);
    }
    if (is_own_thread(s)) {
        /* A handler or on_close cannot wait for the end it is holding up. */
        rc = s->ending ? end_result(s, err) : CT_OK;
        if (rc == CT_OK)
            ct_error_clear(err);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    while (!s->ended)
        pthread_cond_wait(&s->end_cv, &s->mu);
    rc = end_result(s, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

ct_err ct_session_wait(ct_session *s, int timeout_ms, ct_error *err)
{
    int64_t deadline;
    ct_err rc;
    if (!s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_session_wait: NULL session");
    deadline = timeout_ms < 0 ? INT64_MAX : ctp_mono_ms() + timeout_ms;
    pthread_mutex_lock(&s->mu);
    if (is_own_thread(s)) {
        rc = s->ending ? end_result(s, err)
                       : ctp_err(err, CT_E_TIMEOUT, 0, "the session is still up");
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    while (!s->ended) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->end_cv, &s->mu);
        } else if (ctp_mono_ms() >= deadline ||
                   (wait_until(&s->end_cv, &s->mu, deadline) && !s->ended)) {
            pthread_mutex_unlock(&s->mu);
            return ctp_err(err, CT_E_TIMEOUT, 0, "the session is still up after %d ms",
                           timeout_ms);
        }
    }
    rc = end_result(s, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int ct_session_is_open(const ct_session *s)
{
    ct_session *m = (ct_session *)s; /* the mutex is not part of the value */
    int r;
    if (!s)
        return 0;
    pthread_mutex_lock(&m->mu);
    r = !m->ending && !m->core.goaway_sent && !m->core.goaway_recv;
    pthread_mutex_unlock(&m->mu);
    return r;
}

void ct_session_get_stats(const ct_session *s, ct_session_stats *out)
{
    ct_session *m = (ct_session *)s;
    if (!out)
        return;
    if (!s) {
        memset(out, 0, sizeof *out);
        out->last_rtt_us = -1;
        return;
    }
    pthread_mutex_lock(&m->mu);
    *out = m->st;
    out->requests_received = m->core.requests_received; /* also those refused as busy */
    pthread_mutex_unlock(&m->mu);
}

void ct_session_free(ct_session *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (!s->ending) {
        s->abort_req = true;
        s->io_sleeping = true; /* force the wake-up */
        wake_io(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (s->io_started)
        pthread_join(s->io_thread, NULL);
    pthread_mutex_lock(&s->mu);
    s->stop_handlers = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->space_cv);
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < s->handlers_started; i++)
        pthread_join(s->handlers[i], NULL);
    pthread_mutex_lock(&s->mu);
    s->freed = true;
    if (s->replies) {
        /* Deferred answers are still out: the last ct_session_reply_send
         * frees the rest. The connection goes now (its thread is gone). */
        ct_conn_free(s->conn);
        s->conn = NULL;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_unlock(&s->mu);
    session_destroy(s);
}

/* ------------------------------------------------------------------ */
/* Deferred answers                                                     */

ct_err ct_session_defer(ct_session *s, uint32_t stream, ct_session_reply **out, ct_error *err)
{
    ct_session_reply *r;
    work *w;

    if (out)
        *out = NULL;
    if (!s || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_session_defer: NULL argument");
    if (!(r = malloc(sizeof *r)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    pthread_mutex_lock(&s->mu);
    w = ctp_idmap_get(&s->core.in, stream);
    if (!w || !w->in_handler || w->deferred) {
        pthread_mutex_unlock(&s->mu);
        free(r);
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_session_defer: stream %lu is not a request whose handler is running "
                       "(or it was deferred already)",
                       (unsigned long)stream);
    }
    if (w->cancelled || s->ending) {
        pthread_mutex_unlock(&s->mu);
        free(r);
        return ctp_err(err, CT_E_CLOSED, 0,
                       "the requester gave up or the session is ending: nothing to answer");
    }
    w->deferred = true;
    s->replies++;
    pthread_mutex_unlock(&s->mu);
    r->s = s;
    r->w = w;
    *out = r;
    return CT_OK;
}

int ct_session_reply_cancelled(ct_session_reply *r)
{
    int c;
    if (!r)
        return 1;
    pthread_mutex_lock(&r->s->mu);
    c = r->w->cancelled || r->s->ending;
    pthread_mutex_unlock(&r->s->mu);
    return c;
}

void ct_session_reply_send(ct_session_reply *r, ct_err code, const uint8_t *resp,
                           size_t resp_len, const char *message)
{
    ct_session *s;
    work *w;
    ct_error herr;
    bool last;

    if (!r)
        return;
    s = r->s;
    w = r->w;
    free(r);
    ct_error_clear(&herr);
    if (code != CT_OK)
        snprintf(herr.message, sizeof herr.message, "%s", message ? message : "");
    if (code != CT_OK || !resp)
        resp_len = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->freed)
        answer(s, w, code, resp, resp_len, &herr, false); /* drops if cancelled */
    w->replied = true;
    if (!w->in_handler)
        work_done(s, w);
    if (!s->freed)
        wake_io(s);
    s->replies--;
    last = s->freed && s->replies == 0;
    pthread_mutex_unlock(&s->mu);
    if (last)
        session_destroy(s);
}
