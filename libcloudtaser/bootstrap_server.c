/*
 * bootstrap_server.c - the bridge side of the init exchange (PROTOCOL.md
 * 2): read one request inside the PSK TLS session, decide, claim or record
 * the re-bootstrap with check-and-set on clusters/<fp>/initialized, and
 * only then sign the broker certificate.
 *
 * Order (each step refuses with its reason):
 *   request (bounded, before the deadline) -> fingerprint = ours ->
 *   registered -> first bootstrap: not initialized, not expired, CSR,
 *   token against the key set sent with it -> claim (create-only) |
 *   re-bootstrap: initialized with pinned keys, CSR, token against the pins,
 *   jti not seen -> record it (check-and-set) -> issue -> answer.
 * Logs carry at most 8 characters of the fingerprint and never a token or
 * key.
 */
#include "bootstrap_internal.h"
#include "pki_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct serve {
    ct_ctx *ctx;
    ct_store *store;
    char fp[CT_FINGERPRINT_LEN + 1];
    const char *audience;
    uint32_t max_life_s;
    uint32_t broker_days;
    int64_t deadline;
    ct_conn *tls;
    ct_bootstrap_result *res;
    char k_init[CT_STORE_KEY_MAX];
    /* the request */
    ctp_boot_request req;
    /* the CA, loaded before anything is committed */
    uint8_t *ca;
    size_t ca_len;
    ct_key *ca_key;
} serve;

/* Sends the answer, ends our direction and waits (briefly) for the operator's close. */
static ct_err answer_and_close(serve *s, const char *body, size_t len, ct_error *err)
{
    int64_t linger = ctp_mono_ms() + CTP_BOOT_LINGER_MS;
    uint8_t buf[256];
    ct_err rc;
    int i, ms;

    rc = ctp_boot_send_frame(s->tls, body, len, s->deadline, err);
    if (rc != CT_OK)
        return rc;
    if (linger > s->deadline)
        linger = s->deadline;
    ms = ctp_remaining(linger);
    (void)ct_conn_shutdown_write(s->tls, ms ? ms : 1, NULL);
    /*
     * Closing with unread bytes makes TCP send a reset that can destroy the
     * answer in flight; the operator closes once it has read it.
     */
    for (i = 0; i < 16; i++) {
        size_t got = 0;
        ms = ctp_remaining(linger);
        if (ms == 0 || ct_conn_recv(s->tls, buf, sizeof buf, &got, ms, NULL) != CT_OK)
            break;
    }
    return CT_OK;
}

/*
 * Shortens every copy of the full fingerprint in `msg` to 8 characters and
 * "...": messages from other layers name store keys (clusters/<fp>/...).
 */
static void redact_fp(char *msg, const char *fp)
{
    char *hit;
    while ((hit = strstr(msg, fp)) != NULL) {
        memcpy(hit + 8, "...", 3);
        memmove(hit + 11, hit + CT_FINGERPRINT_LEN, strlen(hit + CT_FINGERPRINT_LEN) + 1);
    }
}

/*
 * Refuses: sends the reason and `fmt` to the operator, logs, fills the
 * result. Returns CT_E_DENIED, or for CT_BOOT_R_INTERNAL `code` (the
 * store's or crypto's error) with the detail, which the operator does not
 * get.
 */
CTP_PRINTF(5, 6)
static ct_err refuse(serve *s, ct_boot_refusal reason, ct_err code, ct_error *err,
                     const char *fmt, ...)
{
    char msg[CTP_BOOT_MAX_TEXT + 1], *body = NULL;
    size_t len = 0;
    ct_error e2;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    redact_fp(msg, s->fp);
    s->res->refusal = reason;
    ctp_log(s->ctx, CT_LOG_WARNING, "bootstrap.refused", "cluster %.8s...: refused (%s): %s",
            s->fp, ct_boot_refusal_name(reason), msg);
    if (ctp_boot_answer_refused(reason,
                                reason == CT_BOOT_R_INTERNAL
                                    ? "the bridge could not complete the bootstrap (store or "
                                      "crypto failure); see the bridge's log"
                                    : msg,
                                &body, &len, &e2) == CT_OK &&
        answer_and_close(s, body, len, &e2) != CT_OK) {
        redact_fp(e2.message, s->fp);
        ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.send",
                "cluster %.8s...: the refusal could not be sent: %s", s->fp, e2.message);
    }
    free(body);
    if (reason == CT_BOOT_R_INTERNAL)
        return ctp_err(err, code, 0, "bootstrap of cluster %.8s... failed: %s", s->fp, msg);
    return ctp_err(err, CT_E_DENIED, (int32_t)reason, "refused (%s): %s",
                   ct_boot_refusal_name(reason), msg);
}

