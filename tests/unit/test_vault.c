/*
 * test_vault.c - the Vault / OpenBao store (vault.h) and the HTTPS client
 * under it, against the fake server (tests/support/fake_vault.c):
 *   - the fake itself answers byte for byte like ../shared/fixtures;
 *   - options and the environment (VAULT_*), refusals (http://, skip-verify
 *     without force, no token, bad token characters, missing files);
 *   - the value layout in KV (plain JSON objects vs ct_b64) and round trips;
 *   - KV semantics seen through the store: deleted / destroyed versions,
 *     cas_required, delete removes every version, list walks;
 *   - every fault: the right code, an actionable message, bounded time, the
 *     right number of requests (retries counted), and a write whose answer
 *     was lost never reported done unless reading back proves it;
 *   - TLS: foreign CA, forced insecure, client certificates, redirects,
 *     the response size limit; health checks; namespaces.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fake_vault.h"
#include "testutil.h"

#define TOKEN "hvs.CAESIJtestTokenWithSomeLength0123456789abcdefghijklmnopqrst"
#define WEAK "hvs.CAESIJweakTokenWithoutAnyPolicy0123456789abcdefghijklmnopq"
#define FP "0ad50c05-1153-4508-9237-4cb2912e2c23"

static char g_ca[512], g_foreign_ca[512], g_client[512], g_client_key[512];

static void paths(void)
{
    const char *d = getenv("CT_TEST_FIXTURES");
    ck_assert_ptr_nonnull(d);
    snprintf(g_ca, sizeof g_ca, "%s/tls/ca.pem", d);
    snprintf(g_foreign_ca, sizeof g_foreign_ca, "%s/tls/foreign-ca.pem", d);
    snprintf(g_client, sizeof g_client, "%s/tls/client.pem", d);
    snprintf(g_client_key, sizeof g_client_key, "%s/tls/client-key.pem", d);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One test's world: a fake server, a context, options pointing at it. */
typedef struct world {
    fake_vault *fv;
    ct_ctx *ctx;
    ct_vault_options o;
    ct_store *s;
} world;

static void world_start(world *w, fv_flavour fl, const char *client_ca)
{
    fv_options fo;
    paths();
    memset(w, 0, sizeof *w);
    memset(&fo, 0, sizeof fo);
    fo.flavour = fl;
    fo.client_ca_file = client_ca;
    w->fv = fake_vault_start(&fo);
    ck_assert_ptr_nonnull(w->fv);
    fake_vault_add_token(w->fv, TOKEN, 1);
    fake_vault_add_token(w->fv, WEAK, 0);
    w->ctx = ct_test_ctx();
    w->o = (ct_vault_options)CT_VAULT_OPTIONS_INIT;
    w->o.address = fake_vault_addr(w->fv);
    w->o.token = TOKEN;
    w->o.ca_file = g_ca;
    w->o.timeout_ms = 5000;
    w->o.retry_wait_ms = 10;
}

static void world_open(world *w)
{
    ct_error err;
    ct_store_free(w->s);
    w->s = NULL;
    ck_ok(ct_store_new_vault(w->ctx, &w->o, &w->s, &err), &err);
}

static void world_stop(world *w)
{
    ct_store_free(w->s);
    fake_vault_stop(w->fv);
    ct_ctx_free(w->ctx);
}

static void put_ok(ct_store *s, const char *key, const char *val, int64_t expected, uint64_t want)
{
    uint64_t v = 0;
    ct_error err;
    ck_ok(ct_store_put(s, key, val, strlen(val), expected, &v, &err), &err);
    if (want)
        ck_assert_uint_eq(v, want);
}

static void expect_value(ct_store *s, const char *key, const void *val, size_t len, uint64_t ver)
{
    ct_secret *v = NULL;
    uint64_t got = 0;
    ct_error err;
    ck_ok(ct_store_get(s, key, &v, &got, &err), &err);
    ck_assert_uint_eq(ct_secret_len(v), len);
    ck_assert(len == 0 || memcmp(ct_secret_data(v), val, len) == 0);
    if (ver)
        ck_assert_uint_eq(got, ver);
    ct_secret_free(v);
}

#define ck_msg_has(err, needle)                                                              \
    ck_assert_msg(strstr((err).message, (needle)) != NULL, "message '%s' lacks '%s'",         \
                  (err).message, (needle))

/* ---- raw HTTP (to compare the fake with the fixtures) ---- */

static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen(*buf) : 0;
    char *nb = realloc(*buf, old + sz * n + 1);
    if (!nb)
        return 0;
    memcpy(nb + old, p, sz * n);
    nb[old + sz * n] = 0;
    *buf = nb;
    return sz * n;
}

/* A raw request; returns the body (malloc'ed, "" if none) and the status. */
static char *raw(fake_vault *fv, const char *method, const char *path, const char *token,
                 const char *body, const char *ns, long *status)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[1024], th[512], nh[512];
    char *out = NULL;
    ck_assert_ptr_nonnull(c);
    snprintf(url, sizeof url, "%s%s", fake_vault_addr(fv), path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, g_ca);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (token) {
        snprintf(th, sizeof th, "X-Vault-Token: %s", token);
        h = curl_slist_append(h, th);
    }
    if (ns) {
        snprintf(nh, sizeof nh, "X-Vault-Namespace: %s", ns);
        h = curl_slist_append(h, nh);
    }
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return out ? out : strdup("");
}

static json_t *fixture(const char *name)
{
    char p[1024];
    json_error_t je;
    json_t *j;
    const char *d = getenv("CT_SHARED_FIXTURES");
    ck_assert_ptr_nonnull(d);
    snprintf(p, sizeof p, "%s/%s", d, name);
    j = json_load_file(p, 0, &je);
    ck_assert_msg(j != NULL, "fixture %s: %s", name, je.text);
    return j;
}

/*
 * Same members in the same order with the same types, recursively; null
 * on either side matches anything (e.g. custom_metadata).
 */
static int same_shape(json_t *a, json_t *b, char *where, size_t n)
{
    if (json_is_null(a) || json_is_null(b))
        return 1;
    if (json_typeof(a) != json_typeof(b) &&
        !(json_is_boolean(a) && json_is_boolean(b))) {
        snprintf(where, n, "type differs");
        return 0;
    }
    if (json_is_object(a)) {
        void *ia = json_object_iter(a), *ib = json_object_iter(b);
        while (ia && ib) {
            const char *ka = json_object_iter_key(ia), *kb = json_object_iter_key(ib);
            if (strcmp(ka, kb) != 0) {
                snprintf(where, n, "member '%s' where the fixture has '%s'", ka, kb);
                return 0;
            }
            if (!same_shape(json_object_iter_value(ia), json_object_iter_value(ib), where, n)) {
                size_t l = strlen(where);
                snprintf(where + l, n - l, " in '%s'", ka);
                return 0;
            }
            ia = json_object_iter_next(a, ia);
            ib = json_object_iter_next(b, ib);
        }
        if (ia || ib) {
            snprintf(where, n, "member '%s' %s", json_object_iter_key(ia ? ia : ib),
                     ia ? "not in the fixture" : "missing");
            return 0;
        }
    }
    return 1;
}

static void check_shape(const char *body, const char *fix)
{
    json_t *a = json_loads(body, 0, NULL), *b = fixture(fix);
    char where[256] = "";
    ck_assert_msg(a != NULL, "%s: body is not JSON: %s", fix, body);
    ck_assert_msg(same_shape(a, b, where, sizeof where), "%s: %s\nbody: %s", fix, where, body);
    json_decref(a);
    json_decref(b);
}

static void check_exact(const char *body, const char *fix)
{
    json_t *a = json_loads(body, 0, NULL), *b = fixture(fix);
    ck_assert_msg(a != NULL && json_equal(a, b), "%s: body differs: %s", fix, body);
    json_decref(a);
    json_decref(b);
}

static void expect_raw(world *w, const char *method, const char *path, const char *token,
                       const char *body, long want_status, const char *fix, int exact)
{
    long st = 0;
    char *b = raw(w->fv, method, path, token, body, NULL, &st);
    ck_assert_msg(st == want_status, "%s %s: HTTP %ld, want %ld: %s", method, path, st,
                  want_status, b);
    if (exact)
        check_exact(b, fix);
    else
        check_shape(b, fix);
    ck_assert_msg(b[0] && b[strlen(b) - 1] == '\n', "Go's encoder ends bodies with a newline");
    free(b);
}

