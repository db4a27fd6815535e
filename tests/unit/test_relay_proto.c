/*
 * test_relay_proto.c - the beacon wire format (PROTOCOL.md 1.2, 1.3) and
 * the keyed hash the relay uses for its tables (SipHash-2-4, checked
 * against the reference vectors of the SipHash paper's implementation:
 * key 00..0f, message 00 01 .. len-1).
 */
#include <string.h>

#include "siphash.h"
#include "testutil.h"

static void room_fill(uint8_t room[32])
{
    for (int i = 0; i < 32; i++)
        room[i] = (uint8_t)(0xa0 + i);
}

START_TEST(hello_round_trip)
{
    uint8_t room[32], out[CT_BEACON_HELLO_LEN], got[32];
    ct_beacon_role role = 0;
    ct_beacon_status st = 0;
    static const uint8_t head_op[8] = {0x43, 0x54, 0x42, 0x4E, 0x01, 0x01, 0x00, 0x00};

    room_fill(room);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_OPERATOR, room, out), CT_OK);
    ck_assert_mem_eq(out, head_op, 8);
    ck_assert_mem_eq(out + 8, room, 32);
    ck_assert_int_eq(ct_beacon_hello_decode(out, sizeof out, &role, got, &st), CT_OK);
    ck_assert_int_eq(role, CT_ROLE_OPERATOR);
    ck_assert_int_eq(st, CT_BEACON_WAITING);
    ck_assert_mem_eq(got, room, 32);

    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_BRIDGE, room, out), CT_OK);
    ck_assert_int_eq(out[5], 0x02);
    ck_assert_int_eq(ct_beacon_hello_decode(out, sizeof out, &role, got, NULL), CT_OK);
    ck_assert_int_eq(role, CT_ROLE_BRIDGE);
}
END_TEST

START_TEST(hello_encode_rejects)
{
    uint8_t room[32], out[CT_BEACON_HELLO_LEN];
    room_fill(room);
    ck_assert_int_eq(ct_beacon_hello_encode((ct_beacon_role)0, room, out), CT_E_INVALID);
    ck_assert_int_eq(ct_beacon_hello_encode((ct_beacon_role)3, room, out), CT_E_INVALID);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_BRIDGE, NULL, out), CT_E_INVALID);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_BRIDGE, room, NULL), CT_E_INVALID);
}
END_TEST

/* Decodes a mutated hello and checks the refusal the beacon would send. */
static void expect_bad(const uint8_t *in, size_t len, ct_err want_rc, ct_beacon_status want)
{
    ct_beacon_role role = (ct_beacon_role)7;
    ct_beacon_status st = 0;
    uint8_t got[32];
    memset(got, 0x55, sizeof got);
    ck_assert_int_eq(ct_beacon_hello_decode(in, len, &role, got, &st), want_rc);
    ck_assert_int_eq(st, want);
    ck_assert_int_eq(role, 7); /* untouched on error */
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(got[i], 0x55);
}

START_TEST(hello_malformed)
{
    uint8_t room[32], good[CT_BEACON_HELLO_LEN], h[CT_BEACON_HELLO_LEN + 8];
    room_fill(room);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_OPERATOR, room, good), CT_OK);

    /* magic: each byte */
    for (int i = 0; i < 4; i++) {
        memcpy(h, good, sizeof good);
        h[i] ^= 0x20;
        expect_bad(h, sizeof good, CT_E_PROTO, CT_BEACON_BAD_HELLO);
    }
    /* version 0, 2, 0xff: VERSION */
    for (int v = 0; v < 3; v++) {
        static const uint8_t vs[3] = {0x00, 0x02, 0xff};
        memcpy(h, good, sizeof good);
        h[4] = vs[v];
        expect_bad(h, sizeof good, CT_E_VERSION, CT_BEACON_BAD_VERSION);
    }
    /* an unknown version wins over other damage after it */
    memcpy(h, good, sizeof good);
    h[4] = 2;
    h[5] = 9;
    h[7] = 1;
    expect_bad(h, sizeof good, CT_E_VERSION, CT_BEACON_BAD_VERSION);
    /* role 0, 3, 0xff */
    for (int v = 0; v < 3; v++) {
        static const uint8_t rs[3] = {0x00, 0x03, 0xff};
        memcpy(h, good, sizeof good);
        h[5] = rs[v];
        expect_bad(h, sizeof good, CT_E_PROTO, CT_BEACON_BAD_HELLO);
    }
    /* flags: any bit of either byte */
    for (int bit = 0; bit < 16; bit++) {
        memcpy(h, good, sizeof good);
        h[6 + bit / 8] = (uint8_t)(1u << (bit % 8));
        expect_bad(h, sizeof good, CT_E_PROTO, CT_BEACON_BAD_HELLO);
    }
    /* short and long: every length but 40 */
    memcpy(h, good, sizeof good);
    memset(h + sizeof good, 0, 8);
    for (size_t len = 0; len < sizeof h; len++) {
        if (len == CT_BEACON_HELLO_LEN)
            continue;
        expect_bad(h, len, CT_E_PROTO, CT_BEACON_BAD_HELLO);
    }
}
END_TEST

