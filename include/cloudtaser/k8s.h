/*
 * cloudtaser/k8s.h - a small Kubernetes API client: exactly the calls
 * cloudtaser needs (the cluster fingerprint, Secrets to migrate, TokenReview,
 * the service-account issuer keys), over HTTPS with the API server verified.
 *
 * Configuration, as kubectl and client-go find it:
 *   in-cluster   https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 *                the pod's service-account token (re-read when the file
 *                changes, and at least every token_reread_s, because the
 *                kubelet rotates projected tokens), its ca.crt, and its
 *                namespace file ($POD_NAMESPACE overrides it).
 *   kubeconfig   --kubeconfig FILE (exactly that file, no merge), else
 *                $KUBECONFIG, else $HOME/.kube/config. $KUBECONFIG is a
 *                colon-separated list merged as kubectl merges it: empty
 *                entries, repeats and files that do not exist are skipped
 *                (a file that exists but cannot be read or parsed is an
 *                error naming it; none existing is CT_E_NOTFOUND); at most
 *                CT_K8S_KUBECONFIG_MAX_FILES files (CT_E_INVALID past
 *                that); the first file that sets current-context wins; for
 *                a cluster, user or context name the first file that
 *                defines it wins and its entry is used whole. The context
 *                is options.context or the current-context. Cluster:
 *                server (https only), certificate-authority-data or
 *                certificate-authority (a path relative to the file that
 *                defines the cluster; -data wins when both are given), or
 *                the system's CAs when neither is. User: token or tokenFile
 *                (tokenFile wins and is re-read like the in-cluster token;
 *                relative paths of a user resolve against its own file),
 *                client-certificate(-data) + client-key(-data); a token and a
 *                client certificate may be used together.
 *   auto         options.kubeconfig or options.context set: kubeconfig; else
 *                in-cluster when KUBERNETES_SERVICE_HOST and _PORT are both
 *                set; else kubeconfig.
 * Refused, with a message saying what to do instead:
 *   - `exec` credential plugins and `auth-provider` (CT_E_UNSUPPORTED:
 *     "exec credential plugins are not supported; use a token or client
 *     certificate"), basic auth (username/password), impersonation (`as`),
 *     proxy-url, tls-server-name, plain http:// servers;
 *   - insecure-skip-tls-verify: true (CT_E_UNSUPPORTED) unless
 *     options.force_insecure_skip_tls_verify is set: then, and only then,
 *     the API server's certificate is not verified (a CT_LOG_WARNING says
 *     so on every client created that way; anyone on the path can read the
 *     token and the Secrets). A cluster that also names a CA is verified
 *     against it regardless, as kubectl refuses that combination.
 * The kubeconfig is YAML (or JSON) read with libyaml under strict limits:
 * at most CT_K8S_KUBECONFIG_MAX bytes, 20000 nodes, depth 32; anchors and
 * aliases, duplicate keys and multi-document files are refused.
 *
 * HTTP: every request has a deadline (options.timeout_ms) and a response
 * size limit (options.max_response); redirects are never followed (the
 * bearer token would go with them); TLS 1.2+ with peer verification (see
 * "Refused" for the one forced exception). GETs are retried on a refused,
 * reset or broken connection, 429 and 5xx, with exponential backoff and
 * jitter (Retry-After honoured up to 10 s); not after a timeout (the time
 * budget is spent). A DELETE or POST is never retried after it may have
 * reached the server, because its outcome would be unknown.
 *
 * Error mapping (every call): 401 -> CT_E_AUTH ("the API server rejected the
 * credentials"; a rotated token file is re-read and the request tried once
 * more first), 403 -> CT_E_DENIED (the message quotes the API server's
 * Status message, which names the user, verb and resource), 404 ->
 * CT_E_NOTFOUND, 409 -> CT_E_CONFLICT, 410 (an expired list continue token)
 * -> see ct_k8s_list_secrets, 429 and 5xx after the retries -> CT_E_IO,
 * a body that is not the expected JSON -> CT_E_PROTO, over max_response ->
 * CT_E_TOOBIG, TLS or certificate failures -> CT_E_TLS / CT_E_CERT,
 * connection failures -> CT_E_REFUSED, CT_E_RESOLVE, CT_E_RESET, CT_E_IO,
 * CT_E_TIMEOUT. err->os_error carries the HTTP status where there was one.
 *
 * Secrets: tokens, client keys and Secret values are kept in ct_secret
 * buffers; request headers and response bodies that carried them are wiped
 * after use, as are jansson's copies of Secret values. libyaml's and
 * jansson's internal scratch buffers are freed without wiping (what they
 * may leave in freed heap memory is listed in docs/SECURITY.md). Nothing
 * here logs a token, a key, a Secret value or a full fingerprint.
 *
 * Thread-safety: as common.h. A ct_k8s_client is used by one thread at a
 * time; results (secrets, lists, reviews) are immutable and may be read by
 * several threads at once.
 */