/* An internal failure from error detail `e`. */
static ct_err internal(serve *s, const ct_error *e, ct_err code, const char *what, ct_error *err)
{
    return refuse(s, CT_BOOT_R_INTERNAL, code, err, "%s: %s", what, e->message);
}

/*
 * The replay identifier of a verified token: its jti, or (tokens without
 * one, Kubernetes before 1.29) SHA-256 of its signing input, the part the
 * signature covers (header.payload), which no one can vary without the key;
 * the signature itself could be re-encoded (ECDSA is malleable).
 */
static ct_err replay_id(const ct_secret *token, const ct_jwt_claims *c,
                        char out[CT_JWT_CLAIM_MAX])
{
    const char *t = (const char *)ct_secret_data(token), *dot;
    size_t n = ct_secret_len(token);
    uint8_t h[32];
    char hex[65];

    if (c->jti[0]) {
        snprintf(out, CT_JWT_CLAIM_MAX, "%s", c->jti);
        return CT_OK;
    }
    while (n && (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n')) {
        t++;
        n--;
    }
    dot = memrchr(t, '.', n);
    if (!dot)
        return CT_E_INVALID;
    if (ct_sha256(t, (size_t)(dot - t), h) != CT_OK)
        return CT_E_CRYPTO;
    snprintf(out, CT_JWT_CLAIM_MAX, "sha256:%s", ct_hex(h, sizeof h, hex));
    return CT_OK;
}

/* Verifies the request's token; refusals are BAD_TOKEN. */
static ct_err verify_token(serve *s, const ct_jwks *jwks, const ct_jwt_expect *x,
                           ct_jwt_claims *claims, ct_error *err)
{
    ct_error e2;
    ct_err rc = ct_jwt_verify(s->ctx, jwks, (const char *)ct_secret_data(s->req.token),
                              ct_secret_len(s->req.token), x, claims, &e2);
    if (rc == CT_E_NOMEM)
        return internal(s, &e2, rc, "verifying the token", err);
    if (rc != CT_OK)
        return refuse(s, CT_BOOT_R_BAD_TOKEN, rc, err, "the token does not verify: %s",
                      e2.message);
    return CT_OK;
}

static ct_err load_ca(serve *s, ct_error *err)
{
    ct_secret *pem = NULL;
    ct_error e2;
    ct_err rc;

    rc = ctp_boot_read_keypair(s->store, s->fp, "ca", &s->ca, &s->ca_len, &pem, &e2);
    if (rc == CT_OK)
        rc = ct_key_load(s->ctx, ct_secret_data(pem), ct_secret_len(pem), &s->ca_key, &e2);
    ct_secret_free(pem);
    if (rc != CT_OK)
        return internal(s, &e2, rc == CT_E_NOTFOUND ? CT_E_STORE : rc,
                        "reading the cluster CA", err);
    return CT_OK;
}

static ct_err check_csr(serve *s, ct_error *err)
{
    ct_error e2;
    ct_err rc = ctp_pki_csr_check(s->req.csr, s->req.csr_len, &e2);
    if (rc == CT_E_NOMEM)
        return internal(s, &e2, rc, "checking the request", err);
    if (rc != CT_OK)
        return refuse(s, CT_BOOT_R_BAD_REQUEST, rc, err, "%s", e2.message);
    return CT_OK;
}

static void init_expect(serve *s, ct_jwt_expect *x)
{
    ct_jwt_expect d = CT_JWT_EXPECT_INIT;
    *x = d;
    x->max_lifetime_s = s->max_life_s;
    x->leeway_s = CTP_BOOT_LEEWAY_S;
}

/* First bootstrap: pin (or not) and claim with a create-only write. */
static ct_err first_bootstrap(serve *s, const ct_registration *reg, ct_error *err)
{
    ctp_boot_record *rec = NULL;
    ct_jwks *jwks = NULL;
    char *canon = NULL, *body = NULL, tbuf[32];
    size_t len = 0;
    ct_jwt_claims peek, claims;
    ct_jwt_expect x;
    ct_error e2;
    int64_t now = ct_ctx_wall_ms(s->ctx);
    ct_err rc;

    if (ct_registration_state(reg) == CT_REG_EXPIRED)
        return refuse(s, CT_BOOT_R_EXPIRED, CT_E_DENIED, err,
                      "the registration expired at %s before the first bootstrap; register "
                      "the cluster again",
                      ctp_pki_time_str(ct_registration_expires_at(reg) / 1000, tbuf));
    if ((rc = load_ca(s, err)) != CT_OK || (rc = check_csr(s, err)) != CT_OK)
        return rc;
    if (!(rec = calloc(1, sizeof *rec))) {
        ctp_err(&e2, CT_E_NOMEM, 0, "out of memory");
        return internal(s, &e2, CT_E_NOMEM, "claim", err);
    }
    memcpy(rec->fingerprint, s->fp, sizeof s->fp);
    snprintf(rec->audience, sizeof rec->audience, "%s", s->audience);
    rec->initialized_at = rec->updated_at = now;

    if (s->req.jwks) {
        rc = ct_jwks_parse(s->ctx, s->req.jwks, s->req.jwks_len, &jwks, &e2);
        if (rc == CT_E_NOMEM) {
            rc = internal(s, &e2, rc, "reading the key set", err);
            goto out;
        }
        if (rc != CT_OK) {
            rc = refuse(s, CT_BOOT_R_BAD_REQUEST, rc, err, "the key set (jwks): %s",
                        e2.message);
            goto out;
        }
        /* The token's own issuer: pinned from now on, as is its subject. */
        if (ct_jwt_peek((const char *)ct_secret_data(s->req.token),
                        ct_secret_len(s->req.token), &peek, &e2) != CT_OK) {
            rc = refuse(s, CT_BOOT_R_BAD_TOKEN, CT_E_DENIED, err, "the token: %s", e2.message);
            goto out;
        }
        init_expect(s, &x);
        x.issuer = peek.issuer;
        x.audience = s->audience;
        if ((rc = verify_token(s, jwks, &x, &claims, err)) != CT_OK)
            goto out;
        if (!claims.subject[0] || !claims.issuer[0]) {
            rc = refuse(s, CT_BOOT_R_BAD_TOKEN, CT_E_DENIED, err,
                        "the token has no subject or issuer to pin");
            goto out;
        }
        if ((rc = ct_jwks_serialize(jwks, &canon, &e2)) != CT_OK) {
            rc = internal(s, &e2, rc, "serialising the key set", err);
            goto out;
        }
        rec->jwks = canon;
        canon = NULL;
        memcpy(rec->issuer, claims.issuer, sizeof rec->issuer);
        memcpy(rec->subject, claims.subject, sizeof rec->subject);
        /* The first token can never be used again, for a re-bootstrap either. */
        if (replay_id(s->req.token, &claims, rec->jtis[0].id) != CT_OK) {
            rc = refuse(s, CT_BOOT_R_BAD_TOKEN, CT_E_DENIED, err, "the token is malformed");
            goto out;
        }
        rec->jtis[0].exp = claims.exp;
        rec->n_jtis = 1;
    }
    if ((rc = ctp_boot_record_encode(rec, &body, &len, &e2)) != CT_OK) {
        rc = internal(s, &e2, rc, "building the initialized record", err);
        goto out;
    }
    /* The claim: of any number of bridges racing here, exactly one creates it. */
    rc = ct_store_put(s->store, s->k_init, body, len, CT_STORE_CREATE, NULL, &e2);
    if (rc == CT_E_CONFLICT) {
        ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.claim_lost",
                "cluster %.8s...: another bridge claimed the cluster first", s->fp);
        rc = refuse(s, CT_BOOT_R_ALREADY_INITIALIZED, CT_E_DENIED, err,
                    "cluster %.8s... is already initialized; re-bootstrap with a token", s->fp);
        goto out;
    }
    if (rc != CT_OK) {
        rc = internal(s, &e2, rc == CT_E_NOMEM ? rc : CT_E_STORE, "writing the claim", err);
        goto out;
    }
    s->res->claimed = 1;
    if (rec->jwks)
        ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.claimed",
                "cluster %.8s...: claimed; pinned %zu issuer key(s), issuer %s, subject %s",
                s->fp, ct_jwks_count(jwks), rec->issuer, rec->subject);
    else
        ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.claimed",
                "cluster %.8s...: claimed without a token: nothing pinned, so re-bootstrap "
                "will be refused",
                s->fp);
