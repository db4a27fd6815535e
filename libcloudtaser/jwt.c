/*
 * jwt.c - JSON Web Key Sets and offline verification of Kubernetes
 * service-account tokens (jwt.h): RS256 and ES256 only.
 *
 * Design notes:
 * - A ct_jwks keeps raw public parameters (RSA n and e, EC x and y), never
 *   wolfSSL key objects: wolfSSL keys carry per-operation state, so each
 *   verification imports a fresh key on the heap. That keeps a ct_jwks
 *   immutable and shareable between threads, and costs microseconds.
 * - Parsing a key set validates everything once: RSA sizes, exponent and
 *   modulus parity; EC points fully (ctp_pki_spki_p256: coordinates in
 *   range, on the curve). Each usable key gets its canonical JSON, and the
 *   set is kept sorted by it, so ct_jwks_serialize is a concatenation.
 * - A token is split and all three parts are base64url-decoded (strictly)
 *   before anything else; the header is parsed to choose the key; the
 *   payload is parsed as JSON only after the signature verified.
 * - RS256: the signature must be exactly as long as the modulus and below
 *   it; wc_RsaSSL_VerifyInline checks the PKCS#1 v1.5 type 1 padding and
 *   the recovered block must equal the complete DigestInfo for SHA-256 (19
 *   fixed bytes then the hash), compared with ct_memeq; so the padding and
 *   the encoding are both fully determined (no lenient ASN.1 parsing).
 * - ES256: r||s (64 bytes) is turned into DER (wc_ecc_rs_raw_to_sig) for
 *   wc_ecc_verify_hash, which refuses r or s outside [1, n-1].
 * - The key type comes from the key set, never from the token: an RS256
 *   token is only tried against RSA keys and an ES256 token against EC
 *   keys; every other "alg" (none, HS*, PS*, ...) is refused up front.
 * - Decoded token parts are wiped before they are freed; jansson's copies of
 *   single claim values are not (without the signature they are not the
 *   credential). Messages name claims and the expected values, never the
 *   token or its claim values; only the header's alg and kid (public,
 *   printable ASCII, at most 48 characters) are quoted.
 * - Every JSON document is parsed with JSON_REJECT_DUPLICATES: a member
 *   that appears twice is ambiguous (parsers disagree on which wins).
 */
#include "b64.h"
#include "pki_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define JWK_RSA_MIN_BITS 2048u
/* RSA verification needs the wolfSSL build's big numbers to hold n. */
#if defined(RSA_MAX_SIZE) && RSA_MAX_SIZE < 8192
#define JWK_RSA_MAX_BITS ((unsigned)RSA_MAX_SIZE)
#else
#define JWK_RSA_MAX_BITS 8192u
#endif
/* NumericDate claims past 9999-12-31 are refused, so arithmetic never overflows. */
#define JWT_TIME_MAX INT64_C(253402300799)
#define JWT_LOG_ID "jwt"

enum { KTY_RSA = 1, KTY_EC = 2 };

typedef struct jwk {
    int kty;
    int has_kid;
    char kid[CT_JWT_CLAIM_MAX];
    uint8_t *n;           /* RSA modulus, big endian, no leading zero byte */
    size_t n_len;
    uint8_t e[4];         /* RSA public exponent, big endian, minimal */
    size_t e_len;
    uint8_t x[32], y[32]; /* EC P-256 point */
    char *canon;          /* canonical JSON object of this key (jansson's malloc) */
} jwk;

struct ct_jwks {
    size_t count;
    jwk keys[CT_JWKS_MAX_KEYS]; /* sorted by canon */
};

/* SubjectPublicKeyInfo of a P-256 key, up to the point's 0x04. */
static const uint8_t k_p256_spki_prefix[27] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
    0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};