START_TEST(fake_matches_fixtures_vault)
{
    world w;
    long st;
    char *b;
    world_start(&w, FV_VAULT, NULL);
    b = raw(w.fv, "POST", "/v1/cloudtaser/metadata/payments/db", TOKEN,
            "{\"custom_metadata\":{\"owner\":\"payments-team\"}}", NULL, &st);
    ck_assert_int_eq(st, 204);
    ck_assert_str_eq(b, "");
    free(b);
    expect_raw(&w, "POST", "/v1/cloudtaser/data/payments/db", TOKEN,
               "{\"options\":{\"cas\":0},\"data\":{\"password\":\"S3cr3t-Example-Only\","
               "\"username\":\"app_user\"}}",
               200, "vault-kv2-write-response.json", 0);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", TOKEN, NULL, 200,
               "vault-kv2-read.json", 0);
    expect_raw(&w, "POST", "/v1/cloudtaser/data/payments/db", TOKEN,
               "{\"options\":{\"cas\":7},\"data\":{\"a\":\"b\"}}", 400,
               "vault-kv2-cas-mismatch.json", 1);
    /* a version string is accepted as cas; 1.0 is not an integer */
    expect_raw(&w, "POST", "/v1/cloudtaser/data/payments/db", TOKEN,
               "{\"options\":{\"cas\":\"1\"},\"data\":{\"password\":\"x\",\"username\":\"y\"}}",
               200, "vault-kv2-write-response.json", 0);
    b = raw(w.fv, "POST", "/v1/cloudtaser/data/payments/db", TOKEN,
            "{\"options\":{\"cas\":2.0},\"data\":{\"a\":\"b\"}}", NULL, &st);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(b, "error parsing check-and-set parameter"));
    free(b);
    b = raw(w.fv, "POST", "/v1/cloudtaser/data/x", TOKEN, "{not json", NULL, &st);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(b, "error parsing JSON"));
    free(b);
    b = raw(w.fv, "POST", "/v1/cloudtaser/data/x", TOKEN, "{\"options\":{}}", NULL, &st);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(b, "no data provided"));
    free(b);
    fake_vault_set_cas_required(w.fv, 1);
    expect_raw(&w, "POST", "/v1/cloudtaser/data/payments/db", TOKEN, "{\"data\":{\"a\":\"b\"}}",
               400, "vault-kv2-cas-required.json", 1);
    fake_vault_set_cas_required(w.fv, 0);
    b = raw(w.fv, "POST", "/v1/cloudtaser/data/db-credentials", TOKEN, "{\"data\":{}}", NULL,
            &st);
    free(b);
    b = raw(w.fv, "POST", "/v1/cloudtaser/data/webhook-token", TOKEN, "{\"data\":{}}", NULL, &st);
    free(b);
    expect_raw(&w, "LIST", "/v1/cloudtaser/metadata", TOKEN, NULL, 200, "vault-kv2-list.json",
               0);
    b = raw(w.fv, "GET", "/v1/cloudtaser/metadata/?list=true", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_ptr_nonnull(strstr(b, "\"keys\":[\"db-credentials\",\"payments/\",\"webhook-token\"]"));
    free(b);
    b = raw(w.fv, "GET", "/v1/cloudtaser/metadata/?list=maybe", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 400);
    free(b);
    expect_raw(&w, "LIST", "/v1/cloudtaser/metadata/nothing/", TOKEN, NULL, 404,
               "vault-error-404.json", 1);
    expect_raw(&w, "LIST", "/v1/cloudtaser/metadata/webhook-token", TOKEN, NULL, 404,
               "vault-error-404.json", 1); /* LIST on a leaf */
    expect_raw(&w, "GET", "/v1/cloudtaser/data/missing", TOKEN, NULL, 404,
               "vault-error-404.json", 1);
    /* soft delete: 204, then the 404 envelope; undelete brings it back */
    b = raw(w.fv, "DELETE", "/v1/cloudtaser/data/payments/db", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 204);
    free(b);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", TOKEN, NULL, 404,
               "vault-kv2-read-deleted-404.json", 0);
    b = raw(w.fv, "POST", "/v1/cloudtaser/undelete/payments/db", TOKEN, "{\"versions\":[2]}",
            NULL, &st);
    ck_assert_int_eq(st, 204);
    free(b);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", TOKEN, NULL, 200,
               "vault-kv2-read.json", 0);
    b = raw(w.fv, "PUT", "/v1/cloudtaser/destroy/payments/db", TOKEN, "{\"versions\":[2]}", NULL,
            &st);
    ck_assert_int_eq(st, 204);
    free(b);
    b = raw(w.fv, "GET", "/v1/cloudtaser/data/payments/db", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 404);
    ck_assert_ptr_nonnull(strstr(b, "\"destroyed\":true"));
    ck_assert_ptr_nonnull(strstr(b, "\"mount_type\":\"\""));
    free(b);
    /* version 1 still reads */
    b = raw(w.fv, "GET", "/v1/cloudtaser/data/payments/db?version=1", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 200);
    free(b);
    /* PATCH needs the merge-patch content type */
    b = raw(w.fv, "PATCH", "/v1/cloudtaser/data/payments/db", TOKEN, "{\"data\":{}}", NULL, &st);
    ck_assert_int_eq(st, 415);
    ck_assert_ptr_nonnull(strstr(b, "PATCH requires Content-Type of application/merge-patch+json"));
    free(b);
    expect_raw(&w, "GET", "/v1/cloudtaser/payments/db", TOKEN, NULL, 404,
               "vault-kv2-invalid-path-404.json", 0);
    b = raw(w.fv, "GET", "/v1/cloudtaser/payments/db", TOKEN, NULL, NULL, &st);
    ck_assert_ptr_nonnull(strstr(b, "use 'vault kv get' for this operation"));
    free(b);
    expect_raw(&w, "GET", "/v1/kv-missing/data/app", TOKEN, NULL, 404,
               "vault-error-no-route-404.json", 1);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", NULL, NULL, 403,
               "vault-error-403.json", 1);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", WEAK, NULL, 403,
               "vault-error-403.json", 1);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", "hvs.unknown", NULL, 403,
               "vault-error-403-invalid-token.json", 1);
    expect_raw(&w, "GET", "/v1/sys/health", NULL, NULL, 200, "vault-sys-health.json", 0);
    fake_vault_set_sealed(w.fv, 1);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/payments/db", TOKEN, NULL, 503,
               "vault-error-503-sealed.json", 1);
    expect_raw(&w, "GET", "/v1/sys/health", NULL, NULL, 503, "vault-sys-health-sealed-503.json",
               0);
    world_stop(&w);
}
END_TEST

