/*
 * test_tls.c - TLS 1.3 over ct_conn: configurations, mTLS, pins, PSK,
 * failure mapping, timeouts, half-close, nesting and bulk transfer. The
 * server side of every handshake runs in its own thread.
 *
 * The library is tested through its API only; wolfSSL is used directly just
 * for hostile or foreign peers (a psk_ke-only client, a client trying to
 * resume, a server that issues no tickets).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

/* The library prefers AES-GCM when wolfSSL has AES-NI, else ChaCha20. */
#ifdef WOLFSSL_AESNI
#define PREFERRED_SUITE "TLS13-AES128-GCM-SHA256"
#else
#define PREFERRED_SUITE "TLS13-CHACHA20-POLY1305-SHA256"
#endif

#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../conformance/factories_tls.h"
#include "testutil.h"

#define SMALL_BUF 4096 /* pipe capacity for the would-block paths */

/* What a TLS session runs over. */
enum link { LINK_PIPE, LINK_PIPE_SMALL, LINK_TCP };

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Time scale: valgrind runs crypto 20-50x slower. */
static int SC(int ms)
{
    return ct_test_under_valgrind() ? ms * 20 : ms;
}

static uint8_t *fx_read(const char *name, size_t *len)
{
    const char *dir = getenv("CT_TEST_FIXTURES");
    char path[1024];
    FILE *f;
    uint8_t *buf;
    long n;

    ck_assert_msg(dir != NULL, "CT_TEST_FIXTURES is not set");
    snprintf(path, sizeof path, "%s/tls/%s", dir, name);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    ck_assert(n > 0 && n < (1 << 20));
    buf = malloc((size_t)n);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static char *fx_path(const char *name)
{
    const char *dir = getenv("CT_TEST_FIXTURES");
    char *p = malloc(1024);
    ck_assert(dir != NULL && p != NULL);
    snprintf(p, 1024, "%s/tls/%s", dir, name);
    return p;
}

/* What a test wants in a configuration (fixture file names). */
typedef struct spec {
    ct_tls_role role;
    uint32_t flags;
    const char *cert, *key, *ca, *ca_file;
    const char *server_name;
    const char *pin_file;        /* 32-byte pin fixture */
    const uint8_t *pin;          /* or explicit bytes */
    const char *psk, *psk_id;    /* PSK as a string */
    int handshake_timeout_ms;
} spec;

static ct_err make_cfg(ct_ctx *ctx, const spec *s, ct_tls_config **out, ct_error *err)
{
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    uint8_t *cert = NULL, *key = NULL, *ca = NULL, *pin = NULL;
    size_t cert_len = 0, key_len = 0, ca_len = 0, pin_len = 0;
    ct_secret *ks = NULL, *psk = NULL;
    char *ca_file = NULL;
    ct_err rc;

    o.role = s->role;
    o.flags = s->flags;
    if (s->cert) {
        cert = fx_read(s->cert, &cert_len);
        o.cert = cert;
        o.cert_len = cert_len;
    }
    if (s->key) {
        key = fx_read(s->key, &key_len);
        ck_assert(ct_secret_from(key, key_len, &ks, NULL) == CT_OK);
        o.key = ks;
    }
    if (s->ca) {
        ca = fx_read(s->ca, &ca_len);
        o.ca = ca;
        o.ca_len = ca_len;
    }
    if (s->ca_file) {
        ca_file = fx_path(s->ca_file);
        o.ca_file = ca_file;
    }
    o.server_name = s->server_name;
    if (s->pin_file) {
        pin = fx_read(s->pin_file, &pin_len);
        ck_assert(pin_len == 32);
        o.pin_sha256 = pin;
    } else if (s->pin) {
        o.pin_sha256 = s->pin;
    }
    if (s->psk) {
        ck_assert(ct_secret_from(s->psk, strlen(s->psk), &psk, NULL) == CT_OK);
        o.psk = psk;
        o.psk_identity = s->psk_id;
    }
    o.handshake_timeout_ms = s->handshake_timeout_ms;
    rc = ct_tls_config_new(ctx, &o, out, err);
    free(cert);
    if (key) {
        ct_secure_wipe(key, key_len);
        free(key);
    }
    free(ca);
    free(pin);
    free(ca_file);
    ct_secret_free(ks);
    ct_secret_free(psk);
    return rc;
}

static ct_tls_config *cfg_ok(ct_ctx *ctx, const spec *s)
{
    ct_tls_config *cfg = NULL;
    ct_error err;
    ck_ok(make_cfg(ctx, s, &cfg, &err), &err);
    return cfg;
}

static const spec SERVER_MTLS = {CT_TLS_SERVER, 0, "server.pem", "server-key.pem", "ca.pem",
                                 NULL, NULL, NULL, NULL, NULL, NULL, 0};
static const spec PSK_CLIENT = {CT_TLS_CLIENT, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                "correct horse battery staple", "relay-1", 0};
static const spec PSK_SERVER = {CT_TLS_SERVER, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                "correct horse battery staple", "relay-1", 0};
static const spec CLIENT_MTLS = {CT_TLS_CLIENT, 0, "client.pem", "client-key.pem", "ca.pem",
                                 NULL, "localhost", NULL, NULL, NULL, NULL, 0};

/* ------------------------------------------------------------------ */
/* Peers: one side of a connection, run in a thread or inline           */

typedef struct peer peer;
struct peer {
    ct_tls_config *cfg;
    ct_conn *inner;    /* handed to ct_tls_wrap */
    int timeout_ms;
    void (*action)(peer *); /* after a successful handshake */
    ct_conn *conn;     /* result of the wrap (freed by run_peer unless keep) */
    int keep;
    ct_err rc;
    ct_error err;
    int64_t elapsed_ms;
    /* action results */
    ct_err arc;
    size_t bytes;
    uint32_t sum;
    int ok;
    uint8_t *der;      /* peer certificate seen by the action */
    size_t der_len;
    ct_err cert_rc;
    pthread_t th;
};

static void *run_peer(void *arg)
{
    peer *p = arg;
    int64_t t0 = now_ms();
    p->rc = ct_tls_wrap(p->cfg, p->inner, p->timeout_ms, &p->conn, &p->err);
    p->inner = NULL;
    p->elapsed_ms = now_ms() - t0;
    if (p->rc == CT_OK && p->action)
        p->action(p);
    if (!p->keep) {
        ct_conn_free(p->conn);
        p->conn = NULL;
    }
    return NULL;
}

static void *run_peer_thread(void *arg)
{
    run_peer(arg);
    ct_thread_cleanup(); /* the per-thread FP_ECC cache (see tls_conn.c) */
    return NULL;
}

static void start_peer(peer *p)
{
    ck_assert(pthread_create(&p->th, NULL, run_peer_thread, p) == 0);
}

static void join_peer(peer *p)
{
    ck_assert(pthread_join(p->th, NULL) == 0);
}

/* A connected TCP pair over 127.0.0.1 (the built-in transport). */
static void tcp_pair(ct_ctx *ctx, ct_conn **client, ct_conn **server)
{
    ct_transport *t = NULL;
    ct_listener *l = NULL;
    ct_error err;
    ck_ok(ct_transport_new_tcp(ctx, &t, &err), &err);
    ck_ok(ct_transport_listen(t, "127.0.0.1", 0, &l, &err), &err);
    ck_ok(ct_transport_dial(t, "127.0.0.1", ct_listener_port(l), SC(5000), client, &err), &err);
    ck_ok(ct_listener_accept(l, SC(5000), server, &err), &err);
    ct_listener_free(l);
    ct_transport_free(t);
}

static void make_link(ct_ctx *ctx, enum link k, ct_conn **a, ct_conn **b)
{
    ct_error err;
    if (k == LINK_TCP)
        tcp_pair(ctx, a, b);
    else
        ck_ok(ct_pipe_pair(ctx, k == LINK_PIPE_SMALL ? SMALL_BUF : 0, a, b, &err), &err);
}

/*
 * Starts the server (a thread) and runs the client handshake here over a new
 * link. The caller joins the server.
 */
static void pair_start(ct_ctx *ctx, peer *c, peer *s, enum link k)
{
    make_link(ctx, k, &c->inner, &s->inner);
    start_peer(s);
    run_peer(c);
}

/* Handshakes client (this thread) and server (a thread) over a new pipe. */
static void handshake_pair(ct_ctx *ctx, peer *c, peer *s)
{
    pair_start(ctx, c, s, LINK_PIPE);
    join_peer(s);
}

static uint32_t fnv(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Server action: echo until the client's end of stream, then close. */
static void act_echo(peer *p)
{
    uint8_t *buf = malloc(65536);
    ck_assert(buf != NULL);
    p->arc = CT_OK;
    for (;;) {
        size_t got = 0;
        ct_err rc = ct_conn_recv(p->conn, buf, 65536, &got, SC(10000), &p->err);
        if (rc == CT_E_CLOSED)
            break;
        if (rc != CT_OK) {
            p->arc = rc;
            break;
        }
        p->bytes += got;
        rc = ct_conn_send_all(p->conn, buf, got, NULL, SC(10000), &p->err);
        if (rc != CT_OK) {
            p->arc = rc;
            break;
        }
    }
    if (p->arc == CT_OK)
        p->arc = ct_conn_shutdown_write(p->conn, SC(5000), &p->err);
    free(buf);
}

/* Client side of the echo: `total` bytes in 16 KiB lock-step chunks. */
static void echo_check(ct_conn *c, size_t total)
{
    uint8_t *out = malloc(16384), *in = malloc(16384);
    uint32_t hs = 2166136261u, hr = 2166136261u;
    size_t done = 0;
    uint8_t x = 1;
    ct_error err;

    ck_assert(out && in);
    while (done < total) {
        size_t n = total - done < 16384 ? total - done : 16384;
        for (size_t i = 0; i < n; i++) {
            x = (uint8_t)(x * 13 + 7);
            out[i] = x;
        }
        hs = fnv(hs, out, n);
        ck_ok(ct_conn_send_all(c, out, n, NULL, SC(10000), &err), &err);
        ck_ok(ct_conn_recv_exact(c, in, n, NULL, SC(10000), &err), &err);
        hr = fnv(hr, in, n);
        done += n;
    }
    ck_assert_uint_eq(hs, hr);
    ck_ok(ct_conn_shutdown_write(c, SC(5000), &err), &err);
    ck_err(ct_conn_recv(c, in, 16, NULL, SC(5000), &err), CT_E_CLOSED, &err);
    free(out);
    free(in);
}

static void free_cfgs(ct_tls_config *a, ct_tls_config *b)
{
    ct_tls_config_free(a);
    ct_tls_config_free(b);
}

/* Runs a handshake expected to fail on the client with `want`. */
static void expect_client_fail(const spec *cs, const spec *ss, ct_err want, peer *out_s,
                               peer *out_c)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    c.cfg = cfg_ok(ctx, cs);
    s.cfg = cfg_ok(ctx, ss);
    c.timeout_ms = s.timeout_ms = SC(5000);
    handshake_pair(ctx, &c, &s);
    ck_assert_msg(c.rc == want, "client: %s (want %s): %s", ct_err_name(c.rc), ct_err_name(want),
                  c.err.message);
    ck_assert_msg(c.elapsed_ms < SC(3000), "client took %lld ms", (long long)c.elapsed_ms);
    if (out_s)
        *out_s = s;
    if (out_c)
        *out_c = c;
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}

/* ------------------------------------------------------------------ */
/* Configuration checks                                                 */

START_TEST(config_requires_verification)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_config *cfg = NULL;
    ct_error err;
    spec s;

    /* A client with no CA, pin or PSK cannot verify its server. */
    s = (spec){CT_TLS_CLIENT, 0, "client.pem", "client-key.pem", NULL, NULL, "localhost",
               NULL, NULL, NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    ck_assert(strstr(err.message, "verify") != NULL);
    ck_assert(cfg == NULL);
    /* CA-based verification needs the expected name. */
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, "ca.pem", NULL, NULL, NULL, NULL, NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    ck_assert(strstr(err.message, "server_name") != NULL);
    /* A server without client CA must opt into anonymous clients. */
    s = (spec){CT_TLS_SERVER, 0, "server.pem", "server-key.pem", NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    ck_assert(strstr(err.message, "ANONYMOUS") != NULL);
    s.flags = CT_TLS_F_ANONYMOUS_CLIENTS;
    ck_ok(make_cfg(ctx, &s, &cfg, &err), &err);
    ct_tls_config_free(cfg);
    cfg = NULL;
    /* A server needs a certificate (or a PSK). */
    s = (spec){CT_TLS_SERVER, 0, NULL, NULL, "ca.pem", NULL, NULL, NULL, NULL, NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    /* PSK never mixes with certificates. */
    s = (spec){CT_TLS_CLIENT, 0, "client.pem", "client-key.pem", NULL, NULL, NULL, NULL, NULL,
               "0123456789abcdef0123", "relay", 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, "ca.pem", NULL, "localhost", NULL, NULL,
               "0123456789abcdef0123", "relay", 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    s = (spec){CT_TLS_SERVER, 0, "server.pem", "server-key.pem", NULL, NULL, NULL, NULL, NULL,
               "0123456789abcdef0123", "relay", 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    /* Short PSK, bad identity. */
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "short", "relay", 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               "0123456789abcdef0123", "bad id", 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    /* Key not matching the certificate. */
    s = (spec){CT_TLS_SERVER, 0, "server.pem", "client-key.pem", "ca.pem", NULL, NULL, NULL,
               NULL, NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_CERT, &err);
    /* Garbage certificate, missing CA file. */
    s = (spec){CT_TLS_SERVER, 0, "gen.sh", "server-key.pem", "ca.pem", NULL, NULL, NULL, NULL,
               NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_CERT, &err);
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, NULL, "no-such-ca.pem", "localhost", NULL, NULL,
               NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_NOTFOUND, &err);
    /* Role-specific options on the wrong role. */
    s = (spec){CT_TLS_CLIENT, CT_TLS_F_ANONYMOUS_CLIENTS, NULL, NULL, "ca.pem", NULL,
               "localhost", NULL, NULL, NULL, NULL, 0};
    ck_err(make_cfg(ctx, &s, &cfg, &err), CT_E_INVALID, &err);
    ck_assert(cfg == NULL);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(config_versions_and_formats)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    ct_tls_config *cfg = NULL;
    ct_error err;
    spec s;

    o.version = 99;
    o.role = CT_TLS_CLIENT;
    ck_err(ct_tls_config_new(ctx, &o, &cfg, &err), CT_E_VERSION, &err);
    ck_err(ct_tls_config_new(ctx, NULL, &cfg, &err), CT_E_INVALID, &err);
    o.version = CT_TLS_OPTIONS_VERSION;
    o.role = (ct_tls_role)7;
    ck_err(ct_tls_config_new(ctx, &o, &cfg, &err), CT_E_INVALID, &err);
    ct_tls_config_free(NULL);
    /* DER certificate, key and CA; CA from a file; the system bundle. */
    s = (spec){CT_TLS_CLIENT, 0, "client.der", "client-key.der", "ca.der", NULL, "localhost",
               NULL, NULL, NULL, NULL, 0};
    ct_tls_config_free(cfg_ok(ctx, &s));
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, NULL, "ca.pem", "localhost", NULL, NULL, NULL,
               NULL, 0};
    ct_tls_config_free(cfg_ok(ctx, &s));
    s = (spec){CT_TLS_CLIENT, CT_TLS_F_SYSTEM_CA, NULL, NULL, NULL, NULL, "example.org", NULL,
               NULL, NULL, NULL, 0};
    if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0)
        ct_tls_config_free(cfg_ok(ctx, &s));
    /* Pin alone is enough for a client (server_name optional). */
    s = (spec){CT_TLS_CLIENT, 0, NULL, NULL, NULL, NULL, NULL, "server-spki.sha256", NULL, NULL,
               NULL, 0};
    ct_tls_config_free(cfg_ok(ctx, &s));
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(not_a_tls_conn)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *a = NULL, *b = NULL, *w = (ct_conn *)1;
    uint8_t *der = (uint8_t *)1;
    size_t len = 1;
    ct_error err;

    ck_ok(ct_pipe_pair(ctx, 0, &a, &b, &err), &err);
    ck_assert(ct_tls_cipher(a) == NULL);
    ck_assert(ct_tls_cipher(NULL) == NULL);
    ck_err(ct_tls_peer_cert(a, &der, &len, &err), CT_E_INVALID, &err);
    ck_assert(der == NULL && len == 0);
    /* wrap with NULL config still takes (frees) inner. */
    ck_err(ct_tls_wrap(NULL, a, 1000, &w, &err), CT_E_INVALID, &err);
    ck_assert(w == NULL);
    ct_conn_free(b);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Handshakes that succeed                                              */


/* Server action: remember the client's certificate, then echo. */
static void act_cert_echo(peer *p)
{
    p->cert_rc = ct_tls_peer_cert(p->conn, &p->der, &p->der_len, NULL);
    act_echo(p);
}

static void expect_ok(const peer *p, const char *who)
{
    ck_assert_msg(p->rc == CT_OK, "%s: %s: %s", who, ct_err_name(p->rc), p->err.message);
}

/* A full mTLS session: handshake, certificates, cipher, echo, clean end. */
static void mtls_session(const spec *cs, const spec *ss, size_t echo_bytes)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    uint8_t *der = NULL;
    size_t len = 0;
    ct_error err;

    c.cfg = cfg_ok(ctx, cs);
    s.cfg = cfg_ok(ctx, ss);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = 1;
    s.action = act_cert_echo;
    pair_start(ctx, &c, &s, LINK_PIPE);
    expect_ok(&c, "client");
    ck_assert_str_eq(ct_tls_cipher(c.conn), PREFERRED_SUITE);
    ck_ok(ct_tls_peer_cert(c.conn, &der, &len, &err), &err);
    ck_assert(len > 100 && der[0] == 0x30);
    ct_free(der);
    ck_assert_int_eq(ct_conn_get_fd(c.conn), -1); /* the pipe's */
    ck_assert_uint_eq(ct_conn_pending(c.conn), 0);
    echo_check(c.conn, echo_bytes);
    ct_conn_free(c.conn);
    join_peer(&s);
    expect_ok(&s, "server");
    ck_assert_msg(s.arc == CT_OK, "server echo: %s: %s", ct_err_name(s.arc), s.err.message);
    ck_assert_uint_eq(s.bytes, echo_bytes);
    if (cs->cert) {
        size_t want_len;
        uint8_t *want;
        ck_assert_int_eq(s.cert_rc, CT_OK);
        if (strcmp(cs->cert, "client.pem") == 0) {
            want = fx_read("client.der", &want_len);
            ck_assert(s.der_len == want_len && memcmp(s.der, want, want_len) == 0);
            free(want);
        }
    } else {
        ck_assert_int_eq(s.cert_rc, CT_E_NOTFOUND);
    }
    ct_free(s.der);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}

/*
 * A thread that made mTLS handshakes keeps no ECC tables. Debian's wolfSSL
 * (FP_ECC, no SP math) would keep a fixed-point cache entry of ~820 KB for
 * every point the thread multiplied, and a computed table for the base point:
 * several MB in each waiting thread of the bridge (wolf.h, tls_ecc.c).
 * Measured with glibc's malloc counters in this thread, before it frees its
 * wolfSSL thread state; allocators that do not feed those counters (ASan,
 * valgrind) are detected and said so, since there is nothing to measure.
 */
typedef struct tables_run {
    size_t before, after;
    int measurable;
} tables_run;

static size_t in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static void *tables_thread(void *arg)
{
    tables_run *r = arg;
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_config *ccfg = cfg_ok(ctx, &CLIENT_MTLS), *scfg = cfg_ok(ctx, &SERVER_MTLS);
    size_t m0 = in_use();
    void *probe[16];

    for (int i = 0; i < 16; i++) { /* 1 MiB in pieces an arena serves */
        probe[i] = malloc(64 * 1024);
        ck_assert_ptr_nonnull(probe[i]);
        memset(probe[i], 1, 64 * 1024);
    }
    r->measurable = in_use() >= m0 + (1 << 20);
    for (int i = 0; i < 16; i++)
        free(probe[i]);
    r->before = in_use();
    for (int i = 0; i < 3; i++) {
        peer c = {0}, s = {0};
        c.cfg = ccfg;
        s.cfg = scfg;
        c.timeout_ms = s.timeout_ms = SC(5000);
        handshake_pair(ctx, &c, &s);
        expect_ok(&c, "client");
        expect_ok(&s, "server");
    }
    r->after = in_use();
    free_cfgs(ccfg, scfg);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(handshakes_keep_no_ecc_tables)
{
    tables_run r = {0};
    pthread_t th;
    ck_assert(pthread_create(&th, NULL, tables_thread, &r) == 0);
    ck_assert(pthread_join(th, NULL) == 0);
    if (!r.measurable) {
        fprintf(stderr, "handshakes_keep_no_ecc_tables: this allocator does not feed "
                        "mallinfo2 (sanitizer or valgrind): not measured here\n");
        return;
    }
    fprintf(stderr, "handshakes_keep_no_ecc_tables: %zu bytes still held after 3 handshakes\n",
            r.after > r.before ? r.after - r.before : 0);
    ck_assert_msg(r.after < r.before + 256 * 1024,
                  "the handshaking thread still holds %zu bytes (ECC tables?)",
                  r.after - r.before);
}
END_TEST

START_TEST(mtls_echo)
{
    mtls_session(&CLIENT_MTLS, &SERVER_MTLS, 256 * 1024);
}
END_TEST

/* Collects the "tls.handshake" debug lines. */
typedef struct logbuf {
    pthread_mutex_t mu;
    char text[4096];
} logbuf;

static void log_capture(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    logbuf *lb = user;
    (void)level;
    if (strcmp(msgid, "tls.handshake") != 0)
        return;
    pthread_mutex_lock(&lb->mu);
    strncat(lb->text, msg, sizeof lb->text - strlen(lb->text) - 2);
    strcat(lb->text, "\n");
    pthread_mutex_unlock(&lb->mu);
}

START_TEST(negotiated_parameters)
{
    /* ChaCha20-Poly1305 and X25519 first, for certificates and PSK alike. */
    static logbuf lb = {PTHREAD_MUTEX_INITIALIZER, ""};
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    peer c = {0}, s = {0};
    const spec *pairs[2][2] = {{&CLIENT_MTLS, &SERVER_MTLS}, {&PSK_CLIENT, &PSK_SERVER}};
    ct_error err;

    o.log = log_capture;
    o.log_user = &lb;
    o.log_level = CT_LOG_DEBUG;
    ck_ok(ct_ctx_new(&o, &ctx, &err), &err);
    for (int i = 0; i < 2; i++) {
        memset(&c, 0, sizeof c);
        memset(&s, 0, sizeof s);
        lb.text[0] = 0;
        c.cfg = cfg_ok(ctx, pairs[i][0]);
        s.cfg = cfg_ok(ctx, pairs[i][1]);
        c.timeout_ms = s.timeout_ms = SC(5000);
        handshake_pair(ctx, &c, &s);
        expect_ok(&c, "client");
        expect_ok(&s, "server");
        ck_assert_msg(strstr(lb.text, "client handshake done: " PREFERRED_SUITE ", "
                                      "X25519") != NULL,
                      "%s", lb.text);
        ck_assert_msg(strstr(lb.text, "server handshake done: " PREFERRED_SUITE ", "
                                      "X25519") != NULL,
                      "%s", lb.text);
        free_cfgs(c.cfg, s.cfg);
    }
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(mtls_der_inputs_and_names)
{
    spec c = {CT_TLS_CLIENT, 0, "client.der", "client-key.der", "ca.der", NULL, "broker.local",
              NULL, NULL, NULL, NULL, 0};
    mtls_session(&c, &SERVER_MTLS, 1000);
    c.server_name = "127.0.0.1"; /* IP SAN */
    mtls_session(&c, &SERVER_MTLS, 1000);
    c.server_name = "::1";
    mtls_session(&c, &SERVER_MTLS, 1000);
}
END_TEST

START_TEST(anonymous_clients)
{
    spec s = {CT_TLS_SERVER, CT_TLS_F_ANONYMOUS_CLIENTS, "server.pem", "server-key.pem", NULL,
              NULL, NULL, NULL, NULL, NULL, NULL, 0};
    spec c = {CT_TLS_CLIENT, 0, NULL, NULL, "ca.pem", NULL, "localhost", NULL, NULL, NULL, NULL,
              0};
    mtls_session(&c, &s, 5000);
    /* Anonymous allowed, but a presented certificate is verified. */
    s.ca = "ca.pem";
    mtls_session(&c, &s, 5000);
    mtls_session(&CLIENT_MTLS, &s, 5000);
}
END_TEST

START_TEST(chain_and_ed25519_servers)
{
    spec s = {CT_TLS_SERVER, 0, "chain-server-fullchain.pem", "chain-server-key.pem", "ca.pem",
              NULL, NULL, NULL, NULL, NULL, NULL, 0};
    spec c = CLIENT_MTLS;
    mtls_session(&c, &s, 1000);
    /* Pin only (no CA): the leaf's key is what counts, not the chain. */
    c.ca = NULL;
    c.pin_file = "chain-server-spki.sha256";
    mtls_session(&c, &s, 1000);
    /* Ed25519 leaf: the pin and the CA path both work. */
    s.cert = "ed25519-server.pem";
    s.key = "ed25519-server-key.pem";
    c.pin_file = "ed25519-server-spki.sha256";
    mtls_session(&c, &s, 1000);
    c.pin_file = NULL;
    c.ca = "ca.pem";
    mtls_session(&c, &s, 1000);
}
END_TEST

START_TEST(pin_right_and_wrong)
{
    spec c = {CT_TLS_CLIENT, 0, "client.pem", "client-key.pem", NULL, NULL, NULL,
              "server-spki.sha256", NULL, NULL, NULL, 0};
    uint8_t wrong[32];
    peer s;

    mtls_session(&c, &SERVER_MTLS, 1000);
    /* Pin plus CA: both must hold. */
    c.ca = "ca.pem";
    c.server_name = "localhost";
    mtls_session(&c, &SERVER_MTLS, 1000);
    /* A wrong pin fails, with and without a CA. */
    memset(wrong, 0x5a, sizeof wrong);
    c.pin_file = NULL;
    c.pin = wrong;
    expect_client_fail(&c, &SERVER_MTLS, CT_E_CERT, &s, NULL);
    ck_assert(s.rc != CT_OK);
    c.ca = NULL;
    expect_client_fail(&c, &SERVER_MTLS, CT_E_CERT, NULL, NULL);
    /* The right pin of another key (the foreign server's key differs). */
    {
        spec fs = SERVER_MTLS;
        fs.cert = "foreign-server.pem";
        fs.key = "foreign-server-key.pem";
        c.pin = NULL;
        c.pin_file = "server-spki.sha256";
        expect_client_fail(&c, &fs, CT_E_CERT, NULL, NULL);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Handshakes that must fail                                            */

START_TEST(foreign_server_cert)
{
    spec s = SERVER_MTLS;
    peer sp;
    s.cert = "foreign-server.pem";
    s.key = "foreign-server-key.pem";
    expect_client_fail(&CLIENT_MTLS, &s, CT_E_CERT, &sp, NULL);
    ck_assert_msg(sp.rc != CT_OK, "server accepted");
}
END_TEST

START_TEST(expired_server_cert)
{
    spec s = SERVER_MTLS;
    peer c;
    s.cert = "expired-server.pem";
    s.key = "expired-server-key.pem";
    expect_client_fail(&CLIENT_MTLS, &s, CT_E_CERT, NULL, &c);
    ck_assert_msg(c.err.os_error == -151, "os_error %d: %s", c.err.os_error, c.err.message);
}
END_TEST

START_TEST(wrong_server_name)
{
    spec c = CLIENT_MTLS;
    peer cp;
    c.server_name = "other.local";
    expect_client_fail(&c, &SERVER_MTLS, CT_E_CERT, NULL, &cp);
    ck_assert_int_eq(cp.err.os_error, -322);
    c.server_name = "127.0.0.2";
    expect_client_fail(&c, &SERVER_MTLS, CT_E_CERT, NULL, NULL);
    c.server_name = "::2";
    expect_client_fail(&c, &SERVER_MTLS, CT_E_CERT, NULL, NULL);
}
END_TEST

/* The client's ct_tls_wrap itself reports a rejected client certificate. */
static void client_rejected(const spec *cs, const spec *ss, ct_err server_want)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    c.cfg = cfg_ok(ctx, cs);
    s.cfg = cfg_ok(ctx, ss);
    c.timeout_ms = s.timeout_ms = SC(5000);
    handshake_pair(ctx, &c, &s);
    ck_assert_msg(s.rc == server_want, "server: %s (want %s): %s", ct_err_name(s.rc),
                  ct_err_name(server_want), s.err.message);
    ck_assert_msg(c.rc == CT_E_AUTH || c.rc == CT_E_CERT || c.rc == CT_E_CLOSED,
                  "client wrap: %s: %s", ct_err_name(c.rc), c.err.message);
    ck_assert_msg(c.elapsed_ms < SC(3000), "client took %lld ms", (long long)c.elapsed_ms);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}

START_TEST(foreign_client_cert)
{
    spec c = CLIENT_MTLS;
    c.cert = "foreign-client.pem";
    c.key = "foreign-client-key.pem";
    client_rejected(&c, &SERVER_MTLS, CT_E_CERT);
}
END_TEST

START_TEST(no_client_cert)
{
    spec c = CLIENT_MTLS;
    c.cert = c.key = NULL;
    client_rejected(&c, &SERVER_MTLS, CT_E_AUTH);
}
END_TEST

START_TEST(eku_misuse)
{
    spec c = CLIENT_MTLS, s = SERVER_MTLS;
    peer cp;
    /* A serverAuth-only certificate presented by a client. */
    c.cert = "serveronly-client.pem";
    c.key = "serveronly-client-key.pem";
    client_rejected(&c, &SERVER_MTLS, CT_E_CERT);
    /* A clientAuth-only certificate (right names) presented by a server. */
    s.cert = "clientonly-server.pem";
    s.key = "clientonly-server-key.pem";
    expect_client_fail(&CLIENT_MTLS, &s, CT_E_CERT, NULL, &cp);
    ck_assert_int_eq(cp.err.os_error, -386);
}
END_TEST

/* ------------------------------------------------------------------ */
/* PSK                                                                  */


START_TEST(psk_ok)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    uint8_t *der = NULL;
    size_t len = 0;
    ct_error err;

    c.cfg = cfg_ok(ctx, &PSK_CLIENT);
    s.cfg = cfg_ok(ctx, &PSK_SERVER);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = 1;
    s.action = act_cert_echo;
    pair_start(ctx, &c, &s, LINK_PIPE);
    /* ct_tls_wrap succeeded, so wolfSSL_get_curve_name() was non-NULL on
     * both sides: (EC)DHE was used (psk_dhe_ke). */
    expect_ok(&c, "client");
    ck_assert_str_eq(ct_tls_cipher(c.conn), PREFERRED_SUITE);
    ck_err(ct_tls_peer_cert(c.conn, &der, &len, &err), CT_E_NOTFOUND, &err);
    echo_check(c.conn, 70000);
    ct_conn_free(c.conn);
    join_peer(&s);
    expect_ok(&s, "server");
    ck_assert_int_eq(s.arc, CT_OK);
    ck_assert_int_eq(s.cert_rc, CT_E_NOTFOUND);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}
END_TEST

/* Both sides fail well before their 5 s timeout. */
static void psk_both_fail(const spec *cs, const spec *ss, ct_err server_want)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    c.cfg = cfg_ok(ctx, cs);
    s.cfg = cfg_ok(ctx, ss);
    c.timeout_ms = s.timeout_ms = SC(5000);
    handshake_pair(ctx, &c, &s);
    ck_assert_msg(c.rc != CT_OK && s.rc != CT_OK, "client %s, server %s", ct_err_name(c.rc),
                  ct_err_name(s.rc));
    if (server_want != CT_OK)
        ck_assert_msg(s.rc == server_want, "server: %s: %s", ct_err_name(s.rc), s.err.message);
    ck_assert_msg(c.elapsed_ms < SC(1500) && s.elapsed_ms < SC(1500),
                  "client %lld ms, server %lld ms", (long long)c.elapsed_ms,
                  (long long)s.elapsed_ms);
    ck_assert_msg(c.rc == CT_E_CLOSED || c.rc == CT_E_AUTH || c.rc == CT_E_TLS ||
                      c.rc == CT_E_RESET,
                  "client: %s: %s", ct_err_name(c.rc), c.err.message);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}

START_TEST(psk_wrong_secret)
{
    spec c = PSK_CLIENT;
    c.psk = "correct horse battery stapler";
    psk_both_fail(&c, &PSK_SERVER, CT_E_AUTH);
}
END_TEST

START_TEST(psk_unknown_identity)
{
    spec c = PSK_CLIENT;
    c.psk_id = "relay-2";
    psk_both_fail(&c, &PSK_SERVER, CT_E_AUTH);
}
END_TEST

START_TEST(psk_client_vs_cert_server)
{
    /* No silent fallback: the server offers a certificate, the PSK client refuses. */
    peer c;
    spec s = {CT_TLS_SERVER, CT_TLS_F_ANONYMOUS_CLIENTS, "server.pem", "server-key.pem", NULL,
              NULL, NULL, NULL, NULL, NULL, NULL, 0};
    expect_client_fail(&PSK_CLIENT, &s, CT_E_AUTH, NULL, &c);
    ck_assert(strstr(c.err.message, "PSK") != NULL);
    expect_client_fail(&PSK_CLIENT, &SERVER_MTLS, CT_E_AUTH, NULL, NULL);
}
END_TEST

/* A wolfSSL client that offers only psk_ke (no key share). */
static const char RAW_PSK[] = "correct horse battery staple";

static unsigned int raw_psk_cb(WOLFSSL *ssl, const char *hint, char *id, unsigned int id_max,
                               unsigned char *key, unsigned int key_max, const char **suite)
{
    (void)ssl;
    (void)hint;
    if (id_max < 8 || key_max < sizeof RAW_PSK - 1)
        return 0;
    memcpy(id, "relay-1", 8);
    memcpy(key, RAW_PSK, sizeof RAW_PSK - 1);
    *suite = PREFERRED_SUITE; /* the suite our PSK server picks */
    return sizeof RAW_PSK - 1;
}

typedef struct raw_client {
    int fd;
    int psk_ke_only;
    const char *cert, *key;
    WOLFSSL_SESSION *session; /* in: resume this; out: the session got */
    int connect_ok, reused, got_byte;
} raw_client;

static void *raw_client_main(void *arg)
{
    raw_client *r = arg;
    WOLFSSL_CTX *wctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    WOLFSSL *ssl;
    char *ca = fx_path("ca.pem");
    unsigned char b;

    wolfSSL_CTX_set_verify(wctx, WOLFSSL_VERIFY_PEER, NULL);
    if (r->psk_ke_only) {
        wolfSSL_CTX_set_psk_client_tls13_callback(wctx, raw_psk_cb);
        wolfSSL_CTX_no_dhe_psk(wctx);
    } else {
        char *c = fx_path(r->cert), *k = fx_path(r->key);
        wolfSSL_CTX_load_verify_locations(wctx, ca, NULL);
        wolfSSL_CTX_use_certificate_file(wctx, c, WOLFSSL_FILETYPE_PEM);
        wolfSSL_CTX_use_PrivateKey_file(wctx, k, WOLFSSL_FILETYPE_PEM);
        free(c);
        free(k);
    }
    ssl = wolfSSL_new(wctx);
    wolfSSL_set_fd(ssl, r->fd);
    if (r->session)
        wolfSSL_set_session(ssl, r->session);
    r->connect_ok = wolfSSL_connect(ssl) == WOLFSSL_SUCCESS;
    r->reused = wolfSSL_session_reused(ssl);
    if (r->connect_ok)
        r->got_byte = wolfSSL_read(ssl, &b, 1) == 1; /* also processes the ticket */
    if (r->session)
        wolfSSL_SESSION_free(r->session);
    r->session = r->connect_ok ? wolfSSL_get1_session(ssl) : NULL;
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(wctx);
    free(ca);
    ct_thread_cleanup();
    return NULL;
}

/* Runs our server against a raw wolfSSL client; returns the server's result. */
static ct_err serve_raw(raw_client *r, const spec *ss, ct_error *err)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_config *cfg = cfg_ok(ctx, ss);
    ct_conn *inner = NULL, *conn = NULL;
    pthread_t th;
    int sv[2];
    ct_err rc;

    ck_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    r->fd = sv[0];
    ck_ok(ct_conn_new_fd(ctx, sv[1], &inner, err), err);
    ck_assert(pthread_create(&th, NULL, raw_client_main, r) == 0);
    rc = ct_tls_wrap(cfg, inner, SC(5000), &conn, err);
    if (rc == CT_OK) {
        ck_ok(ct_conn_send_all(conn, "x", 1, NULL, SC(5000), NULL), NULL);
        ct_conn_free(conn);
    }
    pthread_join(th, NULL);
    close(sv[0]);
    ct_tls_config_free(cfg);
    ct_ctx_free(ctx);
    return rc;
}

START_TEST(psk_ke_refused)
{
    raw_client r = {0};
    ct_error err;
    r.psk_ke_only = 1;
    ck_err(serve_raw(&r, &PSK_SERVER, &err), CT_E_AUTH, &err);
    ck_assert(strstr(err.message, "DHE") != NULL);
    ck_assert(!r.got_byte);
    if (r.session)
        wolfSSL_SESSION_free(r.session);
}
END_TEST

START_TEST(resumption_refused)
{
    raw_client r = {0};
    ct_error err;
    r.cert = "client.pem";
    r.key = "client-key.pem";
    ck_ok(serve_raw(&r, &SERVER_MTLS, &err), &err);
    ck_assert(r.connect_ok && r.got_byte && !r.reused);
    ck_assert(r.session != NULL);
    /* Offer the ticket back: the server does a full handshake instead. */
    ck_ok(serve_raw(&r, &SERVER_MTLS, &err), &err);
    ck_assert(r.connect_ok && r.got_byte);
    ck_assert_int_eq(r.reused, 0);
    wolfSSL_SESSION_free(r.session);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hostile or silent peers                                              */

/* Runs one side of a handshake against a raw socket controlled here. */
static void raw_peer(const spec *sp, const char *garbage, int timeout_ms, ct_err want,
                     int max_ms)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_config *cfg = cfg_ok(ctx, sp);
    ct_conn *inner = NULL, *conn = NULL;
    ct_error err;
    int sv[2];
    int64_t t0;
    ct_err rc;

    ck_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    ck_ok(ct_conn_new_fd(ctx, sv[1], &inner, &err), &err);
    if (garbage)
        ck_assert(write(sv[0], garbage, strlen(garbage)) == (ssize_t)strlen(garbage));
    t0 = now_ms();
    rc = ct_tls_wrap(cfg, inner, timeout_ms, &conn, &err);
    ck_assert_msg(rc == want, "%s (want %s): %s", ct_err_name(rc), ct_err_name(want),
                  err.message);
    ck_assert(conn == NULL);
    ck_assert_msg(now_ms() - t0 <= SC(max_ms), "took %lld ms", (long long)(now_ms() - t0));
    if (want == CT_E_TIMEOUT)
        ck_assert_msg(now_ms() - t0 >= timeout_ms - 20, "returned early");
    close(sv[0]);
    ct_tls_config_free(cfg);
    ct_ctx_free(ctx);
}

START_TEST(handshake_timeout_silent_peer)
{
    raw_peer(&CLIENT_MTLS, NULL, 300, CT_E_TIMEOUT, 1500);
    raw_peer(&SERVER_MTLS, NULL, 300, CT_E_TIMEOUT, 1500);
}
END_TEST

START_TEST(garbage_from_peer)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char bin[512];
    for (size_t i = 0; i < sizeof bin - 1; i++)
        bin[i] = (char)(1 + (i * 37) % 250);
    bin[sizeof bin - 1] = 0;
    raw_peer(&CLIENT_MTLS, http, SC(2000), CT_E_TLS, 1500);
    raw_peer(&SERVER_MTLS, http, SC(2000), CT_E_TLS, 1500);
    raw_peer(&CLIENT_MTLS, bin, SC(2000), CT_E_TLS, 1500);
    raw_peer(&SERVER_MTLS, bin, SC(2000), CT_E_TLS, 1500);
}
END_TEST

/* A foreign (plain wolfSSL) mTLS server that issues no session tickets. */
typedef struct raw_server {
    int fd;
    const char *hello; /* sent right after the handshake, or NULL */
    int accept_ok;
} raw_server;

static void *raw_server_main(void *arg)
{
    raw_server *r = arg;
    WOLFSSL_CTX *wctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
    WOLFSSL *ssl;
    char *ca = fx_path("ca.pem"), *cert = fx_path("server.pem"), *key = fx_path("server-key.pem");
    unsigned char b;

    wolfSSL_CTX_load_verify_locations(wctx, ca, NULL);
    wolfSSL_CTX_use_certificate_file(wctx, cert, WOLFSSL_FILETYPE_PEM);
    wolfSSL_CTX_use_PrivateKey_file(wctx, key, WOLFSSL_FILETYPE_PEM);
    wolfSSL_CTX_set_verify(wctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    wolfSSL_CTX_no_ticket_TLSv13(wctx);
    ssl = wolfSSL_new(wctx);
    wolfSSL_set_fd(ssl, r->fd);
    r->accept_ok = wolfSSL_accept(ssl) == WOLFSSL_SUCCESS;
    if (r->accept_ok && r->hello)
        wolfSSL_write(ssl, r->hello, (int)strlen(r->hello));
    if (r->accept_ok)
        (void)wolfSSL_read(ssl, &b, 1); /* until the client goes away */
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(wctx);
    free(ca);
    free(cert);
    free(key);
    ct_thread_cleanup();
    return NULL;
}

static ct_err dial_raw_server(raw_server *r, int timeout_ms, int64_t *ms, ct_error *err)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_config *cfg = cfg_ok(ctx, &CLIENT_MTLS);
    ct_conn *inner = NULL, *conn = NULL;
    pthread_t th;
    int sv[2];
    int64_t t0;
    ct_err rc;

    ck_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    r->fd = sv[0];
    ck_ok(ct_conn_new_fd(ctx, sv[1], &inner, err), err);
    ck_assert(pthread_create(&th, NULL, raw_server_main, r) == 0);
    t0 = now_ms();
    rc = ct_tls_wrap(cfg, inner, timeout_ms, &conn, err);
    *ms = now_ms() - t0;
    if (rc == CT_OK && r->hello) {
        /* The confirming peek consumed nothing. */
        char buf[32] = {0};
        size_t n = strlen(r->hello);
        ck_assert_uint_ge(ct_conn_pending(conn), 1);
        ck_ok(ct_conn_recv_exact(conn, buf, n, NULL, SC(2000), NULL), NULL);
        ck_assert(memcmp(buf, r->hello, n) == 0);
    }
    ct_conn_free(conn); /* ends the server's read */
    pthread_join(th, NULL);
    close(sv[0]);
    ct_tls_config_free(cfg);
    ct_ctx_free(ctx);
    return rc;
}

START_TEST(foreign_server_without_tickets)
{
    raw_server r = {0};
    ct_error err;
    int64_t ms;
    /* No ticket and silence: the wait for the verdict ends at the deadline. */
    ck_err(dial_raw_server(&r, SC(300), &ms, &err), CT_E_TIMEOUT, &err);
    ck_assert(strstr(err.message, "NewSessionTicket") != NULL);
    ck_assert(r.accept_ok);
    ck_assert(ms >= SC(300) - 20 && ms < SC(2000));
    /* No ticket but data first: the data is the confirmation, and is kept. */
    r.hello = "hello";
    ck_ok(dial_raw_server(&r, SC(3000), &ms, &err), &err);
    ck_assert(r.accept_ok);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Data phase                                                           */

/* Server action: read until close_notify, answer after it, half-close. */
static void act_half_close(peer *p)
{
    char buf[64];
    size_t got = 0, k;
    ct_err rc;
    p->arc = CT_OK;
    for (;;) {
        rc = ct_conn_recv(p->conn, buf + got, sizeof buf - got, &k, SC(5000), &p->err);
        if (rc == CT_E_CLOSED)
            break;
        if (rc != CT_OK) {
            p->arc = rc;
            return;
        }
        got += k;
    }
    p->ok = got == 4 && memcmp(buf, "ping", 4) == 0;
    /* The peer's close_notify does not stop our direction. */
    p->arc = ct_conn_send_all(p->conn, "pong after close_notify", 23, NULL, SC(5000), &p->err);
    if (p->arc == CT_OK)
        p->arc = ct_conn_shutdown_write(p->conn, SC(5000), &p->err);
}

START_TEST(half_close)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    char buf[64];
    size_t got = 0;
    ct_error err;

    c.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    s.cfg = cfg_ok(ctx, &SERVER_MTLS);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = 1;
    s.action = act_half_close;
    pair_start(ctx, &c, &s, LINK_PIPE);
    expect_ok(&c, "client");
    ck_ok(ct_conn_send_all(c.conn, "ping", 4, NULL, SC(5000), &err), &err);
    ck_ok(ct_conn_shutdown_write(c.conn, SC(5000), &err), &err);
    ck_ok(ct_conn_shutdown_write(c.conn, SC(5000), &err), &err); /* idempotent */
    ck_err(ct_conn_send(c.conn, "x", 1, NULL, 1000, &err), CT_E_STATE, &err);
    /* Our close_notify does not stop the peer's direction. */
    ck_ok(ct_conn_recv_exact(c.conn, buf, 23, &got, SC(5000), &err), &err);
    ck_assert(memcmp(buf, "pong after close_notify", 23) == 0);
    ck_err(ct_conn_recv(c.conn, buf, sizeof buf, NULL, SC(5000), &err), CT_E_CLOSED, &err);
    ck_err(ct_conn_recv(c.conn, buf, sizeof buf, NULL, SC(5000), &err), CT_E_CLOSED, &err);
    join_peer(&s);
    expect_ok(&s, "server");
    ck_assert_msg(s.arc == CT_OK, "%s: %s", ct_err_name(s.arc), s.err.message);
    ck_assert(s.ok);
    ct_conn_free(c.conn);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}
END_TEST

/* Server action: speak first, right after the handshake. */
static void act_hello(peer *p)
{
    char b;
    p->arc = ct_conn_send_all(p->conn, "hello", 5, NULL, SC(5000), &p->err);
    if (p->arc == CT_OK) /* wait for the client's end */
        p->arc = ct_conn_recv(p->conn, &b, 1, NULL, SC(5000), &p->err);
    if (p->arc == CT_E_CLOSED)
        p->arc = CT_OK;
}

START_TEST(server_speaks_first)
{
    /* The client's wait for the ticket must not eat the server's data. */
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    char buf[8];
    ct_error err;

    c.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    s.cfg = cfg_ok(ctx, &SERVER_MTLS);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = 1;
    s.action = act_hello;
    pair_start(ctx, &c, &s, LINK_PIPE);
    expect_ok(&c, "client");
    ck_ok(ct_conn_recv_exact(c.conn, buf, 5, NULL, SC(5000), &err), &err);
    ck_assert(memcmp(buf, "hello", 5) == 0);
    ck_ok(ct_conn_shutdown_write(c.conn, SC(5000), &err), &err);
    join_peer(&s);
    ck_assert_msg(s.arc == CT_OK, "%s: %s", ct_err_name(s.arc), s.err.message);
    ct_conn_free(c.conn);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}
END_TEST

/* Server action: wait for "go", answer "x". */
static void act_go_x(peer *p)
{
    char b;
    p->arc = ct_conn_recv_exact(p->conn, &b, 1, NULL, SC(5000), &p->err);
    if (p->arc == CT_OK)
        p->arc = ct_conn_send_all(p->conn, "x", 1, NULL, SC(5000), &p->err);
    if (p->arc == CT_OK)
        p->arc = ct_conn_recv_exact(p->conn, &b, 1, NULL, SC(5000), &p->err);
}

START_TEST(recv_timeout_zero_and_short)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    char b = 0;
    ct_error err;
    int64_t t0;

    c.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    s.cfg = cfg_ok(ctx, &SERVER_MTLS);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = 1;
    s.action = act_go_x;
    pair_start(ctx, &c, &s, LINK_PIPE);
    expect_ok(&c, "client");
    ck_err(ct_conn_recv(c.conn, &b, 1, NULL, 0, &err), CT_E_AGAIN, &err);
    t0 = now_ms();
    ck_err(ct_conn_recv(c.conn, &b, 1, NULL, 150, &err), CT_E_TIMEOUT, &err);
    ck_assert(now_ms() - t0 >= 140 && now_ms() - t0 < SC(1500));
    ck_err(ct_conn_recv(c.conn, &b, 1, NULL, 0, &err), CT_E_AGAIN, &err);
    /* Still usable. */
    ck_ok(ct_conn_send_all(c.conn, "g", 1, NULL, SC(5000), &err), &err);
    ck_ok(ct_conn_recv_exact(c.conn, &b, 1, NULL, SC(5000), &err), &err);
    ck_assert_int_eq(b, 'x');
    ck_ok(ct_conn_send_all(c.conn, "y", 1, NULL, SC(5000), &err), &err);
    join_peer(&s);
    ck_assert_msg(s.arc == CT_OK, "%s: %s", ct_err_name(s.arc), s.err.message);
    ct_conn_free(c.conn);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}
