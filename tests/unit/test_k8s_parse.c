/*
 * test_k8s_parse.c - the Kubernetes client's pure parsers (k8s_internal.h):
 * kubeconfig files (every credential form, data vs file, contexts, missing
 * fields, plugin refusal, YAML garbage and limits, merging a KUBECONFIG
 * list), server URLs, and the API
 * JSON (Status mapping, Namespace, Secret, SecretList pages, DELETE
 * answers, TokenReview, request bodies) checked against the fixture files
 * in ../shared/fixtures (CT_SHARED_FIXTURES).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_internal.h"
#include "testutil.h"

/* base64 of "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" */
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
/* base64 of "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n" */
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUUKLS0tLS1FTkQgUFJJVkFURSBLRVktLS0tLQo="
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"

static ct_err parse(const char *yaml, const char *context, ctp_kubeconfig *k, ct_error *err)
{
    return ctp_kubeconfig_parse(yaml, strlen(yaml), context, "test.yaml", "/etc/kube", k, err);
}

/* A kubeconfig with one cluster/context and the given user body. */
static char *with_user(const char *user_body)
{
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "apiVersion: v1\n"
             "kind: Config\n"
             "current-context: prod\n"
             "clusters:\n"
             "- name: prod\n"
             "  cluster:\n"
             "    server: https://203.0.113.10:6443/\n"
             "    certificate-authority-data: " CA_B64 "\n"
             "contexts:\n"
             "- name: prod\n"
             "  context: {cluster: prod, user: sa, namespace: payments}\n"
             "users:\n"
             "- name: sa\n"
             "  user:\n"
             "%s",
             user_body);
    return buf;
}

/* ---------------------------------------------------------- kubeconfig */

START_TEST(kc_token)
{
    ctp_kubeconfig k;
    ct_error err;
    ck_ok(parse(with_user("    token: abc.def-ghi\n"), NULL, &k, &err), &err);
    ck_assert_str_eq(k.context, "prod");
    ck_assert_str_eq(k.cluster, "prod");
    ck_assert_str_eq(k.user, "sa");
    ck_assert_str_eq(k.server, "https://203.0.113.10:6443"); /* trailing '/' dropped */
    ck_assert_str_eq(k.ns, "payments");
    ck_assert_uint_eq(k.ca_pem_len, strlen(CA_PEM));
    ck_assert_mem_eq(k.ca_pem, CA_PEM, strlen(CA_PEM));
    ck_assert_ptr_null(k.ca_file);
    ck_assert_ptr_nonnull(k.token);
    ck_assert_str_eq((const char *)ct_secret_data(k.token), "abc.def-ghi");
    ck_assert_ptr_null(k.token_file);
    ck_assert_ptr_null(k.cert_pem);
    ck_assert_ptr_null(k.key_pem);
    ck_assert_int_eq(k.insecure, 0);
    ctp_kubeconfig_clear(&k);
    ck_assert_ptr_null(k.server);
    /* an empty context name (--context "$UNSET") means the current context */
    ck_ok(parse(with_user("    token: abc.def-ghi\n"), "", &k, &err), &err);
    ck_assert_str_eq(k.context, "prod");
    ctp_kubeconfig_clear(&k);
}
END_TEST

START_TEST(kc_token_file)
{
    ctp_kubeconfig k;
    ct_error err;
    /* tokenFile wins over token, and relative paths follow the file's directory */
    ck_ok(parse(with_user("    token: static\n    tokenFile: tok/en\n"), NULL, &k, &err), &err);
    ck_assert_str_eq(k.token_file, "/etc/kube/tok/en");
    ck_assert_ptr_null(k.token);
    ctp_kubeconfig_clear(&k);
    ck_ok(parse(with_user("    tokenFile: /abs/token\n"), NULL, &k, &err), &err);
    ck_assert_str_eq(k.token_file, "/abs/token");
    ctp_kubeconfig_clear(&k);
}
END_TEST

START_TEST(kc_client_cert_data)
{
    ctp_kubeconfig k;
    ct_error err;
    ck_ok(parse(with_user("    client-certificate-data: " CA_B64 "\n"
                          "    client-key-data: " KEY_B64 "\n"
                          "    client-certificate: ignored.crt\n"),
                NULL, &k, &err),
          &err);
    ck_assert_ptr_nonnull(k.cert_pem);
    ck_assert_mem_eq(k.cert_pem, CA_PEM, strlen(CA_PEM));
    ck_assert_ptr_null(k.cert_file); /* data wins */
    ck_assert_ptr_nonnull(k.key_pem);
    ck_assert_uint_eq(ct_secret_len(k.key_pem), strlen(KEY_PEM));
    ck_assert_mem_eq(ct_secret_data(k.key_pem), KEY_PEM, strlen(KEY_PEM));
    ck_assert_ptr_null(k.token);
    ctp_kubeconfig_clear(&k);
}
END_TEST

