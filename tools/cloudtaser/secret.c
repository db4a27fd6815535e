/*
 * secret.c - cloudtaser source secret put|get|list|delete: the secrets pods
 * read from the embedded store (podpolicy.h; the bridge's --pod-policy).
 * MOUNT/PATH is the KV v2 path as a Vault client names it without "data/"
 * (secret/team-a/app/db is read by pods as GET /v1/secret/data/team-a/app/db);
 * the store record is kv/MOUNT/PATH. Thin: ct_embedded_kv_* do the work.
 */
#include "cloudtaser/cloudtaser.h"
#include "../store/store_cli.h"
#include "secret.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "cloudtaser"
#define MAX_DATA 64
#define MAX_FILE ((size_t)1 << 20)

enum { S_EXIT_OK = 0, S_EXIT_FAIL = 1, S_EXIT_USAGE = 2 };

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " source secret put --path MOUNT/PATH (--data KEY=VALUE... |\n"
"                                  --from-json FILE) [STORE]\n"
"       " PROG " source secret get --path MOUNT/PATH [STORE]\n"
"       " PROG " source secret list [--path MOUNT[/DIR]] [STORE]\n"
"       " PROG " source secret delete --path MOUNT/PATH [STORE]\n"
"\n"
"The secrets pods read through the broker when the bridge answers them from\n"
"its store (cloudtaser-bridge --serve-pods --pod-policy FILE). MOUNT/PATH is\n"
"the KV version 2 path as Vault clients name it: secret/team-a/app/db is read\n"
"as GET /v1/secret/data/team-a/app/db (the record kv/secret/team-a/app/db).\n"
"Segments are [A-Za-z0-9._-]. A put replaces the whole secret and makes a\n"
"new version; get prints the secret's data as JSON (it is secret: mind where\n"
"stdout goes); list prints the paths below MOUNT[/DIR], one per line.\n"
"\n"
"Options:\n"
"  --path MOUNT/PATH        the secret (list: a mount or folder; default: all)\n"
"  --data KEY=VALUE         a string member of the secret (repeatable, up to 64)\n"
"  --from-json FILE         the secret's data, a JSON object, from FILE ('-':\n"
"                           standard input; at most 1 MiB)\n"
"  -h, --help               this help\n"
"\n"
STORE_FLAGS_HELP
"\n"
"Exit status: 0 success, 1 the operation failed (a missing secret too), 2 bad\n"
"command line.\n");
}

static int bad(const char *msg, const char *arg)
{
    fprintf(stderr, PROG ": source secret: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    fputs("Try '" PROG " source secret --help' for more information.\n", stderr);
    return S_EXIT_USAGE;
}

static int failed(const char *what, const ct_error *err)
{
    fprintf(stderr, PROG ": source secret %s: %s\n", what,
            err->message[0] ? err->message : ct_strerror(err->code));
    return S_EXIT_FAIL;
}

/* "mount/rest" -> mount (into buf) and rest; rest may be "" when allowed. */
static int split(const char *p, char *mount, size_t n, const char **rest, int need_rest)
{
    const char *s = strchr(p, '/');
    size_t ml = s ? (size_t)(s - p) : strlen(p);
    if (ml == 0 || ml >= n)
        return -1;
    memcpy(mount, p, ml);
    mount[ml] = 0;
    *rest = s ? s + 1 : "";
    if (need_rest && !**rest)
        return -1;
    return 0;
}

static void wipe_tree(json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_string(v))
        ct_secure_wipe((void *)(uintptr_t)json_string_value(v), json_string_length(v));
    else if (json_is_object(v)) {
        json_object_foreach(v, k, x)
            wipe_tree(x);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
            wipe_tree(x);
    }
}

/* The data of a put: from --data pairs or a file; *out malloc'd, wiped by the caller. */
static int build_data(char **pairs, size_t npairs, const char *file, char **out, size_t *len)
{
    json_t *o;
    size_t i;
    *out = NULL;
    if (file) {
        FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
        char *buf;
        size_t got;
        if (!f) {
            fprintf(stderr, PROG ": source secret put: %s: %s\n", file, strerror(errno));
            return S_EXIT_FAIL;
        }
        buf = malloc(MAX_FILE + 1);
        got = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
        if (f != stdin)
            fclose(f);
        if (!buf || got > MAX_FILE) {
            if (buf) {
                ct_secure_wipe(buf, got);
                free(buf);
            }
            fprintf(stderr, PROG ": source secret put: %s: %s\n", file,
                    buf ? "larger than 1 MiB" : "out of memory");
            return S_EXIT_FAIL;
        }
        *out = buf;
        *len = got;
        return S_EXIT_OK;
    }
    if (!(o = json_object()))
        return S_EXIT_FAIL;
    for (i = 0; i < npairs; i++) {
        char *eq = strchr(pairs[i], '=');
        json_t *s;
        if (!eq || eq == pairs[i]) {
            json_decref(o);
            return bad("--data: expected KEY=VALUE, got a value without a key or '='", NULL);
        }
        *eq = 0;
        s = json_string(eq + 1);
        if (!s || json_object_get(o, pairs[i]) || json_object_set_new(o, pairs[i], s) != 0) {
            *eq = '=';
            wipe_tree(o);
            json_decref(o);
            return bad("--data: a key twice, or a key or value that is not UTF-8:",
                       NULL);
        }
        *eq = '=';
        ct_secure_wipe(eq + 1, strlen(eq + 1)); /* the value leaves argv */
    }
    *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    *len = *out ? strlen(*out) : 0;
    wipe_tree(o);
    json_decref(o);
    return *out ? S_EXIT_OK : S_EXIT_FAIL;
}

