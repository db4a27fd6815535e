/*
 * register.c - cluster registration records (register.h): the per-cluster
 * CA and bridge certificate, created in memory and written to a ct_store.
 *
 * Key material: private keys come out of ct_key_export in ct_secret
 * buffers. The JSON records that carry them are built with jansson, which
 * copies the PEM strings into its own heap strings: those copies are wiped
 * in place before the tree is freed (wipe_tree). json_dumpb writes straight
 * into the caller's buffer (no intermediate copy), and that buffer is a
 * ct_secret.
 */
#include "internal.h"
#include "register_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define REG_PREFIX "clusters/"
#define REG_RECORD_V 1
#define LAYOUT_KEY "system/layout"
#define LAYOUT_RECORD_V 1

struct ct_registration {
    char fingerprint[CT_FINGERPRINT_LEN + 1];
    int64_t registered_at, expires_at;
    uint8_t init_room[CT_ROOM_HASH_LEN];
    uint8_t operational_room[CT_ROOM_HASH_LEN];
    ct_reg_state state;
};

/* "clusters/<fp>/<name>" into buf (large enough: CT_STORE_KEY_MAX). */
static void reg_key(char *buf, size_t n, const char *fp, const char *name)
{
    snprintf(buf, n, REG_PREFIX "%s/%s", fp, name);
}

/*
 * The `connected` record: {"v":1,"since":<ms>,"heartbeat":<ms>}, written by
 * a bridge while it has a live operational session with the cluster and
 * refreshed every CTP_REG_HEARTBEAT_MS; fresh for 3 intervals.
 */
static int reg_connected(ct_ctx *ctx, ct_store *store, const char *fp)
{
    char key[CT_STORE_KEY_MAX + 1];
    ct_secret *v = NULL;
    json_t *o;
    int64_t hb;
    int fresh = 0;

    reg_key(key, sizeof key, fp, "connected");
    if (ct_store_get(store, key, &v, NULL, NULL) != CT_OK)
        return 0;
    o = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), 0, NULL);
    if (o && json_is_integer(json_object_get(o, "heartbeat"))) {
        hb = json_integer_value(json_object_get(o, "heartbeat"));
        fresh = ct_ctx_wall_ms(ctx) - hb <= 3 * (int64_t)CTP_REG_HEARTBEAT_MS;
    }
    json_decref(o);
    ct_secret_free(v);
    return fresh;
}

ct_err ctp_reg_heartbeat(ct_ctx *ctx, ct_store *store, const char *fp, int64_t since_ms,
                         ct_error *err)
{
    char key[CT_STORE_KEY_MAX + 1], val[128];
    ct_secret *v = NULL;
    ct_err rc;
    int n;

    /* never resurrect a deregistered cluster's directory */
    reg_key(key, sizeof key, fp, "registered");
    if ((rc = ct_store_get(store, key, &v, NULL, err)) != CT_OK)
        return rc;
    ct_secret_free(v);
    reg_key(key, sizeof key, fp, "connected");
    n = snprintf(val, sizeof val, "{\"v\":1,\"since\":%lld,\"heartbeat\":%lld}",
                 (long long)since_ms, (long long)ct_ctx_wall_ms(ctx));
    return ct_store_put(store, key, val, (size_t)n, CT_STORE_ANY, NULL, err);
}

void ctp_reg_disconnected(ct_store *store, const char *fp)
{
    char key[CT_STORE_KEY_MAX + 1];
    reg_key(key, sizeof key, fp, "connected");
    (void)ct_store_del(store, key, NULL);
}

/* Overwrites every string value of an object (one level deep). */
static void wipe_tree(json_t *o)
{
    const char *k;
    json_t *v;
    if (!o)
        return;
    json_object_foreach(o, k, v) {
        if (json_is_string(v))
            ct_secure_wipe((void *)(uintptr_t)json_string_value(v), json_string_length(v));
    }
}

