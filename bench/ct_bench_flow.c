/*
 * ct_bench_flow.c - the flow benchmarks of issue 4, with a baseline from the
 * same run for each figure:
 *
 *   register   ct_register on the embedded SQLite store (a CA key, a bridge
 *              key, two certificates, three durable create-only writes),
 *              against one durable create-only write of a 1 KiB record on
 *              the same store.
 *   bootstrap  from ct_operator_run to its operational session being up,
 *              through an in-process beacon, with a bridge (ct_bridge) on
 *              the SQLite store already waiting in the cluster's rooms;
 *              against one mutual-TLS handshake relayed by the same beacon
 *              (both peers pairing, then TLS 1.3 with certificates).
 *
 * Usage: ct-bench-flow [register|bootstrap|all] [--n N] [--dir DIR]
 * Prints one line per figure: name, p50, p90 (ms), n, and the ratio of the
 * p50s. Loopback only; every wait is bounded.
 */
#include "cloudtaser/cloudtaser.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    int i = (int)(p / 100.0 * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void die(const char *what, const ct_error *e)
{
    fprintf(stderr, "ct-bench-flow: %s: %s\n", what, e ? e->message : "");
    exit(1);
}

static void fresh_fp(char out[37])
{
    uint8_t b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(b, 1, 16, f) != 16)
        die("urandom", NULL);
    fclose(f);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

static void report(const char *name, double *v, int n, const char *base_name, double *base,
                   int bn)
{
    double p50, bp50;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    qsort(base, (size_t)bn, sizeof *base, cmp_d);
    p50 = pct(v, n, 50);
    bp50 = pct(base, bn, 50);
    printf("%-10s p50 %8.3f ms  p90 %8.3f ms  n=%d\n", name, p50, pct(v, n, 90), n);
    printf("%-10s p50 %8.3f ms  p90 %8.3f ms  n=%d  (baseline: %s)\n", "  baseline", bp50,
           pct(base, bn, 90), bn, base_name);
    printf("%-10s ratio %.2fx the baseline\n", "", p50 / bp50);
}

static ct_store *open_store(ct_ctx *ctx, const char *dir, const char *name)
{
    char path[4096];
    ct_store *s = NULL;
    ct_error e;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    if (ct_store_new_sqlite(ctx, path, &s, &e) != CT_OK)
        die("store", &e);
    return s;
}

static void bench_register(ct_ctx *ctx, const char *dir, int n)
{
    ct_store *s = open_store(ctx, dir, "bench-register.db");
    double *v = calloc((size_t)n, sizeof *v), *b = calloc((size_t)n, sizeof *b);
    char rec[1024];
    ct_error e;
    int i;

    memset(rec, 'x', sizeof rec);
    for (i = 0; i < n; i++) {
        char fp[37], key[128];
        int64_t t;
        fresh_fp(fp);
        t = now_us();
        if (ct_register(ctx, s, fp, NULL, NULL, &e) != CT_OK)
            die("ct_register", &e);
        v[i] = (double)(now_us() - t) / 1000.0;
        snprintf(key, sizeof key, "baseline/%s", fp);
        t = now_us();
        if (ct_store_put(s, key, rec, sizeof rec, CT_STORE_CREATE, NULL, &e) != CT_OK)
            die("put", &e);
        b[i] = (double)(now_us() - t) / 1000.0;
    }
    report("register", v, n, "one durable create-only 1 KiB write, same store", b, n);
    ct_store_free(s);
    free(v);
    free(b);
}

/* ---- bootstrap ---- */

typedef struct relay_thread {
    ct_relay *r;
    pthread_t t;
} relay_thread;

static void *relay_main(void *arg)
{
    relay_thread *rt = arg;
    ct_error e;
    if (ct_relay_serve(rt->r, &e) != CT_OK)
        fprintf(stderr, "relay: %s\n", e.message);
    return NULL;
}

typedef struct op_run {
    ct_operator *op;
    pthread_t t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int up;
    int64_t t0, t_up, t_issued;
} op_run;

static void op_event(void *arg, const ct_agent_event *ev)
{
    op_run *r = arg;
    if (ev->type == CT_EV_BOOTSTRAP_ISSUED)
        r->t_issued = now_us();
    if (ev->type == CT_EV_SESSION_UP) {
        pthread_mutex_lock(&r->mu);
        r->t_up = now_us();
        r->up = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    } else if (ev->type == CT_EV_ERROR || ev->type == CT_EV_BOOTSTRAP_REFUSED) {
        fprintf(stderr, "operator: %s: %s\n", ct_agent_event_name(ev->type),
                ev->detail ? ev->detail : "");
    }
}

