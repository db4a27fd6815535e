/*
 * cloudtaser/session.h - the operational session: multiplexed
 * request/response frames over one secured connection (normally the
 * operator <-> bridge mTLS connection relayed by the beacon).
 *
 * Both ends may send requests and both may serve them (the operator asks
 * the bridge for secrets; the bridge asks the operator to run TokenReviews).
 * Wire format (PROTOCOL.md section 3): every frame is a 12-byte header
 *
 *   u32 length   payload bytes that follow (big-endian), <= max_frame
 *   u8  type     1 REQ, 2 RESP, 3 PING, 4 PONG, 5 GOAWAY, 6 CANCEL
 *   u8  flags    RESP: bit 0 = error (payload: u32 ct_err as int32 BE +
 *                UTF-8 message); other bits and other types: 0
 *   u16 reserved 0
 *   u32 stream   REQ/RESP/CANCEL: stream id, odd if the request was sent by
 *                the TLS client side (the initiator), even if by the other;
 *                PING/PONG: an opaque token echoed back; GOAWAY: the last
 *                stream id the sender will still answer
 *
 * followed by the payload. Anything else (unknown type, non-zero reserved
 * bits, a RESP for a stream that is not outstanding, an oversized length,
 * a stream id of the wrong parity) is a protocol violation: the session
 * fails with CT_E_PROTO and the connection is aborted.
 *
 * Threads: each session runs one I/O thread that owns the connection (TLS
 * objects are never touched by two threads) plus `handler_threads` threads
 * that run the request handler. Every public call below except
 * ct_session_free is thread-safe and may be called from many threads at
 * once, including from inside the handler.
 */
#ifndef CLOUDTASER_SESSION_H
#define CLOUDTASER_SESSION_H

#include "common.h"
#include "context.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_session ct_session;

#define CT_SESSION_HEADER_LEN 12
#define CT_SESSION_DEFAULT_MAX_FRAME (1u << 20)      /* 1 MiB payload */
#define CT_SESSION_MAX_FRAME_LIMIT (16u << 20)       /* hard upper bound */
#define CT_SESSION_DEFAULT_MAX_STREAMS 1024u         /* outstanding per direction */
#define CT_SESSION_DEFAULT_HANDLER_THREADS 4u
#define CT_SESSION_DEFAULT_PING_INTERVAL_MS 15000
#define CT_SESSION_DEFAULT_DEAD_AFTER_MS 45000       /* nothing received for this long */
#define CT_SESSION_DEFAULT_REQUEST_TIMEOUT_MS 30000

/*
 * The request handler: called on a handler thread with the request payload
 * (borrowed for the call). It answers either by setting *resp / *resp_len
 * to a buffer allocated with malloc (the session takes it and frees it with
 * free; NULL with length 0 is an empty answer) and returning CT_OK, or by
 * returning an error code with err->message set: the requester's
 * ct_session_request then fails with that code and message. The handler
 * must not block for longer than the requester's timeout (requests whose
 * requester gave up are cancelled: ct_session_cancelled tells), and may
 * hand a slow request back with ct_session_defer (below) instead.
 * `stream` identifies the request for ct_session_cancelled.
 */
typedef ct_err (*ct_session_handler)(void *arg, ct_session *s, uint32_t stream,
                                     const uint8_t *req, size_t req_len, uint8_t **resp,
                                     size_t *resp_len, ct_error *err);

#define CT_SESSION_OPTIONS_VERSION 1

typedef struct ct_session_options {
    uint32_t version;          /* CT_SESSION_OPTIONS_VERSION */
    /*
     * 1 on the side that ran the TLS client (the bridge): its requests use
     * odd stream ids. 0 on the other side (even ids). Both ends must
     * disagree, otherwise the first request is a protocol violation.
     */
    int initiator;
    uint32_t max_frame;        /* max payload per frame (0: default, <= LIMIT) */
    uint32_t max_streams;      /* max outstanding requests each way (0: default) */
    /* NULL: every incoming request is answered with CT_E_UNSUPPORTED. */
    ct_session_handler handler;
    void *handler_arg;
    uint32_t handler_threads;  /* 0: default */
    int ping_interval_ms;      /* 0: default; < 0: never ping */
    int dead_after_ms;         /* 0: default; < 0: never declare dead */
    /*
     * Called once (on the I/O thread) when the session ends, with the
     * reason: CT_OK after a clean close (ours or the peer's GOAWAY),
     * CT_E_TIMEOUT (peer dead), CT_E_PROTO, CT_E_CLOSED/CT_E_RESET, ...
     * May be NULL. Must not call ct_session_free.
     */
    void (*on_close)(void *arg, ct_session *s, ct_err reason, const char *message);
    void *on_close_arg;
} ct_session_options;

#define CT_SESSION_OPTIONS_INIT { .version = CT_SESSION_OPTIONS_VERSION }

/*
 * Starts a session over `conn`, which it takes over whatever the outcome
 * (freed on failure). The threads start at once; the peer must run
 * ct_session_open too. *out: free with ct_session_free.
 * Errors: CT_E_INVALID, CT_E_VERSION, CT_E_NOMEM, CT_E_INTERNAL (threads).
 */
