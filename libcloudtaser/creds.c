/*
 * creds.c - what the bootstrap hands over and how both sides use it:
 * ct_credentials (the operator's broker certificate, its key and the
 * cluster CA, in memory only), the operator's operational TLS server
 * configuration, and the bridge's operational TLS client configuration
 * read from the registration records.
 */
#include "bootstrap_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct ct_credentials {
    uint8_t *ca, *cert;
    size_t ca_len, cert_len;
    ct_key *key;
    uint8_t room[CT_ROOM_HASH_LEN];
    int reissued;
    int64_t not_after_ms;
};

void ctp_boot_key(char *buf, size_t n, const char *fp, const char *name)
{
    snprintf(buf, n, "clusters/%s/%s", fp, name);
}

ct_err ctp_boot_read_keypair(ct_store *store, const char *fp, const char *name, uint8_t **der,
                             size_t *der_len, ct_secret **key_pem, ct_error *err)
{
    char key[CT_STORE_KEY_MAX];
    ct_secret *val = NULL;
    json_error_t je;
    json_t *o = NULL, *v, *c, *k;
    ct_err rc;

    *der = NULL;
    *der_len = 0;
    if (key_pem)
        *key_pem = NULL;
    ctp_boot_key(key, sizeof key, fp, name);
    if ((rc = ct_store_get(store, key, &val, NULL, err)) != CT_OK)
        return rc;
    o = json_loadb((const char *)ct_secret_data(val), ct_secret_len(val),
                   JSON_REJECT_DUPLICATES, &je);
    v = json_object_get(o, "v");
    c = json_object_get(o, "cert");
    k = json_object_get(o, "key");
    if (!json_is_object(o) || !json_is_integer(v) || json_integer_value(v) != 1 ||
        !json_is_string(c) || !json_is_string(k) || json_string_length(k) == 0) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': missing or mistyped fields", key);
        goto out;
    }
    if (ct_cert_pem_to_der(json_string_value(c), json_string_length(c), der, der_len, NULL) !=
        CT_OK) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': \"cert\" is not a PEM certificate", key);
        goto out;
    }
    if (key_pem)
        rc = ct_secret_from(json_string_value(k), json_string_length(k), key_pem, err);
out:
    if (json_is_string(k))
        ct_secure_wipe((void *)(uintptr_t)json_string_value(k), json_string_length(k));
    json_decref(o);
    ct_secret_free(val);
    if (rc != CT_OK) {
        ct_free(*der);
        *der = NULL;
        *der_len = 0;
        if (key_pem) {
            ct_secret_free(*key_pem);
            *key_pem = NULL;
        }
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* ct_credentials                                                       */

ct_err ctp_boot_credentials_new(uint8_t *ca, size_t ca_len, uint8_t *cert, size_t cert_len,
                                ct_key *key, int reissued, int64_t not_after_ms,
                                ct_credentials **out, ct_error *err)
{
    ct_credentials *c = calloc(1, sizeof *c);
    ct_err rc;

    *out = NULL;
    if (!c) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto fail;
    }
    if ((rc = ct_room_hash_operational(ca, ca_len, c->room, err)) != CT_OK)
        goto fail;
    c->ca = ca;
    c->ca_len = ca_len;
    c->cert = cert;
    c->cert_len = cert_len;
    c->key = key;
    c->reissued = reissued ? 1 : 0;
    c->not_after_ms = not_after_ms;
    *out = c;
    return CT_OK;
fail:
    free(c);
    ct_free(ca);
    ct_free(cert);
    ct_key_free(key);
    return rc;
}

const uint8_t *ct_credentials_ca(const ct_credentials *c, size_t *len)
{
    if (len)
        *len = c ? c->ca_len : 0;
    return c ? c->ca : NULL;
}

const uint8_t *ct_credentials_cert(const ct_credentials *c, size_t *len)
{
    if (len)
        *len = c ? c->cert_len : 0;
    return c ? c->cert : NULL;
}

const ct_key *ct_credentials_key(const ct_credentials *c)
{
    return c ? c->key : NULL;
}

