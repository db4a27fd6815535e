/*
 * bootstrap_msg.c - the init messages (PROTOCOL.md 2.3): the operator's
 * request and the bridge's answer as JSON, base64 for the DER fields, and
 * the refusal names.
 *
 * Both decoders take hostile input (a request comes from whoever knows the
 * fingerprint, an answer from whoever does) and are fuzzed
 * (fuzz/fuzz_bootstrap_msg.c). The file uses no crypto, store or I/O, only
 * jansson, ctp_err and the public library, so the fuzz target can link it
 * on its own.
 *
 * The token is a credential: on the way in it is copied into a ct_secret
 * and jansson's copy is wiped before the tree is freed; on the way out the
 * request is serialised straight into a ct_secret and jansson's copy of the
 * token is wiped likewise. What remains: jansson's parser keeps the raw
 * string in a scratch buffer that it frees without wiping (no hook short
 * of a process-wide allocator, which a library must not install).
 */
#include "bootstrap_internal.h"
#include "b64.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MSG_V 1

/* ------------------------------------------------------------------ */
/* Refusal names                                                        */

static const char *const k_reasons[] = {
    [CT_BOOT_R_NONE] = "none",
    [CT_BOOT_R_BAD_REQUEST] = "bad_request",
    [CT_BOOT_R_WRONG_CLUSTER] = "wrong_cluster",
    [CT_BOOT_R_NOT_REGISTERED] = "not_registered",
    [CT_BOOT_R_EXPIRED] = "expired",
    [CT_BOOT_R_ALREADY_INITIALIZED] = "already_initialized",
    [CT_BOOT_R_BAD_TOKEN] = "bad_token",
    [CT_BOOT_R_TOKEN_REPLAY] = "token_replay",
    [CT_BOOT_R_NO_PINNED_KEYS] = "no_pinned_keys",
    [CT_BOOT_R_INTERNAL] = "internal",
};
#define N_REASONS (sizeof k_reasons / sizeof k_reasons[0])

const char *ct_boot_refusal_name(ct_boot_refusal r)
{
    if ((int)r >= 0 && (size_t)r < N_REASONS)
        return k_reasons[r];
    return "unknown";
}

ct_boot_refusal ctp_boot_refusal_from_name(const char *name)
{
    size_t i;
    for (i = 1; name && i < N_REASONS; i++)
        if (strcmp(name, k_reasons[i]) == 0)
            return (ct_boot_refusal)i;
    return CT_BOOT_R_NONE;
}

/* ------------------------------------------------------------------ */
/* Base64 (RFC 4648 section 4, padded; strict: b64.c)                  */

char *ctp_boot_b64_encode(const uint8_t *p, size_t n)
{
    size_t len = ctp_b64_encoded_len(n, CTP_B64_STD);
    char *s;
    if (len == 0 && n != 0)
        return NULL;
    if (!(s = malloc(len + 1)))
        return NULL;
    ctp_b64_encode(p, n, s, CTP_B64_STD);
    return s;
}

