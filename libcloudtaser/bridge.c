/*
 * bridge.c - the bridge daemon (ct_bridge_*): watches the store for
 * registered clusters and keeps waiting connections in each cluster's init
 * and operational rooms on the beacon.
 *
 * Threads: the thread in ct_bridge_run scans the store and manages the
 * clusters; every waiter (one room slot of one cluster) is a thread that
 * loops: connect to the beacon and wait for a partner, serve it (an init
 * exchange, or an operational session until it ends), repeat. A waiter's
 * blocking calls go through its own cancellable transport, so removing a
 * cluster or stopping interrupts them at once.
 */
#include "agent_internal.h"
#include "register_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BR_PAIR_TIMEOUT_MS 300000 /* re-connect to the beacon every 5 min when idle */
#define BR_SESSION_CLOSE_MS 2000

struct cluster;

struct waiter {
    ct_bridge *b;
    struct cluster *cl;
    int op;              /* 0 init room, 1 operational room */
    pthread_t th;
    int started;
    ctp_canceller *cancel;
    /* guarded by b->mu */
    ct_session *sess;
    int sess_closing;
    unsigned users;
    /* the serving thread's own */
    int64_t since, next_hb;
};

struct cluster {
    char fp[CT_FINGERPRINT_LEN + 1];
    char fp8[9];
    uint8_t init_room[32];
    uint8_t op_room[32];
    volatile int removed;  /* written under b->mu, read by waiters */
    unsigned nwaiters;
    struct waiter *w;
    ct_tls_config *tls;    /* the bridge's operational client config */
    struct cluster *next;
};

struct ct_bridge {
    ct_ctx *ctx;
    ct_bridge_options o;
    ct_beacon_options beacon;
    char *audience;
    ct_session_options sopts;
    ctp_stopper stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cluster *clusters;
    int running;
    int64_t t0;
    /* ct_bridge_get_status; guarded by mu */
    int store_ok;
    int64_t last_scan_ok;  /* ctp_mono_ms of the latest good scan, 0: none */
    uint64_t scans, scan_failures;
};

static void emit(ct_bridge *b, ct_agent_event_type t, const struct cluster *cl, const char *room,
                 ct_err code, const char *detail)
{
    if (detail)
        ctp_agent_emit(b->o.on_event, b->o.event_arg, b->t0, t, cl ? cl->fp8 : NULL, room, code,
                       "%s", detail);
    else
        ctp_agent_emit(b->o.on_event, b->o.event_arg, b->t0, t, cl ? cl->fp8 : NULL, room, code,
                       NULL);
}

static int waiter_should_stop(struct waiter *w)
{
    return w->b->stop.raised || w->cl->removed || ctp_canceller_fired(w->cancel);
}

static ct_err br_handler(void *arg, ct_session *s, uint32_t stream, const uint8_t *req,
                         size_t req_len, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    struct waiter *w = arg;
    if (!w->b->o.handler)
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "this bridge serves no requests");
    return w->b->o.handler(w->b->o.handler_arg, w->cl->fp, s, stream, req, req_len, resp,
                           resp_len, err);
}

static void serve_init(struct waiter *w, ct_conn *conn)
{
    ct_bridge *b = w->b;
    ct_bootstrap_serve_options so = CT_BOOTSTRAP_SERVE_OPTIONS_INIT;
    ct_bootstrap_result res;
    ct_error err;
    ct_err rc;

    emit(b, CT_EV_INIT_PAIRED, w->cl, "init", CT_OK, NULL);
    so.store = b->o.store;
    so.fingerprint = w->cl->fp;
    so.audience = b->audience;
    so.max_token_lifetime_s = b->o.max_token_lifetime_s;
    so.broker_days = b->o.broker_days;
    memset(&res, 0, sizeof res);
    rc = ct_bootstrap_serve(b->ctx, conn, &so, &res, &err);
    if (res.claimed)
        emit(b, CT_EV_CLAIM_RECORDED, w->cl, "init", CT_OK, "one-time bootstrap claimed");
    if (rc == CT_OK && res.issued) {
        emit(b, CT_EV_BOOTSTRAP_ISSUED, w->cl, "init", CT_OK,
             res.reissue ? "broker certificate re-issued (attested re-bootstrap)"
                         : "broker certificate issued (first bootstrap)");
    } else if (rc == CT_E_DENIED) {
        emit(b, CT_EV_BOOTSTRAP_REFUSED, w->cl, "init", rc, err.message);
    } else {
        emit(b, CT_EV_ERROR, w->cl, "init", rc, err.message);
    }
}

