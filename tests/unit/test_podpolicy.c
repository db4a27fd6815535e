/*
 * test_podpolicy.c - per-pod scope on the embedded store (podpolicy.h):
 * the policy parser (valid and hostile files), prefix matching, and
 * ct_embedded_vault driven as the bridge's "vault.http" handler over a
 * memory store: offline login with ES256 service-account tokens signed by a
 * ct_key (valid, expired, wrong issuer, wrong audience, forged, unknown
 * pod), per-pod reads, list, metadata, token TTL and renewal on a test
 * clock, the token table bound, policy reload, Vault-shaped answers, and no
 * token or JWT in any log line.
 */
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FP_A "0ad50c05-1153-4508-9237-4cb2912e2c23"
#define FP_B "11111111-2222-4333-8444-555555555555"
#define ISS "https://kubernetes.default.svc.cluster.local"
#define E_DENIED "1 error occurred:\n\t* permission denied\n\n"
#define E_INVALID_TOKEN "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"

/* ---- a context with a settable wall clock and a log capture ---- */

static int64_t g_wall_ms = 1767225600000LL; /* 2026-01-01 */
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_log[65536];

static int64_t wall(void *u)
{
    (void)u;
    return __atomic_load_n(&g_wall_ms, __ATOMIC_SEQ_CST);
}

static void logger(void *u, ct_log_level l, const char *id, const char *msg)
{
    size_t n;
    (void)u;
    (void)l;
    pthread_mutex_lock(&g_log_lock);
    n = strlen(g_log);
    if (n + strlen(id) + strlen(msg) + 4 < sizeof g_log)
        snprintf(g_log + n, sizeof g_log - n, "%s: %s\n", id, msg);
    pthread_mutex_unlock(&g_log_lock);
}

static ct_ctx *tctx(void)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *c = NULL;
    o.wall_ms = wall;
    o.log = logger;
    o.log_level = CT_LOG_DEBUG;
    ck_assert_int_eq(ct_ctx_new(&o, &c, NULL), CT_OK);
    return c;
}

/* ---- the policy ---- */

static const char *k_policy =
    "{\"version\":1,\"rules\":["
    "{\"namespace\":\"team-a\",\"service_account\":\"app\",\"role\":\"app\","
    " \"name\":\"team-a-app\",\"read\":[\"secret/data/team-a/app/\",\"secret/metadata/team-a/app/\"],"
    " \"list\":[\"secret/metadata/team-a/\"]},"
    "{\"namespace\":\"team-b\",\"service_account\":\"*\","
    " \"read\":[\"secret/data/team-b/\"],\"list\":[\"secret/metadata/team-b\"]},"
    "{\"namespace\":\"team-c\",\"service_account\":\"web\",\"cluster\":\"" FP_B "\","
    " \"read\":[\"secret/data/team-c/cfg\"]}]}";

static ct_pod_policy *policy_of(const char *s)
{
    ct_pod_policy *p = NULL;
    ct_error err;
    ck_ok(ct_pod_policy_parse(s, strlen(s), "test.json", &p, &err), &err);
    return p;
}

START_TEST(policy_valid)
{
    ct_pod_policy *p = policy_of(k_policy);
    ck_assert_uint_eq(ct_pod_policy_rule_count(p), 3);
    /* prefixes end at a path boundary */
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "read",
                                          "secret/data/team-a/app/db"), 1);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "read",
                                          "secret/data/team-a/app2/db"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "read",
                                          "secret/data/team-a/appdb"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "read",
                                          "secret/data/team-b/x"), 0);
    /* capabilities are separate */
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "list",
                                          "secret/data/team-a/app/"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "list",
                                          "secret/metadata/team-a"), 1);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "list",
                                          "secret/metadata/team-a/app/"), 1);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "write",
                                          "secret/data/team-a/app/db"), 0);
    /* role, service account, cluster */
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "other", "read",
                                          "secret/data/team-a/app/db"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", NULL, "read",
                                          "secret/data/team-a/app/db"), 1);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "web", "app", "read",
                                          "secret/data/team-a/app/db"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-b", "anything", "r", "read",
                                          "secret/data/team-b/x/y"), 1);
    /* an exact entry: itself, and as a directory itself + '/' */
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-b", "s", "r", "list",
                                          "secret/metadata/team-b/"), 1);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-b", "s", "r", "list",
                                          "secret/metadata/team-b/sub/"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_B, "team-c", "web", "r", "read",
                                          "secret/data/team-c/cfg"), 1);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-c", "web", "r", "read",
                                          "secret/data/team-c/cfg"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_B, "team-c", "web", "r", "read",
                                          "secret/data/team-c/cfg/x"), 0);
    /* traversal in the asked path never matches */
    ck_assert_int_eq(ct_pod_policy_allows(p, FP_A, "team-a", "app", "app", "read",
                                          "secret/data/team-a/app/../../team-b/x"), 0);
    ck_assert_int_eq(ct_pod_policy_allows(NULL, FP_A, "team-a", "app", "app", "read",
                                          "secret/data/team-a/app/db"), 0);
    ct_pod_policy_free(p);
    ct_pod_policy_free(NULL);
}
END_TEST

static void refused(const char *json, ct_err code, const char *needle)
{
    ct_pod_policy *p = (ct_pod_policy *)1;
    ct_error err;
    ck_err(ct_pod_policy_parse(json, strlen(json), "pods.json", &p, &err), code, &err);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err.message, "pods.json") != NULL, "no file name in '%s'", err.message);
    if (needle)
        ck_assert_msg(strstr(err.message, needle) != NULL, "'%s' not in '%s'", needle,
                      err.message);
}

