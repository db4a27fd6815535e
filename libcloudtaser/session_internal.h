/*
 * session_internal.h - the session's frame format and its protocol state
 * machine as pure code: no threads, no I/O, no clocks (session_frame.c).
 *
 * session.c drives it under the session mutex; the fuzz target and the unit
 * tests compile session_frame.c in directly and feed it hostile bytes. For
 * that reason session_frame.c uses only libc and public ct_* functions,
 * never other ctp_* helpers (they are not exported from the library).
 *
 * Frame header (12 bytes, big-endian; see include/cloudtaser/session.h):
 *   u32 length | u8 type | u8 flags | u16 reserved | u32 stream
 *
 * The core keeps:
 *  - the receive decoder (a header, then a payload of at most max_frame
 *    bytes, allocated once the header has been checked);
 *  - the table of our outstanding requests (id -> the caller's `pending`)
 *    and the next id to use: ids only grow (odd for the initiator, even for
 *    the other side), so "never issued" is simply id >= next_id;
 *  - a bounded ring of ids we cancelled recently: a RESP for one of them is
 *    a late answer and is dropped, not a protocol violation;
 *  - the table of the peer's requests we are serving (id -> session item)
 *    and the highest peer id seen: peer ids must grow too;
 *  - the GOAWAY state of both directions and the PING sequence.
 */
#ifndef CTP_SESSION_INTERNAL_H
#define CTP_SESSION_INTERNAL_H

#include "cloudtaser/secret.h"
#include "cloudtaser/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    CTP_SF_REQ = 1,
    CTP_SF_RESP = 2,
    CTP_SF_PING = 3,
    CTP_SF_PONG = 4,
    CTP_SF_GOAWAY = 5,
    CTP_SF_CANCEL = 6,
};

#define CTP_SF_F_ERROR 0x01u /* RESP: the payload is i32 ct_err + message */

/* Smallest max_frame accepted (an error answer must fit). */
#define CTP_SESSION_MIN_FRAME 64u
/* Largest max_streams accepted (the tables are sized from it). */
#define CTP_SESSION_MAX_STREAMS_LIMIT 65536u

typedef struct ctp_sframe {
    uint32_t len;
    uint8_t type;
    uint8_t flags;
    uint16_t reserved;
    uint32_t stream;
} ctp_sframe;

void ctp_sframe_put(uint8_t out[CT_SESSION_HEADER_LEN], uint8_t type, uint8_t flags,
                    uint32_t stream, uint32_t len);
void ctp_sframe_get(const uint8_t in[CT_SESSION_HEADER_LEN], ctp_sframe *f);

/*
 * A small open-addressing map from non-zero uint32 keys to pointers, sized
 * once for at most `max` entries (capacity a power of two >= 2 * max, so
 * probe sequences stay short). Linear probing, backward-shift deletion.
 */
typedef struct ctp_idmap {
    uint32_t *keys; /* 0: empty slot */
    void **vals;
    size_t cap;     /* power of two */
    size_t count;
    size_t max;
} ctp_idmap;

int ctp_idmap_init(ctp_idmap *m, size_t max); /* 0, or -1 out of memory */
void ctp_idmap_free(ctp_idmap *m);
void *ctp_idmap_get(const ctp_idmap *m, uint32_t key);
/* 0; -1 if the key is 0, present already, or the map holds `max` entries. */
int ctp_idmap_put(ctp_idmap *m, uint32_t key, void *val);
void *ctp_idmap_del(ctp_idmap *m, uint32_t key); /* the value, or NULL */

/*
 * What the core asks of its owner. Every callback runs on the thread that
 * called into the core, under whatever lock the owner holds there.
 */
typedef struct ctp_sess_cb {
    /*
     * An outstanding request of ours is finished; the core has removed it.
     * code CT_OK: the answer is data[0..len). code < 0: the request failed;
     * data[0..len) is the peer's message (not NUL-terminated) or, when the
     * core itself failed it, len is 0 and `note` says why. `buf` (malloc'd
     * or NULL) holds data and always passes to the callee.
     */
    void (*deliver)(void *arg, void *pending, ct_err code, uint8_t *buf, const uint8_t *data,
                    size_t len, const char *note);
    /*
     * A new request from the peer. CT_OK: *item is what the core keeps in its
     * table until ctp_sess_finish_incoming, and `payload` (malloc'd or NULL)
     * passes to the callee. Any error: the core frees `payload` and answers
     * with that error code.
     */
    ct_err (*request)(void *arg, uint32_t stream, uint8_t *payload, size_t len, void **item);
    /* The peer cancelled a request we are serving (still in the table). */
    void (*cancel)(void *arg, void *item);
    /*
     * A frame to send: `ordered` frames keep their place among requests and
     * answers (GOAWAY); the others may jump the queue (PING, PONG, error
     * answers made by the core). hdr and payload are copied.
     */
    void (*emit)(void *arg, int ordered, const uint8_t hdr[CT_SESSION_HEADER_LEN],
                 const uint8_t *payload, size_t len);
    /* A PONG for our PING `token` (the latest one or an older one). */
    void (*pong)(void *arg, uint32_t token);
    /* The peer sent GOAWAY (after the core answered with its own). */
    void (*goaway)(void *arg);
} ctp_sess_cb;

