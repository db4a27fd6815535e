/*
 * test_review.c - TokenReview through the tunnel (review.h): the bridge's
 * HTTPS endpoint over real TLS on 127.0.0.1 (libcurl as Vault's stand-in,
 * verifying the server against the cluster CA), forwarding to the
 * operator's handler (ct_review_agent) which reviews on the fake API
 * server (support/fake_k8s.c): authenticated, expired and revoked tokens,
 * every refusal (401/403/404/400/413), no session (503), a slow operator
 * (504), an operator without RBAC (500), the reviewer token record.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_k8s.h"
#include "fake_vault.h"
#include "testutil.h"

#define FP "0ad50c05-1153-4508-9237-4cb2912e2c23"
#define OP_TOKEN "operator-sa-token"
#define NORBAC_TOKEN "operator-without-rbac"
#define POD_TOKEN "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln"
#define POD_USER                                                                         \
    "{\"username\":\"system:serviceaccount:payments:payments-api\",\"uid\":\"3c1e5a7b-2d4f-" \
    "4c6e-9a8b-1f0e2d3c4b5a\",\"groups\":[\"system:serviceaccounts\",\"system:"            \
    "serviceaccounts:payments\",\"system:authenticated\"]}"
#define AUD "https://kubernetes.default.svc.cluster.local"

typedef enum { FW_AGENT, FW_NONE, FW_SLOW, FW_GARBAGE } fw_mode;

static fake_k8s *g_fk;
static char *g_dir;
static char g_tls[1024];
static ct_ctx *g_ctx;
static ct_store *g_store;
static ct_k8s_client *g_kc;
static ct_review_agent *g_agent;
static fw_mode g_mode;
static int g_forwarded;

static ct_err fail_with(ct_error *err, ct_err code, const char *msg)
{
    if (err) {
        memset(err, 0, sizeof *err);
        err->code = code;
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

static ct_err forward(void *arg, const char *fp, const void *req, size_t len, int timeout_ms,
                      uint8_t **resp, size_t *resp_len, ct_error *err)
{
    (void)arg;
    ck_assert_str_eq(fp, FP);
    g_forwarded++;
    switch (g_mode) {
    case FW_NONE:
        return fail_with(err, CT_E_NOTFOUND, "no live session");
    case FW_SLOW:
        usleep((useconds_t)timeout_ms * 1000);
        return fail_with(err, CT_E_TIMEOUT, "request timed out");
    case FW_GARBAGE:
        *resp = (uint8_t *)strdup("{\"nope\":1}");
        *resp_len = strlen((char *)*resp);
        return CT_OK;
    default:
        return ct_review_agent_handle(g_agent, fp, NULL, 0, req, len, resp, resp_len, err);
    }
}

static void setup(void)
{
    const char *fx = getenv("CT_TEST_FIXTURES");
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    char kc[1100];
    ct_error err;

    ck_assert_ptr_nonnull(fx);
    snprintf(g_tls, sizeof g_tls, "%s/tls", fx);
    g_fk = fake_k8s_start(g_tls);
    ck_assert_ptr_nonnull(g_fk);
    fake_k8s_add_token(g_fk, OP_TOKEN, "system:serviceaccount:cloudtaser:operator", FK_ALL);
    fake_k8s_add_token(g_fk, NORBAC_TOKEN, "system:serviceaccount:cloudtaser:weak",
                       FK_GET_NAMESPACES);
    fake_k8s_review_token(g_fk, POD_TOKEN, POD_USER, AUD);
    g_dir = ct_test_tmpdir();
    ck_assert_int_eq(fake_k8s_write_configs(g_fk, g_dir, g_tls, OP_TOKEN), 0);
    g_ctx = ct_test_ctx();
    snprintf(kc, sizeof kc, "%s/kubeconfig", g_dir);
    o.kubeconfig = kc;
    o.timeout_ms = 5000;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &g_kc, &err), &err);
    ck_ok(ct_review_agent_new(g_ctx, g_kc, &g_agent, &err), &err);
    ck_ok(ct_store_new_memory(g_ctx, &g_store, &err), &err);
    ck_ok(ct_register(g_ctx, g_store, FP, NULL, NULL, &err), &err);
    g_mode = FW_AGENT;
    g_forwarded = 0;
}

static void teardown(void)
{
    ct_review_agent_free(g_agent);
    ct_k8s_client_free(g_kc);
    ct_store_free(g_store);
    fake_k8s_stop(g_fk);
    ct_test_rmrf(g_dir);
    free(g_dir);
    ct_ctx_free(g_ctx);
    g_agent = NULL;
    g_kc = NULL;
    g_store = NULL;
    g_fk = NULL;
    g_dir = NULL;
    g_ctx = NULL;
}

static ct_review_server *start(size_t max_body, int timeout_ms)
{
    ct_review_options o = CT_REVIEW_OPTIONS_INIT;
    ct_review_server *s = NULL;
    ct_error err;
    o.store = g_store;
    o.fingerprint = FP;
    o.forward = forward;
    o.max_body = max_body;
    o.timeout_ms = timeout_ms;
    ck_ok(ct_review_server_start(g_ctx, &o, &s, &err), &err);
    ck_assert_uint_gt(ct_review_server_port(s), 0);
    return s;
}

typedef struct buf {
    char *p;
    size_t n;
} buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *u)
{
    buf *b = u;
    char *np = realloc(b->p, b->n + sz * nm + 1);
    ck_assert_ptr_nonnull(np);
    b->p = np;
    memcpy(b->p + b->n, p, sz * nm);
    b->n += sz * nm;
    b->p[b->n] = '\0';
    return sz * nm;
}

/* One HTTPS request as Vault makes it; returns the status, *body the answer. */
static long call(ct_review_server *s, const char *method, const char *path, const char *bearer,
                 const char *body, const char *ca_pem, json_t **out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct curl_blob ca;
    char url[256], auth[512];
    buf b = { NULL, 0 };
    long st = 0;
    CURLcode cc;

    ck_assert_ptr_nonnull(c);
    snprintf(url, sizeof url, "%s%s", ct_review_server_url(s), path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    ca.data = (void *)(ca_pem ? ca_pem : ct_review_server_ca_pem(s));
    ca.len = strlen(ca.data);
    ca.flags = CURL_BLOB_COPY;
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, auth);
    }
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    else
        st = -(long)cc;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (out) {
        json_error_t je;
        *out = b.p ? json_loads(b.p, 0, &je) : NULL;
    }
    free(b.p);
    return st;
}

