/*
 * store_suite.c - the store conformance suite (see store_suite.h).
 *
 * Check passes a test only its loop index, so each factory is registered
 * in a small table and its tests are added as loop tests over exactly its
 * own index.
 */
#include "store_suite.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define MAX_FACTORIES 8

static const ct_store_factory *factories[MAX_FACTORIES];
static int nfactories;

/* One test's store. */
struct env {
    const ct_store_factory *f;
    ct_ctx *ctx;
    void *fx;
    ct_store *s;
};

static void env_open(struct env *e, int idx)
{
    ct_error err;
    ck_assert_int_lt(idx, nfactories);
    memset(e, 0, sizeof *e);
    e->f = factories[idx];
    e->ctx = ct_test_ctx();
    if (e->f->setup)
        ck_assert_msg(e->f->setup(e->ctx, &e->fx) == 0, "%s: setup failed", e->f->name);
    ck_ok(e->f->open(e->ctx, e->fx, &e->s, &err), &err);
    ck_assert_ptr_nonnull(e->s);
}

static void env_close(struct env *e)
{
    ct_store_free(e->s);
    e->s = NULL;
    if (e->f->teardown)
        e->f->teardown(e->fx);
    ct_ctx_free(e->ctx);
}

/* Asserts key holds exactly data[0..len) at version ver (0: any). */
static void expect_value(ct_store *s, const char *key, const void *data, size_t len,
                         uint64_t ver)
{
    ct_secret *v = NULL;
    uint64_t got = 0;
    ct_error err;
    ck_ok(ct_store_get(s, key, &v, &got, &err), &err);
    ck_assert_ptr_nonnull(v);
    ck_assert_msg(ct_secret_len(v) == len, "%s: length %zu, want %zu", key, ct_secret_len(v),
                  len);
    ck_assert_msg(len == 0 || memcmp(ct_secret_data(v), data, len) == 0, "%s: value differs",
                  key);
    if (ver)
        ck_assert_msg(got == ver, "%s: version %llu, want %llu", key, (unsigned long long)got,
                      (unsigned long long)ver);
    ct_secret_free(v);
}

