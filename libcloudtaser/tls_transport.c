/*
 * tls_transport.c - ct_transport_new_tls: a transport whose dial and accept
 * run TLS over the connections of an inner transport.
 */
#include "tls_internal.h"

#include <errno.h>
#include <stdlib.h>

typedef struct tls_transport {
    ct_transport *inner;
    ct_tls_config *cfg;
} tls_transport;

static ct_err tt_dial(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                      ct_conn **out, ct_error *err, void *user)
{
    tls_transport *tt = user;
    ct_conn *c = NULL;
    int64_t deadline = ctp_deadline(ctx, timeout_ms);
    int left;
    ct_err rc;

    if (tt->cfg->role != CT_TLS_CLIENT)
        return ctp_err(err, CT_E_INVALID, 0, "TLS transport: dial needs a client configuration");
    rc = ct_transport_dial(tt->inner, host, port, timeout_ms, &c, err);
    if (rc != CT_OK)
        return rc;
    /* One deadline for the connect and the handshake. */
    left = ctp_remaining(deadline);
    return ct_tls_wrap(tt->cfg, c, left > 0 ? left : 1, out, err);
}

static ct_err tt_listen(ct_ctx *ctx, const char *host, uint16_t port, void **lst,
                        ct_error *err, void *user)
{
    tls_transport *tt = user;
    ct_listener *l = NULL;
    ct_err rc;

    (void)ctx;
    if (tt->cfg->role != CT_TLS_SERVER)
        return ctp_err(err, CT_E_INVALID, 0,
                       "TLS transport: listen needs a server configuration");
    rc = ct_transport_listen(tt->inner, host, port, &l, err);
    if (rc == CT_OK)
        *lst = l;
    return rc;
}

/* timeout_ms bounds the wait for a connection; the handshake has its own. */
static ct_err tt_accept(void *lst, int timeout_ms, ct_conn **out, ct_error *err, void *user)
{
    tls_transport *tt = user;
    ct_conn *c = NULL;
    ct_err rc = ct_listener_accept(lst, timeout_ms, &c, err);
    if (rc != CT_OK)
        return rc;
    return ct_tls_wrap(tt->cfg, c, -1, out, err);
}

static uint16_t tt_listener_port(void *lst, void *user)
{
    (void)user;
    return ct_listener_port(lst);
}

static void tt_listener_close(void *lst, void *user)
{
    (void)user;
    ct_listener_free(lst);
}

static void tt_destroy(void *user)
{
    tls_transport *tt = user;
    ct_transport_free(tt->inner);
    free(tt);
}

ct_err ct_transport_new_tls(ct_ctx *ctx, ct_transport *inner, ct_tls_config *cfg,
                            ct_transport **out, ct_error *err)
{
    static const ct_transport_ops ops = {
        CT_TRANSPORT_OPS_VERSION, 0, tt_dial, tt_listen, tt_accept, tt_listener_port,
        tt_listener_close, tt_destroy,
    };
    tls_transport *tt;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_new_tls: out is NULL");
    *out = NULL;
    if (!inner || !cfg)
        return ctp_err(err, CT_E_INVALID, 0, "ct_transport_new_tls: NULL argument");
    tt = ctp_calloc(1, sizeof *tt);
    if (!tt)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    tt->inner = inner;
    tt->cfg = cfg;
    rc = ct_transport_new(ctx, &ops, tt, out, err);
    if (rc != CT_OK)
        free(tt); /* the caller keeps inner */
    return rc;
}
