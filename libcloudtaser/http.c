/*
 * http.c - the library's HTTPS client over libcurl (see http_internal.h for
 * the policy: https only, verification on, no redirects, timeouts, size
 * limits, wiped header lines and bodies).
 *
 * libcurl instead of a hand-written client: it is a well-kept HTTP/1.1 and
 * HTTP/2 implementation with TLS, proxies (from the environment, as Vault's
 * and kubectl's clients honour them), timeouts and connection reuse.
 */
#include "http_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 32

struct ctp_http {
    const ct_ctx *ctx;
    char *ca_file, *ca_path, *cert_file, *key_file, *user_agent;
    uint8_t *ca_pem, *cert_pem;
    size_t ca_pem_len, cert_pem_len;
    ct_secret *key_pem;
    int insecure, allow_http, timeout_ms, connect_timeout_ms;
    size_t max_response;
    pthread_mutex_t mu;
    int mu_init;
    CURL *pool[POOL_MAX];
    int npool;
};

/* ---- small helpers ---- */

/* "host:port" (or "host") of an absolute URL, for messages. */
static void url_host(const char *url, char *out, size_t n)
{
    const char *p = strstr(url ? url : "", "://"), *e, *at;
    size_t len;
    if (!p) {
        snprintf(out, n, "(invalid URL)");
        return;
    }
    p += 3;
    e = p + strcspn(p, "/?#");
    /* drop user info: it is never shown */
    at = memchr(p, '@', (size_t)(e - p));
    if (at)
        p = at + 1;
    len = (size_t)(e - p);
    if (len >= n)
        len = n - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

static int method_ok(const char *m)
{
    size_t i;
    if (!m || !*m)
        return 0;
    for (i = 0; m[i]; i++)
        if (m[i] < 'A' || m[i] > 'Z' || i >= 16)
            return 0;
    return 1;
}

static int token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int header_name_ok(const char *n)
{
    if (!n || !*n)
        return 0;
    for (; *n; n++)
        if (!token_char(*n))
            return 0;
    return 1;
}

static int header_value_ok(const char *v, size_t len)
{
    size_t i;
    if (!v && len)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\r' || c == '\n' || c == 0)
            return 0;
    }
    return 1;
}

static int is_method(const char *m, const char *want)
{
    return strcmp(m, want) == 0;
}

int ctp_http_path_escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
        if (keep) {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= cap)
                return -1;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (o >= cap)
        return -1;
    out[o] = '\0';
    return 0;
}

/* ---- the client ---- */

