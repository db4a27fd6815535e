/*
 * embedded_vault.c - ct_embedded_vault: the bridge's "vault.http" handler on
 * the embedded store (podpolicy.h). Pods log in with their service-account
 * token (verified offline against the cluster's pinned issuer keys), get a
 * bridge token held only in memory, and read the KV v2 records kv/<mount>/...
 * that the pod policy grants them. Answers are Vault-shaped.
 */
#include "b64.h"
#include "bootstrap_internal.h"
#include "internal.h"
#include "podpolicy_internal.h"
#include "json_wipe.h"

#include <cloudtaser/broker.h>
#include <cloudtaser/jwt.h>
#include <cloudtaser/podpolicy.h>
#include <cloudtaser/room.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_PREFIX "ctb."
#define TOKEN_RAW 32
#define TOKEN_LEN (4 + 43)
#define MAX_TOKEN 4096
#define MAX_NAMEBUF 254
#define MAX_ROLE 129
#define MAX_MOUNT 256
#define REC_V 1

#define E_DENIED "1 error occurred:\n\t* permission denied\n\n"
#define E_INVALID_TOKEN "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"

typedef struct tok {
    struct tok *next;
    uint8_t hash[32];
    char accessor[25];
    char fp[CT_FINGERPRINT_LEN + 1];
    char ns[MAX_NAMEBUF], sa[MAX_NAMEBUF], role[MAX_ROLE];
    char mount[MAX_MOUNT];           /* the auth mount of the login */
    int64_t issued_ms, expire_ms, max_ms;
    uint32_t creation_ttl_s;
} tok;

struct ct_embedded_vault {
    ct_ctx *ctx;
    ct_store *store;
    uint32_t ttl_s, max_ttl_s, max_tokens, leeway_s;
    pthread_rwlock_t plock; /* guards policy */
    ct_pod_policy *policy;
    pthread_mutex_t tlock;  /* guards the token table */
    tok **buckets;
    size_t nbuckets, count;
};

static void tok_free(tok *t)
{
    ct_secure_wipe(t, sizeof *t);
    free(t);
}

