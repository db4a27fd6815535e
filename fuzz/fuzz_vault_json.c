/*
 * fuzz_vault_json.c - every answer of a Vault / OpenBao server is hostile
 * input to the Vault store. The input goes to each answer parser
 * (vault_json.c: KV read as 200 and 404, write, metadata (short and full),
 * list, errors, sys/health, the mount check). Contracts: no over-read or leak (ASan), list entries are
 * valid key segments, error text is bounded and printable, and a decoded
 * value survives encode -> server re-serialisation -> decode unchanged.
 * The input is also taken as a value: it must round-trip through the write
 * body and a server's re-serialisation byte for byte.
 *
 * The parsers are internal (ctp_vault_*): meson links vault_json.c, b64.c
 * and error.c into this program, the rest comes from the library.
 */
#include "vault_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

/*
 * What a server does with a write body: parse it, keep "data", serialise
 * it again (jansson, like the fake; Vault preserves numbers as written).
 * Returns the re-serialised data object (malloc'ed) or NULL.
 */
static char *server_roundtrip(const ct_secret *body)
{
    json_t *j = json_loadb((const char *)ct_secret_data(body), ct_secret_len(body), 0, NULL);
    json_t *d = json_object_get(j, "data");
    char *out = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(j);
    return out;
}

/* value -> write body -> server -> decode == value */
static void check_value(const uint8_t *v, size_t n, int64_t cas)
{
    ct_secret *body = NULL, *back = NULL;
    char *srv;
    if (ctp_vault_write_body(v, n, cas, &body, NULL) != CT_OK)
        abort(); /* every value up to the store limit must encode */
    if (ctp_vault_value_is_plain(v, n) &&
        !memmem(ct_secret_data(body), ct_secret_len(body), v, n))
        abort(); /* a plain value is carried verbatim */
    srv = server_roundtrip(body);
    if (!srv)
        abort(); /* our own body must be valid JSON with a data object */
    if (ctp_vault_decode_data((const uint8_t *)srv, strlen(srv), &back, NULL) != CT_OK)
        abort();
    if (ct_secret_len(back) != n || (n && memcmp(ct_secret_data(back), v, n) != 0))
        abort();
    free(srv);
    ct_secret_free(back);
    ct_secret_free(body);
}

static ct_err on_entry(void *arg, const char *name, int is_folder, ct_error *err)
{
    size_t n = strlen(name), i;
    (void)err;
    (void)is_folder;
    if (n == 0 || n > 128 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        abort();
    for (i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                    name[i]))
            abort();
    ++*(size_t *)arg;
    return CT_OK;
}

/* Full metadata: versions sorted, capped, strings bounded and printable. */
static void check_meta(const uint8_t *data, size_t size)
{
    ct_vault_kv_meta *m = NULL;
    size_t i;
    if (ctp_vault_parse_kv_meta(data, size, &m, NULL) != CT_OK) {
        if (m)
            abort();
        return;
    }
    if (!m || m->nversions > CT_VAULT_META_VERSIONS_MAX || (m->nversions && !m->versions))
        abort();
    if (!printable(m->created_time, sizeof m->created_time - 1) ||
        !printable(m->updated_time, sizeof m->updated_time - 1))
        abort();
    for (i = 0; i < m->nversions; i++) {
        const ct_vault_version_meta *e = &m->versions[i];
        if (e->version == 0 || (i && e->version <= m->versions[i - 1].version) ||
            !printable(e->created_time, sizeof e->created_time - 1) ||
            !printable(e->deletion_time, sizeof e->deletion_time - 1))
            abort();
    }
    ct_vault_kv_meta_free(m);
}

/* The mount check: a type, a version of 1 or 2, a path without a trailing '/'. */
static void check_mount(const uint8_t *data, size_t size)
{
    ctp_vault_mount mt;
    size_t n;
    if (ctp_vault_parse_mount(data, size, &mt, NULL) != CT_OK)
        return;
    n = strlen(mt.path);
    if (!mt.type[0] || !printable(mt.type, sizeof mt.type - 1) ||
        !printable(mt.path, sizeof mt.path - 1) || (n && mt.path[n - 1] == '/') ||
        (mt.kv_version != 1 && mt.kv_version != 2))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctp_vault_read rd;
    ctp_vault_errors e;
    ct_vault_health h;
    ct_secret *val = NULL;
    uint64_t ver = 0;
    size_t entries = 0;
    int casreq = 0;

    if (size > (1u << 20))
        return 0;

    if (ctp_vault_parse_read(data, size, 200, &rd, NULL) == CT_OK) {
        if (!rd.value || rd.version == 0)
            abort();
        /* whatever we accept must survive our own encoding */
        check_value(ct_secret_data(rd.value), ct_secret_len(rd.value), 3);
        ct_secret_free(rd.value);
    } else if (rd.value) {
        abort(); /* no value on error */
    }
    if (ctp_vault_parse_read(data, size, 404, &rd, NULL) != CT_E_NOTFOUND || rd.value)
        abort();
    if (ctp_vault_parse_write(data, size, &ver, NULL) == CT_OK && ver == 0)
        abort();
    (void)ctp_vault_parse_metadata(data, size, &ver, &casreq, NULL);
    check_meta(data, size);
    check_mount(data, size);
    (void)ctp_vault_parse_list(data, size, on_entry, &entries, NULL);
    if (entries > CTP_VAULT_LIST_MAX)
        abort();
    ctp_vault_parse_errors(data, size, &e);
    if (!printable(e.text, CTP_VAULT_ERRTEXT_MAX) || (e.empty && !e.present))
        abort();
    if (ctp_vault_parse_health(data, size, 200, &h, NULL) == CT_OK &&
        (!printable(h.version, sizeof h.version - 1) ||
         !printable(h.cluster_name, sizeof h.cluster_name - 1)))
        abort();
    if (ctp_vault_decode_data(data, size, &val, NULL) == CT_OK) {
        check_value(ct_secret_data(val), ct_secret_len(val), -1);
        ct_secret_free(val);
    }
    /* the input as a value */
    check_value(data, size, size & 1 ? 0 : -1);
    return 0;
}