START_TEST(kc_client_cert_files)
{
    ctp_kubeconfig k;
    ct_error err;
    const char *y =
        "current-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://[2001:db8::1]:443', "
        "certificate-authority: ca.crt}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "users: [{name: u, user: {client-certificate: /pki/u.crt, client-key: u.key, "
        "token: t0k}}]\n";
    ck_ok(parse(y, NULL, &k, &err), &err);
    ck_assert_str_eq(k.server, "https://[2001:db8::1]:443");
    ck_assert_str_eq(k.ca_file, "/etc/kube/ca.crt");
    ck_assert_ptr_null(k.ca_pem);
    ck_assert_str_eq(k.cert_file, "/pki/u.crt");
    ck_assert_str_eq(k.key_file, "/etc/kube/u.key");
    ck_assert_str_eq((const char *)ct_secret_data(k.token), "t0k"); /* both may be used */
    ck_assert_str_eq(k.ns, "");
    ctp_kubeconfig_clear(&k);
}
END_TEST

START_TEST(kc_json_form)
{
    ctp_kubeconfig k;
    ct_error err;
    const char *j =
        "{\"kind\":\"Config\",\"apiVersion\":\"v1\",\"current-context\":\"a\","
        "\"clusters\":[{\"name\":\"a\",\"cluster\":{\"server\":\"https://k8s.example:6443\","
        "\"certificate-authority-data\":\"" CA_B64 "\"}}],"
        "\"contexts\":[{\"name\":\"a\",\"context\":{\"cluster\":\"a\",\"user\":\"a\"}}],"
        "\"users\":[{\"name\":\"a\",\"user\":{\"token\":\"tok\"}}]}";
    ck_ok(parse(j, NULL, &k, &err), &err);
    ck_assert_str_eq(k.server, "https://k8s.example:6443");
    ctp_kubeconfig_clear(&k);
}
END_TEST

static const char *k_two =
    "current-context: one\n"
    "clusters:\n"
    "- {name: c1, cluster: {server: 'https://one.example'}}\n"
    "- {name: c2, cluster: {server: 'https://two.example:8443', insecure-skip-tls-verify: true}}\n"
    "contexts:\n"
    "- {name: one, context: {cluster: c1, user: u1}}\n"
    "- {name: two, context: {cluster: c2, user: u2, namespace: ns-two}}\n"
    "- {name: anon, context: {cluster: c1}}\n"
    "- {name: nouser, context: {cluster: c1, user: ghost}}\n"
    "- {name: nocluster, context: {cluster: ghost, user: u1}}\n"
    "users:\n"
    "- {name: u1, user: {token: one}}\n"
    "- {name: u2, user: {token: two}}\n";

START_TEST(kc_contexts)
{
    ctp_kubeconfig k;
    ct_error err;
    ck_ok(parse(k_two, NULL, &k, &err), &err);
    ck_assert_str_eq(k.context, "one");
    ck_assert_str_eq(k.server, "https://one.example");
    ck_assert_ptr_null(k.ca_file);
    ck_assert_ptr_null(k.ca_pem); /* no CA: the system's */
    ctp_kubeconfig_clear(&k);

    ck_ok(parse(k_two, "two", &k, &err), &err);
    ck_assert_str_eq(k.server, "https://two.example:8443");
    ck_assert_str_eq(k.ns, "ns-two");
    ck_assert_int_eq(k.insecure, 1);
    ck_assert_str_eq((const char *)ct_secret_data(k.token), "two");
    ctp_kubeconfig_clear(&k);

    ck_ok(parse(k_two, "anon", &k, &err), &err); /* no user: anonymous */
    ck_assert_str_eq(k.user, "");
    ck_assert_ptr_null(k.token);
    ctp_kubeconfig_clear(&k);

    ck_err(parse(k_two, "missing", &k, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "no context named \"missing\""));
    ck_err(parse(k_two, "nouser", &k, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "user named \"ghost\""));
    ck_err(parse(k_two, "nocluster", &k, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "cluster named \"ghost\""));
    ck_assert_ptr_null(k.context); /* cleared on error */
}
END_TEST

START_TEST(kc_missing_fields)
{
    ctp_kubeconfig k;
    ct_error err;
    ck_err(parse("clusters: []\n", NULL, &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "no current-context"));
    ck_err(parse("current-context: x\n", NULL, &k, &err), CT_E_NOTFOUND, &err);
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {user: u}}]\n", NULL, &k,
                 &err),
           CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "names no cluster"));
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {}}]\n",
                 NULL, &k, &err),
           CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "has no server"));
    ck_err(parse("current-context: x\ncontexts: [{name: x}]\n", NULL, &k, &err), CT_E_INVALID,
           &err);
    ck_err(parse("current-context: x\ncontexts: {x: 1}\n", NULL, &k, &err), CT_E_INVALID, &err);
    ck_err(parse("current-context: x\ncontexts: [{context: {cluster: c}}]\n", NULL, &k, &err),
           CT_E_INVALID, &err);
    ck_err(parse("kind: Pod\ncurrent-context: x\n", NULL, &k, &err), CT_E_INVALID, &err);
    ck_err(parse("current-context: [a]\n", NULL, &k, &err), CT_E_INVALID, &err);
    /* two entries with the same name */
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {cluster: c}}, "
                 "{name: x, context: {cluster: d}}]\n",
                 NULL, &k, &err),
           CT_E_INVALID, &err);
    /* a certificate without its key and the other way round */
    ck_err(parse(with_user("    client-certificate-data: " CA_B64 "\n"), NULL, &k, &err),
           CT_E_INVALID, &err);
    ck_err(parse(with_user("    client-key: k.pem\n"), NULL, &k, &err), CT_E_INVALID, &err);
    /* bad data */
    ck_err(parse(with_user("    client-certificate-data: '!!'\n    client-key-data: " KEY_B64
                           "\n"),
                 NULL, &k, &err),
           CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "not valid base64"));
    ck_err(parse(with_user("    client-certificate-data: aGVsbG8=\n    client-key-data: " KEY_B64
                           "\n"),
                 NULL, &k, &err),
           CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "does not decode to PEM"));
    /* a token that would break the header */
    ck_err(parse(with_user("    token: \"a b\"\n"), NULL, &k, &err), CT_E_INVALID, &err);
    ck_err(parse(with_user("    token: \"a\\r\\nX-Evil: 1\"\n"), NULL, &k, &err), CT_E_INVALID,
           &err);
    /* booleans */
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://a', "
                 "insecure-skip-tls-verify: maybe}}]\n",
                 NULL, &k, &err),
           CT_E_INVALID, &err);
    ck_assert_ptr_null(k.server);
}
END_TEST

START_TEST(kc_plugins_refused)
{
    ctp_kubeconfig k;
    ct_error err;
    ck_err(parse(with_user("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                           "      command: aws\n      args: [eks, get-token]\n"),
                 NULL, &k, &err),
           CT_E_UNSUPPORTED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "exec credential plugins are not supported; use "
                                              "a token or client certificate"));
    ck_err(parse(with_user("    auth-provider:\n      name: gcp\n"), NULL, &k, &err),
           CT_E_UNSUPPORTED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "auth-provider"));
    ck_assert_ptr_nonnull(strstr(err.message, "use a token or client certificate"));
    ck_err(parse(with_user("    username: admin\n    password: secret\n"), NULL, &k, &err),
           CT_E_UNSUPPORTED, &err);
    ck_err(parse(with_user("    token: t\n    as: someone\n"), NULL, &k, &err), CT_E_UNSUPPORTED,
           &err);
    /* exec: null is no plugin */
    ck_ok(parse(with_user("    token: t\n    exec: null\n"), NULL, &k, &err), &err);
    ctp_kubeconfig_clear(&k);
    /* cluster-side refusals */
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {server: 'http://10.0.0.1:8080'}}]\n",
                 NULL, &k, &err),
           CT_E_UNSUPPORTED, &err);
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://a', proxy-url: "
                 "'http://proxy:3128'}}]\n",
                 NULL, &k, &err),
           CT_E_UNSUPPORTED, &err);
    ck_err(parse("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                 "clusters: [{name: c, cluster: {server: 'https://a', tls-server-name: b}}]\n",
                 NULL, &k, &err),
           CT_E_UNSUPPORTED, &err);
}
END_TEST

