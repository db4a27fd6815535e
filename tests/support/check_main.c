/*
 * check_main.c - the shared main of every Check test program. Each program
 * defines ct_test_suite(). CK_FORK=no (set by the sanitizer and valgrind
 * runs) makes leak reports name the test.
 */
#include <check.h>
#include <stdlib.h>

#include "cloudtaser/cloudtaser.h"

Suite *ct_test_suite(void);

int main(void)
{
    SRunner *sr;
    int failed;

    if (ct_global_init() != CT_OK)
        return 1;
    sr = srunner_create(ct_test_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