/* Serialises `o` (compact, sorted keys) into a new secret. */
static ct_err dump_secret(json_t *o, ct_secret **out, ct_error *err)
{
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    size_t need = json_dumpb(o, NULL, 0, flags), got;
    ct_secret *s = NULL;
    ct_err rc;

    *out = NULL;
    if (need == 0)
        return ctp_err(err, CT_E_NOMEM, 0, "cannot serialise a record");
    rc = ct_secret_new(need, &s, err);
    if (rc != CT_OK)
        return rc;
    got = json_dumpb(o, (char *)ct_secret_data(s), need, flags);
    if (got != need) {
        ct_secret_free(s);
        return ctp_err(err, CT_E_INTERNAL, 0, "record serialisation changed size");
    }
    *out = s;
    return CT_OK;
}

/* {"v":1,"cert":"<PEM>","key":"<PEM>"} for a certificate (DER) and key. */
static ct_err keypair_record(const uint8_t *der, size_t der_len, const ct_key *key,
                             ct_secret **out, ct_error *err)
{
    char *cert_pem = NULL;
    ct_secret *key_pem = NULL;
    json_t *o = NULL;
    ct_err rc;

    *out = NULL;
    rc = ct_cert_der_to_pem(der, der_len, &cert_pem, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_key_export(key, 1, &key_pem, err);
    if (rc != CT_OK)
        goto out;
    o = json_object();
    if (!o || json_object_set_new(o, "v", json_integer(REG_RECORD_V)) != 0 ||
        json_object_set_new(o, "cert", json_string(cert_pem)) != 0 ||
        json_object_set_new(o, "key", json_string((const char *)ct_secret_data(key_pem))) != 0) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory building a record");
        goto out;
    }
    rc = dump_secret(o, out, err);
out:
    wipe_tree(o);
    json_decref(o);
    ct_secret_free(key_pem);
    ct_free(cert_pem);
    return rc;
}

static ct_err registered_record(const ct_registration *r, char **out, ct_error *err)
{
    char init_hex[2 * CT_ROOM_HASH_LEN + 1], op_hex[2 * CT_ROOM_HASH_LEN + 1];
    json_t *o;

    ct_hex(r->init_room, CT_ROOM_HASH_LEN, init_hex);
    ct_hex(r->operational_room, CT_ROOM_HASH_LEN, op_hex);
    o = json_pack("{s:i, s:s, s:I, s:I, s:s, s:s}", "v", REG_RECORD_V, "fingerprint",
                  r->fingerprint, "registered_at", (json_int_t)r->registered_at,
                  "expires_at", (json_int_t)r->expires_at, "init_room", init_hex,
                  "operational_room", op_hex);
    *out = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!*out)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory building a record");
    return CT_OK;
}

/*
 * system/layout: {"v":1,"layout":<n>,"created_at":<ms>}. A newer format or
 * layout is CT_E_VERSION, anything malformed CT_E_STORE.
 */
static ct_err parse_layout(const uint8_t *data, size_t len, uint32_t *layout, ct_error *err)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    json_t *v, *l, *c;
    ct_err rc = CT_OK;

    if (!json_is_object(o)) {
        rc = ctp_err(err, CT_E_STORE, 0,
                     "the store's layout record '" LAYOUT_KEY "' is corrupt (not a JSON "
                     "object): repair or delete it");
        goto out;
    }
    v = json_object_get(o, "v");
    l = json_object_get(o, "layout");
    c = json_object_get(o, "created_at");
    if (json_is_integer(v) && json_integer_value(v) > LAYOUT_RECORD_V) {
        rc = ctp_err(err, CT_E_VERSION, 0,
                     "the store's layout record '" LAYOUT_KEY "' has format %lld, newer than "
                     "this cloudtaser (%d): upgrade",
                     (long long)json_integer_value(v), LAYOUT_RECORD_V);
        goto out;
    }
    if (!json_is_integer(v) || json_integer_value(v) != LAYOUT_RECORD_V ||
        !json_is_integer(l) || json_integer_value(l) < 1 ||
        json_integer_value(l) > (json_int_t)UINT32_MAX || !json_is_integer(c)) {
        rc = ctp_err(err, CT_E_STORE, 0,
                     "the store's layout record '" LAYOUT_KEY "' is corrupt (missing or "
                     "mistyped \"v\", \"layout\" or \"created_at\"): repair or delete it");
        goto out;
    }
    if (json_integer_value(l) > CT_STORE_LAYOUT) {
        rc = ctp_err(err, CT_E_VERSION, 0,
                     "store layout %lld is newer than this cloudtaser (%d): upgrade",
                     (long long)json_integer_value(l), CT_STORE_LAYOUT);
        goto out;
    }
    *layout = (uint32_t)json_integer_value(l);
