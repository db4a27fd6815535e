/*
 * tcp.c - the built-in TCP transport (IPv4 and IPv6) and ct_conn_new_fd.
 *
 * Every socket is non-blocking and close-on-exec from the moment it exists
 * (SOCK_NONBLOCK | SOCK_CLOEXEC, accept4), so no call here can block longer
 * than its deadline: blocking waits are poll() calls bounded by the time left.
 * EINTR is retried everywhere against the same deadline. Sends use
 * MSG_NOSIGNAL, so writing to a closed peer returns CT_E_RESET instead of
 * raising SIGPIPE; the library never touches the process's signal setup.
 *
 * Name resolution: getaddrinfo() has no timeout parameter. Numeric hosts
 * never touch the resolver; names are resolved by the system resolver,
 * bounded by its own configuration (resolv.conf timeout/attempts), and the
 * connect attempts then get what remains of the dial deadline (CT_E_TIMEOUT
 * if the resolver used it all). Names under the special-use domain
 * ".invalid" (RFC 6761, section 6.4) fail at once with CT_E_RESOLVE,
 * without asking the resolver.
 *
 * Errors: dial returns CT_E_INVALID (NULL/empty host, port 0), CT_E_RESOLVE,
 * CT_E_REFUSED, CT_E_TIMEOUT (CT_E_AGAIN with timeout 0), CT_E_DENIED (EACCES
 * or EPERM, e.g. a local firewall) or CT_E_IO (unreachable network, ...);
 * listen returns CT_E_ADDRINUSE, CT_E_RESOLVE, CT_E_DENIED (privileged port)
 * or CT_E_IO. err->os_error carries the errno and the message names the
 * address (host:port) that failed.
 *
 * Thread-safety: a TCP connection may be used by one sending thread and one
 * receiving thread at the same time (the kernel serialises the two
 * directions); shutdown_write and free follow the library's one-thread rule.
 * A listener may be used by one thread at a time.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_BACKLOG 1024

/* "[ipv6]:port" or "a.b.c.d:port" or "name:port": enough for messages. */
#define ADDR_DESC_LEN 96

struct tcp_conn {
    int fd;
    int wr_shut; /* shutdown_write was called: further sends are CT_E_STATE */
    ct_ctx *ctx; /* borrowed; may be NULL (defaults) */
    char peer[ADDR_DESC_LEN];
};

struct tcp_listener {
    int fd;
    uint16_t port;
    ct_ctx *ctx; /* borrowed; may be NULL (defaults) */
    char local[ADDR_DESC_LEN];
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* A thread-safe strerror (GNU strerror_r returns the string to use). */
static const char *errstr(int e, char *buf, size_t len)
{
    return strerror_r(e, buf, len);
}

/* Formats host:port, bracketing IPv6 literals. */
static void desc_hostport(char *out, size_t len, const char *host, uint16_t port)
{
    if (host && strchr(host, ':'))
        snprintf(out, len, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(out, len, "%s:%u", host ? host : "(null)", (unsigned)port);
}

/* Formats a socket address numerically as host:port. */
static void desc_sockaddr(char *out, size_t len, const struct sockaddr *sa, socklen_t salen)
{
    char host[INET6_ADDRSTRLEN];
    uint16_t port = 0;

    if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof host))
            snprintf(host, sizeof host, "?");
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            snprintf(host, sizeof host, "?");
        port = ntohs(in6->sin6_port);
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(out, len, "unix socket");
        return;
    } else {
        snprintf(out, len, "address family %d", (int)sa->sa_family);
        return;
    }
    desc_hostport(out, len, host, port);
}

/* Describes the peer of a connected socket (for error messages). */
static void desc_peer(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        desc_sockaddr(out, len, (struct sockaddr *)&ss, sl);
    else
        snprintf(out, len, "fd %d", fd);
}

/* TCP_NODELAY: relay traffic is small request/response frames. Best effort
 * (it fails harmlessly on non-TCP stream sockets). */