START_TEST(fake_matches_fixtures_openbao)
{
    world w;
    long st;
    char *b;
    world_start(&w, FV_OPENBAO, NULL);
    b = raw(w.fv, "POST", "/v1/cloudtaser/data/a", TOKEN, "{\"data\":{\"k\":\"v\"}}", NULL, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_ptr_null(strstr(b, "mount_type"));
    free(b);
    b = raw(w.fv, "GET", "/v1/cloudtaser/data/a", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_ptr_null(strstr(b, "mount_type"));
    free(b);
    expect_raw(&w, "GET", "/v1/cloudtaser/data/a", "s.unknown", NULL, 403,
               "vault-error-403.json", 1); /* OpenBao: no "invalid token" */
    expect_raw(&w, "GET", "/v1/sys/health", NULL, NULL, 200, "openbao-sys-health.json", 0);
    b = raw(w.fv, "GET", "/v1/cloudtaser/a", TOKEN, NULL, NULL, &st);
    ck_assert_int_eq(st, 404);
    ck_assert_ptr_nonnull(strstr(b, "use 'bao kv get' for this operation"));
    free(b);
    /* OpenBao refuses health checks in a namespace */
    b = raw(w.fv, "GET", "/v1/sys/health", NULL, NULL, "team-a/", &st);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(b, "operation unavailable in namespaces"));
    free(b);
    world_stop(&w);
}
END_TEST

/* ---- options and environment ---- */

static const char *const vault_vars[] = {
    "VAULT_ADDR",        "VAULT_TOKEN",       "VAULT_NAMESPACE",   "VAULT_CACERT",
    "VAULT_CAPATH",      "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY",  "VAULT_SKIP_VERIFY",
    "VAULT_MAX_RETRIES", "VAULT_CLIENT_TIMEOUT"};

static void clear_env(void)
{
    size_t i;
    for (i = 0; i < sizeof vault_vars / sizeof vault_vars[0]; i++)
        unsetenv(vault_vars[i]);
}

START_TEST(env_all_variables)
{
    ct_vault_options o = CT_VAULT_OPTIONS_INIT;
    ct_error err;
    clear_env();
    setenv("VAULT_ADDR", "https://vault.example:8200", 1);
    setenv("VAULT_TOKEN", "hvs.env", 1);
    setenv("VAULT_NAMESPACE", "team-a/", 1);
    setenv("VAULT_CACERT", "/etc/ca.pem", 1);
    setenv("VAULT_CAPATH", "/etc/cas", 1);
    setenv("VAULT_CLIENT_CERT", "/etc/c.pem", 1);
    setenv("VAULT_CLIENT_KEY", "/etc/k.pem", 1);
    setenv("VAULT_SKIP_VERIFY", "True", 1);
    setenv("VAULT_MAX_RETRIES", "5", 1);
    setenv("VAULT_CLIENT_TIMEOUT", "2m", 1);
    ck_ok(ct_vault_options_from_env(&o, &err), &err);
    ck_assert_str_eq(o.address, "https://vault.example:8200");
    ck_assert_str_eq(o.token, "hvs.env");
    ck_assert_ptr_null(o.token_file);
    ck_assert_str_eq(o.namespace_path, "team-a/");
    ck_assert_str_eq(o.ca_file, "/etc/ca.pem");
    ck_assert_str_eq(o.ca_path, "/etc/cas");
    ck_assert_str_eq(o.client_cert, "/etc/c.pem");
    ck_assert_str_eq(o.client_key, "/etc/k.pem");
    ck_assert_int_eq(o.skip_verify, 1);
    ck_assert_int_eq(o.max_retries, 5);
    ck_assert_int_eq(o.timeout_ms, 120000);
    clear_env();
}
END_TEST

START_TEST(env_flags_win_and_defaults)
{
    ct_vault_options o = CT_VAULT_OPTIONS_INIT;
    ct_error err;
    clear_env();
    setenv("VAULT_ADDR", "https://env:8200", 1);
    setenv("VAULT_TOKEN", "hvs.env", 1);
    setenv("VAULT_MAX_RETRIES", "0", 1);
    setenv("VAULT_CLIENT_TIMEOUT", "30", 1);
    setenv("VAULT_CACERT", "", 1); /* empty: unset */
    o.address = "https://flag:8200";
    o.token_file = "/run/token"; /* a token file flag beats VAULT_TOKEN */
    ck_ok(ct_vault_options_from_env(&o, &err), &err);
    ck_assert_str_eq(o.address, "https://flag:8200");
    ck_assert_ptr_null(o.token);
    ck_assert_str_eq(o.token_file, "/run/token");
    ck_assert_ptr_null(o.ca_file);
    ck_assert_int_eq(o.max_retries, -1); /* "0" means no retries */
    ck_assert_int_eq(o.timeout_ms, 30000);
    /* no token anywhere: the vault CLI's ~/.vault-token */
    o = (ct_vault_options)CT_VAULT_OPTIONS_INIT;
    unsetenv("VAULT_TOKEN");
    ck_ok(ct_vault_options_from_env(&o, &err), &err);
    ck_assert_ptr_null(o.token);
    ck_assert_str_eq(o.token_file, CT_VAULT_TOKEN_FILE_HOME);
    clear_env();
}
END_TEST

START_TEST(env_bad_values)
{
    static const char *const cases[][2] = {
        {"VAULT_SKIP_VERIFY", "yes"},  {"VAULT_SKIP_VERIFY", "2"},
        {"VAULT_MAX_RETRIES", "many"}, {"VAULT_MAX_RETRIES", "-1"},
        {"VAULT_CLIENT_TIMEOUT", "soon"}, {"VAULT_CLIENT_TIMEOUT", "10x"},
        {"VAULT_CLIENT_TIMEOUT", "0"}};
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ct_vault_options o = CT_VAULT_OPTIONS_INIT;
        ct_error err;
        clear_env();
        setenv(cases[i][0], cases[i][1], 1);
        ck_err(ct_vault_options_from_env(&o, &err), CT_E_INVALID, &err);
        ck_msg_has(err, cases[i][0]);
    }
    {
        ct_vault_options o = CT_VAULT_OPTIONS_INIT;
        ct_error err;
        o.version = 99;
        ck_err(ct_vault_options_from_env(&o, &err), CT_E_VERSION, &err);
        ck_err(ct_vault_options_from_env(NULL, &err), CT_E_INVALID, &err);
    }
    clear_env();
}
END_TEST

/* Opens with `o` and expects `code` with `needle` in the message. */
static void refuse(ct_ctx *ctx, const ct_vault_options *o, ct_err code, const char *needle)
{
    ct_store *s = (ct_store *)&s;
    ct_error err;
    ck_err(ct_store_new_vault(ctx, o, &s, &err), code, &err);
    ck_assert_ptr_null(s);
    ck_msg_has(err, needle);
}

START_TEST(options_refused)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_vault_options o = CT_VAULT_OPTIONS_INIT, b;
    char tokfile[] = "/tmp/ct-vault-tok-XXXXXX";
    int fd;
    paths();
    o.address = "https://127.0.0.1:1";
    o.token = TOKEN;
    b = o;
    o.address = NULL;
    refuse(ctx, &o, CT_E_INVALID, "VAULT_ADDR");
    o.address = "http://vault:8200";
    refuse(ctx, &o, CT_E_INVALID, "in the clear");
    o.address = "ftp://vault";
    refuse(ctx, &o, CT_E_INVALID, "https://");
    o.address = "https://vault:8200/?x=1";
    refuse(ctx, &o, CT_E_INVALID, "query");
    o.address = "https://user:pw@vault:8200";
    refuse(ctx, &o, CT_E_INVALID, "user info");
    o = b;
    o.token = NULL;
    refuse(ctx, &o, CT_E_INVALID, "no Vault token");
    o.token = "hvs.with space";
    refuse(ctx, &o, CT_E_INVALID, "characters a token cannot have");
    o.token = "hvs.abc\r\nX-Evil: 1";
    refuse(ctx, &o, CT_E_INVALID, "characters a token cannot have");
    o = b;
    o.skip_verify = 1;
    refuse(ctx, &o, CT_E_INVALID, "--force-insecure");
    o = b;
    o.client_cert = g_client;
    refuse(ctx, &o, CT_E_INVALID, "needs its key");
    o = b;
    o.mount = "bad mount";
    refuse(ctx, &o, CT_E_INVALID, "mount");
    o.mount = "a/../b";
    refuse(ctx, &o, CT_E_INVALID, "dot segment");
    o = b;
    o.namespace_path = "team\nX: y";
    refuse(ctx, &o, CT_E_INVALID, "namespace");
    o = b;
    o.version = 7;
    refuse(ctx, &o, CT_E_VERSION, "version");
    /* token files */
    o = b;
    o.token = NULL;
    o.token_file = "/nonexistent/token";
    refuse(ctx, &o, CT_E_NOTFOUND, "/nonexistent/token");
    fd = mkstemp(tokfile);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "  \n", 3), 3);
    close(fd);
    o.token_file = tokfile;
    refuse(ctx, &o, CT_E_INVALID, "empty");
    unlink(tokfile);
    {
        /* ~/.vault-token when it does not exist: say how to log in */
        char *home = ct_test_tmpdir(), *old = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
        setenv("HOME", home, 1);
        o.token_file = CT_VAULT_TOKEN_FILE_HOME;
        refuse(ctx, &o, CT_E_INVALID, "vault login");
        if (old)
            setenv("HOME", old, 1);
        free(old);
        ct_test_rmrf(home);
        free(home);
    }
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(token_file_and_home)
{
    world w;
    char *home = ct_test_tmpdir(), path[600], *old = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    FILE *f;
    world_start(&w, FV_VAULT, NULL);
    snprintf(path, sizeof path, "%s/.vault-token", home);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "  %s\n\n", TOKEN); /* whitespace around it, as editors leave it */
    fclose(f);
    setenv("HOME", home, 1);
    w.o.token = NULL;
    w.o.token_file = CT_VAULT_TOKEN_FILE_HOME;
    world_open(&w);
    put_ok(w.s, "t", "v", CT_STORE_CREATE, 1);
    ck_assert(fake_vault_last_had_token(w.fv));
    ct_store_free(w.s);
    w.s = NULL;
    w.o.token_file = path;
    world_open(&w);
    expect_value(w.s, "t", "v", 1, 1);
    if (old)
        setenv("HOME", old, 1);
    free(old);
    ct_test_rmrf(home);
    free(home);
    world_stop(&w);
}
END_TEST

