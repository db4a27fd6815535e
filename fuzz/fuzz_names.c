/*
 * fuzz_names.c - small validators that guard every identifier crossing a
 * trust boundary: fingerprints (ct_fingerprint_canonical, ct_room_hash_init)
 * and store keys (ct_store_key_valid). Checks their contracts too.
 */
#include <cloudtaser/cloudtaser.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    char canon[CT_FINGERPRINT_LEN + 1], canon2[CT_FINGERPRINT_LEN + 1];
    uint8_t h[CT_ROOM_HASH_LEN];
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    if (ct_fingerprint_canonical(s, canon, NULL) == CT_OK) {
        /* canonical form is a fixed point and hashes */
        if (strlen(canon) != CT_FINGERPRINT_LEN ||
            ct_fingerprint_canonical(canon, canon2, NULL) != CT_OK || strcmp(canon, canon2) ||
            ct_room_hash_init(s, h, NULL) != CT_OK)
            abort();
    } else if (ct_room_hash_init(s, h, NULL) == CT_OK) {
        abort();
    }
    if (ct_store_key_valid(s)) {
        size_t n = strlen(s);
        if (n == 0 || n > CT_STORE_KEY_MAX || s[0] == '/' || s[n - 1] == '/' ||
            strstr(s, "//"))
            abort();
    }
    free(s);
    return 0;
}