static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/*
 * Waits until fd is ready for `events` or the deadline passes. Returns 1 if
 * ready (including error/hangup conditions: the next syscall reports them),
 * 0 if the deadline passed, or -errno. EINTR waits again for what is left.
 */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd;
        int r;
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        r = poll(&pfd, 1, ctp_remaining(deadline));
        if (r > 0) {
            if (pfd.revents & POLLNVAL)
                return -EBADF;
            return 1;
        }
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* A timeout of 0 means one non-blocking attempt: CT_E_AGAIN, else TIMEOUT. */
static ct_err expired(int timeout_ms)
{
    return timeout_ms == 0 ? CT_E_AGAIN : CT_E_TIMEOUT;
}

/* RFC 6761 6.4: "invalid." and names under it never resolve. */
static int is_invalid_tld(const char *host)
{
    size_t n = strlen(host);
    const char *tld = "invalid";
    size_t t = strlen(tld);
    if (n > 0 && host[n - 1] == '.')
        n--; /* trailing root dot */
    if (n < t || strncasecmp(host + n - t, tld, t) != 0)
        return 0;
    return n == t || host[n - t - 1] == '.';
}

static ct_err gai_to_err(int g, int sys_errno)
{
    switch (g) {
    case EAI_MEMORY:
        return CT_E_NOMEM;
    case EAI_SYSTEM:
        return sys_errno ? ctp_errno_to_err(sys_errno) : CT_E_RESOLVE;
    default:
        return CT_E_RESOLVE;
    }
}

/* ------------------------------------------------------------------ */
/* Connection methods                                                  */

/*
 * Resolves host:port for a TCP socket (verb and where name the operation in
 * messages). Names under .invalid fail at once without asking the resolver.
 * On success *res is freed by the caller with freeaddrinfo.
 */
static ct_err resolve(const char *verb, const char *where, const char *host, uint16_t port,
                      int flags, struct addrinfo **res, ct_error *err)
{
    struct addrinfo hints;
    char portstr[8];
    int g;

    *res = NULL;
    if (is_invalid_tld(host))
        return ctp_err(err, CT_E_RESOLVE, 0,
                       "tcp %s %s: names under .invalid never resolve (RFC 6761)", verb, where);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = flags | AI_NUMERICSERV; /* no AI_ADDRCONFIG: it hides ::1 on v4-only hosts */
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    g = getaddrinfo(host, portstr, &hints, res);
    if (g != 0) {
        int e = g == EAI_SYSTEM ? errno : 0;
        *res = NULL;
        return ctp_err(err, gai_to_err(g, e), e, "tcp %s %s: cannot resolve: %s", verb, where,
                       gai_strerror(g));
    }
    return CT_OK;
}

static ct_err tcp_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                       ct_error *err, void *user)
{
    struct tcp_conn *c = state;
    int64_t deadline = ctp_deadline(c->ctx, timeout_ms);
    char eb[128];
    (void)user;

    *sent = 0;
    if (c->wr_shut)
        return ctp_err(err, CT_E_STATE, 0, "send to %s after shutdown_write", c->peer);
    if (n == 0)
        return CT_OK;
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        int w;
        if (r >= 0) {
            *sent = (size_t)r;
            return CT_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            return ctp_err(err, ctp_errno_to_err(e), e, "send to %s: %s", c->peer,
                           errstr(e, eb, sizeof eb));
        }
        if (ctp_remaining(deadline) == 0)
            return ctp_err(err, expired(timeout_ms), 0,
                           "send to %s: no buffer space within %d ms", c->peer, timeout_ms);
        w = wait_fd(c->fd, POLLOUT, deadline);
        if (w < 0)
            return ctp_err(err, CT_E_IO, -w, "poll for send to %s: %s", c->peer,
                           errstr(-w, eb, sizeof eb));
        /* w == 0: the deadline passed; the next attempt reports it. */
    }
}

