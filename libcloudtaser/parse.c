/*
 * parse.c - small text parsers the tools and bindings share: host:port and
 * hex strings.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

ct_err ct_hostport_parse(const char *s, uint16_t default_port, char *host, size_t host_cap,
                         uint16_t *port, ct_error *err)
{
    const char *h, *rest;
    size_t hl;

    if (!s || !host || !port || host_cap == 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_hostport_parse: NULL argument");
    host[0] = 0;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return ctp_err(err, CT_E_INVALID, 0, "'%s': missing ']' after the IPv6 address", s);
        h = s + 1;
        hl = (size_t)(close - h);
        rest = close + 1;
        if (*rest && *rest != ':')
            return ctp_err(err, CT_E_INVALID, 0, "'%s': expected ':PORT' after ']'", s);
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            return ctp_err(err, CT_E_INVALID, 0,
                           "'%s': put an IPv6 address in brackets, e.g. [::1]:443", s);
        h = s;
        hl = colon ? (size_t)(colon - s) : strlen(s);
        rest = colon ? colon : s + hl;
    }
    if (hl == 0)
        return ctp_err(err, CT_E_INVALID, 0, "'%s': the host is empty", s);
    if (hl >= host_cap)
        return ctp_err(err, CT_E_INVALID, 0, "'%s': the host is too long", s);
    if (*rest == ':') {
        char *end;
        unsigned long p;
        errno = 0;
        p = strtoul(rest + 1, &end, 10);
        if (rest[1] < '0' || rest[1] > '9' || *end || errno || p == 0 || p > 65535)
            return ctp_err(err, CT_E_INVALID, 0, "'%s': the port must be a number from 1 to 65535",
                           s);
        *port = (uint16_t)p;
    } else {
        *port = default_port;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    return CT_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ct_err ct_unhex(const char *hex, uint8_t *out, size_t len, ct_error *err)
{
    size_t i, n;

    if (!hex || (!out && len))
        return ctp_err(err, CT_E_INVALID, 0, "ct_unhex: NULL argument");
    if (strncmp(hex, "sha256:", 7) == 0)
        hex += 7;
    n = strlen(hex);
    if (n != 2 * len)
        return ctp_err(err, CT_E_INVALID, 0, "expected %zu hex digits, got %zu", 2 * len, n);
    for (i = 0; i < len; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return ctp_err(err, CT_E_INVALID, 0, "not a hex digit at position %zu",
                           a < 0 ? 2 * i : 2 * i + 1);
        out[i] = (uint8_t)(a << 4 | b);
    }
    return CT_OK;
}
