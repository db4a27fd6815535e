/*
 * ops.c - ct_ops_server: /healthz, /readyz and /metrics over plain HTTP on
 * libmicrohttpd's internal polling thread (ops.h). Every answer is decided
 * when the request headers are in: no request body is ever read.
 */
#include "internal.h"

#include <cloudtaser/ops.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEF_MAX_CONNS 32u
#define MAX_CONNS_PER_IP 8u
#define DEF_TIMEOUT_S 10u
#define CONN_MEMORY ((size_t)32 * 1024)
#define METRICS_MAX ((size_t)256 * 1024)

struct ct_ops_server {
    const ct_ctx *ctx;
    ct_ops_options o;
    struct MHD_Daemon *d;
    uint16_t port;
    char host[INET6_ADDRSTRLEN];
    char address[INET6_ADDRSTRLEN + 8];
};

struct ct_ops_metrics {
    char *p;
    size_t n, cap;
    int bad; /* a bad name or type, or out of memory / over the limit */
};

/* ---- the metrics body ---- */

static void put(ct_ops_metrics *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(ct_ops_metrics *m, const char *fmt, ...)
{
    va_list ap;
    int w;
    for (;;) {
        if (m->bad)
            return;
        va_start(ap, fmt);
        w = vsnprintf(m->p ? m->p + m->n : NULL, m->p ? m->cap - m->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            m->bad = 1;
            return;
        }
        if (m->p && (size_t)w < m->cap - m->n) {
            m->n += (size_t)w;
            return;
        }
        /* grow: at least what this line needs, up to the limit */
        size_t need = m->n + (size_t)w + 1, cap = m->cap ? m->cap : 4096;
        char *np;
        while (cap < need)
            cap *= 2;
        if (need > METRICS_MAX || !(np = realloc(m->p, cap))) {
            m->bad = 1;
            return;
        }
        m->p = np;
        m->cap = cap;
    }
}

static int valid_name(const char *s)
{
    size_t i;
    if (!s || !*s)
        return 0;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
        if (i > 200)
            return 0;
    }
    return 1;
}

void ct_ops_metric(ct_ops_metrics *m, const char *name, ct_ops_metric_type type,
                   const char *help, double value)
{
    const char *t = type == CT_OPS_COUNTER ? "counter" : type == CT_OPS_GAUGE ? "gauge" : NULL;
    char esc[512];
    size_t j = 0;

    if (!m)
        return;
    if (!t || !valid_name(name)) {
        m->bad = 1;
        return;
    }
    for (; help && *help && j + 3 < sizeof esc; help++) {
        if (*help == '\\' || *help == '\n') {
            esc[j++] = '\\';
            esc[j++] = *help == '\n' ? 'n' : '\\';
        } else {
            esc[j++] = *help;
        }
    }
    esc[j] = 0;
    if (j)
        put(m, "# HELP %s %s\n", name, esc);
    put(m, "# TYPE %s %s\n", name, t);
    if (isnan(value))
        put(m, "%s NaN\n", name);
    else if (isinf(value))
        put(m, "%s %s\n", name, value > 0 ? "+Inf" : "-Inf");
    else if (value > -1e15 && value < 1e15 && (double)(long long)value == value)
        put(m, "%s %lld\n", name, (long long)value);
    else {
        /* the shorter form when it reads back as the same double */
        char num[40];
        snprintf(num, sizeof num, "%.15g", value);
        if (strtod(num, NULL) != value)
            snprintf(num, sizeof num, "%.17g", value);
        put(m, "%s %s\n", name, num);
    }
}

/* ---- HTTP ---- */

#define TEXT "text/plain; charset=utf-8"

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *type,
                             const char *body, size_t len, int allow)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        (allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result probe(struct MHD_Connection *c, int yes, const char *ok, const char *no)
{
    const char *b = yes ? ok : no;
    return reply(c, yes ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, TEXT, b, strlen(b), 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    ct_ops_server *s = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;

    /* first call: the headers are in; answer now, never read a body */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT, "method not allowed\n", 19, 1);
    if (strcmp(url, "/healthz") == 0)
        return probe(c, !s->o.healthy || s->o.healthy(s->o.user), "ok\n", "unhealthy\n");
    if (strcmp(url, "/readyz") == 0) {
        int yes = s->o.ready ? s->o.ready(s->o.user)
                             : (!s->o.healthy || s->o.healthy(s->o.user));
        return probe(c, yes, "ready\n", "not ready\n");
    }
    if (strcmp(url, "/metrics") == 0) {
        ct_ops_metrics m = { 0 };
        enum MHD_Result ret;
        if (s->o.metrics)
            s->o.metrics(s->o.user, &m);
        if (m.bad)
            ret = reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, TEXT,
                        "metrics could not be rendered (bad name or too large)\n", 54, 0);
        else
            ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                        m.p ? m.p : "", m.n, 0);
        free(m.p);
        return ret;
    }
    return reply(c, MHD_HTTP_NOT_FOUND, TEXT, "not found\n", 10, 0);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    ct_ops_server *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    ctp_log(s->ctx, CT_LOG_WARNING, "ops.http", "%s", msg);
}

