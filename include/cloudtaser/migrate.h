/*
 * cloudtaser/migrate.h - migration of existing Kubernetes Secrets into the
 * vault, through the operational session, with no vault token on the
 * cluster side.
 *
 *   plan     (cluster side, Kubernetes credentials only) lists the Secrets
 *            in scope and classifies each: migrate, or skip with a reason
 *            (service-account tokens, Helm release records, bootstrap
 *            tokens, Secrets owned by another object, names too long for a
 *            store key).
 *   apply    (in the operator) for each Secret to migrate: "migrate.put"
 *            sends it to the bridge, which writes it with ITS OWN store
 *            credentials under this cluster's prefix only; "migrate.get"
 *            reads it back and it is compared byte for byte; only then is
 *            the Secret deleted from Kubernetes with preconditions (uid +
 *            resourceVersion), so a Secret changed meanwhile is never
 *            deleted (it is kept and reported); "migrate.mark" then records
 *            state "deleted" in the vault copy.
 *   restore  (in the operator) recreates Secrets from the vault copies
 *            ("migrate.list" + "migrate.get"), then marks them "restored".
 *
 * The journal is the vault copy itself: a record carries the Secret's uid,
 * resourceVersion and a state ("copied", "deleted", "restored"), so a killed
 * migration resumes by running apply again (Secrets still in Kubernetes are
 * copied again and deleted; those already deleted are no longer listed),
 * and re-running is idempotent. The bridge refuses (CT_E_CONFLICT) to
 * overwrite a copy of a DIFFERENT Secret of the same name (another uid)
 * unless that copy was restored: it may be the only copy left.
 *
 * Store layout (bridge side): clusters/<fingerprint>/ + the path template
 * (default "secrets/{namespace}/{name}"), a JSON record
 *   {"v":1,"namespace":..,"name":..,"uid":..,"resourceVersion":..,
 *    "type":..,"labels":{..},"data":{"key":"<base64>",..},"state":..}
 * On the Vault store that is <mount>/data/clusters/<fp>/secrets/<ns>/<name>.
 * PROTOCOL.md section 5 documents the ops.
 *
 * Secret values are kept in ct_secret buffers and wiped; the JSON that
 * carries them is built into ct_secret buffers and jansson's copies are
 * wiped before they are freed. Nothing here logs a value.
 *
 * Thread-safety: as common.h. Plans and reports are immutable once made.
 * A ct_migrate_server is read-only after ct_migrate_server_new and serves
 * many requests at once.
 */
#ifndef CLOUDTASER_MIGRATE_H
#define CLOUDTASER_MIGRATE_H

#include "common.h"
#include "k8s.h"
#include "router.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- plan */

typedef enum ct_migrate_reason {
    CT_MIGRATE_GO = 0,             /* will be migrated */
    CT_MIGRATE_SKIP_SA_TOKEN = 1,  /* type kubernetes.io/service-account-token */
    CT_MIGRATE_SKIP_HELM = 2,      /* type helm.sh/release.v1 */
    CT_MIGRATE_SKIP_BOOTSTRAP = 3, /* type bootstrap.kubernetes.io/token */
    CT_MIGRATE_SKIP_OWNED = 4,     /* metadata.ownerReferences present */
    CT_MIGRATE_SKIP_NAME = 5,      /* namespace or name over 128 characters */
    CT_MIGRATE_REASON_FORCE_INT32_ = 0x7fffffff
} ct_migrate_reason;

/* Classifies one Secret (pure; thread-safe). */
CT_API ct_migrate_reason ct_migrate_classify(const ct_k8s_secret *s);
/* "migrate", "service-account-token", "helm-release", "bootstrap-token", "owned", "name-too-long". */
CT_API const char *ct_migrate_reason_name(ct_migrate_reason r);
/* A sentence saying why (static). */
CT_API const char *ct_migrate_reason_text(ct_migrate_reason r);

typedef struct ct_migrate_plan ct_migrate_plan;

