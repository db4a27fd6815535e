/*
 * fake_vault.c - see fake_vault.h. Behaviour follows ../shared/fixtures
 * (API.md part A and the vault-*.json / openbao-*.json bodies): envelopes
 * in Go struct order, data maps with sorted keys, compact JSON plus a
 * newline as Go's encoder writes it, Cache-Control: no-store.
 */
#include "fake_vault.h"
#include <curl/curl.h>

#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define BODY_MAX ((size_t)8 << 20)
#define DEF_MAX_VERSIONS 10

typedef struct fv_version {
    json_t *data; /* NULL once destroyed */
    char created[40];
    char deleted[40]; /* "" unset */
    int destroyed;
} fv_version;

typedef struct fv_key {
    char *mount, *path;
    fv_version *v; /* versions oldest..current */
    size_t nv, cap;
    uint64_t oldest, current;
    int cas_required, max_versions;
    json_t *custom; /* NULL: null */
    char created[40], updated[40];
    struct fv_key *next;
} fv_key;

typedef struct fv_token {
    char *token;
    int allow;
    char **prefixes; /* allow == 2: paths (after /v1/) starting with one of these */
    size_t nprefixes;
    char accessor[25];
    char policy[64];
    int64_t created;
    struct fv_token *next;
} fv_token;

typedef struct fv_table_login {
    char *mount, *role, *jwt, *token;
    struct fv_table_login *next;
} fv_table_login;

struct fake_vault {
    struct MHD_Daemon *d;
    fv_flavour flavour;
    uint16_t port;
    char addr[64];
    char *mounts[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    /* state */
    fv_key *keys;
    fv_token *tokens;
    fv_table_login *table_logins;
    int sealed, standby, cas_required, max_versions, verbose;
    /* the first mount's engine: type ("kv") and KV version (2); the mount
     * check endpoint: 0 served, else this status (an older server) */
    char mount_type[32];
    int mount_kv_version, preflight_status;
    char mount_ns_prefix[64];
    /* fault */
    fv_fault fault;
    int fault_count, fault_param;
    char fault_method[16], fault_path[256];
    char *fault_body;
    /* observations */
    unsigned n_all, n_get, n_post, n_put, n_delete, n_list, n_patch, n_head, n_preflight;
    char last_ns[256];
    int last_had_token;
    int require_client_cert;
    struct fv_auth *auths; /* fake_vault_auth.c */
    unsigned logins;
};

static void token_free(fv_token *t);

typedef struct req {
    char *body;
    size_t len;
    int too_big;
} req;

/* ---- small helpers ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(buf = malloc((size_t)n + 1))) {
        fclose(f);
        return NULL;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void now_rfc3339(char out[40])
{
    struct timespec ts;
    struct tm tm;
    size_t n;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%09uZ", (unsigned)(ts.tv_nsec % 1000000000L));
}

static void uuid(char out[37])
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        memset(r, 0x42, sizeof r);
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
             r[13], r[14], r[15]);
}

/* ---- responses ---- */

typedef struct answer {
    unsigned status;
    char *body; /* malloc'ed, or NULL for none */
    size_t len;
    const char *ctype; /* NULL: application/json */
    char location[512];
    int retry_after; /* -1: none */
    char retry_after_text[64]; /* a Retry-After given as text (an HTTP date), or "" */
    long long stream;  /* FV_FAULT_STREAM: body bytes to stream (-1: endless) */
    int stream_http10; /* ... close-delimited (HTTP/1.0) instead of chunked */
    struct fv_login *login; /* a Kubernetes login to finish unlocked */
    fake_vault *fv;
} answer;

static void answer_json(answer *a, unsigned status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t n = s ? strlen(s) : 0;
    json_decref(j);
    a->status = status;
    a->body = malloc(n + 2);
    if (a->body) {
        memcpy(a->body, s ? s : "", n);
        a->body[n] = '\n';
        a->body[n + 1] = 0;
        a->len = n + 1;
    }
    free(s);
}

static void answer_errors(answer *a, unsigned status, int n, ...)
{
    json_t *arr = json_array(), *o = json_object();
    va_list ap;
    int i;
    va_start(ap, n);
    for (i = 0; i < n; i++)
        json_array_append_new(arr, json_string(va_arg(ap, const char *)));
    va_end(ap);
    json_object_set_new(o, "errors", arr);
    answer_json(a, status, o);
}

static void answer_empty(answer *a, unsigned status)
{
    a->status = status;
    a->body = NULL;
    a->len = 0;
}

static const char MSG_DENIED[] = "1 error occurred:\n\t* permission denied\n\n";
static const char MSG_INVALID_TOKEN[] =
    "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n";
static const char MSG_UNSUPPORTED[] = "1 error occurred:\n\t* unsupported operation\n\n";

/* The success envelope (Go struct order); mount_type only from Vault. */
static json_t *envelope(const fake_vault *fv, json_t *data, json_t *warnings,
                        const char *mount_type)
{
    json_t *o = json_object();
    char id[37];
    uuid(id);
    json_object_set_new(o, "request_id", json_string(id));
    json_object_set_new(o, "lease_id", json_string(""));
    json_object_set_new(o, "renewable", json_false());
    json_object_set_new(o, "lease_duration", json_integer(0));
    json_object_set_new(o, "data", data ? data : json_null());
    json_object_set_new(o, "wrap_info", json_null());
    json_object_set_new(o, "warnings", warnings ? warnings : json_null());
    json_object_set_new(o, "auth", json_null());
    if (fv->flavour == FV_VAULT)
        json_object_set_new(o, "mount_type", json_string(mount_type));
    return o;
}

#include "fake_vault_auth.c"

static void answer_invalid_path(const fake_vault *fv, answer *a)
{
    json_t *w = json_array();
    json_array_append_new(
        w, json_string(fv->flavour == FV_VAULT
                           ? "Invalid path for a versioned K/V secrets engine. See the API docs "
                             "for the appropriate API endpoints to use. If using the Vault CLI, "
                             "use 'vault kv get' for this operation."
                           : "Invalid path for a versioned K/V secrets engine. See the API docs "
                             "for the appropriate API endpoints to use. If using the OpenBao "
                             "CLI, use 'bao kv get' for this operation."));
    answer_json(a, 404, envelope(fv, NULL, w, ""));
}

/* Copies an object with its members in sorted order (Go map encoding). */
static json_t *sorted_copy(json_t *j)
{
    if (json_is_object(j)) {
        const char **names;
        size_t n = json_object_size(j), i = 0;
        const char *k;
        json_t *v, *o = json_object();
        names = calloc(n ? n : 1, sizeof *names);
        json_object_foreach(j, k, v) names[i++] = k;
        for (i = 0; i + 1 < n; i++) { /* small maps: insertion sort */
            size_t m;
            for (m = i + 1; m < n; m++)
                if (strcmp(names[m], names[i]) < 0) {
                    const char *t = names[i];
                    names[i] = names[m];
                    names[m] = t;
                }
        }
        for (i = 0; i < n; i++)
            json_object_set_new(o, names[i], sorted_copy(json_object_get(j, names[i])));
        free(names);
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array(), *v;
        size_t i;
        json_array_foreach(j, i, v) json_array_append_new(a, sorted_copy(v));
        return a;
    }
    return json_deep_copy(j);
}

/* ---- the key space ---- */

static fv_key *find_key(fake_vault *fv, const char *mount, const char *path)
{
    fv_key *k;
    for (k = fv->keys; k; k = k->next)
        if (strcmp(k->mount, mount) == 0 && strcmp(k->path, path) == 0)
            return k;
    return NULL;
}

static void free_key(fv_key *k)
{
    size_t i;
    for (i = 0; i < k->nv; i++)
        json_decref(k->v[i].data);
    free(k->v);
    json_decref(k->custom);
    free(k->mount);
    free(k->path);
    free(k);
}

static void remove_key(fake_vault *fv, fv_key *k)
{
    fv_key **pp;
    for (pp = &fv->keys; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            free_key(k);
            return;
        }
}

static fv_version *version_of(fv_key *k, uint64_t n)
{
    if (!k || n < k->oldest || n > k->current || k->nv == 0)
        return NULL;
    return &k->v[n - k->oldest];
}

static json_t *version_meta(const fv_key *k, const fv_version *v, uint64_t n)
{
    json_t *o = json_object();
    json_object_set_new(o, "created_time", json_string(v->created));
    json_object_set_new(o, "custom_metadata", k->custom ? sorted_copy(k->custom) : json_null());
    json_object_set_new(o, "deletion_time", json_string(v->deleted));
    json_object_set_new(o, "destroyed", json_boolean(v->destroyed));
    json_object_set_new(o, "version", json_integer((json_int_t)n));
    return o;
}

static int max_versions(const fake_vault *fv, const fv_key *k)
{
    if (k && k->max_versions > 0)
        return k->max_versions;
    return fv->max_versions > 0 ? fv->max_versions : DEF_MAX_VERSIONS;
}

/* Appends a version (data stolen); creates the key if needed. */
static uint64_t add_version(fake_vault *fv, const char *mount, const char *path, fv_key *k,
                            json_t *data)
{
    fv_version *nv;
    if (!k) {
        k = calloc(1, sizeof *k);
        k->mount = strdup(mount);
        k->path = strdup(path);
        k->oldest = 1;
        now_rfc3339(k->created);
        k->next = fv->keys;
        fv->keys = k;
    }
    if (k->nv == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 4;
        k->v = realloc(k->v, k->cap * sizeof *k->v);
    }
    if (k->nv == 0)
        k->oldest = k->current + 1;
    nv = &k->v[k->nv++];
    memset(nv, 0, sizeof *nv);
    nv->data = data;
    now_rfc3339(nv->created);
    memcpy(k->updated, nv->created, sizeof k->updated);
    k->current++;
    while ((int)k->nv > max_versions(fv, k)) {
        json_decref(k->v[0].data);
        memmove(&k->v[0], &k->v[1], (k->nv - 1) * sizeof *k->v);
        k->nv--;
        k->oldest++;
    }
    return k->current;
}

/* ---- request parsing helpers ---- */

static const char *hdr(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static const char *arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* Go's strconv.ParseBool: 1/0, -1 if not a boolean. */
static int go_bool(const char *s)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    size_t i;
    for (i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0)
            return 1;
        if (strcmp(s, f[i]) == 0)
            return 0;
    }
    return -1;
}

