/*
 * fuzz_bootstrap_msg.c - the two init messages (PROTOCOL.md 2.3) are
 * hostile input: the bridge decodes a request from whoever knows a
 * fingerprint, the operator an answer from whoever does. Every input goes
 * to the request decoder, the answer decoder and the strict base64
 * decoder. Contracts: no over-read (ASan, exact-size copy), and whatever is
 * accepted is well formed and survives an encode/decode round trip
 * unchanged; a strictly decoded base64 string re-encodes to itself.
 *
 * The decoders are internal (ctp_boot_*): meson links bootstrap_msg.c and
 * error.c into this program, the rest comes from the library.
 */
#include "bootstrap_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const uint8_t *in, size_t size)
{
    ctp_boot_request r, again;
    ct_secret *enc = NULL;
    const char *tok;
    size_t tok_len;

    if (ctp_boot_request_decode(in, size, &r, NULL) != CT_OK)
        return;
    if (strlen(r.fingerprint) != CT_FINGERPRINT_LEN || !r.csr || r.csr_len == 0 ||
        r.csr_len > CTP_BOOT_MAX_CSR || (r.jwks && !r.token) ||
        r.first != (r.jwks != NULL || r.token == NULL) ||
        (r.token && (ct_secret_len(r.token) == 0 || ct_secret_len(r.token) > CT_JWT_MAX_LEN)))
        abort();
    tok = r.token ? (const char *)ct_secret_data(r.token) : NULL;
    tok_len = r.token ? ct_secret_len(r.token) : 0;
    /* Unknown members are dropped and JSON re-serialised: the fields must survive. */
    if (ctp_boot_request_encode(r.fingerprint, r.csr, r.csr_len, r.jwks, r.jwks_len, tok,
                                tok_len, &enc, NULL) == CT_OK) {
        if (ctp_boot_request_decode(ct_secret_data(enc), ct_secret_len(enc), &again, NULL) !=
            CT_OK)
            abort();
        if (strcmp(again.fingerprint, r.fingerprint) != 0 || again.csr_len != r.csr_len ||
            memcmp(again.csr, r.csr, r.csr_len) != 0 || again.first != r.first ||
            !again.token != !r.token || !again.jwks != !r.jwks ||
            (r.token && (ct_secret_len(again.token) != tok_len ||
                         memcmp(ct_secret_data(again.token), tok, tok_len) != 0)))
            abort();
        ctp_boot_request_clear(&again);
        ct_secret_free(enc);
    }
    ctp_boot_request_clear(&r);
}

static void check_answer(const uint8_t *in, size_t size)
{
    ctp_boot_answer a, again;
    char *enc = NULL;
    size_t len = 0, i;
    ct_err rc;

    if (ctp_boot_answer_decode(in, size, &a, NULL) != CT_OK)
        return;
    if (a.issued) {
        if (!a.ca || !a.cert || !a.ca_len || !a.cert_len || a.ca_len > CTP_BOOT_MAX_CERT ||
            a.cert_len > CTP_BOOT_MAX_CERT)
            abort();
        rc = ctp_boot_answer_issued(a.ca, a.ca_len, a.cert, a.cert_len, a.reissue, &enc, &len,
                                    NULL);
    } else {
        for (i = 0; a.message[i]; i++)
            if ((unsigned char)a.message[i] < 0x20 || (unsigned char)a.message[i] > 0x7e)
                abort();
        if (strlen(a.message) > CTP_BOOT_MAX_TEXT || strlen(a.reason_name) >= 32)
            abort();
        if (a.reason != CT_BOOT_R_NONE &&
            strcmp(ct_boot_refusal_name(a.reason), a.reason_name) != 0)
            abort();
        rc = a.reason == CT_BOOT_R_NONE
                 ? CT_E_INVALID
                 : ctp_boot_answer_refused(a.reason, a.message, &enc, &len, NULL);
    }
    if (rc == CT_OK) {
        if (ctp_boot_answer_decode((const uint8_t *)enc, len, &again, NULL) != CT_OK ||
            again.issued != a.issued || again.reissue != a.reissue ||
            again.reason != a.reason || strcmp(again.message, a.message) != 0 ||
            again.ca_len != a.ca_len || again.cert_len != a.cert_len ||
            (a.issued && (memcmp(again.ca, a.ca, a.ca_len) != 0 ||
                          memcmp(again.cert, a.cert, a.cert_len) != 0)))
            abort();
        ctp_boot_answer_clear(&again);
    }
    free(enc);
    ctp_boot_answer_clear(&a);
}

static void check_b64(const uint8_t *in, size_t size)
{
    uint8_t *dec = NULL;
    size_t n = 0;
    char *enc;

    if (ctp_boot_b64_decode((const char *)in, size, 1 << 20, &dec, &n) != 0)
        return;
    enc = ctp_boot_b64_encode(dec, n);
    if (!enc || strlen(enc) != size || memcmp(enc, in, size) != 0)
        abort();
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1); /* exact size: overreads trip ASan */
    if (!in)
        return 0;
    memcpy(in, data, size);
    check_request(in, size);
    check_answer(in, size);
    check_b64(in, size);
    free(in);
    return 0;
}
