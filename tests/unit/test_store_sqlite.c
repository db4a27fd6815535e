/*
 * test_store_sqlite.c - what only the SQLite store promises: file modes,
 * refusing foreign, newer or exposed files, persistence, secure deletion
 * on disk, lock waiting, concurrent creation. The shared semantics are in
 * the conformance suite (tests/conformance).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* A temporary directory and the store path inside it. */
struct fx {
    char *dir;
    char path[600];
    char wal[620];
    char shm[620];
    ct_ctx *ctx;
};

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof *f);
    f->dir = ct_test_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    snprintf(f->wal, sizeof f->wal, "%s-wal", f->path);
    snprintf(f->shm, sizeof f->shm, "%s-shm", f->path);
    f->ctx = ct_test_ctx();
}

static void fx_free(struct fx *f)
{
    ct_ctx_free(f->ctx);
    ct_test_rmrf(f->dir);
    free(f->dir);
}

static ct_store *open_ok(struct fx *f)
{
    ct_store *s = NULL;
    ct_error err;
    ck_ok(ct_store_new_sqlite(f->ctx, f->path, &s, &err), &err);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void put_ok(ct_store *s, const char *key, const void *val, size_t len)
{
    ct_error err;
    ck_ok(ct_store_put(s, key, val, len, CT_STORE_ANY, NULL, &err), &err);
}

static unsigned mode_of(const char *p)
{
    struct stat sb;
    ck_assert_msg(stat(p, &sb) == 0, "stat %s: %s", p, strerror(errno));
    return (unsigned)(sb.st_mode & 07777);
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Reads a whole file (NULL and *len 0 if it does not exist). */
static uint8_t *slurp(const char *p, size_t *len)
{
    FILE *fp = fopen(p, "rb");
    uint8_t *buf = NULL;
    long n;
    *len = 0;
    if (!fp)
        return NULL;
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    ck_assert_int_ge(n, 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* 1 if the file contains `needle`. */
static int file_contains(const char *p, const char *needle)
{
    size_t len;
    uint8_t *buf = slurp(p, &len);
    int found = buf && memmem(buf, len, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

/* Opens the file with SQLite directly, bypassing the store. */
static sqlite3 *raw_open(const char *path, int create)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    ck_assert_int_eq(sqlite3_open_v2(path, &db, flags, NULL), SQLITE_OK);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

/* The first column of the first row as text (static buffer). */
static const char *raw_query(sqlite3 *db, const char *sql)
{
    static char out[256];
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, sizeof out, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static void write_file(const char *p, const void *data, size_t len, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* ---- file modes ---- */

static void check_create_mode(mode_t mask)
{
    struct fx f;
    ct_store *s;
    mode_t old = umask(mask);
    fx_init(&f);
    ck_assert(!exists(f.path));
    s = open_ok(&f);
    ck_assert_msg(mode_of(f.path) == 0600, "umask %03o: db mode %03o", (unsigned)mask,
                  mode_of(f.path));
    put_ok(s, "k", "v", 1);
    /* SQLite makes -wal and -shm with the database file's mode */
    ck_assert(exists(f.wal));
    ck_assert(exists(f.shm));
    ck_assert_msg(mode_of(f.wal) == 0600, "umask %03o: -wal mode %03o", (unsigned)mask,
                  mode_of(f.wal));
    ck_assert_msg(mode_of(f.shm) == 0600, "umask %03o: -shm mode %03o", (unsigned)mask,
                  mode_of(f.shm));
    ct_store_free(s);
    umask(old);
    fx_free(&f);
}

START_TEST(creates_0600_whatever_the_umask)
{
    check_create_mode(0);     /* nothing removed: 0600 must come from us */
    check_create_mode(022);   /* the usual */
    check_create_mode(0277);  /* even owner write removed */
}
END_TEST

START_TEST(refuses_group_or_other_access)
{
    static const mode_t bad[] = {0644, 0640, 0604, 0660, 0606, 0610, 0601, 0666};
    struct fx f;
    ct_store *s = NULL;
    ct_error err;
    size_t i;
    fx_init(&f);
    s = open_ok(&f);
    put_ok(s, "k", "v", 1);
    ct_store_free(s);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(chmod(f.path, bad[i]), 0);
        ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_DENIED, &err);
        ck_assert_ptr_null(s);
        ck_assert_msg(strstr(err.message, "chmod 600") != NULL, "message: %s", err.message);
        ck_assert_msg(strstr(err.message, f.path) != NULL, "message: %s", err.message);
        ck_assert_int_eq((int)mode_of(f.path), (int)bad[i]); /* left as it was */
    }
    ck_assert_int_eq(chmod(f.path, 0600), 0);
    s = open_ok(&f);
    ct_store_free(s);
    /* an exposed -wal or -shm left behind is refused too */
    write_file(f.wal, "", 0, 0644);
    ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_DENIED, &err);
    ck_assert_msg(strstr(err.message, "-wal") != NULL, "message: %s", err.message);
    ck_assert_int_eq(chmod(f.wal, 0600), 0);
    write_file(f.shm, "", 0, 0604);
    ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_DENIED, &err);
    ck_assert_int_eq(chmod(f.shm, 0600), 0);
    s = open_ok(&f);
    ct_store_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(refuses_read_only_file)
{
    struct fx f;
    ct_store *s = NULL;
    ct_error err;
    if (geteuid() == 0)
        return; /* root can write a 0400 file: nothing to test */
    fx_init(&f);
    s = open_ok(&f);
    ct_store_free(s);
    ck_assert_int_eq(chmod(f.path, 0400), 0);
    ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_DENIED, &err);
    fx_free(&f);
}
END_TEST

/* ---- refusing files that are not ours ---- */

START_TEST(refuses_non_sqlite_file)
{
    static const char text[] = "this is not a database, it is a text file\n";
    uint8_t junk[8192];
    struct fx f;
    ct_store *s = NULL;
    ct_error err;
    size_t len, i;
    uint8_t *after;
    fx_init(&f);
    write_file(f.path, text, sizeof text - 1, 0600);
    ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_STORE, &err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.message, "not a cloudtaser store") != NULL, "message: %s",
                  err.message);
    after = slurp(f.path, &len);
    ck_assert_uint_eq(len, sizeof text - 1);
    ck_assert(memcmp(after, text, len) == 0); /* untouched */
    free(after);
    ck_assert(!exists(f.wal));
    /* a larger binary file */
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    write_file(f.path, junk, sizeof junk, 0600);
    ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_STORE, &err);
    ck_assert_msg(strstr(err.message, "not a cloudtaser store") != NULL, "message: %s",
                  err.message);
    after = slurp(f.path, &len);
    ck_assert_uint_eq(len, sizeof junk);
    ck_assert(memcmp(after, junk, len) == 0);
    free(after);
    fx_free(&f);
}
END_TEST

/* Makes an SQLite file with the given schema; checks the store refuses it untouched. */
static void check_foreign(struct fx *f, const char *sql)
{
    ct_store *s = NULL;
    ct_error err;
    uint8_t *before, *after;
    size_t blen, alen;
    sqlite3 *db;
    unlink(f->path);
    db = raw_open(f->path, 1);
    raw_exec(db, sql);
    sqlite3_close(db);
    ck_assert_int_eq(chmod(f->path, 0600), 0);
    before = slurp(f->path, &blen);
    ck_err(ct_store_new_sqlite(f->ctx, f->path, &s, &err), CT_E_STORE, &err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.message, "not a cloudtaser store") != NULL, "%s: message: %s",
                  sql, err.message);
    after = slurp(f->path, &alen);
    ck_assert_msg(blen == alen && memcmp(before, after, blen) == 0, "%s: file changed", sql);
    ck_assert_msg(!exists(f->wal), "%s: switched to WAL", sql);
    free(before);
    free(after);
}