/* cas: 1 and *out when present, 0 absent, -1 unparsable. */
static int get_cas(json_t *body, int64_t *out)
{
    json_t *opt = json_object_get(body, "options"), *c;
    if (!json_is_object(opt))
        return 0;
    c = json_object_get(opt, "cas");
    if (!c || json_is_null(c))
        return 0;
    if (json_is_integer(c)) {
        *out = (int64_t)json_integer_value(c);
        return 1;
    }
    if (json_is_string(c)) {
        char *end;
        const char *s = json_string_value(c);
        long long v;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (!*s || *end || errno)
            return -1;
        *out = v;
        return 1;
    }
    return -1;
}

static int version_list(json_t *body, uint64_t **out, size_t *n)
{
    json_t *vs = json_object_get(body, "versions"), *v;
    size_t i;
    if (!json_is_array(vs) || json_array_size(vs) == 0)
        return -1;
    *n = json_array_size(vs);
    *out = calloc(*n, sizeof **out);
    json_array_foreach(vs, i, v) {
        if (json_is_integer(v))
            (*out)[i] = (uint64_t)json_integer_value(v);
        else if (json_is_string(v))
            (*out)[i] = strtoull(json_string_value(v), NULL, 10);
    }
    return 0;
}

/* RFC 7386 merge patch of `patch` into `target` (modified in place). */
static void merge_patch(json_t *target, json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, k);
            if (!json_is_object(t)) {
                t = json_object();
                json_object_set_new(target, k, t);
            }
            merge_patch(t, v);
        } else {
            json_object_set(target, k, v);
        }
    }
}

/* ---- KV version 2 ---- */

static void kv_write(fake_vault *fv, const char *mount, const char *path, json_t *body,
                     int patch, answer *a)
{
    fv_key *k = find_key(fv, mount, path);
    json_t *data = json_object_get(body, "data"), *nd;
    int64_t cas = 0;
    int hc = get_cas(body, &cas);
    uint64_t cur = k ? k->current : 0, n;
    fv_version *v;

    if (patch) {
        v = version_of(k, cur);
        if (!k || !v) {
            answer_empty(a, 404);
            return;
        }
        if (v->destroyed || v->deleted[0]) {
            answer_json(a, 404, envelope(fv, version_meta(k, v, cur), NULL, ""));
            return;
        }
    }
    if (!json_is_object(data)) {
        answer_errors(a, 400, 1, "no data provided");
        return;
    }
    if (hc < 0) {
        answer_errors(a, 400, 1, "error parsing check-and-set parameter");
        return;
    }
    if (hc > 0 && (cas < 0 || (uint64_t)cas != cur)) {
        answer_errors(a, 400, 1, "check-and-set parameter did not match the current version");
        return;
    }
    if (hc == 0 && (fv->cas_required || (k && k->cas_required))) {
        answer_errors(a, 400, 1, "check-and-set parameter required for this call");
        return;
    }
    if (patch) {
        nd = json_deep_copy(version_of(k, cur)->data);
        merge_patch(nd, data);
    } else {
        nd = json_deep_copy(data);
    }
    n = add_version(fv, mount, path, k, nd);
    k = find_key(fv, mount, path);
    answer_json(a, 200, envelope(fv, version_meta(k, version_of(k, n), n), NULL, "kv"));
}

static void kv_read(fake_vault *fv, struct MHD_Connection *c, const char *mount,
                    const char *path, answer *a)
{
    fv_key *k = find_key(fv, mount, path);
    const char *vs = arg(c, "version");
    uint64_t n = k ? k->current : 0;
    fv_version *v;
    json_t *d;
    if (vs && *vs) {
        char *end;
        unsigned long long x = strtoull(vs, &end, 10);
        if (*end) {
            answer_errors(a, 400, 1, "invalid version");
            return;
        }
        if (x)
            n = x;
    }
    v = version_of(k, n);
    if (!v) {
        answer_errors(a, 404, 0);
        return;
    }
    d = json_object();
    if (v->destroyed || v->deleted[0]) {
        json_object_set_new(d, "data", json_null());
        json_object_set_new(d, "metadata", version_meta(k, v, n));
        answer_json(a, 404, envelope(fv, d, NULL, ""));
        return;
    }
    json_object_set_new(d, "data", sorted_copy(v->data));
    json_object_set_new(d, "metadata", version_meta(k, v, n));
    answer_json(a, 200, envelope(fv, d, NULL, "kv"));
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void kv_list(fake_vault *fv, const char *mount, const char *dir_in, answer *a)
{
    char dir[1024];
    char **names = NULL;
    size_t n = 0, cap = 0, i, dl;
    fv_key *k;
    json_t *keys, *d;

    snprintf(dir, sizeof dir, "%s", dir_in);
    dl = strlen(dir);
    if (dl && dir[dl - 1] != '/' && dl + 1 < sizeof dir) { /* Vault appends the '/' */
        dir[dl++] = '/';
        dir[dl] = 0;
    }
    for (k = fv->keys; k; k = k->next) {
        const char *rest, *slash;
        char *name;
        if (strcmp(k->mount, mount) != 0 || strncmp(k->path, dir, dl) != 0)
            continue;
        rest = k->path + dl;
        slash = strchr(rest, '/');
        name = slash ? strndup(rest, (size_t)(slash - rest) + 1) : strdup(rest);
        for (i = 0; i < n; i++)
            if (strcmp(names[i], name) == 0)
                break;
        if (i < n) {
            free(name);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof *names);
        }
        names[n++] = name;
    }
    if (n == 0) {
        answer_errors(a, 404, 0);
        return;
    }
    qsort(names, n, sizeof *names, cmp_str);
    keys = json_array();
    for (i = 0; i < n; i++) {
        json_array_append_new(keys, json_string(names[i]));
        free(names[i]);
    }
    free(names);
    d = json_object();
    json_object_set_new(d, "keys", keys);
    answer_json(a, 200, envelope(fv, d, NULL, "kv"));
}

