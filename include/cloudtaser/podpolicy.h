/*
 * cloudtaser/podpolicy.h - per-pod scope on the embedded store: the bridge
 * answers the pods' Vault calls ("vault.http", PROTOCOL.md section 5.2)
 * itself, from any ct_store (SQLite, the embedded default), instead of
 * forwarding them to a HashiCorp Vault.
 *
 *   Login (POST auth/<mount>/login {"role","jwt"}): the pod's service-
 *   account token is verified offline (jwt.h) against the issuer keys the
 *   cluster's first bootstrap pinned (clusters/<fp>/initialized: "jwks",
 *   "issuer"), with the policy's audience, and its namespace and service
 *   account are looked up in the pod policy. The answer carries a token of
 *   the bridge's own ("ctb." + 43 base64url characters of 32 random bytes)
 *   that lives only in the bridge's memory (as a SHA-256 hash), bound to
 *   the cluster, with a TTL.
 *   KV v2 read / list / metadata: answered from the store records
 *   kv/<mount>/<path> (see ct_embedded_kv_put) when the token's pod may
 *   (the policy is evaluated on every call, so a reload applies at once).
 *   token lookup-self / renew-self, sys/health: answered locally.
 *   Answers are Vault-shaped (same members, status codes and error bodies
 *   as Vault; tests/fixtures/api/API.md).
 *
 * The pod policy is a small JSON file:
 *
 *   {"version":1,
 *    "audience":"vault",                 (optional; default: the issuer)
 *    "migrated_mount":"k8s",             (optional; see below)
 *    "rules":[{"namespace":"team-a","service_account":"app",
 *              "role":"app",             (optional: any role)
 *              "cluster":"<fp>",         (optional: any cluster)
 *              "name":"team-a-app",      (optional: the policy name shown)
 *              "read":["secret/data/team-a/app/"],
 *              "list":["secret/metadata/team-a/"]}]}
 *
 * Paths are Vault API paths (after /v1/). An entry ending in '/' covers
 * everything below it, any other entry exactly that path (so a prefix
 * always ends at a path boundary). "read" covers KV reads (<mount>/data/)
 * and metadata reads (<mount>/metadata/); "list" covers LIST of
 * <mount>/metadata/<dir>/. "service_account" may be "*" (any in the
 * namespace). A pod gets the union of the rules that match it. Unknown
 * members, duplicates and wrong types are refused, naming the file and the
 * member. No policy: every pod is refused.
 *
 * With "migrated_mount" M, Kubernetes Secrets migrated by the bridge
 * (migrate.h, default path template) are KV secrets too: M/data/<ns>/<name>
 * is the record clusters/<fp>/secrets/<ns>/<name> of the pod's own cluster,
 * its values base64-decoded (left in base64 when not text), not served once
 * restored. A logged-in pod may always read and list those of its own
 * namespace (anyone who may create pods there could mount them before);
 * rules may grant more under M.
 *
 * Thread-safety: a ct_pod_policy is immutable once loaded. A
 * ct_embedded_vault's handler runs on many session handler threads at once;
 * ct_embedded_vault_set_policy may be called from any thread meanwhile.
 */
#ifndef CLOUDTASER_PODPOLICY_H
#define CLOUDTASER_PODPOLICY_H

#include "agent.h"
#include "common.h"
#include "context.h"
#include "secret.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the pod policy ---- */

typedef struct ct_pod_policy ct_pod_policy;

#define CT_POD_POLICY_MAX_LEN (256u * 1024u) /* bytes of the file */
#define CT_POD_POLICY_MAX_RULES 1024u
#define CT_POD_POLICY_MAX_PATHS 64u          /* per list ("read", "list") */

/*
 * Parses a policy from memory. `name` (may be NULL) names the source in
 * messages (a file name). *out: free with ct_pod_policy_free.
 * Errors: CT_E_INVALID (not JSON, an unknown or duplicate member, a wrong
 * type, a bad name or path, an unsupported "version"; the message names
 * the source and the member), CT_E_TOOBIG (over the limits above),
 * CT_E_NOMEM.
 */
CT_API ct_err ct_pod_policy_parse(const char *json, size_t len, const char *name,
                                  ct_pod_policy **out, ct_error *err);
/* Reads and parses a file. Errors: those of parse, CT_E_NOTFOUND, CT_E_IO. */
CT_API ct_err ct_pod_policy_load(const char *path, ct_pod_policy **out, ct_error *err);
/* Number of rules. */
CT_API size_t ct_pod_policy_rule_count(const ct_pod_policy *p);
/*
 * What the policy allows a pod: 1 if the pod (cluster fingerprint,
 * namespace, service account, role; role NULL: the rules' role is not
 * checked) may do `capability` ("read" or "list") on the Vault path `path`
 * (after /v1/; for list the directory, with or without a trailing '/'),
 * else 0. Pure; thread-safe.
 */
CT_API int ct_pod_policy_allows(const ct_pod_policy *p, const char *fingerprint,
                                const char *ns, const char *sa, const char *role,
                                const char *capability, const char *path);
/* NULL is a no-op. */
CT_API void ct_pod_policy_free(ct_pod_policy *p);

