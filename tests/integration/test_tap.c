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
 *
 * Issue 6 traffic runs over the same tapped session: a pod's read of a
 * known secret through the real broker (ct_broker, HTTPS, forwarding over
 * the session to the bridge's ct_vault_proxy and a fake Vault), a
 * TokenReview of a known pod token through the bridge's real endpoint
 * (ct_review_server, forwarding over the session to the operator), and a
 * migrated Secret with a known value (migrate.put to the bridge's
 * ct_migrate_server). None of the known values, the pod's Vault token, the
 * reviewer token or the fingerprint may appear in what the beacon saw.
 */
#include "beacon_testlib.h"
#include "fake_vault.h"
#include "testutil.h"

#include <curl/curl.h>
#include <jansson.h>

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
/* issue 6 traffic */
#define VAULT_SECRET "BROKER-READ-5e1f-db-password=correct-horse-battery"
#define POD_VAULT_TOKEN "hvs.PODTOKENd41d8cd98f00b204e9800998"
#define POD_JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwczpwb2QtdGFwIn0.UE9ELVNJR05BVFVSRS10YXA"
#define MIGRATE_MARK "MIGRATED-SECRET-9a7c-stripe-key=sk_live_migrated_42"
#define MIGRATE_MARK_B64 "TUlHUkFURUQtU0VDUkVULTlhN2Mtc3RyaXBlLWtleT1za19saXZlX21pZ3JhdGVkXzQy" /* base64 of MIGRATE_MARK */

static ct_router *g_router; /* the bridge's ops (vault.http, broker.cert, migrate.*) */
static ct_session *g_bridge_sess;

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
    if (req_len != strlen(REQ_MARK) || memcmp(req, REQ_MARK, req_len) != 0)
        return ct_router_handle(g_router, FP, s, stream, req, req_len, resp, resp_len, err);
    *resp = (uint8_t *)strdup(RESP_MARK);
    *resp_len = strlen(RESP_MARK);
    return CT_OK;
}

/* The operator's answer to k8s.tokenreview (the API server stands in): the known token only. */
static ct_err op_handler(void *arg, ct_session *s, uint32_t stream, const uint8_t *req,
                         size_t req_len, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    static const char ok[] =
        "{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
        "\"system:serviceaccount:apps:pod-tap\",\"uid\":\"u-tap\",\"groups\":[]},"
        "\"audiences\":[\"vault\"]}}";
    json_t *o = json_loadb((const char *)req, req_len, 0, NULL);
    (void)arg;
    (void)s;
    (void)stream;
    (void)err;
    ck_assert_str_eq(json_string_value(json_object_get(o, "op")), "k8s.tokenreview");
    ck_assert_str_eq(json_string_value(json_object_get(o, "token")), POD_JWT);
    json_decref(o);
    *resp = (uint8_t *)strdup(ok);
    *resp_len = strlen(ok);
    return CT_OK;
}

/* The broker's and the review endpoint's way over the tapped session. */
static ct_err fwd_broker(void *arg, const void *req, size_t len, int timeout_ms, uint8_t **resp,
                         size_t *resp_len, ct_error *err)
{
    return ct_session_request(arg, req, len, timeout_ms, resp, resp_len, err);
}

static ct_err fwd_review(void *arg, const char *fp, const void *req, size_t len, int timeout_ms,
                         uint8_t **resp, size_t *resp_len, ct_error *err)
{
    (void)fp;
    (void)arg;
    return ct_session_request(g_bridge_sess, req, len, timeout_ms, resp, resp_len, err);
}

static int broker_up(void *arg)
{
    (void)arg;
    return 1;
}

typedef struct hbuf {
    char *p;
    size_t n;
} hbuf;

static size_t on_body(char *p, size_t sz, size_t nm, void *u)
{
    hbuf *b = u;
    b->p = realloc(b->p, b->n + sz * nm + 1);
    memcpy(b->p + b->n, p, sz * nm);
    b->n += sz * nm;
    b->p[b->n] = 0;
    return sz * nm;
}

