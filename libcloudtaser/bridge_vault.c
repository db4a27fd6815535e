/*
 * bridge_vault.c - ct_vault_proxy: the bridge's handlers of "vault.http"
 * (a pod's Vault call, with the pod's own token) and "broker.cert" (the
 * broker's server certificate from the cluster CA). PROTOCOL.md 5.2, 5.3.
 */
#include "b64.h"
#include "bootstrap_internal.h"
#include "http_internal.h"
#include "internal.h"

#include <cloudtaser/broker.h>
#include <cloudtaser/pki.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN 4096
#define MAX_QUERY 256
#define MAX_NS 512
#define MAX_URL 4096
#define DEF_CERT_DAYS 30
/*
 * Vault calls waiting on Vault at once (all sessions together). Beyond it a
 * call is refused with CT_E_AGAIN (the broker answers 503, the pod retries).
 * The session's own max_streams (1024 by default) bounds one cluster.
 */
#define MAX_IN_FLIGHT 1024

struct ct_vault_proxy {
    ct_ctx *ctx;
    ctp_http *http;
    ctp_http_multi *multi; /* drives deferred "vault.http" calls from one thread */
    char *base;          /* https://host[:port], no trailing '/' */
    char *ns;            /* default namespace or NULL */
    char **extra;
    size_t nextra;
    ct_store *store;
    uint32_t days;
};

void ct_vault_proxy_free(ct_vault_proxy *p)
{
    size_t i;
    if (!p)
        return;
    ctp_http_multi_free(p->multi); /* calls in flight are answered CT_E_CLOSED */
    ctp_http_free(p->http);
    free(p->base);
    free(p->ns);
    for (i = 0; i < p->nextra; i++)
        free(p->extra[i]);
    free(p->extra);
    free(p);
}

static int printable(const char *s, size_t max)
{
    size_t i;
    for (i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || i >= max)
            return 0;
    }
    return 1;
}

