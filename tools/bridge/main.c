/*
 * main.c - cloudtaser-bridge: runs the library's bridge (ct_bridge_*) next
 * to the secret store. Thin: flags, signals, the event display and the
 * requests it serves (a ct_router: ping and the Secret migration ops).
 */
#include "../agent/agent_cli.h"
#include "../store/store_cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define PROG "cloudtaser-bridge"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --beacon HOST[:PORT] (--beacon-pin HEX | --beacon-ca FILE |\n"
"                          --beacon-system-ca) [OPTION]...\n"
"\n"
"The store-side end of cloudtaser. Watches the record store for registered\n"
"clusters (new ones within --scan-interval), waits for each in its init room\n"
"on the beacon (one-time bootstrap, attested re-bootstrap) and in its\n"
"operational room (mutual TLS with the cluster's operator), and serves the\n"
"operator's requests. Connects only outbound; listens on nothing.\n"
"\n"
"Options:\n"
BEACON_FLAGS_HELP
"  --audience AUD           audience the operators' service-account tokens must\n"
"                           carry (default: " CT_BOOTSTRAP_DEFAULT_AUDIENCE ")\n"
"  --token-lifetime SECS    longest token lifetime accepted at re-bootstrap\n"
"                           (default: 3600)\n"
"  --broker-days DAYS       validity of issued broker certificates (default: 30)\n"
"  --init-waiters N         connections per cluster in its init room (default: 1)\n"
"  --op-waiters N           connections per cluster in its operational room\n"
"                           (default: 2)\n"
"  --scan-interval MS       how often to re-read the store (default: 2000)\n"
"  --migrate-template T     where migrated Kubernetes Secrets go below\n"
"                           clusters/<fingerprint>/ (default:\n"
"                           " CT_MIGRATE_DEFAULT_TEMPLATE ")\n"
"  -o, --output json        events as one JSON object per line\n"
"  -v, --verbose            also log library notices to stderr\n"
"  -h, --help               this help\n"
"  -V, --version            the version\n"
"\n"
STORE_FLAGS_HELP
"\n"
"Output: one line per event on stdout (cluster_added, waiting, init_paired,\n"
"claim_recorded, bootstrap_issued, bootstrap_refused, session_up,\n"
"session_down, cluster_removed, error), clusters shown by the first 8\n"
"characters of their fingerprint only.\n"
"Signals: SIGTERM/SIGINT close sessions cleanly (GOAWAY) and exit.\n"
"Exit status: 0 after a signal, 1 on a fatal error, 2 on a bad command line.\n");
}

typedef struct evctx {
    int json;
} evctx;

static void on_event(void *arg, const ct_agent_event *ev)
{
    print_event(stdout, ((evctx *)arg)->json, ev);
}

static void stop_bridge(void *arg)
{
    ct_bridge_stop(arg);
}

