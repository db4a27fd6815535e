/*
 * relay.c - the beacon: a stateless TLS pairing relay (docs/PROTOCOL.md 1).
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
#include "internal.h"
#include "siphash.h"
#include "wolf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

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
#define MAX_THREADS 256
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
static const char *const end_names[] = {"close", "reset", "linger", "drain", "stop"};

struct cert_ref {
    WOLFSSL_CTX *ctx;
    atomic_uint refs;
};

struct worker;
struct room;

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

struct ip_entry {
    struct ip_entry *next;
    uint8_t addr[16];
    uint32_t conns;
    int64_t tokens;     /* milli-tokens: accept rate */
    int64_t ref_tokens; /* milli-tokens: status refusals */
    int64_t last_ms;
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
/* TLS configuration                                                   */

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct conn *c = ctx;
    (void)ssl;
    for (;;) {
        ssize_t n = recv(c->fd, buf, (size_t)sz, 0);
        if (n > 0)
            return (int)n;
        if (n == 0) {
            c->eof = 1;
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_WANT_READ;
        if (errno == ECONNRESET)
            return WOLFSSL_CBIO_ERR_CONN_RST;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct conn *c = ctx;
    (void)ssl;
    for (;;) {
        ssize_t n = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_WANT_WRITE;
        if (errno == ECONNRESET || errno == EPIPE)
            return WOLFSSL_CBIO_ERR_CONN_RST;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

static int looks_pem(const uint8_t *p, size_t n)
{
    static const char tag[] = "-----BEGIN";
    while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
        n--;
    }
    return n >= sizeof tag - 1 && memcmp(p, tag, sizeof tag - 1) == 0;
}

static void cert_unref(struct cert_ref *cr)
{
    if (cr && atomic_fetch_sub(&cr->refs, 1) == 1) {
        wolfSSL_CTX_free(cr->ctx);
        free(cr);
    }
}

/* In-memory transport for the self-test handshake below. */
struct mem_pipe {
    uint8_t buf[2][16384]; /* [0]: client -> server, [1]: server -> client */
    size_t len[2];
};
struct mem_end {
    struct mem_pipe *p;
    int side; /* 0 client, 1 server */
};

static int mem_send(WOLFSSL *ssl, char *b, int sz, void *ctx)
{
    struct mem_end *e = ctx;
    size_t room = sizeof e->p->buf[0] - e->p->len[e->side];
    (void)ssl;
    if (room == 0)
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    if ((size_t)sz > room)
        sz = (int)room;
    memcpy(e->p->buf[e->side] + e->p->len[e->side], b, (size_t)sz);
    e->p->len[e->side] += (size_t)sz;
    return sz;
}

static int mem_recv(WOLFSSL *ssl, char *b, int sz, void *ctx)
{
    struct mem_end *e = ctx;
    int from = 1 - e->side;
    size_t have = e->p->len[from];
    (void)ssl;
    if (have == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    if ((size_t)sz > have)
        sz = (int)have;
    memcpy(b, e->p->buf[from], (size_t)sz);
    memmove(e->p->buf[from], e->p->buf[from] + sz, have - (size_t)sz);
    e->p->len[from] -= (size_t)sz;
    return sz;
}

/*
 * Proves that the configuration can complete a handshake: one TLS 1.3
 * handshake in memory against a throwaway client. Needed because wolfSSL
 * 5.5.4's wolfSSL_CTX_check_private_key accepts a P-256 key that does not
 * belong to the certificate (tested), while every client would then fail
 * the CertificateVerify check. The client skips chain validation on
 * purpose: only the server's proof of possession is being tested.
 */
static int cert_selftest(WOLFSSL_CTX *srv_ctx)
{
    WOLFSSL_CTX *cctx = NULL;
    WOLFSSL *cli = NULL, *srv = NULL;
    struct mem_pipe *p = NULL;
    struct mem_end ce, se;
    int ok = 0, cdone = 0, sdone = 0;

    p = calloc(1, sizeof *p);
    cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    if (!p || !cctx)
        goto out;
    wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
    cli = wolfSSL_new(cctx);
    srv = wolfSSL_new(srv_ctx);
    if (!cli || !srv)
        goto out;
    ce.p = se.p = p;
    ce.side = 0;
    se.side = 1;
    wolfSSL_SSLSetIORecv(cli, mem_recv);
    wolfSSL_SSLSetIOSend(cli, mem_send);
    wolfSSL_SSLSetIORecv(srv, mem_recv);
    wolfSSL_SSLSetIOSend(srv, mem_send);
    wolfSSL_SetIOReadCtx(cli, &ce);
    wolfSSL_SetIOWriteCtx(cli, &ce);
    wolfSSL_SetIOReadCtx(srv, &se);
    wolfSSL_SetIOWriteCtx(srv, &se);
    for (int i = 0; i < 64 && !(cdone && sdone); i++) {
        int r, e;
        if (!cdone) {
            r = wolfSSL_connect(cli);
            e = wolfSSL_get_error(cli, r);
            if (r == WOLFSSL_SUCCESS)
                cdone = 1;
            else if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
                goto out;
        }
        if (!sdone) {
            r = wolfSSL_accept(srv);
            e = wolfSSL_get_error(srv, r);
            if (r == WOLFSSL_SUCCESS)
                sdone = 1;
            else if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
                goto out;
        }
    }
    ok = cdone && sdone;
out:
    if (cli)
        wolfSSL_free(cli);
    if (srv)
        wolfSSL_free(srv);
    if (cctx)
        wolfSSL_CTX_free(cctx);
    free(p);
    /* the handshake filled this thread's FP_ECC cache (MBs): don't leave it
     * in the application's thread */
    ct_thread_cleanup();
    return ok;
}

static ct_err cert_ref_new(const uint8_t *cert, size_t cert_len, const ct_secret *key,
                           struct cert_ref **out, ct_error *err)
{
    static int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
    struct cert_ref *cr = NULL;
    WOLFSSL_CTX *wctx = NULL;
    const uint8_t *kd;
    size_t kl;
    int rc;
    ct_err ret;

    *out = NULL;
    if (!cert || cert_len == 0 || cert_len > INT_MAX || !key)
        return ctp_err(err, CT_E_INVALID, 0, "relay: certificate and key are required");
    kd = ct_secret_data(key);
    kl = ct_secret_len(key);
    if (kl == 0 || kl > INT_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "relay: empty private key");
    wctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
    if (!wctx) {
        ret = ctp_err(err, CT_E_NOMEM, 0, "relay: wolfSSL_CTX_new failed");
        goto out;
    }
    /*
     * The beacon authenticates no peer, by design (PROTOCOL.md 1.1): it
     * holds no key or CA of any peer, and the peers authenticate each other
     * end to end in their own TLS session inside this one. VERIFY_NONE on
     * this server-side context only means "request no client certificate";
     * nothing this beacon does depends on who the client is.
     */
    wolfSSL_CTX_set_verify(wctx, WOLFSSL_VERIFY_NONE, NULL);
    /* ChaCha20 first: the stock wolfSSL has no AES-NI (about 2.5x faster). */
    if (wolfSSL_CTX_set_cipher_list(wctx, "TLS13-CHACHA20-POLY1305-SHA256:"
                                          "TLS13-AES128-GCM-SHA256:"
                                          "TLS13-AES256-GCM-SHA384") != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(wctx, groups, 2) != WOLFSSL_SUCCESS) {
        ret = ctp_err(err, CT_E_TLS, 0, "relay: cannot set cipher suites or groups");
        goto out;
    }
    /* No resumption: nothing to gain for a relay, and no ticket key to guard. */
    wolfSSL_CTX_no_ticket_TLSv13(wctx);
    wolfSSL_CTX_set_session_cache_mode(wctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_SetIORecv(wctx, io_recv);
    wolfSSL_CTX_SetIOSend(wctx, io_send);
    if (looks_pem(cert, cert_len))
        rc = wolfSSL_CTX_use_certificate_chain_buffer_format(wctx, cert, (long)cert_len,
                                                             WOLFSSL_FILETYPE_PEM);
    else
        rc = wolfSSL_CTX_use_certificate_buffer(wctx, cert, (long)cert_len,
                                                WOLFSSL_FILETYPE_ASN1);
    if (rc != WOLFSSL_SUCCESS) {
        ret = ctp_err(err, CT_E_CERT, rc, "relay: cannot load the certificate (%d)", rc);
        goto out;
    }
    rc = wolfSSL_CTX_use_PrivateKey_buffer(wctx, kd, (long)kl,
                                           looks_pem(kd, kl) ? WOLFSSL_FILETYPE_PEM
                                                             : WOLFSSL_FILETYPE_ASN1);
    if (rc != WOLFSSL_SUCCESS) {
        ret = ctp_err(err, CT_E_CERT, rc, "relay: cannot load the private key (%d)", rc);
        goto out;
    }
    if (wolfSSL_CTX_check_private_key(wctx) != WOLFSSL_SUCCESS || !cert_selftest(wctx)) {
        ret = ctp_err(err, CT_E_CERT, 0,
                      "relay: the private key does not match the certificate "
                      "(a test handshake failed)");
        goto out;
    }
    cr = calloc(1, sizeof *cr);
    if (!cr) {
        ret = ctp_err(err, CT_E_NOMEM, ENOMEM, "relay: out of memory");
        goto out;
    }
    cr->ctx = wctx;
    wctx = NULL;
    atomic_init(&cr->refs, 1);
    *out = cr;
    ret = CT_OK;
out:
    if (wctx)
        wolfSSL_CTX_free(wctx);
    return ret;
}

static struct cert_ref *cert_acquire(struct ct_relay *r)
{
    struct cert_ref *cr;
    pthread_mutex_lock(&r->cert_mu);
    cr = r->cert;
    atomic_fetch_add(&cr->refs, 1);
    pthread_mutex_unlock(&r->cert_mu);
    return cr;
}

/* ------------------------------------------------------------------ */
/* Per-address table                                                   */

enum ip_verdict { IP_OK, IP_OVER_CONNS, IP_OVER_RATE, IP_FULL };

static void addr_key(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        out[10] = 0xff; /* IPv4-mapped IPv6: ::ffff:a.b.c.d */
        out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        memcpy(out, &a->sin6_addr, 16); /* mapped form is already normalised */
    }
}

static size_t ip_bucket(const struct ct_relay *r, const uint8_t addr[16], size_t cap)
{
    return (size_t)(ctp_siphash24(r->k_ip, addr, 16) & (cap - 1));
}

static void ip_refill(const struct ct_relay *r, struct ip_entry *e, int64_t now)
{
    int64_t dt = now - e->last_ms;
    int64_t cap = (int64_t)r->o.accept_rate_per_ip * 2000;
    if (dt <= 0)
        return;
    e->tokens += dt * (int64_t)r->o.accept_rate_per_ip;
    if (e->tokens > cap)
        e->tokens = cap;
    e->ref_tokens += dt * REFUSAL_RATE;
    if (e->ref_tokens > REFUSAL_BURST * 1000)
        e->ref_tokens = REFUSAL_BURST * 1000;
    e->last_ms = now;
}

static int ip_idle(const struct ct_relay *r, const struct ip_entry *e)
{
    return e->conns == 0 && e->tokens >= (int64_t)r->o.accept_rate_per_ip * 2000 &&
           e->ref_tokens >= REFUSAL_BURST * 1000;
}

/* Caller holds ip_mu. Doubles the table; failure leaves it as it is. */
static void ip_grow(struct ct_relay *r)
{
    size_t ncap = r->ip_cap * 2;
    struct ip_entry **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return;
    for (size_t i = 0; i < r->ip_cap; i++) {
        struct ip_entry *e = r->ip_tab[i], *next;
        for (; e; e = next) {
            size_t b = ip_bucket(r, e->addr, ncap);
            next = e->next;
            e->next = nt[b];
            nt[b] = e;
        }
    }
    free(r->ip_tab);
    r->ip_tab = nt;
    r->ip_cap = ncap;
}

/*
 * Admits a connection from addr. IP_OK takes a connection slot and an
 * accept token. Otherwise *status_ok says whether this refusal may be told
 * with a status byte (the address's refusal budget allows a handshake).
 */
static enum ip_verdict ip_acquire(struct ct_relay *r, const uint8_t addr[16], int64_t now,
                                  int *status_ok)
{
    struct ip_entry *e;
    enum ip_verdict v;
    size_t b;

    *status_ok = 0;
    pthread_mutex_lock(&r->ip_mu);
    b = ip_bucket(r, addr, r->ip_cap);
    for (e = r->ip_tab[b]; e; e = e->next)
        if (memcmp(e->addr, addr, 16) == 0)
            break;
    if (!e) {
        if (r->ip_len >= r->ip_max || !(e = calloc(1, sizeof *e))) {
            v = IP_FULL;
            goto out;
        }
        memcpy(e->addr, addr, 16);
        e->tokens = (int64_t)r->o.accept_rate_per_ip * 2000;
        e->ref_tokens = REFUSAL_BURST * 1000;
        e->last_ms = now;
        e->next = r->ip_tab[b];
        r->ip_tab[b] = e;
        if (++r->ip_len > r->ip_cap)
            ip_grow(r);
    }
    ip_refill(r, e, now);
    if (e->conns >= r->o.max_conns_per_ip)
        v = IP_OVER_CONNS;
    else if (e->tokens < 1000)
        v = IP_OVER_RATE;
    else {
        e->tokens -= 1000;
        e->conns++;
        v = IP_OK;
        goto out;
    }
    if (e->ref_tokens >= 1000) {
        e->ref_tokens -= 1000;
        *status_ok = 1;
    }
out:
    pthread_mutex_unlock(&r->ip_mu);
    return v;
}

static void ip_release(struct ct_relay *r, const uint8_t addr[16], int64_t now)
{
    struct ip_entry **pp, *e;
    pthread_mutex_lock(&r->ip_mu);
    pp = &r->ip_tab[ip_bucket(r, addr, r->ip_cap)];
    for (; (e = *pp) != NULL; pp = &e->next) {
        if (memcmp(e->addr, addr, 16) != 0)
            continue;
        if (e->conns > 0)
            e->conns--;
        ip_refill(r, e, now);
        if (ip_idle(r, e)) {
            *pp = e->next;
            free(e);
            r->ip_len--;
        }
        break;
    }
    pthread_mutex_unlock(&r->ip_mu);
}

/* Drops entries that hold no connection and whose buckets are full again. */
static void ip_sweep(struct ct_relay *r, int64_t now)
{
    pthread_mutex_lock(&r->ip_mu);
    for (size_t i = 0; i < r->ip_cap && r->ip_len > 0; i++) {
        struct ip_entry **pp = &r->ip_tab[i], *e;
        while ((e = *pp) != NULL) {
            ip_refill(r, e, now);
            if (ip_idle(r, e)) {
                *pp = e->next;
                free(e);
                r->ip_len--;
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_mutex_unlock(&r->ip_mu);
}

/* ------------------------------------------------------------------ */
/* Timer heap (per worker, on conn->deadline; 0 = no deadline)         */

static void heap_swap(struct worker *w, size_t i, size_t j)
{
    struct conn *t = w->heap[i];
    w->heap[i] = w->heap[j];
    w->heap[j] = t;
    w->heap[i]->heap_idx = (int32_t)i;
    w->heap[j]->heap_idx = (int32_t)j;
}

static void heap_up(struct worker *w, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p]->deadline <= w->heap[i]->deadline)
            break;
        heap_swap(w, i, p);
        i = p;
    }
}

static void heap_down(struct worker *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < w->heap_len && w->heap[l]->deadline < w->heap[m]->deadline)
            m = l;
        if (l + 1 < w->heap_len && w->heap[l + 1]->deadline < w->heap[m]->deadline)
            m = l + 1;
        if (m == i)
            break;
        heap_swap(w, i, m);
        i = m;
    }
}

static void timer_clear(struct worker *w, struct conn *c)
{
    size_t i;
    if (c->heap_idx < 0)
        return;
    i = (size_t)c->heap_idx;
    c->heap_idx = -1;
    c->deadline = 0;
    w->heap_len--;
    if (i == w->heap_len)
        return;
    w->heap[i] = w->heap[w->heap_len];
    w->heap[i]->heap_idx = (int32_t)i;
    heap_up(w, i);
    heap_down(w, (size_t)w->heap[i]->heap_idx);
}

/* Returns -1 if the heap could not grow (the caller closes the conn). */
static int timer_set(struct worker *w, struct conn *c, int64_t when)
{
    if (c->heap_idx >= 0) {
        int64_t old = c->deadline;
        c->deadline = when;
        if (when < old)
            heap_up(w, (size_t)c->heap_idx);
        else
            heap_down(w, (size_t)c->heap_idx);
        return 0;
    }
    if (w->heap_len == w->heap_cap) {
        size_t ncap = w->heap_cap ? w->heap_cap * 2 : 256;
        struct conn **nh = realloc(w->heap, ncap * sizeof *nh);
        if (!nh)
            return -1;
        w->heap = nh;
        w->heap_cap = ncap;
    }
    c->deadline = when;
    c->heap_idx = (int32_t)w->heap_len;
    w->heap[w->heap_len++] = c;
    heap_up(w, (size_t)c->heap_idx);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Rooms (per worker)                                                  */

static struct room *room_find(struct worker *w, uint64_t h, const uint8_t id[32])
{
    struct room *rm;
    if (!w->rooms)
        return NULL;
    for (rm = w->rooms[h & (w->rooms_cap - 1)]; rm; rm = rm->next)
        if (rm->h == h && memcmp(rm->id, id, 32) == 0)
            return rm;
    return NULL;
}

static void rooms_grow(struct worker *w)
{
    size_t ncap = w->rooms_cap ? w->rooms_cap * 2 : 1024;
    struct room **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return; /* keep the old table: chains get longer, nothing breaks */
    for (size_t i = 0; i < w->rooms_cap; i++) {
        struct room *rm = w->rooms[i], *next;
        for (; rm; rm = next) {
            next = rm->next;
            rm->next = nt[rm->h & (ncap - 1)];
            nt[rm->h & (ncap - 1)] = rm;
        }
    }
    free(w->rooms);
    w->rooms = nt;
    w->rooms_cap = ncap;
}

static struct room *room_get(struct worker *w, uint64_t h, const uint8_t id[32])
{
    struct room *rm = room_find(w, h, id);
    size_t b;
    if (rm)
        return rm;
    if (w->rooms_len >= w->rooms_cap)
        rooms_grow(w);
    if (!w->rooms || !(rm = calloc(1, sizeof *rm)))
        return NULL;
    rm->h = h;
    memcpy(rm->id, id, 32);
    b = h & (w->rooms_cap - 1);
    rm->next = w->rooms[b];
    w->rooms[b] = rm;
    w->rooms_len++;
    STAT_INC(w->r, rooms);
    return rm;
}

static void room_release_if_empty(struct worker *w, struct room *rm)
{
    struct room **pp;
    if (rm->op || rm->br_head)
        return;
    for (pp = &w->rooms[rm->h & (w->rooms_cap - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == rm) {
            *pp = rm->next;
            break;
        }
    }
    w->rooms_len--;
    STAT_DEC(w->r, rooms);
    ct_secure_wipe(rm->id, sizeof rm->id);
    free(rm);
}

/* Takes a waiting conn out of its room (the room is freed when empty). */
static void room_leave(struct worker *w, struct conn *c)
{
    struct room *rm = c->room;
    if (!rm)
        return;
    if (rm->op == c) {
        rm->op = NULL;
    } else {
        if (c->wprev)
            c->wprev->wnext = c->wnext;
        else
            rm->br_head = c->wnext;
        if (c->wnext)
            c->wnext->wprev = c->wprev;
        else
            rm->br_tail = c->wprev;
        rm->nbr--;
    }
    c->wprev = c->wnext = NULL;
    c->room = NULL;
    STAT_DEC(w->r, waiting);
    room_release_if_empty(w, rm);
}

/* ------------------------------------------------------------------ */
/* Buffers, lists, epoll                                               */

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

static void buf_put(struct worker *w, uint8_t *b)
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

static void ready_add(struct worker *w, struct conn *c)
{
    if (c->in_ready)
        return;
    c->in_ready = 1;
    c->rnext = NULL;
    c->rprev = w->ready_tail;
    if (w->ready_tail)
        w->ready_tail->rnext = c;
    else
        w->ready_head = c;
    w->ready_tail = c;
    w->ready_len++;
}

static void ready_del(struct worker *w, struct conn *c)
{
    if (!c->in_ready)
        return;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        w->ready_head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    else
        w->ready_tail = c->rprev;
    c->rprev = c->rnext = NULL;
    c->in_ready = 0;
    w->ready_len--;
}

static void all_add(struct worker *w, struct conn *c)
{
    c->w = w;
    c->aprev = NULL;
    c->anext = w->all_head;
    if (w->all_head)
        w->all_head->aprev = c;
    w->all_head = c;
}

static void all_del(struct worker *w, struct conn *c)
{
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        w->all_head = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    c->aprev = c->anext = NULL;
}

static int can_read_relay(const struct conn *c)
{
    return c->state == ST_PAIRED && !c->rd_closed && c->rx_len == 0 && c->peer &&
           !c->peer->wdead;
}

/* The events this conn waits for now. */
static uint32_t conn_want(const struct conn *c)
{
    uint32_t want = 0;
    switch (c->state) {
    case ST_NEW:
        want = EPOLLIN;
        break;
    case ST_TLS:
        want = c->hs_want_write ? EPOLLOUT : EPOLLIN;
        break;
    case ST_HELLO:
    case ST_WAITING:
        want = EPOLLIN;
        break;
    case ST_PAIRED:
        if (can_read_relay(c))
            want |= EPOLLIN;
        break;
    case ST_CLOSING:
        if (c->discarding)
            want = EPOLLIN;
        break;
    default:
        break;
    }
    if (c->wblocked)
        want |= EPOLLOUT;
    return want;
}

/* Brings the epoll registration in line with conn_want. */
static void conn_arm(struct conn *c)
{
    struct worker *w = c->w;
    uint32_t want = conn_want(c);
    struct epoll_event ev;

    if (c->state == ST_DEAD || c->state == ST_TRANSIT)
        return;
    /*
     * EPOLLHUP cannot be masked: a conn that has seen it and waits for
     * nothing would be reported on every epoll_wait. Park it outside epoll
     * until it waits for something again.
     */
    if (want == 0 && c->hup_seen) {
        if (c->registered) {
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
            c->registered = 0;
        }
        return;
    }
    if (c->registered && want == c->ev_mask)
        return;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = c;
    if (c->registered) {
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    } else if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0) {
        c->registered = 1;
        c->hup_seen = 0;
    }
    c->ev_mask = want;
}

/* ------------------------------------------------------------------ */
/* Logging                                                             */

static const char *role_name(int role)
{
    return role == CT_ROLE_OPERATOR ? "operator" : role == CT_ROLE_BRIDGE ? "bridge" : "-";
}

/* Only the first 4 bytes (8 hex digits) of a room hash ever leave memory. */
static void room_prefix(const struct conn *c, char out[9])
{
    if (c->hello_len == CT_BEACON_HELLO_LEN && c->role)
        ct_hex(c->hello + 8, 4, out);
    else
        snprintf(out, 9, "-");
}

static void log_refusal(struct ct_relay *r, const struct conn *c, int status)
{
    char line[256], pfx[9];
    if (!r->o.session_log)
        return;
    room_prefix(c, pfx);
    snprintf(line, sizeof line,
             "{\"ts\":%lld,\"event\":\"refusal\",\"status\":\"%s\",\"role\":\"%s\","
             "\"room\":\"%s\"}",
             (long long)ct_ctx_wall_ms(r->ctx), ct_beacon_status_name(status),
             role_name(c->role), pfx);
    r->o.session_log(r->o.session_log_user, line);
}

static void log_session(struct ct_relay *r, const struct conn *a, const struct conn *b,
                        enum end_reason end, int64_t now)
{
    const struct conn *op = a->role == CT_ROLE_OPERATOR ? a : b;
    const struct conn *br = op == a ? b : a;
    char line[320], pfx[9];
    if (!r->o.session_log)
        return;
    room_prefix(op, pfx);
    snprintf(line, sizeof line,
             "{\"ts\":%lld,\"event\":\"session\",\"room\":\"%s\",\"duration_ms\":%lld,"
             "\"bytes_op_to_br\":%llu,\"bytes_br_to_op\":%llu,\"end\":\"%s\"}",
             (long long)ct_ctx_wall_ms(r->ctx), pfx, (long long)(now - op->t_paired),
             (unsigned long long)op->bytes_out, (unsigned long long)br->bytes_out,
             end_names[end]);
    r->o.session_log(r->o.session_log_user, line);
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

/* Closes one connection at once (no close_notify); freed after this wakeup. */
static void conn_close(struct conn *c)
{
    struct worker *w = c->w;
    struct ct_relay *r = w->r;

    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_WAITING)
        room_leave(w, c);
    c->state = ST_DEAD;
    timer_clear(w, c);
    ready_del(w, c);
    if (c->peer) {
        c->peer->peer = NULL;
        c->peer = NULL;
    }
    if (c->ssl) {
        wolfSSL_free(c->ssl);
        c->ssl = NULL;
    }
    cert_unref(c->cert);
    c->cert = NULL;
    buf_put(w, c->rx);
    c->rx = NULL;
    c->rx_len = 0;
    if (c->registered)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->ip_counted)
        ip_release(r, c->ip, w->now);
    ct_secure_wipe(c->hello, sizeof c->hello);
    STAT_DEC(r, conns_open);
    all_del(w, c);
    c->gnext = w->grave;
    w->grave = c;
}

/* Ends a paired session: both connections close now. */
static void pair_close(struct conn *c, enum end_reason end)
{
    struct worker *w = c->w;
    struct conn *p = c->peer;
    if (c->state == ST_DEAD)
        return;
    if (p) {
        log_session(w->r, c, p, end, w->now);
        STAT_DEC(w->r, paired_sessions);
        if (end == END_RESET)
            STAT_INC(w->r, aborts);
        conn_close(p);
    }
    conn_close(c);
}

/* ------------------------------------------------------------------ */
/* Writing to a connection                                             */

enum { WR_OK = 0, WR_BLOCKED = 1, WR_FATAL = -1 };

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
static void status_push(struct conn *c, uint8_t st)
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
static int conn_flush(struct conn *c)
{
    struct worker *w = c->w;
    struct conn *p = c->peer;
    int rc;

    c->wblocked = 0;
    if (c->state == ST_PAIRED && c->wdead) {
        /* c can take nothing more: what was owed to it is lost */
        if (p && p->rx_len > 0) {
            p->rx_len = 0;
            buf_put(w, p->rx);
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
            buf_put(w, p->rx);
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
/* Refusals                                                            */

static void count_refusal(struct ct_relay *r, int status)
{
    switch (status) {
    case CT_BEACON_BAD_HELLO:
        STAT_INC(r, hellos_bad);
        break;
    case CT_BEACON_BAD_VERSION:
        STAT_INC(r, refused_version);
        break;
    case CT_BEACON_ROOM_BUSY:
        STAT_INC(r, refused_room_busy);
        break;
    case CT_BEACON_RATE_LIMITED:
        break; /* counted at accept */
    case CT_BEACON_DRAINING:
        STAT_INC(r, refused_draining);
        break;
    case CT_BEACON_TIMEOUT:
        STAT_INC(r, timeouts);
        break;
    case CT_BEACON_OVERLOADED:
        STAT_INC(r, refused_overloaded);
        break;
    default:
        break;
    }
}

static void closing_step(struct conn *c);

/* Sends a refusal status, close_notify, and closes (PROTOCOL.md 1.3). */
static void refuse(struct conn *c, int status)
{
    struct worker *w = c->w;
    if (c->state == ST_WAITING)
        room_leave(w, c);
    count_refusal(w->r, status);
    log_refusal(w->r, c, status);
    c->state = ST_CLOSING;
    status_push(c, (uint8_t)status);
    ready_del(w, c);
    if (timer_set(w, c, w->now + CLOSING_MS) < 0) {
        conn_close(c);
        return;
    }
    closing_step(c);
}

static void closing_step(struct conn *c)
{
    int rc = conn_flush(c);
    if (rc == WR_FATAL) {
        conn_close(c);
        return;
    }
    if (rc == WR_OK && c->wr_done)
        c->discarding = 1;
    conn_arm(c);
}

/* CLOSING: drop what the peer still sends until it closes (bounded). */
static void closing_discard(struct conn *c)
{
    uint8_t sink[4096];
    for (int i = 0; i < 4; i++) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) {
            c->discarded += (uint32_t)n;
            if (c->discarded > DISCARD_MAX)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break; /* EOF or error */
    }
    if (c->discarded <= DISCARD_MAX && c->state == ST_CLOSING) {
        uint8_t probe;
        ssize_t n = recv(c->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0)
            return; /* read budget used up: level-triggered epoll calls again */
    }
    conn_close(c); /* EOF, error, or too much */
}

/* ------------------------------------------------------------------ */
/* Pairing                                                             */

static void enter_waiting(struct conn *c, struct room *rm)
{
    struct worker *w = c->w;
    struct ct_relay *r = w->r;
    c->state = ST_WAITING;
    c->room = rm;
    STAT_INC(r, waiting);
    c->t_wait_until = w->now + r->o.wait_timeout_ms;
    c->t_keepalive = w->now + r->o.keepalive_ms;
    if (timer_set(w, c, c->t_keepalive < c->t_wait_until ? c->t_keepalive : c->t_wait_until) < 0) {
        conn_close(c);
        return;
    }
    status_push(c, CT_BEACON_WAITING);
    if (conn_flush(c) == WR_FATAL) {
        conn_close(c);
        return;
    }
    conn_arm(c);
}

static void pair(struct conn *br, struct conn *op)
{
    struct worker *w = br->w;
    struct ct_relay *r = w->r;
    struct conn *both[2] = {br, op};

    for (int i = 0; i < 2; i++) {
        struct conn *c = both[i];
        if (c->state == ST_WAITING)
            room_leave(w, c);
        timer_clear(w, c);
        c->state = ST_PAIRED;
        c->t_paired = w->now;
        status_push(c, CT_BEACON_PAIRED);
    }
    br->peer = op;
    op->peer = br;
    STAT_INC(r, pairs);
    STAT_INC(r, paired_sessions);
    /* bridge side first: it waited longer (PROTOCOL.md 1.4) */
    if (conn_flush(br) == WR_FATAL || conn_flush(op) == WR_FATAL) {
        pair_close(br, END_RESET);
        return;
    }
    conn_arm(br);
    conn_arm(op);
    /* a waiting peer that broke the rules may have bytes buffered already */
    if (wolfSSL_pending(br->ssl) > 0)
        ready_add(w, br);
    if (wolfSSL_pending(op->ssl) > 0)
        ready_add(w, op);
}

/*
 * Before PAIRED goes out: has c sent anything since its hello? Level-
 * triggered epoll may not have told us yet (the bytes can be in the socket,
 * or the event later in this batch). Application data is a violation
 * (BAD_HELLO); end of stream means c left. Returns 1 if c was refused or
 * closed (it is out of its room), 0 if it may be paired.
 */
static int early_input(struct conn *c)
{
    uint8_t b;
    int n, e;
    if (wolfSSL_pending(c->ssl) == 0) {
        ssize_t k = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k < 0)
            return 0; /* nothing there (or an error the relay path will see) */
        if (k == 0) {
            conn_close(c);
            return 1;
        }
    }
    n = wolfSSL_read(c->ssl, &b, 1);
    if (n > 0) {
        refuse(c, CT_BEACON_BAD_HELLO);
        return 1;
    }
    e = wolfSSL_get_error(c->ssl, n);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
        return 0; /* a non-data record, or part of one */
    conn_close(c);
    return 1;
}

/* Runs on the worker that owns the room. */
static void join_room(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    struct room *rm;

    if (w->draining) {
        refuse(c, CT_BEACON_DRAINING);
        return;
    }
    if (early_input(c))
        return;
    /* at most 1 + max_waiting_per_room rounds: each one removes a partner */
    for (;;) {
        struct conn *partner;
        rm = room_get(w, c->room_h, c->hello + 8);
        if (!rm) {
            refuse(c, CT_BEACON_OVERLOADED);
            return;
        }
        partner = c->role == CT_ROLE_OPERATOR ? rm->br_head : rm->op;
        if (!partner || !early_input(partner))
            break;
        /* the partner broke the rules or left; the room may be gone: look again */
    }
    if (c->role == CT_ROLE_OPERATOR) {
        if (rm->br_head) {
            pair(rm->br_head, c); /* the oldest bridge-side peer */
        } else if (rm->op) {
            refuse(c, CT_BEACON_ROOM_BUSY);
        } else {
            rm->op = c;
            enter_waiting(c, rm);
        }
    } else {
        if (rm->op) {
            pair(c, rm->op);
        } else if (rm->nbr >= r->o.max_waiting_per_room) {
            refuse(c, CT_BEACON_ROOM_BUSY);
        } else {
            c->wprev = rm->br_tail;
            c->wnext = NULL;
            if (rm->br_tail)
                rm->br_tail->wnext = c;
            else
                rm->br_head = c;
            rm->br_tail = c;
            rm->nbr++;
            enter_waiting(c, rm);
        }
    }
    /* rm may be gone now: pairing empties and frees a room */
}

/* Moves a conn with a complete hello to the worker that owns its room. */
static void route(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    struct worker *to;
    uint64_t k = ctp_siphash24(r->k_route, c->hello + 8, 32);

    c->room_h = ctp_siphash24(r->k_room, c->hello + 8, 32);
    to = &r->w[k % (uint64_t)r->nworkers];
    if (to == w) {
        join_room(w, c);
        return;
    }
    timer_clear(w, c);
    ready_del(w, c);
    if (c->registered) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->registered = 0;
    }
    all_del(w, c);
    c->state = ST_TRANSIT;
    c->gnext = NULL;
    w->gone = c; /* from the unlock on, c belongs to `to`: never touch it again */
    pthread_mutex_lock(&to->inbox_mu);
    if (to->inbox_tail)
        to->inbox_tail->gnext = c;
    else
        to->inbox_head = c;
    to->inbox_tail = c;
    pthread_mutex_unlock(&to->inbox_mu);
    {
        uint64_t one = 1;
        ssize_t n = write(to->evfd, &one, sizeof one);
        (void)n; /* a full counter still wakes the owner */
    }
}

static void take_inbox(struct worker *w)
{
    struct conn *c, *next;
    uint64_t v;
    ssize_t n = read(w->evfd, &v, sizeof v);
    (void)n;
    pthread_mutex_lock(&w->inbox_mu);
    c = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    pthread_mutex_unlock(&w->inbox_mu);
    for (; c; c = next) {
        next = c->gnext;
        c->gnext = NULL;
        all_add(w, c);
        c->state = ST_HELLO; /* for join_room's refusals and arming */
        c->ev_mask = 0;
        join_room(w, c);
        if (c->state != ST_DEAD)
            conn_arm(c);
    }
}

/* ------------------------------------------------------------------ */
/* Handshake and hello                                                 */

static void do_hello(struct conn *c)
{
    ct_beacon_role role;
    ct_beacon_status st;
    uint8_t room[32];

    while (c->hello_len < CT_BEACON_HELLO_LEN) {
        int n = wolfSSL_read(c->ssl, c->hello + c->hello_len,
                             CT_BEACON_HELLO_LEN - c->hello_len);
        int e;
        if (n > 0) {
            c->hello_len = (uint8_t)(c->hello_len + n);
            continue;
        }
        e = wolfSSL_get_error(c->ssl, n);
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
            conn_arm(c);
            return;
        }
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            /* close_notify in the middle of a hello: it can still read */
            c->hello_len = 0;
            refuse(c, CT_BEACON_BAD_HELLO);
        } else {
            STAT_INC(c->w->r, hellos_bad); /* truncated hello, then gone */
            conn_close(c);
        }
        return;
    }
    /* bytes beyond the hello before PAIRED are a violation (PROTOCOL 1.2) */
    if (wolfSSL_pending(c->ssl) > 0) {
        refuse(c, CT_BEACON_BAD_HELLO);
        return;
    }
    if (ct_beacon_hello_decode(c->hello, CT_BEACON_HELLO_LEN, &role, room, &st) != CT_OK) {
        refuse(c, (int)st);
        return;
    }
    ct_secure_wipe(room, sizeof room); /* the room stays in c->hello only */
    c->role = (uint8_t)role;
    route(c->w, c);
}

