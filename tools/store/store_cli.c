/*
 * store_cli.c - see store_cli.h.
 */
#include "store_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_flags_init(store_flags *f)
{
    memset(f, 0, sizeof *f);
    f->vault = (ct_vault_options)CT_VAULT_OPTIONS_INIT;
}

int store_flags_take(store_flags *f, int opt, char *arg)
{
    ct_vault_options *v = &f->vault;
    if (opt < STORE_OPT_STORE || opt >= STORE_OPT_END_)
        return 0;
    if (opt != STORE_OPT_STORE)
        f->any_vault_flag = 1;
    switch (opt) {
    case STORE_OPT_STORE: f->sqlite_path = arg; break;
    case STORE_OPT_VAULT_ADDRESS: v->address = arg; break;
    case STORE_OPT_VAULT_TOKEN: v->token = arg; f->token_arg = arg; break;
    case STORE_OPT_VAULT_TOKEN_FILE: v->token_file = arg; break;
    case STORE_OPT_VAULT_NAMESPACE: v->namespace_path = arg; break;
    case STORE_OPT_VAULT_CACERT: v->ca_file = arg; break;
    case STORE_OPT_VAULT_CAPATH: v->ca_path = arg; break;
    case STORE_OPT_VAULT_CLIENT_CERT: v->client_cert = arg; break;
    case STORE_OPT_VAULT_CLIENT_KEY: v->client_key = arg; break;
    case STORE_OPT_VAULT_MOUNT: v->mount = arg; break;
    case STORE_OPT_VAULT_SKIP_VERIFY: v->skip_verify = 1; break;
    case STORE_OPT_FORCE_INSECURE: v->force_insecure = 1; break;
    default: return 0;
    }
    return 1;
}

static void usage_error(const char *prog, const char *msg)
{
    fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", prog, msg, prog);
}

int store_flags_open(const char *prog, store_flags *f, ct_ctx *ctx, ct_store **out)
{
    const char *env_addr = getenv("VAULT_ADDR");
    ct_error err;
    ct_err rc;

    *out = NULL;
    if (f->sqlite_path && f->any_vault_flag) {
        usage_error(prog, "--store and --vault-* flags do not go together: pick one store");
        return 2;
    }
    f->is_vault = !f->sqlite_path && (f->vault.address || (env_addr && *env_addr));
    if (!f->is_vault && f->any_vault_flag) {
        usage_error(prog, "--vault-* flags need --vault-address (or VAULT_ADDR)");
        return 2;
    }
    if (!f->is_vault) {
        const char *path = f->sqlite_path;
        if (!path) {
            const char *env = getenv("CLOUDTASER_STORE");
            path = env && *env ? env : STORE_DEFAULT_PATH;
        }
        snprintf(f->desc, sizeof f->desc, "%s", path);
        f->records_prefix[0] = '\0';
        if (ct_store_new_sqlite(ctx, path, out, &err) != CT_OK) {
            fprintf(stderr, "%s: store %s: %s\n", prog, path, err.message);
            return 1;
        }
        return 0;
    }
    if ((rc = ct_vault_options_from_env(&f->vault, &err)) != CT_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        return 2;
    }
    {
        const char *m = f->vault.mount && *f->vault.mount ? f->vault.mount
                                                          : CT_VAULT_DEFAULT_MOUNT;
        size_t ml = strlen(m);
        while (ml && m[ml - 1] == '/')
            ml--;
        while (ml && *m == '/')
            m++, ml--;
        snprintf(f->desc, sizeof f->desc, "vault %s (KV v2 mount %.*s%s%s)",
                 f->vault.address, (int)ml, m,
                 f->vault.namespace_path ? ", namespace " : "",
                 f->vault.namespace_path ? f->vault.namespace_path : "");
        snprintf(f->records_prefix, sizeof f->records_prefix, "%.*s/data/", (int)ml, m);
    }
    rc = ct_store_new_vault(ctx, &f->vault, out, &err);
    /* the store holds its own copy: hide the token from /proc/PID/cmdline */
    if (f->token_arg)
        ct_secure_wipe(f->token_arg, strlen(f->token_arg));
    f->vault.token = NULL;
    if (rc != CT_OK) {
        fprintf(stderr, "%s: store %s: %s\n", prog, f->desc, err.message);
        return rc == CT_E_INVALID ? 2 : 1;
    }
    return 0;
}
