/*
 * test_migrate.c - the Secret migration (migrate.h) against the fake
 * Kubernetes API server (real HTTPS on 127.0.0.1) and the bridge-side ops
 * on an SQLite store, wired through a ct_router as the bridge does (the
 * session itself is tested elsewhere; the process-level run is
 * tests/integration/test_migrate.sh).
 *
 * Classification, plan JSON, apply (every Secret in the store byte for
 * byte and gone from Kubernetes; skipped kinds stay), a Secret modified
 * between its copy and its delete (kept, then migrated by a re-run), a copy
 * of another Secret of the same name (never overwritten), idempotent
 * re-runs, restore (recreated with type, labels and data; an existing
 * Secret is left alone), the ops' confinement to the cluster's prefix and
 * their input checks, and kill -9 of the migrating process (a forked child)
 * at random points 20 times, then resume: nothing lost or duplicated.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_k8s.h"
#include "testutil.h"

#define TOKEN "fake-admin-token"
#define USER "system:serviceaccount:cloudtaser:cloudtaser-operator"
#define FP "0f3b8c3a-1d4e-4f5a-9b7c-8e0d1a2b3c4d"
#define FP2 "1f3b8c3a-1d4e-4f5a-9b7c-8e0d1a2b3c4d"

static fake_k8s *g_fk;
static char *g_dir;
static char g_tls[1024], g_db[1100];
static ct_ctx *g_ctx;

typedef struct wire {
    ct_store *store;
    ct_migrate_server *srv;
    ct_router *router;
    const char *fp;
    long calls;
} wire;

static void setup(void)
{
    const char *fx = getenv("CT_TEST_FIXTURES");
    ck_assert_ptr_nonnull(fx);
    snprintf(g_tls, sizeof g_tls, "%s/tls", fx);
    g_fk = fake_k8s_start(g_tls);
    ck_assert_ptr_nonnull(g_fk);
    fake_k8s_add_token(g_fk, TOKEN, USER, FK_ALL);
    g_dir = ct_test_tmpdir();
    ck_assert_int_eq(fake_k8s_write_configs(g_fk, g_dir, g_tls, TOKEN), 0);
    snprintf(g_db, sizeof g_db, "%s/store.db", g_dir);
    g_ctx = ct_test_ctx();
}

static void teardown(void)
{
    fake_k8s_stop(g_fk);
    g_fk = NULL;
    ct_test_rmrf(g_dir);
    free(g_dir);
    g_dir = NULL;
    ct_ctx_free(g_ctx);
    g_ctx = NULL;
}

static ct_k8s_client *kube(ct_ctx *ctx)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_client *c = NULL;
    char path[1200];
    ct_error err;
    snprintf(path, sizeof path, "%s/kubeconfig", g_dir);
    o.kubeconfig = path;
    o.retry_base_ms = 10;
    o.timeout_ms = ct_test_under_valgrind() ? 60000 : 10000;
    ck_ok(ct_k8s_client_new(ctx, &o, &c, &err), &err);
    return c;
}

static void wire_open(wire *w, ct_ctx *ctx, const char *tmpl)
{
    ct_migrate_server_options so = CT_MIGRATE_SERVER_OPTIONS_INIT;
    ct_error err;
    memset(w, 0, sizeof *w);
    w->fp = FP;
    ck_ok(ct_store_new_sqlite(ctx, g_db, &w->store, &err), &err);
    so.store = w->store;
    so.path_template = tmpl;
    ck_ok(ct_migrate_server_new(&so, &w->srv, &err), &err);
    ck_ok(ct_router_new(&w->router, &err), &err);
    ck_ok(ct_migrate_server_routes(w->srv, w->router, &err), &err);
}

static void wire_close(wire *w)
{
    ct_router_free(w->router);
    ct_migrate_server_free(w->srv);
    ct_store_free(w->store);
}

/* The request function: the bridge's router, as the session would call it. */
static ct_err via_router(void *arg, const void *req, size_t len, uint8_t **resp,
                         size_t *resp_len, ct_error *err)
{
    wire *w = arg;
    w->calls++;
    *resp = NULL;
    *resp_len = 0;
    return ct_router_handle(w->router, w->fp, NULL, 1, req, len, resp, resp_len, err);
}

