/*
 * cloudtaser/vault.h - the HashiCorp Vault / OpenBao record store: the
 * ct_store vtable on a KV secrets engine version 2, configured the way Vault
 * users expect (VAULT_ADDR, VAULT_TOKEN, ...).
 *
 * Layout: store key K is the KV v2 secret <mount>/data/K (mount default
 * "cloudtaser"). A value is stored so that it reads back byte for byte:
 *   - a JSON object that re-serialises to exactly the same bytes (compact,
 *     keys sorted, as libcloudtaser writes its records) and has no top-level
 *     member "ct_b64" is stored as the secret's data itself, so operators
 *     can read it with `vault kv get`;
 *   - anything else (binary, other JSON, the empty value) is stored as
 *     {"ct_b64":"<standard base64>"}.
 * The store's version is the KV version (metadata.version).
 *
 * Mount check: before the first KV request of a store (of any operation
 * below, not at ct_store_new_vault, which makes no request), the store asks
 * GET sys/internal/ui/mounts/<mount>, as the vault CLI's kv preflight does.
 * KV version 2: remembered for the life of the store. KV version 1 (where
 * <mount>/data/K would silently be a secret named "data/K"), another
 * engine, or a mount name that is a path inside a mount: CT_E_STORE with
 * the fix (`vault kv enable-versioning <mount>`, `vault secrets enable
 * -path=<mount> -version=2 kv`, the right --vault-mount), asked again on
 * the next operation, so fixing the mount needs no restart. The endpoint
 * answering 400/403/404/405 (older servers; policies that grant nothing
 * under the mount; Vault answers 403 for a missing mount too): the store
 * proceeds as version 2 without a word and the KV requests tell what is
 * wrong. Transport errors, sealed, 5xx: that error, asked again next time.
 *
 * Operations (every request carries the token in X-Vault-Token and, when a
 * namespace is set, X-Vault-Namespace):
 *   get   GET <mount>/data/K. A missing key, and a key whose current version
 *         is soft-deleted or destroyed (by another tool), is CT_E_NOTFOUND.
 *   put   POST <mount>/data/K with options.cas: CT_STORE_CREATE is cas 0,
 *         N > 0 is cas N, CT_STORE_ANY sends no cas (if the mount or key has
 *         cas_required, the current version is read and used, repeating on
 *         a race). A cas mismatch is CT_E_CONFLICT.
 *   del   GET <mount>/metadata/K (missing: CT_E_NOTFOUND), then DELETE
 *         <mount>/metadata/K: every version and the metadata are removed for
 *         good (key material must not linger as old versions).
 *   list  a walk of LIST <mount>/metadata/<folder> (sent as GET ?list=true,
 *         as Vault's own client does) over the folders that can hold keys
 *         with the prefix; 404 is an empty folder. Not a snapshot: keys
 *         written during the walk may or may not appear.
 * Flags: CT_STORE_F_CAS | CT_STORE_F_SHARED. The token needs, on the mount:
 * create/read/update on <mount>/data/..., read/delete/list on
 * <mount>/metadata/....
 *
 * Errors (every message says what to do):
 *   CT_E_NOTFOUND  missing (404);
 *   CT_E_CONFLICT  check-and-set mismatch (400 from KV);
 *   CT_E_DENIED    403: permission denied or an invalid/expired token
 *                  ("check the token and its policy");
 *   CT_E_STORE     sealed (503 "Vault is sealed"), no active node, other
 *                  4xx/5xx answers (Vault's message quoted), malformed or
 *                  unexpected JSON, a KV v1 mount, another engine or a
 *                  missing mount (see "Mount check");
 *   CT_E_PROTO     a redirect (a standby with request forwarding off): never
 *                  followed, the message names the target host;
 *   CT_E_TOOBIG    an answer larger than max_response (with or without
 *                  Content-Length: a chunked or close-delimited body is
 *                  cut off at the limit, not buffered);
 *   transport      CT_E_RESOLVE, CT_E_REFUSED, CT_E_TIMEOUT, CT_E_CERT,
 *                  CT_E_TLS, CT_E_RESET, CT_E_IO (see below);
 *   CT_E_IO        "outcome unknown": a write whose answer was lost (reset,
 *                  timeout, 502/504) and that a re-read could not prove
 *                  applied or not applied. Such a write may have happened.
 *
 * Retries, with exponential backoff and jitter (Retry-After honoured, as
 * seconds or an HTTP date, when it asks for at most 30 s; up to
 * max_retries times): network errors and 5xx answers of reads, lists and
 * deletes; 429 (rate limited) answers of every request, since a refused
 * request was not executed. A sealed Vault is not retried. A write whose
 * outcome is unknown is never re-sent blindly: the key is read back; if
 * the value is there at the version the write would have made, the put
 * succeeds with that version; if the key still has the expected version
 * (cas writes only), the write is sent again (cas makes that safe);
 * otherwise CT_E_IO "outcome unknown".
 *
 * TLS: https only; peer verification always on. skip_verify (or
 * VAULT_SKIP_VERIFY) is refused with CT_E_INVALID unless force_insecure is
 * also set. Redirects are never followed (the token would go with them).
 *
 * Secrets: the token is kept in a ct_secret and copied into a header line
 * that is wiped after each request; response bodies are wiped after use;
 * decoded values are returned as ct_secret. libcurl and OpenSSL keep their
 * own, unwiped transfer buffers (docs/SECURITY.md).
 *
 * Thread-safety: a Vault store may be used by several threads at once (each
 * request takes its own libcurl handle from a small pool).
 */
