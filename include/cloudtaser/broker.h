/*
 * cloudtaser/broker.h - pods get secrets through the tunnel with stock Vault
 * clients.
 *
 * Two halves, one on each end of the operational session:
 *
 *   ct_broker (operator side, in the cluster): an HTTPS server
 *   (libmicrohttpd) that serves the subset of the Vault HTTP API that
 *   applications use, so VAULT_ADDR=https://<broker> works unchanged:
 *
 *     POST|PUT /v1/auth/<mount>/login            (Kubernetes auth: role, jwt)
 *     GET      /v1/<mount>/data/<path>[?version=N]        (KV v2 read)
 *     LIST     /v1/<mount>/metadata/<path>   (also GET ...?list=true)
 *     GET      /v1/<mount>/metadata/<path>
 *     GET|POST /v1/auth/token/lookup-self
 *     POST|PUT /v1/auth/token/renew-self
 *     GET|HEAD /v1/sys/health                (Vault's answer + "tunnel")
 *
 *   Each call is sent through the session as {"op":"vault.http",...}
 *   (PROTOCOL.md section 5) and the answer (status, body, Content-Type,
 *   Retry-After) is returned to the pod as it came. Everything else is
 *   refused with a Vault-shaped error ({"errors":[...]}): 404 for paths
 *   outside the subset, 405 for other methods on served paths. Its TLS
 *   key is generated in memory and its certificate is issued by the
 *   cluster CA through the session ({"op":"broker.cert"}); pods trust the
 *   cluster CA certificate, which is public (ct_broker_ca_pem).
 *
 *   ct_vault_proxy (bridge side, next to Vault): the handlers of those two
 *   ops, to register on the bridge's ct_router. "vault.http" checks the
 *   call against the same allowlist (plus configured extra prefixes) and
 *   performs it against Vault with the pod's own token only: the bridge
 *   adds no credential of its own, so Vault's policies apply per pod.
 *   "broker.cert" issues the broker's server certificate with the
 *   cluster's CA from the store.
 *
 * Thread-safety: a ct_broker serves on threads it starts (libmicrohttpd,
 * one thread per connection, plus one that renews its certificate); its
 * functions are called from one thread except ct_broker_port,
 * ct_broker_ca_pem, ct_broker_not_after and ct_broker_cert_count. A ct_vault_proxy is
 * read-only after ct_vault_proxy_new: its handlers run on many session
 * handler threads at once. "vault.http" called from a session handler
 * (s != NULL) answers asynchronously: it defers the request
 * (ct_session_defer) and one thread of the proxy drives every pending Vault
 * call (libcurl multi), answering each when Vault has, so a slow Vault does
 * not hold the session's handler threads.
 */
#ifndef CLOUDTASER_BROKER_H
#define CLOUDTASER_BROKER_H

#include "agent.h"
#include "common.h"
#include "context.h"
#include "store.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- operator side: the broker ---- */

typedef struct ct_broker ct_broker;

/*
 * How the broker reaches the bridge: sends one session request and returns
 * its answer (malloc'd, freed by the broker with free). The default (when
 * `forward` is NULL) is ct_operator_request on `op`. Tests and other
 * embedders may plug their own. Called on broker threads, concurrently.
 */
typedef ct_err (*ct_broker_forward_fn)(void *arg, const void *req, size_t len, int timeout_ms,
                                       uint8_t **resp, size_t *resp_len, ct_error *err);
/* 1 if the tunnel is up (for /v1/sys/health). Default: ct_operator_connected
 * (with a custom forward and no up function, health always asks through
 * forward). */
typedef int (*ct_broker_up_fn)(void *arg);

#define CT_BROKER_DEFAULT_MAX_BODY (64u * 1024u)     /* request body bytes */
#define CT_BROKER_DEFAULT_MAX_IN_FLIGHT 256u
#define CT_BROKER_DEFAULT_TIMEOUT_MS 15000
#define CT_BROKER_MAX_NAMES 8

/*
 * Certificate renewal (version 2 fields): from ct_broker_start until
 * ct_broker_stop a thread of the broker renews its certificate through the
 * session (the same "broker.cert" request, same key) once the context's wall
 * clock passes notBefore + renew_permille/1000 of the certificate's lifetime
 * (by default 2/3: about day 20 of 30). On failure it logs a warning and
 * retries after retry_ms, doubling up to 10 minutes. The new certificate is
 * swapped in without dropping requests in progress: the running server stops
 * accepting (MHD_quiesce_daemon), a new one takes over the same listening
 * socket with the new certificate, and the old one finishes the connections
 * it has (up to the request timeout + 5 s) before it is stopped. New TLS
 * connections see the new certificate at once; ct_broker_not_after reports
 * it. Version 1 callers get the defaults.
 */
