/*
 * test_bootstrap.c - the init exchange (bootstrap.h, PROTOCOL.md 2) on the
 * memory and SQLite stores: the PSK, first bootstrap and claim,
 * re-bootstrap, every refusal, hostile requests and answers (crafted here
 * with jansson, independently of the library's encoders), racing bridges,
 * a bridge that dies after the claim, the operational mTLS configurations,
 * and ct_bootstrap through a real beacon.
 *
 * Operator and bridge always run in two threads over a ct_pipe_pair (or
 * the beacon's TCP legs). Tokens are minted with ct_jwt_sign_es256 under
 * an "issuer" key the test makes. CT_TEST_VERBOSE=1 echoes the library's
 * log, CT_TEST_TIMES=1 prints each test's duration.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudtaser/jwt.h"
#include "testutil.h"

#define FP1 "0ad50c05-1153-4508-9237-4cb2912e2c23"
#define FP2 "11111111-2222-4333-8444-555555555555"
#define ISS "https://kubernetes.default.svc.cluster.local"
#define SUB "system:serviceaccount:cloudtaser:operator"
#define AUD CT_BOOTSTRAP_DEFAULT_AUDIENCE

/* Time scale: valgrind runs crypto 20-50x slower. */
static int SC(int ms)
{
    return ct_test_under_valgrind() ? ms * 20 : ms;
}

/* ------------------------------------------------------------------ */
/* Context: a wall clock with an offset, captured logs                  */

static _Atomic int64_t g_wall_offset_ms;

static int64_t real_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t test_wall(void *user)
{
    (void)user;
    return real_wall_ms() + atomic_load(&g_wall_offset_ms);
}

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_log;
static size_t g_log_len;

static void test_log(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    size_t n = strlen(msgid) + strlen(msg) + 16;
    (void)user;
    pthread_mutex_lock(&g_log_mu);
    g_log = realloc(g_log, g_log_len + n + 1);
    if (g_log)
        g_log_len += (size_t)snprintf(g_log + g_log_len, n + 1, "[%d] %s: %s\n", (int)level,
                                      msgid, msg);
    pthread_mutex_unlock(&g_log_mu);
    if (getenv("CT_TEST_VERBOSE"))
        fprintf(stderr, "[%d] %s: %s\n", (int)level, msgid, msg);
}

/* Occurrences of `needle` in the captured log. */
static int log_count(const char *needle)
{
    int n = 0;
    const char *p;
    pthread_mutex_lock(&g_log_mu);
    for (p = g_log; p && (p = strstr(p, needle)) != NULL; p++)
        n++;
    pthread_mutex_unlock(&g_log_mu);
    return n;
}

/* Logged lines (any module: registration, PKI, TLS, bootstrap) containing `needle`. */
static int bootstrap_log_count(const char *needle)
{
    int n = 0;
    const char *line, *end;
    pthread_mutex_lock(&g_log_mu);
    for (line = g_log; line && *line; line = end + 1) {
        const char *hit = strstr(line, needle);
        end = strchr(line, '\n');
        if (!end)
            break;
        if (hit && hit < end)
            n++;
    }
    pthread_mutex_unlock(&g_log_mu);
    return n;
}

static void log_reset(void)
{
    pthread_mutex_lock(&g_log_mu);
    free(g_log);
    g_log = NULL;
    g_log_len = 0;
    pthread_mutex_unlock(&g_log_mu);
}

static ct_ctx *boot_ctx(void)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    o.wall_ms = test_wall;
    o.log = test_log;
    o.log_level = CT_LOG_DEBUG;
    o.io_timeout_ms = SC(10000);
    ck_assert_int_eq(ct_ctx_new(&o, &ctx, NULL), CT_OK);
    return ctx;
}

/* ------------------------------------------------------------------ */
/* Fixture: a store (memory or SQLite) and the cluster's token issuer  */

typedef struct fx {
    ct_ctx *ctx;
    ct_store *store, *store2; /* store2: a second handle on the same SQLite file */
    char *dir;
    ct_key *iss_key;          /* signs the service-account tokens */
    char *jwks;               /* its public key set */
    int jti_seq;
    int64_t t0;
} fx;

static void fx_open(fx *f, int sqlite)
{
    ct_error err;
    memset(f, 0, sizeof *f);
    f->t0 = real_wall_ms();
    atomic_store(&g_wall_offset_ms, 0);
    log_reset();
    f->ctx = boot_ctx();
    if (sqlite) {
        char path[600];
        f->dir = ct_test_tmpdir();
        snprintf(path, sizeof path, "%s/store.db", f->dir);
        ck_ok(ct_store_new_sqlite(f->ctx, path, &f->store, &err), &err);
        ck_ok(ct_store_new_sqlite(f->ctx, path, &f->store2, &err), &err);
    } else {
        ck_ok(ct_store_new_memory(f->ctx, &f->store, &err), &err);
    }
    ck_ok(ct_key_generate(f->ctx, &f->iss_key, &err), &err);
    ck_ok(ct_jwks_from_key(f->iss_key, &f->jwks, &err), &err);
}

static void fx_close(fx *f)
{
    if (getenv("CT_TEST_TIMES"))
        fprintf(stderr, "%s: %lld ms\n", tcase_name(), (long long)(real_wall_ms() - f->t0));
    /* Whatever ran, the bootstrap's logs never carried a full fingerprint. */
    ck_assert_int_eq(bootstrap_log_count(FP1), 0);
    ck_assert_int_eq(bootstrap_log_count(FP2), 0);
    ck_assert_int_eq(bootstrap_log_count("0ad50c05-"), 0);
    ct_free(f->jwks);
    ct_key_free(f->iss_key);
    ct_store_free(f->store);
    ct_store_free(f->store2);
    ct_ctx_free(f->ctx);
    if (f->dir) {
        ct_test_rmrf(f->dir);
        free(f->dir);
    }
    log_reset();
    ct_thread_cleanup();
}

static void fx_register(fx *f, const char *fp)
{
    ct_error err;
    ck_ok(ct_register(f->ctx, f->store, fp, NULL, NULL, &err), &err);
}

static int64_t now_s(fx *f)
{
    return ct_ctx_wall_ms(f->ctx) / 1000;
}

/* A token signed by `key` (NULL: the fixture's issuer) with explicit claims. */
static char *mint_full(fx *f, const ct_key *key, const char *iss, const char *sub,
                       const char *aud, int64_t iat, int64_t exp, const char *jti)
{
    char claims[1024], jbuf[300] = "";
    char *tok = NULL;
    ct_error err;
    if (jti)
        snprintf(jbuf, sizeof jbuf, ",\"jti\":\"%s\"", jti);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":[\"%s\"],\"iat\":%lld,\"nbf\":%lld,"
             "\"exp\":%lld%s,\"kubernetes.io\":{\"namespace\":\"cloudtaser\","
             "\"serviceaccount\":{\"name\":\"operator\"}}}",
             iss, sub, aud, (long long)iat, (long long)iat, (long long)exp, jbuf);
    ck_ok(ct_jwt_sign_es256(f->ctx, key ? key : f->iss_key, claims, &tok, &err), &err);
    return tok;
}

/* A good token with a fresh jti. */
static char *mint(fx *f)
{
    char jti[64];
    int64_t now = now_s(f);
    snprintf(jti, sizeof jti, "jti-%d-%lld", ++f->jti_seq, (long long)now);
    return mint_full(f, NULL, ISS, SUB, AUD, now - 10, now + 600, jti);
}

static void free_token(char *t)
{
    if (t)
        ct_secure_wipe(t, strlen(t));
    ct_free(t);
}

/* ------------------------------------------------------------------ */
/* Running an exchange: bridge in a thread, operator here              */

typedef struct bridge {
    ct_ctx *ctx;
    ct_conn *conn;
    ct_bootstrap_serve_options o;
    ct_bootstrap_result res;
    ct_err rc;
    ct_error err;
    pthread_t th;
} bridge;

static void *bridge_main(void *arg)
{
    bridge *b = arg;
    b->rc = ct_bootstrap_serve(b->ctx, b->conn, &b->o, &b->res, &b->err);
    b->conn = NULL;
    ct_thread_cleanup();
    return NULL;
}

static void bridge_start(bridge *b, ct_ctx *ctx, const ct_bootstrap_serve_options *o,
                         ct_conn *conn)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->o = *o;
    b->conn = conn;
    b->rc = CT_E_INTERNAL;
    ck_assert(pthread_create(&b->th, NULL, bridge_main, b) == 0);
}

static void bridge_join(bridge *b)
{
    ck_assert(pthread_join(b->th, NULL) == 0);
}

static ct_bootstrap_serve_options br_opts(fx *f, const char *fp)
{
    ct_bootstrap_serve_options o = CT_BOOTSTRAP_SERVE_OPTIONS_INIT;
    o.store = f->store;
    o.fingerprint = fp;
    o.timeout_ms = SC(10000);
    return o;
}

static ct_bootstrap_options op_opts(fx *f, const char *fp, const char *token, int first)
{
    ct_bootstrap_options o = CT_BOOTSTRAP_OPTIONS_INIT;
    o.fingerprint = fp;
    o.token = token;
    o.jwks = first && token ? f->jwks : NULL;
    o.first_bootstrap = first;
    o.flags = 0;
    o.timeout_ms = SC(10000);
    return o;
}

typedef struct run {
    ct_err orc;
    ct_error oerr;
    ct_credentials *creds;
    bridge b;
} run;

static void run_exchange(fx *f, const ct_bootstrap_options *oo,
                         const ct_bootstrap_serve_options *so, run *r)
{
    ct_conn *a = NULL, *z = NULL;
    ct_error err;
    memset(r, 0, sizeof *r);
    ck_ok(ct_pipe_pair(f->ctx, 0, &a, &z, &err), &err);
    bridge_start(&r->b, f->ctx, so, z);
    r->orc = ct_bootstrap_conn(f->ctx, a, oo, &r->creds, &r->oerr);
    bridge_join(&r->b);
}

static void run_clear(run *r)
{
    ct_credentials_free(r->creds);
    r->creds = NULL;
}

/* Operator (fp, token, first) against a default bridge for `bridge_fp`. */
static void run_simple(fx *f, const char *fp, const char *token, int first,
                       const char *bridge_fp, run *r)
{
    ct_bootstrap_options oo = op_opts(f, fp, token, first);
    ct_bootstrap_serve_options so = br_opts(f, bridge_fp);
    run_exchange(f, &oo, &so, r);
}

static void expect_issued(const run *r, int reissue)
{
    ck_assert_msg(r->orc == CT_OK, "operator: %s: %s", ct_err_name(r->orc), r->oerr.message);
    ck_assert_msg(r->b.rc == CT_OK, "bridge: %s: %s", ct_err_name(r->b.rc), r->b.err.message);
    ck_assert_ptr_nonnull(r->creds);
    ck_assert_int_eq(r->b.res.issued, 1);
    ck_assert_int_eq(r->b.res.reissue, reissue);
    ck_assert_int_eq(r->b.res.claimed, !reissue);
    ck_assert_int_eq(r->b.res.refusal, CT_BOOT_R_NONE);
    ck_assert_int_eq(ct_credentials_reissued(r->creds), reissue);
}