static char *reviewer(void)
{
    ct_secret *t = NULL;
    ct_error err;
    char *s;
    ck_ok(ct_review_token(g_ctx, g_store, FP, 0, &t, &err), &err);
    ck_assert_uint_eq(ct_secret_len(t), CT_REVIEW_TOKEN_LEN);
    s = strndup((const char *)ct_secret_data(t), ct_secret_len(t));
    ct_secret_free(t);
    return s;
}

static void check_status(json_t *j, int code, const char *reason)
{
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "kind")), "Status");
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "Failure");
    ck_assert_str_eq(json_string_value(json_object_get(j, "reason")), reason);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "code")), code);
    json_decref(j);
}

static const char *REVIEW_BODY =
    "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\","
    "\"spec\":{\"token\":\"" POD_TOKEN "\",\"audiences\":[\"" AUD "\"]}}";

START_TEST(valid_token_is_authenticated)
{
    ct_review_server *s = start(0, 0);
    char *tok = reviewer();
    json_t *j = NULL, *st, *user;
    ct_review_stats stats;

    /* Vault's shape: no kind/apiVersion (API.md A5 step 5) */
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok,
                          "{\"spec\":{\"token\":\"" POD_TOKEN "\",\"audiences\":[\"" AUD "\"]}}",
                          NULL, &j),
                     201);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "kind")), "TokenReview");
    ck_assert_str_eq(json_string_value(json_object_get(j, "apiVersion")),
                     "authentication.k8s.io/v1");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "spec"), "token")),
                     POD_TOKEN);
    st = json_object_get(j, "status");
    ck_assert(json_is_true(json_object_get(st, "authenticated")));
    user = json_object_get(st, "user");
    ck_assert_str_eq(json_string_value(json_object_get(user, "username")),
                     "system:serviceaccount:payments:payments-api");
    ck_assert_str_eq(json_string_value(json_object_get(user, "uid")),
                     "3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a");
    ck_assert_int_eq(json_array_size(json_object_get(user, "groups")), 3);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(st, "audiences"), 0)), AUD);
    json_decref(j);
    /* the review really happened on the API server, as the operator */
    ck_assert_uint_eq(fake_k8s_requests(g_fk, "/apis/authentication.k8s.io"), 1);
    ct_review_server_stats(s, &stats);
    ck_assert_uint_eq(stats.reviews, 1);
    free(tok);
    ct_review_server_free(s);
}
END_TEST

START_TEST(expired_and_revoked_tokens)
{
    ct_review_server *s = start(0, 0);
    char *tok = reviewer();
    json_t *j = NULL, *st;

    /* a token the API server does not know (expired) */
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok,
                          "{\"spec\":{\"token\":\"expired.token.x\"}}", NULL, &j), 201);
    st = json_object_get(j, "status");
    ck_assert_ptr_null(json_object_get(st, "authenticated"));
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(st, "error")), "expired"));
    json_decref(j);
    /* valid, then revoked on the cluster: the next review sees it at once */
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 201);
    ck_assert(json_is_true(json_object_get(json_object_get(j, "status"), "authenticated")));
    json_decref(j);
    fake_k8s_revoke_token(g_fk, POD_TOKEN);
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 201);
    st = json_object_get(j, "status");
    ck_assert(!json_is_true(json_object_get(st, "authenticated")));
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(st, "error")),
                                 "invalidated"));
    json_decref(j);
    free(tok);
    ct_review_server_free(s);
}
END_TEST

