/*
 * review_vault.c - ct_review_configure_vault (review.h): points a cluster's
 * Kubernetes auth mount in Vault / OpenBao at the bridge's TokenReview
 * endpoint, over the shared HTTPS client (http.c).
 */
#include "http_internal.h"
#include "internal.h"

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

ct_err ct_review_configure_vault(ct_ctx *ctx, const ct_vault_options *vo, const char *mount,
                                 const char *fingerprint, const char *url, const char *ca_pem,
                                 const ct_secret *reviewer, int enable, char *mount_out,
                                 ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1], m[128], path[256], msg[300], base[1024];
    ctp_http_config hc;
    ctp_http *h = NULL;
    ct_secret *token = NULL;
    json_t *cfg = NULL;
    char *body = NULL;
    size_t blen = 0;
    long st = 0;
    ct_err rc;

    if (mount_out)
        mount_out[0] = '\0';
    if (!ctx || !vo || !url || !ca_pem || !reviewer || !vo->address)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_configure_vault: NULL argument");
    if (vo->version != CT_VAULT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_vault_options: unknown version %u",
                       vo->version);
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    if (mount)
        snprintf(m, sizeof m, "%s", mount);
    else
        snprintf(m, sizeof m, "kubernetes-%.8s", fp);
    if (!mount_ok(m))
        return ctp_err(err, CT_E_INVALID, 0, "\"%.100s\" is not a valid auth mount path", m);
    if (strncmp(vo->address, "https://", 8) != 0 || strlen(vo->address) >= 900)
        return ctp_err(err, CT_E_INVALID, 0, "the Vault address must be https://host[:port]");
    snprintf(base, sizeof base, "%s", vo->address);
    while (strlen(base) > 8 && base[strlen(base) - 1] == '/')
        base[strlen(base) - 1] = '\0';
    if ((rc = read_token(vo, &token, err)) != CT_OK)
        return rc;
    memset(&hc, 0, sizeof hc);
    hc.ca_file = vo->ca_file && *vo->ca_file ? vo->ca_file : NULL;
    hc.ca_path = vo->ca_path && *vo->ca_path ? vo->ca_path : NULL;
    hc.cert_file = vo->client_cert;
    hc.key_file = vo->client_key;
    hc.timeout_ms = vo->timeout_ms > 0 ? vo->timeout_ms : ctp_timeout(ctx, -1);
    if ((rc = ctp_http_new(ctx, &hc, &h, err)) != CT_OK)
        goto out;
    if (enable) {
        static const char en[] = "{\"type\":\"kubernetes\",\"description\":\"cloudtaser: "
                                 "TokenReview through the tunnel\"}";
        snprintf(path, sizeof path, "sys/auth/%s", m);
        rc = post(h, base, path, token, vo->namespace_path, en, sizeof en - 1, &st, msg,
                  sizeof msg, err);
        if (rc != CT_OK)
            goto out;
        if (!(st >= 200 && st < 300) && !(st == 400 && strstr(msg, "already in use"))) {
            rc = status_error(st, path, msg, err);
            goto out;
        }
    }
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
    rc = post(h, base, path, token, vo->namespace_path, body, blen, &st, msg, sizeof msg, err);
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
    ctp_http_free(h);
    ct_secret_free(token);
    return rc;
}
