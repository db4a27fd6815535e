/*
 * test_http.c - the internal HTTPS client (http_internal.h) on its own,
 * against the fake Vault server: every method the Vault store and the
 * Kubernetes client use (GET, HEAD, POST, PUT, PATCH, DELETE with a body,
 * LIST), header checks, https-only, CA and client certificates as files or
 * PEM in memory, the size limit (at, above and per request),
 * Retry-After and Content-Type capture, redirects, one client shared by
 * threads. http.c is private (ctp_*): it is compiled into this program with
 * the two files it needs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_vault.h"
#include "http_internal.h"
#include "testutil.h"

#define TOKEN "hvs.CAESIJhttpTestToken0123456789abcdefghijklmnopqrstuvwxyzABC"

static char g_ca[512], g_client[512], g_client_key[512];

static void paths(void)
{
    const char *d = getenv("CT_TEST_FIXTURES");
    ck_assert_ptr_nonnull(d);
    snprintf(g_ca, sizeof g_ca, "%s/tls/ca.pem", d);
    snprintf(g_client, sizeof g_client, "%s/tls/client.pem", d);
    snprintf(g_client_key, sizeof g_client_key, "%s/tls/client-key.pem", d);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(65536);
    ck_assert_ptr_nonnull(f);
    *len = fread(buf, 1, 65535, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static fake_vault *start(const char *client_ca)
{
    fv_options o;
    fake_vault *fv;
    paths();
    memset(&o, 0, sizeof o);
    o.client_ca_file = client_ca;
    fv = fake_vault_start(&o);
    ck_assert_ptr_nonnull(fv);
    fake_vault_add_token(fv, TOKEN, 1);
    return fv;
}

static ctp_http *client(const ctp_http_config *c)
{
    ctp_http *h = NULL;
    ct_error err;
    ck_ok(ctp_http_new(NULL, c, &h, &err), &err);
    return h;
}

/* One request with the token; returns the ct_err, fills r. */
static ct_err req(ctp_http *h, fake_vault *fv, const char *method, const char *path,
                  const char *ctype, const char *body, ctp_http_response *r, ct_error *err)
{
    ctp_http_header hd[2] = {{"X-Vault-Token", TOKEN, strlen(TOKEN)},
                             {"Content-Type", ctype, ctype ? strlen(ctype) : 0}};
    ctp_http_request rq;
    char url[512];
    memset(&rq, 0, sizeof rq);
    snprintf(url, sizeof url, "%s%s", fake_vault_addr(fv), path);
    rq.method = method;
    rq.url = url;
    rq.headers = hd;
    rq.nheaders = ctype ? 2 : 1;
    rq.body = (const uint8_t *)body;
    rq.body_len = body ? strlen(body) : 0;
    return ctp_http_do(h, &rq, r, err);
}

#define body_has(r, s) \
    ck_assert_msg(strstr((const char *)(r).body, (s)) != NULL, "body lacks %s: %s", (s), (r).body)

