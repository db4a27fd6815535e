/*
 * cloudtaser/transport.h - byte-stream connections and the transports that
 * make them.
 *
 * Two pluggable vtables:
 *  - ct_conn_ops: one connected, reliable, ordered byte stream (TCP, an
 *    in-memory pipe, TLS over another connection, a beacon relay leg, ...).
 *  - ct_transport_ops: a factory that dials and listens for connections.
 *
 * Timeouts: every blocking call takes `timeout_ms`.
 *   timeout_ms  < 0: the context's default I/O timeout (never infinite);
 *   timeout_ms == 0: do not wait; CT_E_AGAIN if nothing can be done now;
 *   timeout_ms  > 0: wait at most that long, then CT_E_TIMEOUT.
 * After CT_E_TIMEOUT or CT_E_AGAIN the connection is still usable; no byte
 * was lost or duplicated.
 *
 * Ends of stream: recv returns CT_E_CLOSED once the peer has finished
 * sending (orderly end, e.g. FIN or TLS close_notify) and every byte before
 * it has been delivered. CT_E_RESET when the peer aborted.
 *
 * Built-ins: TCP (IPv4/IPv6), an in-memory pipe pair for tests, and TLS 1.3
 * over any connection (see tls.h).
 */
#ifndef CLOUDTASER_TRANSPORT_H
#define CLOUDTASER_TRANSPORT_H

#include "common.h"
#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_conn ct_conn;
typedef struct ct_transport ct_transport;
typedef struct ct_listener ct_listener;

/* ------------------------------------------------------------------ */
/* Connection vtable                                                   */

#define CT_CONN_OPS_VERSION 1

typedef struct ct_conn_ops {
    uint32_t version; /* CT_CONN_OPS_VERSION */
    uint32_t flags;   /* reserved, 0 */
    /*
     * REQUIRED. Sends up to n bytes; *sent is how many were taken (may be
     * fewer than n: a partial send). Returns CT_OK with *sent > 0 (n > 0),
     * or an error with *sent == 0.
     */
    ct_err (*send)(void *state, const uint8_t *p, size_t n, size_t *sent,
                   int timeout_ms, ct_error *err, void *user);
    /*
     * REQUIRED. Receives up to cap bytes into p. CT_OK with *got > 0, or an
     * error (CT_E_CLOSED at orderly end of stream) with *got == 0.
     */
    ct_err (*recv)(void *state, uint8_t *p, size_t cap, size_t *got,
                   int timeout_ms, ct_error *err, void *user);
    /*
     * OPTIONAL (NULL: CT_E_UNSUPPORTED). Half-close: no more sends; the peer
     * sees end of stream after the bytes already sent; recv keeps working.
     */
    ct_err (*shutdown_write)(void *state, int timeout_ms, ct_error *err, void *user);
    /* REQUIRED. Releases `state` (abortive if not shut down). Called once. */
    void (*close)(void *state, void *user);
    /* OPTIONAL. The OS file descriptor to poll for readiness, or -1. */
    int (*get_fd)(void *state, void *user);
    /*
     * OPTIONAL. Bytes already received and buffered inside the connection
     * (readable without touching the fd), e.g. decrypted TLS data.
     */
    size_t (*pending)(void *state, void *user);
    /* OPTIONAL. Called once when the ct_conn is freed, after close. */
    void (*destroy)(void *user);
} ct_conn_ops;

/*
 * Wraps an implementation in a ct_conn. `ops` is copied. `state` is the
 * per-connection object passed to every method; `user` is the last argument
 * of every method. On success the ct_conn owns state (close is called once,
 * from ct_conn_free). On failure the caller keeps state and user.
 * Errors: CT_E_INVALID (missing required method), CT_E_VERSION, CT_E_NOMEM.
 */
CT_API ct_err ct_conn_new(ct_ctx *ctx, const ct_conn_ops *ops, void *state,
                          void *user, ct_conn **out, ct_error *err);

/* One send or recv call; semantics as in ct_conn_ops above. */
CT_API ct_err ct_conn_send(ct_conn *c, const void *p, size_t n, size_t *sent,
                           int timeout_ms, ct_error *err);
CT_API ct_err ct_conn_recv(ct_conn *c, void *p, size_t cap, size_t *got,
                           int timeout_ms, ct_error *err);

/*
 * Sends all n bytes before one deadline (timeout_ms from now), looping over
 * partial sends. *sent (may be NULL) tells how many went out on error.
 */
CT_API ct_err ct_conn_send_all(ct_conn *c, const void *p, size_t n, size_t *sent,
                               int timeout_ms, ct_error *err);

/*
 * Receives exactly n bytes before one deadline. CT_E_CLOSED if the stream
 * ends first (*got, may be NULL, tells how many arrived).
 */
CT_API ct_err ct_conn_recv_exact(ct_conn *c, void *p, size_t n, size_t *got,
                                 int timeout_ms, ct_error *err);

/* Half-close (see ct_conn_ops.shutdown_write). */
CT_API ct_err ct_conn_shutdown_write(ct_conn *c, int timeout_ms, ct_error *err);

/* Pollable fd or -1; buffered readable bytes (0 if unknown). */
CT_API int ct_conn_get_fd(const ct_conn *c);
CT_API size_t ct_conn_pending(const ct_conn *c);

/* The context the connection was created with (borrowed). */
CT_API ct_ctx *ct_conn_ctx(const ct_conn *c);