START_TEST(policy_hostile)
{
    char *big;
    size_t i, n;
    refused("", CT_E_INVALID, "JSON");
    refused("[]", CT_E_INVALID, "object");
    refused("{\"rules\":[]}", CT_E_INVALID, "version");
    refused("{\"version\":2,\"rules\":[]}", CT_E_INVALID, "version");
    refused("{\"version\":\"1\",\"rules\":[]}", CT_E_INVALID, "version");
    refused("{\"version\":1}", CT_E_INVALID, "rules");
    refused("{\"version\":1,\"rules\":{}}", CT_E_INVALID, "rules");
    refused("{\"version\":1,\"rules\":[],\"extra\":1}", CT_E_INVALID, "extra");
    refused("{\"version\":1,\"version\":1,\"rules\":[]}", CT_E_INVALID, NULL);
    refused("{\"version\":1,\"audience\":\"\",\"rules\":[]}", CT_E_INVALID, "audience");
    refused("{\"version\":1,\"migrated_mount\":\"sys\",\"rules\":[]}", CT_E_INVALID,
            "migrated_mount");
    refused("{\"version\":1,\"migrated_mount\":\"a/b\",\"rules\":[]}", CT_E_INVALID,
            "migrated_mount");
    refused("{\"version\":1,\"rules\":[1]}", CT_E_INVALID, "rules[0]");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"read\":[\"x/\"],\"writes\":[\"x/\"]}]}", CT_E_INVALID, "writes");
    refused("{\"version\":1,\"rules\":[{\"service_account\":\"b\",\"read\":[\"x/\"]}]}",
            CT_E_INVALID, "namespace");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"read\":[\"x/\"]}]}",
            CT_E_INVALID, "service_account");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\"}]}",
            CT_E_INVALID, "grants nothing");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"A_b\",\"service_account\":\"b\","
            "\"read\":[\"x/\"]}]}", CT_E_INVALID, "rules[0].namespace");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b*\","
            "\"read\":[\"x/\"]}]}", CT_E_INVALID, "service_account");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"cluster\":\"not-a-uid\",\"read\":[\"x/\"]}]}", CT_E_INVALID, "cluster");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"read\":\"x/\"}]}", CT_E_INVALID, "read");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"read\":[\"/abs/\"]}]}", CT_E_INVALID, "read[0]");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"read\":[\"x/../y/\"]}]}", CT_E_INVALID, "read[0]");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"list\":[\"x//y\"]}]}", CT_E_INVALID, "list[0]");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"read\":[\"x y\"]}]}", CT_E_INVALID, "read[0]");
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\",\"service_account\":\"b\","
            "\"read\":[\"x\\u0000y\"]}]}", CT_E_INVALID, NULL);
    refused("{\"version\":1,\"rules\":[{\"namespace\":\"a\\u0000\",\"service_account\":\"b\","
            "\"read\":[\"x\"]}]}", CT_E_INVALID, NULL);
    /* too many rules, too large */
    n = 1100 * 64 + 64;
    big = malloc(n);
    ck_assert_ptr_nonnull(big);
    strcpy(big, "{\"version\":1,\"rules\":[");
    for (i = 0; i < 1100; i++)
        strcat(big, i ? ",{\"namespace\":\"a\",\"service_account\":\"b\",\"read\":[\"x\"]}"
                      : "{\"namespace\":\"a\",\"service_account\":\"b\",\"read\":[\"x\"]}");
    strcat(big, "]}");
    refused(big, CT_E_TOOBIG, "rules");
    free(big);
    big = malloc(CT_POD_POLICY_MAX_LEN + 16);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', CT_POD_POLICY_MAX_LEN + 15);
    big[CT_POD_POLICY_MAX_LEN + 15] = 0;
    refused(big, CT_E_TOOBIG, NULL);
    free(big);
    /* deep nesting is only JSON's problem: refused, no crash */
    big = malloc(40000);
    ck_assert_ptr_nonnull(big);
    memset(big, '[', 39999);
    big[39999] = 0;
    refused(big, CT_E_INVALID, NULL);
    free(big);
}
END_TEST

START_TEST(policy_load_file)
{
    ct_pod_policy *p = NULL;
    ct_error err;
    char *path = ct_test_tmpfile(k_policy, strlen(k_policy));
    ck_ok(ct_pod_policy_load(path, &p, &err), &err);
    ck_assert_uint_eq(ct_pod_policy_rule_count(p), 3);
    ct_pod_policy_free(p);
    unlink(path);
    ck_err(ct_pod_policy_load(path, &p, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, path));
    free(path);
    path = ct_test_tmpfile("{\"version\":1,\"rules\":[],\"x\":0}", 29);
    ck_err(ct_pod_policy_load(path, &p, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, path));
    unlink(path);
    free(path);
    ck_err(ct_pod_policy_load("/", &p, &err), CT_E_IO, &err);
    ck_err(ct_pod_policy_load(NULL, &p, &err), CT_E_INVALID, &err);
}
END_TEST

/* ---- the embedded Vault ---- */

typedef struct fixture {
    ct_ctx *ctx;
    ct_store *store;
    ct_key *key, *other;
    ct_embedded_vault *v;
} fixture;

static void put_initialized(fixture *f, const char *fp, ct_key *key)
{
    char *jwks = NULL, *rec;
    ct_error err;
    char k[128];
    size_t n;
    ck_ok(ct_jwks_from_key(key, &jwks, &err), &err);
    n = strlen(jwks) + 1024;
    rec = malloc(n);
    ck_assert_ptr_nonnull(rec);
    snprintf(rec, n,
             "{\"v\":1,\"fingerprint\":\"%s\",\"initialized_at\":1,\"updated_at\":1,"
             "\"audience\":\"cloudtaser-bridge\",\"jwks\":%s,\"issuer\":\"" ISS "\","
             "\"subject\":\"system:serviceaccount:cloudtaser:operator\",\"reissues\":0,"
             "\"jtis\":[]}",
             fp, jwks);
    snprintf(k, sizeof k, "clusters/%s/initialized", fp);
    ck_ok(ct_store_put(f->store, k, rec, strlen(rec), CT_STORE_ANY, NULL, &err), &err);
    free(rec);
    ct_free(jwks);
}