START_TEST(refusals)
{
    ct_review_server *s = start(0, 0);
    char *tok = reviewer();
    char wrong[CT_REVIEW_TOKEN_LEN + 1];
    json_t *j = NULL;
    ct_review_stats stats;

    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, NULL, REVIEW_BODY, NULL, &j), 401);
    check_status(j, 401, "Unauthorized");
    memcpy(wrong, tok, sizeof wrong);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, wrong, REVIEW_BODY, NULL, &j), 401);
    check_status(j, 401, "Unauthorized");
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, "short", REVIEW_BODY, NULL, &j), 401);
    check_status(j, 401, "Unauthorized");
    /* unauthenticated requests learn nothing about paths */
    ck_assert_int_eq(call(s, "GET", "/api/v1/secrets", NULL, NULL, NULL, &j), 401);
    check_status(j, 401, "Unauthorized");
    ck_assert_int_eq(call(s, "GET", "/api/v1/namespaces/kube-system", tok, NULL, NULL, &j), 404);
    check_status(j, 404, "NotFound");
    ck_assert_int_eq(call(s, "POST", "/apis/authentication.k8s.io/v1/tokenreviews/x", tok,
                          REVIEW_BODY, NULL, &j), 404);
    check_status(j, 404, "NotFound");
    ck_assert_int_eq(call(s, "GET", CT_REVIEW_PATH, tok, NULL, NULL, &j), 403);
    check_status(j, 403, "Forbidden");
    ck_assert_int_eq(call(s, "DELETE", CT_REVIEW_PATH, tok, NULL, NULL, &j), 403);
    check_status(j, 403, "Forbidden");
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, "{not json", NULL, &j), 400);
    check_status(j, 400, "BadRequest");
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, "{\"kind\":\"Secret\",\"spec\":"
                          "{\"token\":\"x\"}}", NULL, &j), 400);
    check_status(j, 400, "BadRequest");
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, "{\"spec\":{}}", NULL, &j), 400);
    check_status(j, 400, "BadRequest");
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, "{\"spec\":{\"token\":\"x\","
                          "\"audiences\":[1]}}", NULL, &j), 400);
    check_status(j, 400, "BadRequest");
    /* nothing of the above reached the operator */
    ck_assert_int_eq(g_forwarded, 0);
    ct_review_server_stats(s, &stats);
    ck_assert_uint_eq(stats.unauthorized, 4);
    ck_assert_uint_eq(stats.refused, 8);
    ck_assert_uint_eq(stats.reviews, 0);
    free(tok);
    ct_review_server_free(s);
}
END_TEST

START_TEST(body_limit)
{
    ct_review_server *s = start(1024, 0);
    char *tok = reviewer(), *big = malloc(4096);
    json_t *j = NULL;

    memset(big, 'a', 4095);
    big[4095] = '\0';
    memcpy(big, "{\"spec\":{\"token\":\"", 18);
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, big, NULL, &j), 413);
    check_status(j, 413, "RequestEntityTooLarge");
    /* a fitting body still works on the same server */
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 201);
    json_decref(j);
    ck_assert_int_eq(g_forwarded, 1);
    free(big);
    free(tok);
    ct_review_server_free(s);
}
END_TEST

START_TEST(no_session_slow_and_failing_operator)
{
    ct_review_server *s = start(0, 300);
    char *tok = reviewer();
    json_t *j = NULL;

    g_mode = FW_NONE;
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 503);
    check_status(j, 503, "ServiceUnavailable");
    g_mode = FW_SLOW;
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 504);
    check_status(j, 504, "Timeout");
    g_mode = FW_GARBAGE;
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 500);
    check_status(j, 500, "InternalError");
    free(tok);
    ct_review_server_free(s);
}
END_TEST

START_TEST(operator_without_rbac)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_client *weak = NULL;
    ct_review_agent *a = g_agent;
    ct_review_server *s;
    char kc[1100], *tok;
    json_t *j = NULL;
    ct_error err;
    FILE *f;

    /* the same kubeconfig with the token that may not create tokenreviews */
    snprintf(kc, sizeof kc, "%s/kubeconfig-tokenfile", g_dir);
    snprintf(kc + 600, 400, "%s/token", g_dir);
    f = fopen(kc + 600, "w");
    ck_assert_ptr_nonnull(f);
    fputs(NORBAC_TOKEN, f);
    fclose(f);
    o.kubeconfig = kc;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &weak, &err), &err);
    ck_ok(ct_review_agent_new(g_ctx, weak, &g_agent, &err), &err);
    s = start(0, 0);
    tok = reviewer();
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, &j), 500);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(j, "message")),
                                 "forbidden"));
    check_status(j, 500, "InternalError");
    ct_review_server_free(s);
    ct_review_agent_free(g_agent);
    g_agent = a;
    ct_k8s_client_free(weak);
    free(tok);
}
END_TEST

