/*
 * b64.h - base64 (RFC 4648 section 4, with padding) and base64url (section
 * 5, without padding, as JOSE uses it). Private; non-static internals are
 * named ctp_* and are never exported.
 *
 * Decoding is strict, so every byte string has exactly one accepted
 * encoding: no whitespace, no characters of the other alphabet, padding
 * exactly when the variant requires it, and the unused low bits of the last
 * character must be zero. Character mapping has no secret-dependent branches
 * or table lookups, so the helpers may carry key material.
 */
#ifndef CTP_B64_H
#define CTP_B64_H

#include <stddef.h>
#include <stdint.h>

typedef enum ctp_b64_variant {
    CTP_B64_STD = 0, /* A-Z a-z 0-9 + /, '=' padding */
    CTP_B64_URL = 1  /* A-Z a-z 0-9 - _, no padding */
} ctp_b64_variant;

/* Characters ctp_b64_encode writes for n bytes (without the NUL); 0 on overflow. */
size_t ctp_b64_encoded_len(size_t n, ctp_b64_variant v);

/*
 * Encodes in[0..n) into out, which holds ctp_b64_encoded_len(n, v) + 1
 * bytes, and NUL-terminates it. Returns the length written.
 */
size_t ctp_b64_encode(const uint8_t *in, size_t n, char *out, ctp_b64_variant v);

/* The most bytes a decode of n characters can produce. */
size_t ctp_b64_decoded_max(size_t n);

/*
 * Decodes in[0..n) into out (cap bytes; ctp_b64_decoded_max(n) always
 * suffices). Returns 0 and the length in *out_len, or -1 for invalid input
 * or too small a buffer (then out may hold partial output: wipe it if the
 * input was secret).
 */
int ctp_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len,
                   ctp_b64_variant v);

#endif
