/*
 * demo.c - the foundation walk-through: every layer of libcloudtaser that
 * exists today, end to end on loopback, printing each phase with timings.
 *
 *   1. fingerprint   canonical cluster id and its init room hash
 *   2. register      per-cluster CA + bridge client certificate, stored in
 *                    the embedded SQLite store (mode 0600)
 *   3. issue         the operator makes its own key and a certificate
 *                    request; the bridge claims the one-time bootstrap with
 *                    check-and-set and signs it; a second claim is refused
 *   4. session       TCP on 127.0.0.1, an outer TLS hop (standing in for
 *                    the beacon leg) and end-to-end mTLS inside it, both
 *                    verified against the cluster CA; one request/response
 *
 * The demo keeps its own records under "demo/" in a throwaway store: they
 * are not the registration layout (ct_register and `cloudtaser source
 * register` write that; see docs/ARCHITECTURE.md, "Store layout").
 *
 * Usage: demo [--fingerprint UUID] [--store PATH]
 * The beacon relay (issue 3) and the real bootstrap protocol (issue 4)
 * replace phases 3 and 4 as they land.
 */
#include <cloudtaser/cloudtaser.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double t0;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#define PHASE(...)                                        \
    do {                                                  \
        printf("[%8.2f ms] ", now_ms() - t0);             \
        printf(__VA_ARGS__);                              \
        printf("\n");                                     \
        fflush(stdout);                                   \
    } while (0)

#define CHECK(expr)                                                                   \
    do {                                                                              \
        ct_err rc_ = (expr);                                                          \
        if (rc_ != CT_OK) {                                                           \
            fprintf(stderr, "demo: %s failed: %s (%s)\n", #expr, err.message,         \
                    ct_err_name(rc_));                                                \
            goto out;                                                                 \
        }                                                                             \
    } while (0)

struct server_args {
    ct_ctx *ctx;
    ct_listener *lst;
    ct_tls_config *outer, *inner;
    ct_err rc;
    ct_error err;
};

