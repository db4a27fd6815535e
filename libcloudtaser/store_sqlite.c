/*
 * store_sqlite.c - ct_store_new_sqlite: the embedded default record store,
 * one SQLite database file.
 *
 * File: created by us with open(O_CREAT|O_EXCL, 0600) before SQLite sees
 * it (SQLite never creates it: no SQLITE_OPEN_CREATE), so its mode does not
 * depend on the umask. SQLite's unix VFS gives the -wal and -shm files it
 * creates the mode of the database file. An existing file (or -wal/-shm)
 * with any group/other bit is refused with CT_E_DENIED. When two processes
 * create the file at once, one wins O_EXCL; the other finds an empty 0600
 * file, and the schema is created under BEGIN IMMEDIATE by whichever gets
 * the write lock first (the second sees it and only checks it).
 *
 * Schema (version 1):
 *   meta(name TEXT PRIMARY KEY, value)   -- format, schema_version
 *   kv(key TEXT PRIMARY KEY, value BLOB, version INTEGER, updated_ms INTEGER)
 * A file without our meta rows is "not a cloudtaser store"; a newer schema
 * version is refused. Both are checked read-only before anything is written,
 * so a foreign file is never modified.
 *
 * Sharing: WAL journal mode and a busy timeout let several processes (the
 * CLI and the bridge) use one file. Writes run as BEGIN IMMEDIATE ->
 * read version -> compare -> insert/update -> COMMIT, so check-and-set is
 * atomic across processes. Waiting for the write lock is bounded by
 * min(5 s, the context's io_timeout_ms); past it the call fails with
 * CT_E_STORE "store is busy". The wait polls with a short capped back-off
 * (sq_busy) rather than SQLite's default, which sleeps up to 100 ms at a
 * time and lets a busy writer starve the others.
 *
 * Threads: one connection per store, opened SQLITE_OPEN_FULLMUTEX, and every
 * method holds the store's own mutex for its whole statement sequence (a
 * transaction spans several calls into SQLite, which FULLMUTEX alone would
 * not keep together). So one store may be used by several threads at once.
 * Do not use a store across fork(): open a new one in the child.
 *
 * Durability: synchronous=FULL. In WAL mode NORMAL may lose the last
 * commits on power loss (the database stays consistent, but a commit that
 * was reported may be rolled back). For the one-time bootstrap claim
 * (put with CT_STORE_CREATE) that would let a second claimant win after a
 * crash although the first was told it had won, so every commit is synced.
 *
 * Secret hygiene: secure_delete=ON makes SQLite overwrite deleted and
 * replaced record bytes (cells and freed pages) with zeros. In WAL mode the
 * old page images also sit in the -wal file until it is checkpointed and
 * truncated, so after every delete or overwrite we run a best-effort
 * TRUNCATE checkpoint (waiting at most SQ_SCRUB_WAIT_MS for readers; if it
 * cannot complete, the frames go at the next checkpoint or the last close).
 * Values go into SQLite straight from the caller's buffer (bound static) and
 * come out of the column straight into a ct_secret. SQLite's own page cache
 * holds database pages in ordinary heap memory that is not wiped when freed;
 * that cannot be changed from a library without a process-wide allocator.
 * Error messages carry keys, paths and SQLite's text, never a value.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SQ_SCHEMA_VERSION 1
#define SQ_FORMAT "cloudtaser-store"
/* PRAGMA application_id "CTs1", so file(1) can tell what the file is. */
#define SQ_APPLICATION_ID "1129607985"
/* Upper bound on waiting for another writer's lock. */
#define SQ_BUSY_MS_MAX 5000
/* How long the post-delete WAL scrub may wait for readers. */
#define SQ_SCRUB_WAIT_MS 100

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_GET,
    ST_VERSION,
    ST_INSERT,
    ST_UPDATE,
    ST_DELETE,
    ST_LIST_RANGE,
    ST_LIST_FROM,
    ST_COUNT_
};

static const char *const sq_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_GET] = "SELECT value, version FROM kv WHERE key = ?1",
    [ST_VERSION] = "SELECT version FROM kv WHERE key = ?1",
    [ST_INSERT] = "INSERT INTO kv(key, value, version, updated_ms) VALUES (?1, ?2, 1, ?3)",
    [ST_UPDATE] = ("UPDATE kv SET value = ?2, version = version + 1, updated_ms = ?3 "
                   "WHERE key = ?1"),
    [ST_DELETE] = "DELETE FROM kv WHERE key = ?1",
    /* A range, not LIKE: '_' and '%' in keys must not be wildcards. */
    [ST_LIST_RANGE] = "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key",
    [ST_LIST_FROM] = "SELECT key FROM kv WHERE key >= ?1 ORDER BY key",
};

