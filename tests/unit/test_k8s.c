#include "testutil.h"
Suite *ct_test_suite(void) { return suite_create("k8s"); }
