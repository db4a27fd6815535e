/*
 * k8s_json.c - the Kubernetes API's JSON, both ways, as pure functions (no
 * I/O): Status errors and their mapping to ct_err, Namespace, Secret,
 * SecretList pages, the DELETE answer, TokenReview, the JWK set check, and
 * the two request bodies. Fuzzed by fuzz/fuzz_k8s_json.c.
 *
 * Bodies come from the network and are hostile: every field is
 * type-checked, sizes are bounded (jansson's own depth limit applies) and
 * Secret values are decoded strictly (padded standard base64, as the API
 * server writes them) straight into ct_secret buffers. Trees that carried
 * secret values (Secrets, lists, TokenReviews, which echo the token) have
 * every string wiped in place before jansson frees them.
 */
#include "k8s_internal.h"

#include "b64.h"
#include "json_wipe.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits on what one object may carry. */
#define K8S_MAX_FIELD 4096   /* a name, uid, type, label, group, ... */
#define K8S_MAX_LABELS 1024
#define K8S_MAX_DATA 4096    /* keys in one Secret's data */
#define K8S_MAX_LIST 1024    /* groups / audiences of a review */

/* ------------------------------------------------------------ helpers */

static void free_tree(json_t *root, int wipe)
{
    if (wipe)
        ctp_json_wipe(root);
    json_decref(root);
}

static json_t *load(const char *body, size_t len, const char *what, ct_error *err)
{
    json_error_t je;
    json_t *root;
    if (!body || len == 0) {
        ctp_err(err, CT_E_PROTO, 0, "%s: empty answer from the API server", what);
        return NULL;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        ctp_err(err, CT_E_PROTO, 0, "%s: the API server's answer is not JSON (%.80s)", what,
                je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        ctp_err(err, CT_E_PROTO, 0, "%s: the API server's answer is not a JSON object", what);
        return NULL;
    }
    return root;
}

/* A string member of length 1..K8S_MAX_FIELD without NUL, or NULL. */
static const char *str_member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    size_t n;
    if (!json_is_string(v))
        return NULL;
    n = json_string_length(v);
    if (n == 0 || n > K8S_MAX_FIELD || strlen(json_string_value(v)) != n)
        return NULL;
    return json_string_value(v);
}

/* Optional string member: absent/null -> "" (ok); wrong type -> NULL. */
static const char *opt_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    size_t n;
    if (!v || json_is_null(v))
        return "";
    if (!json_is_string(v))
        return NULL;
    n = json_string_length(v);
    if (n > K8S_MAX_FIELD || strlen(json_string_value(v)) != n)
        return NULL;
    return json_string_value(v);
}

static int kind_is(const json_t *o, const char *kind)
{
    const json_t *k = json_object_get(o, "kind");
    return json_is_string(k) && strcmp(json_string_value(k), kind) == 0;
}

