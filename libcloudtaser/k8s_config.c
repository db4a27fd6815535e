/*
 * k8s_config.c - kubeconfig files (YAML or JSON) read with libyaml, as a
 * pure function: text in, the resolved context (server, CA, credentials)
 * out. Several files (a KUBECONFIG list) are merged the way kubectl merges
 * them: the first file that sets current-context wins, and the first file
 * that defines a given cluster, user or context name wins (its entry is
 * used whole; relative paths in it resolve against that file's directory).
 * Fuzzed by fuzz/fuzz_kubeconfig.c.
 *
 * libyaml is used through its event API: the events build a small tree
 * under hard limits (CTP_YAML_MAX_NODES nodes, CTP_YAML_MAX_DEPTH levels,
 * 1024 keys per mapping), so a hostile file costs bounded memory and time.
 * Anchors and aliases (the "billion laughs" shape), duplicate keys and
 * multi-document streams are refused outright: kubectl writes none of them.
 * Scalars are copied into the tree and wiped when it is freed (a kubeconfig
 * holds tokens and private keys); libyaml's copy in each event is wiped too
 * before the event is released. libyaml's own input and token buffers are
 * freed without wiping (noted in docs/SECURITY.md).
 */
#include "k8s_internal.h"

#include "b64.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_MAX_KEYS 1024

enum { Y_SCALAR, Y_SEQ, Y_MAP };

typedef struct ynode {
    int kind;
    int plain;          /* scalar written without quotes */
    char *s;            /* scalar text (NUL-terminated) */
    size_t len;
    struct ynode **kids; /* seq: items; map: key, value, key, value, ... */
    size_t n, cap;
} ynode;

static void ynode_free(ynode *y)
{
    size_t i;
    if (!y)
        return;
    if (y->s) {
        ct_secure_wipe(y->s, y->len);
        free(y->s);
    }
    for (i = 0; i < y->n; i++)
        ynode_free(y->kids[i]);
    free(y->kids);
    free(y);
}

static int ynode_add(ynode *parent, ynode *kid)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        ynode **p = realloc(parent->kids, cap * sizeof *p);
        if (!p)
            return -1;
        parent->kids = p;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
    return 0;
}

static void wipe_event(yaml_event_t *ev)
{
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.value)
        ct_secure_wipe(ev->data.scalar.value, ev->data.scalar.length);
}