struct sq_store {
    pthread_mutex_t mu;
    int mu_ok;
    ct_ctx *ctx;
    char *path; /* as given, for messages */
    sqlite3 *db;
    int busy_ms;          /* lock wait budget of ordinary operations */
    int wait_ms;          /* budget of the current operation (busy_ms or less) */
    int64_t busy_deadline; /* of the current wait, set by sq_busy */
    sqlite3_stmt *st[ST_COUNT_];
};

/* ---- errors ---- */

/* Fills err from the connection's last error. Never includes a value. */
static ct_err sq_fail(struct sq_store *q, ct_error *err, int rc, const char *what)
{
    int prim = rc & 0xff;
    const char *msg = q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc);
    int32_t os = q->db ? (int32_t)sqlite3_system_errno(q->db) : 0;
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
        return ctp_err(err, CT_E_STORE, os, "store %s is busy (%s: %s)", q->path, what, msg);
    if (prim == SQLITE_NOMEM)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory in SQLite (%s)", what);
    return ctp_err(err, CT_E_STORE, os, "store %s: %s: %s (SQLite code %d)", q->path, what,
                   msg, rc);
}

static void sq_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Steps a statement that returns no rows, then resets it. */
static int sq_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void sq_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/*
 * Busy handler. SQLite's own (sqlite3_busy_timeout) backs off to 100 ms
 * sleeps, so a waiter sleeps through whole bursts of another process's
 * writes and may starve until they end. We poll with a short capped back-off
 * (0.1 ms doubling to 6.4 ms) until the deadline of this wait.
 */
