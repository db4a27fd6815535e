/*
 * fuzz_vault_api.c - the broker's allowlist (ct_vault_api_allowed): the
 * first byte picks a method, the rest is the path. Besides not crashing,
 * an allowed path never carries a "." or ".." segment, an empty segment
 * (but a trailing "/" on LIST) or a control character, and never names the
 * sys, identity or cubbyhole mounts except sys/health.
 */
#include "cloudtaser/broker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const methods[] = {"GET", "HEAD", "LIST", "POST", "PUT", "DELETE", "PATCH",
                                      "get", "OPTIONS"};

static void check_allowed(const char *m, const char *p)
{
    size_t n = strlen(p), i;
    if (n == 0 || p[0] == '/' || strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../") ||
        strncmp(p, "./", 2) == 0 || strncmp(p, "../", 3) == 0)
        abort();
    if ((n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0))
        abort();
    if (p[n - 1] == '/' && strcmp(m, "LIST") != 0)
        abort();
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            abort();
    if ((strncmp(p, "sys/", 4) == 0 && strcmp(p, "sys/health") != 0) ||
        strncmp(p, "identity/", 9) == 0 || strncmp(p, "cubbyhole/", 10) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *m, *kind = NULL;
    char *p;
    int r;
    if (size < 1 || size > 2048)
        return 0;
    m = methods[data[0] % (sizeof methods / sizeof methods[0])];
    p = malloc(size);
    if (!p)
        return 0;
    memcpy(p, data + 1, size - 1);
    p[size - 1] = 0;
    r = ct_vault_api_allowed(m, p, &kind);
    if (r == 1)
        check_allowed(m, p);
    if (r != 0 && !kind)
        abort();
    free(p);
    return 0;
}
