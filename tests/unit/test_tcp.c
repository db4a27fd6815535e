/*
 * test_tcp.c - the TCP transport's own behaviour (the byte-stream contract
 * is in the conformance suite): dial and listen errors, deadlines, address
 * handling, adopting descriptors, SIGPIPE and EINTR. Only 127.0.0.1 and ::1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define IO_MS 5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A transport and a listener on host, port 0. */
struct srv {
    ct_ctx *ctx;
    ct_transport *t;
    ct_listener *l;
    uint16_t port;
};

static void srv_open(struct srv *s, const char *host)
{
    ct_error err;
    memset(s, 0, sizeof *s);
    s->ctx = ct_test_ctx();
    ck_ok(ct_transport_new_tcp(s->ctx, &s->t, &err), &err);
    ck_ok(ct_transport_listen(s->t, host, 0, &s->l, &err), &err);
    s->port = ct_listener_port(s->l);
}

static void srv_close(struct srv *s)
{
    ct_listener_free(s->l);
    ct_transport_free(s->t);
    ct_ctx_free(s->ctx);
}

/* One dial to host:s->port and the matching accept. */
static void connect_pair(struct srv *s, const char *host, ct_conn **c, ct_conn **a)
{
    ct_error err;
    ck_ok(ct_transport_dial(s->t, host, s->port, IO_MS, c, &err), &err);
    ck_ok(ct_listener_accept(s->l, IO_MS, a, &err), &err);
}

/* A byte each way. */
static void ping(ct_conn *x, ct_conn *y)
{
    ct_error err;
    uint8_t b = 0;
    ck_ok(ct_conn_send_all(x, "p", 1, NULL, IO_MS, &err), &err);
    ck_ok(ct_conn_recv_exact(y, &b, 1, NULL, IO_MS, &err), &err);
    ck_assert_int_eq(b, 'p');
    ck_ok(ct_conn_send_all(y, "q", 1, NULL, IO_MS, &err), &err);
    ck_ok(ct_conn_recv_exact(x, &b, 1, NULL, IO_MS, &err), &err);
    ck_assert_int_eq(b, 'q');
}

/* ------------------------------------------------------------------ */

START_TEST(listen_port0_gives_real_port)
{
    struct srv s;
    ct_conn *c = NULL, *a = NULL;
    ct_error err;
    int one = 0;
    socklen_t sl = sizeof one;

    srv_open(&s, "127.0.0.1");
    ck_assert_uint_ne(s.port, 0);
    connect_pair(&s, "127.0.0.1", &c, &a);
    ping(c, a);
    /* both ends: TCP_NODELAY, non-blocking, close-on-exec */
    ck_assert_int_eq(getsockopt(ct_conn_get_fd(c), IPPROTO_TCP, TCP_NODELAY, &one, &sl), 0);
    ck_assert_int_ne(one, 0);
    one = 0;
    ck_assert_int_eq(getsockopt(ct_conn_get_fd(a), IPPROTO_TCP, TCP_NODELAY, &one, &sl), 0);
    ck_assert_int_ne(one, 0);
    ck_assert(fcntl(ct_conn_get_fd(a), F_GETFL) & O_NONBLOCK);
    ck_assert(fcntl(ct_conn_get_fd(a), F_GETFD) & FD_CLOEXEC);
    ck_assert_uint_eq(ct_conn_pending(c), 0);
    ct_conn_free(c);
    ct_conn_free(a);
    ck_err(ct_listener_accept(NULL, 0, &a, &err), CT_E_INVALID, &err);
    ck_assert_uint_eq(ct_listener_port(NULL), 0);
    ct_listener_free(NULL);
    srv_close(&s);
}
END_TEST

START_TEST(dial_refused)
{
    struct srv s;
    ct_conn *c = NULL;
    ct_error err;
    uint16_t port;
    char want[32];

    /* a port that was just free: listen on it, then close it */
    srv_open(&s, "127.0.0.1");
    port = s.port;
    ct_listener_free(s.l);
    s.l = NULL;
    ck_err(ct_transport_dial(s.t, "127.0.0.1", port, IO_MS, &c, &err), CT_E_REFUSED, &err);
    ck_assert_ptr_null(c);
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    ck_assert_msg(strstr(err.message, want), "message does not say where: %s", err.message);
    ck_assert_int_eq(err.os_error, ECONNREFUSED);
    srv_close(&s);
}
END_TEST

