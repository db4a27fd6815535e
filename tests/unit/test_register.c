/*
 * test_register.c - cluster registration (register.h) on the memory and
 * SQLite stores: the record layout, the PKI it creates, room hashes,
 * conflicts, deregistration, states, malformed records and rollback.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define FP1 "0ad50c05-1153-4508-9237-4cb2912e2c23"
#define FP2 "11111111-2222-4333-8444-555555555555"

static const char *const k_names[] = {"ca", "bridge", "registered"};

/* A wall clock the test sets. */
static int64_t g_wall_ms;
static int64_t test_wall(void *user)
{
    (void)user;
    return g_wall_ms;
}

static ct_ctx *clock_ctx(void)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    o.wall_ms = test_wall;
    o.log_level = CT_LOG_WARNING;
    ck_assert_int_eq(ct_ctx_new(&o, &ctx, NULL), CT_OK);
    return ctx;
}

/* The store under test: memory (_i == 0) or SQLite (_i == 1). */
struct fx {
    ct_ctx *ctx;
    ct_store *store;
    char *dir;
};

static void fx_open(struct fx *f, int kind, ct_ctx *ctx)
{
    ct_error err;
    memset(f, 0, sizeof *f);
    f->ctx = ctx ? ctx : ct_test_ctx();
    if (kind == 0) {
        ck_ok(ct_store_new_memory(f->ctx, &f->store, &err), &err);
    } else {
        char path[600];
        f->dir = ct_test_tmpdir();
        snprintf(path, sizeof path, "%s/store.db", f->dir);
        ck_ok(ct_store_new_sqlite(f->ctx, path, &f->store, &err), &err);
    }
}

static void fx_close(struct fx *f)
{
    ct_store_free(f->store);
    ct_ctx_free(f->ctx);
    if (f->dir) {
        ct_test_rmrf(f->dir);
        free(f->dir);
    }
}

static void key_of(char *buf, size_t n, const char *fp, const char *name)
{
    snprintf(buf, n, "clusters/%s/%s", fp, name);
}

/* Reads a record as JSON (caller json_decref's). */
static json_t *get_json(ct_store *s, const char *fp, const char *name, uint64_t *version)
{
    char key[200];
    ct_secret *v = NULL;
    ct_error err;
    json_error_t je;
    json_t *o;
    key_of(key, sizeof key, fp, name);
    ck_ok(ct_store_get(s, key, &v, version, &err), &err);
    o = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), 0, &je);
    ct_secret_free(v);
    ck_assert_msg(o != NULL, "%s: %s", key, je.text);
    return o;
}

static size_t count_keys(ct_store *s, const char *prefix)
{
    ct_strlist *l = NULL;
    ct_error err;
    size_t n;
    ck_ok(ct_store_list(s, prefix, &l, &err), &err);
    n = ct_strlist_count(l);
    ct_strlist_free(l);
    return n;
}

/* DER of the "cert" field of a key-pair record. */
static uint8_t *cert_der(json_t *rec, size_t *len)
{
    const char *pem = json_string_value(json_object_get(rec, "cert"));
    uint8_t *der = NULL;
    ct_error err;
    ck_assert_ptr_nonnull(pem);
    ck_ok(ct_cert_pem_to_der(pem, strlen(pem), &der, len, &err), &err);
    return der;
}

static void check_key_loads(ct_ctx *ctx, json_t *rec)
{
    const char *pem = json_string_value(json_object_get(rec, "key"));
    ct_key *k = NULL;
    ct_error err;
    ck_assert_ptr_nonnull(pem);
    ck_ok(ct_key_load(ctx, (const uint8_t *)pem, strlen(pem), &k, &err), &err);
    ct_key_free(k);
}

