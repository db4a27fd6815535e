/*
 * k8s.c - the Kubernetes API client (k8s.h): configuration (in-cluster or
 * kubeconfig), credentials (tokens re-read from their files when they
 * rotate), the request loop (retries with backoff for GETs, error mapping)
 * and the calls. Parsing lives in k8s_json.c and k8s_config.c; HTTP in
 * http.c.
 */
#include "http_internal.h"
#include "k8s_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEF_MAX_RESPONSE ((size_t)8 << 20)
#define DEF_RETRIES 3
#define DEF_RETRY_BASE_MS 200u
#define MAX_BACKOFF_MS 5000
#define MAX_RETRY_AFTER_MS 10000
#define DEF_PAGE_LIMIT 250u
#define DEF_MAX_ITEMS 100000u
#define DEF_REREAD_S 60u
#define MAX_PAGES 100000u
#define TOKEN_FILE_MAX 65536
#define SMALL_FILE_MAX 4096

struct ct_k8s_client {
    ct_ctx *ctx;
    ct_k8s_source source;
    char *server, *context, *ns;
    ctp_http *http;
    ct_secret *token;     /* the bearer token (NULL: none) */
    char *token_file;     /* re-read when it changes (NULL: static token) */
    struct stat token_st; /* of the file when last read */
    int64_t token_read_ms;
    int has_cert;
    int get_retries;
    uint32_t retry_base_ms, page_limit, reread_s;
    size_t max_list_items, max_response;
};

/* ------------------------------------------------------------- files */

static int bearer_ok(const ct_secret *s)
{
    const uint8_t *p = ct_secret_data(s);
    size_t i, n = ct_secret_len(s);
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return 0;
    return 1;
}

/* Reads the token file into c->token. */
static ct_err load_token_file(ct_k8s_client *c, ct_error *err)
{
    ct_secret *t = NULL;
    struct stat st;
    ct_err rc;
    /* stat first: a token replaced meanwhile is seen as changed next time */
    if (stat(c->token_file, &st) != 0) {
        int e = errno;
        return ctp_err(err, e == ENOENT ? CT_E_NOTFOUND : ctp_errno_to_err(e), e,
                       "cannot open the token file %s: %s", c->token_file, strerror(e));
    }
    rc = ct_secret_read_file(c->token_file, TOKEN_FILE_MAX, "token file", CT_SECRET_FILE_TRIM,
                             &t, err);
    if (rc != CT_OK)
        return rc;
    if (!bearer_ok(t)) {
        ct_secret_free(t);
        return ctp_err(err, CT_E_INVALID, 0, "token file %s: empty, or has characters a "
                       "bearer token cannot have", c->token_file);
    }
    ct_secret_free(c->token);
    c->token = t;
    c->token_st = st;
    c->token_read_ms = ctp_mono_ms();
    return CT_OK;
}

/*
 * Re-reads the token file when it changed (a projected token is replaced
 * through a symlink swap: stat follows it) or is older than reread_s.
 * `force`: always. Returns 1 if the token changed. A failed re-read keeps
 * the old token (logged).
 */
static int refresh_token(ct_k8s_client *c, int force)
{
    struct stat st;
    ct_secret *old;
    ct_error e;
    int changed;

    if (!c->token_file)
        return 0;
    if (!force) {
        int same = stat(c->token_file, &st) == 0 && st.st_ino == c->token_st.st_ino &&
                   st.st_dev == c->token_st.st_dev && st.st_size == c->token_st.st_size &&
                   st.st_mtim.tv_sec == c->token_st.st_mtim.tv_sec &&
                   st.st_mtim.tv_nsec == c->token_st.st_mtim.tv_nsec;
        if (same && ctp_mono_ms() - c->token_read_ms < (int64_t)c->reread_s * 1000)
            return 0;
    }
    old = c->token;
    c->token = NULL;
    if (load_token_file(c, &e) != CT_OK) {
        c->token = old;
        ctp_log(c->ctx, CT_LOG_WARNING, "k8s.token", "keeping the previous token: %s",
                e.message);
        return 0;
    }
    changed = !old || ct_secret_len(old) != ct_secret_len(c->token) ||
              !ct_memeq(ct_secret_data(old), ct_secret_data(c->token), ct_secret_len(old));
    ct_secret_free(old);
    if (changed)
        ctp_log(c->ctx, CT_LOG_INFO, "k8s.token", "read a new token from %s", c->token_file);
    return changed;
}

static ct_err must_exist(const char *path, const char *what, ct_error *err)
{
    if (access(path, R_OK) != 0) {
        int e = errno;
        return ctp_err(err, e == ENOENT ? CT_E_NOTFOUND : CT_E_IO, e, "%s %s: %s", what, path,
                       strerror(e));
    }
    return CT_OK;
}

