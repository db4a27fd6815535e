/* bench_util.c - see bench.h. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 16384

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_secs(int64_t from_ns, int64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1e9;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ct-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile of a sorted array. */
double bench_percentile(double *v, size_t n, double p)
{
    size_t k;
    if (n == 0)
        return 0;
    k = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/* ---- sockets ---- */

void bench_set_timeouts(int fd, int seconds)
{
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void bench_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return;
    fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int bench_listen(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in a = loopback(port);
    socklen_t sl = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &sl) < 0) {
        close(fd);
        return -1;
    }
    if (bound)
        *bound = ntohs(a.sin_port);
    return fd;
}

int bench_connect(uint16_t port)
{
    struct sockaddr_in a = loopback(port);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bench_set_timeouts(fd, BENCH_IO_TIMEOUT_S);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int bench_connect_nb(uint16_t port)
{
    struct sockaddr_in a = loopback(port);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

void bench_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int bench_write_port_file(const char *path, uint16_t port)
{
    char tmp[4096];
    FILE *f;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%u\n", (unsigned)port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

void bench_random(void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = getrandom(b, n, 0);
        if (r <= 0)
            bench_die("getrandom failed");
        b += r;
        n -= (size_t)r;
    }
}

/* ---- /proc ---- */

double bench_proc_cpu(int pid)
{
    char path[64], buf[4096], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p)
        return -1;
    /* after ")": field 3 (state) ... field 14 utime, 15 stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) !=
        2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long bench_proc_rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

double bench_pids_cpu(const char *pids)
{
    double sum = 0;
    const char *p = pids;
    while (p && *p) {
        char *end;
        long pid = strtol(p, &end, 10);
        double c;
        if (end == p)
            break;
        c = bench_proc_cpu((int)pid);
        if (c < 0)
            return -1;
        sum += c;
        p = *end == ',' ? end + 1 : end;
    }
    return sum;
}

/* ---- TLS ---- */

int bench_parse_cipher(const char *s, bench_cipher *out)
{
    if (strcmp(s, "chacha20") == 0)
        *out = CIPHER_CHACHA;
    else if (strcmp(s, "aes128gcm") == 0)
        *out = CIPHER_AES128;
    else
        return -1;
    return 0;
}

int bench_parse_group(const char *s, bench_group *out)
{
    if (strcmp(s, "x25519") == 0)
        *out = GROUP_X25519;
    else if (strcmp(s, "p256") == 0)
        *out = GROUP_P256;
    else
        return -1;
    return 0;
}

const char *bench_cipher_wolf(bench_cipher c)
{
    return c == CIPHER_CHACHA ? "TLS13-CHACHA20-POLY1305-SHA256" : "TLS13-AES128-GCM-SHA256";
}

WOLFSSL_CTX *bench_client_ctx(bench_cipher c, bench_group g)
{
    int group = g == GROUP_X25519 ? WOLFSSL_ECC_X25519 : WOLFSSL_ECC_SECP256R1;
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    if (!ctx)
        bench_die("wolfSSL_CTX_new failed");
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    if (wolfSSL_CTX_set_cipher_list(ctx, bench_cipher_wolf(c)) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(ctx, &group, 1) != WOLFSSL_SUCCESS)
        bench_die("cannot set the client's suite or group");
    wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    return ctx;
}

WOLFSSL_CTX *bench_server_ctx(const char *cert_pem, const char *key_pem)
{
    int groups[2] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
    if (!ctx)
        bench_die("wolfSSL_CTX_new failed");
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    if (wolfSSL_CTX_set_cipher_list(ctx, "TLS13-CHACHA20-POLY1305-SHA256:"
                                         "TLS13-AES128-GCM-SHA256") != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(ctx, groups, 2) != WOLFSSL_SUCCESS)
        bench_die("cannot set the server's suites or groups");
    wolfSSL_CTX_no_ticket_TLSv13(ctx);
    wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert_pem) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_PrivateKey_file(ctx, key_pem, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        bench_die("cannot load %s / %s", cert_pem, key_pem);
    return ctx;
}

WOLFSSL *bench_tls_connect(WOLFSSL_CTX *ctx, int fd)
{
    WOLFSSL *ssl = wolfSSL_new(ctx);
    if (!ssl)
        return NULL;
    if (wolfSSL_set_fd(ssl, fd) != WOLFSSL_SUCCESS || wolfSSL_connect(ssl) != WOLFSSL_SUCCESS) {
        wolfSSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int bench_ep_write_all(bench_ep *e, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        size_t k = n > CHUNK ? CHUNK : n;
        ssize_t w;
        if (e->ssl) {
            int r = wolfSSL_write(e->ssl, b, (int)k);
            if (r <= 0)
                return -1;
            w = r;
        } else {
            w = send(e->fd, b, k, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static ssize_t ep_read(bench_ep *e, void *p, size_t n)
{
    if (e->ssl) {
        int r = wolfSSL_read(e->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
        return r > 0 ? r : -1;
    }
    for (;;) {
        ssize_t r = recv(e->fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        return r > 0 ? r : -1;
    }
}

int bench_ep_read_exact(bench_ep *e, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = ep_read(e, b, n);
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

void bench_ep_drain(bench_ep *e)
{
    uint8_t buf[4096];
    for (int i = 0; i < 1024; i++)
        if (ep_read(e, buf, sizeof buf) <= 0)
            break;
}

void bench_ep_shutdown(bench_ep *e)
{
    if (e->ssl)
        wolfSSL_shutdown(e->ssl);
    else
        shutdown(e->fd, SHUT_WR);
}

void bench_ep_close(bench_ep *e)
{
    if (e->ssl)
        wolfSSL_free(e->ssl);
    if (e->fd >= 0)
        close(e->fd);
    e->ssl = NULL;
    e->fd = -1;
}

static uint8_t payload[CHUNK];

int bench_stream_send(bench_ep *e, uint64_t bytes, double *secs)
{
    uint8_t hdr[8], ack;
    uint64_t left = bytes;
    int64_t t0;
    static int filled;
    if (!filled) {
        bench_random(payload, sizeof payload);
        filled = 1;
    }
    for (int i = 0; i < 8; i++)
        hdr[i] = (uint8_t)(bytes >> (8 * i));
    t0 = bench_now_ns();
    if (bench_ep_write_all(e, hdr, sizeof hdr) < 0)
        return -1;
    while (left > 0) {
        size_t k = left > CHUNK ? CHUNK : (size_t)left;
        if (bench_ep_write_all(e, payload, k) < 0)
            return -1;
        left -= k;
    }
    if (bench_ep_read_exact(e, &ack, 1) < 0 || ack != 'A')
        return -1;
    *secs = bench_secs(t0, bench_now_ns());
    return 0;
}

int bench_stream_recv(bench_ep *e, uint64_t *bytes)
{
    uint8_t hdr[8], buf[65536];
    uint64_t n = 0, got = 0;
    if (bench_ep_read_exact(e, hdr, sizeof hdr) < 0)
        return -1;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)hdr[i] << (8 * i);
    while (got < n) {
        size_t want = n - got > sizeof buf ? sizeof buf : (size_t)(n - got);
        ssize_t r = ep_read(e, buf, want);
        if (r <= 0)
            return -1;
        got += (uint64_t)r;
    }
    if (bench_ep_write_all(e, "A", 1) < 0)
        return -1;
    *bytes = got;
    return 0;
}
