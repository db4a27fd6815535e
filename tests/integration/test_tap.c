/*
 * test_tap.c - the beacon-tap test: everything the beacon relays during a
 * bootstrap and an operational session is recorded and searched for what
 * must never be in it in a form the beacon could read.
 *
 * The recording point: ct_beacon_connect returns the connection positioned
 * right after PAIRED; every byte sent or received on it from then on is
 * exactly a byte the beacon decrypts from one peer's outer TLS and
 * re-encrypts to the other (the beacon's plaintext view). A tapping
 * ct_conn around it records both directions on both peers.
 *
 * Positive controls make sure the tap sees plaintext when there is any:
 * the PSK identity and the broker's TLS server name, which TLS 1.3 sends in
 * the clear in the ClientHello, must be found.
 */
#include "beacon_testlib.h"
#include "testutil.h"

#include <check.h>

/* The calls below carry their own error argument; report the code only. */
#define ck_ok1(expr) ck_ok(expr, (const ct_error *)NULL)
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- tapping connection ---- */

typedef struct tapbuf {
    pthread_mutex_t mu;
    uint8_t *p;
    size_t len, cap;
} tapbuf;

static tapbuf g_tap;

static void tap_add(const void *p, size_t n)
{
    pthread_mutex_lock(&g_tap.mu);
    if (g_tap.len + n > g_tap.cap) {
        size_t cap = (g_tap.cap ? g_tap.cap : 65536);
        while (cap < g_tap.len + n)
            cap *= 2;
        g_tap.p = realloc(g_tap.p, cap);
        ck_assert_ptr_nonnull(g_tap.p);
        g_tap.cap = cap;
    }
    memcpy(g_tap.p + g_tap.len, p, n);
    g_tap.len += n;
    pthread_mutex_unlock(&g_tap.mu);
}

static ct_err t_send(void *st, const uint8_t *p, size_t n, size_t *sent, int t, ct_error *err,
                     void *u)
{
    ct_err rc = ct_conn_send(st, p, n, sent, t, err);
    (void)u;
    if (rc == CT_OK)
        tap_add(p, *sent);
    return rc;
}

static ct_err t_recv(void *st, uint8_t *p, size_t cap, size_t *got, int t, ct_error *err,
                     void *u)
{
    ct_err rc = ct_conn_recv(st, p, cap, got, t, err);
    (void)u;
    if (rc == CT_OK)
        tap_add(p, *got);
    return rc;
}

static ct_err t_shut(void *st, int t, ct_error *err, void *u)
{
    (void)u;
    return ct_conn_shutdown_write(st, t, err);
}

static void t_close(void *st, void *u)
{
    (void)u;
    ct_conn_free(st);
}

static int t_fd(void *st, void *u)
{
    (void)u;
    return ct_conn_get_fd(st);
}

static size_t t_pending(void *st, void *u)
{
    (void)u;
    return ct_conn_pending(st);
}

static const ct_conn_ops tap_ops = {
    .version = CT_CONN_OPS_VERSION,
    .send = t_send,
    .recv = t_recv,
    .shutdown_write = t_shut,
    .close = t_close,
    .get_fd = t_fd,
    .pending = t_pending,
};

static ct_conn *tapped(ct_ctx *ctx, ct_conn *c)
{
    ct_conn *out = NULL;
    ck_ok1(ct_conn_new(ctx, &tap_ops, c, NULL, &out, NULL));
    return out;
}

/* ---- the scene ---- */

#define FP "5d3c0a9e-7b41-4f2e-9c6d-8a1b2c3d4e5f"
#define REQ_MARK "REQUEST-PAYLOAD-7f3a9c1e-db-password=hunter2"
#define RESP_MARK "RESPONSE-PAYLOAD-0b4e2d6f-api-key=sk_live_123"

typedef struct scene {
    ct_ctx *ctx;
    ct_store *store;
    bt_pki pki;
    bt_relay *relay;
    ct_beacon_options bo;
    uint8_t init_room[32], op_room[32];
    ct_err bridge_rc;
    ct_session *bridge_sess;
} scene;

static ct_err resp_handler(void *arg, ct_session *s, uint32_t stream, const uint8_t *req,
                           size_t req_len, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    (void)arg;
    (void)s;
    (void)stream;
    (void)err;
    ck_assert_uint_eq(req_len, strlen(REQ_MARK));
    ck_assert(memcmp(req, REQ_MARK, req_len) == 0);
    *resp = (uint8_t *)strdup(RESP_MARK);
    *resp_len = strlen(RESP_MARK);
    return CT_OK;
}

