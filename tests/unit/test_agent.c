/*
 * test_agent.c - the small pieces around the bridge and the operator:
 * argument checks of ct_bridge_new / ct_operator_new, stop before run,
 * ct_process_harden, ct_hostport_parse, ct_unhex, event names. The daemons
 * themselves run end to end in tests/integration/test_e2e.sh and
 * bench/ct_bench_flow.c.
 */
#include "testutil.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const uint8_t pin[32] = { 1 };

static ct_beacon_options beacon(void)
{
    ct_beacon_options bo = CT_BEACON_OPTIONS_INIT;
    bo.host = "127.0.0.1";
    bo.port = 9; /* nothing listens: connects fail fast */
    bo.pin_sha256 = pin;
    return bo;
}

START_TEST(bridge_options_checked)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_store *st = NULL;
    ct_beacon_options bo = beacon();
    ct_bridge_options o = CT_BRIDGE_OPTIONS_INIT;
    ct_bridge *b = (ct_bridge *)1;
    ct_error err;

    ck_ok(ct_store_new_memory(ctx, &st, &err), &err);
    ck_err(ct_bridge_new(ctx, &o, &b, &err), CT_E_INVALID, &err); /* no store, no beacon */
    ck_assert_ptr_null(b);
    o.store = st;
    o.beacon = &bo;
    o.version = 99;
    ck_err(ct_bridge_new(ctx, &o, &b, &err), CT_E_VERSION, &err);
    o.version = CT_BRIDGE_OPTIONS_VERSION;
    o.op_waiters = 1000;
    ck_err(ct_bridge_new(ctx, &o, &b, &err), CT_E_INVALID, &err);
    o.op_waiters = 0;
    ck_ok(ct_bridge_new(ctx, &o, &b, &err), &err);
    /* stopped before it runs: run returns at once, after one scan */
    ct_bridge_stop(b);
    ck_ok(ct_bridge_run(b, &err), &err);
    ck_assert_uint_eq(ct_bridge_sessions(b), 0);
    ck_err(ct_bridge_request(b, "0ad50c05-1153-4508-9237-4cb2912e2c23", "x", 1, 100, NULL, NULL,
                             &err),
           CT_E_NOTFOUND, &err);
    ct_bridge_free(b);
    ct_store_free(st);
    ct_ctx_free(ctx);
}
END_TEST

/* A store with nothing in it whose listing fails while `down` is set. */
static atomic_int g_store_down;

static ct_err err_set(ct_error *err, ct_err code, int32_t os, const char *msg)
{
    if (err) {
        err->code = code;
        err->os_error = os;
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

static ct_err flaky_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                        void *user)
{
    (void)key, (void)value, (void)version, (void)user;
    return err_set(err, CT_E_NOTFOUND, 0, "no such key");
}

static ct_err flaky_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                        uint64_t *new_version, ct_error *err, void *user)
{
    (void)key, (void)value, (void)len, (void)expected, (void)new_version, (void)user;
    return err_set(err, CT_E_STORE, 0, "read-only");
}

static ct_err flaky_del(const char *key, ct_error *err, void *user)
{
    (void)key, (void)user;
    return err_set(err, CT_E_NOTFOUND, 0, "no such key");
}

static ct_err flaky_list(const char *prefix, ct_strlist *out, ct_error *err, void *user)
{
    (void)prefix, (void)out, (void)user;
    if (atomic_load(&g_store_down))
        return err_set(err, CT_E_STORE, 0, "the store is down (test)");
    return CT_OK;
}

static void *bridge_run(void *arg)
{
    ct_bridge_run(arg, NULL);
    ct_thread_cleanup();
    return NULL;
}

static ct_bridge_status bridge_status(ct_bridge *b)
{
    ct_bridge_status st = CT_BRIDGE_STATUS_INIT;
    ct_error err;
    ck_ok(ct_bridge_get_status(b, &st, &err), &err);
    return st;
}

/* ct_bridge_get_status: what a readiness probe reads, before, during and
 * after run, and while the store cannot be listed. */
