/* transport.c - the ct_transport and ct_listener wrappers. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct ct_transport {
    ct_ctx *ctx;
    ct_transport_ops ops;
    void *user;
};

struct ct_listener {
    ct_transport *t;
    void *lst;
};

ct_err ct_transport_new(ct_ctx *ctx, const ct_transport_ops *ops, void *user,
                        ct_transport **out, ct_error *err)
{
    ct_transport *t;
    if (!out || !ops)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_new: NULL argument");
    *out = NULL;
    if (ops->version != CT_TRANSPORT_OPS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_transport_ops version %u is not supported",
                       (unsigned)ops->version);
    if (!ops->dial)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_ops lacks dial");
    if (ops->listen && (!ops->accept || !ops->listener_port || !ops->listener_close))
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_transport_ops with listen needs accept, listener_port and "
                       "listener_close");
    t = ctp_calloc(1, sizeof *t);
    if (!t)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    t->ctx = ctx;
    t->ops = *ops;
    t->user = user;
    *out = t;
    return CT_OK;
}

ct_err ct_transport_dial(ct_transport *t, const char *host, uint16_t port, int timeout_ms,
                         ct_conn **out, ct_error *err)
{
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_dial: out is NULL");
    *out = NULL;
    if (!t || !host)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_dial: NULL argument");
    return t->ops.dial(t->ctx, host, port, ctp_timeout(t->ctx, timeout_ms), out, err, t->user);
}

ct_err ct_transport_listen(ct_transport *t, const char *host, uint16_t port,
                           ct_listener **out, ct_error *err)
{
    ct_listener *l;
    ct_err rc;
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_listen: out is NULL");
    *out = NULL;
    if (!t)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_listen: NULL transport");
    if (!t->ops.listen)
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "this transport cannot listen");
    l = ctp_calloc(1, sizeof *l);
    if (!l)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    rc = t->ops.listen(t->ctx, host, port, &l->lst, err, t->user);
    if (rc != CT_OK) {
        free(l);
        return rc;
    }
    l->t = t;
    *out = l;
    return CT_OK;
}

ct_err ct_listener_accept(ct_listener *l, int timeout_ms, ct_conn **out, ct_error *err)
{
    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_listener_accept: out is NULL");
    *out = NULL;
    if (!l)
        return ctp_err(err, CT_E_INVALID, 0, "ct_listener_accept: NULL listener");
    return l->t->ops.accept(l->lst, ctp_timeout(l->t->ctx, timeout_ms), out, err, l->t->user);
}

uint16_t ct_listener_port(const ct_listener *l)
{
    return l ? l->t->ops.listener_port(l->lst, l->t->user) : 0;
}

void ct_listener_free(ct_listener *l)
{
    if (!l)
        return;
    l->t->ops.listener_close(l->lst, l->t->user);
    free(l);
}

void ct_transport_free(ct_transport *t)
{
    if (!t)
        return;
    if (t->ops.destroy)
        t->ops.destroy(t->user);
    free(t);
}
