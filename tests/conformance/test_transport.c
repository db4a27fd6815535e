/*
 * test_transport.c - runs the transport conformance suite against every
 * registered connection factory. To add a transport, add its factory to
 * the array below (and its source file to 'transport' in tests/meson.build).
 *
 * IPv6: the tcp6 factory needs the ::1 loopback. On a machine without it,
 * its tests fail and say why. Set CT_TEST_NO_IPV6=1 to leave them out on
 * purpose; the program then says on stderr that it did.
 */
#include <stdlib.h>

#include "factories.h"
#include "factories_tls.h"
#include "testutil.h"
#include "transport_suite.h"

static const ct_pair_factory *const factories[] = {
    &ct_factory_tcp4,
    &ct_factory_tcp6,
    &ct_factory_pipe,
    &ct_factory_pipe_small,
    &ct_tls_factory_pipe,
    &ct_tls_factory_tcp,
    &ct_tls_factory_tls,
};

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("transport");
    const char *no6 = getenv("CT_TEST_NO_IPV6");

    for (size_t i = 0; i < sizeof factories / sizeof factories[0]; i++) {
        if (factories[i] == &ct_factory_tcp6 && no6 && *no6 && *no6 != '0') {
            fprintf(stderr, "transport: CT_TEST_NO_IPV6 is set: the tcp6 tests are NOT run\n");
            continue;
        }
        ct_add_transport_conformance(s, factories[i]);
    }
    return s;
}
