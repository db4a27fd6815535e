/*
 * main.c - cloudtaser: the operator's command line. The cluster side of the
 * self-bootstrap's first step (target.c):
 *
 *   cloudtaser target fingerprint [--kubeconfig FILE] [--context NAME] [-o json]
 *
 * and the secret-store side of its "Register" step:
 *
 *   cloudtaser source register   --fingerprint UUID [STORE] [--expiry DUR]
 *   cloudtaser source deregister --fingerprint UUID [STORE]
 *   cloudtaser source status     --fingerprint UUID [STORE] [-o json]
 *   cloudtaser source list       [STORE] [-o json]
 *   cloudtaser source configure-auth --fingerprint UUID --review-url URL [STORE] ...
 *
 * STORE: --store PATH (SQLite, the default), or --vault-address URL and the
 * other --vault-* flags / VAULT_* variables (HashiCorp Vault or OpenBao);
 * tools/store/store_cli.c, shared with cloudtaser-bridge.
 *
 * Thin by design: everything about records, keys and certificates lives in
 * libcloudtaser (register.h). Never prints key material; the room hashes
 * are shown as 16-hex-digit prefixes.
 */
#include "cloudtaser/cloudtaser.h"
#include "../store/store_cli.h"
#include "secret.h"
#include "target.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "cloudtaser"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct opts {
    const char *fingerprint;
    /* configure-auth */
    const char *review_url, *auth_mount, *auth_addr, *auth_token_file, *auth_cacert;
    int no_enable, jwt;
    /* deregister */
    int keep_data, delete_data;
    store_flags store;
    uint32_t expiry_s;
    int json;
    const char *ca_out; /* status --ca-out */
} opts;

static void usage_main(FILE *f)
{
    fprintf(f,
"Usage: " PROG " target COMMAND [OPTION]...\n"
"       " PROG " source COMMAND [OPTION]...\n"
"       " PROG " --help | --version\n"
"\n"
"The cloudtaser self-bootstrap: the cluster side (target) and the secret-store\n"
"side (source).\n"
"\n"
"Commands:\n"
"  target fingerprint  print this cluster's fingerprint (the kube-system\n"
"                      namespace UID) from the Kubernetes API server\n"
"  target migrate      plan | apply | restore: move existing Kubernetes Secrets\n"
"                      into the vault (apply and restore run in the operator)\n"
"  source register     register a cluster: make its CA and the bridge's client\n"
"                      certificate and store them\n"
"  source deregister   remove every record of a cluster\n"
"  source status       show one cluster's registration\n"
"  source list         show every registered cluster\n"
"  source configure-auth  point Vault's Kubernetes auth method for a cluster at\n"
"                      the bridge's TokenReview endpoint (no path to the cluster)\n"
"  source secret       put | get | list | delete: the secrets pods read from the\n"
"                      bridge's store (cloudtaser-bridge --pod-policy)\n"
"\n"
"Run '" PROG " target|source COMMAND --help' for a command's options.\n"
"\n"
"Exit status: 0 success, 1 the operation failed, 2 bad command line.\n");
}

