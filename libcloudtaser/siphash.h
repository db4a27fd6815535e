/*
 * siphash.h - SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed hash for
 * hash tables whose keys an attacker chooses (beacon room hashes, client
 * addresses). With a secret random key, colliding keys cannot be found
 * offline, so a table cannot be flooded into one bucket.
 */
#ifndef CTP_SIPHASH_H
#define CTP_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define CTP_SIPHASH_KEY_LEN 16

uint64_t ctp_siphash24(const uint8_t key[CTP_SIPHASH_KEY_LEN], const void *data, size_t len);

#endif