START_TEST(dial_unresolvable)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_transport *t = NULL;
    ct_conn *c = NULL;
    ct_error err;
    int64_t t0;

    ck_ok(ct_transport_new_tcp(ctx, &t, &err), &err);
    t0 = now_ms();
    ck_err(ct_transport_dial(t, "no-such-host.cloudtaser-test.invalid", 443, 1000, &c, &err),
           CT_E_RESOLVE, &err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.message, "no-such-host.cloudtaser-test.invalid:443"),
                  "message does not name the host: %s", err.message);
    ck_err(ct_transport_dial(t, "INVALID.", 443, 1000, &c, &err), CT_E_RESOLVE, &err);
    ck_assert_msg(now_ms() - t0 < 1000, ".invalid names must fail without a lookup");
    ct_transport_free(t);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(dial_bad_arguments)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_transport *t = NULL;
    ct_conn *c = NULL;
    ct_error err;

    ck_err(ct_transport_new_tcp(ctx, NULL, &err), CT_E_INVALID, &err);
    ck_ok(ct_transport_new_tcp(ctx, &t, &err), &err);
    ck_err(ct_transport_dial(t, NULL, 80, 100, &c, &err), CT_E_INVALID, &err);
    ck_err(ct_transport_dial(t, "", 80, 100, &c, &err), CT_E_INVALID, &err);
    ck_err(ct_transport_dial(t, "127.0.0.1", 0, 100, &c, &err), CT_E_INVALID, &err);
    ck_assert_msg(strstr(err.message, "127.0.0.1:0"), "message: %s", err.message);
    ck_err(ct_transport_dial(t, "127.0.0.1", 80, 100, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_transport_dial(NULL, "127.0.0.1", 80, 100, &c, &err), CT_E_INVALID, &err);
    ck_err(ct_transport_dial(t, "127.0.0.1", 0, 100, &c, NULL), CT_E_INVALID, NULL);
    ck_assert_ptr_null(c);
    ct_transport_free(t);
    ct_transport_free(NULL);
    ct_ctx_free(ctx);
}
END_TEST

/*
 * A listener with backlog 0 and one queued connection drops further SYNs,
 * so a second dial cannot complete: the non-blocking connect must give up
 * at the deadline (CT_E_TIMEOUT), or at once with timeout 0 (CT_E_AGAIN).
 */
START_TEST(dial_timeout)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    ct_ctx *ctx = ct_test_ctx();
    ct_transport *t = NULL;
    ct_conn *c1 = NULL, *c2 = NULL;
    ct_error err;
    int lfd;
    int64_t t0, el;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(lfd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 0), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    ck_ok(ct_transport_new_tcp(ctx, &t, &err), &err);
    ck_ok(ct_transport_dial(t, "127.0.0.1", ntohs(sa.sin_port), IO_MS, &c1, &err), &err);
    sleep_ms(50); /* let the first handshake land in the accept queue */
    t0 = now_ms();
    ck_err(ct_transport_dial(t, "127.0.0.1", ntohs(sa.sin_port), 300, &c2, &err), CT_E_TIMEOUT,
           &err);
    el = now_ms() - t0;
    ck_assert_ptr_null(c2);
    ck_assert_msg(el >= 270 && el < 2500, "dial with 300 ms returned after %lld ms",
                  (long long)el);
    ck_err(ct_transport_dial(t, "127.0.0.1", ntohs(sa.sin_port), 0, &c2, &err), CT_E_AGAIN,
           &err);
    ck_assert_ptr_null(c2);
    ct_conn_free(c1);
    close(lfd);
    ct_transport_free(t);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(listen_addrinuse)
{
    struct srv s;
    ct_listener *l2 = NULL;
    ct_error err;
    char want[32];

    srv_open(&s, "127.0.0.1");
    ck_err(ct_transport_listen(s.t, "127.0.0.1", s.port, &l2, &err), CT_E_ADDRINUSE, &err);
    ck_assert_ptr_null(l2);
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)s.port);
    ck_assert_msg(strstr(err.message, want), "message does not say where: %s", err.message);
    /* host NULL (all addresses) on the same port collides too */
    ck_err(ct_transport_listen(s.t, NULL, s.port, &l2, &err), CT_E_ADDRINUSE, &err);
    ck_err(ct_transport_listen(s.t, "", 0, &l2, &err), CT_E_INVALID, &err);
    ck_err(ct_transport_listen(s.t, "x.invalid", 0, &l2, &err), CT_E_RESOLVE, &err);
    ck_err(ct_transport_listen(s.t, "127.0.0.1", 0, NULL, &err), CT_E_INVALID, &err);
    srv_close(&s);
}
END_TEST