/* One HTTPS call trusting the PEM `ca` (file path or, if it starts with '-', the PEM itself). */
static long https(const char *method, const char *url, const char *ca, const char *hdr,
                  const char *body, char **out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct curl_blob blob;
    hbuf b = {NULL, 0};
    long code = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (ca[0] == '-') {
        blob.data = (void *)(uintptr_t)ca;
        blob.len = strlen(ca);
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    } else {
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    }
    if (hdr)
        h = curl_slist_append(h, hdr);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    *out = b.p;
    return code;
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
        g_bridge_sess = sc->bridge_sess;
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
    fake_vault *fv = NULL;
    ct_vault_proxy *proxy = NULL;
    ct_migrate_server *migrate = NULL;
    char ca_file[512], reviewer[CT_REVIEW_TOKEN_LEN + 8], migrate_b64[128];

    memset(&sc, 0, sizeof sc);
    pthread_mutex_init(&g_tap.mu, NULL);
    sc.ctx = ct_test_ctx();
    ck_ok1(ct_store_new_memory(sc.ctx, &sc.store, NULL));
    ck_ok1(ct_register(sc.ctx, sc.store, FP, NULL, &reg, NULL));
    memcpy(sc.init_room, ct_registration_init_room(reg), 32);
    memcpy(sc.op_room, ct_registration_operational_room(reg), 32);
    ct_registration_free(reg);

    /* the bridge's side of issue 6: Vault (fake) with a known secret, proxy, migration */
    {
        fv_options fo;
        ct_vault_options vo = CT_VAULT_OPTIONS_INIT;
        ct_vault_proxy_options po = CT_VAULT_PROXY_OPTIONS_INIT;
        ct_migrate_server_options mo = CT_MIGRATE_SERVER_OPTIONS_INIT;
        char *b = NULL;
        snprintf(ca_file, sizeof ca_file, "%s/tls/ca.pem", getenv("CT_TEST_FIXTURES"));
        memset(&fo, 0, sizeof fo);
        fo.mount = "secret";
        fv = fake_vault_start(&fo);
        ck_assert_ptr_nonnull(fv);
        fake_vault_add_token(fv, "root-token", 1);
        fake_vault_add_token(fv, POD_VAULT_TOKEN, 1);
        {
            char url[256];
            snprintf(url, sizeof url, "%s/v1/secret/data/app/db", fake_vault_addr(fv));
            ck_assert_int_eq(https("POST", url, ca_file, "X-Vault-Token: root-token",
                                   "{\"data\":{\"password\":\"" VAULT_SECRET "\"}}", &b), 200);
            free(b);
        }
        vo.address = fake_vault_addr(fv);
        vo.ca_file = ca_file;
        po.vault = &vo;
        po.store = sc.store;
        ck_ok1(ct_vault_proxy_new(sc.ctx, &po, &proxy, NULL));
        mo.store = sc.store;
        ck_ok1(ct_migrate_server_new(&mo, &migrate, NULL));
        ck_ok1(ct_router_new(&g_router, NULL));
        ck_ok1(ct_router_add(g_router, "vault.http", ct_vault_proxy_http, proxy, NULL));
        ck_ok1(ct_router_add(g_router, "broker.cert", ct_vault_proxy_cert, proxy, NULL));
        ck_ok1(ct_migrate_server_routes(migrate, g_router, NULL));
    }

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
    so.handler = op_handler;
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
    size_t before_issue6 = g_tap.len;

    /* a pod reads a known secret through the broker -> session -> proxy -> Vault */
    {
        ct_broker_options bro = CT_BROKER_OPTIONS_INIT;
        ct_broker *br = NULL;
        char url[256], *body = NULL, *ca_pem = NULL;
        long code;
        bro.forward = fwd_broker;
        bro.forward_arg = osess;
        bro.up = broker_up;
        bro.host = "127.0.0.1";
        ck_ok1(ct_broker_new(sc.ctx, &bro, &br, NULL));
        ck_ok1(ct_broker_start(br, 15000, NULL)); /* its certificate via broker.cert */
        ck_ok1(ct_broker_ca_pem(br, &ca_pem, NULL));
        snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/secret/data/app/db",
                 (unsigned)ct_broker_port(br));
        code = https("GET", url, ca_pem, "X-Vault-Token: " POD_VAULT_TOKEN, NULL, &body);
        ck_assert_int_eq(code, 200);
        ck_assert_ptr_nonnull(strstr(body, VAULT_SECRET)); /* the pod got it */
        free(body);
        ct_free(ca_pem);
        ct_broker_free(br);
    }
    /* Vault's Kubernetes auth reviews a known pod token through the bridge's endpoint */
    {
        ct_review_options rvo = CT_REVIEW_OPTIONS_INIT;
        ct_review_server *rs = NULL;
        ct_secret *rtok = NULL;
        char url[256], hdr[160], *body = NULL;
        long code;
        rvo.store = sc.store;
        rvo.fingerprint = FP;
        rvo.forward = fwd_review;
        ck_ok1(ct_review_server_start(sc.ctx, &rvo, &rs, NULL));
        ck_ok1(ct_review_token(sc.ctx, sc.store, FP, 0, &rtok, NULL));
        snprintf(reviewer, sizeof reviewer, "%.*s", (int)ct_secret_len(rtok),
                 (const char *)ct_secret_data(rtok));
        ct_secret_free(rtok);
        snprintf(url, sizeof url, "%s" CT_REVIEW_PATH, ct_review_server_url(rs));
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", reviewer);
        code = https("POST", url, ct_review_server_ca_pem(rs), hdr,
                     "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\","
                     "\"spec\":{\"token\":\"" POD_JWT "\",\"audiences\":[\"vault\"]}}",
                     &body);
        ck_assert_int_eq(code, 201);
        ck_assert_ptr_nonnull(strstr(body, "\"authenticated\":true"));
        free(body);
        ct_review_server_free(rs);
    }
    /* a Secret migrated with a known value: put, read back */
    {
        char req[512], b64[128];
        uint8_t *r = NULL;
        size_t rl = 0;
        snprintf(b64, sizeof b64, "%s", MIGRATE_MARK_B64);
        snprintf(migrate_b64, sizeof migrate_b64, "%s", b64);
        snprintf(req, sizeof req,
                 "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"apps\",\"name\":"
                 "\"stripe\",\"uid\":\"u-7\",\"resourceVersion\":\"42\",\"type\":\"Opaque\","
                 "\"labels\":{},\"data\":{\"key\":\"%s\"}}}", b64);
        ck_ok1(ct_session_request(osess, req, strlen(req), 10000, &r, &rl, NULL));
        ct_free(r);
        snprintf(req, sizeof req,
                 "{\"op\":\"migrate.get\",\"namespace\":\"apps\",\"name\":\"stripe\"}");
        ck_ok1(ct_session_request(osess, req, strlen(req), 10000, &r, &rl, NULL));
        ck_assert_ptr_nonnull(memmem(r, rl, b64, strlen(b64)));
        ct_free(r);
    }
    ck_assert_uint_gt(g_tap.len, before_issue6 + 3000);

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
    /* issue 6: the broker read, the review, the migrated Secret */
    ck_assert(!found_str(VAULT_SECRET));
    ck_assert(!found_str("correct-horse-battery"));
    ck_assert(!found_str(POD_VAULT_TOKEN));
    ck_assert(!found_str(POD_JWT));
    ck_assert(!found(POD_JWT + strlen(POD_JWT) - 24, 24));
    ck_assert(!found_str("pod-tap"));
    ck_assert(strlen(reviewer) == CT_REVIEW_TOKEN_LEN);
    ck_assert(!found_str(reviewer));
    ck_assert(!found(reviewer, 16));
    ck_assert(!found_str(MIGRATE_MARK));
    ck_assert(!found_str("sk_live_migrated_42"));
    ck_assert(!found_str(migrate_b64));
    ck_assert(!found_str("stripe"));

    ct_key_free(ca_key);
    ct_key_free(bridge_key);
    ct_key_free(issuer);
    ct_tls_config_free(ocfg);
    ct_credentials_free(creds);
    ct_secure_wipe(token, strlen(token));
    ct_free(token);
    ct_free(jwks);
    ct_router_free(g_router);
    ct_vault_proxy_free(proxy);
    ct_migrate_server_free(migrate);
    fake_vault_stop(fv);
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
