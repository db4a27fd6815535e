/*
 * review_vault.c - ct_review_configure_vault (review.h): points a cluster's
 * Kubernetes auth mount in Vault / OpenBao at the bridge's TokenReview
 * endpoint, over the shared HTTPS client (http.c).
 */
#include "bootstrap_internal.h"
#include "http_internal.h"
#include "internal.h"
#include "review_internal.h"

#include "cloudtaser/jwt.h"
#include "cloudtaser/review.h"
#include "cloudtaser/room.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOKEN_FILE 8192

/* The token to configure Vault with: --vault-token, else its file (trimmed). */
static ct_err read_token(const ct_vault_options *vo, ct_secret **out, ct_error *err)
{
    const char *p = vo->token;
    size_t n = p ? strlen(p) : 0, a = 0;
    ct_err rc;

    *out = NULL;
    if (!n && vo->token_file && *vo->token_file) {
        char path[4096];
        const char *home = getenv("HOME");
        if (strncmp(vo->token_file, "~/", 2) == 0 && home)
            snprintf(path, sizeof path, "%s/%s", home, vo->token_file + 2);
        else
            snprintf(path, sizeof path, "%s", vo->token_file);
        rc = ct_secret_read_file(path, MAX_TOKEN_FILE, "Vault token file", CT_SECRET_FILE_TRIM,
                                 out, err);
        if (rc == CT_OK && ct_secret_len(*out) == 0) {
            ct_secret_free(*out);
            *out = NULL;
            return ctp_err(err, CT_E_INVALID, 0, "the Vault token file %s is empty", path);
        }
        return rc;
    }
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    while (a < n && (p[a] == ' ' || p[a] == '\n'))
        a++;
    if (a == n)
        return ctp_err(err, CT_E_INVALID, 0, "no Vault token: set VAULT_TOKEN, --vault-token "
                       "or --vault-token-file");
    return ct_secret_from(p + a, n - a, out, err);
}

static int mount_ok(const char *m)
{
    size_t i, n = strlen(m);
    if (n == 0 || n > 100 || m[0] == '/' || m[n - 1] == '/' || strstr(m, ".."))
        return 0;
    for (i = 0; i < n; i++)
        if (!((m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z') ||
              (m[i] >= '0' && m[i] <= '9') || strchr("._-/", m[i])))
            return 0;
    return 1;
}

/* One POST; *status the answer's status (the body is checked by the caller). */
static ct_err post(ctp_http *h, const char *base, const char *path, const ct_secret *token,
                   const char *ns, const char *body, size_t len, long *status, char *msg,
                   size_t msg_cap, ct_error *err)
{
    ctp_http_header hd[4];
    ctp_http_request rq;
    ctp_http_response resp;
    ct_secret *th = NULL;
    char url[1024];
    size_t nh = 0;
    ct_err rc;

    snprintf(url, sizeof url, "%s/v1/%s", base, path);
    if ((rc = ct_secret_from(ct_secret_data(token), ct_secret_len(token), &th, err)) != CT_OK)
        return rc;
    hd[nh++] = (ctp_http_header){ "X-Vault-Token", (const char *)ct_secret_data(th),
                                  ct_secret_len(th) };
    hd[nh++] = (ctp_http_header){ "Content-Type", "application/json", 16 };
    hd[nh++] = (ctp_http_header){ "X-Vault-Request", "true", 4 };
    if (ns && *ns)
        hd[nh++] = (ctp_http_header){ "X-Vault-Namespace", ns, strlen(ns) };
    memset(&rq, 0, sizeof rq);
    rq.method = "POST";
    rq.url = url;
    rq.headers = hd;
    rq.nheaders = nh;
    rq.body = (const uint8_t *)body;
    rq.body_len = len;
    memset(&resp, 0, sizeof resp);
    rc = ctp_http_do(h, &rq, &resp, err);
    ct_secret_free(th);
    *status = resp.status;
    msg[0] = '\0';
    if (rc == CT_OK && resp.body_len) {
        json_error_t je;
        json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, &je);
        const char *e = json_string_value(json_array_get(json_object_get(j, "errors"), 0));
        size_t i;
        snprintf(msg, msg_cap, "%s", e ? e : "");
        for (i = 0; msg[i]; i++)
            if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f)
                msg[i] = ' ';
        json_decref(j);
    }
    ctp_http_response_clear(&resp);
    return rc;
}

static ct_err status_error(long st, const char *path, const char *msg, ct_error *err)
{
    if (st == 403)
        return ctp_err(err, CT_E_DENIED, (int32_t)st, "Vault refused %s (403 %s): the token "
                       "needs the policy in docs/OPERATIONS.md (\"Vault Kubernetes auth\")",
                       path, msg);
    return ctp_err(err, CT_E_PROTO, (int32_t)st, "Vault answered %s with %ld: %s", path, st,
                   msg);
}

