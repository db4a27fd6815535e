/* test_secret.c - wipe, constant-time compare, ct_secret. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "testutil.h"

START_TEST(wipe_zeroes)
{
    uint8_t buf[64];
    size_t i;
    memset(buf, 0xa5, sizeof buf);
    ct_secure_wipe(buf + 8, 32);
    for (i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], (i >= 8 && i < 40) ? 0 : 0xa5);
    ct_secure_wipe(NULL, 10);
    ct_secure_wipe(buf, 0);
}
END_TEST

START_TEST(memeq)
{
    uint8_t a[33], b[33];
    size_t i;
    memset(a, 7, sizeof a);
    memcpy(b, a, sizeof b);
    ck_assert_int_eq(ct_memeq(a, b, sizeof a), 1);
    for (i = 0; i < sizeof a; i++) {
        b[i] ^= 0x80;
        ck_assert_int_eq(ct_memeq(a, b, sizeof a), 0);
        b[i] ^= 0x80;
        b[i] ^= 0x01;
        ck_assert_int_eq(ct_memeq(a, b, sizeof a), 0);
        b[i] ^= 0x01;
    }
    ck_assert_int_eq(ct_memeq(a, b, 0), 1);
    ck_assert_int_eq(ct_memeq(NULL, b, 3), 0);
}
END_TEST

START_TEST(secret_lifecycle)
{
    ct_secret *s = NULL, *d = NULL;
    ct_error err;
    ck_ok(ct_secret_from("hunter2", 7, &s, &err), &err);
    ck_assert_uint_eq(ct_secret_len(s), 7);
    ck_assert(memcmp(ct_secret_data(s), "hunter2", 7) == 0);
    ck_assert_uint_eq(ct_secret_data(s)[7], 0); /* NUL terminated */
    ck_ok(ct_secret_dup(s, &d, &err), &err);
    ck_assert(ct_secret_data(d) != ct_secret_data(s));
    ck_assert(memcmp(ct_secret_data(d), "hunter2", 8) == 0);
    ck_ok(ct_secret_truncate(d, 3), &err);
    ck_assert_uint_eq(ct_secret_len(d), 3);
    ck_assert_uint_eq(ct_secret_data(d)[3], 0);
    ck_assert_uint_eq(ct_secret_data(d)[6], 0); /* truncated bytes wiped */
    ck_assert_int_eq(ct_secret_truncate(d, 4), CT_E_INVALID);
    ct_secret_free(s);
    ct_secret_free(d);
    ct_secret_free(NULL);
}
END_TEST

START_TEST(secret_zero_length_and_limits)
{
    ct_secret *s = NULL;
    ct_error err;
    ck_ok(ct_secret_new(0, &s, &err), &err);
    ck_assert_uint_eq(ct_secret_len(s), 0);
    ck_assert_ptr_nonnull(ct_secret_data(s));
    ct_secret_free(s);
    s = NULL;
    ck_err(ct_secret_new(CT_SECRET_MAX + 1, &s, &err), CT_E_TOOBIG, &err);
    ck_assert_ptr_null(s);
    ck_err(ct_secret_new(1, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_secret_from(NULL, 3, &s, &err), CT_E_INVALID, &err);
}
END_TEST

START_TEST(secret_memory_is_protected)
{
    ct_secret *s = NULL;
    ct_error err;
    struct rlimit rl;
    unsigned char vec = 0;
    long pg = sysconf(_SC_PAGESIZE);
    ck_ok(ct_secret_new(100, &s, &err), &err);
    /* page aligned: a mapping of its own that madvise/mlock can act on */
    ck_assert_uint_eq((uintptr_t)ct_secret_data(s) % (uintptr_t)pg, 0);
    ck_assert_int_eq(mincore(ct_secret_data(s), 1, &vec), 0);
    /* If the process may lock memory, the secret must be locked. */
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur >= (rlim_t)(1 << 20))
        ck_assert_int_eq(ct_secret_is_locked(s), 1);
    ct_secret_free(s);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("secret");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, wipe_zeroes);
    tcase_add_test(tc, memeq);
    tcase_add_test(tc, secret_lifecycle);
    tcase_add_test(tc, secret_zero_length_and_limits);
    tcase_add_test(tc, secret_memory_is_protected);
    suite_add_tcase(s, tc);
    return s;
}
