/*
 * review.c - TokenReview through the tunnel (review.h): the bridge-side
 * HTTPS endpoint Vault's Kubernetes auth method calls (libmicrohttpd with
 * TLS, a server certificate issued by the cluster CA), the reviewer token
 * record, and the operator-side handler of op "k8s.tokenreview".
 *
 * What stays in memory: libmicrohttpd's and GnuTLS's own read buffers hold
 * the request (with the pod token and the reviewer token) until they are
 * reused or freed; they are not wiped (docs/SECURITY.md). Every copy this
 * file makes is wiped.
 */
#include "bootstrap_internal.h"
#include "internal.h"
#include "review_internal.h"

#include "cloudtaser/review.h"
#include "cloudtaser/jwt.h"
#include "cloudtaser/pki.h"
#include "cloudtaser/room.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ANSWER ((size_t)256 << 10)

struct ct_review_server {
    ct_ctx *ctx;
    ct_store *store;
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_bridge *bridge;
    ct_review_forward_fn forward;
    void *forward_arg;
    int timeout_ms;
    size_t max_body;
    struct MHD_Daemon *d;
    uint16_t port;
    char url[80];
    char *ca_pem;
    char *cert_pem;
    ct_secret *key_pem;
    ct_secret *token;
    pthread_mutex_t mu;
    ct_review_stats stats;
};

/* ------------------------------------------------------------ helpers */

static void reviewer_key(char *key, size_t n, const char *fp)
{
    snprintf(key, n, "clusters/%s/reviewer", fp);
}

ct_err ct_review_token(ct_ctx *ctx, ct_store *store, const char *fingerprint, int create,
                       ct_secret **token, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1], key[CT_STORE_KEY_MAX + 1];
    int attempt;
    ct_err rc;

    if (!store || !token)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_token: NULL argument");
    *token = NULL;
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    if (!ctx)
        ctx = (ct_ctx *)ctp_default_ctx();
    if ((rc = ct_store_layout_check(ctx, store, NULL, err)) != CT_OK)
        return rc; /* a store laid out by a newer cloudtaser */
    reviewer_key(key, sizeof key, fp);
    for (attempt = 0; attempt < 2; attempt++) {
        ct_secret *v = NULL;
        json_t *root, *t;
        json_error_t je;

        rc = ct_store_get(store, key, &v, NULL, err);
        if (rc == CT_OK) {
            root = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v),
                              JSON_REJECT_DUPLICATES, &je);
            ct_secret_free(v);
            t = json_object_get(root, "token");
            if (!json_is_object(root) || !json_is_string(t) ||
                json_string_length(t) != CT_REVIEW_TOKEN_LEN) {
                ctp_review_free_json(root);
                return ctp_err(err, CT_E_STORE, 0, "%.8s...: the reviewer record is malformed "
                               "(delete %s to make a new token)", fp, key);
            }
            rc = ct_secret_from(json_string_value(t), CT_REVIEW_TOKEN_LEN, token, err);
            ctp_review_free_json(root);
            return rc;
        }
        if (rc != CT_E_NOTFOUND || !create)
            return rc;
        {
            uint8_t raw[32];
            char hex[CT_REVIEW_TOKEN_LEN + 1], body[160];
            int n;
            if ((rc = ct_ctx_random(ctx, raw, sizeof raw)) != CT_OK)
                return ctp_err(err, rc, 0, "no random bytes for the reviewer token");
            ct_hex(raw, sizeof raw, hex);
            ct_secure_wipe(raw, sizeof raw);
            n = snprintf(body, sizeof body, "{\"created_at\":%lld,\"token\":\"%s\",\"v\":1}",
                         (long long)ct_ctx_wall_ms(ctx), hex);
            rc = ct_store_put(store, key, body, (size_t)n, 0, NULL, err);
            ct_secure_wipe(body, sizeof body);
            if (rc == CT_OK)
                rc = ct_secret_from(hex, CT_REVIEW_TOKEN_LEN, token, err);
            ct_secure_wipe(hex, sizeof hex);
            if (rc != CT_E_CONFLICT)
                return rc; /* else: another bridge made one: read it */
        }
    }
    return ctp_err(err, CT_E_CONFLICT, 0, "%.8s...: the reviewer record keeps changing", fp);
}

