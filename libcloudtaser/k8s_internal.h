/*
 * k8s_internal.h - private parts of the Kubernetes client (k8s.h): the pure
 * parsers (kubeconfig YAML, API response JSON, Status errors) that take
 * bytes and return structures, with no I/O, so they are unit-tested and
 * fuzzed directly (fuzz/fuzz_k8s_json.c, fuzz/fuzz_kubeconfig.c).
 */
#ifndef CTP_K8S_INTERNAL_H
#define CTP_K8S_INTERNAL_H

#include "internal.h"

/* ------------------------------------------------------------ results */

struct ct_k8s_secret {
    char *name, *ns, *uid, *rv, *type;
    int has_owner, immutable;
    size_t n_labels;
    char **label_keys, **label_values;
    size_t n_data;
    char **data_keys;
    ct_secret **data_values;
};

struct ct_k8s_secret_list {
    ct_k8s_secret **items;
    size_t n, cap;
    char *rv;
    uint32_t pages;
    int restarted;
};

struct ct_k8s_token_review {
    int authenticated;
    char *username, *uid, *error;
    size_t n_groups, n_audiences;
    char **groups, **audiences;
};

/* Largest string kept from a Status message (the rest is cut with "..."). */
#define CTP_K8S_MSG_MAX 200

/* A Status object (error body). */
typedef struct ctp_k8s_status {
    int code;                       /* .code, 0 if absent */
    char status[16];                /* "Failure" / "Success" / "" */
    char reason[48];                /* "NotFound", ... / "" */
    char message[CTP_K8S_MSG_MAX + 4]; /* printable ASCII only, cut, "" if absent */
} ctp_k8s_status;

/*
 * Parses a Status object ({"kind":"Status",...}). Returns 1 and fills *st
 * when body is one, 0 otherwise (*st then zeroed). Untrusted text is made
 * printable (other bytes become '?') and cut at CTP_K8S_MSG_MAX.
 */
int ctp_k8s_parse_status(const char *body, size_t len, ctp_k8s_status *st);

/* How the request authenticated (for the 401 message). */
typedef enum ctp_k8s_auth {
    CTP_K8S_AUTH_NONE = 0,
    CTP_K8S_AUTH_TOKEN = 1,
    CTP_K8S_AUTH_CERT = 2
} ctp_k8s_auth;

/*
 * Maps a non-2xx HTTP status and its body to a ct_err and message,
 * "<what>: ..." (what: "get namespace kube-system"). See k8s.h for the
 * table. os_error is the HTTP status.
 */
ct_err ctp_k8s_http_error(int http_status, const char *body, size_t len, const char *what,
                          ctp_k8s_auth auth, ct_error *err);

/* Copies printable ASCII of s[0..n) into out (cap bytes), others as '?', cut with "...". */
void ctp_k8s_printable(const char *s, size_t n, char *out, size_t cap);

/*
 * A Namespace object: its metadata.uid (1..CT_K8S_UID_MAX-1 printable
 * characters, no spaces) into uid. `name`, if not NULL, must equal
 * metadata.name. Errors: CT_E_PROTO.
 */
ct_err ctp_k8s_parse_namespace_uid(const char *body, size_t len, const char *name,
                                   char uid[CT_K8S_UID_MAX], ct_error *err);

/* A Secret object. *out: ct_k8s_secret_free. Errors: CT_E_PROTO, CT_E_NOMEM, CT_E_TOOBIG. */
ct_err ctp_k8s_parse_secret(const char *body, size_t len, ct_k8s_secret **out, ct_error *err);

/*
 * One page of a SecretList: appends its items to `list` (at most max_items
 * in total: CT_E_TOOBIG past that), replaces list->rv with the page's
 * metadata.resourceVersion and sets *cont to its metadata.continue (NULL
 * when absent or empty; free with free()) and *remaining to
 * remainingItemCount (-1 if absent). On error `list` keeps only whole
 * items. Errors: CT_E_PROTO, CT_E_TOOBIG, CT_E_NOMEM.
 */
ct_err ctp_k8s_parse_secret_page(const char *body, size_t len, ct_k8s_secret_list *list,
                                 size_t max_items, char **cont, int64_t *remaining,
                                 ct_error *err);

/* An empty list (for ctp_k8s_parse_secret_page). NULL on allocation failure. */
ct_k8s_secret_list *ctp_k8s_secret_list_new(void);

/*
 * The answer to a DELETE: a Status with status "Success" (*deleted = 1) or
 * the object itself, still there with metadata.deletionTimestamp
 * (*deleted = 0). Errors: CT_E_PROTO.
 */
ct_err ctp_k8s_parse_delete(const char *body, size_t len, int *deleted, ct_error *err);

/* A TokenReview answer. Strings in it are wiped before jansson frees them. */
ct_err ctp_k8s_parse_token_review(const char *body, size_t len, ct_k8s_token_review **out,
                                  ct_error *err);

/*
 * The TokenReview request body (k8s-tokenreview-request.json's shape) into
 * a secret (the token is in it). Errors: CT_E_INVALID, CT_E_TOOBIG, CT_E_NOMEM.
 */
ct_err ctp_k8s_token_review_body(const char *token, const char *const *audiences, size_t n,
                                 ct_secret **out, ct_error *err);

/* The DeleteOptions body with preconditions (either may be NULL). *out: free(). */
/*
 * The body of a Secret create (ct_k8s_create_secret), in a ct_secret (it
 * carries the values). Checks the data keys and labels.
 */