#ifndef CLOUDTASER_K8S_H
#define CLOUDTASER_K8S_H

#include "common.h"
#include "context.h"
#include "room.h"
#include "secret.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_k8s_client ct_k8s_client;

/* Largest kubeconfig file read: 1 MiB. */
#define CT_K8S_KUBECONFIG_MAX ((size_t)1 << 20)
/* Most files a $KUBECONFIG list may name (after dropping empty entries and repeats). */
#define CT_K8S_KUBECONFIG_MAX_FILES 16
/* Room for an object UID with its NUL (Kubernetes UIDs are 36-char UUIDs). */
#define CT_K8S_UID_MAX 64
/* The pod's service-account directory (in-cluster configuration). */
#define CT_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef enum ct_k8s_source {
    CT_K8S_AUTO = 0,
    CT_K8S_IN_CLUSTER = 1,
    CT_K8S_KUBECONFIG = 2,
    CT_K8S_SOURCE_FORCE_INT32_ = 0x7fffffff
} ct_k8s_source;

#define CT_K8S_OPTIONS_VERSION 1
typedef struct ct_k8s_options {
    uint32_t version;          /* CT_K8S_OPTIONS_VERSION */
    ct_k8s_source source;      /* 0: CT_K8S_AUTO */
    /* kubeconfig (all copied) */
    const char *kubeconfig;    /* NULL: $KUBECONFIG (merged), else ~/.kube/config */
    const char *context;       /* NULL: the file's current-context */
    int force_insecure_skip_tls_verify; /* 1: honour insecure-skip-tls-verify (see above) */
    /* in-cluster (all copied; for tests and unusual mounts) */
    const char *sa_dir;        /* NULL: CT_K8S_SA_DIR */
    const char *service_host;  /* NULL: $KUBERNETES_SERVICE_HOST */
    const char *service_port;  /* NULL: $KUBERNETES_SERVICE_PORT */
    /* HTTP */
    int timeout_ms;            /* whole request, per attempt; <= 0: the context's I/O timeout */
    int connect_timeout_ms;    /* <= 0: 10000 (capped by timeout_ms) */
    size_t max_response;       /* bytes; 0: 8 MiB */
    int get_retries;           /* extra attempts for GETs; 0: 3; negative: none */
    uint32_t retry_base_ms;    /* first backoff; 0: 200 (doubles, +-50% jitter, max 5 s) */
    uint32_t page_limit;       /* list page size (limit=); 0: 250 */
    size_t max_list_items;     /* ct_k8s_list_secrets refuses more (CT_E_TOOBIG); 0: 100000 */
    uint32_t token_reread_s;   /* token files re-read at least this often; 0: 60 */
} ct_k8s_options;

#define CT_K8S_OPTIONS_INIT { .version = CT_K8S_OPTIONS_VERSION }

/*
 * Creates a client: finds the configuration (see the top of this file),
 * reads the kubeconfig, the CA and the credentials now (so a missing or
 * unreadable file fails here, naming it), and keeps the credentials in
 * ct_secret buffers. No request is made. `opts` may be NULL (auto) and is
 * copied. `ctx` must outlive the client. *out: free with ct_k8s_client_free.
 * Errors: CT_E_INVALID (a malformed kubeconfig, server URL, PEM or base64;
 * a missing context, cluster or user; not in a cluster and no kubeconfig),
 * CT_E_NOTFOUND (the kubeconfig or a file it names does not exist),
 * CT_E_UNSUPPORTED (see "Refused" above), CT_E_TOOBIG (a file over its
 * limit), CT_E_IO, CT_E_VERSION, CT_E_NOMEM.
 */