ct_err ct_review_cluster_ca(ct_store *store, const char *fingerprint, char **pem,
                            ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1];
    uint8_t *der = NULL;
    size_t len = 0;
    ct_secret *key = NULL;
    ct_err rc;

    if (!store || !pem)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_cluster_ca: NULL argument");
    *pem = NULL;
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    rc = ctp_boot_read_keypair(store, fp, "ca", &der, &len, &key, err);
    ct_secret_free(key);
    if (rc == CT_E_NOTFOUND)
        return ctp_err(err, CT_E_NOTFOUND, 0, "%.8s...: the cluster is not registered (no CA "
                       "in the store)", fp);
    if (rc == CT_OK)
        rc = ct_cert_der_to_pem(der, len, pem, err);
    ct_free(der);
    return rc;
}

/* --------------------------------------------------------- responses */

typedef struct wbuf {
    size_t n;
    char data[];
} wbuf;

static void wbuf_free(void *p)
{
    wbuf *w = (wbuf *)((char *)p - offsetof(wbuf, data));
    ct_secure_wipe(w->data, w->n);
    free(w);
}

/* Queues body (copied into a buffer wiped when libmicrohttpd is done). */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned code, const char *body,
                            size_t len)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    wbuf *w = malloc(sizeof *w + len + 1);
    if (!w)
        return MHD_NO;
    w->n = len;
    memcpy(w->data, body, len);
    r = MHD_create_response_from_buffer_with_free_callback(len, w->data, wbuf_free);
    if (!r) {
        wbuf_free(w->data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache, private");
    ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* A Kubernetes Status (API.md B2) with code, reason and message. */
static enum MHD_Result status(ct_review_server *s, struct MHD_Connection *c, unsigned code,
                              const char *reason, const char *msg)
{
    json_t *o = json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion",
                          "v1", "metadata", "status", "Failure", "message", msg, "reason",
                          reason, "code", (int)code);
    enum MHD_Result ret = MHD_NO;
    size_t n;
    char *b = o ? ctp_review_dump(o, &n) : NULL;
    json_decref(o);
    pthread_mutex_lock(&s->mu);
    if (code == 401)
        s->stats.unauthorized++;
    else if (code >= 500)
        s->stats.unavailable++;
    else
        s->stats.refused++;
    pthread_mutex_unlock(&s->mu);
    if (b) {
        ret = respond(c, code, b, n);
        free(b);
    }
    return ret;
}

/* ----------------------------------------------------------- requests */

typedef struct hreq {
    char *body;
    size_t len, cap;
    int too_big;
} hreq;

static void req_free(hreq *r)
{
    if (!r)
        return;
    if (r->body) {
        ct_secure_wipe(r->body, r->cap);
        free(r->body);
    }
    free(r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req_free(*con_cls);
    *con_cls = NULL;
}

/* 1 if the Authorization header carries the reviewer token. */
static int authorized(ct_review_server *s, struct MHD_Connection *c)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    size_t n;
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return 0;
    a += 7;
    while (*a == ' ')
        a++;
    n = strlen(a);
    while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
        n--;
    if (n != ct_secret_len(s->token))
        return 0;
    return ct_memeq(a, ct_secret_data(s->token), n);
}

static enum MHD_Result review(ct_review_server *s, struct MHD_Connection *c, hreq *r)
{
    char *op = NULL, *outb = NULL, msg[320];
    size_t op_len = 0, out_len = 0, resp_len = 0;
    uint8_t *resp = NULL;
    json_t *spec = NULL, *ans = NULL, *st, *out = NULL;
    json_error_t je;
    const char *why = "";
    enum MHD_Result ret;
    ct_error e;
    ct_err rc;

    rc = ctp_review_build_op(r->body ? r->body : "", r->len, &op, &op_len, &spec, &why);
    if (rc != CT_OK)
        return rc == CT_E_NOMEM ? MHD_NO : status(s, c, 400, "BadRequest", why);
    if (s->forward)
        rc = s->forward(s->forward_arg, s->fp, op, op_len, s->timeout_ms, &resp, &resp_len,
                        &e);
    else
        rc = ct_bridge_request(s->bridge, s->fp, op, op_len, s->timeout_ms, &resp, &resp_len,
                               &e);
    ct_secure_wipe(op, op_len);
    free(op);
    if (rc != CT_OK) {
        ctp_review_free_json(spec);
        ctp_log(s->ctx, CT_LOG_NOTICE, "review.forward", "%.8s...: token review not "
                "performed: %s (%s)", s->fp, e.message, ct_err_name(rc));
        if (rc == CT_E_NOTFOUND || rc == CT_E_CLOSED) {
            snprintf(msg, sizeof msg, "no session with the cluster's operator (%.8s...): the "
                     "token cannot be reviewed now", s->fp);
            return status(s, c, 503, "ServiceUnavailable", msg);
        }
        if (rc == CT_E_TIMEOUT) {
            snprintf(msg, sizeof msg, "the cluster's operator (%.8s...) did not answer the "
                     "token review in time", s->fp);
            return status(s, c, 504, "Timeout", msg);
        }
        snprintf(msg, sizeof msg, "the token review failed in the cluster: %.240s", e.message);
        return status(s, c, 500, "InternalError", msg);
    }
    ans = resp_len <= MAX_ANSWER ? json_loadb((const char *)resp, resp_len,
                                              JSON_REJECT_DUPLICATES, &je)
                                 : NULL;
    ct_free(resp);
    st = json_object_get(ans, "status");
    if (!json_is_object(st)) {
        ctp_review_free_json(spec);
        json_decref(ans);
        return status(s, c, 500, "InternalError",
                      "the cluster's operator sent a malformed token review answer");
    }
    out = json_pack("{s:s,s:s,s:{},s:o,s:O}", "kind", "TokenReview", "apiVersion",
                    "authentication.k8s.io/v1", "metadata", "spec", spec, "status", st);
    spec = NULL; /* owned by out */
    json_decref(ans);
    if (!out || !(outb = ctp_review_dump(out, &out_len))) {
        ctp_review_free_json(out);
        return MHD_NO;
    }
    ctp_review_free_json(out);
    pthread_mutex_lock(&s->mu);
    s->stats.reviews++;
    pthread_mutex_unlock(&s->mu);
    ret = respond(c, 201, outb, out_len);
    ct_secure_wipe(outb, out_len);
    free(outb);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    ct_review_server *s = cls;
    hreq *r = *con_cls;
    (void)version;

    if (!r) {
        const char *cl;
        /* first call: headers only. Authenticate first, as the API server does. */
        if (!authorized(s, c))
            return status(s, c, 401, "Unauthorized", "Unauthorized");
        if (strcmp(url, CT_REVIEW_PATH) != 0)
            return status(s, c, 404, "NotFound",
                          "the server could not find the requested resource");
        if (strcmp(method, "POST") != 0) {
            char msg[200];
            snprintf(msg, sizeof msg, "tokenreviews.authentication.k8s.io is forbidden: the "
                     "reviewer may only create tokenreviews (not %.16s)", method);
            return status(s, c, 403, "Forbidden", msg);
        }
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->max_body)
            return status(s, c, 413, "RequestEntityTooLarge",
                          "the request body is larger than the endpoint accepts");
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big || r->len + n > s->max_body) {
            r->too_big = 1;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            char *nb;
            while (cap < r->len + n + 1)
                cap *= 2;
            if (!(nb = malloc(cap)))
                return MHD_NO;
            if (r->body) {
                memcpy(nb, r->body, r->len);
                ct_secure_wipe(r->body, r->cap);
                free(r->body);
            }
            r->body = nb;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (r->too_big)
        return status(s, c, 413, "RequestEntityTooLarge",
                      "the request body is larger than the endpoint accepts");
    return review(s, c, r);
}

/* libmicrohttpd's logger: fmt comes from the library (clang: -Wformat-nonliteral). */
static void mhd_log(void *cls, const char *fmt, va_list ap) CTP_PRINTF(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[256];
    vsnprintf(buf, sizeof buf, fmt, ap);
    ctp_log(cls, CT_LOG_INFO, "review.http", "%s", buf);
}

/* ---------------------------------------------------------- the server */

static ct_err make_cert(ct_review_server *s, const char *host, uint32_t days, ct_error *err)
{
    uint8_t *ca = NULL, *csr = NULL, *cert = NULL;
    size_t ca_len = 0, csr_len = 0, cert_len = 0;
    ct_secret *ca_key_pem = NULL;
    ct_key *ca_key = NULL, *key = NULL;
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    const char *ips[2] = { host, NULL };
    const char *dns[1] = { "localhost" };
    ct_err rc;

    rc = ctp_boot_read_keypair(s->store, s->fp, "ca", &ca, &ca_len, &ca_key_pem, err);
    if (rc == CT_E_NOTFOUND)
        return ctp_err(err, CT_E_NOTFOUND, 0, "%.8s...: the cluster is not registered (no CA "
                       "in the store)", s->fp);
    if (rc != CT_OK)
        return rc;
    rc = ct_key_load(s->ctx, ct_secret_data(ca_key_pem), ct_secret_len(ca_key_pem), &ca_key,
                     err);
    ct_secret_free(ca_key_pem);
    co.common_name = "cloudtaser tokenreview";
    co.organization = "cloudtaser";
    co.days_valid = days ? days : 30;
    co.dns_names = dns;
    co.n_dns_names = 1;
    co.ip_addrs = ips;
    co.n_ip_addrs = 1;
    if (rc == CT_OK)
        rc = ct_key_generate(s->ctx, &key, err);
    if (rc == CT_OK)
        rc = ct_csr_create(s->ctx, key, &co, &csr, &csr_len, err);
    if (rc == CT_OK)
        rc = ct_cert_issue(s->ctx, ca, ca_len, ca_key, csr, csr_len, CT_CERT_SERVER, &co, &cert,
                           &cert_len, err);
    if (rc == CT_OK)
        rc = ct_cert_der_to_pem(cert, cert_len, &s->cert_pem, err);
    if (rc == CT_OK)
        rc = ct_cert_der_to_pem(ca, ca_len, &s->ca_pem, err);
    if (rc == CT_OK)
        rc = ct_key_export(key, 1, &s->key_pem, err);
    ct_key_free(ca_key);
    ct_key_free(key);
    ct_free(ca);
    ct_free(csr);
    ct_free(cert);
    return rc;
}

static ct_err listen_on(ct_review_server *s, const char *host, uint16_t port, int *fd_out,
                        ct_error *err)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, one = 1, fam;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        sl = sizeof *a;
        fam = AF_INET;
        snprintf(s->url, sizeof s->url, "https://%s", host);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        sl = sizeof *a;
        fam = AF_INET6;
        snprintf(s->url, sizeof s->url, "https://[%s]", host);
    } else {
        return ctp_err(err, CT_E_INVALID, 0, "review endpoint: \"%.64s\" is not an IP address",
                       host);
    }
    fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ctp_err(err, CT_E_IO, errno, "review endpoint: socket: %s", strerror(errno));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return ctp_err(err, e == EADDRINUSE ? CT_E_ADDRINUSE : CT_E_IO, e,
                       "review endpoint: cannot listen on %s port %u: %s", host, port,
                       strerror(e));
    }
    sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return ctp_err(err, CT_E_IO, errno, "review endpoint: getsockname: %s",
                       strerror(errno));
    }
    s->port = ntohs(fam == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                   : ((struct sockaddr_in6 *)&ss)->sin6_port);
    snprintf(s->url + strlen(s->url), sizeof s->url - strlen(s->url), ":%u", s->port);
    *fd_out = fd;
    return CT_OK;
}

