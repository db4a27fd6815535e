/*
 * main.c - cloudtaser-operator: runs the library's operator (ct_operator_*)
 * in the cluster. Thin: flags, signals, the event display, and an optional
 * request sent once the operational session is up. Without --fingerprint it
 * reads the fingerprint (and, without --jwks-file, the issuer keys) from the
 * Kubernetes API server (k8s.h). It serves the bridge's requests through a
 * ct_router: ping, and k8s.tokenreview (review.h) when it can reach the API
 * server (in a pod, or with --kubeconfig / --context).
 */
#include "../agent/agent_cli.h"
#include "../agent/agent_ops.h"

#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#define PROG "cloudtaser-operator"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --beacon HOST[:PORT] (--beacon-pin HEX | --beacon-ca FILE |\n"
"                            --beacon-system-ca) [--fingerprint UUID] [OPTION]...\n"
"\n"
"The cluster-side end of cloudtaser. Bootstraps itself through the beacon with\n"
"nothing but the beacon address and the cluster fingerprint (the kube-system\n"
"namespace UID), keeps its credentials in memory only, and keeps one mutual-TLS\n"
"session with the bridge up, reconnecting with backoff and jitter.\n"
"\n"
"Options:\n"
BEACON_FLAGS_HELP
"  --fingerprint UUID       the cluster fingerprint (kube-system namespace UID);\n"
"                           default: read from the Kubernetes API server (in a\n"
"                           pod: its service account; needs RBAC get on the\n"
"                           namespace kube-system)\n"
"  --kubeconfig FILE        reach the API server through this kubeconfig\n"
"                           (default: in-cluster, else $KUBECONFIG, else\n"
"                           ~/.kube/config)\n"
"  --context NAME           the kubeconfig context to use\n"
"  --token-file FILE        the operator's service-account token (projected,\n"
"                           audience " CT_BOOTSTRAP_DEFAULT_AUDIENCE "); re-read at every\n"
"                           bootstrap. Needed to re-bootstrap after a restart.\n"
"  --jwks-file FILE         the cluster's service-account issuer keys\n"
"                           (/openid/v1/jwks), pinned by the bridge at the first\n"
"                           bootstrap with --token-file. Without it, when the\n"
"                           fingerprint comes from the API server and a token\n"
"                           file is given, the keys are read from its\n"
"                           /openid/v1/jwks (a failure there is a warning)\n"
"  --jwks-from-api          read the issuer keys from the API server even with\n"
"                           --fingerprint (needs --token-file; a failure is\n"
"                           fatal)\n"
"  --operational-room HEX   optional: the cluster's operational room hash (64 hex\n"
"                           digits, printed by 'cloudtaser source register'); the\n"
"                           first bootstrap then verifies it talks to that\n"
"                           cluster's bridge\n"
"  --no-tokenreview         do not perform TokenReviews for the bridge (by default\n"
"                           they are served, with this operator's service account,\n"
"                           whenever the API server is reachable: in a pod or\n"
"                           with --kubeconfig/--context; needs RBAC create on\n"
"                           tokenreviews, e.g. ClusterRole system:auth-delegator)\n"
"  --jwks-interval SECONDS  how often to read the issuer keys (/openid/v1/jwks)\n"
"                           and push them to the bridge when they changed (a\n"
"                           rotation; default 300, 0: never). Needs the API\n"
"                           server, as the TokenReviews do\n"
"  --request JSON           once the session is up, send this request to the\n"
"                           bridge and print the answer (e.g. '{\"op\":\"ping\"}')\n"
"  --exit-after-request     exit after --request has been answered\n"
"  --timeout SECONDS        with --exit-after-request: give up after this long\n"
"                           (default: 60)\n"
"  --broker-listen ADDR:PORT serve the Vault API subset pods use (stock Vault\n"
"                           clients: VAULT_ADDR=https://<name>:PORT) over HTTPS\n"
"                           on this address (port 0: any free one), forwarding\n"
"                           each call through the session with the pod's own\n"
"                           token (default: off). The certificate is issued by\n"
"                           the cluster CA through the session once it is up;\n"
"                           its key stays in memory\n"
"  --broker-name NAME       a name in the broker certificate (repeatable, up to\n"
"                           8): an IP literal, localhost, or a service name\n"
"                           ending in .svc or .svc.cluster.local (default:\n"
"                           localhost and 127.0.0.1)\n"
"  --broker-ca-out FILE     once the broker serves, write the cluster CA\n"
"                           certificate (public; pods trust it, e.g. from a\n"
"                           ConfigMap) to FILE\n"
"  --broker-max-in-flight N calls served at once; beyond: 503 + Retry-After\n"
"                           (default: 256)\n"
"  --migrate apply|restore  one-shot: once the session is up, migrate the\n"
"                           Kubernetes Secrets in scope into the vault through\n"
"                           the bridge (apply), or recreate them from the vault\n"
"                           copies (restore), then exit. Progress (counts, rate)\n"
"                           on stderr; the report on stdout (JSON with -o json).\n"
"                           Exit status 0 when every Secret was handled, 1 when\n"
"                           one failed or was kept (changed meanwhile: re-run)\n"
"  --namespace NS           --migrate: a namespace in scope (repeatable; default:\n"
"                           the kubeconfig's or the pod's namespace)\n"
"  --selector SEL           --migrate apply: a label selector\n"
OPS_FLAGS_HELP
"  -o, --output json        events as one JSON object per line\n"
"  -v, --verbose            also log library notices to stderr\n"
"  -h, --help               this help\n"
"  -V, --version            the version\n"
"\n"
"Output: one line per event on stdout (waiting, bootstrap_issued,\n"
"bootstrap_refused, session_up, session_down, error, broker_serving), then\n"
"\"answer JSON\" for --request. Never prints keys, tokens or the full fingerprint.\n"
"With --metrics: /healthz is 200 until shutdown begins, /readyz 200 while the\n"
"operational session with the bridge is up; \"metrics ADDR:PORT\" is printed\n"
"once it listens.\n"
"Signals: SIGTERM/SIGINT close the session cleanly (GOAWAY) and exit.\n"
"Exit status: 0 after a signal or an answered --exit-after-request, 1 on a\n"
"fatal error or a failed request, 2 on a bad command line.\n");
}

