/*
 * bench.h - helpers shared by the ct-bench subcommands: clocks, loopback
 * sockets, small wolfSSL endpoints (the load generators and the TLS sink
 * talk to wolfSSL directly so the cipher suite and key-exchange group can be
 * forced), /proc readings and statistics.
 *
 * Everything here connects to or listens on 127.0.0.1 only.
 */
#ifndef CT_BENCH_H
#define CT_BENCH_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <stddef.h>
#include <stdint.h>

#define BENCH_HOST "127.0.0.1"
#define BENCH_IO_TIMEOUT_S 30 /* every blocking socket gets SO_RCVTIMEO/SNDTIMEO */

/* ---- clocks ---- */
int64_t bench_now_ns(void);
double bench_secs(int64_t from_ns, int64_t to_ns);

/* ---- errors ---- */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- statistics ---- */
double bench_median(double *v, size_t n);        /* sorts v */
double bench_percentile(double *v, size_t n, double p); /* v sorted, p in [0,100] */

/* ---- sockets (127.0.0.1) ---- */
int bench_listen(uint16_t port, uint16_t *bound);
int bench_connect(uint16_t port);                 /* blocking, with I/O timeouts */
int bench_connect_nb(uint16_t port);              /* non-blocking, connect in progress */
void bench_set_timeouts(int fd, int seconds);
void bench_set_nonblock(int fd, int on);
void bench_raise_nofile(void);
int bench_write_port_file(const char *path, uint16_t port);
void bench_random(void *p, size_t n);

/* ---- /proc ---- */
/* utime + stime of a process (all threads), in seconds; -1 if unreadable. */
double bench_proc_cpu(int pid);
/* VmRSS in KiB; -1 if unreadable. */
long bench_proc_rss_kib(int pid);
/* Sum of bench_proc_cpu over a comma-separated pid list. */
double bench_pids_cpu(const char *pids);

/* ---- TLS endpoints ---- */
typedef enum { CIPHER_CHACHA = 0, CIPHER_AES128 = 1 } bench_cipher;
typedef enum { GROUP_X25519 = 0, GROUP_P256 = 1 } bench_group;

int bench_parse_cipher(const char *s, bench_cipher *out);
int bench_parse_group(const char *s, bench_group *out);
const char *bench_cipher_wolf(bench_cipher c); /* wolfSSL suite name */

/*
 * A load-generator client context: TLS 1.3 only, exactly one suite and one
 * group offered (so the server must use them), no resumption, and no chain
 * verification (a load generator checks nothing; this keeps its CPU cost
 * the same for every server and as low as wolfSSL allows).
 */
WOLFSSL_CTX *bench_client_ctx(bench_cipher c, bench_group g);
/* A TLS 1.3 server context (the sink): both suites and both groups. */
WOLFSSL_CTX *bench_server_ctx(const char *cert_pem, const char *key_pem);

/* One byte stream: TLS when ssl != NULL, else plain TCP. */
typedef struct bench_ep {
    int fd;
    WOLFSSL *ssl;
} bench_ep;

/* Blocking I/O on an endpoint. Return 0 on success, -1 on error/EOF. */
int bench_ep_write_all(bench_ep *e, const void *p, size_t n);
int bench_ep_read_exact(bench_ep *e, void *p, size_t n);
/* Reads and drops until end of stream (bounded by the socket timeout). */
void bench_ep_drain(bench_ep *e);
/* close_notify (TLS) or SHUT_WR (plain). */
void bench_ep_shutdown(bench_ep *e);
void bench_ep_close(bench_ep *e);

/* Blocking TLS client over a connected socket; NULL on failure. */
WOLFSSL *bench_tls_connect(WOLFSSL_CTX *ctx, int fd);

/* The throughput protocol (both directions of bench_send/bench_recv):
 * 8-byte little-endian length, that many bytes, then a 1-byte ack back. */
int bench_stream_send(bench_ep *e, uint64_t bytes, double *secs);
int bench_stream_recv(bench_ep *e, uint64_t *bytes);

#endif
