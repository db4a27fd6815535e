/*
 * factories_basic.c - conformance factories for the built-in transports:
 * TCP on the IPv4 and IPv6 loopback, and the in-memory pipe.
 *
 * A TCP factory listens once (setup) on an ephemeral loopback port; each
 * pair is one dial and one accept from the same thread (the kernel completes
 * the handshake from the listen backlog, so no helper thread is needed).
 */
#include <stdio.h>
#include <stdlib.h>

#include "factories.h"

#define FACTORY_IO_MS 5000

struct tcp_fixture {
    const char *host;
    ct_transport *t;
    ct_listener *l;
};

static int tcp_setup_host(ct_ctx *ctx, const char *host, void **fixture)
{
    struct tcp_fixture *fx = calloc(1, sizeof *fx);
    ct_error err;
    ct_err rc;

    ct_error_clear(&err);
    if (!fx)
        return -1;
    fx->host = host;
    rc = ct_transport_new_tcp(ctx, &fx->t, &err);
    if (rc == CT_OK)
        rc = ct_transport_listen(fx->t, host, 0, &fx->l, &err);
    if (rc != CT_OK) {
        fprintf(stderr,
                "tcp factory: cannot listen on %s (%s: %s)%s\n", host, ct_err_name(rc),
                err.message,
                host[0] == ':' ? " -- this machine has no usable IPv6 loopback; set "
                                 "CT_TEST_NO_IPV6=1 to leave the tcp6 tests out"
                               : "");
        ct_transport_free(fx->t);
        free(fx);
        return -1;
    }
    *fixture = fx;
    return 0;
}

static int tcp4_setup(ct_ctx *ctx, void **fixture)
{
    return tcp_setup_host(ctx, "127.0.0.1", fixture);
}

static int tcp6_setup(ct_ctx *ctx, void **fixture)
{
    return tcp_setup_host(ctx, "::1", fixture);
}

static ct_err tcp_make_pair(ct_ctx *ctx, void *fixture, ct_conn **client, ct_conn **server,
                            ct_error *err)
{
    struct tcp_fixture *fx = fixture;
    ct_err rc;
    (void)ctx;

    *client = *server = NULL;
    rc = ct_transport_dial(fx->t, fx->host, ct_listener_port(fx->l), FACTORY_IO_MS, client,
                           err);
    if (rc != CT_OK)
        return rc;
    rc = ct_listener_accept(fx->l, FACTORY_IO_MS, server, err);
    if (rc != CT_OK) {
        ct_conn_free(*client);
        *client = NULL;
    }
    return rc;
}

static void tcp_teardown(void *fixture)
{
    struct tcp_fixture *fx = fixture;
    if (!fx)
        return;
    ct_listener_free(fx->l);
    ct_transport_free(fx->t);
    free(fx);
}

static ct_err pipe_make_pair(ct_ctx *ctx, void *fixture, ct_conn **client, ct_conn **server,
                             ct_error *err)
{
    (void)fixture;
    return ct_pipe_pair(ctx, 0, client, server, err);
}

static ct_err pipe_small_make_pair(ct_ctx *ctx, void *fixture, ct_conn **client,
                                   ct_conn **server, ct_error *err)
{
    (void)fixture;
    return ct_pipe_pair(ctx, 1024, client, server, err);
}

const ct_pair_factory ct_factory_tcp4 = {
    .name = "tcp4",
    .setup = tcp4_setup,
    .make_pair = tcp_make_pair,
    .teardown = tcp_teardown,
    .half_close = 1,
    .duplex_threads = 1,
};

const ct_pair_factory ct_factory_tcp6 = {
    .name = "tcp6",
    .setup = tcp6_setup,
    .make_pair = tcp_make_pair,
    .teardown = tcp_teardown,
    .half_close = 1,
    .duplex_threads = 1,
};

const ct_pair_factory ct_factory_pipe = {
    .name = "pipe",
    .setup = NULL,
    .make_pair = pipe_make_pair,
    .teardown = NULL,
    .half_close = 1,
    .duplex_threads = 1,
};

const ct_pair_factory ct_factory_pipe_small = {
    .name = "pipe-small",
    .setup = NULL,
    .make_pair = pipe_small_make_pair,
    .teardown = NULL,
    .half_close = 1,
    .duplex_threads = 1,
};