/* DigestInfo for SHA-256 (RFC 8017 section 9.2, note 1), before the hash. */
static const uint8_t k_sha256_digest_info[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                 0x01, 0x05, 0x00, 0x04, 0x20};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* A kid or alg from input, made safe for a message: printable ASCII, at most 48 chars. */
static const char *printable(const char *s, char buf[52])
{
    size_t i;
    for (i = 0; s[i] && i < 48; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') ? s[i] : '?';
    if (s[i]) {
        buf[i - 3] = buf[i - 2] = buf[i - 1] = '.';
    }
    buf[i] = '\0';
    return buf;
}

static void wipe_free(void *p, size_t n)
{
    if (p) {
        ct_secure_wipe(p, n);
        free(p);
    }
}

/* A member that must be a string if present: 0 absent, 1 string, -1 another type. */
static int member_str(json_t *o, const char *name, const char **s, size_t *len)
{
    json_t *v = json_object_get(o, name);
    *s = NULL;
    *len = 0;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

/* Strict base64url into a new buffer (free with wipe_free(*out, *cap)). 0 or -1. */
static int b64url_dup(const char *s, size_t n, uint8_t **out, size_t *len, size_t *cap)
{
    size_t c = ctp_b64_decoded_max(n);
    uint8_t *buf = malloc(c ? c : 1);
    *out = NULL;
    *len = 0;
    *cap = 0;
    if (!buf)
        return -2;
    if (ctp_b64_decode(s, n, buf, c, len, CTP_B64_URL) != 0) {
        wipe_free(buf, c);
        return -1;
    }
    *out = buf;
    *cap = c;
    return 0;
}

/* base64url of SHA-256(data) (43 characters + NUL). */
static ct_err sha256_b64url(const uint8_t *data, size_t n, char out[44], ct_error *err)
{
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    int rc = wc_Sha256Hash(data, (word32)n, h);
    if (rc != 0)
        return ctp_pki_crypto_err(err, rc, "SHA-256");
    ctp_b64_encode(h, sizeof h, out, CTP_B64_URL);
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Key sets                                                                 */

static void jwk_clear(jwk *k)
{
    free(k->n);
    free(k->canon);
    memset(k, 0, sizeof *k);
}

/* Adds member `name` = base64url(p[0..n)) to o. 0 or -1. */
static int set_b64(json_t *o, const char *name, const uint8_t *p, size_t n)
{
    size_t need = ctp_b64_encoded_len(n, CTP_B64_URL);
    char *s = malloc(need + 1);
    int rc;
    if (!s)
        return -1;
    ctp_b64_encode(p, n, s, CTP_B64_URL);
    rc = json_object_set_new(o, name, json_string(s));
    free(s);
    return rc;
}

/* The canonical JSON object of a usable key: sorted members, compact. */
static ct_err jwk_canon(jwk *k, ct_error *err)
{
    json_t *o = json_object();
    int bad = !o;

    if (!bad) {
        bad |= json_object_set_new(o, "kty", json_string(k->kty == KTY_RSA ? "RSA" : "EC"));
        bad |= json_object_set_new(o, "alg", json_string(k->kty == KTY_RSA ? "RS256" : "ES256"));
        bad |= json_object_set_new(o, "use", json_string("sig"));
        if (k->has_kid)
            bad |= json_object_set_new(o, "kid", json_string(k->kid));
        if (k->kty == KTY_RSA) {
            bad |= set_b64(o, "n", k->n, k->n_len);
            bad |= set_b64(o, "e", k->e, k->e_len);
        } else {
            bad |= json_object_set_new(o, "crv", json_string("P-256"));
            bad |= set_b64(o, "x", k->x, sizeof k->x);
            bad |= set_b64(o, "y", k->y, sizeof k->y);
        }
    }
    if (!bad)
        k->canon = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (bad || !k->canon)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory serialising a key");
    return CT_OK;
}

/* Decodes a required base64url key parameter. */
static ct_err key_param(json_t *o, const char *name, const char *who, uint8_t **out,
                        size_t *len, ct_error *err)
{
    const char *s;
    size_t n, cap;
    int rc;
    if (member_str(o, name, &s, &n) != 1)
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: %s: \"%s\" is missing or not a string",
                       who, name);
    rc = b64url_dup(s, n, out, len, &cap);
    if (rc == -2)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if (rc != 0)
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: %s: \"%s\" is not valid base64url", who,
                       name);
    return CT_OK;
}

static ct_err parse_rsa(const ct_ctx *ctx, json_t *o, const char *who, jwk *k, int *usable,
                        ct_error *err)
{
    uint8_t *n = NULL, *e = NULL;
    size_t n_len = 0, e_len = 0, nz = 0, ez = 0;
    unsigned bits, top;
    uint32_t ev = 0;
    ct_err rc;

    if ((rc = key_param(o, "n", who, &n, &n_len, err)) != CT_OK)
        goto out;
    if ((rc = key_param(o, "e", who, &e, &e_len, err)) != CT_OK)
        goto out;
    /* RFC 7518 6.3.1.1 wants no leading zero byte; some libraries add one. */
    while (nz < n_len && n[nz] == 0)
        nz++;
    while (ez < e_len && e[ez] == 0)
        ez++;
    if (n_len - nz == 0 || !(n[n_len - 1] & 1)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "JWK set: %s: the RSA modulus is not odd", who);
        goto out;
    }
    if (e_len - ez == 0 || e_len - ez > 4) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "JWK set: %s: the RSA public exponent is out of range", who);
        goto out;
    }
    for (size_t i = ez; i < e_len; i++)
        ev = ev << 8 | e[i];
    if (ev < 3 || !(ev & 1)) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "JWK set: %s: the RSA public exponent must be odd and at least 3", who);
        goto out;
    }
    top = n[nz];
    bits = (unsigned)(n_len - nz - 1) * 8;
    while (top) {
        bits++;
        top >>= 1;
    }
    if (bits < JWK_RSA_MIN_BITS || bits > JWK_RSA_MAX_BITS) {
        ctp_log(ctx, CT_LOG_NOTICE, JWT_LOG_ID,
                "JWK set: skipping %s: RSA key of %u bits (supported: %u to %u)", who, bits,
                JWK_RSA_MIN_BITS, JWK_RSA_MAX_BITS);
        rc = CT_OK;
        goto out;
    }
    k->kty = KTY_RSA;
    k->n_len = n_len - nz;
    k->n = malloc(k->n_len);
    if (!k->n) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    memcpy(k->n, n + nz, k->n_len);
    k->e_len = e_len - ez;
    memcpy(k->e, e + ez, k->e_len);
    *usable = 1;
    rc = CT_OK;
out:
    free(n);
    free(e);
    return rc;
}

static ct_err parse_ec(const ct_ctx *ctx, json_t *o, const char *who, jwk *k, int *usable,
                       ct_error *err)
{
    const char *crv;
    uint8_t *x = NULL, *y = NULL, spki[sizeof k_p256_spki_prefix + 64];
    size_t x_len = 0, y_len = 0, n;
    ecc_key *ek = NULL;
    char what[96];
    ct_err rc;

    if (member_str(o, "crv", &crv, &n) != 1)
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: %s: \"crv\" is missing or not a string",
                       who);
    if (strcmp(crv, "P-256") != 0) {
        char pb[52];
        ctp_log(ctx, CT_LOG_NOTICE, JWT_LOG_ID,
                "JWK set: skipping %s: curve \"%s\" (supported: P-256)", who, printable(crv, pb));
        return CT_OK;
    }
    if ((rc = key_param(o, "x", who, &x, &x_len, err)) != CT_OK)
        goto out;
    if ((rc = key_param(o, "y", who, &y, &y_len, err)) != CT_OK)
        goto out;
    if (x_len != 32 || y_len != 32) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "JWK set: %s: P-256 coordinates must be 32 bytes each", who);
        goto out;
    }
    memcpy(spki, k_p256_spki_prefix, sizeof k_p256_spki_prefix);
    memcpy(spki + sizeof k_p256_spki_prefix, x, 32);
    memcpy(spki + sizeof k_p256_spki_prefix + 32, y, 32);
    snprintf(what, sizeof what, "JWK set: %s", who);
    rc = ctp_pki_spki_p256((ctp_der){spki, sizeof spki}, CT_E_INVALID, what, &ek, err);
    if (rc != CT_OK)
        goto out;
    k->kty = KTY_EC;
    memcpy(k->x, x, 32);
    memcpy(k->y, y, 32);
    *usable = 1;
out:
    ctp_pki_ecc_release(ek);
    free(x);
    free(y);
    return rc;
}

/* Members that only a private (or symmetric) key has. */
static const char *const k_private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

