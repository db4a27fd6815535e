/*
 * relay_internal.h - private declarations shared by the beacon server's
 * modules (ct_relay_*, include/cloudtaser/relay.h; docs/PROTOCOL.md 1):
 *
 *   relay.c         the public API: options and defaults, setup, serve,
 *                   drain/stop, statistics, free; the TLS configuration
 *                   (certificate context, reference counted, reloadable)
 *   relay_worker.c  the per-worker epoll loop: listener and accept, the
 *                   inbox/eventfd hand-off between workers, the ready list,
 *                   drain and stop
 *   relay_conn.c    one connection: TLS I/O callbacks, epoll registration,
 *                   handshake, hello, refusals, close, events and deadlines,
 *                   the session and refusal log
 *   relay_room.c    rooms, pairing rules, the bridge-side pool, keepalives
 *   relay_pump.c    writing to a connection and relaying records between
 *                   paired peers: backpressure, half-close, aborts, buffers
 *   relay_limits.c  the per-address table: connection caps, token buckets,
 *                   the refusal budget
 *   relay_timer.c   the per-worker deadline heap
 *
 * Non-static internals are named ctp_relay_* and are never exported.
 *
 * Shape
 *   N workers, each an epoll loop with its own SO_REUSEPORT listener. A
 *   connection is accepted and handshaken by whichever worker the kernel
 *   gave it to; once its hello is read, it moves to the worker that owns its
 *   room (SipHash of the room, keyed with a secret random key, mod N)
 *   through a mutex-protected inbox plus an eventfd. All peers of a room
 *   therefore live on one worker and pairing and relaying take no locks.
 *   Shared state: the statistics (atomics), the per-address table (one
 *   mutex), the current TLS configuration (a mutex held only to take a
 *   reference) and the inboxes.
 *
 * Connection life
 *   NEW (TCP only; the wolfSSL object is created when the first byte
 *   arrives, so idle TCP connections cost no TLS memory) -> TLS ->
 *   HELLO -> [TRANSIT to the owner] -> WAITING -> PAIRED, or CLOSING
 *   (a refusal: the status byte, close_notify, SHUT_WR, then incoming bytes
 *   are discarded until EOF or a short deadline so the kernel does not
 *   answer them with a reset that could destroy the status byte).
 */
#ifndef CTP_RELAY_INTERNAL_H
#define CTP_RELAY_INTERNAL_H

#include "internal.h"
#include "siphash.h"
#include "wolf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------ */
/* Tunables that are not options                                      */

#define RELAY_BUF 16384           /* one TLS record of plaintext */
#define READ_BUDGET 4             /* records per connection per wakeup */
#define ACCEPT_BUDGET 64          /* accepts per listener wakeup */
#define EVENT_BATCH 128
#define FREE_BUFS_MAX 64          /* cached relay buffers per worker */
#define CLOSING_MS 2000           /* refusal: flush + discard deadline */
#define DISCARD_MAX (64 * 1024)   /* refusal: bytes discarded at most */
#define ACCEPT_PAUSE_MS 100       /* after EMFILE and friends */
#define REFUSAL_RATE 2            /* status refusals per address per second */
#define REFUSAL_BURST 8
#define IP_SWEEP_MS 1000
#define IP_TABLE_SLACK 65536      /* address entries beyond max_conns */
#define DRAIN_POLL_MS 20

/* epoll user data: every registered object starts with one of these */
enum { EV_CONN = 1, EV_LISTEN, EV_INBOX, EV_DRAIN, EV_STOP };
struct ev_tag {
    uint8_t kind;
};

enum {
    ST_NEW = 1, /* TCP accepted, no TLS object yet */
    ST_TLS,     /* handshake in progress */
    ST_HELLO,   /* reading the 40-byte hello */
    ST_TRANSIT, /* in another worker's inbox */
    ST_WAITING, /* in a room */
    ST_PAIRED,
    ST_CLOSING, /* refusal in progress */
    ST_DEAD
};

enum end_reason { END_CLOSE, END_RESET, END_LINGER, END_DRAIN, END_STOP };

struct cert_ref {
    WOLFSSL_CTX *ctx;
    atomic_uint refs;
};

struct worker;
struct room;
struct ip_entry;

