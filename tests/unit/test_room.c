/*
 * test_room.c - fingerprints and room hashes. Known answers were computed
 * with coreutils sha256sum, e.g.
 *   printf 'cloudtaser-init:0ad50c05-1153-4508-9237-4cb2912e2c23' | sha256sum
 * and one test runs sha256sum at test time on random data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static void hex_eq(const uint8_t h[32], const char *want)
{
    char got[65];
    ct_hex(h, 32, got);
    ck_assert_str_eq(got, want);
}

START_TEST(init_hash_known_answers)
{
    uint8_t h[32];
    ct_error err;
    ck_ok(ct_room_hash_init("0ad50c05-1153-4508-9237-4cb2912e2c23", h, &err), &err);
    hex_eq(h, "5af11b82299622a908c5aa10383bfcfd84f6cd251c7094e2246c7daf419dc463");
    /* upper case input hashes as its canonical lower case form */
    ck_ok(ct_room_hash_init("0AD50C05-1153-4508-9237-4CB2912E2C23", h, &err), &err);
    hex_eq(h, "5af11b82299622a908c5aa10383bfcfd84f6cd251c7094e2246c7daf419dc463");
    ck_ok(ct_room_hash_init("00000000-0000-0000-0000-000000000000", h, &err), &err);
    hex_eq(h, "c17732d148e33ccd5b7f92c333ac38d33bdb2e88c94835a68884bf5be96f7722");
}
END_TEST

START_TEST(operational_hash_known_answer)
{
    static const uint8_t der[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    uint8_t h[32];
    ct_error err;
    ck_ok(ct_room_hash_operational(der, sizeof der, h, &err), &err);
    hex_eq(h, "1b65f68a522c858715f5dd951cd0402dc16691778814bf0759822b7a257421d0");
    ck_err(ct_room_hash_operational((const uint8_t *)"-----BEGIN", 10, h, &err), CT_E_INVALID,
           &err);
    ck_err(ct_room_hash_operational(der, 0, h, &err), CT_E_INVALID, &err);
}
END_TEST

START_TEST(sha256_matches_sha256sum)
{
    uint8_t data[4096], h[32];
    char want[65], got[65], cmd[256];
    char *path;
    FILE *p;
    data[0] = 0x30;
    for (size_t i = 1; i < sizeof data; i++)
        data[i] = (uint8_t)(rand() & 0xff);
    path = ct_test_tmpfile(data, sizeof data);
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(fscanf(p, "%64s", want), 1);
    pclose(p);
    unlink(path);
    free(path);
    ck_ok(ct_room_hash_operational(data, sizeof data, h, NULL), NULL);
    ck_assert_str_eq(ct_hex(h, 32, got), want);
}
END_TEST

START_TEST(fingerprint_validation)
{
    char out[CT_FINGERPRINT_LEN + 1];
    ct_error err;
    static const char *bad[] = {
        "",
        "0ad50c05-1153-4508-9237-4cb2912e2c2",   /* short */
        "0ad50c05-1153-4508-9237-4cb2912e2c234", /* long */
        "0ad50c05x1153-4508-9237-4cb2912e2c23",  /* separator */
        "0ad50c05-1153-4508-9237-4cb2912e2c2g",  /* not hex */
        "0ad50c0511534508-9237-4cb2912e2c23xxxx",
        " 0ad50c05-1153-4508-9237-4cb2912e2c2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_err(ct_fingerprint_canonical(bad[i], out, &err), CT_E_INVALID, &err);
        ck_assert(strlen(err.message) > 10);
    }
    ck_err(ct_fingerprint_canonical(NULL, out, &err), CT_E_INVALID, &err);
    ck_ok(ct_fingerprint_canonical("0AD50C05-1153-4508-9237-4cb2912e2c23", out, &err), &err);
    ck_assert_str_eq(out, "0ad50c05-1153-4508-9237-4cb2912e2c23");
    /* error messages never echo the fingerprint */
    ck_err(ct_fingerprint_canonical("0ad50c05-1153-4508-9237-4cb2912e2c2g", out, &err),
           CT_E_INVALID, &err);
    ck_assert(strstr(err.message, "0ad50c05") == NULL);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("room");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, init_hash_known_answers);
    tcase_add_test(tc, operational_hash_known_answer);
    tcase_add_test(tc, sha256_matches_sha256sum);
    tcase_add_test(tc, fingerprint_validation);
    suite_add_tcase(s, tc);
    return s;
}