static char *dup_opt(const char *s, int *fail)
{
    char *d;
    if (!s)
        return NULL;
    d = ctp_strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

ct_err ctp_http_new(const ct_ctx *ctx, const ctp_http_config *cfg, ctp_http **out,
                    ct_error *err)
{
    ctp_http *h;
    ct_err rc;
    int fail = 0;

    if (!out || !cfg)
        return ctp_err(err, CT_E_INVALID, 0, "ctp_http_new: NULL argument");
    *out = NULL;
    if ((rc = ct_global_init()) != CT_OK)
        return ctp_err(err, rc, 0, "library initialisation failed");
    if ((cfg->cert_file || cfg->cert_pem) != (cfg->key_file || cfg->key_pem))
        return ctp_err(err, CT_E_INVALID, 0,
                       "a client certificate needs its private key, and a key its certificate");
    if ((cfg->cert_file && cfg->cert_pem) || (cfg->key_file && cfg->key_pem))
        return ctp_err(err, CT_E_INVALID, 0,
                       "give the client certificate and key as files or in memory, not both");
    if (cfg->ca_file && cfg->ca_pem)
        return ctp_err(err, CT_E_INVALID, 0, "give a CA file or CA PEM data, not both");
    if ((cfg->ca_pem && !cfg->ca_pem_len) || (cfg->cert_pem && !cfg->cert_pem_len) ||
        (cfg->key_pem && !cfg->key_pem_len))
        return ctp_err(err, CT_E_INVALID, 0, "empty PEM data");
    h = ctp_calloc(1, sizeof *h);
    if (!h)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    h->ctx = ctx ? ctx : ctp_default_ctx();
    h->ca_file = dup_opt(cfg->ca_file, &fail);
    h->ca_path = dup_opt(cfg->ca_path, &fail);
    h->cert_file = dup_opt(cfg->cert_file, &fail);
    h->key_file = dup_opt(cfg->key_file, &fail);
    h->user_agent = dup_opt(cfg->user_agent ? cfg->user_agent : "libcloudtaser/" CT_VERSION_STRING,
                            &fail);
    if (cfg->ca_pem) {
        if (!(h->ca_pem = ctp_memdup(cfg->ca_pem, cfg->ca_pem_len)))
            fail = 1;
        h->ca_pem_len = cfg->ca_pem_len;
    }
    if (cfg->cert_pem) {
        if (!(h->cert_pem = ctp_memdup(cfg->cert_pem, cfg->cert_pem_len)))
            fail = 1;
        h->cert_pem_len = cfg->cert_pem_len;
    }
    if (fail) {
        ctp_http_free(h);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    if (cfg->key_pem &&
        (rc = ct_secret_from(cfg->key_pem, cfg->key_pem_len, &h->key_pem, err)) != CT_OK) {
        ctp_http_free(h);
        return rc;
    }
    h->insecure = cfg->insecure != 0;
    h->allow_http = cfg->allow_http != 0;
    h->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : ctp_timeout(h->ctx, -1);
    h->connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : CTP_HTTP_DEFAULT_CONNECT_MS;
    h->max_response = cfg->max_response ? cfg->max_response : CTP_HTTP_DEFAULT_MAX_RESPONSE;
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        ctp_http_free(h);
        return ctp_err(err, CT_E_NOMEM, 0, "cannot create a mutex");
    }
    h->mu_init = 1;
    *out = h;
    return CT_OK;
}

void ctp_http_free(ctp_http *h)
{
    int i;
    if (!h)
        return;
    for (i = 0; i < h->npool; i++)
        curl_easy_cleanup(h->pool[i]);
    if (h->mu_init)
        pthread_mutex_destroy(&h->mu);
    free(h->ca_file);
    free(h->ca_path);
    free(h->cert_file);
    free(h->key_file);
    free(h->user_agent);
    free(h->ca_pem);
    free(h->cert_pem);
    ct_secret_free(h->key_pem);
    free(h);
}

static CURL *take_handle(ctp_http *h)
{
    CURL *c = NULL;
    pthread_mutex_lock(&h->mu);
    if (h->npool > 0)
        c = h->pool[--h->npool];
    pthread_mutex_unlock(&h->mu);
    if (!c)
        c = curl_easy_init();
    return c;
}

static void give_handle(ctp_http *h, CURL *c)
{
    pthread_mutex_lock(&h->mu);
    if (h->npool < POOL_MAX) {
        h->pool[h->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    if (c)
        curl_easy_cleanup(c);
}

/* ---- response callbacks ---- */

void ctp_http_response_clear(ctp_http_response *r)
{
    if (!r)
        return;
    if (r->body) {
        ct_secure_wipe(r->body, r->body_cap_);
        free(r->body);
    }
    memset(r, 0, sizeof *r);
    r->retry_after_ms = -1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    ctp_http_response *r = arg;
    size_t n = size * nmemb, need;
    if (n == 0)
        return 0;
    if (r->body_len > r->limit_ || n > r->limit_ - r->body_len) {
        r->too_big_ = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    need = r->body_len + n + 1;
    if (need > r->body_cap_) {
        /* grow by hand: realloc could leave an unwiped copy behind */
        size_t cap = r->body_cap_ ? r->body_cap_ * 2 : 4096;
        uint8_t *nb;
        if (cap < need)
            cap = need;
        if (cap > r->limit_ + 1)
            cap = r->limit_ + 1;
        nb = malloc(cap);
        if (!nb)
            return 0;
        if (r->body) {
            memcpy(nb, r->body, r->body_len);
            ct_secure_wipe(r->body, r->body_cap_);
            free(r->body);
        }
        r->body = nb;
        r->body_cap_ = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return n;
}

/* Case-insensitive "Name:" match at the start of a header line. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *v, *e;
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    v = line + nl + 1;
    e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *vlen = (size_t)(e - v);
    return v;
}

static void copy_hdr(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int64_t parse_retry_after(const char *v, size_t n)
{
    char buf[64];
    size_t i;
    int64_t secs = 0;
    if (n == 0 || n >= sizeof buf)
        return -1;
    for (i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
        secs = secs * 10 + (v[i] - '0');
        if (secs > 86400)
            secs = 86400;
    }
    if (i == n)
        return secs * 1000;
    /* an HTTP date */
    memcpy(buf, v, n);
    buf[n] = '\0';
    {
        time_t when = curl_getdate(buf, NULL), now = time(NULL);
        if (when < 0)
            return -1;
        if (when <= now)
            return 0;
        if (when - now > 86400)
            return 86400 * 1000LL;
        return (int64_t)(when - now) * 1000;
    }
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    ctp_http_response *r = arg;
    size_t n = size * nmemb, vl;
    const char *v;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* a new response (after 1xx): forget the previous one's headers */
        r->content_type[0] = '\0';
        r->location[0] = '\0';
        r->retry_after_ms = -1;
        return n;
    }
    if ((v = header_value(data, n, "Content-Type", &vl)))
        copy_hdr(r->content_type, sizeof r->content_type, v, vl);
    else if ((v = header_value(data, n, "Location", &vl)))
        copy_hdr(r->location, sizeof r->location, v, vl);
    else if ((v = header_value(data, n, "Retry-After", &vl)))
        r->retry_after_ms = parse_retry_after(v, vl);
    return n;
}

/* ---- request headers, in memory we wipe ---- */

typedef struct hdrlist {
    struct curl_slist *nodes;
    size_t n;
    char *text;
    size_t text_len;
} hdrlist;

static void hdrlist_free(hdrlist *l)
{
    if (l->text) {
        ct_secure_wipe(l->text, l->text_len);
        free(l->text);
    }
    free(l->nodes);
    memset(l, 0, sizeof *l);
}

/*
 * One contiguous block of "Name: value\0" lines chained as a curl_slist that
 * this module owns (curl_slist_append would copy into memory we cannot wipe).
 */
static ct_err hdrlist_build(const ctp_http_request *req, hdrlist *l, ct_error *err)
{
    size_t i, total = 0, off = 0, extra = 0, n;
    int have_ct = 0;
    memset(l, 0, sizeof *l);
    for (i = 0; i < req->nheaders; i++) {
        const ctp_http_header *hd = &req->headers[i];
        if (!header_name_ok(hd->name) || !header_value_ok(hd->value, hd->value_len))
            return ctp_err(err, CT_E_INVALID, 0,
                           "invalid HTTP header (name must be a token; value without CR, LF "
                           "or NUL)");
        if (strcasecmp(hd->name, "Content-Type") == 0)
            have_ct = 1;
        total += strlen(hd->name) + 2 + hd->value_len + 1;
    }
    /* "Expect:" stops 100-continue waits; "Content-Type:" removes curl's
     * form default when the caller sets none */
    extra = have_ct ? 1 : 2;
    total += sizeof "Expect:" + sizeof "Content-Type:";
    n = req->nheaders + extra;
    l->nodes = ctp_calloc(n, sizeof *l->nodes);
    l->text = malloc(total);
    if (!l->nodes || !l->text) {
        hdrlist_free(l);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    l->text_len = total;
    for (i = 0; i < req->nheaders; i++) {
        const ctp_http_header *hd = &req->headers[i];
        size_t nl = strlen(hd->name);
        l->nodes[l->n].data = l->text + off;
        memcpy(l->text + off, hd->name, nl);
        off += nl;
        l->text[off++] = ':';
        l->text[off++] = ' ';
        if (hd->value_len)
            memcpy(l->text + off, hd->value, hd->value_len);
        off += hd->value_len;
        l->text[off++] = '\0';
        l->n++;
    }
    l->nodes[l->n].data = l->text + off;
    memcpy(l->text + off, "Expect:", sizeof "Expect:");
    off += sizeof "Expect:";
    l->n++;
    if (!have_ct) {
        l->nodes[l->n].data = l->text + off;
        memcpy(l->text + off, "Content-Type:", sizeof "Content-Type:");
        off += sizeof "Content-Type:";
        l->n++;
    }
    for (i = 0; i + 1 < l->n; i++)
        l->nodes[i].next = &l->nodes[i + 1];
    l->nodes[l->n - 1].next = NULL;
    return CT_OK;
}

/* ---- errors ---- */

static ct_err map_curl(CURL *c, CURLcode cc, const ctp_http_response *r, const char *host,
                       const char *errbuf, int timeout_ms, ct_error *err)
{
    long oserr = 0;
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ctp_err(err, CT_E_RESOLVE, (int32_t)cc,
                       "cannot resolve %s%s: check the address", host,
                       cc == CURLE_COULDNT_RESOLVE_PROXY ? " (proxy)" : "");
    case CURLE_COULDNT_CONNECT:
        if (oserr == ECONNREFUSED)
            return ctp_err(err, CT_E_REFUSED, (int32_t)oserr,
                           "connection to %s refused: is the server running, and the address "
                           "and port right?",
                           host);
        if (oserr == ETIMEDOUT)
            return ctp_err(err, CT_E_TIMEOUT, (int32_t)oserr, "cannot connect to %s: timed out",
                           host);
        return ctp_err(err, oserr ? ctp_errno_to_err((int)oserr) == CT_E_AGAIN
                                        ? CT_E_IO
                                        : ctp_errno_to_err((int)oserr)
                                  : CT_E_IO,
                       (int32_t)(oserr ? oserr : cc), "cannot connect to %s: %s", host, detail);
    case CURLE_OPERATION_TIMEDOUT:
        return ctp_err(err, CT_E_TIMEOUT, (int32_t)cc, "%s did not answer within %d ms (%s)",
                       host, timeout_ms, r->sent ? "request sent" : "while connecting");
    case CURLE_PEER_FAILED_VERIFICATION:
        return ctp_err(err, CT_E_CERT, (int32_t)cc,
                       "the certificate of %s is not trusted: %s (set the CA that issued it, "
                       "e.g. VAULT_CACERT or --vault-cacert)",
                       host, detail);
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
        return ctp_err(err, CT_E_INVALID, (int32_t)cc,
                       "cannot load the CA certificates for %s: %s (check the CA file or "
                       "directory)",
                       host, detail);
    case CURLE_SSL_CERTPROBLEM:
        return ctp_err(err, CT_E_INVALID, (int32_t)cc,
                       "cannot use the client certificate or key: %s (check the files: PEM, "
                       "matching pair)",
                       detail);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return ctp_err(err, CT_E_TLS, (int32_t)cc,
                       "TLS with %s failed: %s (does the server want a client certificate? "
                       "is it an https port?)",
                       host, detail);
    case CURLE_GOT_NOTHING:
        return ctp_err(err, CT_E_RESET, (int32_t)cc,
                       "%s closed the connection without answering", host);
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        if (oserr == ECONNRESET || oserr == EPIPE || oserr == 0)
            return ctp_err(err, CT_E_RESET, (int32_t)(oserr ? oserr : cc),
                           "connection to %s reset or closed by the server (a server that "
                           "requires a client certificate does this too): %s",
                           host, detail);
        return ctp_err(err, CT_E_IO, (int32_t)oserr, "connection to %s failed: %s", host,
                       detail);
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (r->too_big_ || cc == CURLE_FILESIZE_EXCEEDED)
            return ctp_err(err, CT_E_TOOBIG, (int32_t)cc,
                           "the answer from %s is larger than %zu bytes", host, r->limit_);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory reading the answer from %s",
                       host);
    case CURLE_PARTIAL_FILE:
        return ctp_err(err, CT_E_IO, (int32_t)cc, "the answer from %s was cut short", host);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return ctp_err(err, CT_E_INVALID, (int32_t)cc,
                       "unsupported URL scheme for %s: only https:// is allowed", host);
    case CURLE_URL_MALFORMAT:
        return ctp_err(err, CT_E_INVALID, (int32_t)cc, "malformed URL: %s", detail);
    case CURLE_OUT_OF_MEMORY:
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory (libcurl)");
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
        return ctp_err(err, CT_E_PROTO, (int32_t)cc, "bad HTTP answer from %s: %s", host,
                       detail);
    default:
        return ctp_err(err, CT_E_IO, (int32_t)cc, "request to %s failed: %s", host, detail);
    }
}

/* ---- one request ---- */

#define SETOPT(opt, val)                                                                   \
    do {                                                                                   \
        if (cc == CURLE_OK)                                                                \
            cc = curl_easy_setopt(c, opt, val);                                            \
    } while (0)

static CURLcode set_tls(ctp_http *h, CURL *c, struct curl_blob *ca, struct curl_blob *cert,
                        struct curl_blob *key)
{
    CURLcode cc = CURLE_OK;
    SETOPT(CURLOPT_SSL_VERIFYPEER, h->insecure ? 0L : 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, h->insecure ? 0L : 2L);
    SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (h->ca_pem) {
        ca->data = h->ca_pem;
        ca->len = h->ca_pem_len;
        ca->flags = CURL_BLOB_NOCOPY;
        SETOPT(CURLOPT_CAINFO, (char *)NULL);
        SETOPT(CURLOPT_CAINFO_BLOB, ca);
    } else if (h->ca_file) {
        SETOPT(CURLOPT_CAINFO, h->ca_file);
    } else if (h->ca_path) {
        SETOPT(CURLOPT_CAINFO, (char *)NULL); /* only the directory, as Vault does */
    }
    if (h->ca_path)
        SETOPT(CURLOPT_CAPATH, h->ca_path);
    if (h->cert_file) {
        SETOPT(CURLOPT_SSLCERT, h->cert_file);
        SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
        SETOPT(CURLOPT_SSLKEY, h->key_file);
        SETOPT(CURLOPT_SSLKEYTYPE, "PEM");
    } else if (h->cert_pem) {
        cert->data = h->cert_pem;
        cert->len = h->cert_pem_len;
        cert->flags = CURL_BLOB_NOCOPY;
        key->data = ct_secret_data(h->key_pem);
        key->len = ct_secret_len(h->key_pem);
        key->flags = CURL_BLOB_NOCOPY;
        SETOPT(CURLOPT_SSLCERT_BLOB, cert);
        SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
        SETOPT(CURLOPT_SSLKEY_BLOB, key);
        SETOPT(CURLOPT_SSLKEYTYPE, "PEM");
    }
    return cc;
}

/*
 * One transfer's state, shared by the blocking call and the multi driver:
 * set up on the caller's thread (validation, header block, options), then
 * performed, then finished (status, error mapping, handle returned).
 */
typedef struct xfer {
    ctp_http *h;
    CURL *c;
    hdrlist hl;
    char errbuf[CURL_ERROR_SIZE];
    char host[256];
    struct curl_blob ca, cert, key;
    int timeout;
    uint8_t *body; /* the multi driver's own copy of the request body (wiped) */
    size_t body_len;
    ctp_http_response *resp;
} xfer;

static void xfer_release_buffers(xfer *x)
{
    /* forget our buffers before wiping them */
    curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(x->c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, NULL);
    hdrlist_free(&x->hl);
    if (x->body) {
        ct_secure_wipe(x->body, x->body_len);
        free(x->body);
        x->body = NULL;
    }
}

/*
 * Validates req and prepares x->c (taken from `c`, or the pool when NULL).
 * copy_body: keep a private copy of the body (the caller's may go away).
 * On error nothing is left to release except a handle passed in as `c`.
 */
static ct_err xfer_setup(ctp_http *h, CURL *c, const ctp_http_request *req,
                         ctp_http_response *resp, int copy_body, xfer *x, ct_error *err)
{
    CURLcode cc = CURLE_OK;
    ct_err rc;
    int ctimeout, with_body, idempotent, own = c == NULL;
    const char *m;

    memset(x, 0, sizeof *x);
    if (resp) {
        memset(resp, 0, sizeof *resp);
        resp->retry_after_ms = -1;
    }
    if (!h || !req || !resp || !req->url)
        return ctp_err(err, CT_E_INVALID, 0, "ctp_http_do: NULL argument");
    m = req->method ? req->method : "GET";
    url_host(req->url, x->host, sizeof x->host);
    if (!method_ok(m))
        return ctp_err(err, CT_E_INVALID, 0, "invalid HTTP method");
    if (!req->body && req->body_len)
        return ctp_err(err, CT_E_INVALID, 0, "ctp_http_do: body length without a body");
    if (strncasecmp(req->url, "https://", 8) != 0 &&
        !(h->allow_http && strncasecmp(req->url, "http://", 7) == 0))
        return ctp_err(err, CT_E_INVALID, 0,
                       "only https:// addresses are allowed (got %.*s...)",
                       (int)strcspn(req->url, ":/"), req->url);
    if ((rc = hdrlist_build(req, &x->hl, err)) != CT_OK)
        return rc;
    if (copy_body && req->body) {
        if (!(x->body = malloc(req->body_len ? req->body_len : 1))) {
            hdrlist_free(&x->hl);
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        }
        memcpy(x->body, req->body, req->body_len);
        x->body_len = req->body_len;
    }
    if (!c && !(c = take_handle(h))) {
        hdrlist_free(&x->hl);
        if (x->body) {
            ct_secure_wipe(x->body, x->body_len);
            free(x->body);
        }
        return ctp_err(err, CT_E_INTERNAL, 0, "libcurl could not make a handle");
    }
    x->h = h;
    x->c = c;
    x->resp = resp;
    curl_easy_reset(c); /* keeps live connections, drops every option */
    x->errbuf[0] = '\0';
    resp->limit_ = req->max_response ? req->max_response : h->max_response;
    x->timeout = req->timeout_ms > 0 ? req->timeout_ms : h->timeout_ms;
    ctimeout = h->connect_timeout_ms < x->timeout ? h->connect_timeout_ms : x->timeout;
    with_body = req->body != NULL || is_method(m, "POST") || is_method(m, "PUT") ||
                is_method(m, "PATCH");
    idempotent = !(is_method(m, "POST") || is_method(m, "PUT") || is_method(m, "PATCH"));

    SETOPT(CURLOPT_URL, req->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, h->allow_http ? "http,https" : "https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_MAXREDIRS, 0L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_NOPROGRESS, 1L);
    SETOPT(CURLOPT_VERBOSE, 0L);
    SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)x->timeout);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)ctimeout);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_USERAGENT, h->user_agent);
    SETOPT(CURLOPT_HTTPHEADER, x->hl.nodes);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, resp);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, resp);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)resp->limit_);
    /* a write whose connection died must never be re-sent silently */
    SETOPT(CURLOPT_FRESH_CONNECT, idempotent ? 0L : 1L);
    if (is_method(m, "HEAD")) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (is_method(m, "GET") && !with_body) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        if (with_body) {
            const uint8_t *b = copy_body ? x->body : req->body;
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SETOPT(CURLOPT_POSTFIELDS, b ? (const char *)b : "");
        }
        if (!is_method(m, "POST"))
            SETOPT(CURLOPT_CUSTOMREQUEST, m);
    }
    if (cc == CURLE_OK)
        cc = set_tls(h, c, &x->ca, &x->cert, &x->key);
    if (cc != CURLE_OK) {
        xfer_release_buffers(x);
        if (own) /* a handle passed in stays the caller's */
            curl_easy_cleanup(c);
        x->c = NULL;
        return ctp_err(err, cc == CURLE_OUT_OF_MEMORY ? CT_E_NOMEM : CT_E_INTERNAL,
                       (int32_t)cc, "libcurl refused an option: %s", curl_easy_strerror(cc));
    }
    return CT_OK;
}