static void kv_metadata_read(fake_vault *fv, const char *mount, const char *path, answer *a)
{
    fv_key *k = find_key(fv, mount, path);
    json_t *d, *vs;
    size_t i;
    if (!k) {
        answer_errors(a, 404, 0);
        return;
    }
    vs = json_object();
    for (i = 0; i < k->nv; i++) {
        char num[24];
        json_t *o = json_object();
        snprintf(num, sizeof num, "%llu", (unsigned long long)(k->oldest + i));
        json_object_set_new(o, "created_time", json_string(k->v[i].created));
        json_object_set_new(o, "deletion_time", json_string(k->v[i].deleted));
        json_object_set_new(o, "destroyed", json_boolean(k->v[i].destroyed));
        json_object_set_new(vs, num, o);
    }
    d = json_object();
    json_object_set_new(d, "cas_required", json_boolean(k->cas_required));
    json_object_set_new(d, "created_time", json_string(k->created));
    json_object_set_new(d, "current_version", json_integer((json_int_t)k->current));
    json_object_set_new(d, "custom_metadata", k->custom ? sorted_copy(k->custom) : json_null());
    json_object_set_new(d, "delete_version_after", json_string("0s"));
    json_object_set_new(d, "max_versions", json_integer(k->max_versions));
    json_object_set_new(d, "oldest_version", json_integer((json_int_t)k->oldest));
    json_object_set_new(d, "updated_time", json_string(k->updated));
    json_object_set_new(d, "versions", sorted_copy(vs));
    json_decref(vs);
    answer_json(a, 200, envelope(fv, d, NULL, "kv"));
}

static void kv_versions_op(fake_vault *fv, const char *mount, const char *path, json_t *body,
                           const char *op, answer *a)
{
    fv_key *k = find_key(fv, mount, path);
    uint64_t *vs = NULL;
    size_t n = 0, i;
    if (version_list(body, &vs, &n) != 0) {
        answer_errors(a, 400, 1, "no version number provided");
        return;
    }
    for (i = 0; k && i < n; i++) {
        fv_version *v = version_of(k, vs[i]);
        if (!v)
            continue;
        if (strcmp(op, "delete") == 0) {
            if (!v->deleted[0] && !v->destroyed)
                now_rfc3339(v->deleted);
        } else if (strcmp(op, "undelete") == 0) {
            if (!v->destroyed)
                v->deleted[0] = 0;
        } else {
            v->destroyed = 1;
            json_decref(v->data);
            v->data = NULL;
        }
    }
    free(vs);
    answer_empty(a, 204);
}

static void kv_handle(fake_vault *fv, struct MHD_Connection *c, const char *method, int list,
                      const char *mount, const char *rest, const char *body, size_t blen,
                      answer *a)
{
    json_t *j = NULL;
    int writes = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                 strcmp(method, "PATCH") == 0;

    if (writes && blen) {
        j = json_loadb(body, blen, 0, NULL);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            answer_errors(a, 400, 1, "error parsing JSON");
            return;
        }
    }
    if (strcmp(rest, "config") == 0) {
        if (strcmp(method, "GET") == 0) {
            json_t *d = json_object();
            json_object_set_new(d, "cas_required", json_boolean(fv->cas_required));
            json_object_set_new(d, "delete_version_after", json_string("0s"));
            json_object_set_new(d, "max_versions", json_integer(fv->max_versions));
            answer_json(a, 200, envelope(fv, d, NULL, "kv"));
        } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            json_t *v = json_object_get(j, "cas_required");
            if (json_is_boolean(v))
                fv->cas_required = json_is_true(v);
            v = json_object_get(j, "max_versions");
            if (json_is_integer(v))
                fv->max_versions = (int)json_integer_value(v);
            answer_empty(a, 204);
        } else {
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        }
    } else if (strncmp(rest, "data/", 5) == 0 && rest[5] &&
               rest[strlen(rest) - 1] != '/') {
        const char *p = rest + 5;
        if (list)
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        else if (strcmp(method, "GET") == 0)
            kv_read(fv, c, mount, p, a);
        else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
            kv_write(fv, mount, p, j, 0, a);
        else if (strcmp(method, "PATCH") == 0) {
            const char *ct = hdr(c, "Content-Type");
            if (!ct || strncmp(ct, "application/merge-patch+json", 28) != 0) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "PATCH requires Content-Type of application/merge-patch+json, "
                         "provided %s",
                         ct ? ct : "");
                answer_errors(a, 415, 1, msg);
            } else {
                kv_write(fv, mount, p, j, 1, a);
            }
        } else if (strcmp(method, "DELETE") == 0) {
            fv_key *k = find_key(fv, mount, p);
            fv_version *v = k ? version_of(k, k->current) : NULL;
            if (v && !v->deleted[0] && !v->destroyed)
                now_rfc3339(v->deleted);
            answer_empty(a, 204);
        } else {
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        }
    } else if (strcmp(rest, "metadata") == 0 || strncmp(rest, "metadata/", 9) == 0) {
        const char *p = rest[8] ? rest + 9 : "";
        if (list) {
            kv_list(fv, mount, p, a);
        } else if (!*p || p[strlen(p) - 1] == '/') {
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        } else if (strcmp(method, "GET") == 0) {
            kv_metadata_read(fv, mount, p, a);
        } else if (strcmp(method, "DELETE") == 0) {
            fv_key *k = find_key(fv, mount, p);
            if (k)
                remove_key(fv, k);
            answer_empty(a, 204);
        } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            fv_key *k = find_key(fv, mount, p);
            json_t *v;
            if (!k) {
                k = calloc(1, sizeof *k);
                k->mount = strdup(mount);
                k->path = strdup(p);
                k->oldest = 1;
                now_rfc3339(k->created);
                memcpy(k->updated, k->created, sizeof k->updated);
                k->next = fv->keys;
                fv->keys = k;
            }
            v = json_object_get(j, "cas_required");
            if (json_is_boolean(v))
                k->cas_required = json_is_true(v);
            v = json_object_get(j, "max_versions");
            if (json_is_integer(v))
                k->max_versions = (int)json_integer_value(v);
            v = json_object_get(j, "custom_metadata");
            if (json_is_object(v)) {
                json_decref(k->custom);
                k->custom = json_deep_copy(v);
            }
            answer_empty(a, 204);
        } else {
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        }
    } else if ((strncmp(rest, "delete/", 7) == 0 || strncmp(rest, "undelete/", 9) == 0 ||
                strncmp(rest, "destroy/", 8) == 0) &&
               (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)) {
        const char *slash = strchr(rest, '/');
        char op[16];
        snprintf(op, sizeof op, "%.*s", (int)(slash - rest), rest);
        kv_versions_op(fv, mount, slash + 1, j, op, a);
    } else {
        answer_invalid_path(fv, a);
    }
    json_decref(j);
}

/* ---- KV version 1 (the first mount, when set so) ---- */

/* KV v1 keeps one value per path, no versions: data/K is a secret named
 * "data/K". Reads answer {"data":{...}} with the 768h lease KV v1 reports. */
