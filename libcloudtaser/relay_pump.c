/*
 * relay_pump.c - the beacon's data path: writing to a connection (status
 * bytes, the partner's record in flight, close_notify) and relaying records
 * between the two peers of a paired session.
 *
 * Relaying
 *   Per direction at most one TLS record in flight: wolfSSL_read up to
 *   16 KiB from A into a buffer, wolfSSL_write it to B. On WANT_WRITE the
 *   buffer is kept (wolfSSL requires the retry with the same buffer and
 *   length), B gets EPOLLOUT and A loses EPOLLIN until the record is out:
 *   backpressure through TCP, bounded memory. Buffers come from a per-worker
 *   free list and are held only while a record is in flight. Reads are
 *   budgeted per wakeup; a connection whose wolfSSL object still holds
 *   decrypted bytes (wolfSSL_pending) goes on a ready list, because
 *   level-triggered epoll cannot see bytes that already left the socket.
 *
 * Half-close
 *   A's close_notify (wolfSSL_read returns ZERO_RETURN) ends A->B: once the
 *   record in flight is written, the beacon sends close_notify to B and
 *   shuts down B's TCP sending side; B->A keeps flowing. wolfSSL 5.5.4 does
 *   let a session write after it has received close_notify (tested: the
 *   peer reads the data, then its own close_notify), and read after it has
 *   sent one. Trap: a non-blocking wolfSSL_shutdown that hits WANT_WRITE
 *   leaves the alert in the output buffer without marking it sent, and
 *   calling wolfSSL_shutdown again appends another alert each time
 *   (measured: 3 calls put 3 close_notify records on the wire). So it is
 *   called exactly once, and the pending alert is flushed with zero-length
 *   wolfSSL_write calls (which send buffered output and return 0).
 *   A TCP FIN without close_notify is a truncation, i.e. an abort.
 */
#include "relay_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------ */
/* Buffers                                                             */

static uint8_t *buf_get(struct worker *w)
{
    void *b = w->free_bufs;
    if (b) {
        memcpy(&w->free_bufs, b, sizeof(void *));
        w->nfree_bufs--;
        return b;
    }
    return malloc(RELAY_BUF);
}

void ctp_relay_buf_put(struct worker *w, uint8_t *b)
{
    if (!b)
        return;
    if (w->nfree_bufs >= FREE_BUFS_MAX) {
        free(b);
        return;
    }
    memcpy(b, &w->free_bufs, sizeof(void *));
    w->free_bufs = b;
    w->nfree_bufs++;
}

void ctp_relay_buf_pool_free(struct worker *w)
{
    while (w->free_bufs) {
        void *b = w->free_bufs;
        memcpy(&w->free_bufs, b, sizeof(void *));
        free(b);
    }
}

/* ------------------------------------------------------------------ */
/* Writing to a connection                                             */

static int wr_error(struct conn *c, int ret)
{
    int e = wolfSSL_get_error(c->ssl, ret);
    if (e == WOLFSSL_ERROR_WANT_WRITE || e == WOLFSSL_ERROR_WANT_READ) {
        c->wblocked = 1;
        return WR_BLOCKED;
    }
    return WR_FATAL;
}

/* Queues a status byte. The queue holds at most 3 (WAITING + final). */
void ctp_relay_status_push(struct conn *c, uint8_t st)
{
    if (c->stq_len < sizeof c->stq)
        c->stq[c->stq_len++] = st;
}

static int flush_status(struct conn *c)
{
    while (c->stq_len > 0) {
        /* stq[0] stays put until written: the retry after WANT_WRITE uses
         * the same buffer and length, as wolfSSL requires. */
        int n = wolfSSL_write(c->ssl, c->stq, 1);
        if (n != 1)
            return wr_error(c, n);
        memmove(c->stq, c->stq + 1, --c->stq_len);
    }
    return WR_OK;
}

/* Sends close_notify once; a blocked alert is flushed by empty writes. */
static int flush_shutdown(struct conn *c)
{
    int n;
    if (!c->shut_started) {
        c->shut_started = 1;
        n = wolfSSL_shutdown(c->ssl);
        if (n != WOLFSSL_SUCCESS && n != WOLFSSL_SHUTDOWN_NOT_DONE) {
            int rc = wr_error(c, n);
            if (rc == WR_BLOCKED)
                c->shut_flush = 1;
            return rc;
        }
    } else if (c->shut_flush) {
        n = wolfSSL_write(c->ssl, "", 0);
        if (n < 0)
            return wr_error(c, n);
        c->shut_flush = 0;
    }
    if (!c->shut_flush && !c->wr_done) {
        shutdown(c->fd, SHUT_WR);
        c->wr_done = 1;
    }
    return WR_OK;
}

