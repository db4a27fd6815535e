/*
 * internal.h - private declarations shared by the library's modules.
 * Non-static internals are named ctp_* and are never exported.
 */
#ifndef CTP_INTERNAL_H
#define CTP_INTERNAL_H

#include "cloudtaser/cloudtaser.h"

#include <stdarg.h>
#include <stdbool.h>

#if defined(__GNUC__) || defined(__clang__)
#define CTP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CTP_PRINTF(a, b)
#endif

struct ct_ctx {
    ct_ctx_options o;
};

/*
 * Fills `err` (may be NULL) and returns `code`. The message is formatted
 * with printf rules; never pass secret material.
 */
ct_err ctp_err(ct_error *err, ct_err code, int32_t os_error, const char *fmt, ...)
    CTP_PRINTF(4, 5);

/* Keeps err as it is if it already carries `code` (from a deeper layer). */
ct_err ctp_err_keep(ct_error *err, ct_err code, int32_t os_error, const char *fmt, ...)
    CTP_PRINTF(4, 5);

void ctp_log(const ct_ctx *ctx, ct_log_level level, const char *msgid, const char *fmt, ...)
    CTP_PRINTF(4, 5);

/* The effective timeout: < 0 -> the context default. */
int ctp_timeout(const ct_ctx *ctx, int timeout_ms);

/*
 * Deadlines in monotonic ms (CLOCK_MONOTONIC, not the context hook, because
 * poll() waits on the real clock). INT64_MAX never occurs: every deadline is
 * finite. timeout 0 gives a deadline of "now": one non-blocking attempt.
 */
int64_t ctp_mono_ms(void);
int64_t ctp_deadline(const ct_ctx *ctx, int timeout_ms);
/* Remaining ms until deadline, clamped to [0, INT32_MAX]. */
int ctp_remaining(int64_t deadline);

/* A context with all defaults, for internal use where none is given. */
const ct_ctx *ctp_default_ctx(void);

/* Allocation helpers (NULL on overflow/failure). */
void *ctp_calloc(size_t n, size_t size);
char *ctp_strdup(const char *s);
void *ctp_memdup(const void *p, size_t n);

/* Makes an fd non-blocking and close-on-exec; returns 0 or -errno. */
int ctp_fd_nonblock_cloexec(int fd);

/* Maps an errno from a socket call to a ct_err. */
ct_err ctp_errno_to_err(int e);

/*
 * The usable keys of a JWK set as PEM public keys (SubjectPublicKeyInfo,
 * "-----BEGIN PUBLIC KEY-----"), in the set's canonical order: what Vault's
 * JWT auth method takes as jwt_validation_pubkeys (jwt.c). *pems: an array
 * of *n NUL-terminated strings; free with ctp_pems_free. Errors:
 * CT_E_INVALID, CT_E_NOMEM.
 */
ct_err ctp_jwks_pems(const ct_jwks *jwks, char ***pems, size_t *n, ct_error *err);
void ctp_pems_free(char **pems, size_t n);

/*
 * The `user` pointer of store `s` if it was made with ops whose destroy is
 * `destroy`, else NULL (also for a NULL store): how a built-in store
 * (store_vault.c) recognises its own stores in its extra functions.
 */
void *ctp_store_user_if(const ct_store *s, void (*destroy)(void *user));

/* Accessors used by wrappers (tls_conn.c) over any conn. */
const ct_conn_ops *ctp_conn_ops(const ct_conn *c);
void *ctp_conn_state(const ct_conn *c);

#endif
