/*
 * test_session.c - ct_session: request/response both ways over every kind
 * of connection (pipe, TCP loopback, TLS over pipe, TLS over TCP, TLS in
 * TLS over pipe and over TCP), many requests in flight from many threads,
 * frames at max_frame, handler errors, timeouts and cancellation, the
 * max_streams limits, pings, a dead peer, clean close and abort, and
 * protocol violations from a raw peer that writes frames by hand. The
 * pure frame/state-machine code (session_frame.c, compiled in) is tested
 * directly at the end.
 *
 * Every wait is bounded; the slow paths use short intervals (50 ms pings,
 * 300 ms dead peer) so the file runs in seconds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../conformance/factories.h"
#include "../conformance/factories_tls.h"
#include "session_internal.h"
#include "testutil.h"

#define WAIT_MS 10000 /* generous bound for things that should take milliseconds */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* on_close recorder                                                    */

typedef struct closelog {
    pthread_mutex_t mu;
    int calls;
    ct_err reason;
    char msg[256];
} closelog;

static void on_close_cb(void *arg, ct_session *s, ct_err reason, const char *message)
{
    closelog *l = arg;
    (void)s;
    pthread_mutex_lock(&l->mu);
    l->calls++;
    l->reason = reason;
    snprintf(l->msg, sizeof l->msg, "%s", message ? message : "(null)");
    pthread_mutex_unlock(&l->mu);
}

