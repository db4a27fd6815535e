/*
 * review_internal.h - what review.c (the bridge's k8s.jwks sink) needs from
 * review_vault.c (Vault's JWT auth method as the offline fallback).
 */
#ifndef CTP_REVIEW_INTERNAL_H
#define CTP_REVIEW_INTERNAL_H

#include "cloudtaser/review.h"

#include <jansson.h>

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

/* Limits of a TokenReview request from Vault. */
#define CTP_REVIEW_MAX_TOKEN 16384u
#define CTP_REVIEW_MAX_AUDIENCES 16u

/* ---- review_json.c: pure, fuzzed (fuzz/fuzz_review_body.c) ---- */

/* Wipes every string of a JSON tree (nesting up to 16), then frees it. NULL: no-op. */
void ctp_review_free_json(json_t *v);
/* Compact JSON (member order kept) in a malloc'ed NUL-terminated buffer; NULL on failure. */
char *ctp_review_dump(const json_t *v, size_t *len);
/*
 * The body Vault POSTs to the TokenReview endpoint -> the session request
 * {"op":"k8s.tokenreview","token":...,"audiences":[...]} (*out, malloc'ed,
 * *out_len bytes; wipe before freeing: it holds the token) and the spec to
 * echo back (*spec_out, free with ctp_review_free_json). On failure *out and
 * *spec_out are NULL and *why is a static, printable reason for the 400.
 * Accepts a JSON object whose kind (if present) is "TokenReview", with
 * spec.token a non-empty string of at most CTP_REVIEW_MAX_TOKEN bytes and no
 * NUL, and spec.audiences absent, null, or a list of at most
 * CTP_REVIEW_MAX_AUDIENCES non-empty strings of at most 1024 bytes.
 * Errors: CT_E_INVALID, CT_E_NOMEM.
 */
ct_err ctp_review_build_op(const char *body, size_t len, char **out, size_t *out_len,
                           json_t **spec_out, const char **why);

#endif