/* Builds the tree of the single document in text. */
static ct_err yaml_tree(const char *text, size_t len, const char *where, ynode **out,
                        ct_error *err)
{
    yaml_parser_t p;
    yaml_event_t ev;
    ynode *stack[CTP_YAML_MAX_DEPTH + 1];
    size_t depth = 0, nodes = 0;
    int docs = 0, done = 0;
    ynode *root = NULL;
    ct_err rc = CT_OK;

    *out = NULL;
    if (!yaml_parser_initialize(&p))
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done && rc == CT_OK) {
        ynode *y = NULL;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: not valid YAML: %s at line %lu",
                         where, p.problem ? p.problem : "syntax error",
                         (unsigned long)p.problem_mark.line + 1);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = ctp_err(err, CT_E_INVALID, 0,
                             "kubeconfig %s: more than one YAML document", where);
            break;
        case YAML_ALIAS_EVENT:
            rc = ctp_err(err, CT_E_INVALID, 0,
                         "kubeconfig %s: YAML aliases are not accepted (line %lu)", where,
                         (unsigned long)ev.start_mark.line + 1);
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            const yaml_char_t *anchor = ev.type == YAML_SCALAR_EVENT ? ev.data.scalar.anchor
                                        : ev.type == YAML_SEQUENCE_START_EVENT
                                            ? ev.data.sequence_start.anchor
                                            : ev.data.mapping_start.anchor;
            if (anchor) {
                rc = ctp_err(err, CT_E_INVALID, 0,
                             "kubeconfig %s: YAML anchors are not accepted (line %lu)", where,
                             (unsigned long)ev.start_mark.line + 1);
                break;
            }
            if (++nodes > CTP_YAML_MAX_NODES) {
                rc = ctp_err(err, CT_E_TOOBIG, 0, "kubeconfig %s: more than %d YAML nodes",
                             where, CTP_YAML_MAX_NODES);
                break;
            }
            y = calloc(1, sizeof *y);
            if (!y) {
                rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
                break;
            }
            if (ev.type == YAML_SCALAR_EVENT) {
                y->kind = Y_SCALAR;
                y->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
                           ev.data.scalar.style == YAML_ANY_SCALAR_STYLE;
                y->len = ev.data.scalar.length;
                y->s = malloc(y->len + 1);
                if (!y->s) {
                    free(y);
                    y = NULL;
                    rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
                    break;
                }
                memcpy(y->s, ev.data.scalar.value, y->len);
                y->s[y->len] = '\0';
            } else {
                y->kind = ev.type == YAML_SEQUENCE_START_EVENT ? Y_SEQ : Y_MAP;
            }
            /* attach to the parent, or make it the root */
            if (depth == 0) {
                if (root) {
                    ynode_free(y);
                    rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: more than one root",
                                 where);
                    break;
                }
                root = y;
            } else {
                ynode *par = stack[depth - 1];
                if (par->kind == Y_MAP) {
                    if (par->n % 2 == 0) { /* a key */
                        size_t i;
                        if (y->kind != Y_SCALAR) {
                            ynode_free(y);
                            rc = ctp_err(err, CT_E_INVALID, 0,
                                         "kubeconfig %s: a mapping key is not a string "
                                         "(line %lu)", where,
                                         (unsigned long)ev.start_mark.line + 1);
                            break;
                        }
                        if (par->n / 2 >= YAML_MAX_KEYS) {
                            ynode_free(y);
                            rc = ctp_err(err, CT_E_TOOBIG, 0,
                                         "kubeconfig %s: a mapping has more than %d keys",
                                         where, YAML_MAX_KEYS);
                            break;
                        }
                        for (i = 0; i < par->n; i += 2) {
                            if (par->kids[i]->len == y->len &&
                                memcmp(par->kids[i]->s, y->s, y->len) == 0) {
                                rc = ctp_err(err, CT_E_INVALID, 0,
                                             "kubeconfig %s: duplicate key \"%.64s\" (line "
                                             "%lu)", where, y->s,
                                             (unsigned long)ev.start_mark.line + 1);
                                break;
                            }
                        }
                        if (rc != CT_OK) {
                            ynode_free(y);
                            break;
                        }
                    }
                }
                if (ynode_add(par, y) != 0) {
                    ynode_free(y);
                    rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
                    break;
                }
            }
            if (y->kind != Y_SCALAR) {
                if (depth >= CTP_YAML_MAX_DEPTH) {
                    rc = ctp_err(err, CT_E_TOOBIG, 0,
                                 "kubeconfig %s: nested deeper than %d levels", where,
                                 CTP_YAML_MAX_DEPTH);
                    break;
                }
                stack[depth++] = y;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        wipe_event(&ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc != CT_OK) {
        ynode_free(root);
        return rc;
    }
    *out = root;
    return CT_OK;
}

/* ------------------------------------------------------------ queries */

static int is_null(const ynode *y)
{
    if (!y)
        return 1;
    if (y->kind != Y_SCALAR || !y->plain)
        return 0;
    return y->len == 0 || strcmp(y->s, "~") == 0 || strcmp(y->s, "null") == 0 ||
           strcmp(y->s, "Null") == 0 || strcmp(y->s, "NULL") == 0;
}

/* The value of `key` in a mapping; NULL if absent or null. */
static const ynode *get(const ynode *map, const char *key)
{
    size_t i, kl = strlen(key);
    if (!map || map->kind != Y_MAP)
        return NULL;
    for (i = 0; i + 1 < map->n; i += 2) {
        if (map->kids[i]->len == kl && memcmp(map->kids[i]->s, key, kl) == 0)
            return is_null(map->kids[i + 1]) ? NULL : map->kids[i + 1];
    }
    return NULL;
}

