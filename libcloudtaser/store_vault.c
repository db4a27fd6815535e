/*
 * store_vault.c - the Vault / OpenBao store (vault.h): ct_store_ops on a KV
 * version 2 engine over the library's HTTPS client (http_internal.h), with
 * retries where they are safe and re-reads where a write's outcome is
 * unknown. JSON handling is in vault_json.c, the environment in vault_env.c.
 */
#include "http_internal.h"
#include "vault_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEF_RETRIES 2
#define MAX_RETRIES_CAP 10
#define DEF_RETRY_WAIT_MS 250
#define MAX_BACKOFF_MS 5000
/* A Retry-After longer than this is not waited for: the call fails. */
#define MAX_RETRY_AFTER_MS 30000
/* Races an unconditional put on a cas_required mount may lose in a row. */
#define ANY_CAS_ROUNDS 8
#define TOKEN_FILE_MAX 65536
#define ADDRESS_MAX 1024
#define MOUNT_MAX 256

typedef struct vstore {
    ct_ctx *ctx;
    ctp_http *http;
    char *base;  /* "https://host:port[/prefix]" without trailing '/' */
    char *host;  /* for messages */
    char *mount; /* without surrounding '/' */
    char *ns;    /* namespace or NULL */
    ct_secret *token;
    int max_retries, retry_wait_ms;
    pthread_mutex_t mu; /* guards kv_checked */
    int mu_init;
    int kv_checked;     /* the mount check passed (or could not be made) */
} vstore;

/* ---- configuration ---- */