START_TEST(accept_timeout)
{
    struct srv s;
    ct_conn *a = NULL;
    ct_error err;
    int64_t t0, el;

    srv_open(&s, "127.0.0.1");
    t0 = now_ms();
    ck_err(ct_listener_accept(s.l, 100, &a, &err), CT_E_TIMEOUT, &err);
    el = now_ms() - t0;
    ck_assert_ptr_null(a);
    ck_assert_msg(el >= 90 && el < 2000, "accept with 100 ms returned after %lld ms",
                  (long long)el);
    t0 = now_ms();
    ck_err(ct_listener_accept(s.l, 0, &a, &err), CT_E_AGAIN, &err);
    ck_assert(now_ms() - t0 < 1000);
    /* still accepts afterwards */
    {
        ct_conn *c = NULL;
        connect_pair(&s, "127.0.0.1", &c, &a);
        ping(c, a);
        ct_conn_free(c);
        ct_conn_free(a);
    }
    srv_close(&s);
}
END_TEST

START_TEST(ipv6_loopback)
{
    struct srv s;
    ct_conn *c = NULL, *a = NULL;

    srv_open(&s, "::1");
    ck_assert_uint_ne(s.port, 0);
    connect_pair(&s, "::1", &c, &a);
    ping(c, a);
    ct_conn_free(c);
    ct_conn_free(a);
    srv_close(&s);
}
END_TEST

/* host NULL listens on "::" with IPV6_V6ONLY off: both families get in. */
START_TEST(listen_any_dual_stack)
{
    struct srv s;
    ct_conn *c = NULL, *a = NULL;

    srv_open(&s, NULL);
    connect_pair(&s, "127.0.0.1", &c, &a);
    ping(c, a);
    ct_conn_free(c);
    ct_conn_free(a);
    connect_pair(&s, "::1", &c, &a);
    ping(c, a);
    ct_conn_free(c);
    ct_conn_free(a);
    srv_close(&s);
}
END_TEST

/* "localhost" may resolve to ::1 first; dial tries every address in turn. */
START_TEST(dial_name_tries_each_address)
{
    struct srv s;
    ct_conn *c = NULL, *a = NULL;

    srv_open(&s, "127.0.0.1");
    connect_pair(&s, "localhost", &c, &a);
    ping(c, a);
    ct_conn_free(c);
    ct_conn_free(a);
    srv_close(&s);
}
END_TEST

/* A NULL context means library defaults (timeout_ms < 0: 30 s). */
START_TEST(null_context)
{
    ct_transport *t = NULL;
    ct_listener *l = NULL;
    ct_conn *c = NULL, *a = NULL;
    ct_error err;

    ck_ok(ct_transport_new_tcp(NULL, &t, &err), &err);
    ck_ok(ct_transport_listen(t, "127.0.0.1", 0, &l, &err), &err);
    ck_ok(ct_transport_dial(t, "127.0.0.1", ct_listener_port(l), -1, &c, &err), &err);
    ck_ok(ct_listener_accept(l, -1, &a, &err), &err);
    ping(c, a);
    ct_conn_free(c);
    ct_conn_free(a);
    ct_listener_free(l);
    ct_transport_free(t);
}
END_TEST

/* TCP pins what the conformance suite leaves open: closing with unread
 * data is abortive (RST), so the peer sees CT_E_RESET, not CT_E_CLOSED. */
START_TEST(close_with_unread_data_resets)
{
    struct srv s;
    ct_conn *c = NULL, *a = NULL;
    ct_error err;
    uint8_t b[8];
    size_t got = 0;

    srv_open(&s, "127.0.0.1");
    connect_pair(&s, "127.0.0.1", &c, &a);
    ck_ok(ct_conn_send_all(a, "unread data", 11, NULL, IO_MS, &err), &err);
    ck_ok(ct_conn_recv(c, b, 1, &got, IO_MS, &err), &err);
    ct_conn_free(c);
    ck_err(ct_conn_recv(a, b, sizeof b, &got, IO_MS, &err), CT_E_RESET, &err);
    ct_conn_free(a);
    srv_close(&s);
}
END_TEST

