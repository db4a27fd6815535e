/*
 * fake_k8s.c - see fake_k8s.h. libmicrohttpd (TLS through GnuTLS) does the
 * HTTP; this file is only the API server's behaviour, written from
 * ../shared/fixtures/API.md part B and the fixture bodies.
 */
#include "fake_k8s.h"
#include "fake_k8s_fixtures.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_USERS 64
#define MAX_REVIEWS 32
#define LOG_KEEP 256
#define BODY_MAX (1u << 20)
#define OVERSIZE ((uint64_t)64 << 20)

typedef struct fk_user {
    char *key; /* token or CN */
    char *name;
    unsigned perms;
    int cert;
} fk_user;

typedef struct fk_secret {
    char *ns, *name;
    json_t *item; /* {"metadata":..,"data":..,"type":..} */
} fk_secret;

typedef struct fk_review {
    char *token;
    json_t *user;
    char *audiences; /* csv */
    int revoked;     /* fake_k8s_revoke_token: the pod or account was deleted */
} fk_review;

struct fake_k8s {
    struct MHD_Daemon *d;
    uint16_t port;
    pthread_mutex_t mu;
    volatile int stopping;
    char *cert_pem, *key_pem, *ca_pem;
    fk_user users[MAX_USERS];
    size_t nusers;
    char ns_uid[64];
    fk_secret *secrets;
    size_t nsecrets, capsecrets;
    int64_t rv, compacted_rv;
    int expire_next;
    fk_review reviews[MAX_REVIEWS];
    size_t nreviews;
    char *jwks;
    fake_k8s_fault fault;
    int fault_count;
    char fault_prefix[256];
    int slow_ms, retry_after;
    char *log[LOG_KEEP];
    size_t log_n; /* total recorded since reset */
    char *paths[LOG_KEEP];
    char touch_ns[300], touch_name[300]; /* fake_k8s_touch_before_delete */
};

typedef struct fk_req {
    char *body;
    size_t len, cap;
    int too_big;
} fk_req;

/* -------------------------------------------------------------- utils */

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

static char *read_text(const char *dir, const char *name)
{
    char path[1024];
    FILE *f;
    long n;
    char *buf;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64_encode(const unsigned char *in, size_t n, int url)
{
    const char *a = url ? b64url : b64std;
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    size_t i;
    if (!out)
        abort();
    for (i = 0; i + 2 < n; i += 3) {
        *o++ = a[in[i] >> 2];
        *o++ = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        *o++ = a[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        *o++ = a[in[i + 2] & 63];
    }
    if (n - i == 1) {
        *o++ = a[in[i] >> 2];
        *o++ = a[(in[i] & 3) << 4];
        if (!url) {
            *o++ = '=';
            *o++ = '=';
        }
    } else if (n - i == 2) {
        *o++ = a[in[i] >> 2];
        *o++ = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        *o++ = a[(in[i + 1] & 15) << 2];
        if (!url)
            *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* base64url without padding; returns the length or -1. */
static long b64url_decode(const char *in, unsigned char *out, size_t cap)
{
    size_t n = strlen(in), i, o = 0;
    unsigned v = 0;
    int bits = 0;
    for (i = 0; i < n; i++) {
        const char *p = strchr(b64url, in[i]);
        if (!p || !in[i])
            return -1;
        v = (v << 6) | (unsigned)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return (long)o;
}

static void new_uid(char out[37])
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        abort();
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
             r[13], r[14], r[15]);
}

static void now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ----------------------------------------------------------- responses */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type,
                                 const char *body, size_t len, const char *h1, const char *v1)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                            strcmp(type, "application/jwk-set+json") == 0 ? "public, max-age=3600"
                                                                         : "no-cache, private");
    if (h1)
        MHD_add_response_header(r, h1, v1);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends a JSON value (compact, key order kept) and releases it. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *v,
                                 const char *h1, const char *v1)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    enum MHD_Result ret;
    json_decref(v);
    if (!s)
        return MHD_NO;
    ret = send_body(c, status, "application/json", s, strlen(s), h1, v1);
    free(s);
    return ret;
}

/* A Status failure: kind, apiVersion, metadata, status, message, reason, details, code. */
static json_t *status_obj(int code, const char *reason, const char *message, json_t *details)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string("Status"));
    json_object_set_new(o, "apiVersion", json_string("v1"));
    json_object_set_new(o, "metadata", json_object());
    json_object_set_new(o, "status", json_string("Failure"));
    json_object_set_new(o, "message", json_string(message));
    json_object_set_new(o, "reason", json_string(reason));
    if (details)
        json_object_set_new(o, "details", details);
    json_object_set_new(o, "code", json_integer(code));
    return o;
}

static json_t *details(const char *name, const char *group, const char *kind)
{
    json_t *d = json_object();
    if (name)
        json_object_set_new(d, "name", json_string(name));
    if (group)
        json_object_set_new(d, "group", json_string(group));
    if (kind)
        json_object_set_new(d, "kind", json_string(kind));
    return d;
}

static enum MHD_Result fail(struct MHD_Connection *c, int code, const char *reason,
                            json_t *det, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result fail(struct MHD_Connection *c, int code, const char *reason,
                            json_t *det, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(c, (unsigned)code, status_obj(code, reason, msg, det), NULL, NULL);
}

static enum MHD_Result unauthorized(struct MHD_Connection *c)
{
    return send_json(c, 401, status_obj(401, "Unauthorized", "Unauthorized", NULL), NULL, NULL);
}

/* ------------------------------------------------------------ state */

static fk_secret *find_secret(fake_k8s *fk, const char *ns, const char *name)
{
    size_t i;
    for (i = 0; i < fk->nsecrets; i++)
        if (strcmp(fk->secrets[i].ns, ns) == 0 && strcmp(fk->secrets[i].name, name) == 0)
            return &fk->secrets[i];
    return NULL;
}

static const char *meta_str(json_t *item, const char *key)
{
    json_t *v = json_object_get(json_object_get(item, "metadata"), key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static void set_rv(json_t *item, int64_t rv)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)rv);
    json_object_set_new(json_object_get(item, "metadata"), "resourceVersion", json_string(b));
}

/* Inserts keeping (namespace, name) order, like etcd's key order. Under mu. */
static int insert_secret(fake_k8s *fk, json_t *item)
{
    json_t *meta = json_object_get(item, "metadata");
    const char *ns = meta_str(item, "namespace"), *name = meta_str(item, "name");
    size_t i;
    if (!json_is_object(meta) || !*ns || !*name || find_secret(fk, ns, name))
        return -1;
    if (!*meta_str(item, "uid")) {
        char u[37];
        new_uid(u);
        json_object_set_new(meta, "uid", json_string(u));
    }
    if (!*meta_str(item, "resourceVersion"))
        set_rv(item, ++fk->rv);
    if (!*meta_str(item, "creationTimestamp")) {
        char t[32];
        now_rfc3339(t);
        json_object_set_new(meta, "creationTimestamp", json_string(t));
    }
    if (fk->nsecrets == fk->capsecrets) {
        size_t cap = fk->capsecrets ? fk->capsecrets * 2 : 16;
        fk_secret *p = realloc(fk->secrets, cap * sizeof *p);
        if (!p)
            abort();
        fk->secrets = p;
        fk->capsecrets = cap;
    }
    for (i = 0; i < fk->nsecrets; i++) {
        int c = strcmp(fk->secrets[i].ns, ns);
        if (c > 0 || (c == 0 && strcmp(fk->secrets[i].name, name) > 0))
            break;
    }
    memmove(&fk->secrets[i + 1], &fk->secrets[i], (fk->nsecrets - i) * sizeof *fk->secrets);
    fk->secrets[i].ns = xstrdup(ns);
    fk->secrets[i].name = xstrdup(name);
    fk->secrets[i].item = item;
    fk->nsecrets++;
    return 0;
}

