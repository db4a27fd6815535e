/*
 * fuzz_beacon_hello.c - the beacon hello parser (the first bytes an
 * anonymous peer sends a beacon). Contracts: never reads past the input
 * (ASan), a status that matches the return code, and an accepted hello
 * that re-encodes to exactly the input.
 */
#include <cloudtaser/cloudtaser.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1); /* exact size: overreads trip ASan */
    uint8_t room[32], again[CT_BEACON_HELLO_LEN];
    ct_beacon_role role = (ct_beacon_role)0;
    ct_beacon_status st = (ct_beacon_status)0;
    ct_err rc;

    if (!in)
        return 0;
    memcpy(in, data, size);
    rc = ct_beacon_hello_decode(in, size, &role, room, &st);
    if (rc == CT_OK) {
        if (st != CT_BEACON_WAITING || size != CT_BEACON_HELLO_LEN ||
            ct_beacon_hello_encode(role, room, again) != CT_OK ||
            memcmp(again, in, CT_BEACON_HELLO_LEN) != 0)
            abort();
    } else if (!((rc == CT_E_PROTO && st == CT_BEACON_BAD_HELLO) ||
                 (rc == CT_E_VERSION && st == CT_BEACON_BAD_VERSION))) {
        abort();
    }
    if (strcmp(ct_beacon_status_name(size ? data[0] : 0), "") == 0)
        abort();
    free(in);
    return 0;
}