/* The first line of a small text file, trimmed, or NULL (absent/unreadable). */
static char *read_line_file(const char *path)
{
    char buf[SMALL_FILE_MAX + 1];
    size_t n;
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    n = fread(buf, 1, SMALL_FILE_MAX, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    return n ? strdup(buf) : NULL;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (s) {
        memcpy(s, dir, a);
        s[a] = '/';
        memcpy(s + a + 1, name, b + 1);
    }
    return s;
}

/* ----------------------------------------------------- configuration */

static const char *env_or(const char *given, const char *name)
{
    const char *v;
    if (given)
        return given;
    v = getenv(name);
    return v && *v ? v : NULL;
}

static ct_err config_in_cluster(ct_k8s_client *c, const ct_k8s_options *o,
                                ctp_http_config *hc, char **ca_path, ct_error *err)
{
    const char *host = env_or(o->service_host, "KUBERNETES_SERVICE_HOST");
    const char *port = env_or(o->service_port, "KUBERNETES_SERVICE_PORT");
    const char *dir = o->sa_dir ? o->sa_dir : CT_K8S_SA_DIR;
    const char *pod_ns = getenv("POD_NAMESPACE");
    char url[600], *ns_file;
    ct_error e2;
    ct_err rc;

    if (!host || !*host || !port || !*port)
        return ctp_err(err, CT_E_INVALID, 0, "not running in a cluster: "
                       "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not both set");
    if (strlen(host) > 255 || strlen(port) > 5)
        return ctp_err(err, CT_E_INVALID, 0, "in-cluster: KUBERNETES_SERVICE_HOST or _PORT is "
                       "too long");
    snprintf(url, sizeof url, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
             port);
    rc = ctp_k8s_server_url(url, &c->server, &e2);
    if (rc != CT_OK)
        return ctp_err(err, CT_E_INVALID, 0, "in-cluster: bad KUBERNETES_SERVICE_HOST or "
                       "_PORT: %s", e2.message);
    c->token_file = path_join(dir, "token");
    *ca_path = path_join(dir, "ca.crt");
    ns_file = path_join(dir, "namespace");
    c->context = strdup("");
    if (!c->token_file || !*ca_path || !ns_file || !c->context) {
        free(ns_file);
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    }
    if (pod_ns && *pod_ns)
        c->ns = strdup(pod_ns);
    else if (!(c->ns = read_line_file(ns_file)))
        c->ns = strdup("default");
    free(ns_file);
    if (!c->ns)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    if (!ctp_k8s_valid_name(c->ns))
        return ctp_err(err, CT_E_INVALID, 0, "in-cluster: the namespace \"%.64s\" is not a "
                       "valid name", c->ns);
    rc = load_token_file(c, &e2);
    if (rc != CT_OK)
        return ctp_err(err, rc, e2.os_error, "in-cluster: %s", e2.message);
    rc = must_exist(*ca_path, "in-cluster: CA file", err);
    if (rc != CT_OK)
        return rc;
    hc->ca_file = *ca_path;
    return CT_OK;
}

/* The kubeconfig files to read (paths malloc'ed); free with free_paths. */
typedef struct kc_paths {
    char *path[CT_K8S_KUBECONFIG_MAX_FILES];
    size_t n;
    int list; /* from $KUBECONFIG: missing files are skipped */
} kc_paths;

static void free_paths(kc_paths *p)
{
    size_t i;
    for (i = 0; i < p->n; i++)
        free(p->path[i]);
    p->n = 0;
}

/*
 * Splits $KUBECONFIG as kubectl does: on ':', dropping empty entries and
 * repeats (the first occurrence keeps its place).
 */
static ct_err split_list(const char *env, kc_paths *p, ct_error *err)
{
    const char *s = env;
    p->list = 1;
    while (*s) {
        size_t n = strcspn(s, ":"), i;
        int dup = 0;
        for (i = 0; n && i < p->n; i++)
            dup |= strlen(p->path[i]) == n && memcmp(p->path[i], s, n) == 0;
        if (n && !dup) {
            if (p->n == CT_K8S_KUBECONFIG_MAX_FILES)
                return ctp_err(err, CT_E_INVALID, 0, "KUBECONFIG lists more than %d files: "
                               "merge some of them (kubectl config view --flatten)",
                               CT_K8S_KUBECONFIG_MAX_FILES);
            if (!(p->path[p->n] = strndup(s, n)))
                return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            p->n++;
        }
        s += n;
        if (*s == ':')
            s++;
    }
    if (p->n == 0)
        return ctp_err(err, CT_E_INVALID, 0, "KUBECONFIG names no file (only empty entries)");
    return CT_OK;
}

/* The kubeconfig path(s) to read. */
static ct_err kubeconfig_paths(const ct_k8s_options *o, kc_paths *p, ct_error *err)
{
    const char *env = getenv("KUBECONFIG"), *home;
    memset(p, 0, sizeof *p);
    if (o->kubeconfig && *o->kubeconfig) {
        p->path[0] = strdup(o->kubeconfig); /* exactly this file, as kubectl's flag */
    } else if (env && *env) {
        return split_list(env, p, err);
    } else {
        home = getenv("HOME");
        if (!home || !*home)
            return ctp_err(err, CT_E_INVALID, 0, "no kubeconfig: KUBECONFIG and HOME are not "
                           "set and this is not a pod (no KUBERNETES_SERVICE_HOST)");
        p->path[0] = path_join(home, ".kube/config");
    }
    if (!p->path[0])
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    p->n = 1;
    return CT_OK;
}

/* The directory of path ("." when it has none), malloc'ed. */
static char *dir_of(const char *path)
{
    char *dir = strdup(path), *slash;
    if (!dir)
        return NULL;
    slash = strrchr(dir, '/');
    if (slash) {
        *(slash == dir ? slash + 1 : slash) = '\0';
    } else {
        free(dir);
        dir = strdup(".");
    }
    return dir;
}

static ct_err config_kubeconfig(ct_k8s_client *c, const ct_k8s_options *o,
                                ctp_http_config *hc, ctp_kubeconfig *kc, ct_error *err)
{
    ctp_kubeconfig_src src[CT_K8S_KUBECONFIG_MAX_FILES];
    ct_secret *text[CT_K8S_KUBECONFIG_MAX_FILES];
    char *dir[CT_K8S_KUBECONFIG_MAX_FILES];
    const char *path;
    size_t i, n = 0;
    kc_paths paths;
    ct_err rc;

    memset(text, 0, sizeof text);
    memset(dir, 0, sizeof dir);
    rc = kubeconfig_paths(o, &paths, err);
    if (rc != CT_OK)
        goto out;
    for (i = 0; i < paths.n; i++) {
        ct_error e2;
        rc = ct_secret_read_file(paths.path[i], CT_K8S_KUBECONFIG_MAX, "kubeconfig", 0,
                                 &text[n], &e2);
        if (rc == CT_E_NOTFOUND && paths.list) {
            /* kubectl skips the files of a list that do not exist */
            ctp_log(c->ctx, CT_LOG_DEBUG, "k8s.config",
                    "KUBECONFIG: skipping %s: it does not exist", paths.path[i]);
            continue;
        }
        if (rc != CT_OK) {
            ctp_err(err, rc, e2.os_error, "%s", e2.message);
            goto out;
        }
        if (!(dir[n] = dir_of(paths.path[i]))) {
            n++; /* text[n] is freed at out */
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto out;
        }
        src[n].text = (const char *)ct_secret_data(text[n]);
        src[n].len = ct_secret_len(text[n]);
        src[n].where = paths.path[i];
        src[n].base_dir = dir[n];
        n++;
    }
    if (n == 0) {
        char names[200];
        size_t used = 0;
        names[0] = '\0';
        for (i = 0; i < paths.n && used + 1 < sizeof names; i++) {
            int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                             paths.path[i]);
            used = w < 0 ? sizeof names : used + (size_t)w;
        }
        if (used >= sizeof names)
            memcpy(names + sizeof names - 4, "...", 4);
        rc = ctp_err(err, CT_E_NOTFOUND, ENOENT, "no kubeconfig: none of the files KUBECONFIG "
                     "lists exists (%s)", names);
        goto out;
    }
    if (n > 1)
        ctp_log(c->ctx, CT_LOG_DEBUG, "k8s.config", "KUBECONFIG: merging %zu files", n);
    rc = ctp_kubeconfig_merge(src, n, o->context, kc, err);
    if (rc != CT_OK)
        goto out;
    path = src[kc->cluster_src].where;
    if (kc->insecure && (kc->ca_pem || kc->ca_file)) {
        ctp_log(c->ctx, CT_LOG_NOTICE, "k8s.config",
                "kubeconfig %s: cluster \"%s\" sets insecure-skip-tls-verify and a CA: "
                "verifying against the CA", path, kc->cluster);
    } else if (kc->insecure && !o->force_insecure_skip_tls_verify) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0,
                     "kubeconfig %s: cluster \"%s\" sets insecure-skip-tls-verify: the API "
                     "server would not be verified; give certificate-authority-data instead",
                     path, kc->cluster);
        goto out;
    } else if (kc->insecure) {
        ctp_log(c->ctx, CT_LOG_WARNING, "k8s.config",
                "kubeconfig %s: cluster \"%s\": NOT verifying the API server's certificate "
                "(insecure-skip-tls-verify, forced)", path, kc->cluster);
        hc->insecure = 1;
    }
    if (kc->ca_file && (rc = must_exist(kc->ca_file, "kubeconfig: certificate-authority",
                                        err)) != CT_OK)
        goto out;
    if (kc->cert_file && (rc = must_exist(kc->cert_file, "kubeconfig: client-certificate",
                                          err)) != CT_OK)
        goto out;
    if (kc->key_file && (rc = must_exist(kc->key_file, "kubeconfig: client-key", err)) != CT_OK)
        goto out;
    c->server = kc->server;
    c->context = kc->context;
    c->ns = kc->ns[0] ? kc->ns : strdup("default");
    if (!kc->ns[0])
        free(kc->ns);
    kc->server = kc->context = kc->ns = NULL;
    if (!c->ns) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    if (kc->token_file) {
        c->token_file = kc->token_file;
        kc->token_file = NULL;
        rc = load_token_file(c, err);
        if (rc != CT_OK)
            goto out;
    } else if (kc->token) {
        c->token = kc->token;
        kc->token = NULL;
    }
    hc->ca_file = kc->ca_file;
    hc->ca_pem = kc->ca_pem;
    hc->ca_pem_len = kc->ca_pem_len;
    hc->cert_file = kc->cert_file;
    hc->key_file = kc->key_file;
    hc->cert_pem = kc->cert_pem;
    hc->cert_pem_len = kc->cert_pem_len;
    if (kc->key_pem) {
        hc->key_pem = ct_secret_data(kc->key_pem);
        hc->key_pem_len = ct_secret_len(kc->key_pem);
    }
    c->has_cert = kc->cert_file || kc->cert_pem;
    ctp_log(c->ctx, CT_LOG_INFO, "k8s.config", "kubeconfig %s: context \"%s\", server %s",
            src[kc->context_src].where, c->context, c->server);