static void vstore_free(vstore *v)
{
    if (!v)
        return;
    ctp_http_free(v->http);
    free(v->base);
    free(v->host);
    free(v->mount);
    free(v->ns);
    ct_secret_free(v->token);
    if (v->mu_init)
        pthread_mutex_destroy(&v->mu);
    free(v);
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

static ct_err check_address(const char *addr, char **base, char **host, ct_error *err)
{
    size_t n;
    const char *h;
    *base = *host = NULL;
    if (!addr || !*addr)
        return ctp_err(err, CT_E_INVALID, 0,
                       "no Vault address: set VAULT_ADDR or --vault-address "
                       "(https://host:8200)");
    n = strlen(addr);
    if (n > ADDRESS_MAX || !printable(addr) || strpbrk(addr, " ?#"))
        return ctp_err(err, CT_E_INVALID, 0,
                       "the Vault address is not a plain https:// URL (no spaces, query or "
                       "fragment)");
    if (strncasecmp(addr, "http://", 7) == 0)
        return ctp_err(err, CT_E_INVALID, 0,
                       "the Vault address is http://: the token would cross the network in "
                       "the clear; use https:// (cloudtaser talks to Vault over TLS only)");
    if (strncasecmp(addr, "https://", 8) != 0)
        return ctp_err(err, CT_E_INVALID, 0,
                       "the Vault address must be an https:// URL, e.g. https://vault:8200");
    h = addr + 8;
    if (!*h || *h == '/' || strchr(h, '@'))
        return ctp_err(err, CT_E_INVALID, 0,
                       "the Vault address has no host (or carries user info): use "
                       "https://host[:port]");
    while (n > 8 && addr[n - 1] == '/')
        n--;
    *base = ctp_memdup(addr, n + 1);
    *host = ctp_memdup(h, strcspn(h, "/") + 1);
    if (!*base || !*host) {
        free(*base);
        free(*host);
        *base = *host = NULL;
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    (*base)[n] = '\0';
    (*host)[strcspn(h, "/")] = '\0';
    return CT_OK;
}

static ct_err check_mount(const char *m, char **out, ct_error *err)
{
    size_t n, i, seg = 0;
    const char *p;
    *out = NULL;
    if (!m || !*m)
        m = CT_VAULT_DEFAULT_MOUNT;
    while (*m == '/')
        m++;
    n = strlen(m);
    while (n && m[n - 1] == '/')
        n--;
    if (n == 0 || n > MOUNT_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "the Vault mount name is empty or too long");
    for (i = 0, p = m; i <= n; i++) {
        char c = i < n ? m[i] : '/';
        if (c == '/') {
            if (seg == 0 || (seg == 1 && p[0] == '.') || (seg == 2 && p[0] == '.' && p[1] == '.'))
                return ctp_err(err, CT_E_INVALID, 0,
                               "the Vault mount '%.*s' has an empty or dot segment", (int)n, m);
            seg = 0;
            p = m + i + 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == '-') {
            seg++;
        } else {
            return ctp_err(err, CT_E_INVALID, 0,
                           "the Vault mount name may use only letters, digits, '.', '_', '-' "
                           "and '/'");
        }
    }
    *out = ctp_memdup(m, n + 1);
    if (!*out)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    (*out)[n] = '\0';
    return CT_OK;
}

/* Trims ASCII whitespace in place; checks token characters. */
static ct_err token_from(const char *p, size_t n, const char *origin, ct_secret **out,
                         ct_error *err)
{
    size_t i;
    while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        n--;
    if (n == 0)
        return ctp_err(err, CT_E_INVALID, 0, "the Vault token (%s) is empty", origin);
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
            return ctp_err(err, CT_E_INVALID, 0,
                           "the Vault token (%s) contains characters a token cannot have "
                           "(spaces, control or non-ASCII characters)",
                           origin);
    return ct_secret_from(p, n, out, err);
}

static ct_err read_token_file(const char *path, ct_secret **out, ct_error *err)
{
    char full[4096];
    const char *fp = path;
    int is_default = strcmp(path, CT_VAULT_TOKEN_FILE_HOME) == 0;
    ct_secret *buf = NULL;
    ct_err rc;

    *out = NULL;
    if (strncmp(path, "~/", 2) == 0) {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            return ctp_err(err, CT_E_INVALID, 0, "cannot expand %s: no home directory", path);
        if (snprintf(full, sizeof full, "%s/%s", home, path + 2) >= (int)sizeof full)
            return ctp_err(err, CT_E_INVALID, 0, "token file path too long");
        fp = full;
    }
    rc = ct_secret_read_file(fp, TOKEN_FILE_MAX, "Vault token file", 0, &buf, err);
    if (rc == CT_E_NOTFOUND && is_default)
        return ctp_err(err, CT_E_INVALID, 0,
                       "no Vault token: set VAULT_TOKEN, --vault-token or "
                       "--vault-token-file, or log in with `vault login` (which writes "
                       "~/.vault-token)");
    if (rc != CT_OK)
        return rc;
    rc = token_from((const char *)ct_secret_data(buf), ct_secret_len(buf), fp, out, err);
    ct_secret_free(buf);
    return rc;
}

/* Checks and copies options; the token only when need_token. */
static ct_err vstore_open(ct_ctx *ctx, const ct_vault_options *o, int need_token, vstore **out,
                          ct_error *err)
{
    ctp_http_config hc = {0};
    vstore *v;
    ct_err rc;

    *out = NULL;
    if (!o)
        return ctp_err(err, CT_E_INVALID, 0, "no Vault options");
    if (o->version != CT_VAULT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_vault_options version %u is not supported",
                       (unsigned)o->version);
    if (o->skip_verify && !o->force_insecure)
        return ctp_err(err, CT_E_INVALID, 0,
                       "VAULT_SKIP_VERIFY / --vault-skip-verify turns TLS verification off, so "
                       "anyone on the network path could take the token: refused. Give the "
                       "Vault CA instead (VAULT_CACERT, --vault-cacert), or add "
                       "--force-insecure if you really mean it");
    if (!o->client_cert != !o->client_key)
        return ctp_err(err, CT_E_INVALID, 0,
                       "a Vault client certificate needs its key and a key its certificate "
                       "(VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)");
    if (o->namespace_path && (!printable(o->namespace_path) ||
                              strlen(o->namespace_path) > 512))
        return ctp_err(err, CT_E_INVALID, 0,
                       "the Vault namespace contains control characters or is too long");
    if (!(v = ctp_calloc(1, sizeof *v)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    v->ctx = ctx;
    if (pthread_mutex_init(&v->mu, NULL) != 0) {
        free(v);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "cannot create a mutex");
    }
    v->mu_init = 1;
    if ((rc = check_address(o->address, &v->base, &v->host, err)) != CT_OK ||
        (rc = check_mount(o->mount, &v->mount, err)) != CT_OK)
        goto fail;
    if (o->namespace_path && *o->namespace_path && !(v->ns = ctp_strdup(o->namespace_path))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto fail;
    }
    if (need_token) {
        if (o->token && *o->token)
            rc = token_from(o->token, strlen(o->token), "VAULT_TOKEN / --vault-token", &v->token,
                            err);
        else if (o->token_file && *o->token_file)
            rc = read_token_file(o->token_file, &v->token, err);
        else
            rc = ctp_err(err, CT_E_INVALID, 0,
                         "no Vault token: set VAULT_TOKEN, --vault-token or "
                         "--vault-token-file");
        if (rc != CT_OK)
            goto fail;
    }
    v->max_retries = o->max_retries < 0    ? 0
                     : o->max_retries == 0 ? DEF_RETRIES
                     : o->max_retries > MAX_RETRIES_CAP ? MAX_RETRIES_CAP
                                                        : o->max_retries;
    v->retry_wait_ms = o->retry_wait_ms > 0 ? (o->retry_wait_ms > 60000 ? 60000 : o->retry_wait_ms)
                                            : DEF_RETRY_WAIT_MS;
    hc.ca_file = o->ca_file && *o->ca_file ? o->ca_file : NULL;
    hc.ca_path = o->ca_path && *o->ca_path ? o->ca_path : NULL;
    hc.cert_file = o->client_cert;
    hc.key_file = o->client_key;
    hc.insecure = o->skip_verify && o->force_insecure;
    hc.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : ctp_timeout(ctx, -1);
    hc.max_response = o->max_response ? o->max_response : CT_VAULT_DEFAULT_MAX_RESPONSE;
    if ((rc = ctp_http_new(ctx, &hc, &v->http, err)) != CT_OK)
        goto fail;
    if (hc.insecure)
        ctp_log(ctx, CT_LOG_WARNING, "vault.insecure",
                "TLS certificate verification is OFF for Vault at %s (forced)", v->host);
    *out = v;
    return CT_OK;
fail:
    vstore_free(v);
    return rc;
}

/* ---- requests ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Exponential backoff with jitter in [w/2, w], or the server's Retry-After. */
static int backoff_ms(const vstore *v, int attempt, int64_t retry_after)
{
    int64_t w = (int64_t)v->retry_wait_ms << (attempt < 10 ? attempt : 10);
    uint32_t r = 0;
    if (w > MAX_BACKOFF_MS)
        w = MAX_BACKOFF_MS;
    if (ct_ctx_random(v->ctx, (uint8_t *)&r, sizeof r) != CT_OK)
        r = 0;
    w = w / 2 + (int64_t)(r % (uint32_t)(w / 2 + 1));
    if (retry_after >= 0 && retry_after > w)
        w = retry_after;
    return (int)w;
}

/*
 * One HTTP request to /v1/<path>. `auth`: send the token and namespace.
 * `query` may be NULL.
 */
static ct_err vcall(vstore *v, const char *method, const char *path, const char *query,
                    const ct_secret *body, int auth, ctp_http_response *resp, ct_error *err)
{
    ctp_http_header hd[4];
    ctp_http_request rq = {0};
    size_t nh = 0, ulen;
    char *url;
    ct_err rc;

    ulen = strlen(v->base) + 4 + strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
    if (!(url = malloc(ulen))) {
        memset(resp, 0, sizeof *resp);
        resp->retry_after_ms = -1;
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    snprintf(url, ulen, "%s/v1/%s%s%s", v->base, path, query ? "?" : "", query ? query : "");
    if (auth) {
        hd[nh].name = "X-Vault-Token";
        hd[nh].value = (const char *)ct_secret_data(v->token);
        hd[nh].value_len = ct_secret_len(v->token);
        nh++;
        if (v->ns) {
            hd[nh].name = "X-Vault-Namespace";
            hd[nh].value = v->ns;
            hd[nh].value_len = strlen(v->ns);
            nh++;
        }
    }
    hd[nh].name = "X-Vault-Request";
    hd[nh].value = "true";
    hd[nh].value_len = 4;
    nh++;
    if (body) {
        hd[nh].name = "Content-Type";
        hd[nh].value = "application/json";
        hd[nh].value_len = 16;
        nh++;
    }
    rq.method = method;
    rq.url = url;
    rq.headers = hd;
    rq.nheaders = nh;
    rq.body = body ? ct_secret_data(body) : NULL;
    rq.body_len = body ? ct_secret_len(body) : 0;
    rc = ctp_http_do(v->http, &rq, resp, err);
    free(url);
    return rc;
}

static int transport_retryable(ct_err rc)
{
    return rc == CT_E_REFUSED || rc == CT_E_RESET || rc == CT_E_TIMEOUT || rc == CT_E_IO;
}

/* A status worth another try for a request that is safe to repeat. */
static int status_retryable(const ctp_http_response *r, int health)
{
    ctp_vault_errors e;
    if (health) /* 501 uninitialised, 503 sealed, 530 removed: states, not hiccups */
        return r->status >= 500 && r->status != 501 && r->status != 503 && r->status != 530;
    if (r->status == 429)
        return r->retry_after_ms <= MAX_RETRY_AFTER_MS;
    if (r->status < 500 || r->status == 501)
        return 0;
    if (r->retry_after_ms > MAX_RETRY_AFTER_MS)
        return 0; /* a 5xx asking for a long pause: report it now, as for 429 */
    if (r->status == 503) {
        ctp_vault_parse_errors(r->body, r->body_len, &e);
        return !e.sealed;
    }
    return 1;
}

/*
 * A request that is safe to repeat (GET, LIST, DELETE; or one the server
 * refused without executing it): retried on transport errors and
 * retryable statuses. Returns the last attempt's result; CT_OK means an
 * HTTP answer is in *resp (which may still be an error status).
 */
static ct_err vcall_retry_body(vstore *v, const char *method, const char *path,
                               const char *query, const ct_secret *body, int auth, int health,
                               const char *what, ctp_http_response *resp, ct_error *err)
{
    int attempt;
    ct_err rc = CT_OK;
    for (attempt = 0;; attempt++) {
        int wait;
        rc = vcall(v, method, path, query, body, auth, resp, err);
        if (rc == CT_OK ? !status_retryable(resp, health) : !transport_retryable(rc))
            return rc;
        if (attempt >= v->max_retries)
            return rc;
        wait = backoff_ms(v, attempt, rc == CT_OK ? resp->retry_after_ms : -1);
        ctp_log(v->ctx, CT_LOG_INFO, "vault.retry", "vault %s: %s%s, retry %d of %d in %d ms",
                what, rc == CT_OK ? "HTTP " : ct_err_name(rc),
                rc == CT_OK ? (resp->status == 429 ? "429 (rate limited)" : "5xx") : "",
                attempt + 1, v->max_retries, wait);
        ctp_http_response_clear(resp);
        sleep_ms(wait);
    }
}

static ct_err vcall_retry(vstore *v, const char *method, const char *path, const char *query,
                          int auth, int health, const char *what, ctp_http_response *resp,
                          ct_error *err)
{
    return vcall_retry_body(v, method, path, query, NULL, auth, health, what, resp, err);
}

/* The part of the mount a policy must cover for an operation (messages). */
static const char *acl_path(const char *op)
{
    if (strcmp(op, "list") == 0 || strcmp(op, "delete") == 0 ||
        strncmp(op, "metadata", 8) == 0)
        return "metadata/*";
    if (strcmp(op, "version delete") == 0)
        return "delete/*";
    return "data/*";
}

/*
 * Maps an HTTP answer that is not the operation's success to an error.
 * `op`: "read", "write", "delete", "list"; `caps`: the capabilities the
 * token needs, for the message.
 */
static ct_err map_status(const vstore *v, const ctp_http_response *r, const char *op,
                         const char *key, const char *caps, ct_error *err)
{
    ctp_vault_errors e;
    char sk[CT_STORE_KEY_MAX + 8];
    int32_t st = (int32_t)r->status;
    const char *txt;

    ctp_vault_short_key(key, sk, sizeof sk);
    ctp_vault_parse_errors(r->body, r->body_len, &e);
    txt = e.text[0] ? e.text : "no message";
    if (st == 403)
        return ctp_err(err, CT_E_DENIED, st,
                       "vault denied the %s of %s (HTTP 403: %s): check the token (valid, not "
                       "expired or revoked: log in again or set VAULT_TOKEN) and that its "
                       "policy grants %s on %s/%s",
                       op, sk, txt, caps, v->mount, acl_path(op));
    if (e.sealed)
        return ctp_err(err, CT_E_STORE, st,
                       "vault at %s is sealed: unseal it (vault operator unseal) and retry",
                       v->host);
    if (e.no_active)
        return ctp_err(err, CT_E_STORE, st,
                       "vault at %s has no active node (HTTP %d: %s): retry when the cluster "
                       "has elected a leader",
                       v->host, st, txt);
    if (e.no_route || (st == 404 && e.invalid_path))
        return ctp_err(err, CT_E_STORE, st,
                       "vault at %s has no KV version 2 engine at '%s' (HTTP %d: %s): enable "
                       "one (vault secrets enable -path=%s kv-v2) or set --vault-mount",
                       v->host, v->mount, st, txt, v->mount);
    if (st == 429)
        return ctp_err(err, CT_E_STORE, st,
                       "vault at %s keeps rate-limiting the %s (HTTP 429: %s): retry later or "
                       "raise the rate limit quota",
                       v->host, op, txt);
    if (st == 413)
        return ctp_err(err, CT_E_TOOBIG, st, "vault refused the %s of %s as too large (HTTP 413)",
                       op, sk);
    if (st >= 500)
        return ctp_err(err, CT_E_STORE, st,
                       "vault at %s failed the %s of %s (HTTP %d: %s): check the server's "
                       "logs and retry",
                       v->host, op, sk, st, txt);
    return ctp_err(err, CT_E_STORE, st, "vault refused the %s of %s (HTTP %d: %s)", op, sk, st,
                   txt);
}

/* "<mount>/<kind>/<key>" */
static char *kv_path(const vstore *v, const char *kind, const char *key)
{
    size_t n = strlen(v->mount) + strlen(kind) + strlen(key) + 3;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s/%s", v->mount, kind, key);
    return p;
}

/* Parses a body as JSON with a message when it is not (CT_E_STORE). */
static ct_err bad_json(const vstore *v, const char *op, ct_err rc, ct_error *err)
{
    if (rc == CT_E_STORE && err) {
        char msg[sizeof err->message];
        memcpy(msg, err->message, sizeof msg);
        msg[sizeof msg - 1] = '\0';
        ctp_err(err, CT_E_STORE, err->os_error, "vault at %s, %s: %.180s", v->host, op, msg);
    }
    return rc;
}

/* ---- the mount check ---- */

/*
 * Whether the mount path the server reports is our mount. In a namespace,
 * Vault reports a mount that lives in a child namespace of the request's
 * with that child's path in front ("team1/kv" asked in namespace "admin"
 * answers "admin/team1/kv"): any "<...>/<mount>" then matches.
 */
static int mount_path_is(const char *reported, const char *mount, const char *ns)
{
    size_t rl = strlen(reported), ml = strlen(mount);
    if (strcmp(reported, mount) == 0)
        return 1;
    return ns && rl > ml && reported[rl - ml - 1] == '/' &&
           strcmp(reported + rl - ml, mount) == 0;
}

/* Judges what the server says about the mount: CT_OK for KV version 2. */
static ct_err judge_mount(const vstore *v, const ctp_vault_mount *m, ct_error *err)
{
    int kv = strcmp(m->type, "kv") == 0 || strcmp(m->type, "generic") == 0;
    if (!kv)
        return ctp_err(err, CT_E_STORE, 0,
                       "vault at %s: '%s' is a '%.40s' secrets engine, not KV version 2: "
                       "point --vault-mount at a KV v2 mount (vault secrets enable "
                       "-path=<mount> kv-v2)",
                       v->host, v->mount, m->type);
    if (m->path[0] && !mount_path_is(m->path, v->mount, v->ns))
        return ctp_err(err, CT_E_STORE, 0,
                       "vault at %s: '%s' is not a mount but a path inside the KV mount "
                       "'%.100s': set --vault-mount to the mount itself",
                       v->host, v->mount, m->path);
    if (m->kv_version != 2)
        return ctp_err(err, CT_E_STORE, 0,
                       "vault at %s: the mount '%s' is KV version 1, but cloudtaser needs "
                       "version 2 (versions, check-and-set): upgrade it (vault kv "
                       "enable-versioning %s) or enable a new one (vault secrets enable "
                       "-path=<mount> -version=2 kv)",
                       v->host, v->mount, v->mount);
    return CT_OK;
}

/*
 * The vault CLI's kv preflight, once per store before its first KV request:
 * GET sys/internal/ui/mounts/<mount>. KV version 2: remembered, never asked
 * again. KV version 1 or another engine: an error (asked again next time,
 * so fixing the mount needs no restart). A 400/403/404/405 (an older
 * server without the endpoint, or a policy that does not cover the mount,
 * for which Vault answers 403 for a missing mount too): remembered as
 * "proceed as version 2", without a word; the KV requests then tell what is
 * wrong. Transport errors, a sealed Vault, 5xx: that error, not remembered.
 */
static ct_err kv_check(vstore *v, ct_error *err)
{
    ctp_http_response r;
    ctp_vault_mount m;
    char path[MOUNT_MAX + 32];
    int done;
    ct_err rc;

    pthread_mutex_lock(&v->mu);
    done = v->kv_checked;
    pthread_mutex_unlock(&v->mu);
    if (done)
        return CT_OK;
    snprintf(path, sizeof path, "sys/internal/ui/mounts/%s", v->mount);
    rc = vcall_retry(v, "GET", path, NULL, 1, 0, "mount check", &r, err);
    if (rc != CT_OK)
        return rc;
    if (r.status == 200) {
        rc = ctp_vault_parse_mount(r.body, r.body_len, &m, err);
        if (rc == CT_OK)
            rc = judge_mount(v, &m, err);
    } else if (r.status == 400 || r.status == 403 || r.status == 404 || r.status == 405) {
        rc = CT_OK;
    } else {
        rc = map_status(v, &r, "mount check", v->mount, "read", err);
    }
    ctp_http_response_clear(&r);
    if (rc == CT_OK) {
        pthread_mutex_lock(&v->mu);
        v->kv_checked = 1;
        pthread_mutex_unlock(&v->mu);
    }
    return rc;
}

/* ---- get ---- */

/*
 * Reads version `version` of a key (0: the current one): CT_OK (value,
 * version), CT_E_NOTFOUND (with rd->version of a deleted version, 0 if
 * absent), or an error.
 */
static ct_err vread(vstore *v, const char *key, uint64_t version, ctp_vault_read *rd,
                    ct_error *err)
{
    ctp_http_response r;
    char *path = kv_path(v, "data", key);
    char sk[CT_STORE_KEY_MAX + 8], q[40], which[64];
    ct_err rc;

    memset(rd, 0, sizeof *rd);
    if (!path)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    snprintf(q, sizeof q, "version=%llu", (unsigned long long)version);
    rc = vcall_retry(v, "GET", path, version ? q : NULL, 1, 0, "read", &r, err);
    free(path);
    if (rc != CT_OK)
        return rc;
    if (r.status == 404) {
        ctp_vault_errors e;
        ctp_vault_parse_errors(r.body, r.body_len, &e);
        if (e.no_route || e.invalid_path) {
            rc = map_status(v, &r, "read", key, "read", err);
        } else {
            (void)ctp_vault_parse_read(r.body, r.body_len, 404, rd, NULL);
            ctp_vault_short_key(key, sk, sizeof sk);
            if (version)
                snprintf(which, sizeof which, "version %llu", (unsigned long long)version);
            else
                snprintf(which, sizeof which, "its current version");
            if (rd->destroyed || rd->deleted)
                rc = ctp_err(err, CT_E_NOTFOUND, 404, "%s: not found in vault (%s is %s)", sk,
                             which, rd->destroyed ? "destroyed" : "deleted");
            else if (version)
                rc = ctp_err(err, CT_E_NOTFOUND, 404,
                             "%s: not found in vault (no version %llu: never written, or "
                             "pruned by max_versions, or the key is missing)",
                             sk, (unsigned long long)version);
            else
                rc = ctp_err(err, CT_E_NOTFOUND, 404, "%s: not found in vault", sk);
        }
    } else if (r.status == 200) {
        rc = bad_json(v, "read", ctp_vault_parse_read(r.body, r.body_len, 200, rd, err), err);
    } else {
        rc = map_status(v, &r, "read", key, "read", err);
    }
    ctp_http_response_clear(&r);
    return rc;
}

static ct_err vs_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                     void *user)
{
    ctp_vault_read rd;
    ct_err rc;
    *value = NULL;
    if ((rc = kv_check(user, err)) != CT_OK)
        return rc;
    rc = vread(user, key, 0, &rd, err);
    if (rc != CT_OK) {
        ct_secret_free(rd.value);
        return rc;
    }
    *value = rd.value;
    if (version)
        *version = rd.version;
    return CT_OK;
}

/* ---- put ---- */

/* The key's current version from its metadata (0 if it has none). */
static ct_err current_version(vstore *v, const char *key, uint64_t *ver, ct_error *err)
{
    ctp_http_response r;
    char *path = kv_path(v, "metadata", key);
    int casreq;
    ct_err rc;
    *ver = 0;
    if (!path)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    rc = vcall_retry(v, "GET", path, NULL, 1, 0, "metadata read", &r, err);
    free(path);
    if (rc != CT_OK)
        return rc;
    if (r.status == 200) {
        rc = bad_json(v, "metadata read",
                      ctp_vault_parse_metadata(r.body, r.body_len, ver, &casreq, err), err);
    } else if (r.status == 404) {
        ctp_vault_errors e;
        ctp_vault_parse_errors(r.body, r.body_len, &e);
        rc = e.no_route ? map_status(v, &r, "metadata read", key, "read", err) : CT_E_NOTFOUND;
    } else {
        rc = map_status(v, &r, "metadata read", key, "read", err);
    }
    ctp_http_response_clear(&r);
    return rc;
}

enum unknown_verdict { V_DONE, V_RESEND, V_CONFLICT, V_UNKNOWN };

/*
 * After a write whose answer was lost: reads the key back and decides.
 * `why` says how the answer was lost (for the message).
 */
static enum unknown_verdict resolve_unknown(vstore *v, const char *key, const uint8_t *value,
                                            size_t len, int64_t cas, uint64_t *version,
                                            char *why_read, size_t why_len)
{
    ctp_vault_read rd;
    ct_error e2;
    ct_err rc = vread(v, key, 0, &rd, &e2);
    uint64_t cur;

    why_read[0] = '\0';
    if (rc == CT_OK) {
        int same = ct_secret_len(rd.value) == len &&
                   (len == 0 || ct_memeq(ct_secret_data(rd.value), value, len));
        ct_secret_free(rd.value);
        if (same && (cas < 0 || rd.version == (uint64_t)cas + 1)) {
            *version = rd.version;
            return V_DONE;
        }
        cur = rd.version;
    } else if (rc == CT_E_NOTFOUND) {
        cur = rd.version; /* a deleted current version, or 0 */
    } else {
        snprintf(why_read, why_len, "; reading it back failed too: %s", e2.message);
        return V_UNKNOWN;
    }
    if (cas >= 0 && cur == (uint64_t)cas)
        return V_RESEND; /* not applied; cas makes sending it again safe */
    if (cas >= 0 && cur == (uint64_t)cas + 1)
        return V_CONFLICT; /* another write took the version ours needed */
    snprintf(why_read, why_len, "; the key now holds another value (version %llu)",
             (unsigned long long)cur);
    return V_UNKNOWN;
}

/* Re-reads the version an unconditional put on a cas_required key must name. */
static ct_err refresh_cas(vstore *v, const char *key, const uint8_t *value, size_t len,
                          int64_t *cas, ct_secret **body, ct_error *err)
{
    uint64_t cur = 0;
    ct_err rc = current_version(v, key, &cur, err);
    if (rc != CT_OK && rc != CT_E_NOTFOUND)
        return rc;
    *cas = (int64_t)cur;
    ct_secret_free(*body);
    *body = NULL;
    return ctp_vault_write_body(value, len, *cas, body, err);
}

static ct_err vs_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                     uint64_t *new_version, ct_error *err, void *user)
{
    vstore *v = user;
    int64_t cas = expected == CT_STORE_ANY ? -1 : expected;
    char *path = kv_path(v, "data", key);
    char sk[CT_STORE_KEY_MAX + 8], lost[sizeof(ct_error){0}.message] = "", readback[300];
    ct_secret *body = NULL;
    ctp_http_response r;
    ct_err rc, lost_rc = CT_E_STORE;
    int attempt = 0, cas_rounds = 0;

    *new_version = 0;
    memset(&r, 0, sizeof r);
    ctp_vault_short_key(key, sk, sizeof sk);
    if (!path)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if ((rc = kv_check(v, err)) != CT_OK ||
        (rc = ctp_vault_write_body(value, len, cas, &body, err)) != CT_OK)
        goto out;
    for (;;) {
        int unknown = 0, retry = 0;
        ctp_vault_errors e;
        rc = vcall(v, "POST", path, NULL, body, 1, &r, err);
        if (rc != CT_OK) {
            if (!transport_retryable(rc))
                goto out;
            if (r.sent)
                unknown = 1; /* the write may have reached the server */
            else
                retry = 1;   /* it never did */
            lost_rc = rc;
            snprintf(lost, sizeof lost, "%s", err ? err->message : ct_strerror(rc));
        } else if (r.status == 200) {
            rc = bad_json(v, "write",
                          ctp_vault_parse_write(r.body, r.body_len, new_version, err), err);
            goto out;
        } else if (r.status == 204) {
            rc = ctp_err(err, CT_E_STORE, 204,
                         "vault at %s stored %s without a version: the mount '%s' is KV "
                         "version 1, not 2 (vault kv enable-versioning %s)",
                         v->host, sk, v->mount, v->mount);
            goto out;
        } else if (r.status == 400) {
            ctp_vault_parse_errors(r.body, r.body_len, &e);
            if (expected == CT_STORE_ANY && (e.cas_required || e.cas_mismatch) &&
                cas_rounds < ANY_CAS_ROUNDS) {
                /* cas is required on this key: put at its current version */
                cas_rounds++;
                ctp_http_response_clear(&r);
                if ((rc = refresh_cas(v, key, value, len, &cas, &body, err)) != CT_OK)
                    goto out;
                continue;
            }
            if (e.cas_mismatch || e.cas_required) {
                rc = ctp_err(err, CT_E_CONFLICT, 400,
                             expected == CT_STORE_ANY
                                 ? "%s: kept losing check-and-set races in vault"
                                 : "%s: version conflict in vault (check-and-set: the key is "
                                   "not at the expected version)",
                             sk);
                goto out;
            }
            rc = map_status(v, &r, "write", key, "create and update", err);
            goto out;
        } else if (r.status == 429 && r.retry_after_ms <= MAX_RETRY_AFTER_MS) {
            retry = 1; /* a quota refusal: the write was not executed */
            lost_rc = CT_E_STORE;
            snprintf(lost, sizeof lost, "HTTP 429 (rate limited)");
        } else if (r.status >= 500 && r.status != 501) {
            ctp_vault_parse_errors(r.body, r.body_len, &e);
            if (e.sealed) {
                rc = map_status(v, &r, "write", key, "create and update", err);
                goto out;
            }
            if (e.no_active)
                retry = 1;   /* refused before execution */
            else
                unknown = 1; /* 500, 502, 504...: the write may have happened */
            lost_rc = CT_E_STORE;
            snprintf(lost, sizeof lost, "HTTP %ld%s%s", r.status, e.text[0] ? ": " : "",
                     e.text);
        } else {
            rc = map_status(v, &r, "write", key, "create and update", err);
            goto out;
        }

        if (unknown) {
            enum unknown_verdict vd;
            ctp_http_response_clear(&r);
            vd = resolve_unknown(v, key, value, len, cas, new_version, readback,
                                 sizeof readback);
            if (vd == V_DONE) {
                ctp_log(v->ctx, CT_LOG_INFO, "vault.recovered",
                        "vault write of %s: the answer was lost (%s); reading back shows it "
                        "applied",
                        sk, lost);
                rc = CT_OK;
                goto out;
            }
            if (vd == V_CONFLICT && expected == CT_STORE_ANY && cas_rounds < ANY_CAS_ROUNDS) {
                cas_rounds++;
                if ((rc = refresh_cas(v, key, value, len, &cas, &body, err)) != CT_OK)
                    goto out;
                continue;
            }
            if (vd == V_CONFLICT) {
                rc = ctp_err(err, CT_E_CONFLICT, 0,
                             "%s: version conflict in vault (the write's answer was lost; "
                             "reading back shows another write took the version)",
                             sk);
                goto out;
            }
            if (vd == V_UNKNOWN) {
                rc = ctp_err(err, CT_E_IO, 0,
                             "vault write of %s: outcome unknown, it may have been applied: "
                             "check the key before retrying (answer lost: %s%s)",
                             sk, lost, readback);
                goto out;
            }
            retry = 1; /* V_RESEND: reading back proved it was not applied */
        }
        if (retry) {
            int wait;
            if (attempt >= v->max_retries) {
                rc = ctp_err(err, lost_rc, 0,
                             "vault write of %s failed and was not applied: %s (gave up after "
                             "%d retries)",
                             sk, lost, attempt);
                goto out;
            }
            wait = backoff_ms(v, attempt, r.status == 429 ? r.retry_after_ms : -1);
            ctp_log(v->ctx, CT_LOG_INFO, "vault.retry",
                    "vault write of %s: %s, retry %d of %d in %d ms", sk, lost, attempt + 1,
                    v->max_retries, wait);
            ctp_http_response_clear(&r);
            sleep_ms(wait);
            attempt++;
        }
    }
out:
    ctp_http_response_clear(&r);
    ct_secret_free(body);
    free(path);
    if (rc != CT_OK)
        *new_version = 0;
    return rc;
}

/* ---- delete ---- */

static ct_err vs_del(const char *key, ct_error *err, void *user)
{
    vstore *v = user;
    ctp_http_response r;
    char *path;
    uint64_t cur;
    char sk[CT_STORE_KEY_MAX + 8];
    ct_err rc = kv_check(v, err);

    if (rc != CT_OK)
        return rc;
    rc = current_version(v, key, &cur, err);
    if (rc == CT_E_NOTFOUND) {
        ctp_vault_short_key(key, sk, sizeof sk);
        return ctp_err(err, CT_E_NOTFOUND, 404, "%s: not found in vault", sk);
    }
    if (rc != CT_OK)
        return rc;
    if (!(path = kv_path(v, "metadata", key)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    /* DELETE is idempotent: retried like a read */
    rc = vcall_retry(v, "DELETE", path, NULL, 1, 0, "delete", &r, err);
    free(path);
    if (rc != CT_OK)
        return rc;
    if (r.status != 204 && r.status != 200)
        rc = map_status(v, &r, "delete", key, "delete", err);
    ctp_http_response_clear(&r);
    return rc;
}

/* ---- list ---- */

typedef struct walk {
    vstore *v;
    const char *prefix;
    size_t plen;
    const char *dir;
    ct_strlist *out;
    ct_strlist *folders;
    size_t total;
} walk;

/* 1 if a folder "dir/" may hold keys starting with the prefix. */
static int compatible(const char *folder, const char *prefix, size_t plen)
{
    size_t fl = strlen(folder);
    return strncmp(folder, prefix, fl < plen ? fl : plen) == 0;
}

static ct_err on_entry(void *arg, const char *name, int is_folder, ct_error *err)
{
    walk *w = arg;
    char full[CT_STORE_KEY_MAX + 2];
    int n = snprintf(full, sizeof full, "%s%s%s", w->dir, name, is_folder ? "/" : "");
    if (n < 0 || (size_t)n >= sizeof full)
        return CT_OK; /* longer than any store key */
    if (++w->total > CTP_VAULT_LIST_MAX)
        return ctp_err(err, CT_E_TOOBIG, 0, "more than %d keys under the prefix in vault",
                       CTP_VAULT_LIST_MAX);
    if (is_folder)
        return compatible(full, w->prefix, w->plen) ? ct_strlist_append(w->folders, full, err)
                                                    : CT_OK;
    if (strncmp(full, w->prefix, w->plen) == 0 && ct_store_key_valid(full))
        return ct_strlist_append(w->out, full, err);
    return CT_OK;
}

static ct_err list_dir(vstore *v, const char *dir, int depth, const char *prefix,
                       ct_strlist *out, size_t *total, ct_error *err)
{
    ctp_http_response r;
    walk w;
    char *path;
    size_t i;
    ct_err rc;

    if (depth > 16)
        return CT_OK; /* deeper than any store key */
    if (!(path = kv_path(v, "metadata", dir)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    rc = vcall_retry(v, "GET", path, "list=true", 1, 0, "list", &r, err);
    free(path);
    if (rc != CT_OK)
        return rc;
    if (r.status == 404) {
        ctp_vault_errors e;
        ctp_vault_parse_errors(r.body, r.body_len, &e);
        rc = (e.no_route || e.invalid_path) ? map_status(v, &r, "list", dir, "list", err)
                                            : CT_OK; /* an empty folder */
        ctp_http_response_clear(&r);
        return rc;
    }
    if (r.status != 200) {
        rc = map_status(v, &r, "list", dir, "list", err);
        ctp_http_response_clear(&r);
        return rc;
    }
    memset(&w, 0, sizeof w);
    w.v = v;
    w.prefix = prefix;
    w.plen = strlen(prefix);
    w.dir = dir;
    w.out = out;
    w.total = *total;
    if ((rc = ct_strlist_new(&w.folders, err)) != CT_OK) {
        ctp_http_response_clear(&r);
        return rc;
    }
    rc = bad_json(v, "list", ctp_vault_parse_list(r.body, r.body_len, on_entry, &w, err), err);
    ctp_http_response_clear(&r);
    *total = w.total;
    for (i = 0; rc == CT_OK && i < ct_strlist_count(w.folders); i++)
        rc = list_dir(v, ct_strlist_get(w.folders, i), depth + 1, prefix, out, total, err);
    ct_strlist_free(w.folders);
    return rc;
}

static ct_err vs_list(const char *prefix, ct_strlist *out, ct_error *err, void *user)
{
    char dir[CT_STORE_KEY_MAX + 2];
    const char *slash = strrchr(prefix, '/');
    size_t n = slash ? (size_t)(slash - prefix) + 1 : 0, total = 0, i;
    ct_err rc = kv_check(user, err);
    if (rc != CT_OK)
        return rc;
    /* a prefix whose folder part is no valid key path matches nothing */
    for (i = 0; i < n; i++) {
        char c = prefix[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/'))
            return CT_OK;
    }
    if (n && (prefix[0] == '/' || strstr(prefix, "//")))
        return CT_OK;
    memcpy(dir, prefix, n);
    dir[n] = '\0';
    return list_dir(user, dir, 0, prefix, out, &total, err);
}

static void vs_destroy(void *user)
{
    vstore_free(user);
}

ct_err ct_store_new_vault(ct_ctx *ctx, const ct_vault_options *opts, ct_store **out,
                          ct_error *err)
{
    static const ct_store_ops ops = {
        .version = CT_STORE_OPS_VERSION,
        .flags = CT_STORE_F_CAS | CT_STORE_F_SHARED,
        .get = vs_get,
        .put = vs_put,
        .del = vs_del,
        .list = vs_list,
        .destroy = vs_destroy,
    };
    vstore *v = NULL;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_new_vault: out is NULL");
    *out = NULL;
    if ((rc = vstore_open(ctx, opts, 1, &v, err)) != CT_OK)
        return rc;
    if ((rc = ct_store_new(ctx, &ops, v, out, err)) != CT_OK)
        vstore_free(v);
    return rc;
}

/* ---- KV version 2 beyond the vtable (vault.h) ---- */

/* The Vault store behind `s`, with the key checked; NULL and err set if not. */
static vstore *vault_of(ct_store *s, const char *fn, const char *key, ct_error *err)
{
    vstore *v = ctp_store_user_if(s, vs_destroy);
    if (!v) {
        ctp_err(err, CT_E_INVALID, 0,
                s ? "%s: not a Vault store (only a store made by ct_store_new_vault has KV "
                    "versions)"
                  : "%s: NULL store",
                fn);
        return NULL;
    }
    if (!ct_store_key_valid(key)) {
        ctp_err(err, CT_E_INVALID, 0,
                "%s: invalid store key (segments of [A-Za-z0-9._-] separated by '/', at most "
                "%d bytes)",
                fn, CT_STORE_KEY_MAX);
        return NULL;
    }
    return v;
}

ct_err ct_vault_kv_get_version(ct_store *s, const char *key, uint64_t version,
                               ct_secret **value, uint64_t *got_version, ct_error *err)
{
    ctp_vault_read rd;
    vstore *v;
    ct_err rc;

    if (got_version)
        *got_version = 0;
    if (!value)
        return ctp_err(err, CT_E_INVALID, 0, "ct_vault_kv_get_version: value is NULL");
    *value = NULL;
    if (!(v = vault_of(s, "ct_vault_kv_get_version", key, err)))
        return CT_E_INVALID;
    if ((rc = kv_check(v, err)) != CT_OK)
        return rc;
    rc = vread(v, key, version, &rd, err);
    if (rc != CT_OK) {
        ct_secret_free(rd.value);
        return rc;
    }
    *value = rd.value;
    if (got_version)
        *got_version = rd.version;
    return CT_OK;
}

/* A soft delete (DELETE data/K, or POST delete/K with a body): 204 is done. */
static ct_err soft_delete(vstore *v, const char *method, const char *kind, const char *key,
                          const ct_secret *body, const char *op, const char *caps,
                          ct_error *err)
{
    ctp_http_response r;
    char *path;
    ct_err rc;

    if ((rc = kv_check(v, err)) != CT_OK)
        return rc;
    if (!(path = kv_path(v, kind, key)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    /* deleting what is deleted changes nothing: retried like a read */
    rc = vcall_retry_body(v, method, path, NULL, body, 1, 0, op, &r, err);
    free(path);
    if (rc != CT_OK)
        return rc;
    if (r.status != 204 && r.status != 200)
        rc = map_status(v, &r, op, key, caps, err);
    ctp_http_response_clear(&r);
    return rc;
}

ct_err ct_vault_kv_delete_latest(ct_store *s, const char *key, ct_error *err)
{
    vstore *v = vault_of(s, "ct_vault_kv_delete_latest", key, err);
    if (!v)
        return CT_E_INVALID;
    return soft_delete(v, "DELETE", "data", key, NULL, "soft delete", "delete", err);
}

ct_err ct_vault_kv_delete_versions(ct_store *s, const char *key, const uint64_t *versions,
                                   size_t n, ct_error *err)
{
    vstore *v = vault_of(s, "ct_vault_kv_delete_versions", key, err);
    ct_secret *body = NULL;
    char *txt;
    size_t i, off = 0, cap;
    ct_err rc;

    if (!v)
        return CT_E_INVALID;
    if (!versions || n == 0 || n > CT_VAULT_DELETE_VERSIONS_MAX)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_vault_kv_delete_versions: give 1 to %d versions",
                       CT_VAULT_DELETE_VERSIONS_MAX);
    for (i = 0; i < n; i++)
        if (versions[i] == 0 || versions[i] > (uint64_t)INT64_MAX)
            return ctp_err(err, CT_E_INVALID, 0,
                           "ct_vault_kv_delete_versions: version %llu is not a version "
                           "(versions start at 1)",
                           (unsigned long long)versions[i]);
    cap = 16 + n * 21;
    if (!(txt = malloc(cap)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    off = (size_t)snprintf(txt, cap, "{\"versions\":[");
    for (i = 0; i < n; i++)
        off += (size_t)snprintf(txt + off, cap - off, "%s%llu", i ? "," : "",
                                (unsigned long long)versions[i]);
    off += (size_t)snprintf(txt + off, cap - off, "]}");
    rc = ct_secret_from(txt, off, &body, err);
    free(txt);
    if (rc != CT_OK)
        return rc;
    rc = soft_delete(v, "POST", "delete", key, body, "version delete", "update", err);
    ct_secret_free(body);
    return rc;
}

ct_err ct_vault_kv_metadata(ct_store *s, const char *key, ct_vault_kv_meta **out,
                            ct_error *err)
{
    ctp_http_response r;
    char *path, sk[CT_STORE_KEY_MAX + 8];
    vstore *v;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_vault_kv_metadata: out is NULL");
    *out = NULL;
    if (!(v = vault_of(s, "ct_vault_kv_metadata", key, err)))
        return CT_E_INVALID;
    if ((rc = kv_check(v, err)) != CT_OK)
        return rc;
    if (!(path = kv_path(v, "metadata", key)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    rc = vcall_retry(v, "GET", path, NULL, 1, 0, "metadata read", &r, err);
    free(path);
    if (rc != CT_OK)
        return rc;
    if (r.status == 200) {
        rc = bad_json(v, "metadata read", ctp_vault_parse_kv_meta(r.body, r.body_len, out, err),
                      err);
    } else if (r.status == 404) {
        ctp_vault_errors e;
        ctp_vault_parse_errors(r.body, r.body_len, &e);
        if (e.no_route || e.invalid_path) {
            rc = map_status(v, &r, "metadata read", key, "read", err);
        } else {
            ctp_vault_short_key(key, sk, sizeof sk);
            rc = ctp_err(err, CT_E_NOTFOUND, 404, "%s: not found in vault (no metadata)", sk);
        }
    } else {
        rc = map_status(v, &r, "metadata read", key, "read", err);
    }
    ctp_http_response_clear(&r);
    return rc;
}

/* ---- health ---- */

ct_err ct_vault_health_check(ct_ctx *ctx, const ct_vault_options *opts, ct_vault_health *out,
                             ct_error *err)
{
    ctp_http_response r;
    vstore *v = NULL;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_vault_health_check: out is NULL");
    memset(out, 0, sizeof *out);
    if ((rc = vstore_open(ctx, opts, 0, &v, err)) != CT_OK)
        return rc;
    /* no token, no namespace header (OpenBao refuses health in a namespace) */
    rc = vcall_retry(v, "GET", "sys/health", NULL, 0, 1, "health check", &r, err);
    if (rc != CT_OK)
        goto done;
    rc = ctp_vault_parse_health(r.body, r.body_len, r.status, out, err);
    if (rc != CT_OK)
        goto done;
    switch (r.status) {
    case 200:
    case 429: /* standby: forwards requests to the active node */
    case 473: /* performance standby */
        rc = CT_OK;
        break;
    case 503:
        rc = ctp_err(err, CT_E_STORE, 503,
                     "vault at %s is sealed: unseal it (vault operator unseal)", v->host);
        break;
    case 501:
        rc = ctp_err(err, CT_E_STORE, 501,
                     "vault at %s is not initialised (vault operator init)", v->host);
        break;
    case 472:
        rc = ctp_err(err, CT_E_STORE, 472,
                     "vault at %s is a disaster-recovery secondary: point the address at "
                     "the primary cluster",
                     v->host);
        break;
    case 474:
        rc = ctp_err(err, CT_E_STORE, 474,
                     "vault at %s is a standby that cannot reach its active node", v->host);
        break;
    case 530:
        rc = ctp_err(err, CT_E_STORE, 530, "vault at %s was removed from its cluster",
                     v->host);
        break;
    default:
        rc = ctp_err(err, CT_E_STORE, (int32_t)r.status,
                     "vault at %s answered its health check with HTTP %ld", v->host, r.status);
    }
done:
    ctp_http_response_clear(&r);
    vstore_free(v);
    return rc;
}