static void add_plain(const char *ns, const char *name, int i)
{
    char v1[64], v2[64];
    const char *kv[] = { "username", v1, "password", v2, NULL };
    snprintf(v1, sizeof v1, "user-%d", i);
    snprintf(v2, sizeof v2, "p@ss\"word\\%d\n", i * 7919);
    ck_assert_int_eq(fake_k8s_add_secret(g_fk, ns, name, "Opaque", kv), 0);
}

/* The stored record of ns/name (parsed), or NULL. */
static json_t *stored(ct_store *st, const char *ns, const char *name)
{
    char key[600];
    ct_secret *v = NULL;
    json_t *o;
    snprintf(key, sizeof key, "clusters/%s/secrets/%s/%s", FP, ns, name);
    if (ct_store_get(st, key, &v, NULL, NULL) != CT_OK)
        return NULL;
    o = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), 0, NULL);
    ct_secret_free(v);
    return o;
}

/* The record's data in the fake server's form (sorted keys, base64). */
static char *stored_data(json_t *rec)
{
    return json_dumps(json_object_get(rec, "data"), JSON_COMPACT | JSON_SORT_KEYS);
}

static ct_migrate_report *apply(wire *w, ct_k8s_client *c, const char *ns)
{
    ct_migrate_scope sc = CT_MIGRATE_SCOPE_INIT;
    ct_migrate_run_options ro = CT_MIGRATE_RUN_OPTIONS_INIT;
    const char *nss[1] = { ns };
    ct_migrate_plan *p = NULL;
    ct_migrate_report *r = NULL;
    ct_error err;
    sc.namespaces = nss;
    sc.n_namespaces = 1;
    ck_ok(ct_migrate_plan_new(c, &sc, &p, &err), &err);
    ro.request = via_router;
    ro.request_arg = w;
    ck_ok(ct_migrate_apply(c, p, &ro, &r, &err), &err);
    ct_migrate_plan_free(p);
    return r;
}

static size_t outcome_count(const ct_migrate_report *r, ct_migrate_outcome o)
{
    size_t i, n = 0;
    for (i = 0; i < ct_migrate_report_count(r); i++)
        n += ct_migrate_report_outcome(r, i) == o;
    return n;
}

static void add_skip_kinds(const char *ns)
{
    char j[1024];
    const char *kv[] = { "token", "abc", NULL };
    ck_assert_int_eq(fake_k8s_add_secret(g_fk, ns, "sa-token",
                                         "kubernetes.io/service-account-token", kv), 0);
    ck_assert_int_eq(fake_k8s_add_secret(g_fk, ns, "sh.helm.release.v1.web.v3",
                                         "helm.sh/release.v1", kv), 0);
    ck_assert_int_eq(fake_k8s_add_secret(g_fk, ns, "bootstrap-token-abcdef",
                                         "bootstrap.kubernetes.io/token", kv), 0);
    snprintf(j, sizeof j,
             "{\"metadata\":{\"namespace\":\"%s\",\"name\":\"owned-tls\",\"ownerReferences\":"
             "[{\"apiVersion\":\"cert-manager.io/v1\",\"kind\":\"Certificate\",\"name\":\"web\","
             "\"uid\":\"3c1e9a57-0b2d-4c8e-9f61-7a4d2e5b8c90\",\"controller\":true}]},"
             "\"type\":\"kubernetes.io/tls\",\"data\":{\"tls.crt\":\"Y2VydA==\"}}", ns);
    ck_assert_int_eq(fake_k8s_add_secret_json(g_fk, j), 0);
}

/* ------------------------------------------------------------- plan */