out:
    json_decref(o);
    return rc;
}

ct_err ct_store_layout_check(ct_ctx *ctx, ct_store *store, uint32_t *layout, ct_error *err)
{
    ct_secret *v = NULL;
    uint32_t l = 0;
    ct_err rc;

    if (layout)
        *layout = 0;
    if (!ctx || !store)
        return ctp_err(err, CT_E_INVALID, 0, "ct_store_layout_check: NULL argument");
    rc = ct_store_get(store, LAYOUT_KEY, &v, NULL, err);
    if (rc == CT_E_NOTFOUND) {
        ct_error_clear(err); /* written by an older version, or empty: fine */
        return CT_OK;
    }
    if (rc != CT_OK)
        return rc;
    rc = parse_layout(ct_secret_data(v), ct_secret_len(v), &l, err);
    ct_secret_free(v);
    if (rc == CT_OK && layout)
        *layout = l;
    return rc;
}

/* Writes system/layout if there is none (create-only; a racing writer's is checked). */
static ct_err layout_ensure(ct_ctx *ctx, ct_store *store, ct_error *err)
{
    char rec[96];
    uint32_t l = 0;
    ct_err rc;
    int n;

    if ((rc = ct_store_layout_check(ctx, store, &l, err)) != CT_OK || l != 0)
        return rc;
    /* compact with sorted keys: a Vault store keeps it as readable KV data */
    n = snprintf(rec, sizeof rec, "{\"created_at\":%lld,\"layout\":%d,\"v\":%d}",
                 (long long)ct_ctx_wall_ms(ctx), CT_STORE_LAYOUT, LAYOUT_RECORD_V);
    rc = ct_store_put(store, LAYOUT_KEY, rec, (size_t)n, CT_STORE_CREATE, NULL, err);
    if (rc == CT_E_CONFLICT) {
        ct_error_clear(err);
        return ct_store_layout_check(ctx, store, NULL, err);
    }
    return rc;
}

/* Puts a record create-only; CT_E_CONFLICT gets the "already registered" text. */
static ct_err put_create(ct_store *store, const char *key, const void *v, size_t len,
                         const char *fp, ct_error *err)
{
    ct_err rc = ct_store_put(store, key, v, len, CT_STORE_CREATE, NULL, err);
    if (rc == CT_E_CONFLICT)
        return ctp_err(err, CT_E_CONFLICT, 0,
                       "cluster %.8s... is already registered; deregister first", fp);
    return rc;
}

