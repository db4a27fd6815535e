/*
 * tls_config.c - ct_tls_config: checks the options, loads the certificate,
 * key and trust anchors, and sets up the wolfSSL context that every
 * connection made with the configuration shares (the callbacks that
 * authenticate the peer are in tls_auth.c).
 */
#include "tls_internal.h"
#include "der.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TLS_CIPHER_LIST CTP_TLS_CIPHER_LIST /* wolf.h: depends on AES-NI */
#define TLS_PSK_MIN 16
#define TLS_PSK_MAX 64       /* wolfSSL MAX_PSK_KEY_LEN */
#define TLS_NAME_MAX 253
#define TLS_PEM_MAX ((size_t)8 << 20)  /* largest certificate/CA input */
#define TLS_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static bool is_pem(const uint8_t *p, size_t n)
{
    return p && n >= 10 && memmem(p, n, "-----BEGIN", 10) != NULL;
}

static int wolf_format(const uint8_t *p, size_t n)
{
    return is_pem(p, n) ? WOLFSSL_FILETYPE_PEM : WOLFSSL_FILETYPE_ASN1;
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/*
 * wolfSSL 5.5.4's wolfSSL_CTX_check_private_key() accepts an ECC key of the
 * right curve that belongs to another certificate (measured), so for ECC and
 * Ed25519 the public key derived from the private key is compared with the
 * certificate's. Other key types rely on wolfSSL's check alone.
 */
static ct_err check_key_matches(const uint8_t *cert, size_t cert_len, const uint8_t *key,
                                size_t key_len, ct_error *err)
{
    uint8_t *cder = NULL, *kder = NULL;
    uint8_t pub[160];
    size_t clen = cert_len, klen = key_len, spki_len = 0;
    const uint8_t *spki = NULL;
    DecodedCert dc;
    bool dc_init = false, match = false, known = true;
    WC_RNG rng;
    bool rng_init = false;
    int r;

    cder = malloc(cert_len);
    kder = malloc(key_len);
    if (!cder || !kder) {
        free(cder);
        free(kder);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    if (is_pem(cert, cert_len)) {
        r = wc_CertPemToDer(cert, (int)cert_len, cder, (int)cert_len, CERT_TYPE);
        clen = r > 0 ? (size_t)r : 0;
    } else {
        memcpy(cder, cert, cert_len);
    }
    if (is_pem(key, key_len)) {
        r = wc_KeyPemToDer(key, (int)key_len, kder, (int)key_len, NULL);
        klen = r > 0 ? (size_t)r : 0;
    } else {
        memcpy(kder, key, key_len);
    }
    if (clen == 0 || klen == 0 || ctp_tls_cert_spki(cder, clen, &spki, &spki_len) != 0)
        goto out;
    wc_InitDecodedCert(&dc, cder, (word32)clen, NULL);
    dc_init = true;
    if (wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0)
        goto out;
    if (dc.keyOID == ECDSAk) {
        ecc_key k;
        word32 idx = 0;
        if (wc_GetPkcs8TraditionalOffset(kder, &idx, (word32)klen) < 0)
            idx = 0;
        if (wc_InitRng(&rng) != 0)
            goto out;
        rng_init = true;
        if (wc_ecc_init(&k) != 0)
            goto out;
        r = wc_EccPrivateKeyDecode(kder, &idx, &k, (word32)klen);
        if (r == 0) /* recompute: never trust a public key stored with the private */
            r = wc_ecc_make_pub_ex(&k, NULL, &rng);
        if (r == 0)
            r = wc_EccPublicKeyToDer(&k, pub, sizeof pub, 1);
        wc_ecc_free(&k);
        ctp_ecc_release();
        match = r > 0 && (size_t)r == spki_len && memcmp(pub, spki, spki_len) == 0;
    } else if (dc.keyOID == ED25519k) {
        ed25519_key k;
        word32 idx = 0;
        if (wc_ed25519_init(&k) != 0)
            goto out;
        r = wc_Ed25519PrivateKeyDecode(kder, &idx, &k, (word32)klen);
        if (r == 0)
            r = wc_ed25519_make_public(&k, pub, ED25519_PUB_KEY_SIZE);
        wc_ed25519_free(&k);
        match = r == 0 && dc.publicKey && dc.pubKeySize == ED25519_PUB_KEY_SIZE &&
                memcmp(pub, dc.publicKey, ED25519_PUB_KEY_SIZE) == 0;
    } else {
        known = false;
    }
out:
    if (rng_init)
        wc_FreeRng(&rng);
    if (dc_init)
        wc_FreeDecodedCert(&dc);
    ct_secure_wipe(kder, key_len);
    free(kder);
    free(cder);
    ct_secure_wipe(pub, sizeof pub);
    if (known && !match)
        return ctp_err(err, CT_E_CERT, 0, "the private key does not match the certificate");
    return CT_OK;
}

static ct_err read_file_bounded(const char *path, uint8_t **out, size_t *out_len, ct_error *err)
{
    int fd;
    struct stat st;
    uint8_t *buf = NULL;
    size_t done = 0;
    ct_err rc = CT_OK;

    *out = NULL;
    *out_len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ctp_err(err, errno == ENOENT ? CT_E_NOTFOUND : ctp_errno_to_err(errno), errno,
                       "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ctp_err(err, CT_E_INVALID, errno, "%s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > TLS_PEM_MAX) {
        rc = ctp_err(err, CT_E_TOOBIG, 0, "%s is larger than %zu bytes", path, TLS_PEM_MAX);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory reading %s", path);
        goto out;
    }
    while (done < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + done, (size_t)st.st_size - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ctp_err(err, CT_E_IO, errno, "reading %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *out = buf;
    *out_len = done;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */

static ct_err load_ca(ct_tls_config *cfg, const uint8_t *p, size_t n, const char *what,
                      ct_error *err)
{
    int r;
    if (n == 0 || n > TLS_PEM_MAX || n > INT_MAX)
        return ctp_err(err, CT_E_INVALID, 0, "%s: empty or too large", what);
    r = wolfSSL_CTX_load_verify_buffer(cfg->wctx, p, (long)n, wolf_format(p, n));
    if (r != WOLFSSL_SUCCESS)
        return ctp_err(err, CT_E_CERT, r, "%s: no usable CA certificate (wolfSSL %d)", what, r);
    cfg->has_ca = true;
    return CT_OK;
}

static ct_err load_system_ca(ct_tls_config *cfg, ct_error *err)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    ct_err rc;

    if (wolfSSL_CTX_load_system_CA_certs(cfg->wctx) == WOLFSSL_SUCCESS) {
        cfg->has_ca = true;
        return CT_OK;
    }
    rc = read_file_bounded(TLS_SYSTEM_CA_BUNDLE, &buf, &n, err);
    if (rc == CT_OK)
        rc = load_ca(cfg, buf, n, "system CA bundle " TLS_SYSTEM_CA_BUNDLE, err);
    free(buf);
    return rc;
}

static ct_err check_options(const ct_tls_options *o, ct_error *err)
{
    bool server = o->role == CT_TLS_SERVER;
    bool any_ca = o->ca || o->ca_file || (o->flags & CT_TLS_F_SYSTEM_CA);

    if (o->role != CT_TLS_CLIENT && o->role != CT_TLS_SERVER)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_options.role must be client or server");
    if (o->flags & ~(CT_TLS_F_ANONYMOUS_CLIENTS | CT_TLS_F_SYSTEM_CA))
        return ctp_err(err, CT_E_INVALID, 0, "unknown CT_TLS_F_* flags 0x%x",
                       (unsigned)o->flags);
    if (!server && (o->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
        return ctp_err(err, CT_E_INVALID, 0, "CT_TLS_F_ANONYMOUS_CLIENTS is a server option");
    if (server && (o->flags & CT_TLS_F_SYSTEM_CA))
        return ctp_err(err, CT_E_INVALID, 0, "CT_TLS_F_SYSTEM_CA is a client option");
    if (server && (o->pin_sha256 || o->server_name))
        return ctp_err(err, CT_E_INVALID, 0, "pin_sha256 and server_name are client options");
    if ((o->cert != NULL) != (o->key != NULL) || (o->cert && o->cert_len == 0))
        return ctp_err(err, CT_E_INVALID, 0, "cert and key must be given together");
    if ((o->ca != NULL) != (o->ca_len != 0))
        return ctp_err(err, CT_E_INVALID, 0, "ca and ca_len must be given together");
    if (o->handshake_timeout_ms < 0)
        return ctp_err(err, CT_E_INVALID, 0, "handshake_timeout_ms must not be negative");
    if (o->server_name) {
        size_t n = strnlen(o->server_name, TLS_NAME_MAX + 1);
        if (n == 0 || n > TLS_NAME_MAX || !printable(o->server_name, n))
            return ctp_err(err, CT_E_INVALID, 0, "server_name must be 1..%d printable characters",
                           TLS_NAME_MAX);
    }
    if (o->psk || o->psk_identity) {
        size_t n, klen;
        if (!o->psk || !o->psk_identity)
            return ctp_err(err, CT_E_INVALID, 0, "psk and psk_identity must be given together");
        n = strnlen(o->psk_identity, TLS_PSK_ID_MAX + 1);
        if (n == 0 || n > TLS_PSK_ID_MAX || !printable(o->psk_identity, n))
            return ctp_err(err, CT_E_INVALID, 0,
                           "psk_identity must be 1..%d printable ASCII characters",
                           TLS_PSK_ID_MAX);
        klen = ct_secret_len(o->psk);
        if (klen < TLS_PSK_MIN || klen > TLS_PSK_MAX)
            return ctp_err(err, CT_E_INVALID, 0, "the PSK must be %d..%d bytes long",
                           TLS_PSK_MIN, TLS_PSK_MAX);
        if (o->cert || any_ca || o->pin_sha256 || (o->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
            return ctp_err(err, CT_E_INVALID, 0,
                           "a PSK configuration must not carry certificates, CAs, a pin or "
                           "CT_TLS_F_ANONYMOUS_CLIENTS: it never falls back to certificates");
        return CT_OK;
    }
    if (server) {
        if (!o->cert)
            return ctp_err(err, CT_E_INVALID, 0,
                           "a TLS server needs a certificate and key (or a PSK)");
        if (!any_ca && !(o->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
            return ctp_err(err, CT_E_INVALID, 0,
                           "a TLS server without client CA must set CT_TLS_F_ANONYMOUS_CLIENTS "
                           "to accept unauthenticated clients");
        return CT_OK;
    }
    if (!any_ca && !o->pin_sha256)
        return ctp_err(err, CT_E_INVALID, 0,
                       "a TLS client needs a way to verify the server: ca, ca_file, "
                       "CT_TLS_F_SYSTEM_CA, pin_sha256 or a PSK");
    if (any_ca && !o->server_name)
        return ctp_err(err, CT_E_INVALID, 0,
                       "CA-based server verification needs server_name (the DNS name or IP "
                       "address the certificate must carry)");
    return CT_OK;
}

void ct_tls_config_free(ct_tls_config *cfg)
{
    if (!cfg)
        return;
    if (cfg->wctx)
        wolfSSL_CTX_free(cfg->wctx);
    ct_secret_free(cfg->psk);
    free(cfg->server_name);
    ct_secure_wipe(cfg, sizeof *cfg);
    free(cfg);
}

ct_err ct_tls_config_new(ct_ctx *ctx, const ct_tls_options *opts, ct_tls_config **out,
                         ct_error *err)
{
    ct_tls_config *cfg = NULL;
    uint8_t *file = NULL;
    size_t file_len = 0;
    ct_err rc;
    int r, mode;
    int groups[2] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};

    if (!out || !opts)
        return ctp_err(err, CT_E_INVALID, 0, "ct_tls_config_new: NULL argument");
    *out = NULL;
    if (opts->version != CT_TLS_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_tls_options version %u is not supported",
                       (unsigned)opts->version);
    if ((rc = check_options(opts, err)) != CT_OK)
        return rc;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "wolfSSL initialisation failed");

    cfg = ctp_calloc(1, sizeof *cfg);
    if (!cfg)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    cfg->ctx = ctx;
    cfg->role = opts->role;
    cfg->flags = opts->flags;
    cfg->handshake_timeout_ms = opts->handshake_timeout_ms;
    cfg->wctx = wolfSSL_CTX_new(opts->role == CT_TLS_CLIENT ? wolfTLSv1_3_client_method()
                                                             : wolfTLSv1_3_server_method());
    if (!cfg->wctx) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "wolfSSL_CTX_new failed");
        goto out;
    }
    if (wolfSSL_CTX_set_cipher_list(cfg->wctx, TLS_CIPHER_LIST) != WOLFSSL_SUCCESS) {
        rc = ctp_err(err, CT_E_TLS, 0, "cannot set the TLS 1.3 cipher suites");
        goto out;
    }
    if ((r = wolfSSL_CTX_set_groups(cfg->wctx, groups, 2)) != WOLFSSL_SUCCESS) {
        rc = ctp_err(err, CT_E_TLS, r, "cannot set the key exchange groups (wolfSSL %d)", r);
        goto out;
    }
    /* No session cache: sessions are never resumed (see ticket_enc_cb). */
    wolfSSL_CTX_set_session_cache_mode(cfg->wctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_SetIORecv(cfg->wctx, ctp_tls_io_recv);
    wolfSSL_CTX_SetIOSend(cfg->wctx, ctp_tls_io_send);
    ctp_tls_install_ecc_cbs(cfg->wctx);

    if (opts->cert) {
        const uint8_t *key = ct_secret_data(opts->key);
        size_t key_len = ct_secret_len(opts->key);
        if (opts->cert_len > TLS_PEM_MAX || !key || key_len == 0 || key_len > TLS_PEM_MAX) {
            rc = ctp_err(err, CT_E_INVALID, 0, "certificate or key empty or too large");
            goto out;
        }
        r = wolfSSL_CTX_use_certificate_chain_buffer_format(
            cfg->wctx, opts->cert, (long)opts->cert_len, wolf_format(opts->cert, opts->cert_len));
        if (r != WOLFSSL_SUCCESS) {
            rc = ctp_err(err, CT_E_CERT, r, "cannot parse the certificate (wolfSSL %d)", r);
            goto out;
        }
        /* wolfSSL copies (and on free zeroes) the key; no copy of ours to wipe. */
        r = wolfSSL_CTX_use_PrivateKey_buffer(cfg->wctx, key, (long)key_len,
                                              wolf_format(key, key_len));
        if (r != WOLFSSL_SUCCESS) {
            rc = ctp_err(err, CT_E_CERT, r, "cannot parse the private key (wolfSSL %d)", r);
            goto out;
        }
        r = wolfSSL_CTX_check_private_key(cfg->wctx);
        if (r != WOLFSSL_SUCCESS) {
            rc = ctp_err(err, CT_E_CERT, r, "the private key does not match the certificate");
            goto out;
        }
        if ((rc = check_key_matches(opts->cert, opts->cert_len, key, key_len, err)) != CT_OK)
            goto out;
    }
    if (opts->ca && (rc = load_ca(cfg, opts->ca, opts->ca_len, "ca", err)) != CT_OK)
        goto out;
    if (opts->ca_file) {
        if ((rc = read_file_bounded(opts->ca_file, &file, &file_len, err)) != CT_OK)
            goto out;
        if ((rc = load_ca(cfg, file, file_len, "ca_file", err)) != CT_OK)
            goto out;
    }
    if ((opts->flags & CT_TLS_F_SYSTEM_CA) && (rc = load_system_ca(cfg, err)) != CT_OK)
        goto out;
    if (opts->pin_sha256) {
        memcpy(cfg->pin, opts->pin_sha256, TLS_PIN_LEN);
        cfg->has_pin = true;
    }
    if (opts->server_name) {
        cfg->server_name = ctp_strdup(opts->server_name);
        if (!cfg->server_name) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        cfg->ip_len = ctp_ip_literal(cfg->server_name, cfg->ip);
        cfg->server_name_ip = cfg->ip_len > 0;
    }
    if (opts->psk) {
        if ((rc = ct_secret_dup(opts->psk, &cfg->psk, err)) != CT_OK)
            goto out;
        cfg->psk_id_len = strlen(opts->psk_identity);
        memcpy(cfg->psk_id, opts->psk_identity, cfg->psk_id_len);
        if (opts->role == CT_TLS_CLIENT)
            wolfSSL_CTX_set_psk_client_tls13_callback(cfg->wctx, ctp_tls_psk_client_cb);
        else
            wolfSSL_CTX_set_psk_server_tls13_callback(cfg->wctx, ctp_tls_psk_server_cb);
    }

    /* Peer verification, explicit in every configuration. */
    if (opts->role == CT_TLS_CLIENT) {
        mode = WOLFSSL_VERIFY_PEER;
        /*
         * Learn whether the server asks for a certificate. wolfSSL 5.5.4
         * fails a certificate-less client with BUFFER_ERROR once a cert
         * setup callback is installed, so such clients get the
         * client_cert_cb instead, which it calls only for them.
         */
        if (opts->cert)
            wolfSSL_CTX_set_cert_cb(cfg->wctx, ctp_tls_cert_setup_cb, NULL);
        else
            wolfSSL_CTX_set_client_cert_cb(cfg->wctx, ctp_tls_no_client_cert_cb);
    } else if (cfg->psk) {
        mode = WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    } else if (cfg->has_ca) {
        mode = WOLFSSL_VERIFY_PEER;
        if (!(opts->flags & CT_TLS_F_ANONYMOUS_CLIENTS))
            mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        cfg->client_auth = true;
    } else {
        mode = WOLFSSL_VERIFY_NONE; /* CT_TLS_F_ANONYMOUS_CLIENTS, checked above */
    }
    wolfSSL_CTX_set_verify(cfg->wctx, mode, ctp_tls_verify_cb);

    if (opts->role == CT_TLS_SERVER) {
        if (cfg->client_auth) {
            /* The ticket is the client's confirmation (see tls_auth.c). */
            if (wolfSSL_CTX_set_TicketEncCb(cfg->wctx, ctp_tls_ticket_enc_cb) != WOLFSSL_SUCCESS) {
                rc = ctp_err(err, CT_E_TLS, 0, "cannot install the ticket callback");
                goto out;
            }
        } else {
            wolfSSL_CTX_no_ticket_TLSv13(cfg->wctx);
        }
    }
    *out = cfg;
    cfg = NULL;
    rc = CT_OK;
out:
    free(file);
    ct_tls_config_free(cfg);
    ctp_ecc_release(); /* loading the CA verified its signature (wolf.h) */
    return rc;
}