START_TEST(hello_decode_null_args)
{
    uint8_t room[32], good[CT_BEACON_HELLO_LEN];
    ct_beacon_role role;
    ct_beacon_status st = 0;
    room_fill(room);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_OPERATOR, room, good), CT_OK);
    ck_assert_int_eq(ct_beacon_hello_decode(NULL, 40, &role, room, &st), CT_E_INVALID);
    ck_assert_int_eq(st, CT_BEACON_BAD_HELLO);
    ck_assert_int_eq(ct_beacon_hello_decode(good, 40, NULL, room, &st), CT_E_INVALID);
    ck_assert_int_eq(ct_beacon_hello_decode(good, 40, &role, NULL, &st), CT_E_INVALID);
}
END_TEST

START_TEST(status_names)
{
    ck_assert_str_eq(ct_beacon_status_name(0x01), "WAITING");
    ck_assert_str_eq(ct_beacon_status_name(0x02), "PAIRED");
    ck_assert_str_eq(ct_beacon_status_name(0x10), "BAD_HELLO");
    ck_assert_str_eq(ct_beacon_status_name(0x11), "ROOM_BUSY");
    ck_assert_str_eq(ct_beacon_status_name(0x12), "RATE_LIMITED");
    ck_assert_str_eq(ct_beacon_status_name(0x13), "DRAINING");
    ck_assert_str_eq(ct_beacon_status_name(0x14), "TIMEOUT");
    ck_assert_str_eq(ct_beacon_status_name(0x15), "OVERLOADED");
    ck_assert_str_eq(ct_beacon_status_name(0x16), "VERSION");
    ck_assert_str_eq(ct_beacon_status_name(CT_BEACON_BAD_VERSION), "VERSION");
    ck_assert_str_eq(ct_beacon_status_name(0x00), "UNKNOWN");
    ck_assert_str_eq(ct_beacon_status_name(0x03), "UNKNOWN");
    ck_assert_str_eq(ct_beacon_status_name(0x17), "UNKNOWN");
    ck_assert_str_eq(ct_beacon_status_name(-1), "UNKNOWN");
    ck_assert_str_eq(ct_beacon_status_name(0x102), "UNKNOWN");
}
END_TEST

START_TEST(siphash_reference_vectors)
{
    static const struct {
        size_t len;
        uint64_t want;
    } v[] = {
        {0, 0x726fdb47dd0e0e31ULL},  {1, 0x74f839c593dc67fdULL},
        {7, 0xab0200f58b01d137ULL},  {8, 0x93f5f5799a932462ULL},
        {15, 0xa129ca6149be45e5ULL}, {16, 0x3f2acc7f57c29bdbULL},
        {63, 0x958a324ceb064572ULL},
    };
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ck_assert_msg(ctp_siphash24(key, msg, v[i].len) == v[i].want, "len %zu", v[i].len);
    /* a different key gives a different hash */
    key[0] ^= 1;
    ck_assert(ctp_siphash24(key, msg, 15) != 0xa129ca6149be45e5ULL);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("relay_proto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, hello_round_trip);
    tcase_add_test(tc, hello_encode_rejects);
    tcase_add_test(tc, hello_malformed);
    tcase_add_test(tc, hello_decode_null_args);
    tcase_add_test(tc, status_names);
    tcase_add_test(tc, siphash_reference_vectors);
    suite_add_tcase(s, tc);
    return s;
}
