/*
 * metrics.c - the operations port: GET /metrics (Prometheus text format
 * 0.0.4), /healthz and /readyz, served by libmicrohttpd on its own polling
 * thread. GET and HEAD only; everything else is 404 or 405. The thread only
 * reads atomics and ct_relay_get_stats (thread-safe), so it needs no lock.
 */
#include "beacon.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on the HTTP server: it is for one scraper and a few probes. */
#define HTTP_MAX_CONNS 32u
#define HTTP_MAX_CONNS_PER_IP 16u
#define HTTP_TIMEOUT_S 10u
#define HTTP_MEMORY_LIMIT ((size_t)32 * 1024)

struct bcn_metrics {
    struct MHD_Daemon *d;
};

/* ---- the metric table: every field of ct_relay_stats ---- */

#define COUNTERS(X)                                                                      \
    X(accepted, "TCP connections accepted.")                                             \
    X(handshakes_failed, "TLS handshakes that failed.")                                  \
    X(hellos_bad, "BAD_HELLO sent: malformed hello or data before PAIRED.")              \
    X(refused_room_busy, "ROOM_BUSY refusals.")                                          \
    X(refused_rate_limited, "RATE_LIMITED refusals (per-address cap or accept rate).")   \
    X(refused_overloaded, "Refusals at the global connection cap or on allocation failure.") \
    X(refused_draining, "DRAINING refusals.")                                            \
    X(timeouts, "Hello deadlines missed and waits longer than the waiting limit.")        \
    X(pairs, "Pairs formed.")                                                            \
    X(bytes_relayed, "Application bytes relayed between paired peers.")                  \
    X(refused_version, "VERSION refusals (unsupported hello version).")                  \
    X(refused_ip_conns, "RATE_LIMITED refusals for the per-address connection cap.")     \
    X(refused_ip_rate, "RATE_LIMITED refusals for the per-address accept rate.")         \
    X(closed_without_status, "Connections closed right after accept, without TLS.")      \
    X(aborts, "Paired sessions ended by a reset, TLS error or truncation.")             \
    X(half_closes, "close_notify relayed (one per direction).")                          \
    X(accept_errors, "accept() failures.")

#define GAUGES(X)                                                                        \
    X(conns_open, "Connections open.")                                                   \
    X(waiting, "Peers waiting for a partner.")                                           \
    X(paired_sessions, "Paired sessions in progress.")                                   \
    X(rooms, "Rooms with a waiting peer.")

static const struct metric {
    const char *name, *help;
    size_t off;
} k_counters[] = {
#define M_(name, help) {#name, help, offsetof(ct_relay_stats, name)},
    COUNTERS(M_)
#undef M_
}, k_gauges[] = {
#define M_(name, help) {#name, help, offsetof(ct_relay_stats, name)},
    GAUGES(M_)
#undef M_
};

typedef struct textbuf {
    char *p;
    size_t n, cap;
} textbuf;

static void emit(textbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(textbuf *o, const char *fmt, ...)
{
    va_list ap;
    int w;
    if (o->n >= o->cap)
        return;
    va_start(ap, fmt);
    w = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= o->cap - o->n)
        o->n = o->cap; /* truncated: the caller sees a full buffer */
    else
        o->n += (size_t)w;
}

static void metric(textbuf *o, const char *name, const char *suffix, const char *type,
                   const char *help, unsigned long long v)
{
    emit(o, "# HELP cloudtaser_beacon_%s%s %s\n", name, suffix, help);
    emit(o, "# TYPE cloudtaser_beacon_%s%s %s\n", name, suffix, type);
    emit(o, "cloudtaser_beacon_%s%s %llu\n", name, suffix, v);
}

size_t bcn_metrics_render(const bcn_state *st, char *buf, size_t cap)
{
    ct_relay_stats s;
    textbuf o = {buf, 0, cap};

    memset(&s, 0, sizeof s);
    ct_relay_get_stats(st->relay, &s);
    for (size_t i = 0; i < sizeof k_counters / sizeof k_counters[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s + k_counters[i].off, sizeof v);
        metric(&o, k_counters[i].name, "_total", "counter", k_counters[i].help, v);
    }
    for (size_t i = 0; i < sizeof k_gauges / sizeof k_gauges[0]; i++) {
        uint32_t v;
        memcpy(&v, (const char *)&s + k_gauges[i].off, sizeof v);
        metric(&o, k_gauges[i].name, "", "gauge", k_gauges[i].help, v);
    }
    metric(&o, "draining", "", "gauge", "1 while the beacon drains (SIGTERM), else 0.",
           (unsigned long long)atomic_load(&st->draining));
    metric(&o, "cert_reloads", "_total", "counter",
           "Certificate reloads that succeeded (SIGHUP).",
           (unsigned long long)atomic_load(&st->reloads));
    metric(&o, "cert_reload_failures", "_total", "counter",
           "Certificate reloads that failed (the old certificate stays).",
           (unsigned long long)atomic_load(&st->reload_failures));
    return o.n;
}

/* ---- HTTP ---- */

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

#define TEXT "text/plain; charset=utf-8"

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
    static int seen;
    bcn_state *st = cls;
    (void)version;
    (void)upload_data;

    if (!*req_cls) { /* headers are in; wait for the (ignored) body */
        *req_cls = &seen;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT, "method not allowed\n", 19, 1);
    if (!strcmp(url, "/healthz")) {
        if (atomic_load(&st->serving))
            return reply(c, MHD_HTTP_OK, TEXT, "ok\n", 3, 0);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT, "stopping\n", 9, 0);
    }
    if (!strcmp(url, "/readyz")) {
        if (atomic_load(&st->ready))
            return reply(c, MHD_HTTP_OK, TEXT, "ready\n", 6, 0);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT,
                     atomic_load(&st->draining) ? "draining\n" : "not ready\n",
                     atomic_load(&st->draining) ? 9 : 10, 0);
    }
    if (!strcmp(url, "/metrics")) {
        char body[16384];
        size_t n = bcn_metrics_render(st, body, sizeof body);
        if (n >= sizeof body)
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, TEXT, "metrics too large\n", 18, 0);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, n, 0);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, TEXT, "not found\n", 10, 0);
}

/* libmicrohttpd's own errors, as log lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    vsnprintf(msg, sizeof msg, fmt, ap);
#pragma GCC diagnostic pop
    msg[strcspn(msg, "\n")] = '\0';
    bcn_log(CT_LOG_WARNING, "metrics_http", msg);
}

int bcn_metrics_start(bcn_state *st, const struct sockaddr *sa, socklen_t sa_len,
                      bcn_metrics **out, uint16_t *port, char *why, size_t why_len)
{
    bcn_metrics *m;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;

    (void)sa_len;
    *out = NULL;
    if (!(m = calloc(1, sizeof *m))) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (sa->sa_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, st,
                           MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, or MHD warns */
                           MHD_OPTION_SOCK_ADDR, sa,
                           MHD_OPTION_CONNECTION_LIMIT, HTTP_MAX_CONNS,
                           MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTP_MAX_CONNS_PER_IP,
                           MHD_OPTION_CONNECTION_TIMEOUT, HTTP_TIMEOUT_S,
                           MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
                           MHD_OPTION_END);
    if (!m->d) {
        free(m);
        snprintf(why, why_len, "cannot start the HTTP server (address in use or not "
                               "available? see the metrics_http line above)");
        return -1;
    }
    info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : 0;
    *out = m;
    return 0;
}

void bcn_metrics_stop(bcn_metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    free(m);
}
