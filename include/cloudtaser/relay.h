/*
 * cloudtaser/relay.h - the beacon: a stateless TLS pairing relay
 * (ct_relay_*), and the peer side that connects to one (ct_beacon_connect).
 * The wire protocol is in docs/PROTOCOL.md, section 1.
 */
#ifndef CLOUDTASER_RELAY_H
#define CLOUDTASER_RELAY_H

#include "common.h"
#include "context.h"
#include "secret.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants (PROTOCOL.md 1.2, 1.3) ---- */
#define CT_BEACON_HELLO_LEN 40
#define CT_BEACON_VERSION 1

typedef enum ct_beacon_role {
    CT_ROLE_OPERATOR = 1, /* the cluster side */
    CT_ROLE_BRIDGE = 2,   /* the store side */
    CT_ROLE_FORCE_INT32_ = 0x7fffffff
} ct_beacon_role;

typedef enum ct_beacon_status {
    CT_BEACON_WAITING = 0x01,
    CT_BEACON_PAIRED = 0x02,
    CT_BEACON_BAD_HELLO = 0x10,
    CT_BEACON_ROOM_BUSY = 0x11,
    CT_BEACON_RATE_LIMITED = 0x12,
    CT_BEACON_DRAINING = 0x13,
    CT_BEACON_TIMEOUT = 0x14,
    CT_BEACON_OVERLOADED = 0x15,
    CT_BEACON_BAD_VERSION = 0x16,
    CT_BEACON_STATUS_FORCE_INT32_ = 0x7fffffff
} ct_beacon_status;

/*
 * Encodes a hello into out (CT_BEACON_HELLO_LEN bytes). Errors: CT_E_INVALID.
 * Thread-safe.
 */
CT_API ct_err ct_beacon_hello_encode(ct_beacon_role role, const uint8_t room[32],
                                     uint8_t out[CT_BEACON_HELLO_LEN]);

/*
 * Parses a hello of exactly CT_BEACON_HELLO_LEN bytes. On error *status
 * tells which refusal the beacon sends (CT_BEACON_BAD_HELLO or
 * CT_BEACON_BAD_VERSION) and the return is CT_E_PROTO or CT_E_VERSION
 * (CT_E_INVALID for NULL arguments). On success *status is
 * CT_BEACON_WAITING. `status` may be NULL. Checks in order: length and
 * magic, version (a different version is VERSION whatever follows), role,
 * flags. Thread-safe; never reads past len.
 */
CT_API ct_err ct_beacon_hello_decode(const uint8_t *in, size_t len, ct_beacon_role *role,
                                     uint8_t room[32], ct_beacon_status *status);

/*
 * A static name for a status byte, as in PROTOCOL.md 1.3 ("PAIRED",
 * "ROOM_BUSY", ..., "VERSION" for CT_BEACON_BAD_VERSION; "UNKNOWN").
 */
CT_API const char *ct_beacon_status_name(int status);

/* ---- the peer side ---- */

#define CT_BEACON_OPTIONS_VERSION 1
typedef struct ct_beacon_options {
    uint32_t version;              /* CT_BEACON_OPTIONS_VERSION */
    const char *host;              /* required; copied */
    uint16_t port;                 /* 0: 443 */
    /* How to verify the beacon (at least one): */
    const char *ca_file;           /* PEM bundle */
    const uint8_t *ca;             /* PEM or DER */
    size_t ca_len;
    int use_system_ca;             /* the operating system's CA bundle */
    const uint8_t *pin_sha256;     /* SHA-256 of the beacon's SPKI DER (32 bytes) */
    const char *server_name;       /* name to verify (and SNI); NULL: host */
    int connect_timeout_ms;        /* TCP + TLS + hello; 0: 10000 */
    int pair_timeout_ms;           /* waiting for a partner; 0: 60000 */
    ct_transport *transport;       /* NULL: TCP (borrowed) */
} ct_beacon_options;

#define CT_BEACON_OPTIONS_INIT { .version = CT_BEACON_OPTIONS_VERSION }

