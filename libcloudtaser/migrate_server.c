/*
 * migrate_server.c - the bridge side of the Secret migration (migrate.h):
 * migrate.put / migrate.get / migrate.mark / migrate.list, each confined to
 * clusters/<fingerprint>/ of the requesting session's cluster and written
 * with the bridge's own store credentials.
 *
 * Records carry Secret values (base64 in JSON): they are serialised into
 * ct_secret buffers and jansson's string copies are wiped before the trees
 * are freed (ctp_json_wipe). The answer to migrate.get is handed to the session
 * as a malloc'd buffer (the session frees it without wiping: see
 * docs/SECURITY.md).
 */
#include "internal.h"
#include "migrate_internal.h"
#include "json_wipe.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_V 1
#define LIST_MAX 1000

struct ct_migrate_server {
    ct_store *store;
    char *tmpl;
    char prefix[CT_STORE_KEY_MAX + 1]; /* the template's literal part up to the first '{' */
};

/* Wipes only a tree no one else holds, then drops the reference. */
static void free_json(json_t *v)
{
    if (v && v->refcount == 1)
        ctp_json_wipe(v);
    json_decref(v);
}

/* Serialises o into a new ct_secret (sorted keys, compact). */
static ct_err dump_secret(json_t *o, ct_secret **out, ct_error *err)
{
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    size_t need = json_dumpb(o, NULL, 0, flags);
    ct_secret *s = NULL;
    ct_err rc;
    *out = NULL;
    if (need == 0)
        return ctp_err(err, CT_E_NOMEM, 0, "cannot serialise a record");
    if ((rc = ct_secret_new(need, &s, err)) != CT_OK)
        return rc;
    if (json_dumpb(o, (char *)ct_secret_data(s), need, flags) != need) {
        ct_secret_free(s);
        return ctp_err(err, CT_E_INTERNAL, 0, "record serialisation changed size");
    }
    *out = s;
    return CT_OK;
}

static int valid_name(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;
    if (n == 0 || n > 128 || s[0] == '.')
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.'))
            return 0;
    return strcmp(s, "..") != 0;
}

static int printable(const char *s, size_t max)
{
    size_t i;
    if (!s)
        return 0;
    for (i = 0; s[i]; i++)
        if (i >= max || s[i] <= 0x20 || s[i] >= 0x7f)
            return 0;
    return i > 0;
}