START_TEST(methods)
{
    fake_vault *fv = start(NULL);
    ctp_http_config c = {0};
    ctp_http_response r;
    ct_error err;
    ctp_http *h;
    c.ca_file = g_ca;
    h = client(&c);
    ck_ok(req(h, fv, "POST", "/v1/cloudtaser/data/a", "application/json",
              "{\"data\":{\"x\":\"1\",\"y\":\"2\"}}", &r, &err), &err);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "application/json");
    ck_assert_uint_eq(r.body_len, strlen((const char *)r.body));
    ctp_http_response_clear(&r);
    ck_ok(req(h, fv, "PUT", "/v1/cloudtaser/data/a", "application/json",
              "{\"options\":{\"cas\":1},\"data\":{\"x\":\"1\",\"y\":\"2\"}}", &r, &err), &err);
    ck_assert_int_eq(r.status, 200);
    body_has(r, "\"version\":2");
    ctp_http_response_clear(&r);
    /* PATCH with the merge-patch type: y removed, z added */
    ck_ok(req(h, fv, "PATCH", "/v1/cloudtaser/data/a", "application/merge-patch+json",
              "{\"data\":{\"y\":null,\"z\":\"3\"}}", &r, &err), &err);
    ck_assert_int_eq(r.status, 200);
    ctp_http_response_clear(&r);
    ck_ok(req(h, fv, "GET", "/v1/cloudtaser/data/a", NULL, NULL, &r, &err), &err);
    body_has(r, "\"data\":{\"x\":\"1\",\"z\":\"3\"}");
    ctp_http_response_clear(&r);
    /* LIST as a method */
    ck_ok(req(h, fv, "LIST", "/v1/cloudtaser/metadata/", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.status, 200);
    body_has(r, "\"keys\":[\"a\"]");
    ctp_http_response_clear(&r);
    ck_assert_uint_eq(fake_vault_count(fv, "LIST"), 1);
    /* DELETE with a body (as the Kubernetes client sends preconditions) */
    ck_ok(req(h, fv, "DELETE", "/v1/cloudtaser/metadata/a", "application/json",
              "{\"kind\":\"DeleteOptions\"}", &r, &err), &err);
    ck_assert_int_eq(r.status, 204);
    ck_assert_uint_eq(r.body_len, 0);
    ck_assert_ptr_nonnull(r.body);
    ck_assert_int_eq(r.body[0], 0);
    ctp_http_response_clear(&r);
    /* HEAD: status only */
    ck_ok(req(h, fv, "HEAD", "/v1/sys/health", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    ctp_http_response_clear(&r);
    ctp_http_response_clear(&r); /* twice is harmless */
    ctp_http_free(h);
    fake_vault_stop(fv);
}
END_TEST

START_TEST(request_checks)
{
    fake_vault *fv = start(NULL);
    ctp_http_config c = {0};
    ctp_http_response r;
    ctp_http_request rq;
    ctp_http_header bad[1] = {{"X-Vault-Token", "a\r\nX-Evil: 1", 12}};
    ctp_http_header badname[1] = {{"X Token", "a", 1}};
    ct_error err;
    ctp_http *h;
    char url[256];
    c.ca_file = g_ca;
    h = client(&c);
    snprintf(url, sizeof url, "%s/v1/sys/health", fake_vault_addr(fv));
    memset(&rq, 0, sizeof rq);
    rq.url = url;
    rq.method = "get";
    ck_err(ctp_http_do(h, &rq, &r, &err), CT_E_INVALID, &err);
    rq.method = "GET";
    rq.headers = bad;
    rq.nheaders = 1;
    ck_err(ctp_http_do(h, &rq, &r, &err), CT_E_INVALID, &err);
    rq.headers = badname;
    ck_err(ctp_http_do(h, &rq, &r, &err), CT_E_INVALID, &err);
    rq.headers = NULL;
    rq.nheaders = 0;
    rq.body_len = 3;
    ck_err(ctp_http_do(h, &rq, &r, &err), CT_E_INVALID, &err);
    rq.body_len = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/sys/health",
             (unsigned)fake_vault_port(fv));
    ck_err(ctp_http_do(h, &rq, &r, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "https://"));
    ck_assert_uint_eq(fake_vault_count(fv, NULL), 0);
    ctp_http_free(h);
    /* configurations */
    memset(&c, 0, sizeof c);
    c.cert_file = g_client;
    ck_err(ctp_http_new(NULL, &c, &h, &err), CT_E_INVALID, &err);
    c.key_file = g_client_key;
    c.key_pem = (const uint8_t *)"x";
    c.key_pem_len = 1;
    ck_err(ctp_http_new(NULL, &c, &h, &err), CT_E_INVALID, &err);
    memset(&c, 0, sizeof c);
    c.ca_file = g_ca;
    c.ca_pem = (const uint8_t *)"x";
    c.ca_pem_len = 1;
    ck_err(ctp_http_new(NULL, &c, &h, &err), CT_E_INVALID, &err);
    fake_vault_stop(fv);
}
END_TEST

START_TEST(pem_blobs_and_client_certs)
{
    fake_vault *fv = start(NULL), *mtls;
    ctp_http_config c = {0};
    ctp_http_response r;
    ct_error err;
    ctp_http *h;
    size_t calen, certlen, keylen;
    char *ca = slurp(g_ca, &calen), *cert, *key;
    cert = slurp(g_client, &certlen);
    key = slurp(g_client_key, &keylen);
    c.ca_pem = (const uint8_t *)ca;
    c.ca_pem_len = calen;
    h = client(&c);
    ck_ok(req(h, fv, "GET", "/v1/sys/health", NULL, NULL, &r, &err), &err);
    ctp_http_response_clear(&r);
    ctp_http_free(h);
    /* no CA at all: the system CAs do not know the test CA */
    memset(&c, 0, sizeof c);
    h = client(&c);
    ck_err(req(h, fv, "GET", "/v1/sys/health", NULL, NULL, &r, &err), CT_E_CERT, &err);
    ck_assert_int_eq(r.sent, 0);
    ctp_http_free(h);
    /* insecure (the caller's explicit choice) */
    c.insecure = 1;
    h = client(&c);
    ck_ok(req(h, fv, "GET", "/v1/sys/health", NULL, NULL, &r, &err), &err);
    ctp_http_response_clear(&r);
    ctp_http_free(h);
    fake_vault_stop(fv);
    /* mutual TLS with the certificate and key in memory */
    mtls = start(g_ca);
    memset(&c, 0, sizeof c);
    c.ca_pem = (const uint8_t *)ca;
    c.ca_pem_len = calen;
    c.cert_pem = (const uint8_t *)cert;
    c.cert_pem_len = certlen;
    c.key_pem = (const uint8_t *)key;
    c.key_pem_len = keylen;
    h = client(&c);
    ck_ok(req(h, mtls, "GET", "/v1/sys/health", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.status, 200);
    ctp_http_response_clear(&r);
    ctp_http_free(h);
    /* the same as files */
    memset(&c, 0, sizeof c);
    c.ca_file = g_ca;
    c.cert_file = g_client;
    c.key_file = g_client_key;
    h = client(&c);
    ck_ok(req(h, mtls, "GET", "/v1/sys/health", NULL, NULL, &r, &err), &err);
    ctp_http_response_clear(&r);
    ctp_http_free(h);
    fake_vault_stop(mtls);
    free(ca);
    free(cert);
    free(key);
}
END_TEST

START_TEST(answers)
{
    fake_vault *fv = start(NULL);
    ctp_http_config c = {0};
    ctp_http_response r;
    ctp_http_request rq;
    ct_error err;
    ctp_http *h;
    char url[256];
    c.ca_file = g_ca;
    c.max_response = 4096;
    h = client(&c);
    /* the limit, known from Content-Length */
    fake_vault_fault(fv, FV_FAULT_BIG, 1, 100000, NULL, NULL, NULL);
    ck_err(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), CT_E_TOOBIG, &err);
    ck_assert_ptr_null(r.body);
    ck_assert_ptr_nonnull(strstr(err.message, "larger than 4096 bytes"));
    /* exactly at the limit is fine; one byte more is not */
    fake_vault_fault(fv, FV_FAULT_BIG, 1, 4096, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), &err);
    ck_assert_uint_eq(r.body_len, 4096);
    ctp_http_response_clear(&r);
    fake_vault_fault(fv, FV_FAULT_BIG, 1, 4097, NULL, NULL, NULL);
    ck_err(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), CT_E_TOOBIG, &err);
    /* no Content-Length (chunked, or HTTP/1.0 close-delimited): counted as it
     * arrives, an endless body is cut off at the limit */
    fake_vault_fault(fv, FV_FAULT_STREAM, 1, 0, NULL, NULL, NULL);
    ck_err(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), CT_E_TOOBIG, &err);
    ck_assert_ptr_null(r.body);
    fake_vault_fault(fv, FV_FAULT_STREAM_CLOSE, 1, 0, NULL, NULL, NULL);
    ck_err(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), CT_E_TOOBIG, &err);
    fake_vault_fault(fv, FV_FAULT_STREAM, 1, 4096, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), &err);
    ck_assert_uint_eq(r.body_len, 4096);
    ctp_http_response_clear(&r);
    fake_vault_fault(fv, FV_FAULT_STREAM_CLOSE, 1, 4096, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), &err);
    ck_assert_uint_eq(r.body_len, 4096);
    ctp_http_response_clear(&r);
    /* a per-request limit overrides the client's */
    memset(&rq, 0, sizeof rq);
    snprintf(url, sizeof url, "%s/v1/x", fake_vault_addr(fv));
    rq.url = url;
    rq.max_response = 8192;
    fake_vault_fault(fv, FV_FAULT_BIG, 1, 8000, NULL, NULL, NULL);
    ck_ok(ctp_http_do(h, &rq, &r, &err), &err);
    ctp_http_response_clear(&r);
    /* Retry-After and the status of an error answer */
    fake_vault_fault(fv, FV_FAULT_429, 1, 7, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/cloudtaser/data/x", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.status, 429);
    ck_assert_int_eq(r.retry_after_ms, 7000);
    ctp_http_response_clear(&r);
    /* Retry-After as an HTTP date: the time left, whole seconds; a date in
     * the past is 0; a day is the most */
    fake_vault_fault(fv, FV_FAULT_429_DATE, 1, 7, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/cloudtaser/data/x", NULL, NULL, &r, &err), &err);
    ck_assert_int_ge(r.retry_after_ms, 5000);
    ck_assert_int_le(r.retry_after_ms, 7000);
    ctp_http_response_clear(&r);
    fake_vault_fault(fv, FV_FAULT_429_DATE, 1, -30, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/cloudtaser/data/x", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.retry_after_ms, 0);
    ctp_http_response_clear(&r);
    fake_vault_fault(fv, FV_FAULT_429_DATE, 1, 3 * 86400, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/cloudtaser/data/x", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.retry_after_ms, 86400 * 1000LL);
    ctp_http_response_clear(&r);
    ck_ok(req(h, fv, "GET", "/v1/cloudtaser/data/x", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(r.retry_after_ms, -1);
    ctp_http_response_clear(&r);
    fake_vault_fault(fv, FV_FAULT_HTML, 1, 502, NULL, NULL, NULL);
    ck_ok(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), &err);
    ck_assert_int_eq(r.status, 502);
    ck_assert_str_eq(r.content_type, "text/html");
    ctp_http_response_clear(&r);
    /* redirects are not followed */
    fake_vault_fault(fv, FV_FAULT_REDIRECT, 1, 0, NULL, NULL, NULL);
    fake_vault_reset_counts(fv);
    ck_err(req(h, fv, "GET", "/v1/x", NULL, NULL, &r, &err), CT_E_PROTO, &err);
    ck_assert_int_eq(err.os_error, 307);
    ck_assert_ptr_nonnull(strstr(err.message, "active.vault.example:8200"));
    ck_assert_uint_eq(fake_vault_count(fv, NULL), 1);
    /* connection closed without an answer: a write (always on a fresh
     * connection, never re-sent by libcurl) reports it, marked as sent */
    fake_vault_fault(fv, FV_FAULT_RESET, 1, 0, NULL, NULL, NULL);
    fake_vault_reset_counts(fv);
    ck_err(req(h, fv, "POST", "/v1/cloudtaser/data/x", "application/json", "{\"data\":{}}", &r,
               &err),
           CT_E_RESET, &err);
    ck_assert_int_eq(r.sent, 1);
    ck_assert_uint_eq(fake_vault_count(fv, NULL), 1);
    ck_assert_uint_eq(fake_vault_current_version(fv, NULL, "x", NULL), 0);
    ctp_http_free(h);
    fake_vault_stop(fv);
}
END_TEST

struct th {
    ctp_http *h;
    fake_vault *fv;
    int ok;
};

static void *hammer(void *arg)
{
    struct th *t = arg;
    int i;
    for (i = 0; i < 20; i++) {
        ctp_http_response r;
        ct_error err;
        if (req(t->h, t->fv, "GET", "/v1/sys/health", NULL, NULL, &r, &err) == CT_OK &&
            r.status == 200)
            t->ok++;
        ctp_http_response_clear(&r);
    }
    return NULL;
}

START_TEST(shared_by_threads)
{
    fake_vault *fv = start(NULL);
    ctp_http_config c = {0};
    struct th t[8];
    pthread_t id[8];
    ctp_http *h;
    int i, n = ct_test_under_valgrind() ? 3 : 8;
    c.ca_file = g_ca;
    h = client(&c);
    for (i = 0; i < n; i++) {
        t[i].h = h;
        t[i].fv = fv;
        t[i].ok = 0;
        ck_assert_int_eq(pthread_create(&id[i], NULL, hammer, &t[i]), 0);
    }
    for (i = 0; i < n; i++) {
        pthread_join(id[i], NULL);
        ck_assert_int_eq(t[i].ok, 20);
    }
    ctp_http_free(h);
    fake_vault_stop(fv);
}
END_TEST

/* ---- the multi driver ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct mdone {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    ct_err rc[32];
    long status[32];
    char body[32][160];
    char msg[32][256];
} mdone;

typedef struct mslot {
    mdone *d;
    int i;
} mslot;

static void on_done(void *arg, ct_err rc, const ctp_http_response *resp, const ct_error *err)
{
    mslot *s = arg;
    mdone *d = s->d;
    pthread_mutex_lock(&d->mu);
    d->rc[s->i] = rc;
    ck_assert_msg((rc == CT_OK) == (resp != NULL), "resp must come with CT_OK only");
    if (resp) {
        d->status[s->i] = resp->status;
        snprintf(d->body[s->i], sizeof d->body[0], "%s", (const char *)resp->body);
    } else {
        snprintf(d->msg[s->i], sizeof d->msg[0], "%s", err->message);
    }
    d->calls++;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void wait_done(mdone *d, int n)
{
    int64_t until = mono_ms() + 20000;
    pthread_mutex_lock(&d->mu);
    while (d->calls < n && mono_ms() < until) {
        pthread_mutex_unlock(&d->mu);
        usleep(2000);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    ck_assert_int_eq(d->calls, n);
}

static ct_err mstart(ctp_http_multi *m, fake_vault *fv, const char *method, const char *path,
                     const char *body, int timeout_ms, mslot *slot, ct_error *err)
{
    char tok[64], url[512], *b = body ? strdup(body) : NULL;
    ctp_http_header hd[2];
    ctp_http_request rq;
    ct_err rc;
    snprintf(tok, sizeof tok, "%s", TOKEN);
    hd[0] = (ctp_http_header){"X-Vault-Token", tok, strlen(tok)};
    hd[1] = (ctp_http_header){"Content-Type", "application/json", 16};
    memset(&rq, 0, sizeof rq);
    snprintf(url, sizeof url, "%s%s", path[0] == '/' ? fake_vault_addr(fv) : "", path);
    rq.method = method;
    rq.url = url;
    rq.headers = hd;
    rq.nheaders = body ? 2 : 1;
    rq.body = (const uint8_t *)b;
    rq.body_len = b ? strlen(b) : 0;
    rq.timeout_ms = timeout_ms;
    rc = ctp_http_multi_start(m, &rq, on_done, slot, err);
    /* everything was copied: scribble over the caller's memory at once */
    memset(tok, 'x', sizeof tok);
    memset(url, 0, sizeof url);
    if (b) {
        memset(b, '?', strlen(b));
        free(b);
    }
    return rc;
}

/*
 * Many slow requests wait on the server at once from one driver thread
 * (16 x 300 ms finish in well under 16 x 300 ms); the in-flight bound;
 * request bodies and headers are copied at start; per-request timeout,
 * size limit and validation errors; freeing the driver calls back what is
 * still in flight with CT_E_CLOSED.
 */
START_TEST(multi_driver)
{
    enum { N = 16 };
    fake_vault *fv = start(NULL);
    ctp_http_config c = {0};
    ctp_http_multi *m = NULL;
    mdone d;
    mslot slots[32];
    ct_error err;
    ctp_http *h;
    int64_t t0, took;
    int i;

    memset(&d, 0, sizeof d);
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    for (i = 0; i < 32; i++)
        slots[i] = (mslot){&d, i};
    c.ca_file = g_ca;
    c.max_response = 4096;
    h = client(&c);
    ck_assert_int_eq(ctp_http_multi_new(h, 0, &m, NULL), CT_E_INVALID);
    ck_ok(ctp_http_multi_new(h, N, &m, &err), &err);

    /* a write whose body the caller destroys right after start */
    ck_ok(mstart(m, fv, "POST", "/v1/cloudtaser/data/m", "{\"data\":{\"k\":\"v1\"}}", 0,
                 &slots[0], &err), &err);
    wait_done(&d, 1);
    ck_assert_int_eq(d.rc[0], CT_OK);
    ck_assert_int_eq(d.status[0], 200);

    /* N slow reads at once */
    fake_vault_fault(fv, FV_FAULT_SLOW, N, 300, "GET", "data/m", NULL);
    t0 = mono_ms();
    for (i = 1; i <= N; i++)
        ck_ok(mstart(m, fv, "GET", "/v1/cloudtaser/data/m", NULL, 0, &slots[i], &err), &err);
    /* the bound: N in flight already */
    ck_assert_int_eq(mstart(m, fv, "GET", "/v1/cloudtaser/data/m", NULL, 0, &slots[N + 1], &err),
                     CT_E_AGAIN);
    wait_done(&d, N + 1);
    took = mono_ms() - t0;
    for (i = 1; i <= N; i++) {
        ck_assert_msg(d.rc[i] == CT_OK, "%d: %s %s", i, ct_err_name(d.rc[i]), d.msg[i]);
        ck_assert_int_eq(d.status[i], 200);
        ck_assert_msg(strstr(d.body[i], "\"k\":\"v1\"") != NULL, "%s", d.body[i]);
    }
    if (!ct_test_under_valgrind()) /* it serialises threads: timing means nothing */
        ck_assert_msg(took < N * 300 / 3, "%d slow reads took %lld ms: not concurrent", N,
                      (long long)took);

    /* errors: validation (never called back), timeout, size limit */
    ck_assert_int_eq(mstart(m, fv, "GET", "http://127.0.0.1:1/v1/x", NULL, 0, &slots[20], &err),
                     CT_E_INVALID);
    ck_assert_int_eq(mstart(m, fv, "bad method", "/v1/x", NULL, 0, &slots[20], &err),
                     CT_E_INVALID);
    fake_vault_fault(fv, FV_FAULT_SLOW, 1, 3000, "GET", "data/slow", NULL);
    ck_ok(mstart(m, fv, "GET", "/v1/cloudtaser/data/slow", NULL, 200, &slots[20], &err), &err);
    wait_done(&d, N + 2);
    ck_assert_int_eq(d.rc[20], CT_E_TIMEOUT);
    fake_vault_fault(fv, FV_FAULT_BIG, 1, 100000, NULL, NULL, NULL);
    ck_ok(mstart(m, fv, "GET", "/v1/cloudtaser/data/m", NULL, 0, &slots[21], &err), &err);
    wait_done(&d, N + 3);
    ck_assert_int_eq(d.rc[21], CT_E_TOOBIG);

    /* free with two transfers in flight */
    fake_vault_fault(fv, FV_FAULT_SLOW, 2, 5000, "GET", "data/m", NULL);
    ck_ok(mstart(m, fv, "GET", "/v1/cloudtaser/data/m", NULL, 0, &slots[22], &err), &err);
    ck_ok(mstart(m, fv, "GET", "/v1/cloudtaser/data/m", NULL, 0, &slots[23], &err), &err);
    usleep(100000);
    t0 = mono_ms();
    ctp_http_multi_free(m);
    ck_assert_int_eq(d.calls, N + 5);
    ck_assert_int_eq(d.rc[22], CT_E_CLOSED);
    ck_assert_int_eq(d.rc[23], CT_E_CLOSED);
    ck_assert_int_lt(mono_ms() - t0, 3000);
    ctp_http_multi_free(NULL);
    fake_vault_clear_fault(fv);
    ctp_http_free(h);
    fake_vault_stop(fv);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
}
END_TEST

START_TEST(path_escape)
{
    char out[64];
    ck_assert_int_eq(ctp_http_path_escape("a/b c%?#é", out, sizeof out), 0);
    ck_assert_str_eq(out, "a/b%20c%25%3F%23%C3%A9");
    ck_assert_int_eq(ctp_http_path_escape("abc", out, 4), 0);
    ck_assert_int_eq(ctp_http_path_escape("abcd", out, 4), -1);
    ck_assert_int_eq(ctp_http_path_escape(" ", out, 3), -1);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, methods);
    tcase_add_test(tc, request_checks);
    tcase_add_test(tc, pem_blobs_and_client_certs);
    tcase_add_test(tc, answers);
    tcase_add_test(tc, shared_by_threads);
    tcase_add_test(tc, path_escape);
    tcase_add_test(tc, multi_driver);
    suite_add_tcase(s, tc);
    return s;
}