/* Every slice of a held operational session: the "connected" heartbeat. */
static void serve_op_tick(void *arg)
{
    struct waiter *w = arg;
    ct_bridge *b = w->b;
    ct_error e2;
    if (ctp_mono_ms() < w->next_hb)
        return;
    if (ctp_reg_heartbeat(b->ctx, b->o.store, w->cl->fp, w->since, &e2) == CT_E_NOTFOUND) {
        pthread_mutex_lock(&b->mu);
        w->cl->removed = 1; /* deregistered: do not wait for the next scan */
        pthread_mutex_unlock(&b->mu);
    }
    w->next_hb = ctp_mono_ms() + CTP_REG_HEARTBEAT_MS;
}

static const char *serve_op_stop(void *arg)
{
    struct waiter *w = arg;
    if (w->cl->removed)
        return "cluster deregistered";
    return w->b->stop.raised ? "bridge stopping" : NULL;
}

static void serve_op(struct waiter *w, ct_conn *conn)
{
    ct_bridge *b = w->b;
    ct_session_options so = b->sopts;
    ctp_held_session h = {&b->mu, &b->cv, &w->sess, &w->sess_closing, &w->users};
    ct_session *s = NULL;
    ct_conn *tls = NULL;
    ct_error err;
    ct_err rc;
    unsigned i;
    int others = 0;

    rc = ct_tls_wrap(w->cl->tls, conn, -1, &tls, &err);
    if (rc != CT_OK) {
        emit(b, CT_EV_ERROR, w->cl, "operational", rc, err.message);
        return;
    }
    so.handler = br_handler;
    so.handler_arg = w;
    so.initiator = 1;
    if ((rc = ct_session_open(b->ctx, tls, &so, &s, &err)) != CT_OK) {
        emit(b, CT_EV_ERROR, w->cl, "operational", rc, err.message);
        return;
    }
    emit(b, CT_EV_SESSION_UP, w->cl, "operational", CT_OK, "mTLS session up");
    w->since = ct_ctx_wall_ms(b->ctx);
    w->next_hb = 0;
    rc = ctp_session_hold(&h, s, serve_op_tick, serve_op_stop, w, BR_SESSION_CLOSE_MS, &err);
    pthread_mutex_lock(&b->mu);
    for (i = 0; i < w->cl->nwaiters; i++)
        others += w->cl->w[i].sess != NULL && !w->cl->w[i].sess_closing;
    pthread_mutex_unlock(&b->mu);
    ct_session_free(s);
    if (!others)
        ctp_reg_disconnected(b->o.store, w->cl->fp);
    emit(b, CT_EV_SESSION_DOWN, w->cl, "operational", rc,
         err.message[0] ? err.message : "session ended");
}

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    ct_bridge *b = w->b;
    ct_beacon_options bo = b->beacon;
    unsigned attempt = 0;
    const char *room_name = w->op ? "operational" : "init";

    bo.transport = ctp_canceller_transport(w->cancel);
    bo.pair_timeout_ms = BR_PAIR_TIMEOUT_MS;
    while (!waiter_should_stop(w)) {
        ct_conn *conn = NULL;
        ct_error err;
        ct_err rc;

        rc = ct_beacon_connect(b->ctx, &bo, CT_ROLE_BRIDGE,
                               w->op ? w->cl->op_room : w->cl->init_room, &conn, &err);
        if (waiter_should_stop(w)) {
            ct_conn_free(conn);
            break;
        }
        if (rc == CT_E_TIMEOUT && err.os_error == 0) {
            attempt = 0; /* idle room: just wait again */
            continue;
        }
        if (rc != CT_OK) {
            emit(b, CT_EV_ERROR, w->cl, room_name, rc, err.message);
            ctp_stopper_wait(&b->stop, ctp_backoff_ms(b->ctx, b->o.retry_min_ms,
                                                      b->o.retry_max_ms, attempt++));
            continue;
        }
        attempt = 0;
        if (w->op)
            serve_op(w, conn);
        else
            serve_init(w, conn);
    }
    ct_thread_cleanup();
    return NULL;
}

