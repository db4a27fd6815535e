/*
 * consumer.c - a minimal program using libcloudtaser the way an outside
 * project would: #include <cloudtaser/cloudtaser.h> and
 *   cc consumer.c $(pkg-config --cflags --libs cloudtaser)
 *
 * Usage: consumer FINGERPRINT
 * Prints the library version and the fingerprint's init room hash.
 */
#include <cloudtaser/cloudtaser.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    uint8_t hash[CT_ROOM_HASH_LEN];
    char hex[2 * CT_ROOM_HASH_LEN + 1];
    ct_error err;

    if (argc != 2) {
        fprintf(stderr, "usage: %s FINGERPRINT\n", argv[0]);
        return 2;
    }
    if (ct_global_init() != CT_OK) {
        fprintf(stderr, "library initialisation failed\n");
        return 1;
    }
    if (ct_room_hash_init(argv[1], hash, &err) != CT_OK) {
        fprintf(stderr, "error: %s (%s)\n", err.message, ct_err_name(err.code));
        return 1;
    }
    printf("libcloudtaser %s (ABI %d)\n", ct_version(), ct_abi_version());
    printf("init room hash: %s\n", ct_hex(hash, sizeof hash, hex));
    return 0;
}
