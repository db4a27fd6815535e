/*
 * router.c - ct_router: dispatch of session requests by their "op".
 */
#include "internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct route {
    char op[CT_ROUTER_MAX_OP + 1];
    ct_agent_handler fn;
    void *arg;
};

struct ct_router {
    struct route *routes;
    size_t n, cap;
};

ct_err ct_router_new(ct_router **out, ct_error *err)
{
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_router_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    return CT_OK;
}

static int op_valid(const char *op)
{
    size_t n = 0;
    for (; op[n]; n++) {
        char c = op[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return n >= 1 && n <= CT_ROUTER_MAX_OP;
}

ct_err ct_router_add(ct_router *r, const char *op, ct_agent_handler fn, void *arg,
                     ct_error *err)
{
    size_t i;
    if (!r || !op || !fn)
        return ctp_err(err, CT_E_INVALID, 0, "ct_router_add: NULL argument");
    if (!op_valid(op))
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_router_add: op names are 1 to %d characters of [a-z0-9._-]",
                       CT_ROUTER_MAX_OP);
    for (i = 0; i < r->n; i++)
        if (strcmp(r->routes[i].op, op) == 0)
            return ctp_err(err, CT_E_CONFLICT, 0, "ct_router_add: op %s is already routed", op);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct route *nr = realloc(r->routes, cap * sizeof *nr);
        if (!nr)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        r->routes = nr;
        r->cap = cap;
    }
    snprintf(r->routes[r->n].op, sizeof r->routes[r->n].op, "%s", op);
    r->routes[r->n].fn = fn;
    r->routes[r->n].arg = arg;
    r->n++;
    return CT_OK;
}

ct_err ct_router_handle(void *router, const char *fingerprint, ct_session *s, uint32_t stream,
                        const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                        ct_error *err)
{
    ct_router *r = router;
    char op[CT_ROUTER_MAX_OP + 1], served[512];
    json_t *o;
    const char *v;
    size_t i, used = 0;

    if (!r || !req)
        return ctp_err(err, CT_E_INVALID, 0, "ct_router_handle: NULL argument");
    o = json_loadb((const char *)req, req_len, JSON_REJECT_DUPLICATES, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return ctp_err(err, CT_E_INVALID, 0, "request is not a JSON object");
    }
    v = json_string_value(json_object_get(o, "op"));
    if (!v || strlen(v) > CT_ROUTER_MAX_OP) {
        json_decref(o);
        return ctp_err(err, CT_E_INVALID, 0, "request has no valid \"op\"");
    }
    snprintf(op, sizeof op, "%s", v);
    json_decref(o);
    for (i = 0; i < r->n; i++)
        if (strcmp(r->routes[i].op, op) == 0)
            return r->routes[i].fn(r->routes[i].arg, fingerprint, s, stream, req, req_len, resp,
                                   resp_len, err);
    /* the op is the peer's text: only printable ASCII goes into the message */
    for (i = 0; op[i]; i++)
        if ((unsigned char)op[i] < 0x20 || (unsigned char)op[i] >= 0x7f || op[i] == '"')
            op[i] = '?';
    served[0] = 0;
    for (i = 0; i < r->n && used < sizeof served; i++) {
        int k = snprintf(served + used, sizeof served - used, "%s%s", i ? ", " : "",
                         r->routes[i].op);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return ctp_err(err, CT_E_UNSUPPORTED, 0, "unknown op \"%.64s\" (this peer serves: %s)", op,
                   r->n ? served : "nothing");
}

ct_err ct_router_ping(void *arg, const char *fingerprint, ct_session *s, uint32_t stream,
                      const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                      ct_error *err)
{
    struct timespec ts;
    char buf[256];
    int n;
    (void)arg;
    (void)s;
    (void)stream;
    (void)req;
    (void)req_len;
    clock_gettime(CLOCK_REALTIME, &ts);
    n = snprintf(buf, sizeof buf,
                 "{\"op\":\"pong\",\"version\":\"%s\",\"cluster\":\"%.8s\",\"time_ms\":%lld}",
                 ct_version(), fingerprint ? fingerprint : "",
                 (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (n < 0 || (size_t)n >= sizeof buf)
        return ctp_err(err, CT_E_INTERNAL, 0, "ping answer too long");
    if (!(*resp = (uint8_t *)strdup(buf)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    *resp_len = (size_t)n;
    return CT_OK;
}

void ct_router_free(ct_router *r)
{
    if (!r)
        return;
    free(r->routes);
    free(r);
}
