/*
 * tls_error.c - what a failed wolfSSL call means: wolfSSL errors and the
 * peer's TLS alerts mapped to a ct_err and a readable message, using what the
 * I/O and verify callbacks recorded in the connection's state.
 */
#include "tls_internal.h"

static const char *alert_name(int code)
{
    switch (code) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 109: return "missing_extension";
    case 112: return "unrecognized_name";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    default: return "alert";
    }
}

ct_err ctp_tls_want_error(const tls_conn *t, const char *what, ct_error *err)
{
    if (t->nonblock)
        return ctp_err(err, CT_E_AGAIN, 0, "%s would block", what);
    return ctp_err(err, CT_E_TIMEOUT, 0, "%s timed out", what);
}

static ct_err map_wolf_error(int e)
{
    switch (e) {
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
    case ASN_AFTER_DATE_E:
    case ASN_BEFORE_DATE_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_PATHLEN_SIZE_E:
    case ASN_PATHLEN_INV_E:
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
    case EXTKEYUSE_AUTH_E:
    case KEYUSE_SIGNATURE_E:
    case NOT_CA_ERROR:
    case VERIFY_CERT_ERROR:
        return CT_E_CERT;
    case NO_PEER_CERT:
    case BAD_BINDER:
    case PSK_KEY_ERROR:
        return CT_E_AUTH;
    case SOCKET_PEER_CLOSED_E:
        return CT_E_CLOSED;
    default:
        return CT_E_TLS;
    }
}

/*
 * Maps the failure of a wolfSSL call (return value ret) to a ct_err with a
 * readable message; `handshake` selects how an inner end of stream reads.
 */
ct_err ctp_tls_error(tls_conn *t, int ret, const char *what, bool handshake, ct_error *err)
{
    int e = wolfSSL_get_error(t->ssl, ret);
    char wmsg[WOLFSSL_MAX_ERROR_SZ];

    if (ctp_tls_is_want(e))
        return ctp_tls_want_error(t, what, err);
    if (t->pin_mismatch)
        return ctp_err(err, CT_E_CERT, e,
                       "%s: the server's public key does not match the pinned SHA-256", what);
    if (t->ip_mismatch)
        return ctp_err(err, CT_E_CERT, DOMAIN_NAME_MISMATCH,
                       "%s: the server certificate has no IP address SAN %s", what,
                       t->cfg->server_name);
    if (t->psk_saw_cert)
        return ctp_err(err, CT_E_AUTH, e,
                       "%s: the server did not accept our PSK and presented a certificate; "
                       "a PSK configuration never falls back to certificates",
                       what);
    if (e == WOLFSSL_ERROR_ZERO_RETURN)
        return ctp_err(err, CT_E_CLOSED, 0, "%s: the peer closed the TLS session", what);
    if (t->inner_reset)
        return ctp_err(err, CT_E_RESET, t->io_err.os_error, "%s: connection reset: %s", what,
                       t->io_err.message);
    if (t->inner_eof && handshake && t->cfg->psk && t->cfg->role == CT_TLS_CLIENT)
        return ctp_err(err, CT_E_CLOSED, 0,
                       "%s: the server closed the connection (with a PSK: most likely a wrong "
                       "key or an unknown identity; servers send no alert for those)",
                       what);
    if (t->inner_eof)
        return handshake ? ctp_err(err, CT_E_CLOSED, 0,
                                   "%s: the peer closed the connection (wolfSSL %d)", what, e)
                         : ctp_err(err, CT_E_RESET, 0,
                                   "%s: the peer closed the connection without TLS "
                                   "close_notify (possible truncation)",
                                   what);
    if (t->io_rc != CT_OK)
        return ctp_err(err, t->io_rc, t->io_err.os_error, "%s: %s", what, t->io_err.message);
    wolfSSL_ERR_error_string_n((unsigned long)e, wmsg, sizeof wmsg);
    if (e == FATAL_ERROR) {
        WOLFSSL_ALERT_HISTORY h;
        int code = -1;
        if (wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS)
            code = h.last_rx.code;
        switch (code) {
        case 42: case 43: case 44: case 45: case 46: case 48: case 49: case 116:
            return ctp_err(err, CT_E_AUTH, e, "%s: the peer rejected our certificate "
                                              "(TLS alert %d %s)",
                           what, code, alert_name(code));
        case 51:
            return ctp_err(err, CT_E_AUTH, e, "%s: the peer failed to authenticate us "
                                              "(TLS alert %d %s)",
                           what, code, alert_name(code));
        default:
            return ctp_err(err, CT_E_TLS, e, "%s: the peer sent TLS alert %d %s", what, code,
                           alert_name(code));
        }
    }
    if (t->psk_unknown && map_wolf_error(e) == CT_E_TLS) /* wolfSSL says BUFFER_ERROR */
        return ctp_err(err, CT_E_AUTH, e, "%s: the client offered an unknown PSK identity",
                       what);
    return ctp_err(err, map_wolf_error(e), e, "%s: %s (wolfSSL %d)", what, wmsg, e);
}