void ctp_k8s_printable(const char *s, size_t n, char *out, size_t cap)
{
    size_t i, o = 0;
    if (cap == 0)
        return;
    for (i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (i < n && cap >= 4) {
        o = o > cap - 4 ? cap - 4 : o;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------- Status */

int ctp_k8s_parse_status(const char *body, size_t len, ctp_k8s_status *st)
{
    json_t *root, *v;
    json_error_t je;
    memset(st, 0, sizeof *st);
    if (!body || len == 0)
        return 0;
    root = json_loadb(body, len, 0, &je);
    if (!json_is_object(root) || !kind_is(root, "Status")) {
        json_decref(root);
        return 0;
    }
    v = json_object_get(root, "code");
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 1000)
        st->code = (int)json_integer_value(v);
    v = json_object_get(root, "status");
    if (json_is_string(v))
        ctp_k8s_printable(json_string_value(v), json_string_length(v), st->status,
                          sizeof st->status);
    v = json_object_get(root, "reason");
    if (json_is_string(v))
        ctp_k8s_printable(json_string_value(v), json_string_length(v), st->reason,
                          sizeof st->reason);
    v = json_object_get(root, "message");
    if (json_is_string(v))
        ctp_k8s_printable(json_string_value(v), json_string_length(v), st->message,
                          sizeof st->message);
    json_decref(root);
    return 1;
}

ct_err ctp_k8s_http_error(int http_status, const char *body, size_t len, const char *what,
                          ctp_k8s_auth auth, ct_error *err)
{
    ctp_k8s_status st;
    const char *msg;
    int have = ctp_k8s_parse_status(body, len, &st);

    msg = have && st.message[0] ? st.message : NULL;
    switch (http_status) {
    case 401:
        if (auth == CTP_K8S_AUTH_TOKEN)
            return ctp_err(err, CT_E_AUTH, 401,
                           "%s: the token was rejected (401 Unauthorized): it is invalid, "
                           "expired or revoked", what);
        if (auth == CTP_K8S_AUTH_CERT)
            return ctp_err(err, CT_E_AUTH, 401,
                           "%s: the client certificate was rejected (401 Unauthorized)", what);
        return ctp_err(err, CT_E_AUTH, 401,
                       "%s: the API server requires credentials (401 Unauthorized)", what);
    case 403:
        return ctp_err(err, CT_E_DENIED, 403, "%s: denied: %s", what,
                       msg ? msg : "403 Forbidden (no RBAC permission)");
    case 404:
        return ctp_err(err, CT_E_NOTFOUND, 404, "%s: %s", what,
                       msg ? msg : "404 Not Found (is this a Kubernetes API server?)");
    case 409:
        return ctp_err(err, CT_E_CONFLICT, 409, "%s: conflict: %s", what,
                       msg ? msg : "409 Conflict");
    case 410:
        return ctp_err(err, CT_E_CONFLICT, 410, "%s: expired: %s", what,
                       msg ? msg : "410 Gone");
    case 400:
    case 422:
        return ctp_err(err, CT_E_INVALID, http_status, "%s: the API server refused the request "
                       "(%d): %s", what, http_status, msg ? msg : "bad request");
    case 413:
        return ctp_err(err, CT_E_TOOBIG, 413, "%s: request too large (413)", what);
    case 429:
        return ctp_err(err, CT_E_IO, 429, "%s: the API server is rate limiting (429 Too Many "
                       "Requests)%s%s; try again later", what, msg ? ": " : "", msg ? msg : "");
    default:
        break;
    }
    if (http_status >= 500 && http_status <= 599)
        return ctp_err(err, CT_E_IO, http_status, "%s: API server error %d%s%s", what,
                       http_status, msg ? ": " : "", msg ? msg : "");
    return ctp_err(err, CT_E_PROTO, http_status, "%s: unexpected HTTP status %d%s%s", what,
                   http_status, msg ? ": " : "", msg ? msg : "");
}

/* ---------------------------------------------------------- Namespace */

ct_err ctp_k8s_parse_namespace_uid(const char *body, size_t len, const char *name,
                                   char uid[CT_K8S_UID_MAX], ct_error *err)
{
    const char *what = "namespace";
    json_t *root = load(body, len, what, err), *meta;
    const char *u, *n;
    size_t i, ulen;
    ct_err rc = CT_E_PROTO;

    uid[0] = '\0';
    if (!root)
        return CT_E_PROTO;
    meta = json_object_get(root, "metadata");
    if (!kind_is(root, "Namespace") || !json_is_object(meta)) {
        ctp_err(err, CT_E_PROTO, 0, "%s: the answer is not a Namespace object", what);
        goto out;
    }
    n = str_member(meta, "name");
    if (name && (!n || strcmp(n, name) != 0)) {
        ctp_err(err, CT_E_PROTO, 0, "%s: the answer is for another namespace", what);
        goto out;
    }
    u = str_member(meta, "uid");
    if (!u) {
        ctp_err(err, CT_E_PROTO, 0, "%s: the Namespace has no metadata.uid", what);
        goto out;
    }
    ulen = strlen(u);
    if (ulen >= CT_K8S_UID_MAX) {
        ctp_err(err, CT_E_PROTO, 0, "%s: metadata.uid is too long (%zu characters)", what, ulen);
        goto out;
    }
    for (i = 0; i < ulen; i++) {
        if (u[i] <= 0x20 || u[i] >= 0x7f) {
            ctp_err(err, CT_E_PROTO, 0, "%s: metadata.uid has a non-printable character", what);
            goto out;
        }
    }
    memcpy(uid, u, ulen + 1);
    rc = CT_OK;
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------- Secret */

void ct_k8s_secret_free(ct_k8s_secret *s)
{
    size_t i;
    if (!s)
        return;
    free(s->name);
    free(s->ns);
    free(s->uid);
    free(s->rv);
    free(s->type);
    for (i = 0; i < s->n_labels; i++) {
        free(s->label_keys[i]);
        free(s->label_values[i]);
    }
    free(s->label_keys);
    free(s->label_values);
    for (i = 0; i < s->n_data; i++) {
        free(s->data_keys[i]);
        ct_secret_free(s->data_values[i]);
    }
    free(s->data_keys);
    free(s->data_values);
    free(s);
}

static ct_err dup_field(const char *v, char **out, const char *what, const char *field,
                        ct_error *err)
{
    if (!v)
        return ctp_err(err, CT_E_PROTO, 0, "%s: %s is missing or not a string", what, field);
    *out = strdup(v);
    return *out ? CT_OK : ctp_err(err, CT_E_NOMEM, 0, "out of memory");
}

/* A Secret (full object or a list item) from its JSON object. */
static ct_err secret_from_json(const json_t *o, ct_k8s_secret **out, ct_error *err)
{
    const char *what = "secret";
    const json_t *meta = json_object_get(o, "metadata"), *labels, *owners, *data, *v;
    ct_k8s_secret *s;
    const char *k;
    ct_err rc;
    size_t i;

    *out = NULL;
    if (!json_is_object(o) || !json_is_object(meta))
        return ctp_err(err, CT_E_PROTO, 0, "%s: not a Secret object", what);
    s = calloc(1, sizeof *s);
    if (!s)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    rc = dup_field(str_member(meta, "name"), &s->name, what, "metadata.name", err);
    if (rc == CT_OK)
        rc = dup_field(opt_str(meta, "namespace"), &s->ns, what, "metadata.namespace", err);
    if (rc == CT_OK)
        rc = dup_field(str_member(meta, "uid"), &s->uid, what, "metadata.uid", err);
    if (rc == CT_OK)
        rc = dup_field(str_member(meta, "resourceVersion"), &s->rv, what,
                       "metadata.resourceVersion", err);
    if (rc == CT_OK) {
        const char *t = opt_str(o, "type");
        rc = dup_field(t && !*t ? "Opaque" : t, &s->type, what, "type", err);
    }
    if (rc != CT_OK)
        goto fail;

    v = json_object_get(o, "immutable");
    if (v && !json_is_null(v) && !json_is_boolean(v)) {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: immutable is not a boolean", what);
        goto fail;
    }
    s->immutable = json_is_true(v);

    owners = json_object_get(meta, "ownerReferences");
    if (owners && !json_is_null(owners) && !json_is_array(owners)) {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: metadata.ownerReferences is not a list", what);
        goto fail;
    }
    s->has_owner = json_is_array(owners) && json_array_size(owners) > 0;

    labels = json_object_get(meta, "labels");
    if (labels && !json_is_null(labels)) {
        size_t n;
        if (!json_is_object(labels) || (n = json_object_size(labels)) > K8S_MAX_LABELS) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: metadata.labels is not a small map", what);
            goto fail;
        }
        s->label_keys = calloc(n ? n : 1, sizeof *s->label_keys);
        s->label_values = calloc(n ? n : 1, sizeof *s->label_values);
        if (!s->label_keys || !s->label_values) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto fail;
        }
        json_object_foreach((json_t *)labels, k, v) {
            const char *lv = json_is_string(v) ? json_string_value(v) : NULL;
            if (!lv || strlen(lv) != json_string_length(v) || strlen(k) > K8S_MAX_FIELD ||
                json_string_length(v) > K8S_MAX_FIELD) {
                rc = ctp_err(err, CT_E_PROTO, 0, "%s: a label value is not a string", what);
                goto fail;
            }
            s->label_keys[s->n_labels] = strdup(k);
            s->label_values[s->n_labels] = strdup(lv);
            s->n_labels++;
            if (!s->label_keys[s->n_labels - 1] || !s->label_values[s->n_labels - 1]) {
                rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
                goto fail;
            }
        }
    }

    data = json_object_get(o, "data");
    if (data && !json_is_null(data)) {
        size_t n;
        if (!json_is_object(data) || (n = json_object_size(data)) > K8S_MAX_DATA) {
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: data is not a map of at most %d keys", what,
                         K8S_MAX_DATA);
            goto fail;
        }
        s->data_keys = calloc(n ? n : 1, sizeof *s->data_keys);
        s->data_values = calloc(n ? n : 1, sizeof *s->data_values);
        if (!s->data_keys || !s->data_values) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto fail;
        }
        i = 0;
        json_object_foreach((json_t *)data, k, v) {
            const char *b = json_is_string(v) ? json_string_value(v) : NULL;
            size_t blen = b ? json_string_length(v) : 0, cap, got = 0;
            ct_secret *val = NULL;

            if (!b || strlen(k) == 0 || strlen(k) > 253) {
                rc = ctp_err(err, CT_E_PROTO, 0, "%s: data has a bad key or a non-string value",
                             what);
                goto fail;
            }
            if (blen > 2 * CT_SECRET_MAX) {
                rc = ctp_err(err, CT_E_TOOBIG, 0, "%s: a data value is too large", what);
                goto fail;
            }
            cap = ctp_b64_decoded_max(blen);
            rc = ct_secret_new(cap, &val, err);
            if (rc != CT_OK)
                goto fail;
            if (ctp_b64_decode(b, blen, ct_secret_data(val), cap, &got, CTP_B64_STD) != 0) {
                ct_secret_free(val);
                rc = ctp_err(err, CT_E_PROTO, 0,
                             "%s: the value of data key \"%.64s\" is not valid base64", what, k);
                goto fail;
            }
            (void)ct_secret_truncate(val, got);
            s->data_keys[i] = strdup(k);
            s->data_values[i] = val;
            s->n_data = ++i;
            if (!s->data_keys[i - 1]) {
                rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
                goto fail;
            }
        }
    }
    *out = s;
    return CT_OK;