START_TEST(tls_is_verified_and_token_is_stable)
{
    ct_review_server *s = start(0, 0), *s2;
    char *tok = reviewer(), *tok2;
    uint8_t *ca = NULL, *cert = NULL;
    size_t ca_len, cert_len;
    ct_key *k = NULL;
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    char *other_pem = NULL;
    const char *ips[1] = { "127.0.0.1" };
    ct_error err;

    /* a client trusting another CA refuses the endpoint */
    co.common_name = "x";
    co.ip_addrs = ips;
    co.n_ip_addrs = 1;
    ck_ok(ct_cert_dev_server(g_ctx, &co, &ca, &ca_len, &cert, &cert_len, &k, &err), &err);
    ck_ok(ct_cert_der_to_pem(ca, ca_len, &other_pem, &err), &err);
    ck_assert_int_eq(call(s, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, other_pem, NULL),
                     -(long)CURLE_PEER_FAILED_VERIFICATION);
    ck_assert_int_eq(g_forwarded, 0);
    /* the CA is the cluster CA, the same across restarts; so is the token */
    ck_assert_ptr_nonnull(strstr(ct_review_server_ca_pem(s), "BEGIN CERTIFICATE"));
    s2 = start(0, 0);
    ck_assert_str_eq(ct_review_server_ca_pem(s), ct_review_server_ca_pem(s2));
    ck_assert_uint_ne(ct_review_server_port(s), ct_review_server_port(s2));
    tok2 = reviewer();
    ck_assert_str_eq(tok, tok2);
    ck_assert_int_eq(call(s2, "POST", CT_REVIEW_PATH, tok, REVIEW_BODY, NULL, NULL), 201);
    ct_review_server_free(s2);
    ct_review_server_free(s);
    ct_free(ca);
    ct_free(cert);
    ct_free(other_pem);
    ct_key_free(k);
    free(tok);
    free(tok2);
}
END_TEST

START_TEST(options_and_agent_requests)
{
    ct_review_options o = CT_REVIEW_OPTIONS_INIT;
    ct_review_server *s = NULL;
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_secret *t = NULL;
    ct_error err;
    const char *r;

    ck_err(ct_review_server_start(g_ctx, &o, &s, &err), CT_E_INVALID, &err);
    o.store = g_store;
    o.fingerprint = FP;
    ck_err(ct_review_server_start(g_ctx, &o, &s, &err), CT_E_INVALID, &err);
    o.forward = forward;
    o.fingerprint = "11111111-2222-4333-8444-555555555555"; /* not registered */
    ck_err(ct_review_server_start(g_ctx, &o, &s, &err), CT_E_NOTFOUND, &err);
    o.fingerprint = "not a fingerprint";
    ck_err(ct_review_server_start(g_ctx, &o, &s, &err), CT_E_INVALID, &err);
    o.fingerprint = FP;
    o.host = "localhost";
    ck_err(ct_review_server_start(g_ctx, &o, &s, &err), CT_E_INVALID, &err);
    o.version = 99;
    ck_err(ct_review_server_start(g_ctx, &o, &s, &err), CT_E_VERSION, &err);
    ck_assert_ptr_null(s);
    /* the reviewer token: none until made */
    ck_err(ct_review_token(g_ctx, g_store, "11111111-2222-4333-8444-555555555555", 0, &t, &err),
           CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(t);
    /* a store laid out by a newer cloudtaser: no reviewer token is made in it */
    {
        static const char newer[] = "{\"created_at\":1,\"layout\":2,\"v\":1}";
        ck_ok(ct_store_put(g_store, "system/layout", newer, strlen(newer), CT_STORE_ANY, NULL,
                           &err), &err);
        ck_err(ct_review_token(g_ctx, g_store, "11111111-2222-4333-8444-555555555555", 1, &t,
                               &err), CT_E_VERSION, &err);
        ck_assert_ptr_null(t);
        ck_ok(ct_store_del(g_store, "system/layout", &err), &err);
        ck_err(ct_review_token(g_ctx, g_store, "11111111-2222-4333-8444-555555555555", 0, &t,
                               &err), CT_E_NOTFOUND, &err);
    }
    /* the operator's handler refuses malformed requests */
    r = "{\"op\":\"k8s.tokenreview\"}";
    ck_err(ct_review_agent_handle(g_agent, FP, NULL, 0, (const uint8_t *)r, strlen(r), &resp,
                                  &len, &err), CT_E_INVALID, &err);
    r = "{\"op\":\"k8s.tokenreview\",\"token\":\"x\",\"audiences\":\"a\"}";
    ck_err(ct_review_agent_handle(g_agent, FP, NULL, 0, (const uint8_t *)r, strlen(r), &resp,
                                  &len, &err), CT_E_INVALID, &err);
    r = "[1]";
    ck_err(ct_review_agent_handle(g_agent, FP, NULL, 0, (const uint8_t *)r, strlen(r), &resp,
                                  &len, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(resp);
    r = "{\"op\":\"k8s.tokenreview\",\"token\":\"" POD_TOKEN "\"}";
    ck_ok(ct_review_agent_handle(g_agent, FP, NULL, 0, (const uint8_t *)r, strlen(r), &resp,
                                 &len, &err), &err);
    ck_assert_ptr_nonnull(strstr((char *)resp, "\"authenticated\":true"));
    ck_assert_ptr_null(strstr((char *)resp, POD_TOKEN)); /* the answer does not echo it */
    free(resp);
}
END_TEST

/* The fixture login request (vault-k8s-login-request.json): a projected token. */
static char *fixture_jwt(void)
{
    const char *fx = getenv("CT_SHARED_FIXTURES");
    char p[1024];
    json_error_t je;
    json_t *j;
    char *s;
    snprintf(p, sizeof p, "%s/vault-k8s-login-request.json", fx);
    j = json_load_file(p, 0, &je);
    ck_assert_ptr_nonnull(j);
    s = strdup(json_string_value(json_object_get(j, "jwt")));
    json_decref(j);
    return s;
}

static long vault_post(fake_vault *fv, const char *path, const char *token, const char *body,
                       json_t **out)
{
    const char *fx = getenv("CT_TEST_FIXTURES");
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512], th[300], ca[1024];
    buf b = { NULL, 0 };
    long st = 0;
    snprintf(url, sizeof url, "%s/v1/%s", fake_vault_addr(fv), path);
    snprintf(ca, sizeof ca, "%s/tls/ca.pem", fx);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    if (token) {
        snprintf(th, sizeof th, "X-Vault-Token: %s", token);
        h = curl_slist_append(h, th);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (out) {
        json_error_t je;
        *out = b.p ? json_loads(b.p, 0, &je) : NULL;
    }
    free(b.p);
    return st;
}

static void check_vault_error(json_t *j, const char *want)
{
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "errors"), 0)), want);
    json_decref(j);
}

