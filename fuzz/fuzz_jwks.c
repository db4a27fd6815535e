/*
 * fuzz_jwks.c - a JSON Web Key Set is pinned from configuration or fetched
 * from a cluster's OIDC discovery: hostile input. Feeds arbitrary bytes to
 * ct_jwks_parse; anything accepted must serialise canonically: the
 * serialisation parses back to the same number of keys and serialises to
 * the identical text.
 */
#include <cloudtaser/cloudtaser.h>
#include <stdlib.h>
#include <string.h>

static ct_ctx *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (ct_ctx_new(NULL, &ctx, NULL) != CT_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct_jwks *a = NULL, *b = NULL;
    char *s1 = NULL, *s2 = NULL;

    if (ct_jwks_parse(ctx, (const char *)data, size, &a, NULL) != CT_OK)
        return 0;
    if (ct_jwks_count(a) < 1 || ct_jwks_count(a) > CT_JWKS_MAX_KEYS ||
        ct_jwks_serialize(a, &s1, NULL) != CT_OK ||
        ct_jwks_parse(ctx, s1, strlen(s1), &b, NULL) != CT_OK ||
        ct_jwks_count(b) != ct_jwks_count(a) || ct_jwks_serialize(b, &s2, NULL) != CT_OK ||
        strcmp(s1, s2) != 0)
        abort(); /* accepted, but not canonical */
    ct_free(s1);
    ct_free(s2);
    ct_jwks_free(a);
    ct_jwks_free(b);
    return 0;
}
