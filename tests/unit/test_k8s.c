/*
 * test_k8s.c - the Kubernetes client (k8s.h) against the fake API server
 * (support/fake_k8s.c) over real HTTPS on 127.0.0.1: every configuration
 * (kubeconfig with a token, a token file, a client certificate as data and
 * as files; a merged $KUBECONFIG list; in-cluster; auto), every call, pagination across pages, the
 * 401/403/404/409/410 answers, token rotation, retries (counted on the
 * server), and the faults (each gives a clear code, never a hang).
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fake_k8s.h"
#include "testutil.h"

#define TOKEN "fake-admin-token"
#define USER "system:serviceaccount:cloudtaser:cloudtaser-operator"
#define FIXTURE_UID "6f2b8c3a-1d4e-4f5a-9b7c-8e0d1a2b3c4d"
#define CERT_CN "cloudtaser test client"

/* Deadlines stretch under valgrind (TLS on both ends runs 20-50x slower). */
static int tmul(int ms)
{
    return ct_test_under_valgrind() ? ms * 10 : ms;
}

static fake_k8s *g_fk;
static char *g_dir;
static char g_tls[1024];
static ct_ctx *g_ctx;

static void setup(void)
{
    const char *fx = getenv("CT_TEST_FIXTURES");
    ck_assert_ptr_nonnull(fx);
    snprintf(g_tls, sizeof g_tls, "%s/tls", fx);
    g_fk = fake_k8s_start(g_tls);
    ck_assert_ptr_nonnull(g_fk);
    fake_k8s_add_token(g_fk, TOKEN, USER, FK_ALL);
    fake_k8s_add_cert_user(g_fk, CERT_CN, "cert-user", FK_ALL);
    g_dir = ct_test_tmpdir();
    ck_assert_int_eq(fake_k8s_write_configs(g_fk, g_dir, g_tls, TOKEN), 0);
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
    unsetenv("KUBECONFIG");
    unsetenv("POD_NAMESPACE");
}

static char *path(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

/* A client from one of the written kubeconfigs, with fast retries. */
static ct_k8s_client *kube(const char *file)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_client *c = NULL;
    ct_error err;
    o.kubeconfig = path(file);
    o.retry_base_ms = 10;
    /* the first TLS handshake with the fake server is very slow under valgrind */
    o.timeout_ms = ct_test_under_valgrind() ? 180000 : 5000;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
    return c;
}

static void write_text(const char *file, const char *text)
{
    FILE *f = fopen(path(file), "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* The n-th logged request contains `needle`. */
static void ck_line(size_t i, const char *needle)
{
    char line[4600];
    ck_assert_int_eq(fake_k8s_request_line(g_fk, i, line, sizeof line), 0);
    ck_assert_msg(strstr(line, needle) != NULL, "request %zu: '%s' lacks '%s'", i, line, needle);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------ configurations */

START_TEST(kubeconfig_token)
{
    ct_k8s_client *c = kube("kubeconfig");
    char fp[CT_FINGERPRINT_LEN + 1], server[64];
    ct_error err;

    snprintf(server, sizeof server, "https://127.0.0.1:%u", fake_k8s_port(g_fk));
    ck_assert_int_eq(ct_k8s_client_source(c), CT_K8S_KUBECONFIG);
    ck_assert_str_eq(ct_k8s_client_server(c), server);
    ck_assert_str_eq(ct_k8s_client_context(c), "fake");
    ck_assert_str_eq(ct_k8s_client_namespace(c), "payments");
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_assert_str_eq(fp, FIXTURE_UID);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 1);
    ck_line(0, "GET /api/v1/namespaces/kube-system user=" USER " accept=application/json");
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(kubeconfig_client_cert)
{
    static const char *const files[] = { "kubeconfig-cert", "kubeconfig-files" };
    size_t i;
    for (i = 0; i < 2; i++) {
        ct_k8s_client *c = kube(files[i]);
        char fp[CT_FINGERPRINT_LEN + 1];
        ct_error err;
        fake_k8s_reset_log(g_fk);
        ck_ok(ct_fingerprint(NULL, c, fp, &err), &err);
        ck_assert_str_eq(fp, FIXTURE_UID);
        ck_line(0, "user=cert-user");
        ct_k8s_client_free(c);
    }
}
END_TEST

START_TEST(fingerprint_canonical)
{
    ct_k8s_client *c = kube("kubeconfig");
    char fp[CT_FINGERPRINT_LEN + 1], uid[CT_K8S_UID_MAX];
    ct_error err;
    fake_k8s_set_namespace_uid(g_fk, "0AD50C05-1153-4508-9237-4CB2912E2C23");
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_assert_str_eq(fp, "0ad50c05-1153-4508-9237-4cb2912e2c23");
    ck_ok(ct_k8s_get_namespace_uid(c, "kube-system", uid, &err), &err);
    ck_assert_str_eq(uid, "0AD50C05-1153-4508-9237-4CB2912E2C23");
    fake_k8s_set_namespace_uid(g_fk, "not-a-uuid");
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_PROTO, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "not a UUID"));
    ck_assert_str_eq(fp, "");
    ck_err(ct_k8s_get_namespace_uid(c, "default", uid, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "namespaces \"default\" not found"));
    ck_err(ct_k8s_get_namespace_uid(c, "../x", uid, &err), CT_E_INVALID, &err);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(in_cluster)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_client *c = NULL;
    char fp[CT_FINGERPRINT_LEN + 1], port[8], sa[1024];
    ct_error err;

    snprintf(port, sizeof port, "%u", fake_k8s_port(g_fk));
    snprintf(sa, sizeof sa, "%s", path("serviceaccount"));
    o.source = CT_K8S_IN_CLUSTER;
    o.sa_dir = sa;
    o.service_host = "127.0.0.1";
    o.service_port = port;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
    ck_assert_int_eq(ct_k8s_client_source(c), CT_K8S_IN_CLUSTER);
    ck_assert_str_eq(ct_k8s_client_namespace(c), "payments"); /* the namespace file */
    ck_assert_str_eq(ct_k8s_client_context(c), "");
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_assert_str_eq(fp, FIXTURE_UID);
    ck_line(0, "user=" USER);
    ct_k8s_client_free(c);

    /* POD_NAMESPACE wins over the file; auto picks in-cluster from host/port */
    setenv("POD_NAMESPACE", "other", 1);
    o.source = CT_K8S_AUTO;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
    ck_assert_int_eq(ct_k8s_client_source(c), CT_K8S_IN_CLUSTER);
    ck_assert_str_eq(ct_k8s_client_namespace(c), "other");
    ct_k8s_client_free(c);
    unsetenv("POD_NAMESPACE");

    /* IPv6 host literals are bracketed */
    o.service_host = "::1";
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
    ck_assert_ptr_nonnull(strstr(ct_k8s_client_server(c), "https://[::1]:"));
    ct_k8s_client_free(c);
    o.service_host = "127.0.0.1";

    /* missing pieces */
    o.source = CT_K8S_IN_CLUSTER;
    o.service_port = "";
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "not running in a cluster"));
    o.service_port = port;
    o.sa_dir = g_dir; /* has a token but no ca.crt */
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "ca.crt"));
    o.sa_dir = "/nonexistent/sa";
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/sa/token"));
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(auto_and_env)
{
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_k8s_client *c = NULL;
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    char list[2200];
    ct_error err;

    /* ct_fingerprint with no client: auto configuration from $KUBECONFIG (a missing file skipped) */
    snprintf(list, sizeof list, "%s:/nonexistent/second", path("kubeconfig"));
    setenv("KUBECONFIG", list, 1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    ck_ok(ct_fingerprint(g_ctx, NULL, fp, &err), &err);
    ck_assert_str_eq(fp, FIXTURE_UID);
    ck_err(ct_fingerprint(NULL, NULL, fp, &err), CT_E_INVALID, &err);

    setenv("KUBECONFIG", "/nonexistent/kubeconfig", 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/kubeconfig"));
    unsetenv("KUBECONFIG");

    /* options.context selects a context; a missing one is named */
    o.kubeconfig = path("kubeconfig");
    o.context = "nope";
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "no context named \"nope\""));
    o.version = 99;
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_VERSION, &err);
    ck_err(ct_k8s_client_new(NULL, NULL, &c, &err), CT_E_INVALID, &err);
}
END_TEST