int ctp_boot_b64_decode(const char *s, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
    size_t cap = ctp_b64_decoded_max(len);
    uint8_t *buf;

    *out = NULL;
    *out_len = 0;
    if (len == 0)
        return -1;
    /* Padded base64 of more than `max` bytes is longer than this: refuse unread. */
    if (len / 4 > max / 3 + 1)
        return -2;
    if (!(buf = malloc(cap ? cap : 1)))
        return -3;
    if (ctp_b64_decode(s, len, buf, cap, out_len, CTP_B64_STD) != 0) {
        free(buf);
        *out_len = 0;
        return -1;
    }
    if (*out_len > max) {
        free(buf);
        *out_len = 0;
        return -2;
    }
    *out = buf;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

/* Overwrites a jansson string value in place (its bytes are ours to wipe). */
static void wipe_string(json_t *s)
{
    if (json_is_string(s))
        ct_secure_wipe((void *)(uintptr_t)json_string_value(s), json_string_length(s));
}

/* Copies printable ASCII of s (others as '?') into out[cap], cut. */
static void printable_copy(char *out, size_t cap, const char *s, size_t n)
{
    size_t i, m = n < cap - 1 ? n : cap - 1;
    for (i = 0; i < m; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[m] = '\0';
}

/* "v": 1 required. */
static ct_err check_v(json_t *o, const char *what, ct_error *err)
{
    json_t *v = json_object_get(o, "v");
    if (!json_is_integer(v))
        return ctp_err(err, CT_E_PROTO, 0, "%s: member \"v\" missing or not an integer", what);
    if (json_integer_value(v) != MSG_V)
        return ctp_err(err, CT_E_VERSION, 0, "%s: version %lld is not supported (only 1)", what,
                       (long long)json_integer_value(v));
    return CT_OK;
}

/* A base64 DER member (required). */
static ct_err get_der(json_t *o, const char *name, size_t max, const char *what, uint8_t **der,
                      size_t *len, ct_error *err)
{
    json_t *v = json_object_get(o, name);
    int r;
    if (!json_is_string(v))
        return ctp_err(err, CT_E_PROTO, 0, "%s: member \"%s\" missing or not a string", what,
                       name);
    r = ctp_boot_b64_decode(json_string_value(v), json_string_length(v), max, der, len);
    if (r == -3)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    if (r == -2)
        return ctp_err(err, CT_E_PROTO, 0, "%s: \"%s\" is larger than %zu bytes", what, name,
                       max);
    if (r != 0)
        return ctp_err(err, CT_E_PROTO, 0, "%s: \"%s\" is not valid base64 (RFC 4648, padded)",
                       what, name);
    return CT_OK;
}

static json_t *load(const uint8_t *json, size_t len, const char *what, ct_error *err,
                    ct_err *rc)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        /* je.text never holds string contents, only the position and kind */
        *rc = ctp_err(err, CT_E_PROTO, 0, "%s is not valid JSON (line %d column %d: %s)", what,
                      je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        *rc = ctp_err(err, CT_E_PROTO, 0, "%s is not a JSON object", what);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------------ */
/* Request                                                              */

ct_err ctp_boot_request_encode(const char *fingerprint, const uint8_t *csr, size_t csr_len,
                               const char *jwks, size_t jwks_len, const char *token,
                               size_t token_len, ct_secret **out, ct_error *err)
{
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    char *csr64 = NULL;
    json_t *o = NULL, *tok = NULL, *ks = NULL;
    ct_secret *s = NULL;
    size_t need, got;
    ct_err rc;

    *out = NULL;
    if (!fingerprint || !csr || !csr_len || (jwks && !token))
        return ctp_err(err, CT_E_INVALID, 0, "bootstrap request: missing fields");
    if (!(csr64 = ctp_boot_b64_encode(csr, csr_len)))
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    o = json_object();
    if (!o || json_object_set_new(o, "v", json_integer(MSG_V)) != 0 ||
        json_object_set_new(o, "fingerprint", json_string(fingerprint)) != 0 ||
        json_object_set_new(o, "csr", json_string(csr64)) != 0) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory building the request");
        goto out;
    }
    if (jwks) {
        json_error_t je;
        ks = json_loadb(jwks, jwks_len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(ks)) {
            rc = ctp_err(err, CT_E_INVALID, 0, "the key set is not a JSON object");
            goto out;
        }
        if (json_object_set(o, "jwks", ks) != 0) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory building the request");
            goto out;
        }
    }
    if (token) {
        tok = json_stringn(token, token_len);
        if (!tok || json_object_set(o, "token", tok) != 0) {
            rc = ctp_err(err, tok ? CT_E_NOMEM : CT_E_INVALID, 0,
                         tok ? "out of memory building the request"
                             : "the token is not valid UTF-8 or contains NUL");
            goto out;
        }
    }
    need = json_dumpb(o, NULL, 0, flags);
    if (need == 0) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "cannot serialise the request");
        goto out;
    }
    if (need > CT_BOOTSTRAP_MAX_MSG) {
        rc = ctp_err(err, CT_E_TOOBIG, 0,
                     "the request would be %zu bytes, more than %u (key set or token too large)",
                     need, (unsigned)CT_BOOTSTRAP_MAX_MSG);
        goto out;
    }
    if ((rc = ct_secret_new(need, &s, err)) != CT_OK)
        goto out;
    got = json_dumpb(o, (char *)ct_secret_data(s), need, flags);
    if (got != need) {
        rc = ctp_err(err, CT_E_INTERNAL, 0, "request serialisation changed size");
        goto out;
    }
    *out = s;
    s = NULL;
    rc = CT_OK;