out:
    for (i = 0; i < n; i++) {
        ct_secret_free(text[i]);
        free(dir[i]);
    }
    free_paths(&paths);
    return rc;
}

ct_err ct_k8s_client_new(ct_ctx *ctx, const ct_k8s_options *opts, ct_k8s_client **out,
                         ct_error *err)
{
    ct_k8s_options o = CT_K8S_OPTIONS_INIT;
    ctp_http_config hc;
    ctp_kubeconfig kc;
    ct_k8s_client *c;
    char *ca_path = NULL;
    ct_k8s_source src;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_client_new: NULL out");
    *out = NULL;
    if (!ctx)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_client_new: NULL context");
    if (opts) {
        if (opts->version != CT_K8S_OPTIONS_VERSION)
            return ctp_err(err, CT_E_VERSION, 0, "ct_k8s_options: unknown version %u",
                           opts->version);
        o = *opts;
    }
    src = o.source;
    if (src == CT_K8S_AUTO) {
        const char *h = env_or(o.service_host, "KUBERNETES_SERVICE_HOST");
        const char *p = env_or(o.service_port, "KUBERNETES_SERVICE_PORT");
        src = (!o.kubeconfig && !o.context && h && p) ? CT_K8S_IN_CLUSTER : CT_K8S_KUBECONFIG;
    }
    if (src != CT_K8S_IN_CLUSTER && src != CT_K8S_KUBECONFIG)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_options: unknown source %d", (int)src);

    c = ctp_calloc(1, sizeof *c);
    if (!c)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    c->ctx = ctx;
    c->source = src;
    c->get_retries = o.get_retries == 0 ? DEF_RETRIES : o.get_retries < 0 ? 0 : o.get_retries;
    if (c->get_retries > 10)
        c->get_retries = 10;
    c->retry_base_ms = o.retry_base_ms ? o.retry_base_ms : DEF_RETRY_BASE_MS;
    c->page_limit = o.page_limit ? o.page_limit : DEF_PAGE_LIMIT;
    c->max_list_items = o.max_list_items ? o.max_list_items : DEF_MAX_ITEMS;
    c->reread_s = o.token_reread_s ? o.token_reread_s : DEF_REREAD_S;
    c->max_response = o.max_response ? o.max_response : DEF_MAX_RESPONSE;

    memset(&hc, 0, sizeof hc);
    memset(&kc, 0, sizeof kc);
    if (src == CT_K8S_IN_CLUSTER)
        rc = config_in_cluster(c, &o, &hc, &ca_path, err);
    else
        rc = config_kubeconfig(c, &o, &hc, &kc, err);
    if (rc == CT_OK) {
        hc.timeout_ms = o.timeout_ms;
        hc.connect_timeout_ms = o.connect_timeout_ms;
        hc.max_response = c->max_response;
        rc = ctp_http_new(ctx, &hc, &c->http, err);
    }
    ctp_kubeconfig_clear(&kc);
    free(ca_path);
    if (rc != CT_OK) {
        ct_k8s_client_free(c);
        return rc;
    }
    *out = c;
    return CT_OK;
}

