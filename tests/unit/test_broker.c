/*
 * test_broker.c - the Vault API broker and the bridge's Vault proxy:
 *   - ct_vault_api_allowed (the shared allowlist);
 *   - ct_vault_proxy_http against the fake Vault: the pod's token passes
 *     through (and nothing else), allowlist refusals, extra prefixes,
 *     Vault's own errors relayed, transport errors;
 *   - ct_vault_proxy_cert: names policy, a certificate from the cluster CA;
 *   - ct_broker in process (its forward function calls the proxy through a
 *     ct_router, i.e. the bridge side without the beacon) with libcurl as
 *     the pod: per-token policies, Vault-shaped refusals (404/405/413),
 *     login, lookup-self, health with the tunnel up and down, the
 *     in-flight limit (503 + Retry-After), forward errors.
 */
#include "fake_vault.h"
#include "testutil.h"

#include <cloudtaser/broker.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FP "0ad50c05-1153-4508-9237-4cb2912e2c23"

static char g_ca[512];

static void paths(void)
{
    const char *d = getenv("CT_TEST_FIXTURES");
    ck_assert_ptr_nonnull(d);
    snprintf(g_ca, sizeof g_ca, "%s/tls/ca.pem", d);
}

/* ---- allowlist ---- */

START_TEST(allowlist)
{
    static const struct {
        const char *m, *p;
        int want;
        const char *kind;
    } t[] = {
        {"GET", "secret/data/app1/db", 1, "kv-read"},
        {"GET", "kv/team/data/x", 1, "kv-read"},
        {"POST", "secret/data/app1/db", -1, "kv-read"},
        {"DELETE", "secret/data/app1/db", -1, "kv-read"},
        {"GET", "secret/data/", 0, NULL},
        {"GET", "secret/data", 0, NULL},
        {"LIST", "secret/metadata/app1/", 1, "kv-list"},
        {"LIST", "secret/metadata", 1, "kv-list"},
        {"GET", "secret/metadata/app1/db", 1, "kv-metadata"},
        {"DELETE", "secret/metadata/app1/db", -1, "kv-metadata"},
        {"POST", "auth/kubernetes/login", 1, "login"},
        {"PUT", "auth/k8s/cluster1/login", 1, "login"},
        {"GET", "auth/kubernetes/login", -1, "login"},
        {"POST", "auth/token/login", 0, NULL},
        {"GET", "auth/token/lookup-self", 1, "lookup-self"},
        {"POST", "auth/token/lookup-self", 1, "lookup-self"},
        {"POST", "auth/token/renew-self", 1, "renew-self"},
        {"GET", "auth/token/renew-self", -1, "renew-self"},
        {"POST", "auth/token/create", 0, NULL},
        {"GET", "sys/health", 1, "health"},
        {"HEAD", "sys/health", 1, "health"},
        {"POST", "sys/health", -1, "health"},
        {"GET", "sys/mounts", 0, NULL},
        {"GET", "sys/data/x", 0, NULL},
        {"GET", "cubbyhole/data/x", 0, NULL},
        {"GET", "identity/data/x", 0, NULL},
        {"GET", "secret/data/../../sys/mounts", 0, NULL},
        {"GET", "secret/data/./x", 0, NULL},
        {"GET", "secret//data/x", 0, NULL},
        {"GET", "/secret/data/x", 0, NULL},
        {"GET", "secret/data/a\nb", 0, NULL},
        {"get", "secret/data/x", 0, NULL},
        {"GET", "", 0, NULL},
        {"GET", "transit/decrypt/k", 0, NULL},
    };
    char longp[1100];
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        const char *kind = "unset";
        int r = ct_vault_api_allowed(t[i].m, t[i].p, &kind);
        ck_assert_msg(r == t[i].want, "%s %s -> %d, want %d", t[i].m, t[i].p, r, t[i].want);
        if (t[i].kind)
            ck_assert_msg(kind && strcmp(kind, t[i].kind) == 0, "%s %s kind %s", t[i].m,
                          t[i].p, kind ? kind : "NULL");
    }
    memset(longp, 'a', sizeof longp);
    memcpy(longp, "secret/data/", 12);
    longp[sizeof longp - 1] = 0;
    ck_assert_int_eq(ct_vault_api_allowed("GET", longp, NULL), 0);
    ck_assert_int_eq(ct_vault_api_allowed(NULL, "sys/health", NULL), 0);
}
END_TEST

/* ---- a world: fake Vault with two pods' tokens, proxy, router ---- */

typedef struct world {
    fake_vault *fv;
    ct_ctx *ctx;
    ct_store *store;
    ct_vault_proxy *px;
    ct_router *router;
    ct_broker *br;
    int up;           /* the "tunnel" for health */
    ct_err force;     /* forward fails with this (CT_OK: none) */
    int delay_ms;     /* forward sleeps first */
    char ca_pem_file[512];
} world;