static int parse_uint(const char *opt, const char *s, unsigned long max, unsigned long *v)
{
    char *end;
    *v = strtoul(s, &end, 10);
    if (!*s || *end || *v > max) {
        fprintf(stderr, PROG ": %s '%s': expected a number up to %lu\n", opt, s, max);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_BEACON = 256, O_PIN, O_CA, O_SYSCA, O_NAME, O_AUD, O_LIFE, O_DAYS,
           O_INITW, O_OPW, O_SCAN, O_MTMPL };
    static const struct option lo[] = {
        { "beacon", required_argument, 0, O_BEACON },
        { "beacon-pin", required_argument, 0, O_PIN },
        { "beacon-ca", required_argument, 0, O_CA },
        { "beacon-system-ca", no_argument, 0, O_SYSCA },
        { "beacon-name", required_argument, 0, O_NAME },
        STORE_LONG_OPTIONS,
        { "audience", required_argument, 0, O_AUD },
        { "token-lifetime", required_argument, 0, O_LIFE },
        { "broker-days", required_argument, 0, O_DAYS },
        { "init-waiters", required_argument, 0, O_INITW },
        { "op-waiters", required_argument, 0, O_OPW },
        { "scan-interval", required_argument, 0, O_SCAN },
        { "migrate-template", required_argument, 0, O_MTMPL },
        { "output", required_argument, 0, 'o' },
        { "verbose", no_argument, 0, 'v' },
        { "help", no_argument, 0, 'h' },
        { "version", no_argument, 0, 'V' },
        { 0, 0, 0, 0 },
    };
    beacon_flags bf;
    ct_bridge_options bo = CT_BRIDGE_OPTIONS_INIT;
    ct_ctx_options co = CT_CTX_OPTIONS_INIT;
    store_flags sf;
    ct_ctx *ctx = NULL;
    ct_store *store = NULL;
    ct_bridge *b = NULL;
    ct_router *router = NULL;
    ct_migrate_server_options mo = CT_MIGRATE_SERVER_OPTIONS_INIT;
    ct_migrate_server *migrate = NULL;
    ct_error err;
    evctx ev = { 0 };
    unsigned long v;
    int c, verbose = 0, rc = EXIT_FAIL;

    memset(&bf, 0, sizeof bf);
    store_flags_init(&sf);
    while ((c = getopt_long(argc, argv, "o:vhV", lo, NULL)) != -1) {
        if (store_flags_take(&sf, c, optarg))
            continue;
        switch (c) {
        case O_BEACON: bf.address = optarg; break;
        case O_PIN: bf.pin_hex = optarg; break;
        case O_CA: bf.ca_file = optarg; break;
        case O_SYSCA: bf.system_ca = 1; break;
        case O_NAME: bf.name = optarg; break;
        case O_AUD: bo.audience = optarg; break;
        case O_MTMPL: mo.path_template = optarg; break;
        case O_LIFE:
            if (parse_uint("--token-lifetime", optarg, 86400, &v)) return EXIT_USAGE;
            bo.max_token_lifetime_s = (uint32_t)v;
            break;
        case O_DAYS:
            if (parse_uint("--broker-days", optarg, 3650, &v)) return EXIT_USAGE;
            bo.broker_days = (uint32_t)v;
            break;
        case O_INITW:
            if (parse_uint("--init-waiters", optarg, 16, &v)) return EXIT_USAGE;
            bo.init_waiters = (uint32_t)v;
            break;
        case O_OPW:
            if (parse_uint("--op-waiters", optarg, 64, &v)) return EXIT_USAGE;
            bo.op_waiters = (uint32_t)v;
            break;
        case O_SCAN:
            if (parse_uint("--scan-interval", optarg, 3600000, &v) || v < 100) {
                fprintf(stderr, PROG ": --scan-interval must be at least 100 ms\n");
                return EXIT_USAGE;
            }
            bo.scan_interval_ms = (int)v;
            break;
        case 'o':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                fprintf(stderr, PROG ": -o: expected json or text\n");
                return EXIT_USAGE;
            }
            ev.json = strcmp(optarg, "json") == 0;
            break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return EXIT_OK;
        case 'V': printf(PROG " %s\n", ct_version()); return EXIT_OK;
        default:
            fprintf(stderr, "Try '" PROG " --help' for more information.\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (beacon_flags_resolve(PROG, &bf) != 0)
        return EXIT_USAGE;

    if (ct_process_harden(&err) != CT_OK)
        fprintf(stderr, PROG ": warning: %s\n", err.message);
    co.log = stderr_logger;
    co.log_user = (void *)PROG;
    co.log_level = verbose ? CT_LOG_INFO : CT_LOG_WARNING;
    if (ct_ctx_new(&co, &ctx, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    if ((c = store_flags_open(PROG, &sf, ctx, &store)) != 0) {
        rc = c;
        goto out;
    }
    if (sf.is_vault) {
        /* a first look at the server; not fatal: the scans retry */
        ct_vault_health h;
        if (ct_vault_health_check(ctx, &sf.vault, &h, &err) != CT_OK)
            fprintf(stderr, PROG ": warning: %s: %s\n", sf.desc, err.message);
        else if (verbose)
            fprintf(stderr, PROG ": %s: version %s%s\n", sf.desc, h.version,
                    h.standby ? " (standby; requests are forwarded)" : "");
    }
    bo.store = store;
    bo.beacon = &bf.opts;
    mo.store = store;
    if (ct_migrate_server_new(&mo, &migrate, &err) != CT_OK) {
        fprintf(stderr, PROG ": --migrate-template: %s\n", err.message);
        rc = EXIT_USAGE;
        goto out;
    }
    if (ct_router_new(&router, &err) != CT_OK ||
        ct_router_add(router, "ping", ct_router_ping, NULL, &err) != CT_OK ||
        ct_migrate_server_routes(migrate, router, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    bo.handler = ct_router_handle;
    bo.handler_arg = router;
    bo.on_event = on_event;
    bo.event_arg = &ev;
    if (ct_bridge_new(ctx, &bo, &b, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    install_stop_signals(stop_bridge, b);
    if (ct_bridge_run(b, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    rc = EXIT_OK;
out:
    install_stop_signals(NULL, NULL);
    ct_bridge_free(b);
    ct_router_free(router);
    ct_migrate_server_free(migrate);
    ct_store_free(store);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return rc;
}
