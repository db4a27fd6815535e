/*
 * test_jwt.c - JWK sets and service-account token verification (jwt.h).
 *
 * The third-party judge is the openssl command-line tool, driven by
 * tests/fixtures/jwt/jose.sh: it makes the RSA and EC keys, their JWKs and
 * kids, and signs the tokens (RS256, ES256, HS256, raw PKCS#1 blocks); it
 * also verifies the ES256 tokens this library signs. Keys are made once per
 * run in an unchecked fixture; the context's wall clock is a hook, so
 * expiry is tested without sleeping.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/rsa.h> /* RSA_MAX_SIZE of the wolfSSL we link */

#include "testutil.h"

#define NOW 1767229000LL /* 2026-01-01 01:16:40Z */
#define ISS "https://kubernetes.default.svc.cluster.local"
#define AUD "https://kubernetes.default.svc.cluster.local"
#define SUB "system:serviceaccount:payments:payments-api"
#define OMIT INT64_MIN

/* ------------------------------------------------------------ fixture */

static char *g_dir, *g_jose;
static char *g_rsa, *g_rsa_pub, *g_rsa_kid, *g_rsa_jwk;  /* RSA-2048 */
static char *g_rsa2, *g_rsa2_kid, *g_rsa2_jwk;           /* another RSA-2048 */
static char *g_rsa1k, *g_rsa1k_jwk;                      /* RSA-1024 */
static char *g_rsa4k, *g_rsa4k_kid, *g_rsa4k_jwk;        /* RSA-4096 */
static char *g_ec, *g_ec_pub, *g_ec_kid, *g_ec_jwk;      /* openssl P-256 */
static int64_t g_now_ms = NOW * 1000;
static char g_log[16384];
static int g_seq;

static int64_t wall_hook(void *user)
{
    (void)user;
    return g_now_ms;
}

static void log_hook(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    size_t n = strlen(g_log);
    (void)user;
    snprintf(g_log + n, sizeof g_log - n, "[%d] %s: %s\n", (int)level, msgid, msg);
}

static ct_ctx *jctx(void)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    o.wall_ms = wall_hook;
    o.log = log_hook;
    o.log_level = CT_LOG_DEBUG;
    if (ct_ctx_new(&o, &ctx, NULL) != CT_OK)
        abort();
    return ctx;
}

/* Runs a shell command; its stdout without the trailing newline (malloc'ed), or NULL. */
static char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run(const char *fmt, ...)
{
    char cmd[4096];
    size_t cap = 1 << 16, n;
    char *buf = malloc(cap);
    va_list ap;
    FILE *p;
    int st;
    if (!buf)
        abort();
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    if (!p)
        abort();
    n = fread(buf, 1, cap - 1, p);
    buf[n] = '\0';
    st = pclose(p);
    while (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static char *must(char *s, const char *what)
{
    if (!s) {
        fprintf(stderr, "test_jwt fixture: %s failed\n", what);
        abort();
    }
    return s;
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    if (!p)
        abort();
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static char *write_tmp(const char *name, const char *data)
{
    char n[64], *p;
    FILE *f;
    snprintf(n, sizeof n, "%s-%d-%d", name, (int)getpid(), g_seq++);
    p = path_in(g_dir, n);
    f = fopen(p, "wb");
    if (!f || fwrite(data, 1, strlen(data), f) != strlen(data))
        abort();
    fclose(f);
    return p;
}

static char *rsa_key(const char *name, int bits)
{
    char *p = path_in(g_dir, name);
    free(must(run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:%d -out '%s' 2>/dev/null"
                  " && echo ok",
                  bits, p),
              "RSA key generation"));
    return p;
}

static void fixture_setup(void)
{
    const char *fx = getenv("CT_TEST_FIXTURES");
    if (!fx)
        abort();
    g_dir = ct_test_tmpdir();
    g_jose = path_in(fx, "jwt/jose.sh");
    g_rsa = rsa_key("rsa.pem", 2048);
    g_rsa2 = rsa_key("rsa2.pem", 2048);
    g_rsa1k = rsa_key("rsa1k.pem", 1024);
    g_rsa4k = rsa_key("rsa4k.pem", 4096);
    g_ec = path_in(g_dir, "ec.pem");
    free(must(run("openssl ecparam -genkey -name prime256v1 -noout -out '%s' && echo ok", g_ec),
              "EC key generation"));
    g_rsa_pub = path_in(g_dir, "rsa.pub");
    free(must(run("openssl pkey -in '%s' -pubout -out '%s' && echo ok", g_rsa, g_rsa_pub),
              "pubout"));
    g_ec_pub = path_in(g_dir, "ec.pub");
    free(must(run("openssl pkey -in '%s' -pubout -out '%s' && echo ok", g_ec, g_ec_pub), "pubout"));
    g_rsa_kid = must(run("sh '%s' kid '%s'", g_jose, g_rsa), "kid");
    g_rsa2_kid = must(run("sh '%s' kid '%s'", g_jose, g_rsa2), "kid");
    g_rsa4k_kid = must(run("sh '%s' kid '%s'", g_jose, g_rsa4k), "kid");
    g_ec_kid = must(run("sh '%s' kid '%s'", g_jose, g_ec), "kid");
    g_rsa_jwk = must(run("sh '%s' rsa-jwk '%s' '%s'", g_jose, g_rsa, g_rsa_kid), "rsa-jwk");
    g_rsa2_jwk = must(run("sh '%s' rsa-jwk '%s' '%s'", g_jose, g_rsa2, g_rsa2_kid), "rsa-jwk");
    g_rsa1k_jwk = must(run("sh '%s' rsa-jwk '%s' old-1024", g_jose, g_rsa1k), "rsa-jwk");
    g_rsa4k_jwk = must(run("sh '%s' rsa-jwk '%s' '%s'", g_jose, g_rsa4k, g_rsa4k_kid), "rsa-jwk");
    g_ec_jwk = must(run("sh '%s' ec-jwk '%s' '%s'", g_jose, g_ec, g_ec_kid), "ec-jwk");
}

static void fixture_teardown(void)
{
    ct_test_rmrf(g_dir);
    free(g_dir);
    free(g_jose);
    free(g_rsa);
    free(g_rsa_pub);
    free(g_rsa_kid);
    free(g_rsa_jwk);
    free(g_rsa2);
    free(g_rsa2_kid);
    free(g_rsa2_jwk);
    free(g_rsa1k);
    free(g_rsa1k_jwk);
    free(g_rsa4k);
    free(g_rsa4k_kid);
    free(g_rsa4k_jwk);
    free(g_ec);
    free(g_ec_pub);
    free(g_ec_kid);
    free(g_ec_jwk);
}

static void each_setup(void)
{
    g_now_ms = NOW * 1000;
    g_log[0] = '\0';
}

/* ------------------------------------------------------------ helpers */

/* {"keys":[a, b, ...]} from JWK objects (NULL-terminated list). */
static char *jwks_of(const char *first, ...)
{
    va_list ap;
    size_t cap = 64 + strlen(first);
    const char *k;
    char *s;
    va_start(ap, first);
    while ((k = va_arg(ap, const char *)))
        cap += strlen(k) + 1;
    va_end(ap);
    s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    strcpy(s, "{\"keys\":[");
    strcat(s, first);
    va_start(ap, first);
    while ((k = va_arg(ap, const char *))) {
        strcat(s, ",");
        strcat(s, k);
    }
    va_end(ap);
    strcat(s, "]}");
    return s;
}

/* The claims of a token, shaped like ../shared/fixtures/k8s-sa-token-claims.json. */
typedef struct pl {
    const char *iss, *sub; /* NULL: left out */
    const char *aud;       /* raw JSON value; NULL: left out */
    int64_t iat, nbf, exp; /* OMIT: left out */
    const char *extra;     /* raw members appended ("\"a\":1"), or NULL */
} pl;

static pl pl_default(void)
{
    pl p = {ISS, SUB, "[\"" AUD "\"]", NOW - 60, NOW - 60, NOW + 3540, NULL};
    return p;
}

static char *pl_json(const pl *p)
{
    char *s = malloc(65536);
    size_t n;
    ck_assert_ptr_nonnull(s);
    n = (size_t)sprintf(s, "{");
#define ADD(...) n += (size_t)snprintf(s + n, 65536 - n, __VA_ARGS__)
    if (p->aud)
        ADD("\"aud\":%s,", p->aud);
    if (p->exp != OMIT)
        ADD("\"exp\":%lld,", (long long)p->exp);
    if (p->iat != OMIT)
        ADD("\"iat\":%lld,", (long long)p->iat);
    if (p->iss)
        ADD("\"iss\":\"%s\",", p->iss);
    ADD("\"jti\":\"4f0c2d9e-8a61-4b7e-9d0a-2c5e7f1b3a90\","
        "\"kubernetes.io\":{\"namespace\":\"payments\",\"node\":{\"name\":\"worker-2\","
        "\"uid\":\"9b2d6c1e-3f4a-4e8b-a7d5-0c1e2f3a4b5c\"},\"pod\":{\"name\":"
        "\"payments-api-7c9f8d6b5-x2k4q\",\"uid\":\"0e7a4c1b-5d2f-4a9e-8b3c-6f1d2e3a4b5c\"},"
        "\"serviceaccount\":{\"name\":\"payments-api\",\"uid\":"
        "\"3c1e5a7b-2d4f-4c6e-9a8b-1f0e2d3c4b5a\"},\"warnafter\":%lld},",
        (long long)(NOW + 3000));
    if (p->nbf != OMIT)
        ADD("\"nbf\":%lld,", (long long)p->nbf);
    if (p->extra)
        ADD("%s,", p->extra);
    if (p->sub)
        ADD("\"sub\":\"%s\",", p->sub);
#undef ADD
    s[n - 1] = '}';
    return s;
}

/* A token signed by openssl: alg RS256 / ES256 / HS256 / none, raw header and payload JSON. */
static char *mint(const char *alg, const char *key, const char *hdr, const char *pay)
{
    char *h = write_tmp("hdr", hdr), *p = write_tmp("pay", pay), *t;
    t = run("sh '%s' sign %s '%s' '%s' '%s'", g_jose, alg, key ? key : "-", h, p);
    ck_assert_msg(t != NULL, "jose.sh sign %s failed", alg);
    unlink(h);
    unlink(p);
    free(h);
    free(p);
    return t;
}

/* An RS256 token from a key (kid NULL: no kid in the header) over claims p. */
static char *tok_rs(const char *key, const char *kid, const pl *p)
{
    char hdr[512], *pay = pl_json(p), *t;
    if (kid)
        snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid);
    else
        snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\"}");
    t = mint("RS256", key, hdr, pay);
    free(pay);
    return t;
}