START_TEST(classify_and_plan)
{
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_scope sc = CT_MIGRATE_SCOPE_INIT;
    const char *nss[2] = { "apps", "other" };
    ct_migrate_plan *p = NULL;
    char *json = NULL;
    size_t i, seen = 0;
    ct_error err;

    add_skip_kinds("apps");
    add_plain("apps", "db", 1);
    add_plain("other", "api", 2);
    {
        const char *kv[] = { "k", "v", NULL };
        ck_assert_int_eq(fake_k8s_add_secret(g_fk, "third", "x", NULL, kv), 0);
    }
    sc.namespaces = nss;
    sc.n_namespaces = 2;
    ck_ok(ct_migrate_plan_new(c, &sc, &p, &err), &err);
    ck_assert_uint_eq(ct_migrate_plan_count(p), 6);
    ck_assert_uint_eq(ct_migrate_plan_to_migrate(p), 2);
    for (i = 0; i < ct_migrate_plan_count(p); i++) {
        const char *n = ct_k8s_secret_name(ct_migrate_plan_secret(p, i));
        ct_migrate_reason r = ct_migrate_plan_reason(p, i), want = CT_MIGRATE_GO;
        if (strcmp(n, "sa-token") == 0)
            want = CT_MIGRATE_SKIP_SA_TOKEN;
        else if (strncmp(n, "sh.helm", 7) == 0)
            want = CT_MIGRATE_SKIP_HELM;
        else if (strncmp(n, "bootstrap-token", 15) == 0)
            want = CT_MIGRATE_SKIP_BOOTSTRAP;
        else if (strcmp(n, "owned-tls") == 0)
            want = CT_MIGRATE_SKIP_OWNED;
        ck_assert_msg(r == want, "%s: %d, want %d", n, r, want);
        seen++;
    }
    ck_assert_uint_eq(seen, 6);
    ck_assert_ptr_null(ct_migrate_plan_secret(p, 6));
    ck_ok(ct_migrate_plan_json(p, &json, &err), &err);
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"sa-token\",\"type\":"
                                       "\"kubernetes.io/service-account-token\",\"action\":"
                                       "\"skip\",\"reason\":\"service-account-token\""));
    ck_assert_ptr_nonnull(strstr(json, "\"reason\":\"owned\""));
    ck_assert_ptr_nonnull(strstr(json, "\"migrate\":2,\"skip\":4"));
    ck_assert_ptr_null(strstr(json, "user-1")); /* no values */
    ct_free(json);
    ct_migrate_plan_free(p);
    /* no scope: the client's namespace ("default" here: nothing) */
    ck_ok(ct_migrate_plan_new(c, NULL, &p, &err), &err);
    ck_assert_uint_eq(ct_migrate_plan_count(p), 0);
    ct_migrate_plan_free(p);
    /* a selector is passed through */
    sc.label_selector = "app=nothing";
    ck_ok(ct_migrate_plan_new(c, &sc, &p, &err), &err);
    ck_assert_uint_eq(ct_migrate_plan_count(p), 0);
    ct_migrate_plan_free(p);
    ck_assert_str_eq(ct_migrate_reason_name(CT_MIGRATE_SKIP_HELM), "helm-release");
    ck_assert_int_eq(ct_migrate_classify(NULL), CT_MIGRATE_SKIP_NAME);
    ct_k8s_client_free(c);
}
END_TEST

/* ------------------------------------------------------------ apply */