START_TEST(test_layout_and_pki)
{
    struct fx f;
    ct_registration *r = NULL;
    ct_error err;
    json_t *ca, *br, *reg;
    uint8_t *ca_d, *br_d, room[32];
    size_t ca_l, br_l;
    char hex[65];

    fx_open(&f, _i, NULL);
    /* Upper case in, canonical lower case in the records. */
    ck_ok(ct_register(f.ctx, f.store, "0AD50C05-1153-4508-9237-4CB2912E2C23", NULL, &r, &err),
          &err);
    ck_assert_str_eq(ct_registration_fingerprint(r), FP1);
    ck_assert_int_eq(ct_registration_state(r), CT_REG_REGISTERED);
    ck_assert(ct_registration_expires_at(r) - ct_registration_registered_at(r) ==
              86400 * 1000LL);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 3);

    ca = get_json(f.store, FP1, "ca", NULL);
    br = get_json(f.store, FP1, "bridge", NULL);
    reg = get_json(f.store, FP1, "registered", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(ca, "v")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(br, "v")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(reg, "v")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(reg, "fingerprint")), FP1);
    ck_assert(json_integer_value(json_object_get(reg, "registered_at")) ==
              ct_registration_registered_at(r));
    ck_assert(json_integer_value(json_object_get(reg, "expires_at")) ==
              ct_registration_expires_at(r));
    ck_assert_ptr_null(json_object_get(reg, "key"));
    check_key_loads(f.ctx, ca);
    check_key_loads(f.ctx, br);

    ca_d = cert_der(ca, &ca_l);
    br_d = cert_der(br, &br_l);
    ck_ok(ct_cert_verify(f.ctx, ca_d, ca_l, ca_d, ca_l, CT_CERT_CA, &err), &err);
    ck_ok(ct_cert_verify(f.ctx, ca_d, ca_l, br_d, br_l, CT_CERT_CLIENT, &err), &err);
    ck_err(ct_cert_verify(f.ctx, ca_d, ca_l, br_d, br_l, CT_CERT_SERVER, &err), CT_E_CERT,
           &err);

    ck_ok(ct_room_hash_init(FP1, room, &err), &err);
    ck_assert(memcmp(room, ct_registration_init_room(r), 32) == 0);
    ck_assert_str_eq(json_string_value(json_object_get(reg, "init_room")), ct_hex(room, 32, hex));
    ck_ok(ct_room_hash_operational(ca_d, ca_l, room, &err), &err);
    ck_assert(memcmp(room, ct_registration_operational_room(r), 32) == 0);
    ck_assert_str_eq(json_string_value(json_object_get(reg, "operational_room")),
                     ct_hex(room, 32, hex));

    ct_free(ca_d);
    ct_free(br_d);
    json_decref(ca);
    json_decref(br);
    json_decref(reg);
    ct_registration_free(r);
    fx_close(&f);
}
END_TEST