typedef struct ctp_sess_core {
    /* configuration */
    int initiator;
    uint32_t max_frame;
    uint32_t max_streams;
    const ctp_sess_cb *cb;
    void *arg;
    /* receive decoder */
    uint8_t hdr[CT_SESSION_HEADER_LEN];
    size_t hdr_have;
    bool in_body;
    ctp_sframe cur;
    uint8_t *body;
    size_t body_have;
    bool failed;     /* a violation was seen: feed refuses everything */
    char why[200];   /* the violation, for the session's error message */
    /* our requests */
    ctp_idmap out;
    uint64_t next_id; /* the id our next request gets (> UINT32_MAX: exhausted) */
    uint32_t *ring;   /* recently cancelled ids of ours */
    size_t ring_cap, ring_len, ring_pos;
    /* the peer's requests */
    ctp_idmap in;
    uint32_t last_peer; /* highest REQ id received, 0 none */
    /* close */
    bool goaway_sent, goaway_recv;
    uint32_t goaway_sent_last; /* the last peer id we answer */
    uint32_t goaway_recv_last; /* the last id of ours the peer answers */
    /* PING tokens we sent: 1..ping_seq */
    uint32_t ping_seq;
    /* counters */
    uint64_t requests_received, responses_received, late_responses, rejected_busy;
} ctp_sess_core;

/*
 * initiator: 1 if our requests use odd ids. max_frame and max_streams must
 * already be resolved and valid. CT_E_NOMEM or CT_OK.
 */
ct_err ctp_sess_init(ctp_sess_core *c, int initiator, uint32_t max_frame, uint32_t max_streams,
                     const ctp_sess_cb *cb, void *arg);
/* Frees the core's own memory (not the values in the tables). */
void ctp_sess_free(ctp_sess_core *c);

/*
 * The receive path: consumes n bytes from the peer, in any split, calling
 * back for every complete frame. CT_OK; CT_E_PROTO on a protocol violation
 * (c->why says what; every later call fails too); CT_E_NOMEM.
 */
ct_err ctp_sess_feed(ctp_sess_core *c, const uint8_t *p, size_t n);

/*
 * A new request of ours: allocates its id and records `pending` as
 * outstanding. The caller then sends the REQ frame, before any other
 * request is opened (ids must reach the peer in increasing order).
 * CT_E_AGAIN (max_streams outstanding), CT_E_CLOSED (GOAWAY either way, or
 * ids exhausted: c->why says which).
 */
ct_err ctp_sess_open_stream(ctp_sess_core *c, void *pending, uint32_t *id);

/*
 * Our requester gave up on `id`: removes it (returns its pending or NULL);
 * with `remember`, a late answer will be dropped quietly.
 */
void *ctp_sess_forget_stream(ctp_sess_core *c, uint32_t id, bool remember);

/* We are done with the peer's request `id` (answered or dropped). */
void ctp_sess_finish_incoming(ctp_sess_core *c, uint32_t id);

/* Sends GOAWAY (ordered) once: we stop taking new requests. */
void ctp_sess_goaway(ctp_sess_core *c);

/* Sends a PING (jumps the queue); returns its token. */
uint32_t ctp_sess_ping(ctp_sess_core *c);

/* Fails every outstanding request of ours with `code` and `note`. */
void ctp_sess_fail_all(ctp_sess_core *c, ct_err code, const char *note);

/*
 * Builds an error answer's payload (i32 code, big-endian, then the message
 * truncated to fit max_frame) in buf[0..cap); returns its length.
 */
size_t ctp_sess_error_payload(uint8_t *buf, size_t cap, uint32_t max_frame, ct_err code,
                              const char *msg);

#endif
