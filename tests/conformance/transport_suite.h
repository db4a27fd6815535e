/*
 * transport_suite.h - the transport conformance suite (nng style): the same
 * tests run against every connection factory.
 *
 * ct_add_transport_conformance adds one TCase, named after the factory, to
 * `s`. The factory's setup runs once before that TCase's tests (as a Check
 * unchecked fixture, in the test program's own process; forked tests inherit
 * the fixture) and teardown once after. If setup fails, every test of that
 * TCase fails and says so: a factory that cannot run never passes silently.
 *
 * `f` is borrowed and must stay valid while the suite runs (factories are
 * static constants). At most CT_TRANSPORT_SUITE_MAX factories per program.
 */
#ifndef CT_TRANSPORT_SUITE_H
#define CT_TRANSPORT_SUITE_H

#include <check.h>

#include "pair_factory.h"

#define CT_TRANSPORT_SUITE_MAX 16

void ct_add_transport_conformance(Suite *s, const ct_pair_factory *f);

#endif