/* The bridge side: accept, outer TLS, inner mTLS, answer one request. */
static void *serve(void *p)
{
    struct server_args *a = p;
    ct_conn *tcp = NULL, *outer = NULL, *inner = NULL;
    char req[256];
    size_t got = 0;
    static const char reply[] = "pong from the bridge";

    a->rc = ct_listener_accept(a->lst, 10000, &tcp, &a->err);
    if (a->rc != CT_OK)
        return NULL;
    a->rc = ct_tls_wrap(a->outer, tcp, 10000, &outer, &a->err);
    if (a->rc != CT_OK)
        return NULL;
    a->rc = ct_tls_wrap(a->inner, outer, 10000, &inner, &a->err);
    if (a->rc != CT_OK)
        return NULL;
    a->rc = ct_conn_recv(inner, req, sizeof req - 1, &got, 10000, &a->err);
    if (a->rc == CT_OK)
        a->rc = ct_conn_send_all(inner, reply, sizeof reply - 1, NULL, 10000, &a->err);
    if (a->rc == CT_OK)
        a->rc = ct_conn_shutdown_write(inner, 10000, &a->err);
    ct_conn_free(inner);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *fingerprint = "0ad50c05-1153-4508-9237-4cb2912e2c23";
    const char *store_path = NULL;
    char tmpdir[] = "/tmp/cloudtaser-demo-XXXXXX", path[512], canon[CT_FINGERPRINT_LEN + 1];
    char hex[65], key[256];
    uint8_t init_hash[32], op_hash[32];
    ct_error err;
    ct_ctx *ctx = NULL;
    ct_store *store = NULL;
    ct_key *ca_key = NULL, *bridge_key = NULL, *broker_key = NULL, *relay_key = NULL;
    uint8_t *ca = NULL, *bridge_cert = NULL, *csr = NULL, *broker_cert = NULL, *relay_cert = NULL;
    size_t ca_len = 0, bridge_len = 0, csr_len = 0, broker_len = 0, relay_len = 0;
    ct_secret *ca_key_der = NULL, *bridge_key_der = NULL, *broker_key_der = NULL,
              *relay_key_der = NULL, *rec = NULL;
    ct_transport *tcp = NULL;
    ct_listener *lst = NULL;
    ct_tls_config *relay_srv = NULL, *relay_cli = NULL, *bridge_tls = NULL, *broker_tls = NULL;
    ct_conn *c_tcp = NULL, *c_outer = NULL, *c_inner = NULL;
    struct server_args sa;
    pthread_t th;
    int have_thread = 0, status = 1;
    uint64_t ver = 0;

    memset(&sa, 0, sizeof sa);
    ct_error_clear(&err);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fingerprint") && i + 1 < argc)
            fingerprint = argv[++i];
        else if (!strcmp(argv[i], "--store") && i + 1 < argc)
            store_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--fingerprint UUID] [--store PATH]\n", argv[0]);
            return 2;
        }
    }
    t0 = now_ms();
    CHECK(ct_ctx_new(NULL, &ctx, &err));
    printf("cloudtaser foundation demo (libcloudtaser %s)\n", ct_version());

    /* 1. fingerprint */
    CHECK(ct_fingerprint_canonical(fingerprint, canon, &err));
    CHECK(ct_room_hash_init(canon, init_hash, &err));
    PHASE("fingerprint   cluster %.8s... -> init room %.16s...", canon,
          ct_hex(init_hash, 32, hex));

    /* 2. register: per-cluster CA and the bridge's client certificate */
    if (!store_path) {
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            goto out;
        }
        snprintf(path, sizeof path, "%s/store.db", tmpdir);
        store_path = path;
    }
    CHECK(ct_store_new_sqlite(ctx, store_path, &store, &err));
    {
        ct_cert_options o = CT_CERT_OPTIONS_INIT;
        const char *bridge_names[] = {"bridge.cloudtaser.local"};
        o.common_name = "cloudtaser cluster CA";
        o.organization = "cloudtaser";
        CHECK(ct_key_generate(ctx, &ca_key, &err));
        CHECK(ct_ca_create(ctx, ca_key, &o, &ca, &ca_len, &err));
        CHECK(ct_key_generate(ctx, &bridge_key, &err));
        o.common_name = "cloudtaser bridge";
        o.dns_names = bridge_names;
        o.n_dns_names = 1;
        CHECK(ct_csr_create(ctx, bridge_key, &o, &csr, &csr_len, &err));
        CHECK(ct_cert_issue(ctx, ca, ca_len, ca_key, csr, csr_len, CT_CERT_CLIENT, &o,
                            &bridge_cert, &bridge_len, &err));
        ct_free(csr);
        csr = NULL;
    }
    CHECK(ct_key_export(ca_key, 0, &ca_key_der, &err));
    CHECK(ct_key_export(bridge_key, 0, &bridge_key_der, &err));
    snprintf(key, sizeof key, "demo/clusters/%s/ca-cert", canon);
    CHECK(ct_store_put(store, key, ca, ca_len, CT_STORE_CREATE, &ver, &err));
    snprintf(key, sizeof key, "demo/clusters/%s/ca-key", canon);
    CHECK(ct_store_put(store, key, ct_secret_data(ca_key_der), ct_secret_len(ca_key_der),
                       CT_STORE_CREATE, &ver, &err));
    snprintf(key, sizeof key, "demo/clusters/%s/registered", canon);
    CHECK(ct_store_put(store, key, "{}", 2, CT_STORE_CREATE, &ver, &err));
    CHECK(ct_room_hash_operational(ca, ca_len, op_hash, &err));
    PHASE("registered    CA %zu B + bridge client cert %zu B in %s; operational room %.16s...",
          ca_len, bridge_len, store_path, ct_hex(op_hash, 32, hex));

    /* 3. the operator's own key and request; one-time claim; issuance */
    {
        ct_cert_options o = CT_CERT_OPTIONS_INIT;
        const char *names[] = {"broker.cloudtaser.local"};
        o.common_name = "cloudtaser broker";
        o.dns_names = names;
        o.n_dns_names = 1;
        CHECK(ct_key_generate(ctx, &broker_key, &err));
        CHECK(ct_csr_create(ctx, broker_key, &o, &csr, &csr_len, &err));
        PHASE("request       operator generated its key and a %zu B certificate request "
              "(the private key stays with the operator)",
              csr_len);
        snprintf(key, sizeof key, "demo/clusters/%s/initialized", canon);
        CHECK(ct_store_put(store, key, "claimed", 7, CT_STORE_CREATE, &ver, &err));
        PHASE("claimed       one-time bootstrap claim recorded (check-and-set, version %llu)",
              (unsigned long long)ver);
        if (ct_store_put(store, key, "again", 5, CT_STORE_CREATE, NULL, &err) != CT_E_CONFLICT) {
            fprintf(stderr, "demo: a second claim was not refused\n");
            goto out;
        }
        PHASE("replay        second claim refused: %s", ct_err_name(err.code));
        snprintf(key, sizeof key, "demo/clusters/%s/ca-key", canon);
        CHECK(ct_store_get(store, key, &rec, NULL, &err));
        {
            ct_key *stored_ca_key = NULL;
            CHECK(ct_key_load(ctx, ct_secret_data(rec), ct_secret_len(rec), &stored_ca_key, &err));
            err.code = ct_cert_issue(ctx, ca, ca_len, stored_ca_key, csr, csr_len,
                                     CT_CERT_SERVER, &o, &broker_cert, &broker_len, &err);
            ct_key_free(stored_ca_key);
            CHECK(err.code);
        }
        CHECK(ct_cert_verify(ctx, ca, ca_len, broker_cert, broker_len, CT_CERT_SERVER, &err));
        PHASE("issued        broker certificate %zu B signed by the cluster CA (verified)",
              broker_len);
    }

    /* 4. TCP -> outer TLS (relay hop) -> end-to-end mTLS */
    {
        ct_cert_options o = CT_CERT_OPTIONS_INIT;
        const char *ips[] = {"127.0.0.1"};
        ct_tls_options t = CT_TLS_OPTIONS_INIT;
        uint8_t *rca = NULL;
        size_t rca_len = 0;
        ct_key *rca_key = NULL;

        /* a stand-in relay certificate (the beacon's own, unrelated CA) */
        o.common_name = "demo relay CA";
        CHECK(ct_key_generate(ctx, &rca_key, &err));
        CHECK(ct_ca_create(ctx, rca_key, &o, &rca, &rca_len, &err));
        o.common_name = "relay";
        o.ip_addrs = ips;
        o.n_ip_addrs = 1;
        CHECK(ct_key_generate(ctx, &relay_key, &err));
        ct_free(csr);
        csr = NULL;
        CHECK(ct_csr_create(ctx, relay_key, &o, &csr, &csr_len, &err));
        err.code = ct_cert_issue(ctx, rca, rca_len, rca_key, csr, csr_len, CT_CERT_SERVER, &o,
                                 &relay_cert, &relay_len, &err);
        ct_key_free(rca_key);
        if (err.code != CT_OK) {
            ct_free(rca);
            CHECK(err.code);
        }
        CHECK(ct_key_export(relay_key, 0, &relay_key_der, &err));
        CHECK(ct_key_export(broker_key, 0, &broker_key_der, &err));

        t.role = CT_TLS_SERVER;
        t.flags = CT_TLS_F_ANONYMOUS_CLIENTS;
        t.cert = relay_cert;
        t.cert_len = relay_len;
        t.key = relay_key_der;
        CHECK(ct_tls_config_new(ctx, &t, &relay_srv, &err));
        t = (ct_tls_options)CT_TLS_OPTIONS_INIT;
        t.role = CT_TLS_CLIENT;
        t.ca = rca;
        t.ca_len = rca_len;
        t.server_name = "127.0.0.1";
        err.code = ct_tls_config_new(ctx, &t, &relay_cli, &err);
        ct_free(rca);
        CHECK(err.code);

        /* end to end: the bridge is the TLS client, the broker the server */
        t = (ct_tls_options)CT_TLS_OPTIONS_INIT;
        t.role = CT_TLS_SERVER;
        t.cert = broker_cert;
        t.cert_len = broker_len;
        t.key = broker_key_der;
        t.ca = ca;
        t.ca_len = ca_len;
        CHECK(ct_tls_config_new(ctx, &t, &broker_tls, &err));
        t = (ct_tls_options)CT_TLS_OPTIONS_INIT;
        t.role = CT_TLS_CLIENT;
        t.cert = bridge_cert;
        t.cert_len = bridge_len;
        t.key = bridge_key_der;
        t.ca = ca;
        t.ca_len = ca_len;
        t.server_name = "broker.cloudtaser.local";
        CHECK(ct_tls_config_new(ctx, &t, &bridge_tls, &err));
    }
    CHECK(ct_transport_new_tcp(ctx, &tcp, &err));
    CHECK(ct_transport_listen(tcp, "127.0.0.1", 0, &lst, &err));
    /* In the demo the broker side accepts; in the product both dial the beacon. */
    sa.ctx = ctx;
    sa.lst = lst;
    sa.outer = relay_srv;
    sa.inner = broker_tls;
    if (pthread_create(&th, NULL, serve, &sa) != 0)
        goto out;
    have_thread = 1;
    {
        double ts = now_ms();
        char buf[256];
        size_t got = 0, total = 0;
        CHECK(ct_transport_dial(tcp, "127.0.0.1", ct_listener_port(lst), 10000, &c_tcp, &err));
        CHECK(ct_tls_wrap(relay_cli, c_tcp, 10000, &c_outer, &err));
        c_tcp = NULL;
        PHASE("relay hop     TLS to 127.0.0.1:%u up (%s)", (unsigned)ct_listener_port(lst),
              ct_tls_cipher(c_outer));
        CHECK(ct_tls_wrap(bridge_tls, c_outer, 10000, &c_inner, &err));
        c_outer = NULL;
        PHASE("operational   end-to-end mTLS up inside the relay hop in %.2f ms (%s)",
              now_ms() - ts, ct_tls_cipher(c_inner));
        ts = now_ms();
        CHECK(ct_conn_send_all(c_inner, "ping from the operator", 22, NULL, 10000, &err));
        for (;;) {
            ct_err rc = ct_conn_recv(c_inner, buf + total, sizeof buf - 1 - total, &got, 10000,
                                     &err);
            if (rc == CT_E_CLOSED)
                break;
            CHECK(rc);
            total += got;
            if (total == sizeof buf - 1)
                break;
        }
        buf[total] = 0;
        PHASE("request       round trip in %.2f ms, answer: \"%s\"", now_ms() - ts, buf);
    }
    pthread_join(th, NULL);
    have_thread = 0;
    if (sa.rc != CT_OK) {
        fprintf(stderr, "demo: bridge side failed: %s (%s)\n", sa.err.message,
                ct_err_name(sa.rc));
        goto out;
    }
    PHASE("done          all phases passed");
    status = 0;
