/*
 * agent_cli.h - command-line plumbing shared by cloudtaser-bridge and
 * cloudtaser-operator: the beacon flags, event printing, signals.
 */
#ifndef CT_TOOLS_AGENT_CLI_H
#define CT_TOOLS_AGENT_CLI_H

#include "cloudtaser/cloudtaser.h"

#include <stdio.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct beacon_flags {
    const char *address;   /* --beacon HOST[:PORT] */
    const char *pin_hex;   /* --beacon-pin */
    const char *ca_file;   /* --beacon-ca */
    const char *name;      /* --beacon-name */
    int system_ca;         /* --beacon-system-ca */
    /* resolved */
    char host[256];
    uint8_t pin[32];
    ct_beacon_options opts;
} beacon_flags;

/* The help text for the beacon flags. */
#define BEACON_FLAGS_HELP \
"  --beacon HOST[:PORT]     the beacon to connect to (port 443 by default)\n" \
"  --beacon-pin HEX         trust the beacon whose public key has this SHA-256\n" \
"                           (64 hex digits, as printed by cloudtaser-beacon)\n" \
"  --beacon-ca FILE         trust beacon certificates issued by this CA (PEM)\n" \
"  --beacon-system-ca       trust the system's CA bundle for the beacon\n" \
"  --beacon-name NAME       the name the beacon's certificate must carry\n" \
"                           (default: HOST)\n"

/* Fills f->opts; prints a usage error and returns -1 on bad flags. */
int beacon_flags_resolve(const char *prog, beacon_flags *f);

/* Prints one event: a human line, or a JSON object per line with json. */
void print_event(FILE *out, int json, const ct_agent_event *ev);

/* SIGINT/SIGTERM call stop(arg) (which must be async-signal-safe). */
void install_stop_signals(void (*stop)(void *), void *arg);


/* A logger for ct_ctx that writes "level msgid: msg" to stderr. */
void stderr_logger(void *user, ct_log_level level, const char *msgid, const char *msg);

#endif
