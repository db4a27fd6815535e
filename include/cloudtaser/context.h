/*
 * cloudtaser/context.h - process-wide initialisation and the library context.
 *
 * A ct_ctx carries the logger, the random-number and clock hooks and the
 * defaults that every entry point uses. It is immutable once created, so one
 * context may be shared by any number of threads. There is no other global
 * state besides the idempotent ct_global_init().
 */
#ifndef CLOUDTASER_CONTEXT_H
#define CLOUDTASER_CONTEXT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_ctx ct_ctx;

/* Log levels are syslog severities: lower is more severe. */
typedef enum ct_log_level {
    CT_LOG_ERROR = 3,
    CT_LOG_WARNING = 4,
    CT_LOG_NOTICE = 5,
    CT_LOG_INFO = 6,
    CT_LOG_DEBUG = 7,
    CT_LOG_FORCE_INT32_ = 0x7fffffff
} ct_log_level;

/*
 * Logger. `msgid` is a short stable identifier ("tls.handshake"), `msg` the
 * fully formatted text; both are borrowed for the duration of the call. The
 * logger is called on whichever thread logs, possibly several at once, so it
 * must be thread-safe. The library never passes secret material, keys,
 * tokens or full fingerprints to it.
 */
typedef void (*ct_log_fn)(void *user, ct_log_level level, const char *msgid,
                          const char *msg);

/* Fills buf[0..n) with unpredictable bytes; returns CT_OK or an error. */
typedef ct_err (*ct_rng_fn)(void *user, uint8_t *buf, size_t n);

/* Returns milliseconds: monotonic (for deadlines) or Unix time (wall clock). */
typedef int64_t (*ct_clock_fn)(void *user);

#define CT_CTX_OPTIONS_VERSION 1
typedef struct ct_ctx_options {
    uint32_t version;          /* CT_CTX_OPTIONS_VERSION */
    ct_log_fn log;             /* NULL: silent */
    void *log_user;
    ct_log_level log_level;    /* 0: CT_LOG_NOTICE; messages above are dropped */
    /*
     * Randomness for library-level values (identifiers, jitter, serials).
     * NULL: the operating system's generator (getrandom). Key generation and
     * TLS always use wolfSSL's own DRBG seeded by the operating system, so a
     * test hook can never weaken a key.
     */
    ct_rng_fn rng;
    void *rng_user;
    ct_clock_fn monotonic_ms;  /* NULL: CLOCK_MONOTONIC */
    ct_clock_fn wall_ms;       /* NULL: CLOCK_REALTIME */
    void *clock_user;
    int io_timeout_ms;         /* 0: 30000; default for timeout_ms < 0 */
} ct_ctx_options;

#define CT_CTX_OPTIONS_INIT { .version = CT_CTX_OPTIONS_VERSION }

/*
 * Process-wide initialisation (wolfSSL, libcurl). Idempotent and
 * thread-safe (pthread_once), but call it before starting threads. Other
 * entry points call it themselves, so calling it explicitly is optional.
 * Never installs signal handlers.
 * Errors: CT_E_CRYPTO if wolfSSL fails to initialise, CT_E_INTERNAL if
 * libcurl does.
 */
CT_API ct_err ct_global_init(void);

/*
 * Releases per-thread caches the crypto library keeps (wolfSSL's ECC
 * fixed-point tables: up to about 12 MB per thread in Debian's build).
 * Call it in every thread you created that used keys, certificates or TLS,
 * right before the thread exits; calling it more than once is harmless.
 * Threads the library starts itself (ct_relay_serve) already do.
 */
CT_API void ct_thread_cleanup(void);

/*
 * Creates a context. `opts` may be NULL for all defaults; it is copied, the
 * caller may free it after the call. Free the result with ct_ctx_free()
 * after every object created from it has been freed.
 * Errors: CT_E_INVALID (NULL out), CT_E_VERSION (unknown opts->version),
 * CT_E_NOMEM.
 */
CT_API ct_err ct_ctx_new(const ct_ctx_options *opts, ct_ctx **out, ct_error *err);

/* Frees a context. NULL is a no-op. */
CT_API void ct_ctx_free(ct_ctx *ctx);

/* Monotonic milliseconds from the context's clock. Thread-safe. */
CT_API int64_t ct_ctx_now_ms(const ct_ctx *ctx);

/* Wall-clock Unix milliseconds from the context's clock. Thread-safe. */
CT_API int64_t ct_ctx_wall_ms(const ct_ctx *ctx);

/* Fills buf with random bytes from the context's generator. Thread-safe. */
CT_API CT_NODISCARD ct_err ct_ctx_random(const ct_ctx *ctx, uint8_t *buf, size_t n);

/*
 * Logs through the context's logger (formatting happens only when the level
 * passes the filter). For tools and bindings that want one log sink.
 * Never pass secrets. Thread-safe.
 */
CT_API void ct_ctx_log(const ct_ctx *ctx, ct_log_level level, const char *msgid,
                       const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