static void remove_secret(fake_k8s *fk, fk_secret *s)
{
    size_t i = (size_t)(s - fk->secrets);
    free(s->ns);
    free(s->name);
    json_decref(s->item);
    memmove(&fk->secrets[i], &fk->secrets[i + 1], (fk->nsecrets - i - 1) * sizeof *fk->secrets);
    fk->nsecrets--;
}

/* The full object: kind, apiVersion, then the item's members in order. */
static json_t *full_secret(json_t *item)
{
    json_t *o = json_object(), *v;
    const char *k;
    json_object_set_new(o, "kind", json_string("Secret"));
    json_object_set_new(o, "apiVersion", json_string("v1"));
    json_object_foreach(item, k, v)
        json_object_set(o, k, v);
    return o;
}

/* ---------------------------------------------------------------- log */

static void record(fake_k8s *fk, const char *line, const char *path)
{
    size_t slot = fk->log_n % LOG_KEEP;
    free(fk->log[slot]);
    free(fk->paths[slot]);
    fk->log[slot] = xstrdup(line);
    fk->paths[slot] = xstrdup(path);
    fk->log_n++;
}

typedef struct argbuf {
    char s[4096];
    size_t n;
} argbuf;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    argbuf *a = cls;
    int w;
    (void)kind;
    w = snprintf(a->s + a->n, sizeof a->s - a->n, "%s%s=%s", a->n ? "&" : "?", key,
                 value ? value : "");
    if (w > 0 && (size_t)w < sizeof a->s - a->n)
        a->n += (size_t)w;
    return MHD_YES;
}

/* -------------------------------------------------------- authentication */

typedef struct who {
    int ok;
    char name[256];
    unsigned perms;
} who;

static void cert_user(fake_k8s *fk, struct MHD_Connection *c, who *w)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t s;
    const gnutls_datum_t *peers;
    unsigned int n = 0, status = 1;
    gnutls_x509_crt_t crt;
    char cn[256];
    size_t cnlen = sizeof cn;
    size_t i;

    if (!ci || !ci->tls_session)
        return;
    s = (gnutls_session_t)ci->tls_session;
    peers = gnutls_certificate_get_peers(s, &n);
    if (!peers || n == 0)
        return;
    if (gnutls_certificate_verify_peers2(s, &status) != 0 || status != 0)
        return; /* a real API server fails the handshake; we answer 401 */
    if (gnutls_x509_crt_init(&crt) != 0)
        return;
    if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cnlen) == 0) {
        w->ok = 1;
        snprintf(w->name, sizeof w->name, "%s", cn);
        w->perms = 0;
        for (i = 0; i < fk->nusers; i++)
            if (fk->users[i].cert && strcmp(fk->users[i].key, cn) == 0) {
                snprintf(w->name, sizeof w->name, "%s", fk->users[i].name);
                w->perms = fk->users[i].perms;
            }
    }
    gnutls_x509_crt_deinit(crt);
}

/* 1: authenticated; 0: no credentials; -1: a bad token. Under mu. */
static int authenticate(fake_k8s *fk, struct MHD_Connection *c, who *w)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    size_t i;
    memset(w, 0, sizeof *w);
    cert_user(fk, c, w);
    if (w->ok)
        return 1;
    if (!auth)
        return 0;
    if (strncmp(auth, "Bearer ", 7) != 0)
        return -1;
    for (i = 0; i < fk->nusers; i++) {
        if (!fk->users[i].cert && strcmp(fk->users[i].key, auth + 7) == 0) {
            w->ok = 1;
            snprintf(w->name, sizeof w->name, "%s", fk->users[i].name);
            w->perms = fk->users[i].perms;
            return 1;
        }
    }
    return -1;
}

static enum MHD_Result forbidden_ns(struct MHD_Connection *c, const who *w, const char *verb,
                                    const char *resource, const char *name, const char *ns)
{
    if (name)
        return fail(c, 403, "Forbidden", details(name, NULL, resource),
                    "%s \"%s\" is forbidden: User \"%s\" cannot %s resource \"%s\" in API group "
                    "\"\" in the namespace \"%s\"",
                    resource, name, w->name, verb, resource, ns);
    return fail(c, 403, "Forbidden", details(NULL, NULL, resource),
                "%s is forbidden: User \"%s\" cannot %s resource \"%s\" in API group \"\" in "
                "the namespace \"%s\"",
                resource, w->name, verb, resource, ns);
}

/* ------------------------------------------------------------ handlers */

static enum MHD_Result get_namespace(fake_k8s *fk, struct MHD_Connection *c, const who *w,
                                     const char *name)
{
    json_t *o;
    json_error_t je;
    if (!(w->perms & FK_GET_NAMESPACES))
        return forbidden_ns(c, w, "get", "namespaces", name, name);
    if (strcmp(name, "kube-system") != 0)
        return fail(c, 404, "NotFound", details(name, NULL, "namespaces"),
                    "namespaces \"%s\" not found", name);
    o = json_loads(fk_fixture_namespace, JSON_PRESERVE_ORDER, &je);
    if (!o)
        abort();
    json_object_set_new(json_object_get(o, "metadata"), "uid", json_string(fk->ns_uid));
    return send_json(c, 200, o, NULL, NULL);
}

/* labelSelector: comma-separated k=v, k==v, k!=v, k, !k. -1 if it cannot be parsed. */
static int label_match(json_t *item, const char *sel)
{
    json_t *labels = json_object_get(json_object_get(item, "metadata"), "labels");
    char buf[1024], *save = NULL, *t;
    if (!sel || !*sel)
        return 1;
    snprintf(buf, sizeof buf, "%s", sel);
    for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *op;
        json_t *v;
        if (t[0] == '!') {
            if (json_object_get(labels, t + 1))
                return 0;
            continue;
        }
        if ((op = strstr(t, "!="))) {
            *op = '\0';
            v = json_object_get(labels, t);
            if (json_is_string(v) && strcmp(json_string_value(v), op + 2) == 0)
                return 0;
            continue;
        }
        if ((op = strchr(t, '='))) {
            const char *want = op[1] == '=' ? op + 2 : op + 1;
            *op = '\0';
            v = json_object_get(labels, t);
            if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0)
                return 0;
            continue;
        }
        if (!json_object_get(labels, t))
            return 0;
    }
    return 1;
}

