/*
 * factories_tls.c - TLS pair factories for the transport conformance suite:
 * mTLS over ct_pipe_pair, over the built-in TCP transport (through
 * ct_transport_new_tls) and inside another mTLS session over a pipe.
 */
#include "factories_tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HS_TIMEOUT_MS 10000

typedef struct tls_fixture {
    ct_tls_config *client, *server, *inner_client;
    ct_transport *srv_t, *cli_t;
    ct_listener *l;
} tls_fixture;

static uint8_t *read_fixture(const char *name, size_t *len)
{
    const char *dir = getenv("CT_TEST_FIXTURES");
    char path[1024];
    uint8_t *buf = NULL;
    FILE *f;
    long n;

    *len = 0;
    if (!dir)
        return NULL;
    snprintf(path, sizeof path, "%s/tls/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (1 << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static ct_err make_config(ct_ctx *ctx, ct_tls_role role, const char *cert, const char *key,
                          const char *server_name, ct_tls_config **out)
{
    ct_tls_options o = CT_TLS_OPTIONS_INIT;
    size_t cl = 0, kl = 0, al = 0;
    uint8_t *c = read_fixture(cert, &cl), *k = read_fixture(key, &kl);
    uint8_t *ca = read_fixture("ca.pem", &al);
    ct_secret *ks = NULL;
    ct_err rc = CT_E_NOTFOUND;

    if (c && k && ca && (rc = ct_secret_from(k, kl, &ks, NULL)) == CT_OK) {
        o.role = role;
        o.cert = c;
        o.cert_len = cl;
        o.key = ks;
        o.ca = ca;
        o.ca_len = al;
        o.server_name = server_name;
        rc = ct_tls_config_new(ctx, &o, out, NULL);
    }
    if (k)
        ct_secure_wipe(k, kl);
    free(c);
    free(k);
    free(ca);
    ct_secret_free(ks);
    return rc;
}

static void teardown(void *fixture)
{
    tls_fixture *f = fixture;
    if (!f)
        return;
    ct_listener_free(f->l);
    ct_transport_free(f->srv_t);
    ct_transport_free(f->cli_t);
    ct_tls_config_free(f->client);
    ct_tls_config_free(f->server);
    ct_tls_config_free(f->inner_client);
    free(f);
}

static int setup_common(ct_ctx *ctx, tls_fixture **out)
{
    tls_fixture *f = calloc(1, sizeof *f);
    *out = NULL;
    if (!f)
        return -1;
    if (make_config(ctx, CT_TLS_CLIENT, "client.pem", "client-key.pem", "localhost",
                    &f->client) != CT_OK ||
        make_config(ctx, CT_TLS_SERVER, "server.pem", "server-key.pem", NULL, &f->server) !=
            CT_OK ||
        make_config(ctx, CT_TLS_CLIENT, "client.pem", "client-key.pem", "broker.local",
                    &f->inner_client) != CT_OK) {
        teardown(f);
        return -1;
    }
    *out = f;
    return 0;
}

static int setup_plain(ct_ctx *ctx, void **fixture)
{
    tls_fixture *f;
    int r = setup_common(ctx, &f);
    *fixture = f;
    return r;
}

static int setup_tcp(ct_ctx *ctx, void **fixture)
{
    tls_fixture *f;
    ct_transport *a = NULL, *b = NULL;
    *fixture = NULL;
    if (setup_common(ctx, &f) != 0)
        return -1;
    if (ct_transport_new_tcp(ctx, &a, NULL) != CT_OK ||
        ct_transport_new_tcp(ctx, &b, NULL) != CT_OK)
        goto fail;
    if (ct_transport_new_tls(ctx, a, f->server, &f->srv_t, NULL) != CT_OK)
        goto fail;
    a = NULL;
    if (ct_transport_new_tls(ctx, b, f->client, &f->cli_t, NULL) != CT_OK)
        goto fail;
    b = NULL;
    if (ct_transport_listen(f->srv_t, "127.0.0.1", 0, &f->l, NULL) != CT_OK)
        goto fail;
    *fixture = f;
    return 0;
fail:
    ct_transport_free(a);
    ct_transport_free(b);
    teardown(f);
    return -1;
}

/* The server half of a pair: a handshake or an accept, in a thread. */
typedef struct srv_job {
    ct_tls_config *cfg;
    ct_conn *inner;
    ct_listener *l;
    ct_conn *out;
    ct_err rc;
    ct_error err;
} srv_job;

static void *srv_main(void *arg)
{
    srv_job *j = arg;
    if (j->l)
        j->rc = ct_listener_accept(j->l, HS_TIMEOUT_MS, &j->out, &j->err);
    else
        j->rc = ct_tls_wrap(j->cfg, j->inner, HS_TIMEOUT_MS, &j->out, &j->err);
    ct_thread_cleanup(); /* the helper thread did ECC */
    return NULL;
}

static ct_err finish(srv_job *j, pthread_t th, ct_err crc, ct_conn *c, ct_conn **client,
                     ct_conn **server, ct_error *err)
{
    pthread_join(th, NULL);
    if (crc == CT_OK && j->rc != CT_OK) {
        crc = j->rc;
        if (err)
            *err = j->err;
    }
    if (crc != CT_OK) {
        ct_conn_free(c);
        ct_conn_free(j->out);
        return crc;
    }
    *client = c;
    *server = j->out;
    return CT_OK;
}

/* Runs both handshakes over an existing pair (ownership of ci/si passes). */
static ct_err wrap_pair(ct_tls_config *ccfg, ct_tls_config *scfg, ct_conn *ci, ct_conn *si,
                        ct_conn **client, ct_conn **server, ct_error *err)
{
    srv_job j;
    pthread_t th;
    ct_conn *c = NULL;
    ct_err rc;

    memset(&j, 0, sizeof j);
    j.cfg = scfg;
    j.inner = si;
    if (pthread_create(&th, NULL, srv_main, &j) != 0) {
        ct_conn_free(ci);
        ct_conn_free(si);
        return CT_E_INTERNAL;
    }
    rc = ct_tls_wrap(ccfg, ci, HS_TIMEOUT_MS, &c, err);
    return finish(&j, th, rc, c, client, server, err);
}

static ct_err make_pipe(ct_ctx *ctx, void *fixture, ct_conn **client, ct_conn **server,
                        ct_error *err)
{
    tls_fixture *f = fixture;
    ct_conn *a = NULL, *b = NULL;
    ct_err rc = ct_pipe_pair(ctx, 0, &a, &b, err);
    if (rc != CT_OK)
        return rc;
    return wrap_pair(f->client, f->server, a, b, client, server, err);
}

static ct_err make_tcp(ct_ctx *ctx, void *fixture, ct_conn **client, ct_conn **server,
                       ct_error *err)
{
    tls_fixture *f = fixture;
    srv_job j;
    pthread_t th;
    ct_conn *c = NULL;
    ct_err rc;

    (void)ctx;
    memset(&j, 0, sizeof j);
    j.l = f->l;
    if (pthread_create(&th, NULL, srv_main, &j) != 0)
        return CT_E_INTERNAL;
    rc = ct_transport_dial(f->cli_t, "127.0.0.1", ct_listener_port(f->l), HS_TIMEOUT_MS, &c, err);
    return finish(&j, th, rc, c, client, server, err);
}

static ct_err make_tls_in_tls(ct_ctx *ctx, void *fixture, ct_conn **client, ct_conn **server,
                              ct_error *err)
{
    tls_fixture *f = fixture;
    ct_conn *oc = NULL, *os = NULL;
    ct_err rc = make_pipe(ctx, fixture, &oc, &os, err);
    if (rc != CT_OK)
        return rc;
    return wrap_pair(f->inner_client, f->server, oc, os, client, server, err);
}

/* The beacon case: end-to-end mTLS inside a TLS session over TCP loopback. */
static ct_err make_tls_in_tls_tcp(ct_ctx *ctx, void *fixture, ct_conn **client,
                                  ct_conn **server, ct_error *err)
{
    tls_fixture *f = fixture;
    ct_conn *oc = NULL, *os = NULL;
    ct_err rc = make_tcp(ctx, fixture, &oc, &os, err);
    if (rc != CT_OK)
        return rc;
    return wrap_pair(f->inner_client, f->server, oc, os, client, server, err);
}

/* duplex_threads 0: a TLS connection is used by one thread at a time. */
const ct_pair_factory ct_tls_factory_pipe = {
    .name = "tls-over-pipe", .setup = setup_plain, .make_pair = make_pipe,
    .teardown = teardown, .half_close = 1, .duplex_threads = 0,
    .free_is_abort = 1,
};
const ct_pair_factory ct_tls_factory_tcp = {
    .name = "tls-over-tcp", .setup = setup_tcp, .make_pair = make_tcp,
    .teardown = teardown, .half_close = 1, .duplex_threads = 0,
    .free_is_abort = 1,
};
const ct_pair_factory ct_tls_factory_tls = {
    .name = "tls-over-tls", .setup = setup_plain, .make_pair = make_tls_in_tls,
    .teardown = teardown, .half_close = 1, .duplex_threads = 0,
    .free_is_abort = 1,
};

const ct_pair_factory ct_tls_factory_tls_tcp = {
    .name = "tls-over-tls-over-tcp", .setup = setup_tcp, .make_pair = make_tls_in_tls_tcp,
    .teardown = teardown, .half_close = 1, .duplex_threads = 0,
    .free_is_abort = 1,
};

const ct_pair_factory *const ct_tls_factories[] = {
    &ct_tls_factory_pipe, &ct_tls_factory_tcp, &ct_tls_factory_tls, NULL,
};