out:
    free(body);
    ct_free(canon);
    ct_jwks_free(jwks);
    ctp_boot_record_free(rec);
    return rc;
}

/* Re-bootstrap: the token against the pins, its jti recorded with check-and-set. */
static ct_err re_bootstrap(serve *s, const ct_registration *reg, ct_secret *val,
                           uint64_t version, ct_error *err)
{
    ctp_boot_record *rec = NULL;
    ct_jwks *jwks = NULL;
    ct_jwt_claims claims;
    ct_jwt_expect x;
    char id[CT_JWT_CLAIM_MAX], *body = NULL;
    size_t len = 0;
    ct_error e2;
    int tries;
    ct_err rc;

    (void)reg;
    rc = ctp_boot_record_decode(s->k_init, s->fp, ct_secret_data(val), ct_secret_len(val), &rec,
                                &e2);
    if (rc != CT_OK)
        return internal(s, &e2, rc, "reading the initialized record", err);
    if (!rec->jwks) {
        rc = refuse(s, CT_BOOT_R_NO_PINNED_KEYS, CT_E_DENIED, err,
                    "the cluster was initialized without a token, so no issuer keys are "
                    "pinned; deregister and register it again");
        goto out;
    }
    if ((rc = load_ca(s, err)) != CT_OK || (rc = check_csr(s, err)) != CT_OK)
        goto out;
    if ((rc = ct_jwks_parse(s->ctx, rec->jwks, strlen(rec->jwks), &jwks, &e2)) != CT_OK) {
        rc = internal(s, &e2, rc == CT_E_NOMEM ? rc : CT_E_STORE, "the pinned key set", err);
        goto out;
    }
    init_expect(s, &x);
    x.issuer = rec->issuer;
    x.subject = rec->subject;
    x.audience = rec->audience; /* the audience pinned with the claim */
    if ((rc = verify_token(s, jwks, &x, &claims, err)) != CT_OK)
        goto out;
    if (replay_id(s->req.token, &claims, id) != CT_OK) {
        rc = refuse(s, CT_BOOT_R_BAD_TOKEN, CT_E_DENIED, err, "the token is malformed");
        goto out;
    }
    for (tries = 0;; tries++) {
        int64_t now = ct_ctx_wall_ms(s->ctx);
        ctp_boot_record_prune(rec, now / 1000);
        if (ctp_boot_record_has_jti(rec, id)) {
            rc = refuse(s, CT_BOOT_R_TOKEN_REPLAY, CT_E_DENIED, err,
                        "this token was used before; present a fresh one");
            goto out;
        }
        if (ctp_boot_record_add_jti(rec, id, claims.exp) != 0) {
            rc = refuse(s, CT_BOOT_R_TOKEN_REPLAY, CT_E_DENIED, err,
                        "%d re-bootstraps within the token lifetime: the replay list is full; "
                        "retry once older tokens have expired",
                        CTP_BOOT_MAX_JTIS);
            goto out;
        }
        rec->reissues++;
        rec->updated_at = now;
        free(body);
        body = NULL;
        if ((rc = ctp_boot_record_encode(rec, &body, &len, &e2)) != CT_OK) {
            rc = internal(s, &e2, rc, "building the initialized record", err);
            goto out;
        }
        rc = ct_store_put(s->store, s->k_init, body, len, (int64_t)version, NULL, &e2);
        if (rc == CT_OK)
            break;
        if (rc != CT_E_CONFLICT || tries + 1 >= CTP_BOOT_CAS_TRIES) {
            rc = internal(s, &e2, rc == CT_E_CONFLICT ? CT_E_STORE : rc,
                          "recording the re-bootstrap", err);
            goto out;
        }
        /* Someone else wrote the record meanwhile: read it again, check again. */
        ctp_boot_record_free(rec);
        rec = NULL;
        {
            ct_secret *v2 = NULL;
            rc = ct_store_get(s->store, s->k_init, &v2, &version, &e2);
            if (rc == CT_OK)
                rc = ctp_boot_record_decode(s->k_init, s->fp, ct_secret_data(v2),
                                            ct_secret_len(v2), &rec, &e2);
            ct_secret_free(v2);
            if (rc != CT_OK) {
                rc = internal(s, &e2, rc == CT_E_NOTFOUND ? CT_E_STORE : rc,
                              "re-reading the initialized record", err);
                goto out;
            }
        }
    }
    ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.reissue",
            "cluster %.8s...: re-bootstrap #%u for subject %s", s->fp, rec->reissues,
            rec->subject);