/* The CA, its key and the bridge's client certificate and key. */
static ct_err make_pki(ct_ctx *ctx, const char *fp, uint8_t **ca_der, size_t *ca_len,
                       ct_key **ca_key, uint8_t **br_der, size_t *br_len, ct_key **br_key,
                       ct_error *err)
{
    ct_cert_options co = CT_CERT_OPTIONS_INIT, bo = CT_CERT_OPTIONS_INIT;
    char cn[64];
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    ct_err rc;

    /* 8 characters identify the cluster to a human; logs never carry more */
    snprintf(cn, sizeof cn, "cloudtaser CA %.8s", fp);
    co.common_name = cn;
    co.organization = "cloudtaser";
    bo.common_name = "cloudtaser bridge";
    bo.organization = "cloudtaser";

    rc = ct_key_generate(ctx, ca_key, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_ca_create(ctx, *ca_key, &co, ca_der, ca_len, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_key_generate(ctx, br_key, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_csr_create(ctx, *br_key, &bo, &csr, &csr_len, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_cert_issue(ctx, *ca_der, *ca_len, *ca_key, csr, csr_len, CT_CERT_CLIENT, &bo,
                       br_der, br_len, err);
out:
    ct_free(csr);
    return rc;
}

ct_err ct_register(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                   const ct_register_options *opts, ct_registration **out, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1];
    char k_ca[CT_STORE_KEY_MAX], k_br[CT_STORE_KEY_MAX], k_reg[CT_STORE_KEY_MAX];
    uint8_t *ca_der = NULL, *br_der = NULL;
    size_t ca_len = 0, br_len = 0;
    ct_key *ca_key = NULL, *br_key = NULL;
    ct_secret *ca_rec = NULL, *br_rec = NULL, *probe = NULL;
    char *reg_rec = NULL;
    ct_registration *r = NULL;
    int wrote_ca = 0, wrote_br = 0;
    uint32_t expiry_s = CT_REGISTER_DEFAULT_EXPIRY_S;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!ctx || !store || !fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "ct_register: NULL argument");
    if (opts) {
        if (opts->version != CT_REGISTER_OPTIONS_VERSION)
            return ctp_err(err, CT_E_VERSION, 0, "ct_register_options version %u unsupported",
                           opts->version);
        if (opts->expiry_s)
            expiry_s = opts->expiry_s;
    }
    rc = ct_fingerprint_canonical(fingerprint, fp, err);
    if (rc != CT_OK)
        return rc;
    reg_key(k_ca, sizeof k_ca, fp, "ca");
    reg_key(k_br, sizeof k_br, fp, "bridge");
    reg_key(k_reg, sizeof k_reg, fp, "registered");

    /* a store laid out by a newer version is left alone */
    rc = ct_store_layout_check(ctx, store, NULL, err);
    if (rc != CT_OK)
        return rc;
    /* A clear answer before any key is made; CREATE below closes the race. */
    rc = ct_store_get(store, k_reg, &probe, NULL, err);
    ct_secret_free(probe);
    if (rc == CT_OK)
        return ctp_err(err, CT_E_CONFLICT, 0,
                       "cluster %.8s... is already registered; deregister first", fp);
    if (rc != CT_E_NOTFOUND)
        return rc;
    ct_error_clear(err);
    /* the first registration on a store records its layout */
    if ((rc = layout_ensure(ctx, store, err)) != CT_OK)
        return rc;

    r = ctp_calloc(1, sizeof *r);
    if (!r)
        return ctp_err(err, CT_E_NOMEM, 0, "out of memory");
    memcpy(r->fingerprint, fp, sizeof fp);

    rc = make_pki(ctx, fp, &ca_der, &ca_len, &ca_key, &br_der, &br_len, &br_key, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_room_hash_init(fp, r->init_room, err);
    if (rc != CT_OK)
        goto out;
    rc = ct_room_hash_operational(ca_der, ca_len, r->operational_room, err);
    if (rc != CT_OK)
        goto out;
    r->registered_at = ct_ctx_wall_ms(ctx);
    r->expires_at = r->registered_at + (int64_t)expiry_s * 1000;
    r->state = CT_REG_REGISTERED;

    rc = keypair_record(ca_der, ca_len, ca_key, &ca_rec, err);
    if (rc != CT_OK)
        goto out;
    rc = keypair_record(br_der, br_len, br_key, &br_rec, err);
    if (rc != CT_OK)
        goto out;
    rc = registered_record(r, &reg_rec, err);
    if (rc != CT_OK)
        goto out;

    rc = put_create(store, k_ca, ct_secret_data(ca_rec), ct_secret_len(ca_rec), fp, err);
    if (rc != CT_OK)
        goto out;
    wrote_ca = 1;
    rc = put_create(store, k_br, ct_secret_data(br_rec), ct_secret_len(br_rec), fp, err);
    if (rc != CT_OK)
        goto out;
    wrote_br = 1;
    rc = put_create(store, k_reg, reg_rec, strlen(reg_rec), fp, err);
    if (rc != CT_OK)
        goto out;
    wrote_ca = wrote_br = 0; /* committed */
    ctp_log(ctx, CT_LOG_INFO, "register.ok", "registered cluster %.8s...", fp);
    if (out) {
        *out = r;
        r = NULL;
    }
out:
    if (wrote_ca || wrote_br) {
        ct_error e2;
        int left = 0;
        if (wrote_br && ct_store_del(store, k_br, &e2) != CT_OK)
            left = 1;
        if (wrote_ca && ct_store_del(store, k_ca, &e2) != CT_OK)
            left = 1;
        if (left && err) {
            size_t n = strlen(err->message);
            snprintf(err->message + n, sizeof err->message - n,
                     " (and the clean-up failed: run deregister)");
        }
    }
    free(reg_rec);
    ct_secret_free(ca_rec);
    ct_secret_free(br_rec);
    ct_key_free(ca_key);
    ct_key_free(br_key);
    ct_free(ca_der);
    ct_free(br_der);
    free(r);
    return rc;
}

ct_err ct_deregister_ex(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                        const ct_deregister_options *opts, size_t *data_records, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1], prefix[CT_STORE_KEY_MAX];
    ct_strlist *keys = NULL;
    size_t i, n, plen, ndata = 0, nreg = 0;
    uint32_t mode = CT_DEREGISTER_REFUSE_DATA;
    ct_err rc;

    if (data_records)
        *data_records = 0;
    if (!ctx || !store || !fingerprint)
        return ctp_err(err, CT_E_INVALID, 0, "ct_deregister: NULL argument");
    if (opts) {
        if (opts->version != CT_DEREGISTER_OPTIONS_VERSION)
            return ctp_err(err, CT_E_VERSION, 0, "ct_deregister_options version %u unsupported",
                           opts->version);
        if (opts->data > CT_DEREGISTER_DELETE_DATA)
            return ctp_err(err, CT_E_INVALID, 0, "ct_deregister_options: unknown data mode %u",
                           opts->data);
        mode = opts->data;
    }
    rc = ct_fingerprint_canonical(fingerprint, fp, err);
    if (rc != CT_OK)
        return rc;
    /* (system/layout itself lies outside clusters/<fp>/: never deleted here) */
    rc = ct_store_layout_check(ctx, store, NULL, err);
    if (rc != CT_OK)
        return rc;
    plen = (size_t)snprintf(prefix, sizeof prefix, REG_PREFIX "%s/", fp);
    rc = ct_store_list(store, prefix, &keys, err);
    if (rc != CT_OK)
        return rc;
    n = ct_strlist_count(keys);
    for (i = 0; i < n; i++) {
        if (strchr(ct_strlist_get(keys, i) + plen, '/'))
            ndata++;
        else
            nreg++;
    }
    if (data_records)
        *data_records = ndata;
    if (n == 0 || (nreg == 0 && mode != CT_DEREGISTER_DELETE_DATA)) {
        if (ndata)
            rc = ctp_err(err, CT_E_NOTFOUND, 0, "cluster %.8s... is not registered (%zu "
                         "migrated Secret copies are kept in the store under clusters/%.8s.../; "
                         "--delete-data removes them)", fp, ndata, fp);
        else
            rc = ctp_err(err, CT_E_NOTFOUND, 0, "cluster %.8s... is not registered", fp);
        goto out;
    }
    if (ndata && mode == CT_DEREGISTER_REFUSE_DATA) {
        rc = ctp_err(err, CT_E_CONFLICT, 0, "cluster %.8s... has %zu migrated Secret copies "
                     "(clusters/%.8s.../); nothing deleted. --keep-data revokes the cluster and "
                     "keeps them (restore: register again, 'target migrate restore'); "
                     "--delete-data deletes them too", fp, ndata, fp);
        goto out;
    }
    /* `registered` first, so a half-done deregister never looks registered. */
    for (i = 0; i < n; i++) {
        const char *k = ct_strlist_get(keys, i);
        if (strcmp(k + plen, "registered") == 0) {
            rc = ct_store_del(store, k, err);
            if (rc != CT_OK && rc != CT_E_NOTFOUND)
                goto out;
        }
    }
    for (i = 0; i < n; i++) {
        const char *k = ct_strlist_get(keys, i);
        if (strchr(k + plen, '/') && mode != CT_DEREGISTER_DELETE_DATA)
            continue; /* data kept */
        rc = ct_store_del(store, k, err);
        if (rc == CT_E_NOTFOUND)
            rc = CT_OK;
        if (rc != CT_OK)
            goto out;
    }
    if (ndata && mode == CT_DEREGISTER_KEEP_DATA)
        ctp_log(ctx, CT_LOG_NOTICE, "register.removed", "deregistered cluster %.8s...; %zu "
                "migrated Secret copies kept", fp, ndata);
    else if (ndata)
        ctp_log(ctx, CT_LOG_NOTICE, "register.removed", "deregistered cluster %.8s...; %zu "
                "migrated Secret copies deleted", fp, ndata);
    else
        ctp_log(ctx, CT_LOG_INFO, "register.removed", "deregistered cluster %.8s...", fp);
out:
    ct_strlist_free(keys);
    return rc;
}

ct_err ct_deregister(ct_ctx *ctx, ct_store *store, const char *fingerprint, ct_error *err)
{
    return ct_deregister_ex(ctx, store, fingerprint, NULL, NULL, err);
}

static int unhex32(const char *s, uint8_t out[32])
{
    size_t i;
    if (strlen(s) != 64)
        return -1;
    for (i = 0; i < 64; i++) {
        int c = s[i], v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

static ct_err parse_registered(const char *key, const char *fp, const uint8_t *data,
                               size_t len, ct_registration *r, ct_error *err)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    json_t *v, *f, *ra, *ea, *ir, *orm;
    ct_err rc = CT_OK;

    if (!o || !json_is_object(o)) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s' is not a JSON object", key);
        goto out;
    }
    v = json_object_get(o, "v");
    f = json_object_get(o, "fingerprint");
    ra = json_object_get(o, "registered_at");
    ea = json_object_get(o, "expires_at");
    ir = json_object_get(o, "init_room");
    orm = json_object_get(o, "operational_room");
    if (!json_is_integer(v) || json_integer_value(v) != REG_RECORD_V) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': missing or unsupported \"v\"", key);
        goto out;
    }
    if (!json_is_string(f) || strcmp(json_string_value(f), fp) != 0 ||
        !json_is_integer(ra) || !json_is_integer(ea) || !json_is_string(ir) ||
        !json_is_string(orm)) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': missing or mistyped fields", key);
        goto out;
    }
    if (unhex32(json_string_value(ir), r->init_room) != 0 ||
        unhex32(json_string_value(orm), r->operational_room) != 0) {
        rc = ctp_err(err, CT_E_STORE, 0, "record '%s': a room hash is not 64 hex digits",
                     key);
        goto out;
    }
    memcpy(r->fingerprint, fp, CT_FINGERPRINT_LEN + 1);
    r->registered_at = (int64_t)json_integer_value(ra);
    r->expires_at = (int64_t)json_integer_value(ea);
out:
    json_decref(o);
    return rc;
}