/*
 * $KUBECONFIG with several files, merged as kubectl merges them: the cluster
 * (with a CA path relative to its own file) in one directory, the user and
 * current-context in another; missing files, empty entries and repeats
 * skipped; a malformed file, a directory, too many files: errors naming
 * them; --kubeconfig with a colon is one path, not a list.
 */
START_TEST(kubeconfig_list)
{
    char a[1100], b[1100], bad[1100], list[4600], text[2048], fp[CT_FINGERPRINT_LEN + 1];
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_client *c = NULL;
    ct_error err;
    size_t i, used;
    FILE *in, *out;
    int ch;

    ck_assert_int_eq(mkdir(path("clusters"), 0700), 0);
    ck_assert_int_eq(mkdir(path("users"), 0700), 0);
    /* the fake server's CA next to the first file, named relatively */
    snprintf(text, sizeof text, "%s/ca.pem", g_tls);
    in = fopen(text, "r");
    ck_assert_ptr_nonnull(in);
    out = fopen(path("clusters/ca.pem"), "w");
    ck_assert_ptr_nonnull(out);
    while ((ch = fgetc(in)) != EOF)
        fputc(ch, out);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
    snprintf(text, sizeof text,
             "apiVersion: v1\nkind: Config\n"
             "clusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:%u\n"
             "    certificate-authority: ca.pem\n"
             "contexts:\n- name: fake\n  context: {cluster: fake, user: admin, namespace: "
             "payments}\n",
             (unsigned)fake_k8s_port(g_fk));
    write_text("clusters/a.yaml", text);
    write_text("users/b.yaml",
               "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
               "clusters:\n- {name: fake, cluster: {server: 'https://203.0.113.1:1'}}\n"
               "contexts:\n- {name: fake, context: {cluster: fake, user: nobody}}\n"
               "users:\n- name: admin\n  user:\n    tokenFile: admin.token\n");
    write_text("users/admin.token", TOKEN "\n");
    snprintf(a, sizeof a, "%s", path("clusters/a.yaml"));
    snprintf(b, sizeof b, "%s", path("users/b.yaml"));

    /* missing files, empty entries and a repeat around the two real ones */
    snprintf(list, sizeof list, "%s/none-here::%s:%s:%s:", g_dir, a, b, a);
    setenv("KUBECONFIG", list, 1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    ck_ok(ct_k8s_client_new(g_ctx, NULL, &c, &err), &err);
    ck_assert_int_eq(ct_k8s_client_source(c), CT_K8S_KUBECONFIG);
    ck_assert_str_eq(ct_k8s_client_context(c), "fake");
    ck_assert_str_eq(ct_k8s_client_namespace(c), "payments");
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err); /* verified with a's CA, b's token */
    ck_assert_str_eq(fp, FIXTURE_UID);
    ct_k8s_client_free(c);
    c = NULL;

    /* the other order: b's context (user "nobody") and cluster win */
    snprintf(list, sizeof list, "%s:%s", b, a);
    setenv("KUBECONFIG", list, 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "no user named \"nobody\""));

    /* a malformed second file: an error naming it */
    snprintf(bad, sizeof bad, "%s", path("users/bad.yaml"));
    write_text("users/bad.yaml", "clusters: [unclosed\n");
    snprintf(list, sizeof list, "%s:%s", a, bad);
    setenv("KUBECONFIG", list, 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, bad));
    ck_assert_ptr_nonnull(strstr(err.message, "not valid YAML"));

    /* a directory in the list is not skipped */
    snprintf(list, sizeof list, "%s:%s", a, path("users"));
    setenv("KUBECONFIG", list, 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_IO, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));

    /* a file that exists but cannot be read is not skipped either */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(b, 0), 0);
        snprintf(list, sizeof list, "%s:%s", a, b);
        setenv("KUBECONFIG", list, 1);
        ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_DENIED, &err);
        ck_assert_ptr_nonnull(strstr(err.message, b));
        ck_assert_int_eq(chmod(b, 0600), 0);
    }

    /* none exists */
    snprintf(list, sizeof list, "%s/x1:%s/x2", g_dir, g_dir);
    setenv("KUBECONFIG", list, 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "none of the files KUBECONFIG lists exists"));
    setenv("KUBECONFIG", ":::", 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_INVALID, &err);

    /* 16 distinct files are accepted (the missing ones skipped), 17 are not */
    used = 0;
    for (i = 0; i < 17; i++) {
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                 i ? ":" : "", i == 0 ? a : i == 1 ? b : "");
        if (i > 1)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s/missing-%zu", g_dir,
                                     i);
        if (i == 15) {
            setenv("KUBECONFIG", list, 1);
            ck_ok(ct_k8s_client_new(g_ctx, NULL, &c, &err), &err);
            ct_k8s_client_free(c);
            c = NULL;
        }
    }
    setenv("KUBECONFIG", list, 1);
    ck_err(ct_k8s_client_new(g_ctx, NULL, &c, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "more than 16 files"));

    /* --kubeconfig names exactly one file: a colon in it is part of the name */
    unsetenv("KUBECONFIG");
    snprintf(list, sizeof list, "%s:%s", a, b);
    o.kubeconfig = list;
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(kubeconfig_refusals)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_client *c = NULL;
    char text[4096], fp[CT_FINGERPRINT_LEN + 1];
    ct_error err;

    o.kubeconfig = path("kc-test");
    snprintf(text, sizeof text,
             "current-context: x\n"
             "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
             "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%u'}}]\n"
             "users: [{name: u, user: {exec: {command: gke-gcloud-auth-plugin, "
             "apiVersion: client.authentication.k8s.io/v1beta1}}}]\n",
             fake_k8s_port(g_fk));
    write_text("kc-test", text);
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "exec credential plugins are not supported; use a "
                                              "token or client certificate"));

    /* insecure-skip-tls-verify: refused, unless forced (then it works unverified) */
    snprintf(text, sizeof text,
             "current-context: x\n"
             "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
             "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%u', "
             "insecure-skip-tls-verify: true}}]\n"
             "users: [{name: u, user: {token: " TOKEN "}}]\n",
             fake_k8s_port(g_fk));
    write_text("kc-test", text);
    ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "insecure-skip-tls-verify"));
    o.force_insecure_skip_tls_verify = 1;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ct_k8s_client_free(c);
    o.force_insecure_skip_tls_verify = 0;

    /* a CA that did not issue the server's certificate */
    {
        char fpath[1100];
        snprintf(fpath, sizeof fpath, "%s/foreign-ca.pem", g_tls);
        snprintf(text, sizeof text,
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%u', "
                 "certificate-authority: %s}}]\n"
                 "users: [{name: u, user: {token: " TOKEN "}}]\n",
                 fake_k8s_port(g_fk), fpath);
        write_text("kc-test", text);
        ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
        ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_CERT, &err);
        ck_assert_ptr_nonnull(strstr(err.message, "not trusted"));
        ct_k8s_client_free(c);
        /* a CA file that does not exist: named at creation */
        snprintf(text, sizeof text,
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
                 "certificate-authority: missing-ca.pem}}]\n"
                 "users: [{name: u, user: {token: t}}]\n");
        write_text("kc-test", text);
        ck_err(ct_k8s_client_new(g_ctx, &o, &c, &err), CT_E_NOTFOUND, &err);
        ck_assert_ptr_nonnull(strstr(err.message, "missing-ca.pem"));
    }
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(unauthorized_and_forbidden)
{
    ct_k8s_client *c;
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_k8s_secret_list *l = NULL;
    ct_error err;

    /* a token the server does not know: 401 */
    write_text("kc-bad", "");
    {
        char text[4096], *kc = NULL;
        FILE *f = fopen(path("kubeconfig"), "r");
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        kc = strstr(text, "token: " TOKEN);
        ck_assert_ptr_nonnull(kc);
        memcpy(kc + 7, "wrong", 5);
        write_text("kc-bad", text);
    }
    c = kube("kc-bad");
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "the token was rejected"));
    ck_assert_int_eq(err.os_error, 401);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 1); /* not retried */
    ct_k8s_client_free(c);

    /* a user without RBAC: 403 quoting the API server */
    fake_k8s_add_token(g_fk, "weak", "system:serviceaccount:payments:payments-api", 0);
    {
        char text[4096];
        snprintf(text, sizeof text,
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u, namespace: payments}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%u', "
                 "certificate-authority: %s/ca.pem}}]\n"
                 "users: [{name: u, user: {token: weak}}]\n",
                 fake_k8s_port(g_fk), g_tls);
        write_text("kc-weak", text);
    }
    c = kube("kc-weak");
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_DENIED, &err);
    ck_assert_str_eq(err.message,
                     "get namespace kube-system: denied: namespaces \"kube-system\" is "
                     "forbidden: User \"system:serviceaccount:payments:payments-api\" cannot "
                     "get resource \"namespaces\" in API group \"\" in the namespace "
                     "\"kube-system\"");
    ck_err(ct_k8s_list_secrets(c, NULL, NULL, &l, &err), CT_E_DENIED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "secrets is forbidden: User "
                                              "\"system:serviceaccount:payments:payments-api\" "
                                              "cannot list resource \"secrets\" in API group "
                                              "\"\" in the namespace \"payments\""));
    ck_assert_ptr_null(l);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(token_rotation)
{
    ct_k8s_client *c = kube("kubeconfig-tokenfile");
    char fp[CT_FINGERPRINT_LEN + 1];
    struct stat st;
    struct timespec times[2];
    ct_error err;

    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_line(0, "user=" USER);

    /* the file is replaced: the next request reads it */
    fake_k8s_add_token(g_fk, "rotated-token-1", "rotated-1", FK_ALL);
    write_text("token", "rotated-token-1\n");
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_line(1, "user=rotated-1");

    /*
     * Same size, same mtime (stat sees no change), old token revoked: the
     * 401 makes the client re-read the file and try once more.
     */
    ck_assert_int_eq(stat(path("token"), &st), 0);
    fake_k8s_add_token(g_fk, "rotated-token-2", "rotated-2", FK_ALL);
    fake_k8s_remove_token(g_fk, "rotated-token-1");
    {
        FILE *f = fopen(path("token"), "r+");
        ck_assert_ptr_nonnull(f);
        fputs("rotated-token-2\n", f);
        fclose(f);
    }
    times[0] = st.st_atim;
    times[1] = st.st_mtim;
    ck_assert_int_eq(utimensat(AT_FDCWD, path("token"), times, 0), 0);
    fake_k8s_reset_log(g_fk);
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 2);
    ck_line(0, "user=-");
    ck_line(1, "user=rotated-2");

    /* a revoked token with no new one in the file: CT_E_AUTH after one extra read */
    fake_k8s_remove_token(g_fk, "rotated-token-2");
    fake_k8s_reset_log(g_fk);
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_AUTH, &err);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 1);
    ct_k8s_client_free(c);
}
END_TEST