CT_API ct_err ct_session_open(ct_ctx *ctx, ct_conn *conn, const ct_session_options *opts,
                              ct_session **out, ct_error *err);

/*
 * Sends a request and waits for its answer. On success *resp (malloc'd,
 * free with ct_free; NULL if the answer is empty) and *resp_len.
 * timeout_ms: < 0 the default (CT_SESSION_DEFAULT_REQUEST_TIMEOUT_MS),
 * 0 is CT_E_INVALID. On timeout the request is cancelled (a CANCEL frame
 * tells the peer) and a late answer is dropped.
 * Errors: the handler's error code and message; CT_E_TIMEOUT; CT_E_TOOBIG
 * (request larger than max_frame); CT_E_AGAIN (max_streams outstanding);
 * CT_E_CLOSED (the session is closing or closed: err->message says why);
 * CT_E_NOMEM.
 */
CT_API ct_err ct_session_request(ct_session *s, const void *req, size_t req_len,
                                 int timeout_ms, uint8_t **resp, size_t *resp_len,
                                 ct_error *err);

/* 1 if the requester of `stream` has given up (timeout, CANCEL, close). */
CT_API int ct_session_cancelled(ct_session *s, uint32_t stream);

/*
 * Clean close: sends GOAWAY, stops accepting new requests (both ways), lets
 * outstanding ones finish until the deadline, then close_notify and stops
 * the I/O thread. Returns when the session has ended; idempotent.
 * Errors: CT_E_TIMEOUT if requests were still outstanding at the deadline
 * (they fail with CT_E_CLOSED), or the reason the session had already
 * ended with.
 */
CT_API ct_err ct_session_close(ct_session *s, int timeout_ms, ct_error *err);

/*
 * Waits until the session ends (timeout_ms < 0: forever). Returns
 * CT_E_TIMEOUT if it is still up at the deadline, else the end reason as
 * for on_close (CT_OK for a clean close).
 */
CT_API ct_err ct_session_wait(ct_session *s, int timeout_ms, ct_error *err);

/* 1 while the session is up and accepting requests. */
CT_API int ct_session_is_open(const ct_session *s);

typedef struct ct_session_stats {
    uint64_t requests_sent, responses_received;
    uint64_t requests_received, responses_sent;
    uint64_t bytes_sent, bytes_received;  /* frames incl. headers */
    uint64_t pings_sent;
    int64_t last_rtt_us;                  /* last ping round trip, -1 if none */
} ct_session_stats;
CT_API void ct_session_get_stats(const ct_session *s, ct_session_stats *out);

/*
 * Deferred answers: a handler that must wait for something slow (a call to
 * Vault, say) can give its request back to the session instead of holding a
 * handler thread for it. Inside the handler, ct_session_defer(s, stream)
 * takes the request over and returns a reply handle; the handler then
 * returns (what it returns, and any *resp, are discarded: the answer now
 * comes from the handle). Later, from any thread, ct_session_reply_send
 * answers exactly once and releases the handle.
 *
 * Until the handle is released the request counts as outstanding: a clean
 * ct_session_close waits for it (up to its deadline) like any other. If the
 * requester gives up, the session ends or it is freed first, the answer is
 * dropped quietly; the handle stays valid until ct_session_reply_send, even
 * after ct_session_free (the session's memory is released with the last
 * handle). A handle that is never sent leaks that memory.
 */
typedef struct ct_session_reply ct_session_reply;

/*
 * Only from inside the handler, for the request `stream` it is serving,
 * once. *out: the handle, owned by the caller until ct_session_reply_send.
 * Errors: CT_E_INVALID (NULL, not the stream of a running handler, or
 * already deferred); CT_E_CLOSED (the session is ending or the requester
 * gave up: answer nothing, just return).
 */
CT_API ct_err ct_session_defer(ct_session *s, uint32_t stream, ct_session_reply **out,
                               ct_error *err);

/*
 * Answers a deferred request and releases the handle (NULL is a no-op).
 * code CT_OK: resp[0..resp_len) is the answer (copied; NULL with 0 is an
 * empty answer); an answer larger than max_frame becomes a CT_E_TOOBIG
 * error. Any other code: the requester's call fails with it and `message`
 * (NULL: the code's description). Never waits: the answer is queued even
 * when the send queue is full (a thread answering for many sessions must
 * not stall behind one peer that stops reading; the queue stays bounded by
 * max_streams answers of at most max_frame bytes). Thread-safe; never from
 * on_close.
 */
CT_API void ct_session_reply_send(ct_session_reply *r, ct_err code, const uint8_t *resp,
                                  size_t resp_len, const char *message);

/* 1 if the answer would be dropped now (requester gave up, session ending). */
CT_API int ct_session_reply_cancelled(ct_session_reply *r);

/*
 * Aborts the session if still up (outstanding requests fail with
 * CT_E_CLOSED, the connection is aborted, not closed cleanly), joins all
 * threads and frees. Must not be called from a handler or on_close.
 * NULL is a no-op.
 */
CT_API void ct_session_free(ct_session *s);

#ifdef __cplusplus
}
#endif
#endif
