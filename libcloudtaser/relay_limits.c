/*
 * relay_limits.c - the beacon's per-address limits (PROTOCOL.md 1.6, and
 * relay.h): one table for all workers, under one mutex, keyed by the source
 * address (IPv4-mapped IPv6 counts as IPv4) and hashed with a secret key so
 * that it cannot be flooded into one bucket. Each entry counts the
 * address's open connections and holds two token buckets: accepts per
 * second (burst 2x) and status refusals (REFUSAL_RATE per second, burst
 * REFUSAL_BURST), the budget that decides whether a refused connection gets
 * a handshake and a status byte or is closed right after accept.
 */
#include "relay_internal.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct ip_entry {
    struct ip_entry *next;
    uint8_t addr[16];
    uint32_t conns;
    int64_t tokens;     /* milli-tokens: accept rate */
    int64_t ref_tokens; /* milli-tokens: status refusals */
    int64_t last_ms;
};

int ctp_relay_ip_init(struct ct_relay *r)
{
    r->ip_max = (size_t)r->o.max_conns + IP_TABLE_SLACK;
    r->ip_cap = 1024;
    r->ip_tab = calloc(r->ip_cap, sizeof *r->ip_tab);
    return r->ip_tab ? 0 : -1;
}

void ctp_relay_ip_free(struct ct_relay *r)
{
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
}

void ctp_relay_addr_key(const struct sockaddr_storage *ss, uint8_t out[16])
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
 * Caller holds ip_mu. Refills *pp's buckets and frees it if it is idle
 * again. Returns 1 if it was freed (*pp is then its successor).
 */
static int ip_expire(struct ct_relay *r, struct ip_entry **pp, int64_t now)
{
    struct ip_entry *e = *pp;
    ip_refill(r, e, now);
    if (!ip_idle(r, e))
        return 0;
    *pp = e->next;
    free(e);
    r->ip_len--;
    return 1;
}

/*
 * Admits a connection from addr. IP_OK takes a connection slot and an
 * accept token. Otherwise *status_ok says whether this refusal may be told
 * with a status byte (the address's refusal budget allows a handshake).
 */
enum ip_verdict ctp_relay_ip_acquire(struct ct_relay *r, const uint8_t addr[16], int64_t now,
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

void ctp_relay_ip_release(struct ct_relay *r, const uint8_t addr[16], int64_t now)
{
    struct ip_entry **pp, *e;
    pthread_mutex_lock(&r->ip_mu);
    pp = &r->ip_tab[ip_bucket(r, addr, r->ip_cap)];
    for (; (e = *pp) != NULL; pp = &e->next) {
        if (memcmp(e->addr, addr, 16) != 0)
            continue;
        if (e->conns > 0)
            e->conns--;
        ip_expire(r, pp, now);
        break;
    }
    pthread_mutex_unlock(&r->ip_mu);
}

/* Drops entries that hold no connection and whose buckets are full again. */
void ctp_relay_ip_sweep(struct ct_relay *r, int64_t now)
{
    pthread_mutex_lock(&r->ip_mu);
    for (size_t i = 0; i < r->ip_cap && r->ip_len > 0; i++) {
        struct ip_entry **pp = &r->ip_tab[i];
        while (*pp != NULL) {
            if (!ip_expire(r, pp, now))
                pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&r->ip_mu);
}