static ct_err tcp_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                       ct_error *err, void *user)
{
    struct tcp_conn *c = state;
    int64_t deadline = ctp_deadline(c->ctx, timeout_ms);
    char eb[128];
    (void)user;

    *got = 0;
    if (cap == 0)
        return ctp_err(err, CT_E_INVALID, 0, "recv from %s: zero capacity", c->peer);
    for (;;) {
        ssize_t r = recv(c->fd, p, cap, 0);
        int w;
        if (r > 0) {
            *got = (size_t)r;
            return CT_OK;
        }
        if (r == 0)
            return ctp_err(err, CT_E_CLOSED, 0, "%s closed the connection", c->peer);
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            return ctp_err(err, ctp_errno_to_err(e), e, "recv from %s: %s", c->peer,
                           errstr(e, eb, sizeof eb));
        }
        if (ctp_remaining(deadline) == 0)
            return ctp_err(err, expired(timeout_ms), 0, "recv from %s: no data within %d ms",
                           c->peer, timeout_ms);
        w = wait_fd(c->fd, POLLIN, deadline);
        if (w < 0)
            return ctp_err(err, CT_E_IO, -w, "poll for recv from %s: %s", c->peer,
                           errstr(-w, eb, sizeof eb));
    }
}

static ct_err tcp_shutdown_write(void *state, int timeout_ms, ct_error *err, void *user)
{
    struct tcp_conn *c = state;
    char eb[128];
    (void)timeout_ms; /* shutdown(2) does not block */
    (void)user;

    if (c->wr_shut)
        return CT_OK;
    if (shutdown(c->fd, SHUT_WR) != 0) {
        int e = errno;
        return ctp_err(err, e == ENOTCONN ? CT_E_RESET : ctp_errno_to_err(e), e,
                       "shutdown(SHUT_WR) to %s: %s", c->peer, errstr(e, eb, sizeof eb));
    }
    c->wr_shut = 1;
    return CT_OK;
}

/*
 * Plain close(): the kernel sends FIN after any queued bytes, so the peer
 * reads them and then CT_E_CLOSED; if unread received data is still queued
 * here, the kernel sends RST instead and the peer sees CT_E_RESET.
 */
static void tcp_close(void *state, void *user)
{
    struct tcp_conn *c = state;
    (void)user;
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd); /* never retried on EINTR: the fd is released either way on Linux */
    free(c);
}

static int tcp_get_fd(void *state, void *user)
{
    (void)user;
    return ((struct tcp_conn *)state)->fd;
}

static const ct_conn_ops tcp_conn_ops = {
    .version = CT_CONN_OPS_VERSION,
    .flags = 0,
    .send = tcp_send,
    .recv = tcp_recv,
    .shutdown_write = tcp_shutdown_write,
    .close = tcp_close,
    .get_fd = tcp_get_fd,
    .pending = NULL, /* the kernel buffers; poll the fd */
    .destroy = NULL,
};

/*
 * Wraps a connected, already non-blocking socket. On success *out owns fd;
 * on failure the caller keeps fd (and must close it).
 */
