/*
 * cloudtaser/agent.h - the two long-running sides built from the pieces in
 * bootstrap.h, relay.h and session.h: the bridge (next to the secret store)
 * and the operator (in the cluster). The tools cloudtaser-bridge and
 * cloudtaser-operator are thin wrappers around these.
 *
 * Both run on threads they create (ct_*_run blocks the caller until
 * ct_*_stop) and talk only outbound, to the beacon.
 */
#ifndef CLOUDTASER_AGENT_H
#define CLOUDTASER_AGENT_H

#include "bootstrap.h"
#include "common.h"
#include "context.h"
#include "relay.h"
#include "session.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What happened, for progress display and logs (no secrets in it). */
typedef enum ct_agent_event_type {
    CT_EV_CLUSTER_ADDED = 1,      /* bridge: found a registration */
    CT_EV_CLUSTER_REMOVED = 2,    /* bridge: registration gone (sessions closed) */
    CT_EV_WAITING = 3,            /* connected to the beacon, waiting in a room */
    CT_EV_INIT_PAIRED = 4,        /* matched in the init room */
    CT_EV_BOOTSTRAP_ISSUED = 5,   /* bridge: certificate issued; operator: received */
    CT_EV_BOOTSTRAP_REFUSED = 6,  /* detail: the refusal reason */
    CT_EV_CLAIM_RECORDED = 7,     /* bridge: the one-time claim was written */
    CT_EV_SESSION_UP = 8,         /* operational mTLS session established */
    CT_EV_SESSION_DOWN = 9,       /* detail: why */
    CT_EV_ERROR = 10,             /* detail: what failed; the agent retries */
    CT_EV_FORCE_INT32_ = 0x7fffffff
} ct_agent_event_type;

typedef struct ct_agent_event {
    ct_agent_event_type type;
    const char *cluster;      /* the first 8 characters of the fingerprint */
    const char *room;         /* "init" or "operational" or NULL */
    const char *detail;       /* human-readable, may be NULL */
    ct_err code;              /* CT_OK or the error behind the event */
    int64_t elapsed_ms;       /* since the agent started running */
} ct_agent_event;

/* Called on agent threads, possibly concurrently; borrowed strings. */
typedef void (*ct_agent_event_fn)(void *arg, const ct_agent_event *ev);
CT_API const char *ct_agent_event_name(ct_agent_event_type t);

/*
 * Request handler of an agent: like ct_session_handler, plus the cluster
 * (full canonical fingerprint: do not log it whole).
 */
typedef ct_err (*ct_agent_handler)(void *arg, const char *fingerprint, ct_session *s,
                                   uint32_t stream, const uint8_t *req, size_t req_len,
                                   uint8_t **resp, size_t *resp_len, ct_error *err);

/*
 * Hardens the calling process for holding secrets: no core dumps
 * (RLIMIT_CORE 0) and not dumpable (PR_SET_DUMPABLE 0: no ptrace by other
 * processes of the same user, no /proc/<pid>/mem). Call early in main().
 * Errors: CT_E_INTERNAL with os_error.
 */
CT_API ct_err ct_process_harden(ct_error *err);

/* ---- bridge ---- */

typedef struct ct_bridge ct_bridge;

#define CT_BRIDGE_OPTIONS_VERSION 1
typedef struct ct_bridge_options {
    uint32_t version;            /* CT_BRIDGE_OPTIONS_VERSION */
    ct_store *store;             /* required; borrowed; used from several threads */
    const ct_beacon_options *beacon; /* required; borrowed for the bridge's life */
    uint32_t init_waiters;       /* per cluster in the init room; 0: 1 */
    uint32_t op_waiters;         /* per cluster in the operational room; 0: 2 */
    int scan_interval_ms;        /* store re-scan; 0: 2000 */
    int retry_min_ms, retry_max_ms; /* reconnect backoff; 0: 200 / 30000 */
    /* Bootstrap policy (see ct_bootstrap_serve_options). */
    const char *audience;
    uint32_t max_token_lifetime_s;
    uint32_t broker_days;
    /* Serves the operator's requests; NULL: CT_E_UNSUPPORTED answers. */
    ct_agent_handler handler;
    void *handler_arg;
    ct_agent_event_fn on_event;
    void *event_arg;
    const ct_session_options *session; /* NULL: defaults (initiator forced to 1) */
} ct_bridge_options;
#define CT_BRIDGE_OPTIONS_INIT { .version = CT_BRIDGE_OPTIONS_VERSION }

/* Errors: CT_E_INVALID, CT_E_VERSION, CT_E_NOMEM. */
CT_API ct_err ct_bridge_new(ct_ctx *ctx, const ct_bridge_options *opts, ct_bridge **out,
                            ct_error *err);
/*
 * Runs until ct_bridge_stop: scans the store every scan_interval_ms; for
 * every registered, unexpired cluster keeps init_waiters connections in its
 * init room (served with ct_bootstrap_serve) and op_waiters in its
 * operational room (mTLS client with ct_bridge_tls_config, then a session).
 * A cluster that disappears from the store (deregistered) has its sessions
 * closed and its waiters stopped within one scan interval. Errors on one
 * connection are reported as events and retried with backoff; run itself
 * fails only if it cannot start (CT_E_STATE if already running,
 * CT_E_NOMEM, CT_E_INTERNAL) or the store cannot be listed at the first
 * scan (the store's error).
 */
