/*
 * http_internal.h - the library's HTTPS client (private, ctp_http_*): a thin
 * layer over libcurl used by the Vault store and the Kubernetes client.
 *
 * Policy, the same for every caller:
 *   - https only (http:// only with allow_http, for tests on loopback);
 *   - peer and host name verification always on, unless the caller sets
 *     `insecure` (callers refuse that unless their user forced it);
 *   - redirects are never followed: a 3xx answer is CT_E_PROTO naming the
 *     Location host (headers such as a token would go with the redirect);
 *   - every request has a total timeout and a connect timeout, and a
 *     response size limit (past it: CT_E_TOOBIG, the transfer is aborted);
 *   - non-idempotent methods (POST, PUT, PATCH) always use a fresh
 *     connection, so libcurl never silently re-sends them on a reused
 *     connection that died (their outcome would become unknowable);
 *   - request header lines are built in memory this module owns and wipes
 *     after the transfer (tokens travel in headers); response bodies are
 *     wiped when the response is cleared, including every copy left behind
 *     while the buffer grew.
 *
 * What remains in memory that we do not control: libcurl formats the
 * request (headers and body) into its own send buffers and keeps the last
 * received chunk in its receive buffer; both are freed without wiping.
 * OpenSSL keeps TLS record buffers. CURLOPT_VERBOSE is never set.
 *
 * SIGPIPE: CURLOPT_NOSIGNAL is set (required with threads); libcurl sends
 * with MSG_NOSIGNAL on Linux, so no SIGPIPE is raised there. Other systems:
 * see libcurl's CURLOPT_NOSIGNAL documentation.
 *
 * Thread-safety: a ctp_http may be used by several threads at once (it keeps
 * a small pool of libcurl handles under a mutex; each request takes one).
 * ct_global_init() (which calls curl_global_init) must have run: ctp_http_new
 * calls it.
 */
#ifndef CTP_HTTP_INTERNAL_H
#define CTP_HTTP_INTERNAL_H

#include "internal.h"

/* Default response size limit when the config says 0. */
#define CTP_HTTP_DEFAULT_MAX_RESPONSE ((size_t)1 << 20)
/* Default connect timeout (capped by the total timeout). */
#define CTP_HTTP_DEFAULT_CONNECT_MS 10000

typedef struct ctp_http ctp_http;

/*
 * Client configuration. Every pointer is borrowed for the duration of
 * ctp_http_new only (strings and blobs are copied; the key blob into a
 * ct_secret). Zero means default everywhere.
 */
typedef struct ctp_http_config {
    /* Trust: any combination; none of them -> the system's CA bundle. */
    const char *ca_file;           /* PEM bundle file */
    const char *ca_path;           /* OpenSSL hashed directory */
    const uint8_t *ca_pem;         /* PEM bundle in memory */
    size_t ca_pem_len;
    /* Client certificate (mutual TLS): files, or PEM blobs, not both. */
    const char *cert_file;
    const char *key_file;
    const uint8_t *cert_pem;
    size_t cert_pem_len;
    const uint8_t *key_pem;        /* secret */
    size_t key_pem_len;
    int insecure;                  /* 1: no peer/host verification (forced by the user) */
    int allow_http;                /* 1: also http:// (tests on loopback only) */
    int timeout_ms;                /* per request, total; <= 0: the context default */
    int connect_timeout_ms;        /* <= 0: min(10 s, timeout) */
    size_t max_response;           /* body limit; 0: CTP_HTTP_DEFAULT_MAX_RESPONSE */
    const char *user_agent;        /* NULL: "libcloudtaser/<version>" */
} ctp_http_config;

/*
 * A request header. `value` (value_len bytes, no CR, LF or NUL) is borrowed
 * for the call; pass secrets (tokens) here, never in the URL. The module's
 * copy is wiped after the transfer.
 */
typedef struct ctp_http_header {
    const char *name;
    const char *value;
    size_t value_len;
} ctp_http_header;

typedef struct ctp_http_request {
    const char *method;            /* GET HEAD POST PUT PATCH DELETE LIST ... (A-Z only) */
    const char *url;               /* absolute https:// URL, already escaped */
    const ctp_http_header *headers;
    size_t nheaders;
    const uint8_t *body;           /* NULL: no body (body_len must be 0) */
    size_t body_len;
    int timeout_ms;                /* 0: the client's; else this request's total */
    size_t max_response;           /* 0: the client's */
} ctp_http_request;