static void do_handshake(struct conn *c)
{
    int n = wolfSSL_accept(c->ssl);
    int e;
    if (n == WOLFSSL_SUCCESS) {
        wolfSSL_FreeHandshakeResources(c->ssl);
        c->state = ST_HELLO;
        c->hs_want_write = 0;
        if (c->refuse_on_tls) {
            refuse(c, c->refuse_on_tls);
            return;
        }
        do_hello(c);
        return;
    }
    e = wolfSSL_get_error(c->ssl, n);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
        c->hs_want_write = e == WOLFSSL_ERROR_WANT_WRITE;
        conn_arm(c);
        return;
    }
    STAT_INC(c->w->r, handshakes_failed);
    conn_close(c);
}

static void start_tls(struct conn *c)
{
    struct ct_relay *r = c->w->r;
    c->cert = cert_acquire(r);
    c->ssl = wolfSSL_new(c->cert->ctx);
    if (!c->ssl) {
        STAT_INC(r, refused_overloaded);
        STAT_INC(r, closed_without_status);
        conn_close(c);
        return;
    }
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    c->state = ST_TLS;
    do_handshake(c);
}

/* ------------------------------------------------------------------ */
/* Relaying                                                            */

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

    log_session(w->r, dead, p, END_RESET, w->now);
    STAT_DEC(w->r, paired_sessions);
    STAT_INC(w->r, aborts);
    dead->peer = NULL;
    p->peer = NULL;
    conn_close(dead);
    buf_put(w, p->rx);
    p->rx = NULL;
    p->rx_len = 0;
    ready_del(w, p);
    p->state = ST_CLOSING;
    p->stq_len = 0;
    p->wblocked = 0;
    p->discarding = 1;
    if (timer_set(w, p, w->now + CLOSING_MS) < 0) {
        conn_close(p);
        return;
    }
    conn_arm(p);
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
        pair_close(c, c->lossy || p->lossy ? END_RESET : END_CLOSE);
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
static void relay_error(struct conn *c)
{
    struct conn *p = c->peer;
    if (c->state != ST_PAIRED || c->wdead)
        return;
    c->wdead = 1;
    c->hup_seen = 1; /* park it outside epoll whenever it waits for nothing */
    conn_flush(c);   /* drops what was owed to c */
    /* bounded: the survivor gets the linger time to take what c sent */
    if (c->heap_idx < 0 && timer_set(c->w, c, c->w->now + c->w->r->o.linger_ms) < 0) {
        pair_close(c, END_RESET);
        return;
    }
    if (can_read_relay(c))
        ready_add(c->w, c);
    if (pair_settle(c))
        return;
    conn_arm(c);
    if (p)
        conn_arm(p);
}

