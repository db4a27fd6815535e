/* test_store_core.c - key validation, the store vtable wrapper, string lists. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(key_validation)
{
    static const char *good[] = {"a", "cloudtaser/data/system/bridge-ca",
                                 "clusters/0ad50c05-1153-4508-9237-4cb2912e2c23/registered",
                                 "A.b_c-d", "x/.hidden", "..a/b"};
    static const char *bad[] = {"", "/a", "a/", "a//b", "a/./b", "a/../b", "..", ".",
                                "a b", "a\\b", "é", "a\nb", "a/b?c"};
    char longkey[700];
    char deep[64];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(ct_store_key_valid(good[i]), "should be valid: %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!ct_store_key_valid(bad[i]), "should be invalid: %s", bad[i]);
    ck_assert(!ct_store_key_valid(NULL));
    memset(longkey, 'a', 129);
    longkey[129] = 0;
    ck_assert(!ct_store_key_valid(longkey)); /* segment > 128 */
    for (int i = 0; i < 5; i++)
        memset(longkey + i * 128, 'a', 127), longkey[i * 128 + 127] = '/';
    longkey[5 * 128 - 1] = 0;
    ck_assert(!ct_store_key_valid(longkey)); /* > 512 bytes */
    longkey[4 * 128 - 1] = 0;
    ck_assert(ct_store_key_valid(longkey)); /* 511 bytes */
    strcpy(deep, "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p");
    ck_assert(ct_store_key_valid(deep)); /* 16 segments */
    strcat(deep, "/q");
    ck_assert(!ct_store_key_valid(deep)); /* 17 */
}
END_TEST

/* A store that records what the wrapper passes on. */
struct rec {
    int gets, puts, dels, destroyed;
    int64_t expected;
};

static ct_err r_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                    void *user)
{
    struct rec *r = user;
    (void)key;
    (void)err;
    r->gets++;
    *version = 3;
    return ct_secret_from("v", 1, value, NULL);
}

static ct_err r_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                    uint64_t *new_version, ct_error *err, void *user)
{
    struct rec *r = user;
    (void)key;
    (void)value;
    (void)len;
    (void)err;
    r->puts++;
    r->expected = expected;
    *new_version = 4;
    return CT_OK;
}

static ct_err r_del(const char *key, ct_error *err, void *user)
{
    (void)key;
    (void)err;
    ((struct rec *)user)->dels++;
    return CT_E_NOTFOUND;
}

static void r_destroy(void *user)
{
    ((struct rec *)user)->destroyed++;
}

START_TEST(wrapper_validates_before_calling)
{
    ct_ctx *ctx = ct_test_ctx();
    struct rec r;
    ct_store_ops ops = {CT_STORE_OPS_VERSION, 0, r_get, r_put, r_del, NULL, r_destroy};
    ct_store *s = NULL;
    ct_secret *v = NULL;
    ct_strlist *l = NULL;
    uint64_t ver = 0;
    ct_error err;
    memset(&r, 0, sizeof r);
    ck_ok(ct_store_new(ctx, &ops, &r, &s, &err), &err);
    ck_err(ct_store_get(s, "bad//key", &v, &ver, &err), CT_E_INVALID, &err);
    ck_assert_int_eq(r.gets, 0);
    ck_ok(ct_store_get(s, "good/key", &v, &ver, &err), &err);
    ck_assert_uint_eq(ver, 3);
    ct_secret_free(v);
    /* no CAS flag: conditional puts are refused before reaching the store */
    ck_err(ct_store_put(s, "k", "x", 1, 2, &ver, &err), CT_E_UNSUPPORTED, &err);
    ck_err(ct_store_put(s, "k", "x", 1, CT_STORE_CREATE, &ver, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_int_eq(r.puts, 0);
    ck_ok(ct_store_put(s, "k", "x", 1, CT_STORE_ANY, &ver, &err), &err);
    ck_assert_uint_eq(ver, 4);
    ck_assert_int_eq(r.expected, CT_STORE_ANY);
    ck_err(ct_store_put(s, "k", "x", CT_STORE_VALUE_MAX + 1, CT_STORE_ANY, NULL, &err),
           CT_E_TOOBIG, &err);
    ck_err(ct_store_put(s, "k", "x", 1, -2, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_store_del(s, "k", &err), CT_E_NOTFOUND, &err);
    ck_err(ct_store_list(s, "", &l, &err), CT_E_UNSUPPORTED, &err);
    ck_assert_uint_eq(ct_store_flags(s), 0);
    ct_store_free(s);
    ck_assert_int_eq(r.destroyed, 1);
    ops.version = 0;
    ck_err(ct_store_new(ctx, &ops, &r, &s, &err), CT_E_VERSION, &err);
    ops.version = CT_STORE_OPS_VERSION;
    ops.del = NULL;
    ck_err(ct_store_new(ctx, &ops, &r, &s, &err), CT_E_INVALID, &err);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(strlist)
{
    ct_strlist *l = NULL;
    ck_ok(ct_strlist_new(&l, NULL), NULL);
    ck_ok(ct_strlist_append(l, "b", NULL), NULL);
    ck_ok(ct_strlist_append(l, "a/c", NULL), NULL);
    ck_ok(ct_strlist_append(l, "a", NULL), NULL);
    for (int i = 0; i < 100; i++)
        ck_ok(ct_strlist_append(l, "z", NULL), NULL);
    ct_strlist_sort(l);
    ck_assert_uint_eq(ct_strlist_count(l), 103);
    ck_assert_str_eq(ct_strlist_get(l, 0), "a");
    ck_assert_str_eq(ct_strlist_get(l, 1), "a/c");
    ck_assert_str_eq(ct_strlist_get(l, 2), "b");
    ck_assert_ptr_null(ct_strlist_get(l, 103));
    ct_strlist_free(l);
    ct_strlist_free(NULL);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("store_core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, key_validation);
    tcase_add_test(tc, wrapper_validates_before_calling);
    tcase_add_test(tc, strlist);
    suite_add_tcase(s, tc);
    return s;
}
