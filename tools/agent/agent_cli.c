/*
 * agent_cli.c - see agent_cli.h.
 */
#include "agent_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int beacon_flags_resolve(const char *prog, beacon_flags *f)
{
    ct_error err;
    uint16_t port;
    int ways = 0;

    if (!f->address) {
        fprintf(stderr, "%s: --beacon HOST[:PORT] is required\n", prog);
        return -1;
    }
    if (ct_hostport_parse(f->address, 443, f->host, sizeof f->host, &port, &err) != CT_OK) {
        fprintf(stderr, "%s: --beacon %s\n", prog, err.message);
        return -1;
    }
    f->opts = (ct_beacon_options)CT_BEACON_OPTIONS_INIT;
    f->opts.host = f->host;
    f->opts.port = port;
    if (f->pin_hex) {
        if (ct_unhex(f->pin_hex, f->pin, sizeof f->pin, &err) != CT_OK) {
            fprintf(stderr, "%s: --beacon-pin: %s\n", prog, err.message);
            return -1;
        }
        f->opts.pin_sha256 = f->pin;
        ways++;
    }
    if (f->ca_file) {
        f->opts.ca_file = f->ca_file;
        ways++;
    }
    if (f->system_ca) {
        f->opts.use_system_ca = 1;
        ways++;
    }
    if (!ways) {
        fprintf(stderr,
                "%s: say how to verify the beacon: --beacon-pin HEX, --beacon-ca FILE or "
                "--beacon-system-ca\n",
                prog);
        return -1;
    }
    f->opts.server_name = f->name;
    return 0;
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void print_event(FILE *out, int json, const ct_agent_event *ev)
{
    if (json) {
        fprintf(out, "{\"elapsed_ms\":%lld,\"event\":", (long long)ev->elapsed_ms);
        json_str(out, ct_agent_event_name(ev->type));
        if (ev->cluster) {
            fputs(",\"cluster\":", out);
            json_str(out, ev->cluster);
        }
        if (ev->room) {
            fputs(",\"room\":", out);
            json_str(out, ev->room);
        }
        if (ev->code != CT_OK) {
            fputs(",\"error\":", out);
            json_str(out, ct_err_name(ev->code));
        }
        if (ev->detail) {
            fputs(",\"detail\":", out);
            json_str(out, ev->detail);
        }
        fputs("}\n", out);
    } else {
        fprintf(out, "[%7lld ms] %-18s cluster=%s%s%s%s%s%s%s\n", (long long)ev->elapsed_ms,
                ct_agent_event_name(ev->type), ev->cluster ? ev->cluster : "-",
                ev->room ? " room=" : "", ev->room ? ev->room : "",
                ev->code != CT_OK ? " error=" : "", ev->code != CT_OK ? ct_err_name(ev->code) : "",
                ev->detail ? ": " : "", ev->detail ? ev->detail : "");
    }
    fflush(out);
}

static void (*g_stop)(void *);
static void *g_stop_arg;

static void on_signal(int sig)
{
    (void)sig;
    if (g_stop)
        g_stop(g_stop_arg);
}

void install_stop_signals(void (*stop)(void *), void *arg)
{
    struct sigaction sa;
    g_stop = stop;
    g_stop_arg = arg;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void stderr_logger(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    static const char *names[] = { "error", "warning", "notice", "info", "debug" };
    const char *prog = user;
    int i = (int)level - (int)CT_LOG_ERROR;
    fprintf(stderr, "%s: %s %s: %s\n", prog ? prog : "cloudtaser",
            i >= 0 && i < 5 ? names[i] : "log", msgid, msg);
}
