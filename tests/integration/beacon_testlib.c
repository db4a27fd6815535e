/* beacon_testlib.c - see beacon_testlib.h. */
#include "beacon_testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wolf.h"
#include <wolfssl/error-ssl.h>

#define BT_CHUNK 16384

struct bt_client {
    int fd;
    WOLFSSL *ssl;
};

static void die(const char *what)
{
    fprintf(stderr, "beacon_testlib: %s\n", what);
    abort();
}

int64_t bt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t d = deadline - bt_now_ms();
    return d < 0 ? 0 : (int)d;
}

void bt_random(uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r <= 0)
            die("getrandom");
        p += r;
        n -= (size_t)r;
    }
}

/* ---- PKI ---- */

void bt_pki_make(ct_ctx *ctx, bt_pki *p)
{
    static const char *const ips[] = {"127.0.0.1", "::1"};
    ct_cert_options o = CT_CERT_OPTIONS_INIT;
    ct_key *cak = NULL, *k = NULL;
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    ct_error err;

    memset(p, 0, sizeof *p);
    o.common_name = "beacon test CA";
    if (ct_key_generate(ctx, &cak, &err) != CT_OK ||
        ct_ca_create(ctx, cak, &o, &p->ca_der, &p->ca_len, &err) != CT_OK)
        die(err.message);
    o.common_name = "beacon";
    o.ip_addrs = ips;
    o.n_ip_addrs = 2;
    if (ct_key_generate(ctx, &k, &err) != CT_OK ||
        ct_csr_create(ctx, k, &o, &csr, &csr_len, &err) != CT_OK ||
        ct_cert_issue(ctx, p->ca_der, p->ca_len, cak, csr, csr_len, CT_CERT_SERVER, &o,
                      &p->cert_der, &p->cert_len, &err) != CT_OK ||
        ct_key_export(k, 0, &p->key, &err) != CT_OK)
        die(err.message);
    {
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        if (ct_key_public_der(k, &spki, &spki_len, &err) != CT_OK)
            die(err.message);
        ct_sha256(spki, spki_len, p->spki_sha256);
        ct_free(spki);
    }
    ct_free(csr);
    ct_key_free(k);
    ct_key_free(cak);
}

void bt_pki_free(bt_pki *p)
{
    ct_free(p->ca_der);
    ct_free(p->cert_der);
    ct_secret_free(p->key);
    memset(p, 0, sizeof *p);
}

/* ---- session log ---- */