const uint8_t *ct_credentials_operational_room(const ct_credentials *c)
{
    return c ? c->room : NULL;
}

int ct_credentials_reissued(const ct_credentials *c)
{
    return c ? c->reissued : 0;
}

int64_t ct_credentials_not_after(const ct_credentials *c)
{
    return c ? c->not_after_ms : 0;
}

void ct_credentials_free(ct_credentials *c)
{
    if (!c)
        return;
    ct_key_free(c->key); /* wipes the private key */
    ct_free(c->ca);
    ct_free(c->cert);
    ct_secure_wipe(c, sizeof *c);
    free(c);
}

/* ------------------------------------------------------------------ */
/* Operational TLS configurations                                       */

ct_err ct_credentials_tls_config(ct_ctx *ctx, const ct_credentials *c, ct_tls_config **out,
                                 ct_error *err)
{
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    ct_secret *key = NULL;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!ctx || !c || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_credentials_tls_config: NULL argument");
    if ((rc = ct_key_export(c->key, 0, &key, err)) != CT_OK)
        return rc;
    o.role = CT_TLS_SERVER;
    o.cert = c->cert;
    o.cert_len = c->cert_len;
    o.key = key;
    o.ca = c->ca; /* client certificates must chain to the cluster CA: mTLS */
    o.ca_len = c->ca_len;
    rc = ct_tls_config_new(ctx, &o, out, err);
    ct_secret_free(key);
    return rc;
}

ct_err ct_cluster_ca_pem(ct_ctx *ctx, ct_store *store, const char *fingerprint, char **pem,
                         ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1];
    uint8_t *der = NULL;
    size_t len = 0;
    ct_err rc;

    (void)ctx;
    if (pem)
        *pem = NULL;
    if (!store || !fingerprint || !pem)
        return ctp_err(err, CT_E_INVALID, 0, "ct_cluster_ca_pem: NULL argument");
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    rc = ctp_boot_read_keypair(store, fp, "ca", &der, &len, NULL, err);
    if (rc == CT_E_NOTFOUND)
        return ctp_err(err, CT_E_NOTFOUND, 0, "cluster %.8s... is not registered", fp);
    if (rc == CT_OK)
        rc = ct_cert_der_to_pem(der, len, pem, err);
    ct_free(der);
    return rc;
}

ct_err ct_bridge_tls_config(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                            ct_tls_config **out, uint8_t room[32], ct_error *err)
{
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_registration *reg = NULL;
    uint8_t *ca = NULL, *cert = NULL;
    size_t ca_len = 0, cert_len = 0;
    ct_secret *key = NULL;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!ctx || !store || !fingerprint || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_bridge_tls_config: NULL argument");
    if ((rc = ct_fingerprint_canonical(fingerprint, fp, err)) != CT_OK)
        return rc;
    /* Registered means the `registered` record exists (it is written last). */
    if ((rc = ct_registration_get(ctx, store, fp, &reg, err)) != CT_OK)
        goto out;
    if ((rc = ctp_boot_read_keypair(store, fp, "ca", &ca, &ca_len, NULL, err)) != CT_OK ||
        (rc = ctp_boot_read_keypair(store, fp, "bridge", &cert, &cert_len, &key, err)) != CT_OK) {
        if (rc == CT_E_NOTFOUND) /* registered but a key record is gone: a broken store */
            rc = ctp_err(err, CT_E_STORE, 0,
                         "cluster %.8s...: a key record is missing; deregister and register "
                         "again",
                         fp);
        goto out;
    }
    if (room && (rc = ct_room_hash_operational(ca, ca_len, room, err)) != CT_OK)
        goto out;
    o.role = CT_TLS_CLIENT;
    o.cert = cert;
    o.cert_len = cert_len;
    o.key = key;
    o.ca = ca;
    o.ca_len = ca_len;
    o.server_name = CT_BROKER_SERVER_NAME;
    rc = ct_tls_config_new(ctx, &o, out, err);
out:
    ct_registration_free(reg);
    ct_secret_free(key);
    ct_free(ca);
    ct_free(cert);
    return rc;
}
