/*
 * broker.c - ct_broker: the operator-side HTTPS server (libmicrohttpd,
 * GnuTLS underneath) serving the Vault API subset pods use, forwarding each
 * call through the operational session as {"op":"vault.http"}.
 * PROTOCOL.md 5.2 - 5.4.
 */
#include "b64.h"
#include "internal.h"
#include "pki_internal.h"

#include <cloudtaser/broker.h>
#include <cloudtaser/pki.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TOKEN 4096
#define MAX_NS 512
#define IDLE_TIMEOUT_S 30u

static const char MSG_UNSUPPORTED[] = "1 error occurred:\n\t* unsupported operation\n\n";

struct ct_broker {
    ct_ctx *ctx;
    ct_operator *op;
    ct_broker_forward_fn forward;
    ct_broker_up_fn up;
    void *arg;
    char host[INET6_ADDRSTRLEN];
    uint16_t want_port, port;
    char *names[CT_BROKER_MAX_NAMES];
    size_t n_names;
    size_t max_body;
    uint32_t max_in_flight;
    int timeout_ms;
    ct_key *key;
    ct_secret *key_pem;   /* NUL-terminated, for MHD */
    char *cert_chain;     /* leaf + CA, PEM */
    char *ca_pem;
    int64_t not_before, not_after;
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    uint32_t in_flight;
    /* renewal */
    uint32_t renew_permille, retry_ms, certs;
    pthread_t renewer;
    int renewing;                 /* the thread runs */
    int stopping;                 /* under mu: tells it to end */
    pthread_cond_t cv;            /* CLOCK_MONOTONIC */
};

/* ---- defaults: the operator ---- */

static ct_err op_forward(void *arg, const void *req, size_t len, int timeout_ms, uint8_t **resp,
                         size_t *resp_len, ct_error *err)
{
    return ct_operator_request(arg, req, len, timeout_ms, resp, resp_len, err);
}

static int op_up(void *arg)
{
    return ct_operator_connected(arg);
}

/* ---- lifecycle ---- */

void ct_broker_stop(ct_broker *b)
{
    if (!b)
        return;
    if (b->renewing) {
        pthread_mutex_lock(&b->mu);
        b->stopping = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->renewer, NULL);
        b->renewing = 0;
    }
    if (!b->d)
        return;
    MHD_stop_daemon(b->d);
    b->d = NULL;
    b->port = 0;
}

