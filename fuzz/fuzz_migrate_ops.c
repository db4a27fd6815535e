/*
 * fuzz_migrate_ops.c - the bridge's migrate.put / get / mark / list
 * handlers (migrate_server.c) take request bodies from the operator over the
 * session: hostile input should a cluster be compromised. Each input is one
 * request, dispatched by op through a ct_router to the real handlers over a
 * fresh in-memory store (the same code paths as the bridge, minus the
 * session). The first byte picks a prelude: an empty store, or one that
 * already holds a copy of apps/db (so updates, conflicts and marks are
 * reached). Contracts: no over-read or leak (ASan); errors carry a
 * printable message; every answer of put/mark/list is a JSON object; nothing
 * is ever written outside clusters/<fp>/; and a put that succeeds is read
 * back by get byte for byte (its data, namespace and name).
 */
#include "cloudtaser/cloudtaser.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FP "0ad50c05-1153-4508-9237-4cb2912e2c23"

static ct_ctx *g_ctx;

static void check_msg(const ct_error *e)
{
    size_t i;
    for (i = 0; e->message[i]; i++)
        if ((unsigned char)e->message[i] < 0x20 || (unsigned char)e->message[i] == 0x7f)
            abort();
}

static ct_err call(ct_router *r, const char *req, size_t len, char **resp, size_t *rlen)
{
    uint8_t *out = NULL;
    size_t n = 0;
    ct_error e;
    ct_err rc;
    memset(&e, 0, sizeof e);
    rc = ct_router_handle(r, FP, NULL, 0, (const uint8_t *)req, len, &out, &n, &e);
    if (rc != CT_OK) {
        check_msg(&e);
        if (out)
            abort();
        *resp = NULL;
        *rlen = 0;
        return rc;
    }
    *resp = (char *)out;
    *rlen = n;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char seed[] =
        "{\"op\":\"migrate.put\",\"record\":{\"namespace\":\"apps\",\"name\":\"db\","
        "\"uid\":\"u-1\",\"resourceVersion\":\"7\",\"type\":\"Opaque\",\"labels\":{},"
        "\"data\":{\"password\":\"aHVudGVyMg==\"}}}";
    ct_migrate_server_options mo = CT_MIGRATE_SERVER_OPTIONS_INIT;
    ct_migrate_server *m = NULL;
    ct_store *st = NULL;
    ct_router *r = NULL;
    ct_strlist *keys = NULL;
    char *resp = NULL;
    size_t rlen = 0, i;
    json_t *in, *rec;
    const char *op;
    ct_err rc;

    if (size == 0)
        return 0;
    if (!g_ctx && ct_ctx_new(NULL, &g_ctx, NULL) != CT_OK)
        abort();
    if (ct_store_new_memory(g_ctx, &st, NULL) != CT_OK)
        abort();
    mo.store = st;
    if (ct_migrate_server_new(&mo, &m, NULL) != CT_OK || ct_router_new(&r, NULL) != CT_OK ||
        ct_migrate_server_routes(m, r, NULL) != CT_OK)
        abort();
    if (data[0] & 1) {
        if (call(r, seed, sizeof seed - 1, &resp, &rlen) != CT_OK)
            abort();
        free(resp);
    }
    data++;
    size--;
    rc = call(r, (const char *)data, size, &resp, &rlen);
    in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    op = json_string_value(json_object_get(in, "op"));
    if (rc == CT_OK && op && strcmp(op, "migrate.get") != 0) {
        json_t *a = json_loadb(resp, rlen, 0, NULL);
        if (!json_is_object(a))
            abort();
        json_decref(a);
    }
    free(resp);
    if (rc == CT_OK && op && strcmp(op, "migrate.put") == 0) {
        /* read back what was put */
        json_t *req, *got;
        char *q, *g = NULL;
        size_t gl = 0;
        rec = json_object_get(in, "record");
        req = json_pack("{s:s,s:O,s:O}", "op", "migrate.get", "namespace",
                        json_object_get(rec, "namespace"), "name", json_object_get(rec, "name"));
        q = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        if (!q || call(r, q, strlen(q), &g, &gl) != CT_OK)
            abort();
        free(q);
        got = json_loadb(g, gl, 0, NULL);
        if (!json_equal(json_object_get(got, "data"), json_object_get(rec, "data")) ||
            !json_equal(json_object_get(got, "namespace"), json_object_get(rec, "namespace")) ||
            !json_equal(json_object_get(got, "name"), json_object_get(rec, "name")))
            abort();
        json_decref(got);
        free(g);
    }
    json_decref(in);
    /* confinement: every key is below the session's own cluster */
    if (ct_store_list(st, "", &keys, NULL) == CT_OK) {
        for (i = 0; i < ct_strlist_count(keys); i++)
            if (strncmp(ct_strlist_get(keys, i), "clusters/" FP "/", 46) != 0)
                abort();
    }
    ct_strlist_free(keys);
    ct_router_free(r);
    ct_migrate_server_free(m);
    ct_store_free(st);
    return 0;
}
