/*
 * session_frame.c - the session's frames and its protocol state machine,
 * pure code (see session_internal.h). Only libc and public ct_* calls here:
 * the fuzz target and the unit tests compile this file in directly.
 *
 * Every check that needs no payload runs on the header, before the payload
 * is allocated: a hostile peer cannot make us allocate max_frame bytes for a
 * frame that is refused anyway.
 */
#include "session_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Header                                                               */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void ctp_sframe_put(uint8_t out[CT_SESSION_HEADER_LEN], uint8_t type, uint8_t flags,
                    uint32_t stream, uint32_t len)
{
    put32(out, len);
    out[4] = type;
    out[5] = flags;
    out[6] = 0;
    out[7] = 0;
    put32(out + 8, stream);
}

void ctp_sframe_get(const uint8_t in[CT_SESSION_HEADER_LEN], ctp_sframe *f)
{
    f->len = get32(in);
    f->type = in[4];
    f->flags = in[5];
    f->reserved = (uint16_t)(in[6] << 8 | in[7]);
    f->stream = get32(in + 8);
}

/* ------------------------------------------------------------------ */
/* Id map                                                               */

static size_t slot_of(const ctp_idmap *m, uint32_t key)
{
    /* Fibonacci hashing: peer-chosen ids still spread over the table. */
    return (size_t)((key * 2654435761u) >> 7) & (m->cap - 1);
}

int ctp_idmap_init(ctp_idmap *m, size_t max)
{
    size_t cap = 16;
    memset(m, 0, sizeof *m);
    while (cap < 2 * max)
        cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        ctp_idmap_free(m);
        return -1;
    }
    m->cap = cap;
    m->max = max;
    return 0;
}

