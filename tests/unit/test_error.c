/* test_error.c - error names, messages, and the caller-owned detail. */
#include <string.h>

#include "testutil.h"

START_TEST(names_and_messages_cover_every_code)
{
    static const ct_err codes[] = {
#define X_(name, val, msg) CT_##name,
        CT_ERROR_LIST(X_)
#undef X_
    };
    size_t i, j;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_str_ne(ct_err_name(codes[i]), "CT_E_UNKNOWN");
        ck_assert_str_ne(ct_strerror(codes[i]), "unknown error");
        ck_assert(strncmp(ct_err_name(codes[i]), "CT_", 3) == 0);
        for (j = 0; j < i; j++)
            ck_assert_msg(codes[i] != codes[j], "duplicate error value %d", (int)codes[i]);
        /* success is 0 and every error is negative */
        ck_assert(codes[i] == CT_OK ? i == 0 : codes[i] < 0);
    }
}
END_TEST

START_TEST(values_are_pinned)
{
    /* ABI: these numbers must never change. */
    ck_assert_int_eq(CT_OK, 0);
    ck_assert_int_eq(CT_E_INVALID, -1);
    ck_assert_int_eq(CT_E_NOMEM, -2);
    ck_assert_int_eq(CT_E_TIMEOUT, -21);
    ck_assert_int_eq(CT_E_CLOSED, -22);
    ck_assert_int_eq(CT_E_TLS, -40);
    ck_assert_int_eq(CT_E_CERT, -41);
    ck_assert_int_eq(CT_E_NOTFOUND, -60);
    ck_assert_int_eq(CT_E_CONFLICT, -61);
    ck_assert_int_eq(CT_E_PROTO, -80);
    ck_assert_int_eq(CT_E_TOOBIG, -81);
    ck_assert_int_eq(sizeof(ct_err), 4);
    ck_assert_int_eq(sizeof(ct_error), 4 + 4 + 256);
}
END_TEST

START_TEST(unknown_code)
{
    ck_assert_str_eq(ct_err_name((ct_err)-9999), "CT_E_UNKNOWN");
    ck_assert_str_eq(ct_strerror((ct_err)-9999), "unknown error");
    ck_assert_str_eq(ct_err_name(CT_E_TIMEOUT), "CT_E_TIMEOUT");
}
END_TEST

START_TEST(detail_is_filled_and_cleared)
{
    ct_error err;
    ct_ctx *ctx = NULL;
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    memset(&err, 0x55, sizeof err);
    o.version = 99;
    ck_assert_int_eq(ct_ctx_new(&o, &ctx, &err), CT_E_VERSION);
    ck_assert_int_eq(err.code, CT_E_VERSION);
    ck_assert(strstr(err.message, "99") != NULL);
    ck_assert(ctx == NULL);
    ct_error_clear(&err);
    ck_assert_int_eq(err.code, CT_OK);
    ck_assert_str_eq(err.message, "");
    ct_error_clear(NULL);
    /* NULL detail is allowed everywhere */
    ck_assert_int_eq(ct_ctx_new(&o, &ctx, NULL), CT_E_VERSION);
}
END_TEST

START_TEST(version_runtime_matches_header)
{
    ck_assert_str_eq(ct_version(), CT_VERSION_STRING);
    ck_assert_uint_eq(ct_version_num(), CT_VERSION);
    ck_assert_int_eq(ct_abi_version(), CT_ABI_VERSION);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, names_and_messages_cover_every_code);
    tcase_add_test(tc, values_are_pinned);
    tcase_add_test(tc, unknown_code);
    tcase_add_test(tc, detail_is_filled_and_cleared);
    tcase_add_test(tc, version_runtime_matches_header);
    suite_add_tcase(s, tc);
    return s;
}