out:
    if (have_thread) {
        ct_conn_free(c_inner);
        c_inner = NULL;
        pthread_join(th, NULL);
    }
    ct_conn_free(c_inner);
    ct_conn_free(c_outer);
    ct_conn_free(c_tcp);
    ct_listener_free(lst);
    ct_transport_free(tcp);
    ct_tls_config_free(relay_srv);
    ct_tls_config_free(relay_cli);
    ct_tls_config_free(bridge_tls);
    ct_tls_config_free(broker_tls);
    ct_secret_free(rec);
    ct_secret_free(ca_key_der);
    ct_secret_free(bridge_key_der);
    ct_secret_free(broker_key_der);
    ct_secret_free(relay_key_der);
    ct_key_free(ca_key);
    ct_key_free(bridge_key);
    ct_key_free(broker_key);
    ct_key_free(relay_key);
    ct_free(ca);
    ct_free(bridge_cert);
    ct_free(csr);
    ct_free(broker_cert);
    ct_free(relay_cert);
    ct_store_free(store);
    if (store_path == path) {
        char f[600];
        const char *sfx[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            snprintf(f, sizeof f, "%s%s", path, sfx[i]);
            unlink(f);
        }
        rmdir(tmpdir);
    }
    ct_ctx_free(ctx);
    return status;
}
