/* test_context.c - context options, hooks, logging. */
#include <string.h>

#include "testutil.h"

struct logrec {
    int n;
    ct_log_level last;
    char msgid[64];
    char msg[256];
};

static void rec_log(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    struct logrec *r = user;
    r->n++;
    r->last = level;
    snprintf(r->msgid, sizeof r->msgid, "%s", msgid);
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static int64_t fixed_clock(void *user)
{
    return *(int64_t *)user;
}

static ct_err counting_rng(void *user, uint8_t *buf, size_t n)
{
    size_t i;
    int *calls = user;
    (*calls)++;
    for (i = 0; i < n; i++)
        buf[i] = (uint8_t)i;
    return CT_OK;
}

START_TEST(defaults)
{
    ct_ctx *ctx = NULL;
    uint8_t a[32], b[32];
    ct_error err;
    ck_ok(ct_ctx_new(NULL, &ctx, &err), &err);
    ck_assert(ct_ctx_now_ms(ctx) > 0);
    ck_assert(ct_ctx_wall_ms(ctx) > 1600000000000LL); /* after 2020 */
    ck_ok(ct_ctx_random(ctx, a, sizeof a), NULL);
    ck_ok(ct_ctx_random(ctx, b, sizeof b), NULL);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ct_ctx_log(ctx, CT_LOG_ERROR, "x", "silent without a logger %d", 1);
    ct_ctx_free(ctx);
    ct_ctx_free(NULL);
    ck_assert_int_eq(ct_global_init(), CT_OK); /* idempotent */
    ck_assert_int_eq(ct_global_init(), CT_OK);
}
END_TEST

START_TEST(hooks_are_used)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    int64_t now = 123456;
    int calls = 0;
    uint8_t buf[4];
    struct logrec r;
    memset(&r, 0, sizeof r);
    o.log = rec_log;
    o.log_user = &r;
    o.log_level = CT_LOG_INFO;
    o.monotonic_ms = fixed_clock;
    o.wall_ms = fixed_clock;
    o.clock_user = &now;
    o.rng = counting_rng;
    o.rng_user = &calls;
    ck_ok(ct_ctx_new(&o, &ctx, NULL), NULL);
    ck_assert_int_eq(ct_ctx_now_ms(ctx), 123456);
    ck_assert_int_eq(ct_ctx_wall_ms(ctx), 123456);
    ck_ok(ct_ctx_random(ctx, buf, 4), NULL);
    ck_assert_int_eq(calls, 1);
    ck_assert_uint_eq(buf[3], 3);
    ct_ctx_log(ctx, CT_LOG_INFO, "test.id", "value=%d", 42);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.msgid, "test.id");
    ck_assert_str_eq(r.msg, "value=42");
    ct_ctx_log(ctx, CT_LOG_DEBUG, "test.id", "filtered");
    ck_assert_int_eq(r.n, 1);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(bad_options)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    ct_error err;
    ck_err(ct_ctx_new(NULL, NULL, &err), CT_E_INVALID, &err);
    o.io_timeout_ms = -5;
    ck_err(ct_ctx_new(&o, &ctx, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(ctx);
    o.io_timeout_ms = 0;
    o.version = 0;
    ck_err(ct_ctx_new(&o, &ctx, &err), CT_E_VERSION, &err);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("context");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, hooks_are_used);
    tcase_add_test(tc, bad_options);
    suite_add_tcase(s, tc);
    return s;
}
