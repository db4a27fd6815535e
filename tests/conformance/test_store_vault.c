/*
 * test_store_vault.c - the store conformance suite on the Vault store,
 * against the fake server (tests/support/fake_vault.c) in both flavours:
 * HashiCorp Vault and OpenBao. Each test gets a fresh server; every handle
 * (also in forked children) talks to it over HTTPS with the test CA.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_vault.h"
#include "store_suite.h"
#include "testutil.h"

#define TOKEN "hvs.CAESIconformance0123456789abcdefghijklmnopqrstuv"

typedef struct vfix {
    fake_vault *fv;
    char ca[512];
} vfix;

static int setup(ct_ctx *ctx, void **fixture, fv_flavour fl)
{
    fv_options o;
    vfix *x = calloc(1, sizeof *x);
    const char *dir = getenv("CT_TEST_FIXTURES");
    (void)ctx;
    memset(&o, 0, sizeof o);
    o.flavour = fl;
    if (!x || !dir)
        return -1;
    snprintf(x->ca, sizeof x->ca, "%s/tls/ca.pem", dir);
    x->fv = fake_vault_start(&o);
    if (!x->fv) {
        free(x);
        return -1;
    }
    fake_vault_add_token(x->fv, TOKEN, 1);
    *fixture = x;
    return 0;
}

static int setup_vault(ct_ctx *ctx, void **fixture)
{
    return setup(ctx, fixture, FV_VAULT);
}

static int setup_openbao(ct_ctx *ctx, void **fixture)
{
    return setup(ctx, fixture, FV_OPENBAO);
}

static ct_err open_store(ct_ctx *ctx, void *fixture, ct_store **out, ct_error *err)
{
    vfix *x = fixture;
    ct_vault_options o = CT_VAULT_OPTIONS_INIT;
    o.address = fake_vault_addr(x->fv);
    o.token = TOKEN;
    o.ca_file = x->ca;
    o.timeout_ms = 20000;
    return ct_store_new_vault(ctx, &o, out, err);
}

static void teardown(void *fixture)
{
    vfix *x = fixture;
    fake_vault_stop(x->fv);
    free(x);
}

static const ct_store_factory vault_factory = {"vault", setup_vault, open_store, teardown, 1};
static const ct_store_factory openbao_factory = {"openbao", setup_openbao, open_store, teardown,
                                                 1};

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("store_vault");
    ct_add_store_conformance(s, &vault_factory);
    ct_add_store_conformance(s, &openbao_factory);
    return s;
}