static void kv1_handle(fake_vault *fv, const char *method, int list, const char *mount,
                       const char *rest, const char *body, size_t blen, answer *a)
{
    fv_key *k;
    json_t *j;
    if (list) {
        kv_list(fv, mount, rest, a);
        return;
    }
    if (!*rest || rest[strlen(rest) - 1] == '/') {
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        return;
    }
    k = find_key(fv, mount, rest);
    if (strcmp(method, "GET") == 0) {
        fv_version *v = k ? version_of(k, k->current) : NULL;
        json_t *env;
        if (!v || !v->data) {
            answer_errors(a, 404, 0);
            return;
        }
        env = envelope(fv, sorted_copy(v->data), NULL, "kv");
        json_object_set_new(env, "lease_duration", json_integer(2764800));
        answer_json(a, 200, env);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        j = json_loadb(body ? body : "", blen, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            answer_errors(a, 400, 1, "error parsing JSON");
            return;
        }
        if (k)
            remove_key(fv, k);
        add_version(fv, mount, rest, NULL, j);
        answer_empty(a, 204);
    } else if (strcmp(method, "DELETE") == 0) {
        if (k)
            remove_key(fv, k);
        answer_empty(a, 204);
    } else {
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
    }
}

/* ---- the mount check (sys/internal/ui/mounts/<path>) ---- */

/*
 * Vault's pathInternalUIMountRead: the mount holding <path> (longest
 * prefix), described like sys/mounts plus "path"; 403 with the preflight
 * message when no mount holds it or the token's policies grant nothing
 * under it (so it cannot be used to probe for mounts).
 */
static void ui_mount(fake_vault *fv, const fv_token *t, const char *p, answer *a)
{
    char want[1100], msg[1300];
    const char *m = NULL;
    json_t *d, *cfg, *opts;
    int i, access = t->allow == 1;
    snprintf(want, sizeof want, "%s%s", p[0] == '/' ? p + 1 : p,
             *p && p[strlen(p) - 1] == '/' ? "" : "/");
    snprintf(msg, sizeof msg,
             "preflight capability check returned 403, please ensure client's policies grant "
             "access to path \"%s\"",
             want);
    for (i = 0; i < 2; i++) {
        size_t ml;
        if (!fv->mounts[i])
            continue;
        ml = strlen(fv->mounts[i]);
        if (strncmp(want, fv->mounts[i], ml) == 0 && want[ml] == '/' &&
            (!m || ml > strlen(m)))
            m = fv->mounts[i];
    }
    if (!m) {
        answer_errors(a, 403, 1, msg);
        return;
    }
    if (t->allow == 2) {
        size_t k, ml = strlen(m);
        for (k = 0; k < t->nprefixes && !access; k++) {
            const char *pr = t->prefixes[k];
            access = (strncmp(pr, m, ml) == 0 && pr[ml] == '/') ||
                     strncmp(m, pr, strlen(pr)) == 0;
        }
    }
    if (!access) {
        answer_errors(a, 403, 1, msg);
        return;
    }
    d = json_object();
    cfg = json_object();
    json_object_set_new(cfg, "default_lease_ttl", json_integer(0));
    json_object_set_new(cfg, "force_no_cache", json_false());
    json_object_set_new(cfg, "max_lease_ttl", json_integer(0));
    opts = json_object();
    if (m == fv->mounts[0] && fv->mount_kv_version == 1)
        json_object_set_new(opts, "version", json_string("1"));
    else
        json_object_set_new(opts, "version", json_string("2"));
    json_object_set_new(d, "accessor", json_string(m == fv->mounts[0] ? "kv_4b1d2e7c" : "kv_9a3f06d1"));
    json_object_set_new(d, "config", cfg);
    json_object_set_new(d, "description", json_string(""));
    if (fv->flavour == FV_VAULT)
        json_object_set_new(d, "external_entropy_access", json_false());
    json_object_set_new(d, "local", json_false());
    if (m == fv->mounts[0] && strcmp(fv->mount_type, "kv") != 0)
        json_object_set_new(d, "options", json_null());
    else
        json_object_set_new(d, "options", opts), opts = NULL;
    json_decref(opts);
    {
        char mp[300];
        snprintf(mp, sizeof mp, "%s%s/", fv->last_ns[0] ? fv->mount_ns_prefix : "", m);
        json_object_set_new(d, "path", json_string(mp));
    }
    json_object_set_new(d, "plugin_version", json_string(""));
    json_object_set_new(d, "running_plugin_version",
                        json_string(fv->flavour == FV_VAULT ? "v0.25.0+builtin"
                                                            : "v2.6.2+builtin.bao"));
    json_object_set_new(d, "running_sha256", json_string(""));
    json_object_set_new(d, "seal_wrap", json_false());
    json_object_set_new(d, "type", json_string(m == fv->mounts[0] ? fv->mount_type : "kv"));
    json_object_set_new(d, "uuid", json_string("5c0e1f3a-7b2d-4e96-a8c1-0d3f5b7e9a21"));
    answer_json(a, 200, envelope(fv, d, NULL, "system"));
}

/* ---- sys/health ---- */

static void health(fake_vault *fv, struct MHD_Connection *c, answer *a)
{
    json_t *o = json_object();
    const char *ns = hdr(c, "X-Vault-Namespace");
    int perf = fv->standby == 2 && fv->flavour == FV_VAULT, stb = fv->standby != 0;
    unsigned status;
    const char *p;

    if (fv->flavour == FV_OPENBAO && ns && *ns) {
        json_decref(o);
        answer_errors(a, 400, 1, "operation unavailable in namespaces");
        return;
    }
    if (fv->sealed) {
        status = 503;
        stb = 1;
        perf = 0;
    } else if (perf) {
        status = 473;
    } else if (stb) {
        status = 429;
    } else {
        status = 200;
    }
    if ((p = arg(c, "standbyok")) && go_bool(p) == 1 && status == 429)
        status = 200;
    if ((p = arg(c, "perfstandbyok")) && go_bool(p) == 1 && status == 473 &&
        fv->flavour == FV_VAULT)
        status = 200;
    {
        static const char *const codes[] = {"activecode", "standbycode", "sealedcode",
                                            "performancestandbycode"};
        static const unsigned of[] = {200, 429, 503, 473};
        size_t i;
        for (i = 0; i < 4; i++) {
            char *end;
            long v;
            if (!(p = arg(c, codes[i])))
                continue;
            v = strtol(p, &end, 10);
            if (!*p || *end) {
                json_decref(o);
                answer_errors(a, 400, 1, "bad code");
                return;
            }
            if (status == of[i])
                status = (unsigned)v;
        }
    }
    if (fv->flavour == FV_VAULT) {
        json_object_set_new(o, "clock_skew_ms", json_integer(0));
        if (!fv->sealed) {
            json_object_set_new(o, "cluster_id",
                                json_string("2d9c4f61-8a7b-3e05-c1d2-f4a6b8c0e2d4"));
            json_object_set_new(o, "cluster_name", json_string("vault-cluster-5e8a1c3b"));
        }
        json_object_set_new(o, "echo_duration_ms", json_integer(0));
        json_object_set_new(o, "enterprise", json_false());
        json_object_set_new(o, "initialized", json_true());
        json_object_set_new(o, "performance_standby", json_boolean(perf));
        json_object_set_new(o, "replication_dr_mode", json_string("disabled"));
        json_object_set_new(o, "replication_performance_mode", json_string("disabled"));
        json_object_set_new(o, "sealed", json_boolean(fv->sealed));
        json_object_set_new(o, "server_time_utc", json_integer((json_int_t)time(NULL)));
        json_object_set_new(o, "standby", json_boolean(stb));
        json_object_set_new(o, "version", json_string("1.21.1"));
    } else {
        json_object_set_new(o, "initialized", json_true());
        json_object_set_new(o, "sealed", json_boolean(fv->sealed));
        json_object_set_new(o, "standby", json_boolean(stb));
        json_object_set_new(o, "replication_performance_mode", json_string("disabled"));
        json_object_set_new(o, "replication_dr_mode", json_string("disabled"));
        json_object_set_new(o, "server_time_utc", json_integer((json_int_t)time(NULL)));
        json_object_set_new(o, "version", json_string("2.6.2"));
        if (!fv->sealed) {
            json_object_set_new(o, "cluster_name", json_string("vault-cluster-5e8a1c3b"));
            json_object_set_new(o, "cluster_id",
                                json_string("2d9c4f61-8a7b-3e05-c1d2-f4a6b8c0e2d4"));
        }
    }
    answer_json(a, status, o);
}