void ct_k8s_client_free(ct_k8s_client *c)
{
    if (!c)
        return;
    ctp_http_free(c->http);
    ct_secret_free(c->token);
    free(c->token_file);
    free(c->server);
    free(c->context);
    free(c->ns);
    free(c);
}

ct_k8s_source ct_k8s_client_source(const ct_k8s_client *c)
{
    return c ? c->source : CT_K8S_AUTO;
}

const char *ct_k8s_client_server(const ct_k8s_client *c)
{
    return c && c->server ? c->server : "";
}

const char *ct_k8s_client_context(const ct_k8s_client *c)
{
    return c && c->context ? c->context : "";
}

const char *ct_k8s_client_namespace(const ct_k8s_client *c)
{
    return c && c->ns ? c->ns : "default";
}

/* ----------------------------------------------------------- requests */

static void sleep_ms(int64_t ms)
{
    struct timespec ts;
    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Backoff before retry `attempt` (1-based): base * 2^(attempt-1), +-50% jitter, capped. */
static int64_t backoff_ms(const ct_k8s_client *c, int attempt, int64_t retry_after_ms)
{
    int64_t b = c->retry_base_ms;
    uint8_t r[2] = { 0, 0 };
    int i;
    for (i = 1; i < attempt && b < MAX_BACKOFF_MS; i++)
        b *= 2;
    if (b > MAX_BACKOFF_MS)
        b = MAX_BACKOFF_MS;
    if (ct_ctx_random(c->ctx, r, sizeof r) == CT_OK)
        b = b / 2 + (int64_t)(((uint32_t)r[0] << 8 | r[1]) % (uint32_t)(b + 1));
    if (retry_after_ms > b)
        b = retry_after_ms > MAX_RETRY_AFTER_MS ? MAX_RETRY_AFTER_MS : retry_after_ms;
    return b;
}

static int retryable_transport(ct_err rc)
{
    return rc == CT_E_REFUSED || rc == CT_E_RESET || rc == CT_E_IO;
}

static int retryable_status(long st)
{
    return st == 429 || (st >= 500 && st <= 599);
}

/*
 * One API call: method on path (starting with '/', query included, already
 * escaped), with an optional JSON body. CT_OK means a 2xx answer, in resp
 * (clear it in every case). Any other answer is mapped to a ct_err with
 * err->os_error the HTTP status (*status too, 0 without an answer).
 */
static ct_err k8s_call(ct_k8s_client *c, const char *method, const char *path,
                       const uint8_t *body, size_t body_len, const char *what,
                       size_t max_response, const char *accept, ctp_http_response *resp,
                       long *status, ct_error *err)
{
    int is_get = strcmp(method, "GET") == 0;
    int attempt = 0, retried_401 = 0;
    char *url;
    ct_err rc;

    *status = 0;
    memset(resp, 0, sizeof *resp);
    url = malloc(strlen(c->server) + strlen(path) + 1);
    if (!url)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    strcpy(url, c->server);
    strcat(url, path);
    for (;;) {
        ctp_http_header h[3];
        ctp_http_request rq;
        ct_secret *auth = NULL;
        size_t nh = 0;
        ct_error e;

        refresh_token(c, 0);
        h[nh++] = (ctp_http_header){ "Accept", accept, strlen(accept) };
        if (c->token) {
            size_t tl = ct_secret_len(c->token);
            rc = ct_secret_new(7 + tl, &auth, err);
            if (rc != CT_OK)
                break;
            memcpy(ct_secret_data(auth), "Bearer ", 7);
            memcpy(ct_secret_data(auth) + 7, ct_secret_data(c->token), tl);
            h[nh++] = (ctp_http_header){ "Authorization", (const char *)ct_secret_data(auth),
                                         7 + tl };
        }
        if (body)
            h[nh++] = (ctp_http_header){ "Content-Type", "application/json", 16 };
        memset(&rq, 0, sizeof rq);
        rq.method = method;
        rq.url = url;
        rq.headers = h;
        rq.nheaders = nh;
        rq.body = body;
        rq.body_len = body_len;
        rq.max_response = max_response;
        ctp_http_response_clear(resp);
        rc = ctp_http_do(c->http, &rq, resp, &e);
        ct_secret_free(auth);
        attempt++;
        if (rc != CT_OK) {
            if (is_get && retryable_transport(rc) && attempt <= c->get_retries) {
                int64_t w = backoff_ms(c, attempt, -1);
                ctp_log(c->ctx, CT_LOG_INFO, "k8s.retry", "%s: %s; retry %d of %d in %lld ms",
                        what, e.message, attempt, c->get_retries, (long long)w);
                sleep_ms(w);
                continue;
            }
            if (rc == CT_E_CERT)
                rc = ctp_err(err, rc, e.os_error, "%s: the API server's certificate is not "
                             "trusted (%s): check the kubeconfig's certificate-authority(-data) "
                             "or the service account's ca.crt", what, c->server);
            else if (!is_get && resp->sent)
                rc = ctp_err(err, rc, e.os_error, "%s: %s; the outcome is unknown (the request "
                             "may have been carried out): check before trying again", what,
                             e.message);
            else
                rc = ctp_err(err, rc, e.os_error, "%s: %s", what, e.message);
            break;
        }
        *status = resp->status;
        if (resp->status >= 200 && resp->status <= 299)
            break;
        if (resp->status == 401 && c->token_file && !retried_401) {
            retried_401 = 1;
            if (refresh_token(c, 1)) {
                ctp_log(c->ctx, CT_LOG_INFO, "k8s.retry", "%s: 401 with a token that has "
                        "since been rotated; trying the new one", what);
                continue;
            }
        }
        if (is_get && retryable_status(resp->status) && attempt <= c->get_retries) {
            int64_t w = backoff_ms(c, attempt, resp->retry_after_ms);
            ctp_log(c->ctx, CT_LOG_INFO, "k8s.retry", "%s: HTTP %ld; retry %d of %d in %lld ms",
                    what, resp->status, attempt, c->get_retries, (long long)w);
            sleep_ms(w);
            continue;
        }
        rc = ctp_k8s_http_error((int)resp->status, (const char *)resp->body, resp->body_len,
                                what, c->token ? CTP_K8S_AUTH_TOKEN
                                      : c->has_cert ? CTP_K8S_AUTH_CERT
                                                    : CTP_K8S_AUTH_NONE,
                                err);
        if (resp->status >= 500 || resp->status == 429) {
            if (err && attempt > 1) {
                size_t l = strlen(err->message);
                snprintf(err->message + l, sizeof err->message - l, " (after %d attempts)",
                         attempt);
            }
        }
        break;
    }
    free(url);
    if (rc != CT_OK)
        ctp_http_response_clear(resp);
    return rc;
}

static ct_err check_ns(ct_k8s_client *c, const char **ns, ct_error *err)
{
    if (!*ns)
        *ns = c->ns;
    if (!ctp_k8s_valid_name(*ns))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.64s\" is not a valid namespace name", *ns);
    return CT_OK;
}