/* ------------------------------------------------------------ Secrets */

START_TEST(get_secret)
{
    ct_k8s_client *c = kube("kubeconfig");
    ct_k8s_secret *s = NULL;
    ct_error err;

    fake_k8s_seed_fixture_secrets(g_fk);
    ck_ok(ct_k8s_get_secret(c, NULL, "db-credentials", &s, &err), &err);
    ck_assert_str_eq(ct_k8s_secret_name(s), "db-credentials");
    ck_assert_str_eq(ct_k8s_secret_namespace(s), "payments");
    ck_assert_str_eq(ct_k8s_secret_uid(s), "b8e4d2f0-6a1c-4e3b-9d5f-7c9e1a3b5d7f");
    ck_assert_str_eq(ct_k8s_secret_resource_version(s), "184377");
    ck_assert_str_eq(ct_k8s_secret_label_value(s, 0), "payments-api");
    ck_assert_str_eq((const char *)ct_secret_data(ct_k8s_secret_data_get(s, "password")),
                     "S3cr3t-Example-Only");
    ct_k8s_secret_free(s);
    s = NULL;

    /* raw bytes survive (binary values) */
    {
        const char *kv[] = { "bin", "\x01\x02\xff", "empty", "", NULL };
        ck_assert_int_eq(fake_k8s_add_secret(g_fk, "other", "bin", NULL, kv), 0);
        ck_ok(ct_k8s_get_secret(c, "other", "bin", &s, &err), &err);
        ck_assert_uint_eq(ct_secret_len(ct_k8s_secret_data_get(s, "bin")), 3);
        ck_assert_mem_eq(ct_secret_data(ct_k8s_secret_data_get(s, "bin")), "\x01\x02\xff", 3);
        ck_assert_uint_eq(ct_secret_len(ct_k8s_secret_data_get(s, "empty")), 0);
        ct_k8s_secret_free(s);
        s = NULL;
    }

    ck_err(ct_k8s_get_secret(c, NULL, "nope", &s, &err), CT_E_NOTFOUND, &err);
    ck_assert_str_eq(err.message, "get secret payments/nope: secrets \"nope\" not found");
    ck_assert_int_eq(err.os_error, 404);
    ck_err(ct_k8s_get_secret(c, NULL, "Bad/Name", &s, &err), CT_E_INVALID, &err);
    ck_err(ct_k8s_get_secret(c, "x y", "a", &s, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(s);
    ct_k8s_secret_free(NULL);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(list_fixture_pages)
{
    ct_k8s_client *c = kube("kubeconfig");
    ct_k8s_list_options lo = CT_K8S_LIST_OPTIONS_INIT;
    ct_k8s_secret_list *l = NULL;
    ct_error err;

    fake_k8s_seed_fixture_secrets(g_fk);
    lo.limit = 2;
    ck_ok(ct_k8s_list_secrets(c, "payments", &lo, &l, &err), &err);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 3);
    ck_assert_uint_eq(ct_k8s_secret_list_pages(l), 2);
    ck_assert_int_eq(ct_k8s_secret_list_restarted(l), 0);
    ck_assert_str_eq(ct_k8s_secret_list_resource_version(l), "184532");
    ck_assert_str_eq(ct_k8s_secret_name(ct_k8s_secret_list_get(l, 0)), "api-tls");
    ck_assert_str_eq(ct_k8s_secret_name(ct_k8s_secret_list_get(l, 1)), "db-credentials");
    ck_assert_str_eq(ct_k8s_secret_name(ct_k8s_secret_list_get(l, 2)), "webhook-token");
    ck_assert_str_eq(ct_k8s_secret_type(ct_k8s_secret_list_get(l, 0)), "kubernetes.io/tls");
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 2);
    ck_line(0, "GET /api/v1/namespaces/payments/secrets?limit=2 ");
    /* the second page: same limit, the fixture's continue token */
    ck_line(1, "GET /api/v1/namespaces/payments/secrets?limit=2&continue=eyJ2IjoibWV0YS5rOHMuaW8v"
               "djEiLCJydiI6MTg0NTMyLCJzdGFydCI6ImRiLWNyZWRlbnRpYWxzXHUwMDAwIn0 ");
    ct_k8s_secret_list_free(l);

    /* an empty namespace */
    ck_ok(ct_k8s_list_secrets(c, "empty", NULL, &l, &err), &err);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 0);
    ck_assert_uint_eq(ct_k8s_secret_list_pages(l), 1);
    ct_k8s_secret_list_free(l);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(list_many_pages_selectors)
{
    ct_k8s_client *c = kube("kubeconfig");
    ct_k8s_list_options lo = CT_K8S_LIST_OPTIONS_INIT;
    ct_k8s_secret_list *l = NULL;
    char name[32], val[32];
    ct_error err;
    size_t i, n;

    for (i = 0; i < 25; i++) {
        char lab[96];
        snprintf(name, sizeof name, "s-%02zu", i);
        snprintf(val, sizeof val, "value-%zu", i);
        {
            const char *kv[] = { "v", val, NULL };
            ck_assert_int_eq(fake_k8s_add_secret(g_fk, "payments", name, NULL, kv), 0);
        }
        if (i % 2 == 0) { /* label the even ones */
            char json[512];
            snprintf(lab, sizeof lab, "team-%zu", i);
            snprintf(json, sizeof json,
                     "{\"metadata\":{\"name\":\"l-%02zu\",\"namespace\":\"payments\","
                     "\"labels\":{\"app\":\"x\",\"team\":\"%s\"}},\"type\":\"Opaque\"}",
                     i, lab);
            ck_assert_int_eq(fake_k8s_add_secret_json(g_fk, json), 0);
        }
    }
    lo.limit = 4;
    ck_ok(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), &err);
    n = ct_k8s_secret_list_count(l);
    ck_assert_uint_eq(n, 38);
    ck_assert_uint_eq(ct_k8s_secret_list_pages(l), 10);
    for (i = 1; i < n; i++) /* sorted by name, no duplicates */
        ck_assert_int_lt(strcmp(ct_k8s_secret_name(ct_k8s_secret_list_get(l, i - 1)),
                                ct_k8s_secret_name(ct_k8s_secret_list_get(l, i))),
                         0);
    ck_assert_str_eq((const char *)ct_secret_data(
                         ct_k8s_secret_data_get(ct_k8s_secret_list_get(l, 13), "v")),
                     "value-0");
    ct_k8s_secret_list_free(l);

    /* a label selector goes on every page, escaped */
    fake_k8s_reset_log(g_fk);
    lo.label_selector = "app=x,team!=team-4";
    lo.limit = 3;
    ck_ok(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), &err);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 12);
    ck_assert_uint_eq(ct_k8s_secret_list_pages(l), 4);
    for (i = 0; i < 4; i++)
        ck_line(i, "limit=3&labelSelector=app=x,team!=team-4");
    ck_line(3, "&continue=");
    ct_k8s_secret_list_free(l);

    /* a field selector */
    lo.label_selector = NULL;
    lo.field_selector = "metadata.name=s-07";
    ck_ok(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), &err);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 1);
    ct_k8s_secret_list_free(l);
    lo.field_selector = "spec.nope=1";
    ck_err(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "field label not supported"));
    ck_assert_ptr_null(l);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(list_expired_continue)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_list_options lo = CT_K8S_LIST_OPTIONS_INIT;
    ct_k8s_secret_list *l = NULL;
    ct_k8s_client *c;
    ct_error err;
    size_t i;

    for (i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%zu", i);
        ck_assert_int_eq(fake_k8s_add_secret(g_fk, "payments", name, NULL, NULL), 0);
    }
    c = kube("kubeconfig");
    lo.limit = 3;
    /* one 410: the list starts again and ends consistent */
    fake_k8s_expire_continue(g_fk, 1);
    ck_ok(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), &err);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 10);
    ck_assert_int_eq(ct_k8s_secret_list_restarted(l), 1);
    ck_assert_uint_eq(ct_k8s_secret_list_pages(l), 4);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 6); /* 1 page, 410, 4 pages */
    ct_k8s_secret_list_free(l);
    l = NULL;

    /* two: CT_E_CONFLICT, saying what to do */
    fake_k8s_reset_log(g_fk);
    fake_k8s_expire_continue(g_fk, 2);
    ck_err(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "expired again"));
    ck_assert_int_eq(err.os_error, 410);
    ck_assert_ptr_null(l);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 4);

    /* compaction expires every token handed out */
    fake_k8s_compact(g_fk);
    fake_k8s_expire_continue(g_fk, 0);
    ck_ok(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), &err);
    ck_assert_int_eq(ct_k8s_secret_list_restarted(l), 0);
    ct_k8s_secret_list_free(l);
    ct_k8s_client_free(c);

    /* max_list_items */
    o.kubeconfig = path("kubeconfig");
    o.max_list_items = 5;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
    ck_err(ct_k8s_list_secrets(c, NULL, &lo, &l, &err), CT_E_TOOBIG, &err);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(delete_preconditions)
{
    ct_k8s_client *c = kube("kubeconfig");
    char uid[64], rv[64];
    int deleted = -1;
    ct_error err;

    fake_k8s_seed_fixture_secrets(g_fk);
    /* wrong uid: the 409 of k8s-status-409.json */
    ck_err(ct_k8s_delete_secret(c, NULL, "db-credentials", "d0f2a4c6-e8b0-4d2f-a4c6-e8b0d2f4a6c8",
                                "184377", &deleted, &err),
           CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "the UID in the precondition "
                                              "(d0f2a4c6-e8b0-4d2f-a4c6-e8b0d2f4a6c8) does not "
                                              "match the UID in record "
                                              "(b8e4d2f0-6a1c-4e3b-9d5f-7c9e1a3b5d7f)"));
    ck_assert_int_eq(deleted, 0);
    /* modified since read: stale resourceVersion */
    ck_assert_int_eq(fake_k8s_touch_secret(g_fk, "payments", "db-credentials"), 0);
    ck_err(ct_k8s_delete_secret(c, NULL, "db-credentials", "b8e4d2f0-6a1c-4e3b-9d5f-7c9e1a3b5d7f",
                                "184377", &deleted, &err),
           CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "the ResourceVersion in the precondition (184377)"));
    ck_assert_int_eq(fake_k8s_secret_meta(g_fk, "payments", "db-credentials", uid, rv), 1);
    /* no precondition at all: refused before any request */
    fake_k8s_reset_log(g_fk);
    ck_err(ct_k8s_delete_secret(c, NULL, "db-credentials", NULL, "", &deleted, &err),
           CT_E_INVALID, &err);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 0);
    /* right preconditions: gone */
    ck_ok(ct_k8s_delete_secret(c, NULL, "db-credentials", uid, rv, &deleted, &err), &err);
    ck_assert_int_eq(deleted, 1);
    ck_line(0, "DELETE /api/v1/namespaces/payments/secrets/db-credentials user=" USER
               " accept=application/json ctype=application/json");
    ck_assert_int_eq(fake_k8s_secret_meta(g_fk, "payments", "db-credentials", NULL, NULL), 0);
    /* again: 404 */
    ck_err(ct_k8s_delete_secret(c, NULL, "db-credentials", uid, NULL, &deleted, &err),
           CT_E_NOTFOUND, &err);
    /* uid only; a Secret kept by a finalizer */
    ck_assert_int_eq(fake_k8s_add_secret_json(g_fk, "{\"metadata\":{\"name\":\"kept\","
                                                    "\"namespace\":\"payments\",\"uid\":\"u-1\","
                                                    "\"finalizers\":[\"example.com/hold\"]},"
                                                    "\"type\":\"Opaque\"}"),
                     0);
    ck_ok(ct_k8s_delete_secret(c, NULL, "kept", "u-1", NULL, &deleted, &err), &err);
    ck_assert_int_eq(deleted, 0);
    ck_assert_int_eq(fake_k8s_secret_meta(g_fk, "payments", "kept", NULL, NULL), 1);
    ct_k8s_client_free(c);
}
END_TEST

