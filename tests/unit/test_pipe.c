/*
 * test_pipe.c - the in-memory pipe's own behaviour (the byte-stream
 * contract is in the conformance suite): arguments, capacity and ring
 * wrap-around, would-block paths, what each end sees when the other is
 * freed, and waiters woken by the peer.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

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

START_TEST(pair_arguments)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *a = (ct_conn *)&a, *b = (ct_conn *)&b;
    ct_error err;

    ck_err(ct_pipe_pair(ctx, 0, NULL, &b, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(b);
    ck_err(ct_pipe_pair(ctx, 0, &a, NULL, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(a);
    ck_err(ct_pipe_pair(ctx, 0, &a, &a, &err), CT_E_INVALID, &err);
    ck_err(ct_pipe_pair(ctx, (size_t)1 << 40, &a, &b, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(a);
    ck_assert_ptr_null(b);
    /* NULL context: defaults */
    ck_ok(ct_pipe_pair(NULL, 16, &a, &b, NULL), NULL);
    ck_assert_int_eq(ct_conn_get_fd(a), -1);
    ck_assert_int_eq(ct_conn_get_fd(b), -1);
    ct_conn_free(a);
    ct_conn_free(b);
    ct_ctx_free(ctx);
}
END_TEST

/* Capacity 10: partial sends, would-block, and bytes that wrap around the
 * end of the ring come out in order. pending() counts what is buffered. */
START_TEST(capacity_and_wraparound)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *a = NULL, *b = NULL;
    ct_error err;
    uint8_t out[256], in[256];
    size_t n = 0, sent = 0, got = 0;
    int64_t t0, el;

    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)i;
    ck_ok(ct_pipe_pair(ctx, 10, &a, &b, &err), &err);
    ck_ok(ct_conn_send(a, out, 25, &n, 0, &err), &err);
    ck_assert_uint_eq(n, 10); /* took what fits */
    sent = n;
    ck_assert_uint_eq(ct_conn_pending(b), 10);
    ck_assert_uint_eq(ct_conn_pending(a), 0);
    ck_err(ct_conn_send(a, out + sent, 1, &n, 0, &err), CT_E_AGAIN, &err);
    ck_assert_uint_eq(n, 0);
    t0 = now_ms();
    ck_err(ct_conn_send(a, out + sent, 1, &n, 80, &err), CT_E_TIMEOUT, &err);
    el = now_ms() - t0;
    ck_assert_msg(el >= 70 && el < 2000, "send with 80 ms returned after %lld ms",
                  (long long)el);
    /* many rounds of "read a few, write a few" walk the ring round */
    while (sent < sizeof out) {
        size_t k = 0;
        ck_ok(ct_conn_recv(b, in + got, 7, &k, 0, &err), &err);
        got += k;
        ck_ok(ct_conn_send(a, out + sent, sizeof out - sent, &k, 0, &err), &err);
        ck_assert_uint_le(k, 10);
        sent += k;
    }
    ck_ok(ct_conn_recv_exact(b, in + got, sizeof in - got, NULL, 1000, &err), &err);
    ck_assert(memcmp(in, out, sizeof out) == 0);
    ck_assert_uint_eq(ct_conn_pending(b), 0);
    ct_conn_free(a);
    ct_conn_free(b);
    ct_ctx_free(ctx);
}
END_TEST

/* Pinned pipe behaviour: unread bytes in the freed end are dropped and the
 * survivor sees CT_E_CLOSED; what the freed end had sent is still readable. */