/* Reads records from c and forwards them to its peer, within a budget. */
static void pump(struct conn *c)
{
    struct worker *w = c->w;
    struct conn *p = c->peer;

    for (int i = 0; i < READ_BUDGET; i++) {
        int n, e;
        if (c->state != ST_PAIRED || !p || !can_read_relay(c))
            break;
        if (!c->rx && !(c->rx = buf_get(w))) {
            pair_close(c, END_RESET); /* out of memory: abort, never drop silently */
            return;
        }
        n = wolfSSL_read(c->ssl, c->rx, RELAY_BUF);
        if (n > 0) {
            c->rx_len = (uint32_t)n;
            if (conn_flush(p) == WR_FATAL) {
                relay_error(p);
                if (c->state != ST_PAIRED)
                    return;
            }
            continue;
        }
        e = wolfSSL_get_error(c->ssl, n);
        buf_put(w, c->rx);
        c->rx = NULL;
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
            break;
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            /* half-close: A->B ends, B->A keeps flowing (PROTOCOL 1.5) */
            c->rd_closed = 1;
            if (!p->rd_closed && timer_set(w, c, w->now + w->r->o.linger_ms) < 0) {
                pair_close(c, END_RESET);
                return;
            }
            if (conn_flush(p) == WR_FATAL) {
                relay_error(p);
                if (c->state != ST_PAIRED)
                    return;
            }
            break;
        }
        /* reset, TLS error, or FIN without close_notify while c's direction
         * was open: a truncation, the partner must see an abort */
        pair_close(c, END_RESET);
        return;
    }
    if (c->state != ST_PAIRED || pair_settle(c))
        return;
    if (can_read_relay(c) && wolfSSL_pending(c->ssl) > 0)
        ready_add(w, c);
    conn_arm(c);
    conn_arm(p);
}