/*
 * After the transfer: wipes our buffers, reads status, maps errors. The
 * handle stays in x->c for the caller to return (give_handle or the multi
 * driver's free list). On error the response body is already wiped.
 */
static ct_err xfer_finish(xfer *x, CURLcode cc, ct_error *err)
{
    ctp_http_response *resp = x->resp;
    CURL *c = x->c;
    curl_off_t pre = 0;
    ct_err rc;

    xfer_release_buffers(x);
    curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &pre);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->sent = pre > 0 || resp->status > 0;

    if (cc != CURLE_OK) {
        rc = map_curl(c, cc, resp, x->host, x->errbuf, x->timeout, err);
        if (resp->body) {
            ct_secure_wipe(resp->body, resp->body_cap_);
            free(resp->body);
            resp->body = NULL;
            resp->body_len = resp->body_cap_ = 0;
        }
        return rc;
    }
    if (resp->status >= 300 && resp->status < 400) {
        char *to = NULL, lhost[256] = "the same host";
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &to);
        if (to)
            url_host(to, lhost, sizeof lhost);
        return ctp_err(err, CT_E_PROTO, (int32_t)resp->status,
                       "%s redirected (HTTP %ld) to %s: redirects are never followed (the "
                       "token would go with them); use the final address directly",
                       x->host, resp->status, lhost);
    }
    if (!resp->body) {
        /* an empty body: still a valid, NUL-terminated buffer */
        resp->body = malloc(1);
        if (!resp->body)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        resp->body[0] = 0;
        resp->body_cap_ = 1;
    }
    return CT_OK;
}

