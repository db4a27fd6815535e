/*
 * review_internal.h - what review.c (the bridge's k8s.jwks sink) needs from
 * review_vault.c (Vault's JWT auth method as the offline fallback).
 */
#ifndef CTP_REVIEW_INTERNAL_H
#define CTP_REVIEW_INTERNAL_H

#include "cloudtaser/review.h"

/* The store record naming the cluster's JWT auth mount: clusters/<fp>/<this>. */
#define CTP_REVIEW_JWT_RECORD "vault-jwt"

/*
 * Brings the cluster's JWT auth mount (if `cloudtaser source configure-auth
 * --jwt` recorded one in clusters/<fp>/vault-jwt) up to the key set pinned
 * in clusters/<fp>/initialized: POST auth/<mount>/config with the keys as
 * PEM, then records the set written (check-and-set). *done: 1 if Vault was
 * updated, 0 if there is no mount or it already has this set. mount_out
 * (128 bytes, may be NULL): the mount concerned, "" if none.
 * Errors: those of the store, of the HTTP client, CT_E_DENIED (403),
 * CT_E_PROTO (another answer), CT_E_STORE (a malformed record).
 */
ct_err ctp_review_jwt_sync(ct_ctx *ctx, ct_store *store, const ct_vault_options *vo,
                           const char *fp, int *done, char *mount_out, ct_error *err);

#endif