out:
    wipe_string(tok);
    json_decref(tok);
    json_decref(ks);
    json_decref(o);
    ct_secret_free(s);
    free(csr64);
    return rc;
}

void ctp_boot_request_clear(ctp_boot_request *r)
{
    if (!r)
        return;
    free(r->csr);
    free(r->jwks);
    ct_secret_free(r->token);
    memset(r, 0, sizeof *r);
}

ct_err ctp_boot_request_decode(const uint8_t *json, size_t len, ctp_boot_request *r,
                               ct_error *err)
{
    static const char what[] = "bootstrap request";
    json_t *o, *fp, *ks, *tok;
    ct_error e2;
    ct_err rc = CT_OK;

    memset(r, 0, sizeof *r);
    if (!json || len == 0)
        return ctp_err(err, CT_E_PROTO, 0, "%s is empty", what);
    if (!(o = load(json, len, what, err, &rc)))
        return rc;
    tok = json_object_get(o, "token");
    if ((rc = check_v(o, what, err)) != CT_OK)
        goto out;
    fp = json_object_get(o, "fingerprint");
    if (!json_is_string(fp)) {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: member \"fingerprint\" missing or not a string",
                     what);
        goto out;
    }
    if (ct_fingerprint_canonical(json_string_value(fp), r->fingerprint, &e2) != CT_OK ||
        strlen(json_string_value(fp)) != json_string_length(fp)) {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: \"fingerprint\" is not a cluster fingerprint "
                                         "(a UUID)", what);
        goto out;
    }
    if ((rc = get_der(o, "csr", CTP_BOOT_MAX_CSR, what, &r->csr, &r->csr_len, err)) != CT_OK)
        goto out;
    ks = json_object_get(o, "jwks");
    if (ks) {
        if (!json_is_object(ks)) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: \"jwks\" is not a JSON object", what);
            goto out;
        }
        r->jwks = json_dumps(ks, JSON_COMPACT);
        if (!r->jwks) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto out;
        }
        r->jwks_len = strlen(r->jwks);
    }
    if (tok) {
        size_t n = json_is_string(tok) ? json_string_length(tok) : 0;
        if (!json_is_string(tok) || n == 0 || n > CT_JWT_MAX_LEN) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: \"token\" is not a string of 1 to %u bytes",
                         what, (unsigned)CT_JWT_MAX_LEN);
            goto out;
        }
        if ((rc = ct_secret_from(json_string_value(tok), n, &r->token, err)) != CT_OK)
            goto out;
    }
    if (ks && !tok) {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: a request with \"jwks\" must carry \"token\"",
                     what);
        goto out;
    }
    r->first = ks != NULL || tok == NULL;
out:
    wipe_string(tok);
    json_decref(o);
    if (rc != CT_OK)
        ctp_boot_request_clear(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Answer                                                               */

static ct_err dump_plain(json_t *o, char **out, size_t *out_len, ct_error *err)
{
    *out = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!*out)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory building the answer");
    *out_len = strlen(*out);
    return CT_OK;
}