CT_API ct_err ct_bridge_run(ct_bridge *b, ct_error *err);
/* Makes run return soon (async-signal-safe; any thread). */
CT_API void ct_bridge_stop(ct_bridge *b);
/*
 * Sends a request to the operator of cluster `fingerprint` over its live
 * session (the first one up). Errors: CT_E_NOTFOUND (no live session),
 * and those of ct_session_request. Thread-safe while run is running.
 */
CT_API ct_err ct_bridge_request(ct_bridge *b, const char *fingerprint, const void *req,
                                size_t len, int timeout_ms, uint8_t **resp, size_t *resp_len,
                                ct_error *err);
/* Number of live operational sessions (all clusters). */
CT_API size_t ct_bridge_sessions(ct_bridge *b);

/* What a health or readiness probe needs to know about a running bridge. */
#define CT_BRIDGE_STATUS_VERSION 1
typedef struct ct_bridge_status {
    uint32_t version;         /* set by the caller: CT_BRIDGE_STATUS_VERSION */
    int running;              /* ct_bridge_run is in its loop */
    int store_ok;             /* the latest scan listed the store */
    int64_t last_scan_ok_ms;  /* ms since the latest successful scan; -1: none yet */
    uint64_t scans;           /* scans done (successful or not) */
    uint64_t scan_failures;   /* scans that could not list the store */
    size_t clusters;          /* clusters served */
    size_t sessions;          /* live operational sessions (ct_bridge_sessions) */
} ct_bridge_status;
#define CT_BRIDGE_STATUS_INIT { .version = CT_BRIDGE_STATUS_VERSION }

/*
 * Fills *out (its version field set by the caller; fields of later
 * versions are left alone). A readiness probe: running && store_ok.
 * Errors: CT_E_INVALID (NULL), CT_E_VERSION. Thread-safe, any time between
 * ct_bridge_new and ct_bridge_free; does not block on I/O.
 */
CT_API ct_err ct_bridge_get_status(ct_bridge *b, ct_bridge_status *out, ct_error *err);
/* Frees (not while run is running). NULL is a no-op. */
CT_API void ct_bridge_free(ct_bridge *b);

/* ---- operator ---- */

typedef struct ct_operator ct_operator;

/*
 * Supplies the operator's service-account token for each bootstrap (a
 * projected token rotates, so it is fetched fresh). Return a malloc'd
 * NUL-terminated token in *token (the operator wipes and frees it).
 */
typedef ct_err (*ct_token_fn)(void *arg, char **token, ct_error *err);

#define CT_OPERATOR_OPTIONS_VERSION 1
typedef struct ct_operator_options {
    uint32_t version;            /* CT_OPERATOR_OPTIONS_VERSION */
    const char *fingerprint;     /* required */
    const ct_beacon_options *beacon; /* required; borrowed */
    /* The token: token_file is re-read at every bootstrap, or token_fn. */
    const char *token_file;
    ct_token_fn token_fn;
    void *token_arg;
    const char *jwks;            /* the cluster's issuer keys (sent at first bootstrap) */
    size_t jwks_len;
    int retry_min_ms, retry_max_ms; /* 0: 200 / 30000, with full jitter */
    /*
     * After this many consecutive operational pairings that time out
     * (no bridge in the operational room: e.g. the cluster was
     * re-registered under a new CA) the operator bootstraps again. 0: 3.
     */
    uint32_t rebootstrap_after;
    ct_agent_handler handler;    /* serves the bridge's requests; may be NULL */
    void *handler_arg;
    ct_agent_event_fn on_event;
    void *event_arg;
    const ct_session_options *session; /* NULL: defaults (initiator forced to 0) */
    /*
     * Optional hardening: the cluster's operational room hash (SHA-256 of
     * the cluster CA certificate DER, printed in full by `cloudtaser source
     * register`). When set, a bootstrap answer whose CA does not hash to it
     * is rejected (CT_EV_BOOTSTRAP_REFUSED, then retried), so someone who
     * knows the fingerprint cannot pose as the bridge at the first
     * bootstrap. Copied.
     */
    const uint8_t *expect_operational_room;
} ct_operator_options;
#define CT_OPERATOR_OPTIONS_INIT { .version = CT_OPERATOR_OPTIONS_VERSION }

CT_API ct_err ct_operator_new(ct_ctx *ctx, const ct_operator_options *opts,
                              ct_operator **out, ct_error *err);
/*
 * Runs until ct_operator_stop: bootstraps (first, or re-bootstrap with the
 * token when the cluster is initialized), then keeps one operational
 * session up, reconnecting with backoff and jitter when it drops.
 * Credentials stay in memory only. Returns CT_OK after stop; CT_E_STATE if
 * already running.
 */
CT_API ct_err ct_operator_run(ct_operator *op, ct_error *err);
CT_API void ct_operator_stop(ct_operator *op);
/*
 * Sends a request to the bridge, waiting up to timeout_ms for the session
 * to be up first (and for the answer). Errors: CT_E_TIMEOUT, CT_E_CLOSED,
 * and those of ct_session_request. Thread-safe while run is running.
 */
CT_API ct_err ct_operator_request(ct_operator *op, const void *req, size_t len,
                                  int timeout_ms, uint8_t **resp, size_t *resp_len,
                                  ct_error *err);
/* 1 if the operational session is up. */
CT_API int ct_operator_connected(ct_operator *op);
CT_API void ct_operator_free(ct_operator *op);

#ifdef __cplusplus
}
#endif
#endif