#ifndef CLOUDTASER_VAULT_H
#define CLOUDTASER_VAULT_H

#include "common.h"
#include "context.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_VAULT_OPTIONS_VERSION 1
#define CT_VAULT_DEFAULT_MOUNT "cloudtaser"
/* token_file value meaning "$HOME/.vault-token" (what `vault login` writes). */
#define CT_VAULT_TOKEN_FILE_HOME "~/.vault-token"
/* Default response size limit: a 1 MiB value in base64 plus the envelope. */
#define CT_VAULT_DEFAULT_MAX_RESPONSE ((size_t)4 << 20)

/*
 * Vault store options. Zero means default in every field. Strings are
 * borrowed for the duration of the call they are passed to (copied).
 */
typedef struct ct_vault_options {
    uint32_t version;           /* CT_VAULT_OPTIONS_VERSION */
    const char *address;        /* REQUIRED: https://host[:port] (VAULT_ADDR) */
    const char *token;          /* the token (VAULT_TOKEN); secret */
    /*
     * A file holding the token (surrounding whitespace ignored), used when
     * token is NULL; a leading "~/" is $HOME. CT_VAULT_TOKEN_FILE_HOME is
     * what the vault CLI uses after `vault login`.
     */
    const char *token_file;
    const char *namespace_path; /* "ns1/ns2" (VAULT_NAMESPACE); NULL: none */
    const char *ca_file;        /* PEM bundle (VAULT_CACERT); NULL: system CAs */
    /* A directory of PEM CAs under their OpenSSL hash names, as `openssl
     * rehash` makes them (VAULT_CAPATH); used alone when ca_file is NULL. */
    const char *ca_path;
    const char *client_cert;    /* PEM file (VAULT_CLIENT_CERT), with client_key */
    const char *client_key;     /* PEM file (VAULT_CLIENT_KEY) */
    const char *mount;          /* the KV v2 mount; NULL: "cloudtaser" */
    int skip_verify;            /* 1: no TLS verification: refused unless... */
    int force_insecure;         /* ...this is 1 too */
    int timeout_ms;             /* per request; 0: the context's I/O timeout */
    int max_retries;            /* 0: 2 (VAULT_MAX_RETRIES); < 0: no retries */
    int retry_wait_ms;          /* first backoff; 0: 250 (doubling, <= 5000) */
    size_t max_response;        /* 0: CT_VAULT_DEFAULT_MAX_RESPONSE */
} ct_vault_options;