/* fieldSelector: metadata.name=X, type=X (comma-separated). -1: unsupported field. */
static int field_match(json_t *item, const char *sel, char *bad, size_t badn)
{
    char buf[1024], *save = NULL, *t;
    if (!sel || !*sel)
        return 1;
    snprintf(buf, sizeof buf, "%s", sel);
    for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        const char *want, *have;
        if (!eq)
            return snprintf(bad, badn, "%s", t), -1;
        *eq = '\0';
        want = eq[1] == '=' ? eq + 2 : eq + 1;
        if (strcmp(t, "metadata.name") == 0)
            have = meta_str(item, "name");
        else if (strcmp(t, "metadata.namespace") == 0)
            have = meta_str(item, "namespace");
        else if (strcmp(t, "type") == 0)
            have = json_is_string(json_object_get(item, "type"))
                       ? json_string_value(json_object_get(item, "type"))
                       : "";
        else
            return snprintf(bad, badn, "%s", t), -1;
        if (strcmp(have, want) != 0)
            return 0;
    }
    return 1;
}

static char *make_continue(int64_t rv, const char *last)
{
    json_t *o = json_object();
    size_t n = strlen(last);
    char *start = malloc(n + 1), *s, *tok;
    memcpy(start, last, n);
    start[n] = '\0';
    json_object_set_new(o, "v", json_string("meta.k8s.io/v1"));
    json_object_set_new(o, "rv", json_integer(rv));
    json_object_set_new(o, "start", json_stringn(start, n + 1)); /* name + "\0" */
    free(start);
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    tok = b64_encode((const unsigned char *)s, strlen(s), 1);
    free(s);
    return tok;
}

/* 0 ok; -1 malformed (msg set). */
static int parse_continue(const char *tok, int64_t *rv, char *start, size_t cap, int *excl,
                          char *msg, size_t msgn)
{
    unsigned char buf[2048];
    long n = b64url_decode(tok, buf, sizeof buf - 1);
    json_t *o, *v, *r, *st;
    json_error_t je;
    if (n < 0) {
        snprintf(msg, msgn, "continue key is not valid: illegal base64 data");
        return -1;
    }
    buf[n] = '\0';
    o = json_loadb((const char *)buf, (size_t)n, JSON_ALLOW_NUL, &je);
    v = json_object_get(o, "v");
    r = json_object_get(o, "rv");
    st = json_object_get(o, "start");
    if (!o || !json_is_string(v) || strcmp(json_string_value(v), "meta.k8s.io/v1") != 0 ||
        !json_is_integer(r) || !json_is_string(st) || json_string_length(st) >= cap) {
        snprintf(msg, msgn, "continue key is not valid: server does not recognize this "
                 "encoded key");
        json_decref(o);
        return -1;
    }
    *rv = json_integer_value(r);
    memcpy(start, json_string_value(st), json_string_length(st));
    start[json_string_length(st)] = '\0';
    /* "<name>\0" (what the API server writes) means: names after <name> */
    *excl = json_string_length(st) > 0 && start[json_string_length(st) - 1] == '\0';
    json_decref(o);
    return 0;
}

static enum MHD_Result list_secrets(fake_k8s *fk, struct MHD_Connection *c, const who *w,
                                    const char *ns)
{
    const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    const char *cont = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "continue");
    const char *lsel = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "labelSelector");
    const char *fsel = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fieldSelector");
    const char *rvq = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "resourceVersion");
    json_t *o, *meta, *items;
    char start[512] = "", msg[256], bad[256], rvs[32], *last = NULL;
    int64_t list_rv = fk->rv, limit = 0;
    size_t i, remaining = 0;
    int start_set = 0, start_excl = 0;

    if (!(w->perms & FK_LIST_SECRETS))
        return forbidden_ns(c, w, "list", "secrets", NULL, ns);
    if (lim && *lim) {
        char *end;
        limit = strtoll(lim, &end, 10);
        if (*end || limit < 0)
            return fail(c, 400, "BadRequest", NULL, "limit: Invalid value: \"%s\"", lim);
    }
    if (cont && *cont) {
        if (rvq && *rvq)
            return fail(c, 400, "BadRequest", NULL, "specifying resource version is not "
                        "allowed when using continue");
        start_set = 1;
        if (parse_continue(cont, &list_rv, start, sizeof start, &start_excl, msg, sizeof msg) != 0)
            return fail(c, 400, "BadRequest", NULL, "invalid continue token: %s", msg);
        if (fk->expire_next > 0 || list_rv <= fk->compacted_rv) {
            if (fk->expire_next > 0)
                fk->expire_next--;
            return send_json(c, 410, status_obj(410, "Expired", "The provided continue parameter "
                             "is too old to display a consistent list result. You can start a new "
                             "list without the continue parameter.", NULL), NULL, NULL);
        }
    }
    o = json_object();
    meta = json_object();
    items = json_array();
    json_object_set_new(o, "kind", json_string("SecretList"));
    json_object_set_new(o, "apiVersion", json_string("v1"));
    json_object_set_new(o, "metadata", meta);
    snprintf(rvs, sizeof rvs, "%lld", (long long)list_rv);
    json_object_set_new(meta, "resourceVersion", json_string(rvs));
    for (i = 0; i < fk->nsecrets; i++) {
        fk_secret *s = &fk->secrets[i];
        int fm;
        if (strcmp(s->ns, ns) != 0)
            continue;
        if (start_set) { /* start is "<last name>\0": only names after it */
            int cmp = strcmp(s->name, start);
            if (cmp < 0 || (cmp == 0 && start_excl))
                continue;
        }
        if (!label_match(s->item, lsel))
            continue;
        fm = field_match(s->item, fsel, bad, sizeof bad);
        if (fm < 0) {
            json_decref(o);
            json_decref(items);
            return fail(c, 400, "BadRequest", NULL, "field label not supported: %s", bad);
        }
        if (!fm)
            continue;
        if (limit > 0 && (int64_t)json_array_size(items) >= limit) {
            remaining++;
            continue;
        }
        json_array_append_new(items, json_deep_copy(s->item));
        last = s->name;
    }
    if (remaining > 0 && last) {
        char *tok = make_continue(list_rv, last);
        json_object_set_new(meta, "continue", json_string(tok));
        free(tok);
        if ((!lsel || !*lsel) && (!fsel || !*fsel))
            json_object_set_new(meta, "remainingItemCount", json_integer((json_int_t)remaining));
    }
    json_object_set_new(o, "items", items);
    return send_json(c, 200, o, NULL, NULL);
}

static enum MHD_Result get_secret(fake_k8s *fk, struct MHD_Connection *c, const who *w,
                                  const char *ns, const char *name)
{
    fk_secret *s;
    if (!(w->perms & FK_GET_SECRETS))
        return forbidden_ns(c, w, "get", "secrets", name, ns);
    s = find_secret(fk, ns, name);
    if (!s)
        return fail(c, 404, "NotFound", details(name, NULL, "secrets"),
                    "secrets \"%s\" not found", name);
    return send_json(c, 200, full_secret(s->item), NULL, NULL);
}

