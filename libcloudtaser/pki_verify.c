/*
 * pki_verify.c - ct_cert_verify: a certificate's chain to the CA, its
 * validity period on the context's clock, and its usage.
 */
#include "pki_internal.h"

#include <errno.h>
#include <string.h>

static ct_err check_dates(const char *what, int64_t now, int64_t nb, int64_t na, ct_error *err)
{
    char a[32], b[32];
    if (now < nb)
        return ctp_err(err, CT_E_CERT, 0, "%s is not valid before %s (now %s)", what,
                       ctp_pki_time_str(nb, a), ctp_pki_time_str(now, b));
    if (now > na)
        return ctp_err(err, CT_E_CERT, 0, "%s expired at %s (now %s)", what,
                       ctp_pki_time_str(na, a), ctp_pki_time_str(now, b));
    return CT_OK;
}

ct_err ct_cert_verify(ct_ctx *ctx, const uint8_t *ca, size_t ca_len, const uint8_t *cert,
                      size_t cert_len, ct_cert_usage usage, ct_error *err)
{
    DecodedCert *cadc = NULL, *dc = NULL;
    WOLFSSL_CERT_MANAGER *cm = NULL;
    int64_t now, nb, na;
    int wrc;
    ct_err rc;

    if (!ca || !ca_len || !cert || !cert_len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_verify: NULL or empty argument");
    if (usage != CT_CERT_CA && usage != CT_CERT_SERVER && usage != CT_CERT_CLIENT)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cert_verify: unknown usage %d", (int)usage);
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");
    now = ctp_pki_wall_seconds(ctx);

    /* The trust anchor itself must be a CA that is valid now. */
    if ((rc = ctp_pki_ca_open(ca, ca_len, CT_E_CERT, &cadc, &nb, &na, err)) != CT_OK ||
        (rc = check_dates("the CA certificate", now, nb, na, err)) != CT_OK)
        goto out;

    if (cert_len > CTP_PKI_MAX_INPUT) {
        rc = ctp_err(err, CT_E_CERT, 0, "certificate of %zu bytes is too large", cert_len);
        goto out;
    }
    /*
     * Chain: wolfSSL's own path check (the one wolfSSL_CertManagerVerifyBuffer
     * runs) against a manager holding only `ca`, but with VERIFY_SKIP_DATE:
     * wolfSSL reads the system clock, dates are checked below with the
     * context's clock.
     */
    if (!(cm = wolfSSL_CertManagerNew())) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory for a certificate manager");
        goto out;
    }
    wrc = wolfSSL_CertManagerLoadCABuffer(cm, ca, (long)ca_len, WOLFSSL_FILETYPE_ASN1);
    if (wrc != WOLFSSL_SUCCESS) {
        rc = ctp_err(err, CT_E_CERT, wrc, "the CA certificate was refused as a trust anchor: %s",
                     wc_GetErrorString(wrc));
        goto out;
    }
    if (!(dc = ctp_pki_dc_new(cert, cert_len))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory parsing a certificate");
        goto out;
    }
    wrc = wc_ParseCert(dc, CERT_TYPE, VERIFY_SKIP_DATE, cm);
    if (wrc != 0) {
        const char *why = wrc == ASN_NO_SIGNER_E     ? "it was not issued by this CA"
                          : wrc == ASN_SIG_CONFIRM_E ? "its signature does not verify with the "
                                                       "CA's key"
                                                     : "it is malformed or was refused";
        rc = ctp_err(err, CT_E_CERT, wrc, "chain check failed: %s (wolfSSL %d: %s)", why, wrc,
                     wc_GetErrorString(wrc));
        goto out;
    }
    if (memcmp(dc->issuerHash, cadc->subjectHash, sizeof dc->issuerHash) != 0) {
        rc = ctp_err(err, CT_E_CERT, 0,
                     "chain check failed: the issuer name is not the CA's subject name");
        goto out;
    }
    if (ctp_pki_dc_dates(dc, &nb, &na) != 0) {
        rc = ctp_err(err, CT_E_CERT, 0, "validity check failed: malformed validity period");
        goto out;
    }
    if ((rc = check_dates("the certificate", now, nb, na, err)) != CT_OK)
        goto out;

    if (usage == CT_CERT_CA) {
        if (!dc->isCA || !dc->extKeyUsageSet || !(dc->extKeyUsage & KEYUSE_KEY_CERT_SIGN)) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: not a CA (needs basicConstraints CA:TRUE and "
                         "keyUsage keyCertSign)");
            goto out;
        }
        if (!dc->selfSigned || dc->pubKeySize != cadc->pubKeySize ||
            memcmp(dc->publicKey, cadc->publicKey, dc->pubKeySize) != 0) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: the CA certificate is not self-signed by its own "
                         "key");
            goto out;
        }
    } else {
        unsigned want = usage == CT_CERT_SERVER ? EXTKEYUSE_SERVER_AUTH : EXTKEYUSE_CLIENT_AUTH;
        const char *name = usage == CT_CERT_SERVER ? "serverAuth" : "clientAuth";
        if (dc->isCA) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: a CA certificate is not a %s certificate",
                         usage == CT_CERT_SERVER ? "server" : "client");
            goto out;
        }
        if (!dc->extExtKeyUsageSet || !(dc->extExtKeyUsage & want)) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: extendedKeyUsage does not include %s", name);
            goto out;
        }
        if (dc->extKeyUsageSet && !(dc->extKeyUsage & KEYUSE_DIGITAL_SIG)) {
            rc = ctp_err(err, CT_E_CERT, 0,
                         "usage check failed: keyUsage does not include digitalSignature");
            goto out;
        }
    }
    rc = CT_OK;
out:
    ctp_pki_dc_free(dc);
    ctp_pki_dc_free(cadc);
    if (cm)
        wolfSSL_CertManagerFree(cm);
    return rc;
}
