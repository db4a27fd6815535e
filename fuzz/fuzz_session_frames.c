/*
 * fuzz_session_frames.c - the session's receive path: the input is the byte
 * stream of a hostile peer, fed to the protocol core (session_frame.c,
 * compiled in; no threads, no I/O) in pieces whose sizes come from the
 * input itself. Between pieces the harness plays the rest of the session:
 * it opens requests of its own, gives up on some (so late answers hit the
 * cancelled ring), finishes the peer's requests as a handler would, and
 * sometimes sends GOAWAY.
 *
 * Input: byte 0 = options (bit 0 initiator, bit 1 GOAWAY after the first
 * piece, bits 2-3 requests opened up front), byte 1 = seed for the piece
 * sizes and the harness's moves, then the stream.
 *
 * Contracts: no crash, overread or leak (ASan/LSan); an answer is delivered
 * at most once, only for a request of ours that is outstanding; the tables
 * never exceed max_streams; every frame the core emits is well formed; a
 * core that reported a violation stays failed.
 */
#include "session_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAME 256u
#define MAX_STREAMS 4u
#define NPEND 64

struct harness {
    ctp_sess_core core;
    int initiator;
    /* our requests: slot i is outstanding when id[i] != 0 */
    uint32_t id[NPEND];
    int npend;
    /* the peer's requests we serve (FIFO of items) */
    struct item {
        uint32_t stream;
        uint8_t *payload;
        int cancelled;
    } * items[MAX_STREAMS + 1];
    int nitems;
    uint32_t pings;
};


static void check_frame(const uint8_t *hdr, size_t payload_len)
{
    ctp_sframe f;
    ctp_sframe_get(hdr, &f);
    if (f.type < CTP_SF_REQ || f.type > CTP_SF_CANCEL || f.reserved != 0 ||
        f.len != payload_len || f.len > MAX_FRAME)
        abort();
    if (f.type != CTP_SF_RESP && f.flags != 0)
        abort();
    if (f.type == CTP_SF_RESP && (f.flags & CTP_SF_F_ERROR) && f.len < 4)
        abort();
}

static void h_deliver(void *arg, void *pending, ct_err code, uint8_t *buf, const uint8_t *d,
                      size_t len, const char *note)
{
    struct harness *h = arg;
    uint32_t *slot = pending;
    (void)code;
    (void)d;
    (void)len;
    (void)note;
    if (slot < h->id || slot >= h->id + NPEND || *slot == 0)
        abort(); /* not ours, or delivered twice */
    *slot = 0;
    free(buf);
}

static ct_err h_request(void *arg, uint32_t stream, uint8_t *payload, size_t len, void **item)
{
    struct harness *h = arg;
    struct item *it;
    (void)len;
    if ((unsigned)h->nitems >= MAX_STREAMS)
        abort(); /* the core must have refused it */
    if (stream % 7 == 0)
        return CT_E_UNSUPPORTED; /* sometimes refuse: the core answers with an error */
    it = calloc(1, sizeof *it);
    if (!it)
        return CT_E_NOMEM;
    it->stream = stream;
    it->payload = payload;
    h->items[h->nitems++] = it;
    *item = it;
    return CT_OK;
}

static void h_cancel(void *arg, void *item)
{
    (void)arg;
    ((struct item *)item)->cancelled = 1;
}

static void h_emit(void *arg, int ordered, const uint8_t hdr[CT_SESSION_HEADER_LEN],
                   const uint8_t *payload, size_t len)
{
    (void)arg;
    (void)ordered;
    (void)payload;
    check_frame(hdr, len);
}

static void h_pong(void *arg, uint32_t token)
{
    struct harness *h = arg;
    if (token == 0 || token > h->pings)
        abort();
}

static void h_goaway(void *arg)
{
    (void)arg;
}

static const ctp_sess_cb cbs = {h_deliver, h_request, h_cancel, h_emit, h_pong, h_goaway};

/* The handler finishes the oldest request of the peer's. */
static void finish_one(struct harness *h)
{
    struct item *it;
    if (!h->nitems)
        return;
    it = h->items[0];
    memmove(h->items, h->items + 1, (size_t)(h->nitems - 1) * sizeof h->items[0]);
    h->nitems--;
    ctp_sess_finish_incoming(&h->core, it->stream);
    free(it->payload);
    free(it);
}

static void open_one(struct harness *h)
{
    for (int i = 0; i < NPEND; i++) {
        if (h->id[i] == 0) {
            uint32_t id;
            if (ctp_sess_open_stream(&h->core, &h->id[i], &id) == CT_OK) {
                if (id == 0 || (id & 1u) != (h->initiator ? 1u : 0u))
                    abort();
                h->id[i] = id;
            }
            return;
        }
    }
}

static void forget_one(struct harness *h, unsigned r)
{
    for (int k = 0; k < NPEND; k++) {
        int i = (int)((r + (unsigned)k) % NPEND);
        if (h->id[i] != 0) {
            if (ctp_sess_forget_stream(&h->core, h->id[i], true) != &h->id[i])
                abort();
            h->id[i] = 0;
            return;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct harness h;
    uint8_t *in;
    unsigned seed;
    size_t off;
    int failed = 0;

    if (size < 2)
        return 0;
    memset(&h, 0, sizeof h);
    h.initiator = data[0] & 1;
    seed = data[1] * 2654435761u + 1;
    if (ctp_sess_init(&h.core, h.initiator, MAX_FRAME, MAX_STREAMS, &cbs, &h) != CT_OK)
        return 0;
    for (int i = 0; i < ((data[0] >> 2) & 3); i++)
        open_one(&h);
    if (data[0] & 0x10) {
        ctp_sess_ping(&h.core);
        h.pings++;
    }
    /* exact-size copy: reads past the input trip ASan */
    size -= 2;
    in = malloc(size ? size : 1);
    if (!in)
        abort();
    memcpy(in, data + 2, size);
    for (off = 0; off < size;) {
        size_t piece;
        ct_err rc;
        seed = seed * 1103515245u + 12345u;
        piece = 1 + (seed >> 16) % 40;
        if (piece > size - off)
            piece = size - off;
        rc = ctp_sess_feed(&h.core, in + off, piece);
        off += piece;
        if (failed && rc == CT_OK)
            abort(); /* a failed core must stay failed */
        if (rc != CT_OK && rc != CT_E_PROTO && rc != CT_E_NOMEM)
            abort();
        if (rc != CT_OK) {
            failed = 1;
            if (rc == CT_E_PROTO && h.core.why[0] == '\0')
                abort();
        }
        if (h.core.in.count > MAX_STREAMS || h.core.out.count > MAX_STREAMS ||
            h.core.in.count != (size_t)h.nitems)
            abort();
        switch ((seed >> 8) & 7) {
        case 0:
            open_one(&h);
            break;
        case 1:
            forget_one(&h, seed >> 4);
            break;
        case 2:
            finish_one(&h);
            break;
        case 3:
            if ((data[0] & 2) && off > 0)
                ctp_sess_goaway(&h.core);
            break;
        case 4:
            ctp_sess_ping(&h.core);
            h.pings++;
            break;
        default:
            break;
        }
    }
    if ((seed >> 3) & 1)
        ctp_sess_fail_all(&h.core, CT_E_CLOSED, "end");
    for (int i = 0; i < NPEND; i++)
        if (h.id[i])
            ctp_sess_forget_stream(&h.core, h.id[i], false);
    while (h.nitems)
        finish_one(&h);
    if (h.core.in.count != 0 || h.core.out.count != 0)
        abort();
    ctp_sess_free(&h.core);
    free(in);
    return 0;
}