static int is_json_type(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    return t && strncmp(t, "application/json", 16) == 0;
}

static enum MHD_Result unsupported_media(struct MHD_Connection *c)
{
    return fail(c, 415, "UnsupportedMediaType", NULL,
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json, application/yaml, "
                "application/vnd.kubernetes.protobuf");
}

static enum MHD_Result delete_secret(fake_k8s *fk, struct MHD_Connection *c, const who *w,
                                     const char *ns, const char *name, const fk_req *rq)
{
    json_t *opts = NULL, *pre, *u, *r, *fin, *res;
    json_error_t je;
    fk_secret *s;
    const char *uid, *rv;

    if (!(w->perms & FK_DELETE_SECRETS))
        return forbidden_ns(c, w, "delete", "secrets", name, ns);
    if (rq->len) {
        if (!is_json_type(c))
            return unsupported_media(c);
        opts = json_loadb(rq->body, rq->len, 0, &je);
        if (!json_is_object(opts)) {
            json_decref(opts);
            return fail(c, 400, "BadRequest", NULL, "json: cannot unmarshal into "
                        "v1.DeleteOptions: %s", je.text);
        }
    }
    s = find_secret(fk, ns, name);
    if (!s) {
        json_decref(opts);
        return fail(c, 404, "NotFound", details(name, NULL, "secrets"),
                    "secrets \"%s\" not found", name);
    }
    if (fk->touch_name[0] && strcmp(fk->touch_ns, ns) == 0 &&
        strcmp(fk->touch_name, name) == 0) {
        fk->touch_name[0] = '\0'; /* the test hook: modified just before this delete */
        set_rv(s->item, ++fk->rv);
    }
    uid = meta_str(s->item, "uid");
    rv = meta_str(s->item, "resourceVersion");
    pre = json_object_get(opts, "preconditions");
    u = json_object_get(pre, "uid");
    r = json_object_get(pre, "resourceVersion");
    if (json_is_string(u) && strcmp(json_string_value(u), uid) != 0) {
        enum MHD_Result ret = fail(c, 409, "Conflict", details(name, NULL, "Secret"),
                                   "Operation cannot be fulfilled on Secret \"%s\": the UID in "
                                   "the precondition (%s) does not match the UID in record "
                                   "(%s). The object might have been deleted and then "
                                   "recreated", name, json_string_value(u), uid);
        json_decref(opts);
        return ret;
    }
    if (json_is_string(r) && strcmp(json_string_value(r), rv) != 0) {
        enum MHD_Result ret = fail(c, 409, "Conflict", details(name, NULL, "Secret"),
                                   "Operation cannot be fulfilled on Secret \"%s\": the "
                                   "ResourceVersion in the precondition (%s) does not match "
                                   "the ResourceVersion in record (%s). The object might have "
                                   "been modified", name, json_string_value(r), rv);
        json_decref(opts);
        return ret;
    }
    json_decref(opts);
    fin = json_object_get(json_object_get(s->item, "metadata"), "finalizers");
    if (json_is_array(fin) && json_array_size(fin) > 0) {
        char t[32];
        now_rfc3339(t);
        if (!*meta_str(s->item, "deletionTimestamp"))
            json_object_set_new(json_object_get(s->item, "metadata"), "deletionTimestamp",
                                json_string(t));
        set_rv(s->item, ++fk->rv);
        return send_json(c, 200, full_secret(s->item), NULL, NULL);
    }
    res = json_object();
    json_object_set_new(res, "kind", json_string("Status"));
    json_object_set_new(res, "apiVersion", json_string("v1"));
    json_object_set_new(res, "metadata", json_object());
    json_object_set_new(res, "status", json_string("Success"));
    json_object_set_new(res, "details", details(name, NULL, "secrets"));
    json_object_set_new(json_object_get(res, "details"), "uid", json_string(uid));
    fk->rv++;
    remove_secret(fk, s);
    return send_json(c, 200, res, NULL, NULL);
}

/* POST /api/v1/namespaces/{ns}/secrets, as the API server: 201 with the object. */
static enum MHD_Result create_secret(fake_k8s *fk, struct MHD_Connection *c, const who *w,
                                     const char *ns, const fk_req *rq)
{
    json_t *in, *meta, *item, *v;
    json_error_t je;
    const char *name, *k;

    if (!(w->perms & FK_CREATE_SECRETS))
        return forbidden_ns(c, w, "create", "secrets", NULL, ns);
    if (!is_json_type(c))
        return unsupported_media(c);
    in = json_loadb(rq->body ? rq->body : "", rq->len, 0, &je);
    if (!json_is_object(in)) {
        json_decref(in);
        return fail(c, 400, "BadRequest", NULL, "json: cannot unmarshal into v1.Secret: %s",
                    je.text);
    }
    meta = json_object_get(in, "metadata");
    name = meta_str(in, "name");
    if (!json_is_object(meta) || !*name) {
        json_decref(in);
        return fail(c, 422, "Invalid", details("", NULL, "Secret"),
                    "Secret \"\" is invalid: metadata.name: Required value: name or "
                    "generateName is required");
    }
    if (*meta_str(in, "namespace") && strcmp(meta_str(in, "namespace"), ns) != 0) {
        enum MHD_Result ret = fail(c, 400, "BadRequest", NULL, "the namespace of the provided "
                                   "object does not match the namespace sent on the request");
        json_decref(in);
        return ret;
    }
    if (find_secret(fk, ns, name)) {
        enum MHD_Result ret = fail(c, 409, "AlreadyExists", details(name, NULL, "secrets"),
                                   "secrets \"%s\" already exists", name);
        json_decref(in);
        return ret;
    }
    item = json_object();
    {
        json_t *m = json_object();
        json_object_set_new(m, "name", json_string(name));
        json_object_set_new(m, "namespace", json_string(ns));
        json_object_foreach(meta, k, v)
            if (strcmp(k, "labels") == 0 || strcmp(k, "annotations") == 0)
                json_object_set(m, k, v);
        json_object_set_new(item, "metadata", m);
    }
    if ((v = json_object_get(in, "data")) && json_is_object(v))
        json_object_set(item, "data", v);
    json_object_set_new(item, "type", json_string(json_is_string(json_object_get(in, "type"))
                                                      ? json_string_value(json_object_get(in, "type"))
                                                      : "Opaque"));
    json_decref(in);
    if (insert_secret(fk, item) != 0) {
        json_decref(item);
        return fail(c, 500, "InternalError", NULL, "fake-k8s: insert failed");
    }
    return send_json(c, 201, full_secret(item), NULL, NULL);
}

