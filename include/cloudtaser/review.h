/*
 * cloudtaser/review.h - Vault's Kubernetes auth method with no network path
 * from Vault to the cluster: TokenReview through the tunnel.
 *
 * Vault's Kubernetes auth method calls the cluster's TokenReview API on
 * every login. The bridge serves, next to Vault, one local HTTPS endpoint
 * per cluster (ct_review_server) that Vault is configured with as that
 * cluster's `kubernetes_host`. It accepts exactly
 *
 *   POST /apis/authentication.k8s.io/v1/tokenreviews
 *   Authorization: Bearer <the cluster's reviewer token>
 *
 * and forwards the review through the operational session (op
 * "k8s.tokenreview", PROTOCOL.md 5.1) to the operator, which performs it on
 * the real API server with its own service account (ct_review_agent) and
 * sends back the API server's answer: a revoked or expired token is seen
 * as such. Everything else is refused with a Kubernetes Status body:
 *   401 Unauthorized   no or a wrong reviewer token (checked first, in
 *                      constant time)
 *   403 Forbidden      the tokenreviews path with another method
 *   404 NotFound       any other path
 *   400 BadRequest     a body that is not a TokenReview with spec.token
 *   413 RequestEntityTooLarge  a body over max_body
 *   503 ServiceUnavailable     no operational session with the cluster
 *   504 Timeout        the operator did not answer within timeout_ms
 *   500 InternalError  the operator could not perform the review (its
 *                      message, e.g. the API server's RBAC refusal)
 *
 * TLS: the server certificate (SANs 127.0.0.1 and localhost, or the host
 * given) is issued at start by the cluster CA from the store
 * (clusters/<fp>/ca), with a fresh key held in memory only; Vault trusts
 * the cluster CA certificate (ct_review_server_ca_pem) as
 * `kubernetes_ca_cert`, which stays the same across bridge restarts. The
 * CA's key never leaves the bridge.
 *
 * The reviewer token: 32 random bytes as 64 hex characters, stored in
 * clusters/<fp>/reviewer ({"v":1,"token":"<hex>","created_at":<ms>}),
 * created once (create-only write; racing bridges end up with the same
 * one) and given to Vault as `token_reviewer_jwt`. It authenticates Vault
 * to the endpoint only; it is never sent to the cluster.
 *
 * Thread-safety: a server runs its own threads (libmicrohttpd, one per
 * connection, at most max_connections) from ct_review_server_start until
 * ct_review_server_free; the accessors may be called from any thread. A
 * ct_review_agent may be used by many session handler threads at once.
 */
#ifndef CLOUDTASER_REVIEW_H
#define CLOUDTASER_REVIEW_H

#include "agent.h"
#include "common.h"
#include "context.h"
#include "k8s.h"
#include "secret.h"
#include "store.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one path served. */
#define CT_REVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"
/* Largest request body accepted by default (a token is at most 16 KiB). */
#define CT_REVIEW_DEFAULT_MAX_BODY ((size_t)64 << 10)
#define CT_REVIEW_DEFAULT_TIMEOUT_MS 10000
#define CT_REVIEW_DEFAULT_MAX_CONNECTIONS 64u
/* Length of a reviewer token (hex characters). */
#define CT_REVIEW_TOKEN_LEN 64

/*
 * How a server sends a request to the cluster's operator: like
 * ct_bridge_request (and the default when `bridge` is set). Return
 * CT_E_NOTFOUND when there is no session with the cluster.
 */
typedef ct_err (*ct_review_forward_fn)(void *arg, const char *fingerprint, const void *req,
                                       size_t len, int timeout_ms, uint8_t **resp,
                                       size_t *resp_len, ct_error *err);

#define CT_REVIEW_OPTIONS_VERSION 1
typedef struct ct_review_options {
    uint32_t version;          /* CT_REVIEW_OPTIONS_VERSION */
    ct_store *store;           /* required; borrowed for the server's life */
    const char *fingerprint;   /* required (any case); copied */
    ct_bridge *bridge;         /* forwards with ct_bridge_request; borrowed */
    ct_review_forward_fn forward; /* instead of bridge (tests, other wiring) */
    void *forward_arg;
    const char *host;          /* IP literal to listen on; NULL: "127.0.0.1" */
    uint16_t port;             /* 0: chosen by the system */
    int timeout_ms;            /* per review; 0: CT_REVIEW_DEFAULT_TIMEOUT_MS */
    size_t max_body;           /* 0: CT_REVIEW_DEFAULT_MAX_BODY */
    uint32_t max_connections;  /* 0: CT_REVIEW_DEFAULT_MAX_CONNECTIONS */
    uint32_t cert_days;        /* server certificate validity; 0: 30 */
} ct_review_options;
#define CT_REVIEW_OPTIONS_INIT { .version = CT_REVIEW_OPTIONS_VERSION }