/* ----------------------------------------------------------- the calls */

ct_err ct_k8s_get_namespace_uid(ct_k8s_client *c, const char *name, char uid[CT_K8S_UID_MAX],
                                ct_error *err)
{
    char path[400], what[300];
    ctp_http_response resp;
    long st;
    ct_err rc;

    if (!c || !uid)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_get_namespace_uid: NULL argument");
    uid[0] = '\0';
    if (!ctp_k8s_valid_name(name))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.64s\" is not a valid namespace name",
                       name ? name : "(null)");
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", name);
    snprintf(what, sizeof what, "get namespace %s", name);
    rc = k8s_call(c, "GET", path, NULL, 0, what, 0, "application/json", &resp, &st, err);
    if (rc == CT_OK)
        rc = ctp_k8s_parse_namespace_uid((const char *)resp.body, resp.body_len, name, uid,
                                         err);
    ctp_http_response_clear(&resp);
    return rc;
}

ct_err ct_fingerprint(ct_ctx *ctx, ct_k8s_client *client, char out[CT_FINGERPRINT_LEN + 1],
                      ct_error *err)
{
    ct_k8s_client *tmp = NULL;
    char uid[CT_K8S_UID_MAX];
    ct_error e2;
    ct_err rc;

    if (!out || (!ctx && !client))
        return ctp_err(err, CT_E_INVALID, 0, "ct_fingerprint: NULL argument");
    out[0] = '\0';
    if (!client) {
        rc = ct_k8s_client_new(ctx, NULL, &tmp, err);
        if (rc != CT_OK)
            return rc;
        client = tmp;
    }
    if (!ctx)
        ctx = client->ctx;
    rc = ct_k8s_get_namespace_uid(client, "kube-system", uid, err);
    if (rc == CT_OK && ct_fingerprint_canonical(uid, out, &e2) != CT_OK) {
        out[0] = '\0';
        rc = ctp_err(err, CT_E_PROTO, 0, "the kube-system namespace UID from %s is not a UUID: "
                     "%s", client->server, e2.message);
    }
    if (rc == CT_OK)
        ctp_log(ctx, CT_LOG_INFO, "k8s.fingerprint", "cluster fingerprint %.8s... from %s", out,
                client->server);
    ct_k8s_client_free(tmp);
    return rc;
}

