/*
 * factories.h - connection factories for the transport conformance suite.
 * Each is a static constant; test_transport.c lists them in one array.
 */
#ifndef CT_FACTORIES_H
#define CT_FACTORIES_H

#include "pair_factory.h"

/* factories_basic.c */
extern const ct_pair_factory ct_factory_tcp4;       /* TCP over 127.0.0.1 */
extern const ct_pair_factory ct_factory_tcp6;       /* TCP over ::1 */
extern const ct_pair_factory ct_factory_pipe;       /* ct_pipe_pair, 64 KiB per direction */
extern const ct_pair_factory ct_factory_pipe_small; /* ct_pipe_pair, 1 KiB per direction */

#endif
