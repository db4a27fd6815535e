/*
 * log.c - the tool's log: one JSON object per line on stderr. The
 * library's session lines are passed through as they come; the tool's own
 * lines and the library's log messages get
 *   {"ts":"<RFC3339 UTC, ms>","level":"<name>","event":"<name>",...}.
 * A mutex keeps lines from different threads whole.
 */
#include "beacon.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static ct_log_level g_level = CT_LOG_INFO;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static const struct {
    const char *name;
    ct_log_level level;
} k_levels[] = {
    {"error", CT_LOG_ERROR}, {"warning", CT_LOG_WARNING}, {"notice", CT_LOG_NOTICE},
    {"info", CT_LOG_INFO},   {"debug", CT_LOG_DEBUG},
};

void bcn_log_set_level(ct_log_level level)
{
    g_level = level;
}

int bcn_log_enabled(ct_log_level level)
{
    return level <= g_level;
}

int bcn_log_parse_level(const char *name, ct_log_level *out)
{
    for (size_t i = 0; i < sizeof k_levels / sizeof k_levels[0]; i++) {
        if (!strcmp(name, k_levels[i].name)) {
            *out = k_levels[i].level;
            return 0;
        }
    }
    return -1;
}

static const char *level_name(ct_log_level level)
{
    for (size_t i = 0; i < sizeof k_levels / sizeof k_levels[0]; i++)
        if (k_levels[i].level == level)
            return k_levels[i].name;
    return level < CT_LOG_ERROR ? "error" : "debug";
}

/* Writes all iovecs to stderr, under the lock; gives up on a hard error. */
static void write_locked(struct iovec *iov, int n)
{
    pthread_mutex_lock(&g_mu);
    while (n > 0) {
        ssize_t w = writev(STDERR_FILENO, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

/* ---- building a line ---- */

/* Room kept at the end for ',"truncated":true}' and the newline. */
#define LINE_RESERVE 24

static void put_raw(bcn_line *l, const char *s, size_t n)
{
    if (l->full || l->n + n > sizeof l->buf - LINE_RESERVE) {
        l->full = 1;
        return;
    }
    memcpy(l->buf + l->n, s, n);
    l->n += n;
}

/* Appends s as a JSON string (quotes included); all or nothing. */
static void put_json_str(bcn_line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t mark = l->n;
    put_raw(l, "\"", 1);
    for (; *s && !l->full; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put_raw(l, esc, 2);
        } else if (c == '\n') {
            put_raw(l, "\\n", 2);
        } else if (c == '\t') {
            put_raw(l, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            put_raw(l, esc, 6);
        } else {
            put_raw(l, (const char *)&c, 1);
        }
    }
    put_raw(l, "\"", 1);
    if (l->full)
        l->n = mark;
}

static void put_key(bcn_line *l, const char *key)
{
    put_raw(l, ",", 1);
    put_json_str(l, key);
    put_raw(l, ":", 1);
}

void bcn_line_begin(bcn_line *l, ct_log_level level, const char *event)
{
    struct timespec ts;
    struct tm tm;
    char t[64];
    size_t n;

    l->n = 0;
    l->full = 0;
    l->level = level;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(t, sizeof t - 8, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + n, sizeof t - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
    put_raw(l, "{\"ts\":", 6);
    put_json_str(l, t);
    put_key(l, "level");
    put_json_str(l, level_name(level));
    put_key(l, "event");
    put_json_str(l, event);
}

void bcn_line_str(bcn_line *l, const char *key, const char *val)
{
    size_t mark = l->n;
    put_key(l, key);
    put_json_str(l, val ? val : "");
    if (l->full)
        l->n = mark;
}

void bcn_line_int(bcn_line *l, const char *key, long long val)
{
    char num[32];
    size_t mark = l->n;
    int n = snprintf(num, sizeof num, "%lld", val);
    put_key(l, key);
    put_raw(l, num, (size_t)n);
    if (l->full)
        l->n = mark;
}

void bcn_line_bool(bcn_line *l, const char *key, int val)
{
    size_t mark = l->n;
    put_key(l, key);
    put_raw(l, val ? "true" : "false", val ? 4 : 5);
    if (l->full)
        l->n = mark;
}

void bcn_line_end(bcn_line *l, int force)
{
    struct iovec iov;
    static const char trunc[] = ",\"truncated\":true";

    if (!force && !bcn_log_enabled(l->level))
        return;
    if (l->full) { /* the reserve guarantees room */
        memcpy(l->buf + l->n, trunc, sizeof trunc - 1);
        l->n += sizeof trunc - 1;
    }
    l->buf[l->n++] = '}';
    l->buf[l->n++] = '\n';
    iov.iov_base = l->buf;
    iov.iov_len = l->n;
    write_locked(&iov, 1);
}

void bcn_log(ct_log_level level, const char *event, const char *message)
{
    bcn_line l;
    if (!bcn_log_enabled(level))
        return;
    bcn_line_begin(&l, level, event);
    if (message)
        bcn_line_str(&l, "message", message);
    bcn_line_end(&l, 0);
}

/* ---- callbacks for the library ---- */

void bcn_log_session(void *user, const char *json_line)
{
    struct iovec iov[2];
    (void)user;
    if (!json_line || !bcn_log_enabled(CT_LOG_INFO))
        return;
    iov[0].iov_base = (void *)json_line;
    iov[0].iov_len = strlen(json_line);
    iov[1].iov_base = "\n";
    iov[1].iov_len = 1;
    write_locked(iov, 2);
}

void bcn_log_library(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    bcn_line l;
    (void)user;
    if (!bcn_log_enabled(level))
        return;
    bcn_line_begin(&l, level, "library");
    bcn_line_str(&l, "msgid", msgid);
    bcn_line_str(&l, "message", msg);
    bcn_line_end(&l, 0);
}