ct_err ct_registration_get(ct_ctx *ctx, ct_store *store, const char *fingerprint,
                           ct_registration **out, ct_error *err)
{
    char fp[CT_FINGERPRINT_LEN + 1], k_reg[CT_STORE_KEY_MAX], k_init[CT_STORE_KEY_MAX];
    ct_secret *val = NULL;
    ct_registration *r = NULL;
    ct_err rc;

    if (out)
        *out = NULL;
    if (!ctx || !store || !fingerprint || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_registration_get: NULL argument");
    rc = ct_fingerprint_canonical(fingerprint, fp, err);
    if (rc != CT_OK)
        return rc;
    reg_key(k_reg, sizeof k_reg, fp, "registered");
    reg_key(k_init, sizeof k_init, fp, "initialized");

    rc = ct_store_get(store, k_reg, &val, NULL, err);
    if (rc == CT_E_NOTFOUND)
        return ctp_err(err, CT_E_NOTFOUND, 0, "cluster %.8s... is not registered", fp);
    if (rc != CT_OK)
        return rc;
    r = ctp_calloc(1, sizeof *r);
    if (!r) {
        rc = ctp_err(err, CT_E_NOMEM, 0, "out of memory");
        goto out;
    }
    rc = parse_registered(k_reg, fp, ct_secret_data(val), ct_secret_len(val), r, err);
    if (rc != CT_OK)
        goto out;
    ct_secret_free(val);
    val = NULL;
    rc = ct_store_get(store, k_init, &val, NULL, err);
    if (rc == CT_OK) {
        r->state = reg_connected(ctx, store, fp) ? CT_REG_CONNECTED : CT_REG_INITIALIZED;
    } else if (rc == CT_E_NOTFOUND) {
        rc = CT_OK;
        ct_error_clear(err);
        r->state = ct_ctx_wall_ms(ctx) > r->expires_at ? CT_REG_EXPIRED : CT_REG_REGISTERED;
    } else {
        goto out;
    }
    *out = r;
    r = NULL;
out:
    ct_secret_free(val);
    free(r);
    return rc;
}

ct_err ct_registration_list(ct_ctx *ctx, ct_store *store, ct_strlist **fingerprints,
                            ct_error *err)
{
    ct_strlist *keys = NULL, *fps = NULL;
    size_t i, n;
    ct_err rc;

    if (fingerprints)
        *fingerprints = NULL;
    if (!ctx || !store || !fingerprints)
        return ctp_err(err, CT_E_INVALID, 0, "ct_registration_list: NULL argument");
    rc = ct_store_layout_check(ctx, store, NULL, err);
    if (rc != CT_OK)
        return rc;
    rc = ct_store_list(store, REG_PREFIX, &keys, err);
    if (rc != CT_OK)
        return rc;
    rc = ct_strlist_new(&fps, err);
    if (rc != CT_OK)
        goto out;
    n = ct_strlist_count(keys);
    for (i = 0; i < n; i++) {
        const char *k = ct_strlist_get(keys, i) + strlen(REG_PREFIX);
        char fp[CT_FINGERPRINT_LEN + 1];
        ct_error e2;
        if (strlen(k) != CT_FINGERPRINT_LEN + strlen("/registered") ||
            strcmp(k + CT_FINGERPRINT_LEN, "/registered") != 0)
            continue;
        memcpy(fp, k, CT_FINGERPRINT_LEN);
        fp[CT_FINGERPRINT_LEN] = '\0';
        {
            char canon[CT_FINGERPRINT_LEN + 1];
            if (ct_fingerprint_canonical(fp, canon, &e2) != CT_OK || strcmp(canon, fp) != 0)
                continue; /* not one of ours */
        }
        rc = ct_strlist_append(fps, fp, err);
        if (rc != CT_OK)
            goto out;
    }
    ct_strlist_sort(fps);
    *fingerprints = fps;
    fps = NULL;
out:
    ct_strlist_free(fps);
    ct_strlist_free(keys);
    return rc;
}

const char *ct_registration_fingerprint(const ct_registration *r)
{
    return r ? r->fingerprint : NULL;
}

int64_t ct_registration_registered_at(const ct_registration *r)
{
    return r ? r->registered_at : 0;
}

int64_t ct_registration_expires_at(const ct_registration *r)
{
    return r ? r->expires_at : 0;
}

const uint8_t *ct_registration_init_room(const ct_registration *r)
{
    return r ? r->init_room : NULL;
}

const uint8_t *ct_registration_operational_room(const ct_registration *r)
{
    return r ? r->operational_room : NULL;
}

ct_reg_state ct_registration_state(const ct_registration *r)
{
    return r ? r->state : CT_REG_REGISTERED;
}

const char *ct_reg_state_name(ct_reg_state s)
{
    switch (s) {
    case CT_REG_REGISTERED:
        return "registered";
    case CT_REG_INITIALIZED:
        return "initialized";
    case CT_REG_EXPIRED:
        return "expired";
    case CT_REG_CONNECTED:
        return "connected";
    default:
        return "unknown";
    }
}

void ct_registration_free(ct_registration *r)
{
    free(r);
}
