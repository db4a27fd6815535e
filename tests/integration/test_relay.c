/*
 * test_relay.c - the beacon server on loopback: pairing, relaying,
 * half-close, aborts, drain, refusals, deadlines, limits, scale and
 * resource stability. The peers are a minimal wolfSSL client
 * (beacon_testlib.c) that verifies the beacon against a test CA.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h> /* WOLFSSL_AESNI: which suite the relay prefers */

#include "beacon_testlib.h"
#include "testutil.h"

static ct_ctx *g_ctx;
static bt_pki g_pki;
static void *g_cli; /* client TLS context trusting g_pki's CA */
static bt_log g_log;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* the test client writes to sockets the relay closed */
    g_ctx = ct_test_ctx();
    bt_pki_make(g_ctx, &g_pki);
    g_cli = bt_client_ctx_new(g_pki.ca_der, g_pki.ca_len);
    bt_log_init(&g_log);
}

/* Relays still running when a test failed (CK_FORK=no): stopped in teardown
 * so a failure does not cascade into the next test. */
static bt_relay *g_running[4];

static bt_relay *start(const ct_relay_options *o)
{
    bt_relay *br = bt_relay_start(g_ctx, o);
    for (int i = 0; i < 4; i++) {
        if (!g_running[i]) {
            g_running[i] = br;
            break;
        }
    }
    return br;
}

static void finish(bt_relay *br)
{
    for (int i = 0; i < 4; i++)
        if (g_running[i] == br)
            g_running[i] = NULL;
    bt_relay_finish(br);
}

static void teardown(void)
{
    for (int i = 0; i < 4; i++) {
        if (g_running[i]) {
            bt_relay_finish(g_running[i]);
            g_running[i] = NULL;
        }
    }
    bt_log_free(&g_log);
    bt_client_ctx_free(g_cli);
    bt_pki_free(&g_pki);
    ct_ctx_free(g_ctx);
    ct_thread_cleanup();
}

/* A time bound for an assertion, stretched under valgrind. */
static int tl(int ms)
{
    return ct_test_under_valgrind() ? ms * 8 : ms;
}

static void opts(ct_relay_options *o)
{
    bt_relay_opts(o, &g_pki);
    o->session_log = bt_log_cb;
    o->session_log_user = &g_log;
}

static bt_client *cli(uint16_t port)
{
    const char *why = "";
    bt_client *c = bt_connect(g_cli, "127.0.0.1", port, 5000, &why);
    ck_assert_msg(c != NULL, "connect: %s", why);
    return c;
}

/* A client that said hello and got WAITING. */
static bt_client *waiter(uint16_t port, ct_beacon_role role, const uint8_t room[32])
{
    bt_client *c = cli(port);
    ck_assert_int_eq(bt_hello(c, role, room, 2000), 0);
    ck_assert_int_eq(bt_status(c, 3000), CT_BEACON_WAITING);
    return c;
}

/* A paired operator/bridge couple in a fresh room. */
static void make_pair(uint16_t port, uint8_t room[32], bt_client **op, bt_client **br)
{
    bt_random(room, 32);
    *br = waiter(port, CT_ROLE_BRIDGE, room);
    *op = cli(port);
    ck_assert_int_eq(bt_hello(*op, CT_ROLE_OPERATOR, room, 2000), 0);
    ck_assert_int_eq(bt_status(*op, 3000), CT_BEACON_PAIRED);
    ck_assert_int_eq(bt_status_skip_waiting(*br, 3000), CT_BEACON_PAIRED);
}

static ct_relay_stats stats(bt_relay *br)
{
    ct_relay_stats s;
    ct_relay_get_stats(br->r, &s);
    return s;
}


/* ------------------------------------------------------------------ */

START_TEST(pair_and_relay_1mib)
{
    enum { N = 1 << 20 };
    ct_relay_options o;
    bt_relay *br;
    bt_client *op, *bridge;
    uint8_t room[32], *a = malloc(N), *b = malloc(N), *ra = malloc(N), *rb = malloc(N);
    uint8_t ha[32], hb[32], hra[32], hrb[32];
    char hex[65], pfx[9], want[96];
    const char *why = "";
    ct_relay_stats s;

    opts(&o);
    br = start(&o);
    bt_random(a, N);
    bt_random(b, N);
    ct_sha256(a, N, ha);
    ct_sha256(b, N, hb);
    make_pair(br->port, room, &op, &bridge);
    /* the relay prefers AES-GCM when wolfSSL has AES-NI, else ChaCha20 */
#ifdef WOLFSSL_AESNI
    ck_assert_msg(strstr(bt_cipher(op), "AES128-GCM") != NULL, "cipher %s", bt_cipher(op));
#else
    ck_assert_msg(strstr(bt_cipher(op), "CHACHA20") != NULL, "cipher %s", bt_cipher(op));
#endif
    {
        bt_flow f[2] = {
            {.c = op, .out = a, .out_len = N, .shut = 1, .in = rb, .in_len = N,
             .expect_close = 1},
            {.c = bridge, .out = b, .out_len = N, .shut = 1, .in = ra, .in_len = N,
             .expect_close = 1},
        };
        ck_assert_msg(bt_transfer(f, 2, 30000, &why) == 0, "transfer: %s", why);
    }
    ct_sha256(ra, N, hra);
    ct_sha256(rb, N, hrb);
    ck_assert_mem_eq(ha, hra, 32); /* operator -> bridge unmodified */
    ck_assert_mem_eq(hb, hrb, 32); /* bridge -> operator unmodified */
    /* both directions ended: the beacon closes both, with nothing after close_notify */
    ck_assert_int_eq(bt_wait_eof(op, 3000), 0);
    ck_assert_int_eq(bt_wait_eof(bridge, 3000), 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    s = stats(br);
    ck_assert_uint_eq(s.pairs, 1);
    ck_assert_uint_eq(s.bytes_relayed, 2 * (uint64_t)N);
    ck_assert_uint_eq(s.half_closes, 2);
    ck_assert_uint_eq(s.aborts, 0);
    ck_assert_uint_eq(s.paired_sessions, 0);
    ck_assert_uint_eq(s.waiting, 0);
    ck_assert_uint_eq(s.rooms, 0);
    /* the session log: one line, room prefix only */
    ct_hex(room, 32, hex);
    ct_hex(room, 4, pfx);
    snprintf(want, sizeof want, "\"room\":\"%s\"", pfx);
    ck_assert_int_eq(bt_log_count(&g_log, "\"event\":\"session\""), 1);
    ck_assert_int_eq(bt_log_count(&g_log, want), 1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"bytes_op_to_br\":1048576,\"bytes_br_to_op\":1048576"), 1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"close\""), 1);
    hex[9] = '\0'; /* 9 hex digits of the room must never appear */
    ck_assert_int_eq(bt_log_count(&g_log, hex), 0);
    ck_assert_int_eq(bt_log_count(&g_log, "127.0.0.1"), 0);
    bt_close(op, 0);
    bt_close(bridge, 0);
    finish(br);
    free(a);
    free(b);
    free(ra);
    free(rb);
}
END_TEST

START_TEST(second_operator_room_busy)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *o1, *o2, *o3;

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    o1 = waiter(br->port, CT_ROLE_OPERATOR, room);
    o2 = cli(br->port);
    ck_assert_int_eq(bt_hello(o2, CT_ROLE_OPERATOR, room, 2000), 0);
    ck_assert_int_eq(bt_status(o2, 3000), CT_BEACON_ROOM_BUSY);
    ck_assert_int_eq(bt_read(o2, room, 1, 3000), 0); /* then close_notify */
    ck_assert_int_eq(bt_wait_eof(o2, 3000), 0);
    ck_assert_uint_eq(stats(br).refused_room_busy, 1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"status\":\"ROOM_BUSY\",\"role\":\"operator\""), 1);
    /* the first one leaves: the room is free again */
    bt_close(o1, 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    ck_assert_uint_eq(stats(br).rooms, 0);
    o3 = waiter(br->port, CT_ROLE_OPERATOR, room);
    bt_close(o2, 0);
    bt_close(o3, 0);
    finish(br);
}
END_TEST