static char *tok_default(void)
{
    pl p = pl_default();
    return tok_rs(g_rsa, g_rsa_kid, &p);
}

static ct_jwt_expect expect_default(void)
{
    ct_jwt_expect x = CT_JWT_EXPECT_INIT;
    x.issuer = ISS;
    x.audience = AUD;
    return x;
}

/* Verifies `token` against the key set `jwks_json`. */
static ct_err verify_x(const char *jwks_json, const char *token, const ct_jwt_expect *x,
                       ct_jwt_claims *c, ct_error *err)
{
    ct_ctx *ctx = jctx();
    ct_jwks *set = NULL;
    ct_error e2;
    ct_err rc;
    ck_ok(ct_jwks_parse(ctx, jwks_json, strlen(jwks_json), &set, &e2), &e2);
    rc = ct_jwt_verify(ctx, set, token, strlen(token), x, c, err);
    ct_jwks_free(set);
    ct_ctx_free(ctx);
    return rc;
}

static ct_err verify_std(const char *token, ct_error *err)
{
    ct_jwt_expect x = expect_default();
    char *set = jwks_of(g_rsa_jwk, g_rsa2_jwk, g_ec_jwk, NULL);
    ct_err rc = verify_x(set, token, &x, NULL, err);
    free(set);
    return rc;
}

/* The error message never quotes the token's payload or signature. */
static void ck_no_token(const ct_error *err, const char *token)
{
    const char *p = strchr(token, '.'), *s = strrchr(token, '.');
    char frag[13];
    ck_assert_ptr_nonnull(p);
    if (strlen(p + 1) >= 12) {
        memcpy(frag, p + 1, 12);
        frag[12] = '\0';
        ck_assert_msg(!strstr(err->message, frag), "message quotes the payload: %s", err->message);
    }
    if (strlen(s + 1) >= 12) {
        memcpy(frag, s + 1, 12);
        frag[12] = '\0';
        ck_assert_msg(!strstr(err->message, frag), "message quotes the signature: %s",
                      err->message);
    }
}

/* Expects CT_E_AUTH (or `code`) with `needle` in the message. */
static void ck_refused(const char *token, ct_err code, const char *needle)
{
    ct_error err;
    ck_err(verify_std(token, &err), code, &err);
    if (needle)
        ck_assert_msg(strstr(err.message, needle), "message \"%s\" lacks \"%s\"", err.message,
                      needle);
    ck_no_token(&err, token);
}