ct_err ct_migrate_server_new(const ct_migrate_server_options *o, ct_migrate_server **out,
                             ct_error *err)
{
    const char *t;
    ct_migrate_server *m;
    char probe[CT_STORE_KEY_MAX + 64];
    const char *pn, *pm, *brace;

    if (out)
        *out = NULL;
    if (!o || !out || !o->store)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_server_new: NULL argument or store");
    if (o->version != CT_MIGRATE_SERVER_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_migrate_server_options: unknown version %u",
                       o->version);
    t = o->path_template ? o->path_template : CT_MIGRATE_DEFAULT_TEMPLATE;
    pn = strstr(t, "{namespace}");
    pm = strstr(t, "{name}");
    brace = strchr(t, '{');
    if (!pn || !pm || strstr(pn + 1, "{namespace}") || strstr(pm + 1, "{name}") ||
        strlen(t) > 200 || !brace || brace == t || brace[-1] != '/' ||
        !(pn == t || pn[-1] == '/') || !(pm == t || pm[-1] == '/') ||
        (pn[11] != '/' && pn[11] != '\0') || (pm[6] != '/' && pm[6] != '\0'))
        return ctp_err(err, CT_E_INVALID, 0, "migration path template \"%.64s\": give a store "
                       "key with a literal first segment and {namespace} and {name} once each "
                       "as whole segments (e.g. " CT_MIGRATE_DEFAULT_TEMPLATE ")", t);
    {
        /* the rest must be a valid key with sample values */
        const char *p = t;
        size_t n = 0;
        while (*p && n < sizeof probe - 8) {
            if (strncmp(p, "{namespace}", 11) == 0) {
                memcpy(probe + n, "ns", 2), n += 2, p += 11;
            } else if (strncmp(p, "{name}", 6) == 0) {
                memcpy(probe + n, "nm", 2), n += 2, p += 6;
            } else {
                if (*p == '{' || *p == '}')
                    return ctp_err(err, CT_E_INVALID, 0, "migration path template: only "
                                   "{namespace} and {name} may be substituted");
                probe[n++] = *p++;
            }
        }
        probe[n] = '\0';
        if (!ct_store_key_valid(probe))
            return ctp_err(err, CT_E_INVALID, 0, "migration path template \"%.64s\" does not "
                           "give a valid store key", t);
    }
    if (!(m = calloc(1, sizeof *m)) || !(m->tmpl = ctp_strdup(t))) {
        free(m);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    m->store = o->store;
    snprintf(m->prefix, sizeof m->prefix, "%.*s", (int)(brace - t), t);
    *out = m;
    return CT_OK;
}

void ct_migrate_server_free(ct_migrate_server *m)
{
    if (!m)
        return;
    free(m->tmpl);
    free(m);
}

/* clusters/<fp>/<template expanded> into key. */
static ct_err make_key(const ct_migrate_server *m, const char *fp, const char *ns,
                       const char *name, char key[CT_STORE_KEY_MAX + 1], ct_error *err)
{
    const char *p = m->tmpl;
    size_t n;
    int k;
    if (!fp || strlen(fp) != CT_FINGERPRINT_LEN)
        return ctp_err(err, CT_E_INVALID, 0, "migrate: no cluster fingerprint");
    if (!valid_name(ns) || !valid_name(name))
        return ctp_err(err, CT_E_INVALID, 0, "migrate: namespace and name must be 1 to 128 "
                       "characters of [a-z0-9.-]");
    k = snprintf(key, CT_STORE_KEY_MAX + 1, "clusters/%s/", fp);
    if (k < 0 || k > CT_STORE_KEY_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "migrate: bad fingerprint");
    n = (size_t)k;
    while (*p) {
        const char *v = NULL;
        size_t vl, adv = 1;
        if (strncmp(p, "{namespace}", 11) == 0)
            v = ns, adv = 11;
        else if (strncmp(p, "{name}", 6) == 0)
            v = name, adv = 6;
        vl = v ? strlen(v) : 1;
        if (n + vl > CT_STORE_KEY_MAX)
            return ctp_err(err, CT_E_INVALID, 0, "migrate: the store key for %s/%s would be "
                           "longer than %d bytes", ns, name, CT_STORE_KEY_MAX);
        memcpy(key + n, v ? v : p, vl);
        n += vl;
        p += adv;
    }
    key[n] = '\0';
    if (!ct_store_key_valid(key))
        return ctp_err(err, CT_E_INVALID, 0, "migrate: %s/%s gives no valid store key", ns,
                       name);
    return CT_OK;
}

static json_t *load_req(const uint8_t *req, size_t len, ct_error *err)
{
    json_t *o = json_loadb((const char *)req, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        free_json(o);
        ctp_err(err, CT_E_INVALID, 0, "migrate: the request is not a JSON object");
        return NULL;
    }
    return o;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static ct_err answer(json_t *o, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    *resp = (uint8_t *)s;
    *resp_len = strlen(s);
    return CT_OK;
}

/* The stored record at key: *rec (a tree to free_json), *version. */
static ct_err read_record(ct_store *st, const char *key, json_t **rec, uint64_t *version,
                          ct_error *err)
{
    ct_secret *v = NULL;
    ct_err rc = ct_store_get(st, key, &v, version, err);
    *rec = NULL;
    if (rc != CT_OK)
        return rc;
    *rec = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), JSON_REJECT_DUPLICATES,
                      NULL);
    ct_secret_free(v);
    if (!json_is_object(*rec) || json_integer_value(json_object_get(*rec, "v")) != REC_V) {
        free_json(*rec);
        *rec = NULL;
        return ctp_err(err, CT_E_PROTO, 0, "migrate: the record at %.200s is not a migrated "
                       "Secret record", key);
    }
    return CT_OK;
}

static ct_err write_record(ct_store *st, const char *key, json_t *rec, int64_t expected,
                           uint64_t *version, ct_error *err)
{
    ct_secret *v = NULL;
    ct_err rc = dump_secret(rec, &v, err);
    if (rc != CT_OK)
        return rc;
    rc = ct_store_put(st, key, ct_secret_data(v), ct_secret_len(v), expected, version, err);
    ct_secret_free(v);
    return rc;
}