static const char *const APP1[] = {"secret/data/app1/", "secret/metadata/app1/"};
static const char *const APP2[] = {"secret/data/app2/", "secret/metadata/app2/"};

static size_t discard(char *p, size_t sz, size_t nm, void *u)
{
    (void)p;
    (void)u;
    return sz * nm;
}

static void put_secret(world *w, const char *key, const char *json)
{
    /* written with a root token straight to the fake */
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512];
    long code = 0;
    snprintf(url, sizeof url, "%s/v1/secret/data/%s", fake_vault_addr(w->fv), key);
    h = curl_slist_append(h, "X-Vault-Token: root-token");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, g_ca);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    ck_assert_int_eq(code, 200);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void world_start(world *w, const char *const *extra, size_t nextra)
{
    fv_options fo;
    ct_vault_options vo = CT_VAULT_OPTIONS_INIT;
    ct_vault_proxy_options po = CT_VAULT_PROXY_OPTIONS_INIT;
    ct_error err;

    paths();
    memset(w, 0, sizeof *w);
    memset(&fo, 0, sizeof fo);
    fo.mount = "secret";
    w->fv = fake_vault_start(&fo);
    ck_assert_ptr_nonnull(w->fv);
    fake_vault_add_token(w->fv, "root-token", 1);
    fake_vault_add_token_prefixes(w->fv, "pod1-token", "app1-read", APP1, 2);
    fake_vault_add_token_prefixes(w->fv, "pod2-token", "app2-read", APP2, 2);
    fake_vault_add_login(w->fv, "kubernetes", "app1", "jwt-of-pod1", "pod1-token");
    w->ctx = ct_test_ctx();
    ck_ok(ct_store_new_memory(w->ctx, &w->store, &err), &err);
    ck_ok(ct_register(w->ctx, w->store, FP, NULL, NULL, &err), &err);
    vo.address = fake_vault_addr(w->fv);
    vo.ca_file = g_ca;
    vo.timeout_ms = 5000;
    po.vault = &vo;
    po.store = w->store;
    po.extra_prefixes = extra;
    po.n_extra_prefixes = nextra;
    ck_ok(ct_vault_proxy_new(w->ctx, &po, &w->px, &err), &err);
    ck_ok(ct_router_new(&w->router, &err), &err);
    ck_ok(ct_router_add(w->router, "vault.http", ct_vault_proxy_http, w->px, &err), &err);
    ck_ok(ct_router_add(w->router, "broker.cert", ct_vault_proxy_cert, w->px, &err), &err);
    put_secret(w, "app1/db", "{\"data\":{\"password\":\"p1-secret\"}}");
    put_secret(w, "app2/db", "{\"data\":{\"password\":\"p2-secret\"}}");
    w->up = 1;
}

static void world_stop(world *w)
{
    ct_broker_free(w->br);
    ct_router_free(w->router);
    ct_vault_proxy_free(w->px);
    ct_store_free(w->store);
    fake_vault_stop(w->fv);
    ct_ctx_free(w->ctx);
    if (w->ca_pem_file[0])
        unlink(w->ca_pem_file);
}

/* Calls the router as the bridge's session handler would. */
static ct_err call(world *w, const char *req, char **answer, ct_error *err)
{
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_err rc = ct_router_handle(w->router, FP, NULL, 1, (const uint8_t *)req, strlen(req), &resp,
                                 &len, err);
    *answer = NULL;
    if (rc == CT_OK) {
        *answer = malloc(len + 1);
        memcpy(*answer, resp, len);
        (*answer)[len] = 0;
        free(resp);
    }
    return rc;
}

static json_t *answer_json(const char *a, long *status)
{
    json_t *o = json_loads(a, 0, NULL), *b;
    ck_assert_ptr_nonnull(o);
    *status = (long)json_integer_value(json_object_get(o, "status"));
    b = json_loads(json_string_value(json_object_get(o, "body")), 0, NULL);
    json_decref(o);
    return b;
}

/* ---- the bridge's proxy ---- */