fail:
    ct_k8s_secret_free(s);
    return rc;
}

ct_err ctp_k8s_parse_secret(const char *body, size_t len, ct_k8s_secret **out, ct_error *err)
{
    json_t *root = load(body, len, "secret", err);
    ct_err rc;
    *out = NULL;
    if (!root)
        return CT_E_PROTO;
    if (!kind_is(root, "Secret"))
        rc = ctp_err(err, CT_E_PROTO, 0, "secret: the answer is not a Secret object");
    else
        rc = secret_from_json(root, out, err);
    free_tree(root, 1);
    return rc;
}

/* -------------------------------------------------------- Secret list */

ct_k8s_secret_list *ctp_k8s_secret_list_new(void)
{
    ct_k8s_secret_list *l = calloc(1, sizeof *l);
    if (l && !(l->rv = strdup(""))) {
        free(l);
        return NULL;
    }
    return l;
}

void ct_k8s_secret_list_free(ct_k8s_secret_list *l)
{
    size_t i;
    if (!l)
        return;
    for (i = 0; i < l->n; i++)
        ct_k8s_secret_free(l->items[i]);
    free(l->items);
    free(l->rv);
    free(l);
}

ct_err ctp_k8s_parse_secret_page(const char *body, size_t len, ct_k8s_secret_list *list,
                                 size_t max_items, char **cont, int64_t *remaining,
                                 ct_error *err)
{
    const char *what = "list secrets";
    json_t *root, *meta, *items, *it, *v;
    const char *rv, *c;
    ct_err rc = CT_E_PROTO;
    size_t i, n;

    *cont = NULL;
    *remaining = -1;
    root = load(body, len, what, err);
    if (!root)
        return CT_E_PROTO;
    meta = json_object_get(root, "metadata");
    items = json_object_get(root, "items");
    if (!kind_is(root, "SecretList") || !json_is_object(meta) ||
        (!json_is_array(items) && !json_is_null(items) && items)) {
        ctp_err(err, CT_E_PROTO, 0, "%s: the answer is not a SecretList", what);
        goto out;
    }
    rv = opt_str(meta, "resourceVersion");
    c = opt_str(meta, "continue");
    if (!rv || !c) {
        ctp_err(err, CT_E_PROTO, 0, "%s: bad list metadata", what);
        goto out;
    }
    v = json_object_get(meta, "remainingItemCount");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            ctp_err(err, CT_E_PROTO, 0, "%s: bad remainingItemCount", what);
            goto out;
        }
        *remaining = json_integer_value(v);
    }
    n = json_is_array(items) ? json_array_size(items) : 0;
    if (n > max_items || list->n > max_items - n) {
        rc = ctp_err(err, CT_E_TOOBIG, 0, "%s: more than %zu Secrets; list with a selector",
                     what, max_items);
        goto out;
    }
    if (list->n + n > list->cap) {
        size_t cap = list->cap ? list->cap : 16;
        ct_k8s_secret **p;
        while (cap < list->n + n)
            cap *= 2;
        p = realloc(list->items, cap * sizeof *p);
        if (!p) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto out;
        }
        list->items = p;
        list->cap = cap;
    }
    for (i = 0; i < n; i++) {
        ct_k8s_secret *s = NULL;
        it = json_array_get(items, i);
        rc = secret_from_json(it, &s, err);
        if (rc != CT_OK)
            goto out;
        list->items[list->n++] = s;
    }
    {
        char *nrv = strdup(rv);
        if (!nrv || (*c && !(*cont = strdup(c)))) {
            free(nrv);
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto out;
        }
        free(list->rv);
        list->rv = nrv;
    }
    rc = CT_OK;