/* ---- auth: Kubernetes-style login from a table, token self-service ---- */

static json_t *auth_block(const fv_token *t, const char *role)
{
    json_t *pol = json_pack("[s,s]", "default", t->policy);
    json_t *meta = json_object();
    json_t *o = json_object();
    json_object_set_new(o, "client_token", json_string(t->token));
    json_object_set_new(o, "accessor", json_string(t->accessor));
    json_object_set_new(o, "policies", json_deep_copy(pol));
    json_object_set_new(o, "token_policies", pol);
    json_object_set_new(meta, "role", json_string(role ? role : t->policy));
    json_object_set_new(meta, "service_account_name", json_string(role ? role : t->policy));
    json_object_set_new(meta, "service_account_namespace", json_string("default"));
    json_object_set_new(meta, "service_account_secret_name", json_string(""));
    json_object_set_new(meta, "service_account_uid",
                        json_string("3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a"));
    json_object_set_new(o, "metadata", meta);
    json_object_set_new(o, "lease_duration", json_integer(3600));
    json_object_set_new(o, "renewable", json_true());
    json_object_set_new(o, "entity_id", json_string("7a2c4e6b-8d0f-4a1c-9e3b-5d7f9b1d3f5a"));
    json_object_set_new(o, "token_type", json_string("service"));
    json_object_set_new(o, "orphan", json_true());
    json_object_set_new(o, "mfa_requirement", json_null());
    json_object_set_new(o, "num_uses", json_integer(0));
    return o;
}

static void login(fake_vault *fv, const char *path, const char *method, const char *body,
                  size_t blen, answer *a)
{
    char mount[256];
    json_t *j, *env;
    const char *role, *jwt;
    fv_table_login *l;
    fv_token *t;
    size_t ml = strlen(path) - 5 - 6;

    if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0) {
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        return;
    }
    snprintf(mount, sizeof mount, "%.*s", (int)(ml < 255 ? ml : 255), path + 5);
    j = json_loadb(body ? body : "", blen, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        answer_errors(a, 400, 1, "error parsing JSON");
        return;
    }
    role = json_string_value(json_object_get(j, "role"));
    jwt = json_string_value(json_object_get(j, "jwt"));
    if (!role || !*role) {
        json_decref(j);
        answer_errors(a, 400, 1, "missing role");
        return;
    }
    if (!jwt || !*jwt) {
        json_decref(j);
        answer_errors(a, 400, 1, "missing jwt");
        return;
    }
    for (l = fv->table_logins; l; l = l->next)
        if (strcmp(l->mount, mount) == 0 && strcmp(l->role, role) == 0)
            break;
    if (!l) {
        char msg[300];
        snprintf(msg, sizeof msg, "invalid role name \"%.200s\"", role);
        json_decref(j);
        answer_errors(a, 400, 1, msg);
        return;
    }
    if (strcmp(l->jwt, jwt) != 0) {
        json_decref(j);
        answer_errors(a, 403, 1, "permission denied");
        return;
    }
    for (t = fv->tokens; t; t = t->next)
        if (strcmp(t->token, l->token) == 0)
            break;
    if (!t) {
        json_decref(j);
        answer_errors(a, 403, 1, "permission denied");
        return;
    }
    env = envelope(fv, NULL, NULL, "kubernetes");
    json_object_set_new(env, "auth", auth_block(t, role));
    json_decref(j);
    answer_json(a, 200, env);
}

static void token_self(fake_vault *fv, const fv_token *t, const char *path, const char *method,
                       answer *a)
{
    int lookup = strcmp(path, "auth/token/lookup-self") == 0;
    int post = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    json_t *env;
    if (lookup ? !(post || strcmp(method, "GET") == 0) : !post) {
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        return;
    }
    if (lookup) {
        json_t *d = json_object();
        char now[40];
        now_rfc3339(now);
        json_object_set_new(d, "accessor", json_string(t->accessor));
        json_object_set_new(d, "creation_time", json_integer(t->created));
        json_object_set_new(d, "creation_ttl", json_integer(3600));
        json_object_set_new(d, "display_name", json_string("kubernetes-default-app"));
        json_object_set_new(d, "entity_id", json_string("7a2c4e6b-8d0f-4a1c-9e3b-5d7f9b1d3f5a"));
        json_object_set_new(d, "expire_time", json_null());
        json_object_set_new(d, "explicit_max_ttl", json_integer(0));
        json_object_set_new(d, "id", json_string(t->token));
        json_object_set_new(d, "issue_time", json_string(now));
        json_object_set_new(d, "meta", json_null());
        json_object_set_new(d, "num_uses", json_integer(0));
        json_object_set_new(d, "orphan", json_true());
        json_object_set_new(d, "path", json_string("auth/kubernetes/login"));
        json_object_set_new(d, "policies", json_pack("[s,s]", "default", t->policy));
        json_object_set_new(d, "renewable", json_true());
        json_object_set_new(d, "ttl", json_integer(3412));
        json_object_set_new(d, "type", json_string("service"));
        env = envelope(fv, d, NULL, "token");
    } else {
        env = envelope(fv, NULL, NULL, "token");
        json_object_set_new(env, "auth", auth_block(t, NULL));
    }
    answer_json(a, 200, env);
}

/* ---- dispatch ---- */

static void count(fake_vault *fv, const char *m)
{
    fv->n_all++;
    if (strcmp(m, "GET") == 0)
        fv->n_get++;
    else if (strcmp(m, "POST") == 0)
        fv->n_post++;
    else if (strcmp(m, "PUT") == 0)
        fv->n_put++;
    else if (strcmp(m, "DELETE") == 0)
        fv->n_delete++;
    else if (strcmp(m, "LIST") == 0)
        fv->n_list++;
    else if (strcmp(m, "PATCH") == 0)
        fv->n_patch++;
    else if (strcmp(m, "HEAD") == 0)
        fv->n_head++;
}

