/*
 * vault_env.c - ct_vault_options_from_env: the Vault client environment
 * variables, read the way the vault CLI reads them (vault.h).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Go's strconv.ParseBool. 0/1, or -1 if not a boolean. */
static int parse_bool(const char *s)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    size_t i;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(s, t[i]) == 0)
            return 1;
        if (strcmp(s, f[i]) == 0)
            return 0;
    }
    return -1;
}

/*
 * A duration as Vault's parseutil reads VAULT_CLIENT_TIMEOUT: plain seconds
 * ("30"), or a number with a unit (ms, s, m, h). Milliseconds, or -1.
 */
static int64_t parse_duration_ms(const char *s)
{
    char *end;
    unsigned long long v;
    int64_t mul;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || v > (unsigned long long)INT_MAX)
        return -1;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else
        return -1;
    if ((int64_t)v * mul > INT_MAX)
        return -1;
    return (int64_t)v * mul;
}

ct_err ct_vault_options_from_env(ct_vault_options *o, ct_error *err)
{
    const char *v;
    if (!o)
        return ctp_err(err, CT_E_INVALID, 0, "ct_vault_options_from_env: NULL options");
    if (o->version != CT_VAULT_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_vault_options version %u is not supported",
                       (unsigned)o->version);
    if (!o->address)
        o->address = env("VAULT_ADDR");
    if (!o->token && !o->token_file) {
        o->token = env("VAULT_TOKEN");
        if (!o->token)
            o->token_file = CT_VAULT_TOKEN_FILE_HOME;
    }
    if (!o->namespace_path)
        o->namespace_path = env("VAULT_NAMESPACE");
    if (!o->ca_file)
        o->ca_file = env("VAULT_CACERT");
    if (!o->ca_path)
        o->ca_path = env("VAULT_CAPATH");
    if (!o->client_cert)
        o->client_cert = env("VAULT_CLIENT_CERT");
    if (!o->client_key)
        o->client_key = env("VAULT_CLIENT_KEY");
    if (!o->skip_verify && (v = env("VAULT_SKIP_VERIFY"))) {
        int b = parse_bool(v);
        if (b < 0)
            return ctp_err(err, CT_E_INVALID, 0,
                           "VAULT_SKIP_VERIFY='%.32s' is not a boolean (true/false, 1/0)", v);
        o->skip_verify = b;
    }
    if (!o->max_retries && (v = env("VAULT_MAX_RETRIES"))) {
        char *end;
        long n;
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || *end || end == v || n < 0 || n > 1000)
            return ctp_err(err, CT_E_INVALID, 0,
                           "VAULT_MAX_RETRIES='%.32s' is not a number of retries", v);
        o->max_retries = n == 0 ? -1 : (int)n;
    }
    if (!o->timeout_ms && (v = env("VAULT_CLIENT_TIMEOUT"))) {
        int64_t ms = parse_duration_ms(v);
        if (ms <= 0)
            return ctp_err(err, CT_E_INVALID, 0,
                           "VAULT_CLIENT_TIMEOUT='%.32s' is not a duration (e.g. 60, 30s, 2m)",
                           v);
        o->timeout_ms = (int)ms;
    }
    return CT_OK;
}