/*
 * One entry of "keys": *usable is set when it is a supported key (k filled);
 * unsupported keys are logged and skipped; malformed ones are errors.
 */
static ct_err parse_key(const ct_ctx *ctx, json_t *o, size_t idx, jwk *k, int *usable,
                        ct_error *err)
{
    const char *kty, *kid, *use, *alg;
    size_t len;
    char who[80], pb[52];
    size_t i;

    memset(k, 0, sizeof *k);
    *usable = 0;
    if (!json_is_object(o))
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: key #%zu is not a JSON object", idx);
    switch (member_str(o, "kid", &kid, &len)) {
    case -1:
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: key #%zu: \"kid\" is not a string", idx);
    case 1:
        if (len >= CT_JWT_CLAIM_MAX || strlen(kid) != len)
            return ctp_err(err, CT_E_INVALID, 0,
                           "JWK set: key #%zu: \"kid\" is longer than %d bytes", idx,
                           CT_JWT_CLAIM_MAX - 1);
        memcpy(k->kid, kid, len + 1);
        k->has_kid = 1;
        snprintf(who, sizeof who, "key \"%s\"", printable(kid, pb));
        break;
    default:
        snprintf(who, sizeof who, "key #%zu (no kid)", idx);
        break;
    }
    if (member_str(o, "kty", &kty, &len) != 1)
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: %s: \"kty\" is missing or not a string",
                       who);
    for (i = 0; i < sizeof k_private_members / sizeof k_private_members[0]; i++) {
        if (json_object_get(o, k_private_members[i]))
            return ctp_err(err, CT_E_INVALID, 0,
                           "JWK set: %s holds private key material (\"%s\"); a key set must "
                           "hold public keys only",
                           who, k_private_members[i]);
    }
    if (member_str(o, "use", &use, &len) < 0 || member_str(o, "alg", &alg, &len) < 0)
        return ctp_err(err, CT_E_INVALID, 0, "JWK set: %s: \"use\" or \"alg\" is not a string",
                       who);
    if (use && strcmp(use, "sig") != 0) {
        ctp_log(ctx, CT_LOG_NOTICE, JWT_LOG_ID,
                "JWK set: skipping %s: \"use\" is \"%s\", not \"sig\"", who,
                printable(use, pb));
        return CT_OK;
    }
    if (strcmp(kty, "RSA") == 0 && (!alg || strcmp(alg, "RS256") == 0))
        return parse_rsa(ctx, o, who, k, usable, err);
    if (strcmp(kty, "EC") == 0 && (!alg || strcmp(alg, "ES256") == 0))
        return parse_ec(ctx, o, who, k, usable, err);
    if (alg && (strcmp(kty, "RSA") == 0 || strcmp(kty, "EC") == 0))
        ctp_log(ctx, CT_LOG_NOTICE, JWT_LOG_ID,
                "JWK set: skipping %s: algorithm \"%s\" for a key of type %s (supported: "
                "RS256 with RSA, ES256 with EC)",
                who, printable(alg, pb), kty);
    else
        ctp_log(ctx, CT_LOG_NOTICE, JWT_LOG_ID,
                "JWK set: skipping %s: key type \"%s\" (supported: RSA, EC)", who,
                printable(kty, pb));
    return CT_OK;
}

static int jwk_cmp(const void *a, const void *b)
{
    return strcmp(((const jwk *)a)->canon, ((const jwk *)b)->canon);
}

ct_err ct_jwks_parse(ct_ctx *ctx, const char *json, size_t len, ct_jwks **out, ct_error *err)
{
    json_t *root = NULL, *keys, *v;
    json_error_t jerr;
    ct_jwks *set = NULL;
    size_t i, j;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwks_parse: out is NULL");
    *out = NULL;
    if (!json || !len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwks_parse: no input");
    if (len > CT_JWKS_MAX_LEN)
        return ctp_err(err, CT_E_TOOBIG, 0, "JWK set of %zu bytes exceeds %d", len,
                       CT_JWKS_MAX_LEN);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ctp_err(err, CT_E_INVALID, 0, "JWK set is not JSON (line %d: %s)", jerr.line,
                       jerr.text);
    keys = json_object_get(root, "keys");
    if (!json_is_object(root) || !json_is_array(keys)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "JWK set: expected an object with a \"keys\" array");
        goto out;
    }
    if (json_array_size(keys) > CT_JWKS_MAX_KEYS) {
        rc = ctp_err(err, CT_E_TOOBIG, 0, "JWK set has %zu keys; at most %d are accepted",
                     json_array_size(keys), CT_JWKS_MAX_KEYS);
        goto out;
    }
    if (!(set = ctp_calloc(1, sizeof *set))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a key set");
        goto out;
    }
    json_array_foreach(keys, i, v) {
        jwk *k = &set->keys[set->count];
        int usable = 0, dup = 0;
        if ((rc = parse_key(ctx, v, i, k, &usable, err)) != CT_OK || !usable ||
            (rc = jwk_canon(k, err)) != CT_OK) {
            jwk_clear(k);
            if (rc != CT_OK)
                goto out;
            continue;
        }
        for (j = 0; j < set->count; j++) {
            const jwk *o = &set->keys[j];
            if (strcmp(o->canon, k->canon) == 0) {
                dup = 1; /* the same key twice: a set holds it once */
                break;
            }
            if (o->has_kid && k->has_kid && strcmp(o->kid, k->kid) == 0) {
                char pb[52];
                rc = ctp_err(err, CT_E_INVALID, 0,
                             "JWK set: two different keys have kid \"%s\"", printable(k->kid, pb));
                jwk_clear(k);
                goto out;
            }
        }
        if (dup)
            jwk_clear(k);
        else
            set->count++;
    }
    if (set->count == 0) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "JWK set has no usable key (supported: RSA %u to %u bits for RS256, EC "
                     "P-256 for ES256, use \"sig\")",
                     JWK_RSA_MIN_BITS, JWK_RSA_MAX_BITS);
        goto out;
    }
    qsort(set->keys, set->count, sizeof set->keys[0], jwk_cmp);
    *out = set;
    set = NULL;
    rc = CT_OK;
out:
    ct_jwks_free(set);
    json_decref(root);
    return rc;
}

