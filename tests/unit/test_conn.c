/*
 * test_conn.c - the ct_conn and ct_transport wrappers with custom vtables:
 * version and required-method checks, partial send/recv loops, would-block
 * handling, deadlines, ownership callbacks.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A loopback byte queue that moves at most 3 bytes per call and reports
 * would-block on every other call, to exercise the partial paths. */
struct trickle {
    uint8_t buf[1 << 16];
    size_t head, tail;
    int calls;
    int closed;
    int *close_count;
};

static ct_err tr_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                      ct_error *err, void *user)
{
    struct trickle *t = state;
    size_t k;
    (void)timeout_ms;
    (void)err;
    (void)user;
    if (t->calls++ % 2)
        return CT_E_AGAIN;
    k = n < 3 ? n : 3;
    if (k > sizeof t->buf - t->tail)
        k = sizeof t->buf - t->tail;
    memcpy(t->buf + t->tail, p, k);
    t->tail += k;
    *sent = k;
    return CT_OK;
}

static ct_err tr_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                      ct_error *err, void *user)
{
    struct trickle *t = state;
    size_t k;
    (void)timeout_ms;
    (void)err;
    (void)user;
    if (t->calls++ % 2)
        return CT_E_AGAIN;
    if (t->head == t->tail)
        return t->closed ? CT_E_CLOSED : CT_E_AGAIN;
    k = t->tail - t->head;
    if (k > cap)
        k = cap;
    if (k > 3)
        k = 3;
    memcpy(p, t->buf + t->head, k);
    t->head += k;
    *got = k;
    return CT_OK;
}

static void tr_close(void *state, void *user)
{
    struct trickle *t = state;
    (void)user;
    (*t->close_count)++;
    free(t);
}

static void tr_destroy(void *user)
{
    (*(int *)user)++;
}

static const ct_conn_ops trickle_ops = {
    CT_CONN_OPS_VERSION, 0, tr_send, tr_recv, NULL, tr_close, NULL, NULL, tr_destroy,
};

START_TEST(partial_loops_and_ownership)
{
    ct_ctx *ctx = ct_test_ctx();
    struct trickle *t = calloc(1, sizeof *t);
    int closes = 0, destroys = 0;
    ct_conn *c = NULL;
    ct_error err;
    uint8_t out[1000], in[1000];
    size_t n = 0;
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 7);
    t->close_count = &closes;
    ck_ok(ct_conn_new(ctx, &trickle_ops, t, &destroys, &c, &err), &err);
    ck_ok(ct_conn_send_all(c, out, sizeof out, &n, 5000, &err), &err);
    ck_assert_uint_eq(n, sizeof out);
    t->closed = 1;
    ck_ok(ct_conn_recv_exact(c, in, sizeof in, &n, 5000, &err), &err);
    ck_assert_uint_eq(n, sizeof in);
    ck_assert(memcmp(in, out, sizeof in) == 0);
    ck_err(ct_conn_recv_exact(c, in, 1, &n, 5000, &err), CT_E_CLOSED, &err);
    ck_assert_uint_eq(n, 0);
    ck_err(ct_conn_shutdown_write(c, 100, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_int_eq(ct_conn_get_fd(c), -1);
    ck_assert_uint_eq(ct_conn_pending(c), 0);
    ck_assert_ptr_eq(ct_conn_ctx(c), ctx);
    ct_conn_free(c);
    ck_assert_int_eq(closes, 1);
    ck_assert_int_eq(destroys, 1);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(deadline_expires_with_timeout)
{
    ct_ctx *ctx = ct_test_ctx();
    struct trickle *t = calloc(1, sizeof *t);
    int closes = 0, destroys = 0;
    ct_conn *c = NULL;
    ct_error err;
    uint8_t in[4];
    size_t n = 99;
    t->close_count = &closes;
    ck_ok(ct_conn_new(ctx, &trickle_ops, t, &destroys, &c, &err), &err);
    /* empty, not closed: would block until the deadline */
    ck_err(ct_conn_recv_exact(c, in, sizeof in, &n, 50, &err), CT_E_TIMEOUT, &err);
    ck_assert_uint_eq(n, 0);
    ck_err(ct_conn_recv_exact(c, in, sizeof in, &n, 0, &err), CT_E_AGAIN, &err);
    ct_conn_free(c);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(vtable_checks)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn_ops ops = trickle_ops;
    ct_conn *c = NULL;
    ct_error err;
    int dummy = 0;
    ops.version = 2;
    ck_err(ct_conn_new(ctx, &ops, &dummy, NULL, &c, &err), CT_E_VERSION, &err);
    ops = trickle_ops;
    ops.recv = NULL;
    ck_err(ct_conn_new(ctx, &ops, &dummy, NULL, &c, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(c);
    ck_err(ct_conn_send(NULL, "x", 1, NULL, 0, &err), CT_E_INVALID, &err);
    ct_conn_free(NULL);
    ct_ctx_free(ctx);
}
END_TEST

/* A transport without listen: listen must be refused cleanly. */
static ct_err no_dial(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                      ct_conn **out, ct_error *err, void *user)
{
    (void)ctx;
    (void)host;
    (void)port;
    (void)timeout_ms;
    (void)out;
    (void)user;
    if (err) {
        err->code = CT_E_REFUSED;
        snprintf(err->message, sizeof err->message, "refused by test transport");
    }
    return CT_E_REFUSED;
}

static ct_err some_listen(ct_ctx *ctx, const char *host, uint16_t port, void **lst,
                          ct_error *err, void *user)
{
    (void)ctx;
    (void)host;
    (void)port;
    (void)lst;
    (void)err;
    (void)user;
    return CT_E_IO;
}

START_TEST(transport_vtable)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_transport_ops ops = {CT_TRANSPORT_OPS_VERSION, 0, no_dial, 0, 0, 0, 0, tr_destroy};
    ct_transport *t = NULL;
    ct_listener *l = NULL;
    ct_conn *c = NULL;
    ct_error err;
    int destroys = 0;
    ck_ok(ct_transport_new(ctx, &ops, &destroys, &t, &err), &err);
    ck_err(ct_transport_dial(t, "127.0.0.1", 1, 100, &c, &err), CT_E_REFUSED, &err);
    ck_assert_ptr_null(c);
    ck_err(ct_transport_listen(t, "127.0.0.1", 0, &l, &err), CT_E_UNSUPPORTED, &err);
    ct_transport_free(t);
    ck_assert_int_eq(destroys, 1);
    ops.listen = some_listen; /* listen without accept: refused */
    ck_err(ct_transport_new(ctx, &ops, NULL, &t, &err), CT_E_INVALID, &err);
    ops.listen = NULL;
    ops.version = 7;
    ck_err(ct_transport_new(ctx, &ops, NULL, &t, &err), CT_E_VERSION, &err);
    ct_ctx_free(ctx);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("conn");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, partial_loops_and_ownership);
    tcase_add_test(tc, deadline_expires_with_timeout);
    tcase_add_test(tc, vtable_checks);
    tcase_add_test(tc, transport_vtable);
    suite_add_tcase(s, tc);
    return s;
}