typedef struct ctp_http_response {
    long status;                   /* HTTP status; 0 if none arrived */
    uint8_t *body;                 /* NUL-terminated (not counted); wiped on clear */
    size_t body_len;
    size_t body_cap_;              /* private */
    size_t limit_;                 /* private */
    int too_big_;                  /* private */
    char content_type[128];        /* "" if absent; parameters included */
    int64_t retry_after_ms;        /* Retry-After (seconds or HTTP date); -1 if absent */
    char location[256];            /* Location header (3xx), truncated; "" if absent */
    /*
     * After a transport error: 1 if the request may have reached the server
     * (its outcome is unknown), 0 if it certainly did not (resolve, connect
     * or TLS handshake failed). 1 after any HTTP answer.
     */
    int sent;
} ctp_http_response;

/*
 * Makes a client. Errors: CT_E_INVALID (bad combination: cert without key,
 * file and blob both given), CT_E_NOMEM, CT_E_INTERNAL (libcurl).
 */
ct_err ctp_http_new(const ct_ctx *ctx, const ctp_http_config *cfg, ctp_http **out,
                    ct_error *err);

/* Frees a client (no request may be in flight). NULL is a no-op. */
void ctp_http_free(ctp_http *h);

/*
 * Performs one request. `resp` is initialised by the call (clear it with
 * ctp_http_response_clear in every case). Returns CT_OK when an HTTP answer
 * that is not a redirect arrived, whatever its status (the caller maps
 * statuses). Errors (err->os_error holds the errno where one is known, else
 * the CURLcode):
 *   CT_E_INVALID   bad request (method, URL scheme, header bytes) or local
 *                  TLS material that cannot be used (CA, client cert/key);
 *   CT_E_RESOLVE   the host name does not resolve;
 *   CT_E_REFUSED   connection refused;
 *   CT_E_TIMEOUT   connect or total timeout;
 *   CT_E_CERT      the server's certificate is not trusted or not for that
 *                  host;
 *   CT_E_TLS       TLS handshake failure (e.g. our client certificate was
 *                  rejected);
 *   CT_E_RESET     the connection was reset or closed without an answer;
 *   CT_E_IO        other transfer errors (answer cut short, ...);
 *   CT_E_TOOBIG    the response body is larger than the limit;
 *   CT_E_PROTO     a redirect (not followed; the message names the host) or
 *                  a malformed HTTP answer;
 *   CT_E_NOMEM.
 * Messages name the host (never the path's query, headers or body).
 */
ct_err ctp_http_do(ctp_http *h, const ctp_http_request *req, ctp_http_response *resp,
                   ct_error *err);

/*
 * The multi driver: one thread runs every transfer started on it through a
 * libcurl multi handle (connections to the server are reused across
 * transfers), so many requests wait on the server without a thread each.
 * Same policy as ctp_http_do (it uses the client's configuration; the
 * client must outlive the driver).
 *
 * done(arg, rc, resp, err) is called exactly once per started transfer, on
 * the driver's thread: rc CT_OK with the response (borrowed for the call:
 * it is wiped and freed afterwards; copy what you keep), or an error as for
 * ctp_http_do with resp NULL and err set; CT_E_CLOSED when the driver is
 * freed first. A slow callback delays every other transfer.
 */
typedef struct ctp_http_multi ctp_http_multi;
typedef void (*ctp_http_done_fn)(void *arg, ct_err rc, const ctp_http_response *resp,
                                 const ct_error *err);

/* max_in_flight (>= 1) bounds the transfers started and not yet finished
 * (a slot is free again when the transfer's callback is called). */
ct_err ctp_http_multi_new(ctp_http *h, size_t max_in_flight, ctp_http_multi **out,
                          ct_error *err);

/*
 * Starts a transfer; thread-safe. Everything in req (URL, headers, body) is
 * copied before it returns (header lines and the body into memory that is
 * wiped after the transfer). On an error return done is never called:
 * CT_E_AGAIN (max_in_flight reached), CT_E_CLOSED (being freed), request
 * validation errors as for ctp_http_do, CT_E_NOMEM.
 */
ct_err ctp_http_multi_start(ctp_http_multi *m, const ctp_http_request *req,
                            ctp_http_done_fn done, void *arg, ct_error *err);

/*
 * Stops the driver: transfers still in flight are abandoned and called back
 * with CT_E_CLOSED before it returns. Not from a done callback. NULL: no-op.
 */
void ctp_http_multi_free(ctp_http_multi *m);

/* Wipes and frees the body and resets the response. Safe to call twice. */
void ctp_http_response_clear(ctp_http_response *resp);

/*
 * Percent-encodes `in` for use in a URL path (unreserved characters and '/'
 * kept) into out (cap bytes). Returns 0, or -1 if it does not fit.
 */
int ctp_http_path_escape(const char *in, char *out, size_t cap);

#endif