static int csv_has(const char *csv, const char *s)
{
    size_t n = strlen(s);
    const char *p = csv;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, s, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static enum MHD_Result token_review(fake_k8s *fk, struct MHD_Connection *c, const who *w,
                                    const fk_req *rq)
{
    json_t *in, *spec, *tok, *aud, *kind, *out, *status, *outspec, *auds;
    json_error_t je;
    fk_review *rv = NULL;
    size_t i;

    if (!(w->perms & FK_CREATE_TOKENREVIEWS))
        return fail(c, 403, "Forbidden", details(NULL, "authentication.k8s.io", "tokenreviews"),
                    "tokenreviews.authentication.k8s.io is forbidden: User \"%s\" cannot "
                    "create resource \"tokenreviews\" in API group \"authentication.k8s.io\" "
                    "at the cluster scope", w->name);
    if (!is_json_type(c))
        return unsupported_media(c);
    in = json_loadb(rq->body ? rq->body : "", rq->len, 0, &je);
    kind = json_object_get(in, "kind");
    if (!json_is_object(in) || (kind && (!json_is_string(kind) ||
                                         strcmp(json_string_value(kind), "TokenReview") != 0))) {
        json_decref(in);
        return fail(c, 400, "BadRequest", NULL, "the object provided is unrecognized (must be "
                    "of type TokenReview)");
    }
    spec = json_object_get(in, "spec");
    tok = json_object_get(spec, "token");
    aud = json_object_get(spec, "audiences");
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        json_decref(in);
        return fail(c, 400, "BadRequest", NULL,
                    "token is required for TokenReview in authentication");
    }
    for (i = 0; i < fk->nreviews; i++)
        if (strcmp(fk->reviews[i].token, json_string_value(tok)) == 0)
            rv = &fk->reviews[i];
    out = json_object();
    json_object_set_new(out, "kind", json_string("TokenReview"));
    json_object_set_new(out, "apiVersion", json_string("authentication.k8s.io/v1"));
    json_object_set_new(out, "metadata", json_object());
    outspec = json_object();
    json_object_set(outspec, "token", tok);
    if (json_is_array(aud) && json_array_size(aud))
        json_object_set(outspec, "audiences", aud);
    json_object_set_new(out, "spec", outspec);
    status = json_object();
    auds = json_array();
    if (rv) {
        if (json_is_array(aud) && json_array_size(aud)) {
            json_t *a;
            json_array_foreach(aud, i, a)
                if (json_is_string(a) && csv_has(rv->audiences, json_string_value(a)))
                    json_array_append(auds, a);
        } else {
            char buf[1024], *save = NULL, *t;
            snprintf(buf, sizeof buf, "%s", rv->audiences);
            for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
                json_array_append_new(auds, json_string(t));
        }
    }
    if (rv && rv->revoked) {
        /* the API server's text for a bound token whose pod or secret is gone */
        json_decref(auds);
        json_object_set_new(status, "user", json_object());
        json_object_set_new(status, "error",
                            json_string("[invalid bearer token, service account token has "
                                        "been invalidated]"));
    } else if (rv && json_array_size(auds) > 0) {
        json_object_set_new(status, "authenticated", json_true());
        json_object_set_new(status, "user", json_deep_copy(rv->user));
        json_object_set_new(status, "audiences", auds);
    } else {
        json_decref(auds);
        json_object_set_new(status, "user", json_object());
        json_object_set_new(status, "error",
                            json_string(rv ? "[invalid bearer token, token audiences is invalid "
                                             "for the target audiences]"
                                           : "[invalid bearer token, service account token "
                                             "has expired]"));
    }
    json_object_set_new(out, "status", status);
    json_decref(in);
    return send_json(c, 201, out, NULL, NULL);
}

/* ------------------------------------------------------------ faults */

static ssize_t oversize_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    static const char head[] = "{\"kind\":\"Namespace\",\"pad\":\"";
    size_t i;
    (void)cls;
    if (pos >= OVERSIZE)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > OVERSIZE - pos)
        max = (size_t)(OVERSIZE - pos);
    for (i = 0; i < max; i++)
        buf[i] = pos + i < sizeof head - 1 ? head[pos + i] : 'x';
    return (ssize_t)max;
}

/* Applies a pending fault. *handled = 1 if a response (or a reset) was made. */
static enum MHD_Result apply_fault(fake_k8s *fk, struct MHD_Connection *c, const char *url,
                                   int *handled)
{
    fake_k8s_fault f = FK_FAULT_NONE;
    char ra[16];
    *handled = 0;
    pthread_mutex_lock(&fk->mu);
    if (fk->fault_count > 0 && (!fk->fault_prefix[0] ||
                                strncmp(url, fk->fault_prefix, strlen(fk->fault_prefix)) == 0)) {
        f = fk->fault;
        if (--fk->fault_count == 0)
            fk->fault = FK_FAULT_NONE;
    }
    snprintf(ra, sizeof ra, "%d", fk->retry_after);
    pthread_mutex_unlock(&fk->mu);
    switch (f) {
    case FK_FAULT_NONE:
        return MHD_YES;
    case FK_FAULT_SLOW: {
        int left = fk->slow_ms;
        while (left > 0 && !fk->stopping) {
            struct timespec ts = { 0, 20 * 1000000L };
            nanosleep(&ts, NULL);
            left -= 20;
        }
        return MHD_YES; /* then answer normally */
    }
    case FK_FAULT_500:
        *handled = 1;
        return send_json(c, 500, status_obj(500, "InternalError", "Internal error occurred: "
                         "etcdserver: request timed out", NULL), NULL, NULL);
    case FK_FAULT_503:
        *handled = 1;
        return send_json(c, 503, status_obj(503, "ServiceUnavailable", "the server is "
                         "currently unable to handle the request", NULL), NULL, NULL);
    case FK_FAULT_429: {
        json_t *d = json_object();
        json_object_set_new(d, "retryAfterSeconds", json_integer(atoi(ra)));
        *handled = 1;
        return send_json(c, 429, status_obj(429, "TooManyRequests", "Too many requests, please "
                         "try again later.", d), "Retry-After", ra);
    }
    case FK_FAULT_RESET: {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct linger lg = { 1, 0 };
        if (ci)
            setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        *handled = 1;
        return MHD_NO;
    }
    case FK_FAULT_OVERSIZED: {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, oversize_cb, NULL, NULL);
        enum MHD_Result ret;
        *handled = 1;
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    case FK_FAULT_MALFORMED: {
        static const char cut[] = "{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{"
                                  "\"name\":\"kube-sys";
        *handled = 1;
        return send_body(c, 200, "application/json", cut, sizeof cut - 1, NULL, NULL);
    }
    case FK_FAULT_HTML: {
        static const char html[] = "<html><head><title>502 Bad Gateway</title></head><body>"
                                   "<center><h1>502 Bad Gateway</h1></center></body></html>\n";
        *handled = 1;
        return send_body(c, 502, "text/html", html, sizeof html - 1, NULL, NULL);
    }
    }
    return MHD_YES;
}

/* -------------------------------------------------------------- router */