typedef struct ct_review_server ct_review_server;

/*
 * Reads the cluster's reviewer token from clusters/<fp>/reviewer, creating
 * it (create-only) if `create` and it does not exist. *token: a secret of
 * CT_REVIEW_TOKEN_LEN bytes (free with ct_secret_free).
 * Errors: CT_E_INVALID (fingerprint), CT_E_NOTFOUND (none and !create),
 * CT_E_STORE (a malformed record), CT_E_VERSION / CT_E_STORE (the store's
 * system/layout is newer than this library or corrupt: ct_store_layout_check;
 * nothing is read or written then), the store's errors, CT_E_NOMEM.
 */
CT_API ct_err ct_review_token(ct_ctx *ctx, ct_store *store, const char *fingerprint, int create,
                              ct_secret **token, ct_error *err);

/*
 * The cluster CA certificate from clusters/<fp>/ca as PEM (what Vault needs
 * as kubernetes_ca_cert): *pem NUL-terminated, free with ct_free.
 * Errors: CT_E_INVALID, CT_E_NOTFOUND (not registered), CT_E_STORE, the
 * store's errors, CT_E_NOMEM.
 */
CT_API ct_err ct_review_cluster_ca(ct_store *store, const char *fingerprint, char **pem,
                                   ct_error *err);

/*
 * Starts the endpoint for one cluster: reads the cluster CA, issues the
 * server certificate, reads or creates the reviewer token, listens and
 * serves (see the top of this file). *out: free with ct_review_server_free.
 * Errors: CT_E_INVALID (options; no bridge and no forward), CT_E_VERSION,
 * CT_E_NOTFOUND (the cluster is not registered: no CA), CT_E_ADDRINUSE,
 * CT_E_IO (cannot listen), the store's and PKI errors, CT_E_NOMEM.
 */
CT_API ct_err ct_review_server_start(ct_ctx *ctx, const ct_review_options *opts,
                                     ct_review_server **out, ct_error *err);
/* The port listened on. */
CT_API uint16_t ct_review_server_port(const ct_review_server *s);
/* "https://HOST:PORT" (IPv6 bracketed): Vault's kubernetes_host. Borrowed. */
CT_API const char *ct_review_server_url(const ct_review_server *s);
/* The cluster CA certificate (PEM): Vault's kubernetes_ca_cert. Borrowed. */
CT_API const char *ct_review_server_ca_pem(const ct_review_server *s);
/* Requests answered since start, by outcome (for tests and metrics). */
typedef struct ct_review_stats {
    uint64_t reviews;          /* forwarded and answered (201) */
    uint64_t unauthorized;     /* 401 */
    uint64_t refused;          /* 400, 403, 404, 413 */
    uint64_t unavailable;      /* 503, 504, 500 */
} ct_review_stats;
CT_API void ct_review_server_stats(ct_review_server *s, ct_review_stats *out);
/* Stops listening, waits for the requests in progress, wipes and frees. NULL: no-op. */
CT_API void ct_review_server_free(ct_review_server *s);

/* ------------------------------------------------------ Vault set-up */