static int closelog_calls(closelog *l, ct_err *reason, char *msg, size_t cap)
{
    int n;
    pthread_mutex_lock(&l->mu);
    n = l->calls;
    if (reason)
        *reason = l->reason;
    if (msg)
        snprintf(msg, cap, "%s", l->msg);
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* The test handler: the first byte of a request says what to do        */
/*   E... (or anything else) answer the request reversed, XOR 0xA5        */
/*   X... fail with CT_E_DENIED, message "denied: ..."                    */
/*   S<ms> wait that long (until cancelled), then answer                  */
/*   B<n> answer n bytes                                                   */
/*   W    wait for the gate, then answer                                   */
/*   Z    empty answer                                                     */
/*   N    ask the peer "Enested" from inside the handler, answer with that */
/*   C    ct_session_close from inside the handler, then answer           */
/*   D    defer: park the reply handle in hstate for the test to answer   */
/*   d    defer and answer through the handle before returning            */

#define MAX_PARKED 16

typedef struct hstate {
    atomic_int calls, running, cancelled_seen;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_open;
    ct_session_reply *parked[MAX_PARKED]; /* 'D' requests' handles (under mu) */
    char parked_req[MAX_PARKED][32];
    int nparked;
} hstate;

static void hstate_init(hstate *h)
{
    atomic_init(&h->calls, 0);
    atomic_init(&h->running, 0);
    atomic_init(&h->cancelled_seen, 0);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->gate_open = 0;
    h->nparked = 0;
}

static void hstate_destroy(hstate *h)
{
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
}

static void gate_open(hstate *h)
{
    pthread_mutex_lock(&h->mu);
    h->gate_open = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static uint8_t *transform(const uint8_t *p, size_t n)
{
    uint8_t *o = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(o);
    for (size_t i = 0; i < n; i++)
        o[i] = p[n - 1 - i] ^ 0xA5;
    return o;
}

static int is_transform(const uint8_t *req, size_t n, const uint8_t *resp, size_t rn)
{
    if (rn != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (resp[i] != (req[n - 1 - i] ^ 0xA5))
            return 0;
    return 1;
}

static long arg_num(const uint8_t *req, size_t n)
{
    char buf[32];
    size_t k = n - 1 < sizeof buf - 1 ? n - 1 : sizeof buf - 1;
    memcpy(buf, req + 1, k);
    buf[k] = '\0';
    return strtol(buf, NULL, 10);
}

static ct_err test_handler(void *arg, ct_session *s, uint32_t stream, const uint8_t *req,
                           size_t n, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    hstate *h = arg;
    char cmd = n ? (char)req[0] : 'E';

    atomic_fetch_add(&h->calls, 1);
    switch (cmd) {
    case 'X':
        snprintf(err->message, sizeof err->message, "denied: %.*s", (int)(n - 1),
                 (const char *)req + 1);
        err->code = CT_E_DENIED;
        return CT_E_DENIED;
    case 'S': {
        int64_t until = now_ms() + arg_num(req, n);
        while (now_ms() < until) {
            if (ct_session_cancelled(s, stream)) {
                atomic_fetch_add(&h->cancelled_seen, 1);
                break;
            }
            sleep_ms(5);
        }
        break;
    }
    case 'B': {
        long k = arg_num(req, n);
        *resp = malloc((size_t)k);
        if (!*resp)
            return CT_E_NOMEM;
        memset(*resp, 'b', (size_t)k);
        *resp_len = (size_t)k;
        return CT_OK;
    }
    case 'W':
        atomic_fetch_add(&h->running, 1);
        pthread_mutex_lock(&h->mu);
        while (!h->gate_open)
            pthread_cond_wait(&h->cv, &h->mu);
        pthread_mutex_unlock(&h->mu);
        atomic_fetch_sub(&h->running, 1);
        break;
    case 'Z':
        *resp = NULL;
        *resp_len = 0;
        return CT_OK;
    case 'N':
        return ct_session_request(s, "Enested", 7, WAIT_MS, resp, resp_len, err);
    case 'C': {
        ct_err rc = ct_session_close(s, WAIT_MS, err);
        if (rc != CT_OK)
            return rc;
        break;
    }
    case 'D':
    case 'd': {
        ct_session_reply *r = NULL;
        ct_err rc = ct_session_defer(s, stream, &r, err);
        ct_session_reply *again = NULL;
        if (rc != CT_OK)
            return rc;
        /* a second defer of the same request is refused */
        ck_assert_int_eq(ct_session_defer(s, stream, &again, NULL), CT_E_INVALID);
        ck_assert_ptr_null(again);
        if (cmd == 'd') {
            uint8_t *t = transform(req, n);
            ct_session_reply_send(r, CT_OK, t, n, NULL);
            free(t);
        } else {
            pthread_mutex_lock(&h->mu);
            ck_assert_int_lt(h->nparked, MAX_PARKED);
            snprintf(h->parked_req[h->nparked], sizeof h->parked_req[0], "%.*s",
                     (int)(n < 31 ? n : 31), (const char *)req);
            h->parked[h->nparked++] = r;
            pthread_mutex_unlock(&h->mu);
        }
        /* whatever the handler returns now is discarded */
        *resp = malloc(3);
        memcpy(*resp, "bad", 3);
        *resp_len = 3;
        return CT_E_INTERNAL;
    }
    default:
        break;
    }
    *resp = transform(req, n);
    *resp_len = n;
    return CT_OK;
}

/* ------------------------------------------------------------------ */
/* Session pairs                                                        */

static const ct_pair_factory *const factories[] = {
    &ct_factory_pipe,      &ct_factory_tcp4,      &ct_tls_factory_pipe,
    &ct_tls_factory_tcp,   &ct_tls_factory_tls,   &ct_tls_factory_tls_tcp,
};
#define NFACTORIES ((int)(sizeof factories / sizeof factories[0]))
/* Indices used by the tests that do not loop over all of them. */
#define F_PIPE 0
#define F_TCP 1
#define F_TLS_TCP 3
#define F_TLS_TLS_TCP 5

typedef struct spair {
    ct_ctx *ctx;
    const ct_pair_factory *f;
    void *fx;
    ct_conn *cc, *sc;         /* the raw ends before sessions take them */
    ct_session_options oa, ob; /* a: client end (initiator), b: server end */
    ct_session *a, *b;
    closelog la, lb;
    hstate ha, hb;
} spair;

/* Connects a pair of the factory's kind; sessions not yet started. */
static void spair_init(spair *p, int fi)
{
    ct_error err;
    ct_session_options d = CT_SESSION_OPTIONS_INIT;

    memset(p, 0, sizeof *p);
    p->ctx = ct_test_ctx();
    p->f = factories[fi];
    pthread_mutex_init(&p->la.mu, NULL);
    pthread_mutex_init(&p->lb.mu, NULL);
    hstate_init(&p->ha);
    hstate_init(&p->hb);
    ck_assert_msg(!p->f->setup || p->f->setup(p->ctx, &p->fx) == 0, "%s: setup failed",
                  p->f->name);
    ck_ok(p->f->make_pair(p->ctx, p->fx, &p->cc, &p->sc, &err), &err);
    p->oa = d;
    p->oa.initiator = 1;
    p->oa.handler = test_handler;
    p->oa.handler_arg = &p->ha;
    p->oa.on_close = on_close_cb;
    p->oa.on_close_arg = &p->la;
    p->ob = d;
    p->ob.initiator = 0;
    p->ob.handler = test_handler;
    p->ob.handler_arg = &p->hb;
    p->ob.on_close = on_close_cb;
    p->ob.on_close_arg = &p->lb;
}

static void spair_start_a(spair *p)
{
    ct_error err;
    ck_ok(ct_session_open(p->ctx, p->cc, &p->oa, &p->a, &err), &err);
    p->cc = NULL;
}

static void spair_start(spair *p)
{
    ct_error err;
    spair_start_a(p);
    ck_ok(ct_session_open(p->ctx, p->sc, &p->ob, &p->b, &err), &err);
    p->sc = NULL;
}

static void spair_free(spair *p)
{
    ct_session_free(p->a);
    ct_session_free(p->b);
    ct_conn_free(p->cc);
    ct_conn_free(p->sc);
    if (p->f->teardown)
        p->f->teardown(p->fx);
    hstate_destroy(&p->ha);
    hstate_destroy(&p->hb);
    pthread_mutex_destroy(&p->la.mu);
    pthread_mutex_destroy(&p->lb.mu);
    ct_ctx_free(p->ctx);
}

/* Closes a cleanly and checks that both ends saw a clean end exactly once. */
static void spair_close_clean(spair *p)
{
    ct_error err;
    ct_err r;
    char msg[256];
    ck_ok(ct_session_close(p->a, WAIT_MS, &err), &err);
    ck_ok(ct_session_close(p->a, WAIT_MS, &err), &err); /* idempotent */
    ck_ok(ct_session_wait(p->b, WAIT_MS, &err), &err);
    ck_assert_int_eq(closelog_calls(&p->la, &r, msg, sizeof msg), 1);
    ck_assert_msg(r == CT_OK, "a ended with %s: %s", ct_err_name(r), msg);
    ck_assert_int_eq(closelog_calls(&p->lb, &r, msg, sizeof msg), 1);
    ck_assert_msg(r == CT_OK, "b ended with %s: %s", ct_err_name(r), msg);
    ck_assert_int_eq(ct_session_is_open(p->a), 0);
    ck_assert_int_eq(ct_session_is_open(p->b), 0);
}

/* One request that must succeed with the transformed answer. */
static void echo_ok(ct_session *s, const void *req, size_t n)
{
    uint8_t *resp = NULL;
    size_t rn = 0;
    ct_error err;
    ck_ok(ct_session_request(s, req, n, WAIT_MS, &resp, &rn, &err), &err);
    ck_assert_msg(is_transform(req, n, resp, rn), "answer of %zu bytes to %zu is wrong", rn, n);
    if (n == 0)
        ck_assert_ptr_null(resp);
    ct_free(resp);
}

/* ------------------------------------------------------------------ */
/* Both directions, every transport                                     */

START_TEST(echo_both_ways)
{
    spair p;
    uint8_t *resp = (uint8_t *)&resp;
    size_t rn = 99;
    ct_session_stats st;
    ct_error err;

    spair_init(&p, _i);
    spair_start(&p);
    ck_assert_int_eq(ct_session_is_open(p.a), 1);
    echo_ok(p.a, "Ehello bridge", 13);
    echo_ok(p.b, "Ehello operator", 15);
    echo_ok(p.a, NULL, 0); /* empty request, empty answer */
    ck_ok(ct_session_request(p.b, "Z", 1, WAIT_MS, &resp, &rn, &err), &err);
    ck_assert_ptr_null(resp);
    ck_assert_uint_eq(rn, 0);
    /* a handler may make requests itself (to the side that asked) */
    ck_ok(ct_session_request(p.a, "N", 1, WAIT_MS, &resp, &rn, &err), &err);
    ck_assert(is_transform((const uint8_t *)"Enested", 7, resp, rn));
    ct_free(resp);
    ct_session_get_stats(p.a, &st);
    ck_assert_uint_eq(st.requests_sent, 3);
    ck_assert_uint_eq(st.responses_received, 3);
    ck_assert_uint_eq(st.requests_received, 3); /* "Ehello operator", "Z", "Enested" */
    ck_assert_uint_eq(st.responses_sent, 3);
    ck_assert_uint_gt(st.bytes_sent, 3 * CT_SESSION_HEADER_LEN);
    ck_assert_uint_gt(st.bytes_received, 3 * CT_SESSION_HEADER_LEN);
    spair_close_clean(&p);
    /* after the end: CT_E_CLOSED, with the reason */
    ck_err(ct_session_request(p.a, "E", 1, WAIT_MS, &resp, &rn, &err), CT_E_CLOSED, &err);
    ck_err(ct_session_request(p.b, "E", 1, WAIT_MS, &resp, &rn, &err), CT_E_CLOSED, &err);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Many threads, many requests in flight, payloads checked              */

typedef struct worker {
    ct_session *s;
    int id, n;
    int failures;
    char first[300];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    uint8_t buf[2048];
    for (int i = 0; i < w->n; i++) {
        size_t n = 1 + (size_t)((unsigned)(w->id * 7919 + i * 104729) % 2000u);
        uint8_t *resp = NULL;
        size_t rn = 0;
        ct_error err;
        ct_err rc;
        buf[0] = 'E';
        for (size_t k = 1; k < n; k++)
            buf[k] = (uint8_t)(w->id * 31 + i * 17 + (int)k);
        rc = ct_session_request(w->s, buf, n, 20000, &resp, &rn, &err);
        if (rc != CT_OK || !is_transform(buf, n, resp, rn)) {
            if (!w->failures++)
                snprintf(w->first, sizeof w->first, "request %d: %s %s", i, ct_err_name(rc),
                         rc == CT_OK ? "(wrong answer)" : err.message);
        }
        ct_free(resp);
    }
    ct_thread_cleanup();
    return NULL;
}

static void run_workers(ct_session *a, ct_session *b, int nthreads, int per)
{
    pthread_t th[64];
    worker w[64];
    ck_assert_int_le(nthreads, 64);
    for (int i = 0; i < nthreads; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = (i % 2 || !b) ? a : b; /* half of them ask the other way */
        w[i].id = i;
        w[i].n = per;
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < nthreads; i++)
        ck_assert_msg(w[i].failures == 0, "thread %d: %d failures, first: %s", i, w[i].failures,
                      w[i].first);
}

START_TEST(concurrent_requests)
{
    spair p;
    int vg = ct_test_under_valgrind();
    ct_session_stats sa, sb;

    spair_init(&p, _i);
    spair_start(&p);
    run_workers(p.a, p.b, vg ? 8 : 64, vg ? 10 : 200);
    ct_session_get_stats(p.a, &sa);
    ct_session_get_stats(p.b, &sb);
    ck_assert_uint_eq(sa.requests_sent, sb.requests_received);
    ck_assert_uint_eq(sb.requests_sent, sa.requests_received);
    ck_assert_uint_eq(sa.requests_sent + sb.requests_sent, vg ? 80u : 12800u);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* max_frame                                                            */

START_TEST(frame_size_limits)
{
    static const int fis[] = {F_PIPE, F_TLS_TCP, F_TLS_TLS_TCP};
    spair p;
    uint8_t *big, *resp = NULL;
    size_t mf = CT_SESSION_DEFAULT_MAX_FRAME, rn = 0;
    char cmd[32];
    ct_error err;

    spair_init(&p, fis[_i]);
    spair_start(&p);
    big = malloc(mf + 1);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < mf + 1; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 11));
    big[0] = 'E';
    echo_ok(p.a, big, mf); /* exactly max_frame both ways */
    echo_ok(p.b, big, mf);
    ck_err(ct_session_request(p.a, big, mf + 1, WAIT_MS, &resp, &rn, &err), CT_E_TOOBIG, &err);
    ck_assert_ptr_null(resp);
    /* an answer above max_frame becomes an error on the requester's side */
    snprintf(cmd, sizeof cmd, "B%zu", mf + 1);
    ck_err(ct_session_request(p.a, cmd, strlen(cmd), WAIT_MS, &resp, &rn, &err), CT_E_TOOBIG,
           &err);
    ck_assert_msg(strstr(err.message, "max_frame") != NULL, "%s", err.message);
    snprintf(cmd, sizeof cmd, "B%zu", mf);
    ck_ok(ct_session_request(p.a, cmd, strlen(cmd), WAIT_MS, &resp, &rn, &err), &err);
    ck_assert_uint_eq(rn, mf);
    ck_assert_int_eq(resp[mf - 1], 'b');
    ct_free(resp);
    free(big);
    ck_assert_int_eq(ct_session_is_open(p.a), 1);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* A small max_frame: the same rules at 1 KiB. */
START_TEST(small_max_frame)
{
    spair p;
    uint8_t buf[1025];
    uint8_t *resp = NULL;
    size_t rn = 0;
    ct_error err;

    spair_init(&p, F_TCP);
    p.oa.max_frame = p.ob.max_frame = 1024;
    spair_start(&p);
    memset(buf, 'E', sizeof buf);
    echo_ok(p.a, buf, 1024);
    ck_err(ct_session_request(p.a, buf, 1025, WAIT_MS, &resp, &rn, &err), CT_E_TOOBIG, &err);
    ck_err(ct_session_request(p.a, "B1025", 5, WAIT_MS, &resp, &rn, &err), CT_E_TOOBIG, &err);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors from the handler and from the peer                            */

START_TEST(handler_errors)
{
    static const int fis[] = {F_PIPE, F_TLS_TCP};
    spair p;
    uint8_t *resp = NULL;
    size_t rn = 0;
    ct_error err;

    spair_init(&p, fis[_i]);
    p.ob.handler = NULL; /* b serves nothing */
    spair_start(&p);
    ck_err(ct_session_request(p.b, "Xno secret for you", 18, WAIT_MS, &resp, &rn, &err),
           CT_E_DENIED, &err);
    ck_assert_str_eq(err.message, "denied: no secret for you");
    ck_assert_ptr_null(resp);
    ck_err(ct_session_request(p.a, "Ehello", 6, WAIT_MS, &resp, &rn, &err), CT_E_UNSUPPORTED,
           &err);
    ck_assert(strlen(err.message) > 0);
    /* the session is fine after errors */
    echo_ok(p.b, "Estill there", 12);
    ck_err(ct_session_request(p.a, "E", 1, 0, &resp, &rn, &err), CT_E_INVALID, &err);
    ck_err(ct_session_request(p.a, "E", 1, WAIT_MS, NULL, &rn, &err), CT_E_INVALID, &err);
    ck_err(ct_session_request(p.a, NULL, 1, WAIT_MS, &resp, &rn, &err), CT_E_INVALID, &err);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Timeouts and cancellation                                            */

START_TEST(timeout_cancels)
{
    static const int fis[] = {F_PIPE, F_TLS_TCP};
    spair p;
    uint8_t *resp = NULL;
    size_t rn = 0;
    int64_t t0, el;
    ct_error err;
    ct_session_stats st;

    spair_init(&p, fis[_i]);
    spair_start(&p);
    t0 = now_ms();
    ck_err(ct_session_request(p.a, "S3000", 5, 150, &resp, &rn, &err), CT_E_TIMEOUT, &err);
    el = now_ms() - t0;
    ck_assert_msg(el >= 140 && el < 2000, "timed out after %lld ms", (long long)el);
    /* the handler learns that its requester gave up (CANCEL frame) */
    t0 = now_ms();
    while (atomic_load(&p.hb.cancelled_seen) == 0 && now_ms() - t0 < WAIT_MS)
        sleep_ms(5);
    ck_assert_int_eq(atomic_load(&p.hb.cancelled_seen), 1);
    /* and its late answer (if any) does not disturb anything */
    sleep_ms(50);
    ck_assert_int_eq(ct_session_is_open(p.a), 1);
    echo_ok(p.a, "Eafter the timeout", 18);
    ct_session_get_stats(p.b, &st);
    ck_assert_uint_eq(st.responses_sent, 1); /* the cancelled one was not answered */
    ck_assert_int_eq(ct_session_cancelled(p.b, 12345), 1); /* unknown stream */
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* max_streams                                                          */

typedef struct req_job {
    ct_session *s;
    const char *req;
    int timeout_ms;
    ct_err rc;
    char answer[64]; /* the start of the answer, NUL-terminated */
    char msg[256];    /* the error message */
    pthread_t th;
} req_job;

static void *req_main(void *arg)
{
    req_job *j = arg;
    uint8_t *resp = NULL;
    size_t rn = 0;
    ct_error err;
    j->rc = ct_session_request(j->s, j->req, strlen(j->req), j->timeout_ms, &resp, &rn, &err);
    if (j->rc == CT_OK)
        snprintf(j->answer, sizeof j->answer, "%.*s", (int)(rn < 63 ? rn : 63),
                 resp ? (const char *)resp : "");
    else
        snprintf(j->msg, sizeof j->msg, "%s", err.message);
    ct_free(resp);
    ct_thread_cleanup();
    return NULL;
}

static void start_job_t(req_job *j, ct_session *s, const char *req, int timeout_ms)
{
    j->s = s;
    j->req = req;
    j->timeout_ms = timeout_ms;
    j->rc = CT_E_INTERNAL;
    j->answer[0] = '\0';
    ck_assert_int_eq(pthread_create(&j->th, NULL, req_main, j), 0);
}

static void start_job(req_job *j, ct_session *s, const char *req)
{
    start_job_t(j, s, req, WAIT_MS);
}

static void wait_running(hstate *h, int n)
{
    int64_t t0 = now_ms();
    while (atomic_load(&h->running) < n && now_ms() - t0 < WAIT_MS)
        sleep_ms(2);
    ck_assert_int_eq(atomic_load(&h->running), n);
}

/* Waits (bounded) until the handler has been entered at least n times. */
static void wait_calls(hstate *h, int n)
{
    int64_t t0 = now_ms();
    while (atomic_load(&h->calls) < n && now_ms() - t0 < WAIT_MS)
        sleep_ms(2);
    ck_assert_int_ge(atomic_load(&h->calls), n);
}

START_TEST(max_streams_local)
{
    spair p;
    req_job j[4];
    uint8_t *resp = NULL;
    size_t rn = 0;
    int64_t t0;
    ct_error err;

    spair_init(&p, F_PIPE);
    p.oa.max_streams = 4;
    spair_start(&p);
    for (int i = 0; i < 4; i++)
        start_job(&j[i], p.a, "W");
    wait_running(&p.hb, 4);
    t0 = now_ms();
    ck_err(ct_session_request(p.a, "E", 1, WAIT_MS, &resp, &rn, &err), CT_E_AGAIN, &err);
    ck_assert_int_lt(now_ms() - t0, 1000);
    echo_ok(p.b, "Ethe other direction is not limited", 35);
    gate_open(&p.hb);
    for (int i = 0; i < 4; i++) {
        pthread_join(j[i].th, NULL);
        ck_assert_int_eq(j[i].rc, CT_OK);
    }
    echo_ok(p.a, "Efree again", 11);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

START_TEST(max_streams_peer)
{
    spair p;
    req_job j[6];
    int ok = 0, again = 0;

    spair_init(&p, F_TLS_TCP);
    p.ob.max_streams = 2; /* b serves at most 2 of a's requests at once */
    spair_start(&p);
    for (int i = 0; i < 2; i++)
        start_job(&j[i], p.a, "W");
    wait_running(&p.hb, 2);
    for (int i = 2; i < 6; i++)
        start_job(&j[i], p.a, "W");
    for (int i = 2; i < 6; i++) {
        pthread_join(j[i].th, NULL);
        ck_assert_msg(j[i].rc == CT_E_AGAIN, "got %s", ct_err_name(j[i].rc));
    }
    gate_open(&p.hb);
    for (int i = 0; i < 2; i++) {
        pthread_join(j[i].th, NULL);
        ok += j[i].rc == CT_OK;
        again += j[i].rc == CT_E_AGAIN;
    }
    ck_assert_int_eq(ok, 2);
    ck_assert_int_eq(again, 0);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Pings, dead peers                                                    */

START_TEST(ping_rtt)
{
    static const int fis[] = {F_PIPE, F_TLS_TCP};
    spair p;
    ct_session_stats st;
    int64_t t0;

    spair_init(&p, fis[_i]);
    p.oa.ping_interval_ms = p.ob.ping_interval_ms = 50;
    p.oa.dead_after_ms = p.ob.dead_after_ms = 2000;
    spair_start(&p);
    t0 = now_ms();
    do {
        sleep_ms(20);
        ct_session_get_stats(p.a, &st);
    } while ((st.last_rtt_us < 0 || st.pings_sent < 3) && now_ms() - t0 < WAIT_MS);
    ck_assert_uint_ge(st.pings_sent, 3);
    ck_assert_msg(st.last_rtt_us >= 0 && st.last_rtt_us < 1000000, "rtt %lld us",
                  (long long)st.last_rtt_us);
    /* idle sessions that answer pings stay up well past dead_after_ms/... */
    ck_assert_int_eq(ct_session_is_open(p.a), 1);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* A session whose peer holds the connection but never reads or answers. */
START_TEST(dead_peer)
{
    static const int fis[] = {F_TCP, F_TLS_TCP};
    spair p;
    req_job j;
    ct_error err;
    ct_err r;
    char msg[256];
    int64_t t0, el;

    spair_init(&p, fis[_i]);
    p.oa.ping_interval_ms = 50;
    p.oa.dead_after_ms = 300;
    spair_start_a(&p); /* p.sc stays raw and silent */
    t0 = now_ms();
    start_job(&j, p.a, "Enever answered");
    ck_err(ct_session_wait(p.a, WAIT_MS, &err), CT_E_TIMEOUT, &err);
    el = now_ms() - t0;
    ck_assert_msg(el >= 250 && el < 3000, "declared dead after %lld ms", (long long)el);
    ck_assert_msg(strstr(err.message, "unresponsive") != NULL, "%s", err.message);
    ck_assert_int_eq(closelog_calls(&p.la, &r, msg, sizeof msg), 1);
    ck_assert_int_eq(r, CT_E_TIMEOUT);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_E_CLOSED);
    ck_assert_int_eq(ct_session_is_open(p.a), 0);
    /* close after the end reports the end reason */
    ck_err(ct_session_close(p.a, 100, &err), CT_E_TIMEOUT, &err);
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Close and abort                                                      */

START_TEST(close_waits_for_outstanding)
{
    static const int fis[] = {F_PIPE, F_TLS_TCP};
    spair p;
    req_job j[4];
    uint8_t *resp = NULL;
    size_t rn = 0;
    ct_error err;

    spair_init(&p, fis[_i]);
    spair_start(&p);
    /* requests both ways are in the handlers when the close starts */
    start_job(&j[0], p.a, "S200");
    start_job(&j[1], p.a, "S250");
    start_job(&j[2], p.b, "S200");
    start_job(&j[3], p.b, "S250");
    /* the close must start while all four are in their handlers (a fixed
     * sleep was too short under valgrind on a loaded machine) */
    wait_calls(&p.ha, 2);
    wait_calls(&p.hb, 2);
    ck_ok(ct_session_close(p.a, WAIT_MS, &err), &err);
    for (int i = 0; i < 4; i++) {
        pthread_join(j[i].th, NULL);
        ck_assert_msg(j[i].rc == CT_OK, "request %d: %s", i, ct_err_name(j[i].rc));
    }
    ck_assert_int_eq(atomic_load(&p.ha.cancelled_seen) + atomic_load(&p.hb.cancelled_seen), 0);
    ck_err(ct_session_request(p.a, "E", 1, WAIT_MS, &resp, &rn, &err), CT_E_CLOSED, &err);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* The peer starts the close while we have requests outstanding. */
START_TEST(peer_closes)
{
    spair p;
    req_job j;
    ct_error err;

    spair_init(&p, F_TCP);
    spair_start(&p);
    start_job(&j, p.a, "S150");
    wait_calls(&p.hb, 1);
    ck_ok(ct_session_close(p.b, WAIT_MS, &err), &err);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_OK);
    ck_ok(ct_session_wait(p.a, WAIT_MS, &err), &err);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/* Closing from inside a handler starts the close without waiting for it. */
START_TEST(close_from_handler)
{
    spair p;
    ct_error err;

    spair_init(&p, F_PIPE);
    spair_start(&p);
    echo_ok(p.a, "C", 1);
    ck_ok(ct_session_wait(p.b, WAIT_MS, &err), &err);
    ck_ok(ct_session_wait(p.a, WAIT_MS, &err), &err);
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

START_TEST(close_deadline)
{
    spair p;
    req_job j;
    ct_error err;
    ct_err r;
    int64_t t0, el;

    spair_init(&p, F_TLS_TCP);
    spair_start(&p);
    start_job(&j, p.a, "S5000");
    wait_calls(&p.hb, 1);
    t0 = now_ms();
    ck_err(ct_session_close(p.a, 150, &err), CT_E_TIMEOUT, &err);
    el = now_ms() - t0;
    ck_assert_msg(el >= 140 && el < 2000, "close returned after %lld ms", (long long)el);
    ck_assert_msg(strstr(err.message, "outstanding") != NULL, "%s", err.message);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_E_CLOSED);
    /* b sees the connection go away without a close_notify */
    r = ct_session_wait(p.b, WAIT_MS, &err);
    ck_assert_msg(r == CT_E_RESET || r == CT_E_CLOSED, "b ended with %s", ct_err_name(r));
    ck_assert_int_eq(closelog_calls(&p.la, NULL, NULL, 0), 1);
    ck_assert_int_eq(closelog_calls(&p.lb, NULL, NULL, 0), 1);
    ct_session_free(p.a); /* after the end: on_close is not called again */
    ct_session_free(p.b);
    p.a = p.b = NULL;
    ck_assert_int_eq(closelog_calls(&p.la, NULL, NULL, 0), 1);
    ck_assert_int_eq(closelog_calls(&p.lb, NULL, NULL, 0), 1);
    spair_free(&p);
}
END_TEST

/* The peer aborts (ct_session_free without close) under an outstanding request. */
START_TEST(peer_abort)
{
    static const int fis[] = {F_TCP, F_TLS_TCP, F_TLS_TLS_TCP};
    spair p;
    req_job j;
    ct_error err;
    ct_err r;
    int64_t t0, el;

    spair_init(&p, fis[_i]);
    spair_start(&p);
    start_job(&j, p.a, "S5000");
    wait_calls(&p.hb, 1);
    t0 = now_ms();
    ct_session_free(p.b); /* its handler notices the end and returns */
    p.b = NULL;
    pthread_join(j.th, NULL);
    el = now_ms() - t0;
    ck_assert_int_eq(j.rc, CT_E_CLOSED);
    ck_assert_msg(el < 2000, "the requester noticed after %lld ms", (long long)el);
    r = ct_session_wait(p.a, WAIT_MS, &err);
    ck_assert_msg(r == CT_E_RESET || r == CT_E_CLOSED, "a ended with %s: %s", ct_err_name(r),
                  err.message);
    ck_assert_int_eq(closelog_calls(&p.la, NULL, NULL, 0), 1);
    ck_assert_int_eq(closelog_calls(&p.lb, &r, NULL, 0), 1);
    ck_assert_int_eq(r, CT_E_CLOSED); /* b: freed while up */
    spair_free(&p);
}
END_TEST

/* Free without close on an idle session; then close after free is not possible,
 * but close then free must not leak (every test ends that way). */
START_TEST(free_without_close)
{
    spair p;
    ct_error err;
    ct_err r;

    spair_init(&p, F_PIPE);
    spair_start(&p);
    echo_ok(p.a, "E", 1);
    ct_session_free(p.a);
    p.a = NULL;
    ck_assert_int_eq(closelog_calls(&p.la, &r, NULL, 0), 1);
    ck_assert_int_eq(r, CT_E_CLOSED);
    r = ct_session_wait(p.b, WAIT_MS, &err);
    ck_assert_msg(r == CT_E_CLOSED || r == CT_E_RESET, "%s", ct_err_name(r));
    ck_assert_int_eq(closelog_calls(&p.lb, NULL, NULL, 0), 1);
    ct_session_free(NULL);
    spair_free(&p);
}
END_TEST

/* Waits (bounded) until n deferred handles are parked in h. */
static void wait_parked(hstate *h, int n)
{
    int64_t t0 = now_ms();
    int k = 0;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        k = h->nparked;
        pthread_mutex_unlock(&h->mu);
        if (k >= n || now_ms() - t0 >= WAIT_MS)
            break;
        sleep_ms(2);
    }
    ck_assert_int_eq(k, n);
}

/*
 * Deferred answers: more requests parked than there are handler threads
 * while other requests are still served; answers and errors sent later
 * from the test thread reach the right requesters; a reply sent from inside
 * the handler; defer outside a handler is refused.
 */
START_TEST(deferred_answers)
{
    enum { N = 10 };
    static const char *reqs[N] = {"D0", "D1", "D2", "D3", "D4",
                                  "D5", "D6", "D7", "D8", "D9"};
    spair p;
    req_job j[N];
    ct_session_reply *r = NULL;
    ct_error err;
    int i;

    spair_init(&p, _i == 0 ? F_PIPE : F_TLS_TCP);
    p.ob.handler_threads = 2;
    spair_start(&p);
    for (i = 0; i < N; i++)
        start_job(&j[i], p.a, reqs[i]);
    wait_parked(&p.hb, N);
    /* two handler threads, ten parked requests: they are free again */
    echo_ok(p.a, "Estill served", 13);
    echo_ok(p.a, "dimmediate", 10);
    ck_assert_int_eq(ct_session_defer(p.b, 999, &r, &err), CT_E_INVALID);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(ct_session_defer(NULL, 1, &r, NULL), CT_E_INVALID);
    ct_session_reply_send(NULL, CT_OK, NULL, 0, NULL); /* no-op */
    /* answer in reverse order; D3 gets an error */
    for (i = N - 1; i >= 0; i--) {
        const char *q = p.hb.parked_req[i];
        ck_assert_int_eq(ct_session_reply_cancelled(p.hb.parked[i]), 0);
        if (strcmp(q, "D3") == 0) {
            ct_session_reply_send(p.hb.parked[i], CT_E_DENIED, NULL, 0, "no D3 for you");
        } else {
            char a[40];
            int n = snprintf(a, sizeof a, "answer to %s", q);
            ct_session_reply_send(p.hb.parked[i], CT_OK, (const uint8_t *)a, (size_t)n, NULL);
        }
        p.hb.parked[i] = NULL;
    }
    for (i = 0; i < N; i++) {
        char want[40];
        pthread_join(j[i].th, NULL);
        if (i == 3) {
            ck_assert_int_eq(j[i].rc, CT_E_DENIED);
            ck_assert_str_eq(j[i].msg, "no D3 for you");
            continue;
        }
        ck_assert_msg(j[i].rc == CT_OK, "%s: %s (%s)", reqs[i], ct_err_name(j[i].rc), j[i].msg);
        snprintf(want, sizeof want, "answer to %s", reqs[i]);
        ck_assert_str_eq(j[i].answer, want);
    }
    spair_close_clean(&p);
    spair_free(&p);
}
END_TEST

/*
 * A deferred request whose requester gave up is reported cancelled and its
 * answer dropped; a clean close waits for a deferred request; a handle that
 * outlives ct_session_free is still safe to send (and frees the session).
 */
START_TEST(deferred_cancel_and_free)
{
    spair p;
    req_job j, k;
    ct_session_reply *h;
    int64_t t0;

    spair_init(&p, F_PIPE);
    spair_start(&p);
    /* requester gives up after 100 ms */
    start_job_t(&j, p.a, "Dgive-up", 100);
    wait_parked(&p.hb, 1);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_E_TIMEOUT);
    t0 = now_ms();
    while (!ct_session_reply_cancelled(p.hb.parked[0]) && now_ms() - t0 < WAIT_MS)
        sleep_ms(2);
    ck_assert_int_eq(ct_session_reply_cancelled(p.hb.parked[0]), 1);
    ct_session_reply_send(p.hb.parked[0], CT_OK, (const uint8_t *)"late", 4, NULL);
    echo_ok(p.a, "Eafter", 6); /* the late answer did not disturb the session */

    /* outstanding deferred request, then the serving side is freed */
    start_job(&k, p.a, "Dorphan");
    wait_parked(&p.hb, 2);
    h = p.hb.parked[1];
    ct_session_free(p.b);
    p.b = NULL;
    pthread_join(k.th, NULL);
    ck_assert_msg(k.rc == CT_E_CLOSED || k.rc == CT_E_RESET, "%s", ct_err_name(k.rc));
    ck_assert_int_eq(ct_session_reply_cancelled(h), 1);
    ct_session_reply_send(h, CT_OK, (const uint8_t *)"too late", 8, NULL); /* frees b */
    spair_free(&p);
}
END_TEST

START_TEST(open_arguments)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *a = NULL, *b = NULL;
    ct_session *s = (ct_session *)&s;
    ct_session_options o = CT_SESSION_OPTIONS_INIT;
    ct_session_stats st;
    uint8_t x;
    ct_error err;

    ck_err(ct_session_open(ctx, NULL, NULL, &s, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(s);
    /* the connection is taken (freed) on every failure: the peer sees it go */
    ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
    o.version = 99;
    ck_err(ct_session_open(ctx, a, &o, &s, &err), CT_E_VERSION, &err);
    ck_err(ct_conn_recv(b, &x, 1, NULL, 1000, &err), CT_E_CLOSED, &err);
    ct_conn_free(b);
    ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
    o.version = CT_SESSION_OPTIONS_VERSION;
    o.max_frame = CT_SESSION_MAX_FRAME_LIMIT + 1;
    ck_err(ct_session_open(ctx, a, &o, &s, &err), CT_E_INVALID, &err);
    ct_conn_free(b);
    ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
    o.max_frame = 10;
    ck_err(ct_session_open(ctx, a, &o, &s, &err), CT_E_INVALID, &err);
    ct_conn_free(b);
    ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
    ck_err(ct_session_open(ctx, a, &o, NULL, &err), CT_E_INVALID, &err);
    ct_conn_free(b);
    /* NULL options: all defaults */
    ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
    ck_ok(ct_session_open(ctx, a, NULL, &s, &err), &err);
    ck_assert_int_eq(ct_session_is_open(s), 1);
    ct_session_get_stats(s, &st);
    ck_assert_int_eq(st.last_rtt_us, -1); /* no ping yet (default interval: 15 s) */
    ck_assert_uint_eq(st.pings_sent, 0);
    ck_err(ct_session_wait(s, 20, &err), CT_E_TIMEOUT, &err);
    ct_session_free(s);
    ct_conn_free(b);
    ck_err(ct_session_close(NULL, 0, &err), CT_E_INVALID, &err);
    ck_err(ct_session_wait(NULL, 0, &err), CT_E_INVALID, &err);
    ck_assert_int_eq(ct_session_is_open(NULL), 0);
    ct_session_free(NULL);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A raw peer: frames written by hand                                   */

static void put_frame(ct_conn *c, uint8_t type, uint8_t flags, uint16_t reserved,
                      uint32_t stream, uint32_t len, const void *payload, size_t n)
{
    uint8_t h[CT_SESSION_HEADER_LEN + 64];
    ct_error err;
    ck_assert_uint_le(n, 64);
    ctp_sframe_put(h, type, flags, stream, len);
    h[6] = (uint8_t)(reserved >> 8);
    h[7] = (uint8_t)reserved;
    if (n)
        memcpy(h + CT_SESSION_HEADER_LEN, payload, n);
    /* one send: the session may refuse the header and go before a payload sent apart */
    ck_ok(ct_conn_send_all(c, h, CT_SESSION_HEADER_LEN + n, NULL, WAIT_MS, &err), &err);
}

/* Reads one frame (payload into buf, at most cap). */
static void get_frame(ct_conn *c, ctp_sframe *f, uint8_t *buf, size_t cap)
{
    uint8_t h[CT_SESSION_HEADER_LEN];
    ct_error err;
    ck_ok(ct_conn_recv_exact(c, h, sizeof h, NULL, WAIT_MS, &err), &err);
    ctp_sframe_get(h, f);
    ck_assert_uint_le(f->len, cap);
    if (f->len)
        ck_ok(ct_conn_recv_exact(c, buf, f->len, NULL, WAIT_MS, &err), &err);
}

/* A session `a` (initiator) facing the raw server end p->sc. */
static void raw_start(spair *p, int fi)
{
    spair_init(p, fi);
    p->oa.ping_interval_ms = -1;
    p->oa.dead_after_ms = -1;
    spair_start_a(p);
}

/* Expects `a` to end with CT_E_PROTO, message containing `what`, and the raw end to see it go. */
static void expect_proto(spair *p, const char *what)
{
    ct_error err;
    ct_err r;
    uint8_t x[64];
    size_t got;
    int64_t t0 = now_ms();

    ck_err(ct_session_wait(p->a, WAIT_MS, &err), CT_E_PROTO, &err);
    ck_assert_msg(strstr(err.message, what) != NULL, "\"%s\" not in \"%s\"", what, err.message);
    ck_assert_int_eq(closelog_calls(&p->la, &r, NULL, 0), 1);
    ck_assert_int_eq(r, CT_E_PROTO);
    do {
        r = ct_conn_recv(p->sc, x, sizeof x, &got, WAIT_MS, &err);
    } while (r == CT_OK && now_ms() - t0 < WAIT_MS);
    ck_assert_msg(r == CT_E_CLOSED || r == CT_E_RESET, "raw end: %s", ct_err_name(r));
}

/* Answers every parked handle of h with ANS_LEN bytes, then sets done. */
enum { PARK_N = 16, ANS_LEN = 60 * 1024 };
typedef struct replier {
    hstate *h;
    atomic_int done;
    pthread_t th;
} replier;

static void *replier_main(void *arg)
{
    replier *rp = arg;
    uint8_t *ans = malloc(ANS_LEN);
    int i;
    if (ans)
        memset(ans, 'r', ANS_LEN);
    for (i = 0; i < PARK_N; i++) {
        ct_session_reply *r;
        pthread_mutex_lock(&rp->h->mu);
        r = rp->h->parked[i];
        rp->h->parked[i] = NULL;
        pthread_mutex_unlock(&rp->h->mu);
        ct_session_reply_send(r, ans ? CT_OK : CT_E_NOMEM, ans, ANS_LEN, NULL);
    }
    free(ans);
    atomic_store(&rp->done, 1);
    return NULL;
}

/*
 * A deferred answer never waits for send-queue space: a peer that stops
 * reading must not stall the thread that answers (on the bridge, one thread
 * answers every cluster's Vault calls). 16 x 60 KiB answers to a raw peer
 * that reads nothing exceed the pipe (64 KiB), the send buffer and the
 * queue (256 KiB each);
 * afterwards every answer arrives whole.
 */
START_TEST(deferred_reply_never_waits)
{
    spair p;
    replier rp;
    ctp_sframe f;
    uint8_t *buf = malloc(ANS_LEN);
    int64_t t0;
    int i, seen = 0;

    ck_assert_ptr_nonnull(buf);
    raw_start(&p, F_PIPE);
    for (i = 0; i < PARK_N; i++) {
        char q[4] = {'D', (char)('a' + i), 0, 0};
        put_frame(p.sc, CTP_SF_REQ, 0, 0, (uint32_t)(2 * i + 2), 2, q, 2);
    }
    wait_parked(&p.ha, PARK_N);
    memset(&rp, 0, sizeof rp);
    rp.h = &p.ha;
    atomic_init(&rp.done, 0);
    ck_assert_int_eq(pthread_create(&rp.th, NULL, replier_main, &rp), 0);
    t0 = now_ms();
    while (!atomic_load(&rp.done) && now_ms() - t0 < WAIT_MS)
        sleep_ms(5);
    ck_assert_msg(atomic_load(&rp.done), "ct_session_reply_send waited for queue space");
    pthread_join(rp.th, NULL);
    /* nothing lost: every answer arrives whole */
    while (seen < PARK_N) {
        get_frame(p.sc, &f, buf, ANS_LEN);
        if (f.type != CTP_SF_RESP)
            continue; /* a PING, if any */
        ck_assert_uint_eq(f.len, ANS_LEN);
        ck_assert_int_eq(buf[0], 'r');
        ck_assert_int_eq(buf[ANS_LEN - 1], 'r');
        seen++;
    }
    free(buf);
    spair_free(&p);
}
END_TEST

/* Each case: one bad frame from the raw peer (the session is the initiator:
 * its ids are odd, the raw peer's even). */
static const struct {
    const char *what;
    uint8_t type, flags;
    uint16_t reserved;
    uint32_t stream, len;
} bad_frames[] = {
    {"unknown frame type", 9, 0, 0, 2, 0},
    {"unknown frame type", 0, 0, 0, 2, 0},
    {"reserved bits", CTP_SF_REQ, 0, 0x0100, 2, 0},
    {"our parity", CTP_SF_REQ, 0, 0, 3, 0},
    {"parity", CTP_SF_REQ, 0, 0, 0, 0},
    {"never opened", CTP_SF_RESP, 0, 0, 1, 0},
    {"never opened", CTP_SF_RESP, 0, 0, 2, 0},
    {"exceeds max_frame", CTP_SF_REQ, 0, 0, 2, CT_SESSION_DEFAULT_MAX_FRAME + 1},
    {"exceeds max_frame", CTP_SF_RESP, 0, 0, 1, 0xffffffffu},
    {"unknown flags", CTP_SF_PING, 1, 0, 7, 0},
    {"unknown flags", CTP_SF_RESP, 2, 0, 1, 0},
    {"unknown flags", CTP_SF_REQ, CTP_SF_F_ERROR, 0, 2, 0},
    {"never sent", CTP_SF_PONG, 0, 0, 1, 0},
    {"payload", CTP_SF_PING, 0, 0, 1, 4},
    {"payload", CTP_SF_CANCEL, 0, 0, 2, 4},
    {"never opened", CTP_SF_GOAWAY, 0, 0, 5, 0},
    {"our parity", CTP_SF_CANCEL, 0, 0, 1, 0},
};
#define NBAD ((int)(sizeof bad_frames / sizeof bad_frames[0]))

/* Every case over a pipe, then every third case over TLS on TCP. */
START_TEST(proto_violations)
{
    int c = _i < NBAD ? _i : (_i - NBAD) * 3;
    spair p;

    raw_start(&p, _i < NBAD ? F_PIPE : F_TLS_TCP);
    put_frame(p.sc, bad_frames[c].type, bad_frames[c].flags, bad_frames[c].reserved,
              bad_frames[c].stream, bad_frames[c].len, "abcd", bad_frames[c].len == 4 ? 4 : 0);
    expect_proto(&p, bad_frames[c].what);
    spair_free(&p);
}
END_TEST

/* Violations that need a few frames of context. */
START_TEST(proto_sequences)
{
    spair p;
    uint8_t buf[256];
    ctp_sframe f;
    req_job j;

    /* request ids must grow */
    raw_start(&p, F_PIPE);
    put_frame(p.sc, CTP_SF_REQ, 0, 0, 4, 1, "E", 1);
    get_frame(p.sc, &f, buf, sizeof buf);
    ck_assert_int_eq(f.type, CTP_SF_RESP);
    ck_assert_uint_eq(f.stream, 4);
    put_frame(p.sc, CTP_SF_REQ, 0, 0, 2, 1, "E", 1);
    expect_proto(&p, "not above");
    spair_free(&p);

    /* an error answer needs a code, and the code must be an error */
    raw_start(&p, F_PIPE);
    start_job(&j, p.a, "Eq");
    get_frame(p.sc, &f, buf, sizeof buf);
    ck_assert_int_eq(f.type, CTP_SF_REQ);
    put_frame(p.sc, CTP_SF_RESP, CTP_SF_F_ERROR, 0, f.stream, 2, "ab", 2);
    expect_proto(&p, "without a code");
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_E_CLOSED);
    spair_free(&p);

    raw_start(&p, F_PIPE);
    start_job(&j, p.a, "Eq");
    get_frame(p.sc, &f, buf, sizeof buf);
    put_frame(p.sc, CTP_SF_RESP, CTP_SF_F_ERROR, 0, f.stream, 4, "\0\0\0\1", 4);
    expect_proto(&p, "code");
    pthread_join(j.th, NULL);
    ck_assert_int_ne(j.rc, CT_OK);
    spair_free(&p);

    /* a second answer to the same request */
    raw_start(&p, F_PIPE);
    start_job(&j, p.a, "Eq");
    get_frame(p.sc, &f, buf, sizeof buf);
    put_frame(p.sc, CTP_SF_RESP, 0, 0, f.stream, 2, "ok", 2);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_OK);
    put_frame(p.sc, CTP_SF_RESP, 0, 0, f.stream, 2, "ok", 2);
    expect_proto(&p, "not outstanding");
    spair_free(&p);

    /* requests after the peer's GOAWAY */
    raw_start(&p, F_PIPE);
    put_frame(p.sc, CTP_SF_GOAWAY, 0, 0, 0, 0, NULL, 0);
    get_frame(p.sc, &f, buf, sizeof buf); /* our GOAWAY in reply */
    ck_assert_int_eq(f.type, CTP_SF_GOAWAY);
    ck_assert_uint_eq(f.stream, 0);
    ck_assert_int_eq(ct_session_is_open(p.a), 0);
    put_frame(p.sc, CTP_SF_REQ, 0, 0, 2, 0, NULL, 0);
    expect_proto(&p, "after the peer's GOAWAY");
    spair_free(&p);

    /* a frame cut off by the end of the stream */
    raw_start(&p, F_PIPE);
    ck_ok(ct_conn_send_all(p.sc, "\0\0\0\4\1\0\0\0\0\0\0\2ab", 14, NULL, WAIT_MS, NULL), NULL);
    ck_ok(ct_conn_shutdown_write(p.sc, WAIT_MS, NULL), NULL);
    ck_err(ct_session_wait(p.a, WAIT_MS, NULL), CT_E_CLOSED, NULL);
    spair_free(&p);
}
END_TEST

/* A late answer to a cancelled request is dropped; the session carries on. */
START_TEST(late_answer_dropped)
{
    static const int fis[] = {F_PIPE, F_TLS_TCP};
    spair p;
    uint8_t buf[256];
    ctp_sframe f;
    req_job j;
    int64_t t0;

    raw_start(&p, fis[_i]);
    t0 = now_ms();
    start_job_t(&j, p.a, "Eslow", 100); /* the requester gives up after 100 ms */
    get_frame(p.sc, &f, buf, sizeof buf);
    ck_assert_int_eq(f.type, CTP_SF_REQ);
    ck_assert_uint_eq(f.stream, 1);
    ck_assert_uint_eq(f.len, 5);
    ck_assert_mem_eq(buf, "Eslow", 5);
    get_frame(p.sc, &f, buf, sizeof buf); /* then cancels it */
    ck_assert_int_eq(f.type, CTP_SF_CANCEL);
    ck_assert_uint_eq(f.stream, 1);
    ck_assert_uint_eq(f.len, 0);
    ck_assert_int_ge(now_ms() - t0, 90);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_E_TIMEOUT);
    /* the answer arrives anyway: dropped, no violation */
    put_frame(p.sc, CTP_SF_RESP, 0, 0, 1, 4, "late", 4);
    put_frame(p.sc, CTP_SF_RESP, CTP_SF_F_ERROR, 0, 1, 4, "\xff\xff\xff\xfe", 4);
    start_job(&j, p.a, "Enext");
    get_frame(p.sc, &f, buf, sizeof buf);
    ck_assert_int_eq(f.type, CTP_SF_REQ);
    ck_assert_uint_eq(f.stream, 3);
    put_frame(p.sc, CTP_SF_RESP, 0, 0, 3, 2, "ok", 2);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_OK);
    ck_assert_str_eq(j.answer, "ok");
    ck_assert_int_eq(ct_session_is_open(p.a), 1);
    /* an error answer from a raw peer: code and message come through */
    start_job(&j, p.a, "Eerr");
    get_frame(p.sc, &f, buf, sizeof buf);
    ck_assert_uint_eq(f.stream, 5);
    put_frame(p.sc, CTP_SF_RESP, CTP_SF_F_ERROR, 0, 5, 10, "\xff\xff\xff\xc4no\x01way", 10);
    pthread_join(j.th, NULL);
    ck_assert_int_eq(j.rc, CT_E_NOTFOUND);
    ck_assert_str_eq(j.msg, "no?way"); /* control bytes are not passed on */
    /* but an answer to a request never made is a violation */
    put_frame(p.sc, CTP_SF_RESP, 0, 0, 7, 0, NULL, 0);
    expect_proto(&p, "never opened");
    spair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The pure state machine (session_frame.c)                             */

START_TEST(idmap_model)
{
    ctp_idmap m;
    enum { N = 512 };
    uint32_t keys[N];
    int present[N];
    unsigned seed = 12345;

    ck_assert_int_eq(ctp_idmap_init(&m, N), 0);
    for (int i = 0; i < N; i++) {
        /* ids that collide in the low bits */
        keys[i] = (uint32_t)(i + 1) * 4096u;
        present[i] = 0;
    }
    ck_assert_int_eq(ctp_idmap_put(&m, 0, &m), -1);
    for (int step = 0; step < 50000; step++) {
        int i;
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 8) % N);
        if ((seed >> 20) & 1) {
            int r = ctp_idmap_put(&m, keys[i], &keys[i]);
            ck_assert_int_eq(r, present[i] ? -1 : 0);
            present[i] = 1;
        } else {
            void *v = ctp_idmap_del(&m, keys[i]);
            ck_assert_ptr_eq(v, present[i] ? &keys[i] : NULL);
            present[i] = 0;
        }
        if (step % 997 == 0) {
            size_t count = 0;
            for (int k = 0; k < N; k++) {
                ck_assert_ptr_eq(ctp_idmap_get(&m, keys[k]), present[k] ? &keys[k] : NULL);
                count += (size_t)present[k];
            }
            ck_assert_uint_eq(count, m.count);
        }
    }
    ctp_idmap_free(&m);
    /* full */
    ck_assert_int_eq(ctp_idmap_init(&m, 2), 0);
    ck_assert_int_eq(ctp_idmap_put(&m, 1, &m), 0);
    ck_assert_int_eq(ctp_idmap_put(&m, 3, &m), 0);
    ck_assert_int_eq(ctp_idmap_put(&m, 5, &m), -1);
    ctp_idmap_free(&m);
}
END_TEST

typedef struct trace {
    int delivered, requests, cancels, pongs, goaways;
    ct_err last_code;
    uint8_t out[4096];
    size_t out_len;
} trace;

static void t_deliver(void *arg, void *pending, ct_err code, uint8_t *buf, const uint8_t *data,
                      size_t len, const char *note)
{
    trace *t = arg;
    (void)pending;
    (void)data;
    (void)len;
    (void)note;
    t->delivered++;
    t->last_code = code;
    free(buf);
}

static ct_err t_request(void *arg, uint32_t stream, uint8_t *payload, size_t len, void **item)
{
    trace *t = arg;
    (void)stream;
    (void)len;
    free(payload);
    t->requests++;
    *item = t;
    return CT_OK;
}

static void t_cancel(void *arg, void *item)
{
    trace *t = arg;
    (void)item;
    t->cancels++;
}

static void t_emit(void *arg, int ordered, const uint8_t hdr[CT_SESSION_HEADER_LEN],
                   const uint8_t *payload, size_t len)
{
    trace *t = arg;
    (void)ordered;
    ck_assert_uint_le(t->out_len + CT_SESSION_HEADER_LEN + len, sizeof t->out);
    memcpy(t->out + t->out_len, hdr, CT_SESSION_HEADER_LEN);
    if (len)
        memcpy(t->out + t->out_len + CT_SESSION_HEADER_LEN, payload, len);
    t->out_len += CT_SESSION_HEADER_LEN + len;
}

static void t_pong(void *arg, uint32_t token)
{
    trace *t = arg;
    (void)token;
    t->pongs++;
}

static void t_goaway(void *arg)
{
    trace *t = arg;
    t->goaways++;
}

static const ctp_sess_cb tcb = {t_deliver, t_request, t_cancel, t_emit, t_pong, t_goaway};

START_TEST(core_byte_by_byte)
{
    ctp_sess_core c;
    trace t;
    uint8_t in[256];
    size_t n = 0;
    int dummy;
    uint32_t id;

    memset(&t, 0, sizeof t);
    ck_assert_int_eq(ctp_sess_init(&c, 0, 1024, 4, &tcb, &t), CT_OK);
    ck_assert_int_eq(ctp_sess_open_stream(&c, &dummy, &id), CT_OK);
    ck_assert_uint_eq(id, 2); /* not the initiator: even ids */
    /* REQ 1 "hi", PING 7, RESP 2 "ok", CANCEL 1, REQ 3 (empty) */
    ctp_sframe_put(in + n, CTP_SF_REQ, 0, 1, 2);
    memcpy(in + n + 12, "hi", 2);
    n += 14;
    ctp_sframe_put(in + n, CTP_SF_PING, 0, 7, 0);
    n += 12;
    ctp_sframe_put(in + n, CTP_SF_RESP, 0, 2, 2);
    memcpy(in + n + 12, "ok", 2);
    n += 14;
    ctp_sframe_put(in + n, CTP_SF_CANCEL, 0, 1, 0);
    n += 12;
    ctp_sframe_put(in + n, CTP_SF_REQ, 0, 3, 0);
    n += 12;
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ctp_sess_feed(&c, in + i, 1), CT_OK);
    ck_assert_int_eq(t.requests, 2);
    ck_assert_int_eq(t.delivered, 1);
    ck_assert_int_eq(t.last_code, CT_OK);
    ck_assert_int_eq(t.cancels, 1);
    ck_assert_uint_eq(t.out_len, 12); /* the PONG */
    ck_assert_int_eq(t.out[4], CTP_SF_PONG);
    ck_assert_int_eq(t.out[11], 7);
    /* max_streams (4) of the peer's requests: the fifth is refused at once */
    n = 0;
    for (uint32_t s = 5; s <= 9; s += 2) {
        ctp_sframe_put(in + n, CTP_SF_REQ, 0, s, 0);
        n += 12;
    }
    ck_assert_int_eq(ctp_sess_feed(&c, in, n), CT_OK);
    ck_assert_int_eq(t.requests, 4);
    ck_assert_uint_eq(c.rejected_busy, 1);
    ck_assert_int_eq(t.out[12 + 4], CTP_SF_RESP);
    ck_assert_int_eq(t.out[12 + 5], CTP_SF_F_ERROR);
    ctp_sess_free(&c);
}
END_TEST

START_TEST(core_ids_and_goaway)
{
    ctp_sess_core c;
    trace t;
    int d1, d2, d3;
    uint32_t id;
    uint8_t h[12];

    memset(&t, 0, sizeof t);
    ck_assert_int_eq(ctp_sess_init(&c, 1, 1024, 2, &tcb, &t), CT_OK);
    ck_assert_int_eq(ctp_sess_open_stream(&c, &d1, &id), CT_OK);
    ck_assert_uint_eq(id, 1);
    ck_assert_int_eq(ctp_sess_open_stream(&c, &d2, &id), CT_OK);
    ck_assert_uint_eq(id, 3);
    ck_assert_int_eq(ctp_sess_open_stream(&c, &d3, &id), CT_E_AGAIN);
    /* cancelled: a late answer is dropped, not a violation */
    ck_assert_ptr_eq(ctp_sess_forget_stream(&c, 1, true), &d1);
    ctp_sframe_put(h, CTP_SF_RESP, 0, 1, 0);
    ck_assert_int_eq(ctp_sess_feed(&c, h, 12), CT_OK);
    ck_assert_uint_eq(c.late_responses, 1);
    ck_assert_int_eq(t.delivered, 0);
    /* GOAWAY naming stream 1: stream 3 fails, and we answer with our GOAWAY */
    ctp_sframe_put(h, CTP_SF_GOAWAY, 0, 1, 0);
    ck_assert_int_eq(ctp_sess_feed(&c, h, 12), CT_OK);
    ck_assert_int_eq(t.delivered, 1);
    ck_assert_int_eq(t.last_code, CT_E_CLOSED);
    ck_assert_int_eq(t.goaways, 1);
    ck_assert_uint_eq(t.out_len, 12);
    ck_assert_int_eq(t.out[4], CTP_SF_GOAWAY);
    ck_assert_int_eq(ctp_sess_open_stream(&c, &d3, &id), CT_E_CLOSED);
    /* a GOAWAY may lower the last stream, never raise it */
    ctp_sframe_put(h, CTP_SF_GOAWAY, 0, 3, 0);
    ck_assert_int_eq(ctp_sess_feed(&c, h, 12), CT_E_PROTO);
    ck_assert(strstr(c.why, "raises") != NULL);
    ck_assert_int_eq(ctp_sess_feed(&c, h, 1), CT_E_PROTO); /* stays failed */
    ctp_sess_free(&c);

    /* ids run out after 2^31 requests per direction */
    memset(&t, 0, sizeof t);
    ck_assert_int_eq(ctp_sess_init(&c, 1, 1024, 4, &tcb, &t), CT_OK);
    c.next_id = UINT32_MAX;
    ck_assert_int_eq(ctp_sess_open_stream(&c, &d1, &id), CT_OK);
    ck_assert_uint_eq(id, UINT32_MAX);
    ck_assert_int_eq(ctp_sess_open_stream(&c, &d2, &id), CT_E_CLOSED);
    ck_assert(strstr(c.why, "stream ids") != NULL);
    ctp_sess_fail_all(&c, CT_E_CLOSED, "test");
    ck_assert_int_eq(t.delivered, 1);
    ck_assert_uint_eq(c.out.count, 0);
    ctp_sess_free(&c);
}
END_TEST

START_TEST(core_oversize_not_allocated)
{
    ctp_sess_core c;
    trace t;
    uint8_t h[12];

    memset(&t, 0, sizeof t);
    ck_assert_int_eq(ctp_sess_init(&c, 0, CT_SESSION_MAX_FRAME_LIMIT, 4, &tcb, &t), CT_OK);
    /* a RESP for nothing of 16 MiB: refused on its header, nothing allocated */
    ctp_sframe_put(h, CTP_SF_RESP, 0, 2, CT_SESSION_MAX_FRAME_LIMIT);
    ck_assert_int_eq(ctp_sess_feed(&c, h, 12), CT_E_PROTO);
    ck_assert_ptr_null(c.body);
    ctp_sess_free(&c);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("transports");
    int vg = ct_test_under_valgrind();

    tcase_set_timeout(tc, vg ? 900 : 60);
    tcase_add_loop_test(tc, echo_both_ways, 0, NFACTORIES);
    tcase_add_loop_test(tc, concurrent_requests, 0, NFACTORIES);
    tcase_add_loop_test(tc, frame_size_limits, 0, 3);
    tcase_add_test(tc, small_max_frame);
    suite_add_tcase(s, tc);

    tc = tcase_create("behaviour");
    tcase_set_timeout(tc, vg ? 300 : 30);
    tcase_add_loop_test(tc, handler_errors, 0, 2);
    tcase_add_loop_test(tc, timeout_cancels, 0, 2);
    tcase_add_test(tc, max_streams_local);
    tcase_add_test(tc, max_streams_peer);
    tcase_add_loop_test(tc, ping_rtt, 0, 2);
    tcase_add_loop_test(tc, dead_peer, 0, 2);
    tcase_add_loop_test(tc, close_waits_for_outstanding, 0, 2);
    tcase_add_test(tc, peer_closes);
    tcase_add_test(tc, close_from_handler);
    tcase_add_test(tc, close_deadline);
    tcase_add_loop_test(tc, peer_abort, 0, 3);
    tcase_add_test(tc, free_without_close);
    tcase_add_loop_test(tc, deferred_answers, 0, 2);
    tcase_add_test(tc, deferred_cancel_and_free);
    tcase_add_test(tc, deferred_reply_never_waits);
    tcase_add_test(tc, open_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile peer");
    tcase_set_timeout(tc, vg ? 300 : 30);
    tcase_add_loop_test(tc, proto_violations, 0, NBAD + (NBAD + 2) / 3);
    tcase_add_test(tc, proto_sequences);
    tcase_add_loop_test(tc, late_answer_dropped, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("core");
    tcase_add_test(tc, idmap_model);
    tcase_add_test(tc, core_byte_by_byte);
    tcase_add_test(tc, core_ids_and_goaway);
    tcase_add_test(tc, core_oversize_not_allocated);
    suite_add_tcase(s, tc);
    return s;
}