#define CT_VAULT_OPTIONS_INIT { .version = CT_VAULT_OPTIONS_VERSION }

/*
 * Fills the fields of `o` that are still unset (NULL or 0) from the
 * environment, as the vault CLI reads it: VAULT_ADDR, VAULT_TOKEN (only
 * when neither token nor token_file is set; with neither set afterwards,
 * token_file becomes CT_VAULT_TOKEN_FILE_HOME), VAULT_NAMESPACE,
 * VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY,
 * VAULT_SKIP_VERIFY (a boolean: 1/t/true/0/f/false, any case),
 * VAULT_MAX_RETRIES (an integer), VAULT_CLIENT_TIMEOUT (seconds, or a
 * duration such as "30s", "2m"). Empty variables count as unset. So: set
 * the command-line values first, then call this.
 *
 * The pointers stored in `o` point into the environment (or are static):
 * valid until the environment changes. Not thread-safe against setenv.
 * Errors: CT_E_INVALID (NULL `o`, unknown version, or a variable that does
 * not parse: the message names it).
 */
CT_API ct_err ct_vault_options_from_env(ct_vault_options *o, ct_error *err);

/*
 * Opens a Vault store (see the top of this file). Checks and copies the
 * options and reads the token file; makes no request. Free the store with
 * ct_store_free.
 * Errors: CT_E_INVALID (no address, not https://, no token, a token or
 * namespace with control characters, skip_verify without force_insecure,
 * a bad mount name, a client certificate without its key), CT_E_NOTFOUND /
 * CT_E_DENIED (the token file cannot be read), CT_E_VERSION, CT_E_NOMEM.
 */
CT_API ct_err ct_store_new_vault(ct_ctx *ctx, const ct_vault_options *opts, ct_store **out,
                                 ct_error *err);

/* The answer of GET /v1/sys/health. */
typedef struct ct_vault_health {
    int32_t http_status;        /* 200 active, 429 standby, 473 perf. standby, ... */
    int initialized;
    int sealed;
    int standby;
    int performance_standby;    /* always 0 on OpenBao */
    char version[64];           /* "1.21.1", "2.6.2"; "" if absent */
    char cluster_name[128];     /* "" if absent (sealed) */
} ct_vault_health;

/*
 * Asks the server's health endpoint (no token and no namespace header are
 * sent: OpenBao refuses health checks in a namespace). CT_OK for an active
 * node and for standbys (which forward requests; see out->standby).
 * Errors: CT_E_STORE (sealed, not initialised, DR secondary, a standby that
 * cannot reach its active node, removed from its cluster, malformed answer),
 * the transport errors and CT_E_INVALID as for ct_store_new_vault (the
 * token is not needed).
 */
CT_API ct_err ct_vault_health_check(ct_ctx *ctx, const ct_vault_options *opts,
                                    ct_vault_health *out, ct_error *err);

/*
 * ---- KV version 2 beyond the store vtable ----
 *
 * These work on a store made by ct_store_new_vault (any other store:
 * CT_E_INVALID, "not a Vault store") and take the same store keys as
 * ct_store_* (an invalid key: CT_E_INVALID). Like every Vault store
 * operation they run the mount check first (see "Mount check" above),
 * retry as reads do, and are safe to call from several threads at once.
 */

/*
 * Reads version `version` of `key` (0: the current version, exactly as
 * ct_store_get). *value: a new secret the caller frees with
 * ct_secret_free; *got_version (may be NULL): the version read.
 * Errors: CT_E_NOTFOUND for a missing key, a version that never existed or
 * was pruned (max_versions), a soft-deleted version ("version N is
 * deleted") and a destroyed version ("version N is destroyed"): the same
 * code ct_store_get gives, told apart by the message; CT_E_INVALID (NULL
 * store/value, not a Vault store, bad key); and the errors of
 * ct_store_get.
 */