/*
 * The whole path minus the session: Vault (the fake, doing what Vault's
 * Kubernetes auth does) configured by ct_review_configure_vault calls the
 * endpoint, which reviews on the API server through the operator's handler.
 */
START_TEST(vault_kubernetes_login_through_the_endpoint)
{
    ct_review_server *s = start(0, 0);
    ct_vault_options vo = CT_VAULT_OPTIONS_INIT;
    fake_vault *fv = fake_vault_start(NULL);
    char *jwt = fixture_jwt(), ca[1024], mount[128], *cfg;
    char body[4096], *tok = reviewer();
    ct_secret *rt = NULL;
    json_t *j = NULL, *auth;
    ct_error err;

    ck_assert_ptr_nonnull(fv);
    fake_vault_add_token(fv, "root-token", 1);
    fake_vault_add_token(fv, "weak-token", 0);
    fake_k8s_review_token(g_fk, jwt, POD_USER, AUD);
    snprintf(ca, sizeof ca, "%s/tls/ca.pem", getenv("CT_TEST_FIXTURES"));
    vo.address = fake_vault_addr(fv);
    vo.ca_file = ca;
    vo.token = "weak-token";
    ck_ok(ct_review_token(g_ctx, g_store, FP, 0, &rt, &err), &err);
    ck_err(ct_review_configure_vault(g_ctx, &vo, NULL, FP, ct_review_server_url(s),
                                     ct_review_server_ca_pem(s), rt, 1, mount, &err),
           CT_E_DENIED, &err);
    vo.token = "root-token";
    ck_ok(ct_review_configure_vault(g_ctx, &vo, NULL, FP, ct_review_server_url(s),
                                    ct_review_server_ca_pem(s), rt, 1, mount, &err), &err);
    ck_assert_str_eq(mount, "kubernetes-0ad50c05");
    /* again: the mount exists, the config is rewritten */
    ck_ok(ct_review_configure_vault(g_ctx, &vo, NULL, FP, ct_review_server_url(s),
                                    ct_review_server_ca_pem(s), rt, 1, NULL, &err), &err);
    cfg = fake_vault_auth_config(fv, "kubernetes-0ad50c05");
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_nonnull(strstr(cfg, ct_review_server_url(s)));
    ck_assert_ptr_nonnull(strstr(cfg, tok));
    free(cfg);
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/role/payments-api", "root-token",
                                "{\"bound_service_account_names\":[\"payments-api\"],"
                                "\"bound_service_account_namespaces\":[\"payments\"],"
                                "\"token_policies\":[\"payments-read\"],\"token_ttl\":3600}",
                                NULL), 204);
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/role/other", "root-token",
                                "{\"bound_service_account_names\":[\"other\"],"
                                "\"bound_service_account_namespaces\":[\"payments\"]}",
                                NULL), 204);
    /* valid: the fixture login response's shape, with the role's policies */
    snprintf(body, sizeof body, "{\"role\":\"payments-api\",\"jwt\":\"%s\"}", jwt);
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/login", NULL, body, &j), 200);
    auth = json_object_get(j, "auth");
    ck_assert_int_eq(strncmp(json_string_value(json_object_get(auth, "client_token")), "hvs.", 4),
                     0);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(auth, "policies"), 1)),
                     "payments-read");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(auth, "metadata"),
                                                       "service_account_uid")),
                     "3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a");
    ck_assert_int_eq(json_integer_value(json_object_get(auth, "lease_duration")), 3600);
    json_decref(j);
    ck_assert_uint_eq(fake_vault_logins(fv), 1);
    ck_assert_int_eq(g_forwarded, 1);
    /* role errors come before any review */
    snprintf(body, sizeof body, "{\"role\":\"payments-ap\",\"jwt\":\"%s\"}", jwt);
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/login", NULL, body, &j), 400);
    check_vault_error(j, "invalid role name \"payments-ap\"");
    snprintf(body, sizeof body, "{\"role\":\"other\",\"jwt\":\"%s\"}", jwt);
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/login", NULL, body, &j), 403);
    check_vault_error(j, "service account name not authorized");
    ck_assert_int_eq(g_forwarded, 1);
    /* revoked on the cluster: the next login is refused (the review sees it) */
    fake_k8s_revoke_token(g_fk, jwt);
    snprintf(body, sizeof body, "{\"role\":\"payments-api\",\"jwt\":\"%s\"}", jwt);
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/login", NULL, body, &j), 403);
    check_vault_error(j, "permission denied");
    ck_assert_int_eq(g_forwarded, 2);
    /* no session: still the fixture 403 */
    g_mode = FW_NONE;
    ck_assert_int_eq(vault_post(fv, "auth/kubernetes-0ad50c05/login", NULL, body, &j), 403);
    check_vault_error(j, "permission denied");
    ck_assert_uint_eq(fake_vault_logins(fv), 1);
    ct_secret_free(rt);
    free(tok);
    free(jwt);
    fake_vault_stop(fv);
    ct_review_server_free(s);
}
END_TEST

