/* store.c - the ct_store wrapper: key validation, limits, string lists. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ct_store {
    ct_ctx *ctx;
    ct_store_ops ops;
    void *user;
};

struct ct_strlist {
    char **v;
    size_t n, cap;
};

int ct_store_key_valid(const char *key)
{
    size_t total = 0, seg = 0, nseg = 0;
    const char *p, *seg_start;
    if (!key || !*key)
        return 0;
    seg_start = key;
    for (p = key;; p++) {
        char ch = *p;
        if (ch == '/' || ch == '\0') {
            if (seg == 0 || seg > 128)
                return 0;
            if ((seg == 1 && seg_start[0] == '.') ||
                (seg == 2 && seg_start[0] == '.' && seg_start[1] == '.'))
                return 0;
            if (++nseg > 16)
                return 0;
            if (ch == '\0')
                break;
            seg = 0;
            seg_start = p + 1;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-') {
            seg++;
        } else {
            return 0;
        }
        if (++total > CT_STORE_KEY_MAX)
            return 0;
    }
    return 1;
}

ct_err ct_store_new(ct_ctx *ctx, const ct_store_ops *ops, void *user, ct_store **out,
                    ct_error *err)
{
    ct_store *s;
    if (!out || !ops)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_new: NULL argument");
    *out = NULL;
    if (ops->version != CT_STORE_OPS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_store_ops version %u is not supported",
                       (unsigned)ops->version);
    if (!ops->get || !ops->put || !ops->del)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_ops lacks a required method");
    s = ctp_calloc(1, sizeof *s);
    if (!s)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    s->ctx = ctx;
    s->ops = *ops;
    s->user = user;
    *out = s;
    return CT_OK;
}

void *ctp_store_user_if(const ct_store *s, void (*destroy)(void *user))
{
    return s && destroy && s->ops.destroy == destroy ? s->user : NULL;
}

static ct_err check_key(const char *key, ct_error *err)
{
    if (!ct_store_key_valid(key))
        return ctp_err(err, CT_E_INVALID, 0,
                       "invalid store key (segments of [A-Za-z0-9._-] separated by '/', "
                       "at most %d bytes)",
                       CT_STORE_KEY_MAX);
    return CT_OK;
}

ct_err ct_store_get(ct_store *s, const char *key, ct_secret **value, uint64_t *version,
                    ct_error *err)
{
    uint64_t v = 0;
    ct_err rc;
    if (!value)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_get: value is NULL");
    *value = NULL;
    if (version)
        *version = 0;
    if (!s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_get: NULL store");
    if ((rc = check_key(key, err)) != CT_OK)
        return rc;
    rc = s->ops.get(key, value, &v, err, s->user);
    if (rc != CT_OK) {
        ct_secret_free(*value);
        *value = NULL;
        return rc;
    }
    if (!*value)
        return ctp_err(err, CT_E_INTERNAL, 0, "store returned success without a value");
    if (version)
        *version = v;
    return CT_OK;
}

ct_err ct_store_put(ct_store *s, const char *key, const void *value, size_t len,
                    int64_t expected, uint64_t *new_version, ct_error *err)
{
    uint64_t v = 0;
    ct_err rc;
    if (new_version)
        *new_version = 0;
    if (!s || (!value && len))
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_put: NULL argument");
    if ((rc = check_key(key, err)) != CT_OK)
        return rc;
    if (len > CT_STORE_VALUE_MAX)
        return ctp_err(err, CT_E_TOOBIG, 0, "value of %zu bytes exceeds the %zu byte limit",
                       len, (size_t)CT_STORE_VALUE_MAX);
    if (expected < CT_STORE_ANY)
        return ctp_err(err, CT_E_INVALID, 0, "invalid expected version %lld",
                       (long long)expected);
    if (expected != CT_STORE_ANY && !(s->ops.flags & CT_STORE_F_CAS))
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "this store has no check-and-set");
    rc = s->ops.put(key, value ? value : (const void *)"", len, expected, &v, err, s->user);
    if (rc == CT_OK && new_version)
        *new_version = v;
    return rc;
}

ct_err ct_store_del(ct_store *s, const char *key, ct_error *err)
{
    ct_err rc;
    if (!s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_del: NULL store");
    if ((rc = check_key(key, err)) != CT_OK)
        return rc;
    return s->ops.del(key, err, s->user);
}

ct_err ct_store_list(ct_store *s, const char *prefix, ct_strlist **out, ct_error *err)
{
    ct_strlist *l;
    ct_err rc;
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_list: out is NULL");
    *out = NULL;
    if (!s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_list: NULL store");
    if (!prefix)
        prefix = "";
    if (strlen(prefix) > CT_STORE_KEY_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "prefix too long");
    if (!s->ops.list)
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "this store cannot list");
    if ((rc = ct_strlist_new(&l, err)) != CT_OK)
        return rc;
    rc = s->ops.list(prefix, l, err, s->user);
    if (rc != CT_OK) {
        ct_strlist_free(l);
        return rc;
    }
    ct_strlist_sort(l);
    *out = l;
    return CT_OK;
}

uint32_t ct_store_flags(const ct_store *s)
{
    return s ? s->ops.flags : 0;
}

void ct_store_free(ct_store *s)
{
    if (!s)
        return;
    if (s->ops.destroy)
        s->ops.destroy(s->user);
    free(s);
}

ct_err ct_strlist_new(ct_strlist **out, ct_error *err)
{
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_strlist_new: out is NULL");
    *out = ctp_calloc(1, sizeof **out);
    if (!*out)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    return CT_OK;
}

ct_err ct_strlist_append(ct_strlist *l, const char *s, ct_error *err)
{
    char *d;
    if (!l || !s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_strlist_append: NULL argument");
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        char **nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        l->v = nv;
        l->cap = ncap;
    }
    d = ctp_strdup(s);
    if (!d)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    l->v[l->n++] = d;
    return CT_OK;
}

size_t ct_strlist_count(const ct_strlist *l)
{
    return l ? l->n : 0;
}

const char *ct_strlist_get(const ct_strlist *l, size_t i)
{
    return (l && i < l->n) ? l->v[i] : NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void ct_strlist_sort(ct_strlist *l)
{
    if (l && l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, cmp_str);
}

void ct_strlist_free(ct_strlist *l)
{
    size_t i;
    if (!l)
        return;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l);
}