START_TEST(bridge_status_for_probes)
{
    static const ct_store_ops ops = { CT_STORE_OPS_VERSION, 0, flaky_get, flaky_put, flaky_del,
                                      flaky_list, NULL };
    ct_ctx *ctx = ct_test_ctx();
    ct_store *st = NULL;
    ct_beacon_options bo = beacon();
    ct_bridge_options o = CT_BRIDGE_OPTIONS_INIT;
    ct_bridge_status s = CT_BRIDGE_STATUS_INIT;
    ct_bridge *b = NULL;
    pthread_t t;
    ct_error err;
    uint64_t scans;
    int i;

    atomic_store(&g_store_down, 0);
    ck_ok(ct_store_new(ctx, &ops, NULL, &st, &err), &err);
    o.store = st;
    o.beacon = &bo;
    o.scan_interval_ms = 100;
    ck_ok(ct_bridge_new(ctx, &o, &b, &err), &err);
    ck_err(ct_bridge_get_status(NULL, &s, &err), CT_E_INVALID, &err);
    ck_err(ct_bridge_get_status(b, NULL, &err), CT_E_INVALID, &err);
    s.version = 99;
    ck_err(ct_bridge_get_status(b, &s, &err), CT_E_VERSION, &err);
    s = bridge_status(b);
    ck_assert_int_eq(s.running, 0);
    ck_assert_int_eq(s.store_ok, 0);
    ck_assert_int_eq(s.last_scan_ok_ms, -1);
    ck_assert_uint_eq(s.scans, 0);

    ck_assert_int_eq(pthread_create(&t, NULL, bridge_run, b), 0);
    for (i = 0; i < 200 && !bridge_status(b).store_ok; i++)
        usleep(10000);
    s = bridge_status(b);
    ck_assert_int_eq(s.running, 1);
    ck_assert_int_eq(s.store_ok, 1);
    ck_assert_int_ge(s.last_scan_ok_ms, 0);
    ck_assert_uint_ge(s.scans, 1);
    ck_assert_uint_eq(s.scan_failures, 0);
    ck_assert_uint_eq(s.clusters, 0);
    ck_assert_uint_eq(s.sessions, 0);

    /* the store goes away: not ready (still running), failures counted */
    atomic_store(&g_store_down, 1);
    for (i = 0; i < 200 && bridge_status(b).store_ok; i++)
        usleep(10000);
    s = bridge_status(b);
    ck_assert_int_eq(s.running, 1);
    ck_assert_int_eq(s.store_ok, 0);
    ck_assert_uint_ge(s.scan_failures, 1);
    /* and comes back */
    scans = s.scans;
    atomic_store(&g_store_down, 0);
    for (i = 0; i < 200 && !bridge_status(b).store_ok; i++)
        usleep(10000);
    s = bridge_status(b);
    ck_assert_int_eq(s.store_ok, 1);
    ck_assert_uint_gt(s.scans, scans);
    ck_assert_int_lt(s.last_scan_ok_ms, 1000);

    ct_bridge_stop(b);
    pthread_join(t, NULL);
    s = bridge_status(b);
    ck_assert_int_eq(s.running, 0);
    ck_assert_int_eq(s.store_ok, 0);
    ct_bridge_free(b);
    ct_store_free(st);
    ct_ctx_free(ctx);
}
END_TEST

/* The bridge's scan refuses a store laid out by a newer version (or with a
 * corrupt layout record): the first scan fails, so run returns the error. */
START_TEST(bridge_refuses_newer_store_layout)
{
    static const struct {
        const char *rec;
        ct_err code;
        const char *says;
    } cases[] = {
        {"{\"v\":1,\"layout\":2,\"created_at\":1}", CT_E_VERSION,
         "store layout 2 is newer than this cloudtaser (1): upgrade"},
        {"{\"v\":1,\"layout\":true,\"created_at\":1}", CT_E_STORE, "system/layout"},
    };
    ct_ctx *ctx = ct_test_ctx();
    ct_beacon_options bo = beacon();
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ct_bridge_options o = CT_BRIDGE_OPTIONS_INIT;
        ct_store *st = NULL;
        ct_bridge *b = NULL;
        ct_error err;

        ck_ok(ct_store_new_memory(ctx, &st, &err), &err);
        ck_ok(ct_store_put(st, "system/layout", cases[i].rec, strlen(cases[i].rec),
                           CT_STORE_CREATE, NULL, &err), &err);
        o.store = st;
        o.beacon = &bo;
        ck_ok(ct_bridge_new(ctx, &o, &b, &err), &err);
        ck_err(ct_bridge_run(b, &err), cases[i].code, &err);
        ck_assert_msg(strstr(err.message, cases[i].says), "%s", err.message);
        ck_assert_int_eq(bridge_status(b).store_ok, 0);
        ck_assert_uint_eq(bridge_status(b).clusters, 0);
        ct_bridge_free(b);
        ct_store_free(st);
    }
    ct_ctx_free(ctx);
}
END_TEST