void bt_log_init(bt_log *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

void bt_log_free(bt_log *l)
{
    free(l->text);
    pthread_mutex_destroy(&l->mu);
}

void bt_log_cb(void *user, const char *line)
{
    bt_log *l = user;
    size_t n = strlen(line);
    pthread_mutex_lock(&l->mu);
    if (l->len + n + 2 > l->cap) {
        size_t nc = (l->cap + n + 2) * 2;
        char *t = realloc(l->text, nc);
        if (!t)
            die("log realloc");
        l->text = t;
        l->cap = nc;
    }
    memcpy(l->text + l->len, line, n);
    l->len += n;
    l->text[l->len++] = '\n';
    l->text[l->len] = '\0';
    l->lines++;
    pthread_mutex_unlock(&l->mu);
}

int bt_log_count(bt_log *l, const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&l->mu);
    if (l->text) {
        const char *line = l->text;
        while (*line) {
            const char *end = strchr(line, '\n');
            size_t ll = end ? (size_t)(end - line) : strlen(line);
            char *copy = strndup(line, ll);
            if (copy && strstr(copy, needle))
                n++;
            free(copy);
            line += ll + (end ? 1 : 0);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* ---- relay on a thread ---- */

void bt_relay_opts(ct_relay_options *o, const bt_pki *p)
{
    *o = (ct_relay_options)CT_RELAY_OPTIONS_INIT;
    o->listen_host = "127.0.0.1";
    o->cert = p->cert_der;
    o->cert_len = p->cert_len;
    o->key = p->key;
    o->threads = 2;
    /* every test connects from 127.0.0.1 many times: the limit tests lower these */
    o->max_conns_per_ip = 1000000;
    o->accept_rate_per_ip = 1000000;
}

static void *serve_main(void *arg)
{
    bt_relay *br = arg;
    ct_error err;
    br->serve_rc = ct_relay_serve(br->r, &err);
    __atomic_store_n(&br->done, 1, __ATOMIC_SEQ_CST);
    ct_thread_cleanup();
    return NULL;
}

bt_relay *bt_relay_start(ct_ctx *ctx, const ct_relay_options *o)
{
    ct_error err;
    bt_relay *br = calloc(1, sizeof *br);
    if (!br)
        die("calloc");
    if (ct_relay_new(ctx, o, &br->r, &err) != CT_OK)
        die(err.message);
    br->port = ct_relay_port(br->r);
    if (pthread_create(&br->t, NULL, serve_main, br) != 0)
        die("pthread_create");
    return br;
}

int bt_relay_wait(bt_relay *br, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    while (!__atomic_load_n(&br->done, __ATOMIC_SEQ_CST)) {
        if (bt_now_ms() > dl)
            return -1;
        usleep(2000);
    }
    return 0;
}

void bt_relay_finish(bt_relay *br)
{
    if (!br)
        return;
    ct_relay_stop(br->r);
    pthread_join(br->t, NULL);
    ct_relay_free(br->r);
    free(br);
}

int bt_wait_stats(ct_relay *r, int (*pred)(const ct_relay_stats *, void *), void *arg,
                  int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    for (;;) {
        ct_relay_stats s;
        ct_relay_get_stats(r, &s);
        if (pred(&s, arg))
            return 0;
        if (bt_now_ms() > dl)
            return -1;
        usleep(2000);
    }
}

static int open_is(const ct_relay_stats *s, void *arg)
{
    return s->conns_open == *(uint32_t *)arg;
}

int bt_wait_open(ct_relay *r, uint32_t conns_open, int timeout_ms)
{
    return bt_wait_stats(r, open_is, &conns_open, timeout_ms);
}

/* ---- client ---- */

void *bt_client_ctx_new(const uint8_t *ca_der, size_t ca_len)
{
    WOLFSSL_CTX *c = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    if (!c)
        die("client ctx");
    /* verification on: Debian's wolfSSL defaults to VERIFY_NONE */
    wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, NULL);
    if (wolfSSL_CTX_load_verify_buffer(c, ca_der, (long)ca_len, WOLFSSL_FILETYPE_ASN1) !=
        WOLFSSL_SUCCESS)
        die("client CA");
    return c;
}

void bt_client_ctx_free(void *wctx)
{
    wolfSSL_CTX_free(wctx);
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r;
}

int bt_tcp_connect(const char *host, uint16_t port, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, one = 1, e = 0;
    socklen_t el = sizeof e;

    memset(&ss, 0, sizeof ss);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        sl = sizeof *a;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
        return fd;
    if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, timeout_ms) <= 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bt_client *bt_connect_fd(void *wctx, int fd, int timeout_ms, const char **why)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    bt_client *c = calloc(1, sizeof *c);
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!c)
        die("calloc");
    c->fd = fd;
    c->ssl = wolfSSL_new(wctx);
    if (!c->ssl)
        die("wolfSSL_new");
    wolfSSL_set_fd(c->ssl, fd);
    wolfSSL_check_domain_name(c->ssl, "127.0.0.1");
    for (;;) {
        int r = wolfSSL_connect(c->ssl), e;
        if (r == WOLFSSL_SUCCESS)
            return c;
        e = wolfSSL_get_error(c->ssl, r);
        if ((e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)) {
            *why = e == DOMAIN_NAME_MISMATCH || e == ASN_NO_SIGNER_E ? "certificate"
                                                                     : "handshake failed";
            break;
        }
        if (left_ms(dl) == 0) {
            *why = "handshake timeout";
            break;
        }
        wait_fd(fd, e == WOLFSSL_ERROR_WANT_READ ? POLLIN : POLLOUT, left_ms(dl));
    }
    bt_close(c, 0);
    return NULL;
}

