/*
 * review_json.c - the JSON of the TokenReview endpoint (review.c) as pure
 * functions, so the parser of what Vault sends can be fuzzed on its own
 * (fuzz/fuzz_review_body.c): no I/O, no libmicrohttpd, no session.
 */
#include "internal.h"
#include "review_internal.h"
#include "json_wipe.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void ctp_review_free_json(json_t *v)
{
    ctp_json_free_wiped(v);
}

/* json_dumpb into a malloc'd buffer (NUL-terminated). NULL on failure. */
char *ctp_review_dump(const json_t *v, size_t *len)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t need = json_dumpb(v, NULL, 0, flags);
    char *b;
    if (need == 0 || !(b = malloc(need + 1)))
        return NULL;
    if (json_dumpb(v, b, need, flags) != need) {
        free(b);
        return NULL;
    }
    b[need] = '\0';
    *len = need;
    return b;
}

/* Vault's body -> the session request; *spec: the spec to echo back. */
ct_err ctp_review_build_op(const char *body, size_t len, char **out, size_t *out_len,
                       json_t **spec_out, const char **why)
{
    json_error_t je;
    json_t *in = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    json_t *kind = json_object_get(in, "kind"), *spec = json_object_get(in, "spec");
    json_t *tok = json_object_get(spec, "token"), *aud = json_object_get(spec, "audiences");
    json_t *op = NULL, *a;
    size_t i;
    ct_err rc = CT_E_INVALID;

    *out = NULL;
    *spec_out = NULL;
    if (!json_is_object(in) || (kind && (!json_is_string(kind) ||
                                         strcmp(json_string_value(kind), "TokenReview") != 0))) {
        *why = "the object provided is unrecognized (must be of type TokenReview)";
        goto out;
    }
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        *why = "token is required for TokenReview in authentication";
        goto out;
    }
    if (json_string_length(tok) > CTP_REVIEW_MAX_TOKEN ||
        strlen(json_string_value(tok)) != json_string_length(tok)) {
        *why = "spec.token is too long or not text";
        goto out;
    }
    if (aud && !json_is_null(aud)) {
        if (!json_is_array(aud) || json_array_size(aud) > CTP_REVIEW_MAX_AUDIENCES) {
            *why = "spec.audiences is not a list of at most 16 strings";
            goto out;
        }
        json_array_foreach(aud, i, a)
            if (!json_is_string(a) || json_string_length(a) == 0 ||
                json_string_length(a) > 1024) {
                *why = "spec.audiences is not a list of non-empty strings";
                goto out;
            }
    } else {
        aud = NULL;
    }
    op = json_pack("{s:s,s:O}", "op", "k8s.tokenreview", "token", tok);
    if (op && aud)
        json_object_set(op, "audiences", aud);
    if (!op || !(*out = ctp_review_dump(op, out_len))) {
        rc = CT_E_NOMEM;
        *why = "out of memory";
        goto out;
    }
    *spec_out = json_object();
    if (!*spec_out) {
        rc = CT_E_NOMEM;
        goto out;
    }
    json_object_set(*spec_out, "token", tok);
    if (aud)
        json_object_set(*spec_out, "audiences", aud);
    rc = CT_OK;
out:
    if (rc != CT_OK && *out) {
        ct_secure_wipe(*out, *out_len);
        free(*out);
        *out = NULL;
    }
    /* tok is shared by op, spec_out and in: wiped only when spec_out goes */
    json_decref(op);
    if (rc != CT_OK)
        ctp_review_free_json(in);
    else
        json_decref(in);
    return rc;
}