/* ---- values and KV semantics ---- */

START_TEST(value_layout)
{
    world w;
    static const char canon[] = "{\"cert\":\"-----BEGIN\\nX\",\"key\":\"k\",\"v\":1}";
    static const char spaced[] = "{\"v\": 1}";
    static const char marker[] = "{\"ct_b64\":\"aGk=\"}";
    static const uint8_t bin[] = {0, 1, 2, 0xff, '{', '}'};
    char *j;
    world_start(&w, FV_VAULT, NULL);
    world_open(&w);
    /* a canonical JSON object is the secret's data: readable with vault kv get */
    put_ok(w.s, "rec/canon", canon, CT_STORE_CREATE, 1);
    j = fake_vault_data_json(w.fv, NULL, "rec/canon");
    ck_assert_str_eq(j, canon);
    free(j);
    expect_value(w.s, "rec/canon", canon, strlen(canon), 1);
    /* not canonical, binary, or carrying the marker member: base64 */
    put_ok(w.s, "rec/spaced", spaced, CT_STORE_CREATE, 1);
    j = fake_vault_data_json(w.fv, NULL, "rec/spaced");
    ck_assert_str_eq(j, "{\"ct_b64\":\"eyJ2IjogMX0=\"}");
    free(j);
    expect_value(w.s, "rec/spaced", spaced, strlen(spaced), 1);
    put_ok(w.s, "rec/marker", marker, CT_STORE_CREATE, 1);
    expect_value(w.s, "rec/marker", marker, strlen(marker), 1);
    ck_ok(ct_store_put(w.s, "rec/bin", bin, sizeof bin, CT_STORE_CREATE, NULL, NULL), NULL);
    expect_value(w.s, "rec/bin", bin, sizeof bin, 1);
    ck_ok(ct_store_put(w.s, "rec/empty", "", 0, CT_STORE_CREATE, NULL, NULL), NULL);
    j = fake_vault_data_json(w.fv, NULL, "rec/empty");
    ck_assert_str_eq(j, "{\"ct_b64\":\"\"}");
    free(j);
    expect_value(w.s, "rec/empty", "", 0, 1);
    world_stop(&w);
}
END_TEST

START_TEST(deleted_and_destroyed_versions)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    int nv = 0;
    world_start(&w, FV_OPENBAO, NULL);
    world_open(&w);
    put_ok(w.s, "k", "one", CT_STORE_CREATE, 1);
    put_ok(w.s, "k", "two", 1, 2);
    /* another tool soft-deletes the current version: not readable */
    fake_vault_soft_delete(w.fv, NULL, "k");
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_NOTFOUND, &err);
    ck_msg_has(err, "deleted");
    /* the history still exists: create-only fails, the next version works */
    ck_err(ct_store_put(w.s, "k", "x", 1, CT_STORE_CREATE, NULL, &err), CT_E_CONFLICT, &err);
    put_ok(w.s, "k", "three", 2, 3);
    expect_value(w.s, "k", "three", 5, 3);
    fake_vault_destroy_current(w.fv, NULL, "k");
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_NOTFOUND, &err);
    ck_msg_has(err, "destroyed");
    put_ok(w.s, "k", "four", CT_STORE_ANY, 4);
    /* delete removes every version and the metadata */
    ck_assert_uint_eq(fake_vault_current_version(w.fv, NULL, "k", &nv), 4);
    ck_assert_int_eq(nv, 4);
    ck_ok(ct_store_del(w.s, "k", &err), &err);
    ck_assert_uint_eq(fake_vault_current_version(w.fv, NULL, "k", &nv), 0);
    ck_assert_int_eq(nv, 0);
    ck_err(ct_store_del(w.s, "k", &err), CT_E_NOTFOUND, &err);
    world_stop(&w);
}
END_TEST

START_TEST(cas_required_mount)
{
    world w;
    ct_error err;
    world_start(&w, FV_VAULT, NULL);
    fake_vault_set_cas_required(w.fv, 1);
    world_open(&w);
    put_ok(w.s, "c", "a", CT_STORE_CREATE, 1);
    fake_vault_reset_counts(w.fv);
    /* unconditional: refused without cas, then written at the current version */
    put_ok(w.s, "c", "b", CT_STORE_ANY, 2);
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 2);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 1);
    put_ok(w.s, "new", "n", CT_STORE_ANY, 1);
    ck_err(ct_store_put(w.s, "c", "x", 1, 1, NULL, &err), CT_E_CONFLICT, &err);
    expect_value(w.s, "c", "b", 1, 2);
    world_stop(&w);
}
END_TEST

START_TEST(list_walks_only_needed_folders)
{
    world w;
    ct_strlist *l = NULL;
    ct_error err;
    world_start(&w, FV_VAULT, NULL);
    world_open(&w);
    put_ok(w.s, "clusters/" FP "/ca", "c", CT_STORE_CREATE, 1);
    put_ok(w.s, "clusters/" FP "/registered", "r", CT_STORE_CREATE, 1);
    put_ok(w.s, "clusters/other/ca", "c", CT_STORE_CREATE, 1);
    put_ok(w.s, "unrelated/deep/a/b/c", "x", CT_STORE_CREATE, 1);
    fake_vault_reset_counts(w.fv);
    ck_ok(ct_store_list(w.s, "clusters/" FP "/", &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 2);
    ck_assert_str_eq(ct_strlist_get(l, 0), "clusters/" FP "/ca");
    ct_strlist_free(l);
    ck_assert_uint_eq(fake_vault_count(w.fv, "LIST"), 1);
    fake_vault_reset_counts(w.fv);
    ck_ok(ct_store_list(w.s, "clusters/", &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 3);
    ct_strlist_free(l);
    ck_assert_uint_eq(fake_vault_count(w.fv, "LIST"), 3); /* clusters/, 2 folders */
    /* a soft-deleted key is still listed by KV, and listed by the store */
    fake_vault_soft_delete(w.fv, NULL, "clusters/other/ca");
    ck_ok(ct_store_list(w.s, "clusters/o", &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 1);
    ct_strlist_free(l);
    world_stop(&w);
}
END_TEST

/* ---- errors ---- */

START_TEST(denied_tokens)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    int fl;
    for (fl = 0; fl < 2; fl++) {
        world_start(&w, fl ? FV_OPENBAO : FV_VAULT, NULL);
        w.o.token = "hvs.revoked";
        world_open(&w);
        ck_err(ct_store_get(w.s, "clusters/" FP "/ca", &v, NULL, &err), CT_E_DENIED, &err);
        ck_assert_int_eq(err.os_error, 403);
        ck_msg_has(err, "check the token");
        ck_msg_has(err, "policy");
        ck_msg_has(err, "0ad50c05...");
        ck_assert_msg(strstr(err.message, FP) == NULL, "full fingerprint in a message");
        if (fl == 0)
            ck_msg_has(err, "invalid token");
        /* not retried */
        ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 1);
        w.o.token = WEAK;
        world_open(&w);
        ck_err(ct_store_put(w.s, "k", "v", 1, CT_STORE_CREATE, NULL, &err), CT_E_DENIED, &err);
        ck_msg_has(err, "permission denied");
        ck_msg_has(err, "create and update");
        world_stop(&w);
    }
}
END_TEST

START_TEST(sealed_not_retried)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    world_start(&w, FV_VAULT, NULL);
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    fake_vault_set_sealed(w.fv, 1);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_msg_has(err, "sealed");
    ck_msg_has(err, "vault operator unseal");
    ck_err(ct_store_put(w.s, "k", "w", 1, 1, NULL, &err), CT_E_STORE, &err);
    ck_msg_has(err, "sealed");
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 2);
    fake_vault_set_sealed(w.fv, 0);
    expect_value(w.s, "k", "v", 1, 1);
    world_stop(&w);
}
END_TEST