/* --------------------------------------------------------- TokenReview */

START_TEST(token_review)
{
    ct_k8s_client *c = kube("kubeconfig");
    const char *aud = "https://kubernetes.default.svc.cluster.local";
    const char *other = "vault";
    ct_k8s_token_review *r = NULL;
    ct_error err;
    char *tok;
    size_t n;

    /* the fixture token, registered with the fixture's user */
    {
        const char *dir = getenv("CT_SHARED_FIXTURES");
        char p[1024];
        json_error_t je;
        json_t *req, *resp;
        char *user;
        ck_assert_ptr_nonnull(dir);
        snprintf(p, sizeof p, "%s/k8s-tokenreview-request.json", dir);
        req = json_load_file(p, 0, &je);
        ck_assert_ptr_nonnull(req);
        tok = strdup(json_string_value(json_object_get(json_object_get(req, "spec"), "token")));
        json_decref(req);
        snprintf(p, sizeof p, "%s/k8s-tokenreview-response.json", dir);
        resp = json_load_file(p, JSON_PRESERVE_ORDER, &je);
        ck_assert_ptr_nonnull(resp);
        user = json_dumps(json_object_get(json_object_get(resp, "status"), "user"),
                          JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(resp);
        fake_k8s_review_token(g_fk, tok, user, aud);
        free(user);
    }
    ck_ok(ct_k8s_create_token_review(c, tok, &aud, 1, &r, &err), &err);
    ck_assert_int_eq(ct_k8s_token_review_authenticated(r), 1);
    ck_assert_str_eq(ct_k8s_token_review_username(r), "system:serviceaccount:payments:payments-api");
    ck_assert_str_eq(ct_k8s_token_review_uid(r), "3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a");
    ck_assert_uint_eq(ct_k8s_token_review_group_count(r), 3);
    ck_assert_str_eq(ct_k8s_token_review_group(r, 1), "system:serviceaccounts:payments");
    ck_assert_uint_eq(ct_k8s_token_review_audience_count(r), 1);
    ck_assert_str_eq(ct_k8s_token_review_audience(r, 0), aud);
    ck_assert_str_eq(ct_k8s_token_review_error(r), "");
    ck_line(0, "POST /apis/authentication.k8s.io/v1/tokenreviews user=" USER
               " accept=application/json ctype=application/json");
    ct_k8s_token_review_free(r);
    r = NULL;

    /* without audiences: the token's own */
    ck_ok(ct_k8s_create_token_review(c, tok, NULL, 0, &r, &err), &err);
    ck_assert_int_eq(ct_k8s_token_review_authenticated(r), 1);
    ct_k8s_token_review_free(r);
    r = NULL;
    /* a wrong audience, an unknown token: not authenticated, with the reason */
    ck_ok(ct_k8s_create_token_review(c, tok, &other, 1, &r, &err), &err);
    ck_assert_int_eq(ct_k8s_token_review_authenticated(r), 0);
    ck_assert_ptr_nonnull(strstr(ct_k8s_token_review_error(r), "audiences"));
    ct_k8s_token_review_free(r);
    r = NULL;
    n = strlen(tok);
    tok[n - 3] = tok[n - 3] == 'A' ? 'B' : 'A';
    ck_ok(ct_k8s_create_token_review(c, tok, &aud, 1, &r, &err), &err);
    ck_assert_int_eq(ct_k8s_token_review_authenticated(r), 0);
    ck_assert_str_eq(ct_k8s_token_review_error(r),
                     "[invalid bearer token, service account token has expired]");
    ck_assert_str_eq(ct_k8s_token_review_username(r), "");
    ct_k8s_token_review_free(r);
    r = NULL;
    ck_err(ct_k8s_create_token_review(c, "", NULL, 0, &r, &err), CT_E_INVALID, &err);

    /* POST is never retried: one 500, one request, CT_E_IO */
    fake_k8s_reset_log(g_fk);
    fake_k8s_inject(g_fk, FK_FAULT_500, 1, NULL);
    ck_err(ct_k8s_create_token_review(c, tok, &aud, 1, &r, &err), CT_E_IO, &err);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 1);
    /* a reset after sending: the outcome is unknown, and said so */
    fake_k8s_inject(g_fk, FK_FAULT_RESET, 1, NULL);
    ck_err(ct_k8s_create_token_review(c, tok, &aud, 1, &r, &err), CT_E_RESET, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "outcome is unknown"));
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 2);
    ck_assert_ptr_null(r);
    free(tok);
    ct_k8s_client_free(c);

    /* no RBAC for tokenreviews */
    fake_k8s_add_token(g_fk, "reader", "reader", FK_GET_NAMESPACES);
    {
        char text[4096];
        snprintf(text, sizeof text,
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%u', "
                 "certificate-authority: %s/ca.pem}}]\n"
                 "users: [{name: u, user: {token: reader}}]\n",
                 fake_k8s_port(g_fk), g_tls);
        write_text("kc-reader", text);
    }
    c = kube("kc-reader");
    ck_err(ct_k8s_create_token_review(c, "x.y.z", NULL, 0, &r, &err), CT_E_DENIED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "tokenreviews.authentication.k8s.io is forbidden"));
    ct_k8s_client_free(c);
}
END_TEST

