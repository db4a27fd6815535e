/* testutil.c - helpers shared by the test programs. */
#include "testutil.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void log_stderr(void *user, ct_log_level level, const char *msgid, const char *msg)
{
    (void)user;
    fprintf(stderr, "[%d] %s: %s\n", (int)level, msgid, msg);
}

const char *ct_test_msg(const ct_error *err)
{
    return err ? err->message : "";
}

ct_ctx *ct_test_ctx(void)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    o.log = log_stderr;
    o.log_level = CT_LOG_WARNING;
    o.io_timeout_ms = 10000;
    if (ct_ctx_new(&o, &ctx, NULL) != CT_OK)
        abort();
    return ctx;
}

char *ct_test_tmpfile(const void *data, size_t len)
{
    char tmpl[] = "/tmp/cloudtaser-test-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        abort();
    if (len && write(fd, data, len) != (ssize_t)len)
        abort();
    close(fd);
    return strdup(tmpl);
}

char *ct_test_tmpdir(void)
{
    char tmpl[] = "/tmp/cloudtaser-test-XXXXXX";
    if (!mkdtemp(tmpl))
        abort();
    return strdup(tmpl);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void ct_test_rmrf(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int ct_test_under_valgrind(void)
{
    return getenv("CT_UNDER_VALGRIND") != NULL;
}