static void usage_cmd(FILE *f, const char *cmd)
{
    if (strcmp(cmd, "register") == 0)
        fprintf(f,
"Usage: " PROG " source register --fingerprint UUID [STORE] [--expiry DURATION]\n"
"\n"
"Registers a cluster: creates, in memory, a per-cluster CA (ECDSA P-256) and\n"
"the bridge's client certificate, and writes them with the registration to\n"
"the store. Fails if the cluster is already registered (deregister first).\n"
"Prints the init and operational room hash prefixes; never key material.\n"
"\n");
    else if (strcmp(cmd, "configure-auth") == 0)
        fprintf(f,
"Usage: " PROG " source configure-auth --fingerprint UUID --review-url URL [STORE]\n"
"                 [--auth-mount PATH] [--auth-vault-address URL]\n"
"                 [--auth-vault-token-file FILE] [--auth-vault-cacert FILE] [--no-enable]\n"
"       " PROG " source configure-auth --jwt --fingerprint UUID [STORE] [--auth-mount PATH]\n"
"                 [--auth-vault-address URL]\n"
"                 [--auth-vault-token-file FILE] [--auth-vault-cacert FILE] [--no-enable]\n"
"\n"
"Vault's Kubernetes auth method reviews every login with the cluster's\n"
"TokenReview API. With no network path from Vault to the cluster, the bridge\n"
"serves that API locally (cloudtaser-bridge --tokenreview FP=HOST:PORT) and\n"
"forwards each review through the tunnel. This command enables the auth mount\n"
"(default kubernetes-<first 8 characters of the fingerprint>) and writes its\n"
"config: kubernetes_host = --review-url, kubernetes_ca_cert = the cluster CA\n"
"from the store, token_reviewer_jwt = the cluster's reviewer token (created in\n"
"the store if missing). Roles stay yours to write (auth/<mount>/role/<name>).\n"
"\n"
"The Vault (address, token, CA) comes from the --auth-vault-* flags, else from\n"
"VAULT_ADDR, VAULT_TOKEN (or ~/.vault-token), VAULT_CACERT. Its token needs:\n"
"  path \"sys/auth/kubernetes-*\" { capabilities = [\"create\", \"update\", \"sudo\"] }\n"
"  path \"auth/kubernetes-*\"     { capabilities = [\"create\", \"update\"] }\n"
"(not the first with --no-enable; adjust the paths for --auth-mount).\n"
"\n"
"--jwt sets up the offline fallback instead: Vault's JWT auth method (default\n"
"mount jwt-<first 8 characters of the fingerprint>) validating pods' tokens\n"
"with the cluster's service-account issuer keys pinned at its first bootstrap\n"
"(jwt_validation_pubkeys as PEM, bound_issuer), with no call to the cluster at\n"
"all (so no revocation check: use short-lived tokens). The mount is recorded in\n"
"the store; when the operator pushes rotated issuer keys, a bridge given a\n"
"Vault (Vault store, or VAULT_ADDR and VAULT_TOKEN) rewrites the config. This\n"
"token needs \"sys/auth/jwt-*\" as above and \"auth/jwt-*\" create/update; the\n"
"bridge's token only update on \"auth/jwt-*\" (or the one config path).\n"
"\n");
    else if (strcmp(cmd, "deregister") == 0)
        fprintf(f,
"Usage: " PROG " source deregister --fingerprint UUID [STORE] [--keep-data | --delete-data]\n"
"\n"
"Deletes a cluster's registration (its CA, the bridge's credentials, the\n"
"registration and bootstrap records), so the cluster is revoked. If Secrets\n"
"were migrated from the cluster into the store (below clusters/<fp>/, e.g.\n"
"clusters/<fp>/secrets/<namespace>/<name>), it refuses (exit 1, nothing\n"
"deleted) and says how many, unless told what to do with them:\n"
"  --keep-data     revoke the cluster but keep the migrated copies where they\n"
"                  are; to get the Secrets back later, register the same\n"
"                  fingerprint again, deploy the operator, and run\n"
"                  'cloudtaser target migrate restore'\n"
"  --delete-data   delete the migrated copies too (the count is printed); a\n"
"                  Secret whose only copy was in the store is then gone\n"
"\n");
    else if (strcmp(cmd, "status") == 0)
        fprintf(f,
"Usage: " PROG " source status --fingerprint UUID [STORE] [-o json] [--ca-out FILE]\n"
"\n"
"Shows a cluster's registration: state (registered, initialized, connected:\n"
"a bridge has a live session with it, expired), registration and expiry\n"
"times, room hash prefixes, the full operational room hash (with -o json).\n"
"With --ca-out FILE it also writes the cluster CA certificate (PEM, public:\n"
"what pods trust for the operator's Vault API broker, e.g. the Helm value\n"
"broker.caCert) to FILE (mode 0644); never the CA key.\n"
"\n");
    else
        fprintf(f,
"Usage: " PROG " source list [STORE] [-o json]\n"
"\n"
"Shows every registered cluster.\n"
"\n");
    fprintf(f,
"Options:\n"
"  --fingerprint UUID   the cluster fingerprint (kube-system namespace UID)\n"
"  --expiry DURATION    register: how long the registration waits for the\n"
"                       cluster's bootstrap, e.g. 24h, 90m, 3600s (default 24h)\n"
"  -o, --output FORMAT  status, list: text (default) or json\n"
"  --ca-out FILE        status: write the cluster CA certificate (PEM) to FILE\n"
"  -h, --help           show this text and exit\n"
"\n"
STORE_FLAGS_HELP
"\n"
"Exit status: 0 success, 1 the operation failed, 2 bad command line.\n");
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry '" PROG " --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

static int fail(const char *what, const ct_error *err)
{
    fprintf(stderr, PROG ": %s: %s\n", what,
            err->message[0] ? err->message : ct_strerror(err->code));
    return EXIT_FAIL;
}

/* "24h", "90m", "3600s", "3600" (seconds). 0 and -1 on error. */
static int parse_duration(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v, mul = 1;
    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (*end == 's')
        mul = 1, end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 'd')
        mul = 86400, end++;
    if (*end || v == 0 || v > UINT32_MAX / mul)
        return -1;
    *out = (uint32_t)(v * mul);
    return 0;
}