static enum MHD_Result route(fake_k8s *fk, struct MHD_Connection *c, const char *url,
                             const char *method, const fk_req *rq)
{
    char ns[300], name[300], rest[300];
    who w;
    int a;
    enum MHD_Result ret;

    pthread_mutex_lock(&fk->mu);
    a = authenticate(fk, c, &w);
    {
        argbuf args = { .n = 0 };
        char line[4400];
        const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
        const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        args.s[0] = '\0';
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &args);
        snprintf(line, sizeof line, "%s %s%s user=%s accept=%s ctype=%s", method, url, args.s,
                 a == 1 ? w.name : "-", accept ? accept : "-", ctype ? ctype : "-");
        record(fk, line, url);
    }
    pthread_mutex_unlock(&fk->mu);
    {
        int handled;
        ret = apply_fault(fk, c, url, &handled);
        if (handled)
            return ret;
    }
    pthread_mutex_lock(&fk->mu);
    if (a != 1) {
        ret = unauthorized(c);
        goto out;
    }
    if (strcmp(url, "/openid/v1/jwks") == 0 && strcmp(method, "GET") == 0) {
        if (!(w.perms & FK_GET_JWKS))
            ret = fail(c, 403, "Forbidden", json_object(),
                       "forbidden: User \"%s\" cannot get path \"/openid/v1/jwks\"", w.name);
        else
            ret = send_body(c, 200, "application/jwk-set+json", fk->jwks, strlen(fk->jwks), NULL,
                            NULL);
        goto out;
    }
    if (strcmp(url, "/apis/authentication.k8s.io/v1/tokenreviews") == 0) {
        if (strcmp(method, "POST") != 0)
            ret = fail(c, 405, "MethodNotAllowed", json_object(), "the server does not allow "
                       "this method on the requested resource");
        else
            ret = token_review(fk, c, &w, rq);
        goto out;
    }
    rest[0] = name[0] = '\0';
    if (sscanf(url, "/api/v1/namespaces/%299[^/]/secrets/%299[^/]%299s", ns, name, rest) >= 2 &&
        !rest[0]) {
        if (strcmp(method, "GET") == 0)
            ret = get_secret(fk, c, &w, ns, name);
        else if (strcmp(method, "DELETE") == 0)
            ret = delete_secret(fk, c, &w, ns, name, rq);
        else
            ret = fail(c, 405, "MethodNotAllowed", json_object(), "the server does not allow "
                       "this method on the requested resource");
        goto out;
    }
    rest[0] = '\0';
    if (sscanf(url, "/api/v1/namespaces/%299[^/]/secret%299s", ns, rest) == 2 &&
        strcmp(rest, "s") == 0) {
        if (strcmp(method, "GET") == 0)
            ret = list_secrets(fk, c, &w, ns);
        else if (strcmp(method, "POST") == 0)
            ret = create_secret(fk, c, &w, ns, rq);
        else
            ret = fail(c, 405, "MethodNotAllowed", json_object(), "the server does not allow "
                       "this method on the requested resource");
        goto out;
    }
    rest[0] = '\0';
    if (sscanf(url, "/api/v1/namespaces/%299[^/]%299s", ns, rest) >= 1 && !rest[0] &&
        strcmp(method, "GET") == 0) {
        ret = get_namespace(fk, c, &w, ns);
        goto out;
    }
    ret = fail(c, 404, "NotFound", json_object(), "the server could not find the requested "
               "resource");
out:
    pthread_mutex_unlock(&fk->mu);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    fake_k8s *fk = cls;
    fk_req *rq = *con_cls;
    (void)version;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (rq->len + n > BODY_MAX) {
            rq->too_big = 1;
        } else {
            if (rq->len + n + 1 > rq->cap) {
                size_t cap = (rq->len + n + 1) * 2;
                char *p = realloc(rq->body, cap);
                if (!p)
                    return MHD_NO;
                rq->body = p;
                rq->cap = cap;
            }
            memcpy(rq->body + rq->len, upload_data, n);
            rq->len += n;
            rq->body[rq->len] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->too_big)
        return fail(c, 413, "RequestEntityTooLarge", NULL, "the request is too large");
    return route(fk, c, url, method, rq);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    fk_req *rq = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap; /* quiet: resets and aborted transfers are expected in these tests */
}

/* ------------------------------------------------------------- public */

fake_k8s *fake_k8s_start(const char *tls_dir)
{
    fake_k8s *fk = calloc(1, sizeof *fk);
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *di;
    json_t *ns;
    json_error_t je;

    if (!fk)
        return NULL;
    pthread_mutex_init(&fk->mu, NULL);
    fk->cert_pem = read_text(tls_dir, "server.pem");
    fk->key_pem = read_text(tls_dir, "server-key.pem");
    fk->ca_pem = read_text(tls_dir, "ca.pem");
    if (!fk->cert_pem || !fk->key_pem || !fk->ca_pem) {
        fprintf(stderr, "fake_k8s: cannot read the TLS files in %s\n", tls_dir);
        fake_k8s_stop(fk);
        return NULL;
    }
    ns = json_loads(fk_fixture_namespace, 0, &je);
    snprintf(fk->ns_uid, sizeof fk->ns_uid, "%s",
             json_string_value(json_object_get(json_object_get(ns, "metadata"), "uid")));
    json_decref(ns);
    fk->rv = 1000;
    fk->slow_ms = 3000;
    fk->retry_after = 1;
    fk->jwks = xstrdup(fk_fixture_jwks);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    fk->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                 MHD_USE_TLS | MHD_USE_ERROR_LOG,
                             0, NULL, NULL, handler, fk,
                             MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_HTTPS_MEM_CERT, fk->cert_pem,
                             MHD_OPTION_HTTPS_MEM_KEY, fk->key_pem,
                             MHD_OPTION_HTTPS_MEM_TRUST, fk->ca_pem,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
                             MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                             MHD_OPTION_END);
    if (!fk->d) {
        fprintf(stderr, "fake_k8s: cannot start the HTTPS server (libmicrohttpd with TLS)\n");
        fake_k8s_stop(fk);
        return NULL;
    }
    di = MHD_get_daemon_info(fk->d, MHD_DAEMON_INFO_BIND_PORT);
    fk->port = di ? di->port : 0;
    if (!fk->port) {
        fprintf(stderr, "fake_k8s: no port\n");
        fake_k8s_stop(fk);
        return NULL;
    }
    return fk;
}

void fake_k8s_stop(fake_k8s *fk)
{
    size_t i;
    if (!fk)
        return;
    fk->stopping = 1;
    if (fk->d)
        MHD_stop_daemon(fk->d);
    for (i = 0; i < fk->nusers; i++) {
        free(fk->users[i].key);
        free(fk->users[i].name);
    }
    while (fk->nsecrets)
        remove_secret(fk, &fk->secrets[fk->nsecrets - 1]);
    free(fk->secrets);
    for (i = 0; i < fk->nreviews; i++) {
        free(fk->reviews[i].token);
        free(fk->reviews[i].audiences);
        json_decref(fk->reviews[i].user);
    }
    for (i = 0; i < LOG_KEEP; i++) {
        free(fk->log[i]);
        free(fk->paths[i]);
    }
    free(fk->jwks);
    free(fk->cert_pem);
    free(fk->key_pem);
    free(fk->ca_pem);
    pthread_mutex_destroy(&fk->mu);
    free(fk);
}