START_TEST(test_two_clusters_and_list)
{
    struct fx f;
    ct_error err;
    ct_strlist *l = NULL;
    json_t *a, *b;

    fx_open(&f, _i, NULL);
    ck_ok(ct_register(f.ctx, f.store, FP2, NULL, NULL, &err), &err);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    a = get_json(f.store, FP1, "ca", NULL);
    b = get_json(f.store, FP2, "ca", NULL);
    ck_assert_str_ne(json_string_value(json_object_get(a, "cert")),
                     json_string_value(json_object_get(b, "cert")));
    ck_assert_str_ne(json_string_value(json_object_get(a, "key")),
                     json_string_value(json_object_get(b, "key")));
    json_decref(a);
    json_decref(b);

    /* Something else in the store is not listed. */
    ck_ok(ct_store_put(f.store, "clusters/other/registered", "{}", 2, CT_STORE_ANY, NULL, &err),
          &err);
    ck_ok(ct_registration_list(f.ctx, f.store, &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 2);
    ck_assert_str_eq(ct_strlist_get(l, 0), FP1);
    ck_assert_str_eq(ct_strlist_get(l, 1), FP2);
    ct_strlist_free(l);
    fx_close(&f);
}
END_TEST

START_TEST(test_conflict_keeps_records)
{
    struct fx f;
    ct_error err;
    uint64_t v1[3], v2[3];
    json_t *before[3], *after[3];
    size_t i;

    fx_open(&f, _i, NULL);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    for (i = 0; i < 3; i++)
        before[i] = get_json(f.store, FP1, k_names[i], &v1[i]);
    ck_err(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "deregister first"));
    ck_assert_ptr_null(strstr(err.message, FP1)); /* only a prefix */
    for (i = 0; i < 3; i++) {
        after[i] = get_json(f.store, FP1, k_names[i], &v2[i]);
        ck_assert_uint_eq(v1[i], v2[i]);
        ck_assert(json_equal(before[i], after[i]));
        json_decref(before[i]);
        json_decref(after[i]);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_conflict_on_leftover_ca)
{
    /* A CA record without `registered` (e.g. a racing register): CREATE
     * fails, and the existing record is not deleted by the rollback. */
    struct fx f;
    ct_error err;
    ct_secret *v = NULL;

    fx_open(&f, _i, NULL);
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/ca", "x", 1, CT_STORE_CREATE, NULL, &err),
          &err);
    ck_err(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), CT_E_CONFLICT, &err);
    ck_ok(ct_store_get(f.store, "clusters/" FP1 "/ca", &v, NULL, &err), &err);
    ck_assert_uint_eq(ct_secret_len(v), 1);
    ct_secret_free(v);
    ck_assert_uint_eq(count_keys(f.store, "clusters/"), 1);
    fx_close(&f);
}
END_TEST

/* ct_cluster_ca_pem: the registered CA's certificate (it hashes to the
 * operational room), never its key; not found once deregistered. */