static void put_secret(fixture *f, const char *path, const char *json)
{
    ct_error err;
    ck_ok(ct_embedded_kv_put(f->ctx, f->store, "secret", path, json, strlen(json), NULL, &err),
          &err);
}

static void setup_f(fixture *f, uint32_t max_tokens)
{
    ct_embedded_vault_options o = CT_EMBEDDED_VAULT_OPTIONS_INIT;
    ct_error err;
    memset(f, 0, sizeof *f);
    g_log[0] = 0;
    g_wall_ms = 1767225600000LL;
    f->ctx = tctx();
    ck_ok(ct_store_new_memory(f->ctx, &f->store, &err), &err);
    ck_ok(ct_key_generate(f->ctx, &f->key, &err), &err);
    ck_ok(ct_key_generate(f->ctx, &f->other, &err), &err);
    put_initialized(f, FP_A, f->key);
    put_secret(f, "team-a/app/db", "{\"password\":\"pod-a-secret\",\"user\":\"a\"}");
    put_secret(f, "team-a/app/other", "{\"k\":\"v\"}");
    put_secret(f, "team-b/db", "{\"password\":\"pod-b-secret\"}");
    o.store = f->store;
    o.max_tokens = max_tokens;
    o.token_ttl_s = 3600;
    o.token_max_ttl_s = 7200;
    ck_ok(ct_embedded_vault_new(f->ctx, &o, &f->v, &err), &err);
    ct_embedded_vault_set_policy(f->v, policy_of(k_policy));
}

static void teardown_f(fixture *f)
{
    ct_embedded_vault_free(f->v);
    ct_key_free(f->key);
    ct_key_free(f->other);
    ct_store_free(f->store);
    ct_ctx_free(f->ctx);
}

/* A service-account token: ns/sa, issuer, audience, lifetime from the clock. */
static char *sa_token(fixture *f, ct_key *key, const char *ns, const char *sa, const char *iss,
                      const char *aud, int64_t exp_in_s)
{
    char pay[1024], *t = NULL;
    int64_t now = g_wall_ms / 1000;
    ct_error err;
    snprintf(pay, sizeof pay,
             "{\"aud\":[\"%s\"],\"exp\":%lld,\"iat\":%lld,\"iss\":\"%s\",\"jti\":\"j-%s\","
             "\"kubernetes.io\":{\"namespace\":\"%s\",\"pod\":{\"name\":\"p\",\"uid\":\"u\"},"
             "\"serviceaccount\":{\"name\":\"%s\",\"uid\":\"u2\"}},\"nbf\":%lld,"
             "\"sub\":\"system:serviceaccount:%s:%s\"}",
             aud, (long long)(now + exp_in_s), (long long)(now - 700), iss, sa, ns, sa,
             (long long)(now - 700), ns, sa);
    ck_ok(ct_jwt_sign_es256(f->ctx, key, pay, &t, &err), &err);
    return t;
}

typedef struct res {
    ct_err rc;
    int status;
    json_t *body; /* parsed, or NULL (empty body) */
    char text[8192];
} res;

static res call(fixture *f, const char *fp, const char *method, const char *path,
                const char *query, const char *token, const char *body)
{
    json_t *req = json_pack("{s:s, s:s, s:s}", "op", "vault.http", "method", method, "path", path);
    json_t *a;
    char *text;
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_error err;
    res r;
    memset(&r, 0, sizeof r);
    if (query)
        json_object_set_new(req, "query", json_string(query));
    if (token)
        json_object_set_new(req, "token", json_string(token));
    if (body)
        json_object_set_new(req, "body", json_string(body));
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    r.rc = ct_embedded_vault_http(f->v, fp, NULL, 1, (const uint8_t *)text, strlen(text), &resp,
                                  &len, &err);
    free(text);
    if (r.rc != CT_OK) {
        snprintf(r.text, sizeof r.text, "%s", err.message);
        return r;
    }
    a = json_loadb((const char *)resp, len, 0, NULL);
    free(resp);
    ck_assert_ptr_nonnull(a);
    r.status = (int)json_integer_value(json_object_get(a, "status"));
    snprintf(r.text, sizeof r.text, "%s", json_string_value(json_object_get(a, "body")));
    if (r.text[0]) {
        r.body = json_loads(r.text, 0, NULL);
        ck_assert_ptr_nonnull(r.body);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(a, "headers"),
                                                           "Content-Type")),
                         "application/json");
    }
    json_decref(a);
    return r;
}

static void res_clear(res *r)
{
    json_decref(r->body);
    r->body = NULL;
}

/* Asserts the answer is {"errors":[msg]} ({"errors":[]} for msg NULL). */
static void is_error(res *r, int status, const char *msg)
{
    json_t *e;
    ck_assert_int_eq(r->rc, CT_OK);
    ck_assert_msg(r->status == status, "status %d, want %d: %s", r->status, status, r->text);
    e = json_object_get(r->body, "errors");
    ck_assert(json_is_array(e));
    ck_assert_uint_eq(json_object_size(r->body), 1);
    if (msg) {
        ck_assert_uint_eq(json_array_size(e), 1);
        ck_assert_str_eq(json_string_value(json_array_get(e, 0)), msg);
    } else {
        ck_assert_uint_eq(json_array_size(e), 0);
    }
    res_clear(r);
}

