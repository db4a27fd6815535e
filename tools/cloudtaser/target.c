/*
 * target.c - cloudtaser target ...: the cluster side of the self-bootstrap's
 * first step.
 *
 *   cloudtaser target fingerprint [--kubeconfig FILE] [--context NAME] [-o json]
 *   cloudtaser target migrate plan|apply|restore ... (apply and restore run
 *     cloudtaser-operator --migrate, which holds the operational session)
 *
 * Reads the cluster fingerprint (the kube-system namespace UID) from the
 * Kubernetes API server with ct_fingerprint (k8s.h) and prints it with the
 * command that registers the cluster on the secret-store side. All logic is
 * in the library.
 */
#include "target.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "cloudtaser"

enum { T_OK = 0, T_FAIL = 1, T_USAGE = 2 };

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " target fingerprint [--kubeconfig FILE] [--context NAME] [-o json]\n"
"\n"
"Prints this cluster's fingerprint: the UID of its kube-system namespace, read\n"
"from the Kubernetes API server (unique per cluster, stable across restarts).\n"
"It is the only value the secret-store side needs to register the cluster.\n"
"\n"
"Finding the API server, as kubectl does:\n"
"  --kubeconfig FILE, else the files in $KUBECONFIG (merged as kubectl merges\n"
"  them), else ~/.kube/config, using the current context (or --context);\n"
"  inside a pod with no kubeconfig given, the pod's service account\n"
"  (KUBERNETES_SERVICE_HOST/_PORT and\n"
"  " CT_K8S_SA_DIR ").\n"
"  Credentials: a token, a token file or a client certificate; exec and\n"
"  auth-provider plugins are not supported.\n"
"  Needs RBAC permission to get the namespace kube-system.\n"
"\n"
"Options:\n"
"  --kubeconfig FILE          the kubeconfig to read\n"
"  --context NAME             the kubeconfig context to use\n"
"  --in-cluster               use the pod's service account even if a\n"
"                             kubeconfig exists\n"
"  --service-account-dir DIR  in-cluster, reading token, ca.crt and namespace\n"
"                             from DIR (default " CT_K8S_SA_DIR ")\n"
"  -o, --output FORMAT        text (default) or json\n"
"  -h, --help                 show this text and exit\n"
"\n"
"Exit status: 0 success, 1 the API server could not be read (the message says\n"
"why: credentials rejected, no permission, unreachable, ...), 2 bad command line.\n");
}