ct_err ct_k8s_get_secret(ct_k8s_client *c, const char *ns, const char *name,
                         ct_k8s_secret **out, ct_error *err)
{
    char path[600], what[600];
    ctp_http_response resp;
    long st;
    ct_err rc;

    if (!c || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_get_secret: NULL argument");
    *out = NULL;
    if ((rc = check_ns(c, &ns, err)) != CT_OK)
        return rc;
    if (!ctp_k8s_valid_name(name))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.64s\" is not a valid Secret name",
                       name ? name : "(null)");
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/secrets/%s", ns, name);
    snprintf(what, sizeof what, "get secret %s/%s", ns, name);
    rc = k8s_call(c, "GET", path, NULL, 0, what, 0, "application/json", &resp, &st, err);
    if (rc == CT_OK)
        rc = ctp_k8s_parse_secret((const char *)resp.body, resp.body_len, out, err);
    ctp_http_response_clear(&resp);
    return rc;
}

/* Appends "&key=<escaped value>" (or "?key=...") to a query buffer. */
static ct_err add_query(char *q, size_t cap, const char *key, const char *value, ct_error *err)
{
    size_t l = strlen(q);
    int n = snprintf(q + l, cap - l, "%c%s=", l ? '&' : '?', key);
    if (n < 0 || (size_t)n >= cap - l ||
        ctp_http_path_escape(value, q + l + (size_t)n, cap - l - (size_t)n) != 0)
        return ctp_err(err, CT_E_TOOBIG, 0, "list secrets: the %s parameter is too long", key);
    return CT_OK;
}

ct_err ct_k8s_list_secrets(ct_k8s_client *c, const char *ns, const ct_k8s_list_options *opts,
                           ct_k8s_secret_list **out, ct_error *err)
{
    ct_k8s_list_options lo = CT_K8S_LIST_OPTIONS_INIT;
    ct_k8s_secret_list *list = NULL;
    char *cont = NULL, *path = NULL, what[300], limit[16];
    size_t cap = 16384;
    int pass;
    ct_err rc = CT_OK;

    if (!c || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_list_secrets: NULL argument");
    *out = NULL;
    if (opts) {
        if (opts->version != CT_K8S_LIST_OPTIONS_VERSION)
            return ctp_err(err, CT_E_VERSION, 0, "ct_k8s_list_options: unknown version %u",
                           opts->version);
        lo = *opts;
    }
    if ((rc = check_ns(c, &ns, err)) != CT_OK)
        return rc;
    snprintf(what, sizeof what, "list secrets in %s", ns);
    snprintf(limit, sizeof limit, "%u", lo.limit ? lo.limit : c->page_limit);
    path = malloc(cap);
    if (!path)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");

    for (pass = 0; pass < 2; pass++) {
        uint32_t pages = 0;
        list = ctp_k8s_secret_list_new();
        if (!list) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            break;
        }
        list->restarted = pass > 0;
        for (;;) {
            ctp_http_response resp;
            char q[8192] = "";
            char *next = NULL;
            int64_t remaining;
            long st;

            if ((rc = add_query(q, sizeof q, "limit", limit, err)) != CT_OK ||
                (lo.label_selector &&
                 (rc = add_query(q, sizeof q, "labelSelector", lo.label_selector, err)) !=
                     CT_OK) ||
                (lo.field_selector &&
                 (rc = add_query(q, sizeof q, "fieldSelector", lo.field_selector, err)) !=
                     CT_OK) ||
                (cont && (rc = add_query(q, sizeof q, "continue", cont, err)) != CT_OK))
                goto out;
            snprintf(path, cap, "/api/v1/namespaces/%s/secrets%s", ns, q);
            rc = k8s_call(c, "GET", path, NULL, 0, what, 0, "application/json", &resp, &st,
                          err);
            if (rc != CT_OK) {
                if (st == 410 && cont) {
                    free(cont);
                    cont = NULL;
                    if (pass == 0) {
                        ctp_log(c->ctx, CT_LOG_NOTICE, "k8s.list",
                                "%s: the continue token expired after %u pages; starting "
                                "the list again", what, pages);
                        break; /* next pass */
                    }
                    rc = ctp_err(err, CT_E_CONFLICT, 410,
                                 "%s: the list's continue token expired again after a restart "
                                 "(the API server compacts its history faster than the list "
                                 "is read): retry later, or list with a larger limit", what);
                }
                goto out;
            }
            rc = ctp_k8s_parse_secret_page((const char *)resp.body, resp.body_len, list,
                                           c->max_list_items, &next, &remaining, err);
            ctp_http_response_clear(&resp);
            if (rc != CT_OK) {
                free(next);
                goto out;
            }
            list->pages = ++pages;
            if (next && cont && strcmp(next, cont) == 0) {
                free(next);
                rc = ctp_err(err, CT_E_PROTO, 0, "%s: the API server sent the same continue "
                             "token twice", what);
                goto out;
            }
            free(cont);
            cont = next;
            if (!cont) {
                *out = list;
                list = NULL;
                goto out;
            }
            if (pages >= MAX_PAGES) {
                rc = ctp_err(err, CT_E_TOOBIG, 0, "%s: more than %u pages", what, MAX_PAGES);
                goto out;
            }
        }
        ct_k8s_secret_list_free(list);
        list = NULL;
    }
out:
    if (rc == CT_OK && !*out)
        rc = ctp_err(err, CT_E_INTERNAL, 0, "%s: list loop ended without a result", what);
    ct_k8s_secret_list_free(list);
    free(cont);
    free(path);
    return rc;
}

