/* room.c - fingerprint validation and room hashes. */
#include "internal.h"
#include "wolf.h"

#include <string.h>

static const char k_init_label[] = "cloudtaser-init:";

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

ct_err ct_fingerprint_canonical(const char *fp, char out[CT_FINGERPRINT_LEN + 1], ct_error *err)
{
    size_t i, n;
    if (!fp || !out)
        return ctp_err(err, CT_E_INVALID, 0, "fingerprint: NULL argument");
    n = strnlen(fp, CT_FINGERPRINT_LEN + 1);
    if (n != CT_FINGERPRINT_LEN)
        return ctp_err(err, CT_E_INVALID, 0,
                       "fingerprint must be a UUID of 36 characters "
                       "(the kube-system namespace UID), got %s%zu",
                       n > CT_FINGERPRINT_LEN ? "more than " : "", n);
    for (i = 0; i < CT_FINGERPRINT_LEN; i++) {
        char c = fp[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return ctp_err(err, CT_E_INVALID, 0,
                               "fingerprint is not a UUID: expected '-' at position %zu", i + 1);
        } else if (!is_hex(c)) {
            return ctp_err(err, CT_E_INVALID, 0,
                           "fingerprint is not a UUID: non-hexadecimal character at "
                           "position %zu",
                           i + 1);
        }
        out[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    out[CT_FINGERPRINT_LEN] = '\0';
    return CT_OK;
}

ct_err ct_sha256(const void *data, size_t len, uint8_t out[32])
{
    wc_Sha256 sha;
    int ok;
    if ((!data && len) || !out || len > 0xffffffffu)
        return CT_E_INVALID;
    if (wc_InitSha256(&sha) != 0)
        return CT_E_CRYPTO;
    ok = wc_Sha256Update(&sha, data, (word32)len) == 0 && wc_Sha256Final(&sha, out) == 0;
    wc_Sha256Free(&sha);
    return ok ? CT_OK : CT_E_CRYPTO;
}

ct_err ct_room_hash_init(const char *fingerprint, uint8_t out[CT_ROOM_HASH_LEN], ct_error *err)
{
    char buf[sizeof k_init_label - 1 + CT_FINGERPRINT_LEN + 1];
    ct_err rc;
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "room hash: NULL output");
    memcpy(buf, k_init_label, sizeof k_init_label - 1);
    rc = ct_fingerprint_canonical(fingerprint, buf + sizeof k_init_label - 1, err);
    if (rc != CT_OK)
        return rc;
    rc = ct_sha256(buf, sizeof k_init_label - 1 + CT_FINGERPRINT_LEN, out);
    ct_secure_wipe(buf, sizeof buf);
    if (rc != CT_OK)
        return ctp_err(err, rc, 0, "SHA-256 failed");
    return CT_OK;
}

ct_err ct_room_hash_operational(const uint8_t *ca_der, size_t len, uint8_t out[CT_ROOM_HASH_LEN],
                                ct_error *err)
{
    ct_err rc;
    if (!ca_der || !len || !out)
        return ctp_err(err, CT_E_INVALID, 0, "room hash: empty CA certificate");
    /* A DER certificate starts with a SEQUENCE; refuse PEM by mistake. */
    if (ca_der[0] != 0x30)
        return ctp_err(err, CT_E_INVALID, 0, "room hash: CA certificate must be DER, not PEM");
    rc = ct_sha256(ca_der, len, out);
    if (rc != CT_OK)
        return ctp_err(err, rc, 0, "SHA-256 failed");
    return CT_OK;
}

char *ct_hex(const uint8_t *bytes, size_t len, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;
    if (!out)
        return NULL;
    for (i = 0; i < len; i++) {
        out[2 * i] = d[bytes[i] >> 4];
        out[2 * i + 1] = d[bytes[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}