struct conn {
    struct ev_tag tag; /* first: EV_CONN */
    uint8_t state;
    uint8_t role;
    uint8_t hello_len;
    uint8_t refuse_on_tls; /* status to send right after the handshake */
    uint8_t ip_counted;    /* holds a slot in the address table */
    uint8_t registered;    /* in this worker's epoll */
    uint8_t hs_want_write;
    uint8_t wblocked;      /* last write to this conn got WANT_WRITE */
    uint8_t hup_seen;
    uint8_t eof;           /* TCP FIN seen by the recv callback */
    uint8_t rd_closed;     /* close_notify received from this conn */
    uint8_t shut_started;  /* wolfSSL_shutdown called (close_notify queued) */
    uint8_t shut_flush;    /* ... but not yet fully written */
    uint8_t wr_done;       /* close_notify written and TCP SHUT_WR done */
    uint8_t discarding;    /* CLOSING: reading and dropping until EOF */
    uint8_t wdead;         /* PAIRED: writing to this conn failed; owed bytes are dropped */
    uint8_t lossy;         /* PAIRED: bytes from this conn were dropped */
    uint8_t in_ready;
    uint8_t stq[3];        /* status bytes queued; stq[0] may be in flight */
    uint8_t stq_len;
    uint8_t hello[CT_BEACON_HELLO_LEN];
    int fd;
    uint32_t ev_mask;
    uint32_t rx_len;       /* bytes in rx not yet written to peer */
    uint32_t discarded;
    struct worker *w;
    WOLFSSL *ssl;
    struct cert_ref *cert;
    struct conn *peer;
    uint8_t *rx;
    uint64_t bytes_out;    /* relayed from this conn to its peer */
    uint64_t room_h;
    struct room *room;
    struct conn *wprev, *wnext;   /* room's bridge FIFO */
    struct conn *rprev, *rnext;   /* worker's ready list */
    struct conn *aprev, *anext;   /* worker's list of all its conns */
    struct conn *gnext;           /* graveyard / inbox */
    int64_t deadline;
    int64_t t_wait_until, t_keepalive, t_paired;
    int32_t heap_idx;
    uint8_t ip[16];
};

struct room {
    struct room *next;
    uint64_t h;
    uint8_t id[32];
    struct conn *op;
    struct conn *br_head, *br_tail;
    uint32_t nbr;
};

struct worker {
    struct ct_relay *r;
    int idx;
    int epfd, lfd, evfd;
    struct ev_tag t_listen, t_inbox, t_drain, t_stop;
    pthread_t tid;
    int started;
    /* inbox: other workers hand connections over here */
    pthread_mutex_t inbox_mu;
    struct conn *inbox_head, *inbox_tail;
    /* timers: min-heap on conn->deadline */
    struct conn **heap;
    size_t heap_len, heap_cap;
    /* rooms: chained hash table on the keyed room hash */
    struct room **rooms;
    size_t rooms_cap, rooms_len;
    struct conn *ready_head, *ready_tail; /* FIFO */
    size_t ready_len;
    struct conn *all_head;
    struct conn *grave;
    void *free_bufs;
    int nfree_bufs;
    int draining, stopping, listening;
    int64_t drain_deadline;
    int64_t accept_resume; /* 0: not paused */
    int64_t next_sweep;
    int64_t now;
    /* the conn last handed to another worker: compared, never dereferenced */
    const struct conn *gone;
};

struct relay_stats_atomic {
    atomic_uint_fast64_t accepted, handshakes_failed, hellos_bad, refused_room_busy,
        refused_rate_limited, refused_overloaded, refused_draining, timeouts, pairs,
        bytes_relayed, refused_version, refused_ip_conns, refused_ip_rate,
        closed_without_status, aborts, half_closes, accept_errors;
    atomic_uint conns_open, waiting, paired_sessions, rooms;
};

struct ct_relay {
    ct_ctx *ctx;
    ct_relay_options o;
    int nworkers;
    struct worker *w;
    uint16_t port;
    int drain_efd, stop_efd;
    atomic_int serve_state; /* 0 idle, 1 serving, 2 done */
    pthread_mutex_t cert_mu;
    struct cert_ref *cert;
    uint8_t k_route[CTP_SIPHASH_KEY_LEN], k_room[CTP_SIPHASH_KEY_LEN],
        k_ip[CTP_SIPHASH_KEY_LEN];
    pthread_mutex_t ip_mu;
    struct ip_entry **ip_tab;
    size_t ip_cap, ip_len, ip_max;
    struct relay_stats_atomic st;
};

#define STAT_INC(r, f) atomic_fetch_add_explicit(&(r)->st.f, 1, memory_order_relaxed)
#define STAT_ADD(r, f, n) atomic_fetch_add_explicit(&(r)->st.f, (n), memory_order_relaxed)
#define STAT_DEC(r, f) atomic_fetch_sub_explicit(&(r)->st.f, 1, memory_order_relaxed)

/* ------------------------------------------------------------------ */
/* relay.c: the TLS configuration                                      */

/* Takes a reference to the current configuration (for a new connection). */
struct cert_ref *ctp_relay_cert_acquire(struct ct_relay *r);
/* Drops a reference; the last one frees it. NULL is a no-op. */
void ctp_relay_cert_unref(struct cert_ref *cr);

/* ------------------------------------------------------------------ */
/* relay_worker.c                                                      */

int ctp_relay_bind_listener(const struct sockaddr *sa, socklen_t sl, int reuseport,
                            int *fd_out);
ct_err ctp_relay_worker_init(struct ct_relay *r, struct worker *w, int idx,
                             const struct sockaddr_storage *ss, socklen_t sl, ct_error *err);
void ctp_relay_worker_loop(struct worker *w);
void *ctp_relay_worker_main(void *arg);
/* Closes what was handed over to a worker that had already left. */
void ctp_relay_worker_free_inbox(struct worker *w);
/* Releases a worker's connections, descriptors and memory (relay not serving). */
void ctp_relay_worker_free(struct worker *w);