ct_err ct_k8s_delete_secret(ct_k8s_client *c, const char *ns, const char *name,
                            const char *uid, const char *resource_version, int *deleted,
                            ct_error *err)
{
    char path[600], what[600], *body = NULL;
    ctp_http_response resp;
    int gone = 0;
    long st;
    ct_err rc;

    if (deleted)
        *deleted = 0;
    if (!c)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_delete_secret: NULL client");
    if ((rc = check_ns(c, &ns, err)) != CT_OK)
        return rc;
    if (!ctp_k8s_valid_name(name))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.64s\" is not a valid Secret name",
                       name ? name : "(null)");
    if ((!uid || !*uid) && (!resource_version || !*resource_version))
        return ctp_err(err, CT_E_INVALID, 0, "delete secret %s/%s: give the uid and/or "
                       "resourceVersion it was read with (a precondition)", ns, name);
    rc = ctp_k8s_delete_body(uid && *uid ? uid : NULL,
                             resource_version && *resource_version ? resource_version : NULL,
                             &body, err);
    if (rc != CT_OK)
        return rc;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/secrets/%s", ns, name);
    snprintf(what, sizeof what, "delete secret %s/%s", ns, name);
    rc = k8s_call(c, "DELETE", path, (const uint8_t *)body, strlen(body), what, 0,
                  "application/json", &resp, &st, err);
    if (rc == CT_OK)
        rc = ctp_k8s_parse_delete((const char *)resp.body, resp.body_len, &gone, err);
    ctp_http_response_clear(&resp);
    free(body);
    if (rc == CT_OK && deleted)
        *deleted = gone;
    return rc;
}

ct_err ct_k8s_create_secret(ct_k8s_client *c, const char *ns, const char *name,
                            const char *type, const char *const *labels,
                            const char *const *keys, const ct_secret *const *values, size_t n,
                            ct_k8s_secret **out, ct_error *err)
{
    char path[600], what[600];
    ct_secret *body = NULL;
    ct_k8s_secret *made = NULL;
    ctp_http_response resp;
    long st;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!c || (n && (!keys || !values)))
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_create_secret: NULL argument");
    if ((rc = check_ns(c, &ns, err)) != CT_OK)
        return rc;
    if (!ctp_k8s_valid_name(name))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.64s\" is not a valid Secret name",
                       name ? name : "(null)");
    rc = ctp_k8s_secret_body(ns, name, type, labels, keys, values, n, &body, err);
    if (rc != CT_OK)
        return rc;
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/secrets", ns);
    snprintf(what, sizeof what, "create secret %s/%s", ns, name);
    rc = k8s_call(c, "POST", path, ct_secret_data(body), ct_secret_len(body), what, 0,
                  "application/json", &resp, &st, err);
    if (rc == CT_OK)
        rc = ctp_k8s_parse_secret((const char *)resp.body, resp.body_len, &made, err);
    ctp_http_response_clear(&resp);
    ct_secret_free(body);
    if (rc == CT_OK && out)
        *out = made;
    else
        ct_k8s_secret_free(made);
    return rc;
}