out:
    free(body);
    ct_jwks_free(jwks);
    ctp_boot_record_free(rec);
    return rc;
}

static ct_err issue(serve *s, int reissue, ct_error *err)
{
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    const char *const names[] = {CT_BROKER_SERVER_NAME};
    uint8_t *cert = NULL;
    size_t cert_len = 0, len = 0;
    char *body = NULL, hex[17];
    ct_error e2;
    ct_err rc;

    co.common_name = CTP_BOOT_BROKER_CN;
    co.organization = CTP_BOOT_ORG;
    co.dns_names = names;
    co.n_dns_names = 1;
    co.days_valid = s->broker_days;
    rc = ct_cert_issue(s->ctx, s->ca, s->ca_len, s->ca_key, s->req.csr, s->req.csr_len,
                       CT_CERT_SERVER, &co, &cert, &cert_len, &e2);
    if (rc != CT_OK)
        return internal(s, &e2, rc, "issuing the broker certificate", err);
    if ((rc = ctp_boot_answer_issued(s->ca, s->ca_len, cert, cert_len, reissue, &body, &len,
                                     &e2)) != CT_OK) {
        rc = internal(s, &e2, rc, "building the answer", err);
        goto out;
    }
    (void)ct_sha256(cert, cert_len, s->res->cert_sha256);
    if ((rc = answer_and_close(s, body, len, &e2)) != CT_OK) {
        redact_fp(e2.message, s->fp);
        ctp_log(s->ctx, CT_LOG_WARNING, "bootstrap.send",
                "cluster %.8s...: the certificate was issued but could not be sent: %s", s->fp,
                e2.message);
        rc = ctp_err(err, rc, e2.os_error, "sending the answer: %s", e2.message);
        goto out;
    }
    s->res->issued = 1;
    ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.issued",
            "cluster %.8s...: broker certificate %s (sha256 %s...)", s->fp,
            reissue ? "re-issued" : "issued", ct_hex(s->res->cert_sha256, 8, hex));
