/*
 * der.h - the X.509 plumbing that TLS (pins, IP SANs) and PKI (keys,
 * requests) share: a bounded DER reader and IP literals in their iPAddress
 * form. Private; non-static internals are named ctp_* and are never exported.
 */
#ifndef CTP_DER_H
#define CTP_DER_H

#include <stddef.h>
#include <stdint.h>

/* A window on DER bytes; reading consumes it from the front. */
typedef struct ctp_der {
    const uint8_t *p;
    size_t n;
} ctp_der;

/*
 * Reads one TLV from the front of r: tag, and the contents in *val (a window
 * into r's bytes). Single-byte tags and definite lengths only. 0 on success;
 * on failure -1 and r is left as it was.
 *
 * ctp_der_get is strict DER: the length in minimal form, in at most 3 bytes
 * (what the key and request formats need). ctp_der_get_lax accepts any
 * length form of up to 4 bytes, minimal or not: it reads certificates that a
 * peer sent and wolfSSL has already parsed.
 */
int ctp_der_get(ctp_der *r, uint8_t *tag, ctp_der *val);
int ctp_der_get_lax(ctp_der *r, uint8_t *tag, ctp_der *val);

/* ctp_der_get that also requires `tag`. 0 on success. */
int ctp_der_expect(ctp_der *r, uint8_t tag, ctp_der *val);

/* 1 if v holds exactly the n bytes at `bytes`. */
int ctp_der_is(const ctp_der *v, const uint8_t *bytes, size_t n);

/*
 * 4 or 16 for a valid IPv4 / IPv6 literal, with its address in network
 * order in out (the contents of an X.509 iPAddress name); 0 otherwise.
 */
size_t ctp_ip_literal(const char *s, uint8_t out[16]);

#endif
