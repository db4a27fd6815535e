/*
 * secret.c - wiping, constant-time comparison and ct_secret.
 *
 * A ct_secret's bytes live in a private anonymous mapping (page granular),
 * marked MADV_DONTDUMP (left out of core dumps) and MADV_WIPEONFORK (a
 * forked child sees zeros), and mlock()ed when the RLIMIT_MEMLOCK budget
 * allows. The header (pointer, length) lives in ordinary heap memory.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct ct_secret {
    uint8_t *data;  /* start of the mapping */
    size_t len;     /* visible length */
    size_t map_len; /* mapping length (multiple of the page size) */
    int locked;
};

void ct_secure_wipe(void *p, size_t n)
{
    if (!p || !n)
        return;
    /*
     * explicit_bzero is documented never to be optimised away. The empty
     * asm with a memory clobber is a second guard against link-time
     * optimisation proving the buffer dead.
     */
    explicit_bzero(p, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

int ct_memeq(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    size_t i;
    if (n == 0)
        return 1;
    if (!a || !b)
        return 0;
    for (i = 0; i < n; i++)
        d |= (uint8_t)(x[i] ^ y[i]);
    /* 1 when d == 0, without a data-dependent branch */
    return (int)(1 & ((uint32_t)(d - 1) >> 8));
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

ct_err ct_secret_new(size_t len, ct_secret **out, ct_error *err)
{
    ct_secret *s;
    size_t pg = page_size(), need;
    void *m;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_secret_new: out is NULL");
    *out = NULL;
    if (len > CT_SECRET_MAX)
        return ctp_err(err, CT_E_TOOBIG, 0, "secret of %zu bytes exceeds the %zu byte limit",
                       len, (size_t)CT_SECRET_MAX);
    s = ctp_calloc(1, sizeof *s);
    if (!s)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    need = len + 1; /* trailing NUL */
    s->map_len = (need + pg - 1) / pg * pg;
    m = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        size_t ml = s->map_len;
        free(s);
        return ctp_err(err, CT_E_NOMEM, e, "cannot map %zu bytes for a secret", ml);
    }
    s->data = m;
    s->len = len;
#ifdef MADV_DONTDUMP
    (void)madvise(m, s->map_len, MADV_DONTDUMP);
#endif
#ifdef MADV_WIPEONFORK
    (void)madvise(m, s->map_len, MADV_WIPEONFORK);
#endif
    s->locked = mlock(m, s->map_len) == 0;
    *out = s;
    return CT_OK;
}

ct_err ct_secret_from(const void *p, size_t len, ct_secret **out, ct_error *err)
{
    ct_err rc;
    if (!p && len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_secret_from: NULL data");
    rc = ct_secret_new(len, out, err);
    if (rc == CT_OK && len)
        memcpy((*out)->data, p, len);
    return rc;
}

ct_err ct_secret_dup(const ct_secret *s, ct_secret **out, ct_error *err)
{
    if (!s)
        return ctp_err(err, CT_E_INVALID, 0, "ct_secret_dup: NULL secret");
    return ct_secret_from(s->data, s->len, out, err);
}

uint8_t *ct_secret_data(const ct_secret *s)
{
    return s ? s->data : NULL;
}

size_t ct_secret_len(const ct_secret *s)
{
    return s ? s->len : 0;
}

int ct_secret_is_locked(const ct_secret *s)
{
    return s ? s->locked : 0;
}

ct_err ct_secret_truncate(ct_secret *s, size_t len)
{
    if (!s || len > s->len)
        return CT_E_INVALID;
    ct_secure_wipe(s->data + len, s->len - len);
    s->len = len;
    return CT_OK;
}

void ct_secret_free(ct_secret *s)
{
    if (!s)
        return;
    ct_secure_wipe(s->data, s->map_len);
    if (s->locked)
        munlock(s->data, s->map_len);
    munmap(s->data, s->map_len);
    free(s);
}

/* ------------------------------------------------------------ files */

static int ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

ct_err ct_secret_read_file(const char *path, size_t max, const char *what, unsigned flags,
                           ct_secret **out, ct_error *err)
{
    struct stat st;
    ct_secret *s = NULL;
    size_t got = 0, a = 0;
    ct_err rc;
    int fd;

    if (out)
        *out = NULL;
    if (!what)
        what = "file";
    if (!path || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_secret_read_file: NULL argument");
    if (flags & ~CT_SECRET_FILE_TRIM)
        return ctp_err(err, CT_E_INVALID, 0, "ct_secret_read_file: unknown flags %#x", flags);
    if (max > CT_SECRET_MAX)
        max = CT_SECRET_MAX;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        return ctp_err(err, e == ENOENT ? CT_E_NOTFOUND : ctp_errno_to_err(e), e,
                       "cannot open the %s %s: %s", what, path, strerror(e));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ctp_err(err, CT_E_IO, 0, "the %s %s is not a regular file", what, path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return ctp_err(err, CT_E_TOOBIG, 0, "the %s %s is larger than %zu bytes", what, path,
                       max);
    }
    /* One byte more than the size: a file that grows meanwhile is noticed. */
    if ((rc = ct_secret_new((size_t)st.st_size + 1, &s, err)) != CT_OK) {
        close(fd);
        return rc;
    }
    for (;;) {
        ssize_t n = read(fd, ct_secret_data(s) + got, ct_secret_len(s) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            ct_secret_free(s);
            return ctp_err(err, CT_E_IO, e, "cannot read the %s %s: %s", what, path,
                           strerror(e));
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == ct_secret_len(s)) {
            close(fd);
            ct_secret_free(s);
            return ctp_err(err, CT_E_IO, 0, "the %s %s changed while being read", what, path);
        }
    }
    close(fd);
    if (flags & CT_SECRET_FILE_TRIM) {
        const uint8_t *p = ct_secret_data(s);
        while (got > 0 && ws(p[got - 1]))
            got--;
        while (a < got && ws(p[a]))
            a++;
        if (a > 0) {
            memmove(ct_secret_data(s), p + a, got - a);
            got -= a;
        }
    }
    (void)ct_secret_truncate(s, got);
    *out = s;
    return CT_OK;
}
