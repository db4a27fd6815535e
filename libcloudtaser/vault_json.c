/*
 * vault_json.c - the Vault store's JSON handling as pure functions (see
 * vault_internal.h): value encoding, KV v2 answers, errors, health. No I/O;
 * fuzzed by fuzz/fuzz_vault_json.c.
 */
#include "vault_internal.h"

#include "b64.h"
#include "json_wipe.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

static json_t *load(const uint8_t *body, size_t len)
{
    if (!body || len == 0)
        return NULL;
    return json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
}

/* ---- values ---- */

int ctp_vault_value_is_plain(const uint8_t *value, size_t len)
{
    json_t *o;
    char *tmp;
    size_t need;
    int plain = 0;

    if (!value || len < 2 || value[0] != '{' || value[len - 1] != '}')
        return 0;
    o = load(value, len);
    if (!o)
        return 0;
    if (json_is_object(o) && !json_object_get(o, CTP_VAULT_B64_MEMBER)) {
        need = json_dumpb(o, NULL, 0, DUMP_FLAGS);
        if (need == len && (tmp = malloc(len)) != NULL) {
            if (json_dumpb(o, tmp, len, DUMP_FLAGS) == len && memcmp(tmp, value, len) == 0)
                plain = 1;
            ct_secure_wipe(tmp, len);
            free(tmp);
        }
    }
    ctp_json_free_wiped(o);
    return plain;
}

ct_err ctp_vault_write_body(const uint8_t *value, size_t len, int64_t cas, ct_secret **out,
                            ct_error *err)
{
    char opts[64] = "";
    size_t olen, b64len = 0, total;
    int plain = ctp_vault_value_is_plain(value, len);
    ct_secret *s = NULL;
    uint8_t *p;
    ct_err rc;

    *out = NULL;
    if (cas >= 0)
        snprintf(opts, sizeof opts, "\"options\":{\"cas\":%lld},", (long long)cas);
    olen = strlen(opts);
    if (!plain) {
        b64len = ctp_b64_encoded_len(len, CTP_B64_STD);
        if (len && !b64len)
            return ctp_err(err, CT_E_TOOBIG, 0, "value too large to encode");
    }
    /* {  opts  "data":  value | {"ct_b64":"…"}  }  */
    total = 1 + olen + 7 + (plain ? len : sizeof "{\"" CTP_VAULT_B64_MEMBER "\":\"\"}" - 1 + b64len) + 1;
    if ((rc = ct_secret_new(total, &s, err)) != CT_OK)
        return rc;
    p = ct_secret_data(s);
    *p++ = '{';
    memcpy(p, opts, olen);
    p += olen;
    memcpy(p, "\"data\":", 7);
    p += 7;
    if (plain) {
        memcpy(p, value, len);
        p += len;
    } else {
        static const char head[] = "{\"" CTP_VAULT_B64_MEMBER "\":\"";
        memcpy(p, head, sizeof head - 1);
        p += sizeof head - 1;
        /* ctp_b64_encode NUL-terminates: the secret has one spare byte past
         * its length, and the closing characters overwrite the NUL */
        p += ctp_b64_encode(value, len, (char *)p, CTP_B64_STD);
        *p++ = '"';
        *p++ = '}';
    }
    *p++ = '}';
    if ((size_t)(p - ct_secret_data(s)) != total) {
        ct_secret_free(s);
        return ctp_err(err, CT_E_INTERNAL, 0, "write body size mismatch");
    }
    *out = s;
    return CT_OK;
}

/* The value held in a KV data object. */
static ct_err decode_data(json_t *data, ct_secret **out, ct_error *err)
{
    json_t *b;
    ct_secret *s = NULL;
    ct_err rc;

    *out = NULL;
    if (!json_is_object(data))
        return ctp_err(err, CT_E_STORE, 0, "the secret's data is not a JSON object");
    b = json_object_get(data, CTP_VAULT_B64_MEMBER);
    if (b && json_object_size(data) == 1) {
        const char *txt = json_string_value(b);
        size_t n = json_string_length(b), got = 0;
        if (!txt)
            return ctp_err(err, CT_E_STORE, 0, "the secret's ct_b64 member is not a string");
        if ((rc = ct_secret_new(ctp_b64_decoded_max(n), &s, err)) != CT_OK)
            return rc;
        if (ctp_b64_decode(txt, n, ct_secret_data(s), ct_secret_len(s), &got, CTP_B64_STD) !=
            0) {
            ct_secret_free(s);
            return ctp_err(err, CT_E_STORE, 0, "the secret's ct_b64 member is not valid base64");
        }
        if ((rc = ct_secret_truncate(s, got)) != CT_OK) {
            ctp_err(err, rc, 0, "cannot shrink a secret");
            ct_secret_free(s);
            return rc;
        }
    } else {
        size_t need = json_dumpb(data, NULL, 0, DUMP_FLAGS);
        if (need == 0)
            return ctp_err(err, CT_E_NOMEM, 0, "cannot serialise the secret's data");
        if ((rc = ct_secret_new(need, &s, err)) != CT_OK)
            return rc;
        if (json_dumpb(data, (char *)ct_secret_data(s), need, DUMP_FLAGS) != need) {
            ct_secret_free(s);
            return ctp_err(err, CT_E_INTERNAL, 0, "secret data serialisation changed size");
        }
    }
    *out = s;
    return CT_OK;
}