/* ---- the embedded Vault answering pods ---- */

typedef struct ct_embedded_vault ct_embedded_vault;

#define CT_EMBEDDED_VAULT_DEFAULT_TTL_S 3600u
#define CT_EMBEDDED_VAULT_DEFAULT_MAX_TTL_S 86400u
#define CT_EMBEDDED_VAULT_DEFAULT_MAX_TOKENS 10000u

#define CT_EMBEDDED_VAULT_OPTIONS_VERSION 1
typedef struct ct_embedded_vault_options {
    uint32_t version;        /* CT_EMBEDDED_VAULT_OPTIONS_VERSION */
    /*
     * Borrowed; used from several threads (the built-in stores allow it).
     * Read: clusters/<fp>/initialized (pinned keys), kv/... (secrets).
     */
    ct_store *store;
    uint32_t token_ttl_s;    /* 0: CT_EMBEDDED_VAULT_DEFAULT_TTL_S */
    uint32_t token_max_ttl_s;/* 0: CT_EMBEDDED_VAULT_DEFAULT_MAX_TTL_S (>= ttl) */
    uint32_t max_tokens;     /* live tokens at most; 0: the default */
    uint32_t leeway_s;       /* clock skew on the JWT's times; 0: 60 */
} ct_embedded_vault_options;
#define CT_EMBEDDED_VAULT_OPTIONS_INIT { .version = CT_EMBEDDED_VAULT_OPTIONS_VERSION }

/*
 * Makes the handler state, with no policy (every pod refused) until
 * ct_embedded_vault_set_policy. Errors: CT_E_INVALID, CT_E_VERSION,
 * CT_E_NOMEM.
 */
CT_API ct_err ct_embedded_vault_new(ct_ctx *ctx, const ct_embedded_vault_options *opts,
                                    ct_embedded_vault **out, ct_error *err);
/*
 * Replaces the policy (takes ownership of `policy`; NULL: refuse every
 * pod). Calls in flight finish with the policy they started with. Tokens
 * stay valid; what they may read follows the new policy. Never fails.
 */
CT_API void ct_embedded_vault_set_policy(ct_embedded_vault *v, ct_pod_policy *policy);
/*
 * The "vault.http" handler (a ct_agent_handler; arg = the ct_embedded_vault;
 * register it on the bridge's router instead of ct_vault_proxy_http). The
 * request is the broker's (PROTOCOL.md 5.2); the answer is
 * {"status":N,"body":"...","headers":{"Content-Type":"application/json"}}
 * for every Vault-shaped answer, refusals included.
 * Errors: CT_E_INVALID (malformed request), CT_E_AUTH (method+path outside
 * the allowlist, as ct_vault_proxy_http), CT_E_NOMEM, and store failures
 * other than "not found" (CT_E_STORE, ...).
 */
CT_API ct_err ct_embedded_vault_http(void *v, const char *fingerprint, ct_session *s,
                                     uint32_t stream, const uint8_t *req, size_t req_len,
                                     uint8_t **resp, size_t *resp_len, ct_error *err);
/* Live (unexpired) tokens. Thread-safe. */
CT_API size_t ct_embedded_vault_token_count(ct_embedded_vault *v);
/* Frees the state; every token is wiped. NULL is a no-op. Not while a handler runs. */
CT_API void ct_embedded_vault_free(ct_embedded_vault *v);

/* ---- the secrets pods read: kv/<mount>/<path> ---- */

/*
 * Store layout: the KV v2 secret <mount>/data/<path> is the store record
 * kv/<mount>/<path> (mount one segment, not sys/auth/identity/cubbyhole;
 * segments as store keys allow), value {"v":1,"data":{...},"created_at":<ms>}
 * where data is the secret's JSON object; the store version is the KV
 * version. These helpers write and read such records (operators use
 * `cloudtaser source secret`).
 */

/* "kv/<mount>/<path>" into key[n]. Errors: CT_E_INVALID (bad mount or path). */
CT_API ct_err ct_embedded_kv_key(const char *mount, const char *path, char *key, size_t n,
                                 ct_error *err);
/*
 * Writes the secret `data_json` (a JSON object; copied) at mount/path,
 * unconditionally. *version (may be NULL) gets the new version. The
 * serialised record is wiped after the write.
 * Errors: CT_E_INVALID (bad mount/path, not a JSON object), CT_E_TOOBIG,
 * CT_E_VERSION / CT_E_STORE (the store's system/layout is newer than this
 * library or corrupt: ct_store_layout_check; nothing is written), the
 * store's.
 */
CT_API ct_err ct_embedded_kv_put(ct_ctx *ctx, ct_store *store, const char *mount,
                                 const char *path, const char *data_json, size_t len,
                                 uint64_t *version, ct_error *err);
/*
 * Reads the secret's data as compact JSON text into a new secret
 * (*data_json, NUL-terminated; ct_secret_free). *version may be NULL.
 * Errors: CT_E_NOTFOUND, CT_E_INVALID, CT_E_STORE (not such a record).
 */
CT_API ct_err ct_embedded_kv_get(ct_store *store, const char *mount, const char *path,
                                 ct_secret **data_json, uint64_t *version, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