/* c became writable (or its peer's record/close is owed to it). */
static void relay_writable(struct conn *c)
{
    struct conn *p = c->peer;
    int rc = conn_flush(c);
    if (rc == WR_FATAL) {
        relay_error(c);
        return;
    }
    if (!p || pair_settle(c))
        return;
    conn_arm(c);
    if (rc == WR_OK && can_read_relay(p))
        pump(p); /* the record is out: the peer may be read again */
    else
        conn_arm(p);
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

static void waiting_readable(struct conn *c)
{
    uint8_t b;
    int n = wolfSSL_read(c->ssl, &b, 1);
    int e;
    if (n > 0) {
        refuse(c, CT_BEACON_BAD_HELLO); /* data before PAIRED */
        return;
    }
    e = wolfSSL_get_error(c->ssl, n);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
        return;
    conn_close(c); /* a waiting peer that closes simply leaves the room */
}

static void conn_event(struct conn *c, uint32_t ev)
{
    struct worker *w = c->w;
    if (c->state == ST_DEAD || c->state == ST_TRANSIT)
        return;
    w->gone = NULL;
    if (ev & EPOLLERR) {
        if (c->state != ST_PAIRED) {
            conn_close(c);
            return;
        }
        relay_error(c); /* still reads what c sent before the error */
        if (c->state != ST_PAIRED)
            return;
    }
    if (ev & EPOLLHUP)
        c->hup_seen = 1;
    switch (c->state) {
    case ST_NEW:
        start_tls(c);
        break;
    case ST_TLS:
        do_handshake(c);
        break;
    case ST_HELLO:
        do_hello(c);
        break;
    case ST_WAITING:
        if (ev & EPOLLOUT) {
            if (conn_flush(c) == WR_FATAL) {
                conn_close(c);
                return;
            }
        }
        if (ev & (EPOLLIN | EPOLLHUP))
            waiting_readable(c);
        break;
    case ST_PAIRED:
        if (ev & EPOLLOUT) {
            relay_writable(c);
            if (c->state != ST_PAIRED)
                return;
        }
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
            pump(c);
        break;
    case ST_CLOSING:
        if (c->discarding)
            closing_discard(c);
        else
            closing_step(c);
        break;
    default:
        break;
    }
    if (w->gone == c)
        return; /* handed over to the room's worker, maybe already freed there */
    if (c->state != ST_DEAD)
        conn_arm(c);
}

static void timer_fire(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    switch (c->state) {
    case ST_NEW:
    case ST_TLS:
        STAT_INC(r, timeouts);
        conn_close(c);
        break;
    case ST_HELLO:
        refuse(c, CT_BEACON_TIMEOUT);
        break;
    case ST_WAITING:
        if (w->now >= c->t_wait_until) {
            refuse(c, CT_BEACON_TIMEOUT);
            break;
        }
        if (w->now >= c->t_keepalive) {
            if (c->stq_len == 0)
                status_push(c, CT_BEACON_WAITING);
            c->t_keepalive = w->now + r->o.keepalive_ms;
            if (conn_flush(c) == WR_FATAL) {
                conn_close(c);
                break;
            }
            conn_arm(c);
        }
        if (timer_set(w, c, c->t_keepalive < c->t_wait_until ? c->t_keepalive
                                                             : c->t_wait_until) < 0)
            conn_close(c);
        break;
    case ST_PAIRED:
        pair_close(c, END_LINGER);
        break;
    default:
        conn_close(c);
        break;
    }
}

static void accept_conns(struct worker *w)
{
    struct ct_relay *r = w->r;
    for (int i = 0; i < ACCEPT_BUDGET && w->listening; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        struct conn *c;
        uint8_t ip[16];
        int fd, status_ok = 0, one = 1;
        enum ip_verdict v;
        unsigned open_now;

        fd = accept4(w->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: pause accepting for a while,
             * level-triggered epoll would spin on the pending connection */
            STAT_INC(r, accept_errors);
            ctp_log(r->ctx, CT_LOG_WARNING, "relay.accept", "accept failed: %s; pausing",
                    strerror(errno));
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->lfd, NULL);
            w->accept_resume = w->now + ACCEPT_PAUSE_MS;
            return;
        }
        STAT_INC(r, accepted);
        /* global cap: close before any TLS work (see relay.h) */
        open_now = atomic_fetch_add(&r->st.conns_open, 1);
        if (open_now >= r->o.max_conns) {
            STAT_DEC(r, conns_open);
            STAT_INC(r, refused_overloaded);
            STAT_INC(r, closed_without_status);
            close(fd);
            continue;
        }
        addr_key(&ss, ip);
        v = ip_acquire(r, ip, w->now, &status_ok);
        if (v != IP_OK) {
            if (v == IP_OVER_CONNS)
                STAT_INC(r, refused_ip_conns);
            else if (v == IP_OVER_RATE)
                STAT_INC(r, refused_ip_rate);
            if (v != IP_FULL)
                STAT_INC(r, refused_rate_limited);
            if (v == IP_FULL || !status_ok) {
                STAT_INC(r, closed_without_status);
                STAT_DEC(r, conns_open);
                close(fd);
                continue;
            }
        }
        c = calloc(1, sizeof *c);
        if (!c) {
            if (v == IP_OK)
                ip_release(r, ip, w->now);
            STAT_DEC(r, conns_open);
            STAT_INC(r, closed_without_status);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->tag.kind = EV_CONN;
        c->fd = fd;
        c->heap_idx = -1;
        c->state = ST_NEW;
        memcpy(c->ip, ip, 16);
        c->ip_counted = v == IP_OK;
        c->refuse_on_tls = v == IP_OK ? 0 : CT_BEACON_RATE_LIMITED;
        all_add(w, c);
        if (timer_set(w, c, w->now + r->o.hello_timeout_ms) < 0) {
            conn_close(c);
            continue;
        }
        conn_arm(c);
        if (!c->registered)
            conn_close(c);
    }
}

static void listener_close(struct worker *w)
{
    if (!w->listening)
        return;
    if (!w->accept_resume)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->lfd, NULL);
    close(w->lfd);
    w->lfd = -1;
    w->listening = 0;
    w->accept_resume = 0;
}