uint16_t fake_k8s_port(const fake_k8s *fk)
{
    return fk->port;
}

static void add_user(fake_k8s *fk, const char *key, const char *user, unsigned perms, int cert)
{
    pthread_mutex_lock(&fk->mu);
    if (fk->nusers < MAX_USERS) {
        fk->users[fk->nusers].key = xstrdup(key);
        fk->users[fk->nusers].name = xstrdup(user);
        fk->users[fk->nusers].perms = perms;
        fk->users[fk->nusers].cert = cert;
        fk->nusers++;
    }
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_add_token(fake_k8s *fk, const char *token, const char *user, unsigned perms)
{
    add_user(fk, token, user, perms, 0);
}

void fake_k8s_remove_token(fake_k8s *fk, const char *token)
{
    size_t i;
    pthread_mutex_lock(&fk->mu);
    for (i = 0; i < fk->nusers; i++) {
        if (!fk->users[i].cert && strcmp(fk->users[i].key, token) == 0) {
            free(fk->users[i].key);
            free(fk->users[i].name);
            fk->users[i] = fk->users[--fk->nusers];
            break;
        }
    }
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_add_cert_user(fake_k8s *fk, const char *cn, const char *user, unsigned perms)
{
    add_user(fk, cn, user, perms, 1);
}

void fake_k8s_set_namespace_uid(fake_k8s *fk, const char *uid)
{
    pthread_mutex_lock(&fk->mu);
    snprintf(fk->ns_uid, sizeof fk->ns_uid, "%s", uid);
    pthread_mutex_unlock(&fk->mu);
}

int fake_k8s_add_secret_json(fake_k8s *fk, const char *json)
{
    json_error_t je;
    json_t *item = json_loads(json, JSON_PRESERVE_ORDER, &je);
    int rc;
    if (!json_is_object(item)) {
        json_decref(item);
        return -1;
    }
    pthread_mutex_lock(&fk->mu);
    rc = insert_secret(fk, item);
    pthread_mutex_unlock(&fk->mu);
    if (rc != 0)
        json_decref(item);
    return rc;
}

int fake_k8s_add_secret(fake_k8s *fk, const char *ns, const char *name, const char *type,
                        const char *const *kv)
{
    json_t *item = json_object(), *meta = json_object(), *data = json_object();
    int rc;
    json_object_set_new(meta, "name", json_string(name));
    json_object_set_new(meta, "namespace", json_string(ns));
    json_object_set_new(item, "metadata", meta);
    for (; kv && kv[0] && kv[1]; kv += 2) {
        char *b = b64_encode((const unsigned char *)kv[1], strlen(kv[1]), 0);
        json_object_set_new(data, kv[0], json_string(b));
        free(b);
    }
    json_object_set_new(item, "data", data);
    json_object_set_new(item, "type", json_string(type ? type : "Opaque"));
    pthread_mutex_lock(&fk->mu);
    rc = insert_secret(fk, item);
    pthread_mutex_unlock(&fk->mu);
    if (rc != 0)
        json_decref(item);
    return rc;
}

void fake_k8s_seed_fixture_secrets(fake_k8s *fk)
{
    size_t i;
    for (i = 0; fk_fixture_secrets[i]; i++)
        if (fake_k8s_add_secret_json(fk, fk_fixture_secrets[i]) != 0)
            abort();
    pthread_mutex_lock(&fk->mu);
    if (fk->rv < FK_FIXTURE_LIST_RV)
        fk->rv = FK_FIXTURE_LIST_RV;
    pthread_mutex_unlock(&fk->mu);
}

int fake_k8s_touch_secret(fake_k8s *fk, const char *ns, const char *name)
{
    fk_secret *s;
    int rc = -1;
    pthread_mutex_lock(&fk->mu);
    if ((s = find_secret(fk, ns, name))) {
        set_rv(s->item, ++fk->rv);
        rc = 0;
    }
    pthread_mutex_unlock(&fk->mu);
    return rc;
}

int fake_k8s_touch_before_delete(fake_k8s *fk, const char *ns, const char *name)
{
    int r = -1;
    pthread_mutex_lock(&fk->mu);
    if (find_secret(fk, ns, name) && strlen(ns) < sizeof fk->touch_ns &&
        strlen(name) < sizeof fk->touch_name) {
        snprintf(fk->touch_ns, sizeof fk->touch_ns, "%s", ns);
        snprintf(fk->touch_name, sizeof fk->touch_name, "%s", name);
        r = 0;
    }
    pthread_mutex_unlock(&fk->mu);
    return r;
}

int fake_k8s_remove_secret(fake_k8s *fk, const char *ns, const char *name)
{
    fk_secret *s;
    int r = -1;
    pthread_mutex_lock(&fk->mu);
    if ((s = find_secret(fk, ns, name))) {
        fk->rv++;
        remove_secret(fk, s);
        r = 0;
    }
    pthread_mutex_unlock(&fk->mu);
    return r;
}

char *fake_k8s_secret_data_json(fake_k8s *fk, const char *ns, const char *name)
{
    fk_secret *s;
    char *r = NULL;
    pthread_mutex_lock(&fk->mu);
    if ((s = find_secret(fk, ns, name))) {
        json_t *d = json_object_get(s->item, "data");
        r = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
    }
    pthread_mutex_unlock(&fk->mu);
    return r;
}

int fake_k8s_set_secret_uid(fake_k8s *fk, const char *ns, const char *name, const char *uid)
{
    fk_secret *s;
    int rc = -1;
    pthread_mutex_lock(&fk->mu);
    if ((s = find_secret(fk, ns, name))) {
        json_object_set_new(json_object_get(s->item, "metadata"), "uid", json_string(uid));
        set_rv(s->item, ++fk->rv);
        rc = 0;
    }
    pthread_mutex_unlock(&fk->mu);
    return rc;
}

int fake_k8s_secret_meta(fake_k8s *fk, const char *ns, const char *name, char *uid, char *rv)
{
    fk_secret *s;
    int rc = 0;
    pthread_mutex_lock(&fk->mu);
    if ((s = find_secret(fk, ns, name))) {
        if (uid)
            snprintf(uid, 64, "%s", meta_str(s->item, "uid"));
        if (rv)
            snprintf(rv, 64, "%s", meta_str(s->item, "resourceVersion"));
        rc = 1;
    }
    pthread_mutex_unlock(&fk->mu);
    return rc;
}

size_t fake_k8s_secret_count(fake_k8s *fk, const char *ns)
{
    size_t i, n = 0;
    pthread_mutex_lock(&fk->mu);
    for (i = 0; i < fk->nsecrets; i++)
        n += strcmp(fk->secrets[i].ns, ns) == 0;
    pthread_mutex_unlock(&fk->mu);
    return n;
}

void fake_k8s_expire_continue(fake_k8s *fk, int n)
{
    pthread_mutex_lock(&fk->mu);
    fk->expire_next = n;
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_compact(fake_k8s *fk)
{
    pthread_mutex_lock(&fk->mu);
    fk->compacted_rv = fk->rv;
    fk->rv++;
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_review_token(fake_k8s *fk, const char *token, const char *user_json,
                           const char *audiences_csv)
{
    json_error_t je;
    json_t *u = json_loads(user_json, JSON_PRESERVE_ORDER, &je);
    if (!u)
        abort();
    pthread_mutex_lock(&fk->mu);
    if (fk->nreviews < MAX_REVIEWS) {
        fk->reviews[fk->nreviews].token = xstrdup(token);
        fk->reviews[fk->nreviews].user = u;
        fk->reviews[fk->nreviews].audiences = xstrdup(audiences_csv);
        fk->nreviews++;
        u = NULL;
    }
    pthread_mutex_unlock(&fk->mu);
    json_decref(u);
}

void fake_k8s_revoke_token(fake_k8s *fk, const char *token)
{
    size_t i;
    pthread_mutex_lock(&fk->mu);
    for (i = 0; i < fk->nreviews; i++)
        if (strcmp(fk->reviews[i].token, token) == 0)
            fk->reviews[i].revoked = 1;
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_set_jwks(fake_k8s *fk, const char *json)
{
    char *j = xstrdup(json), *old;
    pthread_mutex_lock(&fk->mu);
    old = fk->jwks;
    fk->jwks = j;
    pthread_mutex_unlock(&fk->mu);
    free(old);
}

void fake_k8s_inject(fake_k8s *fk, fake_k8s_fault f, int count, const char *prefix)
{
    pthread_mutex_lock(&fk->mu);
    fk->fault = f;
    fk->fault_count = count;
    snprintf(fk->fault_prefix, sizeof fk->fault_prefix, "%s", prefix ? prefix : "");
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_set_slow_ms(fake_k8s *fk, int ms)
{
    pthread_mutex_lock(&fk->mu);
    fk->slow_ms = ms;
    pthread_mutex_unlock(&fk->mu);
}

void fake_k8s_set_retry_after(fake_k8s *fk, int seconds)
{
    pthread_mutex_lock(&fk->mu);
    fk->retry_after = seconds;
    pthread_mutex_unlock(&fk->mu);
}

unsigned fake_k8s_requests(fake_k8s *fk, const char *prefix)
{
    size_t i, first, n = 0;
    pthread_mutex_lock(&fk->mu);
    first = fk->log_n > LOG_KEEP ? fk->log_n - LOG_KEEP : 0;
    for (i = first; i < fk->log_n; i++) {
        const char *p = fk->paths[i % LOG_KEEP];
        if (!prefix || strncmp(p, prefix, strlen(prefix)) == 0)
            n++;
    }
    pthread_mutex_unlock(&fk->mu);
    return (unsigned)n;
}

void fake_k8s_reset_log(fake_k8s *fk)
{
    size_t i;
    pthread_mutex_lock(&fk->mu);
    for (i = 0; i < LOG_KEEP; i++) {
        free(fk->log[i]);
        free(fk->paths[i]);
        fk->log[i] = fk->paths[i] = NULL;
    }
    fk->log_n = 0;
    pthread_mutex_unlock(&fk->mu);
}

int fake_k8s_request_line(fake_k8s *fk, size_t i, char *buf, size_t n)
{
    size_t first;
    int rc = -1;
    pthread_mutex_lock(&fk->mu);
    first = fk->log_n > LOG_KEEP ? fk->log_n - LOG_KEEP : 0;
    if (first + i < fk->log_n) {
        snprintf(buf, n, "%s", fk->log[(first + i) % LOG_KEEP]);
        rc = 0;
    }
    pthread_mutex_unlock(&fk->mu);
    return rc;
}

/* --------------------------------------------------------- config files */

static int write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return chmod(path, mode);
}

static char *b64_file(const char *dir, const char *name)
{
    char *t = read_text(dir, name), *b;
    if (!t)
        return NULL;
    b = b64_encode((const unsigned char *)t, strlen(t), 0);
    free(t);
    return b;
}

int fake_k8s_write_configs(fake_k8s *fk, const char *dir, const char *tls_dir,
                           const char *token)
{
    char *ca = b64_file(tls_dir, "ca.pem"), *cert = b64_file(tls_dir, "client.pem"),
         *key = b64_file(tls_dir, "client-key.pem");
    char *buf = NULL, sub[1024], server[64];
    size_t cap = 65536;
    int rc = -1;

    snprintf(server, sizeof server, "https://127.0.0.1:%u", (unsigned)fk->port);
    if (!ca || !cert || !key || !(buf = malloc(cap)))
        goto out;
#define HEAD                                                                            \
    "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"                              \
    "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: %s\n"             \
    "    namespace: payments\nclusters:\n- name: fake\n  cluster:\n    server: %s\n"
    snprintf(buf, cap, HEAD "    certificate-authority-data: %s\nusers:\n- name: admin\n"
             "  user:\n    token: %s\n", "admin", server, ca, token);
    if (write_file(dir, "kubeconfig", buf, 0600) != 0)
        goto out;
    snprintf(buf, cap, HEAD "    certificate-authority-data: %s\nusers:\n- name: admin\n"
             "  user:\n    tokenFile: token\n", "admin", server, ca);
    if (write_file(dir, "kubeconfig-tokenfile", buf, 0600) != 0 ||
        write_file(dir, "token", token, 0600) != 0)
        goto out;
    snprintf(buf, cap, HEAD "    certificate-authority-data: %s\nusers:\n- name: cert\n"
             "  user:\n    client-certificate-data: %s\n    client-key-data: %s\n", "cert",
             server, ca, cert, key);
    if (write_file(dir, "kubeconfig-cert", buf, 0600) != 0)
        goto out;
    snprintf(buf, cap, HEAD "    certificate-authority: %s/ca.pem\nusers:\n- name: cert\n"
             "  user:\n    client-certificate: %s/client.pem\n    client-key: %s/client-key.pem\n",
             "cert", server, tls_dir, tls_dir, tls_dir);
    if (write_file(dir, "kubeconfig-files", buf, 0600) != 0)
        goto out;
#undef HEAD
    snprintf(sub, sizeof sub, "%s/serviceaccount", dir);
    if (mkdir(sub, 0700) != 0 && errno != EEXIST)
        goto out;
    free(buf);
    buf = read_text(tls_dir, "ca.pem");
    if (!buf || write_file(sub, "token", token, 0600) != 0 ||
        write_file(sub, "ca.crt", buf, 0644) != 0 ||
        write_file(sub, "namespace", "payments", 0644) != 0)
        goto out;
    snprintf(sub, sizeof sub, "KUBERNETES_SERVICE_HOST=127.0.0.1\nKUBERNETES_SERVICE_PORT=%u\n",
             (unsigned)fk->port);
    if (write_file(dir, "env", sub, 0644) != 0)
        goto out;
    rc = 0;
out:
    free(buf);
    free(ca);
    free(cert);
    free(key);
    return rc;
}
