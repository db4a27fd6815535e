/*
 * pki_names.c - certificate options: the subject's names are checked, and
 * the subject alternative names (DNS names, IP addresses) encoded.
 */
#include "pki_internal.h"

#include <arpa/inet.h>
#include <string.h>

/* Valid UTF-8 without control characters. */
static int text_ok(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k, extra;
        uint32_t cp;
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + extra >= n)
            return 0;
        for (k = 1; k <= extra; k++) {
            unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += extra + 1;
    }
    return 1;
}

/* LDH labels of 1..63 bytes, total <= 253, optional leading "*." label. */
static int dns_name_ok(const char *s)
{
    size_t n = strnlen(s, 254), i = 0, label = 0;
    if (n == 0 || n > 253)
        return 0;
    if (s[0] == '*') {
        if (n < 3 || s[1] != '.')
            return 0;
        i = 2;
    }
    for (; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (c == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return label != 0 && s[n - 1] != '-';
}

static ct_err check_text(const char *what, const char *s, int required, ct_error *err)
{
    size_t n;
    if (!s || !*s) {
        if (required)
            return ctp_err(err, CT_E_INVALID, 0, "%s is required", what);
        return CT_OK;
    }
    n = strnlen(s, CTP_PKI_NAME_MAX + 1);
    if (n > CTP_PKI_NAME_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "%s is longer than %d bytes", what,
                       CTP_PKI_NAME_MAX);
    if (!text_ok(s, n))
        return ctp_err(err, CT_E_INVALID, 0,
                       "%s must be UTF-8 text without control characters", what);
    return CT_OK;
}

ct_err ctp_pki_check_opts(const ct_cert_options *o, int is_ca, ct_error *err)
{
    size_t i;
    uint8_t ip[16];
    ct_err rc;

    if (!o)
        return ctp_err(err, CT_E_INVALID, 0, "certificate options are required");
    if (o->version != CT_CERT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_cert_options version %u is not supported",
                       (unsigned)o->version);
    if ((rc = check_text("common_name", o->common_name, 1, err)) != CT_OK ||
        (rc = check_text("organization", o->organization, 0, err)) != CT_OK)
        return rc;
    if (o->days_valid > CTP_PKI_DAYS_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "days_valid %u exceeds %u", (unsigned)o->days_valid,
                       CTP_PKI_DAYS_MAX);
    if (o->n_dns_names > CT_CERT_MAX_NAMES || o->n_ip_addrs > CT_CERT_MAX_NAMES)
        return ctp_err(err, CT_E_INVALID, 0, "at most %d DNS names and %d IP addresses",
                       CT_CERT_MAX_NAMES, CT_CERT_MAX_NAMES);
    if ((o->n_dns_names && !o->dns_names) || (o->n_ip_addrs && !o->ip_addrs))
        return ctp_err(err, CT_E_INVALID, 0, "name count given but the name array is NULL");
    if (is_ca && (o->n_dns_names || o->n_ip_addrs))
        return ctp_err(err, CT_E_INVALID, 0,
                       "a CA certificate carries no subject alternative names");
    for (i = 0; i < o->n_dns_names; i++) {
        const char *s = o->dns_names[i];
        if (!s || !dns_name_ok(s))
            return ctp_err(err, CT_E_INVALID, 0,
                           "dns_names[%zu] is not a valid DNS name (letters, digits, '-', "
                           "'.', optional leading \"*.\", at most 253 bytes)",
                           i);
        if (inet_pton(AF_INET, s, ip) == 1)
            return ctp_err(err, CT_E_INVALID, 0,
                           "dns_names[%zu] is an IP address: put it in ip_addrs", i);
    }
    for (i = 0; i < o->n_ip_addrs; i++)
        if (!o->ip_addrs[i] || !ctp_ip_literal(o->ip_addrs[i], ip))
            return ctp_err(err, CT_E_INVALID, 0,
                           "ip_addrs[%zu] is not an IPv4 or IPv6 address literal", i);
    return CT_OK;
}

static size_t der_len_size(size_t n)
{
    return n < 0x80 ? 1 : n < 0x100 ? 2 : 3;
}

static uint8_t *der_put_hdr(uint8_t *p, uint8_t tag, size_t n)
{
    *p++ = tag;
    if (n < 0x80) {
        *p++ = (uint8_t)n;
    } else if (n < 0x100) {
        *p++ = 0x81;
        *p++ = (uint8_t)n;
    } else {
        *p++ = 0x82;
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)n;
    }
    return p;
}

/*
 * GeneralNames DER for the SANs of `o` (already validated): dNSName [2]
 * IA5String and iPAddress [7] OCTET STRING. Returns the size (0: no names).
 */
int ctp_pki_sans_encode(const ct_cert_options *o, uint8_t *out, size_t cap)
{
    size_t i, content = 0, total;
    uint8_t ip[16], *p;

    for (i = 0; i < o->n_dns_names; i++) {
        size_t l = strlen(o->dns_names[i]);
        content += 1 + der_len_size(l) + l;
    }
    for (i = 0; i < o->n_ip_addrs; i++)
        content += 2 + ctp_ip_literal(o->ip_addrs[i], ip);
    if (content == 0)
        return 0;
    total = 1 + der_len_size(content) + content;
    if (total > cap || total > 0xffff)
        return -1;
    p = der_put_hdr(out, 0x30, content);
    for (i = 0; i < o->n_dns_names; i++) {
        size_t l = strlen(o->dns_names[i]);
        p = der_put_hdr(p, 0x82, l);
        memcpy(p, o->dns_names[i], l);
        p += l;
    }
    for (i = 0; i < o->n_ip_addrs; i++) {
        size_t l = ctp_ip_literal(o->ip_addrs[i], ip);
        p = der_put_hdr(p, 0x87, l);
        memcpy(p, ip, l);
        p += l;
    }
    return (int)total;
}