START_TEST(bridge_pool_cap)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *b[4];

    opts(&o);
    o.max_waiting_per_room = 3;
    br = start(&o);
    bt_random(room, 32);
    for (int i = 0; i < 3; i++)
        b[i] = waiter(br->port, CT_ROLE_BRIDGE, room);
    b[3] = cli(br->port);
    ck_assert_int_eq(bt_hello(b[3], CT_ROLE_BRIDGE, room, 2000), 0);
    ck_assert_int_eq(bt_status(b[3], 3000), CT_BEACON_ROOM_BUSY);
    ck_assert_uint_eq(stats(br).refused_room_busy, 1);
    ck_assert_uint_eq(stats(br).waiting, 3);
    ck_assert_uint_eq(stats(br).rooms, 1);
    for (int i = 0; i < 4; i++)
        bt_close(b[i], 0);
    finish(br);
}
END_TEST

START_TEST(bridge_pool_fifo)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *b[3];

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    for (int i = 0; i < 3; i++)
        b[i] = waiter(br->port, CT_ROLE_BRIDGE, room); /* in this order */
    for (int round = 0; round < 3; round++) {
        bt_client *op = cli(br->port);
        uint8_t tag = 0xff;
        int paired = -1;
        ck_assert_int_eq(bt_hello(op, CT_ROLE_OPERATOR, room, 2000), 0);
        ck_assert_int_eq(bt_status(op, 3000), CT_BEACON_PAIRED);
        for (int i = round; i < 3; i++) {
            int st = bt_status_skip_waiting(b[i], i == round ? 3000 : 200);
            if (st == CT_BEACON_PAIRED) {
                ck_assert_int_eq(paired, -1);
                paired = i;
            } else {
                ck_assert_int_eq(st, -2); /* still waiting */
            }
        }
        ck_assert_int_eq(paired, round); /* the oldest bridge */
        /* tag: the paired bridge says who it is; the operator must hear it */
        tag = (uint8_t)paired;
        ck_assert_int_eq(bt_write(b[paired], &tag, 1, 2000), 0);
        tag = 0xff;
        ck_assert_int_eq(bt_read(op, &tag, 1, 3000), 1);
        ck_assert_int_eq(tag, round);
        bt_close(op, 0);
    }
    ck_assert_uint_eq(stats(br).pairs, 3);
    for (int i = 0; i < 3; i++)
        bt_close(b[i], 0);
    finish(br);
}
END_TEST

START_TEST(keepalive_while_waiting)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *b;
    int n = 0;
    int64_t end;

    opts(&o);
    o.keepalive_ms = 100;
    br = start(&o);
    bt_random(room, 32);
    b = waiter(br->port, CT_ROLE_BRIDGE, room);
    end = bt_now_ms() + 550;
    while (bt_now_ms() < end) {
        int st = bt_status(b, (int)(end - bt_now_ms()));
        if (st == -2)
            break;
        ck_assert_int_eq(st, CT_BEACON_WAITING);
        n++;
    }
    ck_assert_msg(n >= 2, "only %d keepalives in 550 ms", n);
    bt_close(b, 0);
    finish(br);
}
END_TEST

START_TEST(waiting_limit_timeout)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *b;

    opts(&o);
    o.wait_timeout_ms = 300;
    br = start(&o);
    bt_random(room, 32);
    b = waiter(br->port, CT_ROLE_BRIDGE, room);
    ck_assert_int_eq(bt_status_skip_waiting(b, 3000), CT_BEACON_TIMEOUT);
    ck_assert_int_eq(bt_read(b, room, 1, 3000), 0); /* close_notify */
    ck_assert_int_eq(bt_wait_eof(b, 3000), 0);      /* then FIN, nothing else */
    ck_assert_uint_eq(stats(br).timeouts, 1);
    ck_assert_uint_eq(stats(br).waiting, 0);
    bt_close(b, 0);
    finish(br);
}
END_TEST

/* A session_log hook that stalls the (single) worker once, on demand. */
static int g_stall_once;

static void stalling_log(void *user, const char *line)
{
    bt_log_cb(user, line);
    if (__atomic_exchange_n(&g_stall_once, 0, __ATOMIC_SEQ_CST))
        usleep(tl(400) * 1000);
}

/*
 * A peer that ends cleanly (data, close_notify) and then closes its socket
 * with unread bytes, so the kernel sends a reset: what it sent must still
 * reach its partner, followed by close_notify. To make the race certain the
 * only worker is stalled (in the session log) while the operator's data,
 * close_notify and reset all arrive, so the relay sees them in one wakeup:
 * EPOLLIN | EPOLLERR with the data still queued in the socket.
 */
START_TEST(clean_end_then_reset_delivers_everything)
{
    enum { N = 6000 };
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], x[N], rx[N], bad[CT_BEACON_HELLO_LEN];
    bt_client *op, *bridge, *rule_breaker;
    const char *why = "";
    int outq = -1;

    opts(&o);
    o.threads = 1;
    o.session_log = stalling_log;
    br = start(&o);
    bt_random(x, N);
    make_pair(br->port, room, &op, &bridge);
    rule_breaker = cli(br->port);
    memset(bad, 0, sizeof bad);
    __atomic_store_n(&g_stall_once, 1, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(bt_write(rule_breaker, bad, sizeof bad, 2000), 0); /* BAD_HELLO: stall */
    usleep(tl(50) * 1000);
    ck_assert_int_eq(bt_write(op, x, N, 2000), 0);
    ck_assert_int_eq(bt_shutdown(op, 2000), 0);
    for (int64_t dl = bt_now_ms() + 2000; bt_now_ms() < dl; usleep(2000))
        if (ioctl(bt_fd(op), SIOCOUTQ, &outq) == 0 && outq == 0)
            break; /* the relay's kernel has acknowledged it all */
    ck_assert_int_eq(outq, 0);
    ck_assert_int_eq(__atomic_load_n(&g_stall_once, __ATOMIC_SEQ_CST), 0); /* still stalled */
    bt_close(op, 1); /* RST */
    {
        bt_flow f = {.c = bridge, .in = rx, .in_len = N, .expect_close = 1};
        ck_assert_msg(bt_transfer(&f, 1, tl(5000), &why) == 0, "bridge: %s", why);
    }
    ck_assert_mem_eq(x, rx, N);
    ck_assert_int_eq(bt_status(rule_breaker, 3000), CT_BEACON_BAD_HELLO);
    bt_close(rule_breaker, 0);
    bt_close(bridge, 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    finish(br);
}
END_TEST

/* One side ends its direction; the other keeps sending; then it ends too. */
static void half_close_case(int op_first)
{
    enum { N = 300 * 1024 };
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], *x = malloc(N), *y = malloc(N), *rx = malloc(N), *ry = malloc(N);
    bt_client *op, *bridge, *first, *second;
    const char *why = "";

    opts(&o);
    br = start(&o);
    make_pair(br->port, room, &op, &bridge);
    first = op_first ? op : bridge;
    second = op_first ? bridge : op;
    bt_random(x, N);
    bt_random(y, N);
    {
        /* first sends x and close_notify; second receives x then close_notify */
        bt_flow f[2] = {
            {.c = first, .out = x, .out_len = N, .shut = 1},
            {.c = second, .in = rx, .in_len = N, .expect_close = 1},
        };
        ck_assert_msg(bt_transfer(f, 2, 20000, &why) == 0, "stage 1: %s", why);
    }
    ck_assert_mem_eq(x, rx, N);
    {
        /* the other direction still flows (second already saw close_notify) */
        bt_flow f[2] = {
            {.c = second, .out = y, .out_len = N, .shut = 1, .got_close = 1},
            {.c = first, .in = ry, .in_len = N, .expect_close = 1},
        };
        ck_assert_msg(bt_transfer(f, 2, 20000, &why) == 0, "stage 2: %s", why);
    }
    ck_assert_mem_eq(y, ry, N);
    ck_assert_int_eq(bt_wait_eof(first, 3000), 0);
    ck_assert_int_eq(bt_wait_eof(second, 3000), 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    ck_assert_uint_eq(stats(br).half_closes, 2);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"close\""), 1);
    bt_close(op, 0);
    bt_close(bridge, 0);
    finish(br);
    free(x);
    free(y);
    free(rx);
    free(ry);
}

