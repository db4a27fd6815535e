/*
 * vault_internal.h - private parts of the Vault / OpenBao store (vault.h).
 *
 * vault_json.c holds every piece of JSON handling as pure functions (bytes
 * in, values out; no I/O), so fuzz/fuzz_vault_json.c can drive them: the
 * value encoding, the answers of KV v2 read / write / list / metadata, the
 * error list, sys/health, the mount check (sys/internal/ui/mounts). Every answer is hostile input: bounded, strictly
 * typed, never trusted for lengths.
 *
 * Secret hygiene: values travel in ct_secret buffers; jansson's string
 * copies of a read value are wiped in place before the tree is freed. What
 * remains: jansson's parser keeps a few small internal buffers (its lexer's
 * token buffer) that it frees without wiping.
 */
#ifndef CTP_VAULT_INTERNAL_H
#define CTP_VAULT_INTERNAL_H

#include "internal.h"

/* The member that marks a base64-wrapped value. */
#define CTP_VAULT_B64_MEMBER "ct_b64"
/* Most entries one list walk returns. */
#define CTP_VAULT_LIST_MAX 100000
/* Longest error text kept from an answer (after unwrapping). */
#define CTP_VAULT_ERRTEXT_MAX 160

/*
 * 1 if value[0..len) is stored as the secret's data itself: a JSON object
 * that jansson re-serialises (compact, sorted keys) to exactly these bytes,
 * with no top-level member CTP_VAULT_B64_MEMBER. 0 otherwise.
 */
int ctp_vault_value_is_plain(const uint8_t *value, size_t len);

/*
 * The body of a KV v2 write: {"options":{"cas":N},"data":<data>} (options
 * left out when cas < 0), where <data> is the value itself when plain, else
 * {"ct_b64":"<base64>"}. *out: a new secret (the body carries the value).
 * Errors: CT_E_NOMEM, CT_E_TOOBIG.
 */
ct_err ctp_vault_write_body(const uint8_t *value, size_t len, int64_t cas, ct_secret **out,
                            ct_error *err);

/* What a KV v2 read answer says. */
typedef struct ctp_vault_read {
    ct_secret *value;  /* status 200: the value's bytes (caller frees) */
    uint64_t version;  /* metadata.version; 0 if unknown */
    int deleted;       /* 404 envelope: the version is soft-deleted */
    int destroyed;     /* 404 envelope: the version is destroyed */
} ctp_vault_read;

/*
 * Parses the answer of GET <mount>/data/<key> with HTTP status `status`:
 *   200 -> CT_OK, out->value and out->version;
 *   404 -> CT_E_NOTFOUND; out->version/deleted/destroyed filled when the
 *          body is the deleted-version envelope, 0 for {"errors":[]};
 *   anything else is not handled here: CT_E_INVALID.
 * A body that is not the documented shape: CT_E_STORE (a message saying
 * what is wrong, no secret bytes). On error out->value is NULL.
 */
ct_err ctp_vault_parse_read(const uint8_t *body, size_t len, long status, ctp_vault_read *out,
                            ct_error *err);

/*
 * Decodes a KV data object (as JSON text) into the stored value: the
 * ct_b64 wrapper is unwrapped, any other object re-serialised (compact,
 * sorted keys). Errors: CT_E_STORE (not an object, bad base64), CT_E_NOMEM.
 */
ct_err ctp_vault_decode_data(const uint8_t *json, size_t len, ct_secret **out, ct_error *err);

/*
 * The version in the answer of a KV v2 write (200: data.version >= 1).
 * Errors: CT_E_STORE (no version: e.g. a KV version 1 mount).
 */
ct_err ctp_vault_parse_write(const uint8_t *body, size_t len, uint64_t *version,
                             ct_error *err);

/*
 * The answer of GET <mount>/metadata/<key> (200): current_version and
 * whether the key demands check-and-set. Errors: CT_E_STORE.
 */
ct_err ctp_vault_parse_metadata(const uint8_t *body, size_t len, uint64_t *current_version,
                                int *cas_required, ct_error *err);

/*
 * The answer of a LIST (200): data.keys. Calls `entry` for each name that
 * is a valid store key segment, with is_folder set for names ending in '/'
 * (passed without the '/'); other names are skipped (they cannot be store
 * keys). `entry` returns CT_OK or an error that stops the parse.
 * Errors: CT_E_STORE (shape), entry's errors.
 */
ct_err ctp_vault_parse_list(const uint8_t *body, size_t len,
                            ct_err (*entry)(void *arg, const char *name, int is_folder,
                                            ct_error *err),
                            void *arg, ct_error *err);

/* Facts about an error answer {"errors":[...]}. */
typedef struct ctp_vault_errors {
    int present;        /* the body has an "errors" array */
    int empty;          /* ... and it is empty ({"errors":[]}: "not found") */
    int invalid_token;  /* some error says "invalid token" */
    int permission;     /* some error says "permission denied" */
    int sealed;         /* "Vault is sealed" */
    int cas_mismatch;   /* "check-and-set parameter did not match the current version" */
    int cas_required;   /* "check-and-set parameter required for this call" */
    int no_active;      /* "no active Vault instance found" / "node is not active" */
    int no_route;       /* "no handler for route": the mount does not exist */
    int invalid_path;   /* the KV v2 "Invalid path" warning envelope */
    /* The errors, multierror wrappers removed, joined with "; ", control
     * characters replaced, truncated: safe to show. "" if none. */
    char text[CTP_VAULT_ERRTEXT_MAX + 1];
} ctp_vault_errors;

/* Reads what an answer body says about errors (never fails). */
void ctp_vault_parse_errors(const uint8_t *body, size_t len, ctp_vault_errors *out);

/*
 * The answer of sys/health (any status). Errors: CT_E_STORE (not a JSON
 * object with at least "initialized" and "sealed" booleans).
 */
ct_err ctp_vault_parse_health(const uint8_t *body, size_t len, long status,
                              ct_vault_health *out, ct_error *err);

/*
 * The whole answer of GET <mount>/metadata/<key> (200) as a new
 * ct_vault_kv_meta (versions sorted, the newest CT_VAULT_META_VERSIONS_MAX
 * kept). Errors: CT_E_STORE (shape), CT_E_NOMEM.
 */
ct_err ctp_vault_parse_kv_meta(const uint8_t *body, size_t len, ct_vault_kv_meta **out,
                               ct_error *err);

/* What GET sys/internal/ui/mounts/<mount> says (the vault CLI's kv preflight). */
typedef struct ctp_vault_mount {
    char type[64];   /* the engine: "kv", "generic" (old name of kv), "transit"... */
    int kv_version;  /* data.options.version "2": 2; anything else: 1 (as the CLI) */
    char path[300];  /* data.path without the trailing '/'; "" if absent */
} ctp_vault_mount;

/*
 * Parses that answer (200). Errors: CT_E_STORE (no data.type string,
 * options not an object, version or path not strings).
 */
ct_err ctp_vault_parse_mount(const uint8_t *body, size_t len, ctp_vault_mount *out,
                             ct_error *err);

/*
 * A store key for messages: segments longer than 16 characters (such as a
 * fingerprint) are cut to 8 characters and "...". Never fails.
 */
void ctp_vault_short_key(const char *key, char *out, size_t cap);

#endif
