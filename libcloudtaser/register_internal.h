/*
 * register_internal.h - registration records written by other modules
 * (the bridge's liveness record).
 */
#ifndef CTP_REGISTER_INTERNAL_H
#define CTP_REGISTER_INTERNAL_H

#include "internal.h"

/* How often a bridge refreshes clusters/<fp>/connected during a session. */
#define CTP_REG_HEARTBEAT_MS 10000

/*
 * Writes clusters/<fp>/connected with the session start and now. Refuses
 * (the store's CT_E_NOTFOUND) if the cluster is no longer registered.
 */
ct_err ctp_reg_heartbeat(ct_ctx *ctx, ct_store *store, const char *fp, int64_t since_ms,
                         ct_error *err);
/* Deletes clusters/<fp>/connected (best effort). */
void ctp_reg_disconnected(ct_store *store, const char *fp);

#endif