static int bad(const char *msg, const char *arg)
{
    fprintf(stderr, PROG ": target fingerprint: %s%s%s\nTry '" PROG
                    " target fingerprint --help' for more information.\n",
            msg, arg ? " " : "", arg ? arg : "");
    return T_USAGE;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int fingerprint(int argc, char **argv)
{
    enum { O_KUBECONFIG = 256, O_CONTEXT, O_INCLUSTER, O_SADIR };
    static const struct option lo[] = {
        { "kubeconfig", required_argument, NULL, O_KUBECONFIG },
        { "context", required_argument, NULL, O_CONTEXT },
        { "in-cluster", no_argument, NULL, O_INCLUSTER },
        { "service-account-dir", required_argument, NULL, O_SADIR },
        { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ct_k8s_options ko = CT_K8S_OPTIONS_INIT;
    char fp[CT_FINGERPRINT_LEN + 1];
    ct_k8s_client *client = NULL;
    ct_ctx *ctx = NULL;
    ct_error err;
    int c, json = 0, rc = T_FAIL;

    optind = 3;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", lo, NULL)) != -1) {
        switch (c) {
        case O_KUBECONFIG:
            ko.kubeconfig = optarg;
            break;
        case O_CONTEXT:
            ko.context = optarg;
            break;
        case O_INCLUSTER:
            ko.source = CT_K8S_IN_CLUSTER;
            break;
        case O_SADIR:
            ko.sa_dir = optarg;
            break;
        case 'o':
            if (strcmp(optarg, "json") == 0)
                json = 1;
            else if (strcmp(optarg, "text") == 0)
                json = 0;
            else
                return bad("-o: expected text or json, not", optarg);
            break;
        case 'h':
            usage(stdout);
            return T_OK;
        case ':':
            return bad("option needs an argument:", argv[optind - 1]);
        default:
            return bad("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad("unexpected argument", argv[optind]);
    if (ko.sa_dir)
        ko.source = CT_K8S_IN_CLUSTER; /* implies --in-cluster */
    if (ko.source == CT_K8S_IN_CLUSTER && (ko.kubeconfig || ko.context))
        return bad("--in-cluster and --service-account-dir exclude --kubeconfig and --context",
                   NULL);

    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK ||
        ct_k8s_client_new(ctx, &ko, &client, &err) != CT_OK ||
        ct_fingerprint(ctx, client, fp, &err) != CT_OK) {
        fprintf(stderr, PROG ": target fingerprint: %s\n",
                err.message[0] ? err.message : ct_strerror(err.code));
        goto out;
    }
    if (json) {
        printf("{\"fingerprint\":\"%s\",\"cluster_id\":\"%s\",\"source\":\"%s\",\"server\":", fp,
               fp, ct_k8s_client_source(client) == CT_K8S_IN_CLUSTER ? "in-cluster"
                                                                     : "kubeconfig");
        json_str(ct_k8s_client_server(client));
        fputs(",\"context\":", stdout);
        json_str(ct_k8s_client_context(client));
        printf(",\"register_command\":\"cloudtaser source register --fingerprint %s\"}\n", fp);
    } else {
        printf("CloudTaser Cluster Fingerprint\n"
               "\n"
               "  Cluster ID: %s\n"
               "\n"
               "Register this cluster on your secret store:\n"
               "  cloudtaser source register --fingerprint %s\n",
               fp, fp);
    }
    rc = fflush(stdout) == 0 ? T_OK : T_FAIL;
out:
    ct_k8s_client_free(client);
    ct_ctx_free(ctx);
    return rc;
}

static void migrate_usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " target migrate plan [--namespace NS]... [--selector SEL]\n"
"                                  [--kubeconfig FILE] [--context NAME] [-o json]\n"
"       " PROG " target migrate apply|restore OPERATOR-OPTION...\n"
"\n"
"Moves existing Kubernetes Secrets into the vault, with no vault token here.\n"
"\n"
"  plan     lists the Secrets in scope and what will happen to each. Skipped,\n"
"           and why: service-account tokens, Helm release records, bootstrap\n"
"           tokens, Secrets owned by another object, names over 128 characters.\n"
"           Reads the cluster only (RBAC list secrets).\n"
"  apply    copies each Secret to the vault through the bridge (which writes it\n"
"           with its own credentials below this cluster's prefix), reads it\n"
"           back and compares, and only then deletes it from Kubernetes with\n"
"           preconditions (uid + resourceVersion): a Secret changed meanwhile is\n"
"           kept. Re-running resumes and is idempotent.\n"
"  restore  recreates the Secrets from the vault copies.\n"
"\n"
"apply and restore need the operational session, so they run in the operator:\n"
"this command runs 'cloudtaser-operator --migrate apply|restore' (from the\n"
"directory of this program, else $PATH) with the options given, e.g.\n"
"  " PROG " target migrate apply --beacon HOST --beacon-ca CA.pem \\\n"
"      --fingerprint UUID --token-file TOKEN [--namespace NS]... [--selector SEL]\n"
"See 'cloudtaser-operator --help'.\n"
"\n"
"Exit status: 0 success, 1 failure (or a Secret kept), 2 bad command line.\n");
}

static int migrate_plan(int argc, char **argv)
{
    enum { O_KUBECONFIG = 256, O_CONTEXT, O_NS, O_SEL };
    static const struct option lo[] = {
        { "kubeconfig", required_argument, NULL, O_KUBECONFIG },
        { "context", required_argument, NULL, O_CONTEXT },
        { "namespace", required_argument, NULL, O_NS },
        { "selector", required_argument, NULL, O_SEL },
        { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ct_k8s_options ko = CT_K8S_OPTIONS_INIT;
    ct_migrate_scope sc = CT_MIGRATE_SCOPE_INIT;
    const char *ns[64];
    ct_k8s_client *client = NULL;
    ct_migrate_plan *plan = NULL;
    ct_ctx *ctx = NULL;
    ct_error err;
    size_t nn = 0, i;
    int c, json = 0, rc = T_FAIL;

    optind = 4;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", lo, NULL)) != -1) {
        switch (c) {
        case O_KUBECONFIG: ko.kubeconfig = optarg; break;
        case O_CONTEXT: ko.context = optarg; break;
        case O_NS:
            if (nn == sizeof ns / sizeof ns[0])
                return bad("too many --namespace", NULL);
            ns[nn++] = optarg;
            break;
        case O_SEL: sc.label_selector = optarg; break;
        case 'o':
            if (strcmp(optarg, "json") == 0)
                json = 1;
            else if (strcmp(optarg, "text") == 0)
                json = 0;
            else
                return bad("-o: expected text or json, not", optarg);
            break;
        case 'h': migrate_usage(stdout); return T_OK;
        case ':': return bad("option needs an argument:", argv[optind - 1]);
        default: return bad("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad("unexpected argument", argv[optind]);
    sc.namespaces = ns;
    sc.n_namespaces = nn;
    if (ct_ctx_new(NULL, &ctx, &err) != CT_OK ||
        ct_k8s_client_new(ctx, &ko, &client, &err) != CT_OK ||
        ct_migrate_plan_new(client, &sc, &plan, &err) != CT_OK) {
        fprintf(stderr, PROG ": target migrate plan: %s\n",
                err.message[0] ? err.message : ct_strerror(err.code));
        goto out;
    }
    if (json) {
        char *j = NULL;
        if (ct_migrate_plan_json(plan, &j, &err) != CT_OK) {
            fprintf(stderr, PROG ": target migrate plan: %s\n", err.message);
            goto out;
        }
        printf("%s\n", j);
        ct_free(j);
    } else {
        for (i = 0; i < ct_migrate_plan_count(plan); i++) {
            const ct_k8s_secret *s = ct_migrate_plan_secret(plan, i);
            ct_migrate_reason r = ct_migrate_plan_reason(plan, i);
            printf("%-8s %s/%s (%s)%s%s\n", r == CT_MIGRATE_GO ? "migrate" : "skip",
                   ct_k8s_secret_namespace(s), ct_k8s_secret_name(s), ct_k8s_secret_type(s),
                   r == CT_MIGRATE_GO ? "" : ": ", r == CT_MIGRATE_GO ? "" : ct_migrate_reason_text(r));
        }
        printf("%zu to migrate, %zu skipped\n", ct_migrate_plan_to_migrate(plan),
               ct_migrate_plan_count(plan) - ct_migrate_plan_to_migrate(plan));
    }
    rc = fflush(stdout) == 0 ? T_OK : T_FAIL;
out:
    ct_migrate_plan_free(plan);
    ct_k8s_client_free(client);
    ct_ctx_free(ctx);
    return rc;
}

/* apply / restore: exec cloudtaser-operator --migrate WHAT ARGS... */
static int migrate_exec(int argc, char **argv)
{
    char self[4096], path[4200], **args;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    int i, k = 0;

    args = calloc((size_t)argc + 4, sizeof *args);
    if (!args)
        return T_FAIL;
    args[k++] = "cloudtaser-operator";
    args[k++] = "--migrate";
    args[k++] = argv[3];
    for (i = 4; i < argc; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    fflush(NULL);
    if (n > 0) {
        char *slash;
        self[n] = '\0';
        if ((slash = strrchr(self, '/'))) {
            *slash = '\0';
            snprintf(path, sizeof path, "%s/cloudtaser-operator", self);
            if (access(path, X_OK) == 0)
                execv(path, args);
        }
    }
    execvp("cloudtaser-operator", args);
    fprintf(stderr, PROG ": target migrate %s: cannot run cloudtaser-operator (next to this "
                    "program or in $PATH): %s\n", argv[3], strerror(errno));
    free(args);
    return T_FAIL;
}

static int migrate_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[3], "--help") == 0 || strcmp(argv[3], "-h") == 0) {
        migrate_usage(argc < 4 ? stderr : stdout);
        return argc < 4 ? T_USAGE : T_OK;
    }
    if (strcmp(argv[3], "plan") == 0)
        return migrate_plan(argc, argv);
    if (strcmp(argv[3], "apply") == 0 || strcmp(argv[3], "restore") == 0)
        return migrate_exec(argc, argv);
    return bad("unknown migrate command (plan, apply, restore):", argv[3]);
}

int target_main(int argc, char **argv)
{
    if (argc < 3)
        return bad("missing command (fingerprint)", NULL);
    if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        usage(stdout);
        return T_OK;
    }
    if (strcmp(argv[2], "migrate") == 0)
        return migrate_main(argc, argv);
    if (strcmp(argv[2], "fingerprint") != 0)
        return bad("unknown command", argv[2]);
    return fingerprint(argc, argv);
}