static void expect_missing(ct_store *s, const char *key)
{
    ct_secret *v = (ct_secret *)&v; /* must be reset to NULL */
    uint64_t ver = 99;
    ct_error err;
    ck_err(ct_store_get(s, key, &v, &ver, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(v);
    ck_assert_uint_eq(ver, 0);
}

static uint64_t put_ok(ct_store *s, const char *key, const char *val, int64_t expected)
{
    uint64_t ver = 0;
    ct_error err;
    ck_ok(ct_store_put(s, key, val, strlen(val), expected, &ver, &err), &err);
    return ver;
}

/* Asserts the list of `prefix` is exactly want[0..n) (sorted). */
static void expect_list(ct_store *s, const char *prefix, const char *const *want, size_t n)
{
    ct_strlist *l = NULL;
    ct_error err;
    size_t i;
    ck_ok(ct_store_list(s, prefix, &l, &err), &err);
    ck_assert_ptr_nonnull(l);
    ck_assert_msg(ct_strlist_count(l) == n, "list '%s': %zu keys, want %zu", prefix,
                  ct_strlist_count(l), n);
    for (i = 0; i < n; i++)
        ck_assert_msg(strcmp(ct_strlist_get(l, i), want[i]) == 0,
                      "list '%s'[%zu] = %s, want %s", prefix, i, ct_strlist_get(l, i), want[i]);
    ct_strlist_free(l);
}

/* ---- basic semantics ---- */

START_TEST(flags)
{
    struct env e;
    env_open(&e, _i);
    ck_assert_msg(ct_store_flags(e.s) & CT_STORE_F_CAS, "the suite needs CT_STORE_F_CAS");
    if (e.f->multiprocess)
        ck_assert_msg(ct_store_flags(e.s) & CT_STORE_F_SHARED,
                      "a multiprocess factory should say CT_STORE_F_SHARED");
    env_close(&e);
}
END_TEST

START_TEST(get_missing)
{
    struct env e;
    env_open(&e, _i);
    expect_missing(e.s, "nothing/here");
    put_ok(e.s, "nothing/else", "x", CT_STORE_ANY);
    expect_missing(e.s, "nothing/here");
    expect_missing(e.s, "nothing");
    env_close(&e);
}
END_TEST

START_TEST(roundtrip)
{
    struct env e;
    ct_secret *v = NULL;
    ct_error err;
    env_open(&e, _i);
    ck_assert_uint_eq(put_ok(e.s, "a", "hello", CT_STORE_ANY), 1);
    expect_value(e.s, "a", "hello", 5, 1);
    /* NULL out-parameters are allowed */
    ck_ok(ct_store_put(e.s, "b", "x", 1, CT_STORE_ANY, NULL, &err), &err);
    ck_ok(ct_store_get(e.s, "b", &v, NULL, &err), &err);
    ck_assert_uint_eq(ct_secret_len(v), 1);
    ct_secret_free(v);
    env_close(&e);
}
END_TEST

START_TEST(empty_value_is_not_missing)
{
    struct env e;
    ct_secret *v = NULL;
    uint64_t ver = 0;
    ct_error err;
    env_open(&e, _i);
    ck_ok(ct_store_put(e.s, "empty", "", 0, CT_STORE_CREATE, &ver, &err), &err);
    ck_assert_uint_eq(ver, 1);
    ck_ok(ct_store_get(e.s, "empty", &v, &ver, &err), &err);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(ct_secret_len(v), 0);
    ck_assert_uint_eq(ver, 1);
    ct_secret_free(v);
    /* a NULL pointer with length 0 is an empty value too */
    ck_ok(ct_store_put(e.s, "empty2", NULL, 0, CT_STORE_ANY, &ver, &err), &err);
    expect_value(e.s, "empty2", "", 0, 1);
    /* it exists: create-only fails, expected=1 works */
    ck_err(ct_store_put(e.s, "empty", "", 0, CT_STORE_CREATE, NULL, &err), CT_E_CONFLICT, &err);
    ck_assert_uint_eq(put_ok(e.s, "empty", "now full", 1), 2);
    expect_value(e.s, "empty", "now full", 8, 2);
    ck_ok(ct_store_put(e.s, "empty", "", 0, 2, &ver, &err), &err);
    expect_value(e.s, "empty", "", 0, 3);
    {
        static const char *const both[] = {"empty", "empty2"};
        expect_list(e.s, "empty", both, 2);
    }
    ck_ok(ct_store_del(e.s, "empty", &err), &err);
    expect_missing(e.s, "empty");
    env_close(&e);
}
END_TEST

START_TEST(binary_value)
{
    struct env e;
    uint8_t buf[512];
    size_t i;
    env_open(&e, _i);
    for (i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    buf[0] = 0;
    buf[1] = 0;
    buf[100] = 0;
    buf[sizeof buf - 1] = 0;
    ck_ok(ct_store_put(e.s, "bin", buf, sizeof buf, CT_STORE_ANY, NULL, NULL), NULL);
    expect_value(e.s, "bin", buf, sizeof buf, 1);
    /* all 256 byte values, starting and ending with NUL */
    for (i = 0; i < 256; i++)
        buf[i] = (uint8_t)i;
    buf[256] = 0;
    ck_ok(ct_store_put(e.s, "bin", buf, 257, CT_STORE_ANY, NULL, NULL), NULL);
    expect_value(e.s, "bin", buf, 257, 2);
    /* a single NUL byte is not an empty value */
    ck_ok(ct_store_put(e.s, "nul", "", 1, CT_STORE_ANY, NULL, NULL), NULL);
    expect_value(e.s, "nul", "", 1, 1);
    env_close(&e);
}
END_TEST

START_TEST(max_value)
{
    struct env e;
    uint8_t *buf = malloc(CT_STORE_VALUE_MAX + 1);
    ct_error err;
    size_t i;
    ck_assert_ptr_nonnull(buf);
    env_open(&e, _i);
    for (i = 0; i < CT_STORE_VALUE_MAX + 1; i++)
        buf[i] = (uint8_t)(i ^ (i >> 8) ^ (i >> 16));
    ck_ok(ct_store_put(e.s, "big", buf, CT_STORE_VALUE_MAX, CT_STORE_CREATE, NULL, &err), &err);
    expect_value(e.s, "big", buf, CT_STORE_VALUE_MAX, 1);
    ck_err(ct_store_put(e.s, "big", buf, CT_STORE_VALUE_MAX + 1, CT_STORE_ANY, NULL, &err),
           CT_E_TOOBIG, &err);
    expect_value(e.s, "big", buf, CT_STORE_VALUE_MAX, 1);
    /* replace the large value with a small one and back */
    put_ok(e.s, "big", "small", 1);
    expect_value(e.s, "big", "small", 5, 2);
    ck_ok(ct_store_put(e.s, "big", buf + 1, CT_STORE_VALUE_MAX, 2, NULL, &err), &err);
    expect_value(e.s, "big", buf + 1, CT_STORE_VALUE_MAX, 3);
    env_close(&e);
    free(buf);
}
END_TEST

START_TEST(value_is_copied)
{
    struct env e;
    char buf[8] = "abcdefg";
    ct_secret *v = NULL;
    ct_error err;
    env_open(&e, _i);
    ck_ok(ct_store_put(e.s, "c", buf, 7, CT_STORE_ANY, NULL, &err), &err);
    memset(buf, 'X', 7);
    expect_value(e.s, "c", "abcdefg", 7, 1);
    ck_ok(ct_store_get(e.s, "c", &v, NULL, &err), &err);
    memset(ct_secret_data(v), 'Y', ct_secret_len(v));
    ct_secret_free(v);
    expect_value(e.s, "c", "abcdefg", 7, 1);
    env_close(&e);
}
END_TEST

START_TEST(versions_increment)
{
    struct env e;
    env_open(&e, _i);
    ck_assert_uint_eq(put_ok(e.s, "v", "one", CT_STORE_ANY), 1);
    ck_assert_uint_eq(put_ok(e.s, "v", "two", CT_STORE_ANY), 2);
    ck_assert_uint_eq(put_ok(e.s, "v", "three", CT_STORE_ANY), 3);
    expect_value(e.s, "v", "three", 5, 3);
    /* versions are per key */
    ck_assert_uint_eq(put_ok(e.s, "w", "one", CT_STORE_ANY), 1);
    expect_value(e.s, "v", "three", 5, 3);
    env_close(&e);
}
END_TEST

START_TEST(create_only)
{
    struct env e;
    ct_error err;
    uint64_t ver = 77;
    env_open(&e, _i);
    ck_assert_uint_eq(put_ok(e.s, "claim", "first", CT_STORE_CREATE), 1);
    ck_err(ct_store_put(e.s, "claim", "second", 6, CT_STORE_CREATE, &ver, &err), CT_E_CONFLICT,
           &err);
    ck_assert_uint_eq(ver, 0);
    expect_value(e.s, "claim", "first", 5, 1);
    put_ok(e.s, "claim", "third", CT_STORE_ANY);
    ck_err(ct_store_put(e.s, "claim", "fourth", 6, CT_STORE_CREATE, NULL, &err), CT_E_CONFLICT,
           &err);
    expect_value(e.s, "claim", "third", 5, 2);
    env_close(&e);
}
END_TEST

START_TEST(expected_mismatch)
{
    struct env e;
    ct_error err;
    env_open(&e, _i);
    /* expecting a version of a missing key fails and creates nothing */
    ck_err(ct_store_put(e.s, "m", "x", 1, 1, NULL, &err), CT_E_CONFLICT, &err);
    expect_missing(e.s, "m");
    put_ok(e.s, "m", "orig", CT_STORE_ANY);
    put_ok(e.s, "m", "orig2", CT_STORE_ANY); /* version 2 */
    ck_err(ct_store_put(e.s, "m", "bad", 3, 1, NULL, &err), CT_E_CONFLICT, &err);
    ck_err(ct_store_put(e.s, "m", "bad", 3, 3, NULL, &err), CT_E_CONFLICT, &err);
    ck_err(ct_store_put(e.s, "m", "bad", 3, 1000000, NULL, &err), CT_E_CONFLICT, &err);
    ck_err(ct_store_put(e.s, "m", "bad", 3, INT64_MAX, NULL, &err), CT_E_CONFLICT, &err);
    expect_value(e.s, "m", "orig2", 5, 2);
    env_close(&e);
}
END_TEST

START_TEST(expected_match)
{
    struct env e;
    env_open(&e, _i);
    ck_assert_uint_eq(put_ok(e.s, "n", "a", CT_STORE_CREATE), 1);
    ck_assert_uint_eq(put_ok(e.s, "n", "b", 1), 2);
    ck_assert_uint_eq(put_ok(e.s, "n", "c", 2), 3);
    ck_assert_uint_eq(put_ok(e.s, "n", "d", CT_STORE_ANY), 4);
    ck_assert_uint_eq(put_ok(e.s, "n", "e", 4), 5);
    expect_value(e.s, "n", "e", 1, 5);
    env_close(&e);
}
END_TEST

START_TEST(delete)
{
    struct env e;
    ct_error err;
    env_open(&e, _i);
    ck_err(ct_store_del(e.s, "d", &err), CT_E_NOTFOUND, &err);
    put_ok(e.s, "d", "gone soon", CT_STORE_ANY);
    put_ok(e.s, "d2", "stays", CT_STORE_ANY);
    ck_ok(ct_store_del(e.s, "d", &err), &err);
    expect_missing(e.s, "d");
    ck_err(ct_store_del(e.s, "d", &err), CT_E_NOTFOUND, &err);
    expect_value(e.s, "d2", "stays", 5, 1);
    {
        static const char *const left[] = {"d2"};
        expect_list(e.s, "d", left, 1);
    }
    env_close(&e);
}
END_TEST

START_TEST(recreate_after_delete)
{
    struct env e;
    ct_error err;
    env_open(&e, _i);
    put_ok(e.s, "r", "1", CT_STORE_ANY);
    put_ok(e.s, "r", "2", CT_STORE_ANY);
    ck_assert_uint_eq(put_ok(e.s, "r", "3", CT_STORE_ANY), 3);
    ck_ok(ct_store_del(e.s, "r", &err), &err);
    /* the old version means nothing now */
    ck_err(ct_store_put(e.s, "r", "x", 1, 3, NULL, &err), CT_E_CONFLICT, &err);
    expect_missing(e.s, "r");
    ck_assert_uint_eq(put_ok(e.s, "r", "new", CT_STORE_CREATE), 1);
    expect_value(e.s, "r", "new", 3, 1);
    ck_ok(ct_store_del(e.s, "r", &err), &err);
    ck_assert_uint_eq(put_ok(e.s, "r", "newer", CT_STORE_ANY), 1);
    env_close(&e);
}
END_TEST

/* ---- listing ---- */

START_TEST(list_prefix)
{
    struct env e;
    static const char *const keys[] = {"a/bc", "a/b/c", "b", "a/b", "a/a", "ab",
                                       "a/b/d/e", "a/c", "a/b-x", "a/b.x", "a"};
    static const char *const all[] = {"a",     "a/a",   "a/b",     "a/b-x", "a/b.x", "a/b/c",
                                      "a/b/d/e", "a/bc", "a/c",     "ab",    "b"};
    /* a plain string prefix: "a/b" matches "a/b" itself, "a/b/..." and "a/bc" */
    static const char *const ab[] = {"a/b", "a/b-x", "a/b.x", "a/b/c", "a/b/d/e", "a/bc"};
    static const char *const ab_slash[] = {"a/b/c", "a/b/d/e"};
    static const char *const a_slash[] = {"a/a",     "a/b",  "a/b-x", "a/b.x",
                                          "a/b/c", "a/b/d/e", "a/bc", "a/c"};
    static const char *const exact[] = {"a/b/c"};
    static const char *const bee[] = {"b"};
    size_t i;
    env_open(&e, _i);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        put_ok(e.s, keys[i], "v", CT_STORE_ANY);
    expect_list(e.s, "", all, 11);
    expect_list(e.s, "a/b", ab, 6);
    expect_list(e.s, "a/b/", ab_slash, 2);
    expect_list(e.s, "a/", a_slash, 8);
    expect_list(e.s, "a/b/c", exact, 1);
    expect_list(e.s, "b", bee, 1);
    expect_list(e.s, "a", all, 10); /* everything but "b" */
    env_close(&e);
}
END_TEST

START_TEST(list_no_match)
{
    struct env e;
    ct_strlist *l = NULL;
    ct_error err;
    env_open(&e, _i);
    /* an empty store */
    ck_ok(ct_store_list(e.s, "", &l, &err), &err);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(ct_strlist_count(l), 0);
    ct_strlist_free(l);
    put_ok(e.s, "x/y", "v", CT_STORE_ANY);
    expect_list(e.s, "y", NULL, 0);
    expect_list(e.s, "x/yz", NULL, 0);
    expect_list(e.s, "x/y/", NULL, 0);
    expect_list(e.s, "w", NULL, 0);
    /* prefixes no key can have, including bytes at the edge of the range */
    expect_list(e.s, "\xff", NULL, 0);
    expect_list(e.s, "x\xff", NULL, 0);
    expect_list(e.s, "x/y\xff", NULL, 0);
    expect_list(e.s, "x/y~", NULL, 0);
    ck_ok(ct_store_list(e.s, NULL, &l, &err), &err); /* NULL is "" */
    ck_assert_uint_eq(ct_strlist_count(l), 1);
    ct_strlist_free(l);
    env_close(&e);
}
END_TEST

START_TEST(no_wildcards)
{
    struct env e;
    ct_error err;
    static const char *const underscore[] = {"a_b"};
    static const char *const both[] = {"aXb", "a_b"};
    env_open(&e, _i);
    put_ok(e.s, "aXb", "X", CT_STORE_ANY);
    put_ok(e.s, "aXbc", "X", CT_STORE_ANY);
    /* '_' is a literal, not "any character" */
    expect_missing(e.s, "a_b");
    ck_err(ct_store_del(e.s, "a_b", &err), CT_E_NOTFOUND, &err);
    ck_err(ct_store_put(e.s, "a_b", "u", 1, 1, NULL, &err), CT_E_CONFLICT, &err);
    expect_list(e.s, "a_", NULL, 0);
    expect_list(e.s, "a_b", NULL, 0);
    expect_list(e.s, "a%", NULL, 0);
    expect_list(e.s, "%", NULL, 0);
    expect_list(e.s, "_", NULL, 0);
    expect_list(e.s, "a*", NULL, 0);
    expect_list(e.s, "a?", NULL, 0);
    expect_list(e.s, "a[X]", NULL, 0);
    put_ok(e.s, "a_b", "u", CT_STORE_CREATE);
    expect_list(e.s, "a_", underscore, 1);
    expect_list(e.s, "a_b", underscore, 1);
    {
        static const char *const all[] = {"aXb", "aXbc", "a_b"};
        expect_list(e.s, "a", all, 3);
    }
    expect_value(e.s, "aXb", "X", 1, 1);
    expect_value(e.s, "a_b", "u", 1, 1);
    ck_ok(ct_store_del(e.s, "aXbc", &err), &err);
    expect_list(e.s, "a", both, 2);
    ck_ok(ct_store_del(e.s, "a_b", &err), &err);
    expect_value(e.s, "aXb", "X", 1, 1);
    env_close(&e);
}
END_TEST

START_TEST(many_keys)
{
    struct env e;
    int n = ct_test_under_valgrind() ? 100 : 1000, i;
    char key[64], val[64];
    ct_strlist *l = NULL;
    ct_error err;
    env_open(&e, _i);
    /* inserted in an order that is not sorted */
    for (i = 0; i < n; i++) {
        int k = (i * 7919) % n;
        snprintf(key, sizeof key, "many/k%05d", k);
        snprintf(val, sizeof val, "value-%d", k);
        ck_assert_uint_eq(put_ok(e.s, key, val, CT_STORE_CREATE), 1);
    }
    put_ok(e.s, "other", "x", CT_STORE_ANY);
    ck_ok(ct_store_list(e.s, "many/", &l, &err), &err);
    ck_assert_int_eq((int)ct_strlist_count(l), n);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof key, "many/k%05d", i);
        ck_assert_str_eq(ct_strlist_get(l, (size_t)i), key);
    }
    ct_strlist_free(l);
    for (i = 0; i < n; i += 37) {
        snprintf(key, sizeof key, "many/k%05d", i);
        snprintf(val, sizeof val, "value-%d", i);
        expect_value(e.s, key, val, strlen(val), 1);
    }
    for (i = 0; i < n; i += 2) {
        snprintf(key, sizeof key, "many/k%05d", i);
        ck_ok(ct_store_del(e.s, key, &err), &err);
    }
    ck_ok(ct_store_list(e.s, "many/k", &l, &err), &err);
    ck_assert_int_eq((int)ct_strlist_count(l), n / 2);
    ck_assert_str_eq(ct_strlist_get(l, 0), "many/k00001");
    ct_strlist_free(l);
    ck_ok(ct_store_list(e.s, "", &l, &err), &err);
    ck_assert_int_eq((int)ct_strlist_count(l), n / 2 + 1);
    ct_strlist_free(l);
    env_close(&e);
}
END_TEST

/* ---- races ---- */

/* Reads a decimal counter value. */
static long counter_of(const ct_secret *v)
{
    return strtol((const char *)ct_secret_data(v), NULL, 10);
}

struct tally {
    long ok, conflicts, errors;
};

/*
 * A pause of 0-255 us between attempts. Without it one racer tends to
 * re-take SQLite's write lock the moment it releases it while the other
 * sleeps in the busy handler, and the racers barely interleave.
 */
static void jitter(unsigned *seed)
{
    struct timespec ts = {0, (long)(rand_r(seed) & 0xff) * 1000L};
    nanosleep(&ts, NULL);
}

/* One read-version -> put(expected) increment attempt. */
static void cas_increment(ct_store *s, const char *key, struct tally *t)
{
    ct_secret *v = NULL;
    uint64_t ver = 0;
    char buf[32];
    ct_err rc;
    if (ct_store_get(s, key, &v, &ver, NULL) != CT_OK) {
        t->errors++;
        return;
    }
    snprintf(buf, sizeof buf, "%ld", counter_of(v) + 1);
    ct_secret_free(v);
    rc = ct_store_put(s, key, buf, strlen(buf), (int64_t)ver, NULL, NULL);
    if (rc == CT_OK)
        t->ok++;
    else if (rc == CT_E_CONFLICT)
        t->conflicts++;
    else
        t->errors++;
}

struct racer {
    struct env *e;
    ct_store *s; /* shared handle, or NULL: open one */
    pthread_barrier_t *go;
    int iters, id;
    ct_err open_rc;
    struct tally t;
    ct_err claim_rc;
};

static void *cas_thread(void *arg)
{
    struct racer *r = arg;
    ct_store *s = r->s;
    unsigned seed = (unsigned)r->id + 1;
    int i;
    if (!s)
        r->open_rc = r->e->f->open(r->e->ctx, r->e->fx, &s, NULL);
    pthread_barrier_wait(r->go);
    if (r->open_rc != CT_OK)
        return NULL;
    for (i = 0; i < r->iters; i++) {
        cas_increment(s, "race/counter", &r->t);
        jitter(&seed);
    }
    if (!r->s)
        ct_store_free(s);
    return NULL;
}

#define NTHREADS 4

static void cas_race_threads(struct env *e, int own_handles)
{
    struct racer r[NTHREADS];
    pthread_t th[NTHREADS];
    pthread_barrier_t go;
    struct tally total = {0, 0, 0};
    int iters = ct_test_under_valgrind() ? 15 : 100, i;
    ct_secret *v = NULL;
    uint64_t ver = 0;

    put_ok(e->s, "race/counter", "0", CT_STORE_CREATE);
    ck_assert_int_eq(pthread_barrier_init(&go, NULL, NTHREADS), 0);
    for (i = 0; i < NTHREADS; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].e = e;
        r[i].s = own_handles ? NULL : e->s;
        r[i].go = &go;
        r[i].id = i;
        r[i].iters = iters;
        ck_assert_int_eq(pthread_create(&th[i], NULL, cas_thread, &r[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(r[i].open_rc == CT_OK, "thread %d could not open the store", i);
        total.ok += r[i].t.ok;
        total.conflicts += r[i].t.conflicts;
        total.errors += r[i].t.errors;
    }
    pthread_barrier_destroy(&go);
    ck_assert_msg(total.errors == 0, "%ld unexpected errors", total.errors);
    ck_assert_int_eq(total.ok + total.conflicts, (long)NTHREADS * iters);
    ck_assert_int_gt(total.ok, 0);
    ck_ok(ct_store_get(e->s, "race/counter", &v, &ver, NULL), NULL);
    /* no lost update: every successful put incremented exactly once */
    ck_assert_int_eq(counter_of(v), total.ok);
    ck_assert_uint_eq(ver, (uint64_t)total.ok + 1);
    ct_secret_free(v);
    fprintf(stderr, "%s: cas_race_threads (%s handles): %ld puts, %ld conflicts\n",
            e->f->name, own_handles ? "own" : "shared", total.ok, total.conflicts);
}

START_TEST(cas_race_threads_shared_handle)
{
    struct env e;
    env_open(&e, _i);
    cas_race_threads(&e, 0);
    env_close(&e);
}
END_TEST

START_TEST(cas_race_threads_own_handles)
{
    struct env e;
    env_open(&e, _i);
    cas_race_threads(&e, 1);
    env_close(&e);
}
END_TEST

static void *claim_thread(void *arg)
{
    struct racer *r = arg;
    char val[32];
    ct_store *s = r->s;
    if (!s)
        r->open_rc = r->e->f->open(r->e->ctx, r->e->fx, &s, NULL);
    snprintf(val, sizeof val, "winner-%d", r->id);
    pthread_barrier_wait(r->go);
    if (r->open_rc != CT_OK)
        return NULL;
    r->claim_rc = ct_store_put(s, "claim/once", val, strlen(val), CT_STORE_CREATE, NULL, NULL);
    if (!r->s)
        ct_store_free(s);
    return NULL;
}

#define NCLAIMERS 8

START_TEST(claim_race_threads)
{
    struct env e;
    struct racer r[NCLAIMERS];
    pthread_t th[NCLAIMERS];
    pthread_barrier_t go;
    int i, winners = 0, winner = -1;
    char want[32];
    env_open(&e, _i);
    ck_assert_int_eq(pthread_barrier_init(&go, NULL, NCLAIMERS), 0);
    for (i = 0; i < NCLAIMERS; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].e = &e;
        /* shared stores: half the threads on their own handle */
        r[i].s = (e.f->multiprocess && (i & 1)) ? NULL : e.s;
        r[i].go = &go;
        r[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, claim_thread, &r[i]), 0);
    }
    for (i = 0; i < NCLAIMERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(r[i].open_rc, CT_OK);
        if (r[i].claim_rc == CT_OK) {
            winners++;
            winner = i;
        } else {
            ck_assert_msg(r[i].claim_rc == CT_E_CONFLICT, "claimer %d: %s", i,
                          ct_err_name(r[i].claim_rc));
        }
    }
    pthread_barrier_destroy(&go);
    ck_assert_int_eq(winners, 1);
    snprintf(want, sizeof want, "winner-%d", winner);
    expect_value(e.s, "claim/once", want, strlen(want), 1);
    env_close(&e);
}
END_TEST

/* ---- processes ---- */

struct child_result {
    int id;
    int open_rc;
    long ok, conflicts, errors;
    int claim_rc;
};

enum { JOB_CAS, JOB_CLAIM };

/*
 * Runs in a forked child: never returns, never touches Check (a failing
 * ck_assert in a child would run the rest of the suite there under
 * CK_FORK=no). Opens its own handle, waits for the start signal (EOF on
 * `go`), works, reports through `res`.
 */
static void child_main(struct env *e, int job, int id, int iters, int go, int res)
{
    struct child_result cr;
    ct_store *s = NULL;
    char tmp;
    ssize_t n;
    memset(&cr, 0, sizeof cr);
    cr.id = id;
    alarm(ct_test_under_valgrind() ? 300 : 60); /* a hung child must not hang the suite */
    cr.open_rc = e->f->open(e->ctx, e->fx, &s, NULL);
    do
        n = read(go, &tmp, 1);
    while (n < 0 && errno == EINTR);
    if (cr.open_rc == CT_OK) {
        if (job == JOB_CAS) {
            struct tally t = {0, 0, 0};
            unsigned seed = (unsigned)id + 1;
            int i;
            for (i = 0; i < iters; i++) {
                cas_increment(s, "race/counter", &t);
                jitter(&seed);
            }
            cr.ok = t.ok;
            cr.conflicts = t.conflicts;
            cr.errors = t.errors;
        } else {
            char val[32];
            snprintf(val, sizeof val, "winner-%d", id);
            cr.claim_rc =
                ct_store_put(s, "claim/once", val, strlen(val), CT_STORE_CREATE, NULL, NULL);
        }
        ct_store_free(s);
    }
    _exit(write(res, &cr, sizeof cr) == (ssize_t)sizeof cr ? 0 : 3);
}

/*
 * Forks n children that start together; collects their results into cr.
 * The parent's handle is closed across the fork (a SQLite connection must
 * not be carried over fork()) and reopened afterwards.
 */
static void run_children(struct env *e, int job, int n, int iters, struct child_result *cr)
{
    int go[2], res[2], i, status;
    pid_t pid[16];
    ct_error err;
    ck_assert_int_le(n, 16);
    ct_store_free(e->s);
    e->s = NULL;
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(res), 0);
    for (i = 0; i < n; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0) {
            close(go[1]);
            close(res[0]);
            child_main(e, job, i, iters, go[0], res[1]);
        }
    }
    close(go[0]);
    close(res[1]);
    close(go[1]); /* everyone starts now */
    for (i = 0; i < n; i++) {
        ssize_t got;
        do
            got = read(res[0], &cr[i], sizeof cr[i]);
        while (got < 0 && errno == EINTR);
        ck_assert_msg(got == (ssize_t)sizeof cr[i], "child result %d missing", i);
    }
    close(res[0]);
    for (i = 0; i < n; i++) {
        int code;
        ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
        ck_assert_msg(WIFEXITED(status), "child %d ended with status %#x", i, status);
        code = WEXITSTATUS(status);
        /*
         * Under valgrind a forked child is checked too, silently
         * (--child-silent-after-fork), and at exit it reports as leaked
         * whatever the parent's other threads (the in-process fake server)
         * held only on their stacks: those threads do not exist in the
         * child. Valgrind then turns exit 0 into its --error-exitcode (1).
         * The child's own verdict is the result record it wrote above, read
         * in full; its exit code 3 (could not report) still fails.
         */
        ck_assert_msg(code == 0 || (code == 1 && ct_test_under_valgrind()),
                      "child %d ended with status %#x", i, status);
    }
    for (i = 0; i < n; i++)
        ck_assert_msg(cr[i].open_rc == CT_OK, "child %d could not open the store: %s",
                      cr[i].id, ct_err_name(cr[i].open_rc));
    ck_ok(e->f->open(e->ctx, e->fx, &e->s, &err), &err);
}