/*
 * Writes everything owed to c, in order: status bytes, the peer's record in
 * flight, then close_notify if the peer's direction has ended.
 */
int ctp_relay_conn_flush(struct conn *c)
{
    struct worker *w = c->w;
    struct conn *p = c->peer;
    int rc;

    c->wblocked = 0;
    if (c->state == ST_PAIRED && c->wdead) {
        /* c can take nothing more: what was owed to it is lost */
        if (p && p->rx_len > 0) {
            p->rx_len = 0;
            ctp_relay_buf_put(w, p->rx);
            p->rx = NULL;
            p->lossy = 1;
        }
        c->stq_len = 0;
        c->wr_done = 1;
        return WR_OK;
    }
    if ((rc = flush_status(c)) != WR_OK)
        return rc;
    if (c->state == ST_PAIRED && p) {
        if (p->rx_len > 0) {
            int n = wolfSSL_write(c->ssl, p->rx, (int)p->rx_len);
            if (n != (int)p->rx_len)
                return wr_error(c, n);
            p->bytes_out += p->rx_len;
            STAT_ADD(w->r, bytes_relayed, p->rx_len);
            p->rx_len = 0;
            ctp_relay_buf_put(w, p->rx);
            p->rx = NULL;
        }
        if (p->rd_closed && !c->wr_done) {
            if (!c->shut_started)
                STAT_INC(w->r, half_closes);
            return flush_shutdown(c);
        }
    } else if (c->state == ST_CLOSING) {
        return flush_shutdown(c);
    }
    return WR_OK;
}

/* ------------------------------------------------------------------ */
/* Relaying                                                            */

int ctp_relay_can_read(const struct conn *c)
{
    return c->state == ST_PAIRED && !c->rd_closed && c->rx_len == 0 && c->peer &&
           !c->peer->wdead;
}

/* A paired session between c and p ends: its log line and counters. */
static void session_end(struct conn *c, struct conn *p, enum end_reason end)
{
    struct worker *w = c->w;
    ctp_relay_log_session(w->r, c, p, end, w->now);
    STAT_DEC(w->r, paired_sessions);
    if (end == END_RESET)
        STAT_INC(w->r, aborts);
}

/* Ends a paired session: both connections close now. */
void ctp_relay_pair_close(struct conn *c, enum end_reason end)
{
    struct conn *p = c->peer;
    if (c->state == ST_DEAD)
        return;
    if (p) {
        session_end(c, p, end);
        ctp_relay_conn_close(p);
    }
    ctp_relay_conn_close(c);
}

/*
 * A session where one side can no longer be written to (dead) and whose
 * own direction is complete: the other direction cannot complete any more.
 * The survivor already has all the dead side sent plus close_notify; it is
 * closed through CLOSING's bounded discard, so what it still sends does not
 * make the kernel reset the connection before our last bytes reach it.
 */
static void pair_end_lossy(struct conn *dead)
{
    struct worker *w = dead->w;
    struct conn *p = dead->peer;

    session_end(dead, p, END_RESET);
    dead->peer = NULL;
    p->peer = NULL;
    ctp_relay_conn_close(dead);
    ctp_relay_buf_put(w, p->rx);
    p->rx = NULL;
    p->rx_len = 0;
    p->stq_len = 0;
    p->wblocked = 0;
    p->discarding = 1;
    if (ctp_relay_closing_enter(p) < 0)
        return;
    ctp_relay_conn_arm(p);
}

/* Ends the session if nothing more can move. Returns 1 if it ended. */
static int pair_settle(struct conn *c)
{
    struct conn *p = c->peer;
    int c_done, p_done;

    if (c->state != ST_PAIRED || !p)
        return c->state != ST_PAIRED;
    c_done = c->rd_closed && c->rx_len == 0 && p->wr_done; /* c -> p delivered and closed */
    p_done = p->rd_closed && p->rx_len == 0 && c->wr_done; /* p -> c delivered and closed */
    if (c_done && p_done) {
        ctp_relay_pair_close(c, c->lossy || p->lossy ? END_RESET : END_CLOSE);
        return 1;
    }
    if (c->wdead && c_done) {
        pair_end_lossy(c);
        return 1;
    }
    if (p->wdead && p_done) {
        pair_end_lossy(p);
        return 1;
    }
    return 0;
}