/* Independent base64url (RFC 4648 section 5, no padding) for building inputs. */
static char *b64u(const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *s = malloc(n / 3 * 4 + 5), *o = s;
    size_t i;
    ck_assert_ptr_nonnull(s);
    for (i = 0; i + 2 < n; i += 3) {
        *o++ = a[p[i] >> 2];
        *o++ = a[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        *o++ = a[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
        *o++ = a[p[i + 2] & 63];
    }
    if (n - i == 1) {
        *o++ = a[p[i] >> 2];
        *o++ = a[(p[i] & 3) << 4];
    } else if (n - i == 2) {
        *o++ = a[p[i] >> 2];
        *o++ = a[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        *o++ = a[(p[i + 1] & 15) << 2];
    }
    *o = '\0';
    return s;
}

static size_t unb64u(const char *s, size_t n, uint8_t *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    size_t i, o = 0;
    int bits = 0;
    for (i = 0; i < n; i++) {
        const char *c = strchr(a, s[i]);
        ck_assert_ptr_nonnull(c);
        acc = acc << 6 | (uint32_t)(c - a);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

/* The value of string member `name` in a flat JSON object (malloc'ed). */
static char *member(const char *json, const char *name)
{
    char key[32];
    const char *p, *q;
    char *v;
    snprintf(key, sizeof key, "\"%s\":\"", name);
    p = strstr(json, key);
    ck_assert_ptr_nonnull(p);
    p += strlen(key);
    q = strchr(p, '"');
    v = strndup(p, (size_t)(q - p));
    ck_assert_ptr_nonnull(v);
    return v;
}

/* A token with its signature segment replaced by base64url(sig). */
static char *with_sig(const char *token, const uint8_t *sig, size_t n)
{
    const char *dot = strrchr(token, '.');
    char *s = b64u(sig, n), *t = malloc((size_t)(dot - token) + strlen(s) + 2);
    ck_assert_ptr_nonnull(t);
    memcpy(t, token, (size_t)(dot - token) + 1);
    strcpy(t + (dot - token) + 1, s);
    free(s);
    return t;
}

/* ------------------------------------------------------------ key sets */

START_TEST(fixture_jwks_parses)
{
    const char *dir = getenv("CT_SHARED_FIXTURES");
    char *path, *json = NULL, *again = NULL;
    ct_ctx *ctx = jctx();
    ct_jwks *set = NULL, *set2 = NULL;
    ct_error err;
    FILE *f;
    char buf[8192];
    size_t n;

    ck_assert_ptr_nonnull(dir);
    path = path_in(dir, "k8s-jwks.json");
    f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_ok(ct_jwks_parse(ctx, buf, n, &set, &err), &err);
    ck_assert_uint_eq(ct_jwks_count(set), 1);
    ck_ok(ct_jwks_serialize(set, &json, &err), &err);
    ck_assert_msg(strncmp(json,
                          "{\"keys\":[{\"alg\":\"RS256\",\"e\":\"AQAB\",\"kid\":"
                          "\"dKbZue6Fd-LfHhodbTb4iQcXQt_PFx29stWe2TuCMHE\",\"kty\":\"RSA\","
                          "\"n\":\"z2bQPvFaxQABCE4fZWZqkdyadBrioUB_",
                          strlen("{\"keys\":[{\"alg\":\"RS256\",\"e\":\"AQAB\",\"kid\":"
                                 "\"dKbZue6Fd-LfHhodbTb4iQcXQt_PFx29stWe2TuCMHE\",\"kty\":"
                                 "\"RSA\",\"n\":\"z2bQPvFaxQABCE4fZWZqkdyadBrioUB_")) == 0,
                  "%s", json);
    n = strlen(json);
    ck_assert_str_eq(json + n - strlen("\",\"use\":\"sig\"}]}"), "\",\"use\":\"sig\"}]}");
    /* the canonical form is a fixed point */
    ck_ok(ct_jwks_parse(ctx, json, strlen(json), &set2, &err), &err);
    ck_ok(ct_jwks_serialize(set2, &again, &err), &err);
    ck_assert_str_eq(json, again);
    ct_free(json);
    ct_free(again);
    ct_jwks_free(set);
    ct_jwks_free(set2);
    free(path);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(jwks_skips_unsupported_keys)
{
    char eight_k[1024], jwk8k[1500], *b, *set_json;
    const char *skipped[] = {
        g_rsa1k_jwk,
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"p384\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\",\"x\":\"AA\"}",
        "{\"kty\":\"RSA\",\"alg\":\"PS256\",\"kid\":\"pss\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":\"EC\",\"alg\":\"ES384\",\"kid\":\"es384\",\"crv\":\"P-256\",\"x\":\"AA\","
        "\"y\":\"AA\"}",
        jwk8k,
    };
    const char *names[] = {"old-1024", "p384", "ed", "pss", "es384", "huge"};
    ct_ctx *ctx = jctx();
    ct_jwks *set = NULL;
    ct_error err;
    size_t i;

    /* an 8192-bit modulus: beyond what the Debian wolfSSL can verify (RSA_MAX_SIZE) */
    for (i = 0; i < sizeof eight_k; i++)
        eight_k[i] = (char)(0x5a ^ (i * 7));
    eight_k[0] = (char)0xc1;
    eight_k[sizeof eight_k - 1] |= 1;
    b = b64u((const uint8_t *)eight_k, sizeof eight_k);
    snprintf(jwk8k, sizeof jwk8k, "{\"kty\":\"RSA\",\"kid\":\"huge\",\"n\":\"%s\",\"e\":\"AQAB\"}",
             b);
    free(b);

    for (i = 0; i < sizeof skipped / sizeof skipped[0]; i++) {
        char needle[64];
        if (i == 5 && RSA_MAX_SIZE >= 8192)
            continue;
        g_log[0] = '\0';
        set_json = jwks_of(skipped[i], g_rsa_jwk, NULL);
        ck_ok(ct_jwks_parse(ctx, set_json, strlen(set_json), &set, &err), &err);
        ck_assert_uint_eq(ct_jwks_count(set), 1);
        ct_jwks_free(set);
        set = NULL;
        snprintf(needle, sizeof needle, "skipping key \"%s\"", names[i]);
        ck_assert_msg(strstr(g_log, needle) && strstr(g_log, "[5] jwt:"),
                      "no notice naming %s in: %s", names[i], g_log);
        /* alone, it leaves no usable key */
        free(set_json);
        set_json = jwks_of(skipped[i], NULL);
        ck_err(ct_jwks_parse(ctx, set_json, strlen(set_json), &set, &err), CT_E_INVALID, &err);
        ck_assert_ptr_null(set);
        ck_assert_ptr_nonnull(strstr(err.message, "no usable key"));
        free(set_json);
    }
    /* "use":"enc" is skipped too; a kid-less key is named by position */
    g_log[0] = '\0';
    set_json = jwks_of(g_rsa_jwk, "{\"kty\":\"oct\",\"use\":\"enc\",\"kid\":\"e\"}",
                       "{\"kty\":\"oct\"}", NULL);
    ck_ok(ct_jwks_parse(ctx, set_json, strlen(set_json), &set, &err), &err);
    ck_assert_uint_eq(ct_jwks_count(set), 1);
    ck_assert_ptr_nonnull(strstr(g_log, "\"use\" is \"enc\""));
    ck_assert_ptr_nonnull(strstr(g_log, "key #2 (no kid)"));
    ct_jwks_free(set);
    free(set_json);
    ct_ctx_free(ctx);
}
END_TEST

/* Parses `json` expecting `code` and `needle` in the message. */
static void jwks_bad(const char *json, size_t len, ct_err code, const char *needle)
{
    ct_ctx *ctx = jctx();
    ct_jwks *set = (ct_jwks *)1;
    ct_error err;
    ck_err(ct_jwks_parse(ctx, json, len, &set, &err), code, &err);
    ck_assert_ptr_null(set);
    if (needle)
        ck_assert_msg(strstr(err.message, needle), "message \"%s\" lacks \"%s\"", err.message,
                      needle);
    ct_ctx_free(ctx);
}

static void jwks_bad_key(const char *jwk, const char *needle)
{
    char *s = jwks_of(g_rsa_jwk, jwk, NULL);
    jwks_bad(s, strlen(s), CT_E_INVALID, needle);
    free(s);
}

START_TEST(jwks_rejects_bad_keys)
{
    char *n = member(g_rsa_jwk, "n"), *x = member(g_ec_jwk, "x"), *y = member(g_ec_jwk, "y");
    char buf[2048];
    uint8_t raw[64];
    char *b;

    /* EC point not on the curve: y replaced by x */
    snprintf(buf, sizeof buf, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"off\",\"x\":\"%s\","
                              "\"y\":\"%s\"}", x, x);
    jwks_bad_key(buf, "not a valid P-256 point");
    /* coordinate >= p */
    memset(raw, 0xff, 32);
    b = b64u(raw, 32);
    snprintf(buf, sizeof buf, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", b, y);
    jwks_bad_key(buf, "not a valid P-256 point");
    free(b);
    /* coordinates of the wrong length */
    b = b64u(raw, 31);
    snprintf(buf, sizeof buf, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", b, y);
    jwks_bad_key(buf, "32 bytes");
    free(b);
    snprintf(buf, sizeof buf, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\"}", x);
    jwks_bad_key(buf, "\"y\" is missing");
    /* RSA exponent even, 1, too long; modulus even; bad base64url */
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"kid\":\"k\",\"n\":\"%s\",\"e\":\"AQAA\"}", n);
    jwks_bad_key(buf, "odd and at least 3");
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}", n);
    jwks_bad_key(buf, "odd and at least 3");
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAAAAE\"}", n);
    jwks_bad_key(buf, "out of range");
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"n\":\"%.340sAA\",\"e\":\"AQAB\"}", n);
    jwks_bad_key(buf, "not odd");
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"n\":\"%s=\",\"e\":\"AQAB\"}", n);
    jwks_bad_key(buf, "\"n\" is not valid base64url");
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQA+\"}", n);
    jwks_bad_key(buf, "\"e\" is not valid base64url");
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":65537}", n);
    jwks_bad_key(buf, "\"e\" is missing or not a string");
    /* private material, shapes, kid conflicts */
    snprintf(buf, sizeof buf, "{\"kty\":\"RSA\",\"kid\":\"p\",\"n\":\"%s\",\"e\":\"AQAB\","
                              "\"d\":\"AQAB\"}", n);
    jwks_bad_key(buf, "private key material");
    jwks_bad_key("{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}", "private key material");
    jwks_bad_key("{\"kid\":\"nokty\"}", "\"kty\" is missing");
    jwks_bad_key("{\"kty\":\"RSA\",\"kid\":7}", "\"kid\" is not a string");
    jwks_bad_key("{\"kty\":\"RSA\",\"use\":1}", "not a string");
    jwks_bad_key("\"RSA\"", "not a JSON object");
    snprintf(buf, sizeof buf, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\","
                              "\"y\":\"%s\"}", g_rsa_kid, x, y);
    jwks_bad_key(buf, "two different keys have kid");
    free(n);
    free(x);
    free(y);
}
END_TEST

START_TEST(jwks_rejects_bad_sets)
{
    char *big, *many;
    size_t i;

    jwks_bad("", 0, CT_E_INVALID, NULL);
    jwks_bad("{\"keys\":[", 9, CT_E_INVALID, "not JSON");
    jwks_bad("[]", 2, CT_E_INVALID, "\"keys\" array");
    jwks_bad("{\"keys\":{}}", 11, CT_E_INVALID, "\"keys\" array");
    jwks_bad("{\"keys\":[]}", 11, CT_E_INVALID, "no usable key");
    jwks_bad("{\"keys\":[],\"keys\":[]}", 21, CT_E_INVALID, "not JSON");
    /* more keys than CT_JWKS_MAX_KEYS */
    many = malloc((CT_JWKS_MAX_KEYS + 1) * (strlen(g_rsa_jwk) + 1) + 16);
    ck_assert_ptr_nonnull(many);
    strcpy(many, "{\"keys\":[");
    for (i = 0; i <= CT_JWKS_MAX_KEYS; i++) {
        strcat(many, i ? "," : "");
        strcat(many, g_rsa_jwk);
    }
    strcat(many, "]}");
    jwks_bad(many, strlen(many), CT_E_TOOBIG, "at most");
    free(many);
    /* larger than CT_JWKS_MAX_LEN */
    big = malloc(CT_JWKS_MAX_LEN + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', CT_JWKS_MAX_LEN + 1);
    big[CT_JWKS_MAX_LEN + 1] = '\0';
    jwks_bad(big, CT_JWKS_MAX_LEN + 1, CT_E_TOOBIG, "exceeds");
    free(big);
    {
        ct_jwks *set = NULL;
        ck_err(ct_jwks_parse(NULL, "{}", 2, NULL, NULL), CT_E_INVALID, (ct_error *)NULL);
        ck_err(ct_jwks_parse(NULL, NULL, 2, &set, NULL), CT_E_INVALID, (ct_error *)NULL);
        ck_assert_uint_eq(ct_jwks_count(NULL), 0);
        ct_jwks_free(NULL);
    }
}
END_TEST

START_TEST(jwks_canonical_serialisation)
{
    char *n = member(g_rsa_jwk, "n"), *x = member(g_ec_jwk, "x"), *y = member(g_ec_jwk, "y");
    char rsa_odd[1024], ec_odd[512], *b, *a_json, *b_json, *sa = NULL, *sb = NULL;
    uint8_t raw[600];
    size_t len;
    ct_ctx *ctx = jctx();
    ct_jwks *a = NULL, *bb = NULL;
    ct_error err;

    /* the same RSA key: members reordered, alg/use left out, a leading zero on n, extras */
    raw[0] = 0;
    len = unb64u(n, strlen(n), raw + 1);
    b = b64u(raw, len + 1);
    snprintf(rsa_odd, sizeof rsa_odd,
             "{\"e\":\"AQAB\",\"n\":\"%s\",\"x5t\":\"ignored\",\"kid\":\"%s\",\"kty\":\"RSA\"}", b,
             g_rsa_kid);
    free(b);
    snprintf(ec_odd, sizeof ec_odd,
             "{\"y\":\"%s\",\"key_ops\":[\"verify\"],\"x\":\"%s\",\"crv\":\"P-256\",\"kty\":\"EC\","
             "\"kid\":\"%s\",\"use\":\"sig\"}",
             y, x, g_ec_kid);
    a_json = jwks_of(g_rsa_jwk, g_ec_jwk, g_rsa2_jwk, NULL);
    /* different order, a duplicate, an unsupported key */
    b_json = jwks_of(g_rsa2_jwk, ec_odd, g_rsa1k_jwk, rsa_odd, g_rsa2_jwk, NULL);
    ck_ok(ct_jwks_parse(ctx, a_json, strlen(a_json), &a, &err), &err);
    ck_ok(ct_jwks_parse(ctx, b_json, strlen(b_json), &bb, &err), &err);
    ck_assert_uint_eq(ct_jwks_count(a), 3);
    ck_assert_uint_eq(ct_jwks_count(bb), 3);
    ck_ok(ct_jwks_serialize(a, &sa, &err), &err);
    ck_ok(ct_jwks_serialize(bb, &sb, &err), &err);
    ck_assert_str_eq(sa, sb);
    ck_assert_ptr_null(strstr(sa, "x5t"));
    ck_assert_ptr_null(strstr(sa, "key_ops"));
    ck_assert_ptr_nonnull(strstr(sa, n)); /* the leading zero is gone */
    ct_free(sb);
    ck_err(ct_jwks_serialize(NULL, &sb, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(sb);
    ct_free(sa);
    ct_jwks_free(a);
    ct_jwks_free(bb);
    free(a_json);
    free(b_json);
    free(n);
    free(x);
    free(y);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ RS256 */

START_TEST(rs256_good)
{
    char *t = tok_default(), *spaced, *set = jwks_of(g_rsa_jwk, g_rsa2_jwk, g_ec_jwk, NULL);
    ct_jwt_expect x = expect_default();
    ct_jwt_claims c;
    ct_error err;

    memset(&c, 0x7f, sizeof c);
    ck_ok(verify_x(set, t, &x, &c, &err), &err);
    ck_assert_str_eq(c.issuer, ISS);
    ck_assert_str_eq(c.subject, SUB);
    ck_assert_str_eq(c.jti, "4f0c2d9e-8a61-4b7e-9d0a-2c5e7f1b3a90");
    ck_assert_str_eq(c.kid, g_rsa_kid);
    ck_assert_str_eq(c.k8s_namespace, "payments");
    ck_assert_str_eq(c.k8s_serviceaccount, "payments-api");
    ck_assert_int_eq(c.iat, NOW - 60);
    ck_assert_int_eq(c.nbf, NOW - 60);
    ck_assert_int_eq(c.exp, NOW + 3540);
    /* expected subject, bounded lifetime, surrounding whitespace, claims NULL */
    x.subject = SUB;
    x.max_lifetime_s = 3600;
    spaced = malloc(strlen(t) + 8);
    ck_assert_ptr_nonnull(spaced);
    sprintf(spaced, " \n%s\r\n", t);
    ck_ok(verify_x(set, spaced, &x, NULL, &err), &err);
    free(spaced);
    free(t);
    free(set);
}
END_TEST

START_TEST(rs256_variants)
{
    pl p = pl_default();
    char *t, *set = jwks_of(g_ec_jwk, g_rsa2_jwk, g_rsa_jwk, NULL);
    ct_jwt_expect x = expect_default();
    ct_jwt_claims c;
    ct_error err;

    /* no kid: every RSA key is tried */
    t = tok_rs(g_rsa, NULL, &p);
    ck_ok(verify_x(set, t, &x, &c, &err), &err);
    ck_assert_str_eq(c.kid, "");
    free(t);
    /* aud as a plain string; no nbf/iat; no kubernetes.io */
    p.aud = "\"" AUD "\"";
    p.nbf = p.iat = OMIT;
    t = tok_rs(g_rsa2, g_rsa2_kid, &p);
    ck_ok(verify_x(set, t, &x, &c, &err), &err);
    ck_assert_int_eq(c.nbf, 0);
    ck_assert_int_eq(c.iat, 0);
    free(t);
    /* aud array with ours among others; extra header members are ignored */
    p = pl_default();
    p.aud = "[\"vault\",\"" AUD "\",\"other\"]";
    {
        char hdr[256], *pay = pl_json(&p);
        snprintf(hdr, sizeof hdr, "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"%s\",\"x\":[1]}",
                 g_rsa_kid);
        t = mint("RS256", g_rsa, hdr, pay);
        free(pay);
    }
    ck_ok(verify_x(set, t, &x, &c, &err), &err);
    free(t);
    /* a 4096-bit key */
    free(set);
    set = jwks_of(g_rsa4k_jwk, NULL);
    p = pl_default();
    t = tok_rs(g_rsa4k, g_rsa4k_kid, &p);
    ck_ok(verify_x(set, t, &x, &c, &err), &err);
    free(t);
    free(set);
}
END_TEST

START_TEST(rs256_tampered)
{
    char *t = tok_default(), *t2, *dot1, *dot2, *other;
    pl p = pl_default();
    uint8_t ff[256];

    /* payload of another (validly encoded) token under the original signature */
    p.sub = "system:serviceaccount:kube-system:admin";
    other = tok_rs(g_rsa2, g_rsa_kid, &p);
    dot1 = strchr(t, '.');
    dot2 = strrchr(t, '.');
    t2 = malloc(strlen(t) + strlen(other) + 1);
    ck_assert_ptr_nonnull(t2);
    memcpy(t2, t, (size_t)(dot1 - t) + 1);
    t2[dot1 - t + 1] = '\0';
    strncat(t2, strchr(other, '.') + 1, (size_t)(strrchr(other, '.') - strchr(other, '.') - 1));
    strcat(t2, dot2);
    ck_refused(t2, CT_E_AUTH, "does not verify");
    free(t2);
    /* the other key's signature under the right kid */
    ck_refused(other, CT_E_AUTH, "does not verify");
    free(other);
    /* one signature character changed (keeping the encoding canonical) */
    t2 = strdup(t);
    ck_assert_ptr_nonnull(t2);
    {
        char *c = strrchr(t2, '.') + 10;
        *c = *c == 'A' ? 'B' : 'A';
    }
    ck_refused(t2, CT_E_AUTH, "does not verify");
    free(t2);
    /* the signature without its last byte, and with one more */
    {
        uint8_t sig[300];
        const char *s = strrchr(t, '.') + 1;
        size_t n = unb64u(s, strlen(s), sig);
        ck_assert_uint_eq(n, 256);
        t2 = with_sig(t, sig, 255);
        ck_refused(t2, CT_E_AUTH, "does not verify");
        free(t2);
        sig[256] = 0;
        t2 = with_sig(t, sig, 257);
        ck_refused(t2, CT_E_AUTH, "does not verify");
        free(t2);
    }
    /* a signature >= n */
    memset(ff, 0xff, sizeof ff);
    t2 = with_sig(t, ff, sizeof ff);
    ck_refused(t2, CT_E_AUTH, "does not verify");
    free(t2);
    free(t);
}
END_TEST

/* RS256 signatures over hand-made PKCS#1 blocks: only the exact DigestInfo passes. */
START_TEST(rs256_digest_info_exact)
{
    static const struct {
        const char *pre, *post;
        int ok;
    } cases[] = {
        {"3031300d060960864801650304020105000420", "-", 1},  /* SHA-256 DigestInfo */
        {"302f300b0609608648016503040201" "0420", "-", 0},  /* parameters absent */
        {"3031300d060960864801650304020305000420", "-", 0},  /* SHA-512 OID */
        {"3031300d060960864801650304020105000420", "00", 0}, /* trailing byte */
        {"3032300d060960864801650304020105000420", "-", 0},  /* wrong outer length */
        {"-", "-", 0},                                       /* bare hash */
    };
    char hdr[256], *pay, *h, *pf, *t;
    pl p = pl_default();
    size_t i;

    snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", g_rsa_kid);
    pay = pl_json(&p);
    h = write_tmp("hdr", hdr);
    pf = write_tmp("pay", pay);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ct_error err;
        t = run("sh '%s' sign-raw '%s' %s %s '%s' '%s'", g_jose, g_rsa, cases[i].pre,
                cases[i].post, h, pf);
        ck_assert_ptr_nonnull(t);
        if (cases[i].ok)
            ck_ok(verify_std(t, &err), &err);
        else
            ck_err(verify_std(t, &err), CT_E_AUTH, &err);
        free(t);
    }
    free(h);
    free(pf);
    free(pay);
}
END_TEST

START_TEST(rs256_kid_and_alg_confusion)
{
    pl p = pl_default();
    char hdr[256], *pay = pl_json(&p), *t, *set;
    ct_jwt_expect x = expect_default();
    ct_error err;

    /* unknown kid */
    t = tok_rs(g_rsa, "no-such-kid", &p);
    ck_refused(t, CT_E_AUTH, "no key in the key set has the token's kid");
    free(t);
    /* alg none (any spelling), empty signature */
    t = mint("none", NULL, "{\"alg\":\"none\",\"typ\":\"JWT\"}", pay);
    ck_refused(t, CT_E_INVALID, "\"none\" is not accepted");
    free(t);
    t = mint("none", NULL, "{\"alg\":\"NONE\"}", pay);
    ck_refused(t, CT_E_INVALID, "not accepted");
    free(t);
    /* HS256 keyed with the RSA public key (the classic confusion), with and without kid */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", g_rsa_kid);
    t = mint("HS256", g_rsa_pub, hdr, pay);
    ck_refused(t, CT_E_INVALID, "\"HS256\" is not accepted");
    free(t);
    t = mint("HS256", g_rsa_pub, "{\"alg\":\"HS256\"}", pay);
    ck_refused(t, CT_E_INVALID, "not accepted");
    free(t);
    /* other RSA algorithms */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"PS256\",\"kid\":\"%s\"}", g_rsa_kid);
    t = mint("RS256", g_rsa, hdr, pay);
    ck_refused(t, CT_E_INVALID, "not accepted");
    free(t);
    /* ES256 header naming the RSA key (signed by an EC key, 64-byte signature) */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", g_rsa_kid);
    t = mint("ES256", g_ec, hdr, pay);
    ck_refused(t, CT_E_AUTH, "is an RSA key");
    free(t);
    /* ES256 header over an RSA signature */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", g_rsa_kid);
    t = mint("RS256", g_rsa, hdr, pay);
    ck_refused(t, CT_E_AUTH, "is an RSA key");
    free(t);
    /* ES256 without kid against a set with only RSA keys */
    set = jwks_of(g_rsa_jwk, g_rsa2_jwk, NULL);
    t = mint("ES256", g_ec, "{\"alg\":\"ES256\"}", pay);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "no EC key"));
    free(t);
    free(set);
    /* RS256 header naming the EC key */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", g_ec_kid);
    t = mint("RS256", g_rsa, hdr, pay);
    ck_refused(t, CT_E_AUTH, "is an EC key");
    free(t);
    /* crit */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\",\"kid\":\"%s\",\"crit\":[\"exp\"],\"exp\":1}",
             g_rsa_kid);
    t = mint("RS256", g_rsa, hdr, pay);
    ck_refused(t, CT_E_INVALID, "crit");
    free(t);
    free(pay);
}
END_TEST

