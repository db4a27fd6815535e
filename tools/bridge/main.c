/*
 * main.c - cloudtaser-bridge: runs the library's bridge (ct_bridge_*) next
 * to the secret store. Thin: flags, signals, the event display and the
 * requests it serves (a ct_router: ping; with --serve-pods the Vault proxy
 * for the operators' brokers: vault.http and broker.cert, broker.h), and the
 * TokenReview endpoints for Vault's Kubernetes auth (review.h), and the Secret
 * migration ops (migrate.h). Without a Vault for the pods, vault.http is
 * answered from the store under the --pod-policy file (podpolicy.h),
 * reloaded on SIGHUP.
 */
#include "../agent/agent_cli.h"
#include "../agent/agent_ops.h"
#include "../store/store_cli.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define PROG "cloudtaser-bridge"
#define MAX_REVIEWS 16

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
"  --serve-pods             serve the operators' Vault API brokers: execute pods'\n"
"                           Vault calls (an allowlisted subset: login, KV v2\n"
"                           read/list/metadata, token lookup-self/renew-self,\n"
"                           health) against the Vault of --vault-address /\n"
"                           VAULT_ADDR with the pod's own token (this bridge adds\n"
"                           no credential), and issue the brokers' certificates\n"
"                           from each cluster's CA\n"
"  --pods-extra-prefix P    with --serve-pods: also allow Vault paths starting\n"
"                           with P (e.g. transit/decrypt/; repeatable, up to 16)\n"
"  --pod-policy FILE        with --serve-pods: answer the pods from this bridge's\n"
"                           store instead of a Vault (the embedded store): logins\n"
"                           with service-account tokens verified against each\n"
"                           cluster's pinned issuer keys, KV v2 reads of the\n"
"                           kv/<mount>/<path> records ('cloudtaser source secret')\n"
"                           as FILE (JSON rules: namespace, service account ->\n"
"                           path prefixes) allows; re-read on SIGHUP. Also the\n"
"                           mode when the store is SQLite and no Vault is given\n"
"                           (VAULT_ADDR unset); then without FILE every pod is\n"
"                           refused\n"
"  --broker-cert-days DAYS  validity of brokers' certificates (default: 30)\n"
"  --tokenreview FP=HOST[:PORT]\n"
"                           serve the TokenReview endpoint of cluster FP on\n"
"                           HOST[:PORT] (an IP address; no port: any) for Vault's\n"
"                           Kubernetes auth (kubernetes_host; see 'cloudtaser\n"
"                           source configure-auth'); reviews go through the\n"
"                           tunnel to the cluster's operator. Repeatable; the\n"
"                           cluster must be registered. Prints \"tokenreview\n"
"                           FP8 URL\" once listening\n"
"  (Vault JWT auth)         with a Vault store, or VAULT_ADDR and VAULT_TOKEN set,\n"
"                           the bridge rewrites auth/<mount>/config of clusters\n"
"                           set up with 'cloudtaser source configure-auth --jwt'\n"
"                           when their operator pushes rotated issuer keys\n"
"  --migrate-template T     where migrated Kubernetes Secrets go below\n"
"                           clusters/<fingerprint>/ (default:\n"
"                           " CT_MIGRATE_DEFAULT_TEMPLATE ")\n"
OPS_FLAGS_HELP
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
"With --metrics: /healthz is 200 until shutdown begins, /readyz 200 while the\n"
"run loop is up and its latest scan listed the store; \"metrics ADDR:PORT\" is\n"
"printed once it listens.\n"
"Signals: SIGTERM/SIGINT close sessions cleanly (GOAWAY) and exit. SIGHUP\n"
"re-reads the --pod-policy file (an invalid file keeps the previous policy;\n"
"without --pod-policy it is logged and ignored).\n"
"Exit status: 0 after a signal, 1 on a fatal error, 2 on a bad command line.\n");
}

typedef struct evctx {
    int json;
} evctx;

static agent_ops g_ops = { .prefix = "cloudtaser_bridge" };

static void on_event(void *arg, const ct_agent_event *ev)
{
    agent_ops_event(&g_ops, ev);
    print_event(stdout, ((evctx *)arg)->json, ev);
}