ct_err ctp_http_do(ctp_http *h, const ctp_http_request *req, ctp_http_response *resp,
                   ct_error *err)
{
    xfer x;
    ct_err rc;

    if ((rc = xfer_setup(h, NULL, req, resp, 0, &x, err)) != CT_OK)
        return rc;
    rc = xfer_finish(&x, curl_easy_perform(x.c), err);
    give_handle(h, x.c);
    return rc;
}

/* ---- the multi driver: many transfers from one thread ---- */

#define MULTI_FREE_MAX 256 /* idle easy handles kept */
#define MULTI_POLL_MS 1000

typedef struct mxfer {
    struct mxfer *prev, *next; /* incoming queue, then the active list */
    xfer x;
    ctp_http_response resp;
    ctp_http_done_fn done;
    void *arg;
} mxfer;

struct ctp_http_multi {
    ctp_http *h;
    CURLM *m;
    pthread_t th;
    pthread_mutex_t mu;
    size_t max_in_flight;
    /* under mu */
    mxfer *incoming;
    size_t in_flight; /* incoming + active */
    int stop;
    unsigned starting; /* starts between reservation and hand-over */
    pthread_cond_t started_cv; /* signalled when starting drops to 0 */
    CURL *idle[MULTI_FREE_MAX];
    int nidle;
    /* driver thread only */
    mxfer *active;
};

