/*
 * relay_worker.c - one beacon worker: an epoll loop with its own
 * SO_REUSEPORT listener. It accepts (global and per-address limits first,
 * see relay.h), hands connections whose hello names a room another worker
 * owns over through that worker's inbox and eventfd, runs the ready list
 * (connections whose wolfSSL object holds decrypted bytes that
 * level-triggered epoll cannot see), fires deadlines, sweeps the address
 * table (worker 0), and drains or stops.
 */
#include "relay_internal.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Lists: the ready list, all connections                             */

void ctp_relay_ready_add(struct worker *w, struct conn *c)
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

void ctp_relay_ready_del(struct worker *w, struct conn *c)
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

void ctp_relay_all_del(struct worker *w, struct conn *c)
{
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        w->all_head = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    c->aprev = c->anext = NULL;
}

/* ------------------------------------------------------------------ */
/* Hand-off between workers                                            */

void ctp_relay_efd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n; /* a full counter still wakes the owner */
}

/* Moves a conn with a complete hello to the worker that owns its room. */
void ctp_relay_route(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    struct worker *to;
    uint64_t k = ctp_siphash24(r->k_route, c->hello + 8, 32);

    c->room_h = ctp_siphash24(r->k_room, c->hello + 8, 32);
    to = &r->w[k % (uint64_t)r->nworkers];
    if (to == w) {
        ctp_relay_join_room(w, c);
        return;
    }
    ctp_relay_timer_clear(w, c);
    ctp_relay_ready_del(w, c);
    ctp_relay_conn_unregister(c);
    ctp_relay_all_del(w, c);
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
    ctp_relay_efd_signal(to->evfd);
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
        ctp_relay_join_room(w, c);
        if (c->state != ST_DEAD)
            ctp_relay_conn_arm(c);
    }
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

static int epoll_add_tag(int epfd, int fd, struct ev_tag *t)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = t;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* An accepted connection refused before any TLS: closed at once. */
static void accept_drop(struct ct_relay *r, int fd)
{
    STAT_DEC(r, conns_open);
    STAT_INC(r, closed_without_status);
    close(fd);
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
            STAT_INC(r, refused_overloaded);
            accept_drop(r, fd);
            continue;
        }
        ctp_relay_addr_key(&ss, ip);
        v = ctp_relay_ip_acquire(r, ip, w->now, &status_ok);
        if (v != IP_OK) {
            if (v == IP_OVER_CONNS)
                STAT_INC(r, refused_ip_conns);
            else if (v == IP_OVER_RATE)
                STAT_INC(r, refused_ip_rate);
            if (v != IP_FULL)
                STAT_INC(r, refused_rate_limited);
            if (v == IP_FULL || !status_ok) {
                accept_drop(r, fd);
                continue;
            }
        }
        c = calloc(1, sizeof *c);
        if (!c) {
            if (v == IP_OK)
                ctp_relay_ip_release(r, ip, w->now);
            accept_drop(r, fd);
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
        if (ctp_relay_timer_set(w, c, w->now + r->o.hello_timeout_ms) < 0) {
            ctp_relay_conn_close(c);
            continue;
        }
        ctp_relay_conn_arm(c);
        if (!c->registered)
            ctp_relay_conn_close(c);
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
            ctp_relay_refuse(c, CT_BEACON_DRAINING);
    }
}

/* Closes every connection of this worker (stop, or the drain deadline). */
static void close_all(struct worker *w, enum end_reason end)
{
    while (w->all_head) {
        struct conn *c = w->all_head;
        if (c->state == ST_PAIRED)
            ctp_relay_pair_close(c, end);
        else
            ctp_relay_conn_close(c);
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

void ctp_relay_worker_loop(struct worker *w)
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
                ctp_relay_conn_event((struct conn *)t, evs[i].events);
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
            ctp_relay_ready_del(w, c);
            if (c->state == ST_PAIRED)
                ctp_relay_pump(c);
            else if (c->state == ST_HELLO)
                ctp_relay_do_hello(c);
            else if (c->state == ST_WAITING)
                ctp_relay_waiting_readable(c);
        }
        /* deadlines */
        while (w->heap_len && w->heap[0]->deadline <= w->now) {
            struct conn *c = w->heap[0];
            ctp_relay_timer_clear(w, c);
            ctp_relay_conn_deadline(w, c);
        }
        if (w->accept_resume && w->accept_resume <= w->now && w->listening) {
            w->accept_resume = 0;
            epoll_add_tag(w->epfd, w->lfd, &w->t_listen);
        }
        if (w->idx == 0 && w->next_sweep <= w->now) {
            ctp_relay_ip_sweep(r, w->now);
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

void *ctp_relay_worker_main(void *arg)
{
    struct worker *w = arg;
    ctp_relay_worker_loop(w);
    /* wolfSSL's FP_ECC cache is per thread (up to ~12 MB): free it here */
    ct_thread_cleanup();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Setup and teardown                                                  */

int ctp_relay_bind_listener(const struct sockaddr *sa, socklen_t sl, int reuseport,
                            int *fd_out)
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

ct_err ctp_relay_worker_init(struct ct_relay *r, struct worker *w, int idx,
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
    e = ctp_relay_bind_listener((const struct sockaddr *)ss, sl, 1, &w->lfd);
    if (e != 0)
        return ctp_err(err, ctp_errno_to_err(e), e, "relay: cannot listen: %s", strerror(e));
    w->listening = 1;
    if (epoll_add_tag(w->epfd, w->lfd, &w->t_listen) < 0 ||
        epoll_add_tag(w->epfd, w->evfd, &w->t_inbox) < 0 ||
        epoll_add_tag(w->epfd, r->drain_efd, &w->t_drain) < 0 ||
        epoll_add_tag(w->epfd, r->stop_efd, &w->t_stop) < 0)
        return ctp_err(err, CT_E_IO, errno, "relay: epoll_ctl: %s", strerror(errno));
    return CT_OK;
}

void ctp_relay_worker_free_inbox(struct worker *w)
{
    struct conn *c = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    while (c) {
        struct conn *next = c->gnext;
        all_add(w, c);
        c->state = ST_HELLO;
        ctp_relay_conn_close(c);
        c = next;
    }
    bury(w);
}

void ctp_relay_worker_free(struct worker *w)
{
    ctp_relay_worker_free_inbox(w);
    close_all(w, END_STOP);
    bury(w);
    if (w->lfd >= 0)
        close(w->lfd);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->evfd >= 0)
        close(w->evfd);
    ctp_relay_buf_pool_free(w);
    free(w->heap);
    free(w->rooms);
    pthread_mutex_destroy(&w->inbox_mu);
}