END_TEST

static uint8_t gen_byte(size_t i, uint32_t seed)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return (uint8_t)x;
}

START_TEST(send_would_block_keeps_the_stream)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    uint8_t *chunk = malloc(16384), *in = malloc(1 << 20);
    size_t sent = 0, k, got;
    ct_error err;
    ct_err rc;

    ck_assert(chunk && in);
    c.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    s.cfg = cfg_ok(ctx, &SERVER_MTLS);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = s.keep = 1;
    pair_start(ctx, &c, &s, LINK_PIPE); /* 64 KiB: room for a record once drained */
    join_peer(&s);
    expect_ok(&c, "client");
    expect_ok(&s, "server");
    /* Fill until the transport pushes back. */
    for (;;) {
        for (size_t i = 0; i < 16384; i++)
            chunk[i] = gen_byte(sent + i, 7);
        rc = ct_conn_send(c.conn, chunk, 16384, &k, 0, &err);
        if (rc == CT_E_AGAIN)
            break;
        ck_ok(rc, &err);
        sent += k;
        ck_assert(sent < (1 << 20));
    }
    ck_assert(k == 0);
    /* The peer gets exactly the acknowledged bytes, no more. */
    ck_ok(ct_conn_recv_exact(s.conn, in, sent, NULL, SC(5000), &err), &err);
    for (size_t i = 0; i < sent; i++)
        ck_assert(in[i] == gen_byte(i, 7));
    ck_err(ct_conn_recv(s.conn, in, 1 << 20, NULL, 100, &err), CT_E_TIMEOUT, &err);
    /* Resuming with the same bytes completes the record. */
    ck_ok(ct_conn_send(c.conn, chunk, 16384, &k, SC(2000), &err), &err);
    ck_assert(k > 0);
    got = 0;
    ck_ok(ct_conn_recv_exact(s.conn, in, k, &got, SC(5000), &err), &err);
    for (size_t i = 0; i < k; i++)
        ck_assert(in[i] == gen_byte(sent + i, 7));
    sent += k;
    /* Fill again, then try to send something else: refused. */
    for (;;) {
        for (size_t i = 0; i < 16384; i++)
            chunk[i] = gen_byte(sent + i, 7);
        rc = ct_conn_send(c.conn, chunk, 16384, &k, 0, &err);
        if (rc == CT_E_AGAIN)
            break;
        ck_ok(rc, &err);
        sent += k;
    }
    memset(chunk, 0, 16384);
    /* drain so the committed record can be written */
    ck_ok(ct_conn_recv_exact(s.conn, in, 1, NULL, SC(5000), &err), &err);
    for (int i = 0; i < 50; i++) {
        size_t dummy;
        if (ct_conn_recv(s.conn, in, 1 << 20, &dummy, 20, &err) != CT_OK)
            break;
    }
    ck_err(ct_conn_send(c.conn, chunk, 16384, &k, SC(2000), &err), CT_E_STATE, &err);
    ck_err(ct_conn_send(c.conn, chunk, 16384, &k, SC(2000), &err), CT_E_STATE, &err);
    ct_conn_free(c.conn);
    ct_conn_free(s.conn);
    free(chunk);
    free(in);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}