START_TEST(apply_all)
{
    enum { N = 120 };
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_progress t;
    ct_migrate_report *r;
    char *before[N], name[64], *json = NULL;
    wire w;
    int i;
    ct_error err;

    wire_open(&w, g_ctx, NULL);
    for (i = 0; i < N; i++) {
        snprintf(name, sizeof name, "s-%03d", i);
        add_plain("apps", name, i);
        before[i] = fake_k8s_secret_data_json(g_fk, "apps", name);
    }
    {
        /* binary data, labels and a non-Opaque type survive */
        const char *j = "{\"metadata\":{\"namespace\":\"apps\",\"name\":\"bin\",\"labels\":"
                        "{\"app\":\"web\",\"tier\":\"db\"}},\"type\":\"kubernetes.io/tls\","
                        "\"data\":{\"tls.crt\":\"AAEC/f7/\",\"tls.key\":\"\"}}";
        ck_assert_int_eq(fake_k8s_add_secret_json(g_fk, j), 0);
    }
    add_skip_kinds("apps");
    r = apply(&w, c, "apps");
    ct_migrate_report_totals(r, &t);
    ck_assert_uint_eq(t.total, N + 5);
    ck_assert_uint_eq(t.migrated, N + 1);
    ck_assert_uint_eq(t.skipped, 4);
    ck_assert_uint_eq(t.failed + t.kept, 0);
    ck_assert(t.rate > 0);
    ck_ok(ct_migrate_report_json(r, &json, &err), &err);
    ck_assert_ptr_nonnull(strstr(json, "\"migrated\":121"));
    ck_assert_ptr_null(strstr(json, "user-1"));
    ct_free(json);
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), 4); /* the skipped kinds stay */
    for (i = 0; i < N; i++) {
        json_t *rec;
        char *d;
        snprintf(name, sizeof name, "s-%03d", i);
        rec = stored(w.store, "apps", name);
        ck_assert_ptr_nonnull(rec);
        d = stored_data(rec);
        ck_assert_str_eq(d, before[i]);
        ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "deleted");
        free(d);
        free(before[i]);
        json_decref(rec);
    }
    {
        json_t *rec = stored(w.store, "apps", "bin");
        char *d = stored_data(rec);
        ck_assert_str_eq(d, "{\"tls.crt\":\"AAEC/f7/\",\"tls.key\":\"\"}");
        ck_assert_str_eq(json_string_value(json_object_get(rec, "type")), "kubernetes.io/tls");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "labels"),
                                                           "tier")), "db");
        free(d);
        json_decref(rec);
    }
    ck_assert_ptr_null(stored(w.store, "apps", "sa-token"));
    /* re-running is idempotent: only the skipped kinds are left */
    r = apply(&w, c, "apps");
    ct_migrate_report_totals(r, &t);
    ck_assert_uint_eq(t.total, 4);
    ck_assert_uint_eq(t.skipped, 4);
    ct_migrate_report_free(r);
    wire_close(&w);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(modified_during_migration)
{
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_report *r;
    char uid[64], rv[64], rv2[64];
    json_t *rec;
    wire w;
    size_t i;

    wire_open(&w, g_ctx, NULL);
    add_plain("apps", "a", 1);
    add_plain("apps", "b", 2);
    add_plain("apps", "c", 3);
    ck_assert_int_eq(fake_k8s_secret_meta(g_fk, "apps", "b", uid, rv), 1);
    ck_assert_int_eq(fake_k8s_touch_before_delete(g_fk, "apps", "b"), 0);
    r = apply(&w, c, "apps");
    ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_MIGRATED), 2);
    ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_KEPT), 1);
    for (i = 0; i < ct_migrate_report_count(r); i++)
        if (ct_migrate_report_outcome(r, i) == CT_MIGRATE_KEPT) {
            ck_assert_str_eq(ct_migrate_report_name(r, i), "b");
            ck_assert_ptr_nonnull(strstr(ct_migrate_report_message(r, i), "re-run"));
        }
    ct_migrate_report_free(r);
    /* kept, not lost: still in Kubernetes, with its new resourceVersion */
    ck_assert_int_eq(fake_k8s_secret_meta(g_fk, "apps", "b", uid, rv2), 1);
    ck_assert_str_ne(rv, rv2);
    rec = stored(w.store, "apps", "b");
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "copied");
    ck_assert_str_eq(json_string_value(json_object_get(rec, "resourceVersion")), rv);
    json_decref(rec);
    /* a re-run migrates the new version */
    r = apply(&w, c, "apps");
    ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_MIGRATED), 1);
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), 0);
    rec = stored(w.store, "apps", "b");
    ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "deleted");
    ck_assert_str_eq(json_string_value(json_object_get(rec, "resourceVersion")), rv2);
    json_decref(rec);
    wire_close(&w);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(other_secret_same_name)
{
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_report *r;
    json_t *rec;
    char *d1, *d2;
    wire w;

    wire_open(&w, g_ctx, NULL);
    add_plain("apps", "a", 1);
    r = apply(&w, c, "apps");
    ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_MIGRATED), 1);
    ct_migrate_report_free(r);
    rec = stored(w.store, "apps", "a");
    d1 = stored_data(rec);
    json_decref(rec);
    /* a new Secret of the same name (another uid): the copy is never overwritten */
    add_plain("apps", "a", 2);
    r = apply(&w, c, "apps");
    ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_SKIPPED), 1);
    ck_assert_ptr_nonnull(strstr(ct_migrate_report_message(r, 0), "another Secret"));
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), 1);
    rec = stored(w.store, "apps", "a");
    d2 = stored_data(rec);
    ck_assert_str_eq(d1, d2);
    json_decref(rec);
    free(d1);
    free(d2);
    wire_close(&w);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(restore_all)
{
    enum { N = 40 };
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_run_options ro = CT_MIGRATE_RUN_OPTIONS_INIT;
    ct_migrate_report *r;
    ct_migrate_progress t;
    char *before[N], name[64];
    const char *only[1] = { "nothing-here" };
    wire w;
    int i;
    ct_error err;

    wire_open(&w, g_ctx, NULL);
    for (i = 0; i < N; i++) {
        snprintf(name, sizeof name, "r-%02d", i);
        add_plain("apps", name, i);
        before[i] = fake_k8s_secret_data_json(g_fk, "apps", name);
    }
    ck_assert_int_eq(fake_k8s_add_secret_json(g_fk,
        "{\"metadata\":{\"namespace\":\"apps\",\"name\":\"lab\",\"labels\":{\"app\":\"web\"}},"
        "\"type\":\"kubernetes.io/basic-auth\",\"data\":{\"password\":\"AAEC\"}}"), 0);
    r = apply(&w, c, "apps");
    ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_MIGRATED), N + 1);
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), 0);
    /* one was recreated by hand meanwhile: left alone */
    add_plain("apps", "r-00", 999);
    ro.request = via_router;
    ro.request_arg = &w;
    ro.namespaces = only;
    ro.n_namespaces = 1;
    ck_ok(ct_migrate_restore(c, &ro, &r, &err), &err);
    ck_assert_uint_eq(ct_migrate_report_count(r), 0);
    ct_migrate_report_free(r);
    ro.namespaces = NULL;
    ro.n_namespaces = 0;
    ck_ok(ct_migrate_restore(c, &ro, &r, &err), &err);
    ct_migrate_report_totals(r, &t);
    ck_assert_uint_eq(t.restored, N);
    ck_assert_uint_eq(t.exists, 1);
    ck_assert_uint_eq(t.failed, 0);
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), N + 1);
    for (i = 1; i < N; i++) {
        char *d;
        snprintf(name, sizeof name, "r-%02d", i);
        d = fake_k8s_secret_data_json(g_fk, "apps", name);
        ck_assert_str_eq(d, before[i]);
        free(d);
    }
    for (i = 0; i < N; i++)
        free(before[i]);
    {
        ct_k8s_secret *s = NULL;
        ck_ok(ct_k8s_get_secret(c, "apps", "lab", &s, &err), &err);
        ck_assert_str_eq(ct_k8s_secret_type(s), "kubernetes.io/basic-auth");
        ck_assert_uint_eq(ct_k8s_secret_label_count(s), 1);
        ck_assert_str_eq(ct_k8s_secret_label_value(s, 0), "web");
        ck_assert_uint_eq(ct_secret_len(ct_k8s_secret_data_get(s, "password")), 3);
        ct_k8s_secret_free(s);
    }
    {
        /* restored copies may be migrated again (new uid): the copy is replaced */
        json_t *rec = stored(w.store, "apps", "r-05");
        ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "restored");
        json_decref(rec);
        fake_k8s_remove_secret(g_fk, "apps", "r-00"); /* the hand-made one */
        r = apply(&w, c, "apps");
        ck_assert_uint_eq(outcome_count(r, CT_MIGRATE_MIGRATED), N);
        ct_migrate_report_free(r);
    }
    wire_close(&w);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(create_secret_call)
{
    ct_k8s_client *c = kube(g_ctx);
    ct_secret *v = NULL;
    ct_k8s_secret *made = NULL;
    const char *keys[1] = { "k" }, *bad[1] = { "bad key" };
    const char *labels[] = { "a", "b", NULL };
    ct_error err;

    ck_ok(ct_secret_from("\0\1\2", 3, &v, &err), &err);
    ck_ok(ct_k8s_create_secret(c, "ns1", "made", NULL, labels, keys,
                               (const ct_secret *const *)&v, 1, &made, &err), &err);
    ck_assert_str_eq(ct_k8s_secret_type(made), "Opaque");
    ck_assert_str_ne(ct_k8s_secret_uid(made), "");
    ck_assert_uint_eq(ct_secret_len(ct_k8s_secret_data_get(made, "k")), 3);
    ct_k8s_secret_free(made);
    ck_err(ct_k8s_create_secret(c, "ns1", "made", NULL, NULL, keys,
                                (const ct_secret *const *)&v, 1, NULL, &err),
           CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "already exists"));
    ck_err(ct_k8s_create_secret(c, "ns1", "other", NULL, NULL, bad,
                                (const ct_secret *const *)&v, 1, NULL, &err),
           CT_E_INVALID, &err);
    ck_err(ct_k8s_create_secret(c, "ns1", "Bad_Name", NULL, NULL, NULL, NULL, 0, NULL, &err),
           CT_E_INVALID, &err);
    ct_secret_free(v);
    ct_k8s_client_free(c);
}
END_TEST

