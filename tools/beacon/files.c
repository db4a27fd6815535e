/*
 * files.c - the certificate and key files. The key is read with read(2)
 * straight into a ct_secret, so no stdio buffer or heap copy ever holds it.
 */
#include "beacon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads up to cap bytes; returns the count or -1 (errno). */
static ssize_t read_full(int fd, uint8_t *p, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, p + got, cap - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Opens a regular, non-empty file of at most max bytes. Returns fd or -1. */
static int open_regular(const char *what, const char *path, size_t max, struct stat *st,
                        char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(why, why_len, "cannot open %s file %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        snprintf(why, why_len, "cannot stat %s file %s: %s", what, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, why_len, "%s file %s is not a regular file", what, path);
        goto fail;
    }
    if (st->st_size <= 0 || (uint64_t)st->st_size > max) {
        snprintf(why, why_len, "%s file %s has %lld bytes (expected 1..%zu)", what, path,
                 (long long)st->st_size, max);
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

int bcn_read_cert(const char *path, uint8_t **out, size_t *len, char *why, size_t why_len)
{
    struct stat st;
    uint8_t *buf = NULL;
    ssize_t got;
    int fd, rc = -1;

    *out = NULL;
    *len = 0;
    if ((fd = open_regular("certificate", path, BCN_CERT_MAX, &st, why, why_len)) < 0)
        return -1;
    if (!(buf = malloc((size_t)st.st_size))) {
        snprintf(why, why_len, "out of memory reading %s", path);
        goto out;
    }
    got = read_full(fd, buf, (size_t)st.st_size);
    if (got <= 0) {
        snprintf(why, why_len, "cannot read certificate file %s: %s", path,
                 got < 0 ? strerror(errno) : "empty");
        goto out;
    }
    *out = buf;
    *len = (size_t)got;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

int bcn_read_key(const char *path, ct_secret **out, char *why, size_t why_len)
{
    struct stat st;
    ct_secret *s = NULL;
    ct_error err;
    ssize_t got;
    uint8_t extra = 0;
    int fd, rc = -1;

    *out = NULL;
    if ((fd = open_regular("key", path, BCN_KEY_MAX, &st, why, why_len)) < 0)
        return -1;
    /* checked on the open file, so a swapped path cannot slip past */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(why, why_len,
                 "key file %s is accessible by group or others (mode %04o); "
                 "refusing to use it: run chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (ct_secret_new((size_t)st.st_size, &s, &err) != CT_OK) {
        snprintf(why, why_len, "key file %s: %s", path, err.message);
        goto out;
    }
    got = read_full(fd, ct_secret_data(s), ct_secret_len(s));
    if (got <= 0) {
        snprintf(why, why_len, "cannot read key file %s: %s", path,
                 got < 0 ? strerror(errno) : "empty");
        goto out;
    }
    if ((size_t)got < ct_secret_len(s) && ct_secret_truncate(s, (size_t)got) != CT_OK) {
        snprintf(why, why_len, "key file %s: truncate failed", path);
        goto out;
    }
    if ((size_t)got == (size_t)st.st_size && read_full(fd, &extra, 1) != 0) {
        snprintf(why, why_len, "key file %s grew while it was read; try again", path);
        goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    ct_secure_wipe(&extra, sizeof extra);
    ct_secret_free(s);
    close(fd);
    return rc;
}

int bcn_write_public(const char *path, const void *data, size_t len, char *why,
                     size_t why_len)
{
    char tmp[4096];
    const uint8_t *p = data;
    int fd, n;

    n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        snprintf(why, why_len, "path too long: %s", path);
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(why, why_len, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(why, why_len, "cannot write %s: %s", tmp, strerror(errno));
            goto fail;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fchmod(fd, 0644) != 0) { /* the umask may have narrowed it */
        snprintf(why, why_len, "cannot chmod %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(why, why_len, "cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(why, why_len, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}