out:
    free_tree(root, 1);
    return rc;
}

/* ------------------------------------------------------------- DELETE */

ct_err ctp_k8s_parse_delete(const char *body, size_t len, int *deleted, ct_error *err)
{
    const char *what = "delete secret";
    json_t *root = load(body, len, what, err), *meta;
    ct_err rc = CT_OK;
    *deleted = 0;
    if (!root)
        return CT_E_PROTO;
    if (kind_is(root, "Status")) {
        const char *st = opt_str(root, "status");
        if (st && strcmp(st, "Success") == 0)
            *deleted = 1;
        else
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: the API server answered with a Status "
                         "that is not Success", what);
    } else if (kind_is(root, "Secret") && json_is_object(meta = json_object_get(root,
                                                                                 "metadata"))) {
        /* kept by finalizers: the object comes back with deletionTimestamp */
        if (!str_member(meta, "deletionTimestamp"))
            rc = ctp_err(err, CT_E_PROTO, 0, "%s: the Secret came back without a "
                         "deletionTimestamp", what);
    } else {
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: unexpected answer", what);
    }
    free_tree(root, 1);
    return rc;
}

/* -------------------------------------------------------- TokenReview */

void ct_k8s_token_review_free(ct_k8s_token_review *r)
{
    size_t i;
    if (!r)
        return;
    free(r->username);
    free(r->uid);
    free(r->error);
    for (i = 0; i < r->n_groups; i++)
        free(r->groups[i]);
    for (i = 0; i < r->n_audiences; i++)
        free(r->audiences[i]);
    free(r->groups);
    free(r->audiences);
    free(r);
}