static void *op_main(void *arg)
{
    op_run *r = arg;
    ct_error e;
    r->t0 = now_us();
    if (ct_operator_run(r->op, &e) != CT_OK)
        fprintf(stderr, "operator: %s\n", e.message);
    ct_thread_cleanup();
    return NULL;
}

static void *bridge_main(void *arg)
{
    ct_error e;
    if (ct_bridge_run(arg, &e) != CT_OK)
        fprintf(stderr, "bridge: %s\n", e.message);
    ct_thread_cleanup();
    return NULL;
}

typedef struct hs_side {
    ct_ctx *ctx;
    const ct_beacon_options *bo;
    const uint8_t *room;
    ct_tls_config *cfg;
    ct_conn *tls;
    ct_err rc;
} hs_side;

static void *hs_bridge(void *arg)
{
    hs_side *s = arg;
    ct_conn *c = NULL;
    ct_error e;
    s->rc = ct_beacon_connect(s->ctx, s->bo, CT_ROLE_BRIDGE, s->room, &c, &e);
    if (s->rc == CT_OK)
        s->rc = ct_tls_wrap(s->cfg, c, 10000, &s->tls, &e);
    if (s->rc != CT_OK)
        fprintf(stderr, "baseline bridge: %s\n", e.message);
    return NULL;
}

/* Waits until the beacon has exactly `want` peers waiting. */
static int wait_waiting(ct_relay *r, uint32_t want, int ms)
{
    int64_t end = now_us() + (int64_t)ms * 1000;
    ct_relay_stats st;
    while (now_us() < end) {
        ct_relay_get_stats(r, &st);
        if (st.waiting == want)
            return 0;
        usleep(1000);
    }
    return -1;
}