bt_client *bt_connect(void *wctx, const char *host, uint16_t port, int timeout_ms,
                      const char **why)
{
    int fd = bt_tcp_connect(host, port, timeout_ms);
    if (fd < 0) {
        if (why)
            *why = "connect failed";
        return NULL;
    }
    return bt_connect_fd(wctx, fd, timeout_ms, why);
}

int bt_fd(const bt_client *c)
{
    return c->fd;
}

const char *bt_cipher(const bt_client *c)
{
    const char *n = c->ssl ? wolfSSL_get_cipher_name(c->ssl) : NULL;
    return n ? n : "";
}

int bt_write(bt_client *c, const void *p, size_t n, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    const uint8_t *b = p;
    while (n > 0) {
        int len = n > BT_CHUNK ? BT_CHUNK : (int)n;
        for (;;) {
            int r = wolfSSL_write(c->ssl, b, len), e;
            if (r == len)
                break;
            e = wolfSSL_get_error(c->ssl, r);
            if (e != WOLFSSL_ERROR_WANT_WRITE && e != WOLFSSL_ERROR_WANT_READ)
                return -1;
            if (left_ms(dl) == 0)
                return -1;
            wait_fd(c->fd, POLLOUT, left_ms(dl) > 50 ? 50 : left_ms(dl));
        }
        b += len;
        n -= (size_t)len;
    }
    return 0;
}

int bt_read(bt_client *c, void *p, size_t cap, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    for (;;) {
        int r = wolfSSL_read(c->ssl, p, (int)cap), e;
        if (r > 0)
            return r;
        e = wolfSSL_get_error(c->ssl, r);
        if (e == WOLFSSL_ERROR_ZERO_RETURN)
            return 0;
        if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
            return -1;
        if (left_ms(dl) == 0)
            return -2;
        wait_fd(c->fd, POLLIN, left_ms(dl) > 50 ? 50 : left_ms(dl));
    }
}