static void *bridge_init(void *arg)
{
    scene *sc = arg;
    ct_bootstrap_serve_options so = CT_BOOTSTRAP_SERVE_OPTIONS_INIT;
    ct_bootstrap_result res;
    ct_conn *c = NULL;
    ct_error err;

    sc->bridge_rc = ct_beacon_connect(sc->ctx, &sc->bo, CT_ROLE_BRIDGE, sc->init_room, &c, &err);
    if (sc->bridge_rc == CT_OK) {
        so.store = sc->store;
        so.fingerprint = FP;
        sc->bridge_rc = ct_bootstrap_serve(sc->ctx, tapped(sc->ctx, c), &so, &res, &err);
    }
    ct_thread_cleanup();
    return NULL;
}

static void *bridge_op(void *arg)
{
    scene *sc = arg;
    ct_session_options so = CT_SESSION_OPTIONS_INIT;
    ct_tls_config *cfg = NULL;
    ct_conn *c = NULL, *tls = NULL;
    ct_error err;

    sc->bridge_rc = ct_bridge_tls_config(sc->ctx, sc->store, FP, &cfg, NULL, &err);
    if (sc->bridge_rc == CT_OK)
        sc->bridge_rc = ct_beacon_connect(sc->ctx, &sc->bo, CT_ROLE_BRIDGE, sc->op_room, &c, &err);
    if (sc->bridge_rc == CT_OK)
        sc->bridge_rc = ct_tls_wrap(cfg, tapped(sc->ctx, c), 10000, &tls, &err);
    if (sc->bridge_rc == CT_OK) {
        so.initiator = 1;
        so.handler = resp_handler;
        sc->bridge_rc = ct_session_open(sc->ctx, tls, &so, &sc->bridge_sess, &err);
    }
    ct_tls_config_free(cfg);
    ct_thread_cleanup();
    return NULL;
}

static int found(const void *needle, size_t n)
{
    size_t i;
    if (n == 0 || g_tap.len < n)
        return 0;
    for (i = 0; i + n <= g_tap.len; i++)
        if (memcmp(g_tap.p + i, needle, n) == 0)
            return 1;
    return 0;
}

static int found_str(const char *s)
{
    return found(s, strlen(s));
}

/* The 32-byte private scalar inside a DER EC private key (SEC1 or PKCS#8). */
static const uint8_t *ec_scalar(const uint8_t *der, size_t len)
{
    size_t i;
    for (i = 0; i + 5 + 32 <= len; i++)
        if (der[i] == 0x02 && der[i + 1] == 0x01 && der[i + 2] == 0x01 && der[i + 3] == 0x04 &&
            der[i + 4] == 0x20)
            return der + i + 5;
    return NULL;
}

static void assert_key_absent(const ct_key *k, const char *what)
{
    ct_secret *der = NULL;
    uint8_t *pub = NULL;
    size_t publen = 0;
    const uint8_t *scalar;

    ck_ok1(ct_key_export(k, 0, &der, NULL));
    scalar = ec_scalar(ct_secret_data(der), ct_secret_len(der));
    ck_assert_msg(scalar != NULL, "no scalar found in %s DER", what);
    ck_assert_msg(!found(scalar, 32), "%s private scalar seen by the beacon", what);
    ck_assert_msg(!found(ct_secret_data(der), ct_secret_len(der)), "%s DER seen", what);
    ct_secret_free(der);
    ck_ok1(ct_key_public_der(k, &pub, &publen, NULL));
    /* the uncompressed point at the end of the SubjectPublicKeyInfo */
    ck_assert(publen > 65);
    ck_assert_msg(!found(pub + publen - 65, 65), "%s public key seen by the beacon", what);
    ct_free(pub);
}

static ct_key *load_store_key(scene *sc, const char *rec)
{
    char key[256];
    ct_secret *v = NULL;
    ct_key *k = NULL;
    const char *s, *e;
    char *pem;

    snprintf(key, sizeof key, "clusters/%s/%s", FP, rec);
    ck_ok1(ct_store_get(sc->store, key, &v, NULL, NULL));
    s = strstr((const char *)ct_secret_data(v), "-----BEGIN");
    s = strstr(s + 1, "-----BEGIN"); /* the second PEM block: the key */
    ck_assert_ptr_nonnull(s);
    e = strstr(s, "-----END");
    ck_assert_ptr_nonnull(e);
    e = strstr(e + 8, "-----");
    pem = strndup(s, (size_t)(e + 5 - s));
    /* JSON escapes newlines: undo \n */
    {
        char *r = pem, *w = pem;
        while (*r) {
            if (r[0] == '\\' && r[1] == 'n') {
                *w++ = '\n';
                r += 2;
            } else {
                *w++ = *r++;
            }
        }
        *w = 0;
    }
    ck_ok1(ct_key_load(sc->ctx, (const uint8_t *)pem, strlen(pem), &k, NULL));
    ct_secure_wipe(pem, strlen(pem));
    free(pem);
    ct_secret_free(v);
    return k;
}

