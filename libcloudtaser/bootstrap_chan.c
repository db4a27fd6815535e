/*
 * bootstrap_chan.c - the init channel (PROTOCOL.md 2.1, 2.2): the PSK both
 * peers derive from the fingerprint, the TLS configurations that use it,
 * and the u32-length framing of the two messages.
 */
#include "bootstrap_internal.h"
#include "wolf.h"

#include <string.h>

static const char k_psk_salt[] = "cloudtaser-init-salt-v1";
static const char k_psk_info[] = "cloudtaser init psk v1";

ct_err ct_init_psk(const char *fingerprint, ct_secret **psk, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_secret *s = NULL;
    ct_err rc;
    int wrc;

    if (!psk)
        return ctp_err(err, CT_E_INVALID, 0, "ct_init_psk: NULL output");
    *psk = NULL;
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    if ((rc = ct_secret_new(CT_INIT_PSK_LEN, &s, err)) != CT_OK)
        goto out;
    wrc = wc_HKDF(WC_SHA256, (const byte *)fp, CT_FINGERPRINT_LEN, (const byte *)k_psk_salt,
                  sizeof k_psk_salt - 1, (const byte *)k_psk_info, sizeof k_psk_info - 1,
                  ct_secret_data(s), CT_INIT_PSK_LEN);
    if (wrc != 0) {
        rc = ctp_err(err, CT_E_CRYPTO, wrc, "HKDF-SHA256 failed (wolfSSL %d)", wrc);
        goto out;
    }
    *psk = s;
    s = NULL;
out:
    ct_secret_free(s);
    ct_secure_wipe(fp, sizeof fp);
    return rc;
}

ct_err ctp_boot_psk_config(ct_ctx *ctx, ct_tls_role role, const char *fp, ct_tls_config **out,
                           ct_error *err)
{
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    ct_secret *psk = NULL;
    ct_err rc;

    *out = NULL;
    if ((rc = ct_init_psk(fp, &psk, err)) != CT_OK)
        return rc;
    o.role = role;
    o.psk = psk;
    o.psk_identity = CT_INIT_PSK_IDENTITY;
    rc = ct_tls_config_new(ctx, &o, out, err);
    ct_secret_free(psk);
    return rc;
}

/* The time left, or CT_E_TIMEOUT (0 would mean "one non-blocking try"). */
static ct_err left_ms(int64_t deadline, const char *what, int *ms, ct_error *err)
{
    *ms = ctp_remaining(deadline);
    if (*ms == 0)
        return ctp_err(err, CT_E_TIMEOUT, 0, "%s: the bootstrap exchange timed out", what);
    return CT_OK;
}

ct_err ctp_boot_send_frame(ct_conn *c, const void *body, size_t len, int64_t deadline,
                           ct_error *err)
{
    ct_secret *buf = NULL;
    uint8_t *p;
    int ms;
    ct_err rc;

    if (len == 0 || len > CT_BOOTSTRAP_MAX_MSG)
        return ctp_err(err, CT_E_INVALID, 0, "bootstrap message of %zu bytes (1..%u)", len,
                       (unsigned)CT_BOOTSTRAP_MAX_MSG);
    if ((rc = left_ms(deadline, "sending", &ms, err)) != CT_OK)
        return rc;
    /* One buffer, one send: the body may be the request with the token. */
    if ((rc = ct_secret_new(4 + len, &buf, err)) != CT_OK)
        return rc;
    p = ct_secret_data(buf);
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    memcpy(p + 4, body, len);
    rc = ct_conn_send_all(c, p, 4 + len, NULL, ms, err);
    ct_secret_free(buf);
    return rc;
}

ct_err ctp_boot_recv_frame(ct_conn *c, int64_t deadline, ct_secret **out, uint32_t *announced,
                           ct_error *err)
{
    uint8_t hdr[4];
    uint32_t n;
    ct_secret *body = NULL;
    int ms;
    ct_err rc;

    *out = NULL;
    if (announced)
        *announced = 0;
    if ((rc = left_ms(deadline, "receiving", &ms, err)) != CT_OK)
        return rc;
    if ((rc = ct_conn_recv_exact(c, hdr, 4, NULL, ms, err)) != CT_OK)
        return rc;
    n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (announced)
        *announced = n;
    if (n == 0)
        return ctp_err(err, CT_E_PROTO, 0, "bootstrap message of length 0");
    if (n > CT_BOOTSTRAP_MAX_MSG)
        return ctp_err(err, CT_E_TOOBIG, 0, "bootstrap message of %u bytes exceeds %u", n,
                       (unsigned)CT_BOOTSTRAP_MAX_MSG);
    if ((rc = ct_secret_new(n, &body, err)) != CT_OK)
        return rc;
    if ((rc = left_ms(deadline, "receiving", &ms, err)) != CT_OK ||
        (rc = ct_conn_recv_exact(c, ct_secret_data(body), n, NULL, ms, err)) != CT_OK) {
        ct_secret_free(body);
        return rc;
    }
    *out = body;
    return CT_OK;
}