START_TEST(proxy_token_passthrough)
{
    world w;
    ct_error err;
    char *a;
    long st;
    json_t *b;

    world_start(&w, NULL, 0);
    /* pod 1 reads its own path */
    ck_ok(call(&w,
               "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app1/db\","
               "\"token\":\"pod1-token\"}",
               &a, &err),
          &err);
    b = answer_json(a, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(b, "data"), "data"), "password")),
                     "p1-secret");
    ck_assert_int_eq(fake_vault_last_had_token(w.fv), 1);
    ck_assert_ptr_nonnull(strstr(a, "\"Content-Type\":\"application/json\""));
    json_decref(b);
    free(a);
    /* ... and not pod 2's: Vault's 403 comes back as an answer */
    ck_ok(call(&w,
               "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app2/db\","
               "\"token\":\"pod1-token\"}",
               &a, &err),
          &err);
    b = answer_json(a, &st);
    ck_assert_int_eq(st, 403);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(b, "errors"), 0)),
                     "1 error occurred:\n\t* permission denied\n\n");
    json_decref(b);
    free(a);
    /* no token from the pod: none is added by the bridge */
    ck_ok(call(&w,
               "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app1/db\"}", &a,
               &err),
          &err);
    b = answer_json(a, &st);
    ck_assert_int_eq(st, 403);
    ck_assert_int_eq(fake_vault_last_had_token(w.fv), 0);
    json_decref(b);
    free(a);
    /* version query, lookup-self */
    ck_ok(call(&w,
               "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app2/db\","
               "\"query\":\"version=1\",\"token\":\"pod2-token\"}",
               &a, &err),
          &err);
    b = answer_json(a, &st);
    ck_assert_int_eq(st, 200);
    json_decref(b);
    free(a);
    ck_ok(call(&w,
               "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"auth/token/lookup-self\","
               "\"token\":\"pod2-token\"}",
               &a, &err),
          &err);
    b = answer_json(a, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(b, "data"), "id")),
                     "pod2-token");
    json_decref(b);
    free(a);
    world_stop(&w);
}
END_TEST

/*
 * The proxy behind a real session (pipe), as in the bridge: vault.http is
 * answered asynchronously, so 16 slow Vault calls (300 ms each) run at once
 * with only 2 session handler threads; a refusal still comes back as the
 * requester's error; a call in flight when the proxy is freed fails with
 * CT_E_CLOSED instead of hanging.
 */
typedef struct sjob {
    ct_session *s;
    const char *req;
    ct_err rc;
    char answer[512];
    char msg[256];
    pthread_t th;
} sjob;

static ct_err route_handler(void *arg, ct_session *s, uint32_t stream, const uint8_t *req,
                            size_t n, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    return ct_router_handle(arg, FP, s, stream, req, n, resp, resp_len, err);
}

static void *sjob_main(void *arg)
{
    sjob *j = arg;
    uint8_t *resp = NULL;
    size_t n = 0;
    ct_error err;
    j->rc = ct_session_request(j->s, j->req, strlen(j->req), 20000, &resp, &n, &err);
    if (j->rc == CT_OK)
        snprintf(j->answer, sizeof j->answer, "%.*s", (int)(n < 511 ? n : 511),
                 (const char *)resp);
    else
        snprintf(j->msg, sizeof j->msg, "%s", err.message);
    ct_free(resp);
    return NULL;
}