#define CT_MIGRATE_SCOPE_VERSION 1
typedef struct ct_migrate_scope {
    uint32_t version;               /* CT_MIGRATE_SCOPE_VERSION */
    const char *const *namespaces;  /* NULL or n_namespaces == 0: the client's namespace */
    size_t n_namespaces;
    const char *label_selector;     /* NULL: none */
} ct_migrate_scope;
#define CT_MIGRATE_SCOPE_INIT { .version = CT_MIGRATE_SCOPE_VERSION }

/*
 * Lists the Secrets in scope (ct_k8s_list_secrets per namespace, in the
 * order given) and classifies each. *out: free with ct_migrate_plan_free.
 * Errors: those of ct_k8s_list_secrets; CT_E_INVALID, CT_E_VERSION,
 * CT_E_NOMEM.
 */
CT_API ct_err ct_migrate_plan_new(ct_k8s_client *c, const ct_migrate_scope *scope,
                                  ct_migrate_plan **out, ct_error *err);
CT_API size_t ct_migrate_plan_count(const ct_migrate_plan *p);
/* Item i (borrowed until the plan is freed); NULL out of range. */
CT_API const ct_k8s_secret *ct_migrate_plan_secret(const ct_migrate_plan *p, size_t i);
CT_API ct_migrate_reason ct_migrate_plan_reason(const ct_migrate_plan *p, size_t i);
/* Number of items with reason CT_MIGRATE_GO. */
CT_API size_t ct_migrate_plan_to_migrate(const ct_migrate_plan *p);
/*
 * The plan as JSON (no values): {"secrets":[{"namespace","name","type",
 * "action":"migrate"|"skip","reason":..,"why":..}],"migrate":N,"skip":M}.
 * *json: free with ct_free. Errors: CT_E_NOMEM.
 */
CT_API ct_err ct_migrate_plan_json(const ct_migrate_plan *p, char **json, ct_error *err);
CT_API void ct_migrate_plan_free(ct_migrate_plan *p);

/* ------------------------------------------------------ apply / restore */

/*
 * Sends one request to the bridge and returns its answer (malloc'd, the
 * caller wipes and frees it with ct_free), e.g. ct_operator_request.
 */
typedef ct_err (*ct_migrate_request_fn)(void *arg, const void *req, size_t len,
                                        uint8_t **resp, size_t *resp_len, ct_error *err);

typedef struct ct_migrate_progress {
    size_t total;     /* Secrets in the run */
    size_t done;      /* handled so far (any outcome) */
    size_t migrated, skipped, kept, failed, restored, exists;
    double elapsed_s; /* since the run started */
    double rate;      /* done / elapsed_s (Secrets per second) */
} ct_migrate_progress;
typedef void (*ct_migrate_progress_fn)(void *arg, const ct_migrate_progress *p);

#define CT_MIGRATE_RUN_OPTIONS_VERSION 1
typedef struct ct_migrate_run_options {
    uint32_t version;               /* CT_MIGRATE_RUN_OPTIONS_VERSION */
    ct_migrate_request_fn request;  /* required */
    void *request_arg;
    ct_migrate_progress_fn progress; /* may be NULL; called after every Secret */
    void *progress_arg;
    const char *const *namespaces;  /* restore only: NULL = every namespace */
    size_t n_namespaces;
} ct_migrate_run_options;
#define CT_MIGRATE_RUN_OPTIONS_INIT { .version = CT_MIGRATE_RUN_OPTIONS_VERSION }

typedef enum ct_migrate_outcome {
    CT_MIGRATE_MIGRATED = 0, /* copied, verified, deleted from Kubernetes */
    CT_MIGRATE_SKIPPED = 1,  /* by the plan's reason, or a copy of another Secret exists */
    CT_MIGRATE_KEPT = 2,     /* changed during migration: kept in Kubernetes; re-run */
    CT_MIGRATE_FAILED = 3,   /* an error (the message says which step); nothing deleted
                              * unless the message says so */
    CT_MIGRATE_RESTORED = 4, /* restore: recreated in Kubernetes */
    CT_MIGRATE_EXISTS = 5,   /* restore: a Secret of that name exists; left alone */
    CT_MIGRATE_OUTCOME_FORCE_INT32_ = 0x7fffffff
} ct_migrate_outcome;
CT_API const char *ct_migrate_outcome_name(ct_migrate_outcome o);

typedef struct ct_migrate_report ct_migrate_report;

