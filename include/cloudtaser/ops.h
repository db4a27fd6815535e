/*
 * cloudtaser/ops.h - a small operations endpoint for long-running programs
 * built on libcloudtaser (the bridge, the operator, or anything embedding
 * ct_bridge / ct_operator): the probes that Kubernetes, systemd watchdogs
 * and load balancers use, and Prometheus metrics.
 *
 *   GET /healthz   200 "ok" while the process serves (the `healthy`
 *                  callback says 1), else 503
 *   GET /readyz    200 "ready" while the `ready` callback says 1, else 503
 *   GET /metrics   200, Prometheus text format 0.0.4: what the `metrics`
 *                  callback writes with ct_ops_metric
 *
 * HEAD is answered like GET without a body. Any other method is 405 (with
 * an Allow header), any other path 404. Request bodies are not read; the
 * server is plain HTTP with no authentication, so it listens on a loopback
 * address unless the caller explicitly allows another one.
 *
 * Bounds: at most max_connections connections at once (8 per client
 * address), each closed after timeout_s seconds of inactivity, 32 KiB of
 * memory per connection, /metrics bodies up to 256 KiB (beyond: 500).
 *
 * Threads: the server answers on one thread of its own (libmicrohttpd's
 * internal polling thread), started by ct_ops_server_start and joined by
 * ct_ops_server_free. The callbacks run on that thread, one at a time,
 * concurrently with the rest of the program: they must be thread-safe
 * (read atomics, or take the caller's own lock briefly) and must not
 * block. This is an exception to the library rule that callbacks run on
 * the calling thread.
 */
#ifndef CLOUDTASER_OPS_H
#define CLOUDTASER_OPS_H

#include "common.h"
#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_ops_server ct_ops_server;

/* The body of one /metrics answer under construction (opaque). */
typedef struct ct_ops_metrics ct_ops_metrics;

typedef enum ct_ops_metric_type {
    CT_OPS_COUNTER = 1, /* only goes up; the name should end in _total */
    CT_OPS_GAUGE = 2,   /* goes up and down */
    CT_OPS_METRIC_FORCE_INT32_ = 0x7fffffff
} ct_ops_metric_type;

/* A probe: returns non-zero when the answer is yes (healthy, ready). */
typedef int (*ct_ops_probe_fn)(void *user);
/* Writes the metrics of one scrape with ct_ops_metric; `m` is valid only
 * during the call. */
typedef void (*ct_ops_metrics_fn)(void *user, ct_ops_metrics *m);

#define CT_OPS_OPTIONS_VERSION 1
/* The default port programs use for this endpoint when they pick one. */
#define CT_OPS_DEFAULT_PORT 9464

typedef struct ct_ops_options {
    uint32_t version;
    const char *host;          /* numeric IPv4 or IPv6 address (no brackets),
                                  copied; NULL: 127.0.0.1 */
    uint16_t port;             /* 0: any free port (see ct_ops_server_port) */
    int allow_remote;          /* 0: host must be a loopback address */
    ct_ops_probe_fn healthy;   /* /healthz; NULL: healthy while running */
    ct_ops_probe_fn ready;     /* /readyz; NULL: same as /healthz */
    ct_ops_metrics_fn metrics; /* /metrics; NULL: an empty body */
    void *user;                /* passed to the three callbacks */
    uint32_t max_connections;  /* 0: 32 */
    uint32_t timeout_s;        /* idle connection timeout; 0: 10 */
} ct_ops_options;
#define CT_OPS_OPTIONS_INIT { .version = CT_OPS_OPTIONS_VERSION }

/*
 * Starts serving. *opts is copied (host too); the callbacks and `user` must
 * stay valid until ct_ops_server_free, and so must `ctx` (borrowed, for its
 * logger; NULL: the library's silent default). On error no callback is ever called.
 * Errors: CT_E_INVALID (NULL opts/out, host not a numeric address),
 * CT_E_VERSION, CT_E_DENIED (a non-loopback host without allow_remote),
 * CT_E_ADDRINUSE (the port is taken), CT_E_IO (cannot bind or listen
 * otherwise; os_error holds errno), CT_E_NOMEM, CT_E_INTERNAL (the HTTP
 * server could not start). Free the result with ct_ops_server_free.
 */
CT_API ct_err ct_ops_server_start(ct_ctx *ctx, const ct_ops_options *opts, ct_ops_server **out,
                                  ct_error *err);
/* The port it listens on (useful after port 0). Thread-safe. */
CT_API uint16_t ct_ops_server_port(const ct_ops_server *s);
/*
 * "ADDR:PORT" it listens on, IPv6 in brackets ("[::1]:9464"): what the
 * tools print as their "metrics ADDR:PORT" line. Borrowed; valid until
 * ct_ops_server_free. Thread-safe.
 */
CT_API const char *ct_ops_server_address(const ct_ops_server *s);
/*
 * Stops serving: closes the listening socket and every connection, joins
 * the server thread; no callback runs after it returns. Must not be called
 * from a callback. NULL is a no-op.
 */
CT_API void ct_ops_server_free(ct_ops_server *s);

/*
 * Adds one metric (HELP, TYPE and sample lines) to a /metrics answer.
 * `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* (Prometheus metric names);
 * `help` is escaped as the format requires; NaN and infinities are written
 * as NaN, +Inf, -Inf. A bad name or type is skipped and the answer becomes
 * a 500 (so a programming error shows in the scrape, not as a silently
 * missing series). Call only from the metrics callback with its `m`.
 */
CT_API void ct_ops_metric(ct_ops_metrics *m, const char *name, ct_ops_metric_type type,
                          const char *help, double value);

#ifdef __cplusplus
}
#endif

#endif
