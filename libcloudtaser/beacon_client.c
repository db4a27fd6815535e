/*
 * beacon_client.c - the peer side of the beacon protocol (PROTOCOL.md 1):
 * TCP (or a given transport), TLS 1.3 verifying the beacon, the 40-byte
 * hello, then status bytes until PAIRED.
 *
 * The returned connection wraps the TLS connection together with its TLS
 * configuration (which must outlive the connection), so freeing the
 * ct_conn frees both.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct beacon_leg {
    ct_conn *tls;
    ct_tls_config *cfg;
};

static ct_err leg_send(void *state, const uint8_t *p, size_t n, size_t *sent, int timeout_ms,
                       ct_error *err, void *user)
{
    struct beacon_leg *l = state;
    (void)user;
    return ct_conn_send(l->tls, p, n, sent, timeout_ms, err);
}

static ct_err leg_recv(void *state, uint8_t *p, size_t cap, size_t *got, int timeout_ms,
                       ct_error *err, void *user)
{
    struct beacon_leg *l = state;
    (void)user;
    return ct_conn_recv(l->tls, p, cap, got, timeout_ms, err);
}

static ct_err leg_shutdown_write(void *state, int timeout_ms, ct_error *err, void *user)
{
    struct beacon_leg *l = state;
    (void)user;
    return ct_conn_shutdown_write(l->tls, timeout_ms, err);
}

static void leg_close(void *state, void *user)
{
    struct beacon_leg *l = state;
    (void)user;
    ct_conn_free(l->tls);
    ct_tls_config_free(l->cfg);
    free(l);
}

static int leg_get_fd(void *state, void *user)
{
    struct beacon_leg *l = state;
    (void)user;
    return ct_conn_get_fd(l->tls);
}

static size_t leg_pending(void *state, void *user)
{
    struct beacon_leg *l = state;
    (void)user;
    return ct_conn_pending(l->tls);
}

static const ct_conn_ops leg_ops = {
    .version = CT_CONN_OPS_VERSION,
    .send = leg_send,
    .recv = leg_recv,
    .shutdown_write = leg_shutdown_write,
    .close = leg_close,
    .get_fd = leg_get_fd,
    .pending = leg_pending,
};

static int remaining_or_zero(int64_t deadline)
{
    int r = ctp_remaining(deadline);
    return r > 0 ? r : 0;
}

/* A refusal status byte -> error (PROTOCOL.md 1.3). */
static ct_err status_error(int st, ct_error *err)
{
    switch (st) {
    case CT_BEACON_TIMEOUT:
        return ctp_err(err, CT_E_TIMEOUT, st, "beacon: no partner within its waiting limit (TIMEOUT)");
    case CT_BEACON_BAD_HELLO:
    case CT_BEACON_ROOM_BUSY:
    case CT_BEACON_RATE_LIMITED:
    case CT_BEACON_DRAINING:
    case CT_BEACON_OVERLOADED:
    case CT_BEACON_BAD_VERSION:
        return ctp_err(err, CT_E_REFUSED, st, "beacon refused: %s", ct_beacon_status_name(st));
    default:
        return ctp_err(err, CT_E_PROTO, st, "beacon: unexpected status byte 0x%02x", st);
    }
}

/* Checks the options every entry point shares. */
static ct_err check_opts(ct_ctx *ctx, const ct_beacon_options *opts, const char *fn,
                         ct_error *err)
{
    if (!ctx || !opts)
        return ctp_err(err, CT_E_INVALID, 0, "%s: NULL argument", fn);
    if (opts->version != CT_BEACON_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_beacon_options version %u is not supported",
                       (unsigned)opts->version);
    if (!opts->host || !*opts->host)
        return ctp_err(err, CT_E_INVALID, 0, "%s: host is required", fn);
    if (!opts->ca_file && !(opts->ca && opts->ca_len) && !opts->use_system_ca &&
        !opts->pin_sha256)
        return ctp_err(err, CT_E_INVALID, 0,
                       "%s: no way to verify the beacon (CA, system CAs or pin)", fn);
    if (opts->connect_timeout_ms < 0 || opts->pair_timeout_ms < 0)
        return ctp_err(err, CT_E_INVALID, 0, "%s: negative timeout", fn);
    return CT_OK;
}