static void start_drain(struct worker *w)
{
    struct conn *c, *next;
    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline = w->now + w->r->o.drain_timeout_ms;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->r->drain_efd, NULL);
    listener_close(w);
    for (c = w->all_head; c; c = next) {
        next = c->anext;
        if (c->state == ST_WAITING)
            refuse(c, CT_BEACON_DRAINING);
    }
}

/* Closes every connection of this worker (stop, or the drain deadline). */
static void close_all(struct worker *w, enum end_reason end)
{
    while (w->all_head) {
        struct conn *c = w->all_head;
        if (c->state == ST_PAIRED)
            pair_close(c, end);
        else
            conn_close(c);
    }
}

static void bury(struct worker *w)
{
    while (w->grave) {
        struct conn *c = w->grave;
        w->grave = c->gnext;
        free(c);
    }
}

static int next_timeout(struct worker *w)
{
    int64_t next = INT64_MAX;
    if (w->ready_head)
        return 0;
    if (w->heap_len)
        next = w->heap[0]->deadline;
    if (w->draining && w->drain_deadline < next)
        next = w->drain_deadline;
    if (w->accept_resume && w->accept_resume < next)
        next = w->accept_resume;
    if (w->idx == 0 && w->next_sweep < next)
        next = w->next_sweep;
    if (w->draining && w->now + DRAIN_POLL_MS < next)
        next = w->now + DRAIN_POLL_MS;
    if (next == INT64_MAX)
        return -1;
    if (next <= w->now)
        return 0;
    if (next - w->now > INT_MAX)
        return INT_MAX;
    return (int)(next - w->now);
}