ct_err ct_vault_proxy_new(ct_ctx *ctx, const ct_vault_proxy_options *opts,
                          ct_vault_proxy **out, ct_error *err)
{
    const ct_vault_options *v;
    ctp_http_config hc = {0};
    ct_vault_proxy *p;
    size_t i, n;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_vault_proxy_new: out is NULL");
    *out = NULL;
    if (!opts || (!opts->vault && !opts->store))
        return ctp_err(err, CT_E_INVALID, 0, "ct_vault_proxy_new: no Vault options");
    if (opts->version != CT_VAULT_PROXY_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_vault_proxy_options version %u is not supported",
                       (unsigned)opts->version);
    if (!opts->vault) { /* broker.cert only (the embedded store answers vault.http) */
        if (!(p = ctp_calloc(1, sizeof *p)))
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        p->ctx = ctx;
        p->store = opts->store;
        p->days = opts->cert_days ? opts->cert_days : DEF_CERT_DAYS;
        *out = p;
        return CT_OK;
    }
    v = opts->vault;
    if (!v->address || strncmp(v->address, "https://", 8) != 0 || strlen(v->address) < 9 ||
        strpbrk(v->address, " ?#@") || strlen(v->address) > 512)
        return ctp_err(err, CT_E_INVALID, 0,
                       "serving pods needs the Vault address as a plain https:// URL "
                       "(--vault-address or VAULT_ADDR)");
    if (v->skip_verify && !v->force_insecure)
        return ctp_err(err, CT_E_INVALID, 0,
                       "VAULT_SKIP_VERIFY turns TLS verification off, so anyone on the network "
                       "path could take the pods' tokens: refused (give --vault-cacert, or add "
                       "--force-insecure if you really mean it)");
    if (!v->client_cert != !v->client_key)
        return ctp_err(err, CT_E_INVALID, 0,
                       "a Vault client certificate needs its key and a key its certificate");
    if (v->namespace_path && *v->namespace_path && !printable(v->namespace_path, MAX_NS))
        return ctp_err(err, CT_E_INVALID, 0, "the Vault namespace is not printable or too long");
    for (i = 0; i < opts->n_extra_prefixes; i++) {
        const char *x = opts->extra_prefixes ? opts->extra_prefixes[i] : NULL;
        if (!x || !*x || *x == '/' || !printable(x, 256) || strstr(x, ".."))
            return ctp_err(err, CT_E_INVALID, 0,
                           "extra Vault path prefix %zu is empty, absolute, has '..' or is "
                           "not printable",
                           i);
    }
    if (!(p = ctp_calloc(1, sizeof *p)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    p->ctx = ctx;
    p->store = opts->store;
    p->days = opts->cert_days ? opts->cert_days : DEF_CERT_DAYS;
    if (!(p->base = ctp_strdup(v->address)))
        goto nomem;
    n = strlen(p->base);
    while (n > 8 && p->base[n - 1] == '/')
        p->base[--n] = 0;
    if (v->namespace_path && *v->namespace_path && !(p->ns = ctp_strdup(v->namespace_path)))
        goto nomem;
    if (opts->n_extra_prefixes) {
        if (!(p->extra = ctp_calloc(opts->n_extra_prefixes, sizeof *p->extra)))
            goto nomem;
        for (i = 0; i < opts->n_extra_prefixes; i++, p->nextra++)
            if (!(p->extra[i] = ctp_strdup(opts->extra_prefixes[i])))
                goto nomem;
    }
    hc.ca_file = v->ca_file && *v->ca_file ? v->ca_file : NULL;
    hc.ca_path = v->ca_path && *v->ca_path ? v->ca_path : NULL;
    hc.cert_file = v->client_cert;
    hc.key_file = v->client_key;
    hc.insecure = v->skip_verify && v->force_insecure;
    hc.timeout_ms = v->timeout_ms > 0 ? v->timeout_ms : ctp_timeout(ctx, -1);
    hc.max_response = v->max_response ? v->max_response : CT_VAULT_DEFAULT_MAX_RESPONSE;
    if ((rc = ctp_http_new(ctx, &hc, &p->http, err)) != CT_OK ||
        (rc = ctp_http_multi_new(p->http, MAX_IN_FLIGHT, &p->multi, err)) != CT_OK) {
        ct_vault_proxy_free(p);
        return rc;
    }
    *out = p;
    return CT_OK;
nomem:
    ct_vault_proxy_free(p);
    return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
}

/* ---- helpers ---- */

static void wipe_json_string(json_t *s)
{
    if (json_is_string(s))
        ct_secure_wipe((void *)(uintptr_t)json_string_value(s), json_string_length(s));
}

/* Serialises o into a malloc'd buffer the session frees with free(). */
static ct_err dump(json_t *o, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
    char *buf;
    if (n == 0 || !(buf = malloc(n)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if (json_dumpb(o, buf, n, JSON_COMPACT) != n) {
        free(buf);
        return ctp_err(err, CT_E_INTERNAL, 0, "serialising the answer failed");
    }
    *resp = (uint8_t *)buf;
    *resp_len = n;
    return CT_OK;
}

static int extra_allowed(const ct_vault_proxy *p, const char *method, const char *path)
{
    size_t i;
    if (strcmp(method, "GET") != 0 && strcmp(method, "LIST") != 0 &&
        strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0)
        return 0;
    if (strstr(path, "..") || strstr(path, "//") || !printable(path, 1024))
        return 0;
    for (i = 0; i < p->nextra; i++)
        if (strncmp(path, p->extra[i], strlen(p->extra[i])) == 0)
            return 1;
    return 0;
}

static int query_ok(const char *q)
{
    size_t i;
    for (i = 0; q[i]; i++) {
        char c = q[i];
        if (i >= MAX_QUERY || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '=' || c == '&' || c == '_' ||
                                c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* ---- vault.http ---- */

static ct_err vault_answer(const ctp_http_response *hr, uint8_t **resp, size_t *resp_len,
                           ct_error *err);
static void vault_done(void *arg, ct_err rc, const ctp_http_response *hresp,
                       const ct_error *herr);

ct_err ct_vault_proxy_http(void *proxy, const char *fingerprint, ct_session *s,
                           uint32_t stream, const uint8_t *req, size_t req_len,
                           uint8_t **resp, size_t *resp_len, ct_error *err)
{
    ct_vault_proxy *p = proxy;
    json_t *o = NULL, *jtok = NULL, *jbody = NULL;
    const char *method, *path, *query = NULL, *tok = NULL, *ns = NULL, *body = NULL;
    size_t body_len = 0;
    ctp_http_header hdrs[3];
    ctp_http_request hr = {0};
    ctp_http_response hresp = {0};
    char *url = NULL, *esc = NULL;
    size_t nh = 0;
    int timeout = 0;
    ct_err rc;
    (void)fingerprint;

    if (!p || !req || !resp || !resp_len)
        return ctp_err(err, CT_E_INVALID, 0, "vault.http: NULL argument");
    if (!p->http)
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "vault.http: this proxy has no Vault");
    o = json_loadb((const char *)req, req_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: the request is not a JSON object");
        goto out;
    }
    method = json_string_value(json_object_get(o, "method"));
    path = json_string_value(json_object_get(o, "path"));
    if (!method || !path || strlen(method) > 8) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: \"method\" and \"path\" are required");
        goto out;
    }
    if (json_object_get(o, "query") && !(query = json_string_value(json_object_get(o, "query")))) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: \"query\" is not a string");
        goto out;
    }
    jtok = json_object_get(o, "token");
    if (jtok && !json_is_string(jtok) && !json_is_null(jtok)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: \"token\" is not a string");
        goto out;
    }
    tok = json_string_value(jtok);
    ns = json_string_value(json_object_get(o, "namespace"));
    jbody = json_object_get(o, "body");
    if (jbody && !json_is_string(jbody) && !json_is_null(jbody)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: \"body\" is not a string");
        goto out;
    }
    if (json_is_string(jbody)) {
        body = json_string_value(jbody);
        body_len = json_string_length(jbody);
    }
    if (json_is_integer(json_object_get(o, "timeout_ms"))) {
        json_int_t t = json_integer_value(json_object_get(o, "timeout_ms"));
        timeout = t > 0 && t < 600000 ? (int)t : 0;
    }
    if (ct_vault_api_allowed(method, path, NULL) != 1 && !extra_allowed(p, method, path)) {
        rc = ctp_err(err, CT_E_AUTH, 0, "vault.http: %.8s %.64s is not in the bridge's allowlist",
                     method, path);
        goto out;
    }
    if (query && (!query_ok(query))) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: the query has unexpected characters");
        goto out;
    }
    if (tok && *tok && (!printable(tok, MAX_TOKEN))) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: the token is not printable or too long");
        goto out;
    }
    if (ns && *ns && !printable(ns, MAX_NS)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: the namespace is not printable");
        goto out;
    }
    if (!(esc = malloc(MAX_URL)) || !(url = malloc(MAX_URL))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if (ctp_http_path_escape(path, esc, MAX_URL) != 0 ||
        snprintf(url, MAX_URL, "%s/v1/%s%s%s", p->base, esc, query && *query ? "?" : "",
                 query && *query ? query : "") >= MAX_URL) {
        rc = ctp_err(err, CT_E_TOOBIG, 0, "vault.http: the URL is too long");
        goto out;
    }
    if (tok && *tok) {
        hdrs[nh].name = "X-Vault-Token";
        hdrs[nh].value = tok;
        hdrs[nh++].value_len = strlen(tok);
    }
    if (!(ns && *ns))
        ns = p->ns;
    if (ns && *ns) {
        hdrs[nh].name = "X-Vault-Namespace";
        hdrs[nh].value = ns;
        hdrs[nh++].value_len = strlen(ns);
    }
    if (body) {
        hdrs[nh].name = "Content-Type";
        hdrs[nh].value = "application/json";
        hdrs[nh++].value_len = 16;
    }
    hr.method = strcmp(method, "HEAD") == 0 ? "HEAD" : method;
    hr.url = url;
    hr.headers = hdrs;
    hr.nheaders = nh;
    hr.body = (const uint8_t *)body;
    hr.body_len = body_len;
    hr.timeout_ms = timeout;
    if (s) {
        /*
         * Asynchronous: the session gets the request back and the multi
         * driver answers it when Vault has; this handler thread is free at
         * once. Outside a session handler (no stream to defer) the call is
         * made here, blocking.
         */
        ct_session_reply *r = NULL;
        ct_error e2;
        rc = ct_session_defer(s, stream, &r, &e2);
        if (rc == CT_OK) {
            ct_err src = ctp_http_multi_start(p->multi, &hr, vault_done, r, &e2);
            if (src != CT_OK) /* vault_done will not be called */
                ct_session_reply_send(r, src, NULL, 0, e2.message);
            rc = CT_OK; /* answered through r */
            goto out;
        }
        if (rc == CT_E_CLOSED) {
            rc = ctp_err(err, rc, 0, "%s", e2.message);
            goto out;
        }
    }
    if ((rc = ctp_http_do(p->http, &hr, &hresp, err)) != CT_OK)
        goto out;
    rc = vault_answer(&hresp, resp, resp_len, err);
out:
    ctp_http_response_clear(&hresp);
    if (o) {
        wipe_json_string(jtok);
        wipe_json_string(jbody);
        json_decref(o);
    }
    if (url)
        ct_secure_wipe(url, MAX_URL);
    free(esc);
    free(url);
    return rc;
}