START_TEST(claims_time)
{
    pl p = pl_default();
    char *t, *set = jwks_of(g_rsa_jwk, NULL);
    ct_jwt_expect x = expect_default();
    ct_error err;

    /* expired a second ago; fine with leeway */
    p.exp = NOW - 1;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "expired"));
    x.leeway_s = 30;
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    x.leeway_s = 0;
    /* exactly at exp is expired; a millisecond before is not */
    g_now_ms = (NOW - 1) * 1000 - 1;
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    g_now_ms = (NOW - 1) * 1000;
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    g_now_ms = NOW * 1000;
    free(t);
    /* not yet valid */
    p = pl_default();
    p.nbf = NOW + 120;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "not valid before"));
    x.leeway_s = 120;
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    x.leeway_s = 0;
    g_now_ms = (NOW + 120) * 1000;
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    g_now_ms = NOW * 1000;
    free(t);
    /* issued in the future */
    p = pl_default();
    p.iat = NOW + 300;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "issued in the future"));
    free(t);
    /* lifetime too long: exp - iat, and without iat exp - now */
    p = pl_default();
    p.iat = NOW - 60;
    p.exp = NOW + 7200;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    x.max_lifetime_s = 3600;
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "lifetime of 7260 s exceeds"));
    x.max_lifetime_s = 7260;
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    free(t);
    p.iat = OMIT;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    x.max_lifetime_s = 3600;
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "more than the maximum"));
    x.max_lifetime_s = 0;
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    free(t);
    /* no exp at all */
    p = pl_default();
    p.exp = OMIT;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "no expiry"));
    free(t);
    /* exp not after iat (iat within the leeway, so only that is wrong) */
    p = pl_default();
    p.iat = NOW + 10;
    p.exp = NOW + 5;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    x.leeway_s = 30;
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "expires before it was issued"));
    x.leeway_s = 0;
    free(t);
    /* malformed times */
    p = pl_default();
    p.exp = OMIT;
    p.extra = "\"exp\":\"tomorrow\"";
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_INVALID, &err);
    free(t);
    p.extra = "\"exp\":-5";
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_INVALID, &err);
    free(t);
    p.extra = "\"exp\":99999999999999";
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_INVALID, &err);
    free(t);
    p.extra = "\"exp\":1767232540.75"; /* NumericDate may be fractional */
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    free(t);
    free(set);
}
END_TEST