/*
 * Configures Vault's Kubernetes auth method for one cluster to use the
 * endpoint: with `enable`, POST sys/auth/<mount> {"type":"kubernetes"}
 * (a mount that already exists is fine), then POST auth/<mount>/config
 * {"kubernetes_host":url,"kubernetes_ca_cert":ca_pem,
 *  "token_reviewer_jwt":<reviewer>,"disable_local_ca_jwt":true}.
 * `mount` NULL: "kubernetes-<first 8 characters of the fingerprint>"; the
 * mount actually used is copied into mount_out (may be NULL; 128 bytes).
 * `vault` gives the address, token (or token file), namespace and TLS
 * trust as for the Vault store (ct_vault_options_from_env may fill it).
 * The token needs this policy (docs/OPERATIONS.md):
 *   path "sys/auth/kubernetes-*" { capabilities = ["create", "update", "sudo"] }
 *   path "auth/kubernetes-*"     { capabilities = ["create", "update"] }
 * (the first only with `enable`). Roles are left to the Vault operator.
 * Errors: CT_E_INVALID (arguments, a mount name outside [a-zA-Z0-9._-/]),
 * CT_E_DENIED (403: the message names the path), CT_E_PROTO (another
 * answer), the HTTP client's errors (CT_E_TLS, CT_E_CERT, CT_E_REFUSED,
 * CT_E_TIMEOUT, ...). The reviewer token and the Vault token are wiped
 * from every buffer this call makes.
 */
CT_API ct_err ct_review_configure_vault(ct_ctx *ctx, const ct_vault_options *vault,
                                        const char *mount, const char *fingerprint,
                                        const char *url, const char *ca_pem,
                                        const ct_secret *reviewer, int enable,
                                        char *mount_out, ct_error *err);

/*
 * The offline fallback: configures Vault's JWT auth method for one cluster
 * with the issuer keys pinned at its first bootstrap (clusters/<fp>/
 * initialized), so pods' service-account tokens log in with no call to the
 * cluster at all: with `enable`, POST sys/auth/<mount> {"type":"jwt"} (a
 * mount that already exists is fine), then POST auth/<mount>/config
 * {"jwt_validation_pubkeys":[<PEM public keys>],"bound_issuer":<issuer>,
 *  "jwt_supported_algs":["RS256","ES256"]}, then records the mount and the
 * set written in clusters/<fp>/vault-jwt
 * ({"v":1,"mount":"<m>","jwks":{...},"updated_at":<ms>}; no secret), so the
 * bridge's sink (ct_review_jwks_sink_set_vault) rewrites that config when
 * the operator pushes a key rotation. Roles are left to the Vault operator.
 * `mount` NULL: "jwt-<first 8 characters of the fingerprint>"; the mount
 * used is copied into mount_out (may be NULL; 128 bytes).
 * The token needs (docs/OPERATIONS.md):
 *   path "sys/auth/jwt-*" { capabilities = ["create", "update", "sudo"] }
 *   path "auth/jwt-*"     { capabilities = ["create", "update"] }
 * (the first only with `enable`).
 * Errors: CT_E_INVALID, CT_E_STATE (the cluster has not bootstrapped, or
 * pinned no keys), CT_E_DENIED (403), CT_E_PROTO, CT_E_VERSION / CT_E_STORE
 * (the store's system/layout is newer or corrupt: ct_store_layout_check,
 * checked before Vault is contacted), the HTTP client's and the store's
 * errors. The Vault token is wiped from every buffer this call makes.
 */
CT_API ct_err ct_review_configure_vault_jwt(ct_ctx *ctx, ct_store *store,
                                            const ct_vault_options *vault, const char *mount,
                                            const char *fingerprint, int enable,
                                            char *mount_out, ct_error *err);

/* ------------------------------------------------------ operator side */

typedef struct ct_review_agent ct_review_agent;

/*
 * The operator's side of "k8s.tokenreview": performs reviews with `client`
 * (borrowed for the agent's life; used under the agent's lock, so the
 * client is not used by two threads at once; the caller must not use it
 * meanwhile). Errors: CT_E_INVALID, CT_E_NOMEM.
 */
CT_API ct_err ct_review_agent_new(ct_ctx *ctx, ct_k8s_client *client, ct_review_agent **out,
                                  ct_error *err);
/*
 * A ct_agent_handler (arg: the ct_review_agent) for op "k8s.tokenreview":
 * request {"op":"k8s.tokenreview","token":"<jwt>","audiences":["..."]},
 * answer {"status":{...}}: the TokenReview status the API server returned
 * (authenticated, user.username/uid/groups, audiences, error). Errors: the
 * request is CT_E_INVALID/CT_E_TOOBIG; the review's errors (k8s.h: e.g.
 * CT_E_DENIED without RBAC create on tokenreviews). The token is wiped
 * from every copy the handler makes.
 */
CT_API ct_err ct_review_agent_handle(void *agent, const char *fingerprint, ct_session *s,
                                     uint32_t stream, const uint8_t *req, size_t req_len,
                                     uint8_t **resp, size_t *resp_len, ct_error *err);
