/*
 * operator.c - the operator daemon (ct_operator_*): bootstrap through the
 * beacon, then keep one operational session with the bridge up.
 *
 * Threads: ct_operator_run starts one worker thread that does all the
 * blocking work (beacon connections through a cancellable transport,
 * bootstrap, TLS, the session), and itself only waits for the stop signal,
 * so ct_operator_stop (async-signal-safe) can interrupt the worker through
 * the canceller from an ordinary thread.
 */
#include "agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OP_PAIR_TIMEOUT_MS 20000
#define OP_SESSION_CLOSE_MS 2000
#define OP_TOKEN_MAX 16384

struct ct_operator {
    ct_ctx *ctx;
    ct_operator_options o;
    ct_beacon_options beacon;
    ct_session_options sopts;
    char fp[CT_FINGERPRINT_LEN + 1];
    char fp8[9];
    char *token_file;
    uint8_t expect_room[32];
    int have_expect_room;
    char *jwks;
    size_t jwks_len;
    ctp_stopper stop;
    ctp_canceller *cancel;
    ctp_canceller *cancel_pre; /* the pre-opened operational connection's */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ct_session *sess;   /* guarded by mu */
    int sess_closing;
    unsigned users;
    int running;
    int64_t t0;
};

static void emit(ct_operator *op, ct_agent_event_type t, const char *room, ct_err code,
                 const char *detail)
{
    if (detail)
        ctp_agent_emit(op->o.on_event, op->o.event_arg, op->t0, t, op->fp8, room, code, "%s",
                       detail);
    else
        ctp_agent_emit(op->o.on_event, op->o.event_arg, op->t0, t, op->fp8, room, code, NULL);
}

static int stopping(ct_operator *op)
{
    return op->stop.raised || ctp_canceller_fired(op->cancel);
}

