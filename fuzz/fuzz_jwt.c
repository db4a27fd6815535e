/*
 * fuzz_jwt.c - service-account tokens are presented by peers: hostile
 * input. The first byte chooses the mode:
 *   even: the rest is a token for ct_jwt_verify against a fixed key set
 *         (a throwaway EC key, whose tokens in the seed corpus verify, and
 *         the RSA key of ../shared/fixtures/k8s-jwks.json) and for
 *         ct_jwt_peek; a token that verifies must peek to the same claims;
 *   odd:  the rest is a claims object, signed with the EC key by
 *         ct_jwt_sign_es256 and verified, so arbitrary claims reach the
 *         claim checks behind a valid signature; such a token must never
 *         fail on its signature.
 * The wall clock is fixed, so the seed tokens stay valid.
 */
#include <cloudtaser/cloudtaser.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS 1767229000000LL

/* A throwaway key made for this fuzzer (fuzz/corpus/README); it protects nothing. */
static const char k_ec_pem[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIG/xGuj4bItqQW6ZvvU29W7wNKJ45T/L2gStvnTgGgWZoAoGCCqGSM49\n"
    "AwEHoUQDQgAEyQwjfXaIG1FNvWvMW2kPu3Z9GOquzSHC5HjICfE+/St4B7id9B4A\n"
    "h5cAB02FM2MUBkP2KsGEzTodZEi1WNFQxQ==\n"
    "-----END EC PRIVATE KEY-----\n";

static const char k_rsa_jwk[] =
    "{\"use\":\"sig\",\"kty\":\"RSA\",\"kid\":\"dKbZue6Fd-LfHhodbTb4iQcXQt_PFx29stWe2TuCMHE\","
    "\"alg\":\"RS256\",\"n\":\"z2bQPvFaxQABCE4fZWZqkdyadBrioUB_KODZwZrhpkmS_xGX6yrb2N-NQ56BKc4S05"
    "dsfOGTMDsliHAD8Rh5cT6fFaXxwNI1_-HMYajDHhKXm8yY46_QVwHhiZScNNC7OELNLMZr3nYPcR4snGiDEmMQZiPHs"
    "mJRCn05znvepr2-cxhORSsMgUF5nnMXfSij0iYcLSTucsaOwb3G8GGyX1YFGBzNaxNjs14h72F1cvFzgbbSa7k8652Y"
    "nypXx_GLbr4acqLwhRZ8cjeTh0VNUi1rIo1DFxqstVZ3mFisOBRmJkfKD5xyQOsHl-mZhOhIUK5mJloR0QE5fcU4vFU"
    "aFw\",\"e\":\"AQAB\"}";

static ct_ctx *ctx;
static ct_key *key;
static ct_jwks *jwks;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t fixed_clock(void *user)
{
    (void)user;
    return NOW_MS;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    char *ec = NULL, *set = NULL;
    (void)argc;
    (void)argv;
    o.wall_ms = fixed_clock;
    if (ct_ctx_new(&o, &ctx, NULL) != CT_OK ||
        ct_key_load(ctx, (const uint8_t *)k_ec_pem, sizeof k_ec_pem - 1, &key, NULL) != CT_OK ||
        ct_jwks_from_key(key, &ec, NULL) != CT_OK)
        abort();
    /* {"keys":[<ec>,<rsa>]} */
    set = malloc(strlen(ec) + sizeof k_rsa_jwk + 1);
    if (!set)
        abort();
    memcpy(set, ec, strlen(ec) - 2);
    strcpy(set + strlen(ec) - 2, ",");
    strcat(set, k_rsa_jwk);
    strcat(set, "]}");
    if (ct_jwks_parse(ctx, set, strlen(set), &jwks, NULL) != CT_OK || ct_jwks_count(jwks) != 2)
        abort();
    ct_free(ec);
    free(set);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct_jwt_expect x = CT_JWT_EXPECT_INIT;
    ct_jwt_claims c, p;
    ct_error err;
    ct_err rc;

    if (size < 1)
        return 0;
    x.issuer = "https://kubernetes.default.svc.cluster.local";
    x.audience = "https://kubernetes.default.svc.cluster.local";
    x.max_lifetime_s = 400 * 86400;
    x.leeway_s = 60;
    if (data[0] & 1) {
        char *claims = malloc(size), *tok = NULL;
        if (!claims)
            abort();
        memcpy(claims, data + 1, size - 1);
        claims[size - 1] = '\0';
        if (ct_jwt_sign_es256(ctx, key, claims, &tok, NULL) == CT_OK) {
            rc = ct_jwt_verify(ctx, jwks, tok, strlen(tok), &x, &c, &err);
            if (rc == CT_E_AUTH && strstr(err.message, "signature"))
                abort(); /* our own signature did not verify */
            ct_free(tok);
        }
        free(claims);
        return 0;
    }
    rc = ct_jwt_verify(ctx, jwks, (const char *)data + 1, size - 1, &x, &c, &err);
    if (ct_jwt_peek((const char *)data + 1, size - 1, &p, NULL) == CT_OK) {
        if (rc == CT_OK && memcmp(&c, &p, sizeof c) != 0)
            abort(); /* verified claims differ from what peek reads */
    } else if (rc == CT_OK) {
        abort(); /* verified, but peek refuses it */
    }
    return 0;
}