START_TEST(claims_identity)
{
    pl p = pl_default();
    char *t, *set = jwks_of(g_rsa_jwk, NULL);
    ct_jwt_expect x = expect_default();
    ct_error err;
    struct {
        const char *iss, *aud, *sub;
        ct_err code;
        const char *needle;
    } cases[] = {
        {"https://evil.example", NULL, NULL, CT_E_AUTH, "not issued by"},
        {NULL, "[\"vault\"]", NULL, CT_E_AUTH, "not meant for audience"},
        {NULL, "\"vault\"", NULL, CT_E_AUTH, "not meant for audience"},
        {NULL, "[]", NULL, CT_E_AUTH, "not meant for audience"},
        {NULL, "[\"" AUD "\",7]", NULL, CT_E_INVALID, "\"aud\""},
        {NULL, "{\"a\":1}", NULL, CT_E_INVALID, "\"aud\""},
        {NULL, NULL, "system:serviceaccount:payments:other", CT_E_AUTH, "subject"},
    };
    size_t i;

    x.subject = SUB;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p = pl_default();
        if (cases[i].iss)
            p.iss = cases[i].iss;
        if (cases[i].aud)
            p.aud = cases[i].aud;
        if (cases[i].sub)
            p.sub = cases[i].sub;
        t = tok_rs(g_rsa, g_rsa_kid, &p);
        ck_err(verify_x(set, t, &x, NULL, &err), cases[i].code, &err);
        ck_assert_msg(strstr(err.message, cases[i].needle), "case %zu: %s", i, err.message);
        ck_no_token(&err, t);
        free(t);
    }
    /* missing iss, aud, sub */
    p = pl_default();
    p.iss = NULL;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    free(t);
    p = pl_default();
    p.aud = NULL;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    free(t);
    p = pl_default();
    p.sub = NULL;
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_AUTH, &err);
    x.subject = NULL; /* any subject, even none */
    ck_ok(verify_x(set, t, &x, NULL, &err), &err);
    free(t);
    /* wrong claim types */
    p = pl_default();
    p.iss = NULL;
    p.extra = "\"iss\":[\"" ISS "\"]";
    t = tok_rs(g_rsa, g_rsa_kid, &p);
    ck_err(verify_x(set, t, &x, NULL, &err), CT_E_INVALID, &err);
    free(t);
    /* a claim longer than CT_JWT_CLAIM_MAX - 1 is an error, not a truncation */
    {
        char extra[400];
        p = pl_default();
        p.sub = NULL;
        memset(extra, 'a', sizeof extra);
        memcpy(extra, "\"sub\":\"", 7);
        memcpy(extra + 7 + CT_JWT_CLAIM_MAX, "\"", 2);
        p.extra = extra;
        t = tok_rs(g_rsa, g_rsa_kid, &p);
        ck_err(verify_x(set, t, &x, NULL, &err), CT_E_INVALID, &err);
        ck_assert_ptr_nonnull(strstr(err.message, "longer than"));
        free(t);
    }
    free(set);
}
END_TEST