START_TEST(proxy_async_over_session)
{
    enum { N = 16 };
    static const char rd[] = "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":"
                             "\"secret/data/app1/db\",\"token\":\"pod1-token\"}";
    world w;
    ct_conn *ca = NULL, *cb = NULL;
    ct_session *sa = NULL, *sb = NULL;
    ct_session_options oa = CT_SESSION_OPTIONS_INIT, ob = CT_SESSION_OPTIONS_INIT;
    sjob j[N + 2];
    struct timespec t0, t1;
    long took;
    ct_error err;
    int i, vg = ct_test_under_valgrind(), n = vg ? 4 : N; /* valgrind: slow TLS connects */

    world_start(&w, NULL, 0);
    ck_ok(ct_pipe_pair(w.ctx, 0, &ca, &cb, &err), &err);
    oa.initiator = 0; /* a: the operator side asks */
    ob.initiator = 1;
    ob.handler = route_handler;
    ob.handler_arg = w.router;
    ob.handler_threads = 2;
    ck_ok(ct_session_open(w.ctx, ca, &oa, &sa, &err), &err);
    ck_ok(ct_session_open(w.ctx, cb, &ob, &sb, &err), &err);

    fake_vault_fault(w.fv, FV_FAULT_SLOW, n, 300, "GET", "app1/db", NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; i++) {
        memset(&j[i], 0, sizeof j[i]);
        j[i].s = sa;
        j[i].req = rd;
        ck_assert_int_eq(pthread_create(&j[i].th, NULL, sjob_main, &j[i]), 0);
    }
    for (i = 0; i < n; i++) /* all joined before any assertion can leave */
        pthread_join(j[i].th, NULL);
    for (i = 0; i < n; i++) {
        ck_assert_msg(j[i].rc == CT_OK, "%d: %s %s", i, ct_err_name(j[i].rc), j[i].msg);
        ck_assert_msg(strstr(j[i].answer, "\"status\":200") &&
                          strstr(j[i].answer, "p1-secret"),
                      "%s", j[i].answer);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    took = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    /* two blocking handler threads would need N / 2 * 300 ms = 2.4 s */
    if (!vg) /* valgrind's serialised threads make timing meaningless */
        ck_assert_msg(took < 1500, "%d slow reads took %ld ms", n, took);

    /* a refusal is still the requester's error */
    j[N].s = sa;
    j[N].req = "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"sys/raw/x\","
               "\"token\":\"pod1-token\"}";
    sjob_main(&j[N]);
    ck_assert_int_eq(j[N].rc, CT_E_AUTH);

    /* the proxy goes away with a call in flight: CT_E_CLOSED, no hang */
    fake_vault_fault(w.fv, FV_FAULT_SLOW, 1, 5000, "GET", "app1/db", NULL);
    memset(&j[N + 1], 0, sizeof j[N + 1]);
    j[N + 1].s = sa;
    j[N + 1].req = rd;
    ck_assert_int_eq(pthread_create(&j[N + 1].th, NULL, sjob_main, &j[N + 1]), 0);
    usleep(300000);
    ct_vault_proxy_free(w.px);
    w.px = NULL;
    pthread_join(j[N + 1].th, NULL);
    ck_assert_msg(j[N + 1].rc == CT_E_CLOSED, "%s: %s", ct_err_name(j[N + 1].rc),
                  j[N + 1].msg);
    ck_ok(ct_session_close(sa, 5000, &err), &err);
    ct_session_free(sa);
    ct_session_free(sb);
    fake_vault_clear_fault(w.fv);
    world_stop(&w);
}
END_TEST

START_TEST(proxy_refusals)
{
    static const char *const extra[] = {"transit/decrypt/"};
    world w;
    ct_error err;
    char *a;
    unsigned before;

    world_start(&w, extra, 1);
    before = fake_vault_count(w.fv, NULL);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"POST\",\"path\":\"secret/data/app1/db\","
                "\"token\":\"root-token\",\"body\":\"{}\"}",
                &a, &err),
           CT_E_AUTH, &err);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"sys/mounts\","
                "\"token\":\"root-token\"}",
                &a, &err),
           CT_E_AUTH, &err);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":"
                "\"secret/data/../../sys/mounts\",\"token\":\"root-token\"}",
                &a, &err),
           CT_E_AUTH, &err);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"DELETE\",\"path\":\"transit/decrypt/k\","
                "\"token\":\"root-token\"}",
                &a, &err),
           CT_E_AUTH, &err);
    ck_err(call(&w, "{\"op\":\"vault.http\",\"path\":\"sys/health\"}", &a, &err), CT_E_INVALID,
           &err);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app1/db\","
                "\"query\":\"version=1&x=%0d\"}",
                &a, &err),
           CT_E_INVALID, &err);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app1/db\","
                "\"token\":\"bad token\"}",
                &a, &err),
           CT_E_INVALID, &err);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app1/db\","
                "\"token\":7}",
                &a, &err),
           CT_E_INVALID, &err);
    /* none of those reached Vault */
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), before);
    /* an extra prefix is forwarded (the fake has no transit mount: its 404) */
    ck_ok(call(&w,
               "{\"op\":\"vault.http\",\"method\":\"POST\",\"path\":\"transit/decrypt/k\","
               "\"token\":\"root-token\",\"body\":\"{}\"}",
               &a, &err),
          &err);
    ck_assert_ptr_nonnull(strstr(a, "\"status\":404"));
    free(a);
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), before + 1);
    /* Vault down: a transport error, not an answer */
    fake_vault_fault(w.fv, FV_FAULT_RESET, -1, 0, NULL, NULL, NULL);
    ck_err(call(&w,
                "{\"op\":\"vault.http\",\"method\":\"GET\",\"path\":\"secret/data/app1/db\","
                "\"token\":\"pod1-token\"}",
                &a, &err),
           CT_E_RESET, &err);
    world_stop(&w);
}
END_TEST