/* A JWK set with the keys of both sets (JSON texts). */
static char *union_sets(const char *a, const char *b)
{
    json_error_t je;
    json_t *ja = json_loads(a, 0, &je), *jb = json_loads(b, 0, &je);
    char *s;
    ck_assert_ptr_nonnull(ja);
    ck_assert_ptr_nonnull(jb);
    json_array_extend(json_object_get(ja, "keys"), json_object_get(jb, "keys"));
    s = json_dumps(ja, JSON_COMPACT);
    json_decref(ja);
    json_decref(jb);
    return s;
}

static char *canonical(const char *set)
{
    ct_jwks *j = NULL;
    char *c = NULL;
    ct_error err;
    ck_ok(ct_jwks_parse(g_ctx, set, strlen(set), &j, &err), &err);
    ck_ok(ct_jwks_serialize(j, &c, &err), &err);
    ct_jwks_free(j);
    return c;
}

static ct_err push(ct_review_jwks_sink *k, const char *set, char **answer, ct_error *err)
{
    char *req = malloc(strlen(set) + 64);
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_err rc;
    ck_assert_ptr_nonnull(req);
    sprintf(req, "{\"op\":\"k8s.jwks\",\"jwks\":%s}", set);
    rc = ct_review_jwks_handle(k, FP, NULL, 0, (const uint8_t *)req, strlen(req), &resp, &len,
                               err);
    free(req);
    if (answer)
        *answer = resp ? strndup((char *)resp, len) : NULL;
    free(resp);
    return rc;
}

/* The pinned set in clusters/<fp>/initialized, and the record's version. */
static json_t *pinned(uint64_t *ver)
{
    ct_secret *v = NULL;
    json_error_t je;
    json_t *j;
    ct_error err;
    ck_ok(ct_store_get(g_store, "clusters/" FP "/initialized", &v, ver, &err), &err);
    j = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), 0, &je);
    ct_secret_free(v);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(jwks_rotation_rules)
{
    const char *fx = getenv("CT_SHARED_FIXTURES");
    char path[1024], *fixture, *c1, *ans = NULL, *j2 = NULL, *j3 = NULL, *sup, *rec_s;
    ct_review_jwks_sink *k = NULL;
    ct_key *k2 = NULL, *k3 = NULL;
    json_t *rec, *p;
    json_error_t je;
    uint64_t v1, v2;
    ct_error err;
    FILE *f;
    long n;

    snprintf(path, sizeof path, "%s/k8s-jwks.json", fx);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    fixture = calloc(1, (size_t)n + 1);
    ck_assert_int_eq(fread(fixture, 1, (size_t)n, f), n);
    fclose(f);
    ck_ok(ct_review_jwks_sink_new(g_ctx, g_store, &k, &err), &err);
    /* not initialized: nothing to update */
    ck_err(push(k, fixture, NULL, &err), CT_E_STATE, &err);
    /* the claim record as the first bootstrap writes it (PROTOCOL.md 2.5) */
    c1 = canonical(fixture);
    rec = json_pack("{s:i,s:s,s:I,s:I,s:s,s:o,s:s,s:s,s:i,s:[]}", "v", 1, "fingerprint", FP,
                    "initialized_at", (json_int_t)1767225600000, "updated_at",
                    (json_int_t)1767225600000, "audience", "cloudtaser-bridge", "jwks",
                    json_loads(c1, 0, &je), "issuer",
                    "https://kubernetes.default.svc.cluster.local", "subject",
                    "system:serviceaccount:cloudtaser:operator", "reissues", 0, "jtis");
    rec_s = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    ck_ok(ct_store_put(g_store, "clusters/" FP "/initialized", rec_s, strlen(rec_s), 0, NULL,
                       &err), &err);
    free(rec_s);
    /* the same set: unchanged */
    ck_ok(push(k, fixture, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"unchanged\",\"keys\":1}");
    free(ans);
    json_decref(pinned(&v1));
    /* a rotation: old and new key side by side, then the old one gone */
    ck_ok(ct_key_generate(g_ctx, &k2, &err), &err);
    ck_ok(ct_key_generate(g_ctx, &k3, &err), &err);
    ck_ok(ct_jwks_from_key(k2, &j2, &err), &err);
    ck_ok(ct_jwks_from_key(k3, &j3, &err), &err);
    sup = union_sets(fixture, j2);
    ck_ok(push(k, sup, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"updated\",\"keys\":2}");
    free(ans);
    rec = pinned(&v2);
    ck_assert_uint_gt(v2, v1);
    p = json_object_get(rec, "jwks");
    ck_assert_int_eq(json_array_size(json_object_get(p, "keys")), 2);
    /* everything else is kept */
    ck_assert_str_eq(json_string_value(json_object_get(rec, "subject")),
                     "system:serviceaccount:cloudtaser:operator");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "initialized_at")), 1767225600000);
    json_decref(rec);
    ck_ok(push(k, j2, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"updated\",\"keys\":1}");
    free(ans);
    /* a set that shares no key with the pinned one: refused, nothing written */
    ck_err(push(k, j3, NULL, &err), CT_E_DENIED, &err);
    ck_err(push(k, fixture, NULL, &err), CT_E_DENIED, &err);
    rec = pinned(&v1);
    ck_assert_uint_eq(v1, v2 + 1);
    {
        char *c2 = canonical(j2), *got = json_dumps(json_object_get(rec, "jwks"),
                                                    JSON_COMPACT | JSON_SORT_KEYS);
        ck_assert_str_eq(got, c2);
        free(c2);
        free(got);
    }
    json_decref(rec);
    /* malformed requests */
    ck_err(push(k, "{\"keys\":[]}", NULL, &err), CT_E_INVALID, &err);
    ck_err(push(k, "[1]", NULL, &err), CT_E_INVALID, &err);
    {
        uint8_t *r = NULL;
        size_t rl = 0;
        ck_err(ct_review_jwks_handle(k, FP, NULL, 0, (const uint8_t *)"{}", 2, &r, &rl, &err),
               CT_E_INVALID, &err);
        ck_assert_ptr_null(r);
    }
    ct_key_free(k2);
    ct_key_free(k3);
    ct_free(j2);
    ct_free(j3);
    free(sup);
    free(c1);
    free(fixture);
    ct_review_jwks_sink_free(k);
}
END_TEST