static int sq_busy(void *user, int count)
{
    struct sq_store *q = user;
    int64_t now = ctp_mono_ms();
    long us;
    if (count == 0)
        q->busy_deadline = now + q->wait_ms;
    if (now >= q->busy_deadline)
        return 0; /* give up: SQLITE_BUSY */
    us = 100L << (count < 6 ? count : 6);
    if (us / 1000 >= q->busy_deadline - now)
        us = (long)(q->busy_deadline - now) * 1000;
    {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return 1;
}

/* ---- transactions ---- */

/*
 * BEGIN IMMEDIATE takes the write lock at once, so the version we read next
 * cannot change before we write. The busy handler already waits up to
 * busy_ms; we retry too, because SQLite skips the handler in some cases
 * (e.g. SQLITE_BUSY_RECOVERY), but never past the same deadline.
 */
static ct_err sq_begin(struct sq_store *q, ct_error *err)
{
    int64_t deadline = ctp_mono_ms() + q->busy_ms;
    for (;;) {
        int rc = sq_run(q->st[ST_BEGIN]);
        if (rc == SQLITE_OK)
            return CT_OK;
        if ((rc & 0xff) != SQLITE_BUSY || ctp_mono_ms() >= deadline)
            return sq_fail(q, err, rc, "begin transaction");
        sq_sleep_ms(2);
    }
}

static ct_err sq_commit(struct sq_store *q, ct_error *err)
{
    int rc = sq_run(q->st[ST_COMMIT]);
    return rc == SQLITE_OK ? CT_OK : sq_fail(q, err, rc, "commit");
}

/* Rolls back if a transaction is still open (COMMIT may have failed either way). */
static void sq_rollback(struct sq_store *q)
{
    if (!sqlite3_get_autocommit(q->db))
        (void)sq_run(q->st[ST_ROLLBACK]);
}

/*
 * Pushes replaced or deleted page images out of the -wal file: a TRUNCATE
 * checkpoint copies them into the database (where secure_delete has zeroed
 * the old record) and cuts the WAL to zero bytes. Best effort and bounded:
 * a reader in another process may keep it from completing.
 */
static void sq_scrub_wal(struct sq_store *q)
{
    int rc;
    q->wait_ms = SQ_SCRUB_WAIT_MS < q->busy_ms ? SQ_SCRUB_WAIT_MS : q->busy_ms;
    rc = sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    q->wait_ms = q->busy_ms;
    if (rc != SQLITE_OK)
        ctp_log(q->ctx, CT_LOG_DEBUG, "store.sqlite.checkpoint",
                "WAL checkpoint of %s deferred: %s", q->path, sqlite3_errstr(rc));
}

/* ---- methods ---- */

static ct_err sq_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                     void *user)
{
    struct sq_store *q = user;
    sqlite3_stmt *st = q->st[ST_GET];
    ct_err rc;
    int r;

    pthread_mutex_lock(&q->mu);
    if ((r = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC)) != SQLITE_OK) {
        rc = sq_fail(q, err, r, "get");
        goto out;
    }
    r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        rc = ctp_err(err, CT_E_NOTFOUND, 0, "no record with key '%s'", key);
    } else if (r == SQLITE_ROW) {
        /* The blob belongs to SQLite: copy it straight into the secret. */
        const void *p = sqlite3_column_blob(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        sqlite3_int64 v = sqlite3_column_int64(st, 1);
        if ((!p && n > 0) || n < 0) {
            rc = sq_fail(q, err, sqlite3_errcode(q->db), "get");
        } else if (v < 1) {
            rc = ctp_err(err, CT_E_STORE, 0, "store %s: record '%s' has invalid version %lld",
                         q->path, key, (long long)v);
        } else if ((rc = ct_secret_from(p, (size_t)n, value, err)) == CT_OK) {
            *version = (uint64_t)v;
        }
    } else {
        rc = sq_fail(q, err, r, "get");
    }
out:
    sq_done(st);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

static ct_err sq_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                     uint64_t *new_version, ct_error *err, void *user)
{
    struct sq_store *q = user;
    sqlite3_stmt *st;
    sqlite3_int64 cur = 0;
    int found = 0, r, in_tx = 0;
    ct_err rc;

    pthread_mutex_lock(&q->mu);
    if ((rc = sq_begin(q, err)) != CT_OK)
        goto out;
    in_tx = 1;

    st = q->st[ST_VERSION];
    if ((r = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC)) != SQLITE_OK) {
        rc = sq_fail(q, err, r, "put");
        goto out;
    }
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        found = 1;
        cur = sqlite3_column_int64(st, 0);
    } else if (r != SQLITE_DONE) {
        rc = sq_fail(q, err, r, "put: read version");
        sq_done(st);
        goto out;
    }
    sq_done(st);

    if (expected == CT_STORE_CREATE && found) {
        rc = ctp_err(err, CT_E_CONFLICT, 0, "key '%s' already exists (version %lld)", key,
                     (long long)cur);
        goto out;
    }
    if (expected > 0 && (!found || cur != expected)) {
        if (found)
            rc = ctp_err(err, CT_E_CONFLICT, 0,
                         "key '%s' is at version %lld, not the expected %lld", key,
                         (long long)cur, (long long)expected);
        else
            rc = ctp_err(err, CT_E_CONFLICT, 0,
                         "key '%s' does not exist (expected version %lld)", key,
                         (long long)expected);
        goto out;
    }
    if (found && (cur < 1 || cur == INT64_MAX)) {
        rc = ctp_err(err, CT_E_STORE, 0, "store %s: record '%s' has invalid version %lld",
                     q->path, key, (long long)cur);
        goto out;
    }

    st = q->st[found ? ST_UPDATE : ST_INSERT];
    r = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (r == SQLITE_OK) {
        /* A 0-byte value is an empty BLOB, never NULL. */
        if (len == 0)
            r = sqlite3_bind_zeroblob(st, 2, 0);
        else
            r = sqlite3_bind_blob64(st, 2, value, (sqlite3_uint64)len, SQLITE_STATIC);
    }
    if (r == SQLITE_OK)
        r = sqlite3_bind_int64(st, 3, (sqlite3_int64)ct_ctx_wall_ms(q->ctx));
    if (r == SQLITE_OK) {
        r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            r = SQLITE_OK;
    }
    if (r != SQLITE_OK) {
        rc = sq_fail(q, err, r, found ? "put: update" : "put: insert");
        sq_done(st);
        goto out;
    }
    sq_done(st);

    if ((rc = sq_commit(q, err)) != CT_OK)
        goto out;
    in_tx = 0;
    *new_version = found ? (uint64_t)cur + 1 : 1;
    if (found)
        sq_scrub_wal(q); /* the old value's pages */
