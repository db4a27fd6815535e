/* test_store.c - the store conformance suite over the built-in stores. */
#include <stdlib.h>
#include <string.h>

#include "store_suite.h"
#include "testutil.h"

/* memory: every open is a new, empty store, so only one handle per test. */
static ct_err memory_open(ct_ctx *ctx, void *fixture, ct_store **out, ct_error *err)
{
    (void)fixture;
    return ct_store_new_memory(ctx, out, err);
}

static const ct_store_factory memory_factory = {"memory", NULL, memory_open, NULL, 0};

/* sqlite: a fresh directory per test; every open reaches the same file. */
static int sqlite_setup(ct_ctx *ctx, void **fixture)
{
    (void)ctx;
    *fixture = ct_test_tmpdir();
    return *fixture ? 0 : -1;
}

static ct_err sqlite_open(ct_ctx *ctx, void *fixture, ct_store **out, ct_error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store.db", (const char *)fixture);
    return ct_store_new_sqlite(ctx, path, out, err);
}

static void sqlite_teardown(void *fixture)
{
    ct_test_rmrf(fixture);
    free(fixture);
}

static const ct_store_factory sqlite_factory = {"sqlite", sqlite_setup, sqlite_open,
                                                sqlite_teardown, 1};

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("store");
    ct_add_store_conformance(s, &memory_factory);
    ct_add_store_conformance(s, &sqlite_factory);
    return s;
}