/* An HTTPS client for Vault and its token. */
typedef struct vconn {
    ctp_http *h;
    ct_secret *token;
    const char *ns;
    char base[1024];
} vconn;

static void vconn_close(vconn *v)
{
    ctp_http_free(v->h);
    ct_secret_free(v->token);
    v->h = NULL;
    v->token = NULL;
}

static ct_err vconn_open(ct_ctx *ctx, const ct_vault_options *vo, vconn *v, ct_error *err)
{
    ctp_http_config hc;
    ct_err rc;

    memset(v, 0, sizeof *v);
    if (!vo->address)
        return ctp_err(err, CT_E_INVALID, 0, "no Vault address");
    if (vo->version != CT_VAULT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_vault_options: unknown version %u",
                       vo->version);
    if (strncmp(vo->address, "https://", 8) != 0 || strlen(vo->address) >= 900)
        return ctp_err(err, CT_E_INVALID, 0, "the Vault address must be https://host[:port]");
    snprintf(v->base, sizeof v->base, "%s", vo->address);
    while (strlen(v->base) > 8 && v->base[strlen(v->base) - 1] == '/')
        v->base[strlen(v->base) - 1] = '\0';
    v->ns = vo->namespace_path;
    if ((rc = read_token(vo, &v->token, err)) != CT_OK)
        return rc;
    memset(&hc, 0, sizeof hc);
    hc.ca_file = vo->ca_file && *vo->ca_file ? vo->ca_file : NULL;
    hc.ca_path = vo->ca_path && *vo->ca_path ? vo->ca_path : NULL;
    hc.cert_file = vo->client_cert;
    hc.key_file = vo->client_key;
    hc.timeout_ms = vo->timeout_ms > 0 ? vo->timeout_ms : ctp_timeout(ctx, -1);
    if ((rc = ctp_http_new(ctx, &hc, &v->h, err)) != CT_OK)
        vconn_close(v);
    return rc;
}

/* POST sys/auth/<m> {"type":type}; a mount already there is fine. */
static ct_err enable_mount(vconn *v, const char *m, const char *type, const char *what,
                           ct_error *err)
{
    char path[256], msg[300], body[256];
    long st = 0;
    int n;
    ct_err rc;

    snprintf(path, sizeof path, "sys/auth/%s", m);
    n = snprintf(body, sizeof body, "{\"type\":\"%s\",\"description\":\"cloudtaser: %s\"}",
                 type, what);
    rc = post(v->h, v->base, path, v->token, v->ns, body, (size_t)n, &st, msg, sizeof msg, err);
    if (rc == CT_OK && !(st >= 200 && st < 300) && !(st == 400 && strstr(msg, "already in use")))
        rc = status_error(st, path, msg, err);
    return rc;
}

ct_err ct_review_configure_vault(ct_ctx *ctx, const ct_vault_options *vo, const char *mount,
                                 const char *fingerprint, const char *url, const char *ca_pem,
                                 const ct_secret *reviewer, int enable, char *mount_out,
                                 ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1], m[128], path[256], msg[300];
    vconn v;
    json_t *cfg = NULL;
    char *body = NULL;
    size_t blen = 0;
    long st = 0;
    ct_err rc;

    if (mount_out)
        mount_out[0] = '\0';
    if (!ctx || !vo || !url || !ca_pem || !reviewer || !vo->address)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_configure_vault: NULL argument");
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    if (mount)
        snprintf(m, sizeof m, "%s", mount);
    else
        snprintf(m, sizeof m, "kubernetes-%.8s", fp);
    if (!mount_ok(m))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.100s\" is not a valid auth mount path", m);
    if ((rc = vconn_open(ctx, vo, &v, err)) != CT_OK)
        return rc;
    if (enable && (rc = enable_mount(&v, m, "kubernetes", "TokenReview through the tunnel",
                                     err)) != CT_OK)
        goto out;
    cfg = json_pack("{s:s,s:s,s:s%,s:b}", "kubernetes_host", url, "kubernetes_ca_cert", ca_pem,
                    "token_reviewer_jwt", (const char *)ct_secret_data(reviewer),
                    ct_secret_len(reviewer), "disable_local_ca_jwt", 1);
    if (cfg) {
        blen = json_dumpb(cfg, NULL, 0, JSON_COMPACT);
        body = blen ? malloc(blen) : NULL;
        if (body && json_dumpb(cfg, body, blen, JSON_COMPACT) != blen) {
            free(body);
            body = NULL;
        }
        ct_secure_wipe((void *)(uintptr_t)json_string_value(
                           json_object_get(cfg, "token_reviewer_jwt")),
                       ct_secret_len(reviewer));
    }
    json_decref(cfg);
    if (!body) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    snprintf(path, sizeof path, "auth/%s/config", m);
    rc = post(v.h, v.base, path, v.token, v.ns, body, blen, &st, msg, sizeof msg, err);
    if (rc == CT_OK && !(st >= 200 && st < 300))
        rc = status_error(st, path, msg, err);
    if (rc == CT_OK) {
        if (mount_out)
            snprintf(mount_out, 128, "%s", m);
        ctp_log(ctx, CT_LOG_INFO, "review.vault", "%.8s...: Vault auth/%s uses %s", fp, m, url);
    }
