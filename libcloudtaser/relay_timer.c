/*
 * relay_timer.c - the beacon's deadlines: one min-heap per worker on
 * conn->deadline (0 = no deadline). Each conn knows its index in the heap,
 * so a deadline is changed or cleared in O(log n).
 */
#include "relay_internal.h"

#include <stdlib.h>

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

void ctp_relay_timer_clear(struct worker *w, struct conn *c)
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
int ctp_relay_timer_set(struct worker *w, struct conn *c, int64_t when)
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