/* ---------------------------------------------------------------- JWKS */

START_TEST(jwks)
{
    ct_k8s_client *c = kube("kubeconfig");
    ct_jwks *set = NULL;
    char *json = NULL, *big;
    size_t len = 0;
    ct_error err;

    ck_ok(ct_k8s_get_jwks(c, &json, &len, &err), &err);
    ck_assert_uint_eq(strlen(json), len);
    ck_assert_ptr_nonnull(strstr(json, "\"kid\":\"dKbZue6Fd-LfHhodbTb4iQcXQt_PFx29stWe2TuCMHE\""));
    ck_ok(ct_jwks_parse(g_ctx, json, len, &set, &err), &err);
    ck_assert_uint_eq(ct_jwks_count(set), 1);
    ct_jwks_free(set);
    ct_free(json);
    json = NULL;
    ck_line(0, "GET /openid/v1/jwks user=" USER " accept=application/jwk-set+json, "
               "application/json");

    /* bounded at CT_JWKS_MAX_LEN */
    big = malloc(CT_JWKS_MAX_LEN + 100);
    memset(big, ' ', CT_JWKS_MAX_LEN + 99);
    memcpy(big, "{\"keys\":[]", 10);
    big[CT_JWKS_MAX_LEN + 98] = '}';
    big[CT_JWKS_MAX_LEN + 99] = '\0';
    fake_k8s_set_jwks(g_fk, big);
    free(big);
    ck_err(ct_k8s_get_jwks(c, &json, &len, &err), CT_E_TOOBIG, &err);
    ck_assert_ptr_null(json);
    fake_k8s_set_jwks(g_fk, "{\"nokeys\":1}");
    ck_err(ct_k8s_get_jwks(c, &json, &len, &err), CT_E_PROTO, &err);
    ct_k8s_client_free(c);
}
END_TEST