START_TEST(cas_race_processes)
{
    struct env e;
    struct child_result cr[2];
    int iters = ct_test_under_valgrind() ? 15 : 100, i;
    long ok = 0, conflicts = 0, errors = 0;
    ct_secret *v = NULL;
    uint64_t ver = 0;
    env_open(&e, _i);
    put_ok(e.s, "race/counter", "0", CT_STORE_CREATE);
    run_children(&e, JOB_CAS, 2, iters, cr);
    for (i = 0; i < 2; i++) {
        ok += cr[i].ok;
        conflicts += cr[i].conflicts;
        errors += cr[i].errors;
    }
    ck_assert_msg(errors == 0, "%ld unexpected errors", errors);
    ck_assert_int_eq(ok + conflicts, 2L * iters);
    ck_assert_int_gt(ok, 0);
    ck_ok(ct_store_get(e.s, "race/counter", &v, &ver, NULL), NULL);
    ck_assert_int_eq(counter_of(v), ok);
    ck_assert_uint_eq(ver, (uint64_t)ok + 1);
    ct_secret_free(v);
    /* conflicts depend on scheduling: reported, not asserted */
    fprintf(stderr, "%s: cas_race_processes: %ld puts, %ld conflicts\n", e.f->name, ok,
            conflicts);
    env_close(&e);
}
END_TEST