CT_API ct_err ct_vault_kv_get_version(ct_store *s, const char *key, uint64_t version,
                                      ct_secret **value, uint64_t *got_version, ct_error *err);

/*
 * Soft-deletes the current version of `key` (DELETE <mount>/data/K): it
 * stops being readable, its data stays in Vault (an operator can undelete
 * it with `vault kv undelete`) and the key stays listed. Unlike
 * ct_store_del this removes neither the history nor the metadata.
 * CT_OK also when the key is missing or its current version is already
 * deleted or destroyed (Vault answers the same to both). The token needs
 * "delete" on <mount>/data/K.
 * Errors: CT_E_INVALID (not a Vault store, bad key), CT_E_DENIED, and the
 * other errors of ct_store_del.
 */
CT_API ct_err ct_vault_kv_delete_latest(ct_store *s, const char *key, ct_error *err);

/* Most versions one ct_vault_kv_delete_versions call takes. */
#define CT_VAULT_DELETE_VERSIONS_MAX 1000

/*
 * Soft-deletes the listed versions of `key` (POST <mount>/delete/K with
 * {"versions":[...]}). Versions that do not exist, are already deleted or
 * are destroyed are skipped, as Vault does; a missing key is CT_OK too.
 * The token needs "update" on <mount>/delete/K.
 * Errors: CT_E_INVALID (not a Vault store, bad key, n == 0 or more than
 * CT_VAULT_DELETE_VERSIONS_MAX, NULL versions, a version 0), CT_E_DENIED,
 * and the other errors of ct_store_del.
 */
CT_API ct_err ct_vault_kv_delete_versions(ct_store *s, const char *key,
                                          const uint64_t *versions, size_t n, ct_error *err);

/* Most versions a ct_vault_kv_meta holds: the newest ones are kept. */
#define CT_VAULT_META_VERSIONS_MAX 1000

/* One version in a key's metadata. Times are RFC 3339 UTC text as Vault
 * sends it ("2026-03-14T09:21:47.512093118Z"), "" when unset. */
typedef struct ct_vault_version_meta {
    uint64_t version;
    char created_time[48];
    /* Set when the version is (or, with delete_version_after, will be)
     * soft-deleted: a time in the future still reads normally. */
    char deletion_time[48];
    int destroyed;
} ct_vault_version_meta;

/* The metadata of a key (GET <mount>/metadata/K). */
typedef struct ct_vault_kv_meta {
    uint64_t current_version;  /* 0: no version yet (metadata written alone) */
    uint64_t oldest_version;
    int cas_required;          /* the key's own setting (the mount's is apart) */
    uint32_t max_versions;     /* 0: the mount's default */
    char created_time[48];
    char updated_time[48];
    size_t nversions;          /* entries in versions[] */
    int truncated;             /* the key had more than CT_VAULT_META_VERSIONS_MAX */
    ct_vault_version_meta *versions; /* oldest first */
} ct_vault_kv_meta;

/*
 * Reads the metadata of `key`. *out: a new ct_vault_kv_meta the caller
 * frees with ct_vault_kv_meta_free. The token needs "read" on
 * <mount>/metadata/K.
 * Errors: CT_E_NOTFOUND (no such key), CT_E_INVALID (NULL out, not a Vault
 * store, bad key), CT_E_STORE (a malformed answer), CT_E_NOMEM, and the
 * errors of ct_store_get.
 */
CT_API ct_err ct_vault_kv_metadata(ct_store *s, const char *key, ct_vault_kv_meta **out,
                                   ct_error *err);

/* Frees a ct_vault_kv_meta (NULL is fine). */
CT_API void ct_vault_kv_meta_free(ct_vault_kv_meta *m);

#ifdef __cplusplus
}
#endif
#endif
