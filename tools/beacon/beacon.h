/*
 * beacon.h - private declarations of the cloudtaser-beacon tool, a thin
 * wrapper that runs the library's relay (ct_relay_*) as a server:
 *
 *   main.c     command line, certificate and key, signals, wiring
 *   log.c      one JSON object per line on stderr
 *   files.c    reading the certificate and (into a ct_secret) the key
 *   metrics.c  /metrics, /healthz, /readyz on a loopback port (libmicrohttpd)
 */
#ifndef CT_BEACON_TOOL_H
#define CT_BEACON_TOOL_H

#include <cloudtaser/cloudtaser.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- log.c ---- */

/* Messages above `level` are dropped. Call before any thread starts. */
void bcn_log_set_level(ct_log_level level);
int bcn_log_enabled(ct_log_level level);
/* "error", "warning", "notice", "info", "debug" -> level; -1 if unknown. */
int bcn_log_parse_level(const char *name, ct_log_level *out);

/*
 * A log line under construction: {"ts":"<RFC3339>","level":..,"event":..
 * then fields. Strings are JSON-escaped; an over-long line is cut at a
 * field boundary and marked "truncated":true.
 */
typedef struct bcn_line {
    char buf[2048];
    size_t n;
    int full;
    ct_log_level level;
} bcn_line;

void bcn_line_begin(bcn_line *l, ct_log_level level, const char *event);
void bcn_line_str(bcn_line *l, const char *key, const char *val);
void bcn_line_int(bcn_line *l, const char *key, long long val);
void bcn_line_bool(bcn_line *l, const char *key, int val);
/* Writes the line (if its level passes, or `force`) with one write(2). */
void bcn_line_end(bcn_line *l, int force);

/* Shorthand: an event with an optional "message". */
void bcn_log(ct_log_level level, const char *event, const char *message);

/* ct_relay_options.session_log: passes the library's JSON line through (info). */
void bcn_log_session(void *user, const char *json_line);
/* ct_ctx_options.log: {"event":"library","msgid":..,"msg":..}. */
void bcn_log_library(void *user, ct_log_level level, const char *msgid, const char *msg);

/* ---- files.c ---- */

/* Largest certificate file read (PEM chain). */
#define BCN_CERT_MAX ((size_t)256 * 1024)
/* Largest key file read. */
#define BCN_KEY_MAX ((size_t)64 * 1024)

/* Reads a certificate file into *out (free with free()). 0 or -1 with why. */
int bcn_read_cert(const char *path, uint8_t **out, size_t *len, char *why, size_t why_len);

/*
 * Reads a private key file straight into a new ct_secret (no other buffer
 * holds the bytes). Refuses a file that group or others may read or write,
 * or that is not a regular file. 0 or -1 with why.
 */
int bcn_read_key(const char *path, ct_secret **out, char *why, size_t why_len);

/* Writes a public file (mode 0644, replaced atomically). 0 or -1 with why. */
int bcn_write_public(const char *path, const void *data, size_t len, char *why,
                     size_t why_len);

/* ---- metrics.c ---- */

/* What the HTTP thread reads; the rest of the tool writes. */
typedef struct bcn_state {
    ct_relay *relay;          /* set before the metrics server starts */
    atomic_int serving;       /* /healthz: the relay serves */
    atomic_int ready;         /* /readyz: accepting (not draining) */
    atomic_int draining;
    atomic_uint_fast64_t reloads, reload_failures;
} bcn_state;

typedef struct bcn_metrics bcn_metrics;

/*
 * Serves /metrics, /healthz and /readyz on `sa` with libmicrohttpd (its own
 * polling thread; bounded connections and timeouts). *port gets the bound
 * port. 0 or -1 with why.
 */
int bcn_metrics_start(bcn_state *st, const struct sockaddr *sa, socklen_t sa_len,
                      bcn_metrics **out, uint16_t *port, char *why, size_t why_len);
/* Stops the server and joins its thread. NULL ok. */
void bcn_metrics_stop(bcn_metrics *m);

/* Renders the Prometheus text (format 0.0.4) into buf; returns its length. */
size_t bcn_metrics_render(const bcn_state *st, char *buf, size_t cap);

#endif
