/*
 * dev_issuer.c - a stand-in for a Kubernetes service-account issuer, for
 * demos and tests on a machine without a cluster. It writes:
 *
 *   DIR/issuer-key.pem  the issuer's private key (P-256; mode 0600; kept so
 *                       later tokens come from the same issuer)
 *   DIR/jwks.json       the issuer's public keys, shaped like the API
 *                       server's /openid/v1/jwks
 *   DIR/token           a fresh ES256 token with the claims of a projected
 *                       service-account token (iss, sub, aud, iat, nbf, exp,
 *                       jti, kubernetes.io namespace/serviceaccount)
 *
 * Usage: ct-dev-issuer DIR [--sub NS:SA] [--aud AUD] [--lifetime SECONDS]
 *                          [--issuer URL]
 * Real clusters sign with their own keys; the operator reads the projected
 * token file and the bridge never sees this program.
 */
#include "cloudtaser/cloudtaser.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROG "ct-dev-issuer"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " DIR [--sub NS:SA] [--aud AUD] [--lifetime SECONDS] [--issuer URL]\n"
"       " PROG " --help | --version\n"
"\n"
"A stand-in service-account issuer for demos and tests without a cluster. Writes\n"
"DIR/issuer-key.pem (kept, mode 0600), DIR/jwks.json (the public keys) and\n"
"DIR/token (a fresh ES256 token shaped like a projected service-account token,\n"
"mode 0600). Not for production.\n"
"\n"
"Options:\n"
"  --sub NS:SA        namespace and service account of the token\n"
"                     (default: cloudtaser-system:cloudtaser-operator)\n"
"  --aud AUD          audience (default: " CT_BOOTSTRAP_DEFAULT_AUDIENCE ")\n"
"  --lifetime SECONDS token lifetime (default: 600)\n"
"  --issuer URL       iss claim (default: https://kubernetes.default.svc.cluster.local)\n"
"  -h, --help         this help\n"
"  -V, --version      the version\n"
"\n"
"Exit status: 0 on success, 1 on an error writing or signing, 2 on a bad\n"
"command line.\n");
}

static int write_file(const char *dir, const char *name, const void *data, size_t len,
                      mode_t mode)
{
    char path[4096];
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) != 0) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int read_file(const char *dir, const char *name, uint8_t **out, size_t *len)
{
    char path[4096];
    FILE *f;
    long n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0 || n > 65536 || !(*out = malloc((size_t)n))) {
        fclose(f);
        return -1;
    }
    *len = fread(*out, 1, (size_t)n, f);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir, *sub = "cloudtaser-system:cloudtaser-operator";
    const char *aud = CT_BOOTSTRAP_DEFAULT_AUDIENCE;
    const char *iss = "https://kubernetes.default.svc.cluster.local";
    long lifetime = 600;
    ct_ctx *ctx = NULL;
    ct_key *key = NULL;
    ct_secret *pem = NULL;
    char *jwks = NULL, *token = NULL, claims[1024], ns[128], sa[128], jti[33];
    uint8_t rnd[16], *kbuf = NULL;
    size_t klen = 0;
    ct_error err;
    int64_t now;
    int i, rc = 1;

    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf(PROG " %s (libcloudtaser %s)\n", CT_VERSION_STRING, ct_version());
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2)
            fprintf(stderr, PROG ": unknown option '%s'\n", argv[1]);
        else
            fprintf(stderr, PROG ": missing DIR\n");
        fprintf(stderr, "Try '" PROG " --help' for more information.\n");
        return 2;
    }
    dir = argv[1];
    for (i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sub"))
            sub = argv[i + 1];
        else if (!strcmp(argv[i], "--aud"))
            aud = argv[i + 1];
        else if (!strcmp(argv[i], "--issuer"))
            iss = argv[i + 1];
        else if (!strcmp(argv[i], "--lifetime"))
            lifetime = strtol(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, PROG ": unknown option '%s'\nTry '" PROG
                            " --help' for more information.\n", argv[i]);
            return 2;
        }
    }
    if (i != argc || lifetime < 1 || sscanf(sub, "%127[^:]:%127s", ns, sa) != 2) {
        fprintf(stderr, PROG ": bad arguments (--sub is NAMESPACE:SERVICEACCOUNT)\nTry '" PROG
                        " --help' for more information.\n");
        return 2;
    }
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK)
        goto fail;
    if (read_file(dir, "issuer-key.pem", &kbuf, &klen) == 0) {
        if (ct_key_load(ctx, kbuf, klen, &key, &err) != CT_OK)
            goto fail;
    } else {
        if (ct_key_generate(ctx, &key, &err) != CT_OK || ct_key_export(key, 1, &pem, &err) != CT_OK)
            goto fail;
        if (write_file(dir, "issuer-key.pem", ct_secret_data(pem), ct_secret_len(pem), 0600))
            goto out;
    }
    if (ct_jwks_from_key(key, &jwks, &err) != CT_OK)
        goto fail;
    if (write_file(dir, "jwks.json", jwks, strlen(jwks), 0644))
        goto out;
    if (ct_ctx_random(ctx, rnd, sizeof rnd) != CT_OK)
        goto out;
    ct_hex(rnd, sizeof rnd, jti);
    now = ct_ctx_wall_ms(ctx) / 1000;
    snprintf(claims, sizeof claims,
             "{\"aud\":[\"%s\"],\"exp\":%lld,\"iat\":%lld,\"nbf\":%lld,\"iss\":\"%s\","
             "\"jti\":\"%s\",\"kubernetes.io\":{\"namespace\":\"%s\",\"serviceaccount\":"
             "{\"name\":\"%s\",\"uid\":\"00000000-0000-4000-8000-000000000001\"}},"
             "\"sub\":\"system:serviceaccount:%s:%s\"}",
             aud, (long long)(now + lifetime), (long long)now, (long long)now, iss, jti, ns, sa,
             ns, sa);
    if (ct_jwt_sign_es256(ctx, key, claims, &token, &err) != CT_OK)
        goto fail;
    if (write_file(dir, "token", token, strlen(token), 0600))
        goto out;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, PROG ": %s\n", err.message);
out:
    if (token)
        ct_secure_wipe(token, strlen(token));
    ct_free(token);
    ct_free(jwks);
    if (kbuf)
        ct_secure_wipe(kbuf, klen);
    free(kbuf);
    ct_secret_free(pem);
    ct_key_free(key);
    ct_ctx_free(ctx);
    return rc;
}
