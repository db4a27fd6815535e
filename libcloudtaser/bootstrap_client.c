/*
 * bootstrap_client.c - the operator side of the init exchange
 * (PROTOCOL.md 2): generate the broker key, send the request inside the
 * PSK TLS session, check what comes back, keep it in memory.
 */
#include "bootstrap_internal.h"
#include "pki_internal.h"

#include <stdlib.h>
#include <string.h>

/* What the operator sends, checked once (ct_bootstrap checks before dialling). */
typedef struct client_args {
    char fp[CT_FINGERPRINT_LEN + 1];
    const char *token, *jwks;
    size_t token_len, jwks_len;
    int first;
    int timeout_ms;
} client_args;

static ct_err check_opts(ct_ctx *ctx, const ct_bootstrap_options *o, client_args *a,
                         ct_error *err)
{
    memset(a, 0, sizeof *a);
    if (o->version != CT_BOOTSTRAP_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_bootstrap_options version %u is not supported",
                       (unsigned)o->version);
    if (!o->fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bootstrap_options.fingerprint is required");
    if (ct_fingerprint_canonical(o->fingerprint, a->fp, err) != CT_OK)
        return CT_E_INVALID;
    if (o->flags & ~CT_BOOTSTRAP_F_AUTO)
        return ctp_err(err, CT_E_INVALID, 0, "unknown CT_BOOTSTRAP_F_* flags 0x%x",
                       (unsigned)o->flags);
    a->first = o->first_bootstrap != 0;
    a->token = o->token;
    a->token_len = o->token && !o->token_len ? strlen(o->token) : o->token_len;
    if (a->token && a->token_len == 0)
        a->token = NULL;
    if (a->first) {
        a->jwks = o->jwks;
        a->jwks_len = o->jwks && !o->jwks_len ? strlen(o->jwks) : o->jwks_len;
        if (a->jwks && a->jwks_len == 0)
            a->jwks = NULL;
        /* On the wire a token without a key set is a re-bootstrap. */
        if (!a->jwks != !a->token)
            return ctp_err(err, CT_E_INVALID, 0,
                           "a first bootstrap sends the token together with the issuer's key "
                           "set (jwks), or neither");
    } else if (!a->token) {
        return ctp_err(err, CT_E_INVALID, 0, "a re-bootstrap needs the service-account token");
    }
    if (a->token_len > CT_JWT_MAX_LEN)
        return ctp_err(err, CT_E_INVALID, 0, "the token is longer than %u bytes",
                       (unsigned)CT_JWT_MAX_LEN);
    if (o->timeout_ms == 0)
        a->timeout_ms = CTP_BOOT_DEFAULT_TIMEOUT_MS;
    else
        a->timeout_ms = ctp_timeout(ctx, o->timeout_ms);
    return CT_OK;
}

/* The broker certificate's notAfter and whether it names CT_BROKER_SERVER_NAME. */
static ct_err cert_details(const uint8_t *cert, size_t len, int64_t *not_after_ms,
                           ct_error *err)
{
    DecodedCert *dc = ctp_pki_dc_new(cert, len);
    const DNS_entry *e;
    int64_t nb, na;
    int wrc, named = 0;
    ct_err rc = CT_OK;

    if (!dc)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    wrc = wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL);
    if (wrc != 0) {
        rc = ctp_err(err, CT_E_CERT, wrc, "the broker certificate cannot be parsed");
        goto out;
    }
    for (e = dc->altNames; e; e = e->next)
        if (e->type == ASN_DNS_TYPE && e->name && e->len == (int)strlen(CT_BROKER_SERVER_NAME) &&
            memcmp(e->name, CT_BROKER_SERVER_NAME, (size_t)e->len) == 0)
            named = 1;
    if (!named) {
        rc = ctp_err(err, CT_E_CERT, 0,
                     "the broker certificate does not carry the DNS name " CT_BROKER_SERVER_NAME);
        goto out;
    }
    if (ctp_pki_dc_dates(dc, &nb, &na) != 0) {
        rc = ctp_err(err, CT_E_CERT, 0, "the broker certificate has a malformed validity");
        goto out;
    }
    *not_after_ms = na * 1000;
out:
    ctp_pki_dc_free(dc);
    return rc;
}

/*
 * What came back must be a server certificate for exactly our key, naming
 * the broker, chained to the returned CA, which must be a CA; all valid now.
 * The CA itself is not known in advance: the PSK channel vouches for it.
 */
