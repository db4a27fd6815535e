/*
 * cloudtaser/router.h - request routing over the operational session.
 *
 * Requests on the session are JSON objects with an "op" member naming the
 * operation ({"op":"ping"}, {"op":"vault.http",...}, ...; PROTOCOL.md
 * section 5 lists them). A router maps op names to handlers and is itself a
 * ct_agent_handler: pass ct_router_handle as the bridge's or the operator's
 * handler and the router as its handler_arg.
 *
 * Thread-safety: add every route before the router is used; after that the
 * router is read-only and ct_router_handle may run on many threads at once.
 */
#ifndef CLOUDTASER_ROUTER_H
#define CLOUDTASER_ROUTER_H

#include "agent.h"
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_router ct_router;

#define CT_ROUTER_MAX_OP 64

/* Errors: CT_E_INVALID, CT_E_NOMEM. Free with ct_router_free. */
CT_API ct_err ct_router_new(ct_router **out, ct_error *err);

/*
 * Routes requests whose "op" equals `op` (1..CT_ROUTER_MAX_OP bytes of
 * [a-z0-9._-]) to fn(arg, ...). `op` is copied; `arg` is borrowed.
 * Errors: CT_E_INVALID (bad name), CT_E_CONFLICT (already routed),
 * CT_E_NOMEM.
 */
CT_API ct_err ct_router_add(ct_router *r, const char *op, ct_agent_handler fn, void *arg,
                            ct_error *err);

/*
 * The dispatching handler (a ct_agent_handler; `router` is the ct_router).
 * A request that is not a JSON object with a string "op" is CT_E_INVALID;
 * an unknown op is CT_E_UNSUPPORTED with a message naming the ops served.
 */
CT_API ct_err ct_router_handle(void *router, const char *fingerprint, ct_session *s,
                               uint32_t stream, const uint8_t *req, size_t req_len,
                               uint8_t **resp, size_t *resp_len, ct_error *err);

/*
 * A built-in handler for {"op":"ping"}: answers
 * {"op":"pong","version":"<library version>","cluster":"<8 chars>","time_ms":N}.
 * `arg` is unused (NULL).
 */
CT_API ct_err ct_router_ping(void *arg, const char *fingerprint, ct_session *s,
                             uint32_t stream, const uint8_t *req, size_t req_len,
                             uint8_t **resp, size_t *resp_len, ct_error *err);

CT_API void ct_router_free(ct_router *r);

#ifdef __cplusplus
}
#endif
#endif
