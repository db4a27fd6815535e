/*
 * agent_ops.c - see agent_ops.h.
 */
#include "agent_ops.h"

#include <stdio.h>
#include <string.h>

int agent_ops_resolve(const char *prog, agent_ops *a)
{
    ct_error err;
    char spec[128];
    size_t n;
    int any;

    if (!a->spec) {
        if (a->allow_remote) {
            fprintf(stderr, "%s: --metrics-allow-remote needs --metrics\n", prog);
            return -1;
        }
        return 0;
    }
    /* ADDR:PORT; ADDR:0 asks for any free port */
    n = strlen(a->spec);
    any = n > 2 && strcmp(a->spec + n - 2, ":0") == 0;
    snprintf(spec, sizeof spec, "%.*s", (int)(any ? n - 2 : n), a->spec);
    if (ct_hostport_parse(spec, 0, a->host, sizeof a->host, &a->port, &err) != CT_OK) {
        fprintf(stderr, "%s: --metrics: %s\n", prog, err.message);
        return -1;
    }
    if (a->port == 0 && !any) {
        fprintf(stderr, "%s: --metrics: expected ADDR:PORT (port 0: any free port)\n", prog);
        return -1;
    }
    return 0;
}

void agent_ops_event(agent_ops *a, const ct_agent_event *ev)
{
    switch (ev->type) {
    case CT_EV_SESSION_UP: atomic_fetch_add(&a->sessions_up, 1); break;
    case CT_EV_SESSION_DOWN: atomic_fetch_add(&a->sessions_down, 1); break;
    case CT_EV_BOOTSTRAP_ISSUED: atomic_fetch_add(&a->bootstraps, 1); break;
    case CT_EV_BOOTSTRAP_REFUSED: atomic_fetch_add(&a->refusals, 1); break;
    case CT_EV_ERROR: atomic_fetch_add(&a->errors, 1); break;
    case CT_EV_CLUSTER_ADDED: atomic_fetch_add(&a->clusters_added, 1); break;
    case CT_EV_CLUSTER_REMOVED: atomic_fetch_add(&a->clusters_removed, 1); break;
    default: break;
    }
}

ct_err agent_ops_handler(void *arg, const char *fingerprint, ct_session *s, uint32_t stream,
                         const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                         ct_error *err)
{
    agent_ops *a = arg;
    ct_err rc = a->inner(a->inner_arg, fingerprint, s, stream, req, req_len, resp, resp_len, err);
    atomic_fetch_add(rc == CT_OK ? &a->requests_ok : &a->requests_failed, 1);
    return rc;
}

static int healthy(void *user)
{
    return !atomic_load(&((agent_ops *)user)->stopping);
}

static int ready(void *user)
{
    agent_ops *a = user;
    if (atomic_load(&a->stopping))
        return 0;
    if (a->op)
        return ct_operator_connected(a->op);
    ct_bridge_status st = CT_BRIDGE_STATUS_INIT;
    return ct_bridge_get_status(a->bridge, &st, NULL) == CT_OK && st.running && st.store_ok;
}

static void metric(ct_ops_metrics *m, const agent_ops *a, const char *name,
                   ct_ops_metric_type t, const char *help, double v)
{
    char full[128];
    snprintf(full, sizeof full, "%s_%s", a->prefix, name);
    ct_ops_metric(m, full, t, help, v);
}

#define C(name, help, field) \
    metric(m, a, name, CT_OPS_COUNTER, help, (double)atomic_load(&a->field))

static void metrics(void *user, ct_ops_metrics *m)
{
    agent_ops *a = user;
    uint64_t up = atomic_load(&a->sessions_up);

    metric(m, a, "ready", CT_OPS_GAUGE, "1 when /readyz answers 200.", ready(a));
    C("sessions_up_total", "Operational sessions established.", sessions_up);
    C("sessions_down_total", "Operational sessions ended.", sessions_down);
    C("bootstraps_total", "Bootstraps completed (certificates issued or received).",
      bootstraps);
    C("bootstrap_refusals_total", "Bootstraps refused.", refusals);
    C("errors_total", "Errors reported as events (each is retried).", errors);
    C("requests_served_total", "Requests from the other end answered successfully.",
      requests_ok);
    C("requests_failed_total", "Requests from the other end that failed.", requests_failed);
    if (a->op) {
        metric(m, a, "connected", CT_OPS_GAUGE, "1 while the operational session is up.",
               ct_operator_connected(a->op));
        metric(m, a, "reconnects_total", CT_OPS_COUNTER,
               "Operational sessions established after the first one.",
               up > 0 ? (double)(up - 1) : 0);
        metric(m, a, "broker_serving", CT_OPS_GAUGE, "1 while the Vault API broker serves.",
               atomic_load(&a->broker_serving));
    } else {
        ct_bridge_status st = CT_BRIDGE_STATUS_INIT;
        (void)up;
        if (ct_bridge_get_status(a->bridge, &st, NULL) != CT_OK)
            return;
        metric(m, a, "sessions", CT_OPS_GAUGE, "Live operational sessions.",
               (double)st.sessions);
        metric(m, a, "clusters", CT_OPS_GAUGE, "Registered clusters served.",
               (double)st.clusters);
        metric(m, a, "store_ok", CT_OPS_GAUGE, "1 when the latest scan listed the store.",
               st.store_ok);
        metric(m, a, "store_scans_total", CT_OPS_COUNTER, "Scans of the record store.",
               (double)st.scans);
        metric(m, a, "store_scan_failures_total", CT_OPS_COUNTER,
               "Scans that could not list the record store.", (double)st.scan_failures);
        metric(m, a, "store_last_scan_ok_age_seconds", CT_OPS_GAUGE,
               "Seconds since the latest successful scan (-1: none yet).",
               st.last_scan_ok_ms < 0 ? -1.0 : (double)st.last_scan_ok_ms / 1000.0);
        C("clusters_added_total", "Registrations found.", clusters_added);
        C("clusters_removed_total", "Registrations gone (deregistered).", clusters_removed);
    }
}

int agent_ops_start(const char *prog, agent_ops *a, ct_ctx *ctx, int json, FILE *out)
{
    ct_ops_options o = CT_OPS_OPTIONS_INIT;
    ct_error err;

    if (!a->spec)
        return 0;
    o.host = a->host;
    o.port = a->port;
    o.allow_remote = a->allow_remote;
    o.healthy = healthy;
    o.ready = ready;
    o.metrics = metrics;
    o.user = a;
    if (ct_ops_server_start(ctx, &o, &a->srv, &err) != CT_OK) {
        fprintf(stderr, "%s: --metrics %s: %s%s\n", prog, a->spec, err.message,
                err.code == CT_E_DENIED ? " (add --metrics-allow-remote)" : "");
        return err.code == CT_E_DENIED || err.code == CT_E_INVALID ? EXIT_USAGE : EXIT_FAIL;
    }
    if (json)
        fprintf(out, "{\"event\":\"metrics\",\"address\":\"%s\"}\n",
                ct_ops_server_address(a->srv));
    else
        fprintf(out, "metrics %s\n", ct_ops_server_address(a->srv));
    fflush(out);
    return 0;
}

void agent_ops_stopping(agent_ops *a)
{
    atomic_store(&a->stopping, 1);
}

void agent_ops_stop(agent_ops *a)
{
    agent_ops_stopping(a);
    ct_ops_server_free(a->srv);
    a->srv = NULL;
}