CT_API void ct_review_agent_free(ct_review_agent *a);

/* ----------------------------------------- issuer key rotation (JWKS) */

/*
 * The offline fallback (Vault's JWT auth, the bridge's own token checks)
 * relies on the issuer keys pinned at the first bootstrap in
 * clusters/<fp>/initialized. When the cluster rotates its service-account
 * signing key, the operator pushes the new set (op "k8s.jwks", PROTOCOL.md
 * 5.2): {"op":"k8s.jwks","jwks":{<JWK Set>}}, answered
 * {"status":"updated"|"unchanged","keys":N}.
 *
 * The bridge's rule: the request arrives over the cluster's authenticated
 * operational session (mTLS under the cluster CA, so it comes from the
 * holder of a broker certificate for this cluster); the cluster must be
 * initialized with a pinned set; the new set must parse and have a usable
 * key, and share at least one key with the pinned set (Kubernetes
 * publishes the old and the new key side by side during a rotation, so a
 * rotation is seen as a superset, then the old key dropping: a set
 * replaced wholesale is refused, CT_E_DENIED). The record is rewritten
 * with check-and-set on its version (re-read and retried on a conflict,
 * at most 5 times); issuer, subject, audience and the replay list are
 * kept.
 */
typedef struct ct_review_jwks_sink ct_review_jwks_sink;

/* Bridge side. `store` borrowed for the sink's life. Errors: CT_E_INVALID, CT_E_NOMEM. */
CT_API ct_err ct_review_jwks_sink_new(ct_ctx *ctx, ct_store *store, ct_review_jwks_sink **out,
                                      ct_error *err);
/*
 * Lets the sink keep Vault's JWT auth method current: after each accepted
 * push (and after an "unchanged" one, so a failed update is retried), if
 * the cluster has a clusters/<fp>/vault-jwt record (written by
 * ct_review_configure_vault_jwt) whose set differs from the pinned one, the
 * sink POSTs auth/<mount>/config with the pinned keys using `vault`
 * (borrowed for the sink's life: address, the bridge's own token, TLS
 * trust). That token needs only:
 *   path "auth/jwt-*" { capabilities = ["update"] }
 * (or the one mount's config path). A Vault failure never fails the push:
 * it is logged (CT_LOG_WARNING, naming the mount and the reason) and the
 * answer carries "vault":"failed", so the operator pushes the same set
 * again at its next interval; a success adds "vault":"updated". Call
 * before the sink serves requests. Errors: CT_E_INVALID, CT_E_VERSION.
 */
CT_API ct_err ct_review_jwks_sink_set_vault(ct_review_jwks_sink *k,
                                            const ct_vault_options *vault, ct_error *err);
/*
 * A ct_agent_handler (arg: the sink) for op "k8s.jwks". Errors: CT_E_INVALID
 * (no or a malformed key set, no usable key), CT_E_STATE (the cluster is
 * not initialized, or was initialized without pinning keys), CT_E_DENIED
 * (no key in common with the pinned set), CT_E_CONFLICT (the record kept
 * changing), the store's errors. Thread-safe.
 */
CT_API ct_err ct_review_jwks_handle(void *sink, const char *fingerprint, ct_session *s,
                                    uint32_t stream, const uint8_t *req, size_t req_len,
                                    uint8_t **resp, size_t *resp_len, ct_error *err);
CT_API void ct_review_jwks_sink_free(ct_review_jwks_sink *k);

/*
 * Operator side: reads /openid/v1/jwks with the agent's client (under its
 * lock) and, if it differs from the last set pushed successfully (or none
 * was), sends it to the bridge with ct_operator_request. *pushed (may be
 * NULL): 1 if a push was answered, 0 if nothing changed. A push the
 * bridge answered with "vault":"failed" (its Vault JWT config could not be
 * updated) is not remembered, so the next call pushes again. Call it
 * periodically (cloudtaser-operator: every --jwks-interval seconds).
 * Errors: those of ct_k8s_get_jwks and ct_operator_request (the bridge's
 * refusal codes above). Thread-safe.
 */
CT_API ct_err ct_review_agent_sync_jwks(ct_review_agent *a, ct_operator *op, int timeout_ms,
                                        int *pushed, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
