/*
 * main.c - cloudtaser-beacon: runs the library's relay (ct_relay_*) as a
 * server. Thin by design: the command line, the certificate and key, a
 * signal thread, the operations port and the log. Everything about the
 * protocol, TLS and certificates lives in libcloudtaser.
 *
 * Threads: main runs ct_relay_serve (one of the relay's event loops); the
 * relay starts threads - 1 more; libmicrohttpd runs one for the operations
 * port; one more reads signals. SIGTERM, SIGINT and SIGHUP are blocked in
 * all of them (blocked here before any thread starts, so every thread
 * inherits the mask) and read from a signalfd by the signal thread, which
 * may then do what no signal handler could: reload the certificate.
 */
#include "beacon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define PROG "cloudtaser-beacon"

enum {
    EXIT_DRAINED = 0, /* clean drain */
    EXIT_FAIL = 1,    /* could not start, or serve failed */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_FORCED = 3,  /* a second SIGTERM/SIGINT stopped it at once */
};

#define DEF_LISTEN "[::]:443"
#define DEF_METRICS "127.0.0.1:9443"

typedef struct hostport {
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    struct sockaddr_storage ss;
    socklen_t sl;
} hostport;

typedef struct config {
    hostport listen, metrics;
    const char *cert_path, *key_path;
    ct_relay_options ro; /* the numeric options */
    int metrics_allow_remote;
    ct_log_level log_level;
    int dev;
    const char *dev_dns[CT_CERT_MAX_NAMES], *dev_ip[CT_CERT_MAX_NAMES];
    size_t n_dev_dns, n_dev_ip;
    const char *dev_ca_out;
} config;