static void worker_loop(struct worker *w)
{
    struct ct_relay *r = w->r;
    struct epoll_event evs[EVENT_BATCH];

    w->now = ctp_mono_ms();
    w->next_sweep = w->now + IP_SWEEP_MS;
    while (!w->stopping) {
        int n = epoll_wait(w->epfd, evs, EVENT_BATCH, next_timeout(w));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ctp_log(r->ctx, CT_LOG_ERROR, "relay.epoll", "epoll_wait failed: %s",
                    strerror(errno));
            break;
        }
        w->now = ctp_mono_ms();
        for (int i = 0; i < n; i++) {
            struct ev_tag *t = evs[i].data.ptr;
            switch (t->kind) {
            case EV_CONN:
                conn_event((struct conn *)t, evs[i].events);
                break;
            case EV_LISTEN:
                accept_conns(w);
                break;
            case EV_INBOX:
                take_inbox(w);
                break;
            case EV_DRAIN:
                start_drain(w);
                break;
            case EV_STOP:
                w->stopping = 1;
                break;
            default:
                break;
            }
        }
        if (w->stopping)
            break;
        /* connections whose wolfSSL object holds decrypted bytes */
        /* FIFO: conns re-added while this pass runs wait for the next one */
        for (size_t k = w->ready_len; k > 0 && w->ready_head; k--) {
            struct conn *c = w->ready_head;
            ready_del(w, c);
            if (c->state == ST_PAIRED)
                pump(c);
            else if (c->state == ST_HELLO)
                do_hello(c);
            else if (c->state == ST_WAITING)
                waiting_readable(c);
        }
        /* deadlines */
        while (w->heap_len && w->heap[0]->deadline <= w->now) {
            struct conn *c = w->heap[0];
            timer_clear(w, c);
            timer_fire(w, c);
        }
        if (w->accept_resume && w->accept_resume <= w->now && w->listening) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->t_listen};
            w->accept_resume = 0;
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev);
        }
        if (w->idx == 0 && w->next_sweep <= w->now) {
            ip_sweep(r, w->now);
            w->next_sweep = w->now + IP_SWEEP_MS;
        }
        if (w->draining && w->drain_deadline <= w->now)
            close_all(w, END_DRAIN);
        bury(w);
        if (w->draining && atomic_load(&r->st.conns_open) == 0)
            break;
    }
    close_all(w, w->draining && !w->stopping ? END_DRAIN : END_STOP);
    bury(w);
    listener_close(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    worker_loop(w);
    /* wolfSSL's FP_ECC cache is per thread (up to ~12 MB): free it here */
    ct_thread_cleanup();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

static int bind_listener(const struct sockaddr *sa, socklen_t sl, int reuseport, int *fd_out)
{
    int fd, one = 1, zero = 0, e;
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, sa, sl) < 0)
        goto fail;
    if (reuseport && listen(fd, SOMAXCONN) < 0)
        goto fail;
    *fd_out = fd;
    return 0;