/*
 * Migrates the plan's CT_MIGRATE_GO Secrets one by one as described at the
 * top of this file. A failure on one Secret is recorded in the report and
 * the run goes on, except when the session is gone or does not answer
 * (CT_E_CLOSED, CT_E_TIMEOUT) or the bridge does not serve the migration
 * (CT_E_UNSUPPORTED from the first request): then the run stops and
 * returns that error (*out is still set, with what was done; nothing was
 * deleted unverified; running again resumes). Deletion needs RBAC delete on secrets. *out: free with
 * ct_migrate_report_free.
 */
CT_API ct_err ct_migrate_apply(ct_k8s_client *c, const ct_migrate_plan *plan,
                               const ct_migrate_run_options *opts, ct_migrate_report **out,
                               ct_error *err);

/*
 * Recreates Secrets from the vault copies of this cluster (opts->namespaces
 * filters), each with its type, labels and data; an existing Secret of the
 * same name is left alone (CT_MIGRATE_EXISTS). A recreated copy is marked
 * "restored" (it may then be migrated again). Needs RBAC create on secrets.
 * Errors and *out: as ct_migrate_apply.
 */
CT_API ct_err ct_migrate_restore(ct_k8s_client *c, const ct_migrate_run_options *opts,
                                 ct_migrate_report **out, ct_error *err);

CT_API size_t ct_migrate_report_count(const ct_migrate_report *r);
/* Item i: strings borrowed until the report is freed; NULL / 0 out of range. */
CT_API const char *ct_migrate_report_namespace(const ct_migrate_report *r, size_t i);
CT_API const char *ct_migrate_report_name(const ct_migrate_report *r, size_t i);
CT_API ct_migrate_outcome ct_migrate_report_outcome(const ct_migrate_report *r, size_t i);
CT_API const char *ct_migrate_report_message(const ct_migrate_report *r, size_t i);
/* The totals (as in the last progress call). */
CT_API void ct_migrate_report_totals(const ct_migrate_report *r, ct_migrate_progress *out);
/*
 * {"items":[{"namespace","name","outcome","message"}],"migrated":N,...,
 * "seconds":S,"rate":R}. *json: free with ct_free. Errors: CT_E_NOMEM.
 */
CT_API ct_err ct_migrate_report_json(const ct_migrate_report *r, char **json, ct_error *err);
CT_API void ct_migrate_report_free(ct_migrate_report *r);

/* ------------------------------------------------------ bridge side */

typedef struct ct_migrate_server ct_migrate_server;

#define CT_MIGRATE_DEFAULT_TEMPLATE "secrets/{namespace}/{name}"

#define CT_MIGRATE_SERVER_OPTIONS_VERSION 1
typedef struct ct_migrate_server_options {
    uint32_t version;          /* CT_MIGRATE_SERVER_OPTIONS_VERSION */
    ct_store *store;           /* required; borrowed; used from several threads */
    /*
     * Where a Secret goes, below clusters/<fingerprint>/: a store key with
     * {namespace} and {name} each exactly once, as whole segments, after a
     * literal first segment (e.g. "migrated/{namespace}/{name}").
     * NULL: CT_MIGRATE_DEFAULT_TEMPLATE. Copied.
     */
    const char *path_template;
} ct_migrate_server_options;
#define CT_MIGRATE_SERVER_OPTIONS_INIT { .version = CT_MIGRATE_SERVER_OPTIONS_VERSION }

/* Errors: CT_E_INVALID (bad template), CT_E_VERSION, CT_E_NOMEM. */
CT_API ct_err ct_migrate_server_new(const ct_migrate_server_options *opts,
                                    ct_migrate_server **out, ct_error *err);
/*
 * Routes migrate.put, migrate.get, migrate.mark and migrate.list to the
 * server (which must outlive the router). Every op works only below the
 * requesting cluster's own prefix (the session's fingerprint).
 * Errors: those of ct_router_add.
 */
CT_API ct_err ct_migrate_server_routes(ct_migrate_server *m, ct_router *r, ct_error *err);
CT_API void ct_migrate_server_free(ct_migrate_server *m);

#ifdef __cplusplus
}
#endif
#endif
