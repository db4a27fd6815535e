/*
 * cloudtaser/register.h - registering a cluster on the secret-store side
 * (the "Register" step of the self-bootstrap).
 *
 * ct_register creates, all in memory, a per-cluster CA (ECDSA P-256) and the
 * bridge's client certificate issued by it, and writes them with a
 * registration record to a ct_store. Store layout (values are JSON; in a
 * Vault KV v2 mount "cloudtaser" the keys are cloudtaser/data/<key>):
 *
 *   clusters/<fp>/ca          {"v":1,"cert":"<PEM>","key":"<PEM>"}
 *   clusters/<fp>/bridge      {"v":1,"cert":"<PEM>","key":"<PEM>"}
 *   clusters/<fp>/registered  {"v":1,"fingerprint":"<fp>","registered_at":<ms>,
 *                              "expires_at":<ms>,"init_room":"<hex>",
 *                              "operational_room":"<hex>"}
 *   clusters/<fp>/initialized {"v":1,"fingerprint":"<fp>","initialized_at":<ms>,
 *                              "updated_at":<ms>,"audience":"<aud>","jwks":{...},
 *                              "issuer":"<iss>","subject":"<sub>","reissues":<n>,
 *                              "jtis":[{"jti":"<id>","exp":<s>},...]}
 *                             written create-only by the bootstrap (bootstrap.h,
 *                             PROTOCOL.md 2.5) before it signs anything, updated
 *                             with check-and-set by re-bootstraps; its presence
 *                             makes the registration CT_REG_INITIALIZED.
 *   system/layout             {"v":1,"layout":1,"created_at":<ms>}: the store
 *                             layout version (CT_STORE_LAYOUT), written
 *                             create-only by the first ct_register on a store
 *                             and never deleted (see ct_store_layout_check).
 *   clusters/<fp>/connected   {"v":1,"since":<ms>,"heartbeat":<ms>}: written
 *                             by a bridge while it has a live operational
 *                             session, refreshed every 10 s; a heartbeat
 *                             younger than 30 s makes an initialized
 *                             registration CT_REG_CONNECTED.
 *
 * <fp> is the canonical (lowercase) fingerprint (room.h). Times are Unix
 * milliseconds from the context's wall clock (ct_ctx_wall_ms).
 *
 * Thread-safety: as common.h; a ct_registration is immutable and may be read
 * by several threads at once. Concurrent ct_register calls for one cluster
 * on a store with CT_STORE_F_CAS: at most one succeeds.
 * Nothing here logs key material or a full fingerprint.
 */
#ifndef CLOUDTASER_REGISTER_H
#define CLOUDTASER_REGISTER_H

#include "common.h"
#include "context.h"
#include "room.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_registration ct_registration;

typedef enum ct_reg_state {
    CT_REG_REGISTERED = 1,  /* registered, not yet initialized, not expired */
    CT_REG_INITIALIZED = 2, /* the bootstrap wrote clusters/<fp>/initialized */
    CT_REG_EXPIRED = 3,     /* not initialized and now > expires_at */
    CT_REG_CONNECTED = 4,   /* initialized, and a bridge reports a live session */
    CT_REG_STATE_FORCE_INT32_ = 0x7fffffff
} ct_reg_state;

#define CT_REGISTER_OPTIONS_VERSION 1
#define CT_REGISTER_DEFAULT_EXPIRY_S 86400u

typedef struct ct_register_options {
    uint32_t version;  /* CT_REGISTER_OPTIONS_VERSION */
    /* Seconds until an uninitialized registration expires (0: 86400). */
    uint32_t expiry_s;
} ct_register_options;

#define CT_REGISTER_OPTIONS_INIT { .version = CT_REGISTER_OPTIONS_VERSION }

/*
 * Registers the cluster `fingerprint` (validated and canonicalised) in
 * `store`. `opts` may be NULL for the defaults. On success *out (if `out`
 * is not NULL) is the new registration (free with ct_registration_free).
 *
 * The store's layout is checked first (ct_store_layout_check) and, if the
 * store has no system/layout record yet, one is written (create-only; a
 * concurrent writer's record is re-checked). The key material records are
 * written create-only next, the `registered` record last; on any failure every record this call wrote is
 * deleted again, so a failed call leaves nothing behind but the store's
 * system/layout record, which is never deleted (best effort: if the store
 * also fails the clean-up, err->message says so).
 *
 * Memory: the private keys are exported into ct_secret buffers and the
 * JSON values serialised into ct_secret buffers; jansson's copies of the
 * PEM strings are wiped (json_string values are overwritten in place)
 * before the tree is freed. What remains outside ct_secret memory: the
 * transient copies inside wolfSSL's key handling (wiped by it) and the
 * store's own (see the store's documentation).
 *
 * Errors: CT_E_INVALID (bad fingerprint or arguments), CT_E_VERSION (also:
 * the store's layout is newer), CT_E_CONFLICT (already registered:
 * deregister first), CT_E_CRYPTO,
 * CT_E_NOMEM, and the store's errors (CT_E_STORE, CT_E_UNSUPPORTED, ...).
 */
CT_API ct_err ct_register(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                          const ct_register_options *opts, ct_registration **out,
                          ct_error *err);