START_TEST(rate_limited_retry_after)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    int64_t t0;
    world_start(&w, FV_VAULT, NULL);
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    /* one 429 with Retry-After: 1: waited for, then it works */
    fake_vault_fault(w.fv, FV_FAULT_429, 1, 1, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    expect_value(w.s, "k", "v", 1, 1);
    ck_assert_int_ge(mono_ms() - t0, 900);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 2);
    /* a write refused by a quota was not executed: retried, applied once */
    fake_vault_fault(w.fv, FV_FAULT_429, 1, 0, "POST", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    put_ok(w.s, "k", "w", 1, 2);
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 2);
    /* always limited: gives up after max_retries with a message */
    w.o.max_retries = 2;
    world_open(&w);
    fake_vault_fault(w.fv, FV_FAULT_429, -1, 0, NULL, NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_msg_has(err, "rate");
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 3);
    /* a Retry-After beyond what we wait for: no retry at all */
    fake_vault_fault(w.fv, FV_FAULT_429, -1, 3600, NULL, NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_assert_int_lt(mono_ms() - t0, 2000);
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 1);
    /* the same for a 5xx of a read: a proxy asking for an hour is reported
     * at once, one asking for a second is waited for */
    fake_vault_fault(w.fv, FV_FAULT_502_RETRY, -1, 3600, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    ck_assert_int_ne(ct_store_get(w.s, "k", &v, NULL, &err), CT_OK);
    ck_assert_int_lt(mono_ms() - t0, 2000);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 1);
    fake_vault_fault(w.fv, FV_FAULT_502_RETRY, 1, 1, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    expect_value(w.s, "k", "w", 1, 2);
    ck_assert_int_ge(mono_ms() - t0, 900);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 2);
    world_stop(&w);
}
END_TEST

START_TEST(server_errors_retried_for_reads)
{
    world w;
    ct_secret *v = NULL;
    ct_strlist *l = NULL;
    ct_error err;
    world_start(&w, FV_VAULT, NULL);
    w.o.max_retries = 3;
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    fake_vault_fault(w.fv, FV_FAULT_STATUS, 2, 500, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    expect_value(w.s, "k", "v", 1, 1);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 3);
    fake_vault_fault(w.fv, FV_FAULT_STATUS, 1, 503, "LIST", NULL,
                     "no active Vault instance found");
    ck_ok(ct_store_list(w.s, "", &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 1);
    ct_strlist_free(l);
    fake_vault_fault(w.fv, FV_FAULT_RESET, 1, 0, "GET", NULL, NULL);
    expect_value(w.s, "k", "v", 1, 1);
    fake_vault_fault(w.fv, FV_FAULT_HTML, 1, 502, "DELETE", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_ok(ct_store_del(w.s, "k", &err), &err);
    ck_assert_uint_eq(fake_vault_count(w.fv, "DELETE"), 2);
    /* always failing: the last answer, after 1 + max_retries requests */
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    fake_vault_fault(w.fv, FV_FAULT_STATUS, -1, 500, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_assert_int_eq(err.os_error, 500);
    ck_msg_has(err, "internal error");
    ck_msg_has(err, "logs");
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 4);
    world_stop(&w);
}
END_TEST

START_TEST(lost_write_answers)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    uint64_t ver = 0;
    char *j;
    world_start(&w, FV_VAULT, NULL);
    w.o.max_retries = 2;
    world_open(&w);

    /* reset before executing (cas): reading back shows the old version, so
     * the write is sent again and applied exactly once */
    fake_vault_fault(w.fv, FV_FAULT_RESET, 1, 0, "POST", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    put_ok(w.s, "a", "1", CT_STORE_CREATE, 1);
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 2);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 1);

    /* reset after executing: reading back proves it applied; never re-sent */
    fake_vault_fault(w.fv, FV_FAULT_RESET_AFTER, 1, 0, "POST", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    put_ok(w.s, "a", "2", 1, 2);
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 1);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 1);
    ck_assert_uint_eq(fake_vault_current_version(w.fv, NULL, "a", NULL), 2);
    /* same for an unconditional write */
    fake_vault_fault(w.fv, FV_FAULT_RESET_AFTER, 1, 0, "POST", NULL, NULL);
    put_ok(w.s, "a", "3", CT_STORE_ANY, 3);

    /* 500 or a proxy's 502 on a write: outcome unknown, resolved by reading */
    fake_vault_fault(w.fv, FV_FAULT_STATUS, 1, 500, "POST", NULL, NULL);
    put_ok(w.s, "a", "4", 3, 4);
    fake_vault_fault(w.fv, FV_FAULT_HTML, 1, 502, "POST", NULL, NULL);
    put_ok(w.s, "a", "5", 4, 5);

    /* executed, and the read back fails too: outcome unknown, never "done" */
    fake_vault_fault(w.fv, FV_FAULT_RESET_AFTER, -1, 0, NULL, NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_put(w.s, "a", "6", 1, 5, &ver, &err), CT_E_IO, &err);
    ck_assert_uint_eq(ver, 0);
    ck_msg_has(err, "outcome unknown");
    ck_msg_has(err, "check the key");
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 1);
    fake_vault_clear_fault(w.fv);
    expect_value(w.s, "a", "6", 1, 6); /* it had been applied */

    /* unconditional write reset before executing: reading back cannot prove
     * anything (no version to compare), so it is not sent again */
    fake_vault_fault(w.fv, FV_FAULT_RESET, 1, 0, "POST", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_put(w.s, "a", "7", 1, CT_STORE_ANY, NULL, &err), CT_E_IO, &err);
    ck_msg_has(err, "outcome unknown");
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 1);
    expect_value(w.s, "a", "6", 1, 6);

    /* a cas write that keeps failing before execution: retried (proven not
     * applied each time), then the transport error */
    fake_vault_fault(w.fv, FV_FAULT_RESET, -1, 0, "POST", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_put(w.s, "a", "8", 1, 6, NULL, &err), CT_E_RESET, &err);
    ck_msg_has(err, "not applied");
    ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 3);
    fake_vault_clear_fault(w.fv);

    /* lost answer, and reading back shows another writer has the version
     * ours needed: a conflict, and ours certainly was not applied */
    put_ok(w.s, "b", "theirs", CT_STORE_CREATE, 1);
    fake_vault_fault(w.fv, FV_FAULT_RESET, 1, 0, "POST", NULL, NULL);
    ck_err(ct_store_put(w.s, "b", "ours", 4, CT_STORE_CREATE, NULL, &err), CT_E_CONFLICT, &err);
    ck_msg_has(err, "answer was lost");
    expect_value(w.s, "b", "theirs", 6, 1);

    j = fake_vault_data_json(w.fv, NULL, "a");
    ck_assert_ptr_nonnull(j);
    free(j);
    (void)v;
    world_stop(&w);
}
END_TEST

START_TEST(slow_server_times_out)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    int64_t t0, dt;
    world_start(&w, FV_VAULT, NULL);
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    w.o.timeout_ms = 400;
    w.o.max_retries = -1;
    world_open(&w);
    fake_vault_fault(w.fv, FV_FAULT_SLOW, 1, 3000, "GET", NULL, NULL);
    t0 = mono_ms();
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_TIMEOUT, &err);
    dt = mono_ms() - t0;
    ck_assert_int_lt(dt, 2000);
    ck_msg_has(err, "did not answer within 400 ms");
    /* a slow write whose answer times out: read back, proven not (yet)
     * applied, sent again under cas; the slow original then loses its cas */
    w.o.max_retries = 2;
    world_open(&w);
    fake_vault_fault(w.fv, FV_FAULT_SLOW, 1, 1500, "POST", NULL, NULL);
    put_ok(w.s, "k", "w", 1, 2);
    usleep(1700 * 1000);
    ck_assert_uint_eq(fake_vault_current_version(w.fv, NULL, "k", NULL), 2);
    expect_value(w.s, "k", "w", 1, 2);
    world_stop(&w);
}
END_TEST

START_TEST(bad_answers)
{
    world w;
    ct_secret *v = NULL;
    ct_strlist *l = NULL;
    ct_error err;
    int64_t t0;
    world_start(&w, FV_VAULT, NULL);
    w.o.max_response = 64 * 1024;
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    /* oversized: aborted at the limit, not retried */
    fake_vault_fault(w.fv, FV_FAULT_BIG, 1, 8 << 20, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_TOOBIG, &err);
    ck_assert_int_lt(mono_ms() - t0, 3000);
    ck_msg_has(err, "larger than 65536 bytes");
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 1);
    /* malformed JSON */
    fake_vault_fault(w.fv, FV_FAULT_BADJSON, 1, 0, "GET", NULL, NULL);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_msg_has(err, "malformed");
    fake_vault_fault(w.fv, FV_FAULT_BADJSON, 1, 0, "LIST", NULL, NULL);
    ck_err(ct_store_list(w.s, "", &l, &err), CT_E_STORE, &err);
    ck_msg_has(err, "malformed");
    /* a redirect (standby without forwarding) is never followed */
    fake_vault_fault(w.fv, FV_FAULT_REDIRECT, 1, 0, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_PROTO, &err);
    ck_msg_has(err, "active.vault.example:8200");
    ck_msg_has(err, "never followed");
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 1);
    /* no such mount */
    w.o.mount = "kv-missing";
    world_open(&w);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_msg_has(err, "vault secrets enable -path=kv-missing kv-v2");
    ck_err(ct_store_list(w.s, "", &l, &err), CT_E_STORE, &err);
    ck_err(ct_store_put(w.s, "k", "v", 1, CT_STORE_ANY, NULL, &err), CT_E_STORE, &err);
    world_stop(&w);
}
END_TEST