ct_err ct_k8s_create_token_review(ct_k8s_client *c, const char *token,
                                  const char *const *audiences, size_t n_audiences,
                                  ct_k8s_token_review **out, ct_error *err)
{
    ct_secret *body = NULL;
    ctp_http_response resp;
    long st;
    ct_err rc;

    if (!c || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_create_token_review: NULL argument");
    *out = NULL;
    rc = ctp_k8s_token_review_body(token, audiences, n_audiences, &body, err);
    if (rc != CT_OK)
        return rc;
    rc = k8s_call(c, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", ct_secret_data(body),
                  ct_secret_len(body), "create token review", 0, "application/json", &resp,
                  &st, err);
    if (rc == CT_OK)
        rc = ctp_k8s_parse_token_review((const char *)resp.body, resp.body_len, out, err);
    ctp_http_response_clear(&resp);
    ct_secret_free(body);
    return rc;
}

ct_err ct_k8s_get_jwks(ct_k8s_client *c, char **json, size_t *len, ct_error *err)
{
    ctp_http_response resp;
    long st;
    ct_err rc;

    if (!c || !json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_k8s_get_jwks: NULL argument");
    *json = NULL;
    if (len)
        *len = 0;
    rc = k8s_call(c, "GET", "/openid/v1/jwks", NULL, 0, "get issuer keys (/openid/v1/jwks)",
                  CT_JWKS_MAX_LEN, "application/jwk-set+json, application/json", &resp, &st,
                  err);
    if (rc == CT_OK)
        rc = ctp_k8s_check_jwks((const char *)resp.body, resp.body_len, err);
    if (rc == CT_OK) {
        *json = malloc(resp.body_len + 1);
        if (!*json) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        } else {
            memcpy(*json, resp.body, resp.body_len);
            (*json)[resp.body_len] = '\0';
            if (len)
                *len = resp.body_len;
        }
    }
    ctp_http_response_clear(&resp);
    return rc;
}

/* ------------------------------------------------------------ results */

const char *ct_k8s_secret_name(const ct_k8s_secret *s)
{
    return s ? s->name : "";
}

const char *ct_k8s_secret_namespace(const ct_k8s_secret *s)
{
    return s ? s->ns : "";
}

const char *ct_k8s_secret_uid(const ct_k8s_secret *s)
{
    return s ? s->uid : "";
}

const char *ct_k8s_secret_resource_version(const ct_k8s_secret *s)
{
    return s ? s->rv : "";
}

const char *ct_k8s_secret_type(const ct_k8s_secret *s)
{
    return s ? s->type : "";
}

int ct_k8s_secret_has_owner(const ct_k8s_secret *s)
{
    return s ? s->has_owner : 0;
}

int ct_k8s_secret_immutable(const ct_k8s_secret *s)
{
    return s ? s->immutable : 0;
}

size_t ct_k8s_secret_label_count(const ct_k8s_secret *s)
{
    return s ? s->n_labels : 0;
}

const char *ct_k8s_secret_label_key(const ct_k8s_secret *s, size_t i)
{
    return s && i < s->n_labels ? s->label_keys[i] : NULL;
}

const char *ct_k8s_secret_label_value(const ct_k8s_secret *s, size_t i)
{
    return s && i < s->n_labels ? s->label_values[i] : NULL;
}

size_t ct_k8s_secret_data_count(const ct_k8s_secret *s)
{
    return s ? s->n_data : 0;
}

const char *ct_k8s_secret_data_key(const ct_k8s_secret *s, size_t i)
{
    return s && i < s->n_data ? s->data_keys[i] : NULL;
}

const ct_secret *ct_k8s_secret_data_value(const ct_k8s_secret *s, size_t i)
{
    return s && i < s->n_data ? s->data_values[i] : NULL;
}

const ct_secret *ct_k8s_secret_data_get(const ct_k8s_secret *s, const char *key)
{
    size_t i;
    for (i = 0; s && key && i < s->n_data; i++)
        if (strcmp(s->data_keys[i], key) == 0)
            return s->data_values[i];
    return NULL;
}

size_t ct_k8s_secret_list_count(const ct_k8s_secret_list *l)
{
    return l ? l->n : 0;
}

const ct_k8s_secret *ct_k8s_secret_list_get(const ct_k8s_secret_list *l, size_t i)
{
    return l && i < l->n ? l->items[i] : NULL;
}

const char *ct_k8s_secret_list_resource_version(const ct_k8s_secret_list *l)
{
    return l && l->rv ? l->rv : "";
}

uint32_t ct_k8s_secret_list_pages(const ct_k8s_secret_list *l)
{
    return l ? l->pages : 0;
}

int ct_k8s_secret_list_restarted(const ct_k8s_secret_list *l)
{
    return l ? l->restarted : 0;
}

int ct_k8s_token_review_authenticated(const ct_k8s_token_review *r)
{
    return r ? r->authenticated : 0;
}

const char *ct_k8s_token_review_username(const ct_k8s_token_review *r)
{
    return r ? r->username : "";
}

const char *ct_k8s_token_review_uid(const ct_k8s_token_review *r)
{
    return r ? r->uid : "";
}

const char *ct_k8s_token_review_error(const ct_k8s_token_review *r)
{
    return r ? r->error : "";
}

size_t ct_k8s_token_review_group_count(const ct_k8s_token_review *r)
{
    return r ? r->n_groups : 0;
}

const char *ct_k8s_token_review_group(const ct_k8s_token_review *r, size_t i)
{
    return r && i < r->n_groups ? r->groups[i] : NULL;
}

size_t ct_k8s_token_review_audience_count(const ct_k8s_token_review *r)
{
    return r ? r->n_audiences : 0;
}

const char *ct_k8s_token_review_audience(const ct_k8s_token_review *r, size_t i)
{
    return r && i < r->n_audiences ? r->audiences[i] : NULL;
}
