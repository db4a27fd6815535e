/* conn.c - the ct_conn wrapper over ct_conn_ops, and the deadline loops. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ct_conn {
    ct_ctx *ctx;
    ct_conn_ops ops;
    void *state;
    void *user;
};

ct_err ct_conn_new(ct_ctx *ctx, const ct_conn_ops *ops, void *state, void *user,
                   ct_conn **out, ct_error *err)
{
    ct_conn *c;
    if (!out || !ops)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_new: NULL argument");
    *out = NULL;
    if (ops->version != CT_CONN_OPS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_conn_ops version %u is not supported",
                       (unsigned)ops->version);
    if (!ops->send || !ops->recv || !ops->close)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_ops lacks a required method");
    c = ctp_calloc(1, sizeof *c);
    if (!c)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    c->ctx = ctx;
    c->ops = *ops;
    c->state = state;
    c->user = user;
    *out = c;
    return CT_OK;
}

const ct_conn_ops *ctp_conn_ops(const ct_conn *c)
{
    return &c->ops;
}

void *ctp_conn_state(const ct_conn *c)
{
    return c->state;
}

ct_ctx *ct_conn_ctx(const ct_conn *c)
{
    return c ? c->ctx : NULL;
}

ct_err ct_conn_send(ct_conn *c, const void *p, size_t n, size_t *sent, int timeout_ms,
                    ct_error *err)
{
    size_t dummy;
    ct_err rc;
    if (!sent)
        sent = &dummy;
    *sent = 0;
    if (!c || (!p && n))
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_send: NULL argument");
    if (n == 0)
        return CT_OK;
    rc = c->ops.send(c->state, p, n, sent, ctp_timeout(c->ctx, timeout_ms), err, c->user);
    if (rc != CT_OK)
        *sent = 0;
    return rc;
}

ct_err ct_conn_recv(ct_conn *c, void *p, size_t cap, size_t *got, int timeout_ms,
                    ct_error *err)
{
    size_t dummy;
    ct_err rc;
    if (!got)
        got = &dummy;
    *got = 0;
    if (!c || !p || cap == 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_recv: NULL argument or zero capacity");
    rc = c->ops.recv(c->state, p, cap, got, ctp_timeout(c->ctx, timeout_ms), err, c->user);
    if (rc != CT_OK)
        *got = 0;
    return rc;
}

ct_err ct_conn_send_all(ct_conn *c, const void *p, size_t n, size_t *sent, int timeout_ms,
                        ct_error *err)
{
    const uint8_t *b = p;
    size_t done = 0;
    int64_t deadline;
    ct_err rc = CT_OK;

    if (!c || (!p && n)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "ct_conn_send_all: NULL argument");
        goto out;
    }
    deadline = ctp_deadline(c->ctx, timeout_ms);
    while (done < n) {
        size_t k = 0;
        rc = c->ops.send(c->state, b + done, n - done, &k, ctp_remaining(deadline), err,
                         c->user);
        if (rc == CT_E_AGAIN && ctp_remaining(deadline) > 0)
            continue;
        if (rc == CT_E_AGAIN)
            rc = ctp_err(err, timeout_ms == 0 ? CT_E_AGAIN : CT_E_TIMEOUT, 0,
                         "send did not complete before the deadline");
        if (rc != CT_OK)
            break;
        done += k;
    }
out:
    if (sent)
        *sent = done;
    return rc;
}

ct_err ct_conn_recv_exact(ct_conn *c, void *p, size_t n, size_t *got, int timeout_ms,
                          ct_error *err)
{
    uint8_t *b = p;
    size_t done = 0;
    int64_t deadline;
    ct_err rc = CT_OK;

    if (!c || (!p && n)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "ct_conn_recv_exact: NULL argument");
        goto out;
    }
    deadline = ctp_deadline(c->ctx, timeout_ms);
    while (done < n) {
        size_t k = 0;
        rc = c->ops.recv(c->state, b + done, n - done, &k, ctp_remaining(deadline), err,
                         c->user);
        if (rc == CT_E_AGAIN && ctp_remaining(deadline) > 0)
            continue;
        if (rc == CT_E_AGAIN)
            rc = ctp_err(err, timeout_ms == 0 ? CT_E_AGAIN : CT_E_TIMEOUT, 0,
                         "receive did not complete before the deadline");
        if (rc != CT_OK)
            break;
        done += k;
    }
out:
    if (got)
        *got = done;
    return rc;
}

ct_err ct_conn_shutdown_write(ct_conn *c, int timeout_ms, ct_error *err)
{
    if (!c)
        return ctp_err(err, CT_E_INVALID, 0, "ct_conn_shutdown_write: NULL connection");
    if (!c->ops.shutdown_write)
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "this connection cannot half-close");
    return c->ops.shutdown_write(c->state, ctp_timeout(c->ctx, timeout_ms), err, c->user);
}

int ct_conn_get_fd(const ct_conn *c)
{
    if (!c || !c->ops.get_fd)
        return -1;
    return c->ops.get_fd(c->state, c->user);
}

size_t ct_conn_pending(const ct_conn *c)
{
    if (!c || !c->ops.pending)
        return 0;
    return c->ops.pending(c->state, c->user);
}

void ct_conn_free(ct_conn *c)
{
    if (!c)
        return;
    c->ops.close(c->state, c->user);
    if (c->ops.destroy)
        c->ops.destroy(c->user);
    free(c);
}
