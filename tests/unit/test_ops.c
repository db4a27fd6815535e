/*
 * test_ops.c - the operations endpoint (ops.h) driven with libcurl: every
 * path, HEAD, wrong methods, unknown paths, probes flipping, the metrics
 * text (escaping, NaN/Inf, bad names, the size limit), the address checks
 * and a port that is taken.
 */
#include "testutil.h"

#include <curl/curl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct state {
    atomic_int healthy, ready, mode; /* mode: 0 normal, 1 bad name, 2 huge */
    atomic_int scrapes;
} state;

static int p_healthy(void *u)
{
    return atomic_load(&((state *)u)->healthy);
}

static int p_ready(void *u)
{
    return atomic_load(&((state *)u)->ready);
}

static void metrics(void *u, ct_ops_metrics *m)
{
    state *st = u;
    int n = atomic_fetch_add(&st->scrapes, 1) + 1;
    ct_ops_metric(m, "test_scrapes_total", CT_OPS_COUNTER, "Scrapes so far.", n);
    ct_ops_metric(m, "test_ratio", CT_OPS_GAUGE, "A \\ backslash\nand a newline.", 0.25);
    ct_ops_metric(m, "test_nan", CT_OPS_GAUGE, NULL, NAN);
    ct_ops_metric(m, "test_inf", CT_OPS_GAUGE, "", -INFINITY);
    ct_ops_metric(m, "test_big", CT_OPS_COUNTER, "2^53.", 9007199254740992.0);
    ct_ops_metric(m, "test_tenth", CT_OPS_GAUGE, "0.1 + 0.2", 0.1 + 0.2);
    ct_ops_metric(m, "test_fifth", CT_OPS_GAUGE, "0.2", 0.2);
    if (atomic_load(&st->mode) == 1)
        ct_ops_metric(m, "9bad-name", CT_OPS_GAUGE, "x", 1);
    if (atomic_load(&st->mode) == 2) {
        char name[64];
        for (int i = 0; i < 10000; i++) {
            snprintf(name, sizeof name, "test_many_%d", i);
            ct_ops_metric(m, name, CT_OPS_GAUGE, "One of very many gauges.", i);
        }
    }
}

typedef struct resp {
    long status;
    char body[65536];
    size_t n;
    char allow[64];
    char type[128];
} resp;

static size_t on_body(char *p, size_t sz, size_t nm, void *u)
{
    resp *r = u;
    size_t len = sz * nm, room = sizeof r->body - 1 - r->n;
    memcpy(r->body + r->n, p, len < room ? len : room);
    r->n += len < room ? len : room;
    r->body[r->n] = 0;
    return len;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *u)
{
    resp *r = u;
    size_t len = sz * nm;
    if (len > 6 && strncasecmp(p, "Allow:", 6) == 0)
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)(len - 6), p + 6);
    if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0)
        snprintf(r->type, sizeof r->type, "%.*s", (int)(len - 13), p + 13);
    return len;
}