ct_err ctp_vault_decode_data(const uint8_t *json, size_t len, ct_secret **out, ct_error *err)
{
    json_t *j = load(json, len);
    ct_err rc;
    *out = NULL;
    if (!j)
        return ctp_err(err, CT_E_STORE, 0, "the secret's data is not valid JSON");
    rc = decode_data(j, out, err);
    ctp_json_free_wiped(j);
    return rc;
}

/* ---- answers ---- */

static ct_err malformed(ct_error *err, const char *what)
{
    return ctp_err(err, CT_E_STORE, 0,
                   "malformed answer from vault (%s): is the address a Vault/OpenBao server "
                   "and the mount a KV version 2 engine?",
                   what);
}

/* A JSON integer in [min, max]; -1 if absent or not. */
static int get_uint(json_t *o, const char *name, uint64_t min, uint64_t *out)
{
    json_t *v = json_object_get(o, name);
    json_int_t i;
    if (!json_is_integer(v))
        return -1;
    i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min)
        return -1;
    *out = (uint64_t)i;
    return 0;
}

ct_err ctp_vault_parse_read(const uint8_t *body, size_t len, long status, ctp_vault_read *out,
                            ct_error *err)
{
    json_t *root, *data, *meta, *inner;
    ct_err rc;

    memset(out, 0, sizeof *out);
    if (status != 200 && status != 404)
        return ctp_err(err, CT_E_INVALID, 0, "ctp_vault_parse_read: status %ld", status);
    root = load(body, len);
    if (status == 404) {
        /* {"errors":[]}, an empty body, or the deleted-version envelope */
        data = json_object_get(root, "data");
        meta = json_object_get(data, "metadata");
        if (json_is_object(meta)) {
            (void)get_uint(meta, "version", 1, &out->version);
            out->destroyed = json_is_true(json_object_get(meta, "destroyed"));
            {
                const char *dt = json_string_value(json_object_get(meta, "deletion_time"));
                out->deleted = dt && *dt;
            }
        }
        ctp_json_free_wiped(root);
        return ctp_err(err, CT_E_NOTFOUND, 404, "not found");
    }
    if (!json_is_object(root)) {
        ctp_json_free_wiped(root);
        return malformed(err, "not a JSON object");
    }
    data = json_object_get(root, "data");
    meta = json_object_get(data, "metadata");
    inner = json_object_get(data, "data");
    if (!json_is_object(data) || !json_is_object(meta) ||
        get_uint(meta, "version", 1, &out->version) != 0) {
        ctp_json_free_wiped(root);
        return malformed(err, "no data.metadata.version");
    }
    if (json_is_null(inner) || !inner) {
        /* older servers answer 200 with null data for a deleted version */
        const char *dt = json_string_value(json_object_get(meta, "deletion_time"));
        out->destroyed = json_is_true(json_object_get(meta, "destroyed"));
        out->deleted = dt && *dt;
        ctp_json_free_wiped(root);
        if (out->deleted || out->destroyed)
            return ctp_err(err, CT_E_NOTFOUND, 404, "not found (deleted version)");
        return malformed(err, "data.data is null");
    }
    rc = decode_data(inner, &out->value, err);
    ctp_json_free_wiped(root);
    if (rc != CT_OK)
        out->version = 0;
    return rc;
}

