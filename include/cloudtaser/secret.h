/*
 * cloudtaser/secret.h - secret hygiene: a wipe the optimiser cannot remove,
 * constant-time comparison, and ct_secret, a buffer for key material.
 *
 * A ct_secret's bytes live in their own anonymous mapping that is excluded
 * from core dumps (MADV_DONTDUMP) and, where the RLIMIT_MEMLOCK budget
 * allows, locked into RAM (mlock) so it is never swapped. The bytes are wiped
 * when the secret is freed. There is no formatting path for a ct_secret.
 */
#ifndef CLOUDTASER_SECRET_H
#define CLOUDTASER_SECRET_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Overwrites p[0..n) with zeros; never removed by the compiler. NULL/0 ok. */
CT_API void ct_secure_wipe(void *p, size_t n);

/*
 * Compares a and b in time that depends only on n. Returns 1 when equal,
 * 0 otherwise.
 */
CT_API CT_NODISCARD int ct_memeq(const void *a, const void *b, size_t n);

typedef struct ct_secret ct_secret;

/* Largest secret accepted: 16 MiB. */
#define CT_SECRET_MAX ((size_t)16 << 20)

/*
 * Allocates a zero-filled secret of `len` bytes (len may be 0).
 * Free with ct_secret_free(). Errors: CT_E_INVALID, CT_E_TOOBIG, CT_E_NOMEM.
 */
CT_API ct_err ct_secret_new(size_t len, ct_secret **out, ct_error *err);

/* Copies p[0..len) into a new secret. The caller still owns (and should wipe) p. */
CT_API ct_err ct_secret_from(const void *p, size_t len, ct_secret **out, ct_error *err);

/* Copies a secret. */
CT_API ct_err ct_secret_dup(const ct_secret *s, ct_secret **out, ct_error *err);

/*
 * The secret's bytes, borrowed until ct_secret_free(). One extra zero byte
 * always follows the data, so text secrets may be used as C strings.
 */
CT_API uint8_t *ct_secret_data(const ct_secret *s);
CT_API size_t ct_secret_len(const ct_secret *s);

/* 1 if the bytes are locked in RAM, 0 if locking was not possible. */
CT_API int ct_secret_is_locked(const ct_secret *s);

/*
 * Shrinks the visible length (the bytes past it are wiped). Growing is an
 * error: CT_E_INVALID.
 */
CT_API ct_err ct_secret_truncate(ct_secret *s, size_t len);

/* Wipes and frees. NULL is a no-op. */
CT_API void ct_secret_free(ct_secret *s);

/* ct_secret_read_file flag: strip leading and trailing ASCII whitespace. */
#define CT_SECRET_FILE_TRIM 0x1u

/*
 * Reads a whole small file (a token, a key, a kubeconfig) straight into a
 * new secret, so its contents never pass through an unwiped buffer. `what`
 * names the file in error messages ("token file"; NULL: "file"). The file
 * must be a regular file of at most `max` bytes (at most CT_SECRET_MAX); a
 * file that grows while being read is refused. `flags`: 0 or
 * CT_SECRET_FILE_TRIM. The result may be empty (check ct_secret_len);
 * a zero byte follows the data as always.
 *
 * Ownership: *out is the caller's (ct_secret_free); NULL on error.
 * Errors: CT_E_INVALID (NULL argument, unknown flag), CT_E_NOTFOUND (no such
 * file), CT_E_DENIED (permission), CT_E_TOOBIG (larger than max), CT_E_IO
 * (not a regular file, read error, changed while read), CT_E_NOMEM.
 * Thread-safety: safe from any thread.
 */
CT_API ct_err ct_secret_read_file(const char *path, size_t max, const char *what,
                                  unsigned flags, ct_secret **out, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