START_TEST(new_fd_socketpair)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *c = NULL;
    ct_error err;
    int sv[2];
    char b[16];
    ssize_t r;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_ok(ct_conn_new_fd(ctx, sv[0], &c, &err), &err);
    ck_assert_int_eq(ct_conn_get_fd(c), sv[0]);
    ck_assert(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    ck_assert(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
    /* conn -> raw */
    ck_ok(ct_conn_send_all(c, "hello", 5, NULL, IO_MS, &err), &err);
    r = read(sv[1], b, sizeof b);
    ck_assert_int_eq(r, 5);
    ck_assert(memcmp(b, "hello", 5) == 0);
    /* raw -> conn */
    ck_assert_int_eq(write(sv[1], "world", 5), 5);
    ck_ok(ct_conn_recv_exact(c, b, 5, NULL, IO_MS, &err), &err);
    ck_assert(memcmp(b, "world", 5) == 0);
    /* half-close reaches the raw end as EOF; the other way still works */
    ck_ok(ct_conn_shutdown_write(c, IO_MS, &err), &err);
    ck_assert_int_eq(read(sv[1], b, sizeof b), 0);
    ck_assert_int_eq(write(sv[1], "!", 1), 1);
    ck_ok(ct_conn_recv_exact(c, b, 1, NULL, IO_MS, &err), &err);
    close(sv[1]);
    ck_err(ct_conn_recv(c, b, sizeof b, NULL, IO_MS, &err), CT_E_CLOSED, &err);
    ct_conn_free(c); /* closes sv[0] */
    errno = 0;
    ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
    ct_ctx_free(ctx);
}
END_TEST

/* Rejected descriptors stay the caller's, unchanged. */
START_TEST(new_fd_rejects)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_conn *c = NULL;
    ct_error err;
    int p[2], d;

    ck_err(ct_conn_new_fd(ctx, -1, &c, &err), CT_E_INVALID, &err);
    ck_assert_int_eq(pipe(p), 0);
    ck_err(ct_conn_new_fd(ctx, p[0], &c, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_eq(fcntl(p[0], F_GETFD) & FD_CLOEXEC, 0);
    close(p[0]);
    close(p[1]);
    d = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(d, 0);
    ck_err(ct_conn_new_fd(ctx, d, &c, &err), CT_E_INVALID, &err);
    ck_assert_int_eq(fcntl(d, F_GETFL) & O_NONBLOCK, 0);
    close(d);
    ck_err(ct_conn_new_fd(ctx, 0, NULL, &err), CT_E_INVALID, &err);
    ct_ctx_free(ctx);
}
END_TEST

/*
 * Writing to a closed peer must not raise SIGPIPE. The test leaves SIGPIPE
 * at its default action (terminate), so a stray signal kills this test.
 */
START_TEST(no_sigpipe)
{
    struct sigaction old;
    struct srv s;
    ct_conn *c = NULL, *a = NULL, *u = NULL;
    ct_error err;
    ct_err rc = CT_OK;
    int sv[2];

    ck_assert_int_eq(sigaction(SIGPIPE, NULL, &old), 0);
    ck_assert_msg(old.sa_handler == SIG_DFL, "SIGPIPE is not at its default action");

    /* AF_UNIX stream socket: EPIPE at once */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_ok(ct_conn_new_fd(NULL, sv[0], &u, &err), &err);
    close(sv[1]);
    ck_err(ct_conn_send(u, "x", 1, NULL, IO_MS, &err), CT_E_RESET, &err);
    ct_conn_free(u);

    /* TCP: the first write draws an RST, later writes fail with EPIPE */
    srv_open(&s, "127.0.0.1");
    connect_pair(&s, "127.0.0.1", &c, &a);
    ct_conn_free(a);
    for (int k = 0; k < 200 && rc == CT_OK; k++) {
        rc = ct_conn_send(c, "data", 4, NULL, IO_MS, &err);
        if (rc == CT_OK)
            sleep_ms(5);
    }
    ck_err(rc, CT_E_RESET, &err);
    ck_assert_int_eq(sigaction(SIGPIPE, NULL, &old), 0);
    ck_assert_msg(old.sa_handler == SIG_DFL, "the library changed SIGPIPE's disposition");
    ct_conn_free(c);
    srv_close(&s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* EINTR: a signal during a wait neither fails the call nor resets its
 * deadline. The handler is installed without SA_RESTART so that poll()
 * really returns EINTR. */

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_count++;
}

struct waiter {
    ct_conn *c;
    ct_listener *l;
    int timeout_ms;
    ct_err rc;
    ct_error err;
    int64_t elapsed;
    size_t got;
    uint8_t buf[8];
};

static void *wait_recv(void *arg)
{
    struct waiter *w = arg;
    int64_t t0 = now_ms();
    w->rc = ct_conn_recv(w->c, w->buf, sizeof w->buf, &w->got, w->timeout_ms, &w->err);
    w->elapsed = now_ms() - t0;
    return NULL;
}

static void *wait_accept(void *arg)
{
    struct waiter *w = arg;
    ct_conn *a = NULL;
    int64_t t0 = now_ms();
    w->rc = ct_listener_accept(w->l, w->timeout_ms, &a, &w->err);
    w->elapsed = now_ms() - t0;
    ct_conn_free(a);
    return NULL;
}

/* Runs fn in a thread, interrupting it with SIGUSR1 every 40 ms. */
static void run_interrupted(void *(*fn)(void *), struct waiter *w, int signals)
{
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, fn, w), 0);
    for (int k = 0; k < signals; k++) {
        sleep_ms(40);
        pthread_kill(th, SIGUSR1); /* harmless if the thread already returned */
    }
    pthread_join(th, NULL);
}

START_TEST(eintr_keeps_deadline)
{
    struct sigaction sa, old;
    struct srv s;
    ct_conn *c = NULL, *a = NULL;
    struct waiter w;
    ct_error err;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    usr1_count = 0;

    srv_open(&s, "127.0.0.1");
    connect_pair(&s, "127.0.0.1", &c, &a);

    /* recv: interrupted several times, still times out at 400 ms */
    memset(&w, 0, sizeof w);
    w.c = c;
    w.timeout_ms = 400;
    run_interrupted(wait_recv, &w, 5);
    ck_err(w.rc, CT_E_TIMEOUT, &w.err);
    ck_assert_msg(w.elapsed >= 380 && w.elapsed < 3000, "recv returned after %lld ms",
                  (long long)w.elapsed);

    /* recv: interrupted, then data arrives and is delivered */
    memset(&w, 0, sizeof w);
    w.c = c;
    w.timeout_ms = IO_MS;
    {
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, wait_recv, &w), 0);
        for (int k = 0; k < 3; k++) {
            sleep_ms(30);
            pthread_kill(th, SIGUSR1);
        }
        ck_ok(ct_conn_send_all(a, "late", 4, NULL, IO_MS, &err), &err);
        pthread_join(th, NULL);
    }
    ck_ok(w.rc, &w.err);
    ck_assert_uint_ge(w.got, 1);
    ck_assert(memcmp(w.buf, "late", w.got) == 0);

    /* accept: same */
    memset(&w, 0, sizeof w);
    w.l = s.l;
    w.timeout_ms = 400;
    run_interrupted(wait_accept, &w, 5);
    ck_err(w.rc, CT_E_TIMEOUT, &w.err);
    ck_assert_msg(w.elapsed >= 380 && w.elapsed < 3000, "accept returned after %lld ms",
                  (long long)w.elapsed);

    ck_assert_int_gt(usr1_count, 0);
    ct_conn_free(c);
    ct_conn_free(a);
    srv_close(&s);
    ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("tcp");
    TCase *tc = tcase_create("tcp");
    tcase_add_test(tc, listen_port0_gives_real_port);
    tcase_add_test(tc, dial_refused);
    tcase_add_test(tc, dial_unresolvable);
    tcase_add_test(tc, dial_bad_arguments);
    tcase_add_test(tc, dial_timeout);
    tcase_add_test(tc, listen_addrinuse);
    tcase_add_test(tc, accept_timeout);
    tcase_add_test(tc, ipv6_loopback);
    tcase_add_test(tc, listen_any_dual_stack);
    tcase_add_test(tc, dial_name_tries_each_address);
    tcase_add_test(tc, null_context);
    tcase_add_test(tc, close_with_unread_data_resets);
    tcase_add_test(tc, new_fd_socketpair);
    tcase_add_test(tc, new_fd_rejects);
    tcase_add_test(tc, no_sigpipe);
    tcase_add_test(tc, eintr_keeps_deadline);
    suite_add_tcase(s, tc);
    return s;
}