/* ------------------------------------------------------------------ */
/* Command line                                                        */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " --cert FILE --key FILE [OPTION]...\n"
"       " PROG " --dev [OPTION]...\n"
"\n"
"The cloudtaser beacon: a stateless TLS relay. It pairs an operator-side and a\n"
"bridge-side peer that present the same room hash, then forwards bytes between\n"
"them without reading them (docs/PROTOCOL.md, section 1).\n"
"\n"
"Certificate:\n"
"  --cert FILE              server certificate, PEM (chain allowed) or DER\n"
"  --key FILE               its private key, PEM or DER; refused if group or\n"
"                           others may access it (chmod 600)\n"
"  --dev                    development mode: makes a throwaway CA and server\n"
"                           certificate in memory (ECDSA P-256; names localhost,\n"
"                           127.0.0.1 and ::1) and prints the pin. Not for\n"
"                           production.\n"
"  --dev-name NAME          with --dev: one more DNS name or IP address for the\n"
"                           certificate (repeatable; at most %d DNS names and\n"
"                           %d addresses in all)\n"
"  --dev-ca-out FILE        with --dev: write the throwaway CA certificate (PEM)\n"
"                           to FILE, for clients that verify by CA\n"
"\n"
"Listening:\n"
"  --listen ADDR:PORT       where peers connect (default " DEF_LISTEN ": every\n"
"                           address, IPv4 and IPv6); a numeric address, IPv6 in\n"
"                           brackets; port 0 picks a free port\n"
"  --threads N              event-loop threads (default 0: one per online CPU;\n"
"                           at most %d)\n"
"\n"
"Limits and timers (0 means the library default shown):\n"
"  --hello-timeout MS       from TCP accept to a complete hello (default %d)\n"
"  --wait-timeout MS        longest wait for a partner (default %d)\n"
"  --keepalive MS           WAITING keepalive interval (default %d)\n"
"  --linger MS              after a half-close, until both sides close\n"
"                           (default %d)\n"
"  --drain-timeout MS       drain deadline after SIGTERM (default %d)\n"
"  --max-conns N            open connections in all (default %u)\n"
"  --max-conns-per-ip N     open connections per source address (default %u)\n"
"  --accept-rate-per-ip N   new connections per second per source address,\n"
"                           burst 2x (default %u)\n"
"  --max-waiting-per-room N bridge-side peers waiting in one room (default %u)\n"
"\n"
"Operations:\n"
"  --metrics ADDR:PORT      operations endpoint (default " DEF_METRICS "):\n"
"                           GET /metrics (Prometheus text format 0.0.4),\n"
"                           /healthz (200 while serving), /readyz (200 while\n"
"                           accepting, 503 while draining); a loopback address\n"
"                           unless --metrics-allow-remote\n"
"  --metrics-allow-remote   allow a --metrics address that is not loopback (the\n"
"                           endpoint has no authentication)\n"
"  --log-level LEVEL        error, warning, notice, info or debug (default info;\n"
"                           the relay's session and refusal lines are info)\n"
"  -h, --help               show this text and exit\n"
"  -V, --version            show the version and exit\n"
"\n"
"Output:\n"
"  stdout, once ready:  \"listening ADDR:PORT\", \"metrics ADDR:PORT\", \"pin HEX\"\n"
"      (SHA-256 of the certificate's SubjectPublicKeyInfo: what clients that pin\n"
"      the beacon configure) and, with --dev-ca-out, \"ca FILE\".\n"
"  stderr: one JSON object per line: lifecycle events {\"ts\",\"level\",\"event\",...}\n"
"      (listening, dev_mode, drain, stop, reload, reload_failed, exit, errors)\n"
"      and the relay's session and refusal lines. Never a key, never more than\n"
"      8 hex digits of a room hash. Command-line errors are plain text.\n"
"\n"
"Signals:\n"
"  SIGTERM, SIGINT  drain: stop accepting, send DRAINING to waiting peers, let\n"
"                   paired sessions finish until the drain deadline, exit 0;\n"
"                   a second one stops at once (exit 3)\n"
"  SIGHUP           re-read --cert and --key and use them for new connections\n"
"                   (open sessions keep theirs); if that fails, the old ones\n"
"                   stay and a reload_failed line is logged\n"
"\n"
"Exit status:\n"
"  0  stopped after a drain\n"
"  1  could not start (files, certificate, address in use) or serving failed\n"
"  2  bad command line\n"
"  3  stopped at once by a second SIGTERM or SIGINT\n",
            CT_CERT_MAX_NAMES, CT_CERT_MAX_NAMES, CT_RELAY_MAX_THREADS,
            CT_RELAY_DEFAULT_HELLO_TIMEOUT_MS, CT_RELAY_DEFAULT_WAIT_TIMEOUT_MS,
            CT_RELAY_DEFAULT_KEEPALIVE_MS, CT_RELAY_DEFAULT_LINGER_MS,
            CT_RELAY_DEFAULT_DRAIN_TIMEOUT_MS, CT_RELAY_DEFAULT_MAX_CONNS,
            CT_RELAY_DEFAULT_MAX_CONNS_PER_IP, CT_RELAY_DEFAULT_ACCEPT_RATE_PER_IP,
            CT_RELAY_DEFAULT_MAX_WAITING_PER_ROOM);
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

/* "ADDR:PORT" or "[V6]:PORT", numeric. 0, or -1 with a message printed. */
static int parse_hostport(const char *opt, const char *s, hostport *hp)
{
    const char *colon, *p;
    size_t hl;
    char *end;
    unsigned long port;
    int v6;

    memset(hp, 0, sizeof *hp);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return bad_usage("%s '%s': expected [IPV6]:PORT", opt, s), -1;
        p = s + 1;
        hl = (size_t)(close - p);
        colon = close + 1;
        v6 = 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return bad_usage("%s '%s': expected ADDR:PORT", opt, s), -1;
        if (memchr(s, ':', (size_t)(colon - s)))
            return bad_usage("%s '%s': put an IPv6 address in brackets, e.g. [::1]:443", opt,
                             s), -1;
        p = s;
        hl = (size_t)(colon - s);
        v6 = 0;
    }
    if (hl == 0 || hl >= sizeof hp->host)
        return bad_usage("%s '%s': missing or too long address", opt, s), -1;
    memcpy(hp->host, p, hl);
    hp->host[hl] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || errno || port > 65535)
        return bad_usage("%s '%s': the port must be a number from 0 to 65535", opt, s), -1;
    hp->port = (uint16_t)port;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&hp->ss;
        if (inet_pton(AF_INET6, hp->host, &a->sin6_addr) != 1)
            return bad_usage("%s '%s': '%s' is not a numeric IPv6 address", opt, s, hp->host),
                   -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(hp->port);
        hp->sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&hp->ss;
        if (inet_pton(AF_INET, hp->host, &a->sin_addr) != 1)
            return bad_usage("%s '%s': '%s' is not a numeric IPv4 address (IPv6 goes in "
                             "brackets)",
                             opt, s, hp->host),
                   -1;
        a->sin_family = AF_INET;
        a->sin_port = htons(hp->port);
        hp->sl = sizeof *a;
    }
    return 0;
}