static ct_err wrap_fd(ct_ctx *ctx, int fd, const char *peer, ct_conn **out, ct_error *err)
{
    struct tcp_conn *c = ctp_calloc(1, sizeof *c);
    ct_err rc;

    if (!c)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory wrapping a socket");
    c->fd = fd;
    c->ctx = ctx;
    if (peer)
        snprintf(c->peer, sizeof c->peer, "%s", peer);
    else
        desc_peer(fd, c->peer, sizeof c->peer);
    rc = ct_conn_new(ctx, &tcp_conn_ops, c, NULL, out, err);
    if (rc != CT_OK)
        free(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Dial                                                                */

/*
 * One non-blocking connect to one address. On CT_OK *out is the connected
 * fd; otherwise err is filled and nothing is left open. Never calls
 * connect() twice on one socket: after EINPROGRESS (or EINTR, which leaves
 * the connect running) it polls for writability until the deadline and
 * reads SO_ERROR.
 */
static ct_err connect_one(const struct addrinfo *ai, int64_t deadline, int timeout_ms,
                          int *out, ct_error *err)
{
    char where[ADDR_DESC_LEN], eb[128];
    int fd, e = 0, w;
    ct_err rc;
    socklen_t sl;

    desc_sockaddr(where, sizeof where, ai->ai_addr, ai->ai_addrlen);
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        e = errno; /* EAFNOSUPPORT on a host without IPv6: the next address may do */
        rc = ctp_err(err, ctp_errno_to_err(e), e, "socket for %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        rc = CT_OK;
        goto out;
    }
    e = errno;
    if (e != EINPROGRESS && e != EINTR) {
        rc = ctp_err(err, ctp_errno_to_err(e), e, "connect to %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    w = wait_fd(fd, POLLOUT, deadline);
    if (w == 0) {
        rc = ctp_err(err, expired(timeout_ms), ETIMEDOUT,
                     "connect to %s: not connected within %d ms", where, timeout_ms);
        goto out;
    }
    if (w < 0) {
        e = -w;
        rc = ctp_err(err, CT_E_IO, e, "poll for connect to %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    e = 0;
    sl = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0)
        e = errno;
    if (e != 0) {
        rc = ctp_err(err, ctp_errno_to_err(e), e, "connect to %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    rc = CT_OK;
out:
    if (rc != CT_OK && fd >= 0) {
        close(fd);
        fd = -1;
    }
    *out = fd;
    return rc;
}

static ct_err tcp_dial(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                       ct_conn **out, ct_error *err, void *user)
{
    char where[ADDR_DESC_LEN], peer[ADDR_DESC_LEN];
    struct addrinfo *res = NULL;
    const struct addrinfo *ai;
    int64_t deadline;
    int fd = -1, tried = 0;
    ct_err rc;
    (void)user;

    if (!out) {
        rc = ctp_err(err, CT_E_INVALID, 0, "tcp dial: out is NULL");
        goto out;
    }
    *out = NULL;
    if (!host || !*host) {
        rc = ctp_err(err, CT_E_INVALID, 0, "tcp dial: no host given");
        goto out;
    }
    desc_hostport(where, sizeof where, host, port);
    if (port == 0) {
        rc = ctp_err(err, CT_E_INVALID, 0, "tcp dial %s: port 0 cannot be dialled", where);
        goto out;
    }
    deadline = ctp_deadline(ctx, timeout_ms);
    if ((rc = resolve("dial", where, host, port, 0, &res, err)) != CT_OK)
        goto out;

    /* Each address in resolver order, all within the one deadline. */
    rc = CT_E_RESOLVE;
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (tried > 0 && ctp_remaining(deadline) == 0)
            break; /* keep the last attempt's error */
        tried++;
        rc = connect_one(ai, deadline, timeout_ms, &fd, err);
        if (rc == CT_OK) {
            desc_sockaddr(peer, sizeof peer, ai->ai_addr, ai->ai_addrlen);
            break;
        }
        if (rc == CT_E_TIMEOUT || rc == CT_E_AGAIN)
            break; /* the whole deadline is spent */
    }
    if (tried == 0) {
        rc = ctp_err(err, CT_E_RESOLVE, 0, "tcp dial %s: no IPv4 or IPv6 address", where);
        goto out;
    }
    if (rc != CT_OK) {
        if (tried > 1 && err) {
            /* the message names the last failure; say there were others */
            size_t l = strlen(err->message);
            snprintf(err->message + l, sizeof err->message - l,
                     " (last of %d addresses tried for %s)", tried, where);
        }
        goto out;
    }

    set_nodelay(fd);
    rc = wrap_fd(ctx, fd, peer, out, err);
    if (rc != CT_OK)
        goto out;
    fd = -1; /* owned by *out */
out:
    if (fd >= 0)
        close(fd);
    if (res)
        freeaddrinfo(res);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Listen / accept                                                     */

/*
 * Creates a bound, listening socket for one address. On CT_OK *out is the
 * fd; otherwise err is filled and nothing is left open. `dual` clears
 * IPV6_V6ONLY. CT_E_UNSUPPORTED means this address family or address is not
 * available on this host (the caller may try another).
 */
static ct_err listen_one(int family, const struct sockaddr *sa, socklen_t salen, int dual,
                         int *out, ct_error *err)
{
    char where[ADDR_DESC_LEN], eb[128];
    int fd, one = 1, zero = 0, e;
    ct_err rc;

    desc_sockaddr(where, sizeof where, sa, salen);
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        e = errno;
        rc = ctp_err(err, e == EAFNOSUPPORT ? CT_E_UNSUPPORTED : ctp_errno_to_err(e), e,
                     "socket for listening on %s: %s", where, errstr(e, eb, sizeof eb));
        goto out;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        e = errno;
        rc = ctp_err(err, CT_E_IO, e, "SO_REUSEADDR on %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    if (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) {
        e = errno;
        rc = ctp_err(err, CT_E_UNSUPPORTED, e, "dual-stack (IPV6_V6ONLY=0) on %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    if (bind(fd, sa, salen) != 0) {
        e = errno;
        rc = ctp_err(err, e == EADDRNOTAVAIL ? CT_E_UNSUPPORTED : ctp_errno_to_err(e), e,
                     "bind %s: %s", where, errstr(e, eb, sizeof eb));
        goto out;
    }
    if (listen(fd, TCP_BACKLOG) != 0) {
        e = errno;
        rc = ctp_err(err, ctp_errno_to_err(e), e, "listen on %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    rc = CT_OK;
out:
    if (rc != CT_OK && fd >= 0) {
        close(fd);
        fd = -1;
    }
    *out = fd;
    return rc;
}

/* Listens on "::" dual-stack, or 0.0.0.0 where IPv6 is unavailable. */
static ct_err listen_any(uint16_t port, int *out, ct_error *err)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    ct_err rc;

    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_addr = in6addr_any;
    a6.sin6_port = htons(port);
    rc = listen_one(AF_INET6, (struct sockaddr *)&a6, sizeof a6, 1, out, err);
    if (rc != CT_E_UNSUPPORTED)
        return rc;
    /* No usable IPv6 (kernel without it, or disabled): IPv4 only. */
    memset(&a4, 0, sizeof a4);
    a4.sin_family = AF_INET;
    a4.sin_addr.s_addr = htonl(INADDR_ANY);
    a4.sin_port = htons(port);
    return listen_one(AF_INET, (struct sockaddr *)&a4, sizeof a4, 0, out, err);
}

static ct_err tcp_listen(ct_ctx *ctx, const char *host, uint16_t port, void **lst,
                         ct_error *err, void *user)
{
    char where[ADDR_DESC_LEN], eb[128];
    struct addrinfo *res = NULL;
    const struct addrinfo *ai;
    struct tcp_listener *l = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = -1;
    ct_err rc;
    (void)user;

    if (!lst) {
        rc = ctp_err(err, CT_E_INVALID, 0, "tcp listen: lst is NULL");
        goto out;
    }
    *lst = NULL;
    desc_hostport(where, sizeof where, host ? host : "*", port);
    if (host && !*host) {
        rc = ctp_err(err, CT_E_INVALID, 0, "tcp listen: empty host (use NULL for any)");
        goto out;
    }

    if (!host) {
        rc = listen_any(port, &fd, err);
    } else {
        if ((rc = resolve("listen", where, host, port, AI_PASSIVE, &res, err)) != CT_OK)
            goto out;
        /* The first address that binds wins; one listener is one socket. */
        rc = CT_E_RESOLVE;
        for (ai = res; ai; ai = ai->ai_next) {
            if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                continue;
            rc = listen_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, 0, &fd, err);
            if (rc == CT_OK || rc == CT_E_ADDRINUSE)
                break;
        }
        if (rc == CT_E_RESOLVE)
            ctp_err(err, rc, 0, "tcp listen %s: no IPv4 or IPv6 address", where);
    }
    if (rc == CT_E_UNSUPPORTED) {
        /* internal "try the next family" signal; callers see CT_E_IO */
        rc = CT_E_IO;
        if (err)
            err->code = rc;
    }
    if (rc != CT_OK)
        goto out;

    l = ctp_calloc(1, sizeof *l);
    if (!l) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        int e = errno;
        rc = ctp_err(err, CT_E_IO, e, "getsockname for %s: %s", where,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    desc_sockaddr(l->local, sizeof l->local, (struct sockaddr *)&ss, sl);
    l->fd = fd;
    l->ctx = ctx;
    fd = -1;
    *lst = l;
    l = NULL;
    rc = CT_OK;
out:
    free(l);
    if (fd >= 0)
        close(fd);
    if (res)
        freeaddrinfo(res);
    return rc;
}

static ct_err tcp_accept(void *lst, int timeout_ms, ct_conn **out, ct_error *err, void *user)
{
    struct tcp_listener *l = lst;
    int64_t deadline = ctp_deadline(l->ctx, timeout_ms);
    struct sockaddr_storage ss;
    char peer[ADDR_DESC_LEN], eb[128];
    int fd = -1;
    ct_err rc;
    (void)user;

    *out = NULL;
    for (;;) {
        socklen_t sl = sizeof ss;
        int w;
        fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            desc_sockaddr(peer, sizeof peer, (struct sockaddr *)&ss, sl);
            break;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED: /* the peer gave up while queued: wait for another */
        case EPROTO:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            break;
        default: {
            int e = errno;
            rc = ctp_err(err, ctp_errno_to_err(e), e, "accept on %s: %s", l->local,
                         errstr(e, eb, sizeof eb));
            goto out;
        }
        }
        if (ctp_remaining(deadline) == 0) {
            rc = ctp_err(err, expired(timeout_ms), 0,
                         "accept on %s: no connection within %d ms", l->local, timeout_ms);
            goto out;
        }
        w = wait_fd(l->fd, POLLIN, deadline);
        if (w < 0) {
            rc = ctp_err(err, CT_E_IO, -w, "poll for accept on %s: %s", l->local,
                         errstr(-w, eb, sizeof eb));
            goto out;
        }
    }
    set_nodelay(fd);
    rc = wrap_fd(l->ctx, fd, peer, out, err);
    if (rc == CT_OK)
        fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static uint16_t tcp_listener_port(void *lst, void *user)
{
    (void)user;
    return ((struct tcp_listener *)lst)->port;
}

static void tcp_listener_close(void *lst, void *user)
{
    struct tcp_listener *l = lst;
    (void)user;
    if (!l)
        return;
    close(l->fd);
    free(l);
}

static const ct_transport_ops tcp_transport_ops = {
    .version = CT_TRANSPORT_OPS_VERSION,
    .flags = 0,
    .dial = tcp_dial,
    .listen = tcp_listen,
    .accept = tcp_accept,
    .listener_port = tcp_listener_port,
    .listener_close = tcp_listener_close,
    .destroy = NULL,
};

ct_err ct_transport_new_tcp(ct_ctx *ctx, ct_transport **out, ct_error *err)
{
    return ct_transport_new(ctx, &tcp_transport_ops, NULL, out, err);
}

/* ------------------------------------------------------------------ */
/* Adopting a socket                                                   */

ct_err ct_conn_new_fd(ct_ctx *ctx, int fd, ct_conn **out, ct_error *err)
{
    int type = 0, fl, fdfl, nb;
    socklen_t sl = sizeof type;
    struct sockaddr_storage ss;
    char eb[128];
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_new_fd: out is NULL");
    *out = NULL;
    if (fd < 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_new_fd: invalid fd %d", fd);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) != 0) {
        int e = errno; /* EBADF, ENOTSOCK */
        return ctp_err(err, CT_E_INVALID, e,
                       "ct_conn_new_fd: fd %d is not a socket: %s", fd,
                       errstr(e, eb, sizeof eb));
    }
    if (type != SOCK_STREAM)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_new_fd: fd %d is not a stream socket",
                       fd);
    /* Remember the flags so that a failure leaves the caller's fd unchanged. */
    fl = fcntl(fd, F_GETFL);
    fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0) {
        int e = errno;
        return ctp_err(err, CT_E_IO, e, "ct_conn_new_fd: fcntl on fd %d: %s", fd,
                       errstr(e, eb, sizeof eb));
    }
    nb = ctp_fd_nonblock_cloexec(fd);
    if (nb != 0) {
        int e = -nb;
        rc = ctp_err(err, CT_E_IO, e, "ct_conn_new_fd: making fd %d non-blocking: %s", fd,
                     errstr(e, eb, sizeof eb));
        goto out;
    }
    rc = wrap_fd(ctx, fd, NULL, out, err);
    if (rc != CT_OK)
        goto out;
    sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
        set_nodelay(fd);
out:
    if (rc != CT_OK) {
        (void)fcntl(fd, F_SETFL, fl);
        (void)fcntl(fd, F_SETFD, fdfl);
    }
    return rc;
}