static void expect_refused(const run *r, ct_boot_refusal reason)
{
    ck_assert_msg(r->orc == CT_E_DENIED && r->oerr.os_error == (int32_t)reason,
                  "operator: %s os_error %d (want refusal %s): %s", ct_err_name(r->orc),
                  (int)r->oerr.os_error, ct_boot_refusal_name(reason), r->oerr.message);
    ck_assert_ptr_null(r->creds);
    ck_assert_msg(strstr(r->oerr.message, ct_boot_refusal_name(reason)) != NULL, "%s",
                  r->oerr.message);
    ck_assert_msg(r->b.res.refusal == reason, "bridge refusal %s (want %s): %s",
                  ct_boot_refusal_name(r->b.res.refusal), ct_boot_refusal_name(reason),
                  r->b.err.message);
    ck_assert_int_eq(r->b.res.issued, 0);
    if (reason != CT_BOOT_R_INTERNAL)
        ck_assert_msg(r->b.rc == CT_E_DENIED && r->b.err.os_error == (int32_t)reason,
                      "bridge: %s: %s", ct_err_name(r->b.rc), r->b.err.message);
}

/* ------------------------------------------------------------------ */
/* Store inspection                                                     */

static json_t *get_record(ct_store *s, const char *fp, const char *name, uint64_t *version)
{
    char key[200];
    ct_secret *v = NULL;
    ct_error err;
    json_error_t je;
    json_t *o;
    snprintf(key, sizeof key, "clusters/%s/%s", fp, name);
    ck_ok(ct_store_get(s, key, &v, version, &err), &err);
    o = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), 0, &je);
    ct_secret_free(v);
    ck_assert_msg(o != NULL, "%s: %s", key, je.text);
    return o;
}

static int has_record(ct_store *s, const char *fp, const char *name)
{
    char key[200];
    ct_secret *v = NULL;
    ct_err rc;
    snprintf(key, sizeof key, "clusters/%s/%s", fp, name);
    rc = ct_store_get(s, key, &v, NULL, NULL);
    ct_secret_free(v);
    ck_assert(rc == CT_OK || rc == CT_E_NOTFOUND);
    return rc == CT_OK;
}

static ct_reg_state reg_state(fx *f, const char *fp)
{
    ct_registration *r = NULL;
    ct_error err;
    ct_reg_state st;
    ck_ok(ct_registration_get(f->ctx, f->store, fp, &r, &err), &err);
    st = ct_registration_state(r);
    ct_registration_free(r);
    return st;
}

/* The CA certificate DER from the store's ca record. */
static uint8_t *store_ca(ct_store *s, const char *fp, size_t *len)
{
    json_t *o = get_record(s, fp, "ca", NULL);
    const char *pem = json_string_value(json_object_get(o, "cert"));
    uint8_t *der = NULL;
    ct_error err;
    ck_assert_ptr_nonnull(pem);
    ck_ok(ct_cert_pem_to_der(pem, strlen(pem), &der, len, &err), &err);
    json_decref(o);
    return der;
}

/* ------------------------------------------------------------------ */
/* Base64 for crafted messages (the test's own, not the library's)     */

static char *b64(const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
    size_t i;
    ck_assert_ptr_nonnull(s);
    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = a[v >> 18];
        *o++ = a[(v >> 12) & 63];
        *o++ = i + 1 < n ? a[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? a[v & 63] : '=';
    }
    *o = '\0';
    return s;
}