static ct_err str_array(const json_t *a, const char *what, const char *field, char ***out,
                        size_t *n, ct_error *err)
{
    size_t i, cnt;
    *out = NULL;
    *n = 0;
    if (!a || json_is_null(a))
        return CT_OK;
    if (!json_is_array(a) || (cnt = json_array_size(a)) > K8S_MAX_LIST)
        return ctp_err(err, CT_E_PROTO, 0, "%s: %s is not a list of strings", what, field);
    *out = calloc(cnt ? cnt : 1, sizeof **out);
    if (!*out)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    for (i = 0; i < cnt; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_string(v) || json_string_length(v) > K8S_MAX_FIELD ||
            strlen(json_string_value(v)) != json_string_length(v))
            return ctp_err(err, CT_E_PROTO, 0, "%s: %s is not a list of strings", what, field);
        if (!((*out)[i] = strdup(json_string_value(v))))
            return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        *n = i + 1;
    }
    return CT_OK;
}

ct_err ctp_k8s_parse_token_review(const char *body, size_t len, ct_k8s_token_review **out,
                                  ct_error *err)
{
    const char *what = "token review";
    json_t *root = load(body, len, what, err), *status, *user, *auth;
    ct_k8s_token_review *r = NULL;
    const char *s;
    ct_err rc = CT_E_PROTO;

    *out = NULL;
    if (!root)
        return CT_E_PROTO;
    status = json_object_get(root, "status");
    if (!kind_is(root, "TokenReview") || !json_is_object(status)) {
        ctp_err(err, CT_E_PROTO, 0, "%s: the answer is not a TokenReview with a status", what);
        goto out;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    auth = json_object_get(status, "authenticated");
    if (auth && !json_is_null(auth) && !json_is_boolean(auth)) {
        ctp_err(err, CT_E_PROTO, 0, "%s: status.authenticated is not a boolean", what);
        goto out;
    }
    r->authenticated = json_is_true(auth);
    user = json_object_get(status, "user");
    if (user && !json_is_null(user) && !json_is_object(user)) {
        ctp_err(err, CT_E_PROTO, 0, "%s: status.user is not an object", what);
        goto out;
    }
    if (!json_is_object(user))
        user = NULL;
    rc = dup_field(user ? opt_str(user, "username") : "", &r->username, what,
                   "status.user.username", err);
    if (rc == CT_OK)
        rc = dup_field(user ? opt_str(user, "uid") : "", &r->uid, what, "status.user.uid", err);
    if (rc == CT_OK)
        rc = dup_field((s = opt_str(status, "error")) ? s : NULL, &r->error, what,
                       "status.error", err);
    if (rc == CT_OK)
        rc = str_array(user ? json_object_get(user, "groups") : NULL, what,
                       "status.user.groups", &r->groups, &r->n_groups, err);
    if (rc == CT_OK)
        rc = str_array(json_object_get(status, "audiences"), what, "status.audiences",
                       &r->audiences, &r->n_audiences, err);
    if (rc == CT_OK && r->authenticated && !r->username[0])
        rc = ctp_err(err, CT_E_PROTO, 0, "%s: authenticated without a username", what);
    if (rc == CT_OK) {
        *out = r;
        r = NULL;
    }
out:
    ct_k8s_token_review_free(r);
    free_tree(root, 1);
    return rc;
}

/* ------------------------------------------------------ request bodies */

/* 1 if s is 1..max characters of printable ASCII without spaces. */
static int is_token_text(const char *s, size_t max)
{
    size_t i;
    for (i = 0; s[i]; i++)
        if (i >= max || s[i] <= 0x20 || s[i] >= 0x7f)
            return 0;
    return i > 0;
}

ct_err ctp_k8s_token_review_body(const char *token, const char *const *audiences, size_t n,
                                 ct_secret **out, ct_error *err)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    json_t *root = NULL, *spec = NULL, *aud = NULL;
    ct_secret *s = NULL;
    size_t i, need;
    ct_err rc = CT_E_NOMEM;

    *out = NULL;
    if (!token || !*token)
        return ctp_err(err, CT_E_INVALID, 0, "token review: the token is empty");
    if (strlen(token) > 16384)
        return ctp_err(err, CT_E_TOOBIG, 0, "token review: the token is over 16 KiB");
    if (!is_token_text(token, 16384))
        return ctp_err(err, CT_E_INVALID, 0,
                       "token review: the token has characters a bearer token cannot have");
    if (n > K8S_MAX_LIST || (n && !audiences))
        return ctp_err(err, CT_E_INVALID, 0, "token review: bad audience list");
    for (i = 0; i < n; i++)
        if (!audiences[i] || !is_token_text(audiences[i], K8S_MAX_FIELD))
            return ctp_err(err, CT_E_INVALID, 0, "token review: audience %zu is empty, too "
                           "long or not printable ASCII", i);
    if (!(root = json_object()) ||
        json_object_set_new(root, "kind", json_string("TokenReview")) ||
        json_object_set_new(root, "apiVersion", json_string("authentication.k8s.io/v1")) ||
        json_object_set_new(root, "spec", spec = json_object()) || !spec ||
        json_object_set_new(spec, "token", json_string(token)))
        goto out;
    if (n) {
        if (json_object_set_new(spec, "audiences", aud = json_array()) || !aud)
            goto out;
        for (i = 0; i < n; i++)
            if (json_array_append_new(aud, json_string(audiences[i])))
                goto out;
    }
    need = json_dumpb(root, NULL, 0, flags);
    if (need == 0)
        goto out;
    rc = ct_secret_new(need, &s, err);
    if (rc != CT_OK)
        goto out;
    if (json_dumpb(root, (char *)ct_secret_data(s), need, flags) != need) {
        ct_secret_free(s);
        rc = ctp_err(err, CT_E_INTERNAL, 0, "token review: serialisation changed size");
        goto out;
    }
    *out = s;
out:
    free_tree(root, 1);
    if (rc == CT_E_NOMEM)
        ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    return rc;
}