ct_err ct_beacon_open(ct_ctx *ctx, const ct_beacon_options *opts, ct_conn **out, ct_error *err)
{
    ct_tls_options to = CT_TLS_OPTIONS_INIT;
    ct_transport *own_tp = NULL, *tp;
    ct_conn *tcp = NULL, *tls = NULL;
    ct_tls_config *cfg = NULL;
    struct beacon_leg *leg = NULL;
    int64_t deadline;
    int connect_ms;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_beacon_open: out is NULL");
    *out = NULL;
    if ((rc = check_opts(ctx, opts, "ct_beacon_open", err)) != CT_OK)
        return rc;
    connect_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
    deadline = ctp_mono_ms() + connect_ms;

    tp = opts->transport;
    if (!tp) {
        if ((rc = ct_transport_new_tcp(ctx, &own_tp, err)) != CT_OK)
            goto out;
        tp = own_tp;
    }
    to.role = CT_TLS_CLIENT;
    to.flags = opts->use_system_ca ? CT_TLS_F_SYSTEM_CA : 0;
    to.ca = opts->ca;
    to.ca_len = opts->ca_len;
    to.ca_file = opts->ca_file;
    to.pin_sha256 = opts->pin_sha256;
    to.server_name = opts->server_name ? opts->server_name : opts->host;
    to.handshake_timeout_ms = connect_ms;
    if ((rc = ct_tls_config_new(ctx, &to, &cfg, err)) != CT_OK)
        goto out;
    rc = ct_transport_dial(tp, opts->host, opts->port ? opts->port : 443,
                           remaining_or_zero(deadline), &tcp, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_tls_wrap(cfg, tcp, remaining_or_zero(deadline), &tls, err);
    tcp = NULL; /* ct_tls_wrap owns it, even on failure */
    if (rc != CT_OK)
        goto out;
    leg = calloc(1, sizeof *leg);
    if (!leg) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    leg->tls = tls;
    leg->cfg = cfg;
    if ((rc = ct_conn_new(ctx, &leg_ops, leg, NULL, out, err)) != CT_OK)
        goto out;
    tls = NULL;
    cfg = NULL;
    leg = NULL;
    rc = CT_OK;
out:
    free(leg);
    ct_conn_free(tls);
    ct_conn_free(tcp);
    ct_tls_config_free(cfg);
    ct_transport_free(own_tp);
    return rc;
}

ct_err ct_beacon_join(ct_conn *c, const ct_beacon_options *opts, ct_beacon_role role,
                      const uint8_t room[32], ct_error *err)
{
    uint8_t hello[CT_BEACON_HELLO_LEN];
    int64_t deadline;
    int connect_ms, pair_ms, first = 1;
    ct_err rc;

    if (!c || !opts || !room)
        return ctp_err(err, CT_E_INVALID, 0, "ct_beacon_join: NULL argument");
    if (ctp_conn_ops(c)->close != leg_close)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_beacon_join: not a connection from ct_beacon_open");
    if (opts->connect_timeout_ms < 0 || opts->pair_timeout_ms < 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_beacon_join: negative timeout");
    if (ct_beacon_hello_encode(role, room, hello) != CT_OK)
        return ctp_err(err, CT_E_INVALID, 0, "ct_beacon_join: role must be operator or bridge");
    connect_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
    pair_ms = opts->pair_timeout_ms ? opts->pair_timeout_ms : 60000;
    deadline = ctp_mono_ms() + connect_ms;
    rc = ct_conn_send_all(c, hello, sizeof hello, NULL, remaining_or_zero(deadline), err);
    ct_secure_wipe(hello, sizeof hello);
    if (rc != CT_OK)
        return rc;
    /* the hello's answer within the connect deadline, then PAIRED within pair_ms */
    for (;;) {
        uint8_t st;
        size_t got = 0;
        rc = ct_conn_recv(c, &st, 1, &got, remaining_or_zero(deadline), err);
        if (rc == CT_E_TIMEOUT || rc == CT_E_AGAIN)
            return first ? ctp_err(err, CT_E_TIMEOUT, 0, "beacon: no answer to the hello in time")
                         : ctp_err(err, CT_E_TIMEOUT, 0,
                                   "beacon: no partner within pair_timeout_ms (%d ms)", pair_ms);
        if (rc == CT_E_CLOSED)
            return ctp_err(err, CT_E_CLOSED, 0, "beacon closed the connection before PAIRED");
        if (rc != CT_OK)
            return rc;
        if (first) {
            first = 0;
            deadline = ctp_mono_ms() + pair_ms;
        }
        if (st == CT_BEACON_PAIRED)
            return CT_OK;
        if (st != CT_BEACON_WAITING)
            return status_error(st, err);
    }
}

ct_err ct_beacon_connect(ct_ctx *ctx, const ct_beacon_options *opts, ct_beacon_role role,
                         const uint8_t room[32], ct_conn **out, ct_error *err)
{
    ct_conn *c = NULL;
    uint8_t probe[CT_BEACON_HELLO_LEN];
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_beacon_connect: out is NULL");
    *out = NULL;
    if ((rc = check_opts(ctx, opts, "ct_beacon_connect", err)) != CT_OK)
        return rc;
    if (!room)
        return ctp_err(err, CT_E_INVALID, 0, "ct_beacon_connect: NULL argument");
    if (ct_beacon_hello_encode(role, room, probe) != CT_OK)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_beacon_connect: role must be operator or bridge");
    if ((rc = ct_beacon_open(ctx, opts, &c, err)) != CT_OK)
        return rc;
    if ((rc = ct_beacon_join(c, opts, role, room, err)) != CT_OK) {
        ct_conn_free(c);
        return rc;
    }
    *out = c;
    return CT_OK;
}
