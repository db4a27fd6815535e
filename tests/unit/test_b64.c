/*
 * test_b64.c - the private base64 / base64url helpers (libcloudtaser/b64.c,
 * compiled into this test): RFC 4648 section 10 vectors, the alphabet
 * difference, strict decoding (one accepted encoding per byte string), and
 * round trips of every length and byte value.
 */
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "testutil.h"

static const struct {
    const char *raw, *std, *url;
} k_vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    {"\xfb\xff", "+/8=", "-_8"},
    {"\xff\xfe\xfd\xfc", "//79/A==", "__79_A"},
};

static void ck_decodes(const char *in, ctp_b64_variant v, const char *want, size_t want_len)
{
    uint8_t out[64];
    size_t n = 99;
    ck_assert_msg(ctp_b64_decode(in, strlen(in), out, sizeof out, &n, v) == 0, "refused %s", in);
    ck_assert_uint_eq(n, want_len);
    ck_assert_mem_eq(out, want, want_len);
}

static void ck_refuses(const char *in, ctp_b64_variant v)
{
    uint8_t out[64];
    size_t n = 99;
    ck_assert_msg(ctp_b64_decode(in, strlen(in), out, sizeof out, &n, v) == -1,
                  "accepted \"%s\" (variant %d)", in, (int)v);
    ck_assert_uint_eq(n, 0);
}

START_TEST(rfc4648_vectors)
{
    size_t i;
    for (i = 0; i < sizeof k_vectors / sizeof k_vectors[0]; i++) {
        const char *raw = k_vectors[i].raw;
        size_t n = strlen(raw);
        char out[64];
        ck_assert_uint_eq(ctp_b64_encoded_len(n, CTP_B64_STD), strlen(k_vectors[i].std));
        ck_assert_uint_eq(ctp_b64_encoded_len(n, CTP_B64_URL), strlen(k_vectors[i].url));
        ck_assert_uint_eq(ctp_b64_encode((const uint8_t *)raw, n, out, CTP_B64_STD),
                          strlen(k_vectors[i].std));
        ck_assert_str_eq(out, k_vectors[i].std);
        ck_assert_uint_eq(ctp_b64_encode((const uint8_t *)raw, n, out, CTP_B64_URL),
                          strlen(k_vectors[i].url));
        ck_assert_str_eq(out, k_vectors[i].url);
        ck_decodes(k_vectors[i].std, CTP_B64_STD, raw, n);
        ck_decodes(k_vectors[i].url, CTP_B64_URL, raw, n);
    }
}
END_TEST

START_TEST(strict_decoding)
{
    static const char *std_bad[] = {
        "Zg", "Zg=", "Zg===", "Z===", "====", "Zh==", "Zm9=", "Zm-v", "Zm_v", "Zm9v\n",
        " Zm9v", "Zm 9v", "Zm9vYg==Zm9v", "=Zm9", "Zm=v", "Zm9v\x80", "Zm\0v",
    };
    static const char *url_bad[] = {
        "Zg==", "Zm8=", "Zm+v", "Zm/v", "Z", "Zm9vY", "Zh", "Zm9", "Zm9v\n", "Zm 9v", "Zg%3D",
        "Zm9v=", "\xc3\xa9",
    };
    uint8_t small[2];
    size_t i, n;
    for (i = 0; i < sizeof std_bad / sizeof std_bad[0]; i++)
        ck_refuses(std_bad[i], CTP_B64_STD);
    for (i = 0; i < sizeof url_bad / sizeof url_bad[0]; i++)
        ck_refuses(url_bad[i], CTP_B64_URL);
    /* an embedded NUL counts as a character */
    ck_assert_int_eq(ctp_b64_decode("Zm\0v", 4, small, sizeof small, &n, CTP_B64_URL), -1);
    /* too small an output buffer */
    ck_assert_int_eq(ctp_b64_decode("Zm9v", 4, small, sizeof small, &n, CTP_B64_URL), -1);
    ck_assert_int_eq(ctp_b64_decode("Zm8", 3, small, sizeof small, &n, CTP_B64_URL), 0);
    ck_assert_uint_eq(n, 2);
}
END_TEST

START_TEST(round_trips)
{
    uint8_t raw[300], back[300];
    char enc[410];
    size_t len, n, m;
    int v;
    for (len = 0; len < sizeof raw; len++)
        raw[len] = (uint8_t)(len * 151 + 7);
    for (v = 0; v <= 1; v++) {
        for (len = 0; len <= sizeof raw; len++) {
            n = ctp_b64_encode(raw, len, enc, (ctp_b64_variant)v);
            ck_assert_uint_eq(n, ctp_b64_encoded_len(len, (ctp_b64_variant)v));
            ck_assert_uint_eq(strlen(enc), n);
            ck_assert_uint_le(len, ctp_b64_decoded_max(n));
            ck_assert_int_eq(ctp_b64_decode(enc, n, back, sizeof back, &m, (ctp_b64_variant)v), 0);
            ck_assert_uint_eq(m, len);
            ck_assert_mem_eq(back, raw, len);
        }
    }
    /* every byte value through every position of a group */
    for (n = 0; n < 256; n++) {
        uint8_t three[3] = {(uint8_t)n, (uint8_t)(255 - n), (uint8_t)(n ^ 0x5a)};
        for (v = 0; v <= 1; v++) {
            size_t k = ctp_b64_encode(three, 3, enc, (ctp_b64_variant)v);
            ck_assert_int_eq(ctp_b64_decode(enc, k, back, 3, &m, (ctp_b64_variant)v), 0);
            ck_assert_mem_eq(back, three, 3);
        }
    }
    ck_assert_uint_eq(ctp_b64_encoded_len(SIZE_MAX, CTP_B64_STD), 0);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("b64");
    TCase *tc = tcase_create("b64");
    tcase_add_test(tc, rfc4648_vectors);
    tcase_add_test(tc, strict_decoding);
    tcase_add_test(tc, round_trips);
    suite_add_tcase(s, tc);
    return s;
}
