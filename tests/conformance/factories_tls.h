/*
 * factories_tls.h - TLS pair factories for the transport conformance suite:
 * mTLS 1.3 over a socket pipe, over TCP loopback (through
 * ct_transport_new_tls), and inside another mTLS session.
 *
 * Fixtures: the test PKI under $CT_TEST_FIXTURES/tls (setup returns -1 if it
 * cannot be loaded). The server handshake runs in a helper thread that is
 * joined before make_pair returns.
 */
#ifndef CT_FACTORIES_TLS_H
#define CT_FACTORIES_TLS_H

#include "pair_factory.h"

extern const ct_pair_factory ct_tls_factory_pipe;
extern const ct_pair_factory ct_tls_factory_tcp;
extern const ct_pair_factory ct_tls_factory_tls;
/* Not in ct_tls_factories (used by the session tests): TLS in TLS over TCP. */
extern const ct_pair_factory ct_tls_factory_tls_tcp;

/* All of the above, NULL-terminated. */
extern const ct_pair_factory *const ct_tls_factories[];

#endif
