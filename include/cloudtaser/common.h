/*
 * cloudtaser/common.h - export macro, error codes and the caller-owned error
 * detail shared by every libcloudtaser API.
 *
 * Thread-safety (applies to the whole library):
 *   libcloudtaser starts no threads except inside ct_relay_serve, which
 *   documents them. A ct_ctx is immutable after creation and may be shared
 *   between threads. Every other object may be passed between threads, but
 *   only one thread may use it at a time. Callbacks run on the thread that
 *   made the call that triggers them. Call ct_global_init() before creating
 *   threads.
 *
 * Errors:
 *   Every fallible function returns a ct_err. CT_OK (0) is success; every
 *   failure is negative. Functions that take a `ct_error *err` fill it with
 *   the code, an OS or library error number where one exists, and a message
 *   for humans. `err` may be NULL. The library keeps no global or
 *   thread-local error state. Messages never contain secret material.
 *   If a function that takes a callback returns an error, the callback has
 *   not been called and will not be.
 */
#ifndef CLOUDTASER_COMMON_H
#define CLOUDTASER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define CT_API
#elif defined(__GNUC__) || defined(__clang__)
#define CT_API __attribute__((visibility("default")))
#else
#define CT_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CT_NODISCARD __attribute__((warn_unused_result))
#else
#define CT_NODISCARD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The error list. ABI: append only; a value is never renumbered or reused.
 * X(NAME, value, message)
 */
#define CT_ERROR_LIST(X)                                                     \
    X(OK, 0, "success")                                                      \
    X(E_INVALID, -1, "invalid argument")                                     \
    X(E_NOMEM, -2, "out of memory")                                          \
    X(E_VERSION, -3, "unsupported structure or protocol version")            \
    X(E_UNSUPPORTED, -4, "operation not supported")                          \
    X(E_INTERNAL, -5, "internal error")                                      \
    X(E_STATE, -6, "object is in the wrong state for this call")            \
    X(E_IO, -20, "input/output error")                                       \
    X(E_TIMEOUT, -21, "operation timed out")                                 \
    X(E_CLOSED, -22, "connection closed by peer")                            \
    X(E_AGAIN, -23, "operation would block")                                 \
    X(E_REFUSED, -24, "connection refused")                                  \
    X(E_RESOLVE, -25, "host name could not be resolved")                     \
    X(E_RESET, -26, "connection reset by peer")                              \
    X(E_ADDRINUSE, -27, "address already in use")                            \
    X(E_TLS, -40, "TLS failure")                                             \
    X(E_CERT, -41, "peer certificate verification failed")                  \
    X(E_AUTH, -42, "peer authentication failed")                             \
    X(E_CRYPTO, -43, "cryptographic operation failed")                       \
    X(E_NOTFOUND, -60, "not found")                                          \
    X(E_CONFLICT, -61, "version conflict (check-and-set failed)")            \
    X(E_STORE, -62, "store failure")                                         \
    X(E_DENIED, -63, "permission denied")                                    \
    X(E_PROTO, -80, "protocol violation")                                    \
    X(E_TOOBIG, -81, "message or value too large")

typedef enum ct_err {
#define CT_ERR_ENUM_(name, val, msg) CT_##name = val,
    CT_ERROR_LIST(CT_ERR_ENUM_)
#undef CT_ERR_ENUM_
    CT_E_FORCE_INT32_ = -0x7fffffff /* pins the enum to 32 bits */
} ct_err;

/*
 * Error detail, owned by the caller (typically on the stack). Frozen: this
 * structure never changes size. `message` is always NUL-terminated after a
 * library call that fills it, and never contains secret bytes.
 */
typedef struct ct_error {
    ct_err code;
    int32_t os_error; /* errno, wolfSSL error, HTTP status, ... else 0 */
    char message[256];
} ct_error;

/* A static, human-readable description of `e`. Never NULL. Thread-safe. */
CT_API const char *ct_strerror(ct_err e);

/* The symbolic name of `e` ("CT_E_TIMEOUT"), or "CT_E_UNKNOWN". Thread-safe. */
CT_API const char *ct_err_name(ct_err e);

/* Resets `err` to CT_OK with an empty message. NULL is a no-op. */
CT_API void ct_error_clear(ct_error *err);

/*
 * Frees a plain (non-secret) buffer or string that the library returned
 * through an out-parameter documented as "free with ct_free()". NULL is a
 * no-op. Thread-safe.
 */
CT_API void ct_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