static uint8_t *unb64(const char *s, size_t *len)
{
    size_t n = strlen(s), i, o = 0;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    uint32_t acc = 0;
    int bits = 0;
    ck_assert_ptr_nonnull(out);
    for (i = 0; i < n && s[i] != '='; i++) {
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *c = strchr(a, s[i]);
        ck_assert_ptr_nonnull(c);
        acc = acc << 6 | (uint32_t)(c - a);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *len = o;
    return out;
}

/* A fresh CSR (base64) as the operator would make it. */
static char *csr_b64(fx *f, ct_key **keep)
{
    static const char *const names[] = {CT_BROKER_SERVER_NAME};
    ct_cert_options o = CT_CERT_OPTIONS_INIT;
    ct_key *k = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    ct_error err;
    char *s;
    o.common_name = "cloudtaser broker";
    o.dns_names = names;
    o.n_dns_names = 1;
    ck_ok(ct_key_generate(f->ctx, &k, &err), &err);
    ck_ok(ct_csr_create(f->ctx, k, &o, &der, &len, &err), &err);
    s = b64(der, len);
    ct_free(der);
    if (keep)
        *keep = k;
    else
        ct_key_free(k);
    return s;
}

/* u32 BE length + body. */
static uint8_t *frame(const char *body, size_t *len)
{
    size_t n = strlen(body);
    uint8_t *p = malloc(n + 4);
    ck_assert_ptr_nonnull(p);
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    memcpy(p + 4, body, n);
    *len = n + 4;
    return p;
}

static ct_tls_config *psk_cfg(fx *f, ct_tls_role role, const char *fp)
{
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    ct_secret *psk = NULL;
    ct_tls_config *cfg = NULL;
    ct_error err;
    ck_ok(ct_init_psk(fp, &psk, &err), &err);
    o.role = role;
    o.psk = psk;
    o.psk_identity = CT_INIT_PSK_IDENTITY;
    ck_ok(ct_tls_config_new(f->ctx, &o, &cfg, &err), &err);
    ct_secret_free(psk);
    return cfg;
}

/* Reads one frame and parses it as JSON (NULL if the stream ended first). */
static json_t *read_json_frame(ct_conn *c)
{
    uint8_t hdr[4], *body;
    uint32_t n;
    json_error_t je;
    json_t *o;
    ct_error err;
    if (ct_conn_recv_exact(c, hdr, 4, NULL, SC(10000), &err) != CT_OK)
        return NULL;
    n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    ck_assert_uint_le(n, CT_BOOTSTRAP_MAX_MSG);
    body = malloc(n ? n : 1);
    ck_ok(ct_conn_recv_exact(c, body, n, NULL, SC(10000), &err), &err);
    o = json_loadb((const char *)body, n, 0, &je);
    free(body);
    ck_assert_msg(o != NULL, "answer is not JSON: %s", je.text);
    return o;
}

/*
 * A hand-made operator: PSK of `psk_fp`, sends `raw` (a complete frame or
 * anything) and returns the bridge's answer as JSON. The bridge serves
 * `bridge_fp` and its outcome lands in *b.
 */
static json_t *raw_client(fx *f, const char *psk_fp, const ct_bootstrap_serve_options *so,
                          const uint8_t *raw, size_t raw_len, bridge *b)
{
    ct_conn *a = NULL, *z = NULL, *tls = NULL;
    ct_tls_config *cfg = psk_cfg(f, CT_TLS_CLIENT, psk_fp);
    ct_error err;
    json_t *ans;
    ck_ok(ct_pipe_pair(f->ctx, 0, &a, &z, &err), &err);
    bridge_start(b, f->ctx, so, z);
    ck_ok(ct_tls_wrap(cfg, a, SC(10000), &tls, &err), &err);
    ck_ok(ct_conn_send_all(tls, raw, raw_len, NULL, SC(10000), &err), &err);
    ans = read_json_frame(tls);
    ct_conn_free(tls);
    bridge_join(b);
    ct_tls_config_free(cfg);
    return ans;
}

/* Sends `body` framed; expects a refusal with `reason` on the wire and from the bridge. */
static void raw_expect_refusal(fx *f, const char *body, ct_boot_refusal reason)
{
    ct_bootstrap_serve_options so = br_opts(f, FP1);
    size_t len;
    uint8_t *p = frame(body, &len);
    bridge b;
    json_t *ans = raw_client(f, FP1, &so, p, len, &b);
    free(p);
    ck_assert_ptr_nonnull(ans);
    ck_assert_int_eq(json_integer_value(json_object_get(ans, "v")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(ans, "status")), "refused");
    ck_assert_msg(strcmp(json_string_value(json_object_get(ans, "reason")),
                         ct_boot_refusal_name(reason)) == 0,
                  "reason %s (want %s): %s", json_string_value(json_object_get(ans, "reason")),
                  ct_boot_refusal_name(reason),
                  json_string_value(json_object_get(ans, "message")));
    ck_assert(json_is_string(json_object_get(ans, "message")));
    json_decref(ans);
    ck_assert_int_eq(b.rc, CT_E_DENIED);
    ck_assert_int_eq(b.res.refusal, reason);
    ck_assert_int_eq(b.res.issued, 0);
}

/* ------------------------------------------------------------------ */
/* The PSK and the refusal names                                        */

static void hex_eq(const uint8_t *p, size_t n, const char *want)
{
    char hex[129];
    ck_assert_uint_le(n, 64);
    ck_assert_str_eq(ct_hex(p, n, hex), want);
}

START_TEST(test_psk_known_answer)
{
    /*
     * Vectors computed outside the library, with OpenSSL 3.0 and Python's hmac:
     *   openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt key:<fp>
     *     -kdfopt salt:cloudtaser-init-salt-v1
     *     -kdfopt "info:cloudtaser init psk v1" HKDF
     */
    static const struct {
        const char *fp, *psk;
    } v[] = {
        {FP1, "37622c9dc1ee6971484f0d259b8072d3e2061e0508f14de8fc8cb5000b988bb3"},
        {"0AD50C05-1153-4508-9237-4CB2912E2C23", /* canonicalised first */
         "37622c9dc1ee6971484f0d259b8072d3e2061e0508f14de8fc8cb5000b988bb3"},
        {FP2, "3e0b1dc5806cc94dce6fd207fcd457d0b19da8f5830f3a1dc8d8ed5b700f8264"},
    };
    ct_secret *psk = (ct_secret *)1;
    ct_error err;
    size_t i;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        ck_ok(ct_init_psk(v[i].fp, &psk, &err), &err);
        ck_assert_uint_eq(ct_secret_len(psk), CT_INIT_PSK_LEN);
        hex_eq(ct_secret_data(psk), ct_secret_len(psk), v[i].psk);
        ct_secret_free(psk);
    }
    psk = (ct_secret *)1;
    ck_err(ct_init_psk("not-a-uuid", &psk, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(psk);
    ck_err(ct_init_psk(NULL, &psk, &err), CT_E_INVALID, &err);
    ck_err(ct_init_psk(FP1, NULL, &err), CT_E_INVALID, &err);
}
END_TEST

START_TEST(test_refusal_names)
{
    static const char *const names[] = {"none", "bad_request", "wrong_cluster",
                                        "not_registered", "expired", "already_initialized",
                                        "bad_token", "token_replay", "no_pinned_keys",
                                        "internal"};
    int i;
    for (i = 0; i <= CT_BOOT_R_INTERNAL; i++)
        ck_assert_str_eq(ct_boot_refusal_name((ct_boot_refusal)i), names[i]);
    ck_assert_str_eq(ct_boot_refusal_name((ct_boot_refusal)10), "unknown");
    ck_assert_str_eq(ct_boot_refusal_name((ct_boot_refusal)-1), "unknown");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Operational mTLS between the two configurations                     */

typedef struct tls_peer {
    ct_tls_config *cfg;
    ct_conn *inner, *conn;
    ct_err rc, arc;
    ct_error err;
    int server;
    pthread_t th;
} tls_peer;

static void *tls_peer_main(void *arg)
{
    tls_peer *p = arg;
    p->rc = ct_tls_wrap(p->cfg, p->inner, SC(10000), &p->conn, &p->err);
    p->inner = NULL;
    if (p->rc == CT_OK) {
        /* server: echo 5 bytes; client: send, read back */
        uint8_t buf[5];
        if (p->server) {
            p->arc = ct_conn_recv_exact(p->conn, buf, 5, NULL, SC(10000), &p->err);
            if (p->arc == CT_OK)
                p->arc = ct_conn_send_all(p->conn, buf, 5, NULL, SC(10000), &p->err);
        } else {
            p->arc = ct_conn_send_all(p->conn, "hello", 5, NULL, SC(10000), &p->err);
            if (p->arc == CT_OK)
                p->arc = ct_conn_recv_exact(p->conn, buf, 5, NULL, SC(10000), &p->err);
            if (p->arc == CT_OK && memcmp(buf, "hello", 5) != 0)
                p->arc = CT_E_PROTO;
        }
    }
    ct_conn_free(p->conn);
    p->conn = NULL;
    ct_thread_cleanup();
    return NULL;
}

/* Operator (TLS server, the broker certificate) vs bridge (TLS client). */
static void mtls_pair(fx *f, ct_tls_config *op, ct_tls_config *br, tls_peer *s, tls_peer *c)
{
    ct_error err;
    memset(s, 0, sizeof *s);
    memset(c, 0, sizeof *c);
    s->cfg = op;
    s->server = 1;
    c->cfg = br;
    ck_ok(ct_pipe_pair(f->ctx, 0, &c->inner, &s->inner, &err), &err);
    ck_assert(pthread_create(&s->th, NULL, tls_peer_main, s) == 0);
    ck_assert(pthread_create(&c->th, NULL, tls_peer_main, c) == 0);
    ck_assert(pthread_join(c->th, NULL) == 0);
    ck_assert(pthread_join(s->th, NULL) == 0);
}

/* ------------------------------------------------------------------ */
/* First bootstrap                                                      */

START_TEST(test_first_bootstrap)
{
    fx f;
    run r;
    char *tok;
    uint8_t *ca, sha[32], room[32];
    size_t ca_len, len, n;
    const uint8_t *p;
    json_t *rec, *jtis;
    ct_error err;
    ct_tls_config *op = NULL, *br = NULL;
    tls_peer s, c;
    ct_registration *reg = NULL;
    int64_t now_ms;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    tok = mint(&f);
    run_simple(&f, "0AD50C05-1153-4508-9237-4CB2912E2C23", tok, 1, FP1, &r);
    expect_issued(&r, 0);

    /* The credentials: the store's CA, a server certificate for the operator's key. */
    ca = store_ca(f.store, FP1, &ca_len);
    p = ct_credentials_ca(r.creds, &len);
    ck_assert_uint_eq(len, ca_len);
    ck_assert(memcmp(p, ca, ca_len) == 0);
    p = ct_credentials_cert(r.creds, &len);
    ck_ok(ct_cert_verify(f.ctx, ca, ca_len, p, len, CT_CERT_SERVER, &err), &err);
    ck_assert_int_eq(ct_sha256(p, len, sha), CT_OK);
    ck_assert(memcmp(sha, r.b.res.cert_sha256, 32) == 0);
    {
        uint8_t pin[32], kpin[32], *spki = NULL;
        size_t spki_len = 0;
        ck_ok(ct_cert_pin_sha256(p, len, pin, &err), &err);
        ck_ok(ct_key_public_der(ct_credentials_key(r.creds), &spki, &spki_len, &err), &err);
        ck_assert_int_eq(ct_sha256(spki, spki_len, kpin), CT_OK);
        ck_assert(memcmp(pin, kpin, 32) == 0);
        ct_free(spki);
    }
    ck_ok(ct_registration_get(f.ctx, f.store, FP1, &reg, &err), &err);
    ck_assert(memcmp(ct_credentials_operational_room(r.creds),
                     ct_registration_operational_room(reg), 32) == 0);
    ck_assert_int_eq(ct_registration_state(reg), CT_REG_INITIALIZED);
    ct_registration_free(reg);
    now_ms = ct_ctx_wall_ms(f.ctx);
    ck_assert(ct_credentials_not_after(r.creds) > now_ms + 29LL * 86400 * 1000);
    ck_assert(ct_credentials_not_after(r.creds) <= now_ms + 30LL * 86400 * 1000 + 5000);

    /* The claim record. */
    rec = get_record(f.store, FP1, "initialized", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "v")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "fingerprint")), FP1);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "issuer")), ISS);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "subject")), SUB);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "audience")), AUD);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "reissues")), 0);
    ck_assert(json_integer_value(json_object_get(rec, "initialized_at")) <= now_ms);
    ck_assert(json_integer_value(json_object_get(rec, "initialized_at")) > now_ms - 60000);
    ck_assert(json_is_object(json_object_get(rec, "jwks")));
    ck_assert_uint_eq(json_array_size(json_object_get(json_object_get(rec, "jwks"), "keys")), 1);
    jtis = json_object_get(rec, "jtis");
    ck_assert_uint_eq(json_array_size(jtis), 1);
    ck_assert(strncmp(json_string_value(json_object_get(json_array_get(jtis, 0), "jti")),
                      "jti-1-", 6) == 0);
    ck_assert(json_integer_value(json_object_get(json_array_get(jtis, 0), "exp")) >
              now_ms / 1000);
    json_decref(rec);

    /* Operational mTLS: the bridge's configuration against the operator's. */
    ck_ok(ct_credentials_tls_config(f.ctx, r.creds, &op, &err), &err);
    ck_ok(ct_bridge_tls_config(f.ctx, f.store, FP1, &br, room, &err), &err);
    ck_assert(memcmp(room, ct_credentials_operational_room(r.creds), 32) == 0);
    mtls_pair(&f, op, br, &s, &c);
    ck_assert_msg(s.rc == CT_OK && c.rc == CT_OK, "server %s: %s / client %s: %s",
                  ct_err_name(s.rc), s.err.message, ct_err_name(c.rc), c.err.message);
    ck_assert_int_eq(s.arc, CT_OK);
    ck_assert_int_eq(c.arc, CT_OK);
    ct_tls_config_free(op);
    ct_tls_config_free(br);

    /* Logs: the claim and the issue, never the token. */
    ck_assert_int_eq(log_count("bootstrap.claimed"), 1);
    ck_assert_int_eq(log_count("bootstrap.issued"), 1);
    n = strlen(tok);
    ck_assert(n > 100);
    {
        char part[41];
        memcpy(part, tok + n - 40, 40); /* the signature end */
        part[40] = '\0';
        ck_assert_int_eq(log_count(part), 0);
    }
    ct_free(ca);
    run_clear(&r);
    free_token(tok);
    fx_close(&f);
}
END_TEST

START_TEST(test_already_initialized)
{
    fx f;
    run r;
    char *t1, *t2;
    uint64_t v1 = 0, v2 = 0;
    json_t *rec;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    t1 = mint(&f);
    t2 = mint(&f);
    run_simple(&f, FP1, t1, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    json_decref(get_record(f.store, FP1, "initialized", &v1));

    /* A second first bootstrap, even with a fresh valid token, is refused... */
    run_simple(&f, FP1, t2, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_ALREADY_INITIALIZED);
    ck_assert_int_eq(r.b.res.claimed, 0);
    /* ...and so is one without a token. */
    run_simple(&f, FP1, NULL, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_ALREADY_INITIALIZED);
    /* The claim record is untouched. */
    rec = get_record(f.store, FP1, "initialized", &v2);
    ck_assert_uint_eq(v1, v2);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "reissues")), 0);
    json_decref(rec);
    free_token(t1);
    free_token(t2);
    fx_close(&f);
}
END_TEST

START_TEST(test_rebootstrap)
{
    fx f;
    run r1, r2, r3;
    char *t1, *t2, *t3;
    const uint8_t *ca1, *ca2, *c1, *c2;
    size_t ca1_len, ca2_len, c1_len, c2_len;
    json_t *rec;
    ct_tls_config *op = NULL, *br = NULL;
    tls_peer s, c;
    ct_error err;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    t1 = mint(&f);
    t2 = mint(&f);
    t3 = mint(&f);
    run_simple(&f, FP1, t1, 1, FP1, &r1);
    expect_issued(&r1, 0);
    run_simple(&f, FP1, t2, 0, FP1, &r2);
    expect_issued(&r2, 1);
    run_simple(&f, FP1, t3, 0, FP1, &r3);
    expect_issued(&r3, 1);

    /* Same CA, a new certificate for a new key. */
    ca1 = ct_credentials_ca(r1.creds, &ca1_len);
    ca2 = ct_credentials_ca(r2.creds, &ca2_len);
    ck_assert_uint_eq(ca1_len, ca2_len);
    ck_assert(memcmp(ca1, ca2, ca1_len) == 0);
    c1 = ct_credentials_cert(r1.creds, &c1_len);
    c2 = ct_credentials_cert(r2.creds, &c2_len);
    ck_assert(c1_len != c2_len || memcmp(c1, c2, c1_len) != 0);
    ck_assert(memcmp(r1.b.res.cert_sha256, r2.b.res.cert_sha256, 32) != 0);
    ck_assert(memcmp(ct_credentials_operational_room(r1.creds),
                     ct_credentials_operational_room(r2.creds), 32) == 0);

    rec = get_record(f.store, FP1, "initialized", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "reissues")), 2);
    ck_assert_uint_eq(json_array_size(json_object_get(rec, "jtis")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(rec, "subject")), SUB);
    json_decref(rec);
    ck_assert_int_eq(log_count("bootstrap.reissue"), 2);

    /* The re-issued certificate works with the bridge's configuration. */
    ck_ok(ct_credentials_tls_config(f.ctx, r3.creds, &op, &err), &err);
    ck_ok(ct_bridge_tls_config(f.ctx, f.store, FP1, &br, NULL, &err), &err);
    mtls_pair(&f, op, br, &s, &c);
    ck_assert_msg(s.rc == CT_OK && c.rc == CT_OK, "%s / %s", s.err.message, c.err.message);
    ck_assert_int_eq(c.arc, CT_OK);
    ct_tls_config_free(op);
    ct_tls_config_free(br);

    run_clear(&r1);
    run_clear(&r2);
    run_clear(&r3);
    free_token(t1);
    free_token(t2);
    free_token(t3);
    fx_close(&f);
}
END_TEST