out:
    if (in_tx)
        sq_rollback(q);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

static ct_err sq_del(const char *key, ct_error *err, void *user)
{
    struct sq_store *q = user;
    sqlite3_stmt *st = q->st[ST_DELETE];
    int r, in_tx = 0, changed = 0;
    ct_err rc;

    pthread_mutex_lock(&q->mu);
    if ((rc = sq_begin(q, err)) != CT_OK)
        goto out;
    in_tx = 1;
    r = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (r == SQLITE_OK)
        r = sqlite3_step(st);
    if (r != SQLITE_DONE) {
        rc = sq_fail(q, err, r, "delete");
        sq_done(st);
        goto out;
    }
    changed = sqlite3_changes(q->db);
    sq_done(st);
    if (!changed) {
        rc = ctp_err(err, CT_E_NOTFOUND, 0, "no record with key '%s'", key);
        goto out; /* rolled back: nothing was written */
    }
    if ((rc = sq_commit(q, err)) != CT_OK)
        goto out;
    in_tx = 0;
    sq_scrub_wal(q);
out:
    if (in_tx)
        sq_rollback(q);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/*
 * The smallest string greater than every string that starts with prefix:
 * drop trailing 0xff bytes and increment the last byte. Returns its length,
 * or 0 when there is none (empty prefix or all 0xff): no upper bound.
 */
static size_t prefix_successor(const char *prefix, char *out, size_t cap)
{
    size_t n = strlen(prefix);
    if (n >= cap)
        return 0;
    memcpy(out, prefix, n);
    while (n > 0 && (unsigned char)out[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    out[n] = '\0';
    return n;
}

static ct_err sq_list(const char *prefix, ct_strlist *out, ct_error *err, void *user)
{
    struct sq_store *q = user;
    char upper[CT_STORE_KEY_MAX + 2];
    size_t ulen = prefix_successor(prefix, upper, sizeof upper);
    sqlite3_stmt *st = q->st[ulen ? ST_LIST_RANGE : ST_LIST_FROM];
    ct_err rc = CT_OK;
    int r;

    pthread_mutex_lock(&q->mu);
    r = sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    if (r == SQLITE_OK && ulen)
        r = sqlite3_bind_text(st, 2, upper, (int)ulen, SQLITE_STATIC);
    if (r != SQLITE_OK) {
        rc = sq_fail(q, err, r, "list");
        goto out;
    }
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *k = sqlite3_column_text(st, 0);
        if (!k) {
            rc = sq_fail(q, err, sqlite3_errcode(q->db), "list");
            goto out;
        }
        if ((rc = ct_strlist_append(out, (const char *)k, err)) != CT_OK)
            goto out;
    }
    if (r != SQLITE_DONE)
        rc = sq_fail(q, err, r, "list");
out:
    sq_done(st);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

static void sq_destroy(void *user)
{
    struct sq_store *q = user;
    size_t i;
    if (!q)
        return;
    for (i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(q->st[i]);
    /* The last connection to close checkpoints and removes the -wal file. */
    if (q->db && sqlite3_close(q->db) != SQLITE_OK)
        ctp_log(q->ctx, CT_LOG_WARNING, "store.sqlite.close", "closing %s: %s", q->path,
                sqlite3_errmsg(q->db));
    if (q->mu_ok)
        pthread_mutex_destroy(&q->mu);
    free(q->path);
    free(q);
}

/* ---- opening ---- */

/* Refuses a file with any group/other permission bit. Missing is fine. */
static ct_err check_mode(const char *file, int must_exist, ct_error *err)
{
    struct stat sb;
    if (stat(file, &sb) != 0) {
        int e = errno;
        if (e == ENOENT && !must_exist)
            return CT_OK;
        return ctp_err(err, e == EACCES ? CT_E_DENIED : CT_E_STORE, e, "cannot stat %s: %s",
                       file, strerror(e));
    }
    if (!S_ISREG(sb.st_mode))
        return ctp_err(err, CT_E_STORE, 0, "store %s is not a regular file", file);
    if (sb.st_mode & (S_IRWXG | S_IRWXO))
        return ctp_err(err, CT_E_DENIED, 0,
                       "%s is accessible by group or others (mode %03o); it holds private "
                       "keys: run 'chmod 600 %s'",
                       file, (unsigned)(sb.st_mode & 0777), file);
    return CT_OK;
}

/* Makes the new directory entry durable (best effort). */
static void fsync_parent(const char *path)
{
    char *dir = ctp_strdup(path);
    char *slash;
    int fd;
    if (!dir)
        return;
    slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/*
 * Creates the file with mode 0600, or checks the permissions of an existing
 * one (and of its -wal/-shm files, which SQLite would otherwise reuse as
 * they are).
 */
static ct_err prepare_file(const char *path, int *created, ct_error *err)
{
    char side[4096];
    int fd, e;
    ct_err rc;

    *created = 0;
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd >= 0) {
        /* 0600 whatever the umask (a umask may only have removed bits) */
        if (fchmod(fd, 0600) != 0) {
            e = errno;
            close(fd);
            return ctp_err(err, CT_E_STORE, e, "cannot set the mode of %s: %s", path,
                           strerror(e));
        }
        close(fd);
        fsync_parent(path);
        *created = 1;
        return CT_OK;
    }
    e = errno;
    if (e != EEXIST) {
        if (e == ENOENT || e == ENOTDIR)
            return ctp_err(err, CT_E_STORE, e,
                           "cannot create store %s: the directory does not exist", path);
        return ctp_err(err, (e == EACCES || e == EPERM) ? CT_E_DENIED : CT_E_STORE, e,
                       "cannot create store %s: %s", path, strerror(e));
    }
    /* It exists (or a concurrent creator has just made it: 0600 and empty). */
    if ((rc = check_mode(path, 1, err)) != CT_OK)
        return rc;
    if ((size_t)snprintf(side, sizeof side, "%s-wal", path) >= sizeof side)
        return ctp_err(err, CT_E_INVALID, 0, "store path too long");
    if ((rc = check_mode(side, 0, err)) != CT_OK)
        return rc;
    snprintf(side, sizeof side, "%s-shm", path);
    return check_mode(side, 0, err);
}

enum { SQ_EMPTY, SQ_OURS, SQ_FOREIGN };

/* Runs a one-row query; copies column 0 as int64 or text. */
static int sq_query_meta(struct sq_store *q, const char *name, sqlite3_int64 *ival,
                         char *tval, size_t tcap, int *type)
{
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v2(q->db, "SELECT value FROM meta WHERE name = ?1", -1, &st, NULL);
    *type = SQLITE_NULL;
    if (r != SQLITE_OK)
        goto out;
    if ((r = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC)) != SQLITE_OK)
        goto out;
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *type = sqlite3_column_type(st, 0);
        if (ival)
            *ival = sqlite3_column_int64(st, 0);
        if (tval && tcap) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(tval, tcap, "%s", t ? (const char *)t : "");
        }
        r = SQLITE_OK;
    } else if (r == SQLITE_DONE) {
        r = SQLITE_OK;
    }
out:
    sqlite3_finalize(st);
    return r;
}

/*
 * Reads what the file holds without writing: nothing (a new or empty file),
 * our schema (and its version), or something else. A file that is not an
 * SQLite database fails here with SQLITE_NOTADB.
 */
static ct_err sq_inspect(struct sq_store *q, int *state, sqlite3_int64 *schema, ct_error *err)
{
    sqlite3_stmt *st = NULL;
    sqlite3_int64 total = 0, has_meta = 0;
    char fmt[64];
    int r, type;
    ct_err rc = CT_OK;

    *state = SQ_FOREIGN;
    *schema = 0;
    r = sqlite3_prepare_v2(q->db,
                           "SELECT count(*), "
                           "coalesce(sum(type = 'table' AND name = 'meta'), 0) "
                           "FROM sqlite_schema",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            total = sqlite3_column_int64(st, 0);
            has_meta = sqlite3_column_int64(st, 1);
            r = SQLITE_OK;
        }
    }
    if (r != SQLITE_OK) {
        if ((r & 0xff) == SQLITE_NOTADB)
            rc = ctp_err(err, CT_E_STORE, 0,
                         "%s is not a cloudtaser store (not an SQLite database)", q->path);
        else
            rc = sq_fail(q, err, r, "reading the schema");
        goto out;
    }
    if (total == 0) {
        *state = SQ_EMPTY;
        goto out;
    }
    if (!has_meta)
        goto foreign;
    r = sq_query_meta(q, "format", NULL, fmt, sizeof fmt, &type);
    if ((r & 0xff) == SQLITE_ERROR) /* e.g. a "meta" table without our columns */
        goto foreign;
    if (r != SQLITE_OK) {
        rc = sq_fail(q, err, r, "reading the store format");
        goto out;
    }
    if (type != SQLITE_TEXT || strcmp(fmt, SQ_FORMAT) != 0)
        goto foreign;
    r = sq_query_meta(q, "schema_version", schema, NULL, 0, &type);
    if (r != SQLITE_OK) {
        rc = sq_fail(q, err, r, "reading the schema version");
        goto out;
    }
    if (type != SQLITE_INTEGER || *schema < 1) {
        rc = ctp_err(err, CT_E_STORE, 0, "store %s has an invalid schema version", q->path);
        goto out;
    }
    *state = SQ_OURS;
    goto out;
foreign:
    rc = ctp_err(err, CT_E_STORE, 0,
                 "%s is not a cloudtaser store (an SQLite database of another program)",
                 q->path);
out:
    sqlite3_finalize(st);
    return rc;
}