START_TEST(half_close_operator_first)
{
    half_close_case(1);
}
END_TEST

START_TEST(half_close_bridge_first)
{
    half_close_case(0);
}
END_TEST

START_TEST(half_close_linger)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *op, *bridge;
    int64_t t0;

    opts(&o);
    o.linger_ms = 300;
    br = start(&o);
    make_pair(br->port, room, &op, &bridge);
    ck_assert_int_eq(bt_shutdown(op, 2000), 0);
    t0 = bt_now_ms();
    ck_assert_int_eq(bt_read(bridge, room, 1, 3000), 0); /* close_notify relayed */
    /* the bridge never ends its direction: the linger deadline closes both */
    ck_assert_int_eq(bt_read(op, room, 1, 3000), -1);
    ck_assert_int_lt(bt_now_ms() - t0, tl(2000));
    ck_assert_int_eq(bt_wait_eof(bridge, 3000), 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"linger\""), 1);
    bt_close(op, 0);
    bt_close(bridge, 0);
    finish(br);
}
END_TEST

static void dead_peer_case(int linger0, int kill_op)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], b;
    bt_client *op, *bridge, *victim, *partner;
    int64_t t0;
    int r;

    opts(&o);
    br = start(&o);
    make_pair(br->port, room, &op, &bridge);
    victim = kill_op ? op : bridge;
    partner = kill_op ? bridge : op;
    /* some traffic first */
    b = 7;
    ck_assert_int_eq(bt_write(partner, &b, 1, 2000), 0);
    ck_assert_int_eq(bt_read(victim, &b, 1, 2000), 1);
    t0 = bt_now_ms();
    bt_close(victim, linger0); /* no close_notify: FIN, or RST with linger0 */
    r = bt_read(partner, &b, 1, 3000);
    ck_assert_int_eq(r, -1); /* an abort, not a clean end */
    ck_assert_int_lt(bt_now_ms() - t0, tl(1000));
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    ck_assert_uint_eq(stats(br).aborts, 1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"reset\""), 1);
    bt_close(partner, 0);
    finish(br);
}

START_TEST(dead_operator_fin)
{
    dead_peer_case(0, 1);
}
END_TEST

START_TEST(dead_bridge_rst)
{
    dead_peer_case(1, 0);
}
END_TEST

static int drained_one(const ct_relay_stats *s, void *arg)
{
    (void)arg;
    return s->refused_draining == 1;
}

START_TEST(drain)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], room2[32], x[4000], y[4000], rx[4000], ry[4000];
    bt_client *op, *bridge, *w;
    const char *why = "";
    int refused = 0;

    opts(&o);
    o.drain_timeout_ms = tl(5000);
    br = start(&o);
    make_pair(br->port, room, &op, &bridge);
    bt_random(room2, 32);
    w = waiter(br->port, CT_ROLE_BRIDGE, room2);
    ct_relay_drain(br->r);
    ck_assert_int_eq(bt_status_skip_waiting(w, 3000), CT_BEACON_DRAINING);
    ck_assert_int_eq(bt_wait_stats(br->r, drained_one, NULL, 3000), 0);
    /* no new connections (each worker closes its listener) */
    for (int i = 0; i < 50 && !refused; i++) {
        int fd = bt_tcp_connect("127.0.0.1", br->port, 1000);
        if (fd < 0) {
            refused = 1;
        } else {
            close(fd);
            usleep(20000);
        }
    }
    ck_assert(refused);
    /* the paired session keeps working */
    bt_random(x, sizeof x);
    bt_random(y, sizeof y);
    {
        bt_flow f[2] = {
            {.c = op, .out = x, .out_len = sizeof x, .shut = 1, .in = ry,
             .in_len = sizeof ry, .expect_close = 1},
            {.c = bridge, .out = y, .out_len = sizeof y, .shut = 1, .in = rx,
             .in_len = sizeof rx, .expect_close = 1},
        };
        ck_assert_msg(bt_transfer(f, 2, 5000, &why) == 0, "transfer: %s", why);
    }
    ck_assert_mem_eq(x, rx, sizeof x);
    ck_assert_mem_eq(y, ry, sizeof y);
    /* ... and when it ends, serve returns (well before the drain deadline) */
    ck_assert_int_eq(bt_relay_wait(br, tl(2500)), 0);
    ck_assert_int_eq(br->serve_rc, CT_OK);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"close\""), 1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"status\":\"DRAINING\""), 1);
    bt_close(op, 0);
    bt_close(bridge, 0);
    bt_close(w, 0);
    finish(br);
}
END_TEST

START_TEST(drain_deadline)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32];
    bt_client *op, *bridge;
    int64_t t0;

    opts(&o);
    o.drain_timeout_ms = 400;
    br = start(&o);
    make_pair(br->port, room, &op, &bridge);
    t0 = bt_now_ms();
    ct_relay_drain(br->r);
    ck_assert_int_eq(bt_relay_wait(br, tl(3000)), 0);
    ck_assert_int_ge(bt_now_ms() - t0, 350);
    ck_assert_int_eq(bt_read(op, room, 1, 2000), -1);
    ck_assert_int_eq(bt_read(bridge, room, 1, 2000), -1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"drain\""), 1);
    bt_close(op, 0);
    bt_close(bridge, 0);
    finish(br);
}
END_TEST

START_TEST(stop_closes_everything)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], room2[32];
    bt_client *op, *bridge, *w, *tls_pending;
    int raw;
    int64_t t0;

    opts(&o);
    br = start(&o);
    make_pair(br->port, room, &op, &bridge);
    bt_random(room2, 32);
    w = waiter(br->port, CT_ROLE_OPERATOR, room2);
    tls_pending = cli(br->port); /* TLS up, no hello */
    raw = bt_tcp_connect("127.0.0.1", br->port, 2000);
    ck_assert_int_ge(raw, 0);
    ck_assert_int_eq(bt_wait_open(br->r, 5, 3000), 0);
    t0 = bt_now_ms();
    ct_relay_stop(br->r);
    ck_assert_int_eq(bt_relay_wait(br, tl(2000)), 0);
    ck_assert_int_lt(bt_now_ms() - t0, tl(1000));
    ck_assert_int_eq(bt_read(op, room, 1, 2000), -1);
    ck_assert_int_eq(bt_read(w, room, 1, 2000), -1);
    ck_assert_int_eq(bt_read(tls_pending, room, 1, 2000), -1);
    ck_assert_int_eq(stats(br).conns_open, 0);
    bt_close(op, 0);
    bt_close(bridge, 0);
    bt_close(w, 0);
    bt_close(tls_pending, 0);
    close(raw);
    finish(br);
}
END_TEST

static int handshake_failed(const ct_relay_stats *s, void *arg)
{
    (void)arg;
    return s->handshakes_failed >= 1 && s->conns_open == 0;
}