/* ---- start / stop ---- */

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
        return 1;
    return IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) && a6->sin6_addr.s6_addr[12] == 127;
}

/* Binds a throwaway socket to see whether the port is free: a clear error
 * (CT_E_ADDRINUSE) instead of the HTTP server's generic failure. */
static ct_err probe_bind(const struct sockaddr_storage *ss, socklen_t sl, const char *addr,
                         ct_error *err)
{
    int one = 1, e;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ctp_err(err, ctp_errno_to_err(errno), errno, "ops endpoint: socket: %s",
                       strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, sl) == 0) {
        close(fd);
        return CT_OK;
    }
    e = errno;
    close(fd);
    if (e == EADDRINUSE)
        return ctp_err(err, CT_E_ADDRINUSE, e,
                       "ops endpoint: %s is already in use (pick another port, or port 0 for "
                       "any free one)", addr);
    return ctp_err(err, CT_E_IO, e, "ops endpoint: cannot bind %s: %s", addr, strerror(e));
}

ct_err ct_ops_server_start(ct_ctx *ctx, const ct_ops_options *opts, ct_ops_server **out,
                           ct_error *err)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    ct_ops_server *s;
    const union MHD_DaemonInfo *di;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    const char *host;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!opts || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_ops_server_start: NULL options or out");
    if (opts->version != CT_OPS_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_ops_options version %u is not supported",
                       (unsigned)opts->version);
    host = opts->host ? opts->host : "127.0.0.1";
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(opts->port);
        sl = sizeof *a;
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(opts->port);
        sl = sizeof *a6;
        flags |= MHD_USE_IPv6;
    } else {
        return ctp_err(err, CT_E_INVALID, 0,
                       "ops endpoint: '%.64s' is not a numeric IPv4 or IPv6 address", host);
    }
    if (!opts->allow_remote && !is_loopback(&ss))
        return ctp_err(err, CT_E_DENIED, 0,
                       "ops endpoint: %.64s is not a loopback address; the endpoint has no "
                       "authentication, so exposing it must be allowed explicitly", host);
    if (!(s = ctp_calloc(1, sizeof *s)))
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    s->ctx = ctx ? ctx : ctp_default_ctx();
    s->o = *opts;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->o.host = s->host;
    if (!s->o.max_connections)
        s->o.max_connections = DEF_MAX_CONNS;
    if (!s->o.timeout_s)
        s->o.timeout_s = DEF_TIMEOUT_S;
    snprintf(s->address, sizeof s->address, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             s->host, (unsigned)opts->port);
    if (opts->port && (rc = probe_bind(&ss, sl, s->address, err)) != CT_OK) {
        free(s);
        return rc;
    }
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, /* first, or MHD warns */
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, MAX_CONNS_PER_IP,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY,
                            MHD_OPTION_END);
    if (!s->d) {
        rc = ctp_err(err, CT_E_INTERNAL, 0,
                     "ops endpoint: the HTTP server could not start on %s (see the ops.http "
                     "log line)", s->address);
        free(s);
        return rc;
    }
    di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : opts->port;
    snprintf(s->address, sizeof s->address, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             s->host, (unsigned)s->port);
    ctp_log(s->ctx, CT_LOG_INFO, "ops.up", "operations endpoint on http://%s", s->address);
    *out = s;
    return CT_OK;
}

uint16_t ct_ops_server_port(const ct_ops_server *s)
{
    return s ? s->port : 0;
}

const char *ct_ops_server_address(const ct_ops_server *s)
{
    return s ? s->address : "";
}

void ct_ops_server_free(ct_ops_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    free(s);
}