/* Logs in; returns the client token (malloc'd) or NULL with the answer in *out. */
static char *login(fixture *f, const char *fp, const char *role, const char *jwt, res *out)
{
    char body[20000];
    res r;
    char *tok = NULL;
    snprintf(body, sizeof body, "{\"role\":\"%s\",\"jwt\":\"%s\"}", role, jwt);
    r = call(f, fp, "POST", "auth/kubernetes/login", NULL, NULL, body);
    if (r.rc == CT_OK && r.status == 200) {
        const char *t = json_string_value(
            json_object_get(json_object_get(r.body, "auth"), "client_token"));
        ck_assert_ptr_nonnull(t);
        tok = strdup(t);
    }
    if (out)
        *out = r;
    else
        res_clear(&r);
    return tok;
}

static char *login_as(fixture *f, const char *ns, const char *sa, const char *role)
{
    char *jwt = sa_token(f, f->key, ns, sa, ISS, ISS, 600), *t;
    res r;
    t = login(f, FP_A, role, jwt, &r);
    ck_assert_msg(t != NULL, "login %s/%s: %d %s", ns, sa, r.status, r.text);
    res_clear(&r);
    ct_free(jwt);
    return t;
}

START_TEST(login_answers)
{
    fixture f;
    res r;
    json_t *au, *md;
    char *jwt, *t;
    setup_f(&f, 0);
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, 600);
    t = login(&f, FP_A, "app", jwt, &r);
    ck_assert_msg(t != NULL, "%d %s", r.status, r.text);
    /* Vault's login shape */
    ck_assert_str_eq(json_string_value(json_object_get(r.body, "lease_id")), "");
    ck_assert(json_is_null(json_object_get(r.body, "data")));
    ck_assert_str_eq(json_string_value(json_object_get(r.body, "mount_type")), "kubernetes");
    au = json_object_get(r.body, "auth");
    ck_assert_int_eq(strncmp(t, "ctb.", 4), 0);
    ck_assert_uint_eq(strlen(t), 47);
    ck_assert_int_eq(json_integer_value(json_object_get(au, "lease_duration")), 3600);
    ck_assert(json_is_true(json_object_get(au, "renewable")));
    ck_assert_str_eq(json_string_value(json_object_get(au, "token_type")), "service");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(au, "policies"), 0)),
                     "default");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(au, "policies"), 1)),
                     "team-a-app");
    md = json_object_get(au, "metadata");
    ck_assert_str_eq(json_string_value(json_object_get(md, "service_account_namespace")),
                     "team-a");
    ck_assert_str_eq(json_string_value(json_object_get(md, "service_account_name")), "app");
    ck_assert_str_eq(json_string_value(json_object_get(md, "role")), "app");
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(au, "accessor"))), 24);
    res_clear(&r);
    ck_assert_uint_eq(ct_embedded_vault_token_count(f.v), 1);
    /* a second login: another token */
    {
        char *t2 = login(&f, FP_A, "app", jwt, NULL);
        ck_assert_ptr_nonnull(t2);
        ck_assert_str_ne(t, t2);
        free(t2);
    }
    /* neither the JWT nor the token is in the log */
    ck_assert_ptr_null(strstr(g_log, t));
    ck_assert_ptr_null(strstr(g_log, t + 4));
    ck_assert_ptr_null(strstr(g_log, strchr(jwt, '.') + 1));
    ck_assert_ptr_nonnull(strstr(g_log, "team-a/app logged in"));
    free(t);
    ct_free(jwt);
    teardown_f(&f);
}
END_TEST

START_TEST(login_refusals)
{
    fixture f;
    res r;
    char *jwt;
    setup_f(&f, 0);
    /* expired (beyond the 60 s leeway) */
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, -120);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ck_assert_ptr_nonnull(strstr(g_log, "expired"));
    ct_free(jwt);
    /* within the leeway */
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, -30);
    {
        char *t = login(&f, FP_A, "app", jwt, NULL);
        ck_assert_ptr_nonnull(t);
        free(t);
    }
    ct_free(jwt);
    /* wrong issuer, wrong audience */
    jwt = sa_token(&f, f.key, "team-a", "app", "https://evil.example", ISS, 600);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, "cloudtaser-bridge", 600);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    /* forged: signed by a key that is not pinned */
    jwt = sa_token(&f, f.other, "team-a", "app", ISS, ISS, 600);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    /* tampered payload */
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, 600);
    {
        char *p = strchr(jwt, '.') + 5;
        *p = *p == 'A' ? 'B' : 'A';
    }
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    /* garbage */
    ck_assert_ptr_null(login(&f, FP_A, "app", "not-a-jwt", &r));
    is_error(&r, 403, "permission denied");
    /* a valid token of a pod no rule names; a wrong service account */
    jwt = sa_token(&f, f.key, "team-x", "app", ISS, ISS, 600);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    jwt = sa_token(&f, f.key, "team-a", "web", ISS, ISS, 600);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    /* an unknown role (every rule with a role names another) */
    ck_assert_ptr_null(login(&f, FP_A, "nope", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    /* a cluster that was never initialized */
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, 600);
    ck_assert_ptr_null(login(&f, FP_B, "app", jwt, &r));
    is_error(&r, 403, "permission denied");
    ck_assert_ptr_nonnull(strstr(g_log, "not initialized"));
    ct_free(jwt);
    /* malformed bodies: Vault's 400s */
    r = call(&f, FP_A, "POST", "auth/kubernetes/login", NULL, NULL, "{\"jwt\":\"x\"}");
    is_error(&r, 400, "missing role");
    r = call(&f, FP_A, "POST", "auth/kubernetes/login", NULL, NULL, "{\"role\":\"app\"}");
    is_error(&r, 400, "missing jwt");
    r = call(&f, FP_A, "POST", "auth/kubernetes/login", NULL, NULL, "{nope");
    is_error(&r, 400, "error parsing JSON");
    ck_assert_uint_eq(ct_embedded_vault_token_count(f.v), 1);
    teardown_f(&f);
}
END_TEST