fail:
    e = errno;
    close(fd);
    return e;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static ct_err resolve_listen(const char *host, uint16_t port, struct sockaddr_storage *ss,
                             socklen_t *sl, ct_error *err)
{
    struct addrinfo hints, *res = NULL;
    int rc;
    memset(ss, 0, sizeof *ss);
    if (!host) {
        int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
            close(probe);
            a->sin6_family = AF_INET6;
            a->sin6_addr = in6addr_any;
            a->sin6_port = htons(port);
            *sl = sizeof *a;
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)ss;
            a->sin_family = AF_INET;
            a->sin_addr.s_addr = htonl(INADDR_ANY);
            a->sin_port = htons(port);
            *sl = sizeof *a;
        }
        return CT_OK;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res)
        return ctp_err(err, CT_E_RESOLVE, rc, "relay: cannot resolve listen address: %s",
                       gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    set_port(ss, port);
    freeaddrinfo(res);
    return CT_OK;
}

static int epoll_add_tag(int epfd, int fd, struct ev_tag *t)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = t;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static ct_err worker_init(struct ct_relay *r, struct worker *w, int idx,
                          const struct sockaddr_storage *ss, socklen_t sl, ct_error *err)
{
    int e;
    w->r = r;
    w->idx = idx;
    w->epfd = w->lfd = w->evfd = -1;
    w->t_listen.kind = EV_LISTEN;
    w->t_inbox.kind = EV_INBOX;
    w->t_drain.kind = EV_DRAIN;
    w->t_stop.kind = EV_STOP;
    if (pthread_mutex_init(&w->inbox_mu, NULL) != 0)
        return ctp_err(err, CT_E_NOMEM, 0, "relay: mutex");
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->evfd < 0)
        return ctp_err(err, ctp_errno_to_err(errno), errno, "relay: epoll/eventfd: %s",
                       strerror(errno));
    e = bind_listener((const struct sockaddr *)ss, sl, 1, &w->lfd);
    if (e != 0)
        return ctp_err(err, e == EADDRINUSE ? CT_E_ADDRINUSE : ctp_errno_to_err(e), e,
                       "relay: cannot listen: %s", strerror(e));
    w->listening = 1;
    if (epoll_add_tag(w->epfd, w->lfd, &w->t_listen) < 0 ||
        epoll_add_tag(w->epfd, w->evfd, &w->t_inbox) < 0 ||
        epoll_add_tag(w->epfd, r->drain_efd, &w->t_drain) < 0 ||
        epoll_add_tag(w->epfd, r->stop_efd, &w->t_stop) < 0)
        return ctp_err(err, CT_E_IO, errno, "relay: epoll_ctl: %s", strerror(errno));
    return CT_OK;
}

static ct_err check_opts(const ct_relay_options *o, ct_error *err)
{
    if (o->version != CT_RELAY_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_relay_options version %u is not supported",
                       (unsigned)o->version);
    if (o->threads < 0 || o->threads > MAX_THREADS || o->hello_timeout_ms < 0 ||
        o->wait_timeout_ms < 0 || o->keepalive_ms < 0 || o->linger_ms < 0 ||
        o->drain_timeout_ms < 0)
        return ctp_err(err, CT_E_INVALID, 0, "relay: negative or too large option value");
    if (o->accept_rate_per_ip > 1000000000u)
        return ctp_err(err, CT_E_INVALID, 0, "relay: accept_rate_per_ip too large");
    return CT_OK;
}