START_TEST(transport_errors)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    world_start(&w, FV_VAULT, NULL);
    w.o.max_retries = -1;
    {
        ct_vault_options o = w.o;
        ct_store *s = NULL;
        o.address = "https://127.0.0.1:9";
        ck_ok(ct_store_new_vault(w.ctx, &o, &s, &err), &err);
        ck_err(ct_store_get(s, "k", &v, NULL, &err), CT_E_REFUSED, &err);
        ck_msg_has(err, "refused");
        ct_store_free(s);
    }
    /* a CA that did not issue the server's certificate */
    w.o.ca_file = g_foreign_ca;
    world_open(&w);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_CERT, &err);
    ck_msg_has(err, "not trusted");
    ck_msg_has(err, "VAULT_CACERT");
    /* the system CAs do not trust the test CA either */
    w.o.ca_file = NULL;
    world_open(&w);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_CERT, &err);
    /* forced insecure: works (and warns) */
    w.o.skip_verify = 1;
    w.o.force_insecure = 1;
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    world_stop(&w);
}
END_TEST

START_TEST(client_certificates)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    paths();
    world_start(&w, FV_VAULT, g_ca);
    w.o.max_retries = -1;
    world_open(&w);
    /* the server demands a client certificate */
    ck_assert_msg(ct_store_get(w.s, "k", &v, NULL, &err) == CT_E_TLS ||
                      err.code == CT_E_RESET,
                  "%s: %s", ct_err_name(err.code), err.message);
    fprintf(stderr, "no client certificate: %s: %s\n", ct_err_name(err.code), err.message);
    w.o.client_cert = g_client;
    w.o.client_key = g_client_key;
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    expect_value(w.s, "k", "v", 1, 1);
    /* a key that is no key */
    w.o.client_key = g_ca;
    world_open(&w);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_INVALID, &err);
    ck_msg_has(err, "client certificate or key");
    world_stop(&w);
}
END_TEST

START_TEST(namespace_and_health)
{
    world w;
    ct_vault_health h;
    ct_error err;
    char ns[64];
    int fl;
    for (fl = 0; fl < 2; fl++) {
        world_start(&w, fl ? FV_OPENBAO : FV_VAULT, NULL);
        w.o.namespace_path = "team-a/";
        world_open(&w);
        put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
        fake_vault_last_namespace(w.fv, ns, sizeof ns);
        ck_assert_str_eq(ns, "team-a/");
        /* health: no token, no namespace (OpenBao would answer 400) */
        ck_ok(ct_vault_health_check(w.ctx, &w.o, &h, &err), &err);
        ck_assert_int_eq(h.http_status, 200);
        ck_assert(h.initialized && !h.sealed && !h.standby);
        ck_assert_str_eq(h.version, fl ? "2.6.2" : "1.21.1");
        ck_assert_str_eq(h.cluster_name, "vault-cluster-5e8a1c3b");
        fake_vault_set_standby(w.fv, 1);
        ck_ok(ct_vault_health_check(w.ctx, &w.o, &h, &err), &err);
        ck_assert_int_eq(h.http_status, 429);
        ck_assert(h.standby);
        fake_vault_set_standby(w.fv, 2);
        ck_ok(ct_vault_health_check(w.ctx, &w.o, &h, &err), &err);
        ck_assert_int_eq(h.http_status, fl ? 429 : 473);
        ck_assert_int_eq(h.performance_standby, fl ? 0 : 1);
        fake_vault_set_standby(w.fv, 0);
        fake_vault_set_sealed(w.fv, 1);
        ck_err(ct_vault_health_check(w.ctx, &w.o, &h, &err), CT_E_STORE, &err);
        ck_msg_has(err, "sealed");
        ck_assert(h.sealed);
        ck_assert_str_eq(h.cluster_name, "");
        /* health needs no token */
        w.o.token = NULL;
        fake_vault_set_sealed(w.fv, 0);
        ck_ok(ct_vault_health_check(w.ctx, &w.o, &h, &err), &err);
        world_stop(&w);
    }
}
END_TEST

/* ---- KV versions, soft delete, metadata (vault.h beyond the vtable) ---- */

static void expect_version(ct_store *s, const char *key, uint64_t ver, const char *val,
                           uint64_t want_ver)
{
    ct_secret *v = NULL;
    uint64_t got = 0;
    ct_error err;
    ck_ok(ct_vault_kv_get_version(s, key, ver, &v, &got, &err), &err);
    ck_assert_uint_eq(ct_secret_len(v), strlen(val));
    ck_assert(memcmp(ct_secret_data(v), val, strlen(val)) == 0);
    ck_assert_uint_eq(got, want_ver);
    ct_secret_free(v);
}

