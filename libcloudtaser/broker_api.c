/*
 * broker_api.c - ct_vault_api_allowed: the subset of the Vault HTTP API the
 * broker serves and the bridge forwards (pure, shared by both ends).
 */
#include "internal.h"

#include <cloudtaser/broker.h>

#include <string.h>

#define MAX_PATH 1024

static int is_post(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0;
}

/* Segments are non-empty and not "." / ".."; a trailing '/' only if allowed. */
static int path_ok(const char *p, size_t n, int trailing_ok)
{
    size_t i, start = 0;
    if (n == 0 || n > MAX_PATH || p[0] == '/')
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    for (i = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            size_t len = i - start;
            if (len == 0 && !(i == n && trailing_ok && n > 0))
                return 0;
            if ((len == 1 && p[start] == '.') ||
                (len == 2 && p[start] == '.' && p[start + 1] == '.'))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

static int seg_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

int ct_vault_api_allowed(const char *method, const char *path, const char **kind)
{
    const char *k = NULL, *seg;
    size_t n, i;
    int r = 0;

    if (kind)
        *kind = NULL;
    if (!method || !path)
        return 0;
    n = strlen(path);
    if (!path_ok(path, n, strcmp(method, "LIST") == 0))
        return 0;
    if (strcmp(path, "sys/health") == 0) {
        k = "health";
        r = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ? 1 : -1;
    } else if (strcmp(path, "auth/token/lookup-self") == 0) {
        k = "lookup-self";
        r = strcmp(method, "GET") == 0 || is_post(method) ? 1 : -1;
    } else if (strcmp(path, "auth/token/renew-self") == 0) {
        k = "renew-self";
        r = is_post(method) ? 1 : -1;
    } else if (strncmp(path, "auth/", 5) == 0) {
        /* auth/<mount...>/login, mount not "token" */
        if (n > 11 && strcmp(path + n - 6, "/login") == 0 && strncmp(path, "auth/token/", 11) != 0) {
            k = "login";
            r = is_post(method) ? 1 : -1;
        }
    } else {
        /* <mount...>/(data|metadata)/<path> */
        const char *first_end = strchr(path, '/');
        size_t flen = first_end ? (size_t)(first_end - path) : n;
        if (seg_eq(path, flen, "sys") || seg_eq(path, flen, "identity") ||
            seg_eq(path, flen, "cubbyhole") || !first_end)
            goto out;
        for (seg = first_end + 1; *seg;) {
            const char *e = strchr(seg, '/');
            size_t sl = e ? (size_t)(e - seg) : strlen(seg);
            const char *rest = e ? e + 1 : "";
            if (seg_eq(seg, sl, "data")) {
                if (!*rest || rest[strlen(rest) - 1] == '/')
                    goto out;
                k = "kv-read";
                r = strcmp(method, "GET") == 0 ? 1 : -1;
                break;
            }
            if (seg_eq(seg, sl, "metadata")) {
                if (strcmp(method, "LIST") == 0) {
                    k = "kv-list";
                    r = 1;
                } else if (!*rest) {
                    goto out;
                } else {
                    k = "kv-metadata";
                    r = strcmp(method, "GET") == 0 ? 1 : -1;
                }
                break;
            }
            if (!e)
                break;
            seg = e + 1;
        }
    }
out:
    for (i = 0; method[i]; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return 0;
    if (kind)
        *kind = k;
    return r;
}