static void fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, n, "%lld", (long long)ms);
}

static void prefix16(const uint8_t *h, char out[17])
{
    char full[2 * CT_ROOM_HASH_LEN + 1];
    ct_hex(h, CT_ROOM_HASH_LEN, full);
    memcpy(out, full, 16);
    out[16] = '\0';
}

static void print_json_reg(const ct_registration *r)
{
    char ir[17], orm[17], ra[32], ea[32], full[2 * CT_ROOM_HASH_LEN + 1];
    ct_hex(ct_registration_operational_room(r), CT_ROOM_HASH_LEN, full);
    prefix16(ct_registration_init_room(r), ir);
    prefix16(ct_registration_operational_room(r), orm);
    fmt_time(ct_registration_registered_at(r), ra, sizeof ra);
    fmt_time(ct_registration_expires_at(r), ea, sizeof ea);
    /* Every value is hex, digits, a UUID or a fixed word: no escaping needed. */
    printf("{\"fingerprint\":\"%s\",\"state\":\"%s\",\"registered\":\"%s\","
           "\"expires\":\"%s\",\"registered_at_ms\":%lld,\"expires_at_ms\":%lld,"
           "\"init_room_prefix\":\"%s\",\"operational_room_prefix\":\"%s\","
           "\"operational_room\":\"%s\"}",
           ct_registration_fingerprint(r), ct_reg_state_name(ct_registration_state(r)), ra,
           ea, (long long)ct_registration_registered_at(r),
           (long long)ct_registration_expires_at(r), ir, orm, full);
}

static void print_table_head(void)
{
    printf("%-36s  %-11s  %-20s  %s\n", "FINGERPRINT", "STATE", "REGISTERED", "EXPIRES");
}

static void print_table_row(const ct_registration *r)
{
    char ra[32], ea[32];
    fmt_time(ct_registration_registered_at(r), ra, sizeof ra);
    fmt_time(ct_registration_expires_at(r), ea, sizeof ea);
    printf("%-36s  %-11s  %-20s  %s\n", ct_registration_fingerprint(r),
           ct_reg_state_name(ct_registration_state(r)), ra, ea);
}

static int cmd_register(ct_ctx *ctx, ct_store *st, const opts *o)
{
    ct_register_options ro = CT_REGISTER_OPTIONS_INIT;
    ct_registration *r = NULL;
    ct_error err;
    char ir[17], orm[17], ea[32];

    ro.expiry_s = o->expiry_s;
    if (ct_register(ctx, st, o->fingerprint, &ro, &r, &err) != CT_OK)
        return fail("register", &err);
    prefix16(ct_registration_init_room(r), ir);
    prefix16(ct_registration_operational_room(r), orm);
    fmt_time(ct_registration_expires_at(r), ea, sizeof ea);
    printf("Registered cluster %s\n", ct_registration_fingerprint(r));
    printf("  Store:            %s\n", o->store.desc);
    printf("  Records:          %sclusters/%s/{ca,bridge,registered}\n",
           o->store.records_prefix, ct_registration_fingerprint(r));
    printf("  CA:               ECDSA P-256, created in memory; bridge client certificate issued\n");
    printf("  Init room:        %s...\n", ir);
    printf("  Operational room: %s...\n", orm);
    {
        char full[2 * CT_ROOM_HASH_LEN + 1];
        ct_hex(ct_registration_operational_room(r), CT_ROOM_HASH_LEN, full);
        printf("  Operator pin:     --operational-room %s\n", full);
        printf("                    (optional: lets the operator check the bridge at its first\n"
               "                    bootstrap; not secret)\n");
    }
    printf("  Expires:          %s (unless the cluster bootstraps first)\n", ea);
    printf("\nDeploy the operator on the cluster; it self-bootstraps through the beacon.\n");
    ct_registration_free(r);
    return EXIT_OK;
}