static ct_err op_put(void *arg, const char *fp, ct_session *s, uint32_t stream,
                     const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                     ct_error *err)
{
    ct_migrate_server *m = arg;
    char key[CT_STORE_KEY_MAX + 1];
    json_t *o, *r, *data, *labels, *old = NULL, *rec = NULL, *x;
    const char *ns, *name, *uid, *rv, *type, *k;
    uint64_t oldv = 0, newv = 0;
    int64_t expected;
    ct_err rc;
    (void)s;
    (void)stream;

    if (!(o = load_req(req, req_len, err)))
        return CT_E_INVALID;
    r = json_object_get(o, "record");
    ns = str(r, "namespace");
    name = str(r, "name");
    uid = str(r, "uid");
    rv = str(r, "resourceVersion");
    type = str(r, "type");
    data = json_object_get(r, "data");
    labels = json_object_get(r, "labels");
    if (!json_is_object(r) || !printable(uid, 128) || !printable(rv, 128) ||
        !printable(type, 253) || !json_is_object(data) || (labels && !json_is_object(labels))) {
        rc = ctp_err(err, CT_E_INVALID, 0, "migrate.put: the record needs namespace, name, "
                     "uid, resourceVersion, type and a data object");
        goto out;
    }
    json_object_foreach(data, k, x)
        if (!json_is_string(x)) {
            rc = ctp_err(err, CT_E_INVALID, 0, "migrate.put: data values are base64 strings");
            goto out;
        }
    if ((rc = make_key(m, fp, ns, name, key, err)) != CT_OK)
        goto out;
    rc = read_record(m->store, key, &old, &oldv, err);
    expected = (int64_t)oldv;
    if (rc == CT_E_NOTFOUND) {
        expected = CT_STORE_CREATE;
    } else if (rc != CT_OK) {
        goto out;
    } else {
        const char *ouid = str(old, "uid"), *ost = str(old, "state");
        if (!ouid || strcmp(ouid, uid) != 0) {
            if (!ost || strcmp(ost, CTP_MIGRATE_RESTORED) != 0) {
                rc = ctp_err(err, CT_E_CONFLICT, 0, "the vault already holds a copy of another "
                             "Secret %s/%s (a different uid, state %s) that may be the only "
                             "one left: restore it or move it away first", ns, name,
                             ost ? ost : "?");
                goto out;
            }
        }
    }
    rec = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:o,s:O,s:s}", "v", REC_V, "namespace", ns,
                    "name", name, "uid", uid, "resourceVersion", rv, "type", type, "labels",
                    labels ? json_deep_copy(labels) : json_object(), "data", data, "state",
                    CTP_MIGRATE_COPIED);
    if (!rec) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    rc = write_record(m->store, key, rec, expected, &newv, err);
    if (rc == CT_E_CONFLICT)
        rc = ctp_err(err, CT_E_CONFLICT, 0, "migrate.put %s/%s: the vault copy changed "
                     "meanwhile; try again", ns, name);
    if (rc == CT_OK)
        rc = answer(json_pack("{s:s,s:I}", "key", key + strlen("clusters/") + strlen(fp) + 1,
                              "version", (json_int_t)newv),
                    resp, resp_len, err);
out:
    if (rec)
        json_object_del(rec, "data"); /* shared with o: wiped with it */
    json_decref(rec);
    free_json(old);
    free_json(o);
    return rc;
}

/* The key of a get/mark request: {namespace,name} or {"key": relative key}. */
static ct_err req_key(ct_migrate_server *m, const char *fp, json_t *o,
                      char key[CT_STORE_KEY_MAX + 1], ct_error *err)
{
    const char *rel = str(o, "key");
    if (rel && fp && strlen(fp) == CT_FINGERPRINT_LEN) {
        int k = snprintf(key, CT_STORE_KEY_MAX + 1, "clusters/%s/%s", fp, rel);
        if (k < 0 || k > CT_STORE_KEY_MAX || strncmp(rel, m->prefix, strlen(m->prefix)) != 0 ||
            !ct_store_key_valid(key))
            return ctp_err(err, CT_E_INVALID, 0, "migrate: \"key\" must be a store key "
                           "starting with %s", m->prefix);
        return CT_OK;
    }
    return make_key(m, fp, str(o, "namespace"), str(o, "name"), key, err);
}

static ct_err op_get(void *arg, const char *fp, ct_session *s, uint32_t stream,
                     const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                     ct_error *err)
{
    ct_migrate_server *m = arg;
    char key[CT_STORE_KEY_MAX + 1];
    ct_secret *v = NULL;
    json_t *o;
    ct_err rc;
    (void)s;
    (void)stream;

    if (!(o = load_req(req, req_len, err)))
        return CT_E_INVALID;
    rc = req_key(m, fp, o, key, err);
    free_json(o);
    if (rc != CT_OK)
        return rc;
    if ((rc = ct_store_get(m->store, key, &v, NULL, err)) != CT_OK)
        return rc;
    *resp = malloc(ct_secret_len(v) ? ct_secret_len(v) : 1);
    if (!*resp) {
        ct_secret_free(v);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    memcpy(*resp, ct_secret_data(v), ct_secret_len(v));
    *resp_len = ct_secret_len(v);
    ct_secret_free(v);
    return CT_OK;
}

static ct_err op_mark(void *arg, const char *fp, ct_session *s, uint32_t stream,
                      const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                      ct_error *err)
{
    ct_migrate_server *m = arg;
    char key[CT_STORE_KEY_MAX + 1];
    const char *uid, *state, *ouid;
    json_t *o, *rec = NULL;
    uint64_t ver = 0, newv = 0;
    ct_err rc;
    (void)s;
    (void)stream;

    if (!(o = load_req(req, req_len, err)))
        return CT_E_INVALID;
    uid = str(o, "uid");
    state = str(o, "state");
    if (!uid || !state ||
        (strcmp(state, CTP_MIGRATE_DELETED) != 0 && strcmp(state, CTP_MIGRATE_RESTORED) != 0)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "migrate.mark needs uid and state (deleted or "
                     "restored)");
        goto out;
    }
    if ((rc = req_key(m, fp, o, key, err)) != CT_OK)
        goto out;
    if ((rc = read_record(m->store, key, &rec, &ver, err)) != CT_OK)
        goto out;
    ouid = str(rec, "uid");
    if (!ouid || strcmp(ouid, uid) != 0) {
        rc = ctp_err(err, CT_E_CONFLICT, 0, "migrate.mark: the vault copy belongs to another "
                     "Secret (uid)");
        goto out;
    }
    json_object_set_new(rec, "state", json_string(state));
    if (strcmp(state, CTP_MIGRATE_RESTORED) == 0) {
        const char *nu = str(o, "new_uid"), *nrv = str(o, "new_resourceVersion");
        if (printable(nu, 128) && printable(nrv, 128)) {
            json_object_set_new(rec, "uid", json_string(nu));
            json_object_set_new(rec, "resourceVersion", json_string(nrv));
        }
    }
    rc = write_record(m->store, key, rec, (int64_t)ver, &newv, err);
    if (rc == CT_OK)
        rc = answer(json_pack("{s:I}", "version", (json_int_t)newv), resp, resp_len, err);
out:
    free_json(rec);
    free_json(o);
    return rc;
}