START_TEST(garbage_instead_of_tls)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: beacon\r\n\r\n";
    ct_relay_options o;
    bt_relay *br;
    uint8_t junk[600];
    int fd;

    opts(&o);
    o.hello_timeout_ms = 1000;
    br = start(&o);
    fd = bt_tcp_connect("127.0.0.1", br->port, 2000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    ck_assert_int_eq(bt_wait_stats(br->r, handshake_failed, NULL, 3000), 0);
    close(fd);
    /* a handshake record with a well-formed header and a random body */
    bt_random(junk, sizeof junk);
    junk[0] = 0x16;
    junk[1] = 0x03;
    junk[2] = 0x01;
    junk[3] = (sizeof junk - 5) >> 8;
    junk[4] = (sizeof junk - 5) & 0xff;
    fd = bt_tcp_connect("127.0.0.1", br->port, 2000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    close(fd);
    /* a record header announcing more than ever comes: the hello deadline */
    junk[3] = 0x40;
    fd = bt_tcp_connect("127.0.0.1", br->port, 2000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, junk, 64), 64);
    ck_assert_int_eq(bt_wait_open(br->r, 1, 3000), 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    close(fd);
    finish(br);
}
END_TEST

/* Sends raw hello bytes (n of them) and returns the status the beacon answers. */
static int hello_answer(uint16_t port, const uint8_t *h, size_t n, int then_shutdown)
{
    bt_client *c = cli(port);
    int st, end;
    uint8_t b;
    ck_assert_int_eq(bt_write(c, h, n, 2000), 0);
    if (then_shutdown)
        ck_assert_int_eq(bt_shutdown(c, 2000), 0);
    st = bt_status(c, 3000);
    end = bt_read(c, &b, 1, 3000);
    ck_assert_msg(end == 0, "refusal %d not followed by close_notify (%d)", st, end);
    bt_close(c, 0);
    return st;
}

START_TEST(bad_hellos)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], good[CT_BEACON_HELLO_LEN], h[CT_BEACON_HELLO_LEN];
    ct_relay_stats s;

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_BRIDGE, room, good), CT_OK);
    memcpy(h, good, sizeof h);
    h[0] = 'X';
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_HELLO);
    memcpy(h, good, sizeof h);
    h[4] = 2;
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_VERSION);
    memcpy(h, good, sizeof h);
    h[5] = 0;
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_HELLO);
    h[5] = 3;
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_HELLO);
    memcpy(h, good, sizeof h);
    h[7] = 1;
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_HELLO);
    /* truncated: 20 bytes, then close_notify */
    ck_assert_int_eq(hello_answer(br->port, good, 20, 1), CT_BEACON_BAD_HELLO);
    /* truncated then the TCP connection just closes: counted, nothing to tell */
    {
        bt_client *c = cli(br->port);
        ck_assert_int_eq(bt_write(c, good, 10, 2000), 0);
        bt_close(c, 0);
    }
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    s = stats(br);
    ck_assert_uint_eq(s.hellos_bad, 6);
    ck_assert_uint_eq(s.refused_version, 1);
    ck_assert_uint_eq(s.waiting, 0);
    ck_assert_uint_eq(s.rooms, 0);
    finish(br);
}
END_TEST

START_TEST(data_before_paired)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], h[CT_BEACON_HELLO_LEN + 1];
    bt_client *c;
    uint8_t one = 0x42;

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    /* one byte more than the hello, in the same record */
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_BRIDGE, room, h), CT_OK);
    h[CT_BEACON_HELLO_LEN] = 0;
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_HELLO);
    /* a byte while waiting */
    c = waiter(br->port, CT_ROLE_BRIDGE, room);
    ck_assert_int_eq(bt_write(c, &one, 1, 2000), 0);
    ck_assert_int_eq(bt_status_skip_waiting(c, 3000), CT_BEACON_BAD_HELLO);
    ck_assert_int_eq(bt_read(c, &one, 1, 3000), 0);
    bt_close(c, 0);
    /* an operator that sends data with its hello does not consume the waiting bridge */
    bt_random(room, 32);
    c = waiter(br->port, CT_ROLE_BRIDGE, room);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_OPERATOR, room, h), CT_OK);
    ck_assert_int_eq(hello_answer(br->port, h, sizeof h, 0), CT_BEACON_BAD_HELLO);
    {
        bt_client *op = cli(br->port);
        ck_assert_int_eq(bt_hello(op, CT_ROLE_OPERATOR, room, 2000), 0);
        ck_assert_int_eq(bt_status(op, 3000), CT_BEACON_PAIRED);
        ck_assert_int_eq(bt_status_skip_waiting(c, 3000), CT_BEACON_PAIRED);
        bt_close(op, 0);
    }
    bt_close(c, 0);
    ck_assert_uint_eq(stats(br).hellos_bad, 3);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    ck_assert_uint_eq(stats(br).rooms, 0);
    finish(br);
}
END_TEST

START_TEST(slow_client_hits_hello_deadline)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], h[CT_BEACON_HELLO_LEN];
    bt_client *c;
    int64_t t0;
    int st = -2, raw;

    opts(&o);
    o.hello_timeout_ms = tl(600);
    br = start(&o);
    bt_random(room, 32);
    ck_assert_int_eq(ct_beacon_hello_encode(CT_ROLE_BRIDGE, room, h), CT_OK);
    t0 = bt_now_ms();
    c = cli(br->port);
    /* one byte per 100 ms: the whole hello would take 4 s */
    for (int i = 0; i < CT_BEACON_HELLO_LEN && st == -2; i++) {
        if (bt_write(c, h + i, 1, 1000) != 0)
            break;
        st = bt_status(c, tl(100));
    }
    if (st == -2)
        st = bt_status(c, 2000);
    ck_assert_int_eq(st, CT_BEACON_TIMEOUT);
    ck_assert_int_lt(bt_now_ms() - t0, tl(1500));
    bt_close(c, 0);
    /* a TCP connection that never starts TLS is closed by the same deadline */
    t0 = bt_now_ms();
    raw = bt_tcp_connect("127.0.0.1", br->port, 2000);
    ck_assert_int_ge(raw, 0);
    ck_assert_int_eq(bt_wait_open(br->r, 1, 3000), 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, tl(3000)), 0);
    ck_assert_int_ge(bt_now_ms() - t0, tl(600) - 50);
    ck_assert_int_lt(bt_now_ms() - t0, tl(1500));
    close(raw);
    ck_assert_uint_eq(stats(br).timeouts, 2);
    finish(br);
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int waiting_is(const ct_relay_stats *s, void *arg)
{
    return s->waiting == *(uint32_t *)arg;
}