/* -------------------------------------------------------------- faults */

START_TEST(faults_retried)
{
    ct_k8s_client *c = kube("kubeconfig");
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_error err;

    /* transient 500s, 503, 429 (Retry-After 0), a reset, a proxy's 502: retried to success */
    static const fake_k8s_fault ok_after[] = { FK_FAULT_500, FK_FAULT_503, FK_FAULT_429,
                                               FK_FAULT_RESET, FK_FAULT_HTML };
    size_t i;
    fake_k8s_set_retry_after(g_fk, 0);
    for (i = 0; i < sizeof ok_after / sizeof ok_after[0]; i++) {
        fake_k8s_reset_log(g_fk);
        fake_k8s_inject(g_fk, ok_after[i], 2, NULL);
        ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
        ck_assert_str_eq(fp, FIXTURE_UID);
        ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 3);
    }
    /* persistent: 1 + 3 attempts, then a clear error */
    fake_k8s_reset_log(g_fk);
    fake_k8s_inject(g_fk, FK_FAULT_500, 100, NULL);
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_IO, &err);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 4);
    ck_assert_ptr_nonnull(strstr(err.message, "API server error 500: Internal error occurred"));
    ck_assert_ptr_nonnull(strstr(err.message, "after 4 attempts"));
    ck_assert_int_eq(err.os_error, 500);
    fake_k8s_reset_log(g_fk);
    fake_k8s_inject(g_fk, FK_FAULT_429, 100, NULL);
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_IO, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "rate limiting"));
    fake_k8s_reset_log(g_fk);
    fake_k8s_inject(g_fk, FK_FAULT_RESET, 100, NULL);
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_RESET, &err);
    /*
     * 4 attempts; libcurl itself re-sends a GET once when a reused
     * connection turns out dead before any answer, hence up to 5.
     */
    ck_assert_uint_ge(fake_k8s_requests(g_fk, NULL), 4);
    ck_assert_uint_le(fake_k8s_requests(g_fk, NULL), 5);
    fake_k8s_inject(g_fk, FK_FAULT_NONE, 0, NULL);
    ct_k8s_client_free(c);

    /* retries off */
    {
        ct_k8s_options o = CT_K8S_OPTIONS_INIT;
        o.kubeconfig = path("kubeconfig");
        o.get_retries = -1;
        ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
        fake_k8s_reset_log(g_fk);
        fake_k8s_inject(g_fk, FK_FAULT_503, 1, NULL);
        ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_IO, &err);
        ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 1);
        ct_k8s_client_free(c);
    }
}
END_TEST