ct_err ctp_k8s_secret_body(const char *ns, const char *name, const char *type,
                           const char *const *labels, const char *const *keys,
                           const ct_secret *const *values, size_t n, ct_secret **out,
                           ct_error *err);
/* 1 if s is a valid Secret data key (1..253 of [-._a-zA-Z0-9]). */
int ctp_k8s_valid_data_key(const char *s);
ct_err ctp_k8s_delete_body(const char *uid, const char *rv, char **out, ct_error *err);

/* A JWK set: a JSON object with a "keys" array. Errors: CT_E_PROTO. */
ct_err ctp_k8s_check_jwks(const char *body, size_t len, ct_error *err);

/* --------------------------------------------------------- kubeconfig */

/* What a kubeconfig says for one context, resolved. Strings malloc'ed. */
typedef struct ctp_kubeconfig {
    char *context;      /* the context used */
    char *cluster;      /* its cluster's name */
    char *user;         /* its user's name; "" when the context names none */
    char *server;       /* "https://host[:port][/prefix]", no trailing '/' */
    char *ns;           /* the context's namespace; "" when unset */
    char *ca_file;      /* certificate-authority, resolved against base_dir; NULL */
    uint8_t *ca_pem;    /* certificate-authority-data, decoded; NULL */
    size_t ca_pem_len;
    int insecure;       /* insecure-skip-tls-verify: true */
    ct_secret *token;   /* user token; NULL */
    char *token_file;   /* user tokenFile, resolved; NULL */
    char *cert_file;    /* client-certificate, resolved; NULL */
    uint8_t *cert_pem;  /* client-certificate-data, decoded; NULL */
    size_t cert_pem_len;
    char *key_file;     /* client-key, resolved; NULL */
    ct_secret *key_pem; /* client-key-data, decoded; NULL */
    /* which file (index into the merged list) defined each entry */
    size_t context_src, cluster_src, user_src;
} ctp_kubeconfig;

/* Limits of the YAML reader. */
#define CTP_YAML_MAX_NODES 20000
#define CTP_YAML_MAX_DEPTH 32

/*
 * Parses kubeconfig text (YAML or JSON, at most CT_K8S_KUBECONFIG_MAX
 * bytes) and resolves `context` (NULL: current-context). `where` names the
 * file in messages; relative paths are resolved against base_dir (NULL:
 * left as they are). Data fields win over file fields, tokenFile over
 * token. On error *out is cleared.
 * Errors: CT_E_INVALID (YAML, shape, missing or bad fields), CT_E_NOTFOUND
 * (no such context, cluster or user), CT_E_UNSUPPORTED (exec,
 * auth-provider, basic auth, impersonation, proxy-url, tls-server-name,
 * http://), CT_E_TOOBIG, CT_E_NOMEM.
 */
ct_err ctp_kubeconfig_parse(const char *text, size_t len, const char *context,
                            const char *where, const char *base_dir, ctp_kubeconfig *out,
                            ct_error *err);

/* Most files a kubeconfig merge takes (CT_K8S_KUBECONFIG_MAX_FILES). */
#define CTP_KUBECONFIG_MAX_FILES CT_K8S_KUBECONFIG_MAX_FILES

/* One file of a merge: its text, its name for messages, its directory. */
typedef struct ctp_kubeconfig_src {
    const char *text;
    size_t len;          /* at most CT_K8S_KUBECONFIG_MAX */
    const char *where;   /* names the file in messages (NULL: "(text)") */
    const char *base_dir; /* relative paths of entries defined here (NULL: as they are) */
} ctp_kubeconfig_src;

/*
 * Merges files[0..n) (1..CTP_KUBECONFIG_MAX_FILES) as kubectl merges a
 * KUBECONFIG list, and resolves `context` (NULL: the merged
 * current-context) as ctp_kubeconfig_parse does:
 *   - every file is parsed and its shape checked (a malformed file is an
 *     error naming it, even when nothing is taken from it); with n > 1 an
 *     empty file is an empty configuration;
 *   - current-context: the first file that sets it;
 *   - clusters, users, contexts: the first file that defines a name wins,
 *     and its entry is taken whole (never merged field by field with a
 *     later file's entry of the same name); two entries of one name in the
 *     same file are an error;
 *   - relative paths of an entry resolve against the base_dir of the file
 *     that defined it; out->*_src say which file that was.
 * ctp_kubeconfig_parse(text, ...) is this function with one file.
 * Errors: those of ctp_kubeconfig_parse, CT_E_INVALID for n == 0 or n >
 * CTP_KUBECONFIG_MAX_FILES. On error *out is cleared.
 */
ct_err ctp_kubeconfig_merge(const ctp_kubeconfig_src *files, size_t n, const char *context,
                            ctp_kubeconfig *out, ct_error *err);

/* Wipes the secrets and frees every field; leaves *k zeroed. */
void ctp_kubeconfig_clear(ctp_kubeconfig *k);

/*
 * Checks a server URL: https://, a host (a name, IPv4 or a bracketed IPv6
 * literal), an optional port 1..65535, an optional path prefix; no user
 * info, query or fragment. Writes it without a trailing '/' into *out
 * (malloc'ed). Errors: CT_E_INVALID, CT_E_UNSUPPORTED (http://).
 */
ct_err ctp_k8s_server_url(const char *url, char **out, ct_error *err);

/*
 * An object name or namespace as the API accepts it in a path (DNS-1123
 * subdomain: 1..253 of [a-z0-9.-], starting and ending alphanumeric).
 * Returns 1 when valid.
 */
int ctp_k8s_valid_name(const char *s);

#endif