START_TEST(test_cluster_ca_pem)
{
    struct fx f;
    ct_error err;
    ct_registration *r = NULL;
    char *pem = (char *)1;
    uint8_t *der = NULL, room[32];
    size_t len = 0;

    fx_open(&f, _i, NULL);
    ck_err(ct_cluster_ca_pem(f.ctx, f.store, FP1, &pem, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(pem);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, &r, &err), &err);
    ck_ok(ct_cluster_ca_pem(f.ctx, f.store, FP1, &pem, &err), &err);
    ck_assert_ptr_nonnull(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    ck_assert_ptr_null(strstr(pem, "PRIVATE"));
    ck_ok(ct_cert_pem_to_der(pem, strlen(pem), &der, &len, &err), &err);
    ck_ok(ct_room_hash_operational(der, len, room, &err), &err);
    ck_assert_mem_eq(room, ct_registration_operational_room(r), 32);
    ct_free(der);
    ct_free(pem);
    ck_err(ct_cluster_ca_pem(f.ctx, f.store, NULL, &pem, &err), CT_E_INVALID, &err);
    ck_err(ct_cluster_ca_pem(f.ctx, NULL, FP1, &pem, &err), CT_E_INVALID, &err);
    ck_err(ct_cluster_ca_pem(f.ctx, f.store, FP1, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_cluster_ca_pem(f.ctx, f.store, "not-a-fingerprint", &pem, &err), CT_E_INVALID,
           &err);
    ck_ok(ct_deregister(f.ctx, f.store, FP1, &err), &err);
    ck_err(ct_cluster_ca_pem(f.ctx, f.store, FP1, &pem, &err), CT_E_NOTFOUND, &err);
    ct_registration_free(r);
    fx_close(&f);
}
END_TEST

START_TEST(test_deregister)
{
    struct fx f;
    ct_error err;
    ct_registration *r = NULL;

    fx_open(&f, _i, NULL);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    ck_ok(ct_register(f.ctx, f.store, FP2, NULL, NULL, &err), &err);
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/initialized", "{}", 2, CT_STORE_CREATE, NULL,
                       &err), &err);
    ck_ok(ct_deregister(f.ctx, f.store, FP1, &err), &err);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 0);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP2 "/"), 3);
    ck_err(ct_registration_get(f.ctx, f.store, FP1, &r, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_null(r);
    ck_err(ct_deregister(f.ctx, f.store, FP1, &err), CT_E_NOTFOUND, &err);
    /* Registering again after deregistering works. */
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    fx_close(&f);
}
END_TEST

/* Migrated copies (migrate_server.c layout) are never deleted without being told. */
START_TEST(test_deregister_migrated_data)
{
    static const char rec[] = "{\"v\":1,\"namespace\":\"apps\",\"name\":\"db\",\"state\":\"deleted\"}";
    ct_deregister_options d = CT_DEREGISTER_OPTIONS_INIT;
    struct fx f;
    ct_error err;
    size_t n = 99;
    ct_secret *v = NULL;

    fx_open(&f, _i, NULL);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/secrets/apps/db", rec, strlen(rec),
                       CT_STORE_CREATE, NULL, &err), &err);
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/secrets/apps/web", rec, strlen(rec),
                       CT_STORE_CREATE, NULL, &err), &err);
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/reviewer", "{}", 2, CT_STORE_CREATE, NULL,
                       &err), &err);
    /* the default refuses, names the count and the options, deletes nothing */
    ck_err(ct_deregister(f.ctx, f.store, FP1, &err), CT_E_CONFLICT, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "2 migrated Secret copies"));
    ck_assert_ptr_nonnull(strstr(err.message, "--keep-data"));
    ck_assert_ptr_nonnull(strstr(err.message, "--delete-data"));
    ck_err(ct_deregister_ex(f.ctx, f.store, FP1, NULL, &n, &err), CT_E_CONFLICT, &err);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 6);
    /* bad options */
    d.data = 7;
    ck_err(ct_deregister_ex(f.ctx, f.store, FP1, &d, NULL, &err), CT_E_INVALID, &err);
    d.version = 99;
    ck_err(ct_deregister_ex(f.ctx, f.store, FP1, &d, NULL, &err), CT_E_VERSION, &err);
    d.version = CT_DEREGISTER_OPTIONS_VERSION;
    /* keep: revoked (no CA, no registration), the copies untouched */
    d.data = CT_DEREGISTER_KEEP_DATA;
    n = 0;
    ck_ok(ct_deregister_ex(f.ctx, f.store, FP1, &d, &n, &err), &err);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 2);
    ck_err(ct_store_get(f.store, "clusters/" FP1 "/ca", &v, NULL, &err), CT_E_NOTFOUND, &err);
    ck_ok(ct_store_get(f.store, "clusters/" FP1 "/secrets/apps/db", &v, NULL, &err), &err);
    ck_assert_mem_eq(ct_secret_data(v), rec, strlen(rec));
    ct_secret_free(v);
    v = NULL;
    /* not registered any more; keeping again says what is left */
    ck_err(ct_deregister_ex(f.ctx, f.store, FP1, &d, NULL, &err), CT_E_NOTFOUND, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "2 migrated Secret copies are kept"));
    ck_err(ct_deregister(f.ctx, f.store, FP1, &err), CT_E_NOTFOUND, &err);
    /* registering the same cluster again works with the kept copies in place */
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 5);
    /* delete: everything goes, the count is reported */
    d.data = CT_DEREGISTER_DELETE_DATA;
    n = 0;
    ck_ok(ct_deregister_ex(f.ctx, f.store, FP1, &d, &n, &err), &err);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 0);
    /* data only (kept earlier): delete-data still clears it */
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/secrets/apps/db", rec, strlen(rec),
                       CT_STORE_CREATE, NULL, &err), &err);
    ck_ok(ct_deregister_ex(f.ctx, f.store, FP1, &d, &n, &err), &err);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 0);
    ck_err(ct_deregister_ex(f.ctx, f.store, FP1, &d, &n, &err), CT_E_NOTFOUND, &err);
    fx_close(&f);
}
END_TEST