START_TEST(retry_after_honoured)
{
    ct_k8s_client *c = kube("kubeconfig");
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_error err;
    int64_t t0;
    fake_k8s_set_retry_after(g_fk, 1);
    fake_k8s_inject(g_fk, FK_FAULT_429, 1, NULL);
    t0 = now_ms();
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);
    ck_assert_int_ge(now_ms() - t0, 900);
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 2);
    ct_k8s_client_free(c);
}
END_TEST

START_TEST(faults_fatal)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ct_k8s_secret *s = NULL;
    ct_k8s_client *c;
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_error err;
    int64_t t0;

    o.kubeconfig = path("kubeconfig");
    o.retry_base_ms = 10;
    o.timeout_ms = tmul(600);
    o.max_response = 1 << 20;
    ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);

    /* slow: the request times out, and a timeout is not retried */
    fake_k8s_set_slow_ms(g_fk, tmul(3000));
    fake_k8s_inject(g_fk, FK_FAULT_SLOW, 1, NULL);
    t0 = now_ms();
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_TIMEOUT, &err);
    ck_assert_int_lt(now_ms() - t0, tmul(2500));
    ck_assert_uint_eq(fake_k8s_requests(g_fk, NULL), 1);
    /* slow but within the deadline: fine */
    fake_k8s_set_slow_ms(g_fk, 200);
    fake_k8s_inject(g_fk, FK_FAULT_SLOW, 1, NULL);
    ck_ok(ct_fingerprint(g_ctx, c, fp, &err), &err);

    /* oversized: stopped at the limit */
    t0 = now_ms();
    fake_k8s_inject(g_fk, FK_FAULT_OVERSIZED, 1, NULL);
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_TOOBIG, &err);
    ck_assert_int_lt(now_ms() - t0, tmul(2000));
    /* malformed JSON */
    fake_k8s_inject(g_fk, FK_FAULT_MALFORMED, 1, NULL);
    ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_PROTO, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "not JSON"));
    fake_k8s_inject(g_fk, FK_FAULT_MALFORMED, 1, NULL);
    ck_err(ct_k8s_get_secret(c, NULL, "x", &s, &err), CT_E_PROTO, &err);
    ck_assert_ptr_null(s);
    ct_k8s_client_free(c);

    /* nothing listening: refused, retried, bounded */
    {
        char text[4096];
        snprintf(text, sizeof text,
                 "current-context: x\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
                 "certificate-authority: %s/ca.pem}}]\n"
                 "users: [{name: u, user: {token: t}}]\n",
                 g_tls);
        write_text("kc-closed", text);
        o.kubeconfig = path("kc-closed");
        ck_ok(ct_k8s_client_new(g_ctx, &o, &c, &err), &err);
        t0 = now_ms();
        ck_err(ct_fingerprint(g_ctx, c, fp, &err), CT_E_REFUSED, &err);
        ck_assert_int_lt(now_ms() - t0, 3000);
        ct_k8s_client_free(c);
    }
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("k8s");
    TCase *tc = tcase_create("client");
    int vg = ct_test_under_valgrind();
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, vg ? 600 : 60);
    tcase_add_test(tc, kubeconfig_token);
    tcase_add_test(tc, kubeconfig_client_cert);
    tcase_add_test(tc, fingerprint_canonical);
    tcase_add_test(tc, in_cluster);
    tcase_add_test(tc, auto_and_env);
    tcase_add_test(tc, kubeconfig_list);
    tcase_add_test(tc, kubeconfig_refusals);
    tcase_add_test(tc, unauthorized_and_forbidden);
    tcase_add_test(tc, token_rotation);
    tcase_add_test(tc, get_secret);
    tcase_add_test(tc, list_fixture_pages);
    tcase_add_test(tc, list_many_pages_selectors);
    tcase_add_test(tc, list_expired_continue);
    tcase_add_test(tc, delete_preconditions);
    tcase_add_test(tc, token_review);
    tcase_add_test(tc, jwks);
    tcase_add_test(tc, faults_retried);
    tcase_add_test(tc, retry_after_honoured);
    tcase_add_test(tc, faults_fatal);
    suite_add_tcase(s, tc);
    return s;
}