START_TEST(login_role_and_audience)
{
    fixture f;
    res r;
    char *jwt, *t;
    setup_f(&f, 0);
    /* team-a's rule has role "app": another role name is Vault's 400 */
    ct_embedded_vault_set_policy(
        f.v, policy_of("{\"version\":1,\"rules\":[{\"namespace\":\"team-a\","
                       "\"service_account\":\"app\",\"role\":\"app\",\"read\":[\"x/\"]}]}"));
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, 600);
    ck_assert_ptr_null(login(&f, FP_A, "payments-ap", jwt, &r));
    is_error(&r, 400, "invalid role name \"payments-ap\"");
    ct_free(jwt);
    /* a policy audience: tokens for it pass, tokens for the API server do not */
    ct_embedded_vault_set_policy(
        f.v, policy_of("{\"version\":1,\"audience\":\"vault\",\"rules\":[{\"namespace\":"
                       "\"team-a\",\"service_account\":\"app\",\"read\":[\"x/\"]}]}"));
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, 600);
    ck_assert_ptr_null(login(&f, FP_A, "any", jwt, &r));
    is_error(&r, 403, "permission denied");
    ct_free(jwt);
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, "vault", 600);
    t = login(&f, FP_A, "any", jwt, NULL);
    ck_assert_ptr_nonnull(t);
    free(t);
    ct_free(jwt);
    /* no policy: nobody */
    ct_embedded_vault_set_policy(f.v, NULL);
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, "vault", 600);
    ck_assert_ptr_null(login(&f, FP_A, "any", jwt, &r));
    ck_assert_int_eq(r.status, 400);
    res_clear(&r);
    ct_free(jwt);
    teardown_f(&f);
}
END_TEST

START_TEST(scope_per_pod)
{
    fixture f;
    res r;
    json_t *d;
    char *ta, *tb;
    setup_f(&f, 0);
    ta = login_as(&f, "team-a", "app", "app");
    tb = login_as(&f, "team-b", "worker", "whatever");
    /* pod A reads its path */
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, ta, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    d = json_object_get(json_object_get(r.body, "data"), "data");
    ck_assert_str_eq(json_string_value(json_object_get(d, "password")), "pod-a-secret");
    ck_assert_str_eq(json_string_value(json_object_get(r.body, "mount_type")), "kv");
    d = json_object_get(json_object_get(r.body, "data"), "metadata");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "version")), 1);
    ck_assert(json_is_false(json_object_get(d, "destroyed")));
    ck_assert_str_eq(json_string_value(json_object_get(d, "deletion_time")), "");
    ck_assert_str_eq(json_string_value(json_object_get(d, "created_time")),
                     "2026-01-01T00:00:00.000000000Z");
    res_clear(&r);
    /* ... and is refused on B's, and B on A's */
    r = call(&f, FP_A, "GET", "secret/data/team-b/db", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, tb, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "secret/data/team-b/db", NULL, tb, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.text, "pod-b-secret"));
    res_clear(&r);
    /* permission is checked before existence */
    r = call(&f, FP_A, "GET", "secret/data/team-b/missing", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/missing", NULL, ta, NULL);
    is_error(&r, 404, NULL);
    /* no token, an unknown token, a token of another cluster */
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, NULL, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL,
             "ctb.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL);
    is_error(&r, 403, E_INVALID_TOKEN);
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, "hvs.x", NULL);
    is_error(&r, 403, E_INVALID_TOKEN);
    r = call(&f, FP_B, "GET", "secret/data/team-a/app/db", NULL, ta, NULL);
    is_error(&r, 403, E_INVALID_TOKEN);
    /* versions: the current one only */
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", "version=1", ta, NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", "version=0", ta, NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    put_secret(&f, "team-a/app/db", "{\"password\":\"rotated\"}");
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", "version=1", ta, NULL);
    is_error(&r, 404, NULL);
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, ta, NULL);
    ck_assert_ptr_nonnull(strstr(r.text, "rotated"));
    ck_assert_ptr_nonnull(strstr(r.text, "\"version\":2"));
    res_clear(&r);
    /* a mount the embedded store cannot hold; a path no store key can be */
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/d b", NULL, ta, NULL);
    is_error(&r, 404, NULL);
    /* the policy is evaluated per call: a reload applies at once */
    ct_embedded_vault_set_policy(
        f.v, policy_of("{\"version\":1,\"rules\":[{\"namespace\":\"team-b\","
                       "\"service_account\":\"*\",\"read\":[\"secret/data/team-b/\"]}]}"));
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "secret/data/team-b/db", NULL, tb, NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    free(ta);
    free(tb);
    teardown_f(&f);
}
END_TEST

START_TEST(list_and_metadata)
{
    fixture f;
    res r;
    json_t *k, *d;
    char *ta;
    setup_f(&f, 0);
    put_secret(&f, "team-a/app/sub/x", "{\"k\":\"v\"}");
    put_secret(&f, "team-a/app-b", "{\"k\":\"v\"}");
    ta = login_as(&f, "team-a", "app", "app");
    r = call(&f, FP_A, "LIST", "secret/metadata/team-a/app/", NULL, ta, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    k = json_object_get(json_object_get(r.body, "data"), "keys");
    ck_assert_uint_eq(json_array_size(k), 3);
    ck_assert_str_eq(json_string_value(json_array_get(k, 0)), "db");
    ck_assert_str_eq(json_string_value(json_array_get(k, 1)), "other");
    ck_assert_str_eq(json_string_value(json_array_get(k, 2)), "sub/");
    res_clear(&r);
    r = call(&f, FP_A, "LIST", "secret/metadata/team-a", NULL, ta, NULL);
    k = json_object_get(json_object_get(r.body, "data"), "keys");
    ck_assert_uint_eq(json_array_size(k), 2);
    ck_assert_str_eq(json_string_value(json_array_get(k, 0)), "app-b");
    ck_assert_str_eq(json_string_value(json_array_get(k, 1)), "app/");
    res_clear(&r);
    /* empty folder: Vault's 404; outside the list grant: 403 */
    r = call(&f, FP_A, "LIST", "secret/metadata/team-a/none/", NULL, ta, NULL);
    is_error(&r, 404, NULL);
    r = call(&f, FP_A, "LIST", "secret/metadata/", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "LIST", "secret/metadata/team-b/", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    /* metadata read */
    r = call(&f, FP_A, "GET", "secret/metadata/team-a/app/db", NULL, ta, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    d = json_object_get(r.body, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "current_version")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "oldest_version")), 1);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(d, "versions"), "1"));
    ck_assert_ptr_null(strstr(r.text, "pod-a-secret"));
    res_clear(&r);
    r = call(&f, FP_A, "GET", "secret/metadata/team-b/db", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    free(ta);
    teardown_f(&f);
}
END_TEST