START_TEST(claim_race_processes)
{
    struct env e;
    enum { K = 4 };
    struct child_result cr[K];
    int i, winners = 0, winner = -1;
    char want[32];
    env_open(&e, _i);
    run_children(&e, JOB_CLAIM, K, 0, cr);
    for (i = 0; i < K; i++) {
        if (cr[i].claim_rc == CT_OK) {
            winners++;
            winner = cr[i].id;
        } else {
            ck_assert_msg(cr[i].claim_rc == CT_E_CONFLICT, "claimer %d: %s", cr[i].id,
                          ct_err_name(cr[i].claim_rc));
        }
    }
    ck_assert_int_eq(winners, 1);
    snprintf(want, sizeof want, "winner-%d", winner);
    expect_value(e.s, "claim/once", want, strlen(want), 1);
    env_close(&e);
}
END_TEST

void ct_add_store_conformance(Suite *s, const ct_store_factory *f)
{
    TCase *tc;
    int i;
    if (nfactories >= MAX_FACTORIES) {
        fprintf(stderr, "store_suite: more than %d factories\n", MAX_FACTORIES);
        abort();
    }
    i = nfactories++;
    factories[i] = f;
    tc = tcase_create(f->name);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, flags, i, i + 1);
    tcase_add_loop_test(tc, get_missing, i, i + 1);
    tcase_add_loop_test(tc, roundtrip, i, i + 1);
    tcase_add_loop_test(tc, empty_value_is_not_missing, i, i + 1);
    tcase_add_loop_test(tc, binary_value, i, i + 1);
    tcase_add_loop_test(tc, max_value, i, i + 1);
    tcase_add_loop_test(tc, value_is_copied, i, i + 1);
    tcase_add_loop_test(tc, versions_increment, i, i + 1);
    tcase_add_loop_test(tc, create_only, i, i + 1);
    tcase_add_loop_test(tc, expected_mismatch, i, i + 1);
    tcase_add_loop_test(tc, expected_match, i, i + 1);
    tcase_add_loop_test(tc, delete, i, i + 1);
    tcase_add_loop_test(tc, recreate_after_delete, i, i + 1);
    tcase_add_loop_test(tc, list_prefix, i, i + 1);
    tcase_add_loop_test(tc, list_no_match, i, i + 1);
    tcase_add_loop_test(tc, no_wildcards, i, i + 1);
    tcase_add_loop_test(tc, many_keys, i, i + 1);
    tcase_add_loop_test(tc, cas_race_threads_shared_handle, i, i + 1);
    tcase_add_loop_test(tc, claim_race_threads, i, i + 1);
    if (f->multiprocess) {
        tcase_add_loop_test(tc, cas_race_threads_own_handles, i, i + 1);
        tcase_add_loop_test(tc, cas_race_processes, i, i + 1);
        tcase_add_loop_test(tc, claim_race_processes, i, i + 1);
    }
    suite_add_tcase(s, tc);
}