START_TEST(kc_yaml_garbage)
{
    static const char *const bad[] = {
        "{{{", "key: [unclosed", "a: b\n c: d\n", "- a\nb: c\n", "\t- tab", "\"unterminated",
        "a: !!binary ~\n: :", "%YAML 9.9\n---\na: b", "@reserved", "a: |\n x\n  - : [",
    };
    ctp_kubeconfig k;
    ct_error err;
    size_t i;
    uint8_t junk[512];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ct_err rc = parse(bad[i], NULL, &k, &err);
        ck_assert_msg(rc == CT_E_INVALID || rc == CT_E_NOTFOUND, "%s -> %s", bad[i],
                      ct_err_name(rc));
        ck_assert_ptr_null(k.server);
    }
    /* empty, scalar root, sequence root */
    ck_err(parse("", NULL, &k, &err), CT_E_INVALID, &err);
    ck_err(parse("just text", NULL, &k, &err), CT_E_INVALID, &err);
    ck_err(parse("- a\n- b\n", NULL, &k, &err), CT_E_INVALID, &err);
    /* binary junk, NULs included */
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    ck_assert_int_ne(ctp_kubeconfig_parse((const char *)junk, sizeof junk, NULL, "junk", NULL,
                                          &k, &err),
                     CT_OK);
    /* NUL inside a key or value */
    ck_assert_int_ne(ctp_kubeconfig_parse("current-context: \"a\\0b\"\n", strlen("current-context: \"a\\0b\"\n"), NULL, "nul", NULL,
                                          &k, &err),
                     CT_OK);
}
END_TEST

START_TEST(kc_limits)
{
    ctp_kubeconfig k;
    ct_error err;
    size_t i, n;
    char *s;

    /* anchors and aliases: refused (billion laughs) */
    ck_err(parse("a: &x [1, 2]\nb: *x\n", NULL, &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "anchors"));
    ck_err(parse("a: *x\n", NULL, &k, &err), CT_E_INVALID, &err);
    /* duplicate keys, more than one document */
    ck_err(parse("current-context: a\ncurrent-context: b\n", NULL, &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "duplicate key"));
    ck_err(parse("a: b\n---\nc: d\n", NULL, &k, &err), CT_E_INVALID, &err);

    /* depth: 40 nested flow sequences */
    s = calloc(1, 200);
    for (i = 0; i < 40; i++)
        s[i] = '[';
    for (i = 0; i < 40; i++)
        s[40 + i] = ']';
    ck_err(parse(s, NULL, &k, &err), CT_E_TOOBIG, &err);
    free(s);

    /* nodes: 30000 scalars in one sequence */
    n = 30000;
    s = malloc(n * 3 + 16);
    {
        char *p = s + 4;
        memcpy(s, "x: [", 4);
        for (i = 0; i < n; i++) {
            if (i)
                *p++ = ',';
            *p++ = '1';
        }
        strcpy(p, "]");
    }
    ck_err(parse(s, NULL, &k, &err), CT_E_TOOBIG, &err);
    free(s);

    /* keys per mapping */
    s = malloc(2000 * 16);
    {
        char *p = s;
        for (i = 0; i < 1100; i++)
            p += sprintf(p, "k%zu: 1\n", i);
    }
    ck_err(parse(s, NULL, &k, &err), CT_E_TOOBIG, &err);
    free(s);

    /* size */
    n = CT_K8S_KUBECONFIG_MAX + 1;
    s = malloc(n);
    memset(s, ' ', n);
    ck_err(ctp_kubeconfig_parse(s, n, NULL, "big", NULL, &k, &err), CT_E_TOOBIG, &err);
    free(s);
}
END_TEST

/* ------------------------------------------------- kubeconfig merging */

/* Merges texts[0..n), named /dir<i>/f<i>.yaml with base dir /dir<i>. */
static ct_err merge(const char *const *texts, size_t n, const char *context, ctp_kubeconfig *k,
                    ct_error *err)
{
    static char where[CTP_KUBECONFIG_MAX_FILES + 4][32], dirs[CTP_KUBECONFIG_MAX_FILES + 4][32];
    ctp_kubeconfig_src src[CTP_KUBECONFIG_MAX_FILES + 4];
    size_t i;
    ck_assert_uint_le(n, CTP_KUBECONFIG_MAX_FILES + 4);
    for (i = 0; i < n; i++) {
        snprintf(where[i], sizeof where[i], "/dir%zu/f%zu.yaml", i, i);
        snprintf(dirs[i], sizeof dirs[i], "/dir%zu", i);
        src[i].text = texts[i];
        src[i].len = strlen(texts[i]);
        src[i].where = where[i];
        src[i].base_dir = dirs[i];
    }
    return ctp_kubeconfig_merge(src, n, context, k, err);
}

/* The first file names no current-context; the second does, and defines the user. */
static const char m_first[] =
    "apiVersion: v1\n"
    "kind: Config\n"
    "clusters:\n"
    "- {name: shared, cluster: {server: 'https://first.example', certificate-authority: ca.pem}}\n"
    "contexts:\n"
    "- {name: dev, context: {cluster: shared, user: alice}}\n"
    "- {name: both, context: {cluster: shared, user: alice}}\n"
    "users:\n"
    "- {name: alice, user: {token: from-first}}\n";
static const char m_second[] =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: dev\n"
    "clusters:\n"
    "- {name: shared, cluster: {server: 'https://second.example', insecure-skip-tls-verify: true}}\n"
    "- {name: own, cluster: {server: 'https://own.example:8443', certificate-authority: "
    "certs/own-ca.pem}}\n"
    "contexts:\n"
    "- {name: both, context: {cluster: own, user: bob, namespace: second-ns}}\n"
    "- {name: bobs, context: {cluster: own, user: bob}}\n"
    "- {name: mixed, context: {cluster: shared, user: bob}}\n"
    "users:\n"
    "- {name: alice, user: {token: from-second, client-certificate: c.pem, client-key: k.pem}}\n"
    "- {name: bob, user: {tokenFile: bob.token, client-certificate: /abs/bob.pem, "
    "client-key: bob-key.pem}}\n";

