/*
 * json_wipe.h - wiping jansson trees that may hold secrets (private).
 *
 * jansson has no hook to clear its strings before it frees them, so trees
 * that carried a secret (a token, a Secret's data, a Vault answer) are
 * overwritten in place first. Header-only: the pure parsers that tests and
 * fuzz targets compile on their own use it without another object file.
 */
#ifndef CTP_JSON_WIPE_H
#define CTP_JSON_WIPE_H

#include <cloudtaser/secret.h>

#include <jansson.h>
#include <stdint.h>

/* Deeper than jansson's parser allows (2048): every parsed string is reached. */
#define CTP_JSON_WIPE_DEPTH 4096

static inline void ctp_json_wipe_depth(json_t *v, int depth)
{
    const char *k;
    json_t *x;
    size_t i;
    if (!v || depth > CTP_JSON_WIPE_DEPTH)
        return;
    if (json_is_string(v)) {
        ct_secure_wipe((void *)(uintptr_t)json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, x)
            ctp_json_wipe_depth(x, depth + 1);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
            ctp_json_wipe_depth(x, depth + 1);
    }
}

/* Overwrites every string value of a tree in place (member names stay). */
static inline void ctp_json_wipe(json_t *v)
{
    ctp_json_wipe_depth(v, 0);
}

/* Wipes, then drops the caller's reference. NULL is a no-op. */
static inline void ctp_json_free_wiped(json_t *v)
{
    ctp_json_wipe(v);
    json_decref(v);
}

#endif