/* A string field: OK with *out = NULL when absent; an error when not a string. */
static ct_err get_str(const ynode *map, const char *key, const char *where, const char *in,
                      const char **out, ct_error *err)
{
    const ynode *v = get(map, key);
    *out = NULL;
    if (!v)
        return CT_OK;
    if (v->kind != Y_SCALAR || strlen(v->s) != v->len)
        return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s: %s is not a string", where, in,
                       key);
    *out = v->len ? v->s : NULL;
    return CT_OK;
}

/* yaml.v2 booleans (what kubectl's YAML reader accepts). */
static ct_err get_bool(const ynode *map, const char *key, const char *where, const char *in,
                       int *out, ct_error *err)
{
    static const char *const t[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "y", "Y",
                                     "on", "On", "ON" };
    static const char *const f[] = { "false", "False", "FALSE", "no", "No", "NO", "n", "N",
                                     "off", "Off", "OFF" };
    const ynode *v = get(map, key);
    size_t i;
    *out = 0;
    if (!v)
        return CT_OK;
    if (v->kind == Y_SCALAR && v->plain) {
        for (i = 0; i < sizeof t / sizeof t[0]; i++) {
            if (strcmp(v->s, t[i]) == 0)
                return *out = 1, CT_OK;
            if (strcmp(v->s, f[i]) == 0)
                return CT_OK;
        }
    }
    return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s: %s is not true or false", where,
                   in, key);
}

/*
 * Checks the shape of one file's top level: a mapping, kind Config when
 * given, current-context a string, and clusters / users / contexts lists
 * of mappings that each have a string name. kubectl decodes every file of
 * the list, so a malformed file is an error even when nothing is taken
 * from it.
 */
static ct_err check_file(const ynode *root, const char *where, ct_error *err)
{
    static const char *const lists[] = { "clusters", "users", "contexts" };
    const ynode *v;
    const char *cc;
    size_t i, j;
    ct_err rc;

    if (!root || root->kind != Y_MAP)
        return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s", where,
                       root ? "not a mapping at the top level" : "the file is empty");
    if ((v = get(root, "kind")) && (v->kind != Y_SCALAR || strcmp(v->s, "Config") != 0))
        return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: kind is not Config", where);
    rc = get_str(root, "current-context", where, "top level", &cc, err);
    if (rc != CT_OK)
        return rc;
    for (j = 0; j < sizeof lists / sizeof lists[0]; j++) {
        const ynode *list = get(root, lists[j]);
        if (list && list->kind != Y_SEQ)
            return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s is not a list", where,
                           lists[j]);
        for (i = 0; list && i < list->n; i++) {
            const ynode *it = list->kids[i], *n = get(it, "name");
            if (it->kind != Y_MAP || !n || n->kind != Y_SCALAR)
                return ctp_err(err, CT_E_INVALID, 0,
                               "kubeconfig %s: an entry of %s has no name", where, lists[j]);
        }
    }
    return CT_OK;
}

/*
 * The entry of list `list_key` (clusters / users / contexts) named `name`
 * in the first file that defines it (kubectl: the first file to set a name
 * wins, later definitions are ignored whole): its `inner_key` mapping
 * (cluster / user / context) in *out and the file's index in *which.
 * `all` names the files for the not-found message. Files are checked by
 * check_file first; a NULL root is an empty file.
 */