START_TEST(kc_merge_two)
{
    const char *t[2] = { m_first, m_second };
    ctp_kubeconfig k;
    ct_error err;

    /* current-context from the second file; context, cluster, user from the first */
    ck_ok(merge(t, 2, NULL, &k, &err), &err);
    ck_assert_str_eq(k.context, "dev");
    ck_assert_str_eq(k.server, "https://first.example");
    ck_assert_str_eq(k.ca_file, "/dir0/ca.pem");
    ck_assert_int_eq(k.insecure, 0); /* the second file's "shared" is ignored whole */
    ck_assert_str_eq((const char *)ct_secret_data(k.token), "from-first");
    ck_assert_ptr_null(k.cert_file); /* never merged field by field */
    ck_assert_uint_eq(k.context_src, 0);
    ck_assert_uint_eq(k.cluster_src, 0);
    ck_assert_uint_eq(k.user_src, 0);
    ctp_kubeconfig_clear(&k);

    /* the same context name in both files: the first file's wins whole */
    ck_ok(merge(t, 2, "both", &k, &err), &err);
    ck_assert_str_eq(k.cluster, "shared");
    ck_assert_str_eq(k.user, "alice");
    ck_assert_str_eq(k.ns, "");
    ctp_kubeconfig_clear(&k);

    /* a context and user defined only in the second file; paths from its directory */
    ck_ok(merge(t, 2, "bobs", &k, &err), &err);
    ck_assert_str_eq(k.server, "https://own.example:8443");
    ck_assert_str_eq(k.ca_file, "/dir1/certs/own-ca.pem");
    ck_assert_str_eq(k.token_file, "/dir1/bob.token");
    ck_assert_str_eq(k.cert_file, "/abs/bob.pem");
    ck_assert_str_eq(k.key_file, "/dir1/bob-key.pem");
    ck_assert_uint_eq(k.context_src, 1);
    ck_assert_uint_eq(k.cluster_src, 1);
    ck_assert_uint_eq(k.user_src, 1);
    ctp_kubeconfig_clear(&k);

    /* a context of the second file naming a cluster the first file defines */
    ck_ok(merge(t, 2, "mixed", &k, &err), &err);
    ck_assert_str_eq(k.server, "https://first.example");
    ck_assert_str_eq(k.ca_file, "/dir0/ca.pem");
    ck_assert_str_eq(k.token_file, "/dir1/bob.token");
    ck_assert_uint_eq(k.context_src, 1);
    ck_assert_uint_eq(k.cluster_src, 0);
    ck_assert_uint_eq(k.user_src, 1);
    ctp_kubeconfig_clear(&k);

    /* order matters: second file first */
    t[0] = m_second;
    t[1] = m_first;
    ck_ok(merge(t, 2, NULL, &k, &err), &err);
    ck_assert_str_eq(k.context, "dev");
    ck_assert_uint_eq(k.context_src, 1);
    ck_assert_str_eq(k.server, "https://second.example");
    ck_assert_int_eq(k.insecure, 1);
    ck_assert_str_eq((const char *)ct_secret_data(k.token), "from-second");
    ck_assert_str_eq(k.cert_file, "/dir0/c.pem");
    ctp_kubeconfig_clear(&k);

    /* a name no file defines: the message names the files */
    t[0] = m_first;
    t[1] = m_second;
    ck_err(merge(t, 2, "ghost", &k, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "/dir0/f0.yaml:/dir1/f1.yaml"));
    ck_assert_ptr_nonnull(strstr(err.message, "no context named \"ghost\""));
    ck_assert_ptr_null(k.context);
}
END_TEST

START_TEST(kc_merge_three)
{
    static const char a[] = "kind: Config\n"
                            "preferences: {}\n"
                            "users:\n- {name: u, user: {token: ta}}\n";
    static const char b[] = "current-context: c\n"
                            "contexts:\n- {name: c, context: {cluster: k, user: u, "
                            "namespace: from-b}}\n";
    static const char c[] = "current-context: other\n"
                            "clusters:\n- {name: k, cluster: {server: 'https://third.example/',"
                            " certificate-authority: ../ca/ca.crt}}\n"
                            "contexts:\n- {name: c, context: {cluster: nope}}\n"
                            "users:\n- {name: u, user: {exec: {command: evil}}}\n";
    const char *t[3] = { a, b, c };
    ctp_kubeconfig k;
    ct_error err;

    ck_ok(merge(t, 3, NULL, &k, &err), &err);
    ck_assert_str_eq(k.context, "c");
    ck_assert_str_eq(k.ns, "from-b");
    ck_assert_str_eq(k.server, "https://third.example");
    ck_assert_str_eq(k.ca_file, "/dir2/../ca/ca.crt");
    ck_assert_str_eq((const char *)ct_secret_data(k.token), "ta"); /* not the exec user */
    ck_assert_uint_eq(k.context_src, 1);
    ck_assert_uint_eq(k.cluster_src, 2);
    ck_assert_uint_eq(k.user_src, 0);
    ctp_kubeconfig_clear(&k);

    /* the exec user wins when its file comes first: still refused, naming its file */
    t[0] = c;
    t[1] = b;
    t[2] = a;
    ck_err(merge(t, 3, "c", &k, &err), CT_E_NOTFOUND, &err); /* c's context: cluster nope */
    ck_assert_ptr_nonnull(strstr(err.message, "cluster named \"nope\""));
    t[0] = b;
    t[1] = c;
    t[2] = a;
    ck_err(merge(t, 3, NULL, &k, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "/dir1/f1.yaml"));
    ck_assert_ptr_nonnull(strstr(err.message, "exec credential plugins are not supported"));
    ck_assert_ptr_null(k.context);
}
END_TEST