START_TEST(expect_arguments)
{
    char *t = tok_default(), *set_json = jwks_of(g_rsa_jwk, NULL);
    ct_ctx *ctx = jctx();
    ct_jwks *set = NULL;
    ct_jwt_expect x = expect_default();
    ct_error err;

    ck_ok(ct_jwks_parse(ctx, set_json, strlen(set_json), &set, &err), &err);
    ck_err(ct_jwt_verify(ctx, set, t, strlen(t), NULL, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_verify(ctx, NULL, t, strlen(t), &x, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_verify(ctx, set, NULL, 5, &x, NULL, &err), CT_E_INVALID, &err);
    x.version = 99;
    ck_err(ct_jwt_verify(ctx, set, t, strlen(t), &x, NULL, &err), CT_E_VERSION, &err);
    x = expect_default();
    x.issuer = NULL;
    ck_err(ct_jwt_verify(ctx, set, t, strlen(t), &x, NULL, &err), CT_E_INVALID, &err);
    x = expect_default();
    x.audience = "";
    ck_err(ct_jwt_verify(ctx, set, t, strlen(t), &x, NULL, &err), CT_E_INVALID, &err);
    x = expect_default();
    /* len is honoured: a prefix of the token is not the token */
    ck_assert_int_ne(ct_jwt_verify(ctx, set, t, strlen(t) - 1, &x, NULL, &err), CT_OK);
    ck_assert_int_ne(ct_jwt_verify(ctx, set, t, strlen(t) - 2, &x, NULL, &err), CT_OK);
    /* the real clock (no hook): this token (2026) is long expired or not yet valid */
    {
        ct_ctx *real = ct_test_ctx();
        pl p = pl_default();
        char *t2;
        p.iat = p.nbf = OMIT;
        p.exp = 4000000000LL; /* 2096 */
        t2 = tok_rs(g_rsa, g_rsa_kid, &p);
        ck_ok(ct_jwt_verify(real, set, t2, strlen(t2), &x, NULL, &err), &err);
        p.exp = 1000000000LL; /* 2001 */
        free(t2);
        t2 = tok_rs(g_rsa, g_rsa_kid, &p);
        ck_err(ct_jwt_verify(real, set, t2, strlen(t2), &x, NULL, &err), CT_E_AUTH, &err);
        free(t2);
        ct_ctx_free(real);
    }
    ct_jwks_free(set);
    ct_ctx_free(ctx);
    free(set_json);
    free(t);
}
END_TEST

/* ------------------------------------------------------------ malformed tokens */

START_TEST(malformed_tokens)
{
    char *t = tok_default(), *bad, *set = jwks_of(g_rsa_jwk, NULL);
    const char *dot1 = strchr(t, '.');
    ct_jwt_expect x = expect_default();
    ct_error err;
    size_t i;
    static const struct {
        const char *t;
        int peek_ok; /* ct_jwt_peek reads it (it checks no alg) */
    } literal[] = {
        {"", 0}, {"abc", 0}, {"a.b", 0}, {"a.b.c.d", 0}, {"a.b.c.d.e", 0}, {".e30.AAAA", 0},
        {"eyJhbGciOiJSUzI1NiJ9..AAAA", 0},
        {"eyJhbGciOiJSUzI1NiJ9.e30.AAAA=", 0}, /* padding */
        {"eyJhbGciOiJSUzI1NiJ9.e30.AA+A", 0},  /* base64, not base64url */
        {"eyJhbGciOiJSUzI1NiJ9.e30.AAA/", 0},
        {"eyJhbGciOiJSUzI1NiJ9.e3 0.AAAA", 0},
        {"eyJhbGciOiJSUzI1NiJ9.e30.A", 0},     /* impossible length */
        {"eyJhbGciOiJSUzI1NiJ9.e31.AAAA", 0},  /* non-canonical trailing bits */
        {"W10.e30.AAAA", 0},                   /* header [] */
        {"eyJhbGciOiJSUzI1NiIsImFsZyI6IlJTMjU2In0.e30.AAAA", 0}, /* alg twice */
        {"eyJhbGciOiJSUzI1NiIsImtpZCI6MX0.e30.AAAA", 0},         /* kid 1 */
        {"eyJhbGciOiJSUzI1NiI.e30.AAAA", 0},  /* truncated header JSON */
        {"eyJ0eXAiOiJKV1QifQ.e30.AAAA", 1},   /* no alg */
        {"eyJhbGciOjF9.e30.AAAA", 1},         /* alg 1 */
    };

    for (i = 0; i < sizeof literal / sizeof literal[0]; i++) {
        ct_jwt_claims c;
        ck_err(verify_x(set, literal[i].t, &x, NULL, &err), CT_E_INVALID, &err);
        if (literal[i].peek_ok)
            ck_ok(ct_jwt_peek(literal[i].t, strlen(literal[i].t), &c, &err), &err);
        else
            ck_err(ct_jwt_peek(literal[i].t, strlen(literal[i].t), &c, &err), CT_E_INVALID,
                   &err);
    }
    ck_err(verify_x(set, "a.b.c.d.e", &x, NULL, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "JWE"));
    /* garbage base64 in the payload */
    bad = strdup(t);
    ck_assert_ptr_nonnull(bad);
    bad[dot1 - t + 5] = '*';
    ck_err(verify_x(set, bad, &x, NULL, &err), CT_E_INVALID, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "payload is not valid base64url"));
    /* an embedded NUL */
    bad[dot1 - t + 5] = '\0';
    {
        ct_ctx *ctx = jctx();
        ct_jwks *s = NULL;
        ck_ok(ct_jwks_parse(ctx, set, strlen(set), &s, &err), &err);
        ck_err(ct_jwt_verify(ctx, s, bad, strlen(t), &x, NULL, &err), CT_E_INVALID, &err);
        ct_jwks_free(s);
        ct_ctx_free(ctx);
    }
    free(bad);
    /* validly signed payloads that are not JSON objects */
    {
        const char *pays[] = {"{\"iss\":\"" ISS "\",\"exp\":", "[1,2]", "\"x\"",
                              "{\"a\":1,\"a\":2}", "{\"kubernetes.io\":5}"};
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", g_rsa_kid);
        for (i = 0; i < sizeof pays / sizeof pays[0]; i++) {
            char *tt = mint("RS256", g_rsa, hdr, pays[i]);
            ck_err(verify_x(set, tt, &x, NULL, &err), CT_E_INVALID, &err);
            ck_no_token(&err, tt);
            free(tt);
        }
    }
    /* oversized: a validly signed token just over the limit, and one just under */
    {
        pl p = pl_default();
        char *extra = malloc(13000), *big;
        size_t pad = 11000;
        ck_assert_ptr_nonnull(extra);
        for (;;) {
            snprintf(extra, 13000, "\"pad\":\"%0*d\"", (int)pad, 0);
            p.extra = extra;
            big = tok_rs(g_rsa, g_rsa_kid, &p);
            if (strlen(big) > CT_JWT_MAX_LEN)
                break;
            ck_ok(verify_x(set, big, &x, NULL, &err), &err);
            free(big);
            pad += 1000;
        }
        ck_err(verify_x(set, big, &x, NULL, &err), CT_E_TOOBIG, &err);
        ck_err(ct_jwt_peek(big, strlen(big), &(ct_jwt_claims){0}, &err), CT_E_TOOBIG, &err);
        free(big);
        free(extra);
    }
    free(t);
    free(set);
}
END_TEST

START_TEST(peek_without_key)
{
    pl p = pl_default();
    char *t, *pay;
    ct_jwt_claims c;
    ct_error err;

    /* an expired token by a key nobody has: peek reads it anyway */
    p.exp = 1000;
    p.iat = 500;
    t = tok_rs(g_rsa2, "some-kid", &p);
    memset(&c, 0x55, sizeof c);
    ck_ok(ct_jwt_peek(t, strlen(t), &c, &err), &err);
    ck_assert_str_eq(c.issuer, ISS);
    ck_assert_str_eq(c.subject, SUB);
    ck_assert_str_eq(c.kid, "some-kid");
    ck_assert_str_eq(c.k8s_namespace, "payments");
    ck_assert_str_eq(c.k8s_serviceaccount, "payments-api");
    ck_assert_int_eq(c.exp, 1000);
    ck_assert_int_eq(c.iat, 500);
    free(t);
    /* alg none, no exp, no kid: still readable */
    p = pl_default();
    p.exp = OMIT;
    p.sub = NULL;
    pay = pl_json(&p);
    t = mint("none", NULL, "{\"alg\":\"none\"}", pay);
    ck_ok(ct_jwt_peek(t, strlen(t), &c, &err), &err);
    ck_assert_str_eq(c.kid, "");
    ck_assert_str_eq(c.subject, "");
    ck_assert_int_eq(c.exp, 0);
    free(t);
    free(pay);
    ck_err(ct_jwt_peek("x.y.z", 5, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_peek(NULL, 0, &c, &err), CT_E_INVALID, &err);
}
END_TEST

/* ------------------------------------------------------------ ES256 */

START_TEST(es256_sign_verify)
{
    ct_ctx *ctx = jctx();
    ct_key *key = NULL, *other = NULL;
    char *jwks = NULL, *jwks2 = NULL, *canon = NULL, *t = NULL, *pay, *kid, *der_path, *pem_path;
    uint8_t *der = NULL;
    size_t der_len = 0;
    ct_jwks *set = NULL;
    ct_jwt_expect x = expect_default();
    ct_jwt_claims c;
    ct_error err;
    pl p = pl_default();
    FILE *f;

    ck_ok(ct_key_generate(ctx, &key, &err), &err);
    ck_ok(ct_key_generate(ctx, &other, &err), &err);
    ck_ok(ct_jwks_from_key(key, &jwks, &err), &err);
    ck_ok(ct_jwks_parse(ctx, jwks, strlen(jwks), &set, &err), &err);
    ck_assert_uint_eq(ct_jwks_count(set), 1);
    /* from_key writes the canonical form */
    ck_ok(ct_jwks_serialize(set, &canon, &err), &err);
    ck_assert_str_eq(canon, jwks);
    ck_assert_ptr_nonnull(strstr(jwks, "\"alg\":\"ES256\""));
    ck_assert_ptr_nonnull(strstr(jwks, "\"crv\":\"P-256\""));
    /* kid = base64url(SHA-256(SPKI DER)), computed by openssl */
    ck_ok(ct_key_public_der(key, &der, &der_len, &err), &err);
    der_path = path_in(g_dir, "ours.der");
    pem_path = path_in(g_dir, "ours.pub");
    f = fopen(der_path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(der, 1, der_len, f), der_len);
    fclose(f);
    free(run("openssl pkey -pubin -inform DER -in '%s' -out '%s'", der_path, pem_path));
    kid = run("sh '%s' kid '%s'", g_jose, pem_path);
    ck_assert_ptr_nonnull(kid);
    {
        char *k2 = member(jwks, "kid");
        ck_assert_str_eq(k2, kid);
        free(k2);
    }
    /* x and y are the point openssl reads from the same public key */
    {
        char *hex = run("openssl pkey -pubin -in '%s' -outform DER | tail -c 64 | xxd -p -c 64",
                        pem_path);
        char *jx = member(jwks, "x"), *jy = member(jwks, "y"), mine[129];
        uint8_t xy[64];
        int i;
        ck_assert_ptr_nonnull(hex);
        ck_assert_uint_eq(unb64u(jx, strlen(jx), xy), 32);
        ck_assert_uint_eq(unb64u(jy, strlen(jy), xy + 32), 32);
        for (i = 0; i < 64; i++)
            sprintf(mine + 2 * i, "%02x", xy[i]);
        ck_assert_str_eq(hex, mine);
        free(hex);
        free(jx);
        free(jy);
    }
    /* sign, verify, peek */
    pay = pl_json(&p);
    ck_ok(ct_jwt_sign_es256(ctx, key, pay, &t, &err), &err);
    memset(&c, 0, sizeof c);
    ck_ok(ct_jwt_verify(ctx, set, t, strlen(t), &x, &c, &err), &err);
    ck_assert_str_eq(c.kid, kid);
    ck_assert_str_eq(c.k8s_serviceaccount, "payments-api");
    /* openssl verifies our signature; and refuses it for another payload */
    {
        char *ok = run("sh '%s' es-verify '%s' '%s' && echo verified", g_jose, pem_path, t);
        ck_assert_ptr_nonnull(ok);
        ck_assert_str_eq(ok, "verified");
        free(ok);
    }
    {
        char *t2 = strdup(t), *c2 = strchr(t2, '.') + 3;
        char *no;
        *c2 = *c2 == 'A' ? 'B' : 'A';
        no = run("sh '%s' es-verify '%s' '%s' && echo verified", g_jose, pem_path, t2);
        ck_assert_ptr_null(no);
        ck_err(ct_jwt_verify(ctx, set, t2, strlen(t2), &x, NULL, &err), CT_E_AUTH, &err);
        free(t2);
    }
    /* a token by another key under this key's kid */
    {
        char *t3 = NULL, *j3 = NULL;
        ct_jwks *s3 = NULL;
        ck_ok(ct_jwt_sign_es256(ctx, other, pay, &t3, &err), &err);
        ck_err(ct_jwt_verify(ctx, set, t3, strlen(t3), &x, NULL, &err), CT_E_AUTH, &err);
        /* both keys in one set: each token finds its own key */
        ck_ok(ct_jwks_from_key(other, &j3, &err), &err);
        jwks2 = malloc(strlen(jwks) + strlen(j3));
        ck_assert_ptr_nonnull(jwks2);
        sprintf(jwks2, "%.*s,%s", (int)(strlen(jwks) - 2), jwks, j3 + strlen("{\"keys\":["));
        ck_ok(ct_jwks_parse(ctx, jwks2, strlen(jwks2), &s3, &err), &err);
        ck_assert_uint_eq(ct_jwks_count(s3), 2);
        ck_ok(ct_jwt_verify(ctx, s3, t3, strlen(t3), &x, NULL, &err), &err);
        ck_ok(ct_jwt_verify(ctx, s3, t, strlen(t), &x, NULL, &err), &err);
        ct_jwks_free(s3);
        ct_free(j3);
        ct_secure_wipe(t3, strlen(t3));
        ct_free(t3);
    }
    /* zero and all-ones signatures */
    {
        uint8_t sig[64];
        char *t4;
        memset(sig, 0, sizeof sig);
        t4 = with_sig(t, sig, sizeof sig);
        ck_err(ct_jwt_verify(ctx, set, t4, strlen(t4), &x, NULL, &err), CT_E_AUTH, &err);
        free(t4);
        memset(sig, 0xff, sizeof sig);
        t4 = with_sig(t, sig, sizeof sig);
        ck_err(ct_jwt_verify(ctx, set, t4, strlen(t4), &x, NULL, &err), CT_E_AUTH, &err);
        free(t4);
        t4 = with_sig(t, sig, 63);
        ck_err(ct_jwt_verify(ctx, set, t4, strlen(t4), &x, NULL, &err), CT_E_AUTH, &err);
        free(t4);
    }
    ct_free(t);
    ct_free(canon);
    ct_free(jwks);
    free(jwks2);
    ct_free(der);
    free(kid);
    free(pay);
    free(der_path);
    free(pem_path);
    ct_jwks_free(set);
    ct_key_free(key);
    ct_key_free(other);
    ct_ctx_free(ctx);
}
END_TEST

/* openssl signs ES256 with its own key; we verify against openssl's JWK. */
START_TEST(es256_openssl_signed)
{
    pl p = pl_default();
    char hdr[256], *pay = pl_json(&p), *t, *set = jwks_of(g_rsa_jwk, g_ec_jwk, NULL);
    ct_jwt_expect x = expect_default();
    ct_jwt_claims c;
    ct_error err;
    int i;

    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", g_ec_kid);
    /* several signatures, so r or s with leading zero bytes come up now and then */
    for (i = 0; i < 4; i++) {
        t = mint("ES256", g_ec, hdr, pay);
        ck_ok(verify_x(set, t, &x, &c, &err), &err);
        ck_assert_str_eq(c.kid, g_ec_kid);
        free(t);
    }
    t = mint("ES256", g_ec, "{\"alg\":\"ES256\"}", pay);
    ck_ok(verify_x(set, t, &x, &c, &err), &err);
    free(t);
    free(pay);
    free(set);
}
END_TEST

START_TEST(sign_errors)
{
    ct_ctx *ctx = jctx();
    ct_key *key = NULL;
    char *t = (char *)1, *big;
    ct_error err;

    ck_ok(ct_key_generate(ctx, &key, &err), &err);
    ck_err(ct_jwt_sign_es256(ctx, key, "[1]", &t, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(t);
    ck_err(ct_jwt_sign_es256(ctx, key, "{\"a\":", &t, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_sign_es256(ctx, key, "{\"a\":1,\"a\":1}", &t, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_sign_es256(ctx, NULL, "{}", &t, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_sign_es256(ctx, key, NULL, &t, &err), CT_E_INVALID, &err);
    ck_err(ct_jwt_sign_es256(ctx, key, "{}", NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_jwks_from_key(NULL, &t, &err), CT_E_INVALID, &err);
    ck_err(ct_jwks_from_key(key, NULL, &err), CT_E_INVALID, &err);
    /* claims that would make a token over the limit */
    big = malloc(CT_JWT_MAX_LEN);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', CT_JWT_MAX_LEN - 1);
    memcpy(big, "{\"p\":\"", 6);
    memcpy(big + CT_JWT_MAX_LEN - 3, "\"}", 3);
    ck_err(ct_jwt_sign_es256(ctx, key, big, &t, &err), CT_E_TOOBIG, &err);
    /* and one that fits */
    memcpy(big + 11000, "\"}", 3);
    ck_ok(ct_jwt_sign_es256(ctx, key, big, &t, &err), &err);
    ck_assert_uint_le(strlen(t), CT_JWT_MAX_LEN);
    ct_free(t);
    free(big);
    ct_key_free(key);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ threads */

typedef struct vjob {
    const ct_jwks *set;
    const char *rs, *es;
    int n, failures;
} vjob;

static void *verify_thread(void *arg)
{
    vjob *j = arg;
    ct_ctx *ctx = jctx();
    ct_jwt_expect x = expect_default();
    int i;
    for (i = 0; i < j->n; i++) {
        if (ct_jwt_verify(ctx, j->set, j->rs, strlen(j->rs), &x, NULL, NULL) != CT_OK)
            j->failures++;
        if (ct_jwt_verify(ctx, j->set, j->es, strlen(j->es), &x, NULL, NULL) != CT_OK)
            j->failures++;
    }
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(shared_between_threads)
{
    pl p = pl_default();
    char hdr[256], *pay = pl_json(&p), *set_json = jwks_of(g_rsa_jwk, g_ec_jwk, NULL);
    ct_ctx *ctx = jctx();
    ct_jwks *set = NULL;
    pthread_t th[4];
    vjob jobs[4];
    ct_error err;
    int i;

    ck_ok(ct_jwks_parse(ctx, set_json, strlen(set_json), &set, &err), &err);
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", g_ec_kid);
    jobs[0].rs = tok_default();
    jobs[0].es = mint("ES256", g_ec, hdr, pay);
    for (i = 0; i < 4; i++) {
        jobs[i] = jobs[0];
        jobs[i].set = set;
        jobs[i].n = ct_test_under_valgrind() ? 3 : 25;
        jobs[i].failures = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, verify_thread, &jobs[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(jobs[i].failures, 0);
    }
    free((char *)jobs[0].rs);
    free((char *)jobs[0].es);
    ct_jwks_free(set);
    free(set_json);
    free(pay);
    ct_ctx_free(ctx);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("jwt");
    tcase_add_unchecked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_add_checked_fixture(tc, each_setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fixture_jwks_parses);
    tcase_add_test(tc, jwks_skips_unsupported_keys);
    tcase_add_test(tc, jwks_rejects_bad_keys);
    tcase_add_test(tc, jwks_rejects_bad_sets);
    tcase_add_test(tc, jwks_canonical_serialisation);
    tcase_add_test(tc, rs256_good);
    tcase_add_test(tc, rs256_variants);
    tcase_add_test(tc, rs256_tampered);
    tcase_add_test(tc, rs256_digest_info_exact);
    tcase_add_test(tc, rs256_kid_and_alg_confusion);
    tcase_add_test(tc, claims_time);
    tcase_add_test(tc, claims_identity);
    tcase_add_test(tc, expect_arguments);
    tcase_add_test(tc, malformed_tokens);
    tcase_add_test(tc, peek_without_key);
    tcase_add_test(tc, es256_sign_verify);
    tcase_add_test(tc, es256_openssl_signed);
    tcase_add_test(tc, sign_errors);
    tcase_add_test(tc, shared_between_threads);
    suite_add_tcase(s, tc);
    return s;
}