START_TEST(test_replay)
{
    fx f;
    run r;
    char *t1, *t2, *t3;
    int64_t now;
    json_t *rec;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    t1 = mint(&f);
    t2 = mint(&f);
    run_simple(&f, FP1, t1, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    run_simple(&f, FP1, t2, 0, FP1, &r);
    expect_issued(&r, 1);
    run_clear(&r);
    /* The same token twice. */
    run_simple(&f, FP1, t2, 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_TOKEN_REPLAY);
    /* The first bootstrap's token, for a re-bootstrap. */
    run_simple(&f, FP1, t1, 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_TOKEN_REPLAY);

    /* No jti (Kubernetes < 1.29): the token's signing input is the identity. */
    now = now_s(&f);
    t3 = mint_full(&f, NULL, ISS, SUB, AUD, now - 5, now + 300, NULL);
    run_simple(&f, FP1, t3, 0, FP1, &r);
    expect_issued(&r, 1);
    run_clear(&r);
    {
        /* Surrounding whitespace does not make it a new token. */
        size_t n = strlen(t3);
        char *padded = malloc(n + 3);
        padded[0] = ' ';
        memcpy(padded + 1, t3, n);
        padded[n + 1] = '\n';
        padded[n + 2] = '\0';
        run_simple(&f, FP1, padded, 0, FP1, &r);
        expect_refused(&r, CT_BOOT_R_TOKEN_REPLAY);
        free_token(padded);
    }
    rec = get_record(f.store, FP1, "initialized", NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(rec, "jtis")), 3);
    ck_assert(strncmp(json_string_value(json_object_get(
                          json_array_get(json_object_get(rec, "jtis"), 2), "jti")),
                      "sha256:", 7) == 0);
    json_decref(rec);

    /* Expired entries are dropped from the list: two hours later it is short again. */
    atomic_store(&g_wall_offset_ms, 2 * 3600 * 1000LL);
    free_token(t3);
    t3 = mint(&f);
    run_simple(&f, FP1, t3, 0, FP1, &r);
    expect_issued(&r, 1);
    run_clear(&r);
    rec = get_record(f.store, FP1, "initialized", NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(rec, "jtis")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "reissues")), 3);
    json_decref(rec);

    free_token(t1);
    free_token(t2);
    free_token(t3);
    fx_close(&f);
}
END_TEST

START_TEST(test_bad_tokens)
{
    fx f;
    run r;
    ct_key *other = NULL;
    ct_error err;
    int64_t now;
    char *t;
    size_t i;
    uint64_t v1 = 0, v2 = 0;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    ck_ok(ct_key_generate(f.ctx, &other, &err), &err);
    now = now_s(&f);

    /* A first bootstrap whose token fails claims nothing. */
    t = mint_full(&f, NULL, ISS, SUB, "someone-else", now - 5, now + 300, "a1");
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_BAD_TOKEN);
    free_token(t);
    ck_assert(!has_record(f.store, FP1, "initialized"));
    ck_assert_int_eq(reg_state(&f, FP1), CT_REG_REGISTERED);
    /* Nor does a token signed by a key outside the set sent with it. */
    t = mint_full(&f, other, ISS, SUB, AUD, now - 5, now + 300, "a2");
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_BAD_TOKEN);
    free_token(t);
    ck_assert(!has_record(f.store, FP1, "initialized"));

    t = mint(&f);
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    free_token(t);
    json_decref(get_record(f.store, FP1, "initialized", &v1));

    {
        struct {
            const ct_key *key;
            const char *iss, *sub, *aud;
            int64_t iat, exp;
        } bad[] = {
            {NULL, ISS, SUB, "another-audience", now - 5, now + 300},
            {NULL, ISS, "system:serviceaccount:default:intruder", AUD, now - 5, now + 300},
            {other, ISS, SUB, AUD, now - 5, now + 300},                /* signed by another key */
            {NULL, ISS, SUB, AUD, now - 5, now + 7200},                /* lifetime > 3600 s */
            {NULL, "https://issuer.example", SUB, AUD, now - 5, now + 300},
            {NULL, ISS, SUB, AUD, now - 1000, now - 500},              /* expired */
        };
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char jti[16];
            snprintf(jti, sizeof jti, "bad-%zu", i);
            t = mint_full(&f, bad[i].key, bad[i].iss, bad[i].sub, bad[i].aud, bad[i].iat,
                          bad[i].exp, jti);
            run_simple(&f, FP1, t, 0, FP1, &r);
            expect_refused(&r, CT_BOOT_R_BAD_TOKEN);
            free_token(t);
        }
    }
    /* Not a token at all. */
    run_simple(&f, FP1, "not.a.token", 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_BAD_TOKEN);
    /* A stricter bridge: the lifetime limit is the bridge's option. */
    {
        ct_bootstrap_serve_options so = br_opts(&f, FP1);
        ct_bootstrap_options oo;
        so.max_token_lifetime_s = 120;
        t = mint(&f); /* 610 s */
        oo = op_opts(&f, FP1, t, 0);
        run_exchange(&f, &oo, &so, &r);
        expect_refused(&r, CT_BOOT_R_BAD_TOKEN);
        free_token(t);
    }
    /* Nothing was recorded by any refused attempt. */
    json_decref(get_record(f.store, FP1, "initialized", &v2));
    ck_assert_uint_eq(v1, v2);
    ct_key_free(other);
    fx_close(&f);
}
END_TEST

START_TEST(test_expired_and_unregistered)
{
    fx f;
    run r;
    char *t;

    fx_open(&f, _i);
    /* Not registered at all. */
    t = mint(&f);
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_NOT_REGISTERED);
    run_simple(&f, FP1, t, 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_NOT_REGISTERED);
    free_token(t);

    /* Registered, then the wall clock passes expires_at (24 h). */
    fx_register(&f, FP1);
    atomic_store(&g_wall_offset_ms, 25 * 3600 * 1000LL);
    t = mint(&f);
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_EXPIRED);
    run_simple(&f, FP1, NULL, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_EXPIRED);
    run_simple(&f, FP1, t, 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_EXPIRED);
    ck_assert(!has_record(f.store, FP1, "initialized"));
    ck_assert_int_eq(reg_state(&f, FP1), CT_REG_EXPIRED);
    free_token(t);

    /* Re-bootstrap on a registered, not yet initialized cluster: first bootstrap first. */
    atomic_store(&g_wall_offset_ms, 0);
    t = mint(&f);
    run_simple(&f, FP1, t, 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_BAD_REQUEST);
    ck_assert(strstr(r.oerr.message, "not initialized") != NULL);
    free_token(t);

    /* An initialized cluster does not expire. */
    t = mint(&f);
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    free_token(t);
    atomic_store(&g_wall_offset_ms, 48 * 3600 * 1000LL);
    t = mint(&f);
    run_simple(&f, FP1, t, 0, FP1, &r);
    expect_issued(&r, 1);
    run_clear(&r);
    free_token(t);
    fx_close(&f);
}
END_TEST