CT_API ct_err ct_k8s_client_new(ct_ctx *ctx, const ct_k8s_options *opts, ct_k8s_client **out,
                                ct_error *err);

/* Wipes the credentials and frees. NULL is a no-op. */
CT_API void ct_k8s_client_free(ct_k8s_client *c);

/* CT_K8S_IN_CLUSTER or CT_K8S_KUBECONFIG: the configuration used. */
CT_API ct_k8s_source ct_k8s_client_source(const ct_k8s_client *c);
/* The API server's base URL ("https://host:port[/prefix]"); borrowed. */
CT_API const char *ct_k8s_client_server(const ct_k8s_client *c);
/* The kubeconfig context used ("" in-cluster); borrowed. */
CT_API const char *ct_k8s_client_context(const ct_k8s_client *c);
/*
 * The default namespace: the context's namespace, in-cluster the pod's
 * ($POD_NAMESPACE, else the service-account namespace file), else
 * "default"; borrowed for the client's life.
 */
CT_API const char *ct_k8s_client_namespace(const ct_k8s_client *c);

/*
 * GET /api/v1/namespaces/{name}: the namespace's metadata.uid, checked to be
 * 1..CT_K8S_UID_MAX-1 printable ASCII characters, into uid (NUL-terminated).
 * Errors: as at the top of this file (a missing namespace is CT_E_NOTFOUND;
 * no RBAC "get namespaces" is CT_E_DENIED), CT_E_PROTO (no or a bad uid).
 */
CT_API CT_NODISCARD ct_err ct_k8s_get_namespace_uid(ct_k8s_client *c, const char *name,
                                                    char uid[CT_K8S_UID_MAX],
                                                    ct_error *err);

/*
 * The cluster fingerprint: the kube-system namespace UID, validated and
 * canonicalised with ct_fingerprint_canonical, into out. With client NULL
 * a temporary client is made from default options (auto configuration).
 * `ctx` is used for that client and for logging (NULL: the client's
 * context; then client must not be NULL). Logs only an 8-character prefix.
 * Errors: as ct_k8s_get_namespace_uid and ct_k8s_client_new; CT_E_PROTO if
 * the UID is not a UUID.
 */
CT_API CT_NODISCARD ct_err ct_fingerprint(ct_ctx *ctx, ct_k8s_client *client,
                                          char out[CT_FINGERPRINT_LEN + 1], ct_error *err);

/* ------------------------------------------------------------ Secrets */

typedef struct ct_k8s_secret ct_k8s_secret;

/* Metadata of a Secret; strings borrowed until the secret is freed, never NULL. */
CT_API const char *ct_k8s_secret_name(const ct_k8s_secret *s);
CT_API const char *ct_k8s_secret_namespace(const ct_k8s_secret *s);
CT_API const char *ct_k8s_secret_uid(const ct_k8s_secret *s);
CT_API const char *ct_k8s_secret_resource_version(const ct_k8s_secret *s);
CT_API const char *ct_k8s_secret_type(const ct_k8s_secret *s); /* "Opaque" when absent */
/* 1 if metadata.ownerReferences is a non-empty list (owned by another object). */
CT_API int ct_k8s_secret_has_owner(const ct_k8s_secret *s);
/* 1 if the Secret is immutable. */
CT_API int ct_k8s_secret_immutable(const ct_k8s_secret *s);
/* Labels, in the server's order (i < count; out of range: NULL). */
CT_API size_t ct_k8s_secret_label_count(const ct_k8s_secret *s);
CT_API const char *ct_k8s_secret_label_key(const ct_k8s_secret *s, size_t i);
CT_API const char *ct_k8s_secret_label_value(const ct_k8s_secret *s, size_t i);
/*
 * Data: keys in the server's order (sorted), values base64-decoded into
 * ct_secret buffers (a value may be empty). Out of range: NULL.
 */