/* Serves one complete request (state lock held). */
static void serve(fake_vault *fv, struct MHD_Connection *c, const char *url, const char *method,
                  int list, const char *body, size_t blen, answer *a)
{
    const char *path, *tok, *ns;
    fv_token *t;
    int i;

    if (strncmp(url, "/v1/", 4) != 0) {
        answer_errors(a, 404, 0);
        return;
    }
    path = url + 4;
    if (strcmp(path, "sys/health") == 0) {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            health(fv, c, a);
        else
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        if (strcmp(method, "HEAD") == 0) {
            free(a->body);
            a->body = NULL;
            a->len = 0;
        }
        return;
    }
    ns = hdr(c, "X-Vault-Namespace");
    snprintf(fv->last_ns, sizeof fv->last_ns, "%s", ns ? ns : "");
    if (fv->sealed) {
        answer_errors(a, 503, 1, "Vault is sealed");
        return;
    }
    if (auth_login(fv, method, path, body, blen, a, &a->login))
        return;
    if (strncmp(path, "auth/", 5) == 0 && strlen(path) > 11 &&
        strcmp(path + strlen(path) - 6, "/login") == 0 &&
        strncmp(path, "auth/token/", 11) != 0) {
        login(fv, path, method, body, blen, a);
        return;
    }
    tok = hdr(c, "X-Vault-Token");
    if (!tok || !*tok) {
        const char *au = hdr(c, "Authorization");
        if (au && strncmp(au, "Bearer ", 7) == 0)
            tok = au + 7;
    }
    fv->last_had_token = tok && *tok;
    if (!tok || !*tok) {
        answer_errors(a, 403, 1, MSG_DENIED);
        return;
    }
    for (t = fv->tokens; t; t = t->next)
        if (strcmp(t->token, tok) == 0)
            break;
    if (!t) {
        answer_errors(a, 403, 1, fv->flavour == FV_VAULT ? MSG_INVALID_TOKEN : MSG_DENIED);
        return;
    }
    if (strcmp(path, "auth/token/lookup-self") == 0 ||
        strcmp(path, "auth/token/renew-self") == 0) {
        token_self(fv, t, path, method, a);
        return;
    }
    if (strncmp(path, "sys/internal/ui/mounts/", 23) == 0 && path[23]) {
        if (fv->preflight_status)
            answer_errors(a, (unsigned)fv->preflight_status, 1,
                          "1 error occurred:\n\t* unsupported path\n\n");
        else if (strcmp(method, "GET") != 0)
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        else
            ui_mount(fv, t, path + 23, a);
        return;
    }
    if (!t->allow) {
        answer_errors(a, 403, 1, MSG_DENIED);
        return;
    }
    if (t->allow == 2) {
        size_t k;
        int ok = 0;
        char lp[1100];
        /* Vault appends a missing '/' to LIST paths before the ACL check */
        snprintf(lp, sizeof lp, "%s%s", path,
                 list && *path && path[strlen(path) - 1] != '/' ? "/" : "");
        for (k = 0; k < t->nprefixes && !ok; k++)
            ok = strncmp(lp, t->prefixes[k], strlen(t->prefixes[k])) == 0;
        if (!ok) {
            answer_errors(a, 403, 1, MSG_DENIED);
            return;
        }
    }
    {
        json_error_t je;
        json_t *jb = body && blen ? json_loadb(body, blen, 0, &je) : json_object();
        int done = auth_serve(fv, method, path, jb, a);
        json_decref(jb);
        if (done)
            return;
    }
    for (i = 0; i < 2; i++) {
        size_t ml;
        if (!fv->mounts[i])
            continue;
        ml = strlen(fv->mounts[i]);
        if (strncmp(path, fv->mounts[i], ml) == 0 && (path[ml] == '/' || path[ml] == 0)) {
            const char *rest = path[ml] ? path + ml + 1 : "";
            if (i == 0 && strcmp(fv->mount_type, "kv") != 0)
                answer_errors(a, 404, 1, "1 error occurred:\n\t* unsupported path\n\n");
            else if (i == 0 && fv->mount_kv_version == 1)
                kv1_handle(fv, method, list, fv->mounts[i], rest, body, blen, a);
            else
                kv_handle(fv, c, method, list, fv->mounts[i], rest, body, blen, a);
            return;
        }
    }
    {
        char msg[1200];
        snprintf(msg, sizeof msg, "no handler for route \"%s\". route entry not found.", path);
        answer_errors(a, 404, 1, msg);
    }
}

static int fault_matches(fake_vault *fv, const char *method, const char *url)
{
    if (fv->fault == FV_FAULT_NONE || fv->fault_count == 0 ||
        strcmp(url, "/v1/sys/health") == 0 || strncmp(url, "/v1/sys/internal/ui/mounts/", 27) == 0)
        return 0;
    if (fv->fault_method[0] && strcmp(fv->fault_method, method) != 0)
        return 0;
    if (fv->fault_path[0] && !strstr(url, fv->fault_path))
        return 0;
    if (fv->fault_count > 0)
        fv->fault_count--;
    return 1;
}