START_TEST(test_states)
{
    struct fx f;
    ct_error err;
    ct_registration *r = NULL;
    ct_register_options o = CT_REGISTER_OPTIONS_INIT;

    g_wall_ms = 1700000000000LL;
    fx_open(&f, _i, clock_ctx());
    o.expiry_s = 60;
    ck_ok(ct_register(f.ctx, f.store, FP1, &o, NULL, &err), &err);
    ck_ok(ct_registration_get(f.ctx, f.store, FP1, &r, &err), &err);
    ck_assert(ct_registration_registered_at(r) == 1700000000000LL);
    ck_assert(ct_registration_expires_at(r) == 1700000060000LL);
    ck_assert_int_eq(ct_registration_state(r), CT_REG_REGISTERED);
    ck_assert_str_eq(ct_reg_state_name(ct_registration_state(r)), "registered");
    ct_registration_free(r);

    g_wall_ms = 1700000060000LL; /* at expiry: not yet past it */
    ck_ok(ct_registration_get(f.ctx, f.store, FP1, &r, &err), &err);
    ck_assert_int_eq(ct_registration_state(r), CT_REG_REGISTERED);
    ct_registration_free(r);

    g_wall_ms = 1700000060001LL;
    ck_ok(ct_registration_get(f.ctx, f.store, FP1, &r, &err), &err);
    ck_assert_int_eq(ct_registration_state(r), CT_REG_EXPIRED);
    ck_assert_str_eq(ct_reg_state_name(ct_registration_state(r)), "expired");
    ct_registration_free(r);

    /* Initialized wins over expiry. */
    ck_ok(ct_store_put(f.store, "clusters/" FP1 "/initialized", "{\"v\":1}", 7,
                       CT_STORE_CREATE, NULL, &err), &err);
    ck_ok(ct_registration_get(f.ctx, f.store, FP1, &r, &err), &err);
    ck_assert_int_eq(ct_registration_state(r), CT_REG_INITIALIZED);
    ck_assert_str_eq(ct_reg_state_name(ct_registration_state(r)), "initialized");
    ct_registration_free(r);
    fx_close(&f);
}
END_TEST