out:
    if (body) {
        ct_secure_wipe(body, blen);
        free(body);
    }
    vconn_close(&v);
    return rc;
}

/* ------------------------------------------- JWT auth: the offline fallback */

/* The pinned set and issuer of clusters/<fp>/initialized. */
static ct_err read_pinned(ct_store *store, const char *fp, char **jwks, char *issuer,
                          ct_error *err)
{
    char key[CT_STORE_KEY_MAX + 1];
    ctp_boot_record *rec = NULL;
    ct_secret *val = NULL;
    ct_err rc;

    *jwks = NULL;
    ctp_boot_key(key, sizeof key, fp, "initialized");
    rc = ct_store_get(store, key, &val, NULL, err);
    if (rc == CT_E_NOTFOUND)
        return ctp_err(err, CT_E_STATE, 0, "%.8s...: the cluster has not bootstrapped yet, so "
                       "no issuer keys are pinned; run this after the operator's first "
                       "bootstrap", fp);
    if (rc == CT_OK)
        rc = ctp_boot_record_decode(key, fp, ct_secret_data(val), ct_secret_len(val), &rec,
                                    err);
    ct_secret_free(val);
    if (rc != CT_OK)
        return rc;
    if (!rec->jwks) {
        ctp_boot_record_free(rec);
        return ctp_err(err, CT_E_STATE, 0, "%.8s...: the first bootstrap carried no "
                       "service-account token, so no issuer keys are pinned", fp);
    }
    *jwks = rec->jwks;
    rec->jwks = NULL;
    snprintf(issuer, CT_JWT_CLAIM_MAX, "%s", rec->issuer);
    ctp_boot_record_free(rec);
    return CT_OK;
}

/* POST auth/<m>/config with the set's keys as PEM and the issuer. */
static ct_err post_jwt_config(ct_ctx *ctx, vconn *v, const char *m, const char *jwks,
                              const char *issuer, size_t *nkeys, ct_error *err)
{
    char path[256], msg[300], *body = NULL;
    char **pems = NULL;
    size_t n = 0, i, blen;
    ct_jwks *set = NULL;
    json_t *cfg, *arr;
    long st = 0;
    ct_err rc;

    if ((rc = ct_jwks_parse(ctx, jwks, strlen(jwks), &set, err)) == CT_OK)
        rc = ctp_jwks_pems(set, &pems, &n, err);
    ct_jwks_free(set);
    if (rc != CT_OK)
        return rc;
    arr = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(arr, json_string(pems[i]));
    ctp_pems_free(pems, n);
    cfg = json_pack("{s:o,s:[ss]}", "jwt_validation_pubkeys", arr, "jwt_supported_algs",
                    "RS256", "ES256");
    if (cfg && issuer[0])
        json_object_set_new(cfg, "bound_issuer", json_string(issuer));
    body = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    if (!body)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    blen = strlen(body);
    snprintf(path, sizeof path, "auth/%s/config", m);
    rc = post(v->h, v->base, path, v->token, v->ns, body, blen, &st, msg, sizeof msg, err);
    free(body);
    if (rc == CT_OK && !(st >= 200 && st < 300))
        rc = status_error(st, path, msg, err);
    if (nkeys)
        *nkeys = n;
    return rc;
}

/* Writes clusters/<fp>/vault-jwt: {"v":1,"mount":m,"jwks":<set>,"updated_at":ms}. */
static ct_err write_jwt_record(ct_ctx *ctx, ct_store *store, const char *fp, const char *m,
                               const char *jwks, int64_t cas, ct_error *err)
{
    char key[CT_STORE_KEY_MAX + 1], *body;
    json_error_t je;
    json_t *rec;
    ct_err rc;

    ctp_boot_key(key, sizeof key, fp, CTP_REVIEW_JWT_RECORD);
    rec = json_pack("{s:i,s:s,s:o,s:I}", "v", 1, "mount", m, "jwks", json_loads(jwks, 0, &je),
                    "updated_at", (json_int_t)ct_ctx_wall_ms(ctx));
    body = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(rec);
    if (!body)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    rc = ct_store_put(store, key, body, strlen(body), cas, NULL, err);
    free(body);
    return rc;
}