CT_API size_t ct_k8s_secret_data_count(const ct_k8s_secret *s);
CT_API const char *ct_k8s_secret_data_key(const ct_k8s_secret *s, size_t i);
CT_API const ct_secret *ct_k8s_secret_data_value(const ct_k8s_secret *s, size_t i);
/* The value of data key `key`, or NULL if there is none. */
CT_API const ct_secret *ct_k8s_secret_data_get(const ct_k8s_secret *s, const char *key);
/* Wipes the values and frees. NULL is a no-op. */
CT_API void ct_k8s_secret_free(ct_k8s_secret *s);

/*
 * GET /api/v1/namespaces/{ns}/secrets/{name} (ns NULL: the client's
 * namespace). *out: free with ct_k8s_secret_free.
 * Errors: as at the top of this file; CT_E_PROTO for a malformed Secret
 * (including data that is not standard base64).
 */
CT_API ct_err ct_k8s_get_secret(ct_k8s_client *c, const char *ns, const char *name,
                                ct_k8s_secret **out, ct_error *err);

typedef struct ct_k8s_secret_list ct_k8s_secret_list;

#define CT_K8S_LIST_OPTIONS_VERSION 1
typedef struct ct_k8s_list_options {
    uint32_t version;            /* CT_K8S_LIST_OPTIONS_VERSION */
    const char *label_selector;  /* NULL: none (copied) */
    const char *field_selector;  /* NULL: none (copied) */
    uint32_t limit;              /* page size; 0: the client's page_limit */
} ct_k8s_list_options;
#define CT_K8S_LIST_OPTIONS_INIT { .version = CT_K8S_LIST_OPTIONS_VERSION }

/*
 * Lists every Secret of a namespace (ns NULL: the client's), page by page
 * (limit/continue, the same selectors and limit on every page) until the
 * server sends no continue token. `opts` may be NULL.
 * An expired continue token (410 Gone, reason Expired: etcd compacted the
 * snapshot, typically after ~5 minutes) restarts the whole list from
 * scratch, once: what was collected is dropped, so the result is always one
 * consistent snapshot. A second 410 in the same call gives CT_E_CONFLICT
 * ("the list kept expiring ... retry later, or list with a larger limit").
 * *out: free with ct_k8s_secret_list_free.
 * Errors: as at the top of this file; CT_E_CONFLICT as above; CT_E_TOOBIG
 * past options.max_list_items; CT_E_PROTO for a malformed page.
 */
CT_API ct_err ct_k8s_list_secrets(ct_k8s_client *c, const char *ns,
                                  const ct_k8s_list_options *opts,
                                  ct_k8s_secret_list **out, ct_error *err);

CT_API size_t ct_k8s_secret_list_count(const ct_k8s_secret_list *l);
/* Item i (borrowed until the list is freed), NULL out of range. */
CT_API const ct_k8s_secret *ct_k8s_secret_list_get(const ct_k8s_secret_list *l, size_t i);
/* The list's resourceVersion (of the snapshot); borrowed, never NULL. */
CT_API const char *ct_k8s_secret_list_resource_version(const ct_k8s_secret_list *l);
/* Pages fetched for this result (after a restart, only those of the new pass). */
CT_API uint32_t ct_k8s_secret_list_pages(const ct_k8s_secret_list *l);
/* 1 if an expired continue token made the list start again. */
CT_API int ct_k8s_secret_list_restarted(const ct_k8s_secret_list *l);
/* Wipes every value and frees. NULL is a no-op. */
CT_API void ct_k8s_secret_list_free(ct_k8s_secret_list *l);

/*
 * DELETE /api/v1/namespaces/{ns}/secrets/{name} with DeleteOptions
 * preconditions: uid and/or resourceVersion (at least one must be given,
 * so a Secret that was replaced or modified since it was read is never
 * deleted). *deleted (may be NULL): 1 when the Secret is gone, 0 when the
 * server accepted the delete but finalizers keep the object for now.
 * Never retried (the outcome of a failed attempt is unknown: read the
 * Secret again to find out).
 * Errors: CT_E_INVALID (no precondition), CT_E_NOTFOUND, CT_E_CONFLICT (a
 * precondition did not match: the message quotes the server's), CT_E_DENIED,
 * and as at the top of this file.
 */