#define CT_BROKER_DEFAULT_RENEW_PERMILLE 667u
#define CT_BROKER_DEFAULT_RETRY_MS 10000u

#define CT_BROKER_OPTIONS_VERSION 2
typedef struct ct_broker_options {
    uint32_t version;            /* CT_BROKER_OPTIONS_VERSION */
    ct_operator *op;             /* borrowed; required unless forward is set */
    ct_broker_forward_fn forward;
    ct_broker_up_fn up;
    void *forward_arg;           /* for forward and up */
    const char *host;            /* listen address (IP literal); NULL: "0.0.0.0" */
    uint16_t port;               /* 0: an ephemeral port (see ct_broker_port) */
    /*
     * Names for the certificate: DNS names ("vault-broker.ns.svc",
     * "*.svc.cluster.local" forms, "localhost") or IP literals; at most
     * CT_BROKER_MAX_NAMES; the bridge refuses other DNS names (see
     * PROTOCOL.md 5.3). NULL/0: "localhost" and "127.0.0.1". Copied.
     */
    const char *const *names;
    size_t n_names;
    size_t max_body;             /* 0: CT_BROKER_DEFAULT_MAX_BODY */
    uint32_t max_in_flight;      /* 0: CT_BROKER_DEFAULT_MAX_IN_FLIGHT; beyond: 503 */
    int timeout_ms;              /* per request, end to end; 0: default */
    /* version 2 */
    uint32_t renew_permille;     /* renew at this share of the lifetime (1..999); 0: 667 */
    uint32_t retry_ms;           /* first retry after a failed renewal; 0: 10000 */
} ct_broker_options;
#define CT_BROKER_OPTIONS_INIT { .version = CT_BROKER_OPTIONS_VERSION }

/*
 * Makes a broker and its TLS key (in memory). Nothing is listening yet.
 * Errors: CT_E_INVALID (options, names), CT_E_VERSION, CT_E_NOMEM,
 * CT_E_CRYPTO.
 */
CT_API ct_err ct_broker_new(ct_ctx *ctx, const ct_broker_options *opts, ct_broker **out,
                            ct_error *err);
/*
 * Gets the certificate through the session (waiting up to timeout_ms for
 * the tunnel) and starts serving. Errors: those of the forward call
 * (CT_E_TIMEOUT when the tunnel is not up in time), CT_E_PROTO (bad
 * answer), CT_E_CERT (the certificate does not chain to the CA sent with
 * it or does not match our key), CT_E_IO (cannot listen: os_error is the
 * errno), CT_E_STATE (already started), CT_E_NOMEM.
 * The certificate is not renewed: restart the broker before it expires
 * (its validity is the bridge's setting; ct_broker_not_after tells).
 */
CT_API ct_err ct_broker_start(ct_broker *b, int timeout_ms, ct_error *err);
/* The port it listens on once started (0 before). */
CT_API uint16_t ct_broker_port(const ct_broker *b);
/* notAfter of the certificate in use, Unix seconds (0 before start); follows renewals. Thread-safe. */
CT_API int64_t ct_broker_not_after(const ct_broker *b);
/*
 * The cluster CA certificate (PEM, public) that clients must trust, once
 * started. *pem: free with ct_free. Errors: CT_E_STATE (not started),
 * CT_E_NOMEM.
 */
CT_API ct_err ct_broker_ca_pem(const ct_broker *b, char **pem, ct_error *err);
/* Certificates obtained since start (1 after start; +1 per renewal). Thread-safe. */
CT_API uint32_t ct_broker_cert_count(const ct_broker *b);
/* Stops renewing and serving (waits for requests in flight). Idempotent. */
CT_API void ct_broker_stop(ct_broker *b);
/* Stops and frees; the key is wiped. NULL is a no-op. */
CT_API void ct_broker_free(ct_broker *b);

/* ---- bridge side: the Vault proxy ---- */

typedef struct ct_vault_proxy ct_vault_proxy;