static int cmd_configure_auth(ct_ctx *ctx, ct_store *st, const opts *o)
{
    ct_vault_options av = CT_VAULT_OPTIONS_INIT;
    ct_secret *tok = NULL;
    char *ca = NULL, mount[128];
    ct_error err;
    int rc = EXIT_FAIL;

    av.address = o->auth_addr;
    av.token_file = o->auth_token_file;
    av.ca_file = o->auth_cacert;
    if (ct_vault_options_from_env(&av, &err) != CT_OK)
        return fail("configure-auth", &err);
    if (!av.address) {
        fprintf(stderr, PROG ": configure-auth: no Vault address: give --auth-vault-address or "
                        "VAULT_ADDR\n");
        return EXIT_USAGE;
    }
    if (o->jwt) {
        if (ct_review_configure_vault_jwt(ctx, st, &av, o->auth_mount, o->fingerprint,
                                          !o->no_enable, mount, &err) != CT_OK)
            return fail("configure-auth", &err);
        printf("configured auth/%s at %s: JWT auth with the cluster's pinned issuer keys "
               "(kept current by the bridge on rotation)\n", mount, av.address);
        return EXIT_OK;
    }
    if (ct_review_cluster_ca(st, o->fingerprint, &ca, &err) != CT_OK ||
        ct_review_token(ctx, st, o->fingerprint, 1, &tok, &err) != CT_OK ||
        ct_review_configure_vault(ctx, &av, o->auth_mount, o->fingerprint, o->review_url, ca,
                                  tok, !o->no_enable, mount, &err) != CT_OK) {
        rc = fail("configure-auth", &err);
    } else {
        printf("configured auth/%s at %s: kubernetes_host %s, kubernetes_ca_cert = the "
               "cluster CA, token_reviewer_jwt = the cluster's reviewer token\n", mount,
               av.address, o->review_url);
        rc = EXIT_OK;
    }
    ct_secret_free(tok);
    ct_free(ca);
    return rc;
}

static int cmd_deregister(ct_ctx *ctx, ct_store *st, const opts *o)
{
    ct_error err;
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_deregister_options d = CT_DEREGISTER_OPTIONS_INIT;
    size_t ndata = 0;
    d.data = o->keep_data ? CT_DEREGISTER_KEEP_DATA
                          : o->delete_data ? CT_DEREGISTER_DELETE_DATA : CT_DEREGISTER_REFUSE_DATA;
    if (ct_fingerprint_canonical(o->fingerprint, fp, &err) != CT_OK ||
        ct_deregister_ex(ctx, st, o->fingerprint, &d, &ndata, &err) != CT_OK)
        return fail("deregister", &err);
    printf("Deregistered cluster %s\n", fp);
    if (ndata && o->keep_data)
        printf("Kept %zu migrated Secret copies under clusters/%s/ in the store; to restore them,\n"
               "register the cluster again, deploy the operator and run "
               "'cloudtaser target migrate restore'\n", ndata, fp);
    else if (ndata)
        printf("Deleted %zu migrated Secret copies\n", ndata);
    return EXIT_OK;
}