START_TEST(token_ttl_renew_lookup)
{
    fixture f;
    res r;
    json_t *d, *au;
    char *ta;
    setup_f(&f, 0);
    ta = login_as(&f, "team-a", "app", "app");
    r = call(&f, FP_A, "GET", "auth/token/lookup-self", NULL, ta, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    d = json_object_get(r.body, "data");
    ck_assert_str_eq(json_string_value(json_object_get(d, "id")), ta);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "ttl")), 3600);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "creation_ttl")), 3600);
    ck_assert_str_eq(json_string_value(json_object_get(d, "display_name")),
                     "kubernetes-team-a-app");
    ck_assert_str_eq(json_string_value(json_object_get(d, "path")), "auth/kubernetes/login");
    ck_assert_str_eq(json_string_value(json_object_get(d, "expire_time")),
                     "2026-01-01T01:00:00.000000000Z");
    ck_assert_str_eq(json_string_value(json_object_get(r.body, "mount_type")), "token");
    res_clear(&r);
    /* 50 minutes on: renew to a full hour again */
    g_wall_ms += 3000 * 1000LL;
    r = call(&f, FP_A, "POST", "auth/token/renew-self", NULL, ta, "{\"increment\":\"1h\"}");
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    au = json_object_get(r.body, "auth");
    ck_assert_int_eq(json_integer_value(json_object_get(au, "lease_duration")), 3600);
    ck_assert_str_eq(json_string_value(json_object_get(au, "client_token")), ta);
    res_clear(&r);
    /* the max TTL (2 h after login) caps it: 7200 - 3000 - 3000 = 1200 s left */
    g_wall_ms += 3000 * 1000LL;
    r = call(&f, FP_A, "POST", "auth/token/renew-self", NULL, ta, "{\"increment\":7200}");
    au = json_object_get(r.body, "auth");
    ck_assert_int_eq(json_integer_value(json_object_get(au, "lease_duration")), 1200);
    res_clear(&r);
    r = call(&f, FP_A, "POST", "auth/token/renew-self", NULL, ta, "{\"increment\":\"x\"}");
    is_error(&r, 400, "invalid increment");
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, ta, NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    /* past the max TTL: gone */
    g_wall_ms += 1201 * 1000LL;
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, ta, NULL);
    is_error(&r, 403, E_INVALID_TOKEN);
    r = call(&f, FP_A, "POST", "auth/token/renew-self", NULL, ta, NULL);
    is_error(&r, 403, E_INVALID_TOKEN);
    r = call(&f, FP_A, "GET", "auth/token/lookup-self", NULL, ta, NULL);
    is_error(&r, 403, E_INVALID_TOKEN);
    r = call(&f, FP_A, "GET", "auth/token/lookup-self", NULL, NULL, NULL);
    is_error(&r, 403, E_DENIED);
    ck_assert_uint_eq(ct_embedded_vault_token_count(f.v), 0);
    free(ta);
    teardown_f(&f);
}
END_TEST