/* Adds 1 to an eventfd's counter, which wakes its reader. Async-signal-safe. */
void ctp_relay_efd_signal(int fd);
void ctp_relay_ready_add(struct worker *w, struct conn *c);
void ctp_relay_ready_del(struct worker *w, struct conn *c);
void ctp_relay_all_del(struct worker *w, struct conn *c);
/* Moves a conn with a complete hello to the worker that owns its room. */
void ctp_relay_route(struct worker *w, struct conn *c);

/* ------------------------------------------------------------------ */
/* relay_conn.c                                                        */

int ctp_relay_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx);
int ctp_relay_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx);
/* Takes c out of its worker's epoll (if it is in). */
void ctp_relay_conn_unregister(struct conn *c);
/* Brings the epoll registration in line with what the conn waits for. */
void ctp_relay_conn_arm(struct conn *c);
/* Closes one connection at once (no close_notify); freed after this wakeup. */
void ctp_relay_conn_close(struct conn *c);
/*
 * Puts c in CLOSING under the CLOSING_MS deadline (flush, then bounded
 * discard). Returns -1 if c had to be closed at once instead.
 */
int ctp_relay_closing_enter(struct conn *c);
/* Sends a refusal status, close_notify, and closes (PROTOCOL.md 1.3). */
void ctp_relay_refuse(struct conn *c, int status);
void ctp_relay_log_session(struct ct_relay *r, const struct conn *a, const struct conn *b,
                           enum end_reason end, int64_t now);
void ctp_relay_do_hello(struct conn *c);
void ctp_relay_conn_event(struct conn *c, uint32_t ev);
/* c's deadline has passed (it is already off the heap). */
void ctp_relay_conn_deadline(struct worker *w, struct conn *c);

/* ------------------------------------------------------------------ */
/* relay_room.c                                                        */

/* Takes a waiting conn out of its room (the room is freed when empty). */
void ctp_relay_room_leave(struct worker *w, struct conn *c);
/* Runs on the worker that owns the room. */
void ctp_relay_join_room(struct worker *w, struct conn *c);
/*
 * Reads from a conn that is not paired yet: data is a violation (refused
 * with BAD_HELLO), end of stream or an error means it left (closed).
 * Returns 1 if c was refused or closed, 0 if nothing came.
 */
int ctp_relay_waiting_readable(struct conn *c);
/* A waiting conn's deadline: keepalive or the end of the wait. */
void ctp_relay_waiting_deadline(struct worker *w, struct conn *c);

/* ------------------------------------------------------------------ */
/* relay_pump.c                                                        */

enum { WR_OK = 0, WR_BLOCKED = 1, WR_FATAL = -1 };

void ctp_relay_buf_put(struct worker *w, uint8_t *b);
/* Frees the worker's cached buffers. */
void ctp_relay_buf_pool_free(struct worker *w);
/* Queues a status byte. The queue holds at most 3 (WAITING + final). */
void ctp_relay_status_push(struct conn *c, uint8_t st);
/* Writes everything owed to c; WR_OK, WR_BLOCKED or WR_FATAL. */
int ctp_relay_conn_flush(struct conn *c);
/* A paired conn that may be read now. */
int ctp_relay_can_read(const struct conn *c);
/* Ends a paired session: both connections close now. */
void ctp_relay_pair_close(struct conn *c, enum end_reason end);
/* Reads records from c and forwards them to its peer, within a budget. */
void ctp_relay_pump(struct conn *c);
/* c became writable (or its peer's record/close is owed to it). */
void ctp_relay_pump_writable(struct conn *c);
/* Writing to a paired c failed or its socket reported an error. */
void ctp_relay_pump_error(struct conn *c);

/* ------------------------------------------------------------------ */
/* relay_limits.c                                                      */

enum ip_verdict { IP_OK, IP_OVER_CONNS, IP_OVER_RATE, IP_FULL };

/* Allocates the address table (sized from r->o.max_conns); -1 if out of memory. */
int ctp_relay_ip_init(struct ct_relay *r);
void ctp_relay_ip_free(struct ct_relay *r);
void ctp_relay_addr_key(const struct sockaddr_storage *ss, uint8_t out[16]);
enum ip_verdict ctp_relay_ip_acquire(struct ct_relay *r, const uint8_t addr[16], int64_t now,
                                     int *status_ok);
void ctp_relay_ip_release(struct ct_relay *r, const uint8_t addr[16], int64_t now);
void ctp_relay_ip_sweep(struct ct_relay *r, int64_t now);

/* ------------------------------------------------------------------ */
/* relay_timer.c: per worker, on conn->deadline; 0 = no deadline       */

void ctp_relay_timer_clear(struct worker *w, struct conn *c);
/* Returns -1 if the heap could not grow (the caller closes the conn). */
int ctp_relay_timer_set(struct worker *w, struct conn *c, int64_t when);

#endif