size_t ct_jwks_count(const ct_jwks *jwks)
{
    return jwks ? jwks->count : 0;
}

ct_err ct_jwks_serialize(const ct_jwks *jwks, char **json, ct_error *err)
{
    static const char head[] = "{\"keys\":[", tail[] = "]}";
    size_t total = sizeof head - 1 + sizeof tail, i, o;
    char *buf;

    if (!json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwks_serialize: json is NULL");
    *json = NULL;
    if (!jwks)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwks_serialize: jwks is NULL");
    for (i = 0; i < jwks->count; i++)
        total += strlen(jwks->keys[i].canon) + 1;
    if (!(buf = malloc(total)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    memcpy(buf, head, sizeof head - 1);
    o = sizeof head - 1;
    for (i = 0; i < jwks->count; i++) {
        size_t n = strlen(jwks->keys[i].canon);
        if (i)
            buf[o++] = ',';
        memcpy(buf + o, jwks->keys[i].canon, n);
        o += n;
    }
    memcpy(buf + o, tail, sizeof tail);
    *json = buf;
    return CT_OK;
}

void ct_jwks_free(ct_jwks *jwks)
{
    size_t i;
    if (!jwks)
        return;
    for (i = 0; i < jwks->count; i++)
        jwk_clear(&jwks->keys[i]);
    free(jwks);
}

/* ------------------------------------------------------------------------ */
/* Tokens                                                                   */

typedef struct token {
    const char *text;       /* header.payload.signature, whitespace trimmed */
    size_t signed_len;      /* length of "header.payload" */
    uint8_t *part[3];       /* decoded header, payload, signature */
    size_t len[3], cap[3];
} token;

static void token_clear(token *t)
{
    for (int i = 0; i < 3; i++)
        wipe_free(t->part[i], t->cap[i]);
    memset(t, 0, sizeof *t);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Splits a compact JWS and decodes its three parts. */
static ct_err token_split(const char *text, size_t len, token *t, ct_error *err)
{
    static const char *const names[3] = {"header", "payload", "signature"};
    const char *seg[3], *end, *d;
    size_t seg_len[3], dots = 0;
    int i;

    memset(t, 0, sizeof *t);
    if (!text || !len)
        return ctp_err(err, CT_E_INVALID, 0, "no token");
    if (len > CT_JWT_MAX_LEN)
        return ctp_err(err, CT_E_TOOBIG, 0, "token of %zu bytes exceeds %d", len,
                       CT_JWT_MAX_LEN);
    while (len && is_ws(*text)) {
        text++;
        len--;
    }
    while (len && is_ws(text[len - 1]))
        len--;
    end = text + len;
    for (d = text; d < end; d++)
        dots += *d == '.';
    if (dots != 2)
        return ctp_err(err, CT_E_INVALID, 0, "%s",
                       dots == 4 ? "encrypted tokens (JWE) are not supported"
                                 : "not a token: expected header.payload.signature");
    seg[0] = text;
    d = memchr(text, '.', len);
    seg_len[0] = (size_t)(d - text);
    seg[1] = d + 1;
    d = memchr(seg[1], '.', (size_t)(end - seg[1]));
    seg_len[1] = (size_t)(d - seg[1]);
    seg[2] = d + 1;
    seg_len[2] = (size_t)(end - seg[2]);
    t->text = text;
    t->signed_len = seg_len[0] + 1 + seg_len[1];
    for (i = 0; i < 3; i++) {
        int rc;
        if (i < 2 && seg_len[i] == 0)
            return ctp_err(err, CT_E_INVALID, 0, "token %s is empty", names[i]);
        rc = b64url_dup(seg[i], seg_len[i], &t->part[i], &t->len[i], &t->cap[i]);
        if (rc == -2)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        if (rc != 0)
            return ctp_err(err, CT_E_INVALID, 0, "token %s is not valid base64url", names[i]);
    }
    return CT_OK;
}

typedef struct header {
    int kty;       /* the key type alg needs; 0 if not checked */
    int has_kid;
    char kid[CT_JWT_CLAIM_MAX];
} header;

/* Parses the header; with check_alg, refuses every alg but RS256 and ES256. */
static ct_err header_parse(const token *t, int check_alg, header *h, ct_error *err)
{
    json_t *o;
    json_error_t jerr;
    const char *alg, *kid;
    size_t len;
    char pb[52];
    ct_err rc = CT_OK;

    memset(h, 0, sizeof *h);
    o = json_loadb((const char *)t->part[0], t->len[0], JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(o)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "token header is not a JSON object");
        goto out;
    }
    switch (member_str(o, "kid", &kid, &len)) {
    case -1:
        rc = ctp_err(err, CT_E_INVALID, 0, "token header: \"kid\" is not a string");
        goto out;
    case 1:
        if (len >= CT_JWT_CLAIM_MAX || strlen(kid) != len) {
            rc = ctp_err(err, CT_E_INVALID, 0, "token header: \"kid\" is too long");
            goto out;
        }
        memcpy(h->kid, kid, len + 1);
        h->has_kid = 1;
        break;
    default:
        break;
    }
    if (!check_alg)
        goto out;
    if (member_str(o, "alg", &alg, &len) != 1) {
        rc = ctp_err(err, CT_E_INVALID, 0, "token header: \"alg\" is missing or not a string");
        goto out;
    }
    if (strcmp(alg, "RS256") == 0) {
        h->kty = KTY_RSA;
    } else if (strcmp(alg, "ES256") == 0) {
        h->kty = KTY_EC;
    } else {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "token algorithm \"%s\" is not accepted (only RS256 and ES256)",
                     printable(alg, pb));
        goto out;
    }
    /* RFC 7515 4.1.11: extensions we do not understand must be refused. */
    if (json_object_get(o, "crit")) {
        rc = ctp_err(err, CT_E_INVALID, 0,
                     "token header lists critical extensions (\"crit\"); none are supported");
        goto out;
    }
out:
    json_decref(o);
    return rc;
}

/* 1: valid; 0: invalid signature; < 0: a ct_err (filled in). */
static int verify_rs256(const jwk *k, const token *t, ct_error *err)
{
    RsaKey *rsa = NULL;
    uint8_t *buf = NULL, *plain = NULL;
    uint8_t expect[sizeof k_sha256_digest_info + WC_SHA256_DIGEST_SIZE];
    int ok = 0, wrc;

    /* RFC 8017 8.2.2: the signature is exactly k bytes and below n. */
    if (t->len[2] != k->n_len || memcmp(t->part[2], k->n, k->n_len) >= 0)
        return 0;
    memcpy(expect, k_sha256_digest_info, sizeof k_sha256_digest_info);
    wrc = wc_Sha256Hash((const uint8_t *)t->text, (word32)t->signed_len,
                        expect + sizeof k_sha256_digest_info);
    if (wrc != 0)
        return ctp_pki_crypto_err(err, wrc, "SHA-256");
    rsa = ctp_calloc(1, sizeof *rsa);
    buf = ctp_memdup(t->part[2], t->len[2]);
    if (!rsa || !buf) {
        ok = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an RSA key");
        free(rsa);
        free(buf);
        return ok;
    }
    wrc = wc_InitRsaKey(rsa, NULL);
    if (wrc == 0)
        wrc = wc_RsaPublicKeyDecodeRaw(k->n, (word32)k->n_len, k->e, (word32)k->e_len, rsa);
    if (wrc != 0) {
        ok = ctp_pki_crypto_err(err, wrc, "importing an RSA public key");
        goto out;
    }
    wrc = wc_RsaSSL_VerifyInline(buf, (word32)t->len[2], &plain, rsa);
    if (wrc == MEMORY_E) {
        ok = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory verifying a signature");
        goto out;
    }
    ok = wrc == (int)sizeof expect && plain && ct_memeq(plain, expect, sizeof expect);
out:
    wc_FreeRsaKey(rsa);
    free(rsa);
    wipe_free(buf, t->len[2]);
    return ok;
}

static int verify_es256(const jwk *k, const token *t, ct_error *err)
{
    ecc_key *ek;
    uint8_t hash[WC_SHA256_DIGEST_SIZE], der[80];
    word32 der_len = sizeof der;
    int ok = 0, res = 0, wrc;

    if (t->len[2] != 64)
        return 0;
    wrc = wc_Sha256Hash((const uint8_t *)t->text, (word32)t->signed_len, hash);
    if (wrc != 0)
        return ctp_pki_crypto_err(err, wrc, "SHA-256");
    if (wc_ecc_rs_raw_to_sig(t->part[2], 32, t->part[2] + 32, 32, der, &der_len) != 0)
        return 0;
    if (!(ek = ctp_pki_ecc_new()))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for an ECC key");
    wrc = wc_ecc_import_unsigned(ek, k->x, k->y, NULL, ECC_SECP256R1);
    if (wrc != 0) {
        ok = ctp_pki_crypto_err(err, wrc, "importing an EC public key");
        goto out;
    }
    wrc = wc_ecc_verify_hash(der, der_len, hash, sizeof hash, &res, ek);
    if (wrc == MEMORY_E) {
        ok = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory verifying a signature");
        goto out;
    }
    ok = wrc == 0 && res == 1;
out:
    ctp_pki_ecc_release(ek);
    return ok;
}

/* Verifies the signature with the key the header names, or every key of the type. */
static ct_err verify_signature(const ct_jwks *jwks, const token *t, const header *h,
                               ct_error *err)
{
    const char *alg = h->kty == KTY_RSA ? "RS256" : "ES256";
    char pb[52];
    size_t i, tried = 0;

    for (i = 0; i < jwks->count; i++) {
        const jwk *k = &jwks->keys[i];
        int ok;
        if (h->has_kid) {
            if (!k->has_kid || strcmp(k->kid, h->kid) != 0)
                continue;
            if (k->kty != h->kty)
                return ctp_err(err, CT_E_AUTH, 0,
                               "token signed with %s but key \"%s\" is an %s key", alg,
                               printable(k->kid, pb), k->kty == KTY_RSA ? "RSA" : "EC");
        } else if (k->kty != h->kty) {
            continue;
        }
        tried++;
        ok = h->kty == KTY_RSA ? verify_rs256(k, t, err) : verify_es256(k, t, err);
        if (ok < 0)
            return (ct_err)ok;
        if (ok)
            return CT_OK;
        if (h->has_kid)
            return ctp_err(err, CT_E_AUTH, 0, "token signature does not verify with key \"%s\"",
                           printable(k->kid, pb));
    }
    if (h->has_kid)
        return ctp_err(err, CT_E_AUTH, 0, "no key in the key set has the token's kid \"%s\"",
                       printable(h->kid, pb));
    if (!tried)
        return ctp_err(err, CT_E_AUTH, 0, "token signed with %s but the key set has no %s key",
                       alg, h->kty == KTY_RSA ? "RSA" : "EC");
    return ctp_err(err, CT_E_AUTH, 0, "token signature does not verify with any %s key",
                   h->kty == KTY_RSA ? "RSA" : "EC");
}

/* ------------------------------------------------------------------------ */
/* Claims                                                                   */

enum { HAS_ISS = 1, HAS_SUB = 2, HAS_EXP = 4, HAS_NBF = 8, HAS_IAT = 16 };

/* Copies an optional string claim; *has |= bit when present. */
static ct_err claim_str(json_t *o, const char *name, const char *label, char dst[CT_JWT_CLAIM_MAX],
                        int *has, int bit, ct_error *err)
{
    const char *s;
    size_t len;
    switch (member_str(o, name, &s, &len)) {
    case 0:
        return CT_OK;
    case 1:
        if (len >= CT_JWT_CLAIM_MAX || strlen(s) != len)
            return ctp_err(err, CT_E_INVALID, 0, "token claim %s is longer than %d bytes",
                           label, CT_JWT_CLAIM_MAX - 1);
        memcpy(dst, s, len + 1);
        *has |= bit;
        return CT_OK;
    default:
        return ctp_err(err, CT_E_INVALID, 0, "token claim %s is not a string", label);
    }
}

/* An optional NumericDate claim in [0, JWT_TIME_MAX]. */
static ct_err claim_time(json_t *o, const char *name, int64_t *dst, int *has, int bit,
                         ct_error *err)
{
    json_t *v = json_object_get(o, name);
    int64_t t;
    if (!v)
        return CT_OK;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > JWT_TIME_MAX)
            goto range;
        t = (int64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d <= (double)JWT_TIME_MAX))
            goto range;
        t = (int64_t)d; /* d >= 0: truncation is floor */
    } else {
        return ctp_err(err, CT_E_INVALID, 0, "token claim \"%s\" is not a number", name);
    }
    *dst = t;
    *has |= bit;
    return CT_OK;