#define CT_VAULT_PROXY_OPTIONS_VERSION 1
typedef struct ct_vault_proxy_options {
    uint32_t version;            /* CT_VAULT_PROXY_OPTIONS_VERSION */
    /*
     * Where Vault is and how to trust it: address, namespace_path (used
     * when the pod sends none), ca_file, ca_path, client_cert/client_key,
     * skip_verify (+ force_insecure), timeout_ms, max_response. The token
     * fields are ignored: pods' calls carry their own token. Borrowed for
     * ct_vault_proxy_new only. NULL (with a store): a proxy that serves
     * only "broker.cert" (its "vault.http" is CT_E_UNSUPPORTED), for a
     * bridge whose pods are answered by the embedded store (podpolicy.h).
     */
    const ct_vault_options *vault;
    /*
     * Extra allowed path prefixes (after /v1/, e.g. "transit/decrypt/"),
     * for any of GET, LIST, POST, PUT. Copied. NULL/0: none.
     */
    const char *const *extra_prefixes;
    size_t n_extra_prefixes;
    /* "broker.cert": the store holding clusters/<fp>/ca; NULL: the op is refused. */
    ct_store *store;             /* borrowed; used from several threads */
    uint32_t cert_days;          /* broker certificate validity; 0: 30 */
} ct_vault_proxy_options;
#define CT_VAULT_PROXY_OPTIONS_INIT { .version = CT_VAULT_PROXY_OPTIONS_VERSION }

/* Errors: CT_E_INVALID, CT_E_VERSION, CT_E_NOMEM, those of the HTTPS client. */
CT_API ct_err ct_vault_proxy_new(ct_ctx *ctx, const ct_vault_proxy_options *opts,
                                 ct_vault_proxy **out, ct_error *err);
/*
 * The "vault.http" handler (a ct_agent_handler; arg = the proxy). Answers
 * {"status":N,"body":"...","headers":{...}} for every HTTP answer from
 * Vault (including 4xx/5xx). Errors: CT_E_INVALID (malformed request),
 * CT_E_AUTH (method+path outside the allowlist), the HTTPS client's
 * transport errors (Vault unreachable, ...), CT_E_AGAIN (1024 calls already
 * waiting on Vault), CT_E_CLOSED (the proxy was freed with the call in
 * flight). With a session (s != NULL) the answer or error reaches the
 * requester through the session, later; with s NULL the call blocks and
 * answers through *resp as usual.
 */
CT_API ct_err ct_vault_proxy_http(void *proxy, const char *fingerprint, ct_session *s,
                                  uint32_t stream, const uint8_t *req, size_t req_len,
                                  uint8_t **resp, size_t *resp_len, ct_error *err);
/*
 * The "broker.cert" handler: {"csr":"<base64 DER>","names":[...]} ->
 * {"cert":"<PEM>","ca":"<PEM>"} (the broker certificate and the cluster CA).
 * Errors: CT_E_INVALID
 * (names outside the allowed forms, bad CSR), CT_E_UNSUPPORTED (no store),
 * CT_E_STORE (cluster CA not readable), CT_E_CRYPTO.
 */
CT_API ct_err ct_vault_proxy_cert(void *proxy, const char *fingerprint, ct_session *s,
                                  uint32_t stream, const uint8_t *req, size_t req_len,
                                  uint8_t **resp, size_t *resp_len, ct_error *err);
/*
 * NULL is a no-op. Not while a handler runs. Calls still waiting on Vault
 * are answered with CT_E_CLOSED before it returns.
 */
CT_API void ct_vault_proxy_free(ct_vault_proxy *p);

/*
 * The shared allowlist (pure; exposed for tests and for embedders that
 * pre-check). `path` is after /v1/, without query, already percent-decoded;
 * methods are upper case (PUT counts as POST; GET with ?list=true must be
 * passed as LIST). Returns 1 if `method` on `path` is in the broker's
 * subset, -1 if the path is but not with this method (Vault's 405), 0
 * otherwise (404). *kind (may be NULL) gets a static short name of the call
 * ("login", "kv-read", "kv-list", "kv-metadata", "lookup-self",
 * "renew-self", "health") when the path is known. Always refused: empty,
 * "." or ".." segments (a trailing "/" is allowed only for LIST), control
 * characters, paths over 1024 bytes, KV mounts named sys, auth, identity
 * or cubbyhole. Thread-safe.
 */
CT_API int ct_vault_api_allowed(const char *method, const char *path, const char **kind);

#ifdef __cplusplus
}
#endif
#endif