START_TEST(test_beacon_sees_nothing)
{
    scene sc;
    ct_relay_options ro;
    ct_registration *reg = NULL;
    ct_key *issuer = NULL, *ca_key, *bridge_key;
    char *jwks = NULL, *token = NULL, claims[512];
    ct_bootstrap_options bopt = CT_BOOTSTRAP_OPTIONS_INIT;
    ct_credentials *creds = NULL;
    ct_secret *psk = NULL;
    ct_tls_config *ocfg = NULL;
    ct_session_options so = CT_SESSION_OPTIONS_INIT;
    ct_session *osess = NULL;
    ct_conn *c = NULL, *tls = NULL;
    pthread_t th;
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    int64_t now;
    ct_error err;
    char upper[64];
    size_t i;

    memset(&sc, 0, sizeof sc);
    pthread_mutex_init(&g_tap.mu, NULL);
    sc.ctx = ct_test_ctx();
    ck_ok1(ct_store_new_memory(sc.ctx, &sc.store, NULL));
    ck_ok1(ct_register(sc.ctx, sc.store, FP, NULL, &reg, NULL));
    memcpy(sc.init_room, ct_registration_init_room(reg), 32);
    memcpy(sc.op_room, ct_registration_operational_room(reg), 32);
    ct_registration_free(reg);

    bt_pki_make(sc.ctx, &sc.pki);
    bt_relay_opts(&ro, &sc.pki);
    sc.relay = bt_relay_start(sc.ctx, &ro);
    sc.bo = (ct_beacon_options)CT_BEACON_OPTIONS_INIT;
    sc.bo.host = "127.0.0.1";
    sc.bo.port = sc.relay->port;
    sc.bo.ca = sc.pki.ca_der;
    sc.bo.ca_len = sc.pki.ca_len;
    sc.bo.pair_timeout_ms = 15000;

    /* issuer keys and an operator token */
    ck_ok1(ct_key_generate(sc.ctx, &issuer, NULL));
    ck_ok1(ct_jwks_from_key(issuer, &jwks, NULL));
    now = ct_ctx_wall_ms(sc.ctx) / 1000;
    snprintf(claims, sizeof claims,
             "{\"iss\":\"https://kubernetes.default.svc.cluster.local\","
             "\"sub\":\"system:serviceaccount:cloudtaser:operator\","
             "\"aud\":[\"" CT_BOOTSTRAP_DEFAULT_AUDIENCE "\"],\"iat\":%lld,\"nbf\":%lld,"
             "\"exp\":%lld,\"jti\":\"tap-1\"}",
             (long long)now, (long long)now, (long long)now + 600);
    ck_ok1(ct_jwt_sign_es256(sc.ctx, issuer, claims, &token, NULL));

    /* bootstrap through the beacon, tapped on both peers */
    ck_assert_int_eq(pthread_create(&th, NULL, bridge_init, &sc), 0);
    ck_ok1(ct_beacon_connect(sc.ctx, &sc.bo, CT_ROLE_OPERATOR, sc.init_room, &c, &err));
    bopt.fingerprint = FP;
    bopt.token = token;
    bopt.token_len = strlen(token);
    bopt.jwks = jwks;
    bopt.jwks_len = strlen(jwks);
    ck_ok1(ct_bootstrap_conn(sc.ctx, tapped(sc.ctx, c), &bopt, &creds, &err));
    pthread_join(th, NULL);
    ck_assert_int_eq(sc.bridge_rc, CT_OK);
    size_t after_bootstrap = g_tap.len;
    ck_assert_uint_gt(after_bootstrap, 1000);

    /* the operational session through the beacon, tapped */
    ck_ok1(ct_credentials_tls_config(sc.ctx, creds, &ocfg, NULL));
    ck_assert_int_eq(pthread_create(&th, NULL, bridge_op, &sc), 0);
    ck_ok1(ct_beacon_connect(sc.ctx, &sc.bo, CT_ROLE_OPERATOR, ct_credentials_operational_room(creds),
                            &c, &err));
    ck_ok1(ct_tls_wrap(ocfg, tapped(sc.ctx, c), 10000, &tls, &err));
    so.initiator = 0;
    ck_ok1(ct_session_open(sc.ctx, tls, &so, &osess, NULL));
    pthread_join(th, NULL);
    ck_assert_int_eq(sc.bridge_rc, CT_OK);
    for (i = 0; i < 20; i++) {
        ck_ok1(ct_session_request(osess, REQ_MARK, strlen(REQ_MARK), 10000, &resp, &resp_len,
                                 &err));
        ck_assert_uint_eq(resp_len, strlen(RESP_MARK));
        ck_assert(memcmp(resp, RESP_MARK, resp_len) == 0);
        ct_free(resp);
    }
    ck_ok1(ct_session_close(osess, 5000, NULL));
    ck_ok1(ct_session_wait(sc.bridge_sess, 5000, NULL));
    ct_session_free(osess);
    ct_session_free(sc.bridge_sess);
    ck_assert_uint_gt(g_tap.len, after_bootstrap + 2000);

    /* positive controls: ClientHello cleartext is visible to the tap */
    ck_assert_msg(found_str(CT_INIT_PSK_IDENTITY), "control: PSK identity not seen");
    ck_assert_msg(found_str(CT_BROKER_SERVER_NAME), "control: SNI not seen");

    /* the fingerprint, in every spelling */
    ck_assert(!found_str(FP));
    for (i = 0; FP[i]; i++)
        upper[i] = (char)((FP[i] >= 'a' && FP[i] <= 'f') ? FP[i] - 32 : FP[i]);
    upper[i] = 0;
    ck_assert(!found_str(upper));
    {
        uint8_t raw[16];
        char hex[33];
        size_t j = 0;
        for (i = 0; FP[i]; i++)
            if (FP[i] != '-')
                hex[j++] = FP[i];
        hex[j] = 0;
        ck_assert(!found_str(hex));
        ck_ok1(ct_unhex(hex, raw, 16, NULL));
        ck_assert(!found(raw, 16));
        ck_assert(!found(raw, 8));
    }
    /* the PSK */
    ck_ok1(ct_init_psk(FP, &psk, NULL));
    ck_assert(!found(ct_secret_data(psk), ct_secret_len(psk)));
    ck_assert(!found(ct_secret_data(psk), 8));
    ct_secret_free(psk);
    /* private keys: broker (the CSR's key), cluster CA, bridge, issuer */
    assert_key_absent(ct_credentials_key(creds), "broker");
    ca_key = load_store_key(&sc, "ca");
    bridge_key = load_store_key(&sc, "bridge");
    assert_key_absent(ca_key, "cluster CA");
    assert_key_absent(bridge_key, "bridge");
    assert_key_absent(issuer, "issuer");
    /* certificates travel encrypted too (TLS 1.3 and inside the PSK channel) */
    {
        size_t n;
        const uint8_t *der = ct_credentials_cert(creds, &n);
        ck_assert(!found(der, n > 64 ? 64 : n));
        der = ct_credentials_ca(creds, &n);
        ck_assert(!found(der + n - 64, 64)); /* its signature */
    }
    /* the token and the payloads */
    ck_assert(!found_str(token));
    ck_assert(!found(token + strlen(token) - 40, 40)); /* its signature part */
    ck_assert(!found_str("hunter2"));
    ck_assert(!found_str(REQ_MARK));
    ck_assert(!found_str(RESP_MARK));
    ck_assert(!found_str("sk_live_123"));
    ck_assert(!found_str("system:serviceaccount"));

    ct_key_free(ca_key);
    ct_key_free(bridge_key);
    ct_key_free(issuer);
    ct_tls_config_free(ocfg);
    ct_credentials_free(creds);
    ct_secure_wipe(token, strlen(token));
    ct_free(token);
    ct_free(jwks);
    bt_relay_finish(sc.relay);
    bt_pki_free(&sc.pki);
    ct_store_free(sc.store);
    free(g_tap.p);
    ct_ctx_free(sc.ctx);
}
END_TEST

Suite *ct_test_suite(void);
Suite *ct_test_suite(void)
{
    Suite *s = suite_create("tap");
    TCase *tc = tcase_create("tap");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_beacon_sees_nothing);
    suite_add_tcase(s, tc);
    return s;
}
