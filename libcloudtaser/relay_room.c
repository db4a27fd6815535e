/*
 * relay_room.c - the beacon's rooms and pairing rules (PROTOCOL.md 1.4).
 * Each worker owns the rooms whose keyed hash routes to it, in a chained
 * hash table; a room holds at most one waiting operator-side peer and a
 * FIFO pool of up to max_waiting_per_room bridge-side peers. Waiting peers
 * get a WAITING keepalive every keepalive_ms until they are paired or their
 * wait times out.
 */
#include "relay_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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
void ctp_relay_room_leave(struct worker *w, struct conn *c)
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
/* Pairing                                                             */

/* A waiting conn's next deadline: the keepalive or the end of its wait. */
static int waiting_timer_set(struct worker *w, struct conn *c)
{
    return ctp_relay_timer_set(w, c, c->t_keepalive < c->t_wait_until ? c->t_keepalive
                                                                      : c->t_wait_until);
}

/* Writes a waiting conn's status bytes. Returns -1 if c was closed. */
static int waiting_flush(struct conn *c)
{
    if (ctp_relay_conn_flush(c) == WR_FATAL) {
        ctp_relay_conn_close(c);
        return -1;
    }
    ctp_relay_conn_arm(c);
    return 0;
}

static void enter_waiting(struct conn *c, struct room *rm)
{
    struct worker *w = c->w;
    struct ct_relay *r = w->r;
    c->state = ST_WAITING;
    c->room = rm;
    STAT_INC(r, waiting);
    c->t_wait_until = w->now + r->o.wait_timeout_ms;
    c->t_keepalive = w->now + r->o.keepalive_ms;
    if (waiting_timer_set(w, c) < 0) {
        ctp_relay_conn_close(c);
        return;
    }
    ctp_relay_status_push(c, CT_BEACON_WAITING);
    waiting_flush(c);
}

static void pair(struct conn *br, struct conn *op)
{
    struct worker *w = br->w;
    struct ct_relay *r = w->r;
    struct conn *both[2] = {br, op};

    for (int i = 0; i < 2; i++) {
        struct conn *c = both[i];
        if (c->state == ST_WAITING)
            ctp_relay_room_leave(w, c);
        ctp_relay_timer_clear(w, c);
        c->state = ST_PAIRED;
        c->t_paired = w->now;
        ctp_relay_status_push(c, CT_BEACON_PAIRED);
    }
    br->peer = op;
    op->peer = br;
    STAT_INC(r, pairs);
    STAT_INC(r, paired_sessions);
    /* bridge side first: it waited longer (PROTOCOL.md 1.4) */
    if (ctp_relay_conn_flush(br) == WR_FATAL || ctp_relay_conn_flush(op) == WR_FATAL) {
        ctp_relay_pair_close(br, END_RESET);
        return;
    }
    ctp_relay_conn_arm(br);
    ctp_relay_conn_arm(op);
    /* a waiting peer that broke the rules may have bytes buffered already */
    if (wolfSSL_pending(br->ssl) > 0)
        ctp_relay_ready_add(w, br);
    if (wolfSSL_pending(op->ssl) > 0)
        ctp_relay_ready_add(w, op);
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
    if (wolfSSL_pending(c->ssl) == 0) {
        uint8_t b;
        ssize_t k = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k < 0)
            return 0; /* nothing there (or an error the relay path will see) */
        if (k == 0) {
            ctp_relay_conn_close(c);
            return 1;
        }
    }
    return ctp_relay_waiting_readable(c);
}

/* Runs on the worker that owns the room. */
void ctp_relay_join_room(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    struct room *rm;

    if (w->draining) {
        ctp_relay_refuse(c, CT_BEACON_DRAINING);
        return;
    }
    if (early_input(c))
        return;
    /* at most 1 + max_waiting_per_room rounds: each one removes a partner */
    for (;;) {
        struct conn *partner;
        rm = room_get(w, c->room_h, c->hello + 8);
        if (!rm) {
            ctp_relay_refuse(c, CT_BEACON_OVERLOADED);
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
            ctp_relay_refuse(c, CT_BEACON_ROOM_BUSY);
        } else {
            rm->op = c;
            enter_waiting(c, rm);
        }
    } else {
        if (rm->op) {
            pair(c, rm->op);
        } else if (rm->nbr >= r->o.max_waiting_per_room) {
            ctp_relay_refuse(c, CT_BEACON_ROOM_BUSY);
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

/* ------------------------------------------------------------------ */
/* Waiting peers: no data before PAIRED, keepalives, the wait deadline */

int ctp_relay_waiting_readable(struct conn *c)
{
    uint8_t b;
    int n = wolfSSL_read(c->ssl, &b, 1);
    int e;
    if (n > 0) {
        ctp_relay_refuse(c, CT_BEACON_BAD_HELLO); /* data before PAIRED */
        return 1;
    }
    e = wolfSSL_get_error(c->ssl, n);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
        return 0; /* a non-data record, or part of one */
    ctp_relay_conn_close(c); /* a waiting peer that closes simply leaves the room */
    return 1;
}

void ctp_relay_waiting_deadline(struct worker *w, struct conn *c)
{
    struct ct_relay *r = w->r;
    if (w->now >= c->t_wait_until) {
        ctp_relay_refuse(c, CT_BEACON_TIMEOUT);
        return;
    }
    if (w->now >= c->t_keepalive) {
        if (c->stq_len == 0)
            ctp_relay_status_push(c, CT_BEACON_WAITING);
        c->t_keepalive = w->now + r->o.keepalive_ms;
        if (waiting_flush(c) < 0)
            return;
    }
    if (waiting_timer_set(w, c) < 0)
        ctp_relay_conn_close(c);
}