static int is_loopback(const hostport *hp)
{
    if (hp->ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&hp->ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&hp->ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
    }
}

/* "1.2.3.4:5" or "[::1]:5". */
static void format_addr(const hostport *hp, uint16_t port, char *out, size_t n)
{
    if (hp->ss.ss_family == AF_INET6)
        snprintf(out, n, "[%s]:%u", hp->host, (unsigned)port);
    else
        snprintf(out, n, "%s:%u", hp->host, (unsigned)port);
}

/* A decimal number 0..max. 0, or -1 with a message printed. */
static int parse_num(const char *opt, const char *s, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        goto bad;
    *out = strtoull(s, &end, 10);
    if (errno || *end || *out > max)
        goto bad;
    return 0;
bad:
    bad_usage("%s '%s': expected a number from 0 to %llu", opt, s, max);
    return -1;
}

enum {
    O_LISTEN = 256, O_CERT, O_KEY, O_THREADS, O_HELLO, O_WAIT, O_KEEPALIVE, O_LINGER, O_DRAIN,
    O_MAX_CONNS, O_MAX_CONNS_IP, O_RATE_IP, O_MAX_WAITING, O_METRICS, O_METRICS_REMOTE,
    O_LOG_LEVEL, O_DEV, O_DEV_NAME, O_DEV_CA_OUT,
};

static const struct option k_options[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"cert", required_argument, NULL, O_CERT},
    {"key", required_argument, NULL, O_KEY},
    {"threads", required_argument, NULL, O_THREADS},
    {"hello-timeout", required_argument, NULL, O_HELLO},
    {"wait-timeout", required_argument, NULL, O_WAIT},
    {"keepalive", required_argument, NULL, O_KEEPALIVE},
    {"linger", required_argument, NULL, O_LINGER},
    {"drain-timeout", required_argument, NULL, O_DRAIN},
    {"max-conns", required_argument, NULL, O_MAX_CONNS},
    {"max-conns-per-ip", required_argument, NULL, O_MAX_CONNS_IP},
    {"accept-rate-per-ip", required_argument, NULL, O_RATE_IP},
    {"max-waiting-per-room", required_argument, NULL, O_MAX_WAITING},
    {"metrics", required_argument, NULL, O_METRICS},
    {"metrics-allow-remote", no_argument, NULL, O_METRICS_REMOTE},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"dev", no_argument, NULL, O_DEV},
    {"dev-name", required_argument, NULL, O_DEV_NAME},
    {"dev-ca-out", required_argument, NULL, O_DEV_CA_OUT},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int dev_name(config *c, const char *name)
{
    uint8_t a[16];
    int ip = inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
    size_t *n = ip ? &c->n_dev_ip : &c->n_dev_dns;
    const char **list = ip ? c->dev_ip : c->dev_dns;
    if (!*name)
        return bad_usage("--dev-name: empty name");
    if (*n >= CT_CERT_MAX_NAMES)
        return bad_usage("--dev-name: at most %d %s names in all", CT_CERT_MAX_NAMES,
                         ip ? "IP" : "DNS");
    list[(*n)++] = name;
    return 0;
}