range:
    return ctp_err(err, CT_E_INVALID, 0, "token claim \"%s\" is out of range", name);
}

/* Reads the claims we report from a payload object (no expectation checked). */
static ct_err claims_read(json_t *p, ct_jwt_claims *c, int *has, ct_error *err)
{
    json_t *k8s, *sa;
    ct_err rc;

    *has = 0;
    if (!json_is_object(p))
        return ctp_err(err, CT_E_INVALID, 0, "token payload is not a JSON object");
    if ((rc = claim_str(p, "iss", "\"iss\"", c->issuer, has, HAS_ISS, err)) != CT_OK ||
        (rc = claim_str(p, "sub", "\"sub\"", c->subject, has, HAS_SUB, err)) != CT_OK ||
        (rc = claim_str(p, "jti", "\"jti\"", c->jti, has, 0, err)) != CT_OK ||
        (rc = claim_time(p, "exp", &c->exp, has, HAS_EXP, err)) != CT_OK ||
        (rc = claim_time(p, "nbf", &c->nbf, has, HAS_NBF, err)) != CT_OK ||
        (rc = claim_time(p, "iat", &c->iat, has, HAS_IAT, err)) != CT_OK)
        return rc;
    k8s = json_object_get(p, "kubernetes.io");
    if (!k8s)
        return CT_OK;
    if (!json_is_object(k8s))
        return ctp_err(err, CT_E_INVALID, 0, "token claim \"kubernetes.io\" is not an object");
    if ((rc = claim_str(k8s, "namespace", "\"kubernetes.io\".namespace", c->k8s_namespace, has, 0,
                        err)) != CT_OK)
        return rc;
    sa = json_object_get(k8s, "serviceaccount");
    if (!sa)
        return CT_OK;
    if (!json_is_object(sa))
        return ctp_err(err, CT_E_INVALID, 0,
                       "token claim \"kubernetes.io\".serviceaccount is not an object");
    return claim_str(sa, "name", "\"kubernetes.io\".serviceaccount.name", c->k8s_serviceaccount,
                     has, 0, err);
}