START_TEST(thousands_of_rooms)
{
    int n = ct_test_under_valgrind() ? 60 : 2000;
    int npair = n / 10;
    ct_relay_options o;
    bt_relay *br;
    struct rlimit rl;
    uint8_t(*rooms)[32] = malloc((size_t)n * 32);
    bt_client **b = calloc((size_t)n, sizeof *b);
    int64_t *lat = calloc((size_t)npair, sizeof *lat);
    size_t heap0, heap1;
    long rss0, rss1;
    uint32_t want;
    int64_t t0;

    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)(2 * n + 2 * npair + 64)) {
        fprintf(stderr, "SKIP thousands_of_rooms: RLIMIT_NOFILE hard limit %lu < %d\n",
                (unsigned long)rl.rlim_max, 2 * n + 2 * npair + 64);
        goto out;
    }
    opts(&o);
    br = start(&o);
    /* warm up the allocator and wolfSSL's per-thread tables */
    {
        uint8_t r0[32];
        bt_client *w0;
        bt_random(r0, 32);
        w0 = waiter(br->port, CT_ROLE_BRIDGE, r0);
        bt_close(w0, 0);
        ck_assert_int_eq(bt_wait_open(br->r, 0, 3000), 0);
    }
    heap0 = mallinfo2().uordblks;
    rss0 = rss_kb();
    t0 = bt_now_ms();
    for (int i = 0; i < n; i++) {
        bt_random(rooms[i], 32);
        b[i] = waiter(br->port, CT_ROLE_BRIDGE, rooms[i]);
        bt_drop_tls(b[i]); /* keep only the socket: measure the beacon's memory */
    }
    want = (uint32_t)n;
    ck_assert_int_eq(bt_wait_stats(br->r, waiting_is, &want, 5000), 0);
    heap1 = mallinfo2().uordblks;
    rss1 = rss_kb();
    fprintf(stderr,
            "thousands_of_rooms: %d waiting in %lld ms; per waiting conn: heap %.1f KiB "
            "(mallinfo2), RSS %.1f KiB (beacon plus what each test client leaves behind)\n",
            n, (long long)(bt_now_ms() - t0),
            heap1 > heap0 ? (double)(heap1 - heap0) / 1024.0 / n : 0.0,
            (double)(rss1 - rss0) / n);
    ck_assert_uint_eq(stats(br).rooms, (uint64_t)n);
    /* pairing latency: hello sent -> PAIRED received, with n rooms waiting */
    for (int i = 0; i < npair; i++) {
        bt_client *op = cli(br->port);
        struct timespec a, z;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ck_assert_int_eq(bt_hello(op, CT_ROLE_OPERATOR, rooms[i * 10], 2000), 0);
        ck_assert_int_eq(bt_status(op, 3000), CT_BEACON_PAIRED);
        clock_gettime(CLOCK_MONOTONIC, &z);
        lat[i] = (z.tv_sec - a.tv_sec) * 1000000 + (z.tv_nsec - a.tv_nsec) / 1000;
        bt_close(op, 0);
    }
    qsort(lat, (size_t)npair, sizeof *lat, cmp_i64);
    fprintf(stderr,
            "thousands_of_rooms: pairing latency (client hello -> PAIRED, loopback, "
            "%d pairs) p50 %lld us, p99 %lld us, max %lld us\n",
            npair, (long long)lat[npair / 2], (long long)lat[npair * 99 / 100],
            (long long)lat[npair - 1]);
    if (!ct_test_under_valgrind())
        ck_assert_msg(lat[npair * 99 / 100] < 50000, "p99 %lld us", (long long)lat[npair * 99 / 100]);
    ck_assert_uint_eq(stats(br).pairs, (uint64_t)npair);
    for (int i = 0; i < n; i++)
        bt_close(b[i], 0);
    ck_assert_int_eq(bt_wait_open(br->r, 0, 10000), 0);
    ck_assert_uint_eq(stats(br).rooms, 0);
    ck_assert_uint_eq(stats(br).waiting, 0);
    finish(br);
out:
    free(rooms);
    free(b);
    free(lat);
}
END_TEST

START_TEST(per_address_connection_cap)
{
    ct_relay_options o;
    bt_relay *br;
    bt_client *c[6];
    uint8_t room[32];

    opts(&o);
    o.max_conns_per_ip = 5;
    br = start(&o);
    for (int i = 0; i < 5; i++) {
        bt_random(room, 32);
        c[i] = waiter(br->port, CT_ROLE_BRIDGE, room);
    }
    c[5] = cli(br->port);
    bt_random(room, 32);
    bt_hello(c[5], CT_ROLE_BRIDGE, room, 2000); /* may fail: the refusal comes first */
    ck_assert_int_eq(bt_status(c[5], 3000), CT_BEACON_RATE_LIMITED);
    ck_assert_uint_eq(stats(br).refused_rate_limited, 1);
    ck_assert_uint_eq(stats(br).refused_ip_conns, 1);
    ck_assert_int_eq(bt_log_count(&g_log, "\"status\":\"RATE_LIMITED\""), 1);
    bt_close(c[5], 0);
    /* one leaves: a new one is admitted */
    bt_close(c[0], 0);
    ck_assert_int_eq(bt_wait_open(br->r, 4, 3000), 0);
    bt_random(room, 32);
    c[0] = waiter(br->port, CT_ROLE_BRIDGE, room);
    for (int i = 0; i < 5; i++)
        bt_close(c[i], 0);
    finish(br);
}
END_TEST

START_TEST(per_address_accept_rate)
{
    ct_relay_options o;
    bt_relay *br;
    bt_client *c;
    int fd[3];
    uint8_t room[32];

    opts(&o);
    o.accept_rate_per_ip = 1; /* burst 2 */
    o.threads = 1;            /* one listener: accepted in connect order */
    br = start(&o);
    /* three TCP connections at once (the verdict is taken at accept): two use
     * up the burst, the third then runs TLS to hear its refusal */
    for (int i = 0; i < 3; i++) {
        fd[i] = bt_tcp_connect("127.0.0.1", br->port, 2000);
        ck_assert_int_ge(fd[i], 0);
    }
    {
        const char *why = "";
        c = bt_connect_fd(g_cli, fd[2], tl(3000), &why);
        ck_assert_msg(c != NULL, "TLS: %s", why);
    }
    bt_random(room, 32);
    bt_hello(c, CT_ROLE_BRIDGE, room, 2000);
    ck_assert_int_eq(bt_status(c, 3000), CT_BEACON_RATE_LIMITED);
    ck_assert_uint_eq(stats(br).refused_ip_rate, 1);
    bt_close(c, 0);
    close(fd[0]);
    close(fd[1]);
    /* tokens come back: 1 per second */
    usleep(1100000);
    c = cli(br->port);
    bt_random(room, 32);
    ck_assert_int_eq(bt_hello(c, CT_ROLE_BRIDGE, room, 2000), 0);
    ck_assert_int_eq(bt_status(c, 3000), CT_BEACON_WAITING);
    bt_close(c, 0);
    finish(br);
}
END_TEST

START_TEST(refusals_with_status_are_rate_limited)
{
    ct_relay_options o;
    bt_relay *br;
    bt_client *keep;
    int with_status = 0, closed = 0, limit;
    int64_t t0;
    ct_relay_stats s;

    opts(&o);
    o.max_conns_per_ip = 1;
    br = start(&o);
    keep = cli(br->port);
    t0 = bt_now_ms();
    for (int i = 0; i < 14; i++) {
        const char *why = "";
        bt_client *c = bt_connect(g_cli, "127.0.0.1", br->port, 3000, &why);
        if (c && bt_status(c, 3000) == CT_BEACON_RATE_LIMITED)
            with_status++;
        else
            closed++;
        bt_close(c, 0);
    }
    s = stats(br);
    /* burst 8, plus 2 per second of the loop; the rest closed without TLS */
    limit = 8 + (int)(2 * (bt_now_ms() - t0) / 1000) + 1;
    ck_assert_msg(with_status >= 8 && with_status <= limit, "with status %d", with_status);
    if (!ct_test_under_valgrind())
        ck_assert_int_ge(closed, 3);
    ck_assert_int_eq(with_status + closed, 14);
    ck_assert_uint_eq(s.closed_without_status, (uint64_t)closed);
    ck_assert_uint_eq(s.refused_rate_limited, 14);
    bt_close(keep, 0);
    finish(br);
}
END_TEST

static int accepted_n(const ct_relay_stats *s, void *arg)
{
    return s->accepted >= *(uint64_t *)arg;
}

START_TEST(global_connection_cap)
{
    ct_relay_options o;
    bt_relay *br;
    int fd[3];
    bt_client *c;
    const char *why = "";
    uint64_t n3 = 3;
    ct_relay_stats s;

    opts(&o);
    o.max_conns = 3;
    br = start(&o);
    for (int i = 0; i < 3; i++) {
        fd[i] = bt_tcp_connect("127.0.0.1", br->port, 2000);
        ck_assert_int_ge(fd[i], 0);
    }
    ck_assert_int_eq(bt_wait_stats(br->r, accepted_n, &n3, 3000), 0);
    /* the fourth is closed right after accept, before any TLS */
    c = bt_connect(g_cli, "127.0.0.1", br->port, 3000, &why);
    ck_assert_ptr_null(c);
    s = stats(br);
    ck_assert_uint_eq(s.refused_overloaded, 1);
    ck_assert_uint_eq(s.closed_without_status, 1);
    ck_assert_uint_eq(s.conns_open, 3);
    close(fd[0]);
    ck_assert_int_eq(bt_wait_open(br->r, 2, 3000), 0);
    c = cli(br->port); /* room again */
    bt_close(c, 0);
    close(fd[1]);
    close(fd[2]);
    finish(br);
}
END_TEST

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* One connect/disconnect cycle of a kind chosen by i. */
static void cycle(uint16_t port, int i)
{
    uint8_t room[32], b = 1;
    if (i % 100 == 0) {
        bt_client *op, *br;
        make_pair(port, room, &op, &br);
        ck_assert_int_eq(bt_write(op, &b, 1, 2000), 0);
        ck_assert_int_eq(bt_read(br, &b, 1, 2000), 1);
        bt_close(op, i % 200 == 0);
        bt_close(br, 0);
    } else if (i % 10 == 0) {
        bt_client *w;
        bt_random(room, 32);
        w = waiter(port, i % 20 ? CT_ROLE_BRIDGE : CT_ROLE_OPERATOR, room);
        if (i % 30 == 0)
            bt_shutdown(w, 1000);
        bt_close(w, 0);
    } else {
        int fd = bt_tcp_connect("127.0.0.1", port, 2000);
        ck_assert_int_ge(fd, 0);
        if (i % 3 == 0)
            ck_assert_int_eq(write(fd, "\x16\x03\x01", 3), 3);
        if (i % 7 == 0) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
    }
}

