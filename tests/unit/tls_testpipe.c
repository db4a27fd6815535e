/* tls_testpipe.c - socket-backed ct_conn and a tiny TCP transport for tests. */
#include "tls_testpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct fdc {
    int fd;
} fdc;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ct_err set_err(ct_error *err, ct_err code, int os, const char *what)
{
    if (err) {
        err->code = code;
        err->os_error = os;
        snprintf(err->message, sizeof err->message, "%s: %s", what, os ? strerror(os) : "");
    }
    return code;
}

static ct_err errno_err(ct_error *err, int e, const char *what)
{
    switch (e) {
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
        return set_err(err, CT_E_RESET, e, what);
    default:
        return set_err(err, CT_E_IO, e, what);
    }
}

/* Waits for `events` until the deadline; 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int left = (int)(deadline - now_ms());
        int r;
        if (left < 0)
            left = 0;
        r = poll(&p, 1, left);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static ct_err fd_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                      ct_error *err, void *user)
{
    fdc *c = state;
    int64_t deadline = now_ms() + timeout_ms;
    (void)user;
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        int w, left;
        if (r > 0) {
            *sent = (size_t)r;
            return CT_OK;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return errno_err(err, errno, "send");
        if (timeout_ms == 0)
            return set_err(err, CT_E_AGAIN, 0, "send would block");
        left = (int)(deadline - now_ms());
        if (left <= 0)
            return set_err(err, CT_E_TIMEOUT, 0, "send timed out");
        w = wait_fd(c->fd, POLLOUT, left);
        if (w < 0)
            return errno_err(err, -w, "poll");
    }
}

static ct_err fd_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                      ct_error *err, void *user)
{
    fdc *c = state;
    int64_t deadline = now_ms() + timeout_ms;
    (void)user;
    for (;;) {
        ssize_t r = recv(c->fd, p, cap, MSG_DONTWAIT);
        int w, left;
        if (r > 0) {
            *got = (size_t)r;
            return CT_OK;
        }
        if (r == 0)
            return set_err(err, CT_E_CLOSED, 0, "end of stream");
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno_err(err, errno, "recv");
        if (timeout_ms == 0)
            return set_err(err, CT_E_AGAIN, 0, "recv would block");
        left = (int)(deadline - now_ms());
        if (left <= 0)
            return set_err(err, CT_E_TIMEOUT, 0, "recv timed out");
        w = wait_fd(c->fd, POLLIN, left);
        if (w < 0)
            return errno_err(err, -w, "poll");
    }
}

static ct_err fd_shutdown_write(void *state, int timeout_ms, ct_error *err, void *user)
{
    fdc *c = state;
    (void)timeout_ms;
    (void)user;
    if (shutdown(c->fd, SHUT_WR) != 0)
        return errno_err(err, errno, "shutdown");
    return CT_OK;
}

static void fd_close(void *state, void *user)
{
    fdc *c = state;
    (void)user;
    close(c->fd);
    free(c);
}

static int fd_get_fd(void *state, void *user)
{
    (void)user;
    return ((fdc *)state)->fd;
}

static const ct_conn_ops fd_ops = {
    CT_CONN_OPS_VERSION, 0, fd_send, fd_recv, fd_shutdown_write, fd_close, fd_get_fd, NULL, NULL,
};

ct_err tls_test_fd_conn(ct_ctx *ctx, int fd, ct_conn **out, ct_error *err)
{
    fdc *c;
    ct_err rc;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return errno_err(err, errno, "fcntl");
    c = calloc(1, sizeof *c);
    if (!c)
        return set_err(err, CT_E_NOMEM, ENOMEM, "calloc");
    c->fd = fd;
    rc = ct_conn_new(ctx, &fd_ops, c, NULL, out, err);
    if (rc != CT_OK)
        free(c);
    return rc;
}

static ct_err adopt_two(ct_ctx *ctx, int fa, int fb, ct_conn **a, ct_conn **b, ct_error *err)
{
    ct_err rc = tls_test_fd_conn(ctx, fa, a, err);
    if (rc != CT_OK) {
        close(fa);
        close(fb);
        return rc;
    }
    rc = tls_test_fd_conn(ctx, fb, b, err);
    if (rc != CT_OK) {
        close(fb);
        ct_conn_free(*a);
        *a = NULL;
    }
    return rc;
}

ct_err tls_test_pipe(ct_ctx *ctx, int sndbuf, ct_conn **a, ct_conn **b, ct_error *err)
{
    int sv[2];
    *a = *b = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return errno_err(err, errno, "socketpair");
    if (sndbuf > 0) {
        for (int i = 0; i < 2; i++) {
            setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
            setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof sndbuf);
        }
    }
    return adopt_two(ctx, sv[0], sv[1], a, b, err);
}

static int tcp_listen_fd(const char *host, uint16_t port, int *out)
{
    struct addrinfo hints, *ai = NULL;
    char ps[8];
    int fd, one = 1, rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    if ((rc = getaddrinfo(host ? host : "127.0.0.1", ps, &hints, &ai)) != 0)
        return -EINVAL;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        freeaddrinfo(ai);
        return rc;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
        rc = -errno;
        close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    *out = fd;
    return 0;
}

static uint16_t fd_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int tcp_connect_fd(const char *host, uint16_t port, int *out)
{
    struct addrinfo hints, *ai = NULL;
    char ps[8];
    int fd, one = 1, rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return -EINVAL;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        freeaddrinfo(ai);
        return rc;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        rc = -errno;
        close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out = fd;
    return 0;
}

ct_err tls_test_tcp_pair(ct_ctx *ctx, ct_conn **client, ct_conn **server, ct_error *err)
{
    int l, c, s, r;
    *client = *server = NULL;
    if ((r = tcp_listen_fd("127.0.0.1", 0, &l)) != 0)
        return errno_err(err, -r, "listen");
    if ((r = tcp_connect_fd("127.0.0.1", fd_port(l), &c)) != 0) {
        close(l);
        return errno_err(err, -r, "connect");
    }
    s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    r = errno;
    close(l);
    if (s < 0) {
        close(c);
        return errno_err(err, r, "accept");
    }
    return adopt_two(ctx, c, s, client, server, err);
}

static ct_err tt_dial(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                      ct_conn **out, ct_error *err, void *user)
{
    int fd, r;
    ct_err rc;
    (void)timeout_ms;
    (void)user;
    if ((r = tcp_connect_fd(host, port, &fd)) != 0)
        return r == -ECONNREFUSED ? set_err(err, CT_E_REFUSED, -r, "connect")
                                  : errno_err(err, -r, "connect");
    rc = tls_test_fd_conn(ctx, fd, out, err);
    if (rc != CT_OK)
        close(fd);
    return rc;
}

static ct_err tt_listen(ct_ctx *ctx, const char *host, uint16_t port, void **lst, ct_error *err,
                        void *user)
{
    int fd, r;
    int *p;
    (void)ctx;
    (void)user;
    if ((r = tcp_listen_fd(host, port, &fd)) != 0)
        return errno_err(err, -r, "listen");
    p = malloc(sizeof *p);
    if (!p) {
        close(fd);
        return set_err(err, CT_E_NOMEM, ENOMEM, "malloc");
    }
    *p = fd;
    *lst = p;
    return CT_OK;
}

static ct_err tt_accept(void *lst, int timeout_ms, ct_conn **out, ct_error *err, void *user)
{
    int lfd = *(int *)lst, fd, w;
    ct_err rc;
    (void)user;
    w = wait_fd(lfd, POLLIN, timeout_ms);
    if (w == 0)
        return set_err(err, timeout_ms == 0 ? CT_E_AGAIN : CT_E_TIMEOUT, 0, "accept");
    if (w < 0)
        return errno_err(err, -w, "poll");
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return errno_err(err, errno, "accept");
    rc = tls_test_fd_conn(NULL, fd, out, err);
    if (rc != CT_OK)
        close(fd);
    return rc;
}

static uint16_t tt_port(void *lst, void *user)
{
    (void)user;
    return fd_port(*(int *)lst);
}

static void tt_lclose(void *lst, void *user)
{
    (void)user;
    close(*(int *)lst);
    free(lst);
}

ct_err tls_test_tcp_transport(ct_ctx *ctx, ct_transport **out, ct_error *err)
{
    static const ct_transport_ops ops = {
        CT_TRANSPORT_OPS_VERSION, 0, tt_dial, tt_listen, tt_accept, tt_port, tt_lclose, NULL,
    };
    return ct_transport_new(ctx, &ops, NULL, out, err);
}