ct_err ct_review_configure_vault_jwt(ct_ctx *ctx, ct_store *store, const ct_vault_options *vo,
                                     const char *mount, const char *fingerprint, int enable,
                                     char *mount_out, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1], m[128], issuer[CT_JWT_CLAIM_MAX], *jwks = NULL;
    size_t nkeys = 0;
    vconn v;
    ct_err rc;

    if (mount_out)
        mount_out[0] = '\0';
    if (!ctx || !store || !vo || !vo->address)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_configure_vault_jwt: NULL argument");
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    if (mount)
        snprintf(m, sizeof m, "%s", mount);
    else
        snprintf(m, sizeof m, "jwt-%.8s", fp);
    if (!mount_ok(m))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.100s\" is not a valid auth mount path", m);
    if ((rc = ct_store_layout_check(ctx, store, NULL, err)) != CT_OK)
        return rc; /* a store laid out by a newer cloudtaser */
    if ((rc = read_pinned(store, fp, &jwks, issuer, err)) != CT_OK)
        return rc;
    if ((rc = vconn_open(ctx, vo, &v, err)) != CT_OK) {
        free(jwks);
        return rc;
    }
    if (enable)
        rc = enable_mount(&v, m, "jwt", "offline service-account token validation", err);
    if (rc == CT_OK)
        rc = post_jwt_config(ctx, &v, m, jwks, issuer, &nkeys, err);
    vconn_close(&v);
    /* recorded last: the bridge keeps only a mount that was configured */
    if (rc == CT_OK)
        rc = write_jwt_record(ctx, store, fp, m, jwks, -1, err);
    free(jwks);
    if (rc == CT_OK) {
        if (mount_out)
            snprintf(mount_out, 128, "%s", m);
        ctp_log(ctx, CT_LOG_INFO, "review.vault", "%.8s...: Vault auth/%s validates tokens "
                "offline with %zu pinned issuer keys", fp, m, nkeys);
    }
    return rc;
}

ct_err ctp_review_jwt_sync(ct_ctx *ctx, ct_store *store, const ct_vault_options *vo,
                           const char *fp, int *done, char *mount_out, ct_error *err)
{
    char key[CT_STORE_KEY_MAX + 1], m[128], issuer[CT_JWT_CLAIM_MAX], *jwks = NULL;
    char *have = NULL;
    ct_secret *val = NULL;
    uint64_t ver = 0;
    json_error_t je;
    json_t *rec;
    vconn v;
    ct_err rc;

    *done = 0;
    if (mount_out)
        mount_out[0] = '\0';
    ctp_boot_key(key, sizeof key, fp, CTP_REVIEW_JWT_RECORD);
    rc = ct_store_get(store, key, &val, &ver, err);
    if (rc == CT_E_NOTFOUND)
        return CT_OK; /* no JWT auth mount for this cluster */
    if (rc != CT_OK)
        return rc;
    rec = json_loadb((const char *)ct_secret_data(val), ct_secret_len(val), 0, &je);
    ct_secret_free(val);
    if (!json_is_string(json_object_get(rec, "mount")) ||
        !mount_ok(json_string_value(json_object_get(rec, "mount")))) {
        json_decref(rec);
        return ctp_err(err, CT_E_STORE, 0, "%s: malformed record (no valid \"mount\")", key);
    }
    snprintf(m, sizeof m, "%s", json_string_value(json_object_get(rec, "mount")));
    if (mount_out)
        snprintf(mount_out, 128, "%s", m);
    have = json_dumps(json_object_get(rec, "jwks"), JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    if ((rc = read_pinned(store, fp, &jwks, issuer, err)) != CT_OK) {
        free(have);
        return rc;
    }
    {
        /* both canonical: compare parsed, so key order cannot matter */
        json_t *a = have ? json_loads(have, 0, &je) : NULL, *b = json_loads(jwks, 0, &je);
        int same = a && b && json_equal(a, b);
        json_decref(a);
        json_decref(b);
        free(have);
        if (same) {
            free(jwks);
            return CT_OK;
        }
    }
    if ((rc = vconn_open(ctx, vo, &v, err)) == CT_OK) {
        rc = post_jwt_config(ctx, &v, m, jwks, issuer, NULL, err);
        vconn_close(&v);
    }
    if (rc == CT_OK) {
        /* a conflict means another bridge recorded a sync meanwhile: Vault is current */
        rc = write_jwt_record(ctx, store, fp, m, jwks, (int64_t)ver, err);
        if (rc == CT_E_CONFLICT)
            rc = CT_OK;
        *done = 1;
    }
    free(jwks);
    return rc;
}
