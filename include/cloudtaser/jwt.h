/*
 * cloudtaser/jwt.h - offline verification of Kubernetes service-account
 * tokens (JWS compact serialisation) against a pinned JSON Web Key Set.
 *
 * Supported: RS256 (RSA keys of 2048 bits up to the largest size the
 * linked wolfSSL handles, RSA_MAX_SIZE: 4096 in Debian's build; PKCS#1
 * v1.5 with SHA-256) and ES256 (EC P-256). Every other algorithm, including "none"
 * and the HMAC family, is refused; a key is only ever used with the
 * algorithm of its own type ("kty"), so a token cannot switch an RSA key
 * into HMAC or similar confusions. Signing (ES256 with a ct_key) exists for
 * tests, demos and tools that mint their own tokens.
 *
 * Limits: a token is at most CT_JWT_MAX_LEN bytes, a key set at most
 * CT_JWKS_MAX_LEN bytes and CT_JWKS_MAX_KEYS keys. Inputs are hostile:
 * malformed input is an error, never a crash or an over-read.
 * Thread-safety: a ct_jwks is immutable and may be shared between threads.
 * Tokens are bearer credentials: nothing here logs a token, and copies
 * made internally are wiped before they are freed.
 */
#ifndef CLOUDTASER_JWT_H
#define CLOUDTASER_JWT_H

#include "common.h"
#include "context.h"
#include "pki.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_JWT_MAX_LEN 16384
#define CT_JWKS_MAX_LEN 65536
#define CT_JWKS_MAX_KEYS 16

typedef struct ct_jwks ct_jwks;

/*
 * Parses a JWK Set ({"keys":[...]}). Keys of an unsupported type, curve or
 * size, or with "use" other than "sig", are skipped (a CT_LOG_NOTICE names
 * their kid); a set with no usable key is CT_E_INVALID. *out: free with
 * ct_jwks_free.
 * Errors: CT_E_INVALID (not JSON, wrong shape, bad base64url, bad key
 * parameters, no usable key), CT_E_TOOBIG, CT_E_NOMEM.
 */
CT_API ct_err ct_jwks_parse(ct_ctx *ctx, const char *json, size_t len, ct_jwks **out,
                            ct_error *err);
/* Number of usable keys. */
CT_API size_t ct_jwks_count(const ct_jwks *jwks);
/*
 * The key set re-serialised canonically (only the usable keys, members
 * kty, kid, alg, use and the key parameters, sorted), NUL-terminated;
 * *json: free with ct_free. Two sets with the same keys serialise the
 * same way, so this is what gets pinned and compared.
 */
CT_API ct_err ct_jwks_serialize(const ct_jwks *jwks, char **json, ct_error *err);
CT_API void ct_jwks_free(ct_jwks *jwks);

#define CT_JWT_EXPECT_VERSION 1
typedef struct ct_jwt_expect {
    uint32_t version;          /* CT_JWT_EXPECT_VERSION */
    const char *issuer;        /* required: "iss" must equal it */
    const char *audience;      /* required: "aud" (string or array) must contain it */
    const char *subject;       /* NULL: any; else "sub" must equal it */
    /*
     * Maximum exp - iat (and exp - now) in seconds; 0: no limit. A token
     * without "exp" is always refused.
     */
    uint32_t max_lifetime_s;
    uint32_t leeway_s;         /* clock skew allowed on exp/nbf/iat (0: 0) */
} ct_jwt_expect;
#define CT_JWT_EXPECT_INIT { .version = CT_JWT_EXPECT_VERSION }

#define CT_JWT_CLAIM_MAX 256
/* What a verified token says (strings NUL-terminated, truncation is an error). */
typedef struct ct_jwt_claims {
    char issuer[CT_JWT_CLAIM_MAX];
    char subject[CT_JWT_CLAIM_MAX];
    char jti[CT_JWT_CLAIM_MAX];        /* "" if absent */
    char kid[CT_JWT_CLAIM_MAX];        /* header kid, "" if absent */
    /* From "kubernetes.io": namespace and service account ("" if absent). */
    char k8s_namespace[CT_JWT_CLAIM_MAX];
    char k8s_serviceaccount[CT_JWT_CLAIM_MAX];
    int64_t iat, nbf, exp;             /* seconds; 0 if absent (exp never is) */
} ct_jwt_claims;

/*
 * Verifies `token` (compact JWS, surrounding whitespace tolerated) against
 * `jwks` and `expect`, using the context's wall clock. The key is chosen
 * by the header's "kid" (when present it must match a key) or else every
 * key of the right type is tried. `claims` (may be NULL) is filled only on
 * success.
 * Errors: CT_E_AUTH (bad signature, no matching key, wrong issuer,
 * audience or subject, expired, not yet valid, lifetime too long, no exp;
 * err->message says which, never quoting the token), CT_E_INVALID
 * (malformed token or arguments, unsupported alg), CT_E_VERSION (unknown
 * expect->version), CT_E_TOOBIG, CT_E_NOMEM.
 */
CT_API ct_err ct_jwt_verify(ct_ctx *ctx, const ct_jwks *jwks, const char *token,
                            size_t len, const ct_jwt_expect *expect, ct_jwt_claims *claims,
                            ct_error *err);

/*
 * Reads the claims of a token WITHOUT verifying anything (for messages and
 * for choosing what to verify against). Never trust the result.
 * Errors: CT_E_INVALID, CT_E_TOOBIG.
 */
CT_API ct_err ct_jwt_peek(const char *token, size_t len, ct_jwt_claims *claims,
                          ct_error *err);

/*
 * The public JWK of an EC P-256 key as a one-key JWK Set JSON
 * ({"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":..,
 * "x":..,"y":..}]}), kid = base64url SHA-256 of the SPKI DER (as
 * Kubernetes does). *json: free with ct_free.
 */
CT_API ct_err ct_jwks_from_key(const ct_key *key, char **json, ct_error *err);

/*
 * Signs an ES256 token with `key` over the claims object `claims_json`
 * (copied verbatim as the payload; must be a JSON object). The header is
 * {"alg":"ES256","kid":<as ct_jwks_from_key>,"typ":"JWT"}. *token: free
 * with ct_free (it is a credential: wipe it first if it matters).
 * Errors: CT_E_INVALID, CT_E_CRYPTO, CT_E_NOMEM, CT_E_TOOBIG.
 */
CT_API ct_err ct_jwt_sign_es256(ct_ctx *ctx, const ct_key *key, const char *claims_json,
                                char **token, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