ct_err ct_review_server_start(ct_ctx *ctx, const ct_review_options *opts,
                              ct_review_server **out, ct_error *err)
{
    ct_review_server *s;
    const char *host;
    int fd = -1;
    ct_err rc;

    if (!ctx || !opts || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_server_start: NULL argument");
    *out = NULL;
    if (opts->version != CT_REVIEW_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_review_options: unknown version %u",
                       opts->version);
    if (!opts->store || (!opts->bridge && !opts->forward))
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_options: store and a bridge (or a "
                       "forward function) are required");
    s = calloc(1, sizeof *s);
    if (!s)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->ctx = ctx;
    s->store = opts->store;
    s->bridge = opts->bridge;
    s->forward = opts->forward;
    s->forward_arg = opts->forward_arg;
    s->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CT_REVIEW_DEFAULT_TIMEOUT_MS;
    s->max_body = opts->max_body ? opts->max_body : CT_REVIEW_DEFAULT_MAX_BODY;
    host = opts->host ? opts->host : "127.0.0.1";
    if ((rc = ct_fingerprint_canonical(opts->fingerprint, s->fp, err)) != CT_OK)
        goto fail;
    if ((rc = make_cert(s, host, opts->cert_days, err)) != CT_OK)
        goto fail;
    if ((rc = ct_review_token(ctx, s->store, s->fp, 1, &s->token, err)) != CT_OK)
        goto fail;
    if ((rc = listen_on(s, host, opts->port, &fd, err)) != CT_OK)
        goto fail;
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_TLS | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, handler, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)ctx,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                            MHD_OPTION_HTTPS_MEM_CERT, s->cert_pem,
                            MHD_OPTION_HTTPS_MEM_KEY, (const char *)ct_secret_data(s->key_pem),
                            MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned int)(opts->max_connections
                                               ? opts->max_connections
                                               : CT_REVIEW_DEFAULT_MAX_CONNECTIONS),
                            MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned int)(s->timeout_ms / 1000 + 20),
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10),
                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                            MHD_OPTION_END);
    if (!s->d) {
        close(fd);
        rc = ctp_err(err, CT_E_IO, 0, "review endpoint: cannot start the HTTPS server "
                     "(libmicrohttpd with TLS)");
        goto fail;
    }
    ctp_log(ctx, CT_LOG_INFO, "review.start", "%.8s...: TokenReview endpoint on %s", s->fp,
            s->url);
    *out = s;
    return CT_OK;