START_TEST(test_no_token_first_bootstrap)
{
    fx f;
    run r;
    char *t;
    json_t *rec;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    /* Allowed: nothing is pinned. */
    run_simple(&f, FP1, NULL, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    rec = get_record(f.store, FP1, "initialized", NULL);
    ck_assert_ptr_null(json_object_get(rec, "jwks"));
    ck_assert_ptr_null(json_object_get(rec, "issuer"));
    ck_assert_ptr_null(json_object_get(rec, "subject"));
    ck_assert_uint_eq(json_array_size(json_object_get(rec, "jtis")), 0);
    json_decref(rec);
    ck_assert_int_eq(reg_state(&f, FP1), CT_REG_INITIALIZED);
    /* So a later re-bootstrap cannot be authorised. */
    t = mint(&f);
    run_simple(&f, FP1, t, 0, FP1, &r);
    expect_refused(&r, CT_BOOT_R_NO_PINNED_KEYS);
    free_token(t);
    fx_close(&f);
}
END_TEST

START_TEST(test_psk_mismatch)
{
    fx f;
    run r;
    char *t;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    fx_register(&f, FP2);
    t = mint(&f);
    /* The operator knows FP1, the bridge serves FP2's init room. */
    run_simple(&f, FP1, t, 1, FP2, &r);
    ck_assert_msg(r.orc == CT_E_AUTH, "operator: %s: %s", ct_err_name(r.orc), r.oerr.message);
    ck_assert_msg(r.b.rc == CT_E_AUTH, "bridge: %s: %s", ct_err_name(r.b.rc),
                  r.b.err.message);
    ck_assert_ptr_null(r.creds);
    ck_assert_int_eq(r.b.res.refusal, CT_BOOT_R_NONE);
    ck_assert(strstr(r.oerr.message, "PSK") != NULL);
    ck_assert(!has_record(f.store, FP1, "initialized"));
    ck_assert(!has_record(f.store, FP2, "initialized"));
    free_token(t);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hostile requests                                                     */

START_TEST(test_wrong_cluster_field)
{
    fx f;
    char *csr, body[8192], *t;
    fx_open(&f, _i);
    fx_register(&f, FP1);
    fx_register(&f, FP2);
    csr = csr_b64(&f, NULL);
    t = mint(&f);
    /* The PSK is FP1's (so the TLS session is up), the request names FP2. */
    snprintf(body, sizeof body, "{\"v\":1,\"fingerprint\":\"%s\",\"csr\":\"%s\",\"jwks\":%s,"
                                "\"token\":\"%s\"}",
             FP2, csr, f.jwks, t);
    raw_expect_refusal(&f, body, CT_BOOT_R_WRONG_CLUSTER);
    ck_assert(!has_record(f.store, FP1, "initialized"));
    ck_assert(!has_record(f.store, FP2, "initialized"));
    free(csr);
    free_token(t);
    fx_close(&f);
}
END_TEST

/* Copies tmpl into out with every `key` replaced by `val`. */
static void subst(char *out, size_t cap, const char *tmpl, const char *key, const char *val)
{
    size_t o = 0, kl = strlen(key), vl = strlen(val);
    while (*tmpl) {
        if (strncmp(tmpl, key, kl) == 0) {
            ck_assert_uint_lt(o + vl, cap);
            memcpy(out + o, val, vl);
            o += vl;
            tmpl += kl;
        } else {
            ck_assert_uint_lt(o + 1, cap);
            out[o++] = *tmpl++;
        }
    }
    out[o] = '\0';
}

START_TEST(test_malformed_requests)
{
    fx f;
    char *csr, *t, *bad_csr, *sig_csr, body[8192];
    size_t i, n;
    uint8_t *der;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    csr = csr_b64(&f, NULL);
    t = mint(&f);
    /* A request whose signature does not verify (last signature byte flipped). */
    der = unb64(csr, &n);
    der[n - 1] ^= 0x01;
    sig_csr = b64(der, n);
    free(der);
    /* Valid base64 of something that is not a request. */
    bad_csr = b64((const uint8_t *)"\x30\x03\x02\x01\x00", 5);
    {
        const char *tmpl[] = {
            "not json at all",
            "[1,2,3]",
            "{\"v\":2,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\"}",
            "{\"v\":\"1\",\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\"}",
            "{\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\"}",
            "{\"v\":1,\"csr\":\"@CSR@\"}",
            "{\"v\":1,\"fingerprint\":\"not-a-fingerprint\",\"csr\":\"@CSR@\"}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\"}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@=\"}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"!!!!\"}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":12}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\",\"v\":1}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\",\"jwks\":[]}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\",\"jwks\":{\"keys\":[]}}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\",\"token\":7}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\",\"token\":\"\"}",
            "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"csr\":\"@CSR@\"} trailing",
        };
        for (i = 0; i < sizeof tmpl / sizeof tmpl[0]; i++) {
            subst(body, sizeof body, tmpl[i], "@CSR@", csr);
            raw_expect_refusal(&f, body, CT_BOOT_R_BAD_REQUEST);
        }
    }
    /* jwks without a token */
    snprintf(body, sizeof body, "{\"v\":1,\"fingerprint\":\"%s\",\"csr\":\"%s\",\"jwks\":%s}",
             FP1, csr, f.jwks);
    raw_expect_refusal(&f, body, CT_BOOT_R_BAD_REQUEST);
    /* bad CSRs, with an otherwise valid first-bootstrap request */
    snprintf(body, sizeof body, "{\"v\":1,\"fingerprint\":\"%s\",\"csr\":\"%s\",\"jwks\":%s,"
                                "\"token\":\"%s\"}", FP1, bad_csr, f.jwks, t);
    raw_expect_refusal(&f, body, CT_BOOT_R_BAD_REQUEST);
    snprintf(body, sizeof body, "{\"v\":1,\"fingerprint\":\"%s\",\"csr\":\"%s\",\"jwks\":%s,"
                                "\"token\":\"%s\"}", FP1, sig_csr, f.jwks, t);
    raw_expect_refusal(&f, body, CT_BOOT_R_BAD_REQUEST);
    /* None of it claimed the cluster; a good request still can. */
    ck_assert(!has_record(f.store, FP1, "initialized"));
    snprintf(body, sizeof body, "{\"v\":1,\"fingerprint\":\"%s\",\"csr\":\"%s\",\"jwks\":%s,"
                                "\"token\":\"%s\",\"future_member\":{\"x\":1}}",
             FP1, csr, f.jwks, t);
    {
        ct_bootstrap_serve_options so = br_opts(&f, FP1);
        uint8_t *p = frame(body, &n);
        bridge b;
        json_t *ans = raw_client(&f, FP1, &so, p, n, &b);
        free(p);
        ck_assert_ptr_nonnull(ans);
        ck_assert_str_eq(json_string_value(json_object_get(ans, "status")), "issued");
        ck_assert(json_is_false(json_object_get(ans, "reissue")));
        ck_assert(json_is_string(json_object_get(ans, "ca")));
        ck_assert(json_is_string(json_object_get(ans, "cert")));
        json_decref(ans);
        ck_assert_int_eq(b.rc, CT_OK);
        ck_assert_int_eq(b.res.claimed, 1);
    }
    free(csr);
    free(bad_csr);
    free(sig_csr);
    free_token(t);
    fx_close(&f);
}
END_TEST

START_TEST(test_oversized_request)
{
    fx f;
    bridge b;
    ct_bootstrap_serve_options so;
    struct timespec t0, t1;
    static const uint8_t huge[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB announced */
    static const uint8_t just_over[4] = {0x00, 0x01, 0x00, 0x01};
    static const uint8_t zero[4] = {0, 0, 0, 0};
    const uint8_t *hdrs[] = {huge, just_over, zero};
    size_t i;
    json_t *ans;
    long ms;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    so = br_opts(&f, FP1);
    so.timeout_ms = SC(20000);
    for (i = 0; i < 3; i++) {
        /* Only the header is sent: the bridge must answer without waiting for a body. */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ans = raw_client(&f, FP1, &so, hdrs[i], 4, &b);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        ck_assert_ptr_nonnull(ans);
        ck_assert_str_eq(json_string_value(json_object_get(ans, "reason")), "bad_request");
        json_decref(ans);
        ck_assert_int_eq(b.rc, CT_E_DENIED);
        ck_assert_int_eq(b.res.refusal, CT_BOOT_R_BAD_REQUEST);
        ck_assert_msg(ms < SC(5000), "took %ld ms", ms);
    }
    /* The exact limit is allowed through framing (and then fails as JSON). */
    {
        size_t n = CT_BOOTSTRAP_MAX_MSG;
        uint8_t *p = malloc(n + 4);
        memset(p + 4, ' ', n);
        p[0] = 0;
        p[1] = 1;
        p[2] = 0;
        p[3] = 0;
        ans = raw_client(&f, FP1, &so, p, n + 4, &b);
        free(p);
        ck_assert_ptr_nonnull(ans);
        ck_assert_str_eq(json_string_value(json_object_get(ans, "reason")), "bad_request");
        ck_assert(strstr(json_string_value(json_object_get(ans, "message")), "JSON") != NULL);
        json_decref(ans);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_request_timeout)
{
    fx f;
    bridge b;
    ct_bootstrap_serve_options so;
    ct_conn *a = NULL, *z = NULL, *tls = NULL;
    ct_tls_config *cfg;
    ct_error err;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    so = br_opts(&f, FP1);
    so.timeout_ms = SC(400);
    cfg = psk_cfg(&f, CT_TLS_CLIENT, FP1);
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    bridge_start(&b, f.ctx, &so, z);
    ck_ok(ct_tls_wrap(cfg, a, SC(10000), &tls, &err), &err);
    /* Half a header, then silence. */
    ck_ok(ct_conn_send_all(tls, "\x00\x00", 2, NULL, SC(1000), &err), &err);
    bridge_join(&b);
    ck_assert_msg(b.rc == CT_E_TIMEOUT, "%s: %s", ct_err_name(b.rc), b.err.message);
    ct_conn_free(tls);
    ct_tls_config_free(cfg);
    ck_assert(!has_record(f.store, FP1, "initialized"));
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Racing bridges                                                       */

typedef struct op_thread {
    fx *f;
    ct_conn *conn;
    char *token;
    ct_err rc;
    ct_error err;
    ct_credentials *creds;
    pthread_t th;
} op_thread;

static void *op_main(void *arg)
{
    op_thread *o = arg;
    ct_bootstrap_options oo = op_opts(o->f, FP1, o->token, 1);
    o->rc = ct_bootstrap_conn(o->f->ctx, o->conn, &oo, &o->creds, &o->err);
    o->conn = NULL;
    ct_thread_cleanup();
    return NULL;
}

START_TEST(test_racing_bridges)
{
    enum { N = 4 };
    fx f;
    bridge b[N];
    op_thread o[N];
    int i, issued = 0, claimed = 0, ok = 0, already = 0;
    ct_error err;

    fx_open(&f, 1); /* SQLite: two handles on one file, as two bridge processes would have */
    fx_register(&f, FP1);
    for (i = 0; i < N; i++) {
        ct_bootstrap_serve_options so = br_opts(&f, FP1);
        ct_conn *a = NULL, *z = NULL;
        so.store = i % 2 ? f.store2 : f.store;
        so.timeout_ms = SC(30000);
        ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
        memset(&o[i], 0, sizeof o[i]);
        o[i].f = &f;
        o[i].conn = a;
        o[i].token = mint(&f);
        bridge_start(&b[i], f.ctx, &so, z);
    }
    for (i = 0; i < N; i++)
        ck_assert(pthread_create(&o[i].th, NULL, op_main, &o[i]) == 0);
    for (i = 0; i < N; i++) {
        ck_assert(pthread_join(o[i].th, NULL) == 0);
        bridge_join(&b[i]);
    }
    for (i = 0; i < N; i++) {
        issued += b[i].res.issued;
        claimed += b[i].res.claimed;
        if (b[i].rc != CT_OK)
            ck_assert_msg(b[i].rc == CT_E_DENIED &&
                              b[i].res.refusal == CT_BOOT_R_ALREADY_INITIALIZED,
                          "bridge %d: %s: %s", i, ct_err_name(b[i].rc), b[i].err.message);
        if (o[i].rc == CT_OK) {
            ok++;
            ck_assert_int_eq(b[i].res.issued, 1);
        } else {
            ck_assert_msg(o[i].rc == CT_E_DENIED &&
                              o[i].err.os_error == CT_BOOT_R_ALREADY_INITIALIZED,
                          "operator %d: %s: %s", i, ct_err_name(o[i].rc), o[i].err.message);
            already++;
        }
        ct_credentials_free(o[i].creds);
        free_token(o[i].token);
    }
    ck_assert_int_eq(issued, 1);
    ck_assert_int_eq(claimed, 1);
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(already, N - 1);
    ck_assert_int_eq(reg_state(&f, FP1), CT_REG_INITIALIZED);
    fx_close(&f);
}
END_TEST

/* A store in front of another that can hide, fail or observe records. */
typedef struct wrap {
    ct_store *inner;
    int hide_initialized;        /* get of .../initialized: NOTFOUND (a stale read) */
    int fail_initialized_put;    /* put of .../initialized: CT_E_STORE */
    atomic_int *dead;            /* set to 1 after the claim is written */
} wrap;

static int is_init_key(const char *key)
{
    size_t n = strlen(key);
    return n > 12 && strcmp(key + n - 12, "/initialized") == 0;
}

static ct_err w_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                    void *user)
{
    wrap *w = user;
    if (w->hide_initialized && is_init_key(key)) {
        if (err)
            snprintf(err->message, sizeof err->message, "hidden");
        return CT_E_NOTFOUND;
    }
    return ct_store_get(w->inner, key, value, version, err);
}

static ct_err w_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                    uint64_t *new_version, ct_error *err, void *user)
{
    wrap *w = user;
    ct_err rc;
    if (w->fail_initialized_put && is_init_key(key)) {
        if (err) {
            err->code = CT_E_STORE;
            snprintf(err->message, sizeof err->message, "disk on fire");
        }
        return CT_E_STORE;
    }
    rc = ct_store_put(w->inner, key, value, len, expected, new_version, err);
    if (rc == CT_OK && w->dead && is_init_key(key) && expected == CT_STORE_CREATE)
        atomic_store(w->dead, 1);
    return rc;
}

static ct_err w_del(const char *key, ct_error *err, void *user)
{
    return ct_store_del(((wrap *)user)->inner, key, err);
}

static ct_err w_list(const char *prefix, ct_strlist *out, ct_error *err, void *user)
{
    ct_strlist *l = NULL;
    size_t i;
    ct_err rc = ct_store_list(((wrap *)user)->inner, prefix, &l, err);
    for (i = 0; rc == CT_OK && i < ct_strlist_count(l); i++)
        rc = ct_strlist_append(out, ct_strlist_get(l, i), err);
    ct_strlist_free(l);
    return rc;
}

static ct_store *wrap_store(fx *f, wrap *w)
{
    ct_store_ops ops = {0};
    ct_store *s = NULL;
    ct_error err;
    ops.version = CT_STORE_OPS_VERSION;
    ops.flags = CT_STORE_F_CAS;
    ops.get = w_get;
    ops.put = w_put;
    ops.del = w_del;
    ops.list = w_list;
    w->inner = f->store;
    ck_ok(ct_store_new(f->ctx, &ops, w, &s, &err), &err);
    return s;
}

START_TEST(test_claim_conflict)
{
    /* Deterministic version of the race: this bridge's pre-check read is stale, so
     * it only learns at the create-only write that another bridge won. */
    fx f;
    run r;
    wrap w = {0};
    ct_store *ws;
    char *t1, *t2;
    ct_bootstrap_options oo;
    ct_bootstrap_serve_options so;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    t1 = mint(&f);
    t2 = mint(&f);
    run_simple(&f, FP1, t1, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    w.hide_initialized = 1;
    ws = wrap_store(&f, &w);
    so = br_opts(&f, FP1);
    so.store = ws;
    oo = op_opts(&f, FP1, t2, 1);
    run_exchange(&f, &oo, &so, &r);
    expect_refused(&r, CT_BOOT_R_ALREADY_INITIALIZED);
    ck_assert_int_eq(r.b.res.claimed, 0);
    ck_assert_int_eq(log_count("bootstrap.claim_lost"), 1);
    ct_store_free(ws);
    free_token(t1);
    free_token(t2);
    fx_close(&f);
}
END_TEST

START_TEST(test_store_failure)
{
    fx f;
    run r;
    wrap w = {0};
    ct_store *ws;
    char *t;
    ct_bootstrap_options oo;
    ct_bootstrap_serve_options so;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    t = mint(&f);
    w.fail_initialized_put = 1;
    ws = wrap_store(&f, &w);
    so = br_opts(&f, FP1);
    so.store = ws;
    oo = op_opts(&f, FP1, t, 1);
    run_exchange(&f, &oo, &so, &r);
    expect_refused(&r, CT_BOOT_R_INTERNAL);
    /* The bridge returns the store's error with the detail; the operator does not get it. */
    ck_assert_msg(r.b.rc == CT_E_STORE, "%s: %s", ct_err_name(r.b.rc), r.b.err.message);
    ck_assert(strstr(r.b.err.message, "disk on fire") != NULL);
    ck_assert(strstr(r.oerr.message, "disk on fire") == NULL);
    ck_assert(!has_record(f.store, FP1, "initialized"));
    ct_store_free(ws);
    free_token(t);
    fx_close(&f);
}
END_TEST

START_TEST(test_corrupt_claim_record)
{
    static const char *const bad[] = {
        "not json",
        "{\"v\":2}",
        "{\"v\":1,\"fingerprint\":\"" FP2 "\",\"initialized_at\":1,\"updated_at\":1,"
        "\"audience\":\"a\",\"reissues\":0,\"jtis\":[]}",
        "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"initialized_at\":1,\"updated_at\":1,"
        "\"audience\":\"a\",\"reissues\":0,\"jtis\":[{\"jti\":5,\"exp\":1}],"
        "\"jwks\":{},\"issuer\":\"i\",\"subject\":\"s\"}",
        "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"initialized_at\":1,\"updated_at\":1,"
        "\"audience\":\"a\",\"reissues\":0,\"jtis\":[],\"jwks\":{\"keys\":[]}}",
    };
    fx f;
    run r;
    char *t;
    size_t i;
    ct_error err;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_ok(ct_store_put(f.store, "clusters/" FP1 "/initialized", bad[i], strlen(bad[i]),
                           CT_STORE_ANY, NULL, &err),
              &err);
        t = mint(&f);
        run_simple(&f, FP1, t, 0, FP1, &r);
        expect_refused(&r, CT_BOOT_R_INTERNAL);
        ck_assert_msg(r.b.rc == CT_E_STORE, "%zu: %s: %s", i, ct_err_name(r.b.rc),
                      r.b.err.message);
        free_token(t);
    }
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A bridge that dies right after the claim                             */

typedef struct dconn {
    ct_conn *inner;
    atomic_int *dead;
} dconn;

static ct_err d_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                     ct_error *err, void *user)
{
    dconn *d = state;
    (void)user;
    *sent = 0;
    if (atomic_load(d->dead)) {
        if (err) {
            err->code = CT_E_RESET;
            snprintf(err->message, sizeof err->message, "bridge died");
        }
        return CT_E_RESET;
    }
    return ct_conn_send(d->inner, p, n, sent, timeout_ms, err);
}

static ct_err d_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                     ct_error *err, void *user)
{
    dconn *d = state;
    (void)user;
    *got = 0;
    if (atomic_load(d->dead))
        return CT_E_RESET;
    return ct_conn_recv(d->inner, p, cap, got, timeout_ms, err);
}

static void d_close(void *state, void *user)
{
    dconn *d = state;
    (void)user;
    ct_conn_free(d->inner);
    free(d);
}

START_TEST(test_bridge_dies_after_claim)
{
    fx f;
    run r;
    wrap w = {0};
    atomic_int dead = 0;
    ct_store *ws;
    ct_conn *a = NULL, *z = NULL, *dz = NULL;
    ct_conn_ops ops = {0};
    dconn *d;
    char *t1, *t2, *t3;
    ct_bootstrap_options oo;
    ct_bootstrap_serve_options so;
    ct_error err;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    t1 = mint(&f);
    t2 = mint(&f);
    t3 = mint(&f);
    w.dead = &dead;
    ws = wrap_store(&f, &w);

    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    d = calloc(1, sizeof *d);
    d->inner = z;
    d->dead = &dead;
    ops.version = CT_CONN_OPS_VERSION;
    ops.send = d_send;
    ops.recv = d_recv;
    ops.close = d_close;
    ck_ok(ct_conn_new(f.ctx, &ops, d, NULL, &dz, &err), &err);
    so = br_opts(&f, FP1);
    so.store = ws;
    oo = op_opts(&f, FP1, t1, 1);
    memset(&r, 0, sizeof r);
    bridge_start(&r.b, f.ctx, &so, dz);
    r.orc = ct_bootstrap_conn(f.ctx, a, &oo, &r.creds, &r.oerr);
    bridge_join(&r.b);

    /* The operator got nothing, the bridge claimed and could not answer. */
    ck_assert_msg(r.orc == CT_E_CLOSED || r.orc == CT_E_RESET, "operator: %s: %s",
                  ct_err_name(r.orc), r.oerr.message);
    ck_assert(strstr(r.oerr.message, "re-bootstrap") != NULL);
    ck_assert_ptr_null(r.creds);
    ck_assert_int_eq(r.b.res.claimed, 1);
    ck_assert_int_eq(r.b.res.issued, 0);
    ck_assert_int_eq(r.b.rc, CT_E_RESET);
    ck_assert_int_eq(reg_state(&f, FP1), CT_REG_INITIALIZED);
    ct_store_free(ws);

    /* No second first bootstrap... */
    run_simple(&f, FP1, t2, 1, FP1, &r);
    expect_refused(&r, CT_BOOT_R_ALREADY_INITIALIZED);
    /* ...but the pinned token identity re-bootstraps. */
    run_simple(&f, FP1, t2, 0, FP1, &r);
    expect_issued(&r, 1);
    run_clear(&r);

    /* And the store-side operator can always start over. */
    ck_ok(ct_deregister(f.ctx, f.store, FP1, &err), &err);
    fx_register(&f, FP1);
    run_simple(&f, FP1, t3, 1, FP1, &r);
    expect_issued(&r, 0);
    run_clear(&r);
    free_token(t1);
    free_token(t2);
    free_token(t3);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Arguments                                                            */

/* ct_bootstrap_conn with bad options: refused locally, the connection freed. */
static void bad_opts(fx *f, const ct_bootstrap_options *oo, ct_err want)
{
    ct_conn *a = NULL, *z = NULL;
    ct_credentials *c = (ct_credentials *)1;
    ct_error err;
    uint8_t byte;
    ck_ok(ct_pipe_pair(f->ctx, 0, &a, &z, &err), &err);
    ck_err(ct_bootstrap_conn(f->ctx, a, oo, &c, &err), want, &err);
    ck_assert_ptr_null(c);
    /* a was freed: z sees the end at once, nothing was sent */
    ck_err(ct_conn_recv(z, &byte, 1, NULL, SC(2000), &err), CT_E_CLOSED, &err);
    ct_conn_free(z);
}

START_TEST(test_invalid_arguments)
{
    fx f;
    ct_bootstrap_options oo;
    ct_bootstrap_serve_options so;
    ct_bootstrap_result res;
    ct_conn *a = NULL, *z = NULL;
    ct_credentials *c = NULL;
    ct_tls_config *cfg = (ct_tls_config *)1;
    ct_beacon_options bo = CT_BEACON_OPTIONS_INIT;
    ct_error err;
    char *t;

    fx_open(&f, _i);
    t = mint(&f);
    oo = op_opts(&f, FP1, t, 1);
    oo.version = 99;
    bad_opts(&f, &oo, CT_E_VERSION);
    oo = op_opts(&f, "nope", t, 1);
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, NULL, t, 1);
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, FP1, t, 1);
    oo.jwks = NULL; /* token without key set on a first bootstrap */
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, FP1, NULL, 1);
    oo.jwks = f.jwks; /* key set without token */
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, FP1, NULL, 0); /* re-bootstrap without token */
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, FP1, t, 1);
    oo.flags = 0x80;
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, FP1, t, 1);
    oo.jwks = "{\"keys\":[]}"; /* no usable key: checked before the bridge sees anything */
    bad_opts(&f, &oo, CT_E_INVALID);
    oo = op_opts(&f, FP1, t, 1);
    oo.jwks = "not json";
    bad_opts(&f, &oo, CT_E_INVALID);

    oo = op_opts(&f, FP1, t, 1);
    ck_err(ct_bootstrap_conn(f.ctx, NULL, &oo, &c, &err), CT_E_INVALID, &err);
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    ck_err(ct_bootstrap_conn(f.ctx, a, NULL, &c, &err), CT_E_INVALID, &err);
    ct_conn_free(z);
    ck_err(ct_bootstrap(f.ctx, NULL, &oo, &c, &err), CT_E_INVALID, &err);
    bo.host = "127.0.0.1";
    bo.port = 1;
    bo.ca = (const uint8_t *)"x";
    bo.ca_len = 1;
    oo.fingerprint = "nope";
    ck_err(ct_bootstrap(f.ctx, &bo, &oo, &c, &err), CT_E_INVALID, &err); /* before dialling */

    /* Bridge side. */
    so = br_opts(&f, FP1);
    so.version = 7;
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    ck_err(ct_bootstrap_serve(f.ctx, z, &so, &res, &err), CT_E_VERSION, &err);
    ct_conn_free(a);
    so = br_opts(&f, FP1);
    so.store = NULL;
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    ck_err(ct_bootstrap_serve(f.ctx, z, &so, &res, &err), CT_E_INVALID, &err);
    ct_conn_free(a);
    so = br_opts(&f, "zz");
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    ck_err(ct_bootstrap_serve(f.ctx, z, &so, NULL, &err), CT_E_INVALID, &err);
    ct_conn_free(a);
    so = br_opts(&f, FP1);
    so.audience = "";
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &z, &err), &err);
    ck_err(ct_bootstrap_serve(f.ctx, z, &so, NULL, &err), CT_E_INVALID, &err);
    ct_conn_free(a);
    ck_err(ct_bootstrap_serve(f.ctx, NULL, &so, NULL, &err), CT_E_INVALID, &err);

    /* The bridge's operational configuration needs a registration. */
    ck_err(ct_bridge_tls_config(f.ctx, f.store, FP1, &cfg, NULL, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(cfg);
    ck_err(ct_bridge_tls_config(f.ctx, f.store, "bad", &cfg, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_credentials_tls_config(f.ctx, NULL, &cfg, &err), CT_E_INVALID, &err);

    /* Accessors are NULL-safe. */
    ck_assert_ptr_null(ct_credentials_ca(NULL, NULL));
    ck_assert_ptr_null(ct_credentials_cert(NULL, NULL));
    ck_assert_ptr_null(ct_credentials_key(NULL));
    ck_assert_ptr_null(ct_credentials_operational_room(NULL));
    ck_assert_int_eq(ct_credentials_reissued(NULL), 0);
    ck_assert_int_eq(ct_credentials_not_after(NULL), 0);
    ct_credentials_free(NULL);
    free_token(t);
    fx_close(&f);
}
END_TEST

START_TEST(test_bridge_config_errors)
{
    fx f;
    ct_tls_config *cfg = NULL;
    ct_error err;
    fx_open(&f, _i);
    fx_register(&f, FP1);
    /* A registration whose bridge record is missing or broken: a store error. */
    ck_ok(ct_store_del(f.store, "clusters/" FP1 "/bridge", &err), &err);
    ck_err(ct_bridge_tls_config(f.ctx, f.store, FP1, &cfg, NULL, &err), CT_E_STORE, &err);
    {
        static const char rec[] = "{\"v\":1,\"cert\":\"x\",\"key\":\"y\"}";
        ck_ok(ct_store_put(f.store, "clusters/" FP1 "/bridge", rec, sizeof rec - 1,
                           CT_STORE_ANY, NULL, &err),
              &err);
    }
    ck_err(ct_bridge_tls_config(f.ctx, f.store, FP1, &cfg, NULL, &err), CT_E_STORE, &err);
    ck_assert_ptr_null(cfg);
    fx_close(&f);
}
END_TEST

START_TEST(test_foreign_ca)
{
    /* A bridge configuration of another registration does not talk to this operator. */
    fx f;
    run r;
    char *t;
    ct_tls_config *op = NULL, *br = NULL;
    tls_peer s, c;
    ct_error err;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    fx_register(&f, FP2);
    t = mint(&f);
    run_simple(&f, FP1, t, 1, FP1, &r);
    expect_issued(&r, 0);
    ck_ok(ct_credentials_tls_config(f.ctx, r.creds, &op, &err), &err);
    ck_ok(ct_bridge_tls_config(f.ctx, f.store, FP2, &br, NULL, &err), &err);
    /*
     * The bridge (TLS client) checks the operator first and refuses its
     * certificate: CT_E_CERT; it aborts with unknown_ca, so the operator
     * learns that its own certificate was refused: CT_E_AUTH.
     */
    mtls_pair(&f, op, br, &s, &c);
    ck_assert_msg(c.rc == CT_E_CERT, "bridge (client): %s: %s", ct_err_name(c.rc),
                  c.err.message);
    ck_assert_msg(s.rc == CT_E_AUTH, "operator (server): %s: %s", ct_err_name(s.rc),
                  s.err.message);
    ct_tls_config_free(br);
    br = NULL;
    /*
     * The other direction: a client with FP2's bridge certificate that does
     * trust FP1's CA gets as far as presenting it, and the operator refuses
     * it: CT_E_CERT there, CT_E_AUTH for the client.
     */
    {
        json_t *rec = get_record(f.store, FP2, "bridge", NULL);
        const char *cert = json_string_value(json_object_get(rec, "cert"));
        const char *key = json_string_value(json_object_get(rec, "key"));
        const uint8_t *ca;
        size_t ca_len;
        ct_tls_options o = CT_TLS_OPTIONS_INIT;
        ct_secret *ks = NULL;
        ca = ct_credentials_ca(r.creds, &ca_len);
        ck_ok(ct_secret_from(key, strlen(key), &ks, &err), &err);
        o.role = CT_TLS_CLIENT;
        o.cert = (const uint8_t *)cert;
        o.cert_len = strlen(cert);
        o.key = ks;
        o.ca = ca;
        o.ca_len = ca_len;
        o.server_name = CT_BROKER_SERVER_NAME;
        ck_ok(ct_tls_config_new(f.ctx, &o, &br, &err), &err);
        ct_secret_free(ks);
        json_decref(rec);
    }
    mtls_pair(&f, op, br, &s, &c);
    ck_assert_msg(s.rc == CT_E_CERT, "operator (server): %s: %s", ct_err_name(s.rc),
                  s.err.message);
    ck_assert_msg(c.rc == CT_E_AUTH, "client: %s: %s", ct_err_name(c.rc), c.err.message);
    ct_tls_config_free(op);
    ct_tls_config_free(br);
    run_clear(&r);
    free_token(t);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hostile answers: a hand-made bridge                                  */

enum fake_mode {
    FAKE_OK,            /* a correct answer: proves the fake is faithful */
    FAKE_OTHER_KEY,     /* a certificate for a key the operator does not hold */
    FAKE_NO_NAME,       /* without the broker's DNS name */
    FAKE_CLIENT_USAGE,  /* clientAuth instead of serverAuth */
    FAKE_WRONG_CA,      /* issued by one CA, another CA sent */
    FAKE_NOT_A_CA,      /* the "CA" is the leaf itself */
    FAKE_REISSUE_FLAG,  /* "reissue": true for a first bootstrap */
    FAKE_GARBAGE,       /* not JSON */
    FAKE_BAD_B64,       /* "cert" is not base64 */
    FAKE_HUGE,          /* length announces 2 GiB */
    FAKE_VERSION,       /* "v": 2 */
    FAKE_UNKNOWN_REASON,/* refused with a reason from the future */
    FAKE_SILENT,        /* closes without answering */
    FAKE_N
};

typedef struct fake {
    fx *f;
    enum fake_mode mode;
    ct_conn *conn;
    int ok;
    pthread_t th;
} fake;

static void fake_send(ct_conn *c, const char *body)
{
    size_t n;
    uint8_t *p = frame(body, &n);
    ct_error err;
    ck_ok(ct_conn_send_all(c, p, n, NULL, SC(10000), &err), &err);
    free(p);
}

static void *fake_main(void *arg)
{
    fake *k = arg;
    fx *f = k->f;
    ct_tls_config *cfg = psk_cfg(f, CT_TLS_SERVER, FP1);
    ct_conn *tls = NULL;
    ct_error err;
    json_t *req, *ans = NULL;
    ct_key *ca_key = NULL, *ca2_key = NULL;
    ct_cert_options co = CT_CERT_OPTIONS_INIT, lo = CT_CERT_OPTIONS_INIT;
    static const char *const good[] = {CT_BROKER_SERVER_NAME};
    static const char *const other[] = {"other.example"};
    uint8_t *csr = NULL, *ca = NULL, *ca2 = NULL, *cert = NULL, *ocsr = NULL;
    size_t csr_len = 0, ca_len = 0, ca2_len = 0, cert_len = 0;
    char *s_ca = NULL, *s_cert = NULL, *body = NULL;

    if (ct_tls_wrap(cfg, k->conn, SC(10000), &tls, &err) != CT_OK)
        goto out;
    req = read_json_frame(tls);
    if (!req)
        goto out;
    csr = unb64(json_string_value(json_object_get(req, "csr")), &csr_len);
    json_decref(req);
    co.common_name = "fake CA";
    lo.common_name = "cloudtaser broker";
    lo.dns_names = k->mode == FAKE_NO_NAME ? other : good;
    lo.n_dns_names = 1;
    if (ct_key_generate(f->ctx, &ca_key, &err) != CT_OK ||
        ct_ca_create(f->ctx, ca_key, &co, &ca, &ca_len, &err) != CT_OK)
        goto out;
    if (k->mode == FAKE_OTHER_KEY) {
        ocsr = (uint8_t *)csr_b64(f, NULL);
        free(csr);
        csr = unb64((const char *)ocsr, &csr_len);
    }
    if (ct_cert_issue(f->ctx, ca, ca_len, ca_key, csr, csr_len,
                      k->mode == FAKE_CLIENT_USAGE ? CT_CERT_CLIENT : CT_CERT_SERVER, &lo,
                      &cert, &cert_len, &err) != CT_OK)
        goto out;
    if (k->mode == FAKE_WRONG_CA) {
        if (ct_key_generate(f->ctx, &ca2_key, &err) != CT_OK ||
            ct_ca_create(f->ctx, ca2_key, &co, &ca2, &ca2_len, &err) != CT_OK)
            goto out;
        s_ca = b64(ca2, ca2_len);
    } else if (k->mode == FAKE_NOT_A_CA) {
        s_ca = b64(cert, cert_len);
    } else {
        s_ca = b64(ca, ca_len);
    }
    s_cert = b64(cert, cert_len);
    switch (k->mode) {
    case FAKE_GARBAGE:
        fake_send(tls, "this is not json");
        break;
    case FAKE_BAD_B64:
        ans = json_pack("{s:i,s:s,s:s,s:s,s:b}", "v", 1, "status", "issued", "ca", s_ca, "cert",
                        "%%%", "reissue", 0);
        break;
    case FAKE_HUGE: {
        static const uint8_t h[4] = {0x80, 0, 0, 0};
        ck_ok(ct_conn_send_all(tls, h, 4, NULL, SC(10000), &err), &err);
        break;
    }
    case FAKE_VERSION:
        ans = json_pack("{s:i,s:s,s:s,s:s,s:b}", "v", 2, "status", "issued", "ca", s_ca, "cert",
                        s_cert, "reissue", 0);
        break;
    case FAKE_UNKNOWN_REASON:
        ans = json_pack("{s:i,s:s,s:s,s:s}", "v", 1, "status", "refused", "reason",
                        "quota_exceeded", "message", "come back \x7f tomorrow");
        break;
    case FAKE_SILENT:
        break;
    default:
        ans = json_pack("{s:i,s:s,s:s,s:s,s:b}", "v", 1, "status", "issued", "ca", s_ca, "cert",
                        s_cert, "reissue", k->mode == FAKE_REISSUE_FLAG);
        break;
    }
    if (ans) {
        body = json_dumps(ans, JSON_COMPACT);
        fake_send(tls, body);
    }
    if (k->mode != FAKE_SILENT) {
        uint8_t b;
        (void)ct_conn_shutdown_write(tls, SC(2000), NULL);
        (void)ct_conn_recv(tls, &b, 1, NULL, SC(5000), NULL);
    }
    k->ok = 1;
out:
    json_decref(ans);
    free(body);
    free(s_ca);
    free(s_cert);
    free(csr);
    free(ocsr);
    ct_free(ca);
    ct_free(ca2);
    ct_free(cert);
    ct_key_free(ca_key);
    ct_key_free(ca2_key);
    ct_conn_free(tls);
    ct_tls_config_free(cfg);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(test_hostile_answers)
{
    static const ct_err want[FAKE_N] = {
        [FAKE_OK] = CT_OK,           [FAKE_OTHER_KEY] = CT_E_CERT,
        [FAKE_NO_NAME] = CT_E_CERT,  [FAKE_CLIENT_USAGE] = CT_E_CERT,
        [FAKE_WRONG_CA] = CT_E_CERT, [FAKE_NOT_A_CA] = CT_E_CERT,
        [FAKE_REISSUE_FLAG] = CT_E_PROTO, [FAKE_GARBAGE] = CT_E_PROTO,
        [FAKE_BAD_B64] = CT_E_PROTO, [FAKE_HUGE] = CT_E_PROTO,
        [FAKE_VERSION] = CT_E_PROTO, [FAKE_UNKNOWN_REASON] = CT_E_DENIED,
        [FAKE_SILENT] = CT_E_CLOSED,
    };
    fx f;
    fake k;
    ct_conn *a = NULL;
    ct_credentials *c = NULL;
    ct_bootstrap_options oo;
    ct_error err;
    ct_err rc;
    char *t;

    fx_open(&f, 0);
    t = mint(&f);
    oo = op_opts(&f, FP1, t, 1);
    memset(&k, 0, sizeof k);
    k.f = &f;
    k.mode = (enum fake_mode)_i;
    ck_ok(ct_pipe_pair(f.ctx, 0, &a, &k.conn, &err), &err);
    ck_assert(pthread_create(&k.th, NULL, fake_main, &k) == 0);
    rc = ct_bootstrap_conn(f.ctx, a, &oo, &c, &err);
    ck_assert(pthread_join(k.th, NULL) == 0);
    ck_assert_msg(k.ok, "the fake bridge failed");
    if (_i == FAKE_SILENT)
        ck_assert_msg(rc == CT_E_CLOSED || rc == CT_E_RESET, "mode %d: %s: %s", _i,
                      ct_err_name(rc), err.message);
    else
        ck_assert_msg(rc == want[_i], "mode %d: %s (want %s): %s", _i, ct_err_name(rc),
                      ct_err_name(want[_i]), err.message);
    if (_i == FAKE_UNKNOWN_REASON) {
        ck_assert_int_eq(err.os_error, 0);
        ck_assert(strstr(err.message, "quota_exceeded") != NULL);
        ck_assert(strstr(err.message, "come back ? tomorrow") != NULL);
    }
    if (rc == CT_OK)
        ck_assert_ptr_nonnull(c);
    else
        ck_assert_ptr_null(c);
    ct_credentials_free(c);
    free_token(t);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Through a real beacon                                                */

typedef struct beacon_bridge {
    fx *f;
    const ct_beacon_options *bo;
    int n;                      /* connections to serve */
    ct_err rc[4];
    ct_bootstrap_result res[4];
    ct_error err[4];
    pthread_t th;
} beacon_bridge;

static void *beacon_bridge_main(void *arg)
{
    beacon_bridge *bb = arg;
    uint8_t room[32];
    int i;
    if (ct_room_hash_init(FP1, room, NULL) != CT_OK)
        return NULL;
    for (i = 0; i < bb->n; i++) {
        ct_conn *c = NULL;
        ct_bootstrap_serve_options so = br_opts(bb->f, FP1);
        bb->rc[i] = ct_beacon_connect(bb->f->ctx, bb->bo, CT_ROLE_BRIDGE, room, &c, &bb->err[i]);
        if (bb->rc[i] != CT_OK)
            break;
        bb->rc[i] = ct_bootstrap_serve(bb->f->ctx, c, &so, &bb->res[i], &bb->err[i]);
    }
    ct_thread_cleanup();
    return NULL;
}

typedef struct relay_thread {
    ct_relay *r;
    pthread_t th;
} relay_thread;

static void *relay_main(void *arg)
{
    relay_thread *rt = arg;
    (void)ct_relay_serve(rt->r, NULL);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(test_via_beacon)
{
    static const char *const ips[] = {"127.0.0.1"};
    fx f;
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    uint8_t *ca = NULL, *cert = NULL;
    size_t ca_len = 0, cert_len = 0;
    ct_key *key = NULL;
    ct_secret *key_der = NULL;
    ct_relay_options ro = CT_RELAY_OPTIONS_INIT;
    ct_beacon_options bo = CT_BEACON_OPTIONS_INIT;
    ct_bootstrap_options oo;
    relay_thread rt;
    beacon_bridge bb;
    ct_credentials *c1 = NULL, *c2 = NULL;
    ct_error err;
    char *t1, *t2;

    fx_open(&f, _i);
    fx_register(&f, FP1);
    co.common_name = "beacon";
    co.ip_addrs = ips;
    co.n_ip_addrs = 1;
    ck_ok(ct_cert_dev_server(f.ctx, &co, &ca, &ca_len, &cert, &cert_len, &key, &err), &err);
    ck_ok(ct_key_export(key, 0, &key_der, &err), &err);
    ro.listen_host = "127.0.0.1";
    ro.cert = cert;
    ro.cert_len = cert_len;
    ro.key = key_der;
    ro.threads = 1;
    ck_ok(ct_relay_new(f.ctx, &ro, &rt.r, &err), &err);
    ck_assert(pthread_create(&rt.th, NULL, relay_main, &rt) == 0);
    bo.host = "127.0.0.1";
    bo.port = ct_relay_port(rt.r);
    bo.ca = ca;
    bo.ca_len = ca_len;
    bo.connect_timeout_ms = SC(10000);
    bo.pair_timeout_ms = SC(20000);

    memset(&bb, 0, sizeof bb);
    bb.f = &f;
    bb.bo = &bo;
    bb.n = 3;
    ck_assert(pthread_create(&bb.th, NULL, beacon_bridge_main, &bb) == 0);

    t1 = mint(&f);
    t2 = mint(&f);
    oo = op_opts(&f, FP1, t1, 1);
    oo.flags = CT_BOOTSTRAP_F_AUTO;
    ck_ok(ct_bootstrap(f.ctx, &bo, &oo, &c1, &err), &err);
    ck_assert_int_eq(ct_credentials_reissued(c1), 0);
    /* Again, as a restarted operator would: first bootstrap refused, re-bootstrap issues. */
    oo = op_opts(&f, FP1, t2, 1);
    oo.flags = CT_BOOTSTRAP_F_AUTO;
    ck_ok(ct_bootstrap(f.ctx, &bo, &oo, &c2, &err), &err);
    ck_assert_int_eq(ct_credentials_reissued(c2), 1);
    ck_assert(memcmp(ct_credentials_operational_room(c1), ct_credentials_operational_room(c2),
                     32) == 0);
    ck_assert(pthread_join(bb.th, NULL) == 0);
    ck_assert_msg(bb.rc[0] == CT_OK, "%s", bb.err[0].message);
    ck_assert_int_eq(bb.res[0].claimed, 1);
    ck_assert_int_eq(bb.rc[1], CT_E_DENIED);
    ck_assert_int_eq(bb.res[1].refusal, CT_BOOT_R_ALREADY_INITIALIZED);
    ck_assert_msg(bb.rc[2] == CT_OK, "%s", bb.err[2].message);
    ck_assert_int_eq(bb.res[2].reissue, 1);
    ck_assert_int_eq(log_count("bootstrap.retry"), 1);

    ct_relay_stop(rt.r);
    ck_assert(pthread_join(rt.th, NULL) == 0);
    ct_relay_free(rt.r);
    ct_credentials_free(c1);
    ct_credentials_free(c2);
    free_token(t1);
    free_token(t2);
    ct_free(ca);
    ct_free(cert);
    ct_key_free(key);
    ct_secret_free(key_der);
    fx_close(&f);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("bootstrap");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, ct_test_under_valgrind() ? 1200 : 60);
    tcase_add_test(tc, test_psk_known_answer);
    tcase_add_test(tc, test_refusal_names);
    /* loop index: 0 memory store, 1 SQLite */
    tcase_add_loop_test(tc, test_first_bootstrap, 0, 2);
    tcase_add_loop_test(tc, test_already_initialized, 0, 2);
    tcase_add_loop_test(tc, test_rebootstrap, 0, 2);
    tcase_add_loop_test(tc, test_replay, 0, 2);
    tcase_add_loop_test(tc, test_bad_tokens, 0, 2);
    tcase_add_loop_test(tc, test_expired_and_unregistered, 0, 2);
    tcase_add_loop_test(tc, test_no_token_first_bootstrap, 0, 2);
    tcase_add_loop_test(tc, test_psk_mismatch, 0, 2);
    tcase_add_loop_test(tc, test_wrong_cluster_field, 0, 2);
    tcase_add_loop_test(tc, test_malformed_requests, 0, 2);
    tcase_add_loop_test(tc, test_oversized_request, 0, 2);
    tcase_add_loop_test(tc, test_request_timeout, 0, 2);
    tcase_add_test(tc, test_racing_bridges);
    tcase_add_loop_test(tc, test_claim_conflict, 0, 2);
    tcase_add_loop_test(tc, test_store_failure, 0, 2);
    tcase_add_loop_test(tc, test_corrupt_claim_record, 0, 2);
    tcase_add_loop_test(tc, test_bridge_dies_after_claim, 0, 2);
    tcase_add_loop_test(tc, test_invalid_arguments, 0, 2);
    tcase_add_loop_test(tc, test_bridge_config_errors, 0, 2);
    tcase_add_loop_test(tc, test_foreign_ca, 0, 2);
    tcase_add_loop_test(tc, test_hostile_answers, 0, FAKE_N);
    tcase_add_loop_test(tc, test_via_beacon, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