/*
 * Connects to a beacon, verifies it, sends the hello for (role, room), and
 * waits until the beacon pairs this peer (ignoring keepalives). Returns the
 * connection, positioned right after PAIRED: every byte from now on comes
 * from the partner, so the caller runs its own TLS over *out.
 * Deadlines: TCP, TLS, the hello and the beacon's first status byte within
 * connect_timeout_ms; then PAIRED within pair_timeout_ms. Blocks the
 * calling thread meanwhile. *out owns the TLS session and its
 * configuration (it is not itself a TLS connection for ct_tls_cipher).
 * Errors: CT_E_REFUSED with err->os_error = the beacon's refusal status
 * (ROOM_BUSY, RATE_LIMITED, DRAINING, OVERLOADED, ...), CT_E_TIMEOUT (no
 * partner within pair_timeout_ms: os_error 0; the beacon's TIMEOUT:
 * os_error 0x14), CT_E_CERT (the beacon failed verification), CT_E_PROTO
 * (unexpected status byte), CT_E_CLOSED (closed before PAIRED without a
 * status: treat like OVERLOADED and retry later), CT_E_INVALID (no way to
 * verify the beacon, bad role), transport errors.
 */
CT_API ct_err ct_beacon_connect(ct_ctx *ctx, const ct_beacon_options *opts,
                                ct_beacon_role role, const uint8_t room[32],
                                ct_conn **out, ct_error *err);

/*
 * ct_beacon_connect in two steps, so the outer connection can be made
 * ahead of time (the operator opens the one for its operational room while
 * its bootstrap runs). ct_beacon_open: TCP + TLS, the beacon verified, no
 * hello yet (within connect_timeout_ms); the beacon closes a connection
 * that sends no hello within its hello deadline (10 s by default), so join
 * soon. ct_beacon_join: sends the hello on a connection from
 * ct_beacon_open and waits for PAIRED as ct_beacon_connect does; on error
 * the caller still owns `c` and should free it. Errors: as
 * ct_beacon_connect; CT_E_INVALID if `c` does not come from
 * ct_beacon_open.
 */
CT_API ct_err ct_beacon_open(ct_ctx *ctx, const ct_beacon_options *opts, ct_conn **out,
                             ct_error *err);
CT_API ct_err ct_beacon_join(ct_conn *c, const ct_beacon_options *opts, ct_beacon_role role,
                             const uint8_t room[32], ct_error *err);

/* ---- the beacon ---- */

/*
 * The beacon (relay) server.
 *
 * Threads: ct_relay_serve runs `threads` event-loop workers: threads - 1 new
 * threads plus the calling thread. Each worker has its own epoll instance
 * and its own listening socket on the shared port (SO_REUSEPORT, so the
 * kernel spreads new connections over the workers); there is no thread per
 * connection. All peers of one room live on one worker (chosen by a keyed
 * hash of the room), so pairing and relaying take no locks. The new
 * threads start with every signal blocked, so asynchronous signals are
 * delivered to the application's own threads; the library installs no
 * signal handler.
 *
 * Which calls may run concurrently with ct_relay_serve, from any thread:
 * ct_relay_port, ct_relay_get_stats, ct_relay_reload_cert, ct_relay_drain
 * and ct_relay_stop (the last two also from a signal handler). Everything
 * else (ct_relay_free) only when serve is not running. serve may be called
 * once per relay.
 *
 * Limits (PROTOCOL.md 1.6) are always on; 0 in an option means the default.
 *  - Global connection cap: a connection accepted while max_conns are open
 *    is closed at once, before any TLS (an overloaded beacon should not
 *    spend a handshake on a refusal); counted in refused_overloaded and
 *    closed_without_status. OVERLOADED as a status byte is sent when the
 *    beacon cannot allocate what a room needs.
 *  - Per source address (IPv4-mapped IPv6 counts as IPv4): at most
 *    max_conns_per_ip open connections and accept_rate_per_ip new ones per
 *    second (token bucket, burst 2x). Over either, the peer gets the TLS
 *    handshake and RATE_LIMITED, but each address gets at most 2 such
 *    status refusals per second (burst 8): beyond that its connections are
 *    closed right after accept (closed_without_status), so one address
 *    cannot make the beacon do handshakes at will.
 *  - Waiting peers per room: max_waiting_per_room bridge-side, one
 *    operator-side; more get ROOM_BUSY.
 * Memory is bounded by these caps: one connection costs a wolfSSL session
 * (about 57 KiB with Debian's wolfSSL, about 8 KiB with the lean build of
 * scripts/build-tuned-wolfssl.sh --lean) plus, only while a direction has a
 * record in flight, one 16 KiB buffer; rooms and the address table are
 * bounded by the connection cap.
 *
 * Session log: session_log is called with one JSON object (no newline) per
 * finished paired session
 *   {"ts":<unix ms>,"event":"session","room":"<8 hex>","duration_ms":N,
 *    "bytes_op_to_br":N,"bytes_br_to_op":N,"end":"close|reset|linger|drain|stop"}
 * ("close": both directions ended with close_notify; "reset": one side
 * aborted (reset, TLS error, FIN without close_notify); "linger": the linger
 * deadline after a half-close; "drain": the drain deadline; "stop":
 * ct_relay_stop; paired sessions have no idle timeout, so "timeout" does not
 * occur) and per refusal sent as a status
 *   {"ts":..,"event":"refusal","status":"ROOM_BUSY","role":"operator|bridge|-",
 *    "room":"<8 hex>|-"}
 * It never carries a source address or more than 8 hex digits of a room
 * hash. It is called on worker threads, possibly several at once, so it
 * must be thread-safe, and it must not call back into the relay except
 * ct_relay_get_stats/drain/stop. The line is borrowed for the call.
 */