static void multi_give(ctp_http_multi *mh, CURL *c)
{
    pthread_mutex_lock(&mh->mu);
    if (mh->nidle < MULTI_FREE_MAX) {
        mh->idle[mh->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&mh->mu);
    if (c)
        curl_easy_cleanup(c);
}

/* Finishes one transfer: maps, calls back, wipes, frees (driver thread). */
static void multi_complete(ctp_http_multi *mh, mxfer *t, CURLcode cc, int aborted)
{
    ct_error e;
    ct_err rc;

    ct_error_clear(&e);
    if (aborted) {
        xfer_release_buffers(&t->x);
        curl_easy_cleanup(t->x.c); /* mid-transfer: its connection is not reusable */
        t->x.c = NULL;
        ctp_http_response_clear(&t->resp);
        rc = ctp_err(&e, CT_E_CLOSED, 0, "the request to %s was abandoned: the client is "
                                         "shutting down", t->x.host);
    } else {
        rc = xfer_finish(&t->x, cc, &e);
        multi_give(mh, t->x.c);
    }
    /* the slot is free once the transfer is over, before its callback runs
     * (a callback may well start the next transfer) */
    pthread_mutex_lock(&mh->mu);
    mh->in_flight--;
    pthread_mutex_unlock(&mh->mu);
    t->done(t->arg, rc, rc == CT_OK ? &t->resp : NULL, &e);
    ctp_http_response_clear(&t->resp);
    free(t);
}

static void *multi_main(void *arg)
{
    ctp_http_multi *mh = arg;
    int stop = 0;

    while (!stop) {
        mxfer *in, *t, *next;
        CURLMsg *msg;
        int running = 0, q;

        pthread_mutex_lock(&mh->mu);
        in = mh->incoming;
        mh->incoming = NULL;
        stop = mh->stop;
        pthread_mutex_unlock(&mh->mu);
        for (t = in; t; t = next) {
            CURLMcode mc;
            next = t->next;
            curl_easy_setopt(t->x.c, CURLOPT_PRIVATE, (void *)t);
            t->prev = NULL;
            t->next = mh->active;
            if ((mc = curl_multi_add_handle(mh->m, t->x.c)) != CURLM_OK) {
                t->next = NULL;
                multi_complete(mh, t, mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY
                                                                : CURLE_FAILED_INIT, 0);
                continue;
            }
            if (mh->active)
                mh->active->prev = t;
            mh->active = t;
        }
        if (stop)
            break;
        curl_multi_perform(mh->m, &running);
        while ((msg = curl_multi_info_read(mh->m, &q))) {
            char *priv = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            t = (mxfer *)(void *)priv;
            curl_multi_remove_handle(mh->m, t->x.c);
            if (t->prev)
                t->prev->next = t->next;
            else
                mh->active = t->next;
            if (t->next)
                t->next->prev = t->prev;
            multi_complete(mh, t, msg->data.result, 0);
        }
        curl_multi_poll(mh->m, NULL, 0, MULTI_POLL_MS, NULL);
    }
    /* shutting down: every transfer still in flight fails with CT_E_CLOSED */
    while (mh->active) {
        mxfer *t = mh->active;
        mh->active = t->next;
        curl_multi_remove_handle(mh->m, t->x.c);
        multi_complete(mh, t, CURLE_OK, 1);
    }
    ct_thread_cleanup();
    return NULL;
}

ct_err ctp_http_multi_new(ctp_http *h, size_t max_in_flight, ctp_http_multi **out,
                          ct_error *err)
{
    ctp_http_multi *mh;

    if (!h || !out || max_in_flight == 0)
        return ctp_err(err, CT_E_INVALID, 0, "ctp_http_multi_new: bad argument");
    *out = NULL;
    if (!(mh = ctp_calloc(1, sizeof *mh)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    mh->h = h;
    mh->max_in_flight = max_in_flight;
    if (!(mh->m = curl_multi_init())) {
        free(mh);
        return ctp_err(err, CT_E_INTERNAL, 0, "libcurl could not make a multi handle");
    }
    /* idle connections kept to the server: enough for the usual concurrency */
    curl_multi_setopt(mh->m, CURLMOPT_MAXCONNECTS,
                      (long)(max_in_flight < MULTI_FREE_MAX ? max_in_flight : MULTI_FREE_MAX));
    if (pthread_mutex_init(&mh->mu, NULL) != 0) {
        curl_multi_cleanup(mh->m);
        free(mh);
        return ctp_err(err, CT_E_NOMEM, 0, "cannot create a mutex");
    }
    if (pthread_cond_init(&mh->started_cv, NULL) != 0) {
        pthread_mutex_destroy(&mh->mu);
        curl_multi_cleanup(mh->m);
        free(mh);
        return ctp_err(err, CT_E_NOMEM, 0, "cannot create a condition variable");
    }
    if (pthread_create(&mh->th, NULL, multi_main, mh) != 0) {
        pthread_cond_destroy(&mh->started_cv);
        pthread_mutex_destroy(&mh->mu);
        curl_multi_cleanup(mh->m);
        free(mh);
        return ctp_err(err, CT_E_INTERNAL, errno, "cannot start the HTTPS client's thread");
    }
    *out = mh;
    return CT_OK;
}

ct_err ctp_http_multi_start(ctp_http_multi *mh, const ctp_http_request *req,
                            ctp_http_done_fn done, void *arg, ct_error *err)
{
    mxfer *t;
    CURL *c = NULL;
    ct_err rc;

    if (!mh || !req || !done)
        return ctp_err(err, CT_E_INVALID, 0, "ctp_http_multi_start: NULL argument");
    if (!(t = ctp_calloc(1, sizeof *t)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    pthread_mutex_lock(&mh->mu);
    if (mh->stop || mh->in_flight >= mh->max_in_flight) {
        int stopping = mh->stop;
        pthread_mutex_unlock(&mh->mu);
        free(t);
        if (stopping)
            return ctp_err(err, CT_E_CLOSED, 0, "the HTTPS client is shutting down");
        return ctp_err(err, CT_E_AGAIN, 0,
                       "%zu requests to the server are in flight already (the limit): try "
                       "again shortly",
                       mh->max_in_flight);
    }
    mh->in_flight++; /* reserved */
    mh->starting++;  /* ctp_http_multi_free waits for this start */
    if (mh->nidle)
        c = mh->idle[--mh->nidle];
    pthread_mutex_unlock(&mh->mu);
    if (!c)
        c = curl_easy_init();
    if (!c)
        rc = ctp_err(err, CT_E_INTERNAL, 0, "libcurl could not make a handle");
    else
        rc = xfer_setup(mh->h, c, req, &t->resp, 1, &t->x, err);
    if (rc != CT_OK) {
        if (c)
            curl_easy_cleanup(c);
        ctp_http_response_clear(&t->resp);
        free(t);
        pthread_mutex_lock(&mh->mu);
        mh->in_flight--;
        if (--mh->starting == 0)
            pthread_cond_broadcast(&mh->started_cv);
        pthread_mutex_unlock(&mh->mu);
        return rc;
    }
    t->done = done;
    t->arg = arg;
    pthread_mutex_lock(&mh->mu);
    if (mh->stop) {
        /* ctp_http_multi_free began meanwhile: the driver takes nothing more */
        mh->in_flight--;
        if (--mh->starting == 0)
            pthread_cond_broadcast(&mh->started_cv);
        pthread_mutex_unlock(&mh->mu);
        xfer_release_buffers(&t->x);
        curl_easy_cleanup(t->x.c);
        ctp_http_response_clear(&t->resp);
        free(t);
        return ctp_err(err, CT_E_CLOSED, 0, "the HTTPS client is shutting down");
    }
    t->next = mh->incoming;
    mh->incoming = t;
    /* woken under the lock: free cannot tear the multi handle down meanwhile */
    curl_multi_wakeup(mh->m);
    if (--mh->starting == 0)
        pthread_cond_broadcast(&mh->started_cv);
    pthread_mutex_unlock(&mh->mu);
    return CT_OK;
}

void ctp_http_multi_free(ctp_http_multi *mh)
{
    int i;
    if (!mh)
        return;
    pthread_mutex_lock(&mh->mu);
    mh->stop = 1;
    while (mh->starting > 0) /* a start in progress either hands over or gives up */
        pthread_cond_wait(&mh->started_cv, &mh->mu);
    pthread_mutex_unlock(&mh->mu);
    curl_multi_wakeup(mh->m);
    pthread_join(mh->th, NULL);
    for (i = 0; i < mh->nidle; i++)
        curl_easy_cleanup(mh->idle[i]);
    curl_multi_cleanup(mh->m);
    pthread_cond_destroy(&mh->started_cv);
    pthread_mutex_destroy(&mh->mu);
    free(mh);
}