/* "aud" is a string or an array of strings; 1 if it holds `want`. */
static ct_err audience_check(json_t *p, const char *want, ct_error *err)
{
    json_t *aud = json_object_get(p, "aud"), *v;
    size_t i;
    int found = 0;

    if (!aud)
        return ctp_err(err, CT_E_AUTH, 0, "token has no audience (\"aud\")");
    if (json_is_string(aud)) {
        found = strcmp(json_string_value(aud), want) == 0;
    } else if (json_is_array(aud)) {
        json_array_foreach(aud, i, v) {
            if (!json_is_string(v))
                return ctp_err(err, CT_E_INVALID, 0,
                               "token claim \"aud\" is not a string or an array of strings");
            found |= strcmp(json_string_value(v), want) == 0;
        }
    } else {
        return ctp_err(err, CT_E_INVALID, 0,
                       "token claim \"aud\" is not a string or an array of strings");
    }
    if (!found)
        return ctp_err(err, CT_E_AUTH, 0, "token is not meant for audience \"%s\"", want);
    return CT_OK;
}

static ct_err claims_check(const ct_ctx *ctx, json_t *p, const ct_jwt_claims *c, int has,
                           const ct_jwt_expect *x, ct_error *err)
{
    int64_t now = ct_ctx_wall_ms(ctx) / 1000, leeway = x->leeway_s;
    char t1[32], t2[32];
    ct_err rc;

    if (!(has & HAS_ISS) || strcmp(c->issuer, x->issuer) != 0)
        return ctp_err(err, CT_E_AUTH, 0, "token was not issued by \"%s\"", x->issuer);
    if ((rc = audience_check(p, x->audience, err)) != CT_OK)
        return rc;
    if (x->subject && (!(has & HAS_SUB) || strcmp(c->subject, x->subject) != 0))
        return ctp_err(err, CT_E_AUTH, 0, "token subject is not \"%s\"", x->subject);
    if (!(has & HAS_EXP))
        return ctp_err(err, CT_E_AUTH, 0, "token has no expiry (\"exp\"); refused");
    if (now >= c->exp + leeway)
        return ctp_err(err, CT_E_AUTH, 0, "token expired at %s (now %s)",
                       ctp_pki_time_str(c->exp, t1), ctp_pki_time_str(now, t2));
    if ((has & HAS_NBF) && now + leeway < c->nbf)
        return ctp_err(err, CT_E_AUTH, 0, "token is not valid before %s (now %s)",
                       ctp_pki_time_str(c->nbf, t1), ctp_pki_time_str(now, t2));
    if ((has & HAS_IAT) && c->iat > now + leeway)
        return ctp_err(err, CT_E_AUTH, 0, "token was issued in the future (%s, now %s)",
                       ctp_pki_time_str(c->iat, t1), ctp_pki_time_str(now, t2));
    if ((has & HAS_IAT) && c->exp <= c->iat)
        return ctp_err(err, CT_E_AUTH, 0, "token expires before it was issued");
    if (x->max_lifetime_s) {
        int64_t max = x->max_lifetime_s;
        if ((has & HAS_IAT) && c->exp - c->iat > max)
            return ctp_err(err, CT_E_AUTH, 0,
                           "token lifetime of %lld s exceeds the maximum of %lld s",
                           (long long)(c->exp - c->iat), (long long)max);
        if (c->exp - now > max + leeway)
            return ctp_err(err, CT_E_AUTH, 0,
                           "token is valid for another %lld s, more than the maximum of %lld s",
                           (long long)(c->exp - now), (long long)max);
    }
    return CT_OK;
}

/* Parses a decoded payload; json_decref the result. */
static ct_err payload_load(const token *t, json_t **out, ct_error *err)
{
    json_error_t jerr;
    *out = json_loadb((const char *)t->part[1], t->len[1], JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return ctp_err(err, CT_E_INVALID, 0, "token payload is not a JSON object");
    }
    return CT_OK;
}