/*
 * Waits until the relay is idle: nothing open and nothing accepted for
 * 200 ms. conns_open == 0 alone is not enough: a client's connect completes
 * in the kernel before the relay has accepted it.
 */
static void quiesce(bt_relay *br)
{
    int64_t dl = bt_now_ms() + tl(10000), since = bt_now_ms();
    uint64_t last = UINT64_MAX;
    for (;;) {
        ct_relay_stats s = stats(br);
        if (s.accepted != last || s.conns_open != 0) {
            last = s.accepted;
            since = bt_now_ms();
        } else if (bt_now_ms() - since >= 200) {
            return;
        }
        ck_assert_msg(bt_now_ms() < dl, "relay does not become idle (%u open)", s.conns_open);
        usleep(10000);
    }
}

START_TEST(no_fd_or_memory_growth)
{
    int n = ct_test_under_valgrind() ? 300 : 10000;
    ct_relay_options o;
    bt_relay *br;
    int fds0, fds1;
    size_t heap0, heap1;
    ct_relay_stats s;
    int64_t t0 = bt_now_ms();

    opts(&o);
    br = start(&o);
    /* warm-up: free lists, tables, and wolfSSL's per-thread FP_ECC tables
     * (about 800 KB each, built lazily by each worker and the test thread) */
    for (int i = 0; i < (ct_test_under_valgrind() ? 10 : 100); i++)
        cycle(br->port, 10);
    for (int i = 0; i < (ct_test_under_valgrind() ? 30 : 300); i++)
        cycle(br->port, i);
    quiesce(br);
    fds0 = count_fds();
    heap0 = mallinfo2().uordblks;
    for (int i = 0; i < n; i++) {
        cycle(br->port, i);
        if (i % 500 == 499) /* stay clear of the accept backlog */
            ck_assert_int_eq(bt_wait_open(br->r, 0, 5000), 0);
    }
    quiesce(br);
    fds1 = count_fds();
    heap1 = mallinfo2().uordblks;
    s = stats(br);
    fprintf(stderr,
            "no_growth: %d cycles in %lld ms; fds %d -> %d; heap %zu -> %zu bytes; "
            "accepted %llu, handshakes failed %llu, pairs %llu\n",
            n, (long long)(bt_now_ms() - t0), fds0, fds1, heap0, heap1,
            (unsigned long long)s.accepted, (unsigned long long)s.handshakes_failed,
            (unsigned long long)s.pairs);
    ck_assert_int_eq(fds1, fds0);
    if (heap0 != 0) /* 0 under ASan/valgrind: their allocators keep their own books */
        ck_assert_msg(heap1 < heap0 + 512 * 1024, "heap grew %zu -> %zu", heap0, heap1);
    ck_assert_uint_eq(s.waiting, 0);
    ck_assert_uint_eq(s.rooms, 0);
    ck_assert_uint_eq(s.paired_sessions, 0);
    finish(br);
}
END_TEST

START_TEST(reload_certificate)
{
    ct_relay_options o;
    bt_relay *br;
    bt_pki p2;
    void *cli2;
    bt_client *old_side, *c, *new_side;
    uint8_t room[32], b;
    const char *why = "";
    ct_error err;

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    old_side = waiter(br->port, CT_ROLE_BRIDGE, room); /* accepted with the old cert */
    bt_pki_make(g_ctx, &p2);
    cli2 = bt_client_ctx_new(p2.ca_der, p2.ca_len);
    ck_assert_int_eq(ct_relay_reload_cert(br->r, (const uint8_t *)"junk", 4, p2.key, &err),
                     CT_E_CERT);
    ck_assert_int_eq(ct_relay_reload_cert(br->r, p2.cert_der, p2.cert_len, g_pki.key, &err),
                     CT_E_CERT); /* key does not match */
    ck_ok(ct_relay_reload_cert(br->r, p2.cert_der, p2.cert_len, p2.key, &err), &err);
    /* new connections get the new certificate */
    c = bt_connect(g_cli, "127.0.0.1", br->port, 3000, &why);
    ck_assert_ptr_null(c);
    new_side = bt_connect(cli2, "127.0.0.1", br->port, 3000, &why);
    ck_assert_msg(new_side != NULL, "new cert: %s", why);
    /* an old session and a new one pair and talk */
    ck_assert_int_eq(bt_hello(new_side, CT_ROLE_OPERATOR, room, 2000), 0);
    ck_assert_int_eq(bt_status(new_side, 3000), CT_BEACON_PAIRED);
    ck_assert_int_eq(bt_status_skip_waiting(old_side, 3000), CT_BEACON_PAIRED);
    b = 9;
    ck_assert_int_eq(bt_write(old_side, &b, 1, 2000), 0);
    ck_assert_int_eq(bt_read(new_side, &b, 1, 2000), 1);
    ck_assert_int_eq(b, 9);
    bt_close(old_side, 0);
    bt_close(new_side, 0);
    finish(br);
    bt_client_ctx_free(cli2);
    bt_pki_free(&p2);
}
END_TEST

START_TEST(ipv6_loopback)
{
    ct_relay_options o;
    ct_relay *r = NULL;
    ct_error err;
    bt_relay *br;
    uint8_t room[32];
    bt_client *a, *b;
    const char *why = "";

    opts(&o);
    o.listen_host = "::1";
    if (ct_relay_new(g_ctx, &o, &r, &err) != CT_OK) {
        fprintf(stderr, "SKIP ipv6_loopback: %s\n", err.message);
        return;
    }
    ct_relay_free(r);
    br = start(&o);
    bt_random(room, 32);
    a = bt_connect(g_cli, "::1", br->port, 3000, &why);
    ck_assert_msg(a != NULL, "connect ::1: %s", why);
    ck_assert_int_eq(bt_hello(a, CT_ROLE_BRIDGE, room, 2000), 0);
    ck_assert_int_eq(bt_status(a, 3000), CT_BEACON_WAITING);
    b = bt_connect(g_cli, "::1", br->port, 3000, &why);
    ck_assert_msg(b != NULL, "connect ::1: %s", why);
    ck_assert_int_eq(bt_hello(b, CT_ROLE_OPERATOR, room, 2000), 0);
    ck_assert_int_eq(bt_status(b, 3000), CT_BEACON_PAIRED);
    bt_close(a, 0);
    bt_close(b, 0);
    finish(br);
}
END_TEST

