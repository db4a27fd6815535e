/*
 * beacon_testlib.h - test support for the beacon: an in-memory test PKI, a
 * relay running on a thread, a captured session log, and a minimal
 * non-blocking wolfSSL client that speaks the beacon protocol. Every wait
 * is bounded by a deadline.
 */
#ifndef CT_BEACON_TESTLIB_H
#define CT_BEACON_TESTLIB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cloudtaser/cloudtaser.h"

/* A CA and a server certificate for 127.0.0.1 and ::1 (library PKI). */
typedef struct bt_pki {
    uint8_t *ca_der, *cert_der;
    size_t ca_len, cert_len;
    ct_secret *key; /* server key, DER */
    uint8_t spki_sha256[32]; /* pin of the server key */
} bt_pki;

void bt_pki_make(ct_ctx *ctx, bt_pki *p);
void bt_pki_free(bt_pki *p);

/* Captured session_log lines. */
typedef struct bt_log {
    pthread_mutex_t mu;
    char *text; /* lines joined with '\n' */
    size_t len, cap;
    int lines;
} bt_log;

void bt_log_init(bt_log *l);
void bt_log_free(bt_log *l);
void bt_log_cb(void *user, const char *line);
/* Number of lines containing `needle` (thread-safe snapshot). */
int bt_log_count(bt_log *l, const char *needle);

/* A relay serving on its own thread. */
typedef struct bt_relay {
    ct_relay *r;
    pthread_t t;
    ct_err serve_rc;
    volatile int done;
    uint16_t port;
} bt_relay;

/* Options with the fixture cert/key, 127.0.0.1 port 0, 2 threads. */
void bt_relay_opts(ct_relay_options *o, const bt_pki *p);
/* Creates and serves a relay; the result is heap-allocated (a serving
 * thread writes into it, so it must not live on a test's stack). */
bt_relay *bt_relay_start(ct_ctx *ctx, const ct_relay_options *o);
/* Waits (bounded) for serve to return; 0 if it did. */
int bt_relay_wait(bt_relay *br, int timeout_ms);
/* Stops (if still running), joins and frees. NULL ok. */
void bt_relay_finish(bt_relay *br);

/* Waits until pred(stats) holds (polling); 0 on success, -1 on timeout. */
int bt_wait_stats(ct_relay *r, int (*pred)(const ct_relay_stats *, void *), void *arg,
                  int timeout_ms);
int bt_wait_open(ct_relay *r, uint32_t conns_open, int timeout_ms);

/* ---- client ---- */

typedef struct bt_client bt_client;

/* A client TLS context that verifies the beacon against ca_der and 127.0.0.1. */
void *bt_client_ctx_new(const uint8_t *ca_der, size_t ca_len);
void bt_client_ctx_free(void *wctx);

int64_t bt_now_ms(void);

/* Non-blocking TCP connect; returns fd or -1. host is a numeric address. */
int bt_tcp_connect(const char *host, uint16_t port, int timeout_ms);

/* TCP + TLS handshake. NULL on failure (*why gets a reason). */
bt_client *bt_connect(void *wctx, const char *host, uint16_t port, int timeout_ms,
                      const char **why);
/* TLS over an already connected fd (owned by the client on success and failure). */
bt_client *bt_connect_fd(void *wctx, int fd, int timeout_ms, const char **why);
int bt_fd(const bt_client *c);
/* Negotiated cipher suite name ("" if none). */
const char *bt_cipher(const bt_client *c);

/* Sends all bytes (one wolfSSL_write per chunk); 0 ok, -1 error/timeout. */
int bt_write(bt_client *c, const void *p, size_t n, int timeout_ms);
/*
 * Reads up to cap bytes: >0 bytes, 0 close_notify, -1 error or EOF without
 * close_notify, -2 timeout.
 */
int bt_read(bt_client *c, void *p, size_t cap, int timeout_ms);
/* Reads exactly n bytes: 0 ok, else as bt_read. */
int bt_read_full(bt_client *c, void *p, size_t n, int timeout_ms);

/* Sends a hello. */
int bt_hello(bt_client *c, ct_beacon_role role, const uint8_t room[32], int timeout_ms);
/* Reads one status byte: the byte, or the bt_read code (0, -1, -2). */
int bt_status(bt_client *c, int timeout_ms);
/* Reads statuses, skipping WAITING, until another byte: the byte or a code. */
int bt_status_skip_waiting(bt_client *c, int timeout_ms);

/* close_notify (flushed) then SHUT_WR. 0 ok. */
int bt_shutdown(bt_client *c, int timeout_ms);

/* Waits for the TCP stream to end after TLS: 0 EOF, 1 bytes arrived, -2 timeout. */
int bt_wait_eof(bt_client *c, int timeout_ms);

/* Frees the TLS object, keeping only the socket (cheap idle peer). */
void bt_drop_tls(bt_client *c);

/* Closes (no close_notify). linger0: RST instead of FIN. NULL ok. */
void bt_close(bt_client *c, int linger0);

/*
 * Full-duplex transfer between several clients in one thread. Each flow
 * sends out[0..out_len) then, if shut, close_notify; and expects in_len
 * bytes (then close_notify if expect_close). Returns 0 when all done.
 */
typedef struct bt_flow {
    bt_client *c;
    const uint8_t *out;
    size_t out_len, out_off;
    int inflight;
    int shut, shut_done;
    uint8_t *in;
    size_t in_len, in_got;
    int expect_close, got_close;
} bt_flow;

int bt_transfer(bt_flow *f, int n, int timeout_ms, const char **why);

void bt_random(uint8_t *p, size_t n);

#endif