START_TEST(free_one_end)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *a = NULL, *b = NULL;
    ct_error err;
    uint8_t buf[8];
    size_t got = 0;

    for (int order = 0; order < 2; order++) {
        ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
        ck_ok(ct_conn_send_all(a, "to-b", 4, NULL, 100, &err), &err);
        ck_ok(ct_conn_send_all(b, "to-a", 4, NULL, 100, &err), &err);
        ct_conn_free(a); /* "to-a" is never read */
        ck_ok(ct_conn_recv_exact(b, buf, 4, &got, 100, &err), &err);
        ck_assert(memcmp(buf, "to-b", 4) == 0);
        ck_err(ct_conn_recv(b, buf, sizeof buf, &got, 100, &err), CT_E_CLOSED, &err);
        ck_err(ct_conn_send(b, "x", 1, &got, 100, &err), CT_E_RESET, &err);
        ck_err(ct_conn_send(b, "x", 1, &got, 0, &err), CT_E_RESET, &err);
        ck_ok(ct_conn_shutdown_write(b, 100, &err), &err); /* harmless */
        ct_conn_free(b);
        (void)order;
    }
    ct_ctx_free(ctx);
}
END_TEST

struct waiter {
    ct_conn *c;
    int send; /* 1: send into a full pipe, 0: recv from an empty one */
    ct_err rc;
    ct_error err;
    int64_t elapsed;
};

static void *wait_fn(void *arg)
{
    struct waiter *w = arg;
    uint8_t b[4] = {0};
    size_t n = 0;
    int64_t t0 = now_ms();
    if (w->send)
        w->rc = ct_conn_send(w->c, b, sizeof b, &n, 5000, &w->err);
    else
        w->rc = ct_conn_recv(w->c, b, sizeof b, &n, 5000, &w->err);
    w->elapsed = now_ms() - t0;
    return NULL;
}

/* A thread blocked on one end is woken at once when the other end goes
 * away or half-closes, instead of waiting out its timeout. */
START_TEST(waiters_woken)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *a = NULL, *b = NULL;
    ct_error err;
    struct waiter w;
    pthread_t th;
    size_t n = 0;

    /* blocked recv, peer half-closes -> CT_E_CLOSED */
    ck_ok(ct_pipe_pair(ctx, 4, &a, &b, &err), &err);
    memset(&w, 0, sizeof w);
    w.c = b;
    ck_assert_int_eq(pthread_create(&th, NULL, wait_fn, &w), 0);
    sleep_ms(50);
    ck_ok(ct_conn_shutdown_write(a, 0, &err), &err);
    pthread_join(th, NULL);
    ck_err(w.rc, CT_E_CLOSED, &w.err);
    ck_assert_msg(w.elapsed < 2000, "woken after %lld ms", (long long)w.elapsed);
    ck_err(ct_conn_send(a, "x", 1, &n, 0, &err), CT_E_STATE, &err);

    /* blocked send into a full pipe, peer freed -> CT_E_RESET */
    ck_ok(ct_conn_send(b, "full", 4, &n, 0, &err), &err);
    ck_assert_uint_eq(n, 4);
    memset(&w, 0, sizeof w);
    w.c = b;
    w.send = 1;
    ck_assert_int_eq(pthread_create(&th, NULL, wait_fn, &w), 0);
    sleep_ms(50);
    ct_conn_free(a);
    pthread_join(th, NULL);
    ck_err(w.rc, CT_E_RESET, &w.err);
    ck_assert_msg(w.elapsed < 2000, "woken after %lld ms", (long long)w.elapsed);
    ct_conn_free(b);

    /* blocked recv, peer freed -> CT_E_CLOSED */
    ck_ok(ct_pipe_pair(ctx, 4, &a, &b, &err), &err);
    memset(&w, 0, sizeof w);
    w.c = a;
    ck_assert_int_eq(pthread_create(&th, NULL, wait_fn, &w), 0);
    sleep_ms(50);
    ct_conn_free(b);
    pthread_join(th, NULL);
    ck_err(w.rc, CT_E_CLOSED, &w.err);
    ck_assert_msg(w.elapsed < 2000, "woken after %lld ms", (long long)w.elapsed);
    ct_conn_free(a);
    ct_ctx_free(ctx);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("pipe");
    TCase *tc = tcase_create("pipe");
    tcase_add_test(tc, pair_arguments);
    tcase_add_test(tc, capacity_and_wraparound);
    tcase_add_test(tc, free_one_end);
    tcase_add_test(tc, waiters_woken);
    suite_add_tcase(s, tc);
    return s;
}