void ct_broker_free(ct_broker *b)
{
    size_t i;
    if (!b)
        return;
    ct_broker_stop(b);
    for (i = 0; i < b->n_names; i++)
        free(b->names[i]);
    ct_key_free(b->key);
    ct_secret_free(b->key_pem);
    free(b->cert_chain);
    free(b->ca_pem);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static int host_ok(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

ct_err ct_broker_new(ct_ctx *ctx, const ct_broker_options *opts, ct_broker **out, ct_error *err)
{
    static const char *const def_names[] = {"localhost", "127.0.0.1"};
    const char *const *names;
    size_t n, i;
    ct_broker *b;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_broker_new: out is NULL");
    *out = NULL;
    if (!opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_broker_new: no options");
    if (opts->version != 1 && opts->version != CT_BROKER_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_broker_options version %u is not supported",
                       (unsigned)opts->version);
    if (opts->version >= 2 && opts->renew_permille > 999)
        return ctp_err(err, CT_E_INVALID, 0, "renew_permille must be 1 to 999 (0: default)");
    if (!opts->op && !opts->forward)
        return ctp_err(err, CT_E_INVALID, 0, "ct_broker_new: needs the operator (or forward)");
    if (opts->host && !host_ok(opts->host))
        return ctp_err(err, CT_E_INVALID, 0, "broker listen address '%.64s' is not an IP literal",
                       opts->host);
    names = opts->n_names ? opts->names : def_names;
    n = opts->n_names ? opts->n_names : 2;
    if (!names || n > CT_BROKER_MAX_NAMES)
        return ctp_err(err, CT_E_INVALID, 0, "the broker takes 1 to %d certificate names",
                       CT_BROKER_MAX_NAMES);
    for (i = 0; i < n; i++)
        if (!names[i] || !*names[i] || strlen(names[i]) > 253)
            return ctp_err(err, CT_E_INVALID, 0, "broker name %zu is empty or too long", i);
    if (!(b = ctp_calloc(1, sizeof *b)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    pthread_mutex_init(&b->mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&b->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    b->renew_permille = opts->version >= 2 && opts->renew_permille ? opts->renew_permille
                                                                     : CT_BROKER_DEFAULT_RENEW_PERMILLE;
    b->retry_ms = opts->version >= 2 && opts->retry_ms ? opts->retry_ms : CT_BROKER_DEFAULT_RETRY_MS;
    b->ctx = ctx;
    b->op = opts->op;
    b->forward = opts->forward ? opts->forward : op_forward;
    b->up = opts->forward ? opts->up : op_up;
    b->arg = opts->forward ? opts->forward_arg : (void *)opts->op;
    snprintf(b->host, sizeof b->host, "%s", opts->host ? opts->host : "0.0.0.0");
    b->want_port = opts->port;
    b->max_body = opts->max_body ? opts->max_body : CT_BROKER_DEFAULT_MAX_BODY;
    b->max_in_flight = opts->max_in_flight ? opts->max_in_flight : CT_BROKER_DEFAULT_MAX_IN_FLIGHT;
    b->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CT_BROKER_DEFAULT_TIMEOUT_MS;
    for (i = 0; i < n; i++, b->n_names++)
        if (!(b->names[i] = ctp_strdup(names[i]))) {
            ct_broker_free(b);
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        }
    if ((rc = ct_key_generate(ctx, &b->key, err)) != CT_OK ||
        (rc = ct_key_export(b->key, 1, &b->key_pem, err)) != CT_OK) {
        ct_broker_free(b);
        return rc;
    }
    *out = b;
    return CT_OK;
}

uint16_t ct_broker_port(const ct_broker *b)
{
    return b ? b->port : 0;
}

int64_t ct_broker_not_after(const ct_broker *b)
{
    int64_t na;
    if (!b)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&b->mu);
    na = b->not_after;
    pthread_mutex_unlock((pthread_mutex_t *)&b->mu);
    return na;
}

uint32_t ct_broker_cert_count(const ct_broker *b)
{
    uint32_t n;
    if (!b)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&b->mu);
    n = b->certs;
    pthread_mutex_unlock((pthread_mutex_t *)&b->mu);
    return n;
}

ct_err ct_broker_ca_pem(const ct_broker *b, char **pem, ct_error *err)
{
    ct_err rc = CT_OK;
    if (!b || !pem)
        return ctp_err(err, CT_E_INVALID, 0, "ct_broker_ca_pem: NULL argument");
    *pem = NULL;
    pthread_mutex_lock((pthread_mutex_t *)&b->mu);
    if (!b->ca_pem)
        rc = ctp_err(err, CT_E_STATE, 0, "the broker has no certificate yet (not started)");
    else if (!(*pem = ctp_strdup(b->ca_pem)))
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    pthread_mutex_unlock((pthread_mutex_t *)&b->mu);
    return rc;
}

/* ---- answers ---- */

typedef struct owned_body {
    char *p;
    size_t n;
} owned_body;

static void free_body(void *cls)
{
    owned_body *ob = cls;
    if (ob->p) {
        ct_secure_wipe(ob->p, ob->n);
        free(ob->p);
    }
    free(ob);
}

/* Queues status + body (taken: wiped and freed by MHD's callback). */
static enum MHD_Result send_owned(struct MHD_Connection *c, unsigned status, char *body,
                                  size_t len, const char *ctype, const char *retry_after)
{
    struct MHD_Response *r;
    owned_body *ob = malloc(sizeof *ob);
    enum MHD_Result ret;
    if (!ob) {
        if (body) {
            ct_secure_wipe(body, len);
            free(body);
        }
        return MHD_NO;
    }
    ob->p = body;
    ob->n = len;
    r = MHD_create_response_from_buffer_with_free_callback_cls(len, body ? body : (void *)"",
                                                               free_body, ob);
    if (!r) {
        free_body(ob);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (ctype && *ctype)
        MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *o,
                                 const char *retry_after)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    char *copy = NULL;
    size_t n = s ? strlen(s) : 0;
    json_decref(o);
    if (!s)
        return MHD_NO;
    copy = malloc(n + 1);
    if (copy)
        memcpy(copy, s, n + 1);
    ct_secure_wipe(s, n);
    free(s);
    if (!copy)
        return MHD_NO;
    return send_owned(c, status, copy, n, "application/json", retry_after);
}

/* {"errors":[msg]} or {"errors":[]} for msg NULL. */
static enum MHD_Result send_errors(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *retry_after)
{
    json_t *a = json_array();
    if (msg)
        json_array_append_new(a, json_string(msg));
    return send_json(c, status, json_pack("{s:o}", "errors", a), retry_after);
}

/* ---- the request ---- */

typedef struct breq {
    char *body;
    size_t len;
    int too_big;
} breq;

static void breq_free(breq *r)
{
    if (!r)
        return;
    if (r->body) {
        ct_secure_wipe(r->body, r->len);
        free(r->body);
    }
    free(r);
}

static int go_bool(const char *s)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    size_t i;
    for (i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0)
            return 1;
        if (strcmp(s, f[i]) == 0)
            return 0;
    }
    return -1;
}

static int digits(const char *s, size_t max)
{
    size_t i;
    for (i = 0; s[i]; i++)
        if (s[i] < '0' || s[i] > '9' || i >= max)
            return 0;
    return i > 0;
}

static const char *arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* Appends name=value to q (cap bytes). */
static void q_add(char *q, size_t cap, const char *name, const char *value)
{
    size_t n = strlen(q);
    snprintf(q + n, cap - n, "%s%s=%s", n ? "&" : "", name, value);
}

/* The forwarded query: only the parameters the call understands, checked. -1: bad. */
static int build_query(struct MHD_Connection *c, const char *kind, char *q, size_t cap)
{
    const char *v;
    q[0] = 0;
    if (strcmp(kind, "kv-read") == 0) {
        if ((v = arg(c, "version"))) {
            if (!digits(v, 19))
                return -1;
            q_add(q, cap, "version", v);
        }
    } else if (strcmp(kind, "health") == 0) {
        static const char *const bools[] = {"standbyok", "perfstandbyok"};
        static const char *const codes[] = {"activecode", "standbycode", "sealedcode",
                                            "performancestandbycode", "drsecondarycode",
                                            "haunhealthycode", "uninitcode", "removedcode"};
        size_t i;
        for (i = 0; i < 2; i++)
            if ((v = arg(c, bools[i]))) {
                if (go_bool(v) < 0)
                    return -1;
                q_add(q, cap, bools[i], go_bool(v) ? "true" : "false");
            }
        for (i = 0; i < 8; i++)
            if ((v = arg(c, codes[i]))) {
                if (!digits(v, 3))
                    return -1;
                q_add(q, cap, codes[i], v);
            }
    }
    return 0;
}

static const char *token_of(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Vault-Token");
    if (t && *t)
        return t;
    t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (t && strncmp(t, "Bearer ", 7) == 0 && t[7])
        return t + 7;
    return NULL;
}

static enum MHD_Result send_tunnel_down(struct MHD_Connection *c, const char *state, int head)
{
    json_t *o = json_pack("{s:b, s:b, s:b, s:s}", "initialized", 1, "sealed", 1, "standby", 1,
                          "cloudtaser_tunnel", state);
    if (head) {
        json_decref(o);
        return send_owned(c, 503, NULL, 0, "application/json", "1");
    }
    return send_json(c, 503, o, "1");
}

/* Maps a failed forward to a Vault-shaped error. */
static enum MHD_Result send_forward_error(ct_broker *b, struct MHD_Connection *c, ct_err rc,
                                          const ct_error *e)
{
    char msg[320];
    switch (rc) {
    case CT_E_AUTH:
        return send_errors(c, 403, "1 error occurred:\n\t* permission denied\n\n", NULL);
    case CT_E_TIMEOUT:
        return send_errors(c, 504, "cloudtaser broker: no answer through the tunnel in time",
                           NULL);
    case CT_E_CLOSED:
    case CT_E_NOTFOUND:
    case CT_E_RESET:
        return send_errors(c, 503, "cloudtaser broker: the tunnel to the vault is down", "1");
    default:
        snprintf(msg, sizeof msg, "cloudtaser broker: %s", e->message);
        ctp_log(b->ctx, CT_LOG_NOTICE, "broker.forward", "%s (%s)", msg, ct_err_name(rc));
        return send_errors(c, 502, msg, NULL);
    }
}

/* Relays a vault.http answer {"status","body"|"body_b64","headers"}. */
static enum MHD_Result relay_answer(ct_broker *b, struct MHD_Connection *c, uint8_t *resp,
                                    size_t len, int health, int head)
{
    json_t *o = json_loadb((const char *)resp, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *st = json_object_get(o, "status"), *jb = json_object_get(o, "body");
    json_t *jb64 = json_object_get(o, "body_b64"), *h = json_object_get(o, "headers");
    const char *ctype = json_string_value(json_object_get(h, "Content-Type"));
    const char *ra = json_string_value(json_object_get(h, "Retry-After"));
    char ra_buf[16], ct_buf[128];
    char *body = NULL;
    size_t blen = 0;
    json_int_t status;
    enum MHD_Result ret;

    ct_secure_wipe(resp, len);
    if (!json_is_object(o) || !json_is_integer(st) || (json_integer_value(st) < 100) ||
        json_integer_value(st) > 599 || (jb && !json_is_string(jb)) ||
        (jb64 && !json_is_string(jb64))) {
        json_decref(o);
        ctp_log(b->ctx, CT_LOG_WARNING, "broker.answer", "malformed vault.http answer");
        return send_errors(c, 502, "cloudtaser broker: malformed answer from the bridge", NULL);
    }
    status = json_integer_value(st);
    snprintf(ra_buf, sizeof ra_buf, "%s", ra && digits(ra, 8) ? ra : "");
    snprintf(ct_buf, sizeof ct_buf, "%s", ctype && strlen(ctype) < sizeof ct_buf &&
                                                  !strpbrk(ctype, "\r\n") ? ctype : "");
    if (json_is_string(jb)) {
        blen = json_string_length(jb);
        if (health && !head && blen) {
            /* add the tunnel's state to Vault's health body */
            json_t *hb = json_loadb(json_string_value(jb), blen, 0, NULL);
            if (json_is_object(hb)) {
                json_object_set_new(hb, "cloudtaser_tunnel", json_string("up"));
                json_decref(o);
                return send_json(c, (unsigned)status, hb, ra_buf[0] ? ra_buf : NULL);
            }
            json_decref(hb);
        }
        if ((body = malloc(blen + 1)))
            memcpy(body, json_string_value(jb), blen);
        ct_secure_wipe((void *)(uintptr_t)json_string_value(jb), blen);
    } else if (json_is_string(jb64)) {
        size_t cap = ctp_b64_decoded_max(json_string_length(jb64));
        if ((body = malloc(cap + 1)) &&
            ctp_b64_decode(json_string_value(jb64), json_string_length(jb64), (uint8_t *)body,
                           cap, &blen, CTP_B64_STD) != 0) {
            ct_secure_wipe(body, cap);
            free(body);
            body = NULL;
            blen = 0;
        }
        ct_secure_wipe((void *)(uintptr_t)json_string_value(jb64), json_string_length(jb64));
    }
    json_decref(o);
    if (!body && blen) {
        return MHD_NO;
    }
    if (head && body) {
        ct_secure_wipe(body, blen);
        free(body);
        body = NULL;
        blen = 0;
    }
    ret = send_owned(c, (unsigned)status, body, blen, ct_buf, ra_buf[0] ? ra_buf : NULL);
    return ret;
}

static enum MHD_Result serve(ct_broker *b, struct MHD_Connection *c, const char *url,
                             const char *method_in, breq *r)
{
    const char *path, *kind = NULL, *tok, *ns, *lv;
    char method[8], query[512];
    int allowed, head = 0;
    json_t *rq = NULL;
    char *buf = NULL;
    size_t blen;
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    ct_error e;
    ct_err rc;
    enum MHD_Result ret;

    if (strncmp(url, "/v1/", 4) != 0)
        return send_errors(c, 404, NULL, NULL);
    path = url + 4;
    snprintf(method, sizeof method, "%s", method_in);
    if (strcmp(method, "GET") == 0 && (lv = arg(c, "list"))) {
        int bl = go_bool(lv);
        if (bl < 0)
            return send_errors(c, 400, NULL, NULL);
        if (bl)
            snprintf(method, sizeof method, "LIST");
    }
    allowed = ct_vault_api_allowed(method, path, &kind);
    if (allowed == 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "no handler for route \"%.1024s\". route entry not found.",
                 path);
        return send_errors(c, 404, msg, NULL);
    }
    if (allowed < 0)
        return send_errors(c, 405, MSG_UNSUPPORTED, NULL);
    if (r->too_big)
        return send_errors(c, 413, "cloudtaser broker: request body too large", NULL);
    if (build_query(c, kind, query, sizeof query) != 0)
        return send_errors(c, 400, "cloudtaser broker: unexpected query parameter value", NULL);
    head = strcmp(method, "HEAD") == 0;
    if (strcmp(kind, "health") == 0 && b->up && !b->up(b->arg))
        return send_tunnel_down(c, "down", head);
    tok = token_of(c);
    ns = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Vault-Namespace");
    if (tok && (strlen(tok) > MAX_TOKEN))
        return send_errors(c, 400, "cloudtaser broker: token too long", NULL);
    if (ns && strlen(ns) > MAX_NS)
        return send_errors(c, 400, "cloudtaser broker: namespace too long", NULL);
    rq = json_pack("{s:s, s:s, s:s, s:s, s:i}", "op", "vault.http", "method", method, "path",
                   path, "query", query, "timeout_ms", b->timeout_ms);
    if (!rq)
        return send_errors(c, 400, "cloudtaser broker: path is not valid UTF-8", NULL);
    if (tok)
        json_object_set_new(rq, "token", json_string(tok));
    if (ns && *ns)
        json_object_set_new(rq, "namespace", json_string(ns));
    if ((strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) && r->len) {
        json_t *jb = json_stringn(r->body, r->len);
        if (!jb) {
            json_decref(rq);
            return send_errors(c, 400, "error parsing JSON", NULL);
        }
        json_object_set_new(rq, "body", jb);
    }
    blen = json_dumpb(rq, NULL, 0, JSON_COMPACT);
    if (blen && (buf = malloc(blen)))
        json_dumpb(rq, buf, blen, JSON_COMPACT);
    {
        json_t *t = json_object_get(rq, "token"), *bd = json_object_get(rq, "body");
        if (t)
            ct_secure_wipe((void *)(uintptr_t)json_string_value(t), json_string_length(t));
        if (bd)
            ct_secure_wipe((void *)(uintptr_t)json_string_value(bd), json_string_length(bd));
    }
    json_decref(rq);
    if (!buf)
        return MHD_NO;
    memset(&e, 0, sizeof e);
    rc = b->forward(b->arg, buf, blen, b->timeout_ms, &resp, &resp_len, &e);
    ct_secure_wipe(buf, blen);
    free(buf);
    if (rc != CT_OK) {
        if (strcmp(kind, "health") == 0)
            return send_tunnel_down(c, "error", head);
        return send_forward_error(b, c, rc, &e);
    }
    ret = relay_answer(b, c, resp, resp_len, strcmp(kind, "health") == 0, head);
    free(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    ct_broker *b = cls;
    breq *r = *con_cls;
    enum MHD_Result ret;
    int over;
    (void)version;

    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (!r->too_big && r->len + n <= b->max_body) {
            char *nb = malloc(r->len + n + 1);
            if (!nb)
                return MHD_NO;
            if (r->body) {
                memcpy(nb, r->body, r->len);
                ct_secure_wipe(r->body, r->len);
                free(r->body);
            }
            memcpy(nb + r->len, upload_data, n);
            r->body = nb;
            r->len += n;
        } else {
            r->too_big = 1;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&b->mu);
    over = b->in_flight >= b->max_in_flight;
    if (!over)
        b->in_flight++;
    pthread_mutex_unlock(&b->mu);
    if (over)
        return send_errors(c, 503, "cloudtaser broker: too many requests in flight", "1");
    ret = serve(b, c, url, method, r);
    pthread_mutex_lock(&b->mu);
    b->in_flight--;
    pthread_mutex_unlock(&b->mu);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    breq_free(*con_cls);
    *con_cls = NULL;
}

/* libmicrohttpd's logger: fmt comes from the library (clang: -Wformat-nonliteral). */
static void mhd_log(void *cls, const char *fmt, va_list ap) CTP_PRINTF(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    ct_broker *b = cls;
    char buf[256];
    size_t n;
    vsnprintf(buf, sizeof buf, fmt, ap);
    n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    ctp_log(b->ctx, CT_LOG_NOTICE, "broker.http", "%s", buf);
}

/* ---- start: certificate through the session, then serve ---- */

/* A certificate obtained through the session, not yet in use. */
typedef struct newcert {
    char *chain, *ca;
    int64_t not_before, not_after;
} newcert;

static void newcert_clear(newcert *n)
{
    free(n->chain);
    free(n->ca);
    memset(n, 0, sizeof *n);
}

static ct_err get_cert(ct_broker *b, int timeout_ms, newcert *nc, ct_error *err)
{
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    uint8_t *csr = NULL, *resp = NULL, *cert_der = NULL, *ca_der = NULL;
    size_t csr_len = 0, resp_len = 0, cert_len = 0, ca_len = 0, i;
    json_t *rq = NULL, *names, *a = NULL;
    const char *cert, *ca;
    char *b64 = NULL, *buf = NULL;
    DecodedCert *dc;
    int64_t nb, na;
    ct_err rc;

    co.common_name = "cloudtaser-broker";
    if ((rc = ct_csr_create(b->ctx, b->key, &co, &csr, &csr_len, err)) != CT_OK)
        return rc;
    if (!(b64 = malloc(ctp_b64_encoded_len(csr_len, CTP_B64_STD) + 1))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    ctp_b64_encode(csr, csr_len, b64, CTP_B64_STD);
    names = json_array();
    for (i = 0; i < b->n_names; i++)
        json_array_append_new(names, json_string(b->names[i]));
    rq = json_pack("{s:s, s:s, s:o}", "op", "broker.cert", "csr", b64, "names", names);
    if (!rq || !(buf = json_dumps(rq, JSON_COMPACT))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = b->forward(b->arg, buf, strlen(buf), timeout_ms, &resp, &resp_len, err)) != CT_OK)
        goto out;
    a = json_loadb((const char *)resp, resp_len, JSON_REJECT_DUPLICATES, NULL);
    cert = json_string_value(json_object_get(a, "cert"));
    ca = json_string_value(json_object_get(a, "ca"));
    if (!cert || !ca ||
        ct_cert_pem_to_der(cert, strlen(cert), &cert_der, &cert_len, NULL) != CT_OK ||
        ct_cert_pem_to_der(ca, strlen(ca), &ca_der, &ca_len, NULL) != CT_OK) {
        rc = ctp_err(err, CT_E_PROTO, 0, "broker.cert: the answer carries no certificate");
        goto out;
    }
    if ((rc = ct_cert_verify(b->ctx, ca_der, ca_len, cert_der, cert_len, CT_CERT_SERVER, err)) !=
        CT_OK)
        goto out;
    if ((dc = ctp_pki_dc_new(cert_der, cert_len))) {
        if (wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL) == 0 &&
            ctp_pki_dc_dates(dc, &nb, &na) == 0) {
            nc->not_before = nb;
            nc->not_after = na;
        }
        ctp_pki_dc_free(dc);
    }
    nc->ca = ctp_strdup(ca);
    if ((nc->chain = malloc(strlen(cert) + strlen(ca) + 2)))
        sprintf(nc->chain, "%s%s%s", cert, cert[strlen(cert) - 1] == '\n' ? "" : "\n", ca);
    if (!nc->ca || !nc->chain) {
        newcert_clear(nc);
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
out:
    json_decref(a);
    json_decref(rq);
    free(buf);
    free(b64);
    free(resp);
    ct_free(csr);
    ct_free(cert_der);
    ct_free(ca_der);
    return rc;
}

/* Installs a new certificate (under mu). Takes nc's strings. */
static void use_cert(ct_broker *b, newcert *nc)
{
    pthread_mutex_lock(&b->mu);
    free(b->cert_chain);
    free(b->ca_pem);
    b->cert_chain = nc->chain;
    b->ca_pem = nc->ca;
    b->not_before = nc->not_before;
    b->not_after = nc->not_after;
    b->certs++;
    pthread_mutex_unlock(&b->mu);
    memset(nc, 0, sizeof *nc);
}

/* A daemon with `chain`, on a new socket (fd < 0) or the given listening socket. */
static struct MHD_Daemon *start_daemon(ct_broker *b, const char *chain, int fd)
{
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_TLS | MHD_USE_ERROR_LOG | MHD_USE_ITC;

    memset(&ss, 0, sizeof ss);
    if (strchr(b->host, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(b->want_port);
        inet_pton(AF_INET6, b->host, &s6->sin6_addr);
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(b->want_port);
        inet_pton(AF_INET, b->host, &s4->sin_addr);
    }
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, b, fd >= 0 ? MHD_OPTION_LISTEN_SOCKET
                                                     : MHD_OPTION_SOCK_ADDR,
        fd >= 0 ? (void *)(intptr_t)fd : (void *)&ss,
        MHD_OPTION_HTTPS_MEM_KEY, (const char *)ct_secret_data(b->key_pem),
        MHD_OPTION_HTTPS_MEM_CERT, chain, MHD_OPTION_NOTIFY_COMPLETED, on_completed, b,
        MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(b->max_in_flight + 64), MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, b, MHD_OPTION_END);
}

/* Wall-clock ms at which the certificate in use is due for renewal. */
static int64_t renew_due_ms(ct_broker *b)
{
    int64_t nb, na;
    pthread_mutex_lock(&b->mu);
    nb = b->not_before;
    na = b->not_after;
    pthread_mutex_unlock(&b->mu);
    if (na <= nb)
        return INT64_MAX / 2; /* unknown dates: never (the bridge's default is 30 days) */
    return (nb + (na - nb) * (int64_t)b->renew_permille / 1000) * 1000;
}

/* Waits up to ms (real time) unless stopping; returns 1 if stopping. */
static int pause_ms(ct_broker *b, int64_t ms)
{
    struct timespec ts;
    int stop;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&b->mu);
    while (!b->stopping && pthread_cond_timedwait(&b->cv, &b->mu, &ts) == 0)
        ;
    stop = b->stopping;
    pthread_mutex_unlock(&b->mu);
    return stop;
}

/* The new certificate goes live; the old server finishes what it has. */
static ct_err swap_in(ct_broker *b, newcert *nc, ct_error *err)
{
    struct MHD_Daemon *old = b->d, *nd;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(old, MHD_DAEMON_INFO_LISTEN_FD);
    MHD_socket lfd;
    char *old_chain;
    int64_t until;
    int fd;

    if (!di || di->listen_fd == MHD_INVALID_SOCKET)
        return ctp_err(err, CT_E_IO, 0, "the broker cannot find its listening socket");
    lfd = di->listen_fd;
    /*
     * The new server starts on a duplicate of the listening socket while
     * the old one still accepts, so a failure leaves the old server as it
     * was (serving with the certificate in use; the renewal is retried).
     * libmicrohttpd may close the duplicate when it fails to start; it is
     * not closed here, since a second close could hit a descriptor another
     * thread has opened meanwhile.
     */
    if ((fd = fcntl(lfd, F_DUPFD_CLOEXEC, 0)) < 0)
        return ctp_err(err, CT_E_IO, errno, "the broker cannot share its listening socket: %s",
                       strerror(errno));
    /* two servers poll the socket for a moment: accept must never block */
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    nd = start_daemon(b, nc->chain, fd);
    if (!nd)
        return ctp_err(err, CT_E_IO, 0, "the broker's server refused the renewed certificate");
    /* from now on only the new server accepts */
    if (MHD_quiesce_daemon(old) == lfd)
        close(lfd);
    pthread_mutex_lock(&b->mu);
    b->d = nd;
    old_chain = b->cert_chain;
    b->cert_chain = NULL; /* kept for the old server until it stops */
    pthread_mutex_unlock(&b->mu);
    use_cert(b, nc);
    /* requests in progress on the old server finish; then it stops */
    until = ctp_mono_ms() + b->timeout_ms + 5000;
    while (ctp_mono_ms() < until) {
        di = MHD_get_daemon_info(old, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!di || di->num_connections == 0)
            break;
        if (pause_ms(b, 50))
            break;
    }
    MHD_stop_daemon(old);
    free(old_chain);
    return CT_OK;
}

static void *renew_main(void *arg)
{
    ct_broker *b = arg;
    uint32_t backoff = 0;

    for (;;) {
        int64_t wait = renew_due_ms(b) - ct_ctx_wall_ms(b->ctx);
        newcert nc = {0};
        ct_error e;
        ct_err rc;

        if (wait > 0) {
            /* not due (again: a retry is moot once the clock says so); the
             * context's wall clock may jump (tests): look again every second */
            backoff = 0;
            if (pause_ms(b, wait < 1000 ? wait : 1000))
                break;
            continue;
        }
        if (backoff) {
            if (pause_ms(b, backoff))
                break;
            if (renew_due_ms(b) > ct_ctx_wall_ms(b->ctx))
                continue; /* no longer due: the top of the loop resets the backoff */
        }
        memset(&e, 0, sizeof e);
        rc = get_cert(b, b->timeout_ms, &nc, &e);
        if (rc == CT_OK)
            rc = swap_in(b, &nc, &e);
        newcert_clear(&nc);
        if (rc == CT_OK && renew_due_ms(b) <= ct_ctx_wall_ms(b->ctx))
            /* e.g. the leaf is capped by a cluster CA about to expire: never spin */
            rc = ctp_err(&e, CT_E_STATE, 0, "the renewed certificate (valid until %lld) is "
                         "already due for renewal; does the cluster CA expire soon?",
                         (long long)ct_broker_not_after(b));
        if (rc == CT_OK) {
            backoff = 0;
            ctp_log(b->ctx, CT_LOG_NOTICE, "broker.renewed", "broker certificate renewed "
                    "(valid until %lld)", (long long)ct_broker_not_after(b));
        } else {
            backoff = backoff ? (backoff >= 300000 ? 600000 : backoff * 2) : b->retry_ms;
            ctp_log(b->ctx, CT_LOG_WARNING, "broker.renew", "renewing the broker certificate "
                    "failed: %s; retrying in %u s", e.message, (unsigned)(backoff / 1000));
        }
        pthread_mutex_lock(&b->mu);
        rc = b->stopping ? CT_E_CLOSED : CT_OK;
        pthread_mutex_unlock(&b->mu);
        if (rc != CT_OK)
            break;
    }
    ct_thread_cleanup();
    return NULL;
}

ct_err ct_broker_start(ct_broker *b, int timeout_ms, ct_error *err)
{
    const union MHD_DaemonInfo *di;
    newcert nc = {0};
    ct_err rc;

    if (!b)
        return ctp_err(err, CT_E_INVALID, 0, "ct_broker_start: NULL broker");
    if (b->d)
        return ctp_err(err, CT_E_STATE, 0, "the broker is already serving");
    if ((rc = get_cert(b, timeout_ms, &nc, err)) != CT_OK)
        return rc;
    use_cert(b, &nc);
    b->d = start_daemon(b, b->cert_chain, -1);
    if (!b->d)
        return ctp_err(err, CT_E_IO, 0,
                       "the broker cannot listen on %s port %u (in use? or the TLS key and "
                       "certificate were refused)",
                       b->host, (unsigned)b->want_port);
    di = MHD_get_daemon_info(b->d, MHD_DAEMON_INFO_BIND_PORT);
    b->port = di ? di->port : b->want_port;
    b->stopping = 0;
    if (pthread_create(&b->renewer, NULL, renew_main, b) != 0) {
        MHD_stop_daemon(b->d);
        b->d = NULL;
        return ctp_err(err, CT_E_NOMEM, 0, "cannot start the renewal thread");
    }
    b->renewing = 1;
    ctp_log(b->ctx, CT_LOG_INFO, "broker.up", "broker serving the Vault API on %s port %u",
            b->host, (unsigned)b->port);
    return CT_OK;
}