START_TEST(kv_versions_delete_metadata)
{
    int fl;
    for (fl = 0; fl < 2; fl++) {
        world w;
        ct_secret *v = NULL;
        ct_vault_kv_meta *m = NULL;
        ct_store *mem = NULL;
        ct_error err;
        uint64_t one = 1, vs[2] = {2, 0}, got = 7;
        world_start(&w, fl ? FV_OPENBAO : FV_VAULT, NULL);
        world_open(&w);
        put_ok(w.s, "app/k", "one", CT_STORE_CREATE, 1);
        put_ok(w.s, "app/k", "two", 1, 2);
        put_ok(w.s, "app/k", "three", 2, 3);
        /* a given version, and 0 = the current one */
        expect_version(w.s, "app/k", 1, "one", 1);
        expect_version(w.s, "app/k", 2, "two", 2);
        expect_version(w.s, "app/k", 0, "three", 3);
        /* a version that never existed; a missing key */
        ck_err(ct_vault_kv_get_version(w.s, "app/k", 9, &v, &got, &err), CT_E_NOTFOUND, &err);
        ck_assert_ptr_null(v);
        ck_assert_uint_eq(got, 0);
        ck_msg_has(err, "no version 9");
        ck_err(ct_vault_kv_get_version(w.s, "app/none", 0, &v, NULL, &err), CT_E_NOTFOUND,
               &err);
        /* soft-delete version 1: not readable, "deleted"; the others are */
        ck_ok(ct_vault_kv_delete_versions(w.s, "app/k", &one, 1, &err), &err);
        ck_err(ct_vault_kv_get_version(w.s, "app/k", 1, &v, NULL, &err), CT_E_NOTFOUND, &err);
        ck_msg_has(err, "version 1 is deleted");
        expect_version(w.s, "app/k", 2, "two", 2);
        /* deleting it again, or a version that does not exist: fine, as Vault */
        vs[1] = 42;
        vs[0] = 1;
        ck_ok(ct_vault_kv_delete_versions(w.s, "app/k", vs, 2, &err), &err);
        /* destroyed by another tool: "destroyed", both through get and get_version */
        fake_vault_destroy_current(w.fv, NULL, "app/k");
        ck_err(ct_vault_kv_get_version(w.s, "app/k", 3, &v, NULL, &err), CT_E_NOTFOUND, &err);
        ck_msg_has(err, "version 3 is destroyed");
        ck_err(ct_store_get(w.s, "app/k", &v, NULL, &err), CT_E_NOTFOUND, &err);
        ck_msg_has(err, "destroyed");
        /* soft-delete the latest: history and metadata stay */
        put_ok(w.s, "app/k", "four", 3, 4);
        ck_ok(ct_vault_kv_delete_latest(w.s, "app/k", &err), &err);
        ck_err(ct_store_get(w.s, "app/k", &v, NULL, &err), CT_E_NOTFOUND, &err);
        ck_msg_has(err, "current version is deleted");
        ck_err(ct_vault_kv_get_version(w.s, "app/k", 0, &v, NULL, &err), CT_E_NOTFOUND, &err);
        ck_msg_has(err, "deleted");
        expect_version(w.s, "app/k", 2, "two", 2);
        ck_ok(ct_vault_kv_delete_latest(w.s, "app/k", &err), &err); /* again: no-op */
        ck_ok(ct_vault_kv_delete_latest(w.s, "app/none", &err), &err);
        ck_ok(ct_vault_kv_delete_versions(w.s, "app/none", &one, 1, &err), &err);
        /* metadata */
        ck_ok(ct_vault_kv_metadata(w.s, "app/k", &m, &err), &err);
        ck_assert_uint_eq(m->current_version, 4);
        ck_assert_uint_eq(m->oldest_version, 1);
        ck_assert_int_eq(m->cas_required, 0);
        ck_assert_int_eq(m->truncated, 0);
        ck_assert_uint_eq(m->nversions, 4);
        ck_assert_uint_eq(strlen(m->created_time), 30);
        ck_assert(m->updated_time[0] != '\0');
        ck_assert_uint_eq(m->versions[0].version, 1);
        ck_assert(m->versions[0].deletion_time[0] != '\0');
        ck_assert_int_eq(m->versions[0].destroyed, 0);
        ck_assert_uint_eq(m->versions[1].version, 2);
        ck_assert_str_eq(m->versions[1].deletion_time, "");
        ck_assert_int_eq(m->versions[2].destroyed, 1);
        ck_assert(m->versions[3].deletion_time[0] != '\0');
        ck_assert(m->versions[3].created_time[0] != '\0');
        ct_vault_kv_meta_free(m);
        m = NULL;
        ck_err(ct_vault_kv_metadata(w.s, "app/none", &m, &err), CT_E_NOTFOUND, &err);
        ck_assert_ptr_null(m);
        /* the store's del still removes everything */
        ck_ok(ct_store_del(w.s, "app/k", &err), &err);
        ck_err(ct_vault_kv_get_version(w.s, "app/k", 2, &v, NULL, &err), CT_E_NOTFOUND, &err);
        ck_err(ct_vault_kv_metadata(w.s, "app/k", &m, &err), CT_E_NOTFOUND, &err);
        /* the requests Vault documents */
        fake_vault_reset_counts(w.fv);
        ck_ok(ct_vault_kv_delete_latest(w.s, "x", &err), &err);
        ck_assert_uint_eq(fake_vault_count(w.fv, "DELETE"), 1);
        ck_ok(ct_vault_kv_delete_versions(w.s, "x", &one, 1, &err), &err);
        ck_assert_uint_eq(fake_vault_count(w.fv, "POST"), 1);
        ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 2);

        /* refusals */
        ck_ok(ct_store_new_memory(w.ctx, &mem, &err), &err);
        ck_err(ct_vault_kv_get_version(mem, "k", 1, &v, NULL, &err), CT_E_INVALID, &err);
        ck_msg_has(err, "not a Vault store");
        ck_err(ct_vault_kv_delete_latest(mem, "k", &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_delete_versions(mem, "k", &one, 1, &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_metadata(mem, "k", &m, &err), CT_E_INVALID, &err);
        ck_msg_has(err, "not a Vault store");
        ct_store_free(mem);
        ck_err(ct_vault_kv_metadata(NULL, "k", &m, &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_get_version(w.s, "../k", 1, &v, NULL, &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_get_version(w.s, "k", 1, NULL, NULL, &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_delete_versions(w.s, "k", &one, 0, &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_delete_versions(w.s, "k", NULL, 1, &err), CT_E_INVALID, &err);
        vs[0] = 0;
        ck_err(ct_vault_kv_delete_versions(w.s, "k", vs, 1, &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_delete_latest(w.s, "a//b", &err), CT_E_INVALID, &err);
        ck_err(ct_vault_kv_metadata(w.s, "k", NULL, &err), CT_E_INVALID, &err);

        /* a token without rights: denied, with the path its policy lacks */
        put_ok(w.s, "p", "v", CT_STORE_CREATE, 1);
        w.o.token = WEAK;
        world_open(&w);
        ck_err(ct_vault_kv_get_version(w.s, "p", 1, &v, NULL, &err), CT_E_DENIED, &err);
        ck_msg_has(err, "data/*");
        ck_err(ct_vault_kv_delete_latest(w.s, "p", &err), CT_E_DENIED, &err);
        ck_err(ct_vault_kv_delete_versions(w.s, "p", &one, 1, &err), CT_E_DENIED, &err);
        ck_msg_has(err, "delete/*");
        ck_err(ct_vault_kv_metadata(w.s, "p", &m, &err), CT_E_DENIED, &err);
        ck_msg_has(err, "metadata/*");
        /* sealed: the store error, not retried */
        w.o.token = TOKEN;
        world_open(&w);
        fake_vault_set_sealed(w.fv, 1);
        ck_err(ct_vault_kv_metadata(w.s, "p", &m, &err), CT_E_STORE, &err);
        ck_msg_has(err, "sealed");
        ck_err(ct_vault_kv_delete_latest(w.s, "p", &err), CT_E_STORE, &err);
        fake_vault_set_sealed(w.fv, 0);
        /* server errors on the soft delete are retried (it is idempotent) */
        ck_ok(ct_vault_kv_metadata(w.s, "p", &m, &err), &err);
        ct_vault_kv_meta_free(m);
        fake_vault_fault(w.fv, FV_FAULT_STATUS, 1, 500, "DELETE", NULL, NULL);
        fake_vault_reset_counts(w.fv);
        ck_ok(ct_vault_kv_delete_latest(w.s, "p", &err), &err);
        ck_assert_uint_eq(fake_vault_count(w.fv, "DELETE"), 2);
        /* a malformed metadata answer */
        fake_vault_fault(w.fv, FV_FAULT_BADJSON, 1, 0, "GET", NULL, NULL);
        ck_err(ct_vault_kv_metadata(w.s, "p", &m, &err), CT_E_STORE, &err);
        ck_assert_ptr_null(m);
        world_stop(&w);
    }
}
END_TEST

/* ---- the mount check (KV v1, another engine, a path inside a mount) ---- */

START_TEST(mount_check)
{
    int fl;
    for (fl = 0; fl < 2; fl++) {
        world w;
        ct_secret *v = NULL;
        ct_strlist *l = NULL;
        ct_error err;
        static const char *const other[] = {"other/"};
        static const char *const datap[] = {"cloudtaser/data/"};
        world_start(&w, fl ? FV_OPENBAO : FV_VAULT, NULL);
        /* once per store, before the first request */
        world_open(&w);
        ck_assert_uint_eq(fake_vault_count(w.fv, "PREFLIGHT"), 0);
        put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
        expect_value(w.s, "k", "v", 1, 1);
        ck_assert_uint_eq(fake_vault_count(w.fv, "PREFLIGHT"), 1);

        /* KV version 1: refused before anything is written, with the fix */
        fake_vault_set_mount_engine(w.fv, "kv", 1);
        world_open(&w);
        fake_vault_reset_counts(w.fv);
        ck_err(ct_store_put(w.s, "k2", "v", 1, CT_STORE_CREATE, NULL, &err), CT_E_STORE, &err);
        ck_msg_has(err, "KV version 1");
        ck_msg_has(err, "vault kv enable-versioning cloudtaser");
        ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 0);
        ck_err(ct_store_list(w.s, "", &l, &err), CT_E_STORE, &err);
        ck_assert_uint_eq(fake_vault_count(w.fv, "PREFLIGHT"), 2); /* not remembered */
        /* upgraded meanwhile (enable-versioning): works without a new store */
        fake_vault_set_mount_engine(w.fv, "kv", 2);
        put_ok(w.s, "k2", "v", CT_STORE_CREATE, 1);
        /* not a kv engine at all */
        fake_vault_set_mount_engine(w.fv, "transit", 2);
        world_open(&w);
        ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
        ck_msg_has(err, "'transit' secrets engine");
        fake_vault_set_mount_engine(w.fv, "kv", 2);
        /* a path inside the mount given as the mount */
        w.o.mount = "cloudtaser/sub";
        world_open(&w);
        ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
        ck_msg_has(err, "inside the KV mount 'cloudtaser'");
        /* no such mount: Vault answers 403 to the check, the request tells */
        w.o.mount = "nomount";
        world_open(&w);
        ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
        ck_msg_has(err, "no KV version 2 engine at 'nomount'");
        w.o.mount = NULL;
        /* our mount reached through a child namespace: Vault reports it with
         * the child's path in front, which is still our mount */
        fake_vault_set_mount_ns_prefix(w.fv, "admin/team1/");
        w.o.namespace_path = "admin/";
        world_open(&w);
        expect_value(w.s, "k", "v", 1, 1);
        /* without a namespace that prefix would be a different mount */
        w.o.namespace_path = NULL;
        world_open(&w);
        expect_value(w.s, "k", "v", 1, 1); /* no namespace header: no prefix */
        fake_vault_set_mount_ns_prefix(w.fv, NULL);

        /* a server without the endpoint: proceed silently, once */
        fake_vault_set_preflight(w.fv, 404);
        world_open(&w);
        fake_vault_reset_counts(w.fv);
        expect_value(w.s, "k", "v", 1, 1);
        expect_value(w.s, "k", "v", 1, 1);
        ck_assert_uint_eq(fake_vault_count(w.fv, "PREFLIGHT"), 1);
        ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 2);
        /* ... and if that server has KV v1 after all, the write's 204 says so */
        fake_vault_set_mount_engine(w.fv, "kv", 1);
        ck_err(ct_store_put(w.s, "k3", "v", 1, CT_STORE_CREATE, NULL, &err), CT_E_STORE, &err);
        ck_msg_has(err, "KV version 1");
        fake_vault_set_mount_engine(w.fv, "kv", 2);
        fake_vault_set_preflight(w.fv, 0);

        /* a policy that covers nothing under the mount: 403 to the check, so the
         * request itself is denied with the usual message */
        fake_vault_add_token_prefixes(w.fv, "hvs.other", "other", other, 1);
        w.o.token = "hvs.other";
        world_open(&w);
        ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_DENIED, &err);
        ck_msg_has(err, "check the token");
        /* a policy on data/ only passes the check (access somewhere under it) */
        fake_vault_add_token_prefixes(w.fv, "hvs.data", "data", datap, 1);
        w.o.token = "hvs.data";
        world_open(&w);
        expect_value(w.s, "k", "v", 1, 1);
        world_stop(&w);
    }
}
END_TEST

/* ---- TLS: a CA directory (VAULT_CAPATH) ---- */

/* A directory holding `pem` under its OpenSSL subject-hash name. */
static void hashed_dir(char *dir, size_t cap, const char *pem)
{
    char cmd[1200], hash[64] = "", link[1200];
    FILE *p;
    snprintf(dir, cap, "/tmp/ct-capath-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "openssl x509 -hash -noout -in '%s'", pem);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(hash, sizeof hash, p));
    ck_assert_int_eq(pclose(p), 0);
    hash[strcspn(hash, "\r\n")] = '\0';
    ck_assert_uint_eq(strlen(hash), 8);
    snprintf(link, sizeof link, "%s/%s.0", dir, hash);
    ck_assert_int_eq(symlink(pem, link), 0);
}

static void rm_hashed_dir(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(tls_ca_directory)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    char good[64], bad[64];
    world_start(&w, FV_VAULT, NULL);
    hashed_dir(good, sizeof good, g_ca);
    hashed_dir(bad, sizeof bad, g_foreign_ca);
    /* the directory alone (no CA file) verifies the server */
    w.o.ca_file = NULL;
    w.o.ca_path = good;
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    expect_value(w.s, "k", "v", 1, 1);
    /* a directory without the issuing CA: the certificate error */
    w.o.ca_path = bad;
    world_open(&w);
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_CERT, &err);
    ck_msg_has(err, "not trusted");
    ck_msg_has(err, "127.0.0.1");
    /* through the environment, as the vault CLI reads it */
    ck_assert_int_eq(setenv("VAULT_CAPATH", good, 1), 0);
    w.o.ca_path = NULL;
    ck_ok(ct_vault_options_from_env(&w.o, &err), &err);
    ck_assert_str_eq(w.o.ca_path, good);
    world_open(&w);
    expect_value(w.s, "k", "v", 1, 1);
    unsetenv("VAULT_CAPATH");
    rm_hashed_dir(good);
    rm_hashed_dir(bad);
    world_stop(&w);
}
END_TEST

/* ---- Retry-After as an HTTP date; bodies of unknown length over the limit ---- */

START_TEST(retry_after_http_date)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    int64_t t0, dt;
    world_start(&w, FV_OPENBAO, NULL);
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    /* "Retry-After: <date 2 s ahead>": waited for (1-2 s: the date has whole
     * seconds), then the read works */
    fake_vault_fault(w.fv, FV_FAULT_429_DATE, 1, 2, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    expect_value(w.s, "k", "v", 1, 1);
    dt = mono_ms() - t0;
    ck_assert_msg(dt >= 900 && dt < (ct_test_under_valgrind() ? 10000 : 4000), "waited %lld ms",
                  (long long)dt);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 2);
    /* a date in the past: retried at once (after the backoff) */
    fake_vault_fault(w.fv, FV_FAULT_429_DATE, 1, -60, "GET", NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    expect_value(w.s, "k", "v", 1, 1);
    ck_assert_int_lt(mono_ms() - t0, ct_test_under_valgrind() ? 5000 : 800);
    ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 2);
    /* a date an hour ahead: beyond what is waited for, no retry */
    fake_vault_fault(w.fv, FV_FAULT_429_DATE, -1, 3600, NULL, NULL, NULL);
    fake_vault_reset_counts(w.fv);
    t0 = mono_ms();
    ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_STORE, &err);
    ck_msg_has(err, "rate");
    ck_assert_int_lt(mono_ms() - t0, 2000);
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), 1);
    fake_vault_clear_fault(w.fv);
    world_stop(&w);
}
END_TEST