CT_API ct_err ct_k8s_delete_secret(ct_k8s_client *c, const char *ns, const char *name,
                                   const char *uid, const char *resource_version,
                                   int *deleted, ct_error *err);

/*
 * POST /api/v1/namespaces/{ns}/secrets (ns NULL: the client's): creates a
 * Secret named `name` of `type` (NULL: "Opaque") with labels (`labels`:
 * NULL, or a NULL-terminated list of key, value, key, value, ...) and n
 * data entries keys[i] -> values[i] (sent base64-encoded; values may be
 * empty). Data keys are 1..253 characters of [-._a-zA-Z0-9]. The request
 * body holds the values, so it is built in a ct_secret and wiped; the
 * answer (which echoes them) is wiped too. *out (may be NULL): the created
 * Secret as the server returned it (uid, resourceVersion), free with
 * ct_k8s_secret_free. Never retried (the outcome of a failed attempt is
 * unknown: read the Secret to find out).
 * Errors: CT_E_INVALID (bad name, namespace, key or label), CT_E_CONFLICT
 * (409 AlreadyExists: a Secret of that name exists; nothing was changed),
 * CT_E_DENIED (no RBAC create on secrets), CT_E_PROTO (not a Secret), and
 * as at the top of this file.
 */
CT_API ct_err ct_k8s_create_secret(ct_k8s_client *c, const char *ns, const char *name,
                                   const char *type, const char *const *labels,
                                   const char *const *keys, const ct_secret *const *values,
                                   size_t n, ct_k8s_secret **out, ct_error *err);

/* --------------------------------------------------------- TokenReview */

typedef struct ct_k8s_token_review ct_k8s_token_review;

/*
 * POST /apis/authentication.k8s.io/v1/tokenreviews: asks the API server
 * whether `token` (a bearer token, e.g. a pod's service-account token) is
 * valid for one of `audiences` (n_audiences may be 0: the server's own).
 * A rejected token is not an error: the review says authenticated 0 and
 * carries the server's reason. The token is a secret: the request body and
 * the response (which echoes it) are wiped. The caller needs RBAC create on
 * tokenreviews (e.g. ClusterRole system:auth-delegator).
 * *out: free with ct_k8s_token_review_free.
 * Errors: CT_E_INVALID (empty token or audience), CT_E_TOOBIG (a token over
 * 16 KiB), CT_E_PROTO (not a TokenReview), and as at the top of this file.
 */
CT_API ct_err ct_k8s_create_token_review(ct_k8s_client *c, const char *token,
                                         const char *const *audiences, size_t n_audiences,
                                         ct_k8s_token_review **out, ct_error *err);

CT_API int ct_k8s_token_review_authenticated(const ct_k8s_token_review *r);
/* Strings borrowed until the review is freed; "" when absent, never NULL. */
CT_API const char *ct_k8s_token_review_username(const ct_k8s_token_review *r);
CT_API const char *ct_k8s_token_review_uid(const ct_k8s_token_review *r);
CT_API const char *ct_k8s_token_review_error(const ct_k8s_token_review *r);
CT_API size_t ct_k8s_token_review_group_count(const ct_k8s_token_review *r);
CT_API const char *ct_k8s_token_review_group(const ct_k8s_token_review *r, size_t i);
CT_API size_t ct_k8s_token_review_audience_count(const ct_k8s_token_review *r);
CT_API const char *ct_k8s_token_review_audience(const ct_k8s_token_review *r, size_t i);
CT_API void ct_k8s_token_review_free(ct_k8s_token_review *r);

/* --------------------------------------------------- issuer discovery */

/*
 * GET /openid/v1/jwks: the service-account issuer's public keys, raw JSON
 * (checked to be a JSON object with a "keys" array), NUL-terminated, at
 * most CT_JWKS_MAX_LEN (jwt.h) bytes, ready for ct_jwks_parse. *json: free
 * with ct_free. Errors: CT_E_TOOBIG, CT_E_PROTO, and as at the top of this
 * file.
 */
CT_API ct_err ct_k8s_get_jwks(ct_k8s_client *c, char **json, size_t *len, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
