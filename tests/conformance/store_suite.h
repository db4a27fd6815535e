/*
 * store_suite.h - the store conformance suite, run against every store
 * implementation (nng style: one suite, many factories).
 *
 * A factory makes a fresh, empty store for each test and opens handles on
 * it. Every test starts with setup (if any), opens one handle, and ends by
 * freeing its handles and calling teardown. Tests that need several handles
 * on the same data (separate threads' handles, forked children) call open
 * again; they run only for factories with `multiprocess` set, whose handles
 * all reach the same data, also from a child process forked after setup.
 * A forked child never inherits an open handle: the suite frees the
 * parent's handle before fork() and opens a new one afterwards.
 *
 * The suite needs CT_STORE_F_CAS. Keys used: only what ct_store_key_valid
 * accepts, so a Vault-backed factory can run the suite unchanged.
 */
#ifndef CT_STORE_SUITE_H
#define CT_STORE_SUITE_H

#include <check.h>

#include "cloudtaser/cloudtaser.h"

typedef struct ct_store_factory {
    const char *name;
    /*
     * Makes the fixture for one test (e.g. a temporary directory, a fake
     * server). May be NULL (fixture NULL). Returns 0 on success.
     */
    int (*setup)(ct_ctx *ctx, void **fixture);
    /* Opens a handle on the fixture's store. REQUIRED. */
    ct_err (*open)(ct_ctx *ctx, void *fixture, ct_store **out, ct_error *err);
    /* Removes the fixture; may be NULL. Called after every handle is freed. */
    void (*teardown)(void *fixture);
    /*
     * 1 if handles opened separately (in other threads or forked processes)
     * share the store's data: the multi-handle and multi-process tests run.
     */
    int multiprocess;
} ct_store_factory;

/*
 * Adds a test case named after the factory with every conformance test to
 * `s`. `f` must stay valid until the suite has run (use a static).
 * At most 8 factories per program.
 */
void ct_add_store_conformance(Suite *s, const ct_store_factory *f);

#endif
