/*
 * ct-bench - performance measurements of the beacon (ct_relay_*) against
 * its peers. bench/run.sh drives it; every subcommand prints its figures
 * as "RESULT <name> <value>" lines.
 *
 *   ct-bench pki DIR                      ECDSA P-256 CA + server cert + key (PEM)
 *   ct-bench ports N                      N free loopback ports
 *   ct-bench beacon --dir D --threads T --port-file F [--keepalive-ms N]
 *                                         a beacon until SIGTERM/SIGINT
 *   ct-bench sink --dir D --port-file F [--plain]
 *                                         throughput receiver (TLS or TCP) until SIGTERM
 *   ct-bench send --mode beacon|tls|plain --port P --cipher C --bytes N
 *                                         one-way throughput through a relay
 *   ct-bench bound --cipher C --bytes N   the library's decrypt+encrypt bound
 *   ct-bench handshakes --mode beacon|tls --port P --group G --conns K --procs M
 *                       --seconds S --server-pids PIDS
 *                                         full TLS handshakes per second
 *   ct-bench rooms --proto beacon|wormhole --port P --server-pid PID --rooms R
 *                  --pairs Q [--group G]  memory per waiting peer, pairing latency
 *   ct-bench session [--payload B] [--ms T]
 *                                         ct_session requests/s over loopback TLS with
 *                                         1, 16 and 256 in flight, against a bare TLS
 *                                         echo round trip on the same kind of connection
 *
 * Only 127.0.0.1 is used. Every loop is bounded in count and time.
 */
#include "bench.h"

#include <cloudtaser/cloudtaser.h>

/* private: the bound forces one suite on a ct_tls configuration */
#include "tls_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