static ct_err sq_check_schema(struct sq_store *q, int state, sqlite3_int64 schema,
                              ct_error *err)
{
    if (state == SQ_OURS && schema > SQ_SCHEMA_VERSION)
        return ctp_err(err, CT_E_STORE, 0,
                       "store %s has schema version %lld, newer than this library "
                       "supports (%d): upgrade cloudtaser",
                       q->path, (long long)schema, SQ_SCHEMA_VERSION);
    return CT_OK;
}

#define SQ_STR_(x) #x
#define SQ_STR(x) SQ_STR_(x)

/* Creates the schema unless a concurrent opener already did. */
static ct_err sq_init_schema(struct sq_store *q, ct_error *err)
{
    static const char ddl[] =
        "CREATE TABLE meta(name TEXT PRIMARY KEY NOT NULL, value NOT NULL);"
        "CREATE TABLE kv(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL,"
        " version INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
        "INSERT INTO meta(name, value) VALUES ('format', '" SQ_FORMAT "'),"
        " ('schema_version', " SQ_STR(SQ_SCHEMA_VERSION) ");"
        "PRAGMA application_id = " SQ_APPLICATION_ID ";";
    sqlite3_int64 schema;
    int state, r;
    ct_err rc;

    if ((rc = sq_begin(q, err)) != CT_OK)
        return rc;
    if ((rc = sq_inspect(q, &state, &schema, err)) != CT_OK)
        goto out;
    if ((rc = sq_check_schema(q, state, schema, err)) != CT_OK)
        goto out;
    if (state == SQ_EMPTY && (r = sqlite3_exec(q->db, ddl, NULL, NULL, NULL)) != SQLITE_OK) {
        rc = sq_fail(q, err, r, "creating the schema");
        goto out;
    }
    rc = sq_commit(q, err);
out:
    sq_rollback(q);
    return rc;
}