START_TEST(refuses_foreign_sqlite)
{
    struct fx f;
    fx_init(&f);
    check_foreign(&f, "CREATE TABLE foo(a, b); INSERT INTO foo VALUES (1, 2);");
    check_foreign(&f, "CREATE TABLE meta(x, y);");
    check_foreign(&f, "CREATE TABLE meta(name TEXT PRIMARY KEY, value);"
                      "INSERT INTO meta VALUES ('format', 'something-else');");
    check_foreign(&f, "CREATE TABLE meta(name TEXT PRIMARY KEY, value);"
                      "INSERT INTO meta VALUES ('schema_version', 1);");
    /* our kv table without the meta rows */
    check_foreign(&f, "CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB);");
    fx_free(&f);
}
END_TEST

START_TEST(refuses_newer_schema)
{
    struct fx f;
    ct_store *s;
    ct_error err;
    sqlite3 *db;
    fx_init(&f);
    s = open_ok(&f);
    put_ok(s, "k", "v", 1);
    ct_store_free(s);
    db = raw_open(f.path, 0);
    ck_assert_str_eq(raw_query(db, "SELECT value FROM meta WHERE name = 'schema_version'"),
                     "1");
    raw_exec(db, "UPDATE meta SET value = 2 WHERE name = 'schema_version'");
    sqlite3_close(db);
    s = NULL;
    ck_err(ct_store_new_sqlite(f.ctx, f.path, &s, &err), CT_E_STORE, &err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.message, "newer") != NULL, "message: %s", err.message);
    /* and back: the data is still there */
    db = raw_open(f.path, 0);
    raw_exec(db, "UPDATE meta SET value = 1 WHERE name = 'schema_version'");
    sqlite3_close(db);
    s = open_ok(&f);
    ct_store_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(schema_layout)
{
    struct fx f;
    ct_store *s;
    sqlite3 *db;
    fx_init(&f);
    s = open_ok(&f);
    put_ok(s, "k", "v", 1);
    ct_store_free(s);
    db = raw_open(f.path, 0);
    ck_assert_str_eq(raw_query(db, "PRAGMA journal_mode"), "wal");
    ck_assert_str_eq(raw_query(db, "SELECT value FROM meta WHERE name = 'format'"),
                     "cloudtaser-store");
    ck_assert_str_eq(raw_query(db, "SELECT group_concat(name, ',') FROM pragma_table_info('kv')"),
                     "key,value,version,updated_ms");
    ck_assert_str_eq(raw_query(db, "SELECT typeof(value) || version FROM kv"), "blob1");
    sqlite3_close(db);
    fx_free(&f);
}
END_TEST