static ct_err find_named(ynode *const *roots, const ctp_kubeconfig_src *src, size_t n,
                         const char *list_key, const char *inner_key, const char *name,
                         const char *all, const ynode **out, size_t *which, ct_error *err)
{
    const ynode *found = NULL;
    size_t f, i;
    *out = NULL;
    *which = 0;
    for (f = 0; f < n && !found; f++) {
        const ynode *list = get(roots[f], list_key);
        for (i = 0; list && i < list->n; i++) {
            const ynode *it = list->kids[i], *nm = get(it, "name");
            if (strcmp(nm->s, name) != 0 || strlen(nm->s) != nm->len)
                continue;
            if (found)
                return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s has two entries "
                               "named \"%.64s\"", src[f].where, list_key, name);
            found = it;
            *which = f;
        }
    }
    if (!found)
        return ctp_err(err, CT_E_NOTFOUND, 0, "kubeconfig %s: no %s named \"%.64s\" in %s",
                       all, inner_key, name, list_key);
    *out = get(found, inner_key);
    if (!*out || (*out)->kind != Y_MAP)
        return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s \"%.64s\" has no %s mapping",
                       src[*which].where, inner_key, name, inner_key);
    return CT_OK;
}

/* base_dir/path for a relative path; a copy of path otherwise. */
static char *resolve(const char *base_dir, const char *path)
{
    size_t a, b;
    char *s;
    if (!base_dir || !*base_dir || path[0] == '/')
        return strdup(path);
    a = strlen(base_dir);
    b = strlen(path);
    s = malloc(a + b + 2);
    if (!s)
        return NULL;
    memcpy(s, base_dir, a);
    s[a] = '/';
    memcpy(s + a + 1, path, b + 1);
    return s;
}

/* Decodes a *-data field (base64, whitespace ignored) into buf (plain or secret). */
static ct_err decode_data(const char *b64, const char *where, const char *field,
                          uint8_t **plain, size_t *plain_len, ct_secret **secret,
                          ct_error *err)
{
    size_t n = strlen(b64), i, m = 0, cap, got = 0;
    char *clean = malloc(n + 1);
    uint8_t *buf = NULL;
    ct_secret *s = NULL;
    ct_err rc = CT_OK;

    if (!clean)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    for (i = 0; i < n; i++)
        if (b64[i] != ' ' && b64[i] != '\n' && b64[i] != '\r' && b64[i] != '\t')
            clean[m++] = b64[i];
    cap = ctp_b64_decoded_max(m);
    if (secret) {
        rc = ct_secret_new(cap, &s, err);
        if (rc != CT_OK)
            goto out;
        buf = ct_secret_data(s);
    } else if (!(buf = malloc(cap + 1))) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    if (m == 0 || ctp_b64_decode(clean, m, buf, cap, &got, CTP_B64_STD) != 0) {
        rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s is not valid base64", where,
                     field);
        goto out;
    }
    if (got < 11 || memcmp(buf, "-----BEGIN ", 11) != 0) {
        rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s does not decode to PEM", where,
                     field);
        goto out;
    }
    if (secret) {
        (void)ct_secret_truncate(s, got);
        *secret = s;
        s = NULL;
    } else {
        buf[got] = '\0';
        *plain = buf;
        *plain_len = got;
        buf = NULL;
    }
out:
    ct_secure_wipe(clean, m);
    free(clean);
    ct_secret_free(s);
    if (!secret)
        free(buf);
    return rc;
}

/* A bearer token as it may go into a header: printable ASCII, no spaces. */
static int token_ok(const char *t, size_t n)
{
    size_t i;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return 0;
    return 1;
}

int ctp_k8s_valid_name(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
    }
    return s[0] != '-' && s[0] != '.' && s[n - 1] != '-' && s[n - 1] != '.';
}