static void bench_bootstrap(ct_ctx *ctx, const char *dir, int n)
{
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    ct_relay_options ro = CT_RELAY_OPTIONS_INIT;
    ct_beacon_options bo = CT_BEACON_OPTIONS_INIT;
    ct_bridge_options bro = CT_BRIDGE_OPTIONS_INIT;
    uint8_t *ca = NULL, *cert = NULL;
    size_t ca_len = 0, cert_len = 0;
    ct_key *key = NULL;
    ct_secret *kder = NULL;
    relay_thread rt;
    ct_store *s = open_store(ctx, dir, "bench-bootstrap.db");
    ct_bridge *br = NULL;
    pthread_t bt;
    double *v = calloc((size_t)n, sizeof *v), *b = calloc((size_t)n, sizeof *b);
    double *vi = calloc((size_t)n, sizeof *vi);
    ct_error e;
    int i;

    static const char *const ips[] = { "127.0.0.1" };
    co.common_name = "bench beacon";
    co.ip_addrs = ips;
    co.n_ip_addrs = 1;
    if (ct_cert_dev_server(ctx, &co, &ca, &ca_len, &cert, &cert_len, &key, &e) != CT_OK ||
        ct_key_export(key, 0, &kder, &e) != CT_OK)
        die("beacon certificate", &e);
    ro.listen_host = "127.0.0.1";
    ro.cert = cert;
    ro.cert_len = cert_len;
    ro.key = kder;
    ro.threads = 1;
    ro.max_conns_per_ip = 10000;
    ro.accept_rate_per_ip = 100000;
    if (ct_relay_new(ctx, &ro, &rt.r, &e) != CT_OK)
        die("relay", &e);
    pthread_create(&rt.t, NULL, relay_main, &rt);
    bo.host = "127.0.0.1";
    bo.port = ct_relay_port(rt.r);
    bo.ca = ca;
    bo.ca_len = ca_len;

    bro.store = s;
    bro.beacon = &bo;
    bro.scan_interval_ms = 100;
    if (ct_bridge_new(ctx, &bro, &br, &e) != CT_OK)
        die("bridge", &e);
    pthread_create(&bt, NULL, bridge_main, br);

    for (i = 0; i < n; i++) {
        ct_operator_options oo = CT_OPERATOR_OPTIONS_INIT;
        ct_registration *reg = NULL;
        op_run r;
        char fp[37];
        struct timespec dl;

        fresh_fp(fp);
        /* the previous cluster's waiters have left */
        if (wait_waiting(rt.r, 0, 10000) != 0)
            die("the previous cluster's waiters did not leave", NULL);
        if (ct_register(ctx, s, fp, NULL, &reg, &e) != CT_OK)
            die("register", &e);
        /* the bridge's 3 waiters of this cluster are in their rooms */
        if (wait_waiting(rt.r, 3, 10000) != 0)
            die("the bridge did not reach the rooms in time", NULL);

        /* baseline first: one relayed mTLS handshake in this cluster's rooms
         * is not possible without the operator's certificate, so use the
         * beacon certificate pair: server = dev cert, client anonymous */
        {
            ct_tls_options cs = CT_TLS_OPTIONS_INIT, ss = CT_TLS_OPTIONS_INIT;
            hs_side side = { 0 };
            uint8_t room[32];
            ct_conn *c = NULL, *tls = NULL;
            int64_t t;

            ct_sha256(fp, 36, room);
            room[0] ^= 0x5a; /* a room nobody else uses */
            cs.role = CT_TLS_CLIENT;
            cs.ca = ca;
            cs.ca_len = ca_len;
            cs.server_name = "127.0.0.1";
            ss.role = CT_TLS_SERVER;
            ss.cert = cert;
            ss.cert_len = cert_len;
            ss.key = kder;
            ss.flags = CT_TLS_F_ANONYMOUS_CLIENTS;
            side.ctx = ctx;
            side.bo = &bo;
            side.room = room;
            if (ct_tls_config_new(ctx, &cs, &side.cfg, &e) != CT_OK)
                die("tls", &e);
            {
                ct_tls_config *scfg = NULL;
                pthread_t ht;
                if (ct_tls_config_new(ctx, &ss, &scfg, &e) != CT_OK)
                    die("tls", &e);
                t = now_us();
                pthread_create(&ht, NULL, hs_bridge, &side);
                if (ct_beacon_connect(ctx, &bo, CT_ROLE_OPERATOR, room, &c, &e) != CT_OK ||
                    ct_tls_wrap(scfg, c, 10000, &tls, &e) != CT_OK)
                    die("baseline operator", &e);
                pthread_join(ht, NULL);
                b[i] = (double)(now_us() - t) / 1000.0;
                ct_conn_free(tls);
                ct_conn_free(side.tls);
                ct_tls_config_free(scfg);
            }
            ct_tls_config_free(side.cfg);
        }

        memset(&r, 0, sizeof r);
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        oo.fingerprint = fp;
        oo.beacon = &bo;
        oo.on_event = op_event;
        oo.event_arg = &r;
        if (ct_operator_new(ctx, &oo, &r.op, &e) != CT_OK)
            die("operator", &e);
        pthread_create(&r.t, NULL, op_main, &r);
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 20;
        pthread_mutex_lock(&r.mu);
        while (!r.up)
            if (pthread_cond_timedwait(&r.cv, &r.mu, &dl) != 0)
                break;
        pthread_mutex_unlock(&r.mu);
        if (!r.up)
            die("no operational session within 20 s", NULL);
        v[i] = (double)(r.t_up - r.t0) / 1000.0;
        vi[i] = (double)(r.t_issued - r.t0) / 1000.0;
        ct_operator_stop(r.op);
        pthread_join(r.t, NULL);
        ct_operator_free(r.op);
        pthread_mutex_destroy(&r.mu);
        pthread_cond_destroy(&r.cv);
        ct_deregister(ctx, s, fp, NULL);
        ct_registration_free(reg);
    }
    qsort(vi, (size_t)n, sizeof *vi, cmp_d);
    printf("%-10s p50 %8.3f ms  (of which: operator start to certificate received)\n", "  init",
           pct(vi, n, 50));
    free(vi);
    report("bootstrap", v, n,
           "one TLS 1.3 handshake relayed by the same beacon (pairing + certificate)", b, n);
    ct_bridge_stop(br);
    pthread_join(bt, NULL);
    ct_bridge_free(br);
    ct_relay_stop(rt.r);
    pthread_join(rt.t, NULL);
    ct_relay_free(rt.r);
    ct_store_free(s);
    ct_secret_free(kder);
    ct_key_free(key);
    ct_free(ca);
    ct_free(cert);
    free(v);
    free(b);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 && argv[1][0] != '-' ? argv[1] : "all";
    const char *dir = "/tmp";
    int i, n = 0;
    ct_ctx *ctx = NULL;
    ct_error e;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
    }
    if (ct_ctx_new(NULL, &ctx, &e) != CT_OK)
        die("ctx", &e);
    if (!strcmp(what, "register") || !strcmp(what, "all"))
        bench_register(ctx, dir, n > 0 ? n : 200);
    if (!strcmp(what, "bootstrap") || !strcmp(what, "all"))
        bench_bootstrap(ctx, dir, n > 0 ? n : 30);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return 0;
}