START_TEST(kc_merge_errors)
{
    static const char ok[] = "current-context: x\n"
                             "clusters: [{name: k, cluster: {server: 'https://k.example'}}]\n"
                             "contexts: [{name: x, context: {cluster: k}}]\n";
    static const char *const bad[] = {
        "clusters: [unclosed\n",                     /* YAML */
        "- a\n- b\n",                                /* not a mapping */
        "kind: Pod\n",                               /* kind */
        "clusters: 5\n",                             /* not a list */
        "users: [{user: {token: t}}]\n",             /* an entry without a name */
        "current-context: [a]\n",                    /* not a string */
        "a: &x 1\nb: *x\n",                          /* aliases */
    };
    const char *t[CTP_KUBECONFIG_MAX_FILES + 1];
    ctp_kubeconfig k;
    ct_error err;
    size_t i;

    /* a malformed second file is an error naming it, although nothing comes from it */
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t[0] = ok;
        t[1] = bad[i];
        ck_err(merge(t, 2, NULL, &k, &err), CT_E_INVALID, &err);
        ck_assert_msg(strstr(err.message, "/dir1/f1.yaml") != NULL, "%s: %s", bad[i],
                      err.message);
        ck_assert_ptr_null(k.context);
    }
    /* two entries of one name in one file: an error; across files: the first wins */
    t[0] = "contexts: [{name: x, context: {cluster: k}}, {name: x, context: {cluster: k}}]\n";
    t[1] = ok;
    ck_err(merge(t, 2, "x", &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "two entries named \"x\""));
    ck_assert_ptr_nonnull(strstr(err.message, "/dir0/f0.yaml"));

    /* an empty file in a list is an empty configuration; alone it is an error */
    t[0] = "";
    t[1] = "# only a comment\n";
    t[2] = ok;
    ck_ok(merge(t, 3, NULL, &k, &err), &err);
    ck_assert_str_eq(k.server, "https://k.example");
    ck_assert_uint_eq(k.context_src, 2);
    ctp_kubeconfig_clear(&k);
    ck_err(merge(t, 1, NULL, &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "empty"));

    /* no file sets current-context */
    t[0] = "kind: Config\n";
    t[1] = "clusters: []\n";
    ck_err(merge(t, 2, NULL, &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "none of the kubeconfig files"));
    ck_assert_ptr_nonnull(strstr(err.message, "/dir1/f1.yaml"));

    /* limits: the number of files, the size of each */
    for (i = 0; i < CTP_KUBECONFIG_MAX_FILES + 1; i++)
        t[i] = ok;
    ck_ok(merge(t, CTP_KUBECONFIG_MAX_FILES, NULL, &k, &err), &err);
    ctp_kubeconfig_clear(&k);
    ck_err(merge(t, CTP_KUBECONFIG_MAX_FILES + 1, NULL, &k, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "more than 16 files"));
    ck_err(ctp_kubeconfig_merge(NULL, 0, NULL, &k, &err), CT_E_INVALID, &err);
    {
        ctp_kubeconfig_src src[2] = { { ok, sizeof ok - 1, "small", NULL },
                                      { ok, CT_K8S_KUBECONFIG_MAX + 1, "huge", NULL } };
        ck_err(ctp_kubeconfig_merge(src, 2, NULL, &k, &err), CT_E_TOOBIG, &err);
        ck_assert_ptr_nonnull(strstr(err.message, "huge"));
    }
}
END_TEST

START_TEST(server_urls)
{
    static const struct {
        const char *in, *out;
        ct_err rc;
    } t[] = {
        { "https://k8s.example", "https://k8s.example", CT_OK },
        { "https://k8s.example:6443/", "https://k8s.example:6443", CT_OK },
        { "https://rancher.example/k8s/clusters/c-1/", "https://rancher.example/k8s/clusters/c-1",
          CT_OK },
        { "https://10.0.0.1:443", "https://10.0.0.1:443", CT_OK },
        { "https://[::1]:6443", "https://[::1]:6443", CT_OK },
        { "http://k8s.example", NULL, CT_E_UNSUPPORTED },
        { "k8s.example:6443", NULL, CT_E_INVALID },
        { "https://", NULL, CT_E_INVALID },
        { "https://user:pw@k8s.example", NULL, CT_E_INVALID },
        { "https://k8s.example:0", NULL, CT_E_INVALID },
        { "https://k8s.example:70000", NULL, CT_E_INVALID },
        { "https://k8s.example:64x3", NULL, CT_E_INVALID },
        { "https://k8s.example/?q=1", NULL, CT_E_INVALID },
        { "https://k8s.example/#f", NULL, CT_E_INVALID },
        { "https://k8s example", NULL, CT_E_INVALID },
        { "https://[zz]:1", NULL, CT_E_INVALID },
        { "https://[::1", NULL, CT_E_INVALID },
        { "", NULL, CT_E_INVALID },
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *out = NULL;
        ct_error err;
        ct_err rc = ctp_k8s_server_url(t[i].in, &out, &err);
        ck_assert_msg(rc == t[i].rc, "%s -> %s", t[i].in, ct_err_name(rc));
        if (t[i].out)
            ck_assert_str_eq(out, t[i].out);
        else
            ck_assert_ptr_null(out);
        free(out);
    }
    ck_assert(ctp_k8s_valid_name("payments"));
    ck_assert(ctp_k8s_valid_name("db-credentials.v2"));
    ck_assert(!ctp_k8s_valid_name(""));
    ck_assert(!ctp_k8s_valid_name("../etc"));
    ck_assert(!ctp_k8s_valid_name("UPPER"));
    ck_assert(!ctp_k8s_valid_name("a/b"));
    ck_assert(!ctp_k8s_valid_name("-a"));
}
END_TEST

/* ---------------------------------------------------------- fixtures */