out:
    free(body);
    ct_free(cert);
    return rc;
}

static ct_err handle(serve *s, ct_error *err)
{
    ct_secret *raw = NULL, *val = NULL;
    ct_registration *reg = NULL;
    uint32_t announced = 0;
    uint64_t version = 0;
    ct_error e2;
    ct_err rc;

    rc = ctp_boot_recv_frame(s->tls, s->deadline, &raw, &announced, &e2);
    if (rc == CT_E_TOOBIG)
        return refuse(s, CT_BOOT_R_BAD_REQUEST, rc, err, "request of %u bytes exceeds %u",
                      announced, (unsigned)CT_BOOTSTRAP_MAX_MSG);
    if (rc == CT_E_PROTO)
        return refuse(s, CT_BOOT_R_BAD_REQUEST, rc, err, "%s", e2.message);
    if (rc != CT_OK) {
        redact_fp(e2.message, s->fp);
        ctp_log(s->ctx, CT_LOG_NOTICE, "bootstrap.request",
                "cluster %.8s...: no request: %s", s->fp, e2.message);
        if (err)
            *err = e2;
        return rc;
    }
    rc = ctp_boot_request_decode(ct_secret_data(raw), ct_secret_len(raw), &s->req, &e2);
    ct_secret_free(raw);
    if (rc == CT_E_NOMEM)
        return internal(s, &e2, rc, "decoding the request", err);
    if (rc != CT_OK)
        return refuse(s, CT_BOOT_R_BAD_REQUEST, rc, err, "%s", e2.message);
    s->res->reissue = !s->req.first;
    if (strcmp(s->req.fingerprint, s->fp) != 0)
        return refuse(s, CT_BOOT_R_WRONG_CLUSTER, CT_E_DENIED, err,
                      "the request is for cluster %.8s..., this room is cluster %.8s...",
                      s->req.fingerprint, s->fp);

    rc = ct_registration_get(s->ctx, s->store, s->fp, &reg, &e2);
    if (rc == CT_E_NOTFOUND)
        return refuse(s, CT_BOOT_R_NOT_REGISTERED, CT_E_DENIED, err,
                      "cluster %.8s... is not registered with this secret store", s->fp);
    if (rc != CT_OK)
        return internal(s, &e2, rc, "reading the registration", err);
    rc = ct_store_get(s->store, s->k_init, &val, &version, &e2);
    if (rc != CT_OK && rc != CT_E_NOTFOUND) {
        rc = internal(s, &e2, rc, "reading the initialized record", err);
        goto out;
    }
    if (s->req.first) {
        if (rc == CT_OK) {
            rc = refuse(s, CT_BOOT_R_ALREADY_INITIALIZED, CT_E_DENIED, err,
                        "cluster %.8s... is already initialized; re-bootstrap with a token",
                        s->fp);
            goto out;
        }
        rc = first_bootstrap(s, reg, err);
    } else {
        if (rc == CT_E_NOTFOUND) {
            char tbuf[32];
            if (ct_registration_state(reg) == CT_REG_EXPIRED)
                rc = refuse(s, CT_BOOT_R_EXPIRED, CT_E_DENIED, err,
                            "the registration expired at %s before the first bootstrap; "
                            "register the cluster again",
                            ctp_pki_time_str(ct_registration_expires_at(reg) / 1000, tbuf));
            else
                rc = refuse(s, CT_BOOT_R_BAD_REQUEST, CT_E_DENIED, err,
                            "cluster %.8s... is not initialized yet: send a first-bootstrap "
                            "request",
                            s->fp);
            goto out;
        }
        rc = re_bootstrap(s, reg, val, version, err);
    }
    if (rc == CT_OK)
        rc = issue(s, !s->req.first, err);
out:
    ct_secret_free(val);
    ct_registration_free(reg);
    return rc;
}