typedef struct ct_relay ct_relay;

/*
 * What 0 in an option means (the defaults documented below), for tools that
 * show them. The relay uses exactly these.
 */
#define CT_RELAY_DEFAULT_HELLO_TIMEOUT_MS 10000
#define CT_RELAY_DEFAULT_WAIT_TIMEOUT_MS 900000
#define CT_RELAY_DEFAULT_KEEPALIVE_MS 20000
#define CT_RELAY_DEFAULT_LINGER_MS 10000
#define CT_RELAY_DEFAULT_DRAIN_TIMEOUT_MS 30000
#define CT_RELAY_DEFAULT_MAX_CONNS 100000u
#define CT_RELAY_DEFAULT_MAX_CONNS_PER_IP 64u
#define CT_RELAY_DEFAULT_ACCEPT_RATE_PER_IP 20u
#define CT_RELAY_DEFAULT_MAX_WAITING_PER_ROOM 8u
/* The most threads a relay runs (a larger `threads` is CT_E_INVALID). */
#define CT_RELAY_MAX_THREADS 256

#define CT_RELAY_OPTIONS_VERSION 1
typedef struct ct_relay_options {
    uint32_t version;               /* CT_RELAY_OPTIONS_VERSION */
    const char *listen_host;        /* NULL: all addresses (dual stack); numeric */
    uint16_t listen_port;           /* 0: pick a free port (tests) */
    const uint8_t *cert;            /* PEM/DER; chain allowed in PEM */
    size_t cert_len;
    const ct_secret *key;           /* PEM/DER private key */
    int threads;                    /* 0: one per online CPU (max 256) */
    int hello_timeout_ms;           /* TCP accept to complete hello; 0: 10000 */
    int wait_timeout_ms;            /* 0: 900000 */
    int keepalive_ms;               /* 0: 20000 */
    int linger_ms;                  /* 0: 10000 */
    int drain_timeout_ms;           /* 0: 30000 */
    uint32_t max_conns;             /* 0: 100000 */
    uint32_t max_conns_per_ip;      /* 0: 64 */
    uint32_t accept_rate_per_ip;    /* per second; 0: 20 (burst 2x) */
    uint32_t max_waiting_per_room;  /* bridge side; 0: 8 */
    /* One JSON line per finished session or refusal (see above); may be NULL. */
    void (*session_log)(void *user, const char *json_line);
    void *session_log_user;
} ct_relay_options;

#define CT_RELAY_OPTIONS_INIT { .version = CT_RELAY_OPTIONS_VERSION }