static void cluster_stop_join(ct_bridge *b, struct cluster *cl)
{
    unsigned i;
    pthread_mutex_lock(&b->mu);
    cl->removed = 1;
    pthread_mutex_unlock(&b->mu);
    /*
     * Waiters still connecting or waiting in a room are interrupted; a
     * waiter with a live session closes it itself (GOAWAY) within 200 ms.
     */
    for (i = 0; i < cl->nwaiters; i++) {
        struct waiter *w = &cl->w[i];
        int has_sess;
        pthread_mutex_lock(&b->mu);
        has_sess = w->sess != NULL;
        pthread_mutex_unlock(&b->mu);
        if (!has_sess)
            ctp_canceller_fire(w->cancel);
    }
    for (i = 0; i < cl->nwaiters; i++) {
        struct waiter *w = &cl->w[i];
        if (w->started)
            pthread_join(w->th, NULL);
    }
}

static void cluster_free(struct cluster *cl)
{
    unsigned i;
    if (!cl)
        return;
    for (i = 0; i < cl->nwaiters; i++)
        ctp_canceller_free(cl->w[i].cancel);
    free(cl->w);
    ct_tls_config_free(cl->tls);
    ct_secure_wipe(cl->fp, sizeof cl->fp);
    free(cl);
}

static ct_err cluster_start(ct_bridge *b, const ct_registration *reg, struct cluster **out,
                            ct_error *err)
{
    struct cluster *cl = calloc(1, sizeof *cl);
    unsigned i, ninit = b->o.init_waiters, nop = b->o.op_waiters;
    ct_err rc;

    *out = NULL;
    if (!cl)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    snprintf(cl->fp, sizeof cl->fp, "%s", ct_registration_fingerprint(reg));
    snprintf(cl->fp8, sizeof cl->fp8, "%.8s", cl->fp);
    memcpy(cl->init_room, ct_registration_init_room(reg), 32);
    memcpy(cl->op_room, ct_registration_operational_room(reg), 32);
    if ((rc = ct_bridge_tls_config(b->ctx, b->o.store, cl->fp, &cl->tls, NULL, err)) != CT_OK) {
        cluster_free(cl);
        return rc;
    }
    cl->nwaiters = ninit + nop;
    if (!(cl->w = calloc(cl->nwaiters, sizeof *cl->w))) {
        cluster_free(cl);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    for (i = 0; i < cl->nwaiters; i++) {
        cl->w[i].b = b;
        cl->w[i].cl = cl;
        cl->w[i].op = i >= ninit;
        if ((rc = ctp_canceller_new(b->ctx, &cl->w[i].cancel, err)) != CT_OK) {
            cl->nwaiters = i;
            cluster_free(cl);
            return rc;
        }
    }
    for (i = 0; i < cl->nwaiters; i++) {
        if (pthread_create(&cl->w[i].th, NULL, waiter_main, &cl->w[i]) != 0) {
            rc = ctp_err(err, CT_E_INTERNAL, errno, "cannot start a waiter thread");
            cluster_stop_join(b, cl);
            cluster_free(cl);
            return rc;
        }
        cl->w[i].started = 1;
    }
    *out = cl;
    return CT_OK;
}

ct_err ct_bridge_new(ct_ctx *ctx, const ct_bridge_options *opts, ct_bridge **out, ct_error *err)
{
    ct_bridge *b;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_new: out is NULL");
    *out = NULL;
    if (!ctx || !opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_new: NULL argument");
    if (opts->version != CT_BRIDGE_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_bridge_options version %u is not supported",
                       (unsigned)opts->version);
    if (!opts->store || !opts->beacon)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_new: store and beacon are required");
    if (opts->beacon->version != CT_BEACON_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_beacon_options version %u is not supported",
                       (unsigned)opts->beacon->version);
    if (opts->session && opts->session->version != CT_SESSION_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_session_options version %u is not supported",
                       (unsigned)opts->session->version);
    if (!(b = calloc(1, sizeof *b)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    b->ctx = ctx;
    b->o = *opts;
    b->beacon = *opts->beacon;
    if (opts->session)
        b->sopts = *opts->session;
    else
        b->sopts = (ct_session_options)CT_SESSION_OPTIONS_INIT;
    if (!b->o.init_waiters)
        b->o.init_waiters = 1;
    if (!b->o.op_waiters)
        b->o.op_waiters = 2;
    if (b->o.init_waiters > 16 || b->o.op_waiters > 64) {
        free(b);
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_new: too many waiters per room");
    }
    if (b->o.scan_interval_ms <= 0)
        b->o.scan_interval_ms = 2000;
    if (b->o.retry_min_ms <= 0)
        b->o.retry_min_ms = 200;
    if (b->o.retry_max_ms <= 0)
        b->o.retry_max_ms = 30000;
    if (b->o.retry_max_ms < b->o.retry_min_ms)
        b->o.retry_max_ms = b->o.retry_min_ms;
    if (opts->audience && !(b->audience = strdup(opts->audience))) {
        free(b);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    b->o.audience = NULL;
    if ((rc = ctp_stopper_init(&b->stop, err)) != CT_OK) {
        free(b->audience);
        free(b);
        return rc;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    *out = b;
    return CT_OK;
}

/* Is `fp` in the (sorted) list of clusters that should be served? */
static int listed(const ct_strlist *l, const char *fp)
{
    size_t i, n = l ? ct_strlist_count(l) : 0;
    for (i = 0; i < n; i++)
        if (strcmp(ct_strlist_get(l, i), fp) == 0)
            return 1;
    return 0;
}

static struct cluster *find_cluster(ct_bridge *b, const char *fp)
{
    struct cluster *c;
    for (c = b->clusters; c; c = c->next)
        if (strcmp(c->fp, fp) == 0)
            return c;
    return NULL;
}

/* One scan; returns the store's error if it could not be listed. */
static ct_err scan(ct_bridge *b, ct_error *err)
{
    ct_strlist *fps = NULL, *keep = NULL;
    struct cluster **pp;
    size_t i, n;
    ct_err rc;

    if ((rc = ct_registration_list(b->ctx, b->o.store, &fps, err)) != CT_OK)
        return rc;
    if ((rc = ct_strlist_new(&keep, err)) != CT_OK) {
        ct_strlist_free(fps);
        return rc;
    }
    n = ct_strlist_count(fps);
    for (i = 0; i < n && !b->stop.raised; i++) {
        const char *fp = ct_strlist_get(fps, i);
        ct_registration *reg = NULL;
        struct cluster *cl;
        ct_error e2;

        if (ct_registration_get(b->ctx, b->o.store, fp, &reg, &e2) != CT_OK) {
            /* A half-written or vanished record: keep what runs, report. */
            if (find_cluster(b, fp))
                (void)ct_strlist_append(keep, fp, NULL);
            continue;
        }
        (void)ct_strlist_append(keep, fp, NULL);
        if (!find_cluster(b, fp)) {
            if (cluster_start(b, reg, &cl, &e2) == CT_OK) {
                pthread_mutex_lock(&b->mu);
                cl->next = b->clusters;
                b->clusters = cl;
                pthread_mutex_unlock(&b->mu);
                emit(b, CT_EV_CLUSTER_ADDED, cl, NULL, CT_OK,
                     ct_reg_state_name(ct_registration_state(reg)));
            } else {
                char fp8[9];
                snprintf(fp8, sizeof fp8, "%.8s", fp);
                ctp_agent_emit(b->o.on_event, b->o.event_arg, b->t0, CT_EV_ERROR, fp8, NULL,
                               e2.code, "cannot serve cluster: %s", e2.message);
            }
        }
        ct_registration_free(reg);
    }
    /* clusters no longer registered */
    for (pp = &b->clusters; *pp;) {
        struct cluster *cl = *pp;
        if (!b->stop.raised && !listed(keep, cl->fp)) {
            pthread_mutex_lock(&b->mu);
            *pp = cl->next;
            pthread_mutex_unlock(&b->mu);
            cluster_stop_join(b, cl);
            emit(b, CT_EV_CLUSTER_REMOVED, cl, NULL, CT_OK,
                 "deregistered: sessions closed, rooms left");
            cluster_free(cl);
        } else {
            pp = &cl->next;
        }
    }
    ct_strlist_free(keep);
    ct_strlist_free(fps);
    return CT_OK;
}

ct_err ct_bridge_run(ct_bridge *b, ct_error *err)
{
    ct_err rc;
    int first = 1;

    if (!b)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_run: NULL bridge");
    pthread_mutex_lock(&b->mu);
    if (b->running) {
        pthread_mutex_unlock(&b->mu);
        return ctp_err(err, CT_E_STATE, 0, "ct_bridge_run: already running");
    }
    b->running = 1;
    pthread_mutex_unlock(&b->mu);
    b->t0 = ctp_mono_ms();
    rc = CT_OK;
    while (!b->stop.raised) {
        ct_error e2;
        ct_err src = scan(b, &e2);
        pthread_mutex_lock(&b->mu);
        b->scans++;
        b->store_ok = src == CT_OK;
        if (src == CT_OK)
            b->last_scan_ok = ctp_mono_ms();
        else
            b->scan_failures++;
        pthread_mutex_unlock(&b->mu);
        if (src != CT_OK) {
            if (first) {
                if (err)
                    *err = e2;
                rc = src;
                break;
            }
            emit(b, CT_EV_ERROR, NULL, NULL, src, e2.message);
        }
        first = 0;
        ctp_stopper_wait(&b->stop, b->o.scan_interval_ms);
    }
    /* stop: every cluster's waiters and sessions */
    while (b->clusters) {
        struct cluster *cl = b->clusters;
        pthread_mutex_lock(&b->mu);
        b->clusters = cl->next;
        pthread_mutex_unlock(&b->mu);
        cluster_stop_join(b, cl);
        cluster_free(cl);
    }
    pthread_mutex_lock(&b->mu);
    b->running = 0;
    b->store_ok = 0;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void ct_bridge_stop(ct_bridge *b)
{
    if (b)
        ctp_stopper_raise(&b->stop);
}

ct_err ct_bridge_request(ct_bridge *b, const char *fingerprint, const void *req, size_t len,
                         int timeout_ms, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1];
    struct waiter *use = NULL;
    struct cluster *cl;
    ct_err rc;

    if (!b || !fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_request: NULL argument");
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    pthread_mutex_lock(&b->mu);
    for (cl = b->clusters; cl && !use; cl = cl->next) {
        unsigned i;
        if (strcmp(cl->fp, fp) != 0 || cl->removed)
            continue;
        for (i = 0; i < cl->nwaiters; i++) {
            struct waiter *w = &cl->w[i];
            if (w->sess && !w->sess_closing && ct_session_is_open(w->sess)) {
                use = w;
                w->users++;
                break;
            }
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (!use)
        return ctp_err(err, CT_E_NOTFOUND, 0, "no live session with cluster %.8s", fp);
    rc = ct_session_request(use->sess, req, len, timeout_ms, resp, resp_len, err);
    pthread_mutex_lock(&b->mu);
    use->users--;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

size_t ct_bridge_sessions(ct_bridge *b)
{
    struct cluster *cl;
    size_t n = 0;
    if (!b)
        return 0;
    pthread_mutex_lock(&b->mu);
    for (cl = b->clusters; cl; cl = cl->next) {
        unsigned i;
        for (i = 0; i < cl->nwaiters; i++)
            if (cl->w[i].sess && !cl->w[i].sess_closing)
                n++;
    }
    pthread_mutex_unlock(&b->mu);
    return n;
}

ct_err ct_bridge_get_status(ct_bridge *b, ct_bridge_status *out, ct_error *err)
{
    struct cluster *cl;
    if (!b || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_get_status: NULL argument");
    if (out->version != CT_BRIDGE_STATUS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_bridge_status version %u is not supported",
                       (unsigned)out->version);
    out->sessions = ct_bridge_sessions(b);
    pthread_mutex_lock(&b->mu);
    out->running = b->running;
    out->store_ok = b->running && b->store_ok;
    out->last_scan_ok_ms = b->last_scan_ok ? ctp_mono_ms() - b->last_scan_ok : -1;
    out->scans = b->scans;
    out->scan_failures = b->scan_failures;
    out->clusters = 0;
    for (cl = b->clusters; cl; cl = cl->next)
        out->clusters++;
    pthread_mutex_unlock(&b->mu);
    return CT_OK;
}

void ct_bridge_free(ct_bridge *b)
{
    if (!b)
        return;
    ctp_stopper_destroy(&b->stop);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->audience);
    free(b);
}