static ct_err check_issued(ct_ctx *ctx, const ctp_boot_answer *a, const ct_key *key, int first,
                           int64_t *not_after_ms, ct_error *err)
{
    uint8_t pin[32], want[32], *spki = NULL;
    size_t spki_len = 0;
    ct_error e2;
    ct_err rc;

    if (a->reissue == first)
        return ctp_err(err, CT_E_PROTO, 0, "the bridge answered a %s with a %s",
                       first ? "first bootstrap" : "re-bootstrap",
                       a->reissue ? "re-issue" : "first issue");
    if (ct_cert_verify(ctx, a->ca, a->ca_len, a->ca, a->ca_len, CT_CERT_CA, &e2) != CT_OK)
        return ctp_err(err, CT_E_CERT, 0, "the returned cluster CA does not verify: %s",
                       e2.message);
    if (ct_cert_verify(ctx, a->ca, a->ca_len, a->cert, a->cert_len, CT_CERT_SERVER, &e2) !=
        CT_OK)
        return ctp_err(err, CT_E_CERT, 0, "the broker certificate does not verify: %s",
                       e2.message);
    if ((rc = ct_key_public_der(key, &spki, &spki_len, err)) != CT_OK)
        return rc;
    rc = ct_sha256(spki, spki_len, want);
    ct_free(spki);
    if (rc != CT_OK)
        return ctp_err(err, rc, 0, "SHA-256 failed");
    if (ct_cert_pin_sha256(a->cert, a->cert_len, pin, &e2) != CT_OK || !ct_memeq(pin, want, 32))
        return ctp_err(err, CT_E_CERT, 0,
                       "the broker certificate is not for the key this operator generated");
    return cert_details(a->cert, a->cert_len, not_after_ms, err);
}

/* A refusal as CT_E_DENIED: os_error = the reason, the bridge's message. */
static ct_err refused(const ctp_boot_answer *a, ct_error *err)
{
    return ctp_err(err, CT_E_DENIED, (int32_t)a->reason,
                   "the bridge refused the bootstrap (%s): %s", a->reason_name,
                   a->message[0] ? a->message : "no detail");
}

static ct_err run(ct_ctx *ctx, ct_conn *paired, const client_args *a, ct_credentials **out,
                  ct_error *err)
{
    int64_t deadline = ctp_deadline(ctx, a->timeout_ms);
    ct_cert_options co = CT_CERT_OPTIONS_INIT;
    const char *const names[] = {CT_BROKER_SERVER_NAME};
    ct_jwks *jwks = NULL;
    char *canon = NULL;
    ct_key *key = NULL;
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    ct_secret *req = NULL, *ans = NULL;
    ct_tls_config *cfg = NULL;
    ct_conn *tls = NULL;
    ctp_boot_answer answer;
    int64_t not_after = 0;
    uint32_t announced = 0;
    ct_error e2;
    int ms;
    ct_err rc;

    memset(&answer, 0, sizeof answer);
    ct_error_clear(&e2);
    /* Everything that can fail locally first, before the bridge sees us. */
    if (a->jwks) {
        if ((rc = ct_jwks_parse(ctx, a->jwks, a->jwks_len, &jwks, err)) != CT_OK) {
            rc = ctp_err_keep(err, CT_E_INVALID, 0, "the key set (jwks) is not usable");
            goto out;
        }
        /* The bridge pins what it receives: send the keys we could verify with. */
        if ((rc = ct_jwks_serialize(jwks, &canon, err)) != CT_OK)
            goto out;
    }
    co.common_name = CTP_BOOT_BROKER_CN;
    co.organization = CTP_BOOT_ORG;
    co.dns_names = names;
    co.n_dns_names = 1;
    if ((rc = ct_key_generate(ctx, &key, err)) != CT_OK ||
        (rc = ct_csr_create(ctx, key, &co, &csr, &csr_len, err)) != CT_OK)
        goto out;
    rc = ctp_boot_request_encode(a->fp, csr, csr_len, canon, canon ? strlen(canon) : 0,
                                 a->token, a->token_len, &req, err);
    if (rc != CT_OK)
        goto out;
    if ((rc = ctp_boot_psk_config(ctx, CT_TLS_CLIENT, a->fp, &cfg, err)) != CT_OK)
        goto out;

    ms = ctp_remaining(deadline);
    rc = ct_tls_wrap(cfg, paired, ms ? ms : 1, &tls, err);
    paired = NULL; /* consumed */
    if (rc == CT_E_CLOSED || rc == CT_E_RESET) {
        /* A server that does not know the PSK sends no alert; it just closes. */
        rc = ctp_err(err, CT_E_AUTH, 0,
                     "init handshake: the bridge closed the connection: it does not know this "
                     "cluster's PSK (wrong fingerprint %.8s..., or a bridge for another "
                     "cluster), or it went away",
                     a->fp);
        goto out;
    }
    if (rc != CT_OK)
        goto out;
    if ((rc = ctp_boot_send_frame(tls, ct_secret_data(req), ct_secret_len(req), deadline,
                                  err)) != CT_OK)
        goto out;
    ct_secret_free(req); /* the token is out; drop our copy */
    req = NULL;
    rc = ctp_boot_recv_frame(tls, deadline, &ans, &announced, &e2);
    if (rc == CT_E_TOOBIG) {
        rc = ctp_err(err, CT_E_PROTO, 0, "the bridge's answer announces %u bytes (at most %u)",
                     announced, (unsigned)CT_BOOTSTRAP_MAX_MSG);
        goto out;
    }
    if (rc == CT_E_CLOSED || rc == CT_E_RESET) {
        rc = ctp_err(err, rc, e2.os_error,
                     "the bridge closed the connection without an answer (%s); if it claimed "
                     "the cluster before it went away, re-bootstrap with a token",
                     e2.message);
        goto out;
    }
    if (rc != CT_OK) {
        if (err)
            *err = e2;
        goto out;
    }
    rc = ctp_boot_answer_decode(ct_secret_data(ans), ct_secret_len(ans), &answer, &e2);
    if (rc != CT_OK) {
        /* a newer answer version is as unusable as a malformed one */
        rc = ctp_err(err, rc == CT_E_NOMEM ? rc : CT_E_PROTO, 0, "%s", e2.message);
        goto out;
    }
    if (!answer.issued) {
        rc = refused(&answer, err);
        goto out;
    }
    if ((rc = check_issued(ctx, &answer, key, a->first, &not_after, err)) != CT_OK)
        goto out;
    /* Orderly end; the bridge waits for it (it cannot fail what we hold). */
    ms = ctp_remaining(deadline);
    (void)ct_conn_shutdown_write(tls, ms ? ms : 1, NULL);
    rc = ctp_boot_credentials_new(answer.ca, answer.ca_len, answer.cert, answer.cert_len, key,
                                  answer.reissue, not_after, out, err);
    answer.ca = answer.cert = NULL;
    key = NULL;
    if (rc == CT_OK)
        ctp_log(ctx, CT_LOG_INFO, "bootstrap.ok", "cluster %.8s...: broker certificate %s",
                a->fp, (*out && ct_credentials_reissued(*out)) ? "re-issued" : "issued");
out:
    ctp_boot_answer_clear(&answer);
    ct_conn_free(tls);
    ct_conn_free(paired);
    ct_tls_config_free(cfg);
    ct_secret_free(req);
    ct_secret_free(ans);
    ct_free(csr);
    ct_key_free(key);
    ct_free(canon);
    ct_jwks_free(jwks);
    return rc;
}