int ctp_k8s_valid_data_key(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

ct_err ctp_k8s_secret_body(const char *ns, const char *name, const char *type,
                           const char *const *labels, const char *const *keys,
                           const ct_secret *const *values, size_t n, ct_secret **out,
                           ct_error *err)
{
    json_t *meta = NULL, *lab = NULL;
    char *mj = NULL, *tj = NULL;
    size_t i, total, pos = 0;
    ct_secret *b = NULL;
    ct_err rc = CT_OK;
    uint8_t *p;

    *out = NULL;
    if (!type)
        type = "Opaque";
    if (!is_token_text(type, 253))
        return ctp_err(err, CT_E_INVALID, 0, "create secret: the type is empty or not "
                       "printable ASCII");
    for (i = 0; i < n; i++) {
        if (!ctp_k8s_valid_data_key(keys[i]) || !values[i])
            return ctp_err(err, CT_E_INVALID, 0, "create secret %s/%s: data key \"%.64s\" is "
                           "not 1 to 253 characters of [-._a-zA-Z0-9]", ns, name,
                           keys[i] ? keys[i] : "(null)");
        if (ct_secret_len(values[i]) > ((size_t)1 << 20))
            return ctp_err(err, CT_E_TOOBIG, 0, "create secret %s/%s: value of %s over 1 MiB",
                           ns, name, keys[i]);
    }
    if (!(meta = json_object()) || json_object_set_new(meta, "name", json_string(name)) ||
        json_object_set_new(meta, "namespace", json_string(ns))) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    if (labels && labels[0]) {
        if (!(lab = json_object()) || json_object_set(meta, "labels", lab)) {
            rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
            goto out;
        }
        for (i = 0; labels[i]; i += 2) {
            if (!labels[i + 1] || !is_token_text(labels[i], 317) ||
                strlen(labels[i + 1]) > 63 ||
                json_object_set_new(lab, labels[i], json_string(labels[i + 1]))) {
                rc = ctp_err(err, CT_E_INVALID, 0, "create secret %s/%s: a label is malformed",
                             ns, name);
                goto out;
            }
        }
    }
    mj = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
    {
        json_t *t = json_string(type);
        tj = t ? json_dumps(t, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(t);
    }
    if (!mj || !tj) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    /* {"apiVersion":"v1","kind":"Secret","metadata":M,"type":T,"data":{"k":"v",...}} */
    total = 64 + strlen(mj) + strlen(tj);
    for (i = 0; i < n; i++)
        total += strlen(keys[i]) + 6 + ctp_b64_encoded_len(ct_secret_len(values[i]), CTP_B64_STD);
    if ((rc = ct_secret_new(total + 1, &b, err)) != CT_OK)
        goto out;
    p = ct_secret_data(b);
    pos = (size_t)snprintf((char *)p, total + 1,
                           "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":%s,"
                           "\"type\":%s,\"data\":{", mj, tj);
    for (i = 0; i < n; i++) {
        pos += (size_t)snprintf((char *)p + pos, total + 1 - pos, "%s\"%s\":\"", i ? "," : "",
                                keys[i]);
        pos += ctp_b64_encode(ct_secret_data(values[i]), ct_secret_len(values[i]),
                              (char *)p + pos, CTP_B64_STD);
        p[pos++] = '"';
    }
    p[pos++] = '}';
    p[pos++] = '}';
    p[pos] = '\0';
    rc = ct_secret_truncate(b, pos);
    if (rc != CT_OK)
        rc = ctp_err(err, rc, 0, "create secret: body");
    if (rc == CT_OK) {
        *out = b;
        b = NULL;
    }
out:
    ct_secret_free(b);
    json_decref(lab);
    json_decref(meta);
    free(mj);
    free(tj);
    return rc;
}

ct_err ctp_k8s_delete_body(const char *uid, const char *rv, char **out, ct_error *err)
{
    json_t *root, *pre = NULL;
    *out = NULL;
    if ((uid && !is_token_text(uid, K8S_MAX_FIELD)) || (rv && !is_token_text(rv, K8S_MAX_FIELD)))
        return ctp_err(err, CT_E_INVALID, 0,
                       "delete secret: a precondition is empty or not printable ASCII");
    if ((root = json_object()) &&
        !json_object_set_new(root, "kind", json_string("DeleteOptions")) &&
        !json_object_set_new(root, "apiVersion", json_string("v1")) &&
        !json_object_set_new(root, "preconditions", pre = json_object()) && pre &&
        !(uid && json_object_set_new(pre, "uid", json_string(uid))) &&
        !(rv && json_object_set_new(pre, "resourceVersion", json_string(rv))))
        *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return *out ? CT_OK : ctp_err(err, CT_E_NOMEM, 0, "out of memory");
}

/* --------------------------------------------------------------- JWKS */

ct_err ctp_k8s_check_jwks(const char *body, size_t len, ct_error *err)
{
    json_t *root = load(body, len, "issuer keys", err);
    ct_err rc = CT_OK;
    if (!root)
        return CT_E_PROTO;
    if (!json_is_array(json_object_get(root, "keys")))
        rc = ctp_err(err, CT_E_PROTO, 0, "issuer keys: the answer has no \"keys\" list");
    json_decref(root);
    return rc;
}