/* ----------------------------------------------------- the bridge ops */

static ct_err call_json(wire *w, const char *req, char **ans, ct_error *err)
{
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_err rc = via_router(w, req, strlen(req), &resp, &len, err);
    *ans = NULL;
    if (rc == CT_OK) {
        *ans = calloc(1, len + 1);
        memcpy(*ans, resp, len);
    }
    free(resp);
    return rc;
}

START_TEST(server_ops)
{
    ct_migrate_server_options so = CT_MIGRATE_SERVER_OPTIONS_INIT;
    ct_migrate_server *m = NULL;
    char *ans = NULL;
    wire w;
    ct_error err;

    wire_open(&w, g_ctx, "moved/{namespace}/x/{name}");
    ck_ok(call_json(&w, "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"n\",\"name\":"
                        "\"s\",\"uid\":\"u1\",\"resourceVersion\":\"7\",\"type\":\"Opaque\","
                        "\"data\":{\"k\":\"dmFs\"}}}", &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"key\":\"moved/n/x/s\",\"version\":1}");
    free(ans);
    ck_ok(call_json(&w, "{\"op\":\"migrate.get\",\"key\":\"moved/n/x/s\"}", &ans, &err), &err);
    ck_assert_ptr_nonnull(strstr(ans, "\"data\":{\"k\":\"dmFs\"}"));
    ck_assert_ptr_nonnull(strstr(ans, "\"state\":\"copied\""));
    free(ans);
    ck_ok(call_json(&w, "{\"op\":\"migrate.list\"}", &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"keys\":[\"moved/n/x/s\"],\"more\":false}");
    free(ans);
    /* another cluster sees nothing of it */
    w.fp = FP2;
    ck_err(call_json(&w, "{\"op\":\"migrate.get\",\"namespace\":\"n\",\"name\":\"s\"}", &ans,
                     &err), CT_E_NOTFOUND, &err);
    ck_ok(call_json(&w, "{\"op\":\"migrate.list\"}", &ans, &err), &err);
    ck_assert_str_eq(ans, "{\"keys\":[],\"more\":false}");
    free(ans);
    /* nor can it name a key outside its prefix */
    ck_err(call_json(&w, "{\"op\":\"migrate.get\",\"key\":\"moved/../../" FP "/moved/n/x/s\"}",
                     &ans, &err), CT_E_INVALID, &err);
    ck_err(call_json(&w, "{\"op\":\"migrate.get\",\"key\":\"registered\"}", &ans, &err),
           CT_E_INVALID, &err);
    w.fp = FP;
    /* malformed requests */
    ck_err(call_json(&w, "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"n\"}}", &ans,
                     &err), CT_E_INVALID, &err);
    ck_err(call_json(&w, "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"N/..\",\"name\":"
                         "\"s\",\"uid\":\"u\",\"resourceVersion\":\"1\",\"type\":\"Opaque\","
                         "\"data\":{}}}", &ans, &err), CT_E_INVALID, &err);
    ck_err(call_json(&w, "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"n\",\"name\":"
                         "\"s\",\"uid\":\"u\",\"resourceVersion\":\"1\",\"type\":\"Opaque\","
                         "\"data\":{\"k\":1}}}", &ans, &err), CT_E_INVALID, &err);
    ck_err(call_json(&w, "{\"op\":\"migrate.mark\",\"namespace\":\"n\",\"name\":\"s\","
                         "\"uid\":\"u1\",\"state\":\"gone\"}", &ans, &err), CT_E_INVALID, &err);
    ck_err(call_json(&w, "{\"op\":\"migrate.mark\",\"namespace\":\"n\",\"name\":\"s\","
                         "\"uid\":\"other\",\"state\":\"deleted\"}", &ans, &err),
           CT_E_CONFLICT, &err);
    ck_ok(call_json(&w, "{\"op\":\"migrate.mark\",\"namespace\":\"n\",\"name\":\"s\","
                        "\"uid\":\"u1\",\"state\":\"deleted\"}", &ans, &err), &err);
    free(ans);
    /* a different Secret of the same name cannot overwrite the deleted one's copy */
    ck_err(call_json(&w, "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"n\",\"name\":"
                         "\"s\",\"uid\":\"u2\",\"resourceVersion\":\"9\",\"type\":\"Opaque\","
                         "\"data\":{}}}", &ans, &err), CT_E_CONFLICT, &err);
    ck_err(call_json(&w, "not json", &ans, &err), CT_E_INVALID, &err);
    wire_close(&w);
    /* templates */
    so.store = (ct_store *)1; /* not used by _new */
    so.path_template = "{namespace}/{name}";
    ck_err(ct_migrate_server_new(&so, &m, &err), CT_E_INVALID, &err);
    so.path_template = "s/{namespace}";
    ck_err(ct_migrate_server_new(&so, &m, &err), CT_E_INVALID, &err);
    so.path_template = "s/{namespace}/{name}/{name}";
    ck_err(ct_migrate_server_new(&so, &m, &err), CT_E_INVALID, &err);
    so.path_template = "s/{namespace}x/{name}";
    ck_err(ct_migrate_server_new(&so, &m, &err), CT_E_INVALID, &err);
    so.path_template = "s/{namespace}/{name}/{uid}";
    ck_err(ct_migrate_server_new(&so, &m, &err), CT_E_INVALID, &err);
    so.path_template = "s p/{namespace}/{name}";
    ck_err(ct_migrate_server_new(&so, &m, &err), CT_E_INVALID, &err);
    so.path_template = "a/b/{name}/{namespace}";
    ck_ok(ct_migrate_server_new(&so, &m, &err), &err);
    ct_migrate_server_free(m);
}
END_TEST

static ct_err closed_after(void *arg, const void *req, size_t len, uint8_t **resp,
                           size_t *resp_len, ct_error *err)
{
    wire *w = arg;
    if (w->calls >= 3) { /* put, get and mark of the first Secret, then the put of the next */
        ct_error_clear(err);
        err->code = CT_E_CLOSED;
        snprintf(err->message, sizeof err->message, "the session closed");
        return CT_E_CLOSED;
    }
    w->calls++;
    *resp = NULL;
    *resp_len = 0;
    return ct_router_handle(w->router, w->fp, NULL, 1, req, len, resp, resp_len, err);
}

START_TEST(session_lost)
{
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_run_options ro = CT_MIGRATE_RUN_OPTIONS_INIT;
    ct_migrate_plan *p = NULL;
    ct_migrate_report *r = NULL;
    ct_migrate_progress t;
    const char *nss[1] = { "apps" };
    ct_migrate_scope sc = CT_MIGRATE_SCOPE_INIT;
    wire w;
    ct_error err;

    wire_open(&w, g_ctx, NULL);
    add_plain("apps", "a", 1);
    add_plain("apps", "b", 2);
    add_plain("apps", "c", 3);
    sc.namespaces = nss;
    sc.n_namespaces = 1;
    ck_ok(ct_migrate_plan_new(c, &sc, &p, &err), &err);
    ro.request = closed_after;
    ro.request_arg = &w;
    ck_err(ct_migrate_apply(c, p, &ro, &r, &err), CT_E_CLOSED, &err);
    ct_migrate_report_totals(r, &t);
    ck_assert_uint_eq(t.migrated, 1); /* then it stopped at once */
    ck_assert_uint_eq(t.done, 1);
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), 2);
    /* a bridge that does not serve the migration: stops at the first request */
    ct_router_free(w.router);
    ck_ok(ct_router_new(&w.router, &err), &err);
    ro.request = via_router;
    ck_err(ct_migrate_apply(c, p, &ro, &r, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_uint_eq(ct_migrate_report_count(r), 0);
    ct_migrate_report_free(r);
    ct_migrate_plan_free(p);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "apps"), 2);
    wire_close(&w);
    ct_k8s_client_free(c);
}
END_TEST