/* A shared fixture's text (malloc'ed). */
static char *shared_fixture(const char *name)
{
    char path[1024], *b;
    FILE *f;
    long n;
    snprintf(path, sizeof path, "%s/%s", getenv("CT_SHARED_FIXTURES"), name);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    b = calloc(1, (size_t)n + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)n, f), n);
    fclose(f);
    return b;
}

/* The fake Vault's config of `mount` (parsed). */
static json_t *jwt_config(fake_vault *fv, const char *mount)
{
    char *c = fake_vault_auth_config(fv, mount);
    json_error_t je;
    json_t *j;
    ck_assert_ptr_nonnull(c);
    j = json_loads(c, 0, &je);
    free(c);
    ck_assert_ptr_nonnull(j);
    return j;
}

/*
 * The offline fallback: ct_review_configure_vault_jwt writes the pinned
 * keys as PEM (the fixture key gives exactly the fixture's PEM), and the
 * sink keeps that config current with its own narrow token; a Vault failure
 * does not fail the push, is reported as "vault":"failed", and the next push
 * of the same set repairs it.
 */
START_TEST(vault_jwt_config_follows_rotation)
{
    static const char *const prefixes[] = {"auth/jwt-"};
    char *fixture = shared_fixture("k8s-jwks.json"), *want = shared_fixture(
                                                          "vault-jwt-config-offline-request.json");
    char *c1 = canonical(fixture), *rec_s, *j2 = NULL, *sup, *ans = NULL, mount[128];
    ct_vault_options root = CT_VAULT_OPTIONS_INIT, bridge = CT_VAULT_OPTIONS_INIT;
    fake_vault *fv = fake_vault_start(NULL);
    ct_review_jwks_sink *k = NULL;
    ct_key *k2 = NULL;
    json_t *rec, *cfg, *w;
    json_error_t je;
    ct_error err;
    char ca[1024];

    ck_assert_ptr_nonnull(fv);
    fake_vault_add_token(fv, "root-token", 1);
    fake_vault_add_token(fv, "weak-token", 0);
    fake_vault_add_token_prefixes(fv, "bridge-token", "jwt-update", prefixes, 1);
    snprintf(ca, sizeof ca, "%s/tls/ca.pem", getenv("CT_TEST_FIXTURES"));
    root.address = bridge.address = fake_vault_addr(fv);
    root.ca_file = bridge.ca_file = ca;
    root.token = "weak-token";
    bridge.token = "bridge-token";
    /* not bootstrapped: nothing pinned to configure */
    ck_err(ct_review_configure_vault_jwt(g_ctx, g_store, &root, NULL, FP, 1, mount, &err),
           CT_E_STATE, &err);
    ck_assert_str_eq(mount, "");
    rec = json_pack("{s:i,s:s,s:I,s:I,s:s,s:o,s:s,s:s,s:i,s:[]}", "v", 1, "fingerprint", FP,
                    "initialized_at", (json_int_t)1767225600000, "updated_at",
                    (json_int_t)1767225600000, "audience", "cloudtaser-bridge", "jwks",
                    json_loads(c1, 0, &je), "issuer",
                    "https://kubernetes.default.svc.cluster.local", "subject",
                    "system:serviceaccount:cloudtaser:operator", "reissues", 0, "jtis");
    rec_s = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    ck_ok(ct_store_put(g_store, "clusters/" FP "/initialized", rec_s, strlen(rec_s), 0, NULL,
                       &err), &err);
    free(rec_s);
    /* a token without the policy: refused, nothing recorded */
    ck_err(ct_review_configure_vault_jwt(g_ctx, g_store, &root, NULL, FP, 1, mount, &err),
           CT_E_DENIED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "sys/auth/jwt-0ad50c05"));
    {
        ct_secret *v = NULL;
        ck_err(ct_store_get(g_store, "clusters/" FP "/vault-jwt", &v, NULL, &err),
               CT_E_NOTFOUND, &err);
    }
    root.token = "root-token";
    ck_ok(ct_review_configure_vault_jwt(g_ctx, g_store, &root, NULL, FP, 1, mount, &err), &err);
    ck_assert_str_eq(mount, "jwt-0ad50c05");
    /* the fixture's RSA key converts to exactly the fixture's PEM */
    cfg = jwt_config(fv, "jwt-0ad50c05");
    w = json_loads(want, 0, &je);
    ck_assert_ptr_nonnull(w);
    ck_assert(json_equal(json_object_get(cfg, "jwt_validation_pubkeys"),
                         json_object_get(w, "jwt_validation_pubkeys")));
    ck_assert(json_equal(json_object_get(cfg, "bound_issuer"), json_object_get(w, "bound_issuer")));
    json_decref(w);
    json_decref(cfg);
    /* again: the mount exists, fine */
    ck_ok(ct_review_configure_vault_jwt(g_ctx, g_store, &root, "jwt-0ad50c05", FP, 1, NULL,
                                        &err), &err);

    ck_ok(ct_review_jwks_sink_new(g_ctx, g_store, &k, &err), &err);
    ck_ok(ct_review_jwks_sink_set_vault(k, &bridge, &err), &err);
    ck_ok(push(k, fixture, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"unchanged\",\"keys\":1}");
    free(ans);
    /* a rotation while Vault fails: pinned, Vault not updated, reported */
    ck_ok(ct_key_generate(g_ctx, &k2, &err), &err);
    ck_ok(ct_jwks_from_key(k2, &j2, &err), &err);
    sup = union_sets(fixture, j2);
    fake_vault_fault(fv, FV_FAULT_STATUS, 1, 500, "POST", "auth/jwt-0ad50c05/config", NULL);
    ck_ok(push(k, sup, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"updated\",\"keys\":2,\"vault\":\"failed\"}");
    free(ans);
    cfg = jwt_config(fv, "jwt-0ad50c05");
    ck_assert_int_eq(json_array_size(json_object_get(cfg, "jwt_validation_pubkeys")), 1);
    json_decref(cfg);
    /* the operator pushes the same set again: Vault catches up */
    ck_ok(push(k, sup, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"unchanged\",\"keys\":2,\"vault\":\"updated\"}");
    free(ans);
    cfg = jwt_config(fv, "jwt-0ad50c05");
    ck_assert_int_eq(json_array_size(json_object_get(cfg, "jwt_validation_pubkeys")), 2);
    json_decref(cfg);
    ck_ok(push(k, sup, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"unchanged\",\"keys\":2}");
    free(ans);
    /* the old key dropped: one EC key left */
    ck_ok(push(k, j2, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"updated\",\"keys\":1,\"vault\":\"updated\"}");
    free(ans);
    cfg = jwt_config(fv, "jwt-0ad50c05");
    ck_assert_int_eq(json_array_size(json_object_get(cfg, "jwt_validation_pubkeys")), 1);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_array_get(
                                     json_object_get(cfg, "jwt_validation_pubkeys"), 0)),
                                 "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"));
    json_decref(cfg);
    /* a bridge token Vault refuses (403): the push still succeeds, reported failed */
    bridge.token = "weak-token";
    ck_ok(push(k, sup, &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"status\":\"updated\",\"keys\":2,\"vault\":\"failed\"}");
    free(ans);
    bridge.token = "bridge-token";
    ct_review_jwks_sink_free(k);
    ct_key_free(k2);
    ct_free(j2);
    free(sup);
    free(c1);
    free(want);
    free(fixture);
    fake_vault_stop(fv);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("review");
    TCase *tc = tcase_create("review");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, valid_token_is_authenticated);
    tcase_add_test(tc, expired_and_revoked_tokens);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, body_limit);
    tcase_add_test(tc, no_session_slow_and_failing_operator);
    tcase_add_test(tc, operator_without_rbac);
    tcase_add_test(tc, tls_is_verified_and_token_is_stable);
    tcase_add_test(tc, options_and_agent_requests);
    tcase_add_test(tc, vault_kubernetes_login_through_the_endpoint);
    tcase_add_test(tc, jwks_rotation_rules);
    tcase_add_test(tc, vault_jwt_config_follows_rotation);
    suite_add_tcase(s, tc);
    return s;
}