/* method NULL: GET. Returns the curl code. */
static CURLcode http(const char *addr, const char *path, const char *method, size_t body_len,
                     resp *r)
{
    CURL *c = curl_easy_init();
    char url[256];
    char *body = NULL;
    CURLcode rc;
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (method && strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (method && strcmp(method, "POST") == 0) {
        body = calloc(1, body_len + 1);
        memset(body, 'a', body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    } else if (method) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    free(body);
    return rc;
}

/* The context the servers log to: borrowed by them, freed after them. */
static ct_ctx *g_ctx;

static ct_ops_server *start(state *st, const char *host, ct_error *err)
{
    ct_ops_options o = CT_OPS_OPTIONS_INIT;
    ct_ops_server *s = NULL;
    if (!g_ctx)
        g_ctx = ct_test_ctx();
    o.host = host;
    o.healthy = p_healthy;
    o.ready = p_ready;
    o.metrics = metrics;
    o.user = st;
    ck_ok(ct_ops_server_start(g_ctx, &o, &s, err), err);
    return s;
}

START_TEST(test_paths_and_probes)
{
    state st = { 0 };
    ct_error err;
    resp r;
    ct_ops_server *s;
    char want[64];

    atomic_store(&st.healthy, 1);
    s = start(&st, NULL, &err);
    ck_assert_uint_ne(ct_ops_server_port(s), 0);
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)ct_ops_server_port(s));
    ck_assert_str_eq(ct_ops_server_address(s), want);

    ck_assert_int_eq(http(want, "/healthz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ok\n");
    ck_assert_ptr_nonnull(strstr(r.type, "text/plain"));

    /* not ready, then ready, then not again */
    ck_assert_int_eq(http(want, "/readyz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "not ready\n");
    atomic_store(&st.ready, 1);
    ck_assert_int_eq(http(want, "/readyz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ready\n");
    atomic_store(&st.ready, 0);
    ck_assert_int_eq(http(want, "/readyz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 503);

    /* unhealthy */
    atomic_store(&st.healthy, 0);
    ck_assert_int_eq(http(want, "/healthz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 503);
    atomic_store(&st.healthy, 1);

    /* HEAD: same status, no body */
    ck_assert_int_eq(http(want, "/healthz", "HEAD", 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.n, 0);

    /* wrong methods: 405 + Allow; a big body is not read (answered at once) */
    ck_assert_int_eq(http(want, "/healthz", "DELETE", 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 405);
    ck_assert_ptr_nonnull(strstr(r.allow, "GET, HEAD"));
    ck_assert_int_eq(http(want, "/metrics", "POST", 4u << 20, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 405);
    ck_assert_int_eq(http(want, "/readyz", "PUT", 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 405);

    /* unknown paths */
    ck_assert_int_eq(http(want, "/", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(http(want, "/healthz/x", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(http(want, "/metricsX", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 404);

    ct_ops_server_free(s);
    /* stopped: nothing listens there any more */
    ck_assert_int_ne(http(want, "/healthz", NULL, 0, &r), CURLE_OK);
    ct_ctx_free(g_ctx);
    g_ctx = NULL;
}
END_TEST

START_TEST(test_metrics_text)
{
    state st = { 0 };
    ct_error err;
    resp r;
    ct_ops_server *s;

    atomic_store(&st.healthy, 1);
    s = start(&st, "127.0.0.1", &err);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/metrics", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.type, "version=0.0.4"));
    ck_assert_ptr_nonnull(strstr(r.body, "# HELP test_scrapes_total Scrapes so far.\n"
                                         "# TYPE test_scrapes_total counter\n"
                                         "test_scrapes_total 1\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "# HELP test_ratio A \\\\ backslash\\nand a newline.\n"
                                         "# TYPE test_ratio gauge\ntest_ratio 0.25\n"));
    /* no HELP line without help text */
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE test_nan gauge\ntest_nan NaN\n"));
    ck_assert_ptr_null(strstr(r.body, "# HELP test_nan"));
    ck_assert_ptr_nonnull(strstr(r.body, "test_inf -Inf\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "test_big 9007199254740992\n"));
    /* shortest exact form: 0.2 as "0.2", 0.1 + 0.2 with all its digits */
    ck_assert_ptr_nonnull(strstr(r.body, "test_fifth 0.2\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "test_tenth 0.30000000000000004\n"));
    /* a second scrape calls the callback again */
    ck_assert_int_eq(http(ct_ops_server_address(s), "/metrics", NULL, 0, &r), CURLE_OK);
    ck_assert_ptr_nonnull(strstr(r.body, "test_scrapes_total 2\n"));

    /* a bad name makes the scrape fail visibly */
    atomic_store(&st.mode, 1);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/metrics", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 500);
    /* so does a body over the limit (10000 gauges, ~700 KB) */
    atomic_store(&st.mode, 2);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/metrics", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 500);
    atomic_store(&st.mode, 0);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/metrics", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ct_ops_server_free(s);
    ct_ctx_free(g_ctx);
    g_ctx = NULL;
}
END_TEST

static int always(void *u)
{
    (void)u;
    return 1;
}

START_TEST(test_defaults)
{
    /* no callbacks: healthy and ready while running, empty metrics */
    ct_ops_options o = CT_OPS_OPTIONS_INIT;
    ct_ops_server *s = NULL;
    ct_error err;
    resp r;
    ck_ok(ct_ops_server_start(NULL, &o, &s, &err), &err);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/healthz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/readyz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/metrics", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.n, 0);
    ct_ops_server_free(s);
    /* only healthy given: readiness follows it */
    o.healthy = always;
    ck_ok(ct_ops_server_start(NULL, &o, &s, &err), &err);
    ck_assert_int_eq(http(ct_ops_server_address(s), "/readyz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ct_ops_server_free(s);
    ct_ops_server_free(NULL);
    ck_assert_uint_eq(ct_ops_server_port(NULL), 0);
    ct_ops_metric(NULL, "x", CT_OPS_GAUGE, "x", 1); /* no-op */
}
END_TEST

START_TEST(test_refusals)
{
    ct_ops_options o = CT_OPS_OPTIONS_INIT;
    ct_ops_server *s = NULL, *s2 = NULL;
    ct_error err;

    ck_err(ct_ops_server_start(NULL, NULL, &s, &err), CT_E_INVALID, &err);
    ck_err(ct_ops_server_start(NULL, &o, NULL, &err), CT_E_INVALID, &err);
    o.version = 99;
    ck_err(ct_ops_server_start(NULL, &o, &s, &err), CT_E_VERSION, &err);
    o.version = CT_OPS_OPTIONS_VERSION;
    o.host = "localhost"; /* names are not resolved */
    ck_err(ct_ops_server_start(NULL, &o, &s, &err), CT_E_INVALID, &err);
    o.host = "[::1]";
    ck_err(ct_ops_server_start(NULL, &o, &s, &err), CT_E_INVALID, &err);
    /* not loopback, not allowed */
    o.host = "0.0.0.0";
    ck_err(ct_ops_server_start(NULL, &o, &s, &err), CT_E_DENIED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "loopback"));
    o.host = "::";
    ck_err(ct_ops_server_start(NULL, &o, &s, &err), CT_E_DENIED, &err);
    o.host = "192.0.2.1";
    ck_err(ct_ops_server_start(NULL, &o, &s, &err), CT_E_DENIED, &err);
    ck_assert_ptr_null(s);
    /* allowed: every address */
    o.host = "0.0.0.0";
    o.allow_remote = 1;
    ck_ok(ct_ops_server_start(NULL, &o, &s, &err), &err);
    ck_assert_uint_ne(ct_ops_server_port(s), 0);
    /* the same port again: taken */
    o.host = "127.0.0.1";
    o.allow_remote = 0;
    o.port = ct_ops_server_port(s);
    ck_err(ct_ops_server_start(NULL, &o, &s2, &err), CT_E_ADDRINUSE, &err);
    ck_assert_ptr_null(s2);
    ck_assert_ptr_nonnull(strstr(err.message, "in use"));
    ct_ops_server_free(s);
}
END_TEST

START_TEST(test_ipv6)
{
    state st = { 0 };
    ct_ops_options o = CT_OPS_OPTIONS_INIT;
    ct_ops_server *s = NULL;
    ct_error err;
    resp r;
    char want[64];
    ct_err rc;

    atomic_store(&st.healthy, 1);
    atomic_store(&st.ready, 1);
    o.host = "::1";
    o.ready = p_ready;
    o.user = &st;
    rc = ct_ops_server_start(NULL, &o, &s, &err);
    if (rc != CT_OK) { /* a host without IPv6 loopback */
        fprintf(stderr, "test_ipv6: no ::1 here (%s); skipped\n", err.message);
        return;
    }
    snprintf(want, sizeof want, "[::1]:%u", (unsigned)ct_ops_server_port(s));
    ck_assert_str_eq(ct_ops_server_address(s), want);
    ck_assert_int_eq(http(want, "/readyz", NULL, 0, &r), CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    ct_ops_server_free(s);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_add_test(tc, test_paths_and_probes);
    tcase_add_test(tc, test_metrics_text);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_ipv6);
    suite_add_tcase(s, tc);
    return s;
}