ct_err ctp_k8s_server_url(const char *url, char **out, ct_error *err)
{
    const char *p, *host, *hend, *path;
    size_t n;
    char *s;

    *out = NULL;
    if (!url || !*url)
        return ctp_err(err, CT_E_INVALID, 0, "the API server URL is empty");
    if (strncmp(url, "http://", 7) == 0)
        return ctp_err(err, CT_E_UNSUPPORTED, 0,
                       "the API server URL is plain http: only https is supported");
    if (strncmp(url, "https://", 8) != 0)
        return ctp_err(err, CT_E_INVALID, 0, "the API server URL must start with https://");
    for (p = url; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '?' || *p == '#' || *p == '\\')
            return ctp_err(err, CT_E_INVALID, 0,
                           "the API server URL has a character it cannot have (space, "
                           "control, '?', '#' or '\\')");
    host = url + 8;
    if (*host == '[') {
        hend = strchr(host, ']');
        if (!hend || hend == host + 1)
            return ctp_err(err, CT_E_INVALID, 0, "the API server URL has a bad IPv6 literal");
        for (p = host + 1; p < hend; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
                return ctp_err(err, CT_E_INVALID, 0,
                               "the API server URL has a bad IPv6 literal");
        hend++;
    } else {
        hend = host;
        while (*hend && *hend != ':' && *hend != '/') {
            char c = *hend;
            if (c == '@')
                return ctp_err(err, CT_E_INVALID, 0,
                               "the API server URL must not carry user information");
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return ctp_err(err, CT_E_INVALID, 0, "the API server URL has a bad host name");
            hend++;
        }
        if (hend == host)
            return ctp_err(err, CT_E_INVALID, 0, "the API server URL has no host");
    }
    path = hend;
    if (*path == ':') {
        unsigned long port = 0;
        const char *d = path + 1;
        while (*d >= '0' && *d <= '9' && port <= 65535)
            port = port * 10 + (unsigned long)(*d++ - '0');
        if (d == path + 1 || port == 0 || port > 65535 || (*d && *d != '/'))
            return ctp_err(err, CT_E_INVALID, 0, "the API server URL has a bad port");
        path = d;
    } else if (*path && *path != '/') {
        return ctp_err(err, CT_E_INVALID, 0, "the API server URL is malformed");
    }
    n = strlen(url);
    while (n > 8 && url[n - 1] == '/' && url + n - 1 >= path)
        n--;
    s = malloc(n + 1);
    if (!s)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    memcpy(s, url, n);
    s[n] = '\0';
    *out = s;
    return CT_OK;
}

void ctp_kubeconfig_clear(ctp_kubeconfig *k)
{
    if (!k)
        return;
    free(k->context);
    free(k->cluster);
    free(k->user);
    free(k->server);
    free(k->ns);
    free(k->ca_file);
    free(k->ca_pem);
    ct_secret_free(k->token);
    free(k->token_file);
    free(k->cert_file);
    free(k->cert_pem);
    free(k->key_file);
    ct_secret_free(k->key_pem);
    memset(k, 0, sizeof *k);
}

#define DUP(dst, src)                                                                  \
    do {                                                                               \
        if (!((dst) = strdup(src))) {                                                  \
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");                         \
            goto out;                                                                  \
        }                                                                              \
    } while (0)
#define PATH(dst, src)                                                                 \
    do {                                                                               \
        if (!((dst) = resolve(base_dir, src))) {                                       \
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");                         \
            goto out;                                                                  \
        }                                                                              \
    } while (0)
#define TRY(expr)                                                                      \
    do {                                                                               \
        if ((rc = (expr)) != CT_OK)                                                    \
            goto out;                                                                  \
    } while (0)

/* "a:b:c" (cut with "...") naming the files in messages. */
static void name_files(const ctp_kubeconfig_src *src, size_t n, char *out, size_t cap)
{
    size_t i, used = 0;
    out[0] = '\0';
    for (i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? ":" : "", src[i].where);
        if (w < 0 || (size_t)w >= cap - used) {
            if (cap > 4)
                memcpy(out + cap - 4, "...", 4);
            return;
        }
        used += (size_t)w;
    }
}

ct_err ctp_kubeconfig_parse(const char *text, size_t len, const char *context,
                            const char *where, const char *base_dir, ctp_kubeconfig *out,
                            ct_error *err)
{
    ctp_kubeconfig_src src;
    src.text = text;
    src.len = len;
    src.where = where;
    src.base_dir = base_dir;
    return ctp_kubeconfig_merge(&src, 1, context, out, err);
}

ct_err ctp_kubeconfig_merge(const ctp_kubeconfig_src *files, size_t nfiles,
                            const char *context, ctp_kubeconfig *out, ct_error *err)
{
    ynode *roots[CTP_KUBECONFIG_MAX_FILES];
    ctp_kubeconfig_src src[CTP_KUBECONFIG_MAX_FILES];
    const ynode *ctxm, *cl, *us = NULL;
    const char *s, *cluster_name, *user_name, *ns, *ca_data, *ca_file, *tok, *tok_file,
        *cd, *cf, *kd, *kf, *where, *base_dir;
    char in[160], all[200];
    size_t i, f;
    ct_err rc;

    memset(out, 0, sizeof *out);
    memset(roots, 0, sizeof roots);
    if (!files || nfiles == 0)
        return ctp_err(err, CT_E_INVALID, 0, "kubeconfig: no file to read");
    if (nfiles > CTP_KUBECONFIG_MAX_FILES)
        return ctp_err(err, CT_E_INVALID, 0, "kubeconfig: more than %d files to merge",
                       CTP_KUBECONFIG_MAX_FILES);
    for (i = 0; i < nfiles; i++) {
        src[i] = files[i];
        if (!src[i].where)
            src[i].where = "(text)";
    }
    name_files(src, nfiles, all, sizeof all);
    for (i = 0; i < nfiles; i++) {
        where = src[i].where;
        if (!src[i].text)
            return ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: no text", where);
        if (src[i].len > CT_K8S_KUBECONFIG_MAX)
            return ctp_err(err, CT_E_TOOBIG, 0, "kubeconfig %s: larger than %zu bytes", where,
                           CT_K8S_KUBECONFIG_MAX);
    }
    for (i = 0; i < nfiles; i++) {
        TRY(yaml_tree(src[i].text, src[i].len, src[i].where, &roots[i], err));
        /* kubectl reads an empty file of a list as an empty configuration */
        if (!roots[i] && nfiles > 1)
            continue;
        TRY(check_file(roots[i], src[i].where, err));
    }

    /* the context: the first file that sets current-context names it */
    if (!context || !*context) {
        context = NULL; /* "" (an empty --context) means: the current context */
        for (i = 0; i < nfiles && !context; i++)
            TRY(get_str(roots[i], "current-context", src[i].where, "top level", &context,
                        err));
        if (!context) {
            if (nfiles > 1)
                rc = ctp_err(err, CT_E_INVALID, 0, "none of the kubeconfig files %s sets "
                             "current-context: name the context to use", all);
            else
                rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s has no current-context: "
                             "name the context to use", all);
            goto out;
        }
    }
    DUP(out->context, context);
    snprintf(in, sizeof in, "context \"%.64s\"", context);
    TRY(find_named(roots, src, nfiles, "contexts", "context", context, all, &ctxm, &f, err));
    out->context_src = f;
    where = src[f].where;
    TRY(get_str(ctxm, "cluster", where, in, &cluster_name, err));
    TRY(get_str(ctxm, "user", where, in, &user_name, err));
    TRY(get_str(ctxm, "namespace", where, in, &ns, err));
    if (!cluster_name) {
        rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s names no cluster", where, in);
        goto out;
    }
    if (ns && !ctp_k8s_valid_name(ns)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s: namespace is not a valid name",
                     where, in);
        goto out;
    }
    DUP(out->cluster, cluster_name);
    DUP(out->user, user_name ? user_name : "");
    DUP(out->ns, ns ? ns : "");

    /* the cluster */
    snprintf(in, sizeof in, "cluster \"%.64s\"", cluster_name);
    TRY(find_named(roots, src, nfiles, "clusters", "cluster", cluster_name, all, &cl, &f, err));
    out->cluster_src = f;
    where = src[f].where;
    base_dir = src[f].base_dir;
    TRY(get_str(cl, "server", where, in, &s, err));
    if (!s) {
        rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s has no server", where, in);
        goto out;
    }
    {
        ct_error e2;
        rc = ctp_k8s_server_url(s, &out->server, &e2);
        if (rc != CT_OK) {
            rc = ctp_err(err, rc, 0, "kubeconfig %s: %s: %s", where, in, e2.message);
            goto out;
        }
    }
    TRY(get_bool(cl, "insecure-skip-tls-verify", where, in, &out->insecure, err));
    TRY(get_str(cl, "certificate-authority-data", where, in, &ca_data, err));
    TRY(get_str(cl, "certificate-authority", where, in, &ca_file, err));
    if (ca_data)
        TRY(decode_data(ca_data, where, "certificate-authority-data", &out->ca_pem,
                        &out->ca_pem_len, NULL, err));
    else if (ca_file)
        PATH(out->ca_file, ca_file);
    TRY(get_str(cl, "tls-server-name", where, in, &s, err));
    if (s) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0, "kubeconfig %s: %s: tls-server-name is not "
                     "supported; use a server URL whose host the certificate names", where, in);
        goto out;
    }
    TRY(get_str(cl, "proxy-url", where, in, &s, err));
    if (s) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0, "kubeconfig %s: %s: proxy-url is not supported",
                     where, in);
        goto out;
    }

    /* the user (a context without one connects anonymously) */
    if (!user_name)
        goto done;
    snprintf(in, sizeof in, "user \"%.64s\"", user_name);
    TRY(find_named(roots, src, nfiles, "users", "user", user_name, all, &us, &f, err));
    out->user_src = f;
    where = src[f].where;
    base_dir = src[f].base_dir;
    if (get(us, "exec")) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0, "kubeconfig %s: %s: exec credential plugins "
                     "are not supported; use a token or client certificate", where, in);
        goto out;
    }
    if (get(us, "auth-provider")) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0, "kubeconfig %s: %s: auth-provider plugins are "
                     "not supported; use a token or client certificate", where, in);
        goto out;
    }
    if (get(us, "username") || get(us, "password")) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0, "kubeconfig %s: %s: basic authentication is "
                     "not supported; use a token or client certificate", where, in);
        goto out;
    }
    if (get(us, "as") || get(us, "as-groups") || get(us, "as-uid") ||
        get(us, "as-user-extra")) {
        rc = ctp_err(err, CT_E_UNSUPPORTED, 0, "kubeconfig %s: %s: impersonation (as, "
                     "as-groups) is not supported", where, in);
        goto out;
    }
    TRY(get_str(us, "token", where, in, &tok, err));
    TRY(get_str(us, "tokenFile", where, in, &tok_file, err));
    if (tok_file) {
        PATH(out->token_file, tok_file);
    } else if (tok) {
        size_t n = strlen(tok);
        if (!token_ok(tok, n)) {
            rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s: token has characters a "
                         "bearer token cannot have", where, in);
            goto out;
        }
        TRY(ct_secret_from(tok, n, &out->token, err));
    }
    TRY(get_str(us, "client-certificate-data", where, in, &cd, err));
    TRY(get_str(us, "client-certificate", where, in, &cf, err));
    TRY(get_str(us, "client-key-data", where, in, &kd, err));
    TRY(get_str(us, "client-key", where, in, &kf, err));
    if ((cd || cf) != (kd || kf)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "kubeconfig %s: %s: a client certificate needs "
                     "its key and a key its certificate", where, in);
        goto out;
    }
    if (cd)
        TRY(decode_data(cd, where, "client-certificate-data", &out->cert_pem,
                        &out->cert_pem_len, NULL, err));
    else if (cf)
        PATH(out->cert_file, cf);
    if (kd)
        TRY(decode_data(kd, where, "client-key-data", NULL, NULL, &out->key_pem, err));
    else if (kf)
        PATH(out->key_file, kf);
done:
    rc = CT_OK;
out:
    for (i = 0; i < nfiles; i++)
        ynode_free(roots[i]);
    if (rc != CT_OK)
        ctp_kubeconfig_clear(out);
    return rc;
}
