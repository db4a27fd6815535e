/*
 * cloudtaser/room.h - cluster fingerprints and beacon room hashes.
 *
 * A cluster's fingerprint is the UID of its kube-system namespace, an RFC
 * 4122 UUID. The beacon pairs peers that present the same 32-byte room hash:
 *   init room        = SHA-256("cloudtaser-init:" || fingerprint)
 *   operational room = SHA-256(DER of the cluster CA certificate)
 * The fingerprint is hashed in its canonical form: 36 lowercase characters.
 */
#ifndef CLOUDTASER_ROOM_H
#define CLOUDTASER_ROOM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_ROOM_HASH_LEN 32
#define CT_FINGERPRINT_LEN 36

/*
 * Validates a fingerprint (8-4-4-4-12 hexadecimal digits, either case) and
 * writes its canonical lowercase form to out (37 bytes with the NUL).
 * Errors: CT_E_INVALID with a message saying what is wrong. Thread-safe.
 */
CT_API CT_NODISCARD ct_err ct_fingerprint_canonical(const char *fingerprint,
                                                    char out[CT_FINGERPRINT_LEN + 1],
                                                    ct_error *err);

/* init room hash of a fingerprint (validated and canonicalised first). */
CT_API CT_NODISCARD ct_err ct_room_hash_init(const char *fingerprint,
                                             uint8_t out[CT_ROOM_HASH_LEN], ct_error *err);

/* operational room hash of a CA certificate (DER). */
CT_API CT_NODISCARD ct_err ct_room_hash_operational(const uint8_t *ca_der, size_t len,
                                                    uint8_t out[CT_ROOM_HASH_LEN],
                                                    ct_error *err);

/* SHA-256 of data (a convenience for bindings and tests). */
CT_API ct_err ct_sha256(const void *data, size_t len, uint8_t out[32]);

/*
 * Lowercase hex of bytes into out (2*len+1 bytes). Returns out.
 * For logs, print only a prefix of a room hash, never a full fingerprint.
 */
CT_API char *ct_hex(const uint8_t *bytes, size_t len, char *out);

/*
 * Decodes exactly 2*len hex digits (either case; no separators, optional
 * "sha256:" prefix) from `hex` into out[len]. Errors: CT_E_INVALID (wrong
 * length or a non-hex character; the message says which).
 */
CT_API ct_err ct_unhex(const char *hex, uint8_t *out, size_t len, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