int bt_read_full(bt_client *c, void *p, size_t n, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    uint8_t *b = p;
    while (n > 0) {
        int r = bt_read(c, b, n, left_ms(dl));
        if (r <= 0)
            return r;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

int bt_hello(bt_client *c, ct_beacon_role role, const uint8_t room[32], int timeout_ms)
{
    uint8_t h[CT_BEACON_HELLO_LEN];
    if (ct_beacon_hello_encode(role, room, h) != CT_OK)
        return -1;
    return bt_write(c, h, sizeof h, timeout_ms);
}

int bt_status(bt_client *c, int timeout_ms)
{
    uint8_t b;
    int r = bt_read(c, &b, 1, timeout_ms);
    return r == 1 ? b : r;
}

int bt_status_skip_waiting(bt_client *c, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    for (;;) {
        int s = bt_status(c, left_ms(dl));
        if (s != CT_BEACON_WAITING)
            return s;
    }
}

int bt_shutdown(bt_client *c, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    int r = wolfSSL_shutdown(c->ssl);
    /* call wolfSSL_shutdown once only; flush a blocked alert with empty writes */
    while (r != WOLFSSL_SUCCESS && r != WOLFSSL_SHUTDOWN_NOT_DONE) {
        int e = wolfSSL_get_error(c->ssl, r);
        if (e != WOLFSSL_ERROR_WANT_WRITE || left_ms(dl) == 0)
            return -1;
        wait_fd(c->fd, POLLOUT, 50);
        r = wolfSSL_write(c->ssl, "", 0);
        if (r == 0)
            break;
    }
    return shutdown(c->fd, SHUT_WR) == 0 ? 0 : -1;
}

int bt_wait_eof(bt_client *c, int timeout_ms)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    for (;;) {
        uint8_t b[64];
        ssize_t n = recv(c->fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 0;
        if (n > 0)
            return 1;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        if (left_ms(dl) == 0)
            return -2;
        wait_fd(c->fd, POLLIN, left_ms(dl) > 50 ? 50 : left_ms(dl));
    }
}

void bt_drop_tls(bt_client *c)
{
    if (c->ssl) {
        wolfSSL_free(c->ssl);
        c->ssl = NULL;
    }
}

void bt_close(bt_client *c, int linger0)
{
    if (!c)
        return;
    if (linger0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    bt_drop_tls(c);
    close(c->fd);
    free(c);
}

/* ---- full-duplex transfer ---- */

static int flow_done(const bt_flow *f)
{
    return f->out_off == f->out_len && (!f->shut || f->shut_done) && f->in_got == f->in_len &&
           (!f->expect_close || f->got_close);
}

int bt_transfer(bt_flow *f, int n, int timeout_ms, const char **why)
{
    int64_t dl = bt_now_ms() + timeout_ms;
    struct pollfd pf[8];
    const char *dummy;
    if (!why)
        why = &dummy;
    if (n > 8)
        return -1;
    for (;;) {
        int all = 1, pending = 0;
        for (int i = 0; i < n; i++) {
            bt_flow *x = &f[i];
            int progress = 1;
            while (progress) {
                progress = 0;
                /* write */
                if (x->out_off < x->out_len) {
                    int len = x->inflight;
                    int r, e;
                    if (!len)
                        len = x->out_len - x->out_off > BT_CHUNK
                                  ? BT_CHUNK
                                  : (int)(x->out_len - x->out_off);
                    r = wolfSSL_write(x->c->ssl, x->out + x->out_off, len);
                    if (r == len) {
                        x->out_off += (size_t)len;
                        x->inflight = 0;
                        progress = 1;
                    } else {
                        e = wolfSSL_get_error(x->c->ssl, r);
                        if (e != WOLFSSL_ERROR_WANT_WRITE && e != WOLFSSL_ERROR_WANT_READ) {
                            *why = "write failed";
                            return -1;
                        }
                        x->inflight = len;
                    }
                } else if (x->shut && !x->shut_done) {
                    if (bt_shutdown(x->c, left_ms(dl)) != 0) {
                        *why = "shutdown failed";
                        return -1;
                    }
                    x->shut_done = 1;
                }
                /* read */
                if (!x->got_close) {
                    uint8_t sink[BT_CHUNK];
                    uint8_t *dst = x->in_got < x->in_len ? x->in + x->in_got : sink;
                    size_t cap = x->in_got < x->in_len ? x->in_len - x->in_got : sizeof sink;
                    int r = wolfSSL_read(x->c->ssl, dst, (int)(cap > BT_CHUNK ? BT_CHUNK : cap));
                    if (r > 0) {
                        if (dst == sink) {
                            *why = "more bytes than expected";
                            return -1;
                        }
                        x->in_got += (size_t)r;
                        progress = 1;
                    } else {
                        int e = wolfSSL_get_error(x->c->ssl, r);
                        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
                            x->got_close = 1;
                            if (x->in_got != x->in_len) {
                                *why = "close_notify before all bytes";
                                return -1;
                            }
                        } else if (e != WOLFSSL_ERROR_WANT_READ &&
                                   e != WOLFSSL_ERROR_WANT_WRITE) {
                            fprintf(stderr, "bt_transfer: flow %d: wolfSSL error %d after %zu/%zu bytes\n",
                                    i, e, x->in_got, x->in_len);
                            *why = "read failed";
                            return -1;
                        }
                    }
                }
            }
            if (!flow_done(x))
                all = 0;
            if (x->c->ssl && wolfSSL_pending(x->c->ssl) > 0)
                pending = 1;
            pf[i].fd = x->c->fd;
            pf[i].events = POLLIN | (x->out_off < x->out_len ? POLLOUT : 0);
            pf[i].revents = 0;
        }
        if (all)
            return 0;
        if (left_ms(dl) == 0) {
            *why = "transfer timeout";
            return -2;
        }
        if (!pending)
            poll(pf, (nfds_t)n, 20);
    }
}
