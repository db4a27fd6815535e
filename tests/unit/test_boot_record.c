/*
 * test_boot_record.c - the claim record (clusters/<fp>/initialized,
 * bootstrap_record.c, compiled in: it is internal) as the bridge reads it
 * back from the store: hostile values are refused without touching memory
 * outside the fields (fuzz/fuzz_claim_record found a string longer than
 * the fingerprint field overwriting the record's jwks pointer), a
 * record survives encode/decode, and the replay list's pruning cannot
 * overflow on a stored exp near INT64_MAX.
 */
#include "bootstrap_internal.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP "3f9c2b1e-7d4a-4c8e-9b6f-1a2d3e4f5a6b"

static ct_err decode(const char *text, ctp_boot_record **r, ct_error *err)
{
    return ctp_boot_record_decode("clusters/" FP "/initialized", FP, (const uint8_t *)text,
                                  strlen(text), r, err);
}

START_TEST(round_trip)
{
    static const char rec[] =
        "{\"audience\":\"cloudtaser-bridge\",\"fingerprint\":\"" FP "\","
        "\"initialized_at\":1,\"issuer\":\"https://kubernetes.default.svc\","
        "\"jtis\":[{\"exp\":1764490600,\"jti\":\"a\"},{\"exp\":9223372036854775807,\"jti\":\"b\"}],"
        "\"jwks\":{\"keys\":[]},\"reissues\":2,\"subject\":\"system:serviceaccount:x:y\","
        "\"updated_at\":2,\"v\":1}";
    ctp_boot_record *r = NULL;
    char *enc = NULL;
    size_t len = 0;
    ct_error err;

    ck_ok(decode(rec, &r, &err), &err);
    ck_assert_str_eq(r->fingerprint, FP);
    ck_assert_uint_eq(r->n_jtis, 2);
    ck_assert_uint_eq(r->reissues, 2);
    ck_ok(ctp_boot_record_encode(r, &enc, &len, &err), &err);
    ck_assert_str_eq(enc, rec); /* canonical: compact, sorted keys */
    ck_assert_uint_eq(len, strlen(rec));
    /* pruning: "a" is long past its exp + leeway; "b" (exp = INT64_MAX) stays,
     * and computing its deadline must not overflow (UBSan) */
    ctp_boot_record_prune(r, 1764490600 + 61);
    ck_assert_uint_eq(r->n_jtis, 1);
    ck_assert_str_eq(r->jtis[0].id, "b");
    ck_assert(ctp_boot_record_has_jti(r, "b"));
    ck_assert(!ctp_boot_record_has_jti(r, "a"));
    ct_free(enc);
    ctp_boot_record_free(r);
}
END_TEST

/* Strings as long as each field and longer: refused (no overflow into the
 * next field, which ASan cannot see inside one allocation: the record is
 * checked intact instead). */
START_TEST(long_strings_refused)
{
    static const char *const fields[] = {"fingerprint", "audience", "issuer", "subject", "jti"};
    size_t lens[] = {37, 40, 100, 255, 256, 300, 5000};
    size_t f, i;

    for (f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            size_t n = lens[i];
            char *s = malloc(n + 1), *rec = malloc(n + 1024);
            ctp_boot_record *r = NULL;
            ct_error err;
            ct_err rc;
            memset(s, 'x', n);
            s[n] = '\0';
            snprintf(rec, n + 1024,
                     "{\"audience\":\"%s\",\"fingerprint\":\"%s\",\"initialized_at\":1,"
                     "\"issuer\":\"%s\",\"jtis\":[{\"exp\":1,\"jti\":\"%s\"}],\"jwks\":{},"
                     "\"reissues\":0,\"subject\":\"%s\",\"updated_at\":1,\"v\":1}",
                     f == 1 ? s : "aud", f == 0 ? s : FP, f == 2 ? s : "iss",
                     f == 4 ? s : "j", f == 3 ? s : "sub");
            rc = decode(rec, &r, &err);
            if (f == 0 || n >= CT_JWT_CLAIM_MAX) {
                ck_assert_msg(rc == CT_E_STORE, "%s of %zu bytes: %s", fields[f], n,
                              ct_err_name(rc));
                ck_assert_ptr_null(r);
                ck_assert_ptr_nonnull(strstr(err.message, "clusters/" FP "/initialized"));
            } else {
                /* fits its field: accepted, and every other field intact */
                ck_ok(rc, &err);
                ck_assert_str_eq(r->fingerprint, FP);
                ck_assert_str_eq(r->jwks, "{}");
                ck_assert_int_eq(r->initialized_at, 1);
                ck_assert_uint_eq(r->n_jtis, 1);
                ctp_boot_record_free(r);
            }
            free(s);
            free(rec);
        }
    }
}
END_TEST

START_TEST(malformed_refused)
{
    static const char *const bad[] = {
        "", "null", "[]", "{}", "{\"v\":2}",
        "{\"audience\":\"a\",\"fingerprint\":\"" FP "\",\"initialized_at\":1,\"jtis\":[],"
        "\"reissues\":-1,\"updated_at\":1,\"v\":1}",
        "{\"audience\":\"a\",\"fingerprint\":\"" FP "\",\"initialized_at\":1,\"jtis\":[1],"
        "\"reissues\":0,\"updated_at\":1,\"v\":1}",
        "{\"audience\":\"a\",\"fingerprint\":\"" FP "\",\"initialized_at\":1,\"jtis\":[],"
        "\"jwks\":{},\"reissues\":0,\"updated_at\":1,\"v\":1}", /* jwks without issuer */
        "{\"audience\":\"a\",\"fingerprint\":\"" FP "\",\"initialized_at\":1,\"jtis\":[],"
        "\"issuer\":\"i\",\"subject\":\"s\",\"reissues\":0,\"updated_at\":1,\"v\":1}",
        /* issuer and subject without jwks (fuzz_claim_record: lost by a re-encode) */
        "{\"audience\":\"a\\u0000b\",\"fingerprint\":\"" FP "\",\"initialized_at\":1,"
        "\"jtis\":[],\"reissues\":0,\"updated_at\":1,\"v\":1}",
        "{\"audience\":\"a\",\"fingerprint\":\"3f9c2b1e-7d4a-4c8e-9b6f-1a2d3e4f5a6c\","
        "\"initialized_at\":1,\"jtis\":[],\"reissues\":0,\"updated_at\":1,\"v\":1}",
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctp_boot_record *r = NULL;
        ct_error err;
        ck_err(decode(bad[i], &r, &err), CT_E_STORE, &err);
        ck_assert_ptr_null(r);
    }
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("boot_record");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, long_strings_refused);
    tcase_add_test(tc, malformed_refused);
    suite_add_tcase(s, tc);
    return s;
}