struct run_arg {
    ct_operator *op;
    ct_err rc;
};

static void *op_run(void *arg)
{
    struct run_arg *a = arg;
    a->rc = ct_operator_run(a->op, NULL);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(operator_options_checked_and_stops)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_beacon_options bo = beacon();
    ct_operator_options o = CT_OPERATOR_OPTIONS_INIT;
    ct_operator *op = NULL;
    struct run_arg a;
    pthread_t t;
    ct_error err;
    uint8_t *resp = NULL;
    size_t len = 0;

    o.beacon = &bo;
    ck_err(ct_operator_new(ctx, &o, &op, &err), CT_E_INVALID, &err); /* no fingerprint */
    o.fingerprint = "not-a-uuid";
    ck_err(ct_operator_new(ctx, &o, &op, &err), CT_E_INVALID, &err);
    o.fingerprint = "0AD50C05-1153-4508-9237-4CB2912E2C23";
    o.token_file = "/nonexistent";
    o.token_fn = (ct_token_fn)1;
    ck_err(ct_operator_new(ctx, &o, &op, &err), CT_E_INVALID, &err); /* both token sources */
    o.token_fn = NULL;
    o.retry_min_ms = 10;
    o.retry_max_ms = 50;
    ck_ok(ct_operator_new(ctx, &o, &op, &err), &err);
    ck_assert_int_eq(ct_operator_connected(op), 0);
    /* runs (the beacon is unreachable: it retries) and stops promptly */
    a.op = op;
    a.rc = CT_E_INTERNAL;
    ck_assert_int_eq(pthread_create(&t, NULL, op_run, &a), 0);
    ck_err(ct_operator_request(op, "x", 1, 200, &resp, &len, &err), CT_E_TIMEOUT, &err);
    ct_operator_stop(op);
    pthread_join(t, NULL);
    ck_assert_int_eq(a.rc, CT_OK);
    ck_err(ct_operator_request(op, "x", 1, 200, &resp, &len, &err), CT_E_CLOSED, &err);
    ct_operator_free(op);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(harden_disables_core_dumps)
{
    pid_t pid = fork();
    int status = 0;
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl;
        if (ct_process_harden(NULL) != CT_OK)
            _exit(1);
        if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
            _exit(2);
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
            _exit(3);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

START_TEST(hostport)
{
    char host[64];
    uint16_t port = 0;
    ct_error err;

    ck_ok(ct_hostport_parse("beacon.example", 443, host, sizeof host, &port, &err), &err);
    ck_assert_str_eq(host, "beacon.example");
    ck_assert_uint_eq(port, 443);
    ck_ok(ct_hostport_parse("127.0.0.1:8443", 443, host, sizeof host, &port, &err), &err);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 8443);
    ck_ok(ct_hostport_parse("[::1]:9", 443, host, sizeof host, &port, &err), &err);
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 9);
    ck_ok(ct_hostport_parse("[fe80::1]", 443, host, sizeof host, &port, &err), &err);
    ck_assert_str_eq(host, "fe80::1");
    ck_assert_uint_eq(port, 443);
    ck_err(ct_hostport_parse("::1", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "brackets"));
    ck_err(ct_hostport_parse(":443", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_err(ct_hostport_parse("h:0", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_err(ct_hostport_parse("h:65536", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_err(ct_hostport_parse("h:12x", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_err(ct_hostport_parse("[::1", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_err(ct_hostport_parse("[::1]x", 443, host, sizeof host, &port, &err), CT_E_INVALID, &err);
    ck_err(ct_hostport_parse("averyveryverylonghostname", 443, host, 8, &port, &err),
           CT_E_INVALID, &err);
}
END_TEST

START_TEST(unhex)
{
    uint8_t out[4];
    ct_error err;
    ck_ok(ct_unhex("00ff7Fa0", out, 4, &err), &err);
    ck_assert_uint_eq(out[0], 0x00);
    ck_assert_uint_eq(out[1], 0xff);
    ck_assert_uint_eq(out[2], 0x7f);
    ck_assert_uint_eq(out[3], 0xa0);
    ck_ok(ct_unhex("sha256:01020304", out, 4, &err), &err);
    ck_assert_uint_eq(out[3], 4);
    ck_err(ct_unhex("010203", out, 4, &err), CT_E_INVALID, &err);
    ck_err(ct_unhex("0102030g", out, 4, &err), CT_E_INVALID, &err);
    ck_err(ct_unhex("0102030405", out, 4, &err), CT_E_INVALID, &err);
}
END_TEST

START_TEST(event_names)
{
    ck_assert_str_eq(ct_agent_event_name(CT_EV_SESSION_UP), "session_up");
    ck_assert_str_eq(ct_agent_event_name(CT_EV_CLAIM_RECORDED), "claim_recorded");
    ck_assert_str_eq(ct_agent_event_name((ct_agent_event_type)999), "unknown");
    ck_assert_str_eq(ct_reg_state_name(CT_REG_CONNECTED), "connected");
}
END_TEST

static ct_err echo_op(void *arg, const char *fp, ct_session *s, uint32_t stream,
                      const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
                      ct_error *err)
{
    (void)fp;
    (void)s;
    (void)stream;
    (void)err;
    ck_assert_str_eq((const char *)arg, "echo-arg");
    *resp = malloc(len);
    memcpy(*resp, req, len);
    *resp_len = len;
    return CT_OK;
}

START_TEST(router_dispatch)
{
    ct_router *r = NULL;
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_error err;
    const char *fp = "0ad50c05-1153-4508-9237-4cb2912e2c23";
    static const char ping[] = "{\"op\":\"ping\"}", echo[] = "{\"op\":\"echo\",\"x\":1}";

    ck_ok(ct_router_new(&r, &err), &err);
    ck_ok(ct_router_add(r, "ping", ct_router_ping, NULL, &err), &err);
    ck_ok(ct_router_add(r, "echo", echo_op, (void *)"echo-arg", &err), &err);
    ck_err(ct_router_add(r, "echo", echo_op, NULL, &err), CT_E_CONFLICT, &err);
    ck_err(ct_router_add(r, "Bad Op", echo_op, NULL, &err), CT_E_INVALID, &err);
    ck_ok(ct_router_handle(r, fp, NULL, 1, (const uint8_t *)ping, strlen(ping), &resp, &len,
                           &err),
          &err);
    ck_assert_ptr_nonnull(strstr((char *)resp, "\"op\":\"pong\""));
    ck_assert_ptr_nonnull(strstr((char *)resp, "\"cluster\":\"0ad50c05\""));
    ck_assert_ptr_null(strstr((char *)resp, fp)); /* never the full fingerprint */
    free(resp);
    ck_ok(ct_router_handle(r, fp, NULL, 1, (const uint8_t *)echo, strlen(echo), &resp, &len,
                           &err),
          &err);
    ck_assert_uint_eq(len, strlen(echo));
    free(resp);
    ck_err(ct_router_handle(r, fp, NULL, 1, (const uint8_t *)"{\"op\":\"nope\"}", 13, &resp,
                            &len, &err),
           CT_E_UNSUPPORTED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "ping, echo"));
    ck_err(ct_router_handle(r, fp, NULL, 1, (const uint8_t *)"[1]", 3, &resp, &len, &err),
           CT_E_INVALID, &err);
    ck_err(ct_router_handle(r, fp, NULL, 1, (const uint8_t *)"{\"op\":5}", 8, &resp, &len, &err),
           CT_E_INVALID, &err);
    ck_err(ct_router_handle(r, fp, NULL, 1, (const uint8_t *)"{\"op", 4, &resp, &len, &err),
           CT_E_INVALID, &err);
    ct_router_free(r);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("agent");
    TCase *tc = tcase_create("agent");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bridge_options_checked);
    tcase_add_test(tc, bridge_status_for_probes);
    tcase_add_test(tc, bridge_refuses_newer_store_layout);
    tcase_add_test(tc, operator_options_checked_and_stops);
    tcase_add_test(tc, harden_disables_core_dumps);
    tcase_add_test(tc, hostport);
    tcase_add_test(tc, unhex);
    tcase_add_test(tc, event_names);
    tcase_add_test(tc, router_dispatch);
    suite_add_tcase(s, tc);
    return s;
}