static char *fixture(const char *name, size_t *len)
{
    const char *dir = getenv("CT_SHARED_FIXTURES");
    char path[1024];
    FILE *f;
    char *buf;
    long n;
    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static ct_err map(const char *file, int http, ct_error *err)
{
    size_t n;
    char *b = fixture(file, &n);
    ct_err rc = ctp_k8s_http_error(http, b, n, "op", CTP_K8S_AUTH_TOKEN, err);
    free(b);
    return rc;
}

START_TEST(status_mapping)
{
    ct_error err;
    ctp_k8s_status st;
    size_t n;
    char *b;

    ck_err(map("k8s-status-401.json", 401, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "the token was rejected"));
    ck_assert_int_eq(err.os_error, 401);
    ck_err(map("k8s-status-403.json", 403, &err), CT_E_DENIED, &err);
    ck_assert_str_eq(err.message,
                     "op: denied: secrets is forbidden: User "
                     "\"system:serviceaccount:payments:payments-api\" cannot list resource "
                     "\"secrets\" in API group \"\" in the namespace \"payments\"");
    ck_err(map("k8s-status-403-namespace.json", 403, &err), CT_E_DENIED, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "namespaces \"kube-system\" is forbidden"));
    ck_err(map("k8s-status-404.json", 404, &err), CT_E_NOTFOUND, &err);
    ck_assert_str_eq(err.message, "op: secrets \"db-credentials\" not found");
    ck_err(map("k8s-status-409.json", 409, &err), CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "the UID in the precondition"));
    ck_err(map("k8s-status-409-resourceversion.json", 409, &err), CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "the ResourceVersion in the precondition"));
    ck_err(map("k8s-status-410-expired.json", 410, &err), CT_E_CONFLICT, &err);
    ck_assert_int_eq(err.os_error, 410);

    b = fixture("k8s-status-403.json", &n);
    ck_assert_int_eq(ctp_k8s_parse_status(b, n, &st), 1);
    ck_assert_int_eq(st.code, 403);
    ck_assert_str_eq(st.reason, "Forbidden");
    ck_assert_str_eq(st.status, "Failure");
    free(b);
    b = fixture("k8s-secret.json", &n);
    ck_assert_int_eq(ctp_k8s_parse_status(b, n, &st), 0);
    free(b);

    /* bodies that are not a Status */
    ck_err(ctp_k8s_http_error(502, "<html>Bad Gateway</html>", 24, "op", CTP_K8S_AUTH_NONE, &err),
           CT_E_IO, &err);
    ck_assert_str_eq(err.message, "op: API server error 502");
    ck_err(ctp_k8s_http_error(429, NULL, 0, "op", CTP_K8S_AUTH_NONE, &err), CT_E_IO, &err);
    ck_err(ctp_k8s_http_error(401, NULL, 0, "op", CTP_K8S_AUTH_CERT, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "client certificate was rejected"));
    ck_err(ctp_k8s_http_error(401, NULL, 0, "op", CTP_K8S_AUTH_NONE, &err), CT_E_AUTH, &err);
    ck_err(ctp_k8s_http_error(418, NULL, 0, "op", CTP_K8S_AUTH_NONE, &err), CT_E_PROTO, &err);
    ck_err(ctp_k8s_http_error(400, NULL, 0, "op", CTP_K8S_AUTH_NONE, &err), CT_E_INVALID, &err);
    /* hostile message text is made printable and cut */
    {
        char body[2048];
        snprintf(body, sizeof body,
                 "{\"kind\":\"Status\",\"message\":\"a\\u0007b\\nc%0600d\",\"code\":403}", 7);
        ck_err(ctp_k8s_http_error(403, body, strlen(body), "op", CTP_K8S_AUTH_NONE, &err),
               CT_E_DENIED, &err);
        ck_assert_ptr_nonnull(strstr(err.message, "a?b?c000"));
        ck_assert_uint_lt(strlen(err.message), sizeof err.message);
    }
}
END_TEST

START_TEST(namespace_fixture)
{
    char uid[CT_K8S_UID_MAX];
    ct_error err;
    size_t n;
    char *b = fixture("k8s-namespace-kube-system.json", &n);
    ck_ok(ctp_k8s_parse_namespace_uid(b, n, "kube-system", uid, &err), &err);
    ck_assert_str_eq(uid, "6f2b8c3a-1d4e-4f5a-9b7c-8e0d1a2b3c4d");
    ck_err(ctp_k8s_parse_namespace_uid(b, n, "default", uid, &err), CT_E_PROTO, &err);
    free(b);
    ck_err(ctp_k8s_parse_namespace_uid("{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"x\"}}", strlen("{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"x\"}}"), "x", uid, &err),
           CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_namespace_uid("{\"kind\":\"Namespace\",\"metadata\":{\"uid\":\"a b\"}}", strlen("{\"kind\":\"Namespace\",\"metadata\":{\"uid\":\"a b\"}}"), NULL, uid, &err),
           CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_namespace_uid("[]", strlen("[]"), NULL, uid, &err), CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_namespace_uid("{\"kind\":\"Names", strlen("{\"kind\":\"Names"), NULL, uid, &err), CT_E_PROTO,
           &err);
    ck_err(ctp_k8s_parse_namespace_uid("", strlen(""), NULL, uid, &err), CT_E_PROTO, &err);
    ck_assert_str_eq(uid, "");
}
END_TEST

static void check_db_credentials(const ct_k8s_secret *s)
{
    ck_assert_str_eq(ct_k8s_secret_name(s), "db-credentials");
    ck_assert_str_eq(ct_k8s_secret_namespace(s), "payments");
    ck_assert_str_eq(ct_k8s_secret_uid(s), "b8e4d2f0-6a1c-4e3b-9d5f-7c9e1a3b5d7f");
    ck_assert_str_eq(ct_k8s_secret_resource_version(s), "184377");
    ck_assert_str_eq(ct_k8s_secret_type(s), "Opaque");
    ck_assert_int_eq(ct_k8s_secret_has_owner(s), 0);
    ck_assert_int_eq(ct_k8s_secret_immutable(s), 0);
    ck_assert_uint_eq(ct_k8s_secret_label_count(s), 1);
    ck_assert_str_eq(ct_k8s_secret_label_key(s, 0), "app.kubernetes.io/name");
    ck_assert_str_eq(ct_k8s_secret_label_value(s, 0), "payments-api");
    ck_assert_ptr_null(ct_k8s_secret_label_key(s, 1));
    ck_assert_uint_eq(ct_k8s_secret_data_count(s), 3);
    ck_assert_str_eq(ct_k8s_secret_data_key(s, 0), "host");
    ck_assert_str_eq(ct_k8s_secret_data_key(s, 1), "password");
    ck_assert_str_eq(ct_k8s_secret_data_key(s, 2), "username");
    ck_assert_str_eq((const char *)ct_secret_data(ct_k8s_secret_data_value(s, 0)),
                     "postgres.payments.svc:5432");
    ck_assert_str_eq((const char *)ct_secret_data(ct_k8s_secret_data_get(s, "password")),
                     "S3cr3t-Example-Only");
    ck_assert_uint_eq(ct_secret_len(ct_k8s_secret_data_get(s, "username")), 8);
    ck_assert_ptr_null(ct_k8s_secret_data_get(s, "nope"));
    ck_assert_ptr_null(ct_k8s_secret_data_value(s, 3));
}

START_TEST(secret_fixture)
{
    ct_k8s_secret *s = NULL;
    ct_error err;
    size_t n;
    char *b = fixture("k8s-secret.json", &n);
    ck_ok(ctp_k8s_parse_secret(b, n, &s, &err), &err);
    check_db_credentials(s);
    ct_k8s_secret_free(s);
    free(b);
}
END_TEST