/*
 * Counters (monotonic unless noted). Grows only at the end (pre-release:
 * the fields after `paired_sessions` were added with the server).
 */
typedef struct ct_relay_stats {
    uint64_t accepted,     /* TCP connections accepted */
        handshakes_failed, /* TLS handshake failed (garbage, wrong version, peer left) */
        hellos_bad,        /* BAD_HELLO sent: malformed hello or data before PAIRED */
        refused_room_busy, refused_rate_limited,
        refused_overloaded, /* global cap (closed at accept) or allocation failure */
        refused_draining,
        timeouts,           /* hello deadline missed, or waited longer than wait_timeout */
        pairs, bytes_relayed;
    uint32_t conns_open, waiting, paired_sessions; /* gauges */
    uint32_t rooms;                                /* gauge: rooms with a waiting peer */
    uint64_t refused_version,       /* VERSION sent */
        refused_ip_conns,           /* part of refused_rate_limited: per-address cap */
        refused_ip_rate,            /* part of refused_rate_limited: accept rate */
        closed_without_status,      /* refusals closed right after accept, no TLS */
        aborts,                     /* paired sessions ended by a reset or TLS error */
        half_closes,                /* close_notify relayed (one per direction) */
        accept_errors;              /* accept() failures (e.g. out of fds: accepts pause) */
} ct_relay_stats;

/*
 * Creates a relay and binds its listening socket(s) (so the port is known
 * before serving). Options are copied; cert and key are loaded into a TLS
 * configuration here (wolfSSL keeps its own copy of the key until the relay
 * is freed or the certificate reloaded). With a non-zero listen_port, a
 * port that another socket listens on is CT_E_ADDRINUSE (checked before
 * the SO_REUSEPORT group is formed, so a second beacon on the same port
 * is refused rather than silently sharing connections).
 * Errors: CT_E_INVALID, CT_E_VERSION, CT_E_CERT, CT_E_ADDRINUSE, CT_E_IO,
 * CT_E_NOMEM.
 */
CT_API ct_err ct_relay_new(ct_ctx *ctx, const ct_relay_options *opts, ct_relay **out,
                           ct_error *err);

/* The bound port. Thread-safe. */
CT_API uint16_t ct_relay_port(const ct_relay *r);

/*
 * Serves until ct_relay_stop, or until a drain started by ct_relay_drain
 * finishes. Starts opts->threads - 1 worker threads and uses the calling
 * thread as one more; all are joined before it returns. Threads that did
 * ECDH free wolfSSL's per-thread cache before exiting. Returns CT_OK after
 * stop or drain; CT_E_STATE if called a second time; CT_E_NOMEM/CT_E_IO if
 * the threads could not be started (then nothing is served).
 */
CT_API ct_err ct_relay_serve(ct_relay *r, ct_error *err);

/*
 * Starts a drain: stop accepting, tell waiting peers DRAINING, let paired
 * sessions finish until the drain deadline. Async-signal-safe (it writes to
 * an eventfd), so a SIGTERM handler may call it. May be called before
 * serve (serve then drains at once).
 */
CT_API void ct_relay_drain(ct_relay *r);

/* Stops at once (closes everything, no statuses). Async-signal-safe. */
CT_API void ct_relay_stop(ct_relay *r);

/*
 * Replaces the certificate and key for new connections (SIGHUP). Existing
 * sessions keep the configuration they were accepted with (reference
 * counted). Thread-safe; not async-signal-safe. Errors: CT_E_CERT,
 * CT_E_INVALID, CT_E_NOMEM.
 */
CT_API ct_err ct_relay_reload_cert(ct_relay *r, const uint8_t *cert, size_t cert_len,
                                   const ct_secret *key, ct_error *err);

/* A snapshot of the counters (each read atomically). Thread-safe. */
CT_API void ct_relay_get_stats(const ct_relay *r, ct_relay_stats *out);

/* Frees a relay that is not serving. NULL is a no-op. */
CT_API void ct_relay_free(ct_relay *r);

#ifdef __cplusplus
}
#endif
#endif
