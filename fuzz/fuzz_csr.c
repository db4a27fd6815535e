/*
 * fuzz_csr.c - the certificate request the bridge receives from a peer
 * during bootstrap is hostile input. Feeds arbitrary bytes to
 * ct_cert_issue (DER parse, signature check, key import, issuance) under a
 * fixed CA; anything accepted must verify as a client certificate.
 */
#include <cloudtaser/cloudtaser.h>
#include <stdlib.h>

static ct_ctx *ctx;
static ct_key *ca_key;
static uint8_t *ca;
static size_t ca_len;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ct_cert_options o = CT_CERT_OPTIONS_INIT;
    (void)argc;
    (void)argv;
    o.common_name = "fuzz CA";
    if (ct_ctx_new(NULL, &ctx, NULL) != CT_OK || ct_key_generate(ctx, &ca_key, NULL) != CT_OK ||
        ct_ca_create(ctx, ca_key, &o, &ca, &ca_len, NULL) != CT_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct_cert_options o = CT_CERT_OPTIONS_INIT;
    uint8_t *cert = NULL;
    size_t len = 0;
    ct_error err;
    o.common_name = "fuzz leaf";
    if (ct_cert_issue(ctx, ca, ca_len, ca_key, data, size, CT_CERT_CLIENT, &o, &cert, &len,
                      &err) == CT_OK) {
        if (ct_cert_verify(ctx, ca, ca_len, cert, len, CT_CERT_CLIENT, &err) != CT_OK)
            abort(); /* we issued something that does not verify */
        ct_free(cert);
    }
    return 0;
}