ct_err ct_embedded_vault_new(ct_ctx *ctx, const ct_embedded_vault_options *opts,
                             ct_embedded_vault **out, ct_error *err)
{
    ct_embedded_vault *v;
    size_t nb = 64;
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_embedded_vault_new: out is NULL");
    *out = NULL;
    if (!opts || !opts->store)
        return ctp_err(err, CT_E_INVALID, 0, "ct_embedded_vault_new: a store is required");
    if (opts->version != CT_EMBEDDED_VAULT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0,
                       "ct_embedded_vault_options version %u is not supported",
                       (unsigned)opts->version);
    if (!(v = ctp_calloc(1, sizeof *v)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    v->ctx = ctx ? ctx : (ct_ctx *)ctp_default_ctx();
    v->store = opts->store;
    v->ttl_s = opts->token_ttl_s ? opts->token_ttl_s : CT_EMBEDDED_VAULT_DEFAULT_TTL_S;
    v->max_ttl_s = opts->token_max_ttl_s ? opts->token_max_ttl_s
                                         : CT_EMBEDDED_VAULT_DEFAULT_MAX_TTL_S;
    if (v->max_ttl_s < v->ttl_s)
        v->max_ttl_s = v->ttl_s;
    v->max_tokens = opts->max_tokens ? opts->max_tokens : CT_EMBEDDED_VAULT_DEFAULT_MAX_TOKENS;
    v->leeway_s = opts->leeway_s ? opts->leeway_s : 60;
    while (nb < v->max_tokens && nb < ((size_t)1 << 20))
        nb <<= 1;
    v->nbuckets = nb;
    if (!(v->buckets = ctp_calloc(nb, sizeof *v->buckets))) {
        free(v);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    pthread_rwlock_init(&v->plock, NULL);
    pthread_mutex_init(&v->tlock, NULL);
    *out = v;
    return CT_OK;
}

void ct_embedded_vault_set_policy(ct_embedded_vault *v, ct_pod_policy *policy)
{
    ct_pod_policy *old;
    if (!v) {
        ct_pod_policy_free(policy);
        return;
    }
    pthread_rwlock_wrlock(&v->plock);
    old = v->policy;
    v->policy = policy;
    pthread_rwlock_unlock(&v->plock);
    ct_pod_policy_free(old);
}

void ct_embedded_vault_free(ct_embedded_vault *v)
{
    size_t i;
    if (!v)
        return;
    for (i = 0; i < v->nbuckets; i++) {
        tok *t = v->buckets[i], *n;
        for (; t; t = n) {
            n = t->next;
            tok_free(t);
        }
    }
    free(v->buckets);
    ct_pod_policy_free(v->policy);
    pthread_rwlock_destroy(&v->plock);
    pthread_mutex_destroy(&v->tlock);
    free(v);
}

/* ---- the token table ---- */

static size_t bucket_of(const ct_embedded_vault *v, const uint8_t h[32])
{
    uint64_t x = 0;
    int i;
    for (i = 0; i < 8; i++)
        x = (x << 8) | h[i];
    return (size_t)(x & (v->nbuckets - 1));
}

/* Drops expired tokens (tlock held). */
static void sweep(ct_embedded_vault *v, int64_t now)
{
    size_t i;
    for (i = 0; i < v->nbuckets; i++) {
        tok **pp = &v->buckets[i];
        while (*pp) {
            tok *t = *pp;
            if (t->expire_ms <= now) {
                *pp = t->next;
                tok_free(t);
                v->count--;
            } else {
                pp = &t->next;
            }
        }
    }
}

size_t ct_embedded_vault_token_count(ct_embedded_vault *v)
{
    size_t n;
    if (!v)
        return 0;
    pthread_mutex_lock(&v->tlock);
    sweep(v, ct_ctx_wall_ms(v->ctx));
    n = v->count;
    pthread_mutex_unlock(&v->tlock);
    return n;
}

/* Finds the token (tlock held); expired ones are removed and not found. */
static tok *find(ct_embedded_vault *v, const char *token, int64_t now)
{
    uint8_t h[32];
    tok **pp, *t;
    if (ct_sha256(token, strlen(token), h) != CT_OK)
        return NULL;
    for (pp = &v->buckets[bucket_of(v, h)]; (t = *pp); pp = &t->next) {
        if (!ct_memeq(t->hash, h, 32))
            continue;
        if (t->expire_ms <= now) {
            *pp = t->next;
            tok_free(t);
            v->count--;
            return NULL;
        }
        return t;
    }
    return NULL;
}

/* ---- answers ---- */

/*
 * The handler's answer: {"status":N,"body":"<body>","headers":{...}}.
 * `body` (may be NULL: empty body) is consumed; its strings are wiped.
 */
static ct_err answer(int status, json_t *body, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    char *text = NULL;
    size_t tlen = 0, n;
    json_t *a = NULL, *h, *b;
    char *buf = NULL;
    ct_err rc = CT_OK;

    if (body) {
        tlen = json_dumpb(body, NULL, 0, JSON_COMPACT);
        if (!tlen || !(text = malloc(tlen)) || json_dumpb(body, text, tlen, JSON_COMPACT) != tlen) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
    }
    a = json_object();
    h = json_object();
    b = json_stringn(text ? text : "", tlen);
    if (!a || !h || !b) {
        json_decref(h);
        json_decref(b);
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    json_object_set_new(a, "status", json_integer(status));
    json_object_set_new(a, "body", b);
    if (body)
        json_object_set_new(h, "Content-Type", json_string("application/json"));
    json_object_set_new(a, "headers", h);
    n = json_dumpb(a, NULL, 0, JSON_COMPACT);
    if (!n || !(buf = malloc(n)) || json_dumpb(a, buf, n, JSON_COMPACT) != n) {
        free(buf);
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    *resp = (uint8_t *)buf;
    *resp_len = n;
out:
    if (a) {
        ctp_json_wipe(json_object_get(a, "body"));
        json_decref(a);
    }
    if (text) {
        ct_secure_wipe(text, tlen);
        free(text);
    }
    if (body) {
        ctp_json_free_wiped(body);
    }
    return rc;
}

/* {"errors":[msg]} or {"errors":[]} (msg NULL). */
static ct_err answer_error(int status, const char *msg, uint8_t **resp, size_t *resp_len,
                           ct_error *err)
{
    json_t *e = json_array(), *o;
    if (e && msg)
        json_array_append_new(e, json_string(msg));
    o = json_object();
    if (!o || !e) {
        json_decref(o);
        json_decref(e);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    json_object_set_new(o, "errors", e);
    return answer(status, o, resp, resp_len, err);
}

static void request_id(const ct_embedded_vault *v, char out[37])
{
    uint8_t r[16] = {0};
    if (ct_ctx_random(v->ctx, r, sizeof r) != CT_OK)
        memset(r, 0, sizeof r);
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
             r[13], r[14], r[15]);
}

/* Vault's success envelope; data and auth are consumed (NULL: null). */
static json_t *envelope(const ct_embedded_vault *v, json_t *data, json_t *auth,
                        const char *mount_type)
{
    char id[37];
    json_t *o = json_object();
    request_id(v, id);
    if (!o) {
        json_decref(data);
        json_decref(auth);
        return NULL;
    }
    json_object_set_new(o, "request_id", json_string(id));
    json_object_set_new(o, "lease_id", json_string(""));
    json_object_set_new(o, "renewable", json_false());
    json_object_set_new(o, "lease_duration", json_integer(0));
    json_object_set_new(o, "data", data ? data : json_null());
    json_object_set_new(o, "wrap_info", json_null());
    json_object_set_new(o, "warnings", json_null());
    json_object_set_new(o, "auth", auth ? auth : json_null());
    json_object_set_new(o, "mount_type", json_string(mount_type));
    return o;
}

/* RFC 3339 UTC with nanoseconds, as Vault writes times. */
static void rfc3339(int64_t ms, char out[40])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char base[24];
    if (ms < 0 || !gmtime_r(&s, &tm) || !strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(out, 40, "1970-01-01T00:00:00Z");
        return;
    }
    snprintf(out, 40, "%s.%03d000000Z", base, (int)(ms % 1000));
}

/* ---- the KV records ---- */

static int mount_ok(const char *m, size_t n)
{
    static const char *const reserved[] = { "sys", "auth", "identity", "cubbyhole" };
    size_t i;
    if (n == 0 || n >= MAX_MOUNT)
        return 0;
    for (i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strlen(reserved[i]) == n && memcmp(m, reserved[i], n) == 0)
            return 0;
    for (i = 0; i < n; i++)
        if (!((m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z') ||
              (m[i] >= '0' && m[i] <= '9') || m[i] == '-' || m[i] == '_' || m[i] == '.'))
            return 0;
    return !(n == 1 && m[0] == '.') && !(n == 2 && m[0] == '.' && m[1] == '.');
}

ct_err ct_embedded_kv_key(const char *mount, const char *path, char *key, size_t n,
                          ct_error *err)
{
    int w;
    if (!mount || !path || !key || n == 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_embedded_kv_key: NULL argument");
    if (!mount_ok(mount, strlen(mount)))
        return ctp_err(err, CT_E_INVALID, 0,
                       "the mount must be one segment of [A-Za-z0-9._-], not sys, auth, "
                       "identity or cubbyhole");
    w = snprintf(key, n, "kv/%s/%s", mount, path);
    if (w < 0 || (size_t)w >= n || !ct_store_key_valid(key))
        return ctp_err(err, CT_E_INVALID, 0,
                       "the secret path must be 1 to 14 segments of [A-Za-z0-9._-] "
                       "separated by '/' (at most %d bytes with the mount)",
                       CT_STORE_KEY_MAX - 5);
    return CT_OK;
}

ct_err ct_embedded_kv_put(ct_ctx *ctx, ct_store *store, const char *mount, const char *path,
                          const char *data_json, size_t len, uint64_t *version, ct_error *err)
{
    char key[CT_STORE_KEY_MAX + 1];
    json_t *d = NULL, *rec = NULL;
    char *buf = NULL;
    size_t n = 0;
    ct_err rc;

    if (!store || (!data_json && len))
        return ctp_err(err, CT_E_INVALID, 0, "ct_embedded_kv_put: NULL argument");
    if ((rc = ct_embedded_kv_key(mount, path, key, sizeof key, err)) != CT_OK)
        return rc;
    /* never write into a store laid out by a newer cloudtaser */
    if ((rc = ct_store_layout_check(ctx ? ctx : (ct_ctx *)ctp_default_ctx(), store, NULL, err)) !=
        CT_OK)
        return rc;
    d = json_loadb(data_json ? data_json : "", len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(d)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "the secret's data must be a JSON object");
        goto out;
    }
    rec = json_object();
    if (!rec) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    json_object_set_new(rec, "v", json_integer(REC_V));
    json_object_set(rec, "data", d);
    json_object_set_new(rec, "created_at",
                        json_integer(ct_ctx_wall_ms(ctx ? ctx : ctp_default_ctx())));
    n = json_dumpb(rec, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    if (!n || !(buf = malloc(n)) ||
        json_dumpb(rec, buf, n, JSON_COMPACT | JSON_SORT_KEYS) != n) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    rc = ct_store_put(store, key, buf, n, CT_STORE_ANY, version, err);
out:
    if (buf) {
        ct_secure_wipe(buf, n);
        free(buf);
    }
    ctp_json_wipe(d);
    json_decref(rec);
    json_decref(d);
    return rc;
}

/* Reads and decodes a record: *data (a new reference), created_at, version. */
static ct_err kv_read(ct_store *store, const char *key, json_t **data, int64_t *created,
                      uint64_t *version, ct_error *err)
{
    ct_secret *val = NULL;
    json_t *o, *d, *c, *ver;
    ct_err rc;
    *data = NULL;
    if ((rc = ct_store_get(store, key, &val, version, err)) != CT_OK)
        return rc;
    o = json_loadb((const char *)ct_secret_data(val), ct_secret_len(val),
                   JSON_REJECT_DUPLICATES, NULL);
    ct_secret_free(val);
    d = json_object_get(o, "data");
    c = json_object_get(o, "created_at");
    ver = json_object_get(o, "v");
    if (!json_is_object(o) || !json_is_object(d) || !json_is_integer(ver) ||
        json_integer_value(ver) != REC_V) {
        ctp_json_free_wiped(o);
        return ctp_err(err, CT_E_STORE, 0, "record '%s' is not a KV secret record", key);
    }
    *created = json_is_integer(c) ? (int64_t)json_integer_value(c) : 0;
    *data = json_incref(d);
    json_object_del(o, "data");
    json_decref(o);
    return CT_OK;
}

ct_err ct_embedded_kv_get(ct_store *store, const char *mount, const char *path,
                          ct_secret **data_json, uint64_t *version, ct_error *err)
{
    char key[CT_STORE_KEY_MAX + 1];
    json_t *d = NULL;
    int64_t created;
    size_t n;
    ct_err rc;
    if (!store || !data_json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_embedded_kv_get: NULL argument");
    *data_json = NULL;
    if ((rc = ct_embedded_kv_key(mount, path, key, sizeof key, err)) != CT_OK)
        return rc;
    if ((rc = kv_read(store, key, &d, &created, version, err)) != CT_OK)
        return rc;
    n = json_dumpb(d, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    if (n == 0 || (rc = ct_secret_new(n, data_json, err)) != CT_OK) {
        rc = n ? rc : ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    } else if (json_dumpb(d, (char *)ct_secret_data(*data_json), n,
                          JSON_COMPACT | JSON_SORT_KEYS) != n) {
        ct_secret_free(*data_json);
        *data_json = NULL;
        rc = ctp_err(err, CT_E_INTERNAL, 0, "serialising the secret failed");
    }
    ctp_json_free_wiped(d);
    return rc;
}

/* ---- the calls ---- */

typedef struct call {
    ct_embedded_vault *v;
    const char *fp;
    const char *method, *path, *query, *token, *body;
    size_t body_len;
    uint8_t **resp;
    size_t *resp_len;
    ct_error *err;
} call;

/* A copy of the token's identity, taken under the lock. */
typedef struct who {
    char ns[MAX_NAMEBUF], sa[MAX_NAMEBUF], role[MAX_ROLE], mount[MAX_MOUNT];
    char accessor[25];
    int64_t issued_ms, expire_ms, max_ms;
    uint32_t creation_ttl_s;
} who;

/* 0 and *w filled, or a 403 answered (return 1 with *rc). */
static int authorize(call *c, who *w, ct_err *rc)
{
    ct_embedded_vault *v = c->v;
    tok *t;
    if (!c->token || !*c->token) {
        *rc = answer_error(403, E_DENIED, c->resp, c->resp_len, c->err);
        return 1;
    }
    pthread_mutex_lock(&v->tlock);
    t = strlen(c->token) == TOKEN_LEN ? find(v, c->token, ct_ctx_wall_ms(v->ctx)) : NULL;
    if (t && strcmp(t->fp, c->fp) == 0) {
        memcpy(w->ns, t->ns, sizeof w->ns);
        memcpy(w->sa, t->sa, sizeof w->sa);
        memcpy(w->role, t->role, sizeof w->role);
        memcpy(w->mount, t->mount, sizeof w->mount);
        memcpy(w->accessor, t->accessor, sizeof w->accessor);
        w->issued_ms = t->issued_ms;
        w->expire_ms = t->expire_ms;
        w->max_ms = t->max_ms;
        w->creation_ttl_s = t->creation_ttl_s;
    } else {
        t = NULL;
    }
    pthread_mutex_unlock(&v->tlock);
    if (!t) {
        *rc = answer_error(403, E_INVALID_TOKEN, c->resp, c->resp_len, c->err);
        return 1;
    }
    return 0;
}

static int allowed(call *c, const who *w, const char *cap, const char *path)
{
    int r;
    pthread_rwlock_rdlock(&c->v->plock);
    r = ct_pod_policy_allows(c->v->policy, c->fp, w->ns, w->sa, w->role, cap, path);
    pthread_rwlock_unlock(&c->v->plock);
    return r;
}

static json_t *policy_names(call *c, const who *w)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    json_array_append_new(a, json_string("default"));
    pthread_rwlock_rdlock(&c->v->plock);
    ctp_pod_policy_names(c->v->policy, c->fp, w->ns, w->sa, w->role, a);
    pthread_rwlock_unlock(&c->v->plock);
    return a;
}

static json_t *auth_meta(const who *w)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "role", w->role, "service_account_name",
                     w->sa, "service_account_namespace", w->ns, "service_account_secret_name",
                     "", "service_account_uid", "");
}

/* The "auth" block of login and renew-self. */
static json_t *auth_block(call *c, const who *w, const char *token, int64_t now)
{
    json_t *a = json_object(), *p = policy_names(c, w), *m = auth_meta(w);
    int64_t ttl = (w->expire_ms - now) / 1000;
    if (!a || !p || !m) {
        json_decref(a);
        json_decref(p);
        json_decref(m);
        return NULL;
    }
    json_object_set_new(a, "client_token", json_string(token));
    json_object_set_new(a, "accessor", json_string(w->accessor));
    json_object_set(a, "policies", p);
    json_object_set_new(a, "token_policies", p);
    json_object_set_new(a, "metadata", m);
    json_object_set_new(a, "lease_duration", json_integer(ttl > 0 ? ttl : 0));
    json_object_set_new(a, "renewable", json_true());
    json_object_set_new(a, "entity_id", json_string(""));
    json_object_set_new(a, "token_type", json_string("service"));
    json_object_set_new(a, "orphan", json_true());
    json_object_set_new(a, "mfa_requirement", json_null());
    json_object_set_new(a, "num_uses", json_integer(0));
    return a;
}

static ct_err reply_env(call *c, int status, json_t *env)
{
    if (!env)
        return ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
    return answer(status, env, c->resp, c->resp_len, c->err);
}

static void denied_log(call *c, const char *why, const char *detail)
{
    ctp_log(c->v->ctx, CT_LOG_WARNING, "podpolicy.login", "cluster %.8s: pod login refused: %s%s%s",
            c->fp, why, detail ? ": " : "", detail ? detail : "");
}

/* ns and sa from the claims (kubernetes.io) or from sub; 0 ok. */
static int pod_identity(const ct_jwt_claims *cl, char ns[MAX_NAMEBUF], char sa[MAX_NAMEBUF])
{
    const char *pre = "system:serviceaccount:";
    char want[2 * CT_JWT_CLAIM_MAX + 32];
    size_t pl = strlen(pre);
    if (cl->k8s_namespace[0] && cl->k8s_serviceaccount[0]) {
        if (strlen(cl->k8s_namespace) >= MAX_NAMEBUF ||
            strlen(cl->k8s_serviceaccount) >= MAX_NAMEBUF)
            return -1;
        snprintf(want, sizeof want, "%s%s:%s", pre, cl->k8s_namespace, cl->k8s_serviceaccount);
        if (strcmp(want, cl->subject) != 0)
            return -1;
        /* lengths checked above (memcpy: gcc -O0 cannot see that for snprintf) */
        memcpy(ns, cl->k8s_namespace, strlen(cl->k8s_namespace) + 1);
        memcpy(sa, cl->k8s_serviceaccount, strlen(cl->k8s_serviceaccount) + 1);
        return 0;
    }
    if (strncmp(cl->subject, pre, pl) == 0) {
        const char *a = cl->subject + pl, *colon = strchr(a, ':');
        if (!colon || colon == a || !colon[1] || strchr(colon + 1, ':') ||
            (size_t)(colon - a) >= MAX_NAMEBUF || strlen(colon + 1) >= MAX_NAMEBUF)
            return -1;
        snprintf(ns, MAX_NAMEBUF, "%.*s", (int)(colon - a), a);
        memcpy(sa, colon + 1, strlen(colon + 1) + 1);
        return 0;
    }
    return -1;
}

static ct_err do_login(call *c)
{
    ct_embedded_vault *v = c->v;
    json_t *b = NULL, *jrole, *jjwt, *env = NULL, *au = NULL;
    const char *role, *jwt;
    char key[CT_STORE_KEY_MAX + 1], aud[CT_JWT_CLAIM_MAX], msg[200];
    char token[TOKEN_LEN + 1];
    uint8_t raw[TOKEN_RAW], acc[12];
    ctp_boot_record *rec = NULL;
    ct_secret *val = NULL;
    ct_jwks *jwks = NULL;
    ct_jwt_claims cl;
    ct_jwt_expect x = CT_JWT_EXPECT_INIT;
    ct_error e2;
    who w;
    tok *t = NULL;
    size_t mlen, i;
    int64_t now;
    int known;
    ct_err rc;

    memset(&w, 0, sizeof w);
    token[0] = 0;
    b = json_loadb(c->body ? c->body : "", c->body_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(b)) {
        rc = answer_error(400, "error parsing JSON", c->resp, c->resp_len, c->err);
        goto out;
    }
    jrole = json_object_get(b, "role");
    jjwt = json_object_get(b, "jwt");
    role = json_string_value(jrole);
    jwt = json_string_value(jjwt);
    if (!role || !*role) {
        rc = answer_error(400, "missing role", c->resp, c->resp_len, c->err);
        goto out;
    }
    if (!jwt || !*jwt) {
        rc = answer_error(400, "missing jwt", c->resp, c->resp_len, c->err);
        goto out;
    }
    pthread_rwlock_rdlock(&v->plock);
    known = v->policy && strlen(role) < MAX_ROLE &&
            ctp_pod_policy_role_known(v->policy, c->fp, role);
    snprintf(aud, sizeof aud, "%s",
             v->policy && ctp_pod_policy_audience(v->policy) ? ctp_pod_policy_audience(v->policy)
                                                            : "");
    pthread_rwlock_unlock(&v->plock);
    if (!known) {
        if (strlen(role) < MAX_ROLE && json_string_length(jrole) == strlen(role))
            snprintf(msg, sizeof msg, "invalid role name \"%.128s\"", role);
        else
            snprintf(msg, sizeof msg, "invalid role name");
        denied_log(c, "no pod policy rule for this role", NULL);
        rc = answer_error(400, msg, c->resp, c->resp_len, c->err);
        goto out;
    }
    /* the issuer keys pinned by the cluster's first bootstrap */
    ctp_boot_key(key, sizeof key, c->fp, "initialized");
    rc = ct_store_get(v->store, key, &val, NULL, &e2);
    if (rc == CT_E_NOTFOUND) {
        denied_log(c, "the cluster is not initialized (no pinned issuer keys)", NULL);
        rc = answer_error(403, "permission denied", c->resp, c->resp_len, c->err);
        goto out;
    }
    if (rc != CT_OK) {
        rc = ctp_err(c->err, rc, 0, "vault.http login: reading the pinned keys: %s", e2.message);
        goto out;
    }
    rc = ctp_boot_record_decode(key, c->fp, ct_secret_data(val), ct_secret_len(val), &rec, &e2);
    if (rc != CT_OK) {
        rc = ctp_err(c->err, rc, 0, "vault.http login: %s", e2.message);
        goto out;
    }
    if (!rec->jwks || !rec->issuer[0]) {
        denied_log(c, "the cluster was initialized without pinning issuer keys", NULL);
        rc = answer_error(403, "permission denied", c->resp, c->resp_len, c->err);
        goto out;
    }
    if (ct_jwks_parse(v->ctx, rec->jwks, strlen(rec->jwks), &jwks, &e2) != CT_OK) {
        rc = ctp_err(c->err, CT_E_STORE, 0, "vault.http login: the pinned key set: %s",
                     e2.message);
        goto out;
    }
    x.issuer = rec->issuer;
    x.audience = aud[0] ? aud : rec->issuer;
    x.leeway_s = v->leeway_s;
    if (ct_jwt_verify(v->ctx, jwks, jwt, json_string_length(jjwt), &x, &cl, &e2) != CT_OK) {
        denied_log(c, "the service-account token", e2.message);
        rc = answer_error(403, "permission denied", c->resp, c->resp_len, c->err);
        goto out;
    }
    if (pod_identity(&cl, w.ns, w.sa) != 0) {
        denied_log(c, "the token names no service account (sub, kubernetes.io)", NULL);
        rc = answer_error(403, "permission denied", c->resp, c->resp_len, c->err);
        goto out;
    }
    snprintf(w.role, sizeof w.role, "%s", role);
    mlen = strlen(c->path) - strlen("auth/") - strlen("/login");
    if (mlen >= sizeof w.mount)
        mlen = sizeof w.mount - 1;
    memcpy(w.mount, c->path + 5, mlen);
    w.mount[mlen] = 0;
    pthread_rwlock_rdlock(&v->plock);
    known = ctp_pod_policy_names(v->policy, c->fp, w.ns, w.sa, w.role, NULL) > 0;
    pthread_rwlock_unlock(&v->plock);
    if (!known) {
        ctp_log(v->ctx, CT_LOG_WARNING, "podpolicy.login",
                "cluster %.8s: pod login refused: no rule for %.64s/%.64s with role %.64s",
                c->fp, w.ns, w.sa, w.role);
        rc = answer_error(403, "permission denied", c->resp, c->resp_len, c->err);
        goto out;
    }
    /* the bridge's token */
    if ((rc = ct_ctx_random(v->ctx, raw, sizeof raw)) != CT_OK ||
        (rc = ct_ctx_random(v->ctx, acc, sizeof acc)) != CT_OK) {
        rc = ctp_err(c->err, rc, 0, "vault.http login: no randomness");
        goto out;
    }
    memcpy(token, TOKEN_PREFIX, 4);
    ctp_b64_encode(raw, sizeof raw, token + 4, CTP_B64_URL);
    token[TOKEN_LEN] = 0;
    for (i = 0; i < sizeof acc; i++)
        snprintf(w.accessor + 2 * i, 3, "%02x", acc[i]);
    now = ct_ctx_wall_ms(v->ctx);
    w.issued_ms = now;
    w.creation_ttl_s = v->ttl_s;
    w.expire_ms = now + (int64_t)v->ttl_s * 1000;
    w.max_ms = now + (int64_t)v->max_ttl_s * 1000;
    if (!(t = ctp_calloc(1, sizeof *t))) {
        rc = ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = ct_sha256(token, TOKEN_LEN, t->hash)) != CT_OK) {
        rc = ctp_err(c->err, rc, 0, "vault.http login: hashing the token failed");
        goto out;
    }
    memcpy(t->accessor, w.accessor, sizeof t->accessor);
    snprintf(t->fp, sizeof t->fp, "%s", c->fp);
    memcpy(t->ns, w.ns, sizeof t->ns);
    memcpy(t->sa, w.sa, sizeof t->sa);
    memcpy(t->role, w.role, sizeof t->role);
    memcpy(t->mount, w.mount, sizeof t->mount);
    t->issued_ms = w.issued_ms;
    t->expire_ms = w.expire_ms;
    t->max_ms = w.max_ms;
    t->creation_ttl_s = w.creation_ttl_s;
    pthread_mutex_lock(&v->tlock);
    if (v->count >= v->max_tokens)
        sweep(v, now);
    if (v->count >= v->max_tokens) {
        pthread_mutex_unlock(&v->tlock);
        ctp_log(v->ctx, CT_LOG_WARNING, "podpolicy.tokens",
                "cluster %.8s: pod login refused: %u live tokens (the limit)", c->fp,
                (unsigned)v->max_tokens);
        rc = answer_error(503, "cloudtaser bridge: too many live tokens; retry later", c->resp,
                          c->resp_len, c->err);
        goto out;
    }
    {
        size_t bi = bucket_of(v, t->hash);
        t->next = v->buckets[bi];
        v->buckets[bi] = t;
        v->count++;
    }
    t = NULL;
    pthread_mutex_unlock(&v->tlock);
    ctp_log(v->ctx, CT_LOG_INFO, "podpolicy.login",
            "cluster %.8s: pod %.64s/%.64s logged in (role %.64s, accessor %.8s)", c->fp, w.ns,
            w.sa, w.role, w.accessor);
    au = auth_block(c, &w, token, now);
    env = au ? envelope(v, NULL, au, "kubernetes") : NULL;
    rc = reply_env(c, 200, env);
out:
    if (t)
        tok_free(t);
    ct_secure_wipe(token, sizeof token);
    ct_secure_wipe(raw, sizeof raw);
    if (b) {
        ctp_json_wipe(json_object_get(b, "jwt"));
        json_decref(b);
    }
    ct_secret_free(val);
    ctp_boot_record_free(rec);
    ct_jwks_free(jwks);
    return rc;
}

/* "1h", "30m", "3600s", "3600" or a JSON integer -> seconds; -1 bad. */
static int64_t duration_s(json_t *j)
{
    const char *s;
    char *end;
    long long n;
    if (json_is_integer(j))
        return json_integer_value(j) >= 0 ? (int64_t)json_integer_value(j) : -1;
    if (!(s = json_string_value(j)) || !*s)
        return -1;
    errno = 0;
    n = strtoll(s, &end, 10);
    if (errno || n < 0 || end == s || n > 100000000LL)
        return -1;
    if (!*end || strcmp(end, "s") == 0)
        return n;
    if (strcmp(end, "m") == 0)
        return n * 60;
    if (strcmp(end, "h") == 0)
        return n * 3600;
    return -1;
}

static ct_err do_renew(call *c)
{
    ct_embedded_vault *v = c->v;
    json_t *b = NULL, *au, *env;
    int64_t inc = v->ttl_s, now, exp;
    who w;
    tok *t;
    ct_err rc;

    if (authorize(c, &w, &rc))
        return rc;
    if (c->body && c->body_len) {
        b = json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(b)) {
            json_decref(b);
            return answer_error(400, "error parsing JSON", c->resp, c->resp_len, c->err);
        }
        if (json_object_get(b, "increment")) {
            inc = duration_s(json_object_get(b, "increment"));
            if (inc < 0) {
                json_decref(b);
                return answer_error(400, "invalid increment", c->resp, c->resp_len, c->err);
            }
            if (inc == 0)
                inc = v->ttl_s;
        }
        json_decref(b);
    }
    now = ct_ctx_wall_ms(v->ctx);
    pthread_mutex_lock(&v->tlock);
    t = find(v, c->token, now);
    if (t) {
        exp = now + inc * 1000;
        if (exp > t->max_ms)
            exp = t->max_ms;
        if (exp > t->expire_ms)
            t->expire_ms = exp;
        w.expire_ms = t->expire_ms;
    }
    pthread_mutex_unlock(&v->tlock);
    if (!t)
        return answer_error(403, E_INVALID_TOKEN, c->resp, c->resp_len, c->err);
    au = auth_block(c, &w, c->token, now);
    env = au ? envelope(v, NULL, au, "token") : NULL;
    return reply_env(c, 200, env);
}

static ct_err do_lookup(call *c)
{
    ct_embedded_vault *v = c->v;
    json_t *d, *env, *p, *m;
    char t1[40], t2[40], dn[2 * MAX_NAMEBUF + 16], path[MAX_MOUNT + 16];
    int64_t now;
    who w;
    ct_err rc;

    if (authorize(c, &w, &rc))
        return rc;
    now = ct_ctx_wall_ms(v->ctx);
    rfc3339(w.expire_ms, t1);
    rfc3339(w.issued_ms, t2);
    snprintf(dn, sizeof dn, "kubernetes-%s-%s", w.ns, w.sa);
    snprintf(path, sizeof path, "auth/%s/login", w.mount);
    p = policy_names(c, &w);
    m = auth_meta(&w);
    d = json_object();
    if (!d || !p || !m) {
        json_decref(d);
        json_decref(p);
        json_decref(m);
        return ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    json_object_set_new(d, "accessor", json_string(w.accessor));
    json_object_set_new(d, "creation_time", json_integer(w.issued_ms / 1000));
    json_object_set_new(d, "creation_ttl", json_integer(w.creation_ttl_s));
    json_object_set_new(d, "display_name", json_string(dn));
    json_object_set_new(d, "entity_id", json_string(""));
    json_object_set_new(d, "expire_time", json_string(t1));
    json_object_set_new(d, "explicit_max_ttl", json_integer(0));
    json_object_set_new(d, "id", json_string(c->token));
    json_object_set_new(d, "issue_time", json_string(t2));
    json_object_set_new(d, "meta", m);
    json_object_set_new(d, "num_uses", json_integer(0));
    json_object_set_new(d, "orphan", json_true());
    json_object_set_new(d, "path", json_string(path));
    json_object_set_new(d, "policies", p);
    json_object_set_new(d, "renewable", json_true());
    json_object_set_new(d, "ttl", json_integer(w.expire_ms > now ? (w.expire_ms - now) / 1000 : 0));
    json_object_set_new(d, "type", json_string("service"));
    env = envelope(v, d, NULL, "token");
    return reply_env(c, 200, env);
}

static ct_err do_health(call *c)
{
    json_t *o;
    if (strcmp(c->method, "HEAD") == 0)
        return answer(200, NULL, c->resp, c->resp_len, c->err);
    o = json_object();
    if (!o)
        return ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
    json_object_set_new(o, "initialized", json_true());
    json_object_set_new(o, "sealed", json_false());
    json_object_set_new(o, "standby", json_false());
    json_object_set_new(o, "performance_standby", json_false());
    json_object_set_new(o, "replication_performance_mode", json_string("disabled"));
    json_object_set_new(o, "replication_dr_mode", json_string("disabled"));
    json_object_set_new(o, "server_time_utc", json_integer(ct_ctx_wall_ms(c->v->ctx) / 1000));
    json_object_set_new(o, "version", json_string(ct_version()));
    json_object_set_new(o, "cluster_name", json_string("cloudtaser-embedded"));
    json_object_set_new(o, "cluster_id", json_string(""));
    return answer(200, o, c->resp, c->resp_len, c->err);
}

/*
 * Splits "<mount>/<sub>/<rest>" (sub: data or metadata). Returns 0, or -1
 * when the mount is not one the embedded store serves (several segments,
 * bad characters): then Vault's "no handler" 404 is the answer.
 */
static int split_kv(const char *path, char *mount, const char **sub, const char **rest)
{
    const char *s1 = strchr(path, '/'), *s2;
    size_t ml;
    if (!s1)
        return -1;
    ml = (size_t)(s1 - path);
    if (!mount_ok(path, ml))
        return -1;
    memcpy(mount, path, ml);
    mount[ml] = 0;
    s2 = strchr(s1 + 1, '/');
    if (strncmp(s1 + 1, "data", 4) == 0 && (s1[5] == '/' || !s1[5]))
        *sub = "data";
    else if (strncmp(s1 + 1, "metadata", 8) == 0 && (s1[9] == '/' || !s1[9]))
        *sub = "metadata";
    else
        return -1;
    *rest = s2 ? s2 + 1 : "";
    return 0;
}

static ct_err no_route(call *c)
{
    char msg[1200];
    snprintf(msg, sizeof msg, "no handler for route \"%.1024s\". route entry not found.", c->path);
    return answer_error(404, msg, c->resp, c->resp_len, c->err);
}

/* ?version=N: 0 for current; -1 malformed. */
static int64_t query_version(const char *q)
{
    const char *p;
    char *end;
    long long n;
    if (!q || !*q)
        return 0;
    for (p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, "version=", 8) == 0) {
            errno = 0;
            n = strtoll(p + 8, &end, 10);
            if (errno || n < 0 || end == p + 8 || (*end && *end != '&'))
                return -1;
            return n;
        }
    }
    return 0;
}

/* ---- migrated Kubernetes Secrets (migrate.h) under the policy's migrated_mount ---- */

static int is_migrated(call *c, const char *mount)
{
    const char *m;
    int r;
    pthread_rwlock_rdlock(&c->v->plock);
    m = ctp_pod_policy_migrated_mount(c->v->policy);
    r = m && strcmp(m, mount) == 0;
    pthread_rwlock_unlock(&c->v->plock);
    return r;
}

/* "<ns>" or "<ns>/<one segment>" of the pod's own namespace. */
static int own_namespace(const who *w, const char *rest, int dir)
{
    size_t n = strlen(w->ns), m = strlen(rest);
    while (dir && m && rest[m - 1] == '/')
        m--;
    if (m < n || memcmp(rest, w->ns, n) != 0)
        return 0;
    if (dir)
        return m == n;
    return rest[n] == '/' && rest[n + 1] && !strchr(rest + n + 1, '/');
}

/* The store key of a KV path: kv/<mount>/<rest>, or for the migrated mount
 * clusters/<fp>/secrets/<rest> (<namespace>/<name>, the default template). */
static int locate(call *c, int mig, const char *mount, const char *rest, char *key, size_t n)
{
    int w;
    if (!mig)
        return ct_embedded_kv_key(mount, rest, key, n, NULL) == CT_OK ? 0 : -1;
    w = snprintf(key, n, "clusters/%s/secrets/%s", c->fp, rest);
    return w > 0 && (size_t)w < n && ct_store_key_valid(key) ? 0 : -1;
}

/* A migrate record ({"v":1,...,"data":{k:base64},"state"}) as KV data: values
 * decoded when they are UTF-8 text, else left in base64. "restored": gone. */
static ct_err mig_read(ct_store *store, const char *key, json_t **data, uint64_t *version,
                       ct_error *err)
{
    ct_secret *val = NULL;
    json_t *o, *d, *out;
    const char *st, *k;
    json_t *x;
    ct_err rc;
    *data = NULL;
    if ((rc = ct_store_get(store, key, &val, version, err)) != CT_OK)
        return rc;
    o = json_loadb((const char *)ct_secret_data(val), ct_secret_len(val),
                   JSON_REJECT_DUPLICATES, NULL);
    ct_secret_free(val);
    d = json_object_get(o, "data");
    st = json_string_value(json_object_get(o, "state"));
    if (!json_is_object(d) || !st) {
        ctp_json_free_wiped(o);
        return ctp_err(err, CT_E_STORE, 0, "record '%s' is not a migrated Secret", key);
    }
    if (strcmp(st, "restored") == 0) {
        ctp_json_free_wiped(o);
        return ctp_err(err, CT_E_NOTFOUND, 0, "the Secret of '%s' was restored", key);
    }
    if (!(out = json_object())) {
        ctp_json_free_wiped(o);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    json_object_foreach(d, k, x) {
        const char *b = json_string_value(x);
        size_t bl = json_string_length(x), cap = ctp_b64_decoded_max(bl), got = 0;
        uint8_t *buf = b ? malloc(cap + 1) : NULL;
        json_t *v = NULL;
        if (buf && ctp_b64_decode(b, bl, buf, cap + 1, &got, CTP_B64_STD) == 0 &&
            !memchr(buf, 0, got))
            v = json_stringn((const char *)buf, got);
        if (!v && b)
            v = json_stringn(b, bl);
        if (v)
            json_object_set_new(out, k, v);
        if (buf) {
            ct_secure_wipe(buf, cap + 1);
            free(buf);
        }
    }
    ctp_json_free_wiped(o);
    *data = out;
    return CT_OK;
}

static ct_err read_any(call *c, int mig, const char *key, json_t **d, int64_t *created,
                       uint64_t *ver, ct_error *err)
{
    if (mig) {
        *created = 0;
        return mig_read(c->v->store, key, d, ver, err);
    }
    return kv_read(c->v->store, key, d, created, ver, err);
}

static ct_err do_kv_read(call *c, const char *mount, const char *rest)
{
    char key[CT_STORE_KEY_MAX + 1], ct[40];
    json_t *d = NULL, *md, *dd, *env;
    int64_t want = query_version(c->query), created = 0;
    uint64_t ver = 0;
    ct_error e2;
    who w;
    ct_err rc;
    int mig = is_migrated(c, mount);

    if (authorize(c, &w, &rc))
        return rc;
    if (!allowed(c, &w, "read", c->path) && !(mig && own_namespace(&w, rest, 0)))
        return answer_error(403, E_DENIED, c->resp, c->resp_len, c->err);
    if (want < 0)
        return answer_error(400, "invalid version", c->resp, c->resp_len, c->err);
    if (locate(c, mig, mount, rest, key, sizeof key) != 0)
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    rc = read_any(c, mig, key, &d, &created, &ver, &e2);
    if (rc == CT_E_NOTFOUND || (rc == CT_OK && want && (uint64_t)want != ver)) {
        ctp_json_free_wiped(d);
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    }
    if (rc != CT_OK)
        return ctp_err(c->err, rc, 0, "vault.http: %s", e2.message);
    rfc3339(created, ct);
    md = json_pack("{s:s, s:n, s:s, s:b, s:I}", "created_time", ct, "custom_metadata",
                   "deletion_time", "", "destroyed", 0, "version", (json_int_t)ver);
    dd = json_object();
    if (!md || !dd) {
        json_decref(md);
        json_decref(dd);
        ctp_json_free_wiped(d);
        return ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    json_object_set_new(dd, "data", d);
    json_object_set_new(dd, "metadata", md);
    env = envelope(c->v, dd, NULL, "kv");
    ctp_log(c->v->ctx, CT_LOG_INFO, "podpolicy.read", "cluster %.8s: %.64s/%.64s read %.256s",
            c->fp, w.ns, w.sa, c->path);
    return reply_env(c, 200, env);
}

static ct_err do_kv_metadata(call *c, const char *mount, const char *rest)
{
    char key[CT_STORE_KEY_MAX + 1], ct[40], vn[24];
    json_t *d = NULL, *md, *vs, *env;
    int64_t created = 0;
    uint64_t ver = 0;
    ct_error e2;
    who w;
    ct_err rc;
    int mig = is_migrated(c, mount);

    if (authorize(c, &w, &rc))
        return rc;
    if (!allowed(c, &w, "read", c->path) && !(mig && own_namespace(&w, rest, 0)))
        return answer_error(403, E_DENIED, c->resp, c->resp_len, c->err);
    if (locate(c, mig, mount, rest, key, sizeof key) != 0)
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    rc = read_any(c, mig, key, &d, &created, &ver, &e2);
    ctp_json_free_wiped(d);
    if (rc == CT_E_NOTFOUND)
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    if (rc != CT_OK)
        return ctp_err(c->err, rc, 0, "vault.http: %s", e2.message);
    rfc3339(created, ct);
    snprintf(vn, sizeof vn, "%llu", (unsigned long long)ver);
    vs = json_pack("{s:{s:s, s:s, s:b}}", vn, "created_time", ct, "deletion_time", "",
                   "destroyed", 0);
    md = json_pack("{s:b, s:s, s:I, s:n, s:s, s:i, s:I, s:s, s:o*}", "cas_required", 0,
                   "created_time", ct, "current_version", (json_int_t)ver, "custom_metadata",
                   "delete_version_after", "0s", "max_versions", 0, "oldest_version",
                   (json_int_t)ver, "updated_time", ct, "versions", vs);
    if (!md)
        return ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
    env = envelope(c->v, md, NULL, "kv");
    return reply_env(c, 200, env);
}

static ct_err do_kv_list(call *c, const char *mount, const char *rest)
{
    char key[CT_STORE_KEY_MAX + 2], dir[CT_STORE_KEY_MAX + 1], last[CT_STORE_KEY_MAX + 2];
    ct_strlist *l = NULL;
    json_t *keys = NULL, *d, *env;
    size_t n = strlen(rest), i, pl;
    ct_error e2;
    who w;
    ct_err rc;
    int mig = is_migrated(c, mount);

    if (authorize(c, &w, &rc))
        return rc;
    if (!allowed(c, &w, "list", c->path) && !(mig && own_namespace(&w, rest, 1)))
        return answer_error(403, E_DENIED, c->resp, c->resp_len, c->err);
    while (n && rest[n - 1] == '/')
        n--;
    if (n >= sizeof dir)
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    memcpy(dir, rest, n);
    dir[n] = 0;
    if (mig) {
        if (n ? locate(c, 1, mount, dir, key, sizeof key - 1) != 0
              : locate(c, 1, mount, "x", key, sizeof key - 1) != 0)
            return answer_error(404, NULL, c->resp, c->resp_len, c->err);
        if (!n)
            key[strlen(key) - 1] = 0; /* "clusters/<fp>/secrets/" */
        else
            strcat(key, "/");
    } else if (n) {
        if (ct_embedded_kv_key(mount, dir, key, sizeof key - 1, NULL) != CT_OK)
            return answer_error(404, NULL, c->resp, c->resp_len, c->err);
        strcat(key, "/");
    } else if (!mount_ok(mount, strlen(mount))) {
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    } else {
        snprintf(key, sizeof key, "kv/%s/", mount);
    }
    if ((rc = ct_store_list(c->v->store, key, &l, &e2)) != CT_OK)
        return ctp_err(c->err, rc, 0, "vault.http: %s", e2.message);
    ct_strlist_sort(l);
    pl = strlen(key);
    if (!(keys = json_array())) {
        ct_strlist_free(l);
        return ctp_err(c->err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    last[0] = 0;
    for (i = 0; i < ct_strlist_count(l); i++) {
        const char *k = ct_strlist_get(l, i) + pl, *sl = strchr(k, '/');
        char name[CT_STORE_KEY_MAX + 2];
        if (sl)
            snprintf(name, sizeof name, "%.*s/", (int)(sl - k), k);
        else
            snprintf(name, sizeof name, "%s", k);
        if (!name[0] || strcmp(name, last) == 0)
            continue;
        json_array_append_new(keys, json_string(name));
        snprintf(last, sizeof last, "%s", name);
    }
    ct_strlist_free(l);
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        return answer_error(404, NULL, c->resp, c->resp_len, c->err);
    }
    /* the store's keys are sorted bytewise, so each folder's keys are
     * adjacent and the names come out sorted and deduplicated */
    d = json_pack("{s:o}", "keys", keys);
    env = d ? envelope(c->v, d, NULL, "kv") : NULL;
    return reply_env(c, 200, env);
}

ct_err ct_embedded_vault_http(void *arg, const char *fingerprint, ct_session *s,
                              uint32_t stream, const uint8_t *req, size_t req_len,
                              uint8_t **resp, size_t *resp_len, ct_error *err)
{
    ct_embedded_vault *v = arg;
    json_t *o = NULL, *jtok, *jbody, *jq;
    const char *kind = NULL;
    char mount[MAX_MOUNT];
    call c;
    ct_err rc;
    (void)s;
    (void)stream;

    if (!v || !req || !resp || !resp_len || !fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "vault.http: NULL argument");
    memset(&c, 0, sizeof c);
    c.v = v;
    c.fp = fingerprint;
    c.resp = resp;
    c.resp_len = resp_len;
    c.err = err;
    o = json_loadb((const char *)req, req_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: the request is not a JSON object");
        goto out;
    }
    c.method = json_string_value(json_object_get(o, "method"));
    c.path = json_string_value(json_object_get(o, "path"));
    jq = json_object_get(o, "query");
    jtok = json_object_get(o, "token");
    jbody = json_object_get(o, "body");
    if (!c.method || !c.path || strlen(c.method) > 8 ||
        strlen(c.path) != json_string_length(json_object_get(o, "path")) ||
        (jq && !json_is_string(jq)) || (jtok && !json_is_string(jtok) && !json_is_null(jtok)) ||
        (jbody && !json_is_string(jbody) && !json_is_null(jbody))) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "vault.http: \"method\" and \"path\" are required; \"query\", \"token\" and "
                     "\"body\" are strings");
        goto out;
    }
    c.query = json_string_value(jq);
    c.token = json_string_value(jtok);
    if (c.token && (json_string_length(jtok) > MAX_TOKEN || strlen(c.token) != json_string_length(jtok))) {
        rc = ctp_err(err, CT_E_INVALID, 0, "vault.http: the token is malformed or too long");
        goto out;
    }
    if (json_is_string(jbody)) {
        c.body = json_string_value(jbody);
        c.body_len = json_string_length(jbody);
    }
    if (ct_vault_api_allowed(c.method, c.path, &kind) != 1 || !kind) {
        rc = ctp_err(err, CT_E_AUTH, 0, "vault.http: %.8s %.64s is not in the bridge's allowlist",
                     c.method, c.path);
        goto out;
    }
    if (strcmp(kind, "health") == 0)
        rc = do_health(&c);
    else if (strcmp(kind, "login") == 0)
        rc = do_login(&c);
    else if (strcmp(kind, "lookup-self") == 0)
        rc = do_lookup(&c);
    else if (strcmp(kind, "renew-self") == 0)
        rc = do_renew(&c);
    else {
        const char *sub = NULL, *rest = NULL;
        if (split_kv(c.path, mount, &sub, &rest) != 0)
            rc = no_route(&c);
        else if (strcmp(kind, "kv-read") == 0 && strcmp(sub, "data") == 0)
            rc = do_kv_read(&c, mount, rest);
        else if (strcmp(kind, "kv-list") == 0 && strcmp(sub, "metadata") == 0)
            rc = do_kv_list(&c, mount, rest);
        else if (strcmp(kind, "kv-metadata") == 0 && strcmp(sub, "metadata") == 0)
            rc = do_kv_metadata(&c, mount, rest);
        else
            rc = no_route(&c);
    }
out:
    if (o) {
        ctp_json_wipe(json_object_get(o, "token"));
        ctp_json_wipe(json_object_get(o, "body"));
        json_decref(o);
    }
    return rc;
}