ct_err ct_bootstrap_serve(ct_ctx *ctx, ct_conn *paired, const ct_bootstrap_serve_options *opts,
                          ct_bootstrap_result *result, ct_error *err)
{
    ct_bootstrap_result dummy;
    ct_tls_config *cfg = NULL;
    serve s;
    int timeout, ms;
    ct_err rc;

    memset(&s, 0, sizeof s);
    s.res = result ? result : &dummy;
    memset(s.res, 0, sizeof *s.res);
    if (!ctx || !paired || !opts) {
        ct_conn_free(paired);
        return ctp_err(err, CT_E_INVALID, 0, "ct_bootstrap_serve: NULL argument");
    }
    if (opts->version != CT_BOOTSTRAP_SERVE_OPTIONS_VERSION) {
        ct_conn_free(paired);
        return ctp_err(err, CT_E_VERSION, 0,
                       "ct_bootstrap_serve_options version %u is not supported",
                       (unsigned)opts->version);
    }
    s.audience = opts->audience ? opts->audience : CT_BOOTSTRAP_DEFAULT_AUDIENCE;
    if (!opts->store || !opts->fingerprint || !s.audience[0] ||
        strlen(s.audience) >= CT_JWT_CLAIM_MAX) {
        ct_conn_free(paired);
        return ctp_err(err, CT_E_INVALID, 0,
                       "ct_bootstrap_serve: store and fingerprint are required, the audience "
                       "1..%d bytes",
                       CT_JWT_CLAIM_MAX - 1);
    }
    if ((rc = ct_fingerprint_canonical(opts->fingerprint, s.fp, err)) != CT_OK) {
        ct_conn_free(paired);
        return rc;
    }
    s.ctx = ctx;
    s.store = opts->store;
    s.max_life_s = opts->max_token_lifetime_s ? opts->max_token_lifetime_s
                                              : CT_BOOTSTRAP_DEFAULT_TOKEN_LIFETIME_S;
    s.broker_days = opts->broker_days ? opts->broker_days : CT_BOOTSTRAP_DEFAULT_BROKER_DAYS;
    timeout = opts->timeout_ms == 0 ? CTP_BOOT_DEFAULT_TIMEOUT_MS
                                    : ctp_timeout(ctx, opts->timeout_ms);
    s.deadline = ctp_deadline(ctx, timeout);
    ctp_boot_key(s.k_init, sizeof s.k_init, s.fp, "initialized");

    if ((rc = ctp_boot_psk_config(ctx, CT_TLS_SERVER, s.fp, &cfg, err)) != CT_OK) {
        ct_conn_free(paired);
        return rc;
    }
    ms = ctp_remaining(s.deadline);
    rc = ct_tls_wrap(cfg, paired, ms ? ms : 1, &s.tls, err);
    if (rc != CT_OK) {
        ctp_log(ctx, CT_LOG_NOTICE, "bootstrap.handshake",
                "cluster %.8s...: init handshake failed (%s)%s", s.fp, ct_err_name(rc),
                rc == CT_E_AUTH ? ": the peer does not know this cluster's PSK" : "");
        goto out;
    }
    rc = handle(&s, err);
out:
    ct_conn_free(s.tls);
    ct_tls_config_free(cfg);
    ctp_boot_request_clear(&s.req);
    ct_key_free(s.ca_key);
    ct_free(s.ca);
    return rc;
}