START_TEST(secret_hostile)
{
    static const char *const bad[] = {
        "{\"kind\":\"Secret\"}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\"}}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":1}}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\"},"
        "\"data\":{\"k\":\"not base64!\"}}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\"},"
        "\"data\":{\"k\":\"YQ\"}}", /* unpadded: the API server pads */
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\"},"
        "\"data\":{\"k\":7}}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\"},"
        "\"data\":[]}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\","
        "\"labels\":{\"x\":1}}}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\","
        "\"ownerReferences\":{}}}",
        "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\"},"
        "\"immutable\":\"yes\"}",
        "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\",\"resourceVersion\":\"1\"}}",
        "{\"kind\":\"Secret\",\"kind\":\"Secret\"}",
        "null",
    };
    ct_k8s_secret *s = NULL;
    ct_error err;
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(ctp_k8s_parse_secret(bad[i], strlen(bad[i]), &s, &err) == CT_E_PROTO,
                      "%s", bad[i]);
        ck_assert_ptr_null(s);
    }
    /* minimal valid, with an owner, immutable, empty value, no type */
    {
        const char *ok = "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\","
                         "\"resourceVersion\":\"9\",\"ownerReferences\":[{\"kind\":\"X\"}]},"
                         "\"immutable\":true,\"data\":{\"e\":\"\"}}";
        ck_ok(ctp_k8s_parse_secret(ok, strlen(ok), &s, &err), &err);
        ck_assert_int_eq(ct_k8s_secret_has_owner(s), 1);
        ck_assert_int_eq(ct_k8s_secret_immutable(s), 1);
        ck_assert_str_eq(ct_k8s_secret_type(s), "Opaque");
        ck_assert_str_eq(ct_k8s_secret_namespace(s), "");
        ck_assert_uint_eq(ct_secret_len(ct_k8s_secret_data_get(s, "e")), 0);
        ct_k8s_secret_free(s);
    }
}
END_TEST

START_TEST(list_fixtures)
{
    ct_k8s_secret_list *l = ctp_k8s_secret_list_new();
    char *cont = NULL;
    int64_t rem;
    ct_error err;
    size_t n;
    char *b = fixture("k8s-secret-list.json", &n);

    ck_ok(ctp_k8s_parse_secret_page(b, n, l, 100, &cont, &rem, &err), &err);
    free(b);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 2);
    ck_assert_str_eq(cont, "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTg0NTMyLCJzdGFydCI6ImRiLWNyZWRl"
                           "bnRpYWxzXHUwMDAwIn0");
    ck_assert_int_eq(rem, 1);
    ck_assert_str_eq(ct_k8s_secret_list_resource_version(l), "184532");
    ck_assert_str_eq(ct_k8s_secret_type(ct_k8s_secret_list_get(l, 0)), "kubernetes.io/tls");
    check_db_credentials(ct_k8s_secret_list_get(l, 1));
    free(cont);

    b = fixture("k8s-secret-list-last-page.json", &n);
    ck_ok(ctp_k8s_parse_secret_page(b, n, l, 100, &cont, &rem, &err), &err);
    ck_assert_ptr_null(cont);
    ck_assert_int_eq(rem, -1);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 3);
    ck_assert_str_eq(ct_k8s_secret_name(ct_k8s_secret_list_get(l, 2)), "webhook-token");
    ck_assert_str_eq((const char *)ct_secret_data(
                         ct_k8s_secret_data_get(ct_k8s_secret_list_get(l, 2), "token")),
                     "whsec_example_only");
    ck_assert_ptr_null(ct_k8s_secret_list_get(l, 3));
    /* the item limit */
    ck_err(ctp_k8s_parse_secret_page(b, n, l, 3, &cont, &rem, &err), CT_E_TOOBIG, &err);
    free(b);
    ct_k8s_secret_list_free(l);

    l = ctp_k8s_secret_list_new();
    ck_err(ctp_k8s_parse_secret_page("{\"kind\":\"SecretList\",\"metadata\":{},\"items\":{}}", strlen("{\"kind\":\"SecretList\",\"metadata\":{},\"items\":{}}"),
                                     l, 10, &cont, &rem, &err),
           CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_secret_page("{\"kind\":\"List\",\"metadata\":{},\"items\":[]}", strlen("{\"kind\":\"List\",\"metadata\":{},\"items\":[]}"), l, 10,
                                     &cont, &rem, &err),
           CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_secret_page("{\"kind\":\"SecretList\",\"metadata\":{\"continue\":5},"
                                     "\"items\":[]}", strlen("{\"kind\":\"SecretList\",\"metadata\":{\"continue\":5},"
                                     "\"items\":[]}"), l, 10, &cont, &rem, &err),
           CT_E_PROTO, &err);
    ck_ok(ctp_k8s_parse_secret_page("{\"kind\":\"SecretList\",\"metadata\":{},\"items\":null}", strlen("{\"kind\":\"SecretList\",\"metadata\":{},\"items\":null}"),
                                    l, 10, &cont, &rem, &err),
          &err);
    ck_assert_uint_eq(ct_k8s_secret_list_count(l), 0);
    ct_k8s_secret_list_free(l);
}
END_TEST

START_TEST(delete_answers)
{
    int deleted = -1;
    ct_error err;
    size_t n;
    char *b = fixture("k8s-status-delete-success.json", &n);
    ck_ok(ctp_k8s_parse_delete(b, n, &deleted, &err), &err);
    ck_assert_int_eq(deleted, 1);
    free(b);
    {
        const char *kept = "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"a\","
                           "\"deletionTimestamp\":\"2026-03-01T00:00:00Z\","
                           "\"finalizers\":[\"x\"]}}";
        ck_ok(ctp_k8s_parse_delete(kept, strlen(kept), &deleted, &err), &err);
        ck_assert_int_eq(deleted, 0);
    }
    ck_err(ctp_k8s_parse_delete("{\"kind\":\"Status\",\"status\":\"Failure\"}", strlen("{\"kind\":\"Status\",\"status\":\"Failure\"}"), &deleted,
                                &err),
           CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_delete("{\"kind\":\"Secret\",\"metadata\":{}}", strlen("{\"kind\":\"Secret\",\"metadata\":{}}"), &deleted, &err),
           CT_E_PROTO, &err);
}
END_TEST

