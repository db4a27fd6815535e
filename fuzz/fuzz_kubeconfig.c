/*
 * fuzz_kubeconfig.c - kubeconfig files are read with libyaml (k8s_config.c)
 * and may come from anywhere a user was told to download one. Every input
 * goes to the kubeconfig reader (current context, and a context named
 * "prod"); cut at each "\n#--\n" into up to 4 files, to the KUBECONFIG
 * merge (ctp_kubeconfig_merge); and, as a string, to the server-URL check.
 * Contracts: no over-read or leak (ASan); a failure leaves the result
 * cleared; a merge names a file that exists for each entry; an
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
    /* the same bytes cut at each "\n#--\n" into up to 4 files, merged */
    {
        ctp_kubeconfig_src src[4];
        static const char *const names[4] = { "f0", "f1", "f2", "f3" };
        static const char *const dirs[4] = { "/d0", "/d1", "/d2", "/d3" };
        const char *p = in, *end = in + size;
        size_t n = 0;
        while (n < 4) {
            const char *cut = n < 3 ? memmem(p, (size_t)(end - p), "\n#--\n", 5) : NULL;
            src[n].text = p;
            src[n].len = cut ? (size_t)(cut - p) : (size_t)(end - p);
            src[n].where = names[n];
            src[n].base_dir = dirs[n];
            n++;
            if (!cut)
                break;
            p = cut + 5;
        }
        if (n > 1) {
            for (i = 0; i < 2; i++) {
                if (ctp_kubeconfig_merge(src, n, contexts[i], &k, &err) == CT_OK) {
                    check(&k);
                    if (k.context_src >= n || k.cluster_src >= n || k.user_src >= n)
                        abort();
                    ctp_kubeconfig_clear(&k);
                } else {
                    cleared(&k);
                    if (strnlen(err.message, sizeof err.message) == sizeof err.message)
                        abort();
                }
            }
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