fail:
    ct_review_server_free(s);
    return rc;
}

uint16_t ct_review_server_port(const ct_review_server *s)
{
    return s ? s->port : 0;
}

const char *ct_review_server_url(const ct_review_server *s)
{
    return s ? s->url : "";
}

const char *ct_review_server_ca_pem(const ct_review_server *s)
{
    return s && s->ca_pem ? s->ca_pem : "";
}

void ct_review_server_stats(ct_review_server *s, ct_review_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

void ct_review_server_free(ct_review_server *s)
{
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    ct_free(s->ca_pem);
    ct_free(s->cert_pem);
    ct_secret_free(s->key_pem);
    ct_secret_free(s->token);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------ operator side */

struct ct_review_agent {
    ct_ctx *ctx;
    ct_k8s_client *client;
    pthread_mutex_t mu;
    char *last_jwks; /* the last set the bridge accepted (canonical), or NULL */
};

ct_err ct_review_agent_new(ct_ctx *ctx, ct_k8s_client *client, ct_review_agent **out,
                           ct_error *err)
{
    ct_review_agent *a;
    if (!client || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_agent_new: NULL argument");
    a = calloc(1, sizeof *a);
    if (!a)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    a->ctx = ctx;
    a->client = client;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return CT_OK;
}

void ct_review_agent_free(ct_review_agent *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->mu);
    free(a->last_jwks);
    free(a);
}

static json_t *str_list(size_t n, const char *(*get)(const ct_k8s_token_review *, size_t),
                        const ct_k8s_token_review *r)
{
    json_t *a = json_array();
    size_t i;
    for (i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(get(r, i)));
    return a;
}

/* The TokenReview status of a review, as the API server shapes it (API.md B6). */
static json_t *review_status(const ct_k8s_token_review *r)
{
    json_t *st = json_object(), *user = json_object();
    if (!st || !user) {
        json_decref(st);
        json_decref(user);
        return NULL;
    }
    if (ct_k8s_token_review_authenticated(r))
        json_object_set_new(st, "authenticated", json_true());
    if (*ct_k8s_token_review_username(r))
        json_object_set_new(user, "username", json_string(ct_k8s_token_review_username(r)));
    if (*ct_k8s_token_review_uid(r))
        json_object_set_new(user, "uid", json_string(ct_k8s_token_review_uid(r)));
    if (ct_k8s_token_review_group_count(r))
        json_object_set_new(user, "groups", str_list(ct_k8s_token_review_group_count(r),
                                                     ct_k8s_token_review_group, r));
    json_object_set_new(st, "user", user);
    if (ct_k8s_token_review_audience_count(r))
        json_object_set_new(st, "audiences", str_list(ct_k8s_token_review_audience_count(r),
                                                      ct_k8s_token_review_audience, r));
    if (*ct_k8s_token_review_error(r))
        json_object_set_new(st, "error", json_string(ct_k8s_token_review_error(r)));
    return st;
}

ct_err ct_review_agent_handle(void *agent, const char *fingerprint, ct_session *s,
                              uint32_t stream, const uint8_t *req, size_t req_len,
                              uint8_t **resp, size_t *resp_len, ct_error *err)
{
    ct_review_agent *a = agent;
    const char *auds[CTP_REVIEW_MAX_AUDIENCES];
    ct_k8s_token_review *rv = NULL;
    json_t *in, *tok, *aud, *x, *st, *out;
    json_error_t je;
    size_t i, n_aud = 0, n;
    char *b;
    ct_err rc;
    (void)fingerprint;
    (void)s;
    (void)stream;

    *resp = NULL;
    *resp_len = 0;
    if (!a)
        return ctp_err(err, CT_E_INVALID, 0, "k8s.tokenreview: no agent");
    in = json_loadb((const char *)req, req_len, JSON_REJECT_DUPLICATES, &je);
    tok = json_object_get(in, "token");
    aud = json_object_get(in, "audiences");
    if (!json_is_string(tok) || json_string_length(tok) == 0 ||
        strlen(json_string_value(tok)) != json_string_length(tok)) {
        ctp_review_free_json(in);
        return ctp_err(err, CT_E_INVALID, 0, "k8s.tokenreview: the request has no token");
    }
    if (json_string_length(tok) > CTP_REVIEW_MAX_TOKEN) {
        ctp_review_free_json(in);
        return ctp_err(err, CT_E_TOOBIG, 0, "k8s.tokenreview: the token is over %u bytes",
                       CTP_REVIEW_MAX_TOKEN);
    }
    if (aud && !json_is_null(aud)) {
        if (!json_is_array(aud) || json_array_size(aud) > CTP_REVIEW_MAX_AUDIENCES) {
            ctp_review_free_json(in);
            return ctp_err(err, CT_E_INVALID, 0, "k8s.tokenreview: audiences is not a list "
                           "of at most %u strings", CTP_REVIEW_MAX_AUDIENCES);
        }
        json_array_foreach(aud, i, x) {
            if (!json_is_string(x) || json_string_length(x) == 0) {
                ctp_review_free_json(in);
                return ctp_err(err, CT_E_INVALID, 0, "k8s.tokenreview: audiences is not a "
                               "list of non-empty strings");
            }
            auds[n_aud++] = json_string_value(x);
        }
    }
    pthread_mutex_lock(&a->mu);
    rc = ct_k8s_create_token_review(a->client, json_string_value(tok), auds, n_aud, &rv, err);
    pthread_mutex_unlock(&a->mu);
    ctp_review_free_json(in);
    if (rc != CT_OK)
        return rc;
    ctp_log(a->ctx, CT_LOG_INFO, "review.done", "token review: %s",
            ct_k8s_token_review_authenticated(rv) ? "authenticated" : "not authenticated");
    st = review_status(rv);
    ct_k8s_token_review_free(rv);
    out = st ? json_pack("{s:o}", "status", st) : NULL;
    b = out ? ctp_review_dump(out, &n) : NULL;
    json_decref(out);
    if (!b)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    *resp = (uint8_t *)b;
    *resp_len = n;
    return CT_OK;
}

/* ------------------------------------------------- issuer key rotation */

struct ct_review_jwks_sink {
    ct_ctx *ctx;
    ct_store *store;
    const ct_vault_options *vault; /* NULL: no Vault JWT auth to keep current */
};

ct_err ct_review_jwks_sink_new(ct_ctx *ctx, ct_store *store, ct_review_jwks_sink **out,
                               ct_error *err)
{
    ct_review_jwks_sink *k;
    if (!ctx || !store || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_jwks_sink_new: NULL argument");
    if (!(k = calloc(1, sizeof *k)))
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    k->ctx = ctx;
    k->store = store;
    *out = k;
    return CT_OK;
}

ct_err ct_review_jwks_sink_set_vault(ct_review_jwks_sink *k, const ct_vault_options *vault,
                                     ct_error *err)
{
    if (!k || !vault || !vault->address)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_jwks_sink_set_vault: no sink or no "
                       "Vault address");
    if (vault->version != CT_VAULT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_vault_options: unknown version %u",
                       vault->version);
    k->vault = vault;
    return CT_OK;
}

/*
 * Brings the cluster's Vault JWT auth config up to the pinned set, if it
 * has one. Returns "" (nothing to do), "updated" or "failed"; never fails
 * the push.
 */
static const char *sync_vault(ct_review_jwks_sink *k, const char *fp)
{
    char mount[128];
    ct_error e;
    int done = 0;

    if (!k->vault)
        return "";
    memset(&e, 0, sizeof e);
    if (ctp_review_jwt_sync(k->ctx, k->store, k->vault, fp, &done, mount, &e) != CT_OK) {
        ctp_log(k->ctx, CT_LOG_WARNING, "review.jwks", "%.8s...: Vault JWT auth%s%s was not "
                "updated with the rotated issuer keys: %s; retried on the next push", fp,
                mount[0] ? " auth/" : "", mount, e.message);
        return "failed";
    }
    if (done) {
        ctp_log(k->ctx, CT_LOG_NOTICE, "review.jwks", "%.8s...: Vault auth/%s/config now has "
                "the rotated issuer keys", fp, mount);
        return "updated";
    }
    return "";
}

void ct_review_jwks_sink_free(ct_review_jwks_sink *k)
{
    free(k);
}

/* 1 if the two canonical sets have a key in common. */
static int sets_overlap(const char *a, const char *b)
{
    json_error_t je;
    json_t *ja = json_loads(a, 0, &je), *jb = json_loads(b, 0, &je), *x, *y;
    size_t i, j;
    int hit = 0;
    json_array_foreach(json_object_get(ja, "keys"), i, x)
        json_array_foreach(json_object_get(jb, "keys"), j, y)
            if (json_equal(x, y))
                hit = 1;
    json_decref(ja);
    json_decref(jb);
    return hit;
}

ct_err ct_review_jwks_handle(void *sink, const char *fingerprint, ct_session *s,
                             uint32_t stream, const uint8_t *req, size_t req_len,
                             uint8_t **resp, size_t *resp_len, ct_error *err)
{
    ct_review_jwks_sink *k = sink;
    char key[CT_STORE_KEY_MAX + 1], *canon = NULL, *text = NULL, *out = NULL;
    const char *status = "unchanged", *vstatus;
    ct_jwks *set = NULL;
    json_t *in, *jw;
    json_error_t je;
    size_t n = 0, nkeys = 0;
    int attempt;
    ct_err rc;
    (void)s;
    (void)stream;

    *resp = NULL;
    *resp_len = 0;
    if (!k || !fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "k8s.jwks: no sink");
    in = json_loadb((const char *)req, req_len, JSON_REJECT_DUPLICATES, &je);
    jw = json_object_get(in, "jwks");
    if (!json_is_object(jw) || !(text = ctp_review_dump(jw, &n))) {
        json_decref(in);
        return ctp_err(err, CT_E_INVALID, 0, "k8s.jwks: the request has no key set (\"jwks\")");
    }
    json_decref(in);
    rc = ct_jwks_parse(k->ctx, text, n, &set, err);
    free(text);
    if (rc == CT_OK) {
        nkeys = ct_jwks_count(set);
        rc = ct_jwks_serialize(set, &canon, err);
    }
    ct_jwks_free(set);
    if (rc != CT_OK)
        return rc;
    ctp_boot_key(key, sizeof key, fingerprint, "initialized");
    for (attempt = 0; attempt < 5; attempt++) {
        ctp_boot_record *rec = NULL;
        ct_secret *v = NULL;
        char *body = NULL;
        size_t blen = 0;
        uint64_t ver = 0;

        rc = ct_store_get(k->store, key, &v, &ver, err);
        if (rc == CT_E_NOTFOUND) {
            rc = ctp_err(err, CT_E_STATE, 0, "%.8s...: the cluster is not initialized: no "
                         "pinned keys to update", fingerprint);
            break;
        }
        if (rc == CT_OK)
            rc = ctp_boot_record_decode(key, fingerprint, ct_secret_data(v), ct_secret_len(v),
                                        &rec, err);
        ct_secret_free(v);
        if (rc != CT_OK)
            break;
        if (!rec->jwks) {
            ctp_boot_record_free(rec);
            rc = ctp_err(err, CT_E_STATE, 0, "%.8s...: the cluster was initialized without "
                         "pinning issuer keys; nothing to update", fingerprint);
            break;
        }
        if (strcmp(rec->jwks, canon) == 0) {
            ctp_boot_record_free(rec);
            status = "unchanged";
            break;
        }
        if (!sets_overlap(rec->jwks, canon)) {
            ctp_boot_record_free(rec);
            rc = ctp_err(err, CT_E_DENIED, 0, "%.8s...: the new issuer key set shares no key "
                         "with the pinned one (a rotation publishes old and new keys side by "
                         "side); refused", fingerprint);
            break;
        }
        free(rec->jwks);
        rec->jwks = canon;
        canon = NULL;
        rec->updated_at = ct_ctx_wall_ms(k->ctx);
        rc = ctp_boot_record_encode(rec, &body, &blen, err);
        canon = rec->jwks; /* keep it for a retry */
        rec->jwks = NULL;
        ctp_boot_record_free(rec);
        if (rc == CT_OK)
            rc = ct_store_put(k->store, key, body, blen, (int64_t)ver, NULL, err);
        ct_free(body);
        if (rc == CT_OK) {
            status = "updated";
            ctp_log(k->ctx, CT_LOG_NOTICE, "review.jwks", "%.8s...: pinned issuer keys "
                    "updated (%zu keys)", fingerprint, nkeys);
            break;
        }
        if (rc != CT_E_CONFLICT)
            break;
    }
    if (attempt == 5)
        rc = ctp_err(err, CT_E_CONFLICT, 0, "%.8s...: the claim record kept changing",
                     fingerprint);
    free(canon);
    if (rc != CT_OK)
        return rc;
    vstatus = sync_vault(k, fingerprint);
    out = malloc(96);
    if (!out)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    if (*vstatus)
        n = (size_t)snprintf(out, 96, "{\"status\":\"%s\",\"keys\":%zu,\"vault\":\"%s\"}",
                             status, nkeys, vstatus);
    else
        n = (size_t)snprintf(out, 96, "{\"status\":\"%s\",\"keys\":%zu}", status, nkeys);
    *resp = (uint8_t *)out;
    *resp_len = n;
    return CT_OK;
}

ct_err ct_review_agent_sync_jwks(ct_review_agent *a, ct_operator *op, int timeout_ms,
                                 int *pushed, ct_error *err)
{
    char *json = NULL, *msg = NULL, *canon = NULL;
    ct_jwks *set = NULL;
    uint8_t *resp = NULL;
    size_t len = 0, rlen = 0, n;
    int vault_failed;
    ct_err rc;

    if (pushed)
        *pushed = 0;
    if (!a || !op)
        return ctp_err(err, CT_E_INVALID, 0, "ct_review_agent_sync_jwks: NULL argument");
    pthread_mutex_lock(&a->mu);
    rc = ct_k8s_get_jwks(a->client, &json, &len, err);
    pthread_mutex_unlock(&a->mu);
    if (rc != CT_OK)
        return rc;
    rc = ct_jwks_parse(a->ctx, json, len, &set, err);
    if (rc == CT_OK)
        rc = ct_jwks_serialize(set, &canon, err);
    ct_jwks_free(set);
    if (rc != CT_OK) {
        ct_free(json);
        return rc;
    }
    pthread_mutex_lock(&a->mu);
    n = a->last_jwks && strcmp(a->last_jwks, canon) == 0;
    pthread_mutex_unlock(&a->mu);
    if (n) {
        ct_free(json);
        ct_free(canon);
        return CT_OK;
    }
    n = len + 32;
    msg = malloc(n);
    if (!msg) {
        ct_free(json);
        ct_free(canon);
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    }
    n = (size_t)snprintf(msg, n, "{\"op\":\"k8s.jwks\",\"jwks\":%s}", json);
    ct_free(json);
    rc = ct_operator_request(op, msg, n, timeout_ms, &resp, &rlen, err);
    free(msg);
    /* the bridge could not update Vault's JWT auth: push the same set next time */
    vault_failed = rc == CT_OK && resp && memmem(resp, rlen, "\"vault\":\"failed\"", 17);
    ct_free(resp);
    if (rc == CT_OK && vault_failed) {
        if (pushed)
            *pushed = 1;
        ctp_log(a->ctx, CT_LOG_WARNING, "review.jwks", "issuer keys pushed; the bridge could "
                "not update Vault's JWT auth yet (see its log): pushing again next time");
    } else if (rc == CT_OK) {
        pthread_mutex_lock(&a->mu);
        free(a->last_jwks);
        a->last_jwks = canon;
        canon = NULL;
        pthread_mutex_unlock(&a->mu);
        if (pushed)
            *pushed = 1;
        ctp_log(a->ctx, CT_LOG_INFO, "review.jwks", "issuer keys pushed to the bridge");
    }
    ct_free(canon);
    return rc;
}
