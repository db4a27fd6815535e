/* context.c - process-wide init, the context, clocks, randomness, logging. */
#include "internal.h"
#include "wolf.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static ct_err g_init_result = CT_OK;

static void global_init_once(void)
{
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        g_init_result = CT_E_CRYPTO;
    /* libcurl (http.c); its own global init is not thread-safe before 7.84 */
    else if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        g_init_result = CT_E_INTERNAL;
}

ct_err ct_global_init(void)
{
    pthread_once(&g_once, global_init_once);
    return g_init_result;
}

void ct_thread_cleanup(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}

static const ct_ctx g_default_ctx = {CT_CTX_OPTIONS_INIT};

const ct_ctx *ctp_default_ctx(void)
{
    return &g_default_ctx;
}

ct_err ct_ctx_new(const ct_ctx_options *opts, ct_ctx **out, ct_error *err)
{
    ct_ctx *ctx;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_ctx_new: out is NULL");
    *out = NULL;
    if (opts && opts->version != CT_CTX_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_ctx_options version %u is not supported",
                       (unsigned)opts->version);
    if (opts && opts->io_timeout_ms < 0)
        return ctp_err(err, CT_E_INVALID, 0, "io_timeout_ms must not be negative");
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "%s initialisation failed",
                       rc == CT_E_CRYPTO ? "wolfSSL" : "libcurl");
    ctx = ctp_calloc(1, sizeof *ctx);
    if (!ctx)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory creating context");
    if (opts)
        ctx->o = *opts;
    else
        ctx->o.version = CT_CTX_OPTIONS_VERSION;
    if (ctx->o.log_level == 0)
        ctx->o.log_level = CT_LOG_NOTICE;
    *out = ctx;
    return CT_OK;
}

void ct_ctx_free(ct_ctx *ctx)
{
    free(ctx);
}

int64_t ctp_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ct_ctx_now_ms(const ct_ctx *ctx)
{
    if (ctx && ctx->o.monotonic_ms)
        return ctx->o.monotonic_ms(ctx->o.clock_user);
    return ctp_mono_ms();
}

int64_t ct_ctx_wall_ms(const ct_ctx *ctx)
{
    struct timespec ts;
    if (ctx && ctx->o.wall_ms)
        return ctx->o.wall_ms(ctx->o.clock_user);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ct_err ct_ctx_random(const ct_ctx *ctx, uint8_t *buf, size_t n)
{
    if (!buf && n)
        return CT_E_INVALID;
    if (ctx && ctx->o.rng)
        return ctx->o.rng(ctx->o.rng_user, buf, n);
    while (n > 0) {
        ssize_t r = getrandom(buf, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return CT_E_IO;
        }
        buf += r;
        n -= (size_t)r;
    }
    return CT_OK;
}

CTP_PRINTF(4, 0)
static void vlog(const ct_ctx *ctx, ct_log_level level, const char *msgid, const char *fmt,
                 va_list ap)
{
    char buf[1024];
    if (!ctx || !ctx->o.log || level > ctx->o.log_level)
        return;
    vsnprintf(buf, sizeof buf, fmt, ap);
    ctx->o.log(ctx->o.log_user, level, msgid ? msgid : "", buf);
}

void ct_ctx_log(const ct_ctx *ctx, ct_log_level level, const char *msgid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, level, msgid, fmt, ap);
    va_end(ap);
}

void ctp_log(const ct_ctx *ctx, ct_log_level level, const char *msgid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, level, msgid, fmt, ap);
    va_end(ap);
}

int ctp_timeout(const ct_ctx *ctx, int timeout_ms)
{
    if (timeout_ms >= 0)
        return timeout_ms;
    if (ctx && ctx->o.io_timeout_ms > 0)
        return ctx->o.io_timeout_ms;
    return 30000;
}

int64_t ctp_deadline(const ct_ctx *ctx, int timeout_ms)
{
    return ctp_mono_ms() + ctp_timeout(ctx, timeout_ms);
}

int ctp_remaining(int64_t deadline)
{
    int64_t r = deadline - ctp_mono_ms();
    if (r < 0)
        return 0;
    if (r > INT_MAX)
        return INT_MAX;
    return (int)r;
}

void *ctp_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

char *ctp_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

void *ctp_memdup(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

int ctp_fd_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

ct_err ctp_errno_to_err(int e)
{
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return CT_E_AGAIN;
    case ETIMEDOUT:
        return CT_E_TIMEOUT;
    case ECONNREFUSED:
        return CT_E_REFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return CT_E_RESET;
    case EADDRINUSE:
        return CT_E_ADDRINUSE;
    case ENOMEM:
    case ENOBUFS:
        return CT_E_NOMEM;
    case EACCES:
    case EPERM:
        return CT_E_DENIED;
    default:
        return CT_E_IO;
    }
}

const char *ct_version(void)
{
    return CT_VERSION_STRING;
}

uint32_t ct_version_num(void)
{
    return CT_VERSION;
}

int ct_abi_version(void)
{
    return CT_ABI_VERSION;
}
