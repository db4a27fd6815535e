/*
 * pair_factory.h - how the transport conformance suite gets connections.
 *
 * A factory makes one connected pair: `client` and `server` are the two ends
 * of one stream (for TCP: dialled and accepted; for TLS: both handshakes
 * done). The suite runs every test against every registered factory, nng
 * style. A factory may start helper threads (e.g. to run the server side of
 * a handshake) but must have joined them before make_pair returns.
 */
#ifndef CT_PAIR_FACTORY_H
#define CT_PAIR_FACTORY_H

#include "cloudtaser/cloudtaser.h"

typedef struct ct_pair_factory {
    const char *name;
    /* Called once before the tests of this factory; may be NULL. */
    int (*setup)(ct_ctx *ctx, void **fixture);
    /* Makes one connected pair. Returns CT_OK or an error. */
    ct_err (*make_pair)(ct_ctx *ctx, void *fixture, ct_conn **client, ct_conn **server,
                        ct_error *err);
    /* Called once after the tests of this factory; may be NULL. */
    void (*teardown)(void *fixture);
    /* 1 if shutdown_write is supported (half-close tests run). */
    int half_close;
    /*
     * 1 if one end may be used by a sending thread and a receiving thread at
     * the same time (TCP and pipe: yes). Then the bulk test also runs with
     * four threads (a sender and a receiver per end). The other bulk test
     * drives each end from one thread and runs for every factory.
     */
    int duplex_threads;
    /*
     * 1 if freeing an end without shutdown_write is an abort that the peer
     * must see as CT_E_RESET after the bytes already delivered (TLS: no
     * close_notify means possible truncation). 0: the peer sees CT_E_CLOSED,
     * like a socket close (TCP with nothing unread, pipe).
     */
    int free_is_abort;
} ct_pair_factory;

#endif