START_TEST(unbounded_body_over_limit)
{
    world w;
    ct_secret *v = NULL;
    ct_error err;
    int64_t t0;
    int i;
    world_start(&w, FV_VAULT, NULL);
    w.o.max_response = 64 * 1024;
    world_open(&w);
    put_ok(w.s, "k", "v", CT_STORE_CREATE, 1);
    for (i = 0; i < 2; i++) {
        fv_fault f = i ? FV_FAULT_STREAM_CLOSE : FV_FAULT_STREAM;
        /* an endless body without Content-Length: stopped at the limit */
        fake_vault_fault(w.fv, f, 1, 0, "GET", NULL, NULL);
        fake_vault_reset_counts(w.fv);
        t0 = mono_ms();
        ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_TOOBIG, &err);
        ck_assert_int_lt(mono_ms() - t0, ct_test_under_valgrind() ? 15000 : 3000);
        ck_msg_has(err, "larger than 65536 bytes");
        ck_assert_ptr_null(v);
        ck_assert_uint_eq(fake_vault_count(w.fv, "GET"), 1); /* not retried */
        /* a finite one just over the limit: the same */
        fake_vault_fault(w.fv, f, 1, 64 * 1024 + 1, "GET", NULL, NULL);
        ck_err(ct_store_get(w.s, "k", &v, NULL, &err), CT_E_TOOBIG, &err);
        /* the store is fine afterwards */
        expect_value(w.s, "k", "v", 1, 1);
    }
    world_stop(&w);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("vault");
    TCase *tc = tcase_create("fake");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fake_matches_fixtures_vault);
    tcase_add_test(tc, fake_matches_fixtures_openbao);
    suite_add_tcase(s, tc);
    tc = tcase_create("options");
    tcase_add_test(tc, env_all_variables);
    tcase_add_test(tc, env_flags_win_and_defaults);
    tcase_add_test(tc, env_bad_values);
    tcase_add_test(tc, options_refused);
    tcase_add_test(tc, token_file_and_home);
    suite_add_tcase(s, tc);
    tc = tcase_create("kv");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, value_layout);
    tcase_add_test(tc, deleted_and_destroyed_versions);
    tcase_add_test(tc, cas_required_mount);
    tcase_add_test(tc, list_walks_only_needed_folders);
    tcase_add_test(tc, kv_versions_delete_metadata);
    tcase_add_test(tc, mount_check);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, denied_tokens);
    tcase_add_test(tc, sealed_not_retried);
    tcase_add_test(tc, rate_limited_retry_after);
    tcase_add_test(tc, server_errors_retried_for_reads);
    tcase_add_test(tc, lost_write_answers);
    tcase_add_test(tc, slow_server_times_out);
    tcase_add_test(tc, bad_answers);
    tcase_add_test(tc, transport_errors);
    tcase_add_test(tc, client_certificates);
    tcase_add_test(tc, namespace_and_health);
    tcase_add_test(tc, tls_ca_directory);
    tcase_add_test(tc, retry_after_http_date);
    tcase_add_test(tc, unbounded_body_over_limit);
    suite_add_tcase(s, tc);
    return s;
}
