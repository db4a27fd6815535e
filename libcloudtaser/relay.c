/*
 * relay.c - the beacon: a stateless TLS pairing relay (docs/PROTOCOL.md 1).
 * This file holds the public API (ct_relay_*: options and their defaults,
 * setup, serve, drain and stop, statistics, free) and the TLS
 * configuration: the certificate context, reference counted so that a
 * reload (SIGHUP) affects only new connections. The design and the map of
 * the other relay_*.c files are in relay_internal.h.
 */
#include "relay_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* TLS configuration                                                   */

static int looks_pem(const uint8_t *p, size_t n)
{
    static const char tag[] = "-----BEGIN";
    while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
        n--;
    }
    return n >= sizeof tag - 1 && memcmp(p, tag, sizeof tag - 1) == 0;
}

void ctp_relay_cert_unref(struct cert_ref *cr)
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

static void mem_attach(WOLFSSL *ssl, struct mem_end *e)
{
    wolfSSL_SSLSetIORecv(ssl, mem_recv);
    wolfSSL_SSLSetIOSend(ssl, mem_send);
    wolfSSL_SetIOReadCtx(ssl, e);
    wolfSSL_SetIOWriteCtx(ssl, e);
}

/*
 * One handshake step (step: wolfSSL_connect or wolfSSL_accept) for a side
 * that is not done yet. Returns -1 if the handshake failed.
 */
static int selftest_step(WOLFSSL *ssl, int (*step)(WOLFSSL *), int *done)
{
    int r, e;
    if (*done)
        return 0;
    r = step(ssl);
    e = wolfSSL_get_error(ssl, r);
    if (r == WOLFSSL_SUCCESS)
        *done = 1;
    else if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
        return -1;
    return 0;
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
    mem_attach(cli, &ce);
    mem_attach(srv, &se);
    for (int i = 0; i < 64 && !(cdone && sdone); i++) {
        if (selftest_step(cli, wolfSSL_connect, &cdone) < 0 ||
            selftest_step(srv, wolfSSL_accept, &sdone) < 0)
            goto out;
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
    /* ChaCha20 first without AES-NI, AES-GCM first with it (wolf.h). */
    if (wolfSSL_CTX_set_cipher_list(wctx, CTP_TLS_CIPHER_LIST) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(wctx, groups, 2) != WOLFSSL_SUCCESS) {
        ret = ctp_err(err, CT_E_TLS, 0, "relay: cannot set cipher suites or groups");
        goto out;
    }
    /* No resumption: nothing to gain for a relay, and no ticket key to guard. */
    wolfSSL_CTX_no_ticket_TLSv13(wctx);
    wolfSSL_CTX_set_session_cache_mode(wctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_SetIORecv(wctx, ctp_relay_io_recv);
    wolfSSL_CTX_SetIOSend(wctx, ctp_relay_io_send);
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

struct cert_ref *ctp_relay_cert_acquire(struct ct_relay *r)
{
    struct cert_ref *cr;
    pthread_mutex_lock(&r->cert_mu);
    cr = r->cert;
    atomic_fetch_add(&cr->refs, 1);
    pthread_mutex_unlock(&r->cert_mu);
    return cr;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

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

static ct_err check_opts(const ct_relay_options *o, ct_error *err)
{
    if (o->version != CT_RELAY_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_relay_options version %u is not supported",
                       (unsigned)o->version);
    if (o->threads < 0 || o->threads > CT_RELAY_MAX_THREADS || o->hello_timeout_ms < 0 ||
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
    if (n > CT_RELAY_MAX_THREADS)
        n = CT_RELAY_MAX_THREADS;
#define DEF_(f, v)   \
    if (r->o.f == 0) \
        r->o.f = (v);
    DEF_(hello_timeout_ms, CT_RELAY_DEFAULT_HELLO_TIMEOUT_MS)
    DEF_(wait_timeout_ms, CT_RELAY_DEFAULT_WAIT_TIMEOUT_MS)
    DEF_(keepalive_ms, CT_RELAY_DEFAULT_KEEPALIVE_MS)
    DEF_(linger_ms, CT_RELAY_DEFAULT_LINGER_MS)
    DEF_(drain_timeout_ms, CT_RELAY_DEFAULT_DRAIN_TIMEOUT_MS)
    DEF_(max_conns, CT_RELAY_DEFAULT_MAX_CONNS)
    DEF_(max_conns_per_ip, CT_RELAY_DEFAULT_MAX_CONNS_PER_IP)
    DEF_(accept_rate_per_ip, CT_RELAY_DEFAULT_ACCEPT_RATE_PER_IP)
    DEF_(max_waiting_per_room, CT_RELAY_DEFAULT_MAX_WAITING_PER_ROOM)
#undef DEF_
    if (ctp_relay_ip_init(r) < 0) {
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
        e = ctp_relay_bind_listener((const struct sockaddr *)&ss, sl, 0, &probe);
        if (e != 0) {
            rc = ctp_err(err, ctp_errno_to_err(e), e, "relay: cannot bind port %u: %s",
                         (unsigned)opts->listen_port, strerror(e));
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
        if ((rc = ctp_relay_worker_init(r, &r->w[i], i, &ss, sl, err)) != CT_OK)
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
        int e = pthread_create(&r->w[i].tid, NULL, ctp_relay_worker_main, &r->w[i]);
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
        ctp_relay_worker_loop(&r->w[0]);
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
        ctp_relay_worker_free_inbox(&r->w[i]);
    atomic_store(&r->serve_state, 2);
    return rc;
}

void ct_relay_drain(ct_relay *r)
{
    if (r && r->drain_efd >= 0)
        ctp_relay_efd_signal(r->drain_efd);
}

void ct_relay_stop(ct_relay *r)
{
    if (r && r->stop_efd >= 0)
        ctp_relay_efd_signal(r->stop_efd);
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
    ctp_relay_cert_unref(old); /* freed when its last session ends */
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
    for (int i = 0; i < r->nworkers; i++)
        ctp_relay_worker_free(&r->w[i]);
    free(r->w);
    ctp_relay_ip_free(r);
    ctp_relay_cert_unref(r->cert);
    if (r->drain_efd >= 0)
        close(r->drain_efd);
    if (r->stop_efd >= 0)
        close(r->stop_efd);
    pthread_mutex_destroy(&r->cert_mu);
    pthread_mutex_destroy(&r->ip_mu);
    ct_secure_wipe(r, sizeof *r);
    free(r);
}
