/* testutil.h - small helpers shared by the test programs. */
#ifndef CT_TESTUTIL_H
#define CT_TESTUTIL_H

#include <check.h>
#include <stdio.h>

#include "cloudtaser/cloudtaser.h"

/* Asserts that an expression returns CT_OK, printing the error detail. */
#define ck_ok(expr, errp)                                                         \
    do {                                                                          \
        ct_err rc_ = (expr);                                                      \
        ck_assert_msg(rc_ == CT_OK, "%s -> %s: %s", #expr, ct_err_name(rc_),      \
                      ct_test_msg(errp));                                            \
    } while (0)

/* Asserts that an expression returns a given error code. */
#define ck_err(expr, code, errp)                                                  \
    do {                                                                          \
        ct_err rc_ = (expr);                                                      \
        ck_assert_msg(rc_ == (code), "%s -> %s (want %s): %s", #expr,             \
                      ct_err_name(rc_), ct_err_name(code), ct_test_msg(errp));       \
    } while (0)

/* Every test program defines its suite; check_main.c runs it. */
Suite *ct_test_suite(void);

/* The message of an error detail, "" for NULL. */
const char *ct_test_msg(const ct_error *err);

/* A context for tests: errors and warnings go to stderr. */
ct_ctx *ct_test_ctx(void);

/* Writes `len` bytes to a new temporary file; returns its malloc'ed path. */
char *ct_test_tmpfile(const void *data, size_t len);

/* A new temporary directory (malloc'ed path); removed by ct_test_rmrf. */
char *ct_test_tmpdir(void);
void ct_test_rmrf(const char *path);

/* 1 when running under valgrind (slow: shrink loops). */
int ct_test_under_valgrind(void);

#endif