END_TEST

/* Sends and receives `total` bytes at once with non-blocking calls. */
typedef struct pump_arg {
    ct_conn *conn;
    size_t total;
    uint32_t seed_out, seed_in;
    ct_err rc;
    ct_error err;
    size_t sent, rcvd;
    int bad;
} pump_arg;

static void *pump(void *arg)
{
    pump_arg *a = arg;
    uint8_t *out = malloc(32768), *in = malloc(65536);
    int fd = ct_conn_get_fd(a->conn);
    int64_t deadline = now_ms() + 60000;

    a->rc = CT_OK;
    while ((a->sent < a->total || a->rcvd < a->total) && now_ms() < deadline) {
        int progress = 0;
        size_t k = 0;
        ct_err rc;
        if (a->sent < a->total) {
            size_t n = a->total - a->sent < 32768 ? a->total - a->sent : 32768;
            for (size_t i = 0; i < n; i++)
                out[i] = gen_byte(a->sent + i, a->seed_out);
            rc = ct_conn_send(a->conn, out, n, &k, 0, &a->err);
            if (rc == CT_OK) {
                a->sent += k;
                progress = 1;
            } else if (rc != CT_E_AGAIN) {
                a->rc = rc;
                break;
            }
        }
        if (a->rcvd < a->total) {
            rc = ct_conn_recv(a->conn, in, 65536, &k, 0, &a->err);
            if (rc == CT_OK) {
                for (size_t i = 0; i < k; i++)
                    a->bad += in[i] != gen_byte(a->rcvd + i, a->seed_in);
                a->rcvd += k;
                progress = 1;
            } else if (rc != CT_E_AGAIN) {
                a->rc = rc;
                break;
            }
        }
        if (!progress && fd >= 0) {
            struct pollfd p = {fd, (short)(POLLIN | (a->sent < a->total ? POLLOUT : 0)), 0};
            poll(&p, 1, 20);
        } else if (!progress) {
            poll(NULL, 0, 1); /* the pipe has no fd */
        }
    }
    if (a->rc == CT_OK && (a->sent < a->total || a->rcvd < a->total))
        a->rc = CT_E_TIMEOUT;
    if (a->rc == CT_OK)
        a->rc = ct_conn_shutdown_write(a->conn, SC(5000), &a->err);
    if (a->rc == CT_OK) {
        ct_err rc = ct_conn_recv(a->conn, in, 16, NULL, SC(5000), &a->err);
        if (rc != CT_E_CLOSED)
            a->rc = rc == CT_OK ? CT_E_PROTO : rc;
    }
    free(out);
    free(in);
    ct_thread_cleanup();
    return NULL;
}