/* ---------------------------------------------------------- kill -9 */

/* The child: a whole migration run of its own (own context, client, store). */
static void child_run(void)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_k8s_client *c = kube(ctx);
    ct_migrate_report *r;
    wire w;
    wire_open(&w, ctx, NULL);
    r = apply(&w, c, "bulk");
    ct_migrate_report_free(r);
    _exit(0);
}

START_TEST(kill9_resume)
{
    int n = ct_test_under_valgrind() ? 40 : 300, i, rounds = 20, killed = 0;
    ct_k8s_client *c = kube(g_ctx);
    ct_migrate_report *r;
    ct_migrate_progress t;
    ct_strlist *keys = NULL;
    char name[64], **before;
    wire w;
    ct_error err;

    before = calloc((size_t)n, sizeof *before);
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof name, "k-%04d", i);
        add_plain("bulk", name, i);
        before[i] = fake_k8s_secret_data_json(g_fk, "bulk", name);
    }
    srand((unsigned)time(NULL));
    for (i = 0; i < rounds; i++) {
        struct timespec d = { 0, (long)(rand() % 500 + 50) * 1000000L };
        int st = 0;
        pid_t p = fork();
        ck_assert_int_ge(p, 0);
        if (p == 0)
            child_run();
        nanosleep(&d, NULL);
        if (kill(p, SIGKILL) == 0)
            killed++;
        ck_assert_int_eq(waitpid(p, &st, 0), p);
    }
    ck_assert_int_gt(killed, 0);
    fprintf(stderr, "kill9_resume: %d rounds, %zu of %d Secrets left in Kubernetes before the "
            "final run\n", rounds, fake_k8s_secret_count(g_fk, "bulk"), n);
    /* resume: a full run */
    wire_open(&w, g_ctx, NULL);
    r = apply(&w, c, "bulk");
    ct_migrate_report_totals(r, &t);
    ck_assert_uint_eq(t.failed + t.kept + t.skipped, 0);
    ct_migrate_report_free(r);
    ck_assert_uint_eq(fake_k8s_secret_count(g_fk, "bulk"), 0);
    for (i = 0; i < n; i++) {
        json_t *rec;
        char *d;
        snprintf(name, sizeof name, "k-%04d", i);
        rec = stored(w.store, "bulk", name);
        ck_assert_msg(rec != NULL, "%s lost", name);
        d = stored_data(rec);
        ck_assert_str_eq(d, before[i]);
        /* the journal is complete, also for a run killed between delete and mark */
        ck_assert_str_eq(json_string_value(json_object_get(rec, "state")), "deleted");
        free(d);
        free(before[i]);
        json_decref(rec);
    }
    free(before);
    /* nothing duplicated: exactly one record per Secret */
    ck_ok(ct_store_list(w.store, "clusters/" FP "/secrets/bulk/", &keys, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(keys), (size_t)n);
    ct_strlist_free(keys);
    wire_close(&w);
    ct_k8s_client_free(c);
}
END_TEST