START_TEST(test_corrupt_record)
{
    static const char *const bad[] = {
        "not json",
        "[1,2]",
        "{\"v\":2}",
        "{\"v\":1,\"fingerprint\":\"" FP1 "\"}",
        "{\"v\":1,\"fingerprint\":\"" FP2 "\",\"registered_at\":1,\"expires_at\":2,"
        "\"init_room\":\"00\",\"operational_room\":\"00\"}",
        "{\"v\":1,\"fingerprint\":\"" FP1 "\",\"registered_at\":1,\"expires_at\":2,"
        "\"init_room\":\"zz\",\"operational_room\":\"00\"}",
        "",
    };
    struct fx f;
    ct_error err;
    ct_registration *r = NULL;
    size_t i;

    fx_open(&f, _i, NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_ok(ct_store_put(f.store, "clusters/" FP1 "/registered", bad[i], strlen(bad[i]),
                           CT_STORE_ANY, NULL, &err), &err);
        ck_err(ct_registration_get(f.ctx, f.store, FP1, &r, &err), CT_E_STORE, &err);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(err.message, "clusters/" FP1 "/registered"));
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_invalid)
{
    struct fx f;
    ct_error err;
    ct_registration *r = NULL;
    ct_strlist *l = NULL;
    ct_register_options o = CT_REGISTER_OPTIONS_INIT;

    fx_open(&f, _i, NULL);
    ck_err(ct_register(f.ctx, f.store, "not-a-uuid", NULL, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_register(f.ctx, f.store, "0ad50c05-1153-4508-9237-4cb2912e2c2", NULL, NULL, &err),
           CT_E_INVALID, &err);
    ck_err(ct_register(f.ctx, f.store, "0ad50c05/1153-4508-9237-4cb2912e2c23", NULL, NULL,
                       &err), CT_E_INVALID, &err);
    ck_err(ct_register(f.ctx, f.store, NULL, NULL, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_register(f.ctx, NULL, FP1, NULL, NULL, &err), CT_E_INVALID, &err);
    o.version = 99;
    ck_err(ct_register(f.ctx, f.store, FP1, &o, NULL, &err), CT_E_VERSION, &err);
    ck_err(ct_deregister(f.ctx, f.store, "x", &err), CT_E_INVALID, &err);
    ck_err(ct_registration_get(f.ctx, f.store, "x", &r, &err), CT_E_INVALID, &err);
    ck_err(ct_registration_list(f.ctx, f.store, NULL, &err), CT_E_INVALID, &err);
    ck_assert_uint_eq(count_keys(f.store, ""), 0);
    ck_ok(ct_registration_list(f.ctx, f.store, &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 0);
    ct_strlist_free(l);
    ck_assert_ptr_null(ct_registration_fingerprint(NULL));
    ct_registration_free(NULL);
    fx_close(&f);
}
END_TEST

/* system/layout: written by the first register, kept by deregister, never a cluster. */
START_TEST(test_store_layout)
{
    struct fx f;
    ct_error err;
    ct_strlist *l = NULL;
    ct_secret *v = NULL;
    uint64_t ver1 = 0, ver2 = 0;
    uint32_t layout = 99;
    json_t *o;

    g_wall_ms = 1764490000123;
    fx_open(&f, _i, clock_ctx());
    /* an empty store (or one from before the record existed) is fine */
    ck_ok(ct_store_layout_check(f.ctx, f.store, &layout, &err), &err);
    ck_assert_uint_eq(layout, 0);
    ck_ok(ct_registration_list(f.ctx, f.store, &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 0);
    ct_strlist_free(l);

    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    ck_ok(ct_store_get(f.store, "system/layout", &v, &ver1, &err), &err);
    o = json_loadb((const char *)ct_secret_data(v), ct_secret_len(v), 0, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "v")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "layout")), CT_STORE_LAYOUT);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "created_at")), 1764490000123);
    ck_assert_uint_eq(json_object_size(o), 3);
    json_decref(o);
    ct_secret_free(v);
    ck_ok(ct_store_layout_check(f.ctx, f.store, &layout, &err), &err);
    ck_assert_uint_eq(layout, 1);

    /* later registrations leave it alone */
    g_wall_ms += 5000;
    ck_ok(ct_register(f.ctx, f.store, FP2, NULL, NULL, &err), &err);
    ck_ok(ct_store_get(f.store, "system/layout", &v, &ver2, &err), &err);
    ct_secret_free(v);
    ck_assert_uint_eq(ver1, ver2);

    /* system/ is never listed as a cluster, and deregistering keeps it */
    ck_ok(ct_registration_list(f.ctx, f.store, &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 2);
    ct_strlist_free(l);
    ck_ok(ct_deregister(f.ctx, f.store, FP1, &err), &err);
    ck_ok(ct_deregister(f.ctx, f.store, FP2, &err), &err);
    ck_assert_uint_eq(count_keys(f.store, "clusters/"), 0);
    ck_assert_uint_eq(count_keys(f.store, "system/"), 1);
    ck_ok(ct_registration_list(f.ctx, f.store, &l, &err), &err);
    ck_assert_uint_eq(ct_strlist_count(l), 0);
    ct_strlist_free(l);

    /* a store written before the record existed: accepted, and the next
     * registration adds the record */
    ck_ok(ct_store_del(f.store, "system/layout", &err), &err);
    ck_ok(ct_registration_list(f.ctx, f.store, &l, &err), &err);
    ct_strlist_free(l);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    ck_ok(ct_store_layout_check(f.ctx, f.store, &layout, &err), &err);
    ck_assert_uint_eq(layout, 1);
    /* an equal layout with members added by a later version of the record: fine */
    {
        static const char same[] = "{\"v\":1,\"layout\":1,\"created_at\":5,\"note\":\"x\"}";
        ck_ok(ct_store_put(f.store, "system/layout", same, strlen(same), CT_STORE_ANY, NULL,
                           &err), &err);
    }
    ck_ok(ct_register(f.ctx, f.store, FP2, NULL, NULL, &err), &err);
    fx_close(&f);
}
END_TEST