/* Reads the token file (bounded, trimmed); the copy is wiped by the caller. */
static ct_err read_token_file(const char *path, char **out, ct_error *err)
{
    ct_secret *t = NULL;
    ct_err rc = ct_secret_read_file(path, OP_TOKEN_MAX, "token file", CT_SECRET_FILE_TRIM, &t,
                                    err);
    *out = NULL;
    if (rc != CT_OK)
        return rc;
    *out = malloc(ct_secret_len(t) + 1);
    if (!*out) {
        ct_secret_free(t);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    memcpy(*out, ct_secret_data(t), ct_secret_len(t) + 1); /* with its zero byte */
    ct_secret_free(t);
    return CT_OK;
}

static ct_err get_token(ct_operator *op, char **token, ct_error *err)
{
    *token = NULL;
    if (op->o.token_fn)
        return op->o.token_fn(op->o.token_arg, token, err);
    if (op->token_file)
        return read_token_file(op->token_file, token, err);
    return CT_OK; /* no token: first bootstrap without attestation only */
}

static void free_token(char *t)
{
    if (t) {
        ct_secure_wipe(t, strlen(t));
        free(t);
    }
}

static ct_err op_handler(void *arg, ct_session *s, uint32_t stream, const uint8_t *req,
                         size_t req_len, uint8_t **resp, size_t *resp_len, ct_error *err)
{
    ct_operator *op = arg;
    if (!op->o.handler)
        return ctp_err(err, CT_E_UNSUPPORTED, 0, "this operator serves no requests");
    return op->o.handler(op->o.handler_arg, op->fp, s, stream, req, req_len, resp, resp_len,
                         err);
}

static ct_err do_bootstrap(ct_operator *op, const ct_beacon_options *bo, ct_credentials **creds,
                           ct_error *err)
{
    ct_bootstrap_options o = CT_BOOTSTRAP_OPTIONS_INIT;
    char *token = NULL;
    ct_err rc;

    if ((rc = get_token(op, &token, err)) != CT_OK)
        return rc;
    o.fingerprint = op->fp;
    o.token = token;
    o.token_len = token ? strlen(token) : 0;
    o.jwks = op->jwks;
    o.jwks_len = op->jwks_len;
    /*
     * With the issuer keys: a first bootstrap that pins them (re-bootstrap
     * automatically if the cluster is initialized). With a token but no
     * keys there is nothing to pin: only a re-bootstrap makes sense.
     */
    o.first_bootstrap = !(token && !op->jwks);
    o.flags = CT_BOOTSTRAP_F_AUTO;
    rc = ct_bootstrap(op->ctx, bo, &o, creds, err);
    free_token(token);
    return rc;
}

static const char *run_session_stop(void *arg)
{
    ct_operator *op = arg;
    return op->stop.raised ? "operator stopping" : NULL;
}

/* Runs one operational session until it ends or we stop. */
static void run_session(ct_operator *op, ct_conn *tls)
{
    ct_session_options so = op->sopts;
    ctp_held_session h = {&op->mu, &op->cv, &op->sess, &op->sess_closing, &op->users};
    ct_session *s = NULL;
    ct_error err;
    ct_err rc;

    so.handler = op_handler;
    so.handler_arg = op;
    so.initiator = 0;
    if ((rc = ct_session_open(op->ctx, tls, &so, &s, &err)) != CT_OK) {
        emit(op, CT_EV_ERROR, "operational", rc, err.message);
        return;
    }
    emit(op, CT_EV_SESSION_UP, "operational", CT_OK, "mTLS session up");
    rc = ctp_session_hold(&h, s, NULL, run_session_stop, op, OP_SESSION_CLOSE_MS, &err);
    ct_session_free(s);
    emit(op, CT_EV_SESSION_DOWN, "operational", rc,
         err.message[0] ? err.message : "session ended");
}

/*
 * While the bootstrap runs, a second thread opens the outer connection for
 * the operational room (TCP + TLS to the beacon), so only the hello and the
 * inner handshake remain once the certificate is in.
 */
typedef struct predial {
    ct_operator *op;
    ct_beacon_options bo;
    ct_conn *conn;
    ct_err rc;
    int64_t at;
    pthread_t th;
    int started;
} predial;

#define OP_PREDIAL_MAX_AGE_MS 5000 /* the beacon wants the hello within 10 s */

static void *predial_main(void *arg)
{
    predial *p = arg;
    p->rc = ct_beacon_open(p->op->ctx, &p->bo, &p->conn, NULL);
    p->at = ctp_mono_ms();
    ct_thread_cleanup();
    return NULL;
}

static void predial_start(ct_operator *op, const ct_beacon_options *bo, predial *p)
{
    memset(p, 0, sizeof *p);
    p->op = op;
    p->bo = *bo;
    p->bo.transport = ctp_canceller_transport(op->cancel_pre);
    p->started = pthread_create(&p->th, NULL, predial_main, p) == 0;
}

/* Joins the thread; returns its connection if it is fresh enough, else NULL. */
static ct_conn *predial_finish(predial *p, int want)
{
    ct_conn *c;
    if (!p->started)
        return NULL;
    pthread_join(p->th, NULL);
    p->started = 0;
    c = p->conn;
    p->conn = NULL;
    if (c && (!want || p->rc != CT_OK || ctp_mono_ms() - p->at > OP_PREDIAL_MAX_AGE_MS)) {
        ct_conn_free(c);
        c = NULL;
    }
    return c;
}

/* Renew when two thirds of the certificate's life have passed. */
static int needs_renewal(ct_operator *op, const ct_credentials *c, int64_t issued_at)
{
    int64_t na = ct_credentials_not_after(c), now = ct_ctx_wall_ms(op->ctx);
    return na > issued_at && now >= issued_at + (na - issued_at) * 2 / 3;
}

static void *worker_main(void *arg)
{
    ct_operator *op = arg;
    ct_beacon_options bo = op->beacon;
    ct_credentials *creds = NULL;
    ct_tls_config *cfg = NULL;
    ct_conn *pre = NULL;
    unsigned attempt = 0, pair_timeouts = 0;
    int64_t issued_at = 0;

    bo.transport = ctp_canceller_transport(op->cancel);
    while (!stopping(op)) {
        ct_conn *conn = NULL, *tls = NULL;
        ct_error err;
        ct_err rc;

        if (creds && needs_renewal(op, creds, issued_at)) {
            emit(op, CT_EV_ERROR, "init", CT_OK, "broker certificate due for renewal: bootstrapping again");
            ct_tls_config_free(cfg);
            ct_credentials_free(creds);
            cfg = NULL;
            creds = NULL;
        }
        if (!creds) {
            bo.pair_timeout_ms = op->beacon.pair_timeout_ms ? op->beacon.pair_timeout_ms
                                                            : OP_PAIR_TIMEOUT_MS;
            emit(op, CT_EV_WAITING, "init", CT_OK, "bootstrapping through the beacon");
            {
                predial p;
                predial_start(op, &bo, &p);
                rc = do_bootstrap(op, &bo, &creds, &err);
                pre = predial_finish(&p, rc == CT_OK && !stopping(op));
            }
            if (stopping(op))
                break;
            if (rc != CT_OK) {
                emit(op, rc == CT_E_DENIED ? CT_EV_BOOTSTRAP_REFUSED : CT_EV_ERROR, "init", rc,
                     err.message);
                ctp_stopper_wait(&op->stop, ctp_backoff_ms(op->ctx, op->o.retry_min_ms,
                                                           op->o.retry_max_ms, attempt++));
                continue;
            }
            if (op->have_expect_room &&
                !ct_memeq(ct_credentials_operational_room(creds), op->expect_room, 32)) {
                emit(op, CT_EV_BOOTSTRAP_REFUSED, "init", CT_E_CERT,
                     "the bootstrap answer's CA is not the expected one (--operational-room): "
                     "discarded; is someone else posing as the bridge?");
                ct_credentials_free(creds);
                creds = NULL;
                ctp_stopper_wait(&op->stop, ctp_backoff_ms(op->ctx, op->o.retry_min_ms,
                                                           op->o.retry_max_ms, attempt++));
                continue;
            }
            issued_at = ct_ctx_wall_ms(op->ctx);
            emit(op, CT_EV_BOOTSTRAP_ISSUED, "init", CT_OK,
                 ct_credentials_reissued(creds) ? "broker certificate re-issued"
                                                : "broker certificate received");
            if ((rc = ct_credentials_tls_config(op->ctx, creds, &cfg, &err)) != CT_OK) {
                emit(op, CT_EV_ERROR, "operational", rc, err.message);
                ct_credentials_free(creds);
                creds = NULL;
                ctp_stopper_wait(&op->stop, ctp_backoff_ms(op->ctx, op->o.retry_min_ms,
                                                           op->o.retry_max_ms, attempt++));
                continue;
            }
            attempt = 0;
            pair_timeouts = 0;
        }
        bo.pair_timeout_ms = op->beacon.pair_timeout_ms ? op->beacon.pair_timeout_ms
                                                        : OP_PAIR_TIMEOUT_MS;
        if (pre) {
            /* the connection opened during the bootstrap: just the hello */
            rc = ct_beacon_join(pre, &bo, CT_ROLE_OPERATOR,
                                ct_credentials_operational_room(creds), &err);
            if (rc == CT_OK)
                conn = pre;
            else
                ct_conn_free(pre);
            pre = NULL;
        } else {
            rc = ct_beacon_connect(op->ctx, &bo, CT_ROLE_OPERATOR,
                                   ct_credentials_operational_room(creds), &conn, &err);
        }
        if (stopping(op)) {
            ct_conn_free(conn);
            break;
        }
        if (rc == CT_E_TIMEOUT && err.os_error == 0) {
            if (++pair_timeouts >= op->o.rebootstrap_after) {
                emit(op, CT_EV_ERROR, "operational", rc,
                     "no bridge in the operational room: bootstrapping again");
                ct_tls_config_free(cfg);
                ct_credentials_free(creds);
                cfg = NULL;
                creds = NULL;
            }
            continue;
        }
        if (rc != CT_OK) {
            emit(op, CT_EV_ERROR, "operational", rc, err.message);
            ctp_stopper_wait(&op->stop, ctp_backoff_ms(op->ctx, op->o.retry_min_ms,
                                                       op->o.retry_max_ms, attempt++));
            continue;
        }
        pair_timeouts = 0;
        rc = ct_tls_wrap(cfg, conn, -1, &tls, &err);
        if (rc != CT_OK) {
            emit(op, CT_EV_ERROR, "operational", rc, err.message);
            ctp_stopper_wait(&op->stop, ctp_backoff_ms(op->ctx, op->o.retry_min_ms,
                                                       op->o.retry_max_ms, attempt++));
            continue;
        }
        attempt = 0;
        run_session(op, tls);
        if (!stopping(op))
            ctp_stopper_wait(&op->stop, ctp_backoff_ms(op->ctx, op->o.retry_min_ms,
                                                       op->o.retry_max_ms, 0));
    }
    ct_conn_free(pre);
    ct_tls_config_free(cfg);
    ct_credentials_free(creds);
    pthread_mutex_lock(&op->mu);
    pthread_cond_broadcast(&op->cv);
    pthread_mutex_unlock(&op->mu);
    ct_thread_cleanup();
    return NULL;
}

ct_err ct_operator_new(ct_ctx *ctx, const ct_operator_options *opts, ct_operator **out,
                       ct_error *err)
{
    ct_operator *op;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_operator_new: out is NULL");
    *out = NULL;
    if (!ctx || !opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_operator_new: NULL argument");
    if (opts->version != CT_OPERATOR_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_operator_options version %u is not supported",
                       (unsigned)opts->version);
    if (!opts->beacon || !opts->fingerprint)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_operator_new: fingerprint and beacon are required");
    if (opts->beacon->version != CT_BEACON_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_beacon_options version %u is not supported",
                       (unsigned)opts->beacon->version);
    if (opts->session && opts->session->version != CT_SESSION_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_session_options version %u is not supported",
                       (unsigned)opts->session->version);
    if (opts->token_file && opts->token_fn)
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_operator_new: give token_file or token_fn, not both");
    if (!(op = calloc(1, sizeof *op)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    op->ctx = ctx;
    op->o = *opts;
    op->beacon = *opts->beacon;
    op->sopts = opts->session ? *opts->session : (ct_session_options)CT_SESSION_OPTIONS_INIT;
    if ((rc = ct_fingerprint_canonical(opts->fingerprint, op->fp, err)) != CT_OK) {
        free(op);
        return rc;
    }
    snprintf(op->fp8, sizeof op->fp8, "%.8s", op->fp);
    if (!op->o.retry_min_ms || op->o.retry_min_ms < 0)
        op->o.retry_min_ms = 200;
    if (op->o.retry_max_ms <= 0)
        op->o.retry_max_ms = 30000;
    if (op->o.retry_max_ms < op->o.retry_min_ms)
        op->o.retry_max_ms = op->o.retry_min_ms;
    if (!op->o.rebootstrap_after)
        op->o.rebootstrap_after = 3;
    rc = CT_OK;
    if (opts->token_file && !(op->token_file = strdup(opts->token_file)))
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if (rc == CT_OK && opts->jwks && opts->jwks_len) {
        if (!(op->jwks = ctp_memdup(opts->jwks, opts->jwks_len)))
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        op->jwks_len = opts->jwks_len;
    }
    if (opts->expect_operational_room) {
        memcpy(op->expect_room, opts->expect_operational_room, 32);
        op->have_expect_room = 1;
    }
    op->o.expect_operational_room = NULL;
    op->o.token_file = NULL;
    op->o.jwks = NULL;
    op->o.fingerprint = NULL;
    op->stop.fds[0] = op->stop.fds[1] = -1;
    if (rc == CT_OK)
        rc = ctp_stopper_init(&op->stop, err);
    if (rc == CT_OK)
        rc = ctp_canceller_new(ctx, &op->cancel, err);
    if (rc == CT_OK)
        rc = ctp_canceller_new(ctx, &op->cancel_pre, err);
    pthread_mutex_init(&op->mu, NULL);
    pthread_cond_init(&op->cv, NULL);
    if (rc != CT_OK) {
        ct_operator_free(op);
        return rc;
    }
    *out = op;
    return CT_OK;
}

ct_err ct_operator_run(ct_operator *op, ct_error *err)
{
    pthread_t th;

    if (!op)
        return ctp_err(err, CT_E_INVALID, 0, "ct_operator_run: NULL operator");
    pthread_mutex_lock(&op->mu);
    if (op->running) {
        pthread_mutex_unlock(&op->mu);
        return ctp_err(err, CT_E_STATE, 0, "ct_operator_run: already running");
    }
    op->running = 1;
    pthread_mutex_unlock(&op->mu);
    op->t0 = ctp_mono_ms();
    if (pthread_create(&th, NULL, worker_main, op) != 0) {
        pthread_mutex_lock(&op->mu);
        op->running = 0;
        pthread_mutex_unlock(&op->mu);
        return ctp_err(err, CT_E_INTERNAL, errno, "cannot start the operator thread");
    }
    while (!ctp_stopper_wait(&op->stop, 60000))
        ;
    /* A live session closes itself (GOAWAY); blocked connects are cut. */
    {
        int has_sess;
        pthread_mutex_lock(&op->mu);
        has_sess = op->sess != NULL;
        pthread_mutex_unlock(&op->mu);
        /* the session may run on the pre-opened connection: cut neither */
        if (!has_sess) {
            ctp_canceller_fire(op->cancel);
            ctp_canceller_fire(op->cancel_pre);
        }
    }
    {
        /* give a session GOAWAY time, then cut whatever remains */
        int64_t deadline = ctp_mono_ms() + OP_SESSION_CLOSE_MS + 1000;
        for (;;) {
            int busy;
            pthread_mutex_lock(&op->mu);
            busy = op->sess != NULL;
            pthread_mutex_unlock(&op->mu);
            if (!busy || ctp_remaining(deadline) == 0)
                break;
            {
                struct timespec ts = { 0, 20 * 1000000L };
                nanosleep(&ts, NULL);
            }
        }
        ctp_canceller_fire(op->cancel);
        ctp_canceller_fire(op->cancel_pre);
    }
    pthread_join(th, NULL);
    pthread_mutex_lock(&op->mu);
    op->running = 0;
    pthread_mutex_unlock(&op->mu);
    return CT_OK;
}

void ct_operator_stop(ct_operator *op)
{
    if (op)
        ctp_stopper_raise(&op->stop);
}

ct_err ct_operator_request(ct_operator *op, const void *req, size_t len, int timeout_ms,
                           uint8_t **resp, size_t *resp_len, ct_error *err)
{
    int64_t deadline;
    ct_session *s = NULL;
    ct_err rc;

    if (!op)
        return ctp_err(err, CT_E_INVALID, 0, "ct_operator_request: NULL operator");
    if (timeout_ms == 0)
        return ctp_err(err, CT_E_INVALID, 0, "ct_operator_request: timeout 0");
    deadline = ctp_deadline(op->ctx, timeout_ms);
    pthread_mutex_lock(&op->mu);
    for (;;) {
        struct timespec ts;
        int left;
        if (op->stop.raised) {
            pthread_mutex_unlock(&op->mu);
            return ctp_err(err, CT_E_CLOSED, 0, "operator stopping");
        }
        if (op->sess && !op->sess_closing && ct_session_is_open(op->sess)) {
            s = op->sess;
            op->users++;
            break;
        }
        left = ctp_remaining(deadline);
        if (left == 0) {
            pthread_mutex_unlock(&op->mu);
            return ctp_err(err, CT_E_TIMEOUT, 0, "no operational session within the timeout");
        }
        if (left > 100)
            left = 100;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)left * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&op->cv, &op->mu, &ts);
    }
    pthread_mutex_unlock(&op->mu);
    {
        int left = ctp_remaining(deadline);
        rc = ct_session_request(s, req, len, left > 0 ? left : 1, resp, resp_len, err);
    }
    pthread_mutex_lock(&op->mu);
    op->users--;
    pthread_cond_broadcast(&op->cv);
    pthread_mutex_unlock(&op->mu);
    return rc;
}

int ct_operator_connected(ct_operator *op)
{
    int up;
    if (!op)
        return 0;
    pthread_mutex_lock(&op->mu);
    up = op->sess && !op->sess_closing && ct_session_is_open(op->sess);
    pthread_mutex_unlock(&op->mu);
    return up;
}

void ct_operator_free(ct_operator *op)
{
    if (!op)
        return;
    ctp_canceller_free(op->cancel);
    ctp_canceller_free(op->cancel_pre);
    ctp_stopper_destroy(&op->stop);
    pthread_mutex_destroy(&op->mu);
    pthread_cond_destroy(&op->cv);
    free(op->token_file);
    if (op->jwks) {
        ct_secure_wipe(op->jwks, op->jwks_len);
        free(op->jwks);
    }
    free(op);
}