/*
 * Vault's answer as the "vault.http" answer: {"status":N,"body":"..." or
 * "body_b64":"...","headers":{...}}, malloc'd into *resp.
 */
static ct_err vault_answer(const ctp_http_response *hr, uint8_t **resp, size_t *resp_len,
                           ct_error *err)
{
    json_t *a = NULL, *h;
    ct_err rc;

    a = json_object();
    h = json_object();
    if (!a || !h) {
        json_decref(h);
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    json_object_set_new(a, "status", json_integer(hr->status));
    {
        json_t *b = json_stringn((const char *)hr->body, hr->body_len);
        if (b) {
            json_object_set_new(a, "body", b);
        } else {
            /* not UTF-8: base64 */
            size_t n = ctp_b64_encoded_len(hr->body_len, CTP_B64_STD);
            char *enc = n || !hr->body_len ? malloc(n + 1) : NULL;
            if (!enc) {
                json_decref(h);
                rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
                goto out;
            }
            ctp_b64_encode(hr->body, hr->body_len, enc, CTP_B64_STD);
            json_object_set_new(a, "body_b64", json_stringn(enc, n));
            ct_secure_wipe(enc, n);
            free(enc);
        }
    }
    if (hr->content_type[0])
        json_object_set_new(h, "Content-Type", json_string(hr->content_type));
    if (hr->retry_after_ms >= 0) {
        char ra[32];
        snprintf(ra, sizeof ra, "%lld", (long long)((hr->retry_after_ms + 999) / 1000));
        json_object_set_new(h, "Retry-After", json_string(ra));
    }
    json_object_set_new(a, "headers", h);
    rc = dump(a, resp, resp_len, err);
out:
    if (a) {
        wipe_json_string(json_object_get(a, "body"));
        wipe_json_string(json_object_get(a, "body_b64"));
        json_decref(a);
    }
    return rc;
}

/* The multi driver's callback: answers the deferred request (driver thread). */
static void vault_done(void *arg, ct_err rc, const ctp_http_response *hresp,
                       const ct_error *herr)
{
    ct_session_reply *r = arg;
    uint8_t *buf = NULL;
    size_t len = 0;
    ct_error e;

    if (rc != CT_OK) {
        ct_session_reply_send(r, rc, NULL, 0, herr ? herr->message : NULL);
        return;
    }
    if ((rc = vault_answer(hresp, &buf, &len, &e)) != CT_OK) {
        ct_session_reply_send(r, rc, NULL, 0, e.message);
        return;
    }
    ct_session_reply_send(r, CT_OK, buf, len, NULL);
    ct_secure_wipe(buf, len);
    free(buf);
}

/* ---- broker.cert ---- */

static int label_ok(const char *s, size_t n)
{
    size_t i;
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* <label>(.<label>)*.svc, <label>(.<label>)*.svc.cluster.local, localhost */
static int broker_dns_ok(const char *name)
{
    size_t n = strlen(name), base, i, start = 0;
    if (strcmp(name, "localhost") == 0)
        return 1;
    if (n > 253)
        return 0;
    if (n > 18 && strcmp(name + n - 18, ".svc.cluster.local") == 0)
        base = n - 18;
    else if (n > 4 && strcmp(name + n - 4, ".svc") == 0)
        base = n - 4;
    else
        return 0;
    for (i = 0; i <= base; i++)
        if (i == base || name[i] == '.') {
            if (!label_ok(name + start, i - start))
                return 0;
            start = i + 1;
        }
    return 1;
}

static int ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

ct_err ct_vault_proxy_cert(void *proxy, const char *fingerprint, ct_session *s,
                           uint32_t stream, const uint8_t *req, size_t req_len,
                           uint8_t **resp, size_t *resp_len, ct_error *err)
{
    ct_vault_proxy *p = proxy;
    const char *dns[CT_CERT_MAX_NAMES], *ips[CT_CERT_MAX_NAMES];
    size_t ndns = 0, nip = 0, i, csr_len = 0, ca_len = 0, cert_len = 0;
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    json_t *o = NULL, *names, *a = NULL;
    const char *csr_b64;
    uint8_t *csr = NULL, *ca = NULL, *cert = NULL;
    char *ca_pem = NULL, *cert_pem = NULL;
    ct_secret *key_pem = NULL;
    ct_key *ca_key = NULL;
    ct_error e2;
    ct_err rc;
    (void)s;
    (void)stream;

    if (!p || !req || !resp || !resp_len || !fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "broker.cert: NULL argument");
    if (!p->store)
        return ctp_err(err, CT_E_UNSUPPORTED, 0,
                       "broker.cert: this bridge does not issue broker certificates");
    o = json_loadb((const char *)req, req_len, JSON_REJECT_DUPLICATES, NULL);
    csr_b64 = json_string_value(json_object_get(o, "csr"));
    names = json_object_get(o, "names");
    if (!json_is_object(o) || !csr_b64 || !json_is_array(names) || json_array_size(names) == 0 ||
        json_array_size(names) > CT_CERT_MAX_NAMES || json_string_length(json_object_get(o, "csr")) > 8192) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "broker.cert: needs \"csr\" (base64 DER) and \"names\" (1 to %d)",
                     CT_CERT_MAX_NAMES);
        goto out;
    }
    for (i = 0; i < json_array_size(names); i++) {
        const char *nm = json_string_value(json_array_get(names, i));
        if (nm && ip_literal(nm)) {
            ips[nip++] = nm;
        } else if (nm && broker_dns_ok(nm)) {
            dns[ndns++] = nm;
        } else {
            rc = ctp_err(err, CT_E_INVALID, 0,
                         "broker.cert: name %zu is not allowed (only IP literals, localhost "
                         "and lowercase in-cluster service names ending in .svc or "
                         ".svc.cluster.local)",
                         i);
            goto out;
        }
    }
    {
        size_t cap = ctp_b64_decoded_max(strlen(csr_b64));
        if (!(csr = malloc(cap ? cap : 1))) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        if (ctp_b64_decode(csr_b64, strlen(csr_b64), csr, cap, &csr_len, CTP_B64_STD) != 0) {
            rc = ctp_err(err, CT_E_INVALID, 0, "broker.cert: \"csr\" is not base64");
            goto out;
        }
    }
    rc = ctp_boot_read_keypair(p->store, fingerprint, "ca", &ca, &ca_len, &key_pem, &e2);
    if (rc == CT_OK)
        rc = ct_key_load(p->ctx, ct_secret_data(key_pem), ct_secret_len(key_pem), &ca_key, &e2);
    if (rc != CT_OK) {
        rc = ctp_err(err, rc == CT_E_NOTFOUND ? CT_E_STORE : rc, 0,
                     "broker.cert: reading the cluster CA: %s", e2.message);
        goto out;
    }
    co.common_name = "cloudtaser-broker";
    co.organization = "cloudtaser";
    co.days_valid = p->days;
    co.dns_names = dns;
    co.n_dns_names = ndns;
    co.ip_addrs = ips;
    co.n_ip_addrs = nip;
    if ((rc = ct_cert_issue(p->ctx, ca, ca_len, ca_key, csr, csr_len, CT_CERT_SERVER, &co, &cert,
                            &cert_len, &e2)) != CT_OK) {
        rc = ctp_err(err, rc, 0, "broker.cert: %s", e2.message);
        goto out;
    }
    if ((rc = ct_cert_der_to_pem(cert, cert_len, &cert_pem, err)) != CT_OK ||
        (rc = ct_cert_der_to_pem(ca, ca_len, &ca_pem, err)) != CT_OK)
        goto out;
    a = json_pack("{s:s, s:s}", "cert", cert_pem, "ca", ca_pem);
    if (!a) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    rc = dump(a, resp, resp_len, err);
    ctp_log(p->ctx, CT_LOG_INFO, "broker.cert", "cluster %.8s: issued a broker certificate (%zu names)",
            fingerprint, ndns + nip);
out:
    json_decref(a);
    json_decref(o);
    ct_secret_free(key_pem);
    ct_key_free(ca_key);
    free(csr);
    ct_free(ca);
    ct_free(cert);
    ct_free(ca_pem);
    ct_free(cert_pem);
    return rc;
}