/* A newer or corrupt layout: register, list, deregister and the check refuse. */
START_TEST(test_store_layout_refused)
{
    static const struct {
        const char *rec;
        ct_err code;
        const char *says;
    } cases[] = {
        {"{\"v\":1,\"layout\":2,\"created_at\":1}", CT_E_VERSION,
         "store layout 2 is newer than this cloudtaser (1): upgrade"},
        {"{\"v\":1,\"layout\":4294967295,\"created_at\":1}", CT_E_VERSION,
         "store layout 4294967295 is newer"},
        {"{\"v\":2,\"layout\":1,\"created_at\":1}", CT_E_VERSION, "upgrade"},
        {"not json", CT_E_STORE, "'system/layout' is corrupt"},
        {"", CT_E_STORE, "'system/layout' is corrupt"},
        {"[1]", CT_E_STORE, "'system/layout' is corrupt"},
        {"{}", CT_E_STORE, "'system/layout' is corrupt"},
        {"{\"v\":1,\"layout\":\"1\",\"created_at\":1}", CT_E_STORE, "is corrupt"},
        {"{\"v\":1,\"layout\":0,\"created_at\":1}", CT_E_STORE, "is corrupt"},
        {"{\"v\":1,\"layout\":-1,\"created_at\":1}", CT_E_STORE, "is corrupt"},
        {"{\"v\":1,\"layout\":4294967296,\"created_at\":1}", CT_E_STORE, "is corrupt"},
        {"{\"v\":1,\"layout\":1}", CT_E_STORE, "is corrupt"},
        {"{\"v\":0,\"layout\":1,\"created_at\":1}", CT_E_STORE, "is corrupt"},
        {"{\"v\":1,\"v\":1,\"layout\":1,\"created_at\":1}", CT_E_STORE, "is corrupt"},
    };
    struct fx f;
    ct_error err;
    ct_strlist *l = NULL;
    ct_registration *r = NULL;
    uint32_t layout = 7;
    size_t i;

    fx_open(&f, _i, NULL);
    ck_ok(ct_register(f.ctx, f.store, FP1, NULL, NULL, &err), &err);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_ok(ct_store_put(f.store, "system/layout", cases[i].rec, strlen(cases[i].rec),
                           CT_STORE_ANY, NULL, &err), &err);
        ck_err(ct_store_layout_check(f.ctx, f.store, &layout, &err), cases[i].code, &err);
        ck_assert_msg(strstr(err.message, cases[i].says), "case %zu: %s", i, err.message);
        ck_assert_uint_eq(layout, 0);
        ck_err(ct_register(f.ctx, f.store, FP2, NULL, &r, &err), cases[i].code, &err);
        ck_assert_ptr_null(r);
        ck_assert_msg(strstr(err.message, cases[i].says), "case %zu: %s", i, err.message);
        ck_err(ct_registration_list(f.ctx, f.store, &l, &err), cases[i].code, &err);
        ck_assert_ptr_null(l);
        ck_err(ct_deregister(f.ctx, f.store, FP1, &err), cases[i].code, &err);
        /* nothing was written or deleted */
        ck_assert_uint_eq(count_keys(f.store, "clusters/" FP2 "/"), 0);
        ck_assert_uint_eq(count_keys(f.store, "clusters/" FP1 "/"), 3);
    }
    ck_err(ct_store_layout_check(NULL, f.store, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_store_layout_check(f.ctx, NULL, NULL, &err), CT_E_INVALID, &err);
    fx_close(&f);
}
END_TEST

/* A store that forwards to another and fails its Nth put. */
struct failing {
    ct_store *inner;
    int puts, fail_at;
};

static ct_err fl_get(const char *key, ct_secret **value, uint64_t *version, ct_error *err,
                     void *user)
{
    struct failing *s = user;
    return ct_store_get(s->inner, key, value, version, err);
}