START_TEST(api_errors)
{
    ct_relay_options o;
    ct_relay *r = NULL, *r2 = NULL;
    ct_error err;
    bt_relay *br;
    bt_pki p2;

    opts(&o);
    ck_assert_int_eq(ct_relay_new(g_ctx, NULL, &r, &err), CT_E_INVALID);
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, NULL, &err), CT_E_INVALID);
    o.version = 99;
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, &r, &err), CT_E_VERSION);
    opts(&o);
    o.threads = -1;
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, &r, &err), CT_E_INVALID);
    opts(&o);
    o.cert = NULL;
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, &r, &err), CT_E_INVALID);
    opts(&o);
    o.cert = (const uint8_t *)"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    o.cert_len = strlen((const char *)o.cert);
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, &r, &err), CT_E_CERT);
    bt_pki_make(g_ctx, &p2);
    opts(&o);
    o.key = p2.key; /* not the certificate's key */
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, &r, &err), CT_E_CERT);
    bt_pki_free(&p2);
    ck_assert_ptr_null(r);
    /* a port already in use is refused, not silently shared */
    opts(&o);
    ck_ok(ct_relay_new(g_ctx, &o, &r, &err), &err);
    o.listen_port = ct_relay_port(r);
    ck_assert_int_eq(ct_relay_new(g_ctx, &o, &r2, &err), CT_E_ADDRINUSE);
    ct_relay_free(r);
    /* serve runs once; free without serve is fine */
    opts(&o);
    br = start(&o);
    ct_relay_stop(br->r);
    ck_assert_int_eq(bt_relay_wait(br, 3000), 0);
    ck_assert_int_eq(ct_relay_serve(br->r, &err), CT_E_STATE);
    finish(br);
    /* drain before serve: serve returns at once */
    opts(&o);
    ck_ok(ct_relay_new(g_ctx, &o, &r, &err), &err);
    ct_relay_drain(r);
    ck_ok(ct_relay_serve(r, &err), &err);
    ct_relay_free(r);
    ct_relay_free(NULL);
    ct_relay_drain(NULL);
    ct_relay_stop(NULL);
    ck_assert_int_eq(ct_relay_port(NULL), 0);
}
END_TEST


/* ------------------------------------------------------------------ */
/* The peer side: ct_beacon_connect                                    */

static void beacon_opts(ct_beacon_options *bo, uint16_t port)
{
    *bo = (ct_beacon_options)CT_BEACON_OPTIONS_INIT;
    bo->host = "127.0.0.1";
    bo->port = port;
    bo->ca = g_pki.ca_der;
    bo->ca_len = g_pki.ca_len;
    bo->connect_timeout_ms = tl(5000);
    bo->pair_timeout_ms = tl(10000);
}

enum { INNER_N = 64 * 1024 };

struct inner_side {
    uint16_t port;
    const uint8_t *room;
    ct_beacon_role role;
    const ct_secret *psk;
    const uint8_t *out; /* INNER_N bytes to send */
    uint8_t *in;        /* INNER_N bytes expected */
    ct_err rc;
    char why[300];
};

/*
 * One peer: pairs through the beacon, then runs its own TLS 1.3 (PSK) inside
 * the beacon connection, sends INNER_N bytes, ends its direction, and reads
 * the partner's INNER_N bytes up to the partner's end of stream.
 */
static void *inner_peer(void *arg)
{
    struct inner_side *x = arg;
    ct_beacon_options bo;
    ct_tls_options to = CT_TLS_OPTIONS_INIT;
    ct_tls_config *cfg = NULL;
    ct_conn *leg = NULL, *e2e = NULL;
    ct_error err;
    uint8_t b;
    size_t got = 0;

    ct_error_clear(&err);
    beacon_opts(&bo, x->port);
    x->rc = ct_beacon_connect(g_ctx, &bo, x->role, x->room, &leg, &err);
    if (x->rc != CT_OK)
        goto out;
    to.role = x->role == CT_ROLE_OPERATOR ? CT_TLS_SERVER : CT_TLS_CLIENT;
    to.psk = x->psk;
    to.psk_identity = "beacon-test";
    if ((x->rc = ct_tls_config_new(g_ctx, &to, &cfg, &err)) != CT_OK)
        goto out;
    x->rc = ct_tls_wrap(cfg, leg, tl(10000), &e2e, &err);
    leg = NULL;
    if (x->rc != CT_OK)
        goto out;
    if ((x->rc = ct_conn_send_all(e2e, x->out, INNER_N, NULL, tl(10000), &err)) != CT_OK ||
        (x->rc = ct_conn_shutdown_write(e2e, tl(5000), &err)) != CT_OK ||
        (x->rc = ct_conn_recv_exact(e2e, x->in, INNER_N, &got, tl(10000), &err)) != CT_OK)
        goto out;
    x->rc = ct_conn_recv(e2e, &b, 1, &got, tl(5000), &err);
    x->rc = x->rc == CT_E_CLOSED ? CT_OK : CT_E_PROTO; /* the partner's clean end */
out:
    snprintf(x->why, sizeof x->why, "%s: %s", ct_err_name(x->rc), err.message);
    ct_conn_free(e2e);
    ct_conn_free(leg);
    ct_tls_config_free(cfg);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(client_pairs_and_runs_tls_inside)
{
    ct_relay_options o;
    bt_relay *br;
    uint8_t room[32], psk_bytes[32];
    uint8_t *a = malloc(INNER_N), *b = malloc(INNER_N), *ra = malloc(INNER_N),
            *rb = malloc(INNER_N);
    ct_secret *psk = NULL;
    struct inner_side op, bridge;
    pthread_t t;
    ct_error err;
    ct_relay_stats s;

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    bt_random(psk_bytes, sizeof psk_bytes);
    bt_random(a, INNER_N);
    bt_random(b, INNER_N);
    ck_ok(ct_secret_from(psk_bytes, sizeof psk_bytes, &psk, &err), &err);
    bridge = (struct inner_side){br->port, room, CT_ROLE_BRIDGE, psk, b, ra, CT_E_INTERNAL, ""};
    op = (struct inner_side){br->port, room, CT_ROLE_OPERATOR, psk, a, rb, CT_E_INTERNAL, ""};
    ck_assert_int_eq(pthread_create(&t, NULL, inner_peer, &bridge), 0);
    inner_peer(&op);
    pthread_join(t, NULL);
    ck_assert_msg(op.rc == CT_OK, "operator: %s", op.why);
    ck_assert_msg(bridge.rc == CT_OK, "bridge: %s", bridge.why);
    ck_assert_mem_eq(a, ra, INNER_N);
    ck_assert_mem_eq(b, rb, INNER_N);
    ck_assert_int_eq(bt_wait_open(br->r, 0, tl(3000)), 0);
    s = stats(br);
    ck_assert_uint_eq(s.pairs, 1);
    ck_assert_uint_gt(s.bytes_relayed, 2 * (uint64_t)INNER_N); /* plus inner TLS overhead */
    ck_assert_uint_eq(s.aborts, 0);
    ck_assert_int_eq(bt_log_count(&g_log, "\"end\":\"close\""), 1);
    ct_secret_free(psk);
    finish(br);
    free(a);
    free(b);
    free(ra);
    free(rb);
}
END_TEST

START_TEST(client_refusals_and_timeouts)
{
    ct_relay_options o;
    bt_relay *br;
    ct_beacon_options bo;
    uint8_t room[32];
    bt_client *w;
    ct_conn *c = NULL;
    ct_error err;
    int64_t t0;

    opts(&o);
    o.wait_timeout_ms = 300;
    br = start(&o);
    beacon_opts(&bo, br->port);
    /* a second operator-side peer: ROOM_BUSY */
    bt_random(room, 32);
    w = waiter(br->port, CT_ROLE_OPERATOR, room);
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_OPERATOR, room, &c, &err), CT_E_REFUSED, &err);
    ck_assert_int_eq(err.os_error, CT_BEACON_ROOM_BUSY);
    ck_assert_ptr_null(c);
    bt_close(w, 0);
    /* nobody comes within pair_timeout_ms */
    bt_random(room, 32);
    bo.pair_timeout_ms = 150;
    t0 = bt_now_ms();
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_TIMEOUT, &err);
    ck_assert_int_eq(err.os_error, 0);
    ck_assert_int_lt(bt_now_ms() - t0, tl(2000));
    /* the beacon's own waiting limit comes first: its TIMEOUT status */
    bo.pair_timeout_ms = tl(10000);
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_TIMEOUT, &err);
    ck_assert_int_eq(err.os_error, CT_BEACON_TIMEOUT);
    /* draining */
    ct_relay_drain(br->r);
    ck_assert_int_eq(bt_relay_wait(br, tl(3000)), 0);
    ck_assert_int_ne(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_OK);
    ck_assert_ptr_null(c);
    finish(br);
}
END_TEST