START_TEST(proxy_cert)
{
    world w;
    ct_error err;
    char *a;
    json_t *o;
    uint8_t *ca = NULL, *cert = NULL;
    size_t ca_len, cert_len;
    ct_key *k;
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    uint8_t *csr;
    size_t csr_len;
    char req[4096], *b64;
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, j = 0;

    world_start(&w, NULL, 0);
    ck_ok(ct_key_generate(w.ctx, &k, &err), &err);
    co.common_name = "x";
    ck_ok(ct_csr_create(w.ctx, k, &co, &csr, &csr_len, &err), &err);
    b64 = calloc(1, csr_len * 2 + 8);
    for (i = 0; i < csr_len; i += 3) {
        uint32_t v = (uint32_t)csr[i] << 16 | (i + 1 < csr_len ? (uint32_t)csr[i + 1] << 8 : 0) |
                     (i + 2 < csr_len ? csr[i + 2] : 0);
        b64[j++] = tbl[v >> 18 & 63];
        b64[j++] = tbl[v >> 12 & 63];
        b64[j++] = i + 1 < csr_len ? tbl[v >> 6 & 63] : '=';
        b64[j++] = i + 2 < csr_len ? tbl[v & 63] : '=';
    }
    /* names outside the allowed forms are refused */
    snprintf(req, sizeof req, "{\"op\":\"broker.cert\",\"csr\":\"%s\",\"names\":[\"vault.example.com\"]}", b64);
    ck_err(call(&w, req, &a, &err), CT_E_INVALID, &err);
    snprintf(req, sizeof req, "{\"op\":\"broker.cert\",\"csr\":\"%s\",\"names\":[\"*.svc\"]}", b64);
    ck_err(call(&w, req, &a, &err), CT_E_INVALID, &err);
    snprintf(req, sizeof req, "{\"op\":\"broker.cert\",\"csr\":\"!!\",\"names\":[\"localhost\"]}");
    ck_err(call(&w, req, &a, &err), CT_E_INVALID, &err);
    snprintf(req, sizeof req,
             "{\"op\":\"broker.cert\",\"csr\":\"%s\",\"names\":[\"vault-broker.cloudtaser.svc\","
             "\"vault-broker.cloudtaser.svc.cluster.local\",\"localhost\",\"127.0.0.1\",\"::1\"]}",
             b64);
    ck_ok(call(&w, req, &a, &err), &err);
    o = json_loads(a, 0, NULL);
    ck_assert_ptr_nonnull(o);
    ck_ok(ct_cert_pem_to_der(json_string_value(json_object_get(o, "ca")),
                             json_string_length(json_object_get(o, "ca")), &ca, &ca_len, &err),
          &err);
    ck_ok(ct_cert_pem_to_der(json_string_value(json_object_get(o, "cert")),
                             json_string_length(json_object_get(o, "cert")), &cert, &cert_len,
                             &err),
          &err);
    ck_ok(ct_cert_verify(w.ctx, ca, ca_len, cert, cert_len, CT_CERT_SERVER, &err), &err);
    /* the CA is this cluster's: its hash is the operational room */
    {
        ct_registration *r;
        uint8_t room[32];
        ck_ok(ct_registration_get(w.ctx, w.store, FP, &r, &err), &err);
        ck_ok(ct_room_hash_operational(ca, ca_len, room, &err), &err);
        ck_assert(memcmp(room, ct_registration_operational_room(r), 32) == 0);
        ct_registration_free(r);
    }
    json_decref(o);
    free(a);
    ct_free(ca);
    ct_free(cert);
    ct_free(csr);
    free(b64);
    ct_key_free(k);
    world_stop(&w);
}
END_TEST

/* ---- the broker, in process ---- */

static ct_err fwd(void *arg, const void *req, size_t len, int timeout_ms, uint8_t **resp,
                  size_t *resp_len, ct_error *err)
{
    world *w = arg;
    (void)timeout_ms;
    if (w->delay_ms)
        usleep((useconds_t)w->delay_ms * 1000);
    if (w->force != CT_OK) {
        err->code = w->force;
        snprintf(err->message, sizeof err->message, "forced");
        return w->force;
    }
    return ct_router_handle(w->router, FP, NULL, 1, req, len, resp, resp_len, err);
}

static int is_up(void *arg)
{
    return ((world *)arg)->up;
}