static ct_err fl_put(const char *key, const uint8_t *value, size_t len, int64_t expected,
                     uint64_t *new_version, ct_error *err, void *user)
{
    struct failing *s = user;
    if (++s->puts == s->fail_at) {
        if (err) {
            err->code = CT_E_STORE;
            err->os_error = 0;
            snprintf(err->message, sizeof err->message, "injected put failure");
        }
        return CT_E_STORE;
    }
    return ct_store_put(s->inner, key, value, len, expected, new_version, err);
}

static ct_err fl_del(const char *key, ct_error *err, void *user)
{
    struct failing *s = user;
    return ct_store_del(s->inner, key, err);
}

static ct_err fl_list(const char *prefix, ct_strlist *out, ct_error *err, void *user)
{
    struct failing *s = user;
    ct_strlist *l = NULL;
    size_t i;
    ct_err rc = ct_store_list(s->inner, prefix, &l, err);
    for (i = 0; rc == CT_OK && i < ct_strlist_count(l); i++)
        rc = ct_strlist_append(out, ct_strlist_get(l, i), err);
    ct_strlist_free(l);
    return rc;
}

START_TEST(test_rollback)
{
    int at = _i + 1; /* fail the 1st, 2nd and 3rd put */
    ct_ctx *ctx = ct_test_ctx();
    struct failing fs = {0};
    ct_store_ops ops = {.version = CT_STORE_OPS_VERSION, .flags = CT_STORE_F_CAS,
                        .get = fl_get, .put = fl_put, .del = fl_del, .list = fl_list};
    ct_store *st = NULL;
    ct_registration *r = NULL;
    ct_error err;

    ck_ok(ct_store_new_memory(ctx, &fs.inner, &err), &err);
    fs.fail_at = at;
    ck_ok(ct_store_new(ctx, &ops, &fs, &st, &err), &err);
    ck_err(ct_register(ctx, st, FP1, NULL, &r, &err), CT_E_STORE, &err);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(err.message, "injected"));
    ck_assert_int_eq(fs.puts, at);
    /* nothing of the cluster is left; the layout record (the first put)
     * stays once written: it describes the store, not the cluster */
    ck_assert_uint_eq(count_keys(fs.inner, "clusters/"), 0);
    ck_assert_uint_eq(count_keys(fs.inner, "system/"), at > 1 ? 1 : 0);
    /* The store works again: registering now succeeds. */
    fs.fail_at = 0;
    ck_ok(ct_register(ctx, st, FP1, NULL, NULL, &err), &err);
    ck_assert_uint_eq(count_keys(fs.inner, "clusters/"), 3);
    ck_assert_uint_eq(count_keys(fs.inner, "system/"), 1);
    ct_store_free(st);
    ct_store_free(fs.inner);
    ct_ctx_free(ctx);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("register");
    TCase *tc = tcase_create("stores");
    /* loop index: 0 memory store, 1 SQLite store */
    tcase_add_loop_test(tc, test_layout_and_pki, 0, 2);
    tcase_add_loop_test(tc, test_two_clusters_and_list, 0, 2);
    tcase_add_loop_test(tc, test_conflict_keeps_records, 0, 2);
    tcase_add_loop_test(tc, test_conflict_on_leftover_ca, 0, 2);
    tcase_add_loop_test(tc, test_deregister, 0, 2);
    tcase_add_loop_test(tc, test_deregister_migrated_data, 0, 2);
    tcase_add_loop_test(tc, test_cluster_ca_pem, 0, 2);
    tcase_add_loop_test(tc, test_states, 0, 2);
    tcase_add_loop_test(tc, test_corrupt_record, 0, 2);
    tcase_add_loop_test(tc, test_invalid, 0, 2);
    tcase_add_loop_test(tc, test_rollback, 0, 4);
    tcase_add_loop_test(tc, test_store_layout, 0, 2);
    tcase_add_loop_test(tc, test_store_layout_refused, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