static void bulk_both_ways(ct_conn *a, ct_conn *b, size_t total)
{
    pump_arg pa = {a, total, 11, 22, CT_OK, {0}, 0, 0, 0};
    pump_arg pb = {b, total, 22, 11, CT_OK, {0}, 0, 0, 0};
    pthread_t ta, tb;
    ck_assert(pthread_create(&ta, NULL, pump, &pa) == 0);
    ck_assert(pthread_create(&tb, NULL, pump, &pb) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_msg(pa.rc == CT_OK, "a: %s: %s", ct_err_name(pa.rc), pa.err.message);
    ck_assert_msg(pb.rc == CT_OK, "b: %s: %s", ct_err_name(pb.rc), pb.err.message);
    ck_assert(pa.rcvd == total && pb.rcvd == total && pa.bad == 0 && pb.bad == 0);
}

static void bulk_over(enum link k)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    size_t total = ct_test_under_valgrind() ? (size_t)256 << 10 : (size_t)4 << 20;

    c.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    s.cfg = cfg_ok(ctx, &SERVER_MTLS);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = s.keep = 1;
    pair_start(ctx, &c, &s, k);
    join_peer(&s);
    expect_ok(&c, "client");
    expect_ok(&s, "server");
    bulk_both_ways(c.conn, s.conn, total);
    ct_conn_free(c.conn);
    ct_conn_free(s.conn);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}

