/*
 * fuzz_review_body.c - the body Vault POSTs to the bridge's TokenReview
 * endpoint is hostile input (anyone holding the reviewer token, or a
 * compromised Vault, writes it). The input goes to ctp_review_build_op
 * (review_json.c), the parser the endpoint uses. Contracts: no over-read or
 * leak (ASan); on failure nothing is returned and the reason is printable;
 * on success the session request is a JSON object {"op":"k8s.tokenreview",
 * "token":T[,"audiences":A]} whose token is exactly spec.token of the input
 * (bounded, no NUL) and whose audiences are a bounded list of non-empty
 * strings, and the echoed spec carries the same token.
 *
 * The parser is internal (ctp_review_*): meson links review_json.c and
 * error.c into this program, the rest comes from the library.
 */
#include "review_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t out_len = 0, i;
    json_t *spec = NULL, *op, *in, *a;
    const char *why = NULL;
    ct_err rc = ctp_review_build_op((const char *)data, size, &out, &out_len, &spec, &why);

    if (rc != CT_OK) {
        if (out || spec || !why)
            abort();
        for (i = 0; why[i]; i++)
            if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] >= 0x7f)
                abort();
        return 0;
    }
    op = json_loadb(out, out_len, JSON_REJECT_DUPLICATES, NULL);
    in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(op) || !json_is_object(in) || strlen(out) != out_len)
        abort();
    if (!json_is_string(json_object_get(op, "op")) ||
        strcmp(json_string_value(json_object_get(op, "op")), "k8s.tokenreview") != 0)
        abort();
    if (!json_equal(json_object_get(op, "token"),
                    json_object_get(json_object_get(in, "spec"), "token")) ||
        !json_equal(json_object_get(op, "token"), json_object_get(spec, "token")))
        abort();
    if (json_string_length(json_object_get(op, "token")) == 0 ||
        json_string_length(json_object_get(op, "token")) > CTP_REVIEW_MAX_TOKEN)
        abort();
    a = json_object_get(op, "audiences");
    if (a) {
        if (!json_is_array(a) || json_array_size(a) > CTP_REVIEW_MAX_AUDIENCES)
            abort();
        for (i = 0; i < json_array_size(a); i++)
            if (!json_is_string(json_array_get(a, i)) ||
                json_string_length(json_array_get(a, i)) == 0)
                abort();
    }
    json_decref(op);
    json_decref(in);
    ct_secure_wipe(out, out_len);
    free(out);
    ctp_review_free_json(spec);
    return 0;
}