ct_err ct_relay_new(ct_ctx *ctx, const ct_relay_options *opts, ct_relay **out, ct_error *err)
{
    struct ct_relay *r = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    uint8_t keys[3 * CTP_SIPHASH_KEY_LEN];
    ct_err rc;
    int n, e;
    long cpus;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_relay_new: out is NULL");
    *out = NULL;
    if (!ctx || !opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_relay_new: ctx and options are required");
    if ((rc = check_opts(opts, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    r = calloc(1, sizeof *r);
    if (!r)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "relay: out of memory");
    r->ctx = ctx;
    r->drain_efd = r->stop_efd = -1;
    pthread_mutex_init(&r->cert_mu, NULL);
    pthread_mutex_init(&r->ip_mu, NULL);
    r->o = *opts;
    r->o.listen_host = NULL; /* borrowed: used here only */
    r->o.cert = NULL;
    r->o.key = NULL;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = opts->threads > 0 ? opts->threads : (cpus > 0 ? (int)cpus : 1);
    if (n > MAX_THREADS)
        n = MAX_THREADS;
#define DEF_(f, v)   \
    if (r->o.f == 0) \
        r->o.f = (v);
    DEF_(hello_timeout_ms, 10000)
    DEF_(wait_timeout_ms, 900000)
    DEF_(keepalive_ms, 20000)
    DEF_(linger_ms, 10000)
    DEF_(drain_timeout_ms, 30000)
    DEF_(max_conns, 100000)
    DEF_(max_conns_per_ip, 64)
    DEF_(accept_rate_per_ip, 20)
    DEF_(max_waiting_per_room, 8)
#undef DEF_
    r->ip_max = (size_t)r->o.max_conns + IP_TABLE_SLACK;
    r->ip_cap = 1024;
    r->ip_tab = calloc(r->ip_cap, sizeof *r->ip_tab);
    if (!r->ip_tab) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "relay: out of memory");
        goto out;
    }
    if (ct_ctx_random(ctx, keys, sizeof keys) != CT_OK) {
        rc = ctp_err(err, CT_E_CRYPTO, 0, "relay: random number generator failed");
        goto out;
    }
    memcpy(r->k_route, keys, CTP_SIPHASH_KEY_LEN);
    memcpy(r->k_room, keys + CTP_SIPHASH_KEY_LEN, CTP_SIPHASH_KEY_LEN);
    memcpy(r->k_ip, keys + 2 * CTP_SIPHASH_KEY_LEN, CTP_SIPHASH_KEY_LEN);
    ct_secure_wipe(keys, sizeof keys);
    if ((rc = cert_ref_new(opts->cert, opts->cert_len, opts->key, &r->cert, err)) != CT_OK)
        goto out;
    r->drain_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->stop_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->drain_efd < 0 || r->stop_efd < 0) {
        rc = ctp_err(err, ctp_errno_to_err(errno), errno, "relay: eventfd: %s",
                     strerror(errno));
        goto out;
    }
    if ((rc = resolve_listen(opts->listen_host, opts->listen_port, &ss, &sl, err)) != CT_OK)
        goto out;
    if (opts->listen_port != 0) {
        /* A plain bind (no SO_REUSEPORT) conflicts with any listener on the
         * port, even one that would let us join its reuseport group. */
        int probe = -1;
        e = bind_listener((const struct sockaddr *)&ss, sl, 0, &probe);
        if (e != 0) {
            rc = ctp_err(err, e == EADDRINUSE ? CT_E_ADDRINUSE : ctp_errno_to_err(e), e,
                         "relay: cannot bind port %u: %s", (unsigned)opts->listen_port,
                         strerror(e));
            goto out;
        }
        close(probe);
    }
    r->w = calloc((size_t)n, sizeof *r->w);
    if (!r->w) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "relay: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        r->nworkers = i + 1;
        if ((rc = worker_init(r, &r->w[i], i, &ss, sl, err)) != CT_OK)
            goto out;
        if (i == 0) {
            struct sockaddr_storage got;
            socklen_t gl = sizeof got;
            if (getsockname(r->w[0].lfd, (struct sockaddr *)&got, &gl) < 0) {
                rc = ctp_err(err, CT_E_IO, errno, "relay: getsockname: %s", strerror(errno));
                goto out;
            }
            r->port = ntohs(got.ss_family == AF_INET
                                ? ((struct sockaddr_in *)&got)->sin_port
                                : ((struct sockaddr_in6 *)&got)->sin6_port);
            set_port(&ss, r->port);
        }
    }
    atomic_init(&r->serve_state, 0);
    *out = r;
    r = NULL;
    rc = CT_OK;
out:
    ct_relay_free(r);
    return rc;
}

uint16_t ct_relay_port(const ct_relay *r)
{
    return r ? r->port : 0;
}

static void free_inbox(struct worker *w)
{
    struct conn *c = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    while (c) {
        struct conn *next = c->gnext;
        all_add(w, c);
        c->state = ST_HELLO;
        conn_close(c);
        c = next;
    }
    bury(w);
}

ct_err ct_relay_serve(ct_relay *r, ct_error *err)
{
    sigset_t all, old;
    int expect = 0, started = 0;
    ct_err rc = CT_OK;

    if (!r)
        return ctp_err(err, CT_E_INVALID, 0, "ct_relay_serve: relay is NULL");
    if (!atomic_compare_exchange_strong(&r->serve_state, &expect, 1))
        return ctp_err(err, CT_E_STATE, 0, "ct_relay_serve: already served");
    /* new threads inherit a full signal mask: signals go to the app's threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 1; i < r->nworkers; i++) {
        int e = pthread_create(&r->w[i].tid, NULL, worker_main, &r->w[i]);
        if (e != 0) {
            rc = ctp_err(err, e == EAGAIN ? CT_E_NOMEM : CT_E_IO, e,
                         "relay: cannot start worker thread: %s", strerror(e));
            break;
        }
        r->w[i].started = 1;
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != CT_OK) {
        ct_relay_stop(r);
    } else {
        worker_loop(&r->w[0]);
        ct_thread_cleanup();
        /* worker 0 returns on stop or when the drain is complete; make sure
         * every other worker leaves too (a drain ends for all at once) */
        ct_relay_stop(r);
    }
    for (int i = 1; i < r->nworkers; i++) {
        if (r->w[i].started) {
            pthread_join(r->w[i].tid, NULL);
            r->w[i].started = 0;
        }
    }
    (void)started;
    /* connections handed over to a worker that had already left */
    for (int i = 0; i < r->nworkers; i++)
        free_inbox(&r->w[i]);
    atomic_store(&r->serve_state, 2);
    return rc;
}

void ct_relay_drain(ct_relay *r)
{
    uint64_t one = 1;
    if (r && r->drain_efd >= 0) {
        ssize_t n = write(r->drain_efd, &one, sizeof one);
        (void)n;
    }
}

void ct_relay_stop(ct_relay *r)
{
    uint64_t one = 1;
    if (r && r->stop_efd >= 0) {
        ssize_t n = write(r->stop_efd, &one, sizeof one);
        (void)n;
    }
}

ct_err ct_relay_reload_cert(ct_relay *r, const uint8_t *cert, size_t cert_len,
                            const ct_secret *key, ct_error *err)
{
    struct cert_ref *cr = NULL, *old;
    ct_err rc;
    if (!r)
        return ctp_err(err, CT_E_INVALID, 0, "ct_relay_reload_cert: relay is NULL");
    if ((rc = cert_ref_new(cert, cert_len, key, &cr, err)) != CT_OK)
        return rc;
    pthread_mutex_lock(&r->cert_mu);
    old = r->cert;
    r->cert = cr;
    pthread_mutex_unlock(&r->cert_mu);
    cert_unref(old); /* freed when its last session ends */
    return CT_OK;
}

void ct_relay_get_stats(const ct_relay *r, ct_relay_stats *out)
{
    ct_relay *m = (ct_relay *)r; /* atomics are read through non-const */
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!r)
        return;
#define LD_(f) out->f = atomic_load_explicit(&m->st.f, memory_order_relaxed);
    LD_(accepted)
    LD_(handshakes_failed)
    LD_(hellos_bad)
    LD_(refused_room_busy)
    LD_(refused_rate_limited)
    LD_(refused_overloaded)
    LD_(refused_draining)
    LD_(timeouts)
    LD_(pairs)
    LD_(bytes_relayed)
    LD_(conns_open)
    LD_(waiting)
    LD_(paired_sessions)
    LD_(rooms)
    LD_(refused_version)
    LD_(refused_ip_conns)
    LD_(refused_ip_rate)
    LD_(closed_without_status)
    LD_(aborts)
    LD_(half_closes)
    LD_(accept_errors)
#undef LD_
}

void ct_relay_free(ct_relay *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->w[i];
        free_inbox(w);
        close_all(w, END_STOP);
        bury(w);
        if (w->lfd >= 0)
            close(w->lfd);
        if (w->epfd >= 0)
            close(w->epfd);
        if (w->evfd >= 0)
            close(w->evfd);
        while (w->free_bufs) {
            void *b = w->free_bufs;
            memcpy(&w->free_bufs, b, sizeof(void *));
            free(b);
        }
        free(w->heap);
        free(w->rooms);
        pthread_mutex_destroy(&w->inbox_mu);
    }
    free(r->w);
    if (r->ip_tab) {
        for (size_t i = 0; i < r->ip_cap; i++) {
            struct ip_entry *e = r->ip_tab[i], *next;
            for (; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(r->ip_tab);
    }
    cert_unref(r->cert);
    if (r->drain_efd >= 0)
        close(r->drain_efd);
    if (r->stop_efd >= 0)
        close(r->stop_efd);
    pthread_mutex_destroy(&r->cert_mu);
    pthread_mutex_destroy(&r->ip_mu);
    ct_secure_wipe(r, sizeof *r);
    free(r);
}
