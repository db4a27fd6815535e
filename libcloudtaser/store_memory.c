/*
 * store_memory.c - ct_store_new_memory: a record store in process memory.
 *
 * Records live in an array sorted bytewise by key (binary search; inserts
 * and deletes move the tail). That is O(n) per insert, which is fine for the
 * store's purpose: tests and small embedded uses. Every value is a
 * ct_secret, so it is kept out of core dumps and wiped when it is
 * overwritten, deleted or the store is freed.
 *
 * Concurrency: every method holds the store's mutex, so unlike most library
 * objects one memory store may be used by several threads at once. Memory
 * allocation and wiping happen outside the lock where possible.
 *
 * Versions follow store.h: 1 on creation, +1 on every put. A deleted record
 * is forgotten entirely, so re-creating the key starts again at version 1.
 *
 * Values are ct_secrets, which are MADV_WIPEONFORK: a forked child reads
 * zeros in place of every value. Do not use a memory store across fork().
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mem_rec {
    char *key;
    ct_secret *value;
    uint64_t version;
};

struct mem_store {
    pthread_mutex_t mu;
    struct mem_rec *v; /* sorted by strcmp(key) */
    size_t n, cap;
};

/* Index of `key`, or of the first record greater than it; *found says which. */
static size_t mem_find(const struct mem_store *m, const char *key, int *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->v[mid].key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static ct_err mem_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                      void *user)
{
    struct mem_store *m = user;
    ct_err rc;
    size_t i;
    int found;

    pthread_mutex_lock(&m->mu);
    i = mem_find(m, key, &found);
    if (!found) {
        rc = ctp_err(err, CT_E_NOTFOUND, 0, "no record with key '%s'", key);
        goto out;
    }
    rc = ct_secret_dup(m->v[i].value, value, err);
    if (rc == CT_OK)
        *version = m->v[i].version;
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static ct_err mem_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                      uint64_t *new_version, ct_error *err, void *user)
{
    struct mem_store *m = user;
    ct_secret *nv = NULL, *old = NULL;
    char *kcopy = NULL;
    ct_err rc;
    size_t i;
    int found;

    /* Copy the value and the key before taking the lock. */
    if ((rc = ct_secret_from(value, len, &nv, err)) != CT_OK)
        return rc;
    kcopy = ctp_strdup(key);
    if (!kcopy) {
        ct_secret_free(nv);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }

    pthread_mutex_lock(&m->mu);
    i = mem_find(m, key, &found);
    if (expected == CT_STORE_CREATE && found) {
        rc = ctp_err(err, CT_E_CONFLICT, 0, "key '%s' already exists (version %llu)", key,
                     (unsigned long long)m->v[i].version);
        goto out;
    }
    if (expected > 0 && (!found || m->v[i].version != (uint64_t)expected)) {
        if (found)
            rc = ctp_err(err, CT_E_CONFLICT, 0,
                         "key '%s' is at version %llu, not the expected %lld", key,
                         (unsigned long long)m->v[i].version, (long long)expected);
        else
            rc = ctp_err(err, CT_E_CONFLICT, 0,
                         "key '%s' does not exist (expected version %lld)", key,
                         (long long)expected);
        goto out;
    }
    if (found) {
        if (m->v[i].version >= (uint64_t)INT64_MAX) {
            rc = ctp_err(err, CT_E_STORE, 0, "version of key '%s' would overflow", key);
            goto out;
        }
        old = m->v[i].value;
        m->v[i].value = nv;
        nv = NULL;
        *new_version = ++m->v[i].version;
        rc = CT_OK;
        goto out;
    }
    if (m->n == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        struct mem_rec *g;
        if (ncap > SIZE_MAX / sizeof *g || !(g = realloc(m->v, ncap * sizeof *g))) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        m->v = g;
        m->cap = ncap;
    }
    memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof *m->v);
    m->v[i].key = kcopy;
    m->v[i].value = nv;
    m->v[i].version = 1;
    m->n++;
    kcopy = NULL;
    nv = NULL;
    *new_version = 1;
    rc = CT_OK;
out:
    pthread_mutex_unlock(&m->mu);
    ct_secret_free(old);
    ct_secret_free(nv);
    free(kcopy);
    return rc;
}

static ct_err mem_del(const char *key, ct_error *err, void *user)
{
    struct mem_store *m = user;
    struct mem_rec r;
    size_t i;
    int found;

    pthread_mutex_lock(&m->mu);
    i = mem_find(m, key, &found);
    if (!found) {
        pthread_mutex_unlock(&m->mu);
        return ctp_err(err, CT_E_NOTFOUND, 0, "no record with key '%s'", key);
    }
    r = m->v[i];
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof *m->v);
    m->n--;
    pthread_mutex_unlock(&m->mu);
    ct_secret_free(r.value);
    free(r.key);
    return CT_OK;
}

static ct_err mem_list(const char *prefix, ct_strlist *out, ct_error *err, void *user)
{
    struct mem_store *m = user;
    size_t plen = strlen(prefix), i;
    ct_err rc = CT_OK;
    int found;

    pthread_mutex_lock(&m->mu);
    /* Keys with the prefix form one run starting at the prefix's position. */
    for (i = mem_find(m, prefix, &found); i < m->n; i++) {
        if (strncmp(m->v[i].key, prefix, plen) != 0)
            break;
        if ((rc = ct_strlist_append(out, m->v[i].key, err)) != CT_OK)
            break;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static void mem_destroy(void *user)
{
    struct mem_store *m = user;
    size_t i;
    if (!m)
        return;
    for (i = 0; i < m->n; i++) {
        ct_secret_free(m->v[i].value);
        free(m->v[i].key);
    }
    free(m->v);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

ct_err ct_store_new_memory(ct_ctx *ctx, ct_store **out, ct_error *err)
{
    static const ct_store_ops ops = {
        CT_STORE_OPS_VERSION, CT_STORE_F_CAS, mem_get, mem_put, mem_del, mem_list, mem_destroy,
    };
    struct mem_store *m;
    ct_err rc;
    int e;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_new_memory: out is NULL");
    *out = NULL;
    m = ctp_calloc(1, sizeof *m);
    if (!m)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if ((e = pthread_mutex_init(&m->mu, NULL)) != 0) {
        free(m);
        return ctp_err(err, CT_E_NOMEM, e, "cannot create the store mutex");
    }
    rc = ct_store_new(ctx, &ops, m, out, err);
    if (rc != CT_OK)
        mem_destroy(m);
    return rc;
}