static void broker_start(world *w, uint32_t max_in_flight, size_t max_body)
{
    static const char *const names[] = {"localhost", "127.0.0.1"};
    ct_broker_options bo = CT_BROKER_OPTIONS_INIT;
    ct_error err;
    char *pem;
    FILE *f;

    bo.forward = fwd;
    bo.up = is_up;
    bo.forward_arg = w;
    bo.host = "127.0.0.1";
    bo.names = names;
    bo.n_names = 2;
    bo.max_in_flight = max_in_flight;
    bo.max_body = max_body;
    ck_ok(ct_broker_new(w->ctx, &bo, &w->br, &err), &err);
    ck_err(ct_broker_ca_pem(w->br, &pem, &err), CT_E_STATE, &err);
    ck_ok(ct_broker_start(w->br, 5000, &err), &err);
    ck_assert_uint_ne(ct_broker_port(w->br), 0);
    ck_assert_int_gt(ct_broker_not_after(w->br), (int64_t)time(NULL) + 86400);
    ck_ok(ct_broker_ca_pem(w->br, &pem, &err), &err);
    snprintf(w->ca_pem_file, sizeof w->ca_pem_file, "/tmp/ct-broker-ca-%d-%p.pem", (int)getpid(),
             (void *)w);
    f = fopen(w->ca_pem_file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(pem, f);
    fclose(f);
    ct_free(pem);
}

typedef struct hres {
    long status;
    char body[8192];
    size_t n;
    char retry_after[16];
    char ctype[64];
} hres;

static size_t on_body(char *p, size_t sz, size_t nm, void *u)
{
    hres *r = u;
    size_t n = sz * nm, room = sizeof r->body - 1 - r->n;
    memcpy(r->body + r->n, p, n < room ? n : room);
    r->n += n < room ? n : room;
    r->body[r->n] = 0;
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *u)
{
    hres *r = u;
    size_t n = sz * nm;
    if (n > 13 && strncasecmp(p, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)strcspn(p + 13, "\r\n"),
                 p + 13);
    if (n > 14 && strncasecmp(p, "Content-Type: ", 14) == 0)
        snprintf(r->ctype, sizeof r->ctype, "%.*s", (int)strcspn(p + 14, "\r\n"), p + 14);
    return n;
}

/* A pod's request to the broker (trusting only the broker CA). */
static void pod(world *w, const char *method, const char *path, const char *token,
                const char *body, hres *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[2048], th[256];
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "https://localhost:%u/v1/%s", (unsigned)ct_broker_port(w->br), path);
    if (token) {
        snprintf(th, sizeof th, "X-Vault-Token: %s", token);
        h = curl_slist_append(h, th);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, w->ca_pem_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_RESOLVE, NULL);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    {
        CURLcode cc = curl_easy_perform(c);
        ck_assert_msg(cc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

START_TEST(broker_pods)
{
    world w;
    hres r;

    world_start(&w, NULL, 0);
    broker_start(&w, 0, 0);
    /* each pod reads its own path, not the other's */
    pod(&w, "GET", "secret/data/app1/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "p1-secret"));
    ck_assert_str_eq(r.ctype, "application/json");
    pod(&w, "GET", "secret/data/app2/db", "pod2-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "p2-secret"));
    pod(&w, "GET", "secret/data/app2/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 403);
    ck_assert_str_eq(r.body, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}\n");
    ck_assert_ptr_null(strstr(r.body, "p2-secret"));
    pod(&w, "GET", "secret/data/app1/db?version=1", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    pod(&w, "GET", "secret/data/app1/db?version=x", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 400);
    /* list and metadata */
    pod(&w, "LIST", "secret/metadata/app1/", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"db\""));
    pod(&w, "GET", "secret/metadata/app1?list=true", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"db\""));
    pod(&w, "GET", "secret/metadata/app1/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "current_version"));
    pod(&w, "LIST", "secret/metadata/app2/", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 403);
    /* login, lookup-self, renew-self */
    pod(&w, "POST", "auth/kubernetes/login", NULL, "{\"role\":\"app1\",\"jwt\":\"jwt-of-pod1\"}",
        &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"client_token\":\"pod1-token\""));
    pod(&w, "POST", "auth/kubernetes/login", NULL, "{\"role\":\"app1\",\"jwt\":\"forged\"}", &r);
    ck_assert_int_eq(r.status, 403);
    ck_assert_str_eq(r.body, "{\"errors\":[\"permission denied\"]}\n");
    pod(&w, "GET", "auth/token/lookup-self", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "app1-read"));
    pod(&w, "POST", "auth/token/renew-self", "pod2-token", "{\"increment\":\"1h\"}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"lease_duration\":3600"));
    pod(&w, "GET", "auth/token/lookup-self", "unknown-token", NULL, &r);
    ck_assert_int_eq(r.status, 403);
    /* health: Vault's answer plus the tunnel; 503 when the tunnel is down */
    pod(&w, "GET", "sys/health", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"cloudtaser_tunnel\":\"up\""));
    ck_assert_ptr_nonnull(strstr(r.body, "\"version\":\"1.21.1\""));
    fake_vault_set_standby(w.fv, 1);
    pod(&w, "GET", "sys/health", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 429);
    pod(&w, "GET", "sys/health?standbyok=true", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    fake_vault_set_standby(w.fv, 0);
    w.up = 0;
    pod(&w, "GET", "sys/health", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(strstr(r.body, "\"cloudtaser_tunnel\":\"down\""));
    pod(&w, "HEAD", "sys/health", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 503);
    w.up = 1;
    world_stop(&w);
}
END_TEST

START_TEST(broker_refusals)
{
    world w;
    hres r;
    char big[9000];
    unsigned before;

    world_start(&w, NULL, 0);
    broker_start(&w, 0, 4096);
    before = fake_vault_count(w.fv, NULL);
    pod(&w, "GET", "sys/mounts", "root-token", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    ck_assert_ptr_nonnull(strstr(r.body, "{\"errors\":[\"no handler for route"));
    pod(&w, "POST", "auth/token/create", "root-token", "{}", &r);
    ck_assert_int_eq(r.status, 404);
    pod(&w, "DELETE", "secret/data/app1/db", "root-token", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.body, "{\"errors\":[\"1 error occurred:\\n\\t* unsupported operation\\n\\n\"]}");
    pod(&w, "POST", "secret/data/app1/db", "root-token", "{\"data\":{}}", &r);
    ck_assert_int_eq(r.status, 405);
    pod(&w, "GET", "secret/data/app1/%2e%2e/%2e%2e/sys/mounts", "root-token", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    pod(&w, "GET", "secret/metadata/app1?list=maybe", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body, "{\"errors\":[]}");
    pod(&w, "GET", "not-v1", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 404);
    memset(big, 'a', sizeof big);
    memcpy(big, "{\"role\":\"", 9);
    memcpy(big + sizeof big - 3, "\"}", 3);
    pod(&w, "POST", "auth/kubernetes/login", NULL, big, &r);
    ck_assert_int_eq(r.status, 413);
    ck_assert_ptr_nonnull(strstr(r.body, "\"errors\""));
    /* none reached Vault */
    ck_assert_uint_eq(fake_vault_count(w.fv, NULL), before);
    /* the tunnel failing */
    w.force = CT_E_CLOSED;
    pod(&w, "GET", "secret/data/app1/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.retry_after, "1");
    w.force = CT_E_TIMEOUT;
    pod(&w, "GET", "secret/data/app1/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 504);
    w.force = CT_E_AUTH;
    pod(&w, "GET", "secret/data/app1/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 403);
    w.force = CT_E_PROTO;
    pod(&w, "GET", "secret/data/app1/db", "pod1-token", NULL, &r);
    ck_assert_int_eq(r.status, 502);
    ck_assert_ptr_nonnull(strstr(r.body, "{\"errors\":[\"cloudtaser broker: forced\"]}"));
    w.force = CT_OK;
    world_stop(&w);
}
END_TEST

typedef struct par {
    world *w;
    hres r;
} par;

static void *par_run(void *arg)
{
    par *p = arg;
    pod(p->w, "GET", "secret/data/app1/db", "pod1-token", NULL, &p->r);
    return NULL;
}

START_TEST(broker_in_flight_limit)
{
    world w;
    par p[4];
    pthread_t t[4];
    int i, ok = 0, busy = 0;

    world_start(&w, NULL, 0);
    broker_start(&w, 2, 0);
    w.delay_ms = 600;
    for (i = 0; i < 4; i++) {
        p[i].w = &w;
        ck_assert_int_eq(pthread_create(&t[i], NULL, par_run, &p[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (p[i].r.status == 200)
            ok++;
        else if (p[i].r.status == 503 && strcmp(p[i].r.retry_after, "1") == 0 &&
                 strstr(p[i].r.body, "too many requests in flight"))
            busy++;
    }
    ck_assert_int_ge(ok, 1);
    ck_assert_int_le(ok, 2);
    ck_assert_int_eq(ok + busy, 4);
    w.delay_ms = 0;
    world_stop(&w);
}
END_TEST

/* ---- certificate renewal ---- */

static volatile int64_t g_skew_ms; /* added to the broker context's wall clock */

static int64_t skewed_wall(void *u)
{
    struct timespec ts;
    (void)u;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + __atomic_load_n(&g_skew_ms,
                                                                              __ATOMIC_SEQ_CST);
}

/* The serial number of the certificate a new TLS connection to the broker sees. */
static void served_serial(world *w, char *out, size_t n)
{
    CURL *c = curl_easy_init();
    struct curl_certinfo *ci = NULL;
    char url[256];
    hres r;
    int i;
    out[0] = 0;
    memset(&r, 0, sizeof r);
    snprintf(url, sizeof url, "https://localhost:%u/v1/sys/health", (unsigned)ct_broker_port(w->br));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, w->ca_pem_file);
    curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    ck_assert_int_eq(curl_easy_getinfo(c, CURLINFO_CERTINFO, &ci), CURLE_OK);
    ck_assert_ptr_nonnull(ci);
    ck_assert_int_ge(ci->num_of_certs, 1);
    for (struct curl_slist *l = ci->certinfo[0]; l; l = l->next)
        if (strncmp(l->data, "Serial Number:", 14) == 0)
            snprintf(out, n, "%s", l->data + 14);
    for (i = 0; out[i]; i++)
        ;
    ck_assert_int_gt(i, 0);
    curl_easy_cleanup(c);
}

static int wait_certs(world *w, uint32_t n, int ms)
{
    for (; ms > 0; ms -= 20) {
        if (ct_broker_cert_count(w->br) >= n)
            return 1;
        usleep(20000);
    }
    return 0;
}

/*
 * The certificate is renewed once the broker's wall clock passes half its
 * lifetime (renew_permille 500; the clock is skewed forward by 16 of its 30
 * days): a request in flight meanwhile finishes on the old server, new TLS
 * connections see the new serial. A failing renewal is retried with backoff.
 */
START_TEST(broker_cert_renewal)
{
    static const char *const names[] = {"localhost", "127.0.0.1"};
    ct_broker_options bo = CT_BROKER_OPTIONS_INIT;
    ct_ctx_options co = CT_CTX_OPTIONS_INIT;
    ct_ctx *bctx = NULL;
    char s0[256], s1[256], *pem;
    int64_t na0;
    pthread_t t;
    ct_error err;
    world w;
    par p;
    FILE *f;

    world_start(&w, NULL, 0);
    g_skew_ms = 0;
    co.wall_ms = skewed_wall;
    ck_ok(ct_ctx_new(&co, &bctx, &err), &err);
    bo.forward = fwd;
    bo.up = is_up;
    bo.forward_arg = &w;
    bo.host = "127.0.0.1";
    bo.names = names;
    bo.n_names = 2;
    bo.renew_permille = 500;
    bo.retry_ms = 100;
    ck_ok(ct_broker_new(bctx, &bo, &w.br, &err), &err);
    ck_ok(ct_broker_start(w.br, 5000, &err), &err);
    ck_assert_uint_eq(ct_broker_cert_count(w.br), 1);
    na0 = ct_broker_not_after(w.br);
    ck_ok(ct_broker_ca_pem(w.br, &pem, &err), &err);
    snprintf(w.ca_pem_file, sizeof w.ca_pem_file, "/tmp/ct-broker-ca-%d-r.pem", (int)getpid());
    f = fopen(w.ca_pem_file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(pem, f);
    fclose(f);
    ct_free(pem);
    served_serial(&w, s0, sizeof s0);
    /* not due yet: nothing happens */
    usleep(1500000);
    ck_assert_uint_eq(ct_broker_cert_count(w.br), 1);

    /* a slow request in flight while the certificate is renewed */
    w.delay_ms = 2500;
    p.w = &w;
    ck_assert_int_eq(pthread_create(&t, NULL, par_run, &p), 0);
    usleep(500000);
    __atomic_store_n(&g_skew_ms, (int64_t)16 * 86400 * 1000, __ATOMIC_SEQ_CST);
    ck_assert_msg(wait_certs(&w, 2, 15000), "not renewed");
    __atomic_store_n(&g_skew_ms, 0, __ATOMIC_SEQ_CST);
    w.delay_ms = 0;
    pthread_join(t, NULL);
    ck_assert_int_eq(p.r.status, 200); /* finished on the old server */
    ck_assert_ptr_nonnull(strstr(p.r.body, "p1-secret"));
    served_serial(&w, s1, sizeof s1);
    ck_assert_str_ne(s0, s1);
    ck_assert_int_ge(ct_broker_not_after(w.br), na0);
    /* the server still serves pods normally */
    {
        hres r;
        pod(&w, "GET", "secret/data/app1/db", "pod1-token", NULL, &r);
        ck_assert_int_eq(r.status, 200);
    }

    /* a failing renewal is retried, then succeeds */
    {
        uint32_t n = ct_broker_cert_count(w.br);
        w.force = CT_E_TIMEOUT;
        __atomic_store_n(&g_skew_ms, (int64_t)16 * 86400 * 1000, __ATOMIC_SEQ_CST);
        usleep(1500000); /* several attempts fail */
        ck_assert_uint_eq(ct_broker_cert_count(w.br), n);
        w.force = CT_OK;
        ck_assert_msg(wait_certs(&w, n + 1, 15000), "not renewed after the failures");
        __atomic_store_n(&g_skew_ms, 0, __ATOMIC_SEQ_CST);
    }
    {
        char s2[256];
        usleep(300000);
        served_serial(&w, s2, sizeof s2);
        ck_assert_str_ne(s1, s2);
    }
    world_stop(&w);
    ct_ctx_free(bctx);
}
END_TEST

START_TEST(broker_options)
{
    ct_broker_options bo = CT_BROKER_OPTIONS_INIT;
    ct_broker *b = NULL;
    ct_error err;
    ct_ctx *ctx = ct_test_ctx();
    static const char *const bad[] = {""};
    ck_err(ct_broker_new(ctx, &bo, &b, &err), CT_E_INVALID, &err);
    bo.forward = fwd;
    bo.host = "localhost";
    ck_err(ct_broker_new(ctx, &bo, &b, &err), CT_E_INVALID, &err);
    bo.host = "::1";
    bo.names = bad;
    bo.n_names = 1;
    ck_err(ct_broker_new(ctx, &bo, &b, &err), CT_E_INVALID, &err);
    bo.version = 99;
    ck_err(ct_broker_new(ctx, &bo, &b, &err), CT_E_VERSION, &err);
    ct_broker_free(NULL);
    ct_vault_proxy_free(NULL);
    {
        ct_vault_options vo = CT_VAULT_OPTIONS_INIT;
        ct_vault_proxy_options po = CT_VAULT_PROXY_OPTIONS_INIT;
        ct_vault_proxy *p = NULL;
        po.vault = &vo;
        vo.address = "http://127.0.0.1:8200";
        ck_err(ct_vault_proxy_new(ctx, &po, &p, &err), CT_E_INVALID, &err);
        vo.address = "https://127.0.0.1:8200";
        vo.skip_verify = 1;
        ck_err(ct_vault_proxy_new(ctx, &po, &p, &err), CT_E_INVALID, &err);
    }
    ct_ctx_free(ctx);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("broker");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, allowlist);
    tcase_add_test(tc, broker_cert_renewal);
    tcase_add_test(tc, broker_options);
    tcase_add_test(tc, proxy_token_passthrough);
    tcase_add_test(tc, proxy_refusals);
    tcase_add_test(tc, proxy_async_over_session);
    tcase_add_test(tc, proxy_cert);
    tcase_add_test(tc, broker_pods);
    tcase_add_test(tc, broker_refusals);
    tcase_add_test(tc, broker_in_flight_limit);
    suite_add_tcase(s, tc);
    return s;
}