/* A body of unknown length: '[' then 'A's, `left` bytes (-1: endless). */
typedef struct stream_state {
    fake_vault *fv;
    long long left;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *st = cls;
    size_t n = max > 16384 ? 16384 : max;
    if (st->fv->stopping || st->left == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (st->left > 0 && (long long)n > st->left)
        n = (size_t)st->left;
    memset(buf, 'A', n);
    if (pos == 0)
        buf[0] = '[';
    if (st->left > 0)
        st->left -= (long long)n;
    return (ssize_t)n;
}

static enum MHD_Result queue(struct MHD_Connection *c, answer *a)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    if (a->stream) {
        stream_state *st = malloc(sizeof *st);
        if (!st)
            return MHD_NO;
        st->fv = a->fv;
        st->left = a->stream;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, free);
        if (r && a->stream_http10)
            MHD_set_response_options(r, MHD_RF_HTTP_1_0_SERVER, MHD_RO_END);
    } else {
        r = MHD_create_response_from_buffer(a->len, a->body ? a->body : (void *)"",
                                            MHD_RESPMEM_MUST_COPY);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "Content-Type", a->ctype ? a->ctype : "application/json");
    if (a->location[0])
        MHD_add_response_header(r, "Location", a->location);
    if (a->retry_after_text[0]) {
        MHD_add_response_header(r, "Retry-After", a->retry_after_text);
    } else if (a->retry_after >= 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", a->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    ret = MHD_queue_response(c, a->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void wait_ms(fake_vault *fv, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!fv->stopping)
        if (pthread_cond_timedwait(&fv->cv, &fv->mu, &ts) == ETIMEDOUT)
            break;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    fake_vault *fv = cls;
    req *rq = *con_cls;
    answer a;
    const char *lv;
    char eff[16];
    int list = 0, reset = 0, reset_after = 0, hold_after = 0;
    fv_fault f = FV_FAULT_NONE;
    enum MHD_Result ret;
    (void)version;

    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!rq->too_big && rq->len + *upload_data_size <= BODY_MAX) {
            char *nb = realloc(rq->body, rq->len + *upload_data_size + 1);
            if (!nb)
                return MHD_NO;
            rq->body = nb;
            memcpy(rq->body + rq->len, upload_data, *upload_data_size);
            rq->len += *upload_data_size;
            rq->body[rq->len] = 0;
        } else {
            rq->too_big = 1;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    memset(&a, 0, sizeof a);
    a.retry_after = -1;
    a.fv = fv;
    snprintf(eff, sizeof eff, "%s", method);
    if ((lv = arg(c, "list")) != NULL) {
        int b = go_bool(lv);
        if (b < 0) {
            pthread_mutex_lock(&fv->mu);
            count(fv, method);
            pthread_mutex_unlock(&fv->mu);
            answer_errors(&a, 400, 0);
            ret = queue(c, &a);
            free(a.body);
            return ret;
        }
        if (b && strcmp(method, "GET") == 0) {
            list = 1;
            snprintf(eff, sizeof eff, "LIST");
        }
    }
    if (strcmp(method, "LIST") == 0)
        list = 1;

    pthread_mutex_lock(&fv->mu);
    if (strncmp(url, "/v1/sys/internal/ui/mounts/", 27) == 0)
        fv->n_preflight++; /* counted apart, never faulted (like sys/health) */
    else
        count(fv, eff);
    if (fault_matches(fv, eff, url)) {
        f = fv->fault;
        switch (f) {
        case FV_FAULT_SLOW:
            wait_ms(fv, fv->fault_param);
            break;
        case FV_FAULT_RESET:
            reset = 1;
            break;
        case FV_FAULT_RESET_AFTER:
            reset_after = 1;
            break;
        case FV_FAULT_HOLD_AFTER:
            hold_after = fv->fault_param;
            break;
        case FV_FAULT_STATUS:
            answer_errors(&a, (unsigned)fv->fault_param, 1,
                          fv->fault_body ? fv->fault_body : "1 error occurred:\n\t* internal "
                                                            "error\n\n");
            break;
        case FV_FAULT_502_RETRY:
            answer_errors(&a, 502, 1, "bad gateway: the upstream is restarting");
            a.retry_after = fv->fault_param;
            break;
        case FV_FAULT_429:
        case FV_FAULT_429_DATE:
            answer_errors(&a, 429, 1,
                          "1 error occurred:\n\t* request path \"cloudtaser/data\": rate limit "
                          "quota exceeded\n\n");
            if (f == FV_FAULT_429) {
                a.retry_after = fv->fault_param;
            } else {
                /* an IMF-fixdate, as RFC 9110 prefers */
                time_t when = time(NULL) + fv->fault_param;
                struct tm tm;
                gmtime_r(&when, &tm);
                strftime(a.retry_after_text, sizeof a.retry_after_text,
                         "%a, %d %b %Y %H:%M:%S GMT", &tm);
            }
            break;
        case FV_FAULT_STREAM:
        case FV_FAULT_STREAM_CLOSE:
            a.status = 200;
            a.stream = fv->fault_param > 0 ? fv->fault_param : -1;
            a.stream_http10 = f == FV_FAULT_STREAM_CLOSE;
            break;
        case FV_FAULT_BIG: {
            size_t n = fv->fault_param > 64 ? (size_t)fv->fault_param : 64;
            static const char head[] = "{\"data\":{\"data\":{\"x\":\"", tail[] = "\"}}}";
            a.status = 200;
            a.body = malloc(n + 1);
            memset(a.body, 'A', n);
            memcpy(a.body, head, sizeof head - 1);
            memcpy(a.body + n - (sizeof tail - 1), tail, sizeof tail - 1);
            a.body[n] = 0;
            a.len = n;
            break;
        }
        case FV_FAULT_BADJSON:
            a.status = 200;
            a.body = strdup("{\"request_id\":\"5d2e8a1f\",\"lease_id\":\"\",\"data\":{\"da");
            a.len = strlen(a.body);
            break;
        case FV_FAULT_REDIRECT:
            answer_empty(&a, 307);
            snprintf(a.location, sizeof a.location, "https://active.vault.example:8200%s", url);
            break;
        case FV_FAULT_HTML:
            a.status = (unsigned)fv->fault_param;
            a.body = strdup("<html><body><h1>502 Bad Gateway</h1></body></html>\n");
            a.len = strlen(a.body);
            a.ctype = "text/html";
            break;
        default:
            break;
        }
    }
    if (!reset && a.status == 0) {
        if (rq->too_big)
            answer_errors(&a, 413, 1, "request body too large");
        else
            serve(fv, c, url, method, list, rq->body, rq->len, &a);
    }
    if (fv->verbose)
        fprintf(stderr, "fake-vault: %s %s -> %u%s\n", eff, url, reset ? 0 : a.status,
                reset || reset_after ? " (connection reset)" : "");
    if (hold_after > 0)
        wait_ms(fv, hold_after); /* committed; the answer waits (mutex released meanwhile) */
    pthread_mutex_unlock(&fv->mu);
    if (a.login) {
        login_finish(fv, a.login, &a);
        login_free(a.login);
        a.login = NULL;
    }
    if (reset || reset_after) {
        free(a.body);
        return MHD_NO; /* closes the connection without an answer */
    }
    ret = queue(c, &a);
    free(a.body);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    req *rq = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

/* MHD's own messages (e.g. "closing connection" after a reset fault): only
 * when verbose. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    fake_vault *fv = cls;
    if (fv->verbose) {
        fputs("fake-vault (mhd): ", stderr);
        vfprintf(stderr, fmt, ap);
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    fake_vault *fv = cls;
    const union MHD_ConnectionInfo *ci;
    (void)socket_context;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED || !fv->require_client_cert)
        return;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci && ci->tls_session) {
        gnutls_session_t s = (gnutls_session_t)ci->tls_session;
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s, NULL, 0);
    }
}

/* ---- lifecycle ---- */

static char *fixture_path(const char *name)
{
    const char *dir = getenv("CT_TEST_FIXTURES");
    char *p;
    size_t n;
    if (!dir)
        dir = "tests/fixtures";
    n = strlen(dir) + strlen(name) + 8;
    p = malloc(n);
    snprintf(p, n, "%s/tls/%s", dir, name);
    return p;
}

fake_vault *fake_vault_start(const fv_options *o)
{
    fv_options def;
    fake_vault *fv;
    char *certp, *keyp, *cert, *key, *ca = NULL;
    struct sockaddr_in sin;
    const union MHD_DaemonInfo *di;

    if (!o) {
        memset(&def, 0, sizeof def);
        o = &def;
    }
    certp = o->cert_file ? strdup(o->cert_file) : fixture_path("server.pem");
    keyp = o->key_file ? strdup(o->key_file) : fixture_path("server-key.pem");
    cert = read_file(certp);
    key = read_file(keyp);
    if (o->client_ca_file)
        ca = read_file(o->client_ca_file);
    if (!cert || !key || (o->client_ca_file && !ca)) {
        fprintf(stderr, "fake-vault: cannot read %s / %s%s%s\n", certp, keyp,
                o->client_ca_file ? " / " : "", o->client_ca_file ? o->client_ca_file : "");
        free(certp), free(keyp), free(cert), free(key), free(ca);
        return NULL;
    }
    free(certp);
    free(keyp);
    fv = calloc(1, sizeof *fv);
    fv->flavour = o->flavour;
    fv->mounts[0] = strdup(o->mount ? o->mount : "cloudtaser");
    fv->mounts[1] = o->mount2 ? strdup(o->mount2) : NULL;
    fv->require_client_cert = ca != NULL;
    snprintf(fv->mount_type, sizeof fv->mount_type, "kv");
    fv->mount_kv_version = 2;
    pthread_mutex_init(&fv->mu, NULL);
    pthread_cond_init(&fv->cv, NULL);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;
    if (ca)
        fv->d = MHD_start_daemon(
            MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS |
                MHD_USE_ERROR_LOG,
            0, NULL, NULL, handler, fv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
            MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT, cert,
            MHD_OPTION_HTTPS_MEM_TRUST, ca, MHD_OPTION_NOTIFY_COMPLETED, completed, fv,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, fv, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)30, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, fv, MHD_OPTION_END);
    else
        fv->d = MHD_start_daemon(
            MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS |
                MHD_USE_ERROR_LOG,
            0, NULL, NULL, handler, fv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
            MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT, cert,
            MHD_OPTION_NOTIFY_COMPLETED, completed, fv, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)30, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, fv, MHD_OPTION_END);
    free(cert);
    free(key);
    free(ca);
    if (!fv->d) {
        fprintf(stderr, "fake-vault: MHD_start_daemon failed\n");
        fake_vault_stop(fv);
        return NULL;
    }
    di = MHD_get_daemon_info(fv->d, MHD_DAEMON_INFO_BIND_PORT);
    fv->port = di ? di->port : 0;
    snprintf(fv->addr, sizeof fv->addr, "https://127.0.0.1:%u", (unsigned)fv->port);
    return fv;
}

void fake_vault_stop(fake_vault *fv)
{
    fv_token *t, *tn;
    fv_key *k, *kn;
    if (!fv)
        return;
    pthread_mutex_lock(&fv->mu);
    fv->stopping = 1;
    pthread_cond_broadcast(&fv->cv);
    pthread_mutex_unlock(&fv->mu);
    if (fv->d)
        MHD_stop_daemon(fv->d);
    for (k = fv->keys; k; k = kn) {
        kn = k->next;
        free_key(k);
    }
    for (t = fv->tokens; t; t = tn) {
        tn = t->next;
        token_free(t);
    }
    while (fv->table_logins) {
        fv_table_login *l = fv->table_logins;
        fv->table_logins = l->next;
        free(l->mount);
        free(l->role);
        free(l->jwt);
        free(l->token);
        free(l);
    }
    free_auths(fv);
    free(fv->mounts[0]);
    free(fv->mounts[1]);
    free(fv->fault_body);
    pthread_cond_destroy(&fv->cv);
    pthread_mutex_destroy(&fv->mu);
    free(fv);
}

uint16_t fake_vault_port(const fake_vault *fv)
{
    return fv->port;
}

const char *fake_vault_addr(const fake_vault *fv)
{
    return fv->addr;
}

static void token_fill(fv_token *t)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t r[24];
    size_t i;
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        memset(r, 7, sizeof r);
    for (i = 0; i < 24; i++)
        t->accessor[i] = al[r[i] % 62];
    t->accessor[24] = 0;
    t->created = (int64_t)time(NULL);
    if (!t->policy[0])
        snprintf(t->policy, sizeof t->policy, "%s", t->allow ? "root" : "none");
}