ct_err ctp_boot_answer_issued(const uint8_t *ca, size_t ca_len, const uint8_t *cert,
                              size_t cert_len, int reissue, char **out, size_t *out_len,
                              ct_error *err)
{
    char *ca64, *cert64;
    json_t *o;

    *out = NULL;
    *out_len = 0;
    if (!ca || !ca_len || !cert || !cert_len)
        return ctp_err(err, CT_E_INVALID, 0, "bootstrap answer: missing certificates");
    ca64 = ctp_boot_b64_encode(ca, ca_len);
    cert64 = ctp_boot_b64_encode(cert, cert_len);
    o = ca64 && cert64 ? json_pack("{s:i, s:s, s:s, s:s, s:b}", "v", MSG_V, "status", "issued",
                                   "ca", ca64, "cert", cert64, "reissue", reissue ? 1 : 0)
                       : NULL;
    free(ca64);
    free(cert64);
    return dump_plain(o, out, out_len, err);
}

ct_err ctp_boot_answer_refused(ct_boot_refusal reason, const char *message, char **out,
                               size_t *out_len, ct_error *err)
{
    char text[CTP_BOOT_MAX_TEXT + 1];
    json_t *o;

    *out = NULL;
    *out_len = 0;
    if (reason == CT_BOOT_R_NONE || strcmp(ct_boot_refusal_name(reason), "unknown") == 0)
        return ctp_err(err, CT_E_INVALID, 0, "bootstrap answer: no refusal reason");
    message = message ? message : "";
    printable_copy(text, sizeof text, message, strlen(message));
    o = json_pack("{s:i, s:s, s:s, s:s}", "v", MSG_V, "status", "refused", "reason",
                  ct_boot_refusal_name(reason), "message", text);
    return dump_plain(o, out, out_len, err);
}

void ctp_boot_answer_clear(ctp_boot_answer *a)
{
    if (!a)
        return;
    free(a->ca);
    free(a->cert);
    memset(a, 0, sizeof *a);
}

ct_err ctp_boot_answer_decode(const uint8_t *json, size_t len, ctp_boot_answer *a,
                              ct_error *err)
{
    static const char what[] = "bootstrap answer";
    json_t *o, *st, *v;
    ct_err rc = CT_OK;

    memset(a, 0, sizeof *a);
    if (!json || len == 0)
        return ctp_err(err, CT_E_PROTO, 0, "%s is empty", what);
    if (!(o = load(json, len, what, err, &rc)))
        return rc;
    if ((rc = check_v(o, what, err)) != CT_OK)
        goto out;
    st = json_object_get(o, "status");
    if (!json_is_string(st)) {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: member \"status\" missing or not a string", what);
        goto out;
    }
    if (strcmp(json_string_value(st), "issued") == 0) {
        a->issued = 1;
        if ((rc = get_der(o, "ca", CTP_BOOT_MAX_CERT, what, &a->ca, &a->ca_len, err)) !=
                CT_OK ||
            (rc = get_der(o, "cert", CTP_BOOT_MAX_CERT, what, &a->cert, &a->cert_len, err)) !=
                CT_OK)
            goto out;
        v = json_object_get(o, "reissue");
        if (!json_is_boolean(v)) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: member \"reissue\" missing or not a boolean",
                         what);
            goto out;
        }
        a->reissue = json_is_true(v);
    } else if (strcmp(json_string_value(st), "refused") == 0) {
        v = json_object_get(o, "reason");
        if (!json_is_string(v)) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: member \"reason\" missing or not a string",
                         what);
            goto out;
        }
        printable_copy(a->reason_name, sizeof a->reason_name, json_string_value(v),
                       json_string_length(v));
        /* an embedded NUL never matches a name */
        a->reason = strlen(json_string_value(v)) == json_string_length(v)
                        ? ctp_boot_refusal_from_name(json_string_value(v))
                        : CT_BOOT_R_NONE;
        v = json_object_get(o, "message");
        if (v && !json_is_string(v)) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: member \"message\" is not a string", what);
            goto out;
        }
        if (v)
            printable_copy(a->message, sizeof a->message, json_string_value(v),
                           json_string_length(v));
    } else {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: unknown status (want \"issued\" or \"refused\")",
                     what);
        goto out;
    }
out:
    json_decref(o);
    if (rc != CT_OK)
        ctp_boot_answer_clear(a);
    return rc;
}