static ct_err op_list(void *arg, const char *fp, ct_session *s, uint32_t stream,
                      const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                      ct_error *err)
{
    ct_migrate_server *m = arg;
    char prefix[2 * CT_STORE_KEY_MAX + 64];
    const char *after, *state;
    ct_strlist *keys = NULL;
    json_t *o, *a, *ans;
    size_t i, n, taken = 0, plen;
    json_int_t limit;
    ct_err rc;
    (void)s;
    (void)stream;

    if (!fp || strlen(fp) != CT_FINGERPRINT_LEN)
        return ctp_err(err, CT_E_INVALID, 0, "migrate: no cluster fingerprint");
    if (!(o = load_req(req, req_len, err)))
        return CT_E_INVALID;
    after = str(o, "after");
    state = str(o, "state");
    limit = json_integer_value(json_object_get(o, "limit"));
    if (limit <= 0 || limit > LIST_MAX)
        limit = LIST_MAX;
    snprintf(prefix, sizeof prefix, "clusters/%s/%s", fp, m->prefix);
    plen = strlen("clusters/") + strlen(fp) + 1;
    rc = ct_store_list(m->store, prefix, &keys, err);
    if (rc != CT_OK) {
        json_decref(o);
        return rc;
    }
    ans = json_object();
    a = json_array();
    json_object_set_new(ans, state ? "records" : "keys", a);
    n = ct_strlist_count(keys);
    for (i = 0; i < n && (json_int_t)taken < limit; i++) {
        const char *k = ct_strlist_get(keys, i) + plen;
        if (after && strcmp(k, after) <= 0)
            continue;
        if (state) {
            /* only the records in that state, with what identifies them */
            json_t *rec = NULL;
            uint64_t ver;
            const char *st;
            if (read_record(m->store, ct_strlist_get(keys, i), &rec, &ver, NULL) != CT_OK)
                continue;
            st = str(rec, "state");
            if (st && strcmp(st, state) == 0 && str(rec, "namespace") && str(rec, "name") &&
                str(rec, "uid"))
                json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s}", "key", k, "namespace",
                                                   str(rec, "namespace"), "name",
                                                   str(rec, "name"), "uid", str(rec, "uid")));
            free_json(rec);
            taken++; /* records read count against the limit */
            continue;
        }
        json_array_append_new(a, json_string(k));
        taken++;
    }
    if (state && i > 0 && i <= n)
        json_object_set_new(ans, "last", json_string(ct_strlist_get(keys, i - 1) + plen));
    json_object_set_new(ans, "more", json_boolean(i < n));
    ct_strlist_free(keys);
    json_decref(o);
    return answer(ans, resp, resp_len, err);
}

ct_err ct_migrate_server_routes(ct_migrate_server *m, ct_router *r, ct_error *err)
{
    ct_err rc;
    if (!m || !r)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_server_routes: NULL argument");
    if ((rc = ct_router_add(r, "migrate.put", op_put, m, err)) != CT_OK ||
        (rc = ct_router_add(r, "migrate.get", op_get, m, err)) != CT_OK ||
        (rc = ct_router_add(r, "migrate.mark", op_mark, m, err)) != CT_OK ||
        (rc = ct_router_add(r, "migrate.list", op_list, m, err)) != CT_OK)
        return rc;
    return CT_OK;
}