void ctp_idmap_free(ctp_idmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void *ctp_idmap_get(const ctp_idmap *m, uint32_t key)
{
    size_t i;
    if (key == 0 || !m->cap)
        return NULL;
    for (i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key)
            return m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
}

int ctp_idmap_put(ctp_idmap *m, uint32_t key, void *val)
{
    size_t i;
    if (key == 0 || m->count >= m->max)
        return -1;
    for (i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key)
            return -1;
        if (m->keys[i] == 0)
            break;
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->count++;
    return 0;
}

void *ctp_idmap_del(ctp_idmap *m, uint32_t key)
{
    size_t i, j, mask = m->cap - 1;
    void *val;
    if (key == 0 || !m->cap)
        return NULL;
    for (i = slot_of(m, key);; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            break;
        if (m->keys[i] == 0)
            return NULL;
    }
    val = m->vals[i];
    /* Backward shift: pull later members of the probe run into the hole. */
    for (j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(m, m->keys[j]);
        /* Move j to i unless its home lies cyclically in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->vals[i] = NULL;
    m->count--;
    return val;
}

/* ------------------------------------------------------------------ */
/* Core                                                                 */

static bool is_mine(const ctp_sess_core *c, uint32_t id)
{
    return id != 0 && (id & 1u) == (c->initiator ? 1u : 0u);
}

static bool is_peers(const ctp_sess_core *c, uint32_t id)
{
    return id != 0 && (id & 1u) == (c->initiator ? 0u : 1u);
}

static const char *type_name(uint8_t t)
{
    static const char *const names[] = {"?", "REQ", "RESP", "PING", "PONG", "GOAWAY", "CANCEL"};
    return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static ct_err violation(ctp_sess_core *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static ct_err violation(ctp_sess_core *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->failed = true;
    return CT_E_PROTO;
}

ct_err ctp_sess_init(ctp_sess_core *c, int initiator, uint32_t max_frame, uint32_t max_streams,
                     const ctp_sess_cb *cb, void *arg)
{
    memset(c, 0, sizeof *c);
    c->initiator = initiator ? 1 : 0;
    c->max_frame = max_frame;
    c->max_streams = max_streams;
    c->cb = cb;
    c->arg = arg;
    c->next_id = initiator ? 1 : 2;
    c->ring_cap = 2 * (size_t)max_streams < 64 ? 64 : 2 * (size_t)max_streams;
    c->ring = calloc(c->ring_cap, sizeof *c->ring);
    if (!c->ring || ctp_idmap_init(&c->out, max_streams) != 0 ||
        ctp_idmap_init(&c->in, max_streams) != 0) {
        ctp_sess_free(c);
        return CT_E_NOMEM;
    }
    return CT_OK;
}

void ctp_sess_free(ctp_sess_core *c)
{
    ctp_idmap_free(&c->out);
    ctp_idmap_free(&c->in);
    free(c->ring);
    c->ring = NULL;
    if (c->body) {
        ct_secure_wipe(c->body, c->body_have);
        free(c->body);
        c->body = NULL;
    }
}

/* Frees a payload that goes nowhere (it may have carried secrets). */
static void drop(uint8_t *body, size_t len)
{
    if (body) {
        ct_secure_wipe(body, len);
        free(body);
    }
}

static bool ring_has(const ctp_sess_core *c, uint32_t id)
{
    for (size_t i = 0; i < c->ring_len; i++)
        if (c->ring[i] == id)
            return true;
    return false;
}

static void ring_add(ctp_sess_core *c, uint32_t id)
{
    c->ring[c->ring_pos] = id;
    c->ring_pos = (c->ring_pos + 1) % c->ring_cap;
    if (c->ring_len < c->ring_cap)
        c->ring_len++;
}

size_t ctp_sess_error_payload(uint8_t *buf, size_t cap, uint32_t max_frame, ct_err code,
                              const char *msg)
{
    size_t n = msg ? strlen(msg) : 0;
    if (cap < 4)
        return 0;
    put32(buf, (uint32_t)(int32_t)code);
    if (n > cap - 4)
        n = cap - 4;
    if (n > max_frame - 4)
        n = max_frame - 4;
    memcpy(buf + 4, msg, n);
    return 4 + n;
}

/* An error answer to the peer's request (jumps the queue). */
static void answer_error(ctp_sess_core *c, uint32_t stream, ct_err code, const char *msg)
{
    uint8_t hdr[CT_SESSION_HEADER_LEN], pl[4 + 160];
    size_t n = ctp_sess_error_payload(pl, sizeof pl, c->max_frame, code, msg);
    ctp_sframe_put(hdr, CTP_SF_RESP, CTP_SF_F_ERROR, stream, (uint32_t)n);
    c->cb->emit(c->arg, 0, hdr, pl, n);
}

/*
 * Checks a header against everything that needs no payload. Updates the
 * state that the header alone decides (the peer's highest REQ id).
 */
static ct_err check_header(ctp_sess_core *c, const ctp_sframe *f)
{
    if (f->type < CTP_SF_REQ || f->type > CTP_SF_CANCEL)
        return violation(c, "unknown frame type %u", (unsigned)f->type);
    if (f->reserved != 0)
        return violation(c, "%s frame with non-zero reserved bits 0x%04x", type_name(f->type),
                         (unsigned)f->reserved);
    if (f->len > c->max_frame)
        return violation(c, "%s frame of %lu bytes exceeds max_frame (%lu)", type_name(f->type),
                         (unsigned long)f->len, (unsigned long)c->max_frame);
    if (f->type == CTP_SF_RESP ? (f->flags & ~CTP_SF_F_ERROR) != 0 : f->flags != 0)
        return violation(c, "%s frame with unknown flags 0x%02x", type_name(f->type),
                         (unsigned)f->flags);
    switch (f->type) {
    case CTP_SF_REQ:
        if (!is_peers(c, f->stream))
            return violation(c, "REQ on stream %lu, which has our parity (both ends %s the "
                                "initiator?)",
                             (unsigned long)f->stream, c->initiator ? "are" : "are not");
        if (f->stream <= c->last_peer)
            return violation(c, "REQ on stream %lu, not above the last one (%lu)",
                             (unsigned long)f->stream, (unsigned long)c->last_peer);
        if (c->goaway_recv)
            return violation(c, "REQ on stream %lu after the peer's GOAWAY",
                             (unsigned long)f->stream);
        c->last_peer = f->stream;
        return CT_OK;
    case CTP_SF_RESP:
        if (!is_mine(c, f->stream) || f->stream >= c->next_id)
            return violation(c, "RESP on stream %lu, which we never opened",
                             (unsigned long)f->stream);
        if (!ctp_idmap_get(&c->out, f->stream) && !ring_has(c, f->stream))
            return violation(c, "RESP on stream %lu, which is not outstanding",
                             (unsigned long)f->stream);
        if ((f->flags & CTP_SF_F_ERROR) && f->len < 4)
            return violation(c, "error RESP on stream %lu without a code",
                             (unsigned long)f->stream);
        return CT_OK;
    case CTP_SF_PING:
    case CTP_SF_PONG:
    case CTP_SF_GOAWAY:
    case CTP_SF_CANCEL:
        if (f->len != 0)
            return violation(c, "%s frame with a %lu-byte payload", type_name(f->type),
                             (unsigned long)f->len);
        break;
    default:
        break;
    }
    switch (f->type) {
    case CTP_SF_PONG:
        if (f->stream == 0 || f->stream > c->ping_seq)
            return violation(c, "PONG with token %lu, which we never sent",
                             (unsigned long)f->stream);
        break;
    case CTP_SF_GOAWAY:
        if (f->stream != 0 && (!is_mine(c, f->stream) || f->stream >= c->next_id))
            return violation(c, "GOAWAY naming stream %lu, which we never opened",
                             (unsigned long)f->stream);
        if (c->goaway_recv && f->stream > c->goaway_recv_last)
            return violation(c, "second GOAWAY raises the last stream from %lu to %lu",
                             (unsigned long)c->goaway_recv_last, (unsigned long)f->stream);
        break;
    case CTP_SF_CANCEL:
        if (!is_peers(c, f->stream))
            return violation(c, "CANCEL on stream %lu, which has our parity",
                             (unsigned long)f->stream);
        break;
    default:
        break;
    }
    return CT_OK;
}

static ct_err on_req(ctp_sess_core *c, const ctp_sframe *f, uint8_t *body)
{
    void *item = NULL;
    ct_err rc;

    if (c->goaway_sent && f->stream > c->goaway_sent_last) {
        /* Sent after our GOAWAY: the peer fails it itself; no answer. */
        drop(body, f->len);
        return CT_OK;
    }
    c->requests_received++;
    if (c->in.count >= c->max_streams) {
        char msg[96];
        drop(body, f->len);
        c->rejected_busy++;
        snprintf(msg, sizeof msg, "the peer is serving %lu requests already (max_streams)",
                 (unsigned long)c->max_streams);
        answer_error(c, f->stream, CT_E_AGAIN, msg);
        return CT_OK;
    }
    rc = c->cb->request(c->arg, f->stream, body, f->len, &item);
    if (rc != CT_OK) {
        drop(body, f->len);
        answer_error(c, f->stream, rc, ct_strerror(rc));
        return CT_OK;
    }
    if (ctp_idmap_put(&c->in, f->stream, item) != 0) /* cannot happen: checked above */
        return violation(c, "internal: cannot record stream %lu", (unsigned long)f->stream);
    return CT_OK;
}

static ct_err on_resp(ctp_sess_core *c, const ctp_sframe *f, uint8_t *body)
{
    void *pending = ctp_idmap_del(&c->out, f->stream);
    int32_t code;

    if (!pending) {
        /* Cancelled meanwhile (checked in the header: else it would not get here). */
        drop(body, f->len);
        c->late_responses++;
        return CT_OK;
    }
    c->responses_received++;
    if (!(f->flags & CTP_SF_F_ERROR)) {
        c->cb->deliver(c->arg, pending, CT_OK, body, body, f->len, NULL);
        return CT_OK;
    }
    code = (int32_t)get32(body);
    if (code >= 0) {
        drop(body, f->len);
        c->cb->deliver(c->arg, pending, CT_E_PROTO, NULL, NULL, 0,
                       "the peer answered with an error RESP whose code is not an error");
        return violation(c, "error RESP on stream %lu with code %ld", (unsigned long)f->stream,
                         (long)code);
    }
    c->cb->deliver(c->arg, pending, (ct_err)code, body, body + 4, f->len - 4, NULL);
    return CT_OK;
}

/*
 * Removes and fails every outstanding request of ours with an id above
 * `above`. A deletion shifts later entries of the probe run back into the
 * slot, so the slot is looked at again; entries never move from a slot not
 * yet visited into one already visited.
 */
static void fail_above(ctp_sess_core *c, uint32_t above, ct_err code, const char *note)
{
    size_t i = 0;
    while (i < c->out.cap) {
        uint32_t id = c->out.keys[i];
        if (id != 0 && id > above) {
            void *p = ctp_idmap_del(&c->out, id);
            c->cb->deliver(c->arg, p, code, NULL, NULL, 0, note);
            continue;
        }
        i++;
    }
}

void ctp_sess_fail_all(ctp_sess_core *c, ct_err code, const char *note)
{
    fail_above(c, 0, code, note);
}

static ct_err on_goaway(ctp_sess_core *c, const ctp_sframe *f)
{
    bool again = c->goaway_recv;
    c->goaway_recv = true;
    c->goaway_recv_last = f->stream;
    /* Our requests above `last` never reached the peer's handler. */
    fail_above(c, f->stream, CT_E_CLOSED,
               "the peer is closing the session (GOAWAY) and will not answer this request");
    if (!c->goaway_sent)
        ctp_sess_goaway(c);
    if (!again)
        c->cb->goaway(c->arg);
    return CT_OK;
}

static ct_err dispatch(ctp_sess_core *c, const ctp_sframe *f, uint8_t *body)
{
    uint8_t hdr[CT_SESSION_HEADER_LEN];
    void *item;

    switch (f->type) {
    case CTP_SF_REQ:
        return on_req(c, f, body);
    case CTP_SF_RESP:
        return on_resp(c, f, body);
    case CTP_SF_PING:
        ctp_sframe_put(hdr, CTP_SF_PONG, 0, f->stream, 0);
        c->cb->emit(c->arg, 0, hdr, NULL, 0);
        return CT_OK;
    case CTP_SF_PONG:
        c->cb->pong(c->arg, f->stream);
        return CT_OK;
    case CTP_SF_GOAWAY:
        return on_goaway(c, f);
    case CTP_SF_CANCEL:
        /* Unknown: answered already, dropped after our GOAWAY, or not yet seen. */
        item = ctp_idmap_get(&c->in, f->stream);
        if (item)
            c->cb->cancel(c->arg, item);
        return CT_OK;
    default:
        drop(body, f->len);
        return violation(c, "unknown frame type %u", (unsigned)f->type);
    }
}

ct_err ctp_sess_feed(ctp_sess_core *c, const uint8_t *p, size_t n)
{
    ct_err rc;

    if (c->failed)
        return CT_E_PROTO;
    while (n > 0) {
        if (!c->in_body) {
            size_t k = CT_SESSION_HEADER_LEN - c->hdr_have;
            if (k > n)
                k = n;
            memcpy(c->hdr + c->hdr_have, p, k);
            c->hdr_have += k;
            p += k;
            n -= k;
            if (c->hdr_have < CT_SESSION_HEADER_LEN)
                break;
            c->hdr_have = 0;
            ctp_sframe_get(c->hdr, &c->cur);
            if ((rc = check_header(c, &c->cur)) != CT_OK)
                return rc;
            if (c->cur.len == 0) {
                if ((rc = dispatch(c, &c->cur, NULL)) != CT_OK)
                    return rc;
                continue;
            }
            c->body = malloc(c->cur.len);
            if (!c->body) {
                snprintf(c->why, sizeof c->why, "out of memory for a %lu-byte frame",
                         (unsigned long)c->cur.len);
                c->failed = true;
                return CT_E_NOMEM;
            }
            c->body_have = 0;
            c->in_body = true;
        } else {
            size_t k = c->cur.len - c->body_have;
            uint8_t *body;
            if (k > n)
                k = n;
            memcpy(c->body + c->body_have, p, k);
            c->body_have += k;
            p += k;
            n -= k;
            if (c->body_have < c->cur.len)
                break;
            body = c->body;
            c->body = NULL;
            c->body_have = 0;
            c->in_body = false;
            if ((rc = dispatch(c, &c->cur, body)) != CT_OK)
                return rc;
        }
    }
    return CT_OK;
}

ct_err ctp_sess_open_stream(ctp_sess_core *c, void *pending, uint32_t *id)
{
    if (c->goaway_sent || c->goaway_recv) {
        snprintf(c->why, sizeof c->why, "the session is closing (GOAWAY %s)",
                 c->goaway_sent ? "sent" : "received");
        return CT_E_CLOSED;
    }
    if (c->next_id > UINT32_MAX) {
        snprintf(c->why, sizeof c->why,
                 "the session has used up its stream ids; open a new session");
        return CT_E_CLOSED;
    }
    if (c->out.count >= c->max_streams) {
        snprintf(c->why, sizeof c->why, "%lu requests are outstanding already (max_streams)",
                 (unsigned long)c->max_streams);
        return CT_E_AGAIN;
    }
    *id = (uint32_t)c->next_id;
    if (ctp_idmap_put(&c->out, *id, pending) != 0) { /* cannot happen: ids are new */
        snprintf(c->why, sizeof c->why, "internal: stream %lu is in use", (unsigned long)*id);
        return CT_E_AGAIN;
    }
    c->next_id += 2;
    return CT_OK;
}

void *ctp_sess_forget_stream(ctp_sess_core *c, uint32_t id, bool remember)
{
    void *p = ctp_idmap_del(&c->out, id);
    if (p && remember)
        ring_add(c, id);
    return p;
}

void ctp_sess_finish_incoming(ctp_sess_core *c, uint32_t id)
{
    ctp_idmap_del(&c->in, id);
}

void ctp_sess_goaway(ctp_sess_core *c)
{
    uint8_t hdr[CT_SESSION_HEADER_LEN];
    if (c->goaway_sent)
        return;
    c->goaway_sent = true;
    c->goaway_sent_last = c->last_peer;
    ctp_sframe_put(hdr, CTP_SF_GOAWAY, 0, c->last_peer, 0);
    c->cb->emit(c->arg, 1, hdr, NULL, 0);
}

uint32_t ctp_sess_ping(ctp_sess_core *c)
{
    uint8_t hdr[CT_SESSION_HEADER_LEN];
    if (c->ping_seq == UINT32_MAX)
        c->ping_seq = 0; /* wraps after 2^32 pings: older tokens become "unsent" */
    c->ping_seq++;
    ctp_sframe_put(hdr, CTP_SF_PING, 0, c->ping_seq, 0);
    c->cb->emit(c->arg, 0, hdr, NULL, 0);
    return c->ping_seq;
}