/* Returns -1 to go on, else the exit status (0 after --help/--version). */
static int parse_args(int argc, char **argv, config *c)
{
    const char *listen = DEF_LISTEN, *metrics = DEF_METRICS;
    int opt, dev_extras = 0;

    memset(c, 0, sizeof *c);
    c->ro = (ct_relay_options)CT_RELAY_OPTIONS_INIT;
    c->log_level = CT_LOG_INFO;
    c->dev_dns[c->n_dev_dns++] = "localhost";
    c->dev_ip[c->n_dev_ip++] = "127.0.0.1";
    c->dev_ip[c->n_dev_ip++] = "::1";

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":hV", k_options, NULL)) != -1) {
        unsigned long long v = 0;
        const char *name = argv[optind - 1];
        switch (opt) {
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf(PROG " %s (libcloudtaser %s)\n", CT_VERSION_STRING, ct_version());
            return 0;
        case O_LISTEN:
            listen = optarg;
            break;
        case O_CERT:
            c->cert_path = optarg;
            break;
        case O_KEY:
            c->key_path = optarg;
            break;
        case O_METRICS:
            metrics = optarg;
            break;
        case O_METRICS_REMOTE:
            c->metrics_allow_remote = 1;
            break;
        case O_LOG_LEVEL:
            if (bcn_log_parse_level(optarg, &c->log_level) != 0)
                return bad_usage("--log-level '%s': expected error, warning, notice, info or "
                                 "debug",
                                 optarg);
            break;
        case O_DEV:
            c->dev = 1;
            break;
        case O_DEV_NAME:
            dev_extras = 1;
            if (dev_name(c, optarg) != 0)
                return EXIT_USAGE;
            break;
        case O_DEV_CA_OUT:
            dev_extras = 1;
            c->dev_ca_out = optarg;
            break;
        case O_THREADS:
            if (parse_num("--threads", optarg, CT_RELAY_MAX_THREADS, &v))
                return EXIT_USAGE;
            c->ro.threads = (int)v;
            break;
#define MS_OPT(code, flag, field)                                                        \
    case code:                                                                           \
        if (parse_num(flag, optarg, INT_MAX, &v))                                        \
            return EXIT_USAGE;                                                           \
        c->ro.field = (int)v;                                                            \
        break;
#define N_OPT(code, flag, field)                                                         \
    case code:                                                                           \
        if (parse_num(flag, optarg, UINT32_MAX, &v))                                     \
            return EXIT_USAGE;                                                           \
        c->ro.field = (uint32_t)v;                                                       \
        break;
            MS_OPT(O_HELLO, "--hello-timeout", hello_timeout_ms)
            MS_OPT(O_WAIT, "--wait-timeout", wait_timeout_ms)
            MS_OPT(O_KEEPALIVE, "--keepalive", keepalive_ms)
            MS_OPT(O_LINGER, "--linger", linger_ms)
            MS_OPT(O_DRAIN, "--drain-timeout", drain_timeout_ms)
            N_OPT(O_MAX_CONNS, "--max-conns", max_conns)
            N_OPT(O_MAX_CONNS_IP, "--max-conns-per-ip", max_conns_per_ip)
            N_OPT(O_RATE_IP, "--accept-rate-per-ip", accept_rate_per_ip)
            N_OPT(O_MAX_WAITING, "--max-waiting-per-room", max_waiting_per_room)
#undef MS_OPT
#undef N_OPT
        case ':':
            return bad_usage("option '%s' needs a value", name);
        default:
            return bad_usage("unknown or malformed option '%s'", name);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument '%s'", argv[optind]);
    if (parse_hostport("--listen", listen, &c->listen) != 0 ||
        parse_hostport("--metrics", metrics, &c->metrics) != 0)
        return EXIT_USAGE;
    if (!is_loopback(&c->metrics) && !c->metrics_allow_remote)
        return bad_usage("--metrics %s is not a loopback address; the operations endpoint "
                         "has no authentication: add --metrics-allow-remote to expose it",
                         metrics);
    if (c->dev) {
        if (c->cert_path || c->key_path)
            return bad_usage("--dev makes its own certificate: drop --cert and --key");
    } else {
        if (dev_extras)
            return bad_usage("--dev-name and --dev-ca-out need --dev");
        if (!c->cert_path || !c->key_path)
            return bad_usage("--cert FILE and --key FILE are required (or --dev for a "
                             "development certificate)");
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Certificates                                                        */

/* Reads --cert and --key. 0, or -1 with why. */
static int load_files(const config *c, uint8_t **cert, size_t *cert_len, ct_secret **key,
                      char *why, size_t why_len)
{
    if (bcn_read_cert(c->cert_path, cert, cert_len, why, why_len) != 0)
        return -1;
    if (bcn_read_key(c->key_path, key, why, why_len) != 0) {
        free(*cert);
        *cert = NULL;
        return -1;
    }
    return 0;
}

/*
 * --dev: a throwaway CA and server certificate. The certificate comes back
 * as DER in a malloc'ed copy (so it is freed like a file's), the key as PEM.
 * Returns an exit status or -1 on success.
 */
static int make_dev_cert(ct_ctx *ctx, const config *c, uint8_t **cert, size_t *cert_len,
                         ct_secret **key, uint8_t **ca, size_t *ca_len, char *why,
                         size_t why_len)
{
    ct_cert_options o = CT_CERT_OPTIONS_INIT;
    ct_key *k = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    ct_error err;
    ct_err rc;
    int status = EXIT_FAIL;

    o.common_name = "localhost";
    o.organization = "cloudtaser development";
    o.dns_names = c->dev_dns;
    o.n_dns_names = c->n_dev_dns;
    o.ip_addrs = c->dev_ip;
    o.n_ip_addrs = c->n_dev_ip;
    rc = ct_cert_dev_server(ctx, &o, ca, ca_len, &der, &der_len, &k, &err);
    if (rc != CT_OK) {
        snprintf(why, why_len, "cannot make the development certificate: %s", err.message);
        if (rc == CT_E_INVALID) /* a --dev-name the certificate cannot carry */
            status = EXIT_USAGE;
        goto out;
    }
    if (ct_key_export(k, 1, key, &err) != CT_OK) {
        snprintf(why, why_len, "cannot export the development key: %s", err.message);
        goto out;
    }
    if (!(*cert = malloc(der_len))) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    memcpy(*cert, der, der_len);
    *cert_len = der_len;
    status = -1;
out:
    if (status != -1) {
        ct_secret_free(*key);
        *key = NULL;
        ct_free(*ca);
        *ca = NULL;
    }
    ct_free(der);
    ct_key_free(k);
    return status;
}

/* ------------------------------------------------------------------ */
/* Signals                                                             */

typedef struct sigthread {
    int sfd, quitfd;
    const config *cfg;
    bcn_state *st;
    ct_relay *relay;
    int stops;
    atomic_int forced;
} sigthread;

static const char *signame(int sig)
{
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "signal";
    }
}

static void reload(sigthread *t)
{
    uint8_t *cert = NULL, pin[32];
    size_t cert_len = 0;
    ct_secret *key = NULL;
    char why[768], hex[65];
    ct_error err;
    bcn_line l;

    if (t->cfg->dev) {
        bcn_log(CT_LOG_NOTICE, "reload_skipped",
                "SIGHUP: dev mode keeps its certificate in memory; nothing to re-read");
        return;
    }
    if (load_files(t->cfg, &cert, &cert_len, &key, why, sizeof why) != 0)
        goto fail;
    if (ct_cert_pin_sha256(cert, cert_len, pin, &err) != CT_OK ||
        ct_relay_reload_cert(t->relay, cert, cert_len, key, &err) != CT_OK) {
        snprintf(why, sizeof why, "%s", err.message);
        goto fail;
    }
    atomic_fetch_add(&t->st->reloads, 1);
    bcn_line_begin(&l, CT_LOG_NOTICE, "reload");
    bcn_line_str(&l, "cert", t->cfg->cert_path);
    bcn_line_str(&l, "pin", ct_hex(pin, 32, hex));
    bcn_line_end(&l, 0);
    goto out;
fail:
    atomic_fetch_add(&t->st->reload_failures, 1);
    bcn_line_begin(&l, CT_LOG_ERROR, "reload_failed");
    bcn_line_str(&l, "message", why);
    bcn_line_str(&l, "action", "keeping the current certificate");
    bcn_line_end(&l, 0);
out:
    ct_secret_free(key);
    free(cert);
}

static void *signal_main(void *arg)
{
    sigthread *t = arg;
    struct pollfd p[2] = {{t->sfd, POLLIN, 0}, {t->quitfd, POLLIN, 0}};

    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n;
        bcn_line l;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            bcn_log(CT_LOG_ERROR, "error", "poll on the signalfd failed");
            break;
        }
        if (p[1].revents)
            break;
        n = read(t->sfd, &si, sizeof si);
        if (n != (ssize_t)sizeof si)
            continue;
        if (si.ssi_signo == SIGHUP) {
            reload(t);
            continue;
        }
        /* SIGTERM or SIGINT */
        if (t->stops++ == 0) {
            int ms = t->cfg->ro.drain_timeout_ms ? t->cfg->ro.drain_timeout_ms
                                                 : CT_RELAY_DEFAULT_DRAIN_TIMEOUT_MS;
            atomic_store(&t->st->draining, 1);
            atomic_store(&t->st->ready, 0);
            bcn_line_begin(&l, CT_LOG_NOTICE, "drain");
            bcn_line_str(&l, "signal", signame((int)si.ssi_signo));
            bcn_line_int(&l, "drain_timeout_ms", ms);
            bcn_line_end(&l, 0);
            ct_relay_drain(t->relay);
        } else {
            atomic_store(&t->forced, 1);
            bcn_line_begin(&l, CT_LOG_WARNING, "stop");
            bcn_line_str(&l, "signal", signame((int)si.ssi_signo));
            bcn_line_str(&l, "message", "second signal: closing every session now");
            bcn_line_end(&l, 0);
            ct_relay_stop(t->relay);
        }
    }
    ct_thread_cleanup(); /* a reload did ECC work on this thread */
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Running                                                             */

static void log_error(const char *event, const char *msg)
{
    bcn_log(CT_LOG_ERROR, event, msg);
}

static int run(config *c)
{
    ct_ctx_options co = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    ct_relay *relay = NULL;
    bcn_metrics *metrics = NULL;
    bcn_state st;
    sigthread sig;
    pthread_t sig_thread;
    sigset_t set;
    uint8_t *cert = NULL, *ca = NULL, pin[32];
    size_t cert_len = 0, ca_len = 0;
    ct_secret *key = NULL;
    char why[768], hex[65], addr[80], maddr[80];
    uint16_t mport = 0;
    ct_error err;
    ct_err rc;
    int status = EXIT_FAIL, have_thread = 0;
    const char *reason = "error";
    bcn_line l;

    memset(&st, 0, sizeof st);
    memset(&sig, 0, sizeof sig);
    sig.sfd = sig.quitfd = -1;
    ct_error_clear(&err);

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    bcn_log_set_level(c->log_level);
    /* before the key is read: no core dumps, not dumpable (as the bridge and
     * the operator do); a failure is a warning, the beacon still serves */
    if (ct_process_harden(&err) != CT_OK)
        bcn_log(CT_LOG_WARNING, "harden_failed", err.message);
    co.log = bcn_log_library;
    co.log_level = c->log_level;
    if ((rc = ct_ctx_new(&co, &ctx, &err)) != CT_OK) {
        log_error("start_failed", err.message);
        goto out;
    }

    if (c->dev) {
        bcn_line_begin(&l, CT_LOG_WARNING, "dev_mode");
        bcn_line_str(&l, "message",
                     "DEVELOPMENT MODE: serving a throwaway in-memory certificate; clients "
                     "must pin it or trust its throwaway CA; never use this in production");
        bcn_line_end(&l, 1);
        if ((status = make_dev_cert(ctx, c, &cert, &cert_len, &key, &ca, &ca_len, why,
                                    sizeof why)) != -1) {
            log_error("start_failed", why);
            goto out;
        }
        status = EXIT_FAIL;
        if (c->dev_ca_out) {
            char *pem = NULL;
            if (ct_cert_der_to_pem(ca, ca_len, &pem, &err) != CT_OK) {
                log_error("start_failed", err.message);
                goto out;
            }
            if (bcn_write_public(c->dev_ca_out, pem, strlen(pem), why, sizeof why) != 0) {
                ct_free(pem);
                log_error("start_failed", why);
                goto out;
            }
            ct_free(pem);
        }
    } else if (load_files(c, &cert, &cert_len, &key, why, sizeof why) != 0) {
        log_error("start_failed", why);
        goto out;
    }
    if (ct_cert_pin_sha256(cert, cert_len, pin, &err) != CT_OK) {
        snprintf(why, sizeof why, "certificate %s: %s", c->cert_path ? c->cert_path : "(dev)",
                 err.message);
        log_error("start_failed", why);
        goto out;
    }
    ct_hex(pin, 32, hex);

    c->ro.listen_host = c->listen.host;
    c->ro.listen_port = c->listen.port;
    c->ro.cert = cert;
    c->ro.cert_len = cert_len;
    c->ro.key = key;
    c->ro.session_log = bcn_log_session;
    if ((rc = ct_relay_new(ctx, &c->ro, &relay, &err)) != CT_OK) {
        snprintf(why, sizeof why, "cannot start the relay on %s: %s (%s)", c->listen.host,
                 err.message, ct_err_name(rc));
        log_error("start_failed", why);
        goto out;
    }
    ct_secret_free(key); /* the relay's TLS configuration holds its own copy */
    key = NULL;
    c->ro.key = NULL;
    st.relay = relay;
    format_addr(&c->listen, ct_relay_port(relay), addr, sizeof addr);

    if (bcn_metrics_start(&st, (const struct sockaddr *)&c->metrics.ss, c->metrics.sl, &metrics,
                          &mport, why, sizeof why) != 0) {
        char msg[1024];
        format_addr(&c->metrics, c->metrics.port, maddr, sizeof maddr);
        snprintf(msg, sizeof msg, "--metrics %s: %s", maddr, why);
        log_error("start_failed", msg);
        goto out;
    }
    format_addr(&c->metrics, mport, maddr, sizeof maddr);

    sig.cfg = c;
    sig.st = &st;
    sig.relay = relay;
    sig.sfd = signalfd(-1, &set, SFD_CLOEXEC);
    sig.quitfd = eventfd(0, EFD_CLOEXEC);
    if (sig.sfd < 0 || sig.quitfd < 0) {
        snprintf(why, sizeof why, "signalfd/eventfd: %s", strerror(errno));
        log_error("start_failed", why);
        goto out;
    }
    atomic_store(&st.serving, 1);
    atomic_store(&st.ready, 1);
    if (pthread_create(&sig_thread, NULL, signal_main, &sig) != 0) {
        log_error("start_failed", "cannot start the signal thread");
        goto out;
    }
    have_thread = 1;

    printf("listening %s\nmetrics %s\npin %s\n", addr, maddr, hex);
    if (c->dev_ca_out)
        printf("ca %s\n", c->dev_ca_out);
    fflush(stdout);
    bcn_line_begin(&l, CT_LOG_NOTICE, "listening");
    bcn_line_str(&l, "addr", addr);
    bcn_line_str(&l, "metrics", maddr);
    bcn_line_str(&l, "pin", hex);
    bcn_line_str(&l, "cert", c->dev ? "(dev, in memory)" : c->cert_path);
    bcn_line_int(&l, "threads", c->ro.threads);
    bcn_line_bool(&l, "dev", c->dev);
    bcn_line_str(&l, "version", ct_version());
    bcn_line_end(&l, 0);

    rc = ct_relay_serve(relay, &err);
    atomic_store(&st.ready, 0);
    atomic_store(&st.serving, 0);
    if (rc != CT_OK) {
        log_error("serve_failed", err.message);
        goto out;
    }
    status = atomic_load(&sig.forced) ? EXIT_FORCED : EXIT_DRAINED;
    reason = status == EXIT_FORCED ? "stopped" : "drained";
out:
    if (have_thread) {
        uint64_t one = 1;
        if (write(sig.quitfd, &one, sizeof one) != (ssize_t)sizeof one)
            bcn_log(CT_LOG_ERROR, "error", "cannot wake the signal thread");
        else
            pthread_join(sig_thread, NULL);
    }
    bcn_metrics_stop(metrics);
    if (relay) {
        ct_relay_stats s;
        ct_relay_get_stats(relay, &s);
        bcn_line_begin(&l, status == EXIT_FAIL ? CT_LOG_ERROR : CT_LOG_NOTICE, "exit");
        bcn_line_str(&l, "reason", reason);
        bcn_line_int(&l, "status", status);
        bcn_line_int(&l, "accepted", (long long)s.accepted);
        bcn_line_int(&l, "pairs", (long long)s.pairs);
        bcn_line_end(&l, 0);
    }
    if (sig.sfd >= 0)
        close(sig.sfd);
    if (sig.quitfd >= 0)
        close(sig.quitfd);
    ct_relay_free(relay);
    ct_secret_free(key);
    free(cert);
    ct_free(ca);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return status;
}

int main(int argc, char **argv)
{
    config c;
    int status = parse_args(argc, argv, &c);
    if (status >= 0)
        return status;
    return run(&c);
}