ct_err ct_bootstrap_conn(ct_ctx *ctx, ct_conn *paired, const ct_bootstrap_options *opts,
                         ct_credentials **out, ct_error *err)
{
    client_args a;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!ctx || !paired || !opts || !out) {
        ct_conn_free(paired);
        return ctp_err(err, CT_E_INVALID, 0, "ct_bootstrap_conn: NULL argument");
    }
    if ((rc = check_opts(ctx, opts, &a, err)) != CT_OK) {
        ct_conn_free(paired);
        return rc;
    }
    return run(ctx, paired, &a, out, err);
}

ct_err ct_bootstrap(ct_ctx *ctx, const ct_beacon_options *beacon,
                    const ct_bootstrap_options *opts, ct_credentials **out, ct_error *err)
{
    uint8_t room[CT_ROOM_HASH_LEN];
    client_args a;
    ct_conn *conn = NULL;
    ct_error e;
    int attempt;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!ctx || !beacon || !opts || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bootstrap: NULL argument");
    if ((rc = check_opts(ctx, opts, &a, err)) != CT_OK)
        return rc;
    if ((rc = ct_room_hash_init(a.fp, room, err)) != CT_OK)
        return rc;
    ct_error_clear(&e);
    for (attempt = 0; attempt < 2; attempt++) {
        if ((rc = ct_beacon_connect(ctx, beacon, CT_ROLE_OPERATOR, room, &conn, &e)) != CT_OK)
            break;
        rc = run(ctx, conn, &a, out, &e);
        conn = NULL;
        if (rc == CT_E_DENIED && e.os_error == CT_BOOT_R_ALREADY_INITIALIZED && a.first &&
            a.token && (opts->flags & CT_BOOTSTRAP_F_AUTO) && attempt == 0) {
            ctp_log(ctx, CT_LOG_NOTICE, "bootstrap.retry",
                    "cluster %.8s... is already initialized: re-bootstrapping with the token",
                    a.fp);
            a.first = 0;
            a.jwks = NULL;
            a.jwks_len = 0;
            continue;
        }
        break;
    }
    if (err)
        *err = e;
    return rc;
}
