/*
 * fuzz_k8s_json.c - the Kubernetes API's answers are hostile input (a
 * compromised or impersonated API server, a proxy in the way). Every input
 * goes to every response parser of k8s_json.c: Status (and its mapping to
 * ct_err for each status code), Namespace, Secret, SecretList page, the
 * DELETE answer, TokenReview, the JWK set check; and, as a token, to the
 * TokenReview request builder. Contracts: no over-read (ASan; the input is
 * an exact-size copy), messages are NUL-terminated printable text within
 * the ct_error buffer, and whatever is accepted is well formed (checked
 * against an independent parse with jansson where that is cheap).
 *
 * The parsers are internal (ctp_k8s_*): meson links k8s_json.c, b64.c and
 * error.c into this program, the rest comes from the library.
 */
#include "k8s_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    size_t i;
    if (n == cap)
        abort();
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t')
            abort();
}

static void check_secret(const ct_k8s_secret *s)
{
    size_t i;
    if (!*ct_k8s_secret_name(s) || !*ct_k8s_secret_uid(s) || !*ct_k8s_secret_resource_version(s) ||
        !*ct_k8s_secret_type(s))
        abort();
    for (i = 0; i < ct_k8s_secret_data_count(s); i++) {
        const ct_secret *v = ct_k8s_secret_data_value(s, i);
        if (!v || !ct_k8s_secret_data_key(s, i) || ct_k8s_secret_data_get(s, ct_k8s_secret_data_key(s, i)) == NULL)
            abort();
        /* the bytes are readable to their end (ASan) and NUL-terminated */
        if (ct_secret_len(v) && ct_secret_data(v)[ct_secret_len(v)] != 0)
            abort();
    }
    for (i = 0; i < ct_k8s_secret_label_count(s); i++)
        if (!ct_k8s_secret_label_key(s, i) || !ct_k8s_secret_label_value(s, i))
            abort();
    if (ct_k8s_secret_data_value(s, ct_k8s_secret_data_count(s)) != NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int codes[] = { 400, 401, 403, 404, 409, 410, 413, 418, 429, 500, 503 };
    char *in = malloc(size ? size : 1), uid[CT_K8S_UID_MAX];
    ctp_k8s_status st;
    ct_k8s_secret *s = NULL;
    ct_k8s_secret_list *l;
    ct_k8s_token_review *r = NULL;
    ct_error err;
    char *cont = NULL;
    int64_t rem;
    int deleted;
    size_t i;

    if (!in)
        return 0;
    memcpy(in, data, size);

    if (ctp_k8s_parse_status(in, size, &st)) {
        printable(st.message, sizeof st.message);
        printable(st.reason, sizeof st.reason);
        if (st.code < 0 || st.code >= 1000)
            abort();
    }
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ct_err rc = ctp_k8s_http_error(codes[i], in, size, "op", (ctp_k8s_auth)(i % 3), &err);
        if (rc == CT_OK || err.code != rc || err.os_error != codes[i])
            abort();
        printable(err.message, sizeof err.message);
    }

    if (ctp_k8s_parse_namespace_uid(in, size, NULL, uid, &err) == CT_OK) {
        size_t n = strnlen(uid, sizeof uid), k;
        if (n == 0 || n >= sizeof uid)
            abort();
        for (k = 0; k < n; k++)
            if (uid[k] <= 0x20 || uid[k] >= 0x7f)
                abort();
    } else if (uid[0] != '\0') {
        abort();
    }

    if (ctp_k8s_parse_secret(in, size, &s, &err) == CT_OK) {
        check_secret(s);
        ct_k8s_secret_free(s);
    } else if (s) {
        abort();
    }

    l = ctp_k8s_secret_list_new();
    if (l) {
        size_t before = ct_k8s_secret_list_count(l);
        if (ctp_k8s_parse_secret_page(in, size, l, 1000, &cont, &rem, &err) == CT_OK) {
            if (cont && !*cont)
                abort();
            if (ct_k8s_secret_list_count(l) > 1000 || rem < -1)
                abort();
            for (i = before; i < ct_k8s_secret_list_count(l); i++)
                check_secret(ct_k8s_secret_list_get(l, i));
        }
        free(cont);
        ct_k8s_secret_list_free(l);
    }

    if (ctp_k8s_parse_delete(in, size, &deleted, &err) == CT_OK && deleted != 0 && deleted != 1)
        abort();

    if (ctp_k8s_parse_token_review(in, size, &r, &err) == CT_OK) {
        if (ct_k8s_token_review_authenticated(r) && !*ct_k8s_token_review_username(r))
            abort();
        for (i = 0; i < ct_k8s_token_review_group_count(r); i++)
            if (!ct_k8s_token_review_group(r, i))
                abort();
        ct_k8s_token_review_free(r);
    } else if (r) {
        abort();
    }

    (void)ctp_k8s_check_jwks(in, size, &err);

    /* the input as a token: an accepted one comes back intact from the JSON body */
    if (size > 0 && size < 4096 && memchr(in, 0, size) == NULL) {
        char *tok = malloc(size + 1);
        ct_secret *body = NULL;
        memcpy(tok, in, size);
        tok[size] = '\0';
        if (ctp_k8s_token_review_body(tok, NULL, 0, &body, &err) == CT_OK) {
            json_error_t je;
            json_t *o = json_loadb((const char *)ct_secret_data(body), ct_secret_len(body), 0, &je);
            const char *t = json_string_value(json_object_get(json_object_get(o, "spec"), "token"));
            if (!t || strcmp(t, tok) != 0)
                abort();
            json_decref(o);
            ct_secret_free(body);
        }
        free(tok);
    }
    free(in);
    return 0;
}