ct_err ct_jwt_verify(ct_ctx *ctx, const ct_jwks *jwks, const char *text, size_t len,
                     const ct_jwt_expect *expect, ct_jwt_claims *claims, ct_error *err)
{
    token t;
    header h;
    json_t *p = NULL;
    ct_jwt_claims c;
    int has = 0;
    ct_err rc;

    memset(&t, 0, sizeof t);
    if (!jwks || !expect)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwt_verify: NULL argument");
    if (expect->version != CT_JWT_EXPECT_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_jwt_expect version %u unsupported",
                       expect->version);
    if (!expect->issuer || !*expect->issuer || !expect->audience || !*expect->audience)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_jwt_verify: the expected issuer and audience are required");
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    memset(&c, 0, sizeof c);
    if ((rc = token_split(text, len, &t, err)) != CT_OK ||
        (rc = header_parse(&t, 1, &h, err)) != CT_OK ||
        (rc = verify_signature(jwks, &t, &h, err)) != CT_OK ||
        (rc = payload_load(&t, &p, err)) != CT_OK ||
        (rc = claims_read(p, &c, &has, err)) != CT_OK ||
        (rc = claims_check(ctx, p, &c, has, expect, err)) != CT_OK)
        goto out;
    memcpy(c.kid, h.kid, sizeof c.kid);
    if (claims)
        *claims = c;
out:
    json_decref(p);
    token_clear(&t);
    ct_secure_wipe(&c, sizeof c);
    return rc;
}

