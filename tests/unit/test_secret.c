/* test_secret.c - wipe, constant-time compare, ct_secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* Writes n bytes of p to a new file in a fresh directory; returns the dir. */
static void write_tmp(char *dir, size_t cap, char *path, size_t pcap, const void *p, size_t n)
{
    FILE *f;
    snprintf(dir, cap, "/tmp/ct-secret-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, pcap, "%s/f", dir);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void rm_tmp(const char *dir, const char *path)
{
    unlink(path);
    rmdir(dir);
}

START_TEST(read_file_whole_and_trimmed)
{
    char dir[64], path[96];
    ct_secret *s = NULL;
    ct_error err;
    static const char text[] = " \t eyJhbGciOi.token\r\n\n";
    write_tmp(dir, sizeof dir, path, sizeof path, text, sizeof text - 1);
    ck_ok(ct_secret_read_file(path, 1024, "token file", 0, &s, &err), &err);
    ck_assert_uint_eq(ct_secret_len(s), sizeof text - 1);
    ck_assert_int_eq(memcmp(ct_secret_data(s), text, sizeof text - 1), 0);
    ck_assert_int_eq(ct_secret_data(s)[ct_secret_len(s)], 0);
    ct_secret_free(s);
    ck_ok(ct_secret_read_file(path, 1024, "token file", CT_SECRET_FILE_TRIM, &s, &err), &err);
    ck_assert_str_eq((const char *)ct_secret_data(s), "eyJhbGciOi.token");
    ck_assert_uint_eq(ct_secret_len(s), 16);
    ct_secret_free(s);
    /* exactly at the limit is fine, one byte over is not */
    ck_ok(ct_secret_read_file(path, sizeof text - 1, NULL, 0, &s, &err), &err);
    ct_secret_free(s);
    s = (ct_secret *)1;
    ck_err(ct_secret_read_file(path, sizeof text - 2, "token file", 0, &s, &err), CT_E_TOOBIG,
           &err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.message, "token file") && strstr(err.message, path), "%s",
                  err.message);
    rm_tmp(dir, path);
}
END_TEST

START_TEST(read_file_errors)
{
    char dir[64], path[96];
    ct_secret *s = NULL;
    ct_error err;
    write_tmp(dir, sizeof dir, path, sizeof path, "   \n", 4);
    /* only whitespace: an empty secret, not an error */
    ck_ok(ct_secret_read_file(path, 64, NULL, CT_SECRET_FILE_TRIM, &s, &err), &err);
    ck_assert_uint_eq(ct_secret_len(s), 0);
    ck_assert_int_eq(ct_secret_data(s)[0], 0);
    ct_secret_free(s);
    ck_err(ct_secret_read_file(path, 64, NULL, 0x80, &s, &err), CT_E_INVALID, &err);
    ck_err(ct_secret_read_file(NULL, 64, NULL, 0, &s, &err), CT_E_INVALID, &err);
    ck_err(ct_secret_read_file(path, 64, NULL, 0, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_secret_read_file(dir, 64, "kubeconfig", 0, &s, &err), CT_E_IO, &err);
    ck_assert_msg(strstr(err.message, "not a regular file") != NULL, "%s", err.message);
    rm_tmp(dir, path);
    ck_err(ct_secret_read_file(path, 64, "token file", 0, &s, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(s);
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
    tcase_add_test(tc, read_file_whole_and_trimmed);
    tcase_add_test(tc, read_file_errors);
    suite_add_tcase(s, tc);
    return s;
}