ct_err ctp_vault_parse_write(const uint8_t *body, size_t len, uint64_t *version, ct_error *err)
{
    json_t *root = load(body, len), *data;
    ct_err rc = CT_OK;
    *version = 0;
    data = json_object_get(root, "data");
    if (!json_is_object(data) || get_uint(data, "version", 1, version) != 0)
        rc = ctp_err(err, CT_E_STORE, 0,
                     "vault accepted the write but did not report a version: the mount is "
                     "not a KV version 2 engine (vault secrets enable -version=2, or "
                     "vault kv enable-versioning)");
    ctp_json_free_wiped(root);
    return rc;
}

ct_err ctp_vault_parse_metadata(const uint8_t *body, size_t len, uint64_t *current_version,
                                int *cas_required, ct_error *err)
{
    json_t *root = load(body, len), *data;
    ct_err rc = CT_OK;
    *current_version = 0;
    *cas_required = 0;
    data = json_object_get(root, "data");
    if (!json_is_object(data) || get_uint(data, "current_version", 0, current_version) != 0)
        rc = malformed(err, "no data.current_version in the key's metadata");
    else
        *cas_required = json_is_true(json_object_get(data, "cas_required"));
    json_decref(root);
    return rc;
}

static int segment_ok(const char *s, size_t n)
{
    size_t i;
    if (n == 0 || n > 128 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

ct_err ctp_vault_parse_list(const uint8_t *body, size_t len,
                            ct_err (*entry)(void *arg, const char *name, int is_folder,
                                            ct_error *err),
                            void *arg, ct_error *err)
{
    json_t *root = load(body, len), *keys, *k;
    size_t i;
    ct_err rc = CT_OK;

    keys = json_object_get(json_object_get(root, "data"), "keys");
    if (!json_is_array(keys)) {
        json_decref(root);
        return malformed(err, "no data.keys in a list");
    }
    if (json_array_size(keys) > CTP_VAULT_LIST_MAX) {
        json_decref(root);
        return ctp_err(err, CT_E_TOOBIG, 0, "a vault folder lists more than %d keys",
                       CTP_VAULT_LIST_MAX);
    }
    json_array_foreach(keys, i, k) {
        const char *s = json_string_value(k);
        char name[129];
        size_t n;
        int folder;
        if (!s) {
            rc = malformed(err, "a listed key is not a string");
            break;
        }
        n = json_string_length(k);
        if (strlen(s) != n)
            continue; /* embedded NUL */
        folder = n > 0 && s[n - 1] == '/';
        if (folder)
            n--;
        if (!segment_ok(s, n))
            continue; /* cannot be one of our keys */
        memcpy(name, s, n);
        name[n] = '\0';
        if ((rc = entry(arg, name, folder, err)) != CT_OK)
            break;
    }
    json_decref(root);
    return rc;
}

/* ---- errors ---- */

static int starts_multierror(const char *s)
{
    /* "1 error occurred:\n" / "2 errors occurred:\n" */
    const char *p = s;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return strncmp(p, " error occurred:\n", 17) == 0 || strncmp(p, " errors occurred:\n", 18) == 0;
}

/* Appends text to out (sanitised, truncated). */
static void append_text(char *out, size_t *pos, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n && *pos < CTP_VAULT_ERRTEXT_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[(*pos)++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    if (i < n && *pos >= CTP_VAULT_ERRTEXT_MAX) {
        memcpy(out + CTP_VAULT_ERRTEXT_MAX - 3, "...", 3);
    }
    out[*pos] = '\0';
}

static void add_item(char *out, size_t *pos, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t' || *s == '\n'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
        n--;
    if (!n)
        return;
    if (*pos)
        append_text(out, pos, "; ", 2);
    append_text(out, pos, s, n);
}

static int has(const char *s, const char *needle)
{
    return strcasestr(s, needle) != NULL;
}

void ctp_vault_parse_errors(const uint8_t *body, size_t len, ctp_vault_errors *out)
{
    json_t *root = load(body, len), *errs, *e, *warn;
    size_t i, pos = 0;

    memset(out, 0, sizeof *out);
    errs = json_object_get(root, "errors");
    if (json_is_array(errs)) {
        out->present = 1;
        out->empty = json_array_size(errs) == 0;
        json_array_foreach(errs, i, e) {
            const char *s = json_string_value(e);
            if (!s)
                continue;
            out->permission |= has(s, "permission denied");
            out->invalid_token |= has(s, "invalid token");
            out->sealed |= has(s, "is sealed");
            out->cas_mismatch |= has(s, "check-and-set parameter did not match");
            out->cas_required |= has(s, "check-and-set parameter required");
            out->no_active |= has(s, "no active vault instance") || has(s, "node is not active");
            out->no_route |= has(s, "no handler for route");
            if (starts_multierror(s)) {
                /* "N errors occurred:\n\t* a\n\t* b\n\n" -> "a; b" */
                const char *p = strchr(s, '\n');
                while (p && *p) {
                    const char *item = strstr(p, "\t* "), *end;
                    if (!item)
                        break;
                    item += 3;
                    end = strchr(item, '\n');
                    if (!end)
                        end = item + strlen(item);
                    add_item(out->text, &pos, item, (size_t)(end - item));
                    p = end;
                }
            } else {
                add_item(out->text, &pos, s, strlen(s));
            }
        }
    }
    warn = json_object_get(root, "warnings");
    if (json_is_array(warn)) {
        json_array_foreach(warn, i, e) {
            const char *s = json_string_value(e);
            if (s && has(s, "Invalid path for a versioned K/V secrets engine"))
                out->invalid_path = 1;
        }
    }
    json_decref(root);
}

/* ---- health ---- */

static void copy_clean(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    if (s)
        for (; s[i] && i + 1 < cap; i++) {
            unsigned char c = (unsigned char)s[i];
            dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
    dst[i] = '\0';
}

ct_err ctp_vault_parse_health(const uint8_t *body, size_t len, long status,
                              ct_vault_health *out, ct_error *err)
{
    json_t *root = load(body, len), *ini, *sea;
    memset(out, 0, sizeof *out);
    out->http_status = (int32_t)status;
    ini = json_object_get(root, "initialized");
    sea = json_object_get(root, "sealed");
    if (!json_is_boolean(ini) || !json_is_boolean(sea)) {
        json_decref(root);
        return ctp_err(err, CT_E_STORE, (int32_t)status,
                       "malformed sys/health answer (HTTP %ld): is the address a Vault or "
                       "OpenBao server?",
                       status);
    }
    out->initialized = json_is_true(ini);
    out->sealed = json_is_true(sea);
    out->standby = json_is_true(json_object_get(root, "standby"));
    out->performance_standby = json_is_true(json_object_get(root, "performance_standby"));
    copy_clean(out->version, sizeof out->version,
               json_string_value(json_object_get(root, "version")));
    copy_clean(out->cluster_name, sizeof out->cluster_name,
               json_string_value(json_object_get(root, "cluster_name")));
    json_decref(root);
    return CT_OK;
}

void ctp_vault_short_key(const char *key, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = key ? key : "";
    if (!cap)
        return;
    while (*p && o + 1 < cap) {
        size_t n = strcspn(p, "/");
        size_t take = n > 16 ? 8 : n, i;
        for (i = 0; i < take && o + 1 < cap; i++)
            out[o++] = p[i];
        if (n > 16)
            for (i = 0; i < 3 && o + 1 < cap; i++)
                out[o++] = '.';
        p += n;
        if (*p == '/' && o + 1 < cap) {
            out[o++] = '/';
            p++;
        }
    }
    out[o] = '\0';
}

/* ---- KV metadata, mount check ---- */

static int cmp_version(const void *a, const void *b)
{
    uint64_t x = ((const ct_vault_version_meta *)a)->version;
    uint64_t y = ((const ct_vault_version_meta *)b)->version;
    return x < y ? -1 : x > y;
}

/* A decimal version number ("1".."18446744073709551615", no sign or zeros
 * in front); 0 if it is not one. */
static uint64_t version_name(const char *s)
{
    uint64_t v = 0;
    size_t i;
    if (!s[0] || s[0] == '0' || strlen(s) > 20)
        return 0;
    for (i = 0; s[i]; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return 0;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return v;
}

/* An optional string member: NULL when absent or null; -1 if another type. */
static int opt_string(json_t *o, const char *name, const char **out)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    *out = json_string_value(v);
    return 0;
}

ct_err ctp_vault_parse_kv_meta(const uint8_t *body, size_t len, ct_vault_kv_meta **out,
                               ct_error *err)
{
    json_t *root = load(body, len), *data, *vs, *v, *b;
    ct_vault_kv_meta *m = NULL;
    const char *name, *s1, *s2;
    uint64_t u = 0;
    size_t n, i = 0;
    ct_err rc = CT_OK;

    *out = NULL;
    data = json_object_get(root, "data");
    if (!json_is_object(data) || get_uint(data, "current_version", 0, &u) != 0) {
        rc = malformed(err, "no data.current_version in the key's metadata");
        goto done;
    }
    vs = json_object_get(data, "versions");
    if (vs && !json_is_null(vs) && !json_is_object(vs)) {
        rc = malformed(err, "data.versions of the key's metadata is not an object");
        goto done;
    }
    n = json_is_object(vs) ? json_object_size(vs) : 0;
    m = calloc(1, sizeof *m);
    if (!m || (n && !(m->versions = calloc(n, sizeof *m->versions)))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto done;
    }
    m->current_version = u;
    if (json_object_get(data, "oldest_version") &&
        get_uint(data, "oldest_version", 0, &m->oldest_version) != 0) {
        rc = malformed(err, "data.oldest_version of the key's metadata is not a number");
        goto done;
    }
    u = 0;
    if (json_object_get(data, "max_versions") &&
        (get_uint(data, "max_versions", 0, &u) != 0 || u > UINT32_MAX)) {
        rc = malformed(err, "data.max_versions of the key's metadata is not a number");
        goto done;
    }
    m->max_versions = (uint32_t)u;
    b = json_object_get(data, "cas_required");
    if (b && !json_is_boolean(b)) {
        rc = malformed(err, "data.cas_required of the key's metadata is not a boolean");
        goto done;
    }
    m->cas_required = json_is_true(b);
    if (opt_string(data, "created_time", &s1) != 0 ||
        opt_string(data, "updated_time", &s2) != 0) {
        rc = malformed(err, "a time in the key's metadata is not a string");
        goto done;
    }
    copy_clean(m->created_time, sizeof m->created_time, s1);
    copy_clean(m->updated_time, sizeof m->updated_time, s2);
    if (n) {
        json_object_foreach(vs, name, v)
        {
            ct_vault_version_meta *e = &m->versions[i];
            json_t *d = json_object_get(v, "destroyed");
            if (!json_is_object(v) || !(e->version = version_name(name)) ||
                opt_string(v, "created_time", &s1) != 0 ||
                opt_string(v, "deletion_time", &s2) != 0 || (d && !json_is_boolean(d))) {
                rc = malformed(err, "an entry of data.versions in the key's metadata");
                goto done;
            }
            copy_clean(e->created_time, sizeof e->created_time, s1);
            copy_clean(e->deletion_time, sizeof e->deletion_time, s2);
            e->destroyed = json_is_true(d);
            i++;
        }
        qsort(m->versions, n, sizeof *m->versions, cmp_version);
        m->nversions = n;
        if (n > CT_VAULT_META_VERSIONS_MAX) {
            /* keep the newest */
            memmove(m->versions, m->versions + (n - CT_VAULT_META_VERSIONS_MAX),
                    CT_VAULT_META_VERSIONS_MAX * sizeof *m->versions);
            m->nversions = CT_VAULT_META_VERSIONS_MAX;
            m->truncated = 1;
        }
    }
done:
    json_decref(root);
    if (rc != CT_OK) {
        ct_vault_kv_meta_free(m);
        return rc;
    }
    *out = m;
    return CT_OK;
}

void ct_vault_kv_meta_free(ct_vault_kv_meta *m)
{
    if (!m)
        return;
    free(m->versions);
    free(m);
}

ct_err ctp_vault_parse_mount(const uint8_t *body, size_t len, ctp_vault_mount *out,
                             ct_error *err)
{
    json_t *root = load(body, len), *data, *opts;
    const char *type = NULL, *path = NULL, *ver = NULL;
    ct_err rc = CT_OK;
    size_t n;

    memset(out, 0, sizeof *out);
    data = json_object_get(root, "data");
    opts = json_object_get(data, "options");
    if (!json_is_object(data) || opt_string(data, "type", &type) != 0 || !type || !*type ||
        opt_string(data, "path", &path) != 0 || (opts && !json_is_null(opts) &&
                                                 !json_is_object(opts)) ||
        opt_string(opts, "version", &ver) != 0) {
        rc = ctp_err(err, CT_E_STORE, 0,
                     "malformed answer from vault to the mount check "
                     "(sys/internal/ui/mounts): no data.type, or options not an object");
        goto done;
    }
    copy_clean(out->type, sizeof out->type, type);
    copy_clean(out->path, sizeof out->path, path);
    n = strlen(out->path);
    while (n && out->path[n - 1] == '/')
        out->path[--n] = '\0';
    /* as the vault CLI reads it: only "2" is version 2 */
    out->kv_version = ver && strcmp(ver, "2") == 0 ? 2 : 1;
done:
    json_decref(root);
    return rc;
}
