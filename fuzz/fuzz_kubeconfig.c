/*
 * fuzz_kubeconfig.c - kubeconfig files are read with libyaml (k8s_config.c)
 * and may come from anywhere a user was told to download one. Every input
 * goes to the kubeconfig reader (current context, and a context named
 * "prod") and, as a string, to the server-URL check. Contracts: no
 * over-read or leak (ASan); a failure leaves the result cleared; an
 * accepted result has an https server without a trailing '/', a context
 * and cluster name, a bearer token of printable ASCII only, PEM data where
 * data was given, and a certificate only with its key; an accepted URL is
 * a fixed point of the check.
 *
 * The reader is internal (ctp_kubeconfig_parse): meson links k8s_config.c,
 * k8s_json.c, b64.c and error.c into this program.
 */
#include "k8s_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const ctp_kubeconfig *k)
{
    size_t i, n;
    if (!k->context || !k->cluster || !k->user || !k->ns || !k->server)
        abort();
    n = strlen(k->server);
    if (n < 9 || strncmp(k->server, "https://", 8) != 0 || k->server[n - 1] == '/')
        abort();
    if (k->token) {
        const uint8_t *t = ct_secret_data(k->token);
        if (ct_secret_len(k->token) == 0)
            abort();
        for (i = 0; i < ct_secret_len(k->token); i++)
            if (t[i] <= 0x20 || t[i] >= 0x7f)
                abort();
    }
    if (k->ca_pem && (k->ca_pem_len < 11 || memcmp(k->ca_pem, "-----BEGIN ", 11) != 0))
        abort();
    if ((k->cert_pem || k->cert_file) != (k->key_pem || k->key_file))
        abort();
    if (k->ca_pem && k->ca_file)
        abort();
}

static void cleared(const ctp_kubeconfig *k)
{
    static const ctp_kubeconfig zero;
    if (memcmp(k, &zero, sizeof zero) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const contexts[] = { NULL, "prod" };
    char *in = malloc(size + 1);
    ctp_kubeconfig k;
    ct_error err;
    size_t i;

    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    for (i = 0; i < 2; i++) {
        if (ctp_kubeconfig_parse(in, size, contexts[i], "fuzz", "/base", &k, &err) == CT_OK) {
            check(&k);
            ctp_kubeconfig_clear(&k);
        } else {
            cleared(&k);
            if (strnlen(err.message, sizeof err.message) == sizeof err.message)
                abort();
        }
    }
    if (size < 4096 && !memchr(data, 0, size)) {
        char *url = NULL, *again = NULL;
        if (ctp_k8s_server_url(in, &url, &err) == CT_OK) {
            if (ctp_k8s_server_url(url, &again, &err) != CT_OK || strcmp(url, again) != 0)
                abort();
            free(again);
            free(url);
        } else if (url) {
            abort();
        }
    }
    free(in);
    return 0;
}