/*
 * Throughput figures (in-process wiring, fake API server): on the SQLite
 * store (two durable commits per Secret) and on the memory store (what the
 * rest costs: the list, the HTTPS DELETE, the JSON and base64 work).
 */
START_TEST(throughput)
{
    int n = ct_test_under_valgrind() ? 50 : 500, i, pass;
    ct_k8s_client *c = kube(g_ctx);
    char name[64];

    for (pass = 0; pass < 2; pass++) {
        const char *ns = pass ? "perf-mem" : "perf-sqlite";
        ct_migrate_report *r;
        ct_migrate_progress t;
        wire w;
        ct_error err;
        for (i = 0; i < n; i++) {
            snprintf(name, sizeof name, "t-%04d", i);
            add_plain(ns, name, i);
        }
        wire_open(&w, g_ctx, NULL);
        if (pass) {
            /* the same server and router on a memory store */
            ct_migrate_server_options so = CT_MIGRATE_SERVER_OPTIONS_INIT;
            wire_close(&w);
            memset(&w, 0, sizeof w);
            w.fp = FP;
            ck_ok(ct_store_new_memory(g_ctx, &w.store, &err), &err);
            so.store = w.store;
            ck_ok(ct_migrate_server_new(&so, &w.srv, &err), &err);
            ck_ok(ct_router_new(&w.router, &err), &err);
            ck_ok(ct_migrate_server_routes(w.srv, w.router, &err), &err);
        }
        r = apply(&w, c, ns);
        ct_migrate_report_totals(r, &t);
        ck_assert_uint_eq(t.migrated, (size_t)n);
        fprintf(stderr, "migrate throughput (in-process, %s store): %d Secrets in %.2f s = %.0f "
                "Secrets/s\n", pass ? "memory" : "SQLite", n, t.elapsed_s, t.rate);
        ct_migrate_report_free(r);
        ck_assert_uint_eq(fake_k8s_secret_count(g_fk, ns), 0);
        wire_close(&w);
    }
    ct_k8s_client_free(c);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("migrate");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, classify_and_plan);
    tcase_add_test(tc, apply_all);
    tcase_add_test(tc, modified_during_migration);
    tcase_add_test(tc, other_secret_same_name);
    tcase_add_test(tc, restore_all);
    tcase_add_test(tc, create_secret_call);
    tcase_add_test(tc, server_ops);
    tcase_add_test(tc, session_lost);
    tcase_add_test(tc, kill9_resume);
    tcase_add_test(tc, throughput);
    suite_add_tcase(s, tc);
    return s;
}