#define MAX_NS 64

/* the operations endpoint (--metrics) */
static agent_ops g_ops = { .prefix = "cloudtaser_operator" };

typedef struct app {
    int json;
    const char *migrate; /* "apply", "restore" or NULL */
    const char *ns[MAX_NS];
    size_t n_ns;
    const char *selector;
    ct_k8s_options *ko;
    ct_ctx *ctx;
    double last_progress;
    ct_operator *op;
    const char *request;
    int exit_after;
    int timeout_s;
    int result; /* exit status of the request */
    /* the broker */
    ct_broker *broker;
    const char *broker_ca_out;
    volatile int stopping;
} app;

/* Writes the public CA certificate (tmp file + rename, mode 0644). */
static int write_ca(const char *path, const char *pem)
{
    char tmp[4096];
    FILE *f;
    int ok;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    if (!(f = fopen(tmp, "w")))
        return -1;
    ok = fputs(pem, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || chmod(tmp, 0644) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Starts the broker once the session is up (retrying), then publishes the CA. */
static void *broker_thread(void *arg)
{
    app *a = arg;
    ct_error err;
    char *pem = NULL;
    int warned = 0;

    while (!a->stopping) {
        ct_err rc = ct_broker_start(a->broker, 5000, &err);
        if (rc == CT_OK)
            break;
        if (rc == CT_E_IO || rc == CT_E_CERT || rc == CT_E_INVALID || rc == CT_E_UNSUPPORTED ||
            rc == CT_E_STATE) {
            fprintf(stderr, PROG ": broker: %s (%s)\n", err.message, ct_err_name(rc));
            if (rc != CT_E_UNSUPPORTED && rc != CT_E_INVALID)
                goto out;
        } else if (!warned++ && rc != CT_E_TIMEOUT && rc != CT_E_CLOSED) {
            fprintf(stderr, PROG ": broker: waiting for the certificate: %s\n", err.message);
        }
        if (!a->stopping)
            sleep(1);
    }
    if (a->stopping)
        goto out;
    if (a->broker_ca_out) {
        if (ct_broker_ca_pem(a->broker, &pem, &err) != CT_OK ||
            write_ca(a->broker_ca_out, pem) != 0)
            fprintf(stderr, PROG ": broker: cannot write the CA certificate to %s\n",
                    a->broker_ca_out);
        ct_free(pem);
    }
    atomic_store(&g_ops.broker_serving, 1);
    if (a->json)
        printf("{\"event\":\"broker_serving\",\"port\":%u}\n", (unsigned)ct_broker_port(a->broker));
    else
        printf("broker_serving port %u\n", (unsigned)ct_broker_port(a->broker));
    fflush(stdout);
out:
    ct_thread_cleanup();
    return NULL;
}

static void on_event(void *arg, const ct_agent_event *ev)
{
    app *a = arg;
    agent_ops_event(&g_ops, ev);
    /* with --migrate, stdout carries the report only */
    print_event(a->migrate ? stderr : stdout, a->json, ev);
}

static void stop_operator(void *arg)
{
    agent_ops_stopping(&g_ops);
    ct_operator_stop(arg);
}

/* Pushes the issuer keys to the bridge when they change (a rotation). */
typedef struct jwks_sync {
    ct_review_agent *agent;
    ct_operator *op;
    int interval_s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
} jwks_sync;

static void *jwks_thread(void *arg)
{
    jwks_sync *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stop) {
        struct timespec ts;
        ct_error err;
        int pushed = 0;
        ct_err rc;
        pthread_mutex_unlock(&j->mu);
        rc = ct_review_agent_sync_jwks(j->agent, j->op, 30000, &pushed, &err);
        pthread_mutex_lock(&j->mu);
        if (j->stop) /* shutting down: the session went away under the request */
            break;
        pthread_mutex_unlock(&j->mu);
        if (rc != CT_OK && rc != CT_E_CLOSED) /* a dropped session: next interval */
            fprintf(stderr, PROG ": warning: issuer keys not pushed: %s (%s)\n", err.message,
                    ct_err_name(rc));
        else if (pushed)
            fprintf(stderr, PROG ": issuer keys pushed to the bridge\n");
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += j->interval_s;
        pthread_mutex_lock(&j->mu);
        while (!j->stop && pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&j->mu);
    ct_thread_cleanup();
    return NULL;
}

static void *request_thread(void *arg)
{
    app *a = arg;
    uint8_t *resp = NULL;
    size_t len = 0;
    ct_error err;
    ct_err rc;

    rc = ct_operator_request(a->op, a->request, strlen(a->request), a->timeout_s * 1000, &resp,
                             &len, &err);
    if (rc == CT_OK) {
        printf("%s%.*s\n", a->json ? "" : "answer ", (int)len, resp ? (const char *)resp : "");
        fflush(stdout);
        a->result = EXIT_OK;
    } else {
        fprintf(stderr, PROG ": request failed: %s (%s)\n", err.message, ct_err_name(rc));
        a->result = EXIT_FAIL;
    }
    ct_free(resp);
    if (a->exit_after)
        ct_operator_stop(a->op);
    ct_thread_cleanup();
    return NULL;
}

static ct_err migrate_request(void *arg, const void *req, size_t len, uint8_t **resp,
                              size_t *resp_len, ct_error *err)
{
    app *a = arg;
    return ct_operator_request(a->op, req, len, a->timeout_s * 1000, resp, resp_len, err);
}

static void migrate_progress(void *arg, const ct_migrate_progress *p)
{
    app *a = arg;
    if (p->done != p->total && p->elapsed_s - a->last_progress < 0.5)
        return;
    a->last_progress = p->elapsed_s;
    fprintf(stderr, PROG ": %zu/%zu: %zu migrated, %zu restored, %zu skipped, %zu kept, "
            "%zu exist, %zu failed; %.0f Secrets/s\n", p->done, p->total, p->migrated,
            p->restored, p->skipped, p->kept, p->exists, p->failed, p->rate);
}

/* --migrate: plan + apply, or restore, over the operator's session. */
static void *migrate_thread(void *arg)
{
    app *a = arg;
    ct_k8s_client *kc = NULL;
    ct_migrate_plan *plan = NULL;
    ct_migrate_report *rep = NULL;
    ct_migrate_scope sc = CT_MIGRATE_SCOPE_INIT;
    ct_migrate_run_options ro = CT_MIGRATE_RUN_OPTIONS_INIT;
    ct_migrate_progress t;
    ct_error err;
    ct_err rc;
    char *json = NULL;
    size_t i;

    a->result = EXIT_FAIL;
    sc.namespaces = a->ns;
    sc.n_namespaces = a->n_ns;
    sc.label_selector = a->selector;
    ro.request = migrate_request;
    ro.request_arg = a;
    ro.progress = migrate_progress;
    ro.progress_arg = a;
    ro.namespaces = a->ns;
    ro.n_namespaces = a->n_ns;
    rc = ct_k8s_client_new(a->ctx, a->ko, &kc, &err);
    if (rc == CT_OK && strcmp(a->migrate, "apply") == 0) {
        rc = ct_migrate_plan_new(kc, &sc, &plan, &err);
        if (rc == CT_OK) {
            fprintf(stderr, PROG ": migrate: %zu Secrets in scope, %zu to migrate\n",
                    ct_migrate_plan_count(plan), ct_migrate_plan_to_migrate(plan));
            rc = ct_migrate_apply(kc, plan, &ro, &rep, &err);
        }
    } else if (rc == CT_OK) {
        rc = ct_migrate_restore(kc, &ro, &rep, &err);
    }
    if (rc != CT_OK)
        fprintf(stderr, PROG ": migrate %s: %s (%s)\n", a->migrate, err.message,
                ct_err_name(rc));
    if (rep) {
        ct_migrate_report_totals(rep, &t);
        if (a->json && ct_migrate_report_json(rep, &json, &err) == CT_OK) {
            printf("%s\n", json);
            ct_free(json);
        } else {
            for (i = 0; i < ct_migrate_report_count(rep); i++)
                printf("%-9s %s/%s%s%s\n", ct_migrate_outcome_name(ct_migrate_report_outcome(rep, i)),
                       ct_migrate_report_namespace(rep, i), ct_migrate_report_name(rep, i),
                       *ct_migrate_report_message(rep, i) ? ": " : "",
                       ct_migrate_report_message(rep, i));
            printf("total %zu: migrated %zu, restored %zu, skipped %zu, kept %zu, exist %zu, "
                   "failed %zu in %.2f s (%.0f Secrets/s)\n", t.total, t.migrated, t.restored,
                   t.skipped, t.kept, t.exists, t.failed, t.elapsed_s, t.rate);
        }
        fflush(stdout);
        if (rc == CT_OK && t.failed == 0 && t.kept == 0)
            a->result = EXIT_OK;
    }
    ct_migrate_report_free(rep);
    ct_migrate_plan_free(plan);
    ct_k8s_client_free(kc);
    ct_operator_stop(a->op);
    ct_thread_cleanup();
    return NULL;
}

int main(int argc, char **argv)
{
    enum { O_BEACON = 256, O_PIN, O_CA, O_SYSCA, O_NAME, O_FP, O_TOKEN, O_JWKS, O_REQ, O_EXIT, O_ROOM,
           O_TIMEOUT, O_KUBECONFIG, O_CONTEXT, O_JWKS_API, O_BLISTEN, O_BNAME, O_BCA,
           O_BMAX, O_NO_REVIEW, O_JWKS_IVL, O_MIGRATE, O_NS, O_SEL, O_METRICS,
           O_METRICS_REMOTE };
    static const struct option lo[] = {
        { "beacon", required_argument, 0, O_BEACON },
        { "beacon-pin", required_argument, 0, O_PIN },
        { "beacon-ca", required_argument, 0, O_CA },
        { "beacon-system-ca", no_argument, 0, O_SYSCA },
        { "beacon-name", required_argument, 0, O_NAME },
        { "fingerprint", required_argument, 0, O_FP },
        { "token-file", required_argument, 0, O_TOKEN },
        { "jwks-file", required_argument, 0, O_JWKS },
        { "jwks-from-api", no_argument, 0, O_JWKS_API },
        { "kubeconfig", required_argument, 0, O_KUBECONFIG },
        { "context", required_argument, 0, O_CONTEXT },
        { "no-tokenreview", no_argument, 0, O_NO_REVIEW },
        { "jwks-interval", required_argument, 0, O_JWKS_IVL },
        { "request", required_argument, 0, O_REQ },
        { "operational-room", required_argument, 0, O_ROOM },
        { "exit-after-request", no_argument, 0, O_EXIT },
        { "timeout", required_argument, 0, O_TIMEOUT },
        { "broker-listen", required_argument, 0, O_BLISTEN },
        { "broker-name", required_argument, 0, O_BNAME },
        { "broker-ca-out", required_argument, 0, O_BCA },
        { "broker-max-in-flight", required_argument, 0, O_BMAX },
        { "migrate", required_argument, 0, O_MIGRATE },
        { "namespace", required_argument, 0, O_NS },
        { "selector", required_argument, 0, O_SEL },
        { "metrics", required_argument, 0, O_METRICS },
        { "metrics-allow-remote", no_argument, 0, O_METRICS_REMOTE },
        { "output", required_argument, 0, 'o' },
        { "verbose", no_argument, 0, 'v' },
        { "help", no_argument, 0, 'h' },
        { "version", no_argument, 0, 'V' },
        { 0, 0, 0, 0 },
    };
    beacon_flags bf;
    ct_operator_options oo = CT_OPERATOR_OPTIONS_INIT;
    ct_ctx_options co = CT_CTX_OPTIONS_INIT;
    const char *fp = NULL, *jwks_file = NULL;
    char *jwks = NULL, api_fp[CT_FINGERPRINT_LEN + 1];
    ct_k8s_options ko = CT_K8S_OPTIONS_INIT;
    int jwks_from_api = 0, jwks_is_api = 0, no_review = 0;
    ct_k8s_client *kc = NULL;
    ct_review_agent *agent = NULL;
    ct_router *router = NULL;
    size_t jwks_len = 0;
    uint8_t room[32];
    ct_ctx *ctx = NULL;
    ct_error err;
    app a = { .timeout_s = 60, .result = EXIT_OK };
    pthread_t rq, bt, jt;
    int c, verbose = 0, rc = EXIT_FAIL, rq_started = 0, bt_started = 0;
    jwks_sync sync = { .interval_s = 300 };
    int jt_started = 0;
    ct_broker_options bro = CT_BROKER_OPTIONS_INIT;
    const char *broker_listen = NULL, *bnames[CT_BROKER_MAX_NAMES];
    char bhost[64];
    uint16_t bport = 0;

    memset(&bf, 0, sizeof bf);
    opterr = 0; /* our own messages, named PROG, not argv[0] */
    while ((c = getopt_long(argc, argv, ":o:vhV", lo, NULL)) != -1) {
        switch (c) {
        case O_BEACON: bf.address = optarg; break;
        case O_PIN: bf.pin_hex = optarg; break;
        case O_CA: bf.ca_file = optarg; break;
        case O_SYSCA: bf.system_ca = 1; break;
        case O_NAME: bf.name = optarg; break;
        case O_FP: fp = optarg; break;
        case O_TOKEN: oo.token_file = optarg; break;
        case O_JWKS: jwks_file = optarg; break;
        case O_JWKS_API: jwks_from_api = 1; break;
        case O_KUBECONFIG: ko.kubeconfig = optarg; break;
        case O_CONTEXT: ko.context = optarg; break;
        case O_NO_REVIEW: no_review = 1; break;
        case O_JWKS_IVL: {
            char *end;
            long t = strtol(optarg, &end, 10);
            if (!*optarg || *end || t < 0 || t > 86400) {
                fprintf(stderr, PROG ": --jwks-interval: expected 0 to 86400 seconds\n");
                return EXIT_USAGE;
            }
            sync.interval_s = (int)t;
            break;
        }
        case O_REQ: a.request = optarg; break;
        case O_MIGRATE:
            if (strcmp(optarg, "apply") != 0 && strcmp(optarg, "restore") != 0) {
                fprintf(stderr, PROG ": --migrate: expected apply or restore\n");
                return EXIT_USAGE;
            }
            a.migrate = optarg;
            break;
        case O_NS:
            if (a.n_ns == MAX_NS) {
                fprintf(stderr, PROG ": --namespace: at most %d\n", MAX_NS);
                return EXIT_USAGE;
            }
            a.ns[a.n_ns++] = optarg;
            break;
        case O_SEL: a.selector = optarg; break;
        case O_METRICS: g_ops.spec = optarg; break;
        case O_METRICS_REMOTE: g_ops.allow_remote = 1; break;
        case O_ROOM:
            if (ct_unhex(optarg, room, sizeof room, &err) != CT_OK) {
                fprintf(stderr, PROG ": --operational-room: %s\n", err.message);
                return EXIT_USAGE;
            }
            oo.expect_operational_room = room;
            break;
        case O_EXIT: a.exit_after = 1; break;
        case O_BLISTEN: broker_listen = optarg; break;
        case O_BNAME:
            if (bro.n_names >= CT_BROKER_MAX_NAMES) {
                fprintf(stderr, PROG ": at most %d --broker-name\n", CT_BROKER_MAX_NAMES);
                return EXIT_USAGE;
            }
            bnames[bro.n_names++] = optarg;
            break;
        case O_BCA: a.broker_ca_out = optarg; break;
        case O_BMAX: {
            char *end;
            long t = strtol(optarg, &end, 10);
            if (!*optarg || *end || t < 1 || t > 100000) {
                fprintf(stderr, PROG ": --broker-max-in-flight: expected 1 to 100000\n");
                return EXIT_USAGE;
            }
            bro.max_in_flight = (uint32_t)t;
            break;
        }
        case O_TIMEOUT: {
            char *end;
            long t = strtol(optarg, &end, 10);
            if (!*optarg || *end || t < 1 || t > 86400) {
                fprintf(stderr, PROG ": --timeout: expected 1 to 86400 seconds\n");
                return EXIT_USAGE;
            }
            a.timeout_s = (int)t;
            break;
        }
        case 'o':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                fprintf(stderr, PROG ": -o: expected json or text\n");
                return EXIT_USAGE;
            }
            a.json = strcmp(optarg, "json") == 0;
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
    if (jwks_file && jwks_from_api) {
        fprintf(stderr, PROG ": --jwks-file and --jwks-from-api exclude each other\n");
        return EXIT_USAGE;
    }
    if (jwks_from_api && !oo.token_file) {
        fprintf(stderr, PROG ": --jwks-from-api needs --token-file (the keys are sent with the "
                        "token)\n");
        return EXIT_USAGE;
    }
    if (fp) {
        char canon[CT_FINGERPRINT_LEN + 1];
        if (ct_fingerprint_canonical(fp, canon, &err) != CT_OK) {
            fprintf(stderr, PROG ": --fingerprint: %s\n", err.message);
            return EXIT_USAGE;
        }
    }
    if (a.migrate && a.request) {
        fprintf(stderr, PROG ": --migrate and --request exclude each other\n");
        return EXIT_USAGE;
    }
    if (!a.migrate && (a.n_ns || a.selector)) {
        fprintf(stderr, PROG ": --namespace and --selector need --migrate\n");
        return EXIT_USAGE;
    }
    if (a.exit_after && !a.request) {
        fprintf(stderr, PROG ": --exit-after-request needs --request\n");
        return EXIT_USAGE;
    }
    if (beacon_flags_resolve(PROG, &bf) != 0 || agent_ops_resolve(PROG, &g_ops) != 0)
        return EXIT_USAGE;
    if ((bro.n_names || a.broker_ca_out || bro.max_in_flight) && !broker_listen) {
        fprintf(stderr, PROG ": --broker-* flags need --broker-listen\n");
        return EXIT_USAGE;
    }
    if (broker_listen) {
        /* ADDR:PORT; ADDR:0 asks for any free port */
        char spec[128];
        size_t n = strlen(broker_listen);
        int any = n > 2 && strcmp(broker_listen + n - 2, ":0") == 0;
        snprintf(spec, sizeof spec, "%.*s", (int)(any ? n - 2 : n), broker_listen);
        if (ct_hostport_parse(spec, 0, bhost, sizeof bhost, &bport, &err) != CT_OK) {
            fprintf(stderr, PROG ": --broker-listen: %s\n", err.message);
            return EXIT_USAGE;
        }
        if (bport == 0 && !any) {
            fprintf(stderr, PROG ": --broker-listen: expected ADDR:PORT (port 0: any free "
                            "port)\n");
            return EXIT_USAGE;
        }
    }
    if (jwks_file) {
        /* public keys: read with the bounded reader, then kept as a string */
        ct_secret *text = NULL;
        if (ct_secret_read_file(jwks_file, CT_JWKS_MAX_LEN, "issuer key file", 0, &text,
                                &err) != CT_OK) {
            fprintf(stderr, PROG ": --jwks-file: %s\n", err.message);
            return EXIT_USAGE;
        }
        jwks_len = ct_secret_len(text);
        jwks = strdup((const char *)ct_secret_data(text));
        ct_secret_free(text);
        if (!jwks) {
            fprintf(stderr, PROG ": out of memory\n");
            return EXIT_FAIL;
        }
    }

    if (ct_process_harden(&err) != CT_OK)
        fprintf(stderr, PROG ": warning: %s\n", err.message);
    co.log = stderr_logger;
    co.log_user = (void *)PROG;
    co.log_level = verbose ? CT_LOG_INFO : CT_LOG_WARNING;
    if (ct_ctx_new(&co, &ctx, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    if (!fp || jwks_from_api) {
        /* the Kubernetes API server: the fingerprint, and the issuer keys */
        int fatal = 1;
        if (ct_k8s_client_new(ctx, &ko, &kc, &err) != CT_OK ||
            (!fp && ct_fingerprint(ctx, kc, api_fp, &err) != CT_OK)) {
            fprintf(stderr, PROG ": cannot read the cluster fingerprint from the Kubernetes API "
                            "(or pass --fingerprint): %s\n", err.message);
            goto out;
        }
        if (!fp) {
            fp = api_fp;
            fatal = jwks_from_api;
            fprintf(stderr, PROG ": fingerprint %.8s... read from %s\n", fp,
                    ct_k8s_client_server(kc));
        }
        /* the keys travel with the token only: without one they are not needed */
        if (jwks_file || !oo.token_file) {
            /* nothing to read */
        } else if (ct_k8s_get_jwks(kc, &jwks, &jwks_len, &err) == CT_OK) {
            jwks_is_api = 1;
        } else {
            fprintf(stderr, PROG ": %s: cannot read the issuer keys from the Kubernetes API: %s\n",
                    fatal ? "error" : "warning", err.message);
            if (fatal)
                goto out;
        }
    }
    /* TokenReviews for the bridge (Vault's Kubernetes auth through the tunnel) */
    if (!no_review && !kc && (ko.kubeconfig || ko.context || getenv("KUBERNETES_SERVICE_HOST")) &&
        ct_k8s_client_new(ctx, &ko, &kc, &err) != CT_OK) {
        fprintf(stderr, PROG ": warning: no TokenReviews for the bridge: %s\n", err.message);
        kc = NULL;
    }
    if (ct_router_new(&router, &err) != CT_OK ||
        ct_router_add(router, "ping", ct_router_ping, NULL, &err) != CT_OK ||
        (!no_review && kc &&
         (ct_review_agent_new(ctx, kc, &agent, &err) != CT_OK ||
          ct_router_add(router, "k8s.tokenreview", ct_review_agent_handle, agent, &err) !=
              CT_OK))) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    g_ops.inner = ct_router_handle;
    g_ops.inner_arg = router;
    oo.handler = agent_ops_handler;
    oo.handler_arg = &g_ops;
    oo.fingerprint = fp;
    oo.beacon = &bf.opts;
    oo.jwks = jwks;
    oo.jwks_len = jwks_len;
    oo.on_event = on_event;
    oo.event_arg = &a;
    if (ct_operator_new(ctx, &oo, &a.op, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    g_ops.op = a.op;
    if ((c = agent_ops_start(PROG, &g_ops, ctx, a.json, a.migrate ? stderr : stdout)) != 0) {
        rc = c;
        goto out;
    }
    install_stop_signals(stop_operator, a.op);
    if (broker_listen) {
        bro.op = a.op;
        bro.host = bhost;
        bro.port = bport;
        bro.names = bnames;
        if (ct_broker_new(ctx, &bro, &a.broker, &err) != CT_OK) {
            fprintf(stderr, PROG ": broker: %s\n", err.message);
            goto out;
        }
        if (pthread_create(&bt, NULL, broker_thread, &a) != 0) {
            fprintf(stderr, PROG ": cannot start the broker thread\n");
            goto out;
        }
        bt_started = 1;
    }
    if (agent && sync.interval_s > 0) {
        sync.agent = agent;
        sync.op = a.op;
        pthread_mutex_init(&sync.mu, NULL);
        pthread_cond_init(&sync.cv, NULL);
        if (pthread_create(&jt, NULL, jwks_thread, &sync) != 0) {
            fprintf(stderr, PROG ": cannot start the issuer key thread\n");
            goto out;
        }
        jt_started = 1;
    }
    a.ko = &ko;
    a.ctx = ctx;
    if (a.request || a.migrate) {
        if (pthread_create(&rq, NULL, a.migrate ? migrate_thread : request_thread, &a) != 0) {
            fprintf(stderr, PROG ": cannot start the request thread\n");
            goto out;
        }
        rq_started = 1;
    }
    if (ct_operator_run(a.op, &err) != CT_OK) {
        fprintf(stderr, PROG ": %s\n", err.message);
        goto out;
    }
    rc = EXIT_OK;
out:
    a.stopping = 1;
    agent_ops_stop(&g_ops);
    if (bt_started) {
        ct_operator_stop(a.op);
        pthread_join(bt, NULL);
    }
    ct_broker_free(a.broker); /* stops serving first */
    if (jt_started) {
        ct_operator_stop(a.op);
        pthread_mutex_lock(&sync.mu);
        sync.stop = 1;
        pthread_cond_broadcast(&sync.cv);
        pthread_mutex_unlock(&sync.mu);
        pthread_join(jt, NULL);
        pthread_mutex_destroy(&sync.mu);
        pthread_cond_destroy(&sync.cv);
    }
    if (rq_started) {
        ct_operator_stop(a.op);
        pthread_join(rq, NULL);
        if (rc == EXIT_OK)
            rc = a.result;
    }
    install_stop_signals(NULL, NULL);
    ct_operator_free(a.op);
    ct_router_free(router);
    ct_review_agent_free(agent);
    ct_k8s_client_free(kc);
    ct_ctx_free(ctx);
    if (jwks_is_api)
        ct_free(jwks);
    else
        free(jwks);
    ct_thread_cleanup();
    return rc;
}