/* Closes and frees. NULL is a no-op. */
CT_API void ct_conn_free(ct_conn *c);

/* ------------------------------------------------------------------ */
/* Transport vtable                                                    */

#define CT_TRANSPORT_OPS_VERSION 1

typedef struct ct_transport_ops {
    uint32_t version; /* CT_TRANSPORT_OPS_VERSION */
    uint32_t flags;   /* reserved, 0 */
    /* REQUIRED. Connects; *out is a new ct_conn owned by the caller. */
    ct_err (*dial)(ct_ctx *ctx, const char *host, uint16_t port, int timeout_ms,
                   ct_conn **out, ct_error *err, void *user);
    /*
     * OPTIONAL (NULL: CT_E_UNSUPPORTED). Binds and listens; port 0 picks a
     * free port. *lst is the implementation's listener state.
     */
    ct_err (*listen)(ct_ctx *ctx, const char *host, uint16_t port, void **lst,
                     ct_error *err, void *user);
    /* REQUIRED if listen is set. Accepts one connection. */
    ct_err (*accept)(void *lst, int timeout_ms, ct_conn **out, ct_error *err, void *user);
    /* REQUIRED if listen is set. The bound port (after port 0). */
    uint16_t (*listener_port)(void *lst, void *user);
    /* REQUIRED if listen is set. Closes the listener state. */
    void (*listener_close)(void *lst, void *user);
    /* OPTIONAL. Called once from ct_transport_free. */
    void (*destroy)(void *user);
} ct_transport_ops;

/*
 * Registers a transport implementation. `ops` is copied; `user` is passed
 * last to every method and released by ops->destroy from ct_transport_free.
 * On failure the caller keeps user.
 * Errors: CT_E_INVALID, CT_E_VERSION, CT_E_NOMEM.
 */
CT_API ct_err ct_transport_new(ct_ctx *ctx, const ct_transport_ops *ops, void *user,
                               ct_transport **out, ct_error *err);

/* Dials host:port through the transport. Free *out with ct_conn_free. */
CT_API ct_err ct_transport_dial(ct_transport *t, const char *host, uint16_t port,
                                int timeout_ms, ct_conn **out, ct_error *err);

/*
 * Listens on host:port (host NULL: all addresses of both families where the
 * transport supports it). Free with ct_listener_free before the transport.
 */
CT_API ct_err ct_transport_listen(ct_transport *t, const char *host, uint16_t port,
                                  ct_listener **out, ct_error *err);

CT_API ct_err ct_listener_accept(ct_listener *l, int timeout_ms, ct_conn **out,
                                 ct_error *err);
CT_API uint16_t ct_listener_port(const ct_listener *l);
CT_API void ct_listener_free(ct_listener *l);

/* Frees the transport (calls ops->destroy). NULL is a no-op. */
CT_API void ct_transport_free(ct_transport *t);

/*
 * Splits "HOST", "HOST:PORT", "[V6]" or "[V6]:PORT" (HOST a name or an
 * IPv4 literal; an IPv6 literal must be in brackets) into host (copied
 * into host[0..host_cap), NUL-terminated, brackets removed) and *port
 * (default_port when the string has none). Does not resolve anything.
 * Errors: CT_E_INVALID (empty host, bad port, unbracketed IPv6, host too
 * long for host_cap), with a message naming the problem. Thread-safe.
 */
CT_API ct_err ct_hostport_parse(const char *s, uint16_t default_port, char *host,
                                size_t host_cap, uint16_t *port, ct_error *err);

/* ------------------------------------------------------------------ */
/* Built-in: TCP                                                        */

/*
 * TCP over IPv4 and IPv6. Dial resolves host (name or literal, "::1",
 * "127.0.0.1"), tries each address with a non-blocking connect bounded by
 * the deadline. Sockets are non-blocking, close-on-exec, TCP_NODELAY, sends
 * use MSG_NOSIGNAL (no SIGPIPE), EINTR is retried. Listening on host NULL
 * binds "::" dual-stack. Errors from dial: CT_E_RESOLVE, CT_E_REFUSED,
 * CT_E_TIMEOUT, CT_E_IO; from listen: CT_E_ADDRINUSE, CT_E_IO.
 */
CT_API ct_err ct_transport_new_tcp(ct_ctx *ctx, ct_transport **out, ct_error *err);

/*
 * Adopts a connected stream socket (made non-blocking here). On success the
 * ct_conn owns fd; on failure the caller keeps it.
 */
CT_API ct_err ct_conn_new_fd(ct_ctx *ctx, int fd, ct_conn **out, ct_error *err);

/* ------------------------------------------------------------------ */
/* Built-in: in-memory pipe pair (tests, examples)                      */

/*
 * Creates two connected ends. Bytes sent on one are received on the other.
 * `capacity` bounds the bytes buffered per direction (0: 64 KiB); a send
 * into a full direction waits (or returns CT_E_AGAIN with timeout 0), which
 * exercises partial and would-block paths. Each end may be used from a
 * different thread. Free both with ct_conn_free. Freeing one end is like
 * closing a socket: the other end still receives the buffered bytes, then
 * CT_E_CLOSED; its sends fail with CT_E_RESET.
 */
CT_API ct_err ct_pipe_pair(ct_ctx *ctx, size_t capacity, ct_conn **a, ct_conn **b,
                           ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