void fake_vault_add_token_prefixes(fake_vault *fv, const char *token, const char *policy,
                                   const char *const *prefixes, size_t n)
{
    fv_token *t = calloc(1, sizeof *t);
    size_t i;
    t->token = strdup(token);
    t->allow = 2;
    t->prefixes = calloc(n ? n : 1, sizeof *t->prefixes);
    for (i = 0; i < n; i++)
        t->prefixes[i] = strdup(prefixes[i]);
    t->nprefixes = n;
    snprintf(t->policy, sizeof t->policy, "%s", policy ? policy : "custom");
    token_fill(t);
    pthread_mutex_lock(&fv->mu);
    t->next = fv->tokens;
    fv->tokens = t;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_add_login(fake_vault *fv, const char *mount, const char *role, const char *jwt,
                          const char *token)
{
    fv_table_login *l = calloc(1, sizeof *l);
    l->mount = strdup(mount);
    l->role = strdup(role);
    l->jwt = strdup(jwt);
    l->token = strdup(token);
    pthread_mutex_lock(&fv->mu);
    l->next = fv->table_logins;
    fv->table_logins = l;
    pthread_mutex_unlock(&fv->mu);
}

static void token_free(fv_token *t)
{
    size_t i;
    for (i = 0; i < t->nprefixes; i++)
        free(t->prefixes[i]);
    free(t->prefixes);
    free(t->token);
    free(t);
}

void fake_vault_add_token(fake_vault *fv, const char *token, int allow_all)
{
    fv_token *t = calloc(1, sizeof *t);
    t->token = strdup(token);
    t->allow = allow_all;
    token_fill(t);
    pthread_mutex_lock(&fv->mu);
    t->next = fv->tokens;
    fv->tokens = t;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_remove_token(fake_vault *fv, const char *token)
{
    fv_token **pp;
    pthread_mutex_lock(&fv->mu);
    for (pp = &fv->tokens; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->token, token) == 0) {
            fv_token *t = *pp;
            *pp = t->next;
            token_free(t);
            break;
        }
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_set_sealed(fake_vault *fv, int sealed)
{
    pthread_mutex_lock(&fv->mu);
    fv->sealed = sealed;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_set_standby(fake_vault *fv, int mode)
{
    pthread_mutex_lock(&fv->mu);
    fv->standby = mode;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_set_mount_engine(fake_vault *fv, const char *type, int kv_version)
{
    pthread_mutex_lock(&fv->mu);
    snprintf(fv->mount_type, sizeof fv->mount_type, "%s", type ? type : "kv");
    fv->mount_kv_version = kv_version == 1 ? 1 : 2;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_set_mount_ns_prefix(fake_vault *fv, const char *prefix)
{
    pthread_mutex_lock(&fv->mu);
    snprintf(fv->mount_ns_prefix, sizeof fv->mount_ns_prefix, "%s", prefix ? prefix : "");
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_set_preflight(fake_vault *fv, int status)
{
    pthread_mutex_lock(&fv->mu);
    fv->preflight_status = status;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_set_cas_required(fake_vault *fv, int on)
{
    pthread_mutex_lock(&fv->mu);
    fv->cas_required = on;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_fault(fake_vault *fv, fv_fault f, int count_, int param, const char *method,
                      const char *path_sub, const char *body)
{
    pthread_mutex_lock(&fv->mu);
    fv->fault = f;
    fv->fault_count = count_;
    fv->fault_param = param;
    snprintf(fv->fault_method, sizeof fv->fault_method, "%s", method ? method : "");
    snprintf(fv->fault_path, sizeof fv->fault_path, "%s", path_sub ? path_sub : "");
    free(fv->fault_body);
    fv->fault_body = body ? strdup(body) : NULL;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_clear_fault(fake_vault *fv)
{
    fake_vault_fault(fv, FV_FAULT_NONE, 0, 0, NULL, NULL, NULL);
}

unsigned fake_vault_count(fake_vault *fv, const char *m)
{
    unsigned n;
    pthread_mutex_lock(&fv->mu);
    if (!m)
        n = fv->n_all;
    else if (strcmp(m, "GET") == 0)
        n = fv->n_get;
    else if (strcmp(m, "POST") == 0)
        n = fv->n_post;
    else if (strcmp(m, "PUT") == 0)
        n = fv->n_put;
    else if (strcmp(m, "DELETE") == 0)
        n = fv->n_delete;
    else if (strcmp(m, "LIST") == 0)
        n = fv->n_list;
    else if (strcmp(m, "PATCH") == 0)
        n = fv->n_patch;
    else if (strcmp(m, "HEAD") == 0)
        n = fv->n_head;
    else if (strcmp(m, "PREFLIGHT") == 0)
        n = fv->n_preflight;
    else
        n = 0;
    pthread_mutex_unlock(&fv->mu);
    return n;
}

void fake_vault_reset_counts(fake_vault *fv)
{
    pthread_mutex_lock(&fv->mu);
    fv->n_all = fv->n_get = fv->n_post = fv->n_put = fv->n_delete = fv->n_list = fv->n_patch =
        fv->n_head = fv->n_preflight = 0;
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_last_namespace(fake_vault *fv, char *buf, size_t n)
{
    pthread_mutex_lock(&fv->mu);
    snprintf(buf, n, "%s", fv->last_ns);
    pthread_mutex_unlock(&fv->mu);
}

int fake_vault_last_had_token(fake_vault *fv)
{
    int r;
    pthread_mutex_lock(&fv->mu);
    r = fv->last_had_token;
    pthread_mutex_unlock(&fv->mu);
    return r;
}

uint64_t fake_vault_current_version(fake_vault *fv, const char *mount, const char *key,
                                    int *nversions)
{
    fv_key *k;
    uint64_t v;
    pthread_mutex_lock(&fv->mu);
    k = find_key(fv, mount ? mount : fv->mounts[0], key);
    v = k ? k->current : 0;
    if (nversions)
        *nversions = k ? (int)k->nv : 0;
    pthread_mutex_unlock(&fv->mu);
    return v;
}

char *fake_vault_data_json(fake_vault *fv, const char *mount, const char *key)
{
    fv_key *k;
    fv_version *v;
    char *out = NULL;
    pthread_mutex_lock(&fv->mu);
    k = find_key(fv, mount ? mount : fv->mounts[0], key);
    v = k ? version_of(k, k->current) : NULL;
    if (v && v->data) {
        json_t *c = sorted_copy(v->data);
        out = json_dumps(c, JSON_COMPACT);
        json_decref(c);
    }
    pthread_mutex_unlock(&fv->mu);
    return out;
}

void fake_vault_soft_delete(fake_vault *fv, const char *mount, const char *key)
{
    fv_key *k;
    fv_version *v;
    pthread_mutex_lock(&fv->mu);
    k = find_key(fv, mount ? mount : fv->mounts[0], key);
    v = k ? version_of(k, k->current) : NULL;
    if (v && !v->deleted[0])
        now_rfc3339(v->deleted);
    pthread_mutex_unlock(&fv->mu);
}

void fake_vault_destroy_current(fake_vault *fv, const char *mount, const char *key)
{
    fv_key *k;
    fv_version *v;
    pthread_mutex_lock(&fv->mu);
    k = find_key(fv, mount ? mount : fv->mounts[0], key);
    v = k ? version_of(k, k->current) : NULL;
    if (v) {
        v->destroyed = 1;
        json_decref(v->data);
        v->data = NULL;
    }
    pthread_mutex_unlock(&fv->mu);
}

unsigned fake_vault_logins(fake_vault *fv)
{
    unsigned n;
    pthread_mutex_lock(&fv->mu);
    n = fv->logins;
    pthread_mutex_unlock(&fv->mu);
    return n;
}

char *fake_vault_auth_config(fake_vault *fv, const char *path)
{
    fv_auth *m;
    char *s = NULL;
    pthread_mutex_lock(&fv->mu);
    m = find_auth(fv, path, strlen(path));
    if (m && m->config)
        s = json_dumps(m->config, JSON_COMPACT | JSON_SORT_KEYS);
    pthread_mutex_unlock(&fv->mu);
    return s;
}

void fake_vault_set_verbose(fake_vault *fv, int on)
{
    pthread_mutex_lock(&fv->mu);
    fv->verbose = on;
    pthread_mutex_unlock(&fv->mu);
}
