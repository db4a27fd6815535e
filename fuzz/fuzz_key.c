/*
 * fuzz_key.c - private keys and certificates read from files and stores:
 * ct_key_load (PEM/DER, SEC1/PKCS#8), ct_cert_pem_to_der, and a round trip
 * of whatever loads.
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
    ct_key *k = NULL, *k2 = NULL;
    ct_secret *der = NULL;
    uint8_t *p1 = NULL, *p2 = NULL, *cder = NULL;
    size_t n1 = 0, n2 = 0, clen = 0;

    if (ct_key_load(ctx, data, size, &k, NULL) == CT_OK) {
        /* export -> load must give the same public key */
        if (ct_key_export(k, 0, &der, NULL) != CT_OK ||
            ct_key_load(ctx, ct_secret_data(der), ct_secret_len(der), &k2, NULL) != CT_OK ||
            ct_key_public_der(k, &p1, &n1, NULL) != CT_OK ||
            ct_key_public_der(k2, &p2, &n2, NULL) != CT_OK || n1 != n2 || memcmp(p1, p2, n1))
            abort();
    }
    if (ct_cert_pem_to_der((const char *)data, size, &cder, &clen, NULL) == CT_OK && clen == 0)
        abort();
    ct_free(cder);
    ct_free(p1);
    ct_free(p2);
    ct_secret_free(der);
    ct_key_free(k);
    ct_key_free(k2);
    return 0;
}
