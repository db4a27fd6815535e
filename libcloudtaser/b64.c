/*
 * b64.c - strict base64 and base64url (b64.h). The character mapping is
 * arithmetic on masks (in the style of libsodium's sodium_bin2base64), so
 * neither encoding nor decoding branches on or indexes by the data.
 */
#include "b64.h"

/* All-ones when lo <= c <= hi, else 0 (c, lo, hi < 256). */
static unsigned in_range(unsigned c, unsigned lo, unsigned hi)
{
    return ((((c - lo) | (hi - c)) >> 8) & 1u) - 1u;
}

/* All-ones when c == x, else 0 (c, x < 256). */
static unsigned eq(unsigned c, unsigned x)
{
    return 0u - ((((c ^ x) - 1u) >> 8) & 1u);
}

static char enc6(unsigned x, ctp_b64_variant v)
{
    unsigned c62 = v == CTP_B64_URL ? '-' : '+';
    unsigned c63 = v == CTP_B64_URL ? '_' : '/';
    unsigned r = 0;
    r |= in_range(x, 0, 25) & (x + 'A');
    r |= in_range(x, 26, 51) & (x - 26 + 'a');
    r |= in_range(x, 52, 61) & (x - 52 + '0');
    r |= eq(x, 62) & c62;
    r |= eq(x, 63) & c63;
    return (char)r;
}

/* The 6-bit value of c, or 0xff if c is not in the alphabet. */
static unsigned dec6(unsigned c, ctp_b64_variant v)
{
    unsigned c62 = v == CTP_B64_URL ? '-' : '+';
    unsigned c63 = v == CTP_B64_URL ? '_' : '/';
    unsigned r = 0, hit = 0, m;
    m = in_range(c, 'A', 'Z');
    r |= m & (c - 'A');
    hit |= m;
    m = in_range(c, 'a', 'z');
    r |= m & (c - 'a' + 26);
    hit |= m;
    m = in_range(c, '0', '9');
    r |= m & (c - '0' + 52);
    hit |= m;
    m = eq(c, c62);
    r |= m & 62u;
    hit |= m;
    m = eq(c, c63);
    r |= m & 63u;
    hit |= m;
    return (r & hit & 0x3fu) | (~hit & 0xffu);
}

size_t ctp_b64_encoded_len(size_t n, ctp_b64_variant v)
{
    size_t full = n / 3, rest = n % 3;
    if (full > (SIZE_MAX - 4) / 4)
        return 0;
    if (v == CTP_B64_URL)
        return full * 4 + (rest ? rest + 1 : 0);
    return full * 4 + (rest ? 4 : 0);
}

size_t ctp_b64_encode(const uint8_t *in, size_t n, char *out, ctp_b64_variant v)
{
    size_t i = 0, o = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned w = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = enc6(w >> 18, v);
        out[o++] = enc6((w >> 12) & 63u, v);
        out[o++] = enc6((w >> 6) & 63u, v);
        out[o++] = enc6(w & 63u, v);
    }
    if (n - i == 1) {
        unsigned w = (unsigned)in[i] << 16;
        out[o++] = enc6(w >> 18, v);
        out[o++] = enc6((w >> 12) & 63u, v);
        if (v == CTP_B64_STD) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        unsigned w = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = enc6(w >> 18, v);
        out[o++] = enc6((w >> 12) & 63u, v);
        out[o++] = enc6((w >> 6) & 63u, v);
        if (v == CTP_B64_STD)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t ctp_b64_decoded_max(size_t n)
{
    return n / 4 * 3 + (n % 4 * 3) / 4;
}

int ctp_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len,
                   ctp_b64_variant v)
{
    size_t i, o = 0, rest;
    unsigned bad = 0;

    *out_len = 0;
    if (v == CTP_B64_STD) {
        /* Padded: whole quads, at most two '=' at the very end. */
        if (n % 4)
            return -1;
        if (n && in[n - 1] == '=') {
            n--;
            if (in[n - 1] == '=')
                n--;
        }
    }
    rest = n % 4;
    if (rest == 1)
        return -1;
    if (ctp_b64_decoded_max(n) > cap)
        return -1;
    for (i = 0; i + 4 <= n; i += 4) {
        unsigned a = dec6((unsigned char)in[i], v), b = dec6((unsigned char)in[i + 1], v);
        unsigned c = dec6((unsigned char)in[i + 2], v), d = dec6((unsigned char)in[i + 3], v);
        unsigned w = a << 18 | b << 12 | c << 6 | d;
        bad |= (a | b | c | d) & 0x80u;
        out[o++] = (uint8_t)(w >> 16);
        out[o++] = (uint8_t)(w >> 8);
        out[o++] = (uint8_t)w;
    }
    if (rest == 2) {
        unsigned a = dec6((unsigned char)in[i], v), b = dec6((unsigned char)in[i + 1], v);
        bad |= (a | b) & 0x80u;
        bad |= b & 0x0fu; /* unused low bits must be zero */
        out[o++] = (uint8_t)((a << 2) | (b >> 4));
    } else if (rest == 3) {
        unsigned a = dec6((unsigned char)in[i], v), b = dec6((unsigned char)in[i + 1], v);
        unsigned c = dec6((unsigned char)in[i + 2], v);
        bad |= (a | b | c) & 0x80u;
        bad |= c & 0x03u;
        out[o++] = (uint8_t)((a << 2) | (b >> 4));
        out[o++] = (uint8_t)(((b & 0x0fu) << 4) | (c >> 2));
    }
    if (bad)
        return -1;
    *out_len = o;
    return 0;
}