START_TEST(token_table_bound)
{
    fixture f;
    res r;
    char *t[3], *jwt;
    int i;
    setup_f(&f, 3);
    for (i = 0; i < 3; i++)
        t[i] = login_as(&f, "team-a", "app", "app");
    ck_assert_uint_eq(ct_embedded_vault_token_count(f.v), 3);
    jwt = sa_token(&f, f.key, "team-a", "app", ISS, ISS, 600000);
    ck_assert_ptr_null(login(&f, FP_A, "app", jwt, &r));
    is_error(&r, 503, "cloudtaser bridge: too many live tokens; retry later");
    /* the live ones still work */
    r = call(&f, FP_A, "GET", "secret/data/team-a/app/db", NULL, t[2], NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    /* once they expire, room again */
    g_wall_ms += 3601 * 1000LL;
    {
        char *t4 = login(&f, FP_A, "app", jwt, &r);
        ck_assert_msg(t4 != NULL, "%d %s", r.status, r.text);
        res_clear(&r);
        free(t4);
    }
    ck_assert_uint_eq(ct_embedded_vault_token_count(f.v), 1);
    ct_free(jwt);
    for (i = 0; i < 3; i++)
        free(t[i]);
    teardown_f(&f);
}
END_TEST

START_TEST(health_and_allowlist)
{
    fixture f;
    res r;
    setup_f(&f, 0);
    r = call(&f, FP_A, "GET", "sys/health", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_true(json_object_get(r.body, "initialized")));
    ck_assert(json_is_false(json_object_get(r.body, "sealed")));
    ck_assert(json_is_false(json_object_get(r.body, "standby")));
    res_clear(&r);
    r = call(&f, FP_A, "HEAD", "sys/health", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(r.body);
    /* outside the subset: refused as the proxy refuses (the broker maps it) */
    r = call(&f, FP_A, "GET", "sys/mounts", NULL, NULL, NULL);
    ck_assert_int_eq(r.rc, CT_E_AUTH);
    r = call(&f, FP_A, "POST", "secret/data/team-a/app/db", NULL, NULL, "{}");
    ck_assert_int_eq(r.rc, CT_E_AUTH);
    r = call(&f, FP_A, "GET", "secret/data/a/../b", NULL, NULL, NULL);
    ck_assert_int_eq(r.rc, CT_E_AUTH);
    /* a KV path under a mount of several segments: Vault's "no handler" */
    {
        char *ta = login_as(&f, "team-a", "app", "app");
        r = call(&f, FP_A, "GET", "a/b/data/x", NULL, ta, NULL);
        ck_assert_int_eq(r.status, 404);
        ck_assert_ptr_nonnull(strstr(r.text, "no handler for route"));
        res_clear(&r);
        free(ta);
    }
    /* malformed requests */
    {
        uint8_t *resp = NULL;
        size_t len = 0;
        ct_error err;
        const char *bad[] = { "", "[]", "{\"method\":\"GET\"}", "{\"method\":1,\"path\":\"x\"}",
                              "{\"method\":\"GET\",\"path\":\"sys/health\",\"token\":5}",
                              "{\"method\":\"GET\",\"path\":\"sys/health\",\"body\":{}}" };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof *bad; i++)
            ck_err(ct_embedded_vault_http(f.v, FP_A, NULL, 1, (const uint8_t *)bad[i],
                                          strlen(bad[i]), &resp, &len, &err),
                   CT_E_INVALID, &err);
    }
    teardown_f(&f);
}
END_TEST

START_TEST(kv_helpers)
{
    fixture f;
    ct_secret *s = NULL;
    uint64_t ver = 0;
    char key[CT_STORE_KEY_MAX + 1];
    ct_error err;
    setup_f(&f, 0);
    ck_ok(ct_embedded_kv_key("secret", "a/b", key, sizeof key, &err), &err);
    ck_assert_str_eq(key, "kv/secret/a/b");
    ck_err(ct_embedded_kv_key("sys", "a", key, sizeof key, &err), CT_E_INVALID, &err);
    ck_err(ct_embedded_kv_key("a/b", "a", key, sizeof key, &err), CT_E_INVALID, &err);
    ck_err(ct_embedded_kv_key("secret", "a/../b", key, sizeof key, &err), CT_E_INVALID, &err);
    ck_err(ct_embedded_kv_key("secret", "", key, sizeof key, &err), CT_E_INVALID, &err);
    ck_err(ct_embedded_kv_put(f.ctx, f.store, "secret", "x", "[1]", 3, NULL, &err), CT_E_INVALID,
           &err);
    ck_err(ct_embedded_kv_put(f.ctx, f.store, "secret", "x", "{", 1, NULL, &err), CT_E_INVALID,
           &err);
    ck_ok(ct_embedded_kv_put(f.ctx, f.store, "secret", "x", "{\"b\":1,\"a\":\"z\"}", 15, &ver,
                             &err), &err);
    ck_assert_uint_eq(ver, 1);
    ck_ok(ct_embedded_kv_get(f.store, "secret", "x", &s, &ver, &err), &err);
    ck_assert_str_eq((const char *)ct_secret_data(s), "{\"a\":\"z\",\"b\":1}");
    ct_secret_free(s);
    ck_err(ct_embedded_kv_get(f.store, "secret", "y", &s, NULL, &err), CT_E_NOTFOUND, &err);
    /* a store laid out by a newer cloudtaser: nothing is written into it */
    {
        static const char newer[] = "{\"created_at\":1,\"layout\":2,\"v\":1}";
        ck_ok(ct_store_put(f.store, "system/layout", newer, strlen(newer), CT_STORE_CREATE, NULL,
                           &err), &err);
        ck_err(ct_embedded_kv_put(f.ctx, f.store, "secret", "x", "{}", 2, NULL, &err),
               CT_E_VERSION, &err);
        ck_assert_ptr_nonnull(strstr(err.message, "newer"));
        ck_ok(ct_embedded_kv_get(f.store, "secret", "x", &s, &ver, &err), &err);
        ck_assert_uint_eq(ver, 1); /* untouched */
        ct_secret_free(s);
        ck_ok(ct_store_del(f.store, "system/layout", &err), &err);
    }
    /* a record that is not a KV secret */
    ck_ok(ct_store_put(f.store, "kv/secret/raw", "hello", 5, CT_STORE_ANY, NULL, &err), &err);
    ck_err(ct_embedded_kv_get(f.store, "secret", "raw", &s, NULL, &err), CT_E_STORE, &err);
    /* the bridge's broker.cert without a Vault: a proxy with a store and no Vault options */
    {
        ct_vault_proxy_options po = CT_VAULT_PROXY_OPTIONS_INIT;
        ct_vault_proxy *px = NULL;
        uint8_t *resp = NULL;
        size_t len = 0;
        const char *rq = "{\"method\":\"GET\",\"path\":\"sys/health\"}";
        ck_err(ct_vault_proxy_new(f.ctx, &po, &px, &err), CT_E_INVALID, &err);
        po.store = f.store;
        ck_ok(ct_vault_proxy_new(f.ctx, &po, &px, &err), &err);
        ck_err(ct_vault_proxy_http(px, FP_A, NULL, 1, (const uint8_t *)rq, strlen(rq), &resp,
                                   &len, &err), CT_E_UNSUPPORTED, &err);
        ct_vault_proxy_free(px);
    }
    teardown_f(&f);
}
END_TEST

START_TEST(migrated_secrets)
{
    fixture f;
    res r;
    json_t *d;
    char *ta, *tb;
    ct_error err;
    const char *rec_copied =
        "{\"v\":1,\"namespace\":\"team-a\",\"name\":\"db\",\"uid\":\"u1\","
        "\"resourceVersion\":\"7\",\"type\":\"Opaque\",\"data\":{\"password\":"
        "\"aHVudGVyMg==\",\"bin\":\"AAEC\"},\"state\":\"deleted\"}";
    const char *rec_restored =
        "{\"v\":1,\"namespace\":\"team-a\",\"name\":\"old\",\"uid\":\"u2\","
        "\"resourceVersion\":\"8\",\"type\":\"Opaque\",\"data\":{\"k\":\"dg==\"},"
        "\"state\":\"restored\"}";
    setup_f(&f, 0);
    ck_ok(ct_store_put(f.store, "clusters/" FP_A "/secrets/team-a/db", rec_copied,
                       strlen(rec_copied), CT_STORE_ANY, NULL, &err), &err);
    ck_ok(ct_store_put(f.store, "clusters/" FP_A "/secrets/team-a/old", rec_restored,
                       strlen(rec_restored), CT_STORE_ANY, NULL, &err), &err);
    ck_ok(ct_store_put(f.store, "clusters/" FP_A "/secrets/team-b/x", rec_copied,
                       strlen(rec_copied), CT_STORE_ANY, NULL, &err), &err);
    ta = login_as(&f, "team-a", "app", "app");
    tb = login_as(&f, "team-b", "w", "r");
    /* without migrated_mount: nothing */
    r = call(&f, FP_A, "GET", "k8s/data/team-a/db", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    ct_embedded_vault_set_policy(f.v, policy_of(
        "{\"version\":1,\"migrated_mount\":\"k8s\",\"rules\":["
        "{\"namespace\":\"team-a\",\"service_account\":\"app\",\"read\":[\"x/\"]},"
        "{\"namespace\":\"team-b\",\"service_account\":\"*\",\"read\":[\"x/\"]}]}"));
    /* a pod reads its own namespace's migrated Secrets, decoded */
    r = call(&f, FP_A, "GET", "k8s/data/team-a/db", NULL, ta, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    d = json_object_get(json_object_get(r.body, "data"), "data");
    ck_assert_str_eq(json_string_value(json_object_get(d, "password")), "hunter2");
    ck_assert_str_eq(json_string_value(json_object_get(d, "bin")), "AAEC"); /* binary: base64 */
    res_clear(&r);
    r = call(&f, FP_A, "LIST", "k8s/metadata/team-a/", NULL, ta, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.text);
    ck_assert_ptr_nonnull(strstr(r.text, "\"keys\":[\"db\",\"old\"]"));
    res_clear(&r);
    r = call(&f, FP_A, "GET", "k8s/metadata/team-a/db", NULL, ta, NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    /* restored: the Secret is back in Kubernetes, the copy is not served */
    r = call(&f, FP_A, "GET", "k8s/data/team-a/old", NULL, ta, NULL);
    is_error(&r, 404, NULL);
    /* never another namespace's, nor another cluster's, nor above the namespace */
    r = call(&f, FP_A, "GET", "k8s/data/team-b/x", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "k8s/data/team-a/db", NULL, tb, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "LIST", "k8s/metadata/", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "k8s/data/team-a/db/x", NULL, ta, NULL);
    is_error(&r, 403, E_DENIED);
    r = call(&f, FP_A, "GET", "k8s/data/team-b/x", NULL, tb, NULL);
    ck_assert_int_eq(r.status, 200);
    res_clear(&r);
    free(ta);
    free(tb);
    teardown_f(&f);
}
END_TEST

/* Many handler threads at once while the policy is swapped (ASan/TSan food). */
typedef struct thr {
    fixture *f;
    const char *tok;
    int ok, denied, other;
} thr;

static void *reader(void *arg)
{
    thr *t = arg;
    int i;
    for (i = 0; i < 200; i++) {
        res r = call(t->f, FP_A, "GET", "secret/data/team-a/app/db", NULL, t->tok, NULL);
        if (r.status == 200)
            t->ok++;
        else if (r.status == 403)
            t->denied++;
        else
            t->other++;
        res_clear(&r);
    }
    return NULL;
}

START_TEST(concurrent_reload)
{
    fixture f;
    pthread_t th[4];
    thr a[4];
    char *ta;
    int i, ok = 0;
    setup_f(&f, 0);
    ta = login_as(&f, "team-a", "app", "app");
    for (i = 0; i < 4; i++) {
        a[i] = (thr){ &f, ta, 0, 0, 0 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader, &a[i]), 0);
    }
    for (i = 0; i < 50; i++)
        ct_embedded_vault_set_policy(f.v, i % 2 ? policy_of(k_policy) : NULL);
    ct_embedded_vault_set_policy(f.v, policy_of(k_policy));
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].other, 0);
        ok += a[i].ok;
    }
    ck_assert_int_gt(ok, 0);
    free(ta);
    teardown_f(&f);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("podpolicy");
    TCase *p = tcase_create("policy"), *v = tcase_create("embedded_vault");
    tcase_add_test(p, policy_valid);
    tcase_add_test(p, policy_hostile);
    tcase_add_test(p, policy_load_file);
    tcase_add_test(v, login_answers);
    tcase_add_test(v, login_refusals);
    tcase_add_test(v, login_role_and_audience);
    tcase_add_test(v, scope_per_pod);
    tcase_add_test(v, list_and_metadata);
    tcase_add_test(v, token_ttl_renew_lookup);
    tcase_add_test(v, token_table_bound);
    tcase_add_test(v, health_and_allowlist);
    tcase_add_test(v, kv_helpers);
    tcase_add_test(v, migrated_secrets);
    tcase_add_test(v, concurrent_reload);
    tcase_set_timeout(v, 120);
    suite_add_tcase(s, p);
    suite_add_tcase(s, v);
    return s;
}