ct_err ct_jwt_peek(const char *text, size_t len, ct_jwt_claims *claims, ct_error *err)
{
    token t;
    header h;
    json_t *p = NULL;
    ct_jwt_claims c;
    int has;
    ct_err rc;

    if (!claims)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwt_peek: claims is NULL");
    memset(&c, 0, sizeof c);
    if ((rc = token_split(text, len, &t, err)) != CT_OK ||
        (rc = header_parse(&t, 0, &h, err)) != CT_OK || (rc = payload_load(&t, &p, err)) != CT_OK ||
        (rc = claims_read(p, &c, &has, err)) != CT_OK)
        goto out;
    memcpy(c.kid, h.kid, sizeof c.kid);
    *claims = c;
out:
    json_decref(p);
    token_clear(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Signing                                                                  */

/* The canonical one-key JWK of a ct_key (EC P-256), with its kid. */
static ct_err key_jwk(const ct_key *key, jwk *k, ct_error *err)
{
    ct_err rc;
    char kid[44];
    memset(k, 0, sizeof *k);
    if (key->point[0] != 0x04)
        return ctp_err(err, CT_E_INVALID, 0, "key has no public point");
    if ((rc = sha256_b64url(key->spki, key->spki_len, kid, err)) != CT_OK)
        return rc;
    k->kty = KTY_EC;
    k->has_kid = 1;
    memcpy(k->kid, kid, sizeof kid);
    memcpy(k->x, key->point + 1, 32);
    memcpy(k->y, key->point + 33, 32);
    return jwk_canon(k, err);
}

ct_err ct_jwks_from_key(const ct_key *key, char **json, ct_error *err)
{
    ct_jwks *set;
    ct_err rc;

    if (!json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwks_from_key: json is NULL");
    *json = NULL;
    if (!key)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwks_from_key: key is NULL");
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if (!(set = ctp_calloc(1, sizeof *set)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a key set");
    rc = key_jwk(key, &set->keys[0], err);
    if (rc == CT_OK) {
        set->count = 1;
        rc = ct_jwks_serialize(set, json, err);
    } else {
        jwk_clear(&set->keys[0]);
    }
    ct_jwks_free(set);
    return rc;
}

ct_err ct_jwt_sign_es256(ct_ctx *ctx, const ct_key *key, const char *claims_json, char **token_out,
                         ct_error *err)
{
    char kid[44], hdr[96];
    size_t claims_len, hdr_len, total, o;
    uint8_t hash[WC_SHA256_DIGEST_SIZE], der[80], rs[64], r[32], s[32];
    word32 der_len = sizeof der, r_len = sizeof r, s_len = sizeof s;
    json_t *probe;
    json_error_t jerr;
    ecc_key *ek = NULL;
    WC_RNG rng;
    int have_rng = 0, wrc;
    char *tok = NULL;
    ct_err rc;

    (void)ctx; /* signatures use wolfSSL's DRBG, never the context's rng hook */
    if (!token_out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwt_sign_es256: token is NULL");
    *token_out = NULL;
    if (!key || !claims_json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_jwt_sign_es256: NULL argument");
    claims_len = strnlen(claims_json, CT_JWT_MAX_LEN + 1);
    if (claims_len > CT_JWT_MAX_LEN)
        return ctp_err(err, CT_E_TOOBIG, 0, "claims exceed %d bytes", CT_JWT_MAX_LEN);
    probe = json_loadb(claims_json, claims_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(probe)) {
        json_decref(probe);
        return ctp_err(err, CT_E_INVALID, 0, "claims are not a JSON object");
    }
    json_decref(probe);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if ((rc = sha256_b64url(key->spki, key->spki_len, kid, err)) != CT_OK)
        return rc;
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid);
    hdr_len = strlen(hdr);
    total = ctp_b64_encoded_len(hdr_len, CTP_B64_URL) + 1 +
            ctp_b64_encoded_len(claims_len, CTP_B64_URL) + 1 +
            ctp_b64_encoded_len(sizeof rs, CTP_B64_URL);
    if (total > CT_JWT_MAX_LEN)
        return ctp_err(err, CT_E_TOOBIG, 0, "the token would be %zu bytes; at most %d", total,
                       CT_JWT_MAX_LEN);
    if (!(tok = malloc(total + 1)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a token");
    o = ctp_b64_encode((const uint8_t *)hdr, hdr_len, tok, CTP_B64_URL);
    tok[o++] = '.';
    o += ctp_b64_encode((const uint8_t *)claims_json, claims_len, tok + o, CTP_B64_URL);
    wrc = wc_Sha256Hash((const uint8_t *)tok, (word32)o, hash);
    if (wrc != 0) {
        rc = ctp_pki_crypto_err(err, wrc, "SHA-256");
        goto out;
    }
    if ((rc = ctp_pki_key_open(key, &ek, err)) != CT_OK)
        goto out;
    if ((rc = ctp_pki_rng_open(&rng, err)) != CT_OK)
        goto out;
    have_rng = 1;
    wrc = wc_ecc_sign_hash(hash, sizeof hash, der, &der_len, &rng, ek);
    if (wrc == 0)
        wrc = wc_ecc_sig_to_rs(der, der_len, r, &r_len, s, &s_len);
    if (wrc != 0 || r_len > 32 || s_len > 32) {
        rc = ctp_pki_crypto_err(err, wrc, "ECDSA signing");
        goto out;
    }
    memset(rs, 0, sizeof rs);
    memcpy(rs + 32 - r_len, r, r_len);
    memcpy(rs + 64 - s_len, s, s_len);
    tok[o++] = '.';
    o += ctp_b64_encode(rs, sizeof rs, tok + o, CTP_B64_URL);
    *token_out = tok;
    tok = NULL;
    rc = CT_OK;
out:
    if (have_rng)
        wc_FreeRng(&rng);
    ctp_pki_ecc_release(ek);
    wipe_free(tok, total + 1);
    ct_secure_wipe(rs, sizeof rs);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Public keys as PEM (Vault's jwt_validation_pubkeys)                      */

/* rsaEncryption AlgorithmIdentifier: SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }. */
static const uint8_t k_rsa_alg_id[15] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                         0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};

/* Writes a DER tag and length (len < 65536) at p; returns the bytes written. */
static size_t der_head(uint8_t *p, uint8_t tag, size_t len)
{
    p[0] = tag;
    if (len < 0x80) {
        p[1] = (uint8_t)len;
        return 2;
    }
    if (len < 0x100) {
        p[1] = 0x81;
        p[2] = (uint8_t)len;
        return 3;
    }
    p[1] = 0x82;
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    return 4;
}

static size_t der_head_len(size_t len)
{
    return len < 0x80 ? 2 : len < 0x100 ? 3 : 4;
}

/* A positive INTEGER of a big-endian magnitude (leading zero added if needed). */
static size_t der_uint(uint8_t *p, const uint8_t *v, size_t n)
{
    size_t pad = n > 0 && (v[0] & 0x80) ? 1 : 0, o;
    o = der_head(p, 0x02, n + pad);
    if (pad)
        p[o++] = 0;
    memcpy(p + o, v, n);
    return o + n;
}

static size_t der_uint_len(const uint8_t *v, size_t n)
{
    size_t body = n + (n > 0 && (v[0] & 0x80) ? 1 : 0);
    return der_head_len(body) + body;
}

/* SubjectPublicKeyInfo DER of one key into buf (at least 1100 bytes). */
static size_t jwk_spki(const jwk *k, uint8_t *buf)
{
    size_t o = 0, rsa_seq, bits, alg_and_bits;
    if (k->kty == KTY_EC) {
        memcpy(buf, k_p256_spki_prefix, sizeof k_p256_spki_prefix);
        memcpy(buf + sizeof k_p256_spki_prefix, k->x, 32);
        memcpy(buf + sizeof k_p256_spki_prefix + 32, k->y, 32);
        return sizeof k_p256_spki_prefix + 64;
    }
    rsa_seq = der_uint_len(k->n, k->n_len) + der_uint_len(k->e, k->e_len);
    bits = 1 + der_head_len(rsa_seq) + rsa_seq;
    alg_and_bits = sizeof k_rsa_alg_id + der_head_len(bits) + bits;
    o += der_head(buf + o, 0x30, alg_and_bits);
    memcpy(buf + o, k_rsa_alg_id, sizeof k_rsa_alg_id);
    o += sizeof k_rsa_alg_id;
    o += der_head(buf + o, 0x03, bits);
    buf[o++] = 0x00; /* no unused bits */
    o += der_head(buf + o, 0x30, rsa_seq);
    o += der_uint(buf + o, k->n, k->n_len);
    o += der_uint(buf + o, k->e, k->e_len);
    return o;
}

void ctp_pems_free(char **pems, size_t n)
{
    size_t i;
    if (!pems)
        return;
    for (i = 0; i < n; i++)
        free(pems[i]);
    free(pems);
}

ct_err ctp_jwks_pems(const ct_jwks *jwks, char ***pems, size_t *n, ct_error *err)
{
    static const char head[] = "-----BEGIN PUBLIC KEY-----\n", tail[] = "-----END PUBLIC KEY-----\n";
    char **out;
    size_t i;

    *pems = NULL;
    *n = 0;
    if (!jwks || jwks->count == 0)
        return ctp_err(err, CT_E_INVALID, 0, "no key to convert");
    if (!(out = ctp_calloc(jwks->count, sizeof *out)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    for (i = 0; i < jwks->count; i++) {
        /* RSA up to 4096 bits: 512 + 4 + 6 + 15 + 12 bytes fits easily */
        uint8_t der[1100];
        size_t dl, bl, lines, o = 0, j;
        char *b64, *p;
        if (jwks->keys[i].kty == KTY_RSA && jwks->keys[i].n_len > 1024) {
            ctp_pems_free(out, jwks->count);
            return ctp_err(err, CT_E_INVALID, 0, "RSA key too large to convert");
        }
        dl = jwk_spki(&jwks->keys[i], der);
        bl = ctp_b64_encoded_len(dl, CTP_B64_STD);
        b64 = malloc(bl + 1);
        lines = (bl + 63) / 64;
        p = malloc(sizeof head + bl + lines + sizeof tail);
        if (!b64 || !p) {
            free(b64);
            free(p);
            ctp_pems_free(out, jwks->count);
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        }
        ctp_b64_encode(der, dl, b64, CTP_B64_STD);
        memcpy(p, head, sizeof head - 1);
        o = sizeof head - 1;
        for (j = 0; j < bl; j += 64) {
            size_t m = bl - j < 64 ? bl - j : 64;
            memcpy(p + o, b64 + j, m);
            o += m;
            p[o++] = '\n';
        }
        memcpy(p + o, tail, sizeof tail);
        free(b64);
        out[i] = p;
    }
    *pems = out;
    *n = jwks->count;
    return CT_OK;
}