/*
 * Writing to c failed or its socket reported an error. Bytes owed to c are
 * lost, but what c sent before (records queued in the socket, then perhaps
 * its close_notify) is still read and delivered: a peer that ends with
 * close_notify and then closes a socket holding unread bytes makes the
 * kernel send a reset, and that must not destroy its clean end. Reading
 * happens from the ready list, never recursively from here.
 */
void ctp_relay_pump_error(struct conn *c)
{
    struct conn *p = c->peer;
    if (c->state != ST_PAIRED || c->wdead)
        return;
    c->wdead = 1;
    c->hup_seen = 1; /* park it outside epoll whenever it waits for nothing */
    ctp_relay_conn_flush(c); /* drops what was owed to c */
    /* bounded: the survivor gets the linger time to take what c sent */
    if (c->heap_idx < 0 &&
        ctp_relay_timer_set(c->w, c, c->w->now + c->w->r->o.linger_ms) < 0) {
        ctp_relay_pair_close(c, END_RESET);
        return;
    }
    if (ctp_relay_can_read(c))
        ctp_relay_ready_add(c->w, c);
    if (pair_settle(c))
        return;
    ctp_relay_conn_arm(c);
    if (p)
        ctp_relay_conn_arm(p);
}

/*
 * Writes what is owed to p, c's peer (c's record in flight or its
 * close_notify). Returns 0 if that ended c's session (c is no longer
 * PAIRED), 1 if c may go on.
 */
static int forward(struct conn *c, struct conn *p)
{
    if (ctp_relay_conn_flush(p) == WR_FATAL) {
        ctp_relay_pump_error(p);
        if (c->state != ST_PAIRED)
            return 0;
    }
    return 1;
}

/* Reads records from c and forwards them to its peer, within a budget. */
void ctp_relay_pump(struct conn *c)
{
    struct worker *w = c->w;
    struct conn *p = c->peer;

    for (int i = 0; i < READ_BUDGET; i++) {
        int n, e;
        if (c->state != ST_PAIRED || !p || !ctp_relay_can_read(c))
            break;
        if (!c->rx && !(c->rx = buf_get(w))) {
            ctp_relay_pair_close(c, END_RESET); /* out of memory: abort, never drop silently */
            return;
        }
        n = wolfSSL_read(c->ssl, c->rx, RELAY_BUF);
        if (n > 0) {
            c->rx_len = (uint32_t)n;
            if (!forward(c, p))
                return;
            continue;
        }
        e = wolfSSL_get_error(c->ssl, n);
        ctp_relay_buf_put(w, c->rx);
        c->rx = NULL;
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
            break;
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            /* half-close: A->B ends, B->A keeps flowing (PROTOCOL 1.5) */
            c->rd_closed = 1;
            if (!p->rd_closed && ctp_relay_timer_set(w, c, w->now + w->r->o.linger_ms) < 0) {
                ctp_relay_pair_close(c, END_RESET);
                return;
            }
            if (!forward(c, p))
                return;
            break;
        }
        /* reset, TLS error, or FIN without close_notify while c's direction
         * was open: a truncation, the partner must see an abort */
        ctp_relay_pair_close(c, END_RESET);
        return;
    }
    if (c->state != ST_PAIRED || pair_settle(c))
        return;
    if (ctp_relay_can_read(c) && wolfSSL_pending(c->ssl) > 0)
        ctp_relay_ready_add(w, c);
    ctp_relay_conn_arm(c);
    ctp_relay_conn_arm(p);
}

/* c became writable (or its peer's record/close is owed to it). */
void ctp_relay_pump_writable(struct conn *c)
{
    struct conn *p = c->peer;
    int rc = ctp_relay_conn_flush(c);
    if (rc == WR_FATAL) {
        ctp_relay_pump_error(c);
        return;
    }
    if (!p || pair_settle(c))
        return;
    ctp_relay_conn_arm(c);
    if (rc == WR_OK && ctp_relay_can_read(p))
        ctp_relay_pump(p); /* the record is out: the peer may be read again */
    else
        ctp_relay_conn_arm(p);
}
