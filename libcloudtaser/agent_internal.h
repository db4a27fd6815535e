/*
 * agent_internal.h - pieces shared by the bridge and the operator
 * (bridge.c, operator.c): a TCP transport whose blocking calls can be
 * cancelled from another thread, a stop flag that a signal handler may
 * raise, and jittered backoff.
 */
#ifndef CTP_AGENT_INTERNAL_H
#define CTP_AGENT_INTERNAL_H

#include "internal.h"
#include "cloudtaser/agent.h"

#include <pthread.h>
#include <signal.h>

/*
 * A cancellable TCP transport: every connection it dials registers its
 * socket; ctp_canceller_fire() shuts the live socket down (both ways), so a
 * thread blocked in ct_beacon_connect, a TLS handshake or a session on it
 * fails at once, and every later dial fails with CT_E_CLOSED. The
 * registration ends when the connection is freed, so a stale descriptor is
 * never touched. One canceller serves one thread's connections.
 */
typedef struct ctp_canceller ctp_canceller;
ct_err ctp_canceller_new(ct_ctx *ctx, ctp_canceller **out, ct_error *err);
ct_transport *ctp_canceller_transport(ctp_canceller *c);
void ctp_canceller_fire(ctp_canceller *c);
int ctp_canceller_fired(ctp_canceller *c);
void ctp_canceller_free(ctp_canceller *c);

/*
 * A stop signal: raised once (async-signal-safe: one write to a pipe),
 * waited for with a timeout by any number of threads.
 */
typedef struct ctp_stopper {
    int fds[2];
    volatile sig_atomic_t raised;
} ctp_stopper;
ct_err ctp_stopper_init(ctp_stopper *s, ct_error *err);
void ctp_stopper_raise(ctp_stopper *s);
/* Sleeps up to ms; returns 1 if the stop was raised (at once or meanwhile). */
int ctp_stopper_wait(ctp_stopper *s, int ms);
void ctp_stopper_destroy(ctp_stopper *s);

/* Full-jitter backoff: a random delay in [min, min(max, min * 2^attempt)]. */
int ctp_backoff_ms(const ct_ctx *ctx, int min_ms, int max_ms, unsigned attempt);

/* Event helper: fills a ct_agent_event and calls fn (if set). */
void ctp_agent_emit(ct_agent_event_fn fn, void *arg, int64_t t0, ct_agent_event_type type,
                    const char *fp8, const char *room, ct_err code, const char *fmt, ...)
    CTP_PRINTF(8, 9);

/*
 * An operational session held by a daemon: published in a slot under the
 * daemon's mutex so request threads can use it (counting themselves in
 * *users), and retired only when the last of them is done.
 */
typedef struct ctp_held_session {
    pthread_mutex_t *mu;
    pthread_cond_t *cv; /* broadcast when *users drops, and on publish */
    ct_session **slot;
    int *closing;
    unsigned *users;
} ctp_held_session;

/*
 * Publishes s, then waits in 200 ms slices until the session ends or
 * stop(arg) returns a reason (then closes it within close_ms). tick(arg),
 * if set, runs before every slice. Returns how the session ended; *err
 * says why (the stop reason after a clean close). Then marks the session
 * closing, waits until no user holds it, and empties the slot; the caller
 * frees s.
 */
ct_err ctp_session_hold(const ctp_held_session *h, ct_session *s, void (*tick)(void *arg),
                        const char *(*stop)(void *arg), void *arg, int close_ms,
                        ct_error *err);

#endif