/* Writes the public CA certificate to path (mode 0644, replaced atomically). */
static int write_ca(ct_ctx *ctx, ct_store *st, const opts *o)
{
    char *pem = NULL, tmp[4096];
    ct_error err;
    FILE *f;
    int ok;

    if (ct_cluster_ca_pem(ctx, st, o->fingerprint, &pem, &err) != CT_OK)
        return fail("status --ca-out", &err);
    if (snprintf(tmp, sizeof tmp, "%s.tmp", o->ca_out) >= (int)sizeof tmp) {
        ct_free(pem);
        fprintf(stderr, PROG ": --ca-out: path too long\n");
        return EXIT_USAGE;
    }
    ok = (f = fopen(tmp, "w")) != NULL;
    if (ok) {
        ok = fputs(pem, f) >= 0;
        ok = fclose(f) == 0 && ok;
    }
    ok = ok && chmod(tmp, 0644) == 0 && rename(tmp, o->ca_out) == 0;
    ct_free(pem);
    if (!ok) {
        fprintf(stderr, PROG ": --ca-out: cannot write %s: %s\n", o->ca_out, strerror(errno));
        unlink(tmp);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

static int cmd_status(ct_ctx *ctx, ct_store *st, const opts *o)
{
    ct_registration *r = NULL;
    ct_error err;
    int rc;
    /* a store laid out by a newer cloudtaser: say so rather than misread it */
    if (ct_store_layout_check(ctx, st, NULL, &err) != CT_OK ||
        ct_registration_get(ctx, st, o->fingerprint, &r, &err) != CT_OK)
        return fail("status", &err);
    if (o->ca_out && (rc = write_ca(ctx, st, o)) != EXIT_OK) {
        ct_registration_free(r);
        return rc;
    }
    if (o->json) {
        print_json_reg(r);
        putchar('\n');
    } else {
        char ir[17], orm[17];
        print_table_head();
        print_table_row(r);
        prefix16(ct_registration_init_room(r), ir);
        prefix16(ct_registration_operational_room(r), orm);
        printf("\nInit room:        %s...\nOperational room: %s...\n", ir, orm);
    }
    ct_registration_free(r);
    return EXIT_OK;
}

static int cmd_list(ct_ctx *ctx, ct_store *st, const opts *o)
{
    ct_strlist *fps = NULL;
    ct_error err;
    size_t i, n;
    int rc = EXIT_OK;

    if (ct_registration_list(ctx, st, &fps, &err) != CT_OK)
        return fail("list", &err);
    n = ct_strlist_count(fps);
    if (o->json)
        putchar('[');
    else
        print_table_head();
    for (i = 0; i < n; i++) {
        ct_registration *r = NULL;
        if (ct_registration_get(ctx, st, ct_strlist_get(fps, i), &r, &err) != CT_OK) {
            rc = fail("list", &err);
            break;
        }
        if (o->json) {
            if (i)
                putchar(',');
            print_json_reg(r);
        } else {
            print_table_row(r);
        }
        ct_registration_free(r);
    }
    if (o->json && rc == EXIT_OK)
        puts("]");
    ct_strlist_free(fps);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option k_options[] = {
        {"fingerprint", required_argument, NULL, 'f'},
        STORE_LONG_OPTIONS,
        {"expiry", required_argument, NULL, 'e'},
        {"review-url", required_argument, NULL, 'R'},
        {"auth-mount", required_argument, NULL, 'M'},
        {"auth-vault-address", required_argument, NULL, 'A'},
        {"auth-vault-token-file", required_argument, NULL, 'T'},
        {"auth-vault-cacert", required_argument, NULL, 'C'},
        {"no-enable", no_argument, NULL, 'N'},
        {"jwt", no_argument, NULL, 'J'},
        {"keep-data", no_argument, NULL, 'K'},
        {"delete-data", no_argument, NULL, 'D'},
        {"ca-out", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opts o;
    const char *cmd;
    ct_ctx *ctx = NULL;
    ct_store *st = NULL;
    ct_error err;
    int opt, rc;

    memset(&o, 0, sizeof o);
    store_flags_init(&o.store);
    if (argc < 2)
        return usage_main(stderr), EXIT_USAGE;
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage_main(stdout), EXIT_OK;
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf(PROG " %s (libcloudtaser %s)\n", CT_VERSION_STRING, ct_version());
        return EXIT_OK;
    }
    if (strcmp(argv[1], "target") == 0)
        return target_main(argc, argv);
    if (strcmp(argv[1], "source") != 0)
        return bad_usage("unknown command '%s'", argv[1]);
    if (argc < 3)
        return bad_usage("source: missing command (register, deregister, status, list)");
    cmd = argv[2];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return usage_main(stdout), EXIT_OK;
    if (strcmp(cmd, "secret") == 0)
        return secret_main(argc, argv);
    if (strcmp(cmd, "register") != 0 && strcmp(cmd, "deregister") != 0 &&
        strcmp(cmd, "status") != 0 && strcmp(cmd, "list") != 0 &&
        strcmp(cmd, "configure-auth") != 0)
        return bad_usage("source: unknown command '%s'", cmd);

    optind = 3;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", k_options, NULL)) != -1) {
        if (store_flags_take(&o.store, opt, optarg))
            continue;
        switch (opt) {
        case 'h':
            usage_cmd(stdout, cmd);
            return EXIT_OK;
        case 'f':
            o.fingerprint = optarg;
            break;
        case 'R': o.review_url = optarg; break;
        case 'M': o.auth_mount = optarg; break;
        case 'A': o.auth_addr = optarg; break;
        case 'T': o.auth_token_file = optarg; break;
        case 'C': o.auth_cacert = optarg; break;
        case 'N': o.no_enable = 1; break;
        case 'J': o.jwt = 1; break;
        case 'K': o.keep_data = 1; break;
        case 'D': o.delete_data = 1; break;
        case 'c': o.ca_out = optarg; break;
        case 'e':
            if (parse_duration(optarg, &o.expiry_s) != 0)
                return bad_usage("--expiry '%s': expected a duration like 24h, 90m or 3600s",
                                 optarg);
            break;
        case 'o':
            if (strcmp(optarg, "json") == 0)
                o.json = 1;
            else if (strcmp(optarg, "text") == 0)
                o.json = 0;
            else
                return bad_usage("-o '%s': expected text or json", optarg);
            break;
        case ':':
            return bad_usage("option '%s' needs an argument", argv[optind - 1]);
        default:
            return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument '%s'", argv[optind]);
    if (strcmp(cmd, "configure-auth") == 0 && o.jwt && o.review_url)
        return bad_usage("source configure-auth: --jwt and --review-url exclude each other");
    if ((strcmp(cmd, "configure-auth") == 0 && !o.jwt) != (o.review_url != NULL))
        return bad_usage(o.review_url ? "--review-url applies to configure-auth only"
                                      : "source configure-auth: --review-url (or --jwt) is "
                                        "required");
    if (strcmp(cmd, "configure-auth") != 0 &&
        (o.auth_mount || o.auth_addr || o.auth_token_file || o.auth_cacert || o.no_enable ||
         o.jwt))
        return bad_usage("source %s: the --auth-* options apply to configure-auth only", cmd);
    if (strcmp(cmd, "list") != 0 && !o.fingerprint)
        return bad_usage("source %s: --fingerprint is required", cmd);
    if (strcmp(cmd, "list") == 0 && o.fingerprint)
        return bad_usage("source list: --fingerprint is not accepted");
    if (strcmp(cmd, "status") != 0 && o.ca_out)
        return bad_usage("source %s: --ca-out applies to status only", cmd);
    if (strcmp(cmd, "register") != 0 && o.expiry_s)
        return bad_usage("source %s: --expiry applies to register only", cmd);
    if ((o.keep_data || o.delete_data) && strcmp(cmd, "deregister") != 0)
        return bad_usage("source %s: --keep-data and --delete-data apply to deregister only",
                         cmd);
    if (o.keep_data && o.delete_data)
        return bad_usage("source deregister: give --keep-data or --delete-data, not both");
    if ((strcmp(cmd, "register") == 0 || strcmp(cmd, "deregister") == 0) && o.json)
        return bad_usage("source %s: -o applies to status and list only", cmd);
    if (o.fingerprint) {
        char fp[CT_FINGERPRINT_LEN + 1];
        if (ct_fingerprint_canonical(o.fingerprint, fp, &err) != CT_OK)
            return fail("--fingerprint", &err);
    }
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK)
        return fail("init", &err);
    if ((rc = store_flags_open(PROG, &o.store, ctx, &st)) != 0) {
        ct_ctx_free(ctx);
        return rc;
    }
    if (strcmp(cmd, "register") == 0)
        rc = cmd_register(ctx, st, &o);
    else if (strcmp(cmd, "deregister") == 0)
        rc = cmd_deregister(ctx, st, &o);
    else if (strcmp(cmd, "configure-auth") == 0)
        rc = cmd_configure_auth(ctx, st, &o);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(ctx, st, &o);
    else
        rc = cmd_list(ctx, st, &o);
    ct_store_free(st);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return rc;
}
