/*
 * tls_testpipe.h - private socket-backed connections for the TLS tests.
 *
 * Stand-ins until the built-in ct_pipe_pair, ct_conn_new_fd and TCP
 * transport (written in another branch) are merged; then the TLS tests and
 * factories switch to those and this file goes away.
 */
#ifndef CT_TLS_TESTPIPE_H
#define CT_TLS_TESTPIPE_H

#include "cloudtaser/cloudtaser.h"

/* A ct_conn over a connected stream socket (adopted; made non-blocking). */
ct_err tls_test_fd_conn(ct_ctx *ctx, int fd, ct_conn **out, ct_error *err);

/*
 * Two connected ends over socketpair(AF_UNIX). sndbuf > 0 shrinks the socket
 * buffers (SO_SNDBUF/SO_RCVBUF) to exercise partial and would-block paths.
 */
ct_err tls_test_pipe(ct_ctx *ctx, int sndbuf, ct_conn **a, ct_conn **b, ct_error *err);

/* A connected TCP pair over 127.0.0.1. */
ct_err tls_test_tcp_pair(ct_ctx *ctx, ct_conn **client, ct_conn **server, ct_error *err);

/* A minimal TCP transport (numeric IPv4/IPv6 hosts, blocking connect). */
ct_err tls_test_tcp_transport(ct_ctx *ctx, ct_transport **out, ct_error *err);

#endif