/* ct_beacon_open ahead of time, then ct_beacon_join: pairs like connect. */
struct joiner {
    uint16_t port;
    const uint8_t *room;
    ct_conn *c;
    ct_err rc;
};

static void *bridge_connects(void *arg)
{
    struct joiner *j = arg;
    ct_beacon_options bo;
    beacon_opts(&bo, j->port);
    j->rc = ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, j->room, &j->c, NULL);
    ct_thread_cleanup();
    return NULL;
}

START_TEST(client_open_then_join)
{
    ct_relay_options o;
    bt_relay *br;
    ct_beacon_options bo;
    uint8_t room[32], x = 0x5a, y = 0;
    ct_conn *pre = NULL, *pa = NULL, *pb = NULL;
    struct joiner j;
    pthread_t t;
    ct_error err;

    opts(&o);
    br = start(&o);
    beacon_opts(&bo, br->port);
    bt_random(room, 32);
    ck_ok(ct_beacon_open(g_ctx, &bo, &pre, &err), &err);
    ck_assert_ptr_nonnull(pre);
    /* opened, in no room yet: the beacon holds a connection, nobody waits */
    ck_assert_int_eq(bt_wait_open(br->r, 1, tl(3000)), 0);
    ck_assert_uint_eq(stats(br).waiting, 0);
    j = (struct joiner){br->port, room, NULL, CT_E_INTERNAL};
    ck_assert_int_eq(pthread_create(&t, NULL, bridge_connects, &j), 0);
    ck_ok(ct_beacon_join(pre, &bo, CT_ROLE_OPERATOR, room, &err), &err);
    pthread_join(t, NULL);
    ck_assert_int_eq(j.rc, CT_OK);
    /* the two are paired: a byte goes through */
    ck_ok(ct_conn_send_all(pre, &x, 1, NULL, tl(3000), &err), &err);
    ck_ok(ct_conn_recv_exact(j.c, &y, 1, NULL, tl(3000), &err), &err);
    ck_assert_uint_eq(y, x);
    ck_assert_uint_eq(stats(br).pairs, 1);
    ct_conn_free(pre);
    ct_conn_free(j.c);
    /* join only takes connections from ct_beacon_open */
    ck_ok(ct_pipe_pair(g_ctx, 0, &pa, &pb, &err), &err);
    ck_err(ct_beacon_join(pa, &bo, CT_ROLE_OPERATOR, room, &err), CT_E_INVALID, &err);
    ct_conn_free(pa);
    ct_conn_free(pb);
    finish(br);
}
END_TEST

START_TEST(client_verifies_the_beacon)
{
    ct_relay_options o;
    bt_relay *br;
    ct_beacon_options bo;
    uint8_t room[32], bad_pin[32];
    ct_conn *c = NULL;
    ct_error err;
    bt_pki other;
    bt_client *partner;

    opts(&o);
    br = start(&o);
    bt_random(room, 32);
    /* another CA */
    bt_pki_make(g_ctx, &other);
    beacon_opts(&bo, br->port);
    bo.ca = other.ca_der;
    bo.ca_len = other.ca_len;
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_CERT, &err);
    bt_pki_free(&other);
    /* the right CA but another name */
    beacon_opts(&bo, br->port);
    bo.server_name = "beacon.example";
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_CERT, &err);
    /* a wrong pin */
    memcpy(bad_pin, g_pki.spki_sha256, 32);
    bad_pin[0] ^= 1;
    beacon_opts(&bo, br->port);
    bo.ca = NULL;
    bo.ca_len = 0;
    bo.pin_sha256 = bad_pin;
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_CERT, &err);
    ck_assert_ptr_null(c);
    /* the right pin alone is enough; pair with a raw client */
    partner = waiter(br->port, CT_ROLE_OPERATOR, room);
    bo.pin_sha256 = g_pki.spki_sha256;
    ck_ok(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), &err);
    ck_assert_int_eq(bt_status_skip_waiting(partner, 3000), CT_BEACON_PAIRED);
    {
        uint8_t x = 0x5a;
        size_t got = 0;
        ck_assert_int_eq(bt_write(partner, &x, 1, 2000), 0);
        x = 0;
        ck_ok(ct_conn_recv_exact(c, &x, 1, &got, 3000, &err), &err);
        ck_assert_int_eq(x, 0x5a);
    }
    ct_conn_free(c);
    bt_close(partner, 0);
    finish(br);
}
END_TEST

START_TEST(client_invalid_arguments)
{
    ct_beacon_options bo;
    uint8_t room[32] = {0};
    ct_conn *c = NULL;
    ct_error err;

    beacon_opts(&bo, 1);
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_beacon_connect(g_ctx, NULL, CT_ROLE_BRIDGE, room, &c, &err), CT_E_INVALID, &err);
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, NULL, &c, &err), CT_E_INVALID, &err);
    ck_err(ct_beacon_connect(g_ctx, &bo, (ct_beacon_role)3, room, &c, &err), CT_E_INVALID, &err);
    bo.version = 7;
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_VERSION, &err);
    beacon_opts(&bo, 1);
    bo.host = NULL;
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_INVALID, &err);
    beacon_opts(&bo, 1);
    bo.ca = NULL; /* no way to verify the beacon */
    bo.ca_len = 0;
    ck_err(ct_beacon_connect(g_ctx, &bo, CT_ROLE_BRIDGE, room, &c, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(c);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("relay");
    TCase *tc = tcase_create("relay");
    TCase *cl = tcase_create("client");
    TCase *big = tcase_create("scale");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, pair_and_relay_1mib);
    tcase_add_test(tc, second_operator_room_busy);
    tcase_add_test(tc, bridge_pool_cap);
    tcase_add_test(tc, bridge_pool_fifo);
    tcase_add_test(tc, keepalive_while_waiting);
    tcase_add_test(tc, waiting_limit_timeout);
    tcase_add_test(tc, half_close_operator_first);
    tcase_add_test(tc, half_close_bridge_first);
    tcase_add_test(tc, half_close_linger);
    tcase_add_test(tc, clean_end_then_reset_delivers_everything);
    tcase_add_test(tc, dead_operator_fin);
    tcase_add_test(tc, dead_bridge_rst);
    tcase_add_test(tc, drain);
    tcase_add_test(tc, drain_deadline);
    tcase_add_test(tc, stop_closes_everything);
    tcase_add_test(tc, garbage_instead_of_tls);
    tcase_add_test(tc, bad_hellos);
    tcase_add_test(tc, data_before_paired);
    tcase_add_test(tc, slow_client_hits_hello_deadline);
    tcase_add_test(tc, per_address_connection_cap);
    tcase_add_test(tc, per_address_accept_rate);
    tcase_add_test(tc, refusals_with_status_are_rate_limited);
    tcase_add_test(tc, global_connection_cap);
    tcase_add_test(tc, reload_certificate);
    tcase_add_test(tc, ipv6_loopback);
    tcase_add_test(tc, api_errors);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(cl, setup, teardown);
    tcase_set_timeout(cl, 120);
    tcase_add_test(cl, client_pairs_and_runs_tls_inside);
    tcase_add_test(cl, client_refusals_and_timeouts);
    tcase_add_test(cl, client_open_then_join);
    tcase_add_test(cl, client_verifies_the_beacon);
    tcase_add_test(cl, client_invalid_arguments);
    suite_add_tcase(s, cl);

    tcase_add_checked_fixture(big, setup, teardown);
    tcase_set_timeout(big, 240);
    tcase_add_test(big, thousands_of_rooms);
    tcase_add_test(big, no_fd_or_memory_growth);
    suite_add_tcase(s, big);
    return s;
}