static ct_err sq_pragma(struct sq_store *q, const char *sql, ct_error *err)
{
    int r = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    return r == SQLITE_OK ? CT_OK : sq_fail(q, err, r, sql);
}

/* Switches to WAL and checks that it took. */
static ct_err sq_wal(struct sq_store *q, ct_error *err)
{
    sqlite3_stmt *st = NULL;
    ct_err rc = CT_OK;
    int64_t deadline = ctp_mono_ms() + q->busy_ms;
    int r = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    /*
     * Switching modes needs an exclusive lock, and SQLite may answer BUSY
     * without consulting the busy handler (to avoid a deadlock) while other
     * processes open the same new file: retry within the busy deadline, as
     * sq_begin does.
     */
    while (r == SQLITE_OK && ((r = sqlite3_step(st)) & 0xff) == SQLITE_BUSY &&
           ctp_mono_ms() < deadline) {
        sqlite3_reset(st);
        sq_sleep_ms(2);
        r = SQLITE_OK;
    }
    if (r == SQLITE_ROW) {
        const unsigned char *mode = sqlite3_column_text(st, 0);
        if (!mode || strcmp((const char *)mode, "wal") != 0)
            rc = ctp_err(err, CT_E_STORE, 0, "store %s: cannot switch to WAL mode (got %s)",
                         q->path, mode ? (const char *)mode : "nothing");
    } else {
        rc = sq_fail(q, err, r, "setting WAL mode");
    }
    sqlite3_finalize(st);
    return rc;
}