static const char *opt_str(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static int opt_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

static long opt_long(int argc, char **argv, const char *name, long def)
{
    const char *s = opt_str(argc, argv, name, NULL);
    char *end;
    long v;
    if (!s)
        return def;
    v = strtol(s, &end, 10);
    if (*end != '\0')
        bench_die("%s: not a number: %s", name, s);
    return v;
}

static uint16_t opt_port(int argc, char **argv)
{
    long p = opt_long(argc, argv, "--port", 0);
    if (p <= 0 || p > 65535)
        bench_die("--port is required");
    return (uint16_t)p;
}

static bench_cipher opt_cipher(int argc, char **argv)
{
    bench_cipher c;
    if (bench_parse_cipher(opt_str(argc, argv, "--cipher", "chacha20"), &c) < 0)
        bench_die("--cipher: chacha20 or aes128gcm");
    return c;
}

static bench_group opt_group(int argc, char **argv)
{
    bench_group g;
    if (bench_parse_group(opt_str(argc, argv, "--group", "x25519"), &g) < 0)
        bench_die("--group: x25519 or p256");
    return g;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (!f)
        bench_die("cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        bench_die("cannot size %s", path);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        bench_die("cannot read %s", path);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        bench_die("cannot write %s", path);
}

static void dir_path(char *out, size_t cap, const char *dir, const char *name)
{
    if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
        bench_die("path too long");
}

static volatile sig_atomic_t g_stop;

static void on_stop_flag(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void install_stop(void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------------ */
/* pki: the one ECDSA P-256 certificate every server uses              */

static int cmd_pki(int argc, char **argv)
{
    static const char *const ips[] = {"127.0.0.1"};
    ct_cert_options o = CT_CERT_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    ct_key *cak = NULL, *k = NULL;
    uint8_t *ca = NULL, *csr = NULL, *cert = NULL;
    size_t ca_len = 0, csr_len = 0, cert_len = 0;
    char *pem = NULL, path[4096];
    ct_secret *key = NULL;
    ct_error err;

    if (argc < 1)
        bench_die("pki DIR");
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK)
        bench_die("%s", err.message);
    o.common_name = "ct-bench CA";
    if (ct_key_generate(ctx, &cak, &err) != CT_OK ||
        ct_ca_create(ctx, cak, &o, &ca, &ca_len, &err) != CT_OK)
        bench_die("%s", err.message);
    o.common_name = "beacon";
    o.ip_addrs = ips;
    o.n_ip_addrs = 1;
    if (ct_key_generate(ctx, &k, &err) != CT_OK ||
        ct_csr_create(ctx, k, &o, &csr, &csr_len, &err) != CT_OK ||
        ct_cert_issue(ctx, ca, ca_len, cak, csr, csr_len, CT_CERT_SERVER, &o, &cert, &cert_len,
                      &err) != CT_OK ||
        ct_key_export(k, 1, &key, &err) != CT_OK)
        bench_die("%s", err.message);
    if (ct_cert_der_to_pem(ca, ca_len, &pem, &err) != CT_OK)
        bench_die("%s", err.message);
    dir_path(path, sizeof path, argv[0], "ca.pem");
    write_file(path, pem, strlen(pem));
    ct_free(pem);
    if (ct_cert_der_to_pem(cert, cert_len, &pem, &err) != CT_OK)
        bench_die("%s", err.message);
    dir_path(path, sizeof path, argv[0], "cert.pem");
    write_file(path, pem, strlen(pem));
    ct_free(pem);
    dir_path(path, sizeof path, argv[0], "key.pem");
    write_file(path, ct_secret_data(key), strlen((const char *)ct_secret_data(key)));
    ct_secret_free(key);
    ct_free(ca);
    ct_free(csr);
    ct_free(cert);
    ct_key_free(k);
    ct_key_free(cak);
    ct_ctx_free(ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* ports                                                               */

static int cmd_ports(int argc, char **argv)
{
    int n = argc > 0 ? atoi(argv[0]) : 1, fds[64];
    if (n < 1 || n > 64)
        bench_die("ports N (1..64)");
    for (int i = 0; i < n; i++) {
        uint16_t p;
        fds[i] = bench_listen(0, &p);
        if (fds[i] < 0)
            bench_die("cannot bind a loopback port");
        printf("%u%s", (unsigned)p, i + 1 < n ? " " : "\n");
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* beacon                                                              */

static ct_relay *g_relay;

static void on_stop_relay(int sig)
{
    (void)sig;
    ct_relay_stop(g_relay); /* async-signal-safe */
}

static int cmd_beacon(int argc, char **argv)
{
    const char *dir = opt_str(argc, argv, "--dir", NULL);
    const char *pf = opt_str(argc, argv, "--port-file", NULL);
    ct_relay_options o = CT_RELAY_OPTIONS_INIT;
    ct_relay_stats st;
    ct_secret *key = NULL;
    uint8_t *cert, *kb;
    size_t cert_len, kl;
    char path[4096];
    ct_ctx *ctx = NULL;
    ct_error err;

    if (!dir || !pf)
        bench_die("beacon --dir D --threads T --port-file F");
    bench_raise_nofile();
    dir_path(path, sizeof path, dir, "cert.pem");
    cert = read_file(path, &cert_len);
    dir_path(path, sizeof path, dir, "key.pem");
    kb = read_file(path, &kl);
    if (ct_secret_from(kb, kl, &key, &err) != CT_OK)
        bench_die("%s", err.message);
    ct_secure_wipe(kb, kl);
    free(kb);
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK)
        bench_die("%s", err.message);
    o.listen_host = BENCH_HOST;
    o.cert = cert;
    o.cert_len = cert_len;
    o.key = key;
    o.threads = (int)opt_long(argc, argv, "--threads", 1);
    /* diagnostics only (0: the library's default, 20 s) */
    o.keepalive_ms = (int)opt_long(argc, argv, "--keepalive-ms", 0);
    /* every client of the benchmark comes from 127.0.0.1 */
    o.max_conns_per_ip = 1000000;
    o.accept_rate_per_ip = 1000000;
    if (ct_relay_new(ctx, &o, &g_relay, &err) != CT_OK)
        bench_die("relay: %s", err.message);
    install_stop(on_stop_relay);
    if (bench_write_port_file(pf, ct_relay_port(g_relay)) < 0)
        bench_die("cannot write %s", pf);
    if (ct_relay_serve(g_relay, &err) != CT_OK)
        bench_die("serve: %s", err.message);
    ct_relay_get_stats(g_relay, &st);
    fprintf(stderr,
            "beacon stats: accepted %llu handshakes_failed %llu hellos_bad %llu pairs %llu "
            "bytes_relayed %llu timeouts %llu aborts %llu refused(busy %llu rate %llu "
            "overloaded %llu) closed_without_status %llu accept_errors %llu\n",
            (unsigned long long)st.accepted, (unsigned long long)st.handshakes_failed,
            (unsigned long long)st.hellos_bad, (unsigned long long)st.pairs,
            (unsigned long long)st.bytes_relayed, (unsigned long long)st.timeouts,
            (unsigned long long)st.aborts, (unsigned long long)st.refused_room_busy,
            (unsigned long long)st.refused_rate_limited,
            (unsigned long long)st.refused_overloaded,
            (unsigned long long)st.closed_without_status,
            (unsigned long long)st.accept_errors);
    ct_relay_free(g_relay);
    ct_secret_free(key);
    free(cert);
    ct_ctx_free(ctx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* sink: the receiving end behind nginx (TLS) or socat (plain)         */

struct sink_job {
    int fd;
    WOLFSSL_CTX *ctx; /* NULL: plain */
};

static void *sink_conn(void *arg)
{
    struct sink_job *j = arg;
    bench_ep e = {.fd = j->fd, .ssl = NULL};
    uint64_t got = 0;
    bench_set_timeouts(e.fd, BENCH_IO_TIMEOUT_S);
    if (j->ctx) {
        e.ssl = wolfSSL_new(j->ctx);
        if (!e.ssl || wolfSSL_set_fd(e.ssl, e.fd) != WOLFSSL_SUCCESS ||
            wolfSSL_accept(e.ssl) != WOLFSSL_SUCCESS) {
            fprintf(stderr, "sink: handshake failed\n");
            goto out;
        }
        fprintf(stderr, "sink: cipher %s\n", wolfSSL_get_cipher_name(e.ssl));
    }
    if (bench_stream_recv(&e, &got) == 0) {
        bench_ep_drain(&e);
        bench_ep_shutdown(&e);
    } else {
        fprintf(stderr, "sink: stream failed\n");
    }
out:
    bench_ep_close(&e);
    free(j);
    ct_thread_cleanup(); /* the stock wolfSSL's per-thread ECC cache */
    return NULL;
}

static int cmd_sink(int argc, char **argv)
{
    const char *dir = opt_str(argc, argv, "--dir", NULL);
    const char *pf = opt_str(argc, argv, "--port-file", NULL);
    WOLFSSL_CTX *ctx = NULL;
    uint16_t port;
    int lfd;

    if (!pf)
        bench_die("sink --port-file F [--dir D | --plain]");
    bench_raise_nofile();
    ct_global_init();
    if (!opt_flag(argc, argv, "--plain")) {
        char cert[4096], key[4096];
        if (!dir)
            bench_die("sink: --dir is required for TLS");
        dir_path(cert, sizeof cert, dir, "cert.pem");
        dir_path(key, sizeof key, dir, "key.pem");
        ctx = bench_server_ctx(cert, key);
    }
    lfd = bench_listen(0, &port);
    if (lfd < 0)
        bench_die("sink: cannot listen");
    install_stop(on_stop_flag);
    if (bench_write_port_file(pf, port) < 0)
        bench_die("cannot write %s", pf);
    while (!g_stop) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        struct sink_job *j;
        pthread_t t;
        int fd;
        if (poll(&p, 1, 200) <= 0)
            continue;
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        j = malloc(sizeof *j);
        if (!j) {
            close(fd);
            continue;
        }
        j->fd = fd;
        j->ctx = ctx;
        if (pthread_create(&t, NULL, sink_conn, j) != 0) {
            close(fd);
            free(j);
            continue;
        }
        pthread_detach(t);
    }
    close(lfd);
    return 0; /* detached threads end with the process */
}

/* ------------------------------------------------------------------ */
/* Beacon peers (blocking)                                             */

/* Reads status bytes until `want`; WAITING keepalives are skipped. */
static int beacon_expect(bench_ep *e, uint8_t want)
{
    for (int i = 0; i < 64; i++) {
        uint8_t b;
        if (bench_ep_read_exact(e, &b, 1) < 0)
            return -1;
        if (b == want)
            return 0;
        if (b != CT_BEACON_WAITING) {
            fprintf(stderr, "beacon refused: %s\n", ct_beacon_status_name(b));
            return -1;
        }
    }
    return -1;
}

static int beacon_join(bench_ep *e, WOLFSSL_CTX *ctx, uint16_t port, ct_beacon_role role,
                       const uint8_t room[32], uint8_t first_status)
{
    uint8_t hello[CT_BEACON_HELLO_LEN];
    e->ssl = NULL;
    e->fd = bench_connect(port);
    if (e->fd < 0)
        return -1;
    e->ssl = bench_tls_connect(ctx, e->fd);
    if (!e->ssl)
        return -1;
    if (ct_beacon_hello_encode(role, room, hello) != CT_OK ||
        bench_ep_write_all(e, hello, sizeof hello) < 0)
        return -1;
    return beacon_expect(e, first_status);
}

/* ------------------------------------------------------------------ */
/* send: one-way throughput                                            */

struct bridge_arg {
    WOLFSSL_CTX *ctx;
    uint16_t port;
    uint8_t room[32];
    atomic_int ready; /* 1 waiting, -1 failed */
    int ok;
    uint64_t got;
};

static void *bridge_main(void *arg)
{
    struct bridge_arg *b = arg;
    bench_ep e = {.fd = -1, .ssl = NULL};
    if (beacon_join(&e, b->ctx, b->port, CT_ROLE_BRIDGE, b->room, CT_BEACON_WAITING) < 0) {
        atomic_store(&b->ready, -1);
        goto out;
    }
    atomic_store(&b->ready, 1);
    if (beacon_expect(&e, CT_BEACON_PAIRED) < 0 || bench_stream_recv(&e, &b->got) < 0)
        goto out;
    bench_ep_drain(&e);
    bench_ep_shutdown(&e);
    b->ok = 1;
out:
    bench_ep_close(&e);
    ct_thread_cleanup();
    return NULL;
}

static int cmd_send(int argc, char **argv)
{
    const char *mode = opt_str(argc, argv, "--mode", "tls");
    uint16_t port = opt_port(argc, argv);
    bench_cipher c = opt_cipher(argc, argv);
    long long bytes = (long long)opt_long(argc, argv, "--bytes", 256L << 20);
    WOLFSSL_CTX *ctx = NULL;
    bench_ep e = {.fd = -1, .ssl = NULL};
    struct bridge_arg b;
    pthread_t bt;
    int beacon = strcmp(mode, "beacon") == 0, plain = strcmp(mode, "plain") == 0;
    double secs = 0;

    if (bytes <= 0 || bytes > (16LL << 30))
        bench_die("--bytes out of range");
    signal(SIGPIPE, SIG_IGN);
    ct_global_init();
    if (!plain)
        ctx = bench_client_ctx(c, opt_group(argc, argv));
    if (beacon) {
        memset(&b, 0, sizeof b);
        b.ctx = ctx;
        b.port = port;
        bench_random(b.room, sizeof b.room);
        atomic_init(&b.ready, 0);
        if (pthread_create(&bt, NULL, bridge_main, &b) != 0)
            bench_die("pthread_create");
        for (int i = 0; i < 10000 && atomic_load(&b.ready) == 0; i++)
            usleep(1000);
        if (atomic_load(&b.ready) != 1)
            bench_die("the bridge-side peer did not get WAITING");
        if (beacon_join(&e, ctx, port, CT_ROLE_OPERATOR, b.room, CT_BEACON_PAIRED) < 0)
            bench_die("the operator-side peer was not paired");
    } else {
        e.fd = bench_connect(port);
        if (e.fd < 0)
            bench_die("cannot connect to port %u", (unsigned)port);
        if (!plain && !(e.ssl = bench_tls_connect(ctx, e.fd)))
            bench_die("TLS handshake with port %u failed", (unsigned)port);
    }
    if (e.ssl && strcmp(wolfSSL_get_cipher_name(e.ssl), bench_cipher_wolf(c)) != 0)
        bench_die("negotiated %s, not %s", wolfSSL_get_cipher_name(e.ssl),
                  bench_cipher_wolf(c));
    if (bench_stream_send(&e, (uint64_t)bytes, &secs) < 0)
        bench_die("stream failed");
    bench_ep_shutdown(&e);
    bench_ep_drain(&e);
    bench_ep_close(&e);
    if (beacon) {
        pthread_join(bt, NULL);
        if (!b.ok || b.got != (uint64_t)bytes)
            bench_die("the bridge-side peer received %llu of %lld bytes",
                      (unsigned long long)b.got, bytes);
    }
    printf("RESULT mbps %.1f\n", (double)bytes / secs / 1e6);
    printf("RESULT secs %.3f\n", secs);
    if (ctx)
        wolfSSL_CTX_free(ctx);
    ct_thread_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ */
/* bound: the library's own decrypt + encrypt, one thread, no sockets   */

struct wrap_arg {
    ct_tls_config *cfg;
    ct_conn *inner, *out;
    ct_err rc;
};

static void *wrap_main(void *arg)
{
    struct wrap_arg *w = arg;
    ct_error err;
    w->rc = ct_tls_wrap(w->cfg, w->inner, 10000, &w->out, &err);
    if (w->rc != CT_OK)
        fprintf(stderr, "bound: server handshake: %s\n", err.message);
    ct_thread_cleanup();
    return NULL;
}

static int cmd_bound(int argc, char **argv)
{
    bench_cipher c = opt_cipher(argc, argv);
    long long bytes = (long long)opt_long(argc, argv, "--bytes", 256L << 20);
    ct_tls_options so = CT_TLS_OPTIONS_INIT, co = CT_TLS_OPTIONS_INIT;
    ct_tls_config *scfg = NULL, *ccfg = NULL;
    ct_ctx *ctx = NULL;
    ct_key *k = NULL;
    uint8_t *crt = NULL, *spki = NULL, pin[32];
    size_t crt_len = 0, spki_len = 0;
    ct_secret *key = NULL;
    ct_conn *a = NULL, *b = NULL, *ta = NULL;
    struct wrap_arg w;
    pthread_t t;
    static uint8_t sbuf[16384], rbuf[16384];
    long long left;
    int64_t t0;
    double secs;
    ct_error err;

    if (bytes <= 0 || bytes > (16LL << 30))
        bench_die("--bytes out of range");
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK)
        bench_die("%s", err.message);
    /* a self-signed server certificate; the client pins its key */
    if (ct_key_generate(ctx, &k, &err) != CT_OK ||
        ct_ca_create(ctx, k, &(ct_cert_options){.version = CT_CERT_OPTIONS_VERSION,
                                                .common_name = "bound"},
                     &crt, &crt_len, &err) != CT_OK ||
        ct_key_export(k, 0, &key, &err) != CT_OK ||
        ct_key_public_der(k, &spki, &spki_len, &err) != CT_OK)
        bench_die("%s", err.message);
    ct_sha256(spki, spki_len, pin);
    so.role = CT_TLS_SERVER;
    so.flags = CT_TLS_F_ANONYMOUS_CLIENTS;
    so.cert = crt;
    so.cert_len = crt_len;
    so.key = key;
    co.role = CT_TLS_CLIENT;
    co.pin_sha256 = pin;
    if (ct_tls_config_new(ctx, &so, &scfg, &err) != CT_OK ||
        ct_tls_config_new(ctx, &co, &ccfg, &err) != CT_OK)
        bench_die("%s", err.message);
    /* the one private touch: offer only the suite being measured */
    if (wolfSSL_CTX_set_cipher_list(ccfg->wctx, bench_cipher_wolf(c)) != WOLFSSL_SUCCESS)
        bench_die("cannot force %s", bench_cipher_wolf(c));
    if (ct_pipe_pair(ctx, 1u << 20, &a, &b, &err) != CT_OK)
        bench_die("%s", err.message);
    w.cfg = scfg;
    w.inner = b;
    w.out = NULL;
    if (pthread_create(&t, NULL, wrap_main, &w) != 0)
        bench_die("pthread_create");
    if (ct_tls_wrap(ccfg, a, 10000, &ta, &err) != CT_OK)
        bench_die("client handshake: %s", err.message);
    pthread_join(t, NULL);
    if (w.rc != CT_OK)
        bench_die("server handshake failed");
    if (strcmp(ct_tls_cipher(ta), bench_cipher_wolf(c)) != 0 ||
        strcmp(ct_tls_cipher(w.out), bench_cipher_wolf(c)) != 0)
        bench_die("negotiated %s", ct_tls_cipher(ta));
    bench_random(sbuf, sizeof sbuf);
    /* one thread from here: encrypt a record on one session, decrypt it on the other */
    t0 = bench_now_ns();
    for (left = bytes; left > 0;) {
        size_t n = left > (long long)sizeof sbuf ? sizeof sbuf : (size_t)left;
        if (ct_conn_send_all(ta, sbuf, n, NULL, 10000, &err) != CT_OK ||
            ct_conn_recv_exact(w.out, rbuf, n, NULL, 10000, &err) != CT_OK)
            bench_die("bound: %s", err.message);
        left -= (long long)n;
    }
    secs = bench_secs(t0, bench_now_ns());
    if (memcmp(sbuf, rbuf, sizeof rbuf) != 0 && bytes >= (long long)sizeof sbuf)
        bench_die("bound: data mismatch");
    printf("RESULT mbps %.1f\n", (double)bytes / secs / 1e6);
    printf("RESULT secs %.3f\n", secs);
    ct_conn_free(ta);
    ct_conn_free(w.out);
    ct_tls_config_free(ccfg);
    ct_tls_config_free(scfg);
    ct_secret_free(key);
    ct_free(crt);
    ct_free(spki);
    ct_key_free(k);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ */
/* session: ct_session requests per second over loopback TLS            */

struct sess_tls {
    ct_ctx *ctx;
    ct_tls_config *scfg, *ccfg;
    ct_transport *tcp;
    ct_listener *l;
    ct_key *k;
    uint8_t *crt, *spki;
    ct_secret *key;
};

struct sess_accept {
    struct sess_tls *t;
    ct_conn *out;
    ct_err rc;
    ct_error err;
};

static void *sess_accept_main(void *arg)
{
    struct sess_accept *a = arg;
    ct_conn *raw = NULL;
    a->rc = ct_listener_accept(a->t->l, 10000, &raw, &a->err);
    if (a->rc == CT_OK)
        a->rc = ct_tls_wrap(a->t->scfg, raw, 10000, &a->out, &a->err);
    ct_thread_cleanup();
    return NULL;
}

/* One TLS connection over TCP loopback: client end *c, server end *s. */
static void sess_tls_pair(struct sess_tls *t, ct_conn **c, ct_conn **s)
{
    struct sess_accept a = {.t = t};
    ct_conn *raw = NULL;
    pthread_t th;
    ct_error err;
    if (pthread_create(&th, NULL, sess_accept_main, &a) != 0)
        bench_die("pthread_create");
    if (ct_transport_dial(t->tcp, BENCH_HOST, ct_listener_port(t->l), 10000, &raw, &err) !=
            CT_OK ||
        ct_tls_wrap(t->ccfg, raw, 10000, c, &err) != CT_OK)
        bench_die("session: client: %s", err.message);
    pthread_join(th, NULL);
    if (a.rc != CT_OK)
        bench_die("session: server: %s", a.err.message);
    *s = a.out;
}

static ct_err sess_echo(void *arg, ct_session *s, uint32_t stream, const uint8_t *req, size_t n,
                        uint8_t **resp, size_t *resp_len, ct_error *err)
{
    (void)arg;
    (void)s;
    (void)stream;
    (void)err;
    if (n) {
        if (!(*resp = malloc(n)))
            return CT_E_NOMEM;
        memcpy(*resp, req, n);
    }
    *resp_len = n;
    return CT_OK;
}

struct sess_load {
    ct_session *s;
    size_t payload;
    int64_t until_ns;
    long done, failed;
};

static void *sess_load_main(void *arg)
{
    struct sess_load *l = arg;
    uint8_t *req = malloc(l->payload ? l->payload : 1);
    if (!req)
        bench_die("out of memory");
    bench_random(req, l->payload);
    while (bench_now_ns() < l->until_ns) {
        uint8_t *resp = NULL;
        size_t rn = 0;
        ct_error err;
        if (ct_session_request(l->s, req, l->payload, 10000, &resp, &rn, &err) == CT_OK &&
            rn == l->payload && (rn == 0 || memcmp(resp, req, rn) == 0))
            l->done++;
        else
            l->failed++;
        ct_free(resp);
    }
    free(req);
    ct_thread_cleanup();
    return NULL;
}

struct sess_echo_srv {
    ct_conn *c;
    size_t payload;
};

static void *sess_raw_echo_main(void *arg)
{
    struct sess_echo_srv *e = arg;
    uint8_t *buf = malloc(e->payload);
    ct_error err;
    if (!buf)
        bench_die("out of memory");
    while (ct_conn_recv_exact(e->c, buf, e->payload, NULL, 10000, &err) == CT_OK &&
           ct_conn_send_all(e->c, buf, e->payload, NULL, 10000, &err) == CT_OK)
        ;
    free(buf);
    ct_thread_cleanup();
    return NULL;
}

static int cmd_session(int argc, char **argv)
{
    double seconds = (double)opt_long(argc, argv, "--ms", 2000) / 1000.0;
    size_t payload = (size_t)opt_long(argc, argv, "--payload", 64);
    static const int inflight[] = {1, 16, 256};
    struct sess_tls t;
    ct_tls_options so = CT_TLS_OPTIONS_INIT, co = CT_TLS_OPTIONS_INIT;
    ct_session_options ao = CT_SESSION_OPTIONS_INIT, bo = CT_SESSION_OPTIONS_INIT;
    uint8_t pin[32], *buf;
    size_t spki_len = 0, crt_len = 0;
    ct_conn *c = NULL, *sv = NULL;
    ct_session *a = NULL, *b = NULL;
    struct sess_echo_srv es;
    pthread_t th[256];
    struct sess_load ld[256];
    double raw_rps, rps[3];
    int64_t t0, until;
    long n = 0;
    ct_error err;

    if (payload < 1 || payload > (1u << 20) || seconds <= 0)
        bench_die("session: --payload 1..1048576, --ms > 0");
    signal(SIGPIPE, SIG_IGN);
    memset(&t, 0, sizeof t);
    if (ct_ctx_new(NULL, &t.ctx, &err) != CT_OK)
        bench_die("%s", err.message);
    /* a self-signed server certificate; the client pins its key (as `bound`) */
    if (ct_key_generate(t.ctx, &t.k, &err) != CT_OK ||
        ct_ca_create(t.ctx, t.k, &(ct_cert_options){.version = CT_CERT_OPTIONS_VERSION,
                                                    .common_name = "session"},
                     &t.crt, &crt_len, &err) != CT_OK ||
        ct_key_export(t.k, 0, &t.key, &err) != CT_OK ||
        ct_key_public_der(t.k, &t.spki, &spki_len, &err) != CT_OK)
        bench_die("%s", err.message);
    ct_sha256(t.spki, spki_len, pin);
    so.role = CT_TLS_SERVER;
    so.flags = CT_TLS_F_ANONYMOUS_CLIENTS;
    so.cert = t.crt;
    so.cert_len = crt_len;
    so.key = t.key;
    co.role = CT_TLS_CLIENT;
    co.pin_sha256 = pin;
    if (ct_tls_config_new(t.ctx, &so, &t.scfg, &err) != CT_OK ||
        ct_tls_config_new(t.ctx, &co, &t.ccfg, &err) != CT_OK ||
        ct_transport_new_tcp(t.ctx, &t.tcp, &err) != CT_OK ||
        ct_transport_listen(t.tcp, BENCH_HOST, 0, &t.l, &err) != CT_OK)
        bench_die("%s", err.message);

    /* Baseline: one request at a time on a bare TLS connection (no framing,
     * no threads in between): send `payload` bytes, read them echoed back. */
    sess_tls_pair(&t, &c, &sv);
    printf("cipher %s\n", ct_tls_cipher(c));
    es.c = sv;
    es.payload = payload;
    if (pthread_create(&th[0], NULL, sess_raw_echo_main, &es) != 0)
        bench_die("pthread_create");
    if (!(buf = malloc(payload)))
        bench_die("out of memory");
    bench_random(buf, payload);
    t0 = bench_now_ns();
    until = t0 + (int64_t)(seconds * 1e9);
    while (bench_now_ns() < until) {
        if (ct_conn_send_all(c, buf, payload, NULL, 10000, &err) != CT_OK ||
            ct_conn_recv_exact(c, buf, payload, NULL, 10000, &err) != CT_OK)
            bench_die("raw echo: %s", err.message);
        n++;
    }
    raw_rps = (double)n / bench_secs(t0, bench_now_ns());
    ct_conn_shutdown_write(c, 1000, &err); /* the echo thread sees the end */
    pthread_join(th[0], NULL);
    ct_conn_free(c);
    ct_conn_free(sv);
    free(buf);
    printf("RESULT raw_echo_rps %.0f\n", raw_rps);

    /* The session: a asks, b answers (echo), over a fresh TLS connection. */
    sess_tls_pair(&t, &c, &sv);
    ao.initiator = 1;
    ao.ping_interval_ms = -1;
    bo.handler = sess_echo;
    bo.ping_interval_ms = -1;
    if (ct_session_open(t.ctx, c, &ao, &a, &err) != CT_OK ||
        ct_session_open(t.ctx, sv, &bo, &b, &err) != CT_OK)
        bench_die("session: %s", err.message);
    for (int k = 0; k < 3; k++) {
        long done = 0, failed = 0;
        t0 = bench_now_ns();
        until = t0 + (int64_t)(seconds * 1e9);
        for (int i = 0; i < inflight[k]; i++) {
            ld[i] = (struct sess_load){.s = a, .payload = payload, .until_ns = until};
            if (pthread_create(&th[i], NULL, sess_load_main, &ld[i]) != 0)
                bench_die("pthread_create");
        }
        for (int i = 0; i < inflight[k]; i++) {
            pthread_join(th[i], NULL);
            done += ld[i].done;
            failed += ld[i].failed;
        }
        rps[k] = (double)done / bench_secs(t0, bench_now_ns());
        if (failed)
            bench_die("session: %ld requests failed with %d in flight", failed, inflight[k]);
        printf("RESULT session_rps_%d %.0f\n", inflight[k], rps[k]);
    }
    if (ct_session_close(a, 10000, &err) != CT_OK)
        bench_die("session close: %s", err.message);
    ct_session_free(a);
    ct_session_free(b);
    printf("RESULT ratio_1_vs_raw %.2f\n", rps[0] / raw_rps);
    printf("RESULT ratio_16_vs_1 %.2f\n", rps[1] / rps[0]);
    printf("RESULT ratio_256_vs_1 %.2f\n", rps[2] / rps[0]);
    ct_listener_free(t.l);
    ct_transport_free(t.tcp);
    ct_tls_config_free(t.ccfg);
    ct_tls_config_free(t.scfg);
    ct_secret_free(t.key);
    ct_free(t.crt);
    ct_free(t.spki);
    ct_key_free(t.k);
    ct_ctx_free(t.ctx);
    ct_thread_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ */
/* A non-blocking connection machine: K connections in flight, each     */
/* connect -> [TLS handshake] -> [send a hello/line] -> [read a status]. */

enum { PH_CONNECT = 1, PH_HANDSHAKE, PH_SEND, PH_READ };

enum mach_kind {
    MK_BEACON, /* TLS, hello, read one status byte */
    MK_TLS,    /* TLS, read one byte (nginx `return`) */
    MK_WORM    /* plain TCP, one "please relay" line, nothing to read */
};

struct slot {
    int fd;
    WOLFSSL *ssl;
    int phase;
    long job;
    int64_t deadline_ns;
    size_t sent;
};

struct mach {
    enum mach_kind kind;
    WOLFSSL_CTX *ctx;
    uint16_t port;
    int conc;
    long jobs;          /* connections to make */
    int64_t until_ns;   /* stop starting new ones after this (0: none) */
    int keep;           /* keep finished connections (rooms) instead of closing */
    const uint8_t *room_base;
    ct_beacon_role role;
    /* results */
    long done, failed;
    bench_ep *kept;     /* [jobs] when keep */
};

static void room_for(const uint8_t base[32], long job, uint8_t room[32])
{
    memcpy(room, base, 32);
    for (int i = 0; i < 4; i++)
        room[i] ^= (uint8_t)((unsigned long)job >> (8 * i));
}

static void worm_line(const uint8_t room[32], int side, char out[128])
{
    char tok[65];
    ct_hex(room, 32, tok);
    snprintf(out, 128, "please relay %s for side %016x\n", tok, side);
}

static void slot_release(struct mach *m, struct slot *s, int ok)
{
    if (ok && m->keep) {
        m->kept[s->job].fd = s->fd;
        m->kept[s->job].ssl = s->ssl;
    } else {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (s->ssl)
            wolfSSL_free(s->ssl);
        if (s->fd >= 0) {
            /* an abortive close: no TIME_WAIT left behind per handshake */
            setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(s->fd);
        }
    }
    s->fd = -1;
    s->ssl = NULL;
    s->phase = 0;
    if (ok)
        m->done++;
    else
        m->failed++;
}

/* Advances one slot as far as it goes. Returns the epoll events it waits for, 0 if finished. */
static uint32_t slot_step(struct mach *m, struct slot *s)
{
    for (;;) {
        int r, e;
        switch (s->phase) {
        case PH_CONNECT: {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            struct pollfd p = {.fd = s->fd, .events = POLLOUT};
            if (poll(&p, 1, 0) <= 0)
                return EPOLLOUT;
            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
                slot_release(m, s, 0);
                return 0;
            }
            if (m->kind == MK_WORM) {
                s->phase = PH_SEND;
                break;
            }
            s->ssl = wolfSSL_new(m->ctx);
            if (!s->ssl || wolfSSL_set_fd(s->ssl, s->fd) != WOLFSSL_SUCCESS) {
                slot_release(m, s, 0);
                return 0;
            }
            s->phase = PH_HANDSHAKE;
            break;
        }
        case PH_HANDSHAKE:
            r = wolfSSL_connect(s->ssl);
            if (r == WOLFSSL_SUCCESS) {
                s->phase = m->kind == MK_BEACON ? PH_SEND : PH_READ;
                break;
            }
            e = wolfSSL_get_error(s->ssl, r);
            if (e == WOLFSSL_ERROR_WANT_READ)
                return EPOLLIN;
            if (e == WOLFSSL_ERROR_WANT_WRITE)
                return EPOLLOUT;
            slot_release(m, s, 0);
            return 0;
        case PH_SEND: {
            uint8_t room[32];
            room_for(m->room_base, s->job, room);
            if (m->kind == MK_WORM) {
                char line[128];
                size_t n;
                ssize_t w;
                worm_line(room, 1, line);
                n = strlen(line);
                w = send(s->fd, line + s->sent, n - s->sent, MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EINTR))
                    return EPOLLOUT;
                if (w <= 0) {
                    slot_release(m, s, 0);
                    return 0;
                }
                s->sent += (size_t)w;
                if (s->sent < n)
                    return EPOLLOUT;
                slot_release(m, s, 1); /* wormhole says nothing until paired */
                return 0;
            } else {
                uint8_t hello[CT_BEACON_HELLO_LEN];
                ct_beacon_hello_encode(m->role, room, hello);
                r = wolfSSL_write(s->ssl, hello, sizeof hello);
                if (r == (int)sizeof hello) {
                    s->phase = PH_READ;
                    break;
                }
                e = wolfSSL_get_error(s->ssl, r);
                if (e == WOLFSSL_ERROR_WANT_WRITE)
                    return EPOLLOUT;
                if (e == WOLFSSL_ERROR_WANT_READ)
                    return EPOLLIN;
                slot_release(m, s, 0);
                return 0;
            }
        }
        case PH_READ: {
            uint8_t b;
            r = wolfSSL_read(s->ssl, &b, 1);
            if (r == 1) {
                int ok = m->kind == MK_TLS || b == CT_BEACON_WAITING;
                slot_release(m, s, ok);
                return 0;
            }
            e = wolfSSL_get_error(s->ssl, r);
            if (e == WOLFSSL_ERROR_WANT_READ)
                return EPOLLIN;
            if (e == WOLFSSL_ERROR_WANT_WRITE)
                return EPOLLOUT;
            slot_release(m, s, 0);
            return 0;
        }
        default:
            return 0;
        }
    }
}

static void mach_run(struct mach *m)
{
    struct slot *slots = calloc((size_t)m->conc, sizeof *slots);
    struct epoll_event evs[256];
    long next = 0;
    int active = 0, epfd = epoll_create1(EPOLL_CLOEXEC);
    int64_t hard_end = bench_now_ns() + 600LL * 1000000000; /* absolute bound */

    if (!slots || epfd < 0)
        bench_die("mach: out of resources");
    for (int i = 0; i < m->conc; i++)
        slots[i].fd = -1;
    for (;;) {
        int64_t now = bench_now_ns();
        int starting = (m->until_ns == 0 || now < m->until_ns) && now < hard_end;
        /* fill free slots (again at once if one finishes while it starts) */
        for (int i = 0; i < m->conc && starting && next < m->jobs; i++) {
            struct slot *s = &slots[i];
            uint32_t want;
            struct epoll_event ev;
            if (s->phase)
                continue;
            now = bench_now_ns();
            starting = (m->until_ns == 0 || now < m->until_ns) && now < hard_end;
            if (!starting)
                break;
            s->job = next++;
            s->sent = 0;
            s->ssl = NULL;
            s->fd = bench_connect_nb(m->port);
            if (s->fd < 0) {
                m->failed++;
                continue;
            }
            s->phase = PH_CONNECT;
            s->deadline_ns = now + 10LL * 1000000000;
            want = slot_step(m, s);
            if (!want) {
                i--; /* the same slot again */
                continue;
            }
            memset(&ev, 0, sizeof ev);
            ev.events = want;
            ev.data.u32 = (uint32_t)i;
            epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
            active++;
        }
        if (active == 0 && (!starting || next >= m->jobs))
            break;
        {
            int n = epoll_wait(epfd, evs, 256, 50);
            now = bench_now_ns();
            for (int k = 0; k < n; k++) {
                struct slot *s = &slots[evs[k].data.u32];
                int fd = s->fd;
                uint32_t want;
                if (!s->phase)
                    continue;
                want = slot_step(m, s);
                if (!want) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                    active--;
                } else {
                    struct epoll_event ev;
                    memset(&ev, 0, sizeof ev);
                    ev.events = want;
                    ev.data.u32 = evs[k].data.u32;
                    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
                }
            }
            /* per-connection deadline: 10 s */
            for (int i = 0; i < m->conc; i++) {
                struct slot *s = &slots[i];
                if (s->phase && (now > s->deadline_ns || now > hard_end)) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
                    slot_release(m, s, 0);
                    active--;
                }
            }
        }
    }
    close(epfd);
    free(slots);
}

/* ------------------------------------------------------------------ */
/* handshakes                                                          */

static int cmd_handshakes(int argc, char **argv)
{
    const char *mode = opt_str(argc, argv, "--mode", "tls");
    const char *pids = opt_str(argc, argv, "--server-pids", "");
    uint16_t port = opt_port(argc, argv);
    bench_group g = opt_group(argc, argv);
    int conns = (int)opt_long(argc, argv, "--conns", 32);
    int procs = (int)opt_long(argc, argv, "--procs", 2);
    double seconds = (double)opt_long(argc, argv, "--seconds", 3);
    long max = opt_long(argc, argv, "--max", 100000);
    int fds[16][2];
    pid_t kids[16];
    long done = 0, failed = 0;
    double ccpu = 0, scpu0, scpu1, wall;
    int64_t t0;
    uint8_t base[32];

    if (procs < 1 || procs > 16 || conns < procs || conns > 4096 || seconds <= 0 ||
        seconds > 60)
        bench_die("handshakes: bad --procs/--conns/--seconds");
    signal(SIGPIPE, SIG_IGN);
    bench_random(base, sizeof base);
    scpu0 = bench_pids_cpu(pids);
    t0 = bench_now_ns();
    for (int p = 0; p < procs; p++) {
        if (pipe(fds[p]) < 0)
            bench_die("pipe");
        kids[p] = fork();
        if (kids[p] < 0)
            bench_die("fork");
        if (kids[p] == 0) {
            struct mach m;
            struct rusage ru;
            char line[128];
            int n;
            close(fds[p][0]);
            ct_global_init();
            memset(&m, 0, sizeof m);
            m.kind = strcmp(mode, "beacon") == 0 ? MK_BEACON : MK_TLS;
            m.ctx = bench_client_ctx(CIPHER_CHACHA, g);
            m.port = port;
            m.conc = conns / procs;
            m.jobs = max / procs;
            m.until_ns = t0 + (int64_t)(seconds * 1e9);
            base[4] = (uint8_t)p; /* distinct rooms per process */
            m.room_base = base;
            m.role = CT_ROLE_BRIDGE;
            mach_run(&m);
            getrusage(RUSAGE_SELF, &ru);
            n = snprintf(line, sizeof line, "%ld %ld %.6f\n", m.done, m.failed,
                         (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
            if (write(fds[p][1], line, (size_t)n) != n)
                _exit(1);
            _exit(0);
        }
        close(fds[p][1]);
    }
    for (int p = 0; p < procs; p++) {
        char line[128];
        ssize_t n = read(fds[p][0], line, sizeof line - 1);
        long d = 0, f = 0;
        double c = 0;
        int st;
        if (n > 0) {
            line[n] = '\0';
            if (sscanf(line, "%ld %ld %lf", &d, &f, &c) == 3) {
                done += d;
                failed += f;
                ccpu += c;
            }
        }
        close(fds[p][0]);
        waitpid(kids[p], &st, 0);
    }
    wall = bench_secs(t0, bench_now_ns());
    scpu1 = bench_pids_cpu(pids);
    if (done == 0)
        bench_die("no handshake completed (%ld failed)", failed);
    printf("RESULT hs_per_s %.1f\n", (double)done / wall);
    printf("RESULT done %ld\n", done);
    printf("RESULT failed %ld\n", failed);
    if (scpu0 >= 0 && scpu1 >= 0) {
        printf("RESULT server_cpu_ms_per_hs %.3f\n", (scpu1 - scpu0) * 1000 / (double)done);
        printf("RESULT server_cores %.2f\n", (scpu1 - scpu0) / wall);
    }
    printf("RESULT client_cpu_ms_per_hs %.3f\n", ccpu * 1000 / (double)done);
    return 0;
}

/* ------------------------------------------------------------------ */
/* rooms: memory per waiting peer and pairing latency                  */

/* Waits until the server has used no CPU for 300 ms (at most 20 s). */
static void settle(int pid)
{
    double last = bench_proc_cpu(pid);
    for (int i = 0; i < 200; i++) {
        double now;
        usleep(300000);
        now = bench_proc_cpu(pid);
        if (now - last < 0.005)
            return;
        last = now;
    }
}

/* Reads from e until `want` arrives (a status byte, or the "ok\n" line). */
struct pair_side {
    bench_ep *e;
    int done;
    size_t have;
    int64_t at;
};

static int side_poll(struct pair_side *s, int worm)
{
    for (;;) {
        uint8_t b;
        if (worm) {
            ssize_t r = recv(s->e->fd, &b, 1, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (r <= 0)
                return -1;
            if (b != "ok\n"[s->have])
                return -1;
            if (++s->have == 3) {
                s->done = 1;
                s->at = bench_now_ns();
                return 0;
            }
        } else {
            int r = wolfSSL_read(s->e->ssl, &b, 1);
            if (r != 1) {
                int e = wolfSSL_get_error(s->e->ssl, r);
                return e == WOLFSSL_ERROR_WANT_READ ? 0 : -1;
            }
            if (b == CT_BEACON_PAIRED) {
                s->done = 1;
                s->at = bench_now_ns();
                return 0;
            }
            if (b != CT_BEACON_WAITING)
                return -1;
        }
    }
}

static int cmd_rooms(int argc, char **argv)
{
    const char *proto = opt_str(argc, argv, "--proto", "beacon");
    uint16_t port = opt_port(argc, argv);
    int spid = (int)opt_long(argc, argv, "--server-pid", 0);
    long rooms = opt_long(argc, argv, "--rooms", 10000);
    long pairs = opt_long(argc, argv, "--pairs", 1000);
    long warm = opt_long(argc, argv, "--warmup", 200);
    int worm = strcmp(proto, "wormhole") == 0;
    WOLFSSL_CTX *ctx = NULL;
    struct mach m;
    uint8_t base[32];
    long rss0, rss1;
    double *lat, setup;
    long npairs = 0, pfail = 0;
    int64_t t0;

    if (spid <= 0 || rooms < 1 || rooms > 15000 || pairs < 1 || pairs > rooms)
        bench_die("rooms: --server-pid, --rooms (<= 15000), --pairs (<= rooms)");
    bench_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    ct_global_init();
    if (!worm)
        ctx = bench_client_ctx(CIPHER_CHACHA, opt_group(argc, argv));
    /* warm-up: one-time costs (ECC tables, allocator arenas) out of the figure */
    bench_random(base, sizeof base);
    memset(&m, 0, sizeof m);
    m.kind = worm ? MK_WORM : MK_BEACON;
    m.ctx = ctx;
    m.port = port;
    m.conc = 32;
    m.jobs = warm;
    m.room_base = base;
    m.role = CT_ROLE_BRIDGE;
    mach_run(&m);
    settle(spid);
    rss0 = bench_proc_rss_kib(spid);
    /* the waiting rooms */
    bench_random(base, sizeof base);
    m.jobs = rooms;
    m.done = m.failed = 0;
    m.keep = 1;
    m.kept = calloc((size_t)rooms, sizeof *m.kept);
    if (!m.kept)
        bench_die("calloc");
    for (long i = 0; i < rooms; i++)
        m.kept[i].fd = -1;
    t0 = bench_now_ns();
    mach_run(&m);
    setup = bench_secs(t0, bench_now_ns());
    if (m.failed || m.done != rooms)
        bench_die("rooms: %ld of %ld waiting peers set up (%ld failed)", m.done, rooms, m.failed);
    settle(spid);
    rss1 = bench_proc_rss_kib(spid);
    printf("RESULT setup_secs %.2f\n", setup);
    printf("RESULT rss_before_kib %ld\n", rss0);
    printf("RESULT rss_after_kib %ld\n", rss1);
    printf("RESULT kib_per_conn %.2f\n", (double)(rss1 - rss0) / (double)rooms);
    fflush(stdout);

    /* pairings, one at a time, newest room first */
    lat = calloc((size_t)pairs, sizeof *lat);
    if (!lat)
        bench_die("calloc");
    for (long i = 0; i < pairs; i++) {
        long j = rooms - 1 - i;
        bench_ep op = {.fd = -1, .ssl = NULL};
        struct pair_side sides[2];
        uint8_t room[32];
        int64_t start, end;
        int bad = 0;

        room_for(base, j, room);
        op.fd = bench_connect(port);
        if (op.fd < 0) {
            pfail++;
            continue;
        }
        if (!worm && !(op.ssl = bench_tls_connect(ctx, op.fd))) {
            bench_ep_close(&op);
            pfail++;
            continue;
        }
        bench_set_nonblock(op.fd, 1);
        memset(sides, 0, sizeof sides);
        sides[0].e = &op;
        sides[1].e = &m.kept[j];
        /* from the second hello ... */
        start = bench_now_ns();
        if (worm) {
            char line[128];
            worm_line(room, 2, line);
            if (send(op.fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line))
                bad = 1;
        } else {
            uint8_t hello[CT_BEACON_HELLO_LEN];
            ct_beacon_hello_encode(CT_ROLE_OPERATOR, room, hello);
            if (wolfSSL_write(op.ssl, hello, sizeof hello) != (int)sizeof hello)
                bad = 1;
        }
        /* ... until both peers were told (bounded: 5 s) */
        while (!bad && !(sides[0].done && sides[1].done)) {
            struct pollfd p[2];
            int np = 0;
            if (bench_secs(start, bench_now_ns()) > 5) {
                bad = 1;
                break;
            }
            for (int k = 0; k < 2; k++) {
                if (sides[k].done)
                    continue;
                if (!worm && wolfSSL_pending(sides[k].e->ssl) > 0) {
                    if (side_poll(&sides[k], worm) < 0)
                        bad = 1;
                    continue;
                }
                p[np].fd = sides[k].e->fd;
                p[np].events = POLLIN;
                p[np].revents = 0;
                np++;
            }
            if (bad || np == 0)
                continue;
            if (poll(p, (nfds_t)np, 100) <= 0)
                continue;
            for (int k = 0; k < 2; k++)
                if (!sides[k].done && side_poll(&sides[k], worm) < 0)
                    bad = 1;
        }
        end = sides[0].at > sides[1].at ? sides[0].at : sides[1].at;
        if (bad)
            pfail++;
        else
            lat[npairs++] = (double)(end - start) / 1000.0; /* microseconds */
        bench_ep_close(&op);
        bench_ep_close(&m.kept[j]);
        usleep(500);
    }
    if (npairs == 0)
        bench_die("no pairing completed");
    bench_median(lat, (size_t)npairs); /* sorts */
    printf("RESULT pairs %ld\n", npairs);
    printf("RESULT pair_failed %ld\n", pfail);
    printf("RESULT p50_us %.1f\n", bench_percentile(lat, (size_t)npairs, 50));
    printf("RESULT p90_us %.1f\n", bench_percentile(lat, (size_t)npairs, 90));
    printf("RESULT p99_us %.1f\n", bench_percentile(lat, (size_t)npairs, 99));
    printf("RESULT max_us %.1f\n", lat[npairs - 1]);
    for (long i = 0; i < rooms; i++)
        bench_ep_close(&m.kept[i]);
    free(m.kept);
    free(lat);
    if (ctx)
        wolfSSL_CTX_free(ctx);
    return 0;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"pki", cmd_pki},       {"ports", cmd_ports},           {"beacon", cmd_beacon},
        {"sink", cmd_sink},     {"send", cmd_send},             {"bound", cmd_bound},
        {"handshakes", cmd_handshakes}, {"rooms", cmd_rooms},   {"session", cmd_session},
    };
    if (argc < 2)
        bench_die("usage: ct-bench pki|ports|beacon|sink|send|bound|handshakes|rooms|session ...");
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    bench_die("unknown subcommand %s", argv[1]);
}