/*
 * Deregistration and data kept for the cluster. The registration's own
 * records sit directly in clusters/<fp>/ (ca, bridge, registered,
 * initialized, connected, reviewer, vault-jwt, ...). Anything in a folder
 * below it (clusters/<fp>/<dir>/...) is the cluster's data: the Secrets
 * migrated from Kubernetes (migrate.h: the path template always starts with
 * a literal folder, secrets/ by default), possibly the only copy left of
 * them. Deregistering never deletes data unless told to.
 */
#define CT_DEREGISTER_REFUSE_DATA 0u /* data present: CT_E_CONFLICT, nothing deleted */
#define CT_DEREGISTER_KEEP_DATA 1u   /* delete the registration, keep the data */
#define CT_DEREGISTER_DELETE_DATA 2u /* delete the registration and the data */

#define CT_DEREGISTER_OPTIONS_VERSION 1
typedef struct ct_deregister_options {
    uint32_t version; /* CT_DEREGISTER_OPTIONS_VERSION */
    uint32_t data;    /* CT_DEREGISTER_*_DATA; default REFUSE */
} ct_deregister_options;
#define CT_DEREGISTER_OPTIONS_INIT { .version = CT_DEREGISTER_OPTIONS_VERSION }

/*
 * Deregisters a cluster (the store must support list): deletes its
 * registration records, `registered` first, so the cluster is revoked (its
 * CA and the bridge's credentials are gone; the operator can no longer
 * connect). Its data (see above) is handled as opts->data says (opts NULL:
 * REFUSE). With KEEP_DATA the copies stay where they are
 * (clusters/<fp>/<template path>), readable in the store; registering the
 * same fingerprint again and running `cloudtaser target migrate restore`
 * recreates the Secrets from them. *data_records (may be NULL): the number
 * of data records found (refused, kept or deleted).
 * Errors: CT_E_INVALID, CT_E_VERSION, CT_E_NOTFOUND (no registration
 * record; with KEEP_DATA also when only kept data is left), CT_E_CONFLICT
 * (REFUSE and data present: the message gives the count and the options),
 * CT_E_UNSUPPORTED, CT_E_STORE; CT_E_VERSION also for a newer store layout.
 * The store's system/layout record is never deleted.
 */
CT_API ct_err ct_deregister_ex(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                               const ct_deregister_options *opts, size_t *data_records,
                               ct_error *err);

/*
 * ct_deregister_ex with opts NULL: refuses (CT_E_CONFLICT) while migrated
 * data exists under clusters/<fp>/; else deletes every record of the
 * cluster. Errors: as ct_deregister_ex.
 */
CT_API ct_err ct_deregister(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                            ct_error *err);

/* The store layout this library reads and writes (the key list above). */
#define CT_STORE_LAYOUT 1

/*
 * Checks the store's layout record (system/layout). A store without one
 * (made before the record existed, or never registered to) is accepted, as
 * is one whose layout is at most CT_STORE_LAYOUT. If `layout` is not NULL
 * it receives the recorded layout (0: no record).
 * ct_register, ct_deregister(_ex) and ct_registration_list call this first,
 * so the bridge's scan and the CLI refuse a store they do not understand.
 * Errors: CT_E_INVALID, CT_E_VERSION (the store's layout, or the record's
 * format, is newer than this library: the message says to upgrade),
 * CT_E_STORE (the record is corrupt: the message names it), and the
 * store's errors.
 */
CT_API ct_err ct_store_layout_check(ct_ctx *ctx, ct_store *store, uint32_t *layout,
                                    ct_error *err);

/*
 * Reads a registration. *out: free with ct_registration_free.
 * Errors: CT_E_INVALID, CT_E_NOTFOUND (not registered), CT_E_STORE (the
 * record is malformed; the message names the key), CT_E_NOMEM.
 */
CT_API ct_err ct_registration_get(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                                  ct_registration **out, ct_error *err);

/*
 * The fingerprints of every registered cluster (those with a `registered`
 * record), sorted, into a new list (ct_strlist_free). Checks the store's
 * layout first (ct_store_layout_check).
 * Errors: CT_E_INVALID, CT_E_VERSION (newer layout), CT_E_UNSUPPORTED,
 * CT_E_STORE, CT_E_NOMEM.
 */
CT_API ct_err ct_registration_list(ct_ctx *ctx, ct_store *store,
                                   ct_strlist **fingerprints, ct_error *err);

/* Accessors; borrowed pointers live until ct_registration_free. */
CT_API const char *ct_registration_fingerprint(const ct_registration *r);
CT_API int64_t ct_registration_registered_at(const ct_registration *r);
CT_API int64_t ct_registration_expires_at(const ct_registration *r);
CT_API const uint8_t *ct_registration_init_room(const ct_registration *r);
CT_API const uint8_t *ct_registration_operational_room(const ct_registration *r);
/*
 * The state when the registration was read (ct_registration_get or
 * ct_register), judged by the context's wall clock at that time.
 */
CT_API ct_reg_state ct_registration_state(const ct_registration *r);
/*
 * "registered", "initialized", "connected", "expired" ("unknown"
 * otherwise). Never NULL.
 */
CT_API const char *ct_reg_state_name(ct_reg_state s);

/* Frees. NULL is a no-op. */
CT_API void ct_registration_free(ct_registration *r);

#ifdef __cplusplus
}
#endif
#endif
