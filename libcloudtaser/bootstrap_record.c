/*
 * bootstrap_record.c - clusters/<fp>/initialized, the one-time claim
 * (PROTOCOL.md 2.4):
 *
 *   {"v":1,"fingerprint":"<fp>","initialized_at":<ms>,"updated_at":<ms>,
 *    "audience":"<aud>","jwks":{<canonical key set>},"issuer":"<iss>",
 *    "subject":"<sub>","reissues":N,"jtis":[{"jti":"<id>","exp":<s>},...]}
 *
 * "jwks", "issuer" and "subject" are absent together when the first
 * bootstrap pinned nothing. The record holds no secret: only public keys
 * and token identifiers.
 */
#include "bootstrap_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_V 1

void ctp_boot_record_free(ctp_boot_record *r)
{
    if (!r)
        return;
    free(r->jwks);
    free(r);
}

void ctp_boot_record_prune(ctp_boot_record *r, int64_t now_s)
{
    size_t i, o = 0;
    for (i = 0; i < r->n_jtis; i++) {
        /* a token past exp + leeway no longer verifies: forget it (written so
         * that a stored exp near INT64_MAX cannot overflow) */
        if (r->jtis[i].exp < now_s - (int64_t)CTP_BOOT_LEEWAY_S)
            continue;
        if (o != i)
            r->jtis[o] = r->jtis[i];
        o++;
    }
    r->n_jtis = o;
}

int ctp_boot_record_has_jti(const ctp_boot_record *r, const char *id)
{
    size_t i;
    for (i = 0; i < r->n_jtis; i++)
        if (strcmp(r->jtis[i].id, id) == 0)
            return 1;
    return 0;
}

int ctp_boot_record_add_jti(ctp_boot_record *r, const char *id, int64_t exp)
{
    size_t n = strlen(id);
    if (r->n_jtis >= CTP_BOOT_MAX_JTIS || n >= sizeof r->jtis[0].id)
        return -1;
    memcpy(r->jtis[r->n_jtis].id, id, n + 1);
    r->jtis[r->n_jtis].exp = exp;
    r->n_jtis++;
    return 0;
}

ct_err ctp_boot_record_encode(const ctp_boot_record *r, char **out, size_t *out_len,
                              ct_error *err)
{
    json_t *o = NULL, *jtis = NULL, *ks = NULL;
    size_t i;
    ct_err rc = CT_OK;

    *out = NULL;
    *out_len = 0;
    o = json_pack("{s:i, s:s, s:I, s:I, s:s, s:I}", "v", RECORD_V, "fingerprint",
                  r->fingerprint, "initialized_at", (json_int_t)r->initialized_at,
                  "updated_at", (json_int_t)r->updated_at, "audience", r->audience, "reissues",
                  (json_int_t)r->reissues);
    jtis = json_array();
    if (!o || !jtis)
        goto nomem;
    for (i = 0; i < r->n_jtis; i++) {
        json_t *e = json_pack("{s:s, s:I}", "jti", r->jtis[i].id, "exp",
                              (json_int_t)r->jtis[i].exp);
        if (!e || json_array_append_new(jtis, e) != 0)
            goto nomem;
    }
    if (json_object_set(o, "jtis", jtis) != 0)
        goto nomem;
    if (r->jwks) {
        json_error_t je;
        ks = json_loads(r->jwks, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(ks)) {
            rc = ctp_err(err, CT_E_INVALID, 0, "the pinned key set is not a JSON object");
            goto out;
        }
        if (json_object_set(o, "jwks", ks) != 0 ||
            json_object_set_new(o, "issuer", json_string(r->issuer)) != 0 ||
            json_object_set_new(o, "subject", json_string(r->subject)) != 0)
            goto nomem;
    }
    *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*out)
        goto nomem;
    *out_len = strlen(*out);
    goto out;
nomem:
    rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory building the initialized record");
out:
    json_decref(ks);
    json_decref(jtis);
    json_decref(o);
    return rc;
}

/* Copies a string member (required unless `optional`) into out[size]. */
static int get_str(json_t *o, const char *name, char *out, size_t size, int optional)
{
    json_t *v = json_object_get(o, name);
    size_t n;
    out[0] = '\0';
    if (!v)
        return optional ? 0 : -1;
    if (!json_is_string(v))
        return -1;
    n = json_string_length(v);
    if (n >= size || strlen(json_string_value(v)) != n)
        return -1;
    memcpy(out, json_string_value(v), n + 1);
    return 0;
}

ct_err ctp_boot_record_decode(const char *key, const char *fp, const uint8_t *data, size_t len,
                              ctp_boot_record **out, ct_error *err)
{
    json_error_t je;
    json_t *o, *v, *a, *b, *jtis, *ks;
    ctp_boot_record *r = NULL;
    size_t i;
    ct_err rc = CT_OK;

    *out = NULL;
    o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s' is not a JSON object", key);
        goto out;
    }
    if (!(r = calloc(1, sizeof *r))) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    v = json_object_get(o, "v");
    if (!json_is_integer(v) || json_integer_value(v) != RECORD_V) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': missing or unsupported \"v\"", key);
        goto out;
    }
    a = json_object_get(o, "initialized_at");
    b = json_object_get(o, "updated_at");
    v = json_object_get(o, "reissues");
    jtis = json_object_get(o, "jtis");
    ks = json_object_get(o, "jwks");
    if (get_str(o, "fingerprint", r->fingerprint, sizeof r->fingerprint, 0) != 0 ||
        strcmp(r->fingerprint, fp) != 0 ||
        get_str(o, "audience", r->audience, sizeof r->audience, 0) != 0 || !json_is_integer(a) ||
        !json_is_integer(b) || !json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > UINT32_MAX || !json_is_array(jtis) ||
        json_array_size(jtis) > CTP_BOOT_MAX_JTIS || (ks && !json_is_object(ks)) ||
        get_str(o, "issuer", r->issuer, sizeof r->issuer, 1) != 0 ||
        get_str(o, "subject", r->subject, sizeof r->subject, 1) != 0 ||
        (ks && (!r->issuer[0] || !r->subject[0])) ||
        /* the three are present or absent together (as encode writes them) */
        (!ks && (json_object_get(o, "issuer") || json_object_get(o, "subject")))) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': missing or mistyped fields", key);
        goto out;
    }
    r->initialized_at = (int64_t)json_integer_value(a);
    r->updated_at = (int64_t)json_integer_value(b);
    r->reissues = (uint32_t)json_integer_value(v);
    for (i = 0; i < json_array_size(jtis); i++) {
        json_t *e = json_array_get(jtis, i), *exp = json_object_get(e, "exp");
        char id[CT_JWT_CLAIM_MAX];
        if (!json_is_object(e) || get_str(e, "jti", id, sizeof id, 0) != 0 || !id[0] ||
            !json_is_integer(exp)) {
            rc = ctp_err(err, CT_E_STORE, 0, "record '%s': malformed \"jtis\" entry", key);
            goto out;
        }
        ctp_boot_record_add_jti(r, id, (int64_t)json_integer_value(exp));
    }
    if (ks && !(r->jwks = json_dumps(ks, JSON_COMPACT | JSON_SORT_KEYS))) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    *out = r;
    r = NULL;
out:
    json_decref(o);
    ctp_boot_record_free(r);
    return rc;
}