static void stop_bridge(void *arg)
{
    agent_ops_stopping(&g_ops);
    ct_bridge_stop(arg);
}

/* SIGHUP: re-read the pod policy (on a thread of its own: sigwait). */
typedef struct reloader {
    pthread_t thread;
    int started;
    volatile sig_atomic_t stop;
    const char *path;
    ct_embedded_vault *ev;
} reloader;

static void *reload_main(void *arg)
{
    reloader *r = arg;
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    while (sigwait(&set, &sig) == 0 && !r->stop) {
        ct_pod_policy *p = NULL;
        ct_error err;
        if (!r->path) {
            fprintf(stderr, PROG ": SIGHUP: nothing to reload (no --pod-policy)\n");
            continue;
        }
        if (ct_pod_policy_load(r->path, &p, &err) != CT_OK) {
            fprintf(stderr, PROG ": SIGHUP: keeping the previous pod policy: %s\n", err.message);
            continue;
        }
        fprintf(stderr, PROG ": SIGHUP: pod policy reloaded from %s (%zu rules)\n", r->path,
                ct_pod_policy_rule_count(p));
        ct_embedded_vault_set_policy(r->ev, p);
    }
    return NULL;
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
           O_INITW, O_OPW, O_SCAN, O_PODS, O_PODS_EXTRA, O_BDAYS, O_REVIEW, O_MTMPL,
           O_POD_POLICY, O_METRICS, O_METRICS_REMOTE };
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
        { "serve-pods", no_argument, 0, O_PODS },
        { "pods-extra-prefix", required_argument, 0, O_PODS_EXTRA },
        { "pod-policy", required_argument, 0, O_POD_POLICY },
        { "broker-cert-days", required_argument, 0, O_BDAYS },
        { "tokenreview", required_argument, 0, O_REVIEW },
        { "migrate-template", required_argument, 0, O_MTMPL },
        { "metrics", required_argument, 0, O_METRICS },
        { "metrics-allow-remote", no_argument, 0, O_METRICS_REMOTE },
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
    ct_vault_proxy *proxy = NULL;
    ct_vault_proxy_options po = CT_VAULT_PROXY_OPTIONS_INIT;
    ct_vault_options pods_vault = CT_VAULT_OPTIONS_INIT;
    ct_vault_options jwt_vault = CT_VAULT_OPTIONS_INIT;
    const char *extra[16];
    int serve_pods = 0, embedded = 0;
    const char *pod_policy = NULL;
    ct_embedded_vault *emb = NULL;
    reloader rl = { 0 };
    ct_review_jwks_sink *sink = NULL;
    const char *reviews[MAX_REVIEWS];
    ct_review_server *rs[MAX_REVIEWS] = { 0 };
    size_t n_reviews = 0, i;
    ct_migrate_server_options mo = CT_MIGRATE_SERVER_OPTIONS_INIT;
    ct_migrate_server *migrate = NULL;
    ct_error err;
    evctx ev = { 0 };
    unsigned long v;
    int c, verbose = 0, rc = EXIT_FAIL;

    memset(&bf, 0, sizeof bf);
    store_flags_init(&sf);
    opterr = 0; /* our own messages, named PROG, not argv[0] */
    while ((c = getopt_long(argc, argv, ":o:vhV", lo, NULL)) != -1) {
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
        case O_METRICS: g_ops.spec = optarg; break;
        case O_METRICS_REMOTE: g_ops.allow_remote = 1; break;
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
        case O_PODS: serve_pods = 1; break;
        case O_POD_POLICY: pod_policy = optarg; break;
        case O_PODS_EXTRA:
            if (po.n_extra_prefixes >= 16) {
                fprintf(stderr, PROG ": at most 16 --pods-extra-prefix\n");
                return EXIT_USAGE;
            }
            extra[po.n_extra_prefixes++] = optarg;
            break;
        case O_BDAYS:
            if (parse_uint("--broker-cert-days", optarg, 3650, &v) || v == 0) return EXIT_USAGE;
            po.cert_days = (uint32_t)v;
            break;
        case O_REVIEW:
            if (n_reviews == MAX_REVIEWS || !strchr(optarg, '=')) {
                fprintf(stderr, PROG ": --tokenreview: expected FP=HOST[:PORT] (at most %d)\n",
                        MAX_REVIEWS);
                return EXIT_USAGE;
            }
            reviews[n_reviews++] = optarg;
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
        case 'V':
            printf(PROG " %s (libcloudtaser %s)\n", CT_VERSION_STRING, ct_version());
            return EXIT_OK;
        case ':':
            fprintf(stderr, PROG ": option '%s' needs an argument\n"
                            "Try '" PROG " --help' for more information.\n", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            fprintf(stderr, PROG ": unknown option '%s'\n"
                            "Try '" PROG " --help' for more information.\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (beacon_flags_resolve(PROG, &bf) != 0 || agent_ops_resolve(PROG, &g_ops) != 0)
        return EXIT_USAGE;
    if ((po.n_extra_prefixes || po.cert_days || pod_policy) && !serve_pods) {
        fprintf(stderr, PROG ": --pods-extra-prefix, --broker-cert-days and --pod-policy need "
                        "--serve-pods\n");
        return EXIT_USAGE;
    }
    if (pod_policy && po.n_extra_prefixes) {
        fprintf(stderr, PROG ": --pods-extra-prefix applies to a Vault, not to --pod-policy\n");
        return EXIT_USAGE;
    }

    if (ct_process_harden(&err) != CT_OK)
        fprintf(stderr, PROG ": warning: %s\n", err.message);
    {
        /* SIGHUP is taken by sigwait on one thread (reload_main): blocked here,
         * before any thread starts, so every thread inherits the mask */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
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
        ct_review_jwks_sink_new(ctx, store, &sink, &err) != CT_OK ||
        ct_router_add(router, "k8s.jwks", ct_review_jwks_handle, sink, &err) != CT_OK ||

        ct_migrate_server_routes(migrate, router, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    /* Vault's JWT auth (configure-auth --jwt) kept current on issuer key rotation,
       with the bridge's own token: the Vault store's, or VAULT_* if VAULT_ADDR is set */
    if (sf.is_vault)
        jwt_vault = sf.vault;
    else if (getenv("VAULT_ADDR") && ct_vault_options_from_env(&jwt_vault, &err) != CT_OK)
        fprintf(stderr, PROG ": warning: VAULT_*: %s\n", err.message);
    if (jwt_vault.address && ct_review_jwks_sink_set_vault(sink, &jwt_vault, &err) != CT_OK)
        fprintf(stderr, PROG ": warning: Vault JWT auth updates: %s\n", err.message);
    if (serve_pods) {
        const char *va = getenv("VAULT_ADDR");
        embedded = pod_policy || (!sf.is_vault && !(va && *va));
    }
    if (embedded) {
        /* the embedded store answers the pods (podpolicy.h) */
        ct_embedded_vault_options eo = CT_EMBEDDED_VAULT_OPTIONS_INIT;
        ct_pod_policy *pp = NULL;
        if (pod_policy && ct_pod_policy_load(pod_policy, &pp, &err) != CT_OK) {
            fprintf(stderr, PROG ": --pod-policy: %s\n", err.message);
            goto out;
        }
        eo.store = store;
        po.store = store;
        if (ct_embedded_vault_new(ctx, &eo, &emb, &err) != CT_OK ||
            ct_vault_proxy_new(ctx, &po, &proxy, &err) != CT_OK) {
            ct_pod_policy_free(pp);
            fprintf(stderr, PROG ": --serve-pods: %s\n", err.message);
            goto out;
        }
        ct_embedded_vault_set_policy(emb, pp);
        if (pod_policy)
            fprintf(stderr, PROG ": pods are answered from the store under %s (%zu rules)\n",
                    pod_policy, ct_pod_policy_rule_count(pp));
        else
            fprintf(stderr, PROG ": pods are answered from the store, but there is no "
                            "--pod-policy: every pod's login is refused\n");
        if (ct_router_add(router, "vault.http", ct_embedded_vault_http, emb, &err) != CT_OK ||
            ct_router_add(router, "broker.cert", ct_vault_proxy_cert, proxy, &err) != CT_OK) {
            fprintf(stderr, PROG ": %s\n", err.message);
            goto out;
        }
        if (pod_policy) {
            rl.path = pod_policy;
            rl.ev = emb;
        }
    } else if (serve_pods) {
        /* the Vault of the store flags, or VAULT_* (pods' calls carry their own token) */
        if (sf.is_vault)
            pods_vault = sf.vault;
        else if (ct_vault_options_from_env(&pods_vault, &err) != CT_OK) {
            fprintf(stderr, PROG ": --serve-pods: %s\n", err.message);
            rc = EXIT_USAGE;
            goto out;
        }
        pods_vault.token = NULL;
        pods_vault.token_file = NULL;
        po.vault = &pods_vault;
        po.extra_prefixes = extra;
        po.store = store;
        if (ct_vault_proxy_new(ctx, &po, &proxy, &err) != CT_OK) {
            fprintf(stderr, PROG ": --serve-pods: %s\n", err.message);
            rc = err.code == CT_E_INVALID ? EXIT_USAGE : EXIT_FAIL;
            goto out;
        }
        if (ct_router_add(router, "vault.http", ct_vault_proxy_http, proxy, &err) != CT_OK ||
            ct_router_add(router, "broker.cert", ct_vault_proxy_cert, proxy, &err) != CT_OK) {
            fprintf(stderr, PROG ": %s\n", err.message);
            goto out;
        }
    }
    if (serve_pods) {
        /* vault.http no longer waits on Vault (it defers to the proxy's driver
         * thread), but the other ops do block; threads start on demand */
        static ct_session_options so = CT_SESSION_OPTIONS_INIT;
        so.handler_threads = 32;
        bo.session = &so;
    }
    g_ops.inner = ct_router_handle;
    g_ops.inner_arg = router;
    bo.handler = agent_ops_handler;
    bo.handler_arg = &g_ops;
    bo.on_event = on_event;
    bo.event_arg = &ev;
    if (pthread_create(&rl.thread, NULL, reload_main, &rl) != 0) {
        fprintf(stderr, PROG ": cannot start the SIGHUP thread\n");
        goto out;
    }
    rl.started = 1;
    if (ct_bridge_new(ctx, &bo, &b, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    for (i = 0; i < n_reviews; i++) {
        ct_review_options ro = CT_REVIEW_OPTIONS_INIT;
        char fp[128], host[128];
        uint16_t port;
        const char *eq = strchr(reviews[i], '=');
        snprintf(fp, sizeof fp, "%.*s", (int)(eq - reviews[i]), reviews[i]);
        if (ct_hostport_parse(eq + 1, 0, host, sizeof host, &port, &err) != CT_OK) {
            fprintf(stderr, PROG ": --tokenreview %s: %s\n", reviews[i], err.message);
            rc = EXIT_USAGE;
            goto out;
        }
        ro.store = store;
        ro.fingerprint = fp;
        ro.bridge = b;
        ro.host = host;
        ro.port = port;
        if (ct_review_server_start(ctx, &ro, &rs[i], &err) != CT_OK) {
            fprintf(stderr, PROG ": --tokenreview %.8s...: %s\n", fp, err.message);
            goto out;
        }
        printf("tokenreview %.8s %s\n", fp, ct_review_server_url(rs[i]));
        fflush(stdout);
    }
    g_ops.bridge = b;
    if ((c = agent_ops_start(PROG, &g_ops, ctx, ev.json, stdout)) != 0) {
        rc = c;
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
    if (rl.started) {
        rl.stop = 1;
        pthread_kill(rl.thread, SIGHUP);
        pthread_join(rl.thread, NULL);
    }
    agent_ops_stop(&g_ops);
    for (i = 0; i < n_reviews; i++)
        ct_review_server_free(rs[i]);
    ct_bridge_free(b);
    ct_router_free(router);
    ct_vault_proxy_free(proxy);
    ct_embedded_vault_free(emb);
    ct_review_jwks_sink_free(sink);
    ct_migrate_server_free(migrate);
    ct_store_free(store);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return rc;
}
