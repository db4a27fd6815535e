/*
 * agent_ops.h - the operations endpoint of cloudtaser-bridge and
 * cloudtaser-operator (--metrics, --metrics-allow-remote): the library's
 * ct_ops_server (ops.h) with the probes and metrics of one agent, counted
 * from its events and from the requests it serves.
 */
#ifndef CT_TOOLS_AGENT_OPS_H
#define CT_TOOLS_AGENT_OPS_H

#include "agent_cli.h"

#include <stdatomic.h>

/* The help text for the two flags. */
#define OPS_FLAGS_HELP \
"  --metrics ADDR:PORT      serve the operations endpoint there: GET /healthz,\n" \
"                           /readyz and /metrics (Prometheus text); a numeric\n" \
"                           address, IPv6 in brackets; port 0: any free port\n" \
"                           (the address is printed as \"metrics ADDR:PORT\");\n" \
"                           default: off (" OPS_DEFAULT_HINT ")\n" \
"  --metrics-allow-remote   allow a --metrics address that is not loopback (the\n" \
"                           endpoint has no authentication)\n"
#define OPS_DEFAULT_HINT "the charts and units use port 9464"

typedef struct agent_ops {
    /* set by the caller before agent_ops_start */
    const char *prefix;     /* metric name prefix: "cloudtaser_bridge" */
    ct_bridge *bridge;      /* one of the two */
    ct_operator *op;
    ct_agent_handler inner; /* the handler whose requests are counted */
    void *inner_arg;
    /* flags */
    const char *spec;       /* --metrics */
    int allow_remote;       /* --metrics-allow-remote */
    char host[64];
    uint16_t port;
    /* counted */
    atomic_uint_fast64_t sessions_up, sessions_down, bootstraps, refusals, errors,
        clusters_added, clusters_removed, requests_ok, requests_failed;
    atomic_int stopping, broker_serving;
    ct_ops_server *srv;
} agent_ops;

/* Parses --metrics (if given); prints a usage error and returns -1 if bad. */
int agent_ops_resolve(const char *prog, agent_ops *a);
/* Counts one event (call from the agent's event callback). */
void agent_ops_event(agent_ops *a, const ct_agent_event *ev);
/* A ct_agent_handler: counts, then calls a->inner(a->inner_arg, ...). */
ct_err agent_ops_handler(void *arg, const char *fingerprint, ct_session *s, uint32_t stream,
                         const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                         ct_error *err);
/* Starts the endpoint if --metrics was given and prints "metrics ADDR:PORT"
 * (a JSON object with json) on `out`. 0, or the exit status after printing why
 * (EXIT_USAGE for a refused address, else EXIT_FAIL). */
int agent_ops_start(const char *prog, agent_ops *a, ct_ctx *ctx, int json, FILE *out);
/* /healthz turns 503 (shutting down). */
void agent_ops_stopping(agent_ops *a);
/* Stops the endpoint (before the agent is freed). */
void agent_ops_stop(agent_ops *a);

#endif
