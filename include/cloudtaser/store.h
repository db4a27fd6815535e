/*
 * cloudtaser/store.h - the record store: a versioned key/value vtable with
 * check-and-set, and its built-ins (memory, SQLite; HashiCorp Vault /
 * OpenBao in vault.h).
 *
 * Keys are paths of 1 to 16 segments separated by '/', each segment 1 to 128
 * bytes of [A-Za-z0-9._-] and not "." or ".."; at most 512 bytes in all.
 * Values are opaque bytes (0 to CT_STORE_VALUE_MAX) and are handed out as
 * ct_secret because records hold key material.
 *
 * Versions: a record's version is 1 when created and grows by one on every
 * put. A put names the version it expects:
 *   CT_STORE_ANY     - unconditional;
 *   CT_STORE_CREATE  - only if the key does not exist (create-only);
 *   N > 0            - only if the current version is N.
 * A failed expectation is CT_E_CONFLICT and changes nothing. A missing key
 * is always CT_E_NOTFOUND, never an empty value.
 */
#ifndef CLOUDTASER_STORE_H
#define CLOUDTASER_STORE_H

#include "common.h"
#include "context.h"
#include "secret.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_store ct_store;
typedef struct ct_strlist ct_strlist;

#define CT_STORE_ANY ((int64_t)-1)
#define CT_STORE_CREATE ((int64_t)0)
#define CT_STORE_KEY_MAX 512
#define CT_STORE_VALUE_MAX ((size_t)1 << 20)

/* The store's put honours expected versions atomically. */
#define CT_STORE_F_CAS (1u << 0)
/* Several processes may share the store safely. */
#define CT_STORE_F_SHARED (1u << 1)

#define CT_STORE_OPS_VERSION 1

typedef struct ct_store_ops {
    uint32_t version; /* CT_STORE_OPS_VERSION */
    uint32_t flags;   /* CT_STORE_F_* the implementation provides */
    /* REQUIRED. *value is a new secret owned by the caller. */
    ct_err (*get)(const char *key, ct_secret **value, uint64_t *version,
                  ct_error *err, void *user);
    /* REQUIRED. *new_version may be NULL. */
    ct_err (*put)(const char *key, const uint8_t *value, size_t len, int64_t expected,
                  uint64_t *new_version, ct_error *err, void *user);
    /* REQUIRED. CT_E_NOTFOUND if there is no such key. */
    ct_err (*del)(const char *key, ct_error *err, void *user);
    /*
     * OPTIONAL (NULL: CT_E_UNSUPPORTED). Appends every key that starts with
     * `prefix` to `out` (any order; the caller sorts).
     */
    ct_err (*list)(const char *prefix, ct_strlist *out, ct_error *err, void *user);
    /* OPTIONAL. Called once from ct_store_free. */
    void (*destroy)(void *user);
} ct_store_ops;

/*
 * Registers a store implementation. `ops` is copied; on failure the caller
 * keeps `user`. Keys are validated before any method is called.
 * Errors: CT_E_INVALID, CT_E_VERSION, CT_E_NOMEM.
 */
CT_API ct_err ct_store_new(ct_ctx *ctx, const ct_store_ops *ops, void *user,
                           ct_store **out, ct_error *err);

/*
 * Reads a record. *value: new secret owned by the caller (ct_secret_free).
 * *version may be NULL. Errors: CT_E_NOTFOUND, CT_E_INVALID (bad key),
 * CT_E_STORE and backend-specific codes.
 */
CT_API ct_err ct_store_get(ct_store *s, const char *key, ct_secret **value,
                           uint64_t *version, ct_error *err);

/*
 * Writes a record if `expected` holds (see above). The value is copied.
 * Errors: CT_E_CONFLICT, CT_E_UNSUPPORTED (expected >= 0 on a store without
 * CT_STORE_F_CAS), CT_E_TOOBIG, CT_E_INVALID, CT_E_STORE.
 */
CT_API ct_err ct_store_put(ct_store *s, const char *key, const void *value, size_t len,
                           int64_t expected, uint64_t *new_version, ct_error *err);

/* Deletes a record. Errors: CT_E_NOTFOUND, CT_E_INVALID, CT_E_STORE. */
CT_API ct_err ct_store_del(ct_store *s, const char *key, ct_error *err);

/*
 * Lists the keys that start with `prefix` ("" for all), sorted bytewise,
 * into a new list (free with ct_strlist_free). An empty result is CT_OK with
 * a list of zero entries. The prefix is a plain byte prefix, not a path:
 * "a/b" lists "a/b" itself, "a/b/c" and also "a/bc" (use "a/b/" for the
 * keys below a/b). No character is a wildcard ('_' and '%' are literal).
 */
CT_API ct_err ct_store_list(ct_store *s, const char *prefix, ct_strlist **out,
                            ct_error *err);

/* The implementation's CT_STORE_F_* flags. */
CT_API uint32_t ct_store_flags(const ct_store *s);

/* Frees the store (calls ops->destroy). NULL is a no-op. */
CT_API void ct_store_free(ct_store *s);

/*
 * 1 if `key` is a valid store key (see the top of this file), else 0.
 * Thread-safe.
 */
CT_API int ct_store_key_valid(const char *key);

/* ---- string lists ---- */
CT_API ct_err ct_strlist_new(ct_strlist **out, ct_error *err);
/* Appends a copy of s. */
CT_API ct_err ct_strlist_append(ct_strlist *l, const char *s, ct_error *err);
CT_API size_t ct_strlist_count(const ct_strlist *l);
/* Borrowed until the list is modified or freed; NULL past the end. */
CT_API const char *ct_strlist_get(const ct_strlist *l, size_t i);
CT_API void ct_strlist_sort(ct_strlist *l);
CT_API void ct_strlist_free(ct_strlist *l);

/* ---- built-ins ---- */

/*
 * A store in process memory (tests, embedding). CAS; not shared: every call
 * makes a new, empty store. Values are kept as ct_secret and wiped when
 * overwritten, deleted or freed. Unlike most objects it may be used by
 * several threads at once (each call takes the store's lock). Values are not
 * readable in a forked child (ct_secret memory is wiped on fork).
 */
CT_API ct_err ct_store_new_memory(ct_ctx *ctx, ct_store **out, ct_error *err);

/*
 * The embedded default: an SQLite database file, created with mode 0600 if
 * missing (an existing file, or -wal/-shm file, with group/other access is
 * refused: CT_E_DENIED; run chmod 600). The directory must exist. CAS
 * through transactions; several processes may share one file (WAL mode).
 * A call waits for another writer's lock at most min(5 s, the context's
 * io_timeout_ms), then fails with CT_E_STORE ("store is busy"). Every
 * commit is synced to disk before the call returns (synchronous=FULL).
 *
 * Deleted and overwritten records are overwritten in the file
 * (secure_delete), and their old copies are checkpointed out of the -wal
 * file right after the delete or overwrite when no reader in another
 * process prevents it (else at the next checkpoint or the last close).
 * Limits: the file system or device may keep old blocks; SQLite's page
 * cache holds record pages in ordinary, unwiped heap memory.
 *
 * One store may be used by several threads at once (each call takes the
 * store's lock). Do not use it across fork(): open a new one in the child.
 * A relative `path` is relative to the current directory (never SQLite's
 * ":memory:" or a URI). Errors: CT_E_INVALID, CT_E_DENIED, CT_E_STORE
 * (cannot create or open, missing directory, not a cloudtaser store, newer
 * schema), CT_E_NOMEM.
 */
CT_API ct_err ct_store_new_sqlite(ct_ctx *ctx, const char *path, ct_store **out,
                                  ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