START_TEST(bulk_4mib_both_ways)
{
    bulk_over(LINK_TCP);
    bulk_over(LINK_PIPE_SMALL);
}
END_TEST

START_TEST(tls_inside_tls)
{
    ct_ctx *ctx = ct_test_ctx();
    peer oc = {0}, os = {0}, ic = {0}, is = {0};
    spec ics = CLIENT_MTLS;
    size_t total = ct_test_under_valgrind() ? (size_t)64 << 10 : (size_t)1 << 20;

    oc.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    os.cfg = cfg_ok(ctx, &SERVER_MTLS);
    oc.timeout_ms = os.timeout_ms = SC(5000);
    oc.keep = os.keep = 1;
    pair_start(ctx, &oc, &os, LINK_PIPE_SMALL);
    join_peer(&os);
    expect_ok(&oc, "outer client");
    expect_ok(&os, "outer server");
    /* The inner session: other names, same PKI; runs over the outer conns. */
    ics.server_name = "broker.local";
    ic.cfg = cfg_ok(ctx, &ics);
    is.cfg = cfg_ok(ctx, &SERVER_MTLS);
    ic.timeout_ms = is.timeout_ms = SC(5000);
    ic.keep = 1;
    ic.inner = oc.conn;
    is.inner = os.conn;
    is.action = act_cert_echo;
    start_peer(&is);
    run_peer(&ic);
    expect_ok(&ic, "inner client");
    echo_check(ic.conn, total);
    ct_conn_free(ic.conn); /* frees the outer client conn too */
    join_peer(&is);
    expect_ok(&is, "inner server");
    ck_assert_msg(is.arc == CT_OK, "%s: %s", ct_err_name(is.arc), is.err.message);
    ck_assert_uint_eq(is.bytes, total);
    ck_assert_int_eq(is.cert_rc, CT_OK);
    ct_free(is.der);
    free_cfgs(oc.cfg, os.cfg);
    free_cfgs(ic.cfg, is.cfg);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(truncation_is_reset)
{
    ct_ctx *ctx = ct_test_ctx();
    peer c = {0}, s = {0};
    char b;
    ct_error err;

    c.cfg = cfg_ok(ctx, &CLIENT_MTLS);
    s.cfg = cfg_ok(ctx, &SERVER_MTLS);
    c.timeout_ms = s.timeout_ms = SC(5000);
    c.keep = 1; /* the server frees its conn without close_notify */
    handshake_pair(ctx, &c, &s);
    expect_ok(&c, "client");
    expect_ok(&s, "server");
    ck_err(ct_conn_recv(c.conn, &b, 1, NULL, SC(5000), &err), CT_E_RESET, &err);
    ck_assert(strstr(err.message, "close_notify") != NULL);
    ck_err(ct_conn_recv(c.conn, &b, 1, NULL, SC(5000), &err), CT_E_RESET, &err);
    ck_err(ct_conn_send(c.conn, "x", 1, NULL, SC(5000), &err), CT_E_RESET, &err);
    ct_conn_free(c.conn);
    free_cfgs(c.cfg, s.cfg);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Transport and conformance factories                                  */

typedef struct acc_arg {
    ct_listener *l;
    ct_conn *conn;
    ct_err rc;
    ct_error err;
    peer p;
} acc_arg;

static void *accept_main(void *arg)
{
    acc_arg *a = arg;
    a->rc = ct_listener_accept(a->l, SC(5000), &a->conn, &a->err);
    if (a->rc == CT_OK) {
        a->p.conn = a->conn;
        act_cert_echo(&a->p);
        ct_conn_free(a->conn);
    }
    ct_thread_cleanup();
    return NULL;
}

START_TEST(tls_transport)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_tls_config *ccfg = cfg_ok(ctx, &CLIENT_MTLS), *scfg = cfg_ok(ctx, &SERVER_MTLS);
    ct_transport *tcp1 = NULL, *tcp2 = NULL, *st = NULL, *ct = NULL;
    ct_listener *l = NULL;
    ct_conn *c = NULL;
    acc_arg a = {0};
    pthread_t th;
    ct_error err;

    ck_ok(ct_transport_new_tcp(ctx, &tcp1, &err), &err);
    ck_ok(ct_transport_new_tcp(ctx, &tcp2, &err), &err);
    ck_ok(ct_transport_new_tls(ctx, tcp1, scfg, &st, &err), &err);
    ck_ok(ct_transport_new_tls(ctx, tcp2, ccfg, &ct, &err), &err);
    ck_err(ct_transport_listen(ct, "127.0.0.1", 0, &l, &err), CT_E_INVALID, &err);
    ck_ok(ct_transport_listen(st, "127.0.0.1", 0, &l, &err), &err);
    ck_assert(ct_listener_port(l) != 0);
    ck_err(ct_transport_dial(st, "127.0.0.1", ct_listener_port(l), 1000, &c, &err), CT_E_INVALID,
           &err);
    a.l = l;
    ck_assert(pthread_create(&th, NULL, accept_main, &a) == 0);
    ck_ok(ct_transport_dial(ct, "127.0.0.1", ct_listener_port(l), SC(5000), &c, &err), &err);
    ck_assert_str_eq(ct_tls_cipher(c), PREFERRED_SUITE);
    ck_assert_int_ge(ct_conn_get_fd(c), 0); /* the socket's, through TLS */
    echo_check(c, 100000);
    ct_conn_free(c);
    pthread_join(th, NULL);
    ck_assert_msg(a.rc == CT_OK, "accept: %s: %s", ct_err_name(a.rc), a.err.message);
    ck_assert_int_eq(a.p.arc, CT_OK);
    ck_assert_int_eq(a.p.cert_rc, CT_OK);
    ct_free(a.p.der);
    ct_listener_free(l);
    ct_transport_free(st); /* frees tcp1 */
    ct_transport_free(ct);
    free_cfgs(ccfg, scfg);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(factories_smoke)
{
    ct_ctx *ctx = ct_test_ctx();
    const ct_pair_factory *const *f;
    for (f = ct_tls_factories; *f; f++) {
        void *fx = NULL;
        ct_conn *c = NULL, *s = NULL;
        char buf[8];
        ct_error err;
        ck_assert((*f)->setup == NULL || (*f)->setup(ctx, &fx) == 0);
        ck_ok((*f)->make_pair(ctx, fx, &c, &s, &err), &err);
        ck_ok(ct_conn_send_all(c, "ping", 4, NULL, SC(5000), &err), &err);
        ck_ok(ct_conn_recv_exact(s, buf, 4, NULL, SC(5000), &err), &err);
        ck_ok(ct_conn_send_all(s, "pong", 4, NULL, SC(5000), &err), &err);
        ck_ok(ct_conn_recv_exact(c, buf, 4, NULL, SC(5000), &err), &err);
        ck_assert(memcmp(buf, "pong", 4) == 0);
        ck_assert_int_eq((*f)->half_close, 1);
        ck_ok(ct_conn_shutdown_write(c, SC(5000), &err), &err);
        ck_err(ct_conn_recv(s, buf, 4, NULL, SC(5000), &err), CT_E_CLOSED, &err);
        ct_conn_free(c);
        ct_conn_free(s);
        if ((*f)->teardown)
            (*f)->teardown(fx);
    }
    ct_ctx_free(ctx);
}
END_TEST

static void fp_cleanup(void)
{
    ct_thread_cleanup();
}

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, ct_test_under_valgrind() ? 600 : 60);
    tcase_add_checked_fixture(tc, NULL, fp_cleanup);
    tcase_add_test(tc, config_requires_verification);
    tcase_add_test(tc, config_versions_and_formats);
    tcase_add_test(tc, not_a_tls_conn);
    tcase_add_test(tc, mtls_echo);
    tcase_add_test(tc, handshakes_keep_no_ecc_tables);
    tcase_add_test(tc, negotiated_parameters);
    tcase_add_test(tc, mtls_der_inputs_and_names);
    tcase_add_test(tc, anonymous_clients);
    tcase_add_test(tc, chain_and_ed25519_servers);
    tcase_add_test(tc, pin_right_and_wrong);
    tcase_add_test(tc, foreign_server_cert);
    tcase_add_test(tc, expired_server_cert);
    tcase_add_test(tc, wrong_server_name);
    tcase_add_test(tc, foreign_client_cert);
    tcase_add_test(tc, no_client_cert);
    tcase_add_test(tc, eku_misuse);
    tcase_add_test(tc, psk_ok);
    tcase_add_test(tc, psk_wrong_secret);
    tcase_add_test(tc, psk_unknown_identity);
    tcase_add_test(tc, psk_client_vs_cert_server);
    tcase_add_test(tc, psk_ke_refused);
    tcase_add_test(tc, resumption_refused);
    tcase_add_test(tc, handshake_timeout_silent_peer);
    tcase_add_test(tc, garbage_from_peer);
    tcase_add_test(tc, foreign_server_without_tickets);
    tcase_add_test(tc, half_close);
    tcase_add_test(tc, server_speaks_first);
    tcase_add_test(tc, recv_timeout_zero_and_short);
    tcase_add_test(tc, send_would_block_keeps_the_stream);
    tcase_add_test(tc, bulk_4mib_both_ways);
    tcase_add_test(tc, tls_inside_tls);
    tcase_add_test(tc, truncation_is_reset);
    tcase_add_test(tc, tls_transport);
    tcase_add_test(tc, factories_smoke);
    suite_add_tcase(s, tc);
    return s;
}