int secret_main(int argc, char **argv)
{
    enum { O_PATH = 1, O_DATA, O_FILE };
    static const struct option lo[] = {
        STORE_LONG_OPTIONS,
        {"path", required_argument, NULL, O_PATH},
        {"data", required_argument, NULL, O_DATA},
        {"from-json", required_argument, NULL, O_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    store_flags sf;
    const char *cmd, *path = NULL, *file = NULL, *rest = NULL;
    char *pairs[MAX_DATA];
    size_t npairs = 0;
    char mount[256];
    ct_ctx *ctx = NULL;
    ct_store *st = NULL;
    ct_error err;
    int opt, rc = S_EXIT_FAIL;

    store_flags_init(&sf);
    if (argc < 4 || strcmp(argv[3], "--help") == 0 || strcmp(argv[3], "-h") == 0) {
        usage(argc < 4 ? stderr : stdout);
        return argc < 4 ? S_EXIT_USAGE : S_EXIT_OK;
    }
    cmd = argv[3];
    if (strcmp(cmd, "put") != 0 && strcmp(cmd, "get") != 0 && strcmp(cmd, "list") != 0 &&
        strcmp(cmd, "delete") != 0)
        return bad("unknown command (put, get, list, delete):", cmd);
    optind = 4;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        if (store_flags_take(&sf, opt, optarg))
            continue;
        switch (opt) {
        case 'h': usage(stdout); return S_EXIT_OK;
        case O_PATH: path = optarg; break;
        case O_FILE: file = optarg; break;
        case O_DATA:
            if (npairs == MAX_DATA)
                return bad("at most 64 --data", NULL);
            pairs[npairs++] = optarg;
            break;
        case ':': return bad("an option needs an argument:", argv[optind - 1]);
        default: return bad("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad("unexpected argument", argv[optind]);
    if (strcmp(cmd, "put") == 0 ? (!npairs == !file) : (npairs || file))
        return bad(strcmp(cmd, "put") == 0 ? "put needs --data KEY=VALUE or --from-json FILE "
                                             "(not both)"
                                           : "--data and --from-json apply to put only",
                   NULL);
    if (strcmp(cmd, "list") != 0 &&
        (!path || split(path, mount, sizeof mount, &rest, 1) != 0))
        return bad("--path MOUNT/PATH is required", NULL);
    if (strcmp(cmd, "list") == 0 && path && split(path, mount, sizeof mount, &rest, 0) != 0)
        return bad("--path: expected MOUNT[/DIR]", NULL);
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK)
        return failed("init", &err);
    if ((rc = store_flags_open(PROG, &sf, ctx, &st)) != 0) {
        ct_ctx_free(ctx);
        return rc;
    }
    rc = S_EXIT_FAIL;
    if (strcmp(cmd, "put") == 0) {
        char *data = NULL;
        size_t len = 0;
        uint64_t ver = 0;
        if ((rc = build_data(pairs, npairs, file, &data, &len)) == S_EXIT_OK) {
            if (ct_embedded_kv_put(ctx, st, mount, rest, data, len, &ver, &err) != CT_OK)
                rc = failed("put", &err);
            else
                printf("%s: version %llu\n", path, (unsigned long long)ver);
        }
        if (data) {
            ct_secure_wipe(data, len);
            free(data);
        }
    } else if (strcmp(cmd, "get") == 0) {
        ct_secret *s = NULL;
        ct_err e = ct_embedded_kv_get(st, mount, rest, &s, NULL, &err);
        if (e == CT_OK) {
            fwrite(ct_secret_data(s), 1, ct_secret_len(s), stdout);
            putchar('\n');
            rc = S_EXIT_OK;
        } else {
            rc = failed("get", &err);
        }
        ct_secret_free(s);
    } else if (strcmp(cmd, "delete") == 0) {
        char key[CT_STORE_KEY_MAX + 1];
        if (ct_embedded_kv_key(mount, rest, key, sizeof key, &err) != CT_OK ||
            ct_store_del(st, key, &err) != CT_OK)
            rc = failed("delete", &err);
        else
            rc = S_EXIT_OK;
    } else {
        char prefix[CT_STORE_KEY_MAX + 2];
        ct_strlist *l = NULL;
        size_t i;
        if (!path)
            snprintf(prefix, sizeof prefix, "kv/");
        else if (!*rest || strcmp(rest, "/") == 0)
            snprintf(prefix, sizeof prefix, "kv/%s/", mount);
        else
            snprintf(prefix, sizeof prefix, "kv/%s/%s%s", mount, rest,
                     rest[strlen(rest) - 1] == '/' ? "" : "/");
        if (ct_store_list(st, prefix, &l, &err) != CT_OK) {
            rc = failed("list", &err);
        } else {
            ct_strlist_sort(l);
            for (i = 0; i < ct_strlist_count(l); i++)
                printf("%s\n", ct_strlist_get(l, i) + 3);
            ct_strlist_free(l);
            rc = S_EXIT_OK;
        }
    }
    ct_store_free(st);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return rc;
}