static ct_err sq_open(struct sq_store *q, const char *path, ct_error *err)
{
    char *fname = NULL;
    sqlite3_int64 schema;
    int r, state, i;
    ct_err rc = CT_OK;

    /* A relative name gets "./" so it can never be ":memory:" or a URI. */
    if (path[0] != '/') {
        size_t n = strlen(path);
        fname = malloc(n + 3);
        if (!fname)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        memcpy(fname, "./", 2);
        memcpy(fname + 2, path, n + 1);
    }
    /* No SQLITE_OPEN_CREATE: the file exists, we made it (with its mode). */
    r = sqlite3_open_v2(fname ? fname : path, &q->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
    free(fname);
    if (r != SQLITE_OK) {
        rc = ctp_err(err, CT_E_STORE, q->db ? sqlite3_system_errno(q->db) : 0,
                     "cannot open store %s: %s", q->path,
                     q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(r));
        goto out;
    }
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_handler(q->db, sq_busy, q);
    /* Hardening: the schema is ours alone, nothing in the file runs as code. */
    sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(q->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    sqlite3_db_config(q->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, (int *)NULL);
    sqlite3_db_config(q->db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, (int *)NULL);

    /* Read-only checks first: a foreign or newer file is left untouched. */
    if ((rc = sq_inspect(q, &state, &schema, err)) != CT_OK)
        goto out;
    if ((rc = sq_check_schema(q, state, schema, err)) != CT_OK)
        goto out;
    if (sqlite3_db_readonly(q->db, "main") == 1) {
        rc = ctp_err(err, CT_E_DENIED, 0, "store %s is not writable", q->path);
        goto out;
    }

    if ((rc = sq_wal(q, err)) != CT_OK ||
        (rc = sq_pragma(q, "PRAGMA synchronous = FULL", err)) != CT_OK ||
        (rc = sq_pragma(q, "PRAGMA secure_delete = ON", err)) != CT_OK ||
        (rc = sq_pragma(q, "PRAGMA journal_size_limit = 0", err)) != CT_OK)
        goto out;

    for (i = ST_BEGIN; i <= ST_ROLLBACK; i++) {
        r = sqlite3_prepare_v3(q->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
                               NULL);
        if (r != SQLITE_OK) {
            rc = sq_fail(q, err, r, "preparing statements");
            goto out;
        }
    }
    if (state == SQ_EMPTY && (rc = sq_init_schema(q, err)) != CT_OK)
        goto out;
    for (i = ST_GET; i < ST_COUNT_; i++) {
        r = sqlite3_prepare_v3(q->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
                               NULL);
        if (r != SQLITE_OK) {
            rc = sq_fail(q, err, r, "preparing statements");
            goto out;
        }
    }
out:
    return rc;
}

ct_err ct_store_new_sqlite(ct_ctx *ctx, const char *path, ct_store **out, ct_error *err)
{
    static const ct_store_ops ops = {
        CT_STORE_OPS_VERSION, CT_STORE_F_CAS | CT_STORE_F_SHARED, sq_get, sq_put, sq_del,
        sq_list, sq_destroy,
    };
    struct sq_store *q = NULL;
    int created = 0, e;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_new_sqlite: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_new_sqlite: no path");
    if (!sqlite3_threadsafe())
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "SQLite was built without thread support");

    q = ctp_calloc(1, sizeof *q);
    if (!q || !(q->path = ctp_strdup(path))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if ((e = pthread_mutex_init(&q->mu, NULL)) != 0) {
        rc = ctp_err(err, CT_E_NOMEM, e, "cannot create the store mutex");
        goto out;
    }
    q->mu_ok = 1;
    q->ctx = ctx;
    q->busy_ms = ctp_timeout(ctx, -1);
    if (q->busy_ms > SQ_BUSY_MS_MAX)
        q->busy_ms = SQ_BUSY_MS_MAX;
    q->wait_ms = q->busy_ms;

    if ((rc = prepare_file(path, &created, err)) != CT_OK)
        goto out;
    if ((rc = sq_open(q, path, err)) != CT_OK)
        goto out;
    if ((rc = ct_store_new(ctx, &ops, q, out, err)) != CT_OK)
        goto out;
    ctp_log(ctx, CT_LOG_DEBUG, "store.sqlite.open", "opened store %s%s", path,
            created ? " (created)" : "");
    q = NULL; /* owned by the store now */
out:
    sq_destroy(q);
    return rc;
}
