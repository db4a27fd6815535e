/* der.c - a bounded DER reader and IP literals, shared by TLS and PKI. */
#include "der.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

static int der_get(ctp_der *r, uint8_t *tag, ctp_der *val, bool lax)
{
    size_t len, hdr = 2;
    if (r->n < 2 || (r->p[0] & 0x1f) == 0x1f)
        return -1;
    len = r->p[1];
    if (len & 0x80) {
        size_t nl = len & 0x7f, k;
        if (nl == 0 || nl > (lax ? 4u : 3u) || r->n < 2 + nl || (!lax && r->p[2] == 0))
            return -1;
        len = 0;
        for (k = 0; k < nl; k++)
            len = (len << 8) | r->p[2 + k];
        if (!lax && len < 0x80)
            return -1;
        hdr += nl;
    }
    if (len > r->n - hdr)
        return -1;
    *tag = r->p[0];
    val->p = r->p + hdr;
    val->n = len;
    r->p += hdr + len;
    r->n -= hdr + len;
    return 0;
}

int ctp_der_get(ctp_der *r, uint8_t *tag, ctp_der *val)
{
    return der_get(r, tag, val, false);
}

int ctp_der_get_lax(ctp_der *r, uint8_t *tag, ctp_der *val)
{
    return der_get(r, tag, val, true);
}

int ctp_der_expect(ctp_der *r, uint8_t tag, ctp_der *val)
{
    uint8_t t;
    return (ctp_der_get(r, &t, val) == 0 && t == tag) ? 0 : -1;
}

int ctp_der_is(const ctp_der *v, const uint8_t *bytes, size_t n)
{
    return v->n == n && memcmp(v->p, bytes, n) == 0;
}

size_t ctp_ip_literal(const char *s, uint8_t out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 16;
    return 0;
}