static int64_t fixed_wall(void *user)
{
    (void)user;
    return 1700000000123LL;
}

START_TEST(updated_ms_from_context_clock)
{
    struct fx f;
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    ct_store *s = NULL;
    ct_error err;
    sqlite3 *db;
    fx_init(&f);
    o.wall_ms = fixed_wall;
    ck_ok(ct_ctx_new(&o, &ctx, &err), &err);
    ck_ok(ct_store_new_sqlite(ctx, f.path, &s, &err), &err);
    put_ok(s, "k", "v", 1);
    ct_store_free(s);
    ct_ctx_free(ctx);
    db = raw_open(f.path, 0);
    ck_assert_str_eq(raw_query(db, "SELECT updated_ms FROM kv WHERE key = 'k'"),
                     "1700000000123");
    sqlite3_close(db);
    fx_free(&f);
}
END_TEST

/* ---- persistence ---- */

START_TEST(reopen_keeps_data_and_versions)
{
    struct fx f;
    ct_store *s;
    ct_secret *v = NULL;
    ct_strlist *l = NULL;
    uint64_t ver = 0;
    ct_error err;
    fx_init(&f);
    s = open_ok(&f);
    put_ok(s, "a/x", "one", 3);
    put_ok(s, "a/x", "two", 3);
    put_ok(s, "a/x", "three", 5);
    put_ok(s, "a/y", "", 0);
    put_ok(s, "a/z", "gone", 4);
    ck_ok(ct_store_del(s, "a/z", &err), &err);
    ct_store_free(s);

    s = open_ok(&f);
    ck_ok(ct_store_get(s, "a/x", &v, &ver, &err), &err);
    ck_assert_uint_eq(ver, 3);
    ck_assert_uint_eq(ct_secret_len(v), 5);
    ck_assert(memcmp(ct_secret_data(v), "three", 5) == 0);
    ct_secret_free(v);
    ck_ok(ct_store_get(s, "a/y", &v, &ver, &err), &err);
    ck_assert_uint_eq(ct_secret_len(v), 0);
    ck_assert_uint_eq(ver, 1);
    ct_secret_free(v);
    v = NULL;
    ck_err(ct_store_get(s, "a/z", &v, &ver, &err), CT_E_NOTFOUND, &err);
    ck_ok(ct_store_list(s, "a/", &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 2);
    ct_strlist_free(l);
    /* CAS carries on from the stored version */
    ck_err(ct_store_put(s, "a/x", "x", 1, 2, NULL, &err), CT_E_CONFLICT, &err);
    ck_ok(ct_store_put(s, "a/x", "four", 4, 3, &ver, &err), &err);
    ck_assert_uint_eq(ver, 4);
    ct_store_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(empty_existing_file_is_initialised)
{
    struct fx f;
    ct_store *s;
    fx_init(&f);
    write_file(f.path, "", 0, 0600); /* as a concurrent creator leaves it */
    s = open_ok(&f);
    put_ok(s, "k", "v", 1);
    ct_store_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(relative_path_is_a_file)
{
    struct fx f;
    ct_store *s = NULL;
    ct_error err;
    char cwd[4096], p[700];
    fx_init(&f);
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(f.dir), 0);
    /* not SQLite's in-memory database: a file of that name */
    ck_ok(ct_store_new_sqlite(f.ctx, ":memory:", &s, &err), &err);
    put_ok(s, "k", "v", 1);
    ct_store_free(s);
    ck_ok(ct_store_new_sqlite(f.ctx, ":memory:", &s, &err), &err);
    ck_ok(ct_store_del(s, "k", &err), &err);
    ct_store_free(s);
    ck_assert_int_eq(chdir(cwd), 0);
    snprintf(p, sizeof p, "%s/:memory:", f.dir);
    ck_assert_int_eq((int)mode_of(p), 0600);
    fx_free(&f);
}
END_TEST

/* ---- bad paths ---- */

START_TEST(bad_paths)
{
    struct fx f;
    ct_store *s = (ct_store *)&s;
    ct_error err;
    char p[700];
    fx_init(&f);
    snprintf(p, sizeof p, "%s/no/such/dir/store.db", f.dir);
    ck_err(ct_store_new_sqlite(f.ctx, p, &s, &err), CT_E_STORE, &err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.message, "directory does not exist") != NULL, "message: %s",
                  err.message);
    ck_assert_msg(strstr(err.message, p) != NULL, "message: %s", err.message);
    /* a directory is not a store */
    ck_err(ct_store_new_sqlite(f.ctx, f.dir, &s, &err), CT_E_STORE, &err);
    /* a path through a regular file */
    write_file(f.path, "", 0, 0600);
    snprintf(p, sizeof p, "%s/sub", f.path);
    ck_err(ct_store_new_sqlite(f.ctx, p, &s, &err), CT_E_STORE, &err);
    ck_err(ct_store_new_sqlite(f.ctx, NULL, &s, &err), CT_E_INVALID, &err);
    ck_err(ct_store_new_sqlite(f.ctx, "", &s, &err), CT_E_INVALID, &err);
    ck_err(ct_store_new_sqlite(f.ctx, f.path, NULL, &err), CT_E_INVALID, &err);
    fx_free(&f);
}
END_TEST

/* ---- secure deletion on disk ---- */

static void make_marker(char *out, size_t cap)
{
    uint8_t r[8];
    ck_assert_int_eq(getrandom(r, sizeof r, 0), (ssize_t)sizeof r);
    snprintf(out, cap, "SECRET-MARKER-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7]);
}

static int anywhere(struct fx *f, const char *marker)
{
    return file_contains(f->path, marker) || file_contains(f->wal, marker) ||
           file_contains(f->shm, marker);
}

/* A value larger than a page, with the marker in every 4 KiB (overflow pages). */
static char *big_value(const char *marker, size_t len)
{
    char *v = malloc(len);
    size_t i, ml = strlen(marker);
    ck_assert_ptr_nonnull(v);
    for (i = 0; i < len; i++)
        v[i] = (char)('a' + i % 26);
    for (i = 0; i + ml < len; i += 4096)
        memcpy(v + i, marker, ml);
    return v;
}

START_TEST(secure_delete_on_disk)
{
    struct fx f;
    ct_store *s;
    char small[64], large[64], *big;
    ct_error err;
    fx_init(&f);
    make_marker(small, sizeof small);
    make_marker(large, sizeof large);
    big = big_value(large, 100000);
    s = open_ok(&f);
    put_ok(s, "keep", "other data", 10);
    put_ok(s, "k", small, strlen(small));
    put_ok(s, "big", big, 100000);
    put_ok(s, "keep2", "more data", 9);
    /* the scan can see them: otherwise this test proves nothing */
    ck_assert(anywhere(&f, small));
    ck_assert(anywhere(&f, large));
    ck_ok(ct_store_del(s, "k", &err), &err);
    ck_ok(ct_store_del(s, "big", &err), &err);
    /* while the store is still open: not in the database, -wal or -shm */
    ck_assert_msg(!anywhere(&f, small), "deleted small value still on disk");
    ck_assert_msg(!anywhere(&f, large), "deleted large value still on disk");
    ct_store_free(s);
    ck_assert(!anywhere(&f, small));
    ck_assert(!anywhere(&f, large));
    /* the rest is intact */
    s = open_ok(&f);
    ct_store_free(s);
    ck_assert(file_contains(f.path, "other data"));
    free(big);
    fx_free(&f);
}
END_TEST

START_TEST(overwrite_scrubs_old_value)
{
    struct fx f;
    ct_store *s;
    char small[64], large[64], *big;
    fx_init(&f);
    make_marker(small, sizeof small);
    make_marker(large, sizeof large);
    big = big_value(large, 50000);
    s = open_ok(&f);
    put_ok(s, "k", small, strlen(small));
    put_ok(s, "big", big, 50000);
    ck_assert(anywhere(&f, small));
    ck_assert(anywhere(&f, large));
    put_ok(s, "k", "replacement", 11);
    put_ok(s, "big", "small now", 9);
    ck_assert_msg(!anywhere(&f, small), "overwritten small value still on disk");
    ck_assert_msg(!anywhere(&f, large), "overwritten large value still on disk");
    ct_store_free(s);
    ck_assert(!anywhere(&f, small));
    ck_assert(!anywhere(&f, large));
    free(big);
    fx_free(&f);
}
END_TEST

/* ---- locking ---- */

START_TEST(busy_store_gives_up_in_time)
{
    struct fx f;
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    ct_store *s = NULL;
    ct_secret *v = NULL;
    ct_error err;
    sqlite3 *db;
    int64_t t0, ms;
    fx_init(&f);
    o.io_timeout_ms = 300; /* bounds the lock wait */
    ck_ok(ct_ctx_new(&o, &ctx, &err), &err);
    ck_ok(ct_store_new_sqlite(ctx, f.path, &s, &err), &err);
    put_ok(s, "k", "v1", 2);
    db = raw_open(f.path, 0);
    raw_exec(db, "BEGIN IMMEDIATE"); /* another writer holds the lock */
    t0 = ct_ctx_now_ms(NULL);
    ck_err(ct_store_put(s, "k", "v2", 2, CT_STORE_ANY, NULL, &err), CT_E_STORE, &err);
    ms = ct_ctx_now_ms(NULL) - t0;
    ck_assert_msg(strstr(err.message, "busy") != NULL, "message: %s", err.message);
    ck_assert_msg(ms >= 250 && ms < 5000, "gave up after %lld ms", (long long)ms);
    ck_err(ct_store_del(s, "k", &err), CT_E_STORE, &err);
    /* readers are not blocked by a writer (WAL) */
    ck_ok(ct_store_get(s, "k", &v, NULL, &err), &err);
    ct_secret_free(v);
    raw_exec(db, "COMMIT");
    put_ok(s, "k", "v3", 2);
    sqlite3_close(db);
    ct_store_free(s);
    ct_ctx_free(ctx);
    fx_free(&f);
}
END_TEST

struct holder {
    const char *path;
    int ms;
    pthread_barrier_t *locked;
};

static void *hold_lock(void *arg)
{
    struct holder *h = arg;
    sqlite3 *db = NULL;
    struct timespec ts = {0, h->ms * 1000000L};
    sqlite3_open_v2(h->path, &db, SQLITE_OPEN_READWRITE, NULL);
    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    pthread_barrier_wait(h->locked);
    nanosleep(&ts, NULL);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return NULL;
}

START_TEST(writer_waits_for_lock)
{
    struct fx f;
    ct_store *s;
    pthread_t th;
    pthread_barrier_t locked;
    struct holder h;
    uint64_t ver = 0;
    ct_error err;
    int64_t t0, ms;
    fx_init(&f);
    s = open_ok(&f);
    put_ok(s, "k", "v1", 2);
    ck_assert_int_eq(pthread_barrier_init(&locked, NULL, 2), 0);
    h.path = f.path;
    h.ms = 300;
    h.locked = &locked;
    ck_assert_int_eq(pthread_create(&th, NULL, hold_lock, &h), 0);
    pthread_barrier_wait(&locked);
    t0 = ct_ctx_now_ms(NULL);
    ck_ok(ct_store_put(s, "k", "v2", 2, 1, &ver, &err), &err);
    ms = ct_ctx_now_ms(NULL) - t0;
    pthread_join(th, NULL);
    pthread_barrier_destroy(&locked);
    ck_assert_uint_eq(ver, 2);
    ck_assert_msg(ms >= 100, "did not wait (%lld ms): was the lock held?", (long long)ms);
    ct_store_free(s);
    fx_free(&f);
}
END_TEST

/* K processes create the same new file at once; all must end up sharing it. */
START_TEST(concurrent_create)
{
    enum { K = 4 };
    struct fx f;
    pid_t pid[K];
    int go[2], i, status;
    ct_store *s;
    ct_strlist *l = NULL;
    ct_error err;
    fx_init(&f);
    ck_assert_int_eq(pipe(go), 0);
    for (i = 0; i < K; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0) {
            /* no Check calls in a child */
            ct_store *cs = NULL;
            char key[16], tmp;
            int code = 0;
            close(go[1]);
            alarm(60);
            while (read(go[0], &tmp, 1) < 0 && errno == EINTR)
                ;
            snprintf(key, sizeof key, "child/%d", i);
            if (ct_store_new_sqlite(f.ctx, f.path, &cs, &err) != CT_OK) {
                fprintf(stderr, "child %d: open: %s\n", i, err.message);
                code = 1;
            } else if (ct_store_put(cs, key, "x", 1, CT_STORE_CREATE, NULL, &err) != CT_OK) {
                fprintf(stderr, "child %d: put: %s\n", i, err.message);
                code = 2;
            }
            ct_store_free(cs);
            _exit(code);
        }
    }
    close(go[0]);
    close(go[1]); /* start */
    for (i = 0; i < K; i++) {
        ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "child %d: status %#x", i, status);
    }
    ck_assert_int_eq((int)mode_of(f.path), 0600);
    s = open_ok(&f);
    ck_ok(ct_store_list(s, "child/", &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), K);
    ct_strlist_free(l);
    ct_store_free(s);
    fx_free(&f);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("store_sqlite");
    TCase *tc = tcase_create("sqlite");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, creates_0600_whatever_the_umask);
    tcase_add_test(tc, refuses_group_or_other_access);
    tcase_add_test(tc, refuses_read_only_file);
    tcase_add_test(tc, refuses_non_sqlite_file);
    tcase_add_test(tc, refuses_foreign_sqlite);
    tcase_add_test(tc, refuses_newer_schema);
    tcase_add_test(tc, schema_layout);
    tcase_add_test(tc, updated_ms_from_context_clock);
    tcase_add_test(tc, reopen_keeps_data_and_versions);
    tcase_add_test(tc, empty_existing_file_is_initialised);
    tcase_add_test(tc, relative_path_is_a_file);
    tcase_add_test(tc, bad_paths);
    tcase_add_test(tc, secure_delete_on_disk);
    tcase_add_test(tc, overwrite_scrubs_old_value);
    tcase_add_test(tc, busy_store_gives_up_in_time);
    tcase_add_test(tc, writer_waits_for_lock);
    tcase_add_test(tc, concurrent_create);
    suite_add_tcase(s, tc);
    return s;
}