START_TEST(token_review_fixtures)
{
    ct_k8s_token_review *r = NULL;
    ct_error err;
    size_t n;
    char *b = fixture("k8s-tokenreview-response.json", &n);
    ck_ok(ctp_k8s_parse_token_review(b, n, &r, &err), &err);
    free(b);
    ck_assert_int_eq(ct_k8s_token_review_authenticated(r), 1);
    ck_assert_str_eq(ct_k8s_token_review_username(r),
                     "system:serviceaccount:payments:payments-api");
    ck_assert_str_eq(ct_k8s_token_review_uid(r), "3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a");
    ck_assert_uint_eq(ct_k8s_token_review_group_count(r), 3);
    ck_assert_str_eq(ct_k8s_token_review_group(r, 2), "system:authenticated");
    ck_assert_ptr_null(ct_k8s_token_review_group(r, 3));
    ck_assert_uint_eq(ct_k8s_token_review_audience_count(r), 1);
    ck_assert_str_eq(ct_k8s_token_review_audience(r, 0),
                     "https://kubernetes.default.svc.cluster.local");
    ck_assert_str_eq(ct_k8s_token_review_error(r), "");
    ct_k8s_token_review_free(r);

    b = fixture("k8s-tokenreview-response-unauthenticated.json", &n);
    ck_ok(ctp_k8s_parse_token_review(b, n, &r, &err), &err);
    free(b);
    ck_assert_int_eq(ct_k8s_token_review_authenticated(r), 0);
    ck_assert_str_eq(ct_k8s_token_review_username(r), "");
    ck_assert_str_eq(ct_k8s_token_review_error(r),
                     "[invalid bearer token, service account token has expired]");
    ck_assert_uint_eq(ct_k8s_token_review_group_count(r), 0);
    ct_k8s_token_review_free(r);

    ck_err(ctp_k8s_parse_token_review("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":"
                                      "true,\"user\":{}}}", strlen("{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":"
                                      "true,\"user\":{}}}"), &r, &err),
           CT_E_PROTO, &err);
    ck_err(ctp_k8s_parse_token_review("{\"kind\":\"TokenReview\"}", strlen("{\"kind\":\"TokenReview\"}"), &r, &err), CT_E_PROTO,
           &err);
    ck_err(ctp_k8s_parse_token_review("{\"kind\":\"TokenReview\",\"status\":{\"user\":{\"groups\":"
                                      "[1]}}}", strlen("{\"kind\":\"TokenReview\",\"status\":{\"user\":{\"groups\":"
                                      "[1]}}}"), &r, &err),
           CT_E_PROTO, &err);
}
END_TEST

static void json_eq_fixture(const char *got, size_t len, const char *file)
{
    size_t n;
    char *b = fixture(file, &n);
    json_error_t je;
    json_t *want = json_loadb(b, n, 0, &je), *have = json_loadb(got, len, 0, &je);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(have);
    ck_assert_msg(json_equal(want, have), "%.*s differs from %s", (int)len, got, file);
    json_decref(want);
    json_decref(have);
    free(b);
}

START_TEST(request_bodies)
{
    const char *aud = "https://kubernetes.default.svc.cluster.local";
    ct_secret *body = NULL;
    json_error_t je;
    json_t *req;
    char *del = NULL;
    ct_error err;
    size_t n;
    char *b = fixture("k8s-tokenreview-request.json", &n);

    req = json_loadb(b, n, 0, &je);
    free(b);
    ck_ok(ctp_k8s_token_review_body(
              json_string_value(json_object_get(json_object_get(req, "spec"), "token")), &aud, 1,
              &body, &err),
          &err);
    json_decref(req);
    json_eq_fixture((const char *)ct_secret_data(body), ct_secret_len(body),
                    "k8s-tokenreview-request.json");
    /* key order as the fixture */
    {
        const char *head = "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\","
                           "\"spec\":{\"token\":\"eyJ";
        ck_assert_int_eq(strncmp((const char *)ct_secret_data(body), head, strlen(head)), 0);
    }
    ct_secret_free(body);
    ck_ok(ctp_k8s_token_review_body("t", NULL, 0, &body, &err), &err);
    ck_assert_ptr_null(strstr((const char *)ct_secret_data(body), "audiences"));
    ct_secret_free(body);
    ck_err(ctp_k8s_token_review_body("", NULL, 0, &body, &err), CT_E_INVALID, &err);
    ck_err(ctp_k8s_token_review_body("a\nb", NULL, 0, &body, &err), CT_E_INVALID, &err);
    ck_err(ctp_k8s_token_review_body("\xff\xfe", NULL, 0, &body, &err), CT_E_INVALID, &err);
    {
        const char *bad[] = { "" };
        ck_err(ctp_k8s_token_review_body("t", bad, 1, &body, &err), CT_E_INVALID, &err);
    }
    {
        char *big = malloc(20000);
        memset(big, 'a', 19999);
        big[19999] = '\0';
        ck_err(ctp_k8s_token_review_body(big, NULL, 0, &body, &err), CT_E_TOOBIG, &err);
        free(big);
    }

    ck_ok(ctp_k8s_delete_body("b8e4d2f0-6a1c-4e3b-9d5f-7c9e1a3b5d7f", "184377", &del, &err), &err);
    json_eq_fixture(del, strlen(del), "k8s-delete-options-request.json");
    free(del);
    ck_ok(ctp_k8s_delete_body(NULL, "1", &del, &err), &err);
    ck_assert_str_eq(del, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                          "\"preconditions\":{\"resourceVersion\":\"1\"}}");
    free(del);
    ck_err(ctp_k8s_delete_body("a\"b c", NULL, &del, &err), CT_E_INVALID, &err);
}
END_TEST

START_TEST(jwks_check)
{
    ct_error err;
    size_t n;
    char *b = fixture("k8s-jwks.json", &n);
    ck_ok(ctp_k8s_check_jwks(b, n, &err), &err);
    free(b);
    ck_err(ctp_k8s_check_jwks("{\"keys\":{}}", strlen("{\"keys\":{}}"), &err), CT_E_PROTO, &err);
    ck_err(ctp_k8s_check_jwks("[]", strlen("[]"), &err), CT_E_PROTO, &err);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("k8s_parse");
    TCase *tc = tcase_create("kubeconfig");
    tcase_add_test(tc, kc_token);
    tcase_add_test(tc, kc_token_file);
    tcase_add_test(tc, kc_client_cert_data);
    tcase_add_test(tc, kc_client_cert_files);
    tcase_add_test(tc, kc_json_form);
    tcase_add_test(tc, kc_contexts);
    tcase_add_test(tc, kc_missing_fields);
    tcase_add_test(tc, kc_plugins_refused);
    tcase_add_test(tc, kc_yaml_garbage);
    tcase_add_test(tc, kc_limits);
    tcase_add_test(tc, kc_merge_two);
    tcase_add_test(tc, kc_merge_three);
    tcase_add_test(tc, kc_merge_errors);
    tcase_add_test(tc, server_urls);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    tc = tcase_create("json");
    tcase_add_test(tc, status_mapping);
    tcase_add_test(tc, namespace_fixture);
    tcase_add_test(tc, secret_fixture);
    tcase_add_test(tc, secret_hostile);
    tcase_add_test(tc, list_fixtures);
    tcase_add_test(tc, delete_answers);
    tcase_add_test(tc, token_review_fixtures);
    tcase_add_test(tc, request_bodies);
    tcase_add_test(tc, jwks_check);
    suite_add_tcase(s, tc);
    return s;
}
