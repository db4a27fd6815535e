/*
 * test_pki.c - keys, CA, requests, issuance and verification. The openssl
 * command-line tool is the third-party judge: it verifies our chains,
 * requests and keys, and makes keys and requests that we must accept (or
 * refuse).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


#include "testutil.h"

#define DAY_MS ((int64_t)86400 * 1000)

/* ---------------------------------------------------------------- helpers */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int st;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* Runs a command and returns its stdout (malloc'ed, NUL-terminated). */
static char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_out(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    FILE *p;
    size_t cap = 65536, n;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    n = fread(buf, 1, cap - 1, p);
    buf[n] = '\0';
    pclose(p);
    return buf;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A temporary path (the file exists, empty) for openssl to write into. */
static char *tmp_path(void)
{
    return ct_test_tmpfile(NULL, 0);
}

static void rm(char *path)
{
    if (path) {
        unlink(path);
        free(path);
    }
}

/* Writes a DER certificate or request as PEM to a temp file. */
static char *pem_file(const uint8_t *der, size_t len)
{
    char *pem = NULL, *path;
    ct_error err;
    ck_ok(ct_cert_der_to_pem(der, len, &pem, &err), &err);
    path = ct_test_tmpfile(pem, strlen(pem));
    ct_free(pem);
    return path;
}

static void opts_init(ct_cert_options *o, const char *cn)
{
    ct_cert_options z = CT_CERT_OPTIONS_INIT;
    *o = z;
    o->common_name = cn;
}

static const char *const k_srv_dns[] = {"broker.local", "*.broker.local"};
static const char *const k_srv_ip[] = {"127.0.0.1", "::1"};

static void server_opts(ct_cert_options *o)
{
    opts_init(o, "broker.local");
    o->organization = "cloudtaser";
    o->dns_names = k_srv_dns;
    o->n_dns_names = 2;
    o->ip_addrs = k_srv_ip;
    o->n_ip_addrs = 2;
}

/* key -> CSR -> certificate issued by (ca, ca_key). */
static void issue(ct_ctx *ctx, const uint8_t *ca, size_t ca_len, const ct_key *ca_key,
                  const ct_key *key, ct_cert_usage usage, const ct_cert_options *o,
                  uint8_t **der, size_t *len)
{
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    ct_error err;
    ck_ok(ct_csr_create(ctx, key, o, &csr, &csr_len, &err), &err);
    ck_ok(ct_cert_issue(ctx, ca, ca_len, ca_key, csr, csr_len, usage, o, der, len, &err), &err);
    ct_free(csr);
}

typedef struct pki {
    ct_key *ca_key, *srv_key, *cli_key;
    uint8_t *ca, *srv, *cli;
    size_t ca_len, srv_len, cli_len;
} pki;

static void pki_make(ct_ctx *ctx, pki *p)
{
    ct_cert_options o;
    ct_error err;
    memset(p, 0, sizeof *p);
    ck_ok(ct_key_generate(ctx, &p->ca_key, &err), &err);
    ck_ok(ct_key_generate(ctx, &p->srv_key, &err), &err);
    ck_ok(ct_key_generate(ctx, &p->cli_key, &err), &err);
    opts_init(&o, "cloudtaser cluster CA");
    o.organization = "cloudtaser";
    ck_ok(ct_ca_create(ctx, p->ca_key, &o, &p->ca, &p->ca_len, &err), &err);
    server_opts(&o);
    issue(ctx, p->ca, p->ca_len, p->ca_key, p->srv_key, CT_CERT_SERVER, &o, &p->srv, &p->srv_len);
    opts_init(&o, "operator");
    issue(ctx, p->ca, p->ca_len, p->ca_key, p->cli_key, CT_CERT_CLIENT, &o, &p->cli, &p->cli_len);
}

static void pki_free(pki *p)
{
    ct_key_free(p->ca_key);
    ct_key_free(p->srv_key);
    ct_key_free(p->cli_key);
    ct_free(p->ca);
    ct_free(p->srv);
    ct_free(p->cli);
}

typedef struct fake_clock {
    int64_t wall_ms;
} fake_clock;

static int64_t fake_wall(void *user)
{
    return ((fake_clock *)user)->wall_ms;
}

static ct_ctx *clock_ctx(fake_clock *fc)
{
    ct_ctx_options o = CT_CTX_OPTIONS_INIT;
    ct_ctx *ctx = NULL;
    o.wall_ms = fake_wall;
    o.clock_user = fc;
    ck_ok(ct_ctx_new(&o, &ctx, NULL), NULL);
    return ctx;
}

static int64_t real_now_ms(void)
{
    return ct_ctx_wall_ms(NULL);
}

/* ------------------------------------------------------------------- keys */

START_TEST(key_roundtrip)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_key *k = NULL, *k2 = NULL, *k3 = NULL;
    ct_secret *pem = NULL, *der = NULL;
    uint8_t *p1 = NULL, *p2 = NULL, *p3 = NULL, *ossl;
    size_t l1, l2, l3, ol;
    char *path, *out;
    ct_error err;

    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    ck_ok(ct_key_export(k, 1, &pem, &err), &err);
    ck_ok(ct_key_export(k, 0, &der, &err), &err);
    ck_assert(strncmp((const char *)ct_secret_data(pem), "-----BEGIN EC PRIVATE KEY-----", 30) == 0);
    ck_assert_uint_eq(strlen((const char *)ct_secret_data(pem)), ct_secret_len(pem));
    ck_assert_uint_eq(ct_secret_data(der)[0], 0x30);
    ck_ok(ct_key_load(ctx, ct_secret_data(pem), ct_secret_len(pem), &k2, &err), &err);
    ck_ok(ct_key_load(ctx, ct_secret_data(der), ct_secret_len(der), &k3, &err), &err);
    ck_ok(ct_key_public_der(k, &p1, &l1, &err), &err);
    ck_ok(ct_key_public_der(k2, &p2, &l2, &err), &err);
    ck_ok(ct_key_public_der(k3, &p3, &l3, &err), &err);
    ck_assert_uint_eq(l1, 91);
    ck_assert(l1 == l2 && memcmp(p1, p2, l1) == 0);
    ck_assert(l1 == l3 && memcmp(p1, p3, l1) == 0);

    /* openssl reads our key, checks it, and derives the same public key */
    path = ct_test_tmpfile(ct_secret_data(pem), ct_secret_len(pem));
    out = tmp_path();
    ck_assert_int_eq(sh("openssl ec -in '%s' -check -noout 2>/dev/null", path), 0);
    ck_assert_int_eq(sh("openssl pkey -in '%s' -pubout -outform DER -out '%s'", path, out), 0);
    ossl = read_file(out, &ol);
    ck_assert(ol == l1 && memcmp(ossl, p1, l1) == 0);
    free(ossl);
    rm(path);
    rm(out);

    ct_free(p1);
    ct_free(p2);
    ct_free(p3);
    ct_secret_free(pem);
    ct_secret_free(der);
    ct_key_free(k);
    ct_key_free(k2);
    ct_key_free(k3);
    ct_ctx_free(ctx);
}
END_TEST

/*
 * Loads an openssl-made key file and checks the public half matches openssl's.
 * gen_cmd writes the key to "$OUT".
 */
static void load_openssl_key(ct_ctx *ctx, const char *gen_cmd, int der_form)
{
    char *key = tmp_path(), *pub = tmp_path(), *in = tmp_path();
    uint8_t *data, *want, *got = NULL;
    size_t len, wl, gl;
    ct_key *k = NULL;
    ct_error err;

    ck_assert_int_eq(sh("OUT='%s'; %s", key, gen_cmd), 0);
    if (der_form)
        ck_assert_int_eq(sh("openssl pkey -in '%s' -outform DER -out '%s'", key, in), 0);
    else
        ck_assert_int_eq(sh("cp '%s' '%s'", key, in), 0);
    ck_assert_int_eq(sh("openssl pkey -in '%s' -pubout -outform DER -out '%s'", key, pub), 0);
    data = read_file(in, &len);
    want = read_file(pub, &wl);
    ck_ok(ct_key_load(ctx, data, len, &k, &err), &err);
    ck_ok(ct_key_public_der(k, &got, &gl, &err), &err);
    ck_assert_msg(gl == wl && memcmp(got, want, wl) == 0, "public key differs for %s", gen_cmd);
    ct_secure_wipe(data, len);
    free(data);
    free(want);
    ct_free(got);
    ct_key_free(k);
    rm(key);
    rm(pub);
    rm(in);
}

START_TEST(key_load_openssl)
{
    ct_ctx *ctx = ct_test_ctx();
    static const char *gens[] = {
        /* SEC1 "EC PRIVATE KEY" */
        "openssl ecparam -genkey -name prime256v1 -noout -out \"$OUT\"",
        /* SEC1 preceded by an "EC PARAMETERS" block */
        "openssl ecparam -genkey -name prime256v1 -out \"$OUT\"",
        /* PKCS#8 "PRIVATE KEY" */
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$OUT\"",
    };
    for (size_t i = 0; i < sizeof gens / sizeof gens[0]; i++) {
        load_openssl_key(ctx, gens[i], 0);
        load_openssl_key(ctx, gens[i], 1);
    }
    ct_ctx_free(ctx);
}
END_TEST

static void refuse_key_file(ct_ctx *ctx, const char *gen_cmd, const char *want_msg)
{
    char *path = tmp_path();
    uint8_t *data;
    size_t len;
    ct_key *k = NULL;
    ct_error err;
    ck_assert_int_eq(sh("OUT='%s'; %s", path, gen_cmd), 0);
    data = read_file(path, &len);
    ck_err(ct_key_load(ctx, data, len, &k, &err), CT_E_CRYPTO, &err);
    ck_assert_ptr_null(k);
    ck_assert_msg(strstr(err.message, want_msg), "'%s' lacks '%s'", err.message, want_msg);
    free(data);
    rm(path);
}

START_TEST(key_load_refuses)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_key *k = NULL, *good = NULL;
    ct_secret *der = NULL;
    ct_error err;
    uint8_t junk[200], sec1[51];
    static const uint8_t p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const uint8_t n[32] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
                                  0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};

    refuse_key_file(ctx, "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
                         "-out \"$OUT\" 2>/dev/null",
                    "not an EC key");
    refuse_key_file(ctx, "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
                         "2>/dev/null | openssl rsa -traditional -out \"$OUT\" 2>/dev/null",
                    "EC PRIVATE KEY");
    refuse_key_file(ctx, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out \"$OUT\"",
                    "P-256");
    refuse_key_file(ctx, "openssl ecparam -genkey -name secp384r1 -noout -out \"$OUT\"", "P-256");
    refuse_key_file(ctx, "openssl ecparam -genkey -name secp256k1 -noout -out \"$OUT\"", "P-256");
    refuse_key_file(ctx, "openssl genpkey -algorithm ED25519 -out \"$OUT\"", "not an EC key");
    refuse_key_file(ctx,
                    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 | openssl pkcs8 "
                    "-topk8 -passout pass:secret -out \"$OUT\"",
                    "encrypted");

    /* garbage, truncations */
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    ck_err(ct_key_load(ctx, junk, sizeof junk, &k, &err), CT_E_CRYPTO, &err);
    junk[0] = 0x30;
    ck_err(ct_key_load(ctx, junk, sizeof junk, &k, &err), CT_E_CRYPTO, &err);
    ck_err(ct_key_load(ctx, (const uint8_t *)"-----BEGIN CERTIFICATE-----\n", 28, &k, &err),
           CT_E_CRYPTO, &err);
    ck_err(ct_key_load(ctx, junk, 0, &k, &err), CT_E_INVALID, &err);
    ck_err(ct_key_load(ctx, NULL, 5, &k, &err), CT_E_INVALID, &err);

    ck_ok(ct_key_generate(ctx, &good, &err), &err);
    ck_ok(ct_key_export(good, 0, &der, &err), &err);
    for (size_t cut = 1; cut < ct_secret_len(der); cut++)
        ck_err(ct_key_load(ctx, ct_secret_data(der), cut, &k, &err), CT_E_CRYPTO, &err);
    /* a stored public key that does not match the scalar */
    ct_secret_data(der)[ct_secret_len(der) - 1] ^= 1;
    ck_err(ct_key_load(ctx, ct_secret_data(der), ct_secret_len(der), &k, &err), CT_E_CRYPTO,
           &err);
    ck_assert(strstr(err.message, "does not match"));

    /* hand-made SEC1 without public key: d = 0 and d = n are out of range, d = 1 is fine */
    sec1[0] = 0x30;
    sec1[1] = 49;
    memcpy(sec1 + 2, "\x02\x01\x01\x04\x20", 5);
    sec1[39] = 0xa0;
    sec1[40] = 10;
    memcpy(sec1 + 41, p256_oid, sizeof p256_oid);
    memset(sec1 + 7, 0, 32);
    ck_err(ct_key_load(ctx, sec1, sizeof sec1, &k, &err), CT_E_CRYPTO, &err);
    memcpy(sec1 + 7, n, 32);
    ck_err(ct_key_load(ctx, sec1, sizeof sec1, &k, &err), CT_E_CRYPTO, &err);
    memset(sec1 + 7, 0, 32);
    sec1[38] = 1;
    ck_ok(ct_key_load(ctx, sec1, sizeof sec1, &k, &err), &err);
    ct_key_free(k);
    k = NULL;

    ct_secret_free(der);
    ct_key_free(good);
    ct_ctx_free(ctx);
}
END_TEST

/* --------------------------------------------------- CA, chain, openssl */

START_TEST(ca_as_openssl_sees_it)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    char *ca, *srv, *text;

    pki_make(ctx, &p);
    ca = pem_file(p.ca, p.ca_len);
    srv = pem_file(p.srv, p.srv_len);
    text = sh_out("openssl x509 -in '%s' -noout -text", ca);
    ck_assert_msg(strstr(text, "CA:TRUE, pathlen:0"), "%s", text);
    ck_assert_msg(strstr(text, "X509v3 Key Usage: critical"), "%s", text);
    ck_assert_msg(strstr(text, "Certificate Sign, CRL Sign"), "%s", text);
    ck_assert_msg(strstr(text, "X509v3 Subject Key Identifier"), "%s", text);
    ck_assert_msg(strstr(text, "ecdsa-with-SHA256"), "%s", text);
    ck_assert_msg(strstr(text, "NIST CURVE: P-256"), "%s", text);
    ck_assert_msg(strstr(text, "Subject: O = cloudtaser, CN = cloudtaser cluster CA"), "%s", text);
    free(text);
    /* a self-signed root is valid on its own */
    ck_assert_int_eq(sh("openssl verify -CAfile '%s' '%s' >/dev/null", ca, ca), 0);

    text = sh_out("openssl x509 -in '%s' -noout -text", srv);
    ck_assert_msg(strstr(text, "X509v3 Key Usage: critical"), "%s", text);
    ck_assert_msg(strstr(text, "Digital Signature"), "%s", text);
    ck_assert_msg(strstr(text, "TLS Web Server Authentication"), "%s", text);
    ck_assert_msg(strstr(text, "DNS:broker.local, DNS:*.broker.local, IP Address:127.0.0.1, "
                               "IP Address:0:0:0:0:0:0:0:1"),
                  "%s", text);
    ck_assert_msg(strstr(text, "X509v3 Authority Key Identifier"), "%s", text);
    ck_assert_msg(!strstr(text, "CA:TRUE"), "%s", text);
    free(text);
    /* 16-byte positive serial */
    text = sh_out("openssl x509 -in '%s' -noout -serial", srv);
    ck_assert_msg(strlen(text) == strlen("serial=") + 32 + 1, "%s", text);
    free(text);
    rm(ca);
    rm(srv);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(chain_openssl_verify)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    char *ca, *srv, *cli;
    const char *v = "openssl verify -CAfile";

    pki_make(ctx, &p);
    ca = pem_file(p.ca, p.ca_len);
    srv = pem_file(p.srv, p.srv_len);
    cli = pem_file(p.cli, p.cli_len);
    ck_assert_int_eq(sh("%s '%s' -purpose sslserver '%s' >/dev/null", v, ca, srv), 0);
    ck_assert_int_eq(sh("%s '%s' -purpose sslclient '%s' >/dev/null", v, ca, cli), 0);
    /* the extended key usage is right: no swapping roles */
    ck_assert_int_ne(sh("%s '%s' -purpose sslclient '%s' >/dev/null 2>&1", v, ca, srv), 0);
    ck_assert_int_ne(sh("%s '%s' -purpose sslserver '%s' >/dev/null 2>&1", v, ca, cli), 0);
    /* names */
    ck_assert_int_eq(sh("%s '%s' -verify_hostname broker.local '%s' >/dev/null", v, ca, srv), 0);
    ck_assert_int_eq(sh("%s '%s' -verify_hostname x.broker.local '%s' >/dev/null", v, ca, srv), 0);
    ck_assert_int_ne(sh("%s '%s' -verify_hostname other.local '%s' >/dev/null 2>&1", v, ca, srv),
                     0);
    ck_assert_int_eq(sh("%s '%s' -verify_ip 127.0.0.1 '%s' >/dev/null", v, ca, srv), 0);
    ck_assert_int_eq(sh("%s '%s' -verify_ip ::1 '%s' >/dev/null", v, ca, srv), 0);
    ck_assert_int_ne(sh("%s '%s' -verify_ip 127.0.0.2 '%s' >/dev/null 2>&1", v, ca, srv), 0);
    rm(ca);
    rm(srv);
    rm(cli);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(chain_from_other_ca_fails_in_openssl)
{
    ct_ctx *ctx = ct_test_ctx();
    pki a, b;
    char *ca_a, *srv_b;
    pki_make(ctx, &a);
    pki_make(ctx, &b);
    ca_a = pem_file(a.ca, a.ca_len);
    srv_b = pem_file(b.srv, b.srv_len);
    ck_assert_int_ne(sh("openssl verify -CAfile '%s' '%s' >/dev/null 2>&1", ca_a, srv_b), 0);
    rm(ca_a);
    rm(srv_b);
    pki_free(&a);
    pki_free(&b);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- requests */

START_TEST(csr_openssl_verifies_ours)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_key *k = NULL;
    ct_cert_options o;
    uint8_t *csr = NULL;
    size_t len;
    char *path, *text, *pem = NULL;
    ct_error err;

    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    server_opts(&o);
    ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
    ck_ok(ct_cert_der_to_pem(csr, len, &pem, &err), &err);
    ck_assert(strncmp(pem, "-----BEGIN CERTIFICATE REQUEST-----", 35) == 0);
    path = ct_test_tmpfile(pem, strlen(pem));
    ck_assert_int_eq(sh("openssl req -in '%s' -verify -noout 2>/dev/null", path), 0);
    text = sh_out("openssl req -in '%s' -noout -text 2>/dev/null", path);
    ck_assert_msg(strstr(text, "CN = broker.local"), "%s", text);
    ck_assert_msg(strstr(text, "DNS:broker.local"), "%s", text);
    free(text);
    rm(path);
    ct_free(pem);
    ct_free(csr);
    ct_key_free(k);
    ct_ctx_free(ctx);
}
END_TEST

/* Makes a request with openssl, returns its DER via ct_cert_pem_to_der. */
static uint8_t *openssl_csr(const char *newkey, size_t *len)
{
    char *key = tmp_path(), *req = tmp_path();
    uint8_t *pem, *der = NULL;
    size_t pl;
    ct_error err;
    ck_assert_int_eq(sh("openssl req -new %s -nodes -keyout '%s' -subj /CN=x -out '%s' "
                        "2>/dev/null",
                        newkey, key, req),
                     0);
    pem = read_file(req, &pl);
    ck_ok(ct_cert_pem_to_der((const char *)pem, pl, &der, len, &err), &err);
    free(pem);
    rm(key);
    rm(req);
    return der;
}

START_TEST(csr_interop_openssl)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    ct_cert_options o;
    uint8_t *csr, *cert = NULL;
    size_t csr_len, cert_len;
    char *ca, *leaf, *text;
    ct_error err;

    pki_make(ctx, &p);
    server_opts(&o);
    csr = openssl_csr("-newkey ec -pkeyopt ec_paramgen_curve:P-256", &csr_len);
    ck_ok(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, csr_len, CT_CERT_SERVER, &o, &cert,
                        &cert_len, &err),
          &err);
    ca = pem_file(p.ca, p.ca_len);
    leaf = pem_file(cert, cert_len);
    ck_assert_int_eq(sh("openssl verify -CAfile '%s' -purpose sslserver -verify_hostname "
                        "broker.local '%s' >/dev/null",
                        ca, leaf),
                     0);
    /* the issuer decides the subject, not the request (which said CN=x) */
    text = sh_out("openssl x509 -in '%s' -noout -subject", leaf);
    ck_assert_msg(strstr(text, "CN = broker.local"), "%s", text);
    free(text);
    ck_ok(ct_cert_verify(ctx, p.ca, p.ca_len, cert, cert_len, CT_CERT_SERVER, &err), &err);
    ct_free(cert);
    cert = NULL;
    ct_free(csr);
    rm(ca);
    rm(leaf);

    /* an openssl request signed with SHA-384 is fine too */
    csr = openssl_csr("-newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha384", &csr_len);
    ck_ok(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, csr_len, CT_CERT_CLIENT, &o, &cert,
                        &cert_len, &err),
          &err);
    ct_free(cert);
    cert = NULL;
    ct_free(csr);

    /* RSA and other curves are refused */
    csr = openssl_csr("-newkey rsa:1024", &csr_len);
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, csr_len, CT_CERT_SERVER, &o, &cert,
                         &cert_len, &err),
           CT_E_CRYPTO, &err);
    ck_assert_ptr_null(cert);
    ck_assert_msg(strstr(err.message, "P-256"), "%s", err.message);
    ct_free(csr);
    csr = openssl_csr("-newkey ec -pkeyopt ec_paramgen_curve:P-384", &csr_len);
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, csr_len, CT_CERT_SERVER, &o, &cert,
                         &cert_len, &err),
           CT_E_CRYPTO, &err);
    ct_free(csr);

    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(csr_tampering_refused)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    ct_key *k = NULL;
    ct_cert_options o;
    uint8_t *csr = NULL, *bad, *cert = NULL;
    size_t len, cert_len, i, step = ct_test_under_valgrind() ? 7 : 1;
    ct_error err;

    pki_make(ctx, &p);
    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    server_opts(&o);
    ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
    bad = malloc(len);
    ck_assert_ptr_nonnull(bad);

    /* one bit flipped in the signature */
    memcpy(bad, csr, len);
    bad[len - 3] ^= 0x10;
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, bad, len, CT_CERT_SERVER, &o, &cert,
                         &cert_len, &err),
           CT_E_CRYPTO, &err);
    ck_assert_msg(strstr(err.message, "signature"), "%s", err.message);
    ck_assert_ptr_null(cert);

    /* any single bit flipped anywhere: refused, no crash */
    for (i = 0; i < len; i += step) {
        memcpy(bad, csr, len);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, bad, len, CT_CERT_SERVER, &o, &cert,
                             &cert_len, &err),
               CT_E_CRYPTO, &err);
    }
    /* every truncation */
    for (i = 1; i < len; i += step)
        ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, i, CT_CERT_SERVER, &o, &cert,
                             &cert_len, &err),
               CT_E_CRYPTO, &err);
    /* garbage; a certificate is not a request */
    for (i = 0; i < len; i++)
        bad[i] = (uint8_t)(i * 131 + 7);
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, bad, len, CT_CERT_SERVER, &o, &cert,
                         &cert_len, &err),
           CT_E_CRYPTO, &err);
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, p.srv, p.srv_len, CT_CERT_SERVER, &o,
                         &cert, &cert_len, &err),
           CT_E_CRYPTO, &err);
    /* the pristine request still works */
    ck_ok(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, len, CT_CERT_SERVER, &o, &cert,
                        &cert_len, &err),
          &err);
    ct_free(cert);
    free(bad);
    ct_free(csr);
    ct_key_free(k);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(issue_refuses_wrong_ca_key)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    ct_key *other = NULL;
    ct_cert_options o;
    uint8_t *csr = NULL, *cert = NULL;
    size_t csr_len, cert_len;
    ct_error err;

    pki_make(ctx, &p);
    ck_ok(ct_key_generate(ctx, &other, &err), &err);
    opts_init(&o, "leaf");
    ck_ok(ct_csr_create(ctx, p.srv_key, &o, &csr, &csr_len, &err), &err);
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, other, csr, csr_len, CT_CERT_SERVER, &o, &cert,
                         &cert_len, &err),
           CT_E_INVALID, &err);
    ck_assert_msg(strstr(err.message, "ca_key"), "%s", err.message);
    ck_assert_ptr_null(cert);
    /* a leaf is not a CA */
    ck_err(ct_cert_issue(ctx, p.srv, p.srv_len, p.srv_key, csr, csr_len, CT_CERT_SERVER, &o,
                         &cert, &cert_len, &err),
           CT_E_INVALID, &err);
    /* garbage CA */
    ck_err(ct_cert_issue(ctx, csr, csr_len, p.ca_key, csr, csr_len, CT_CERT_SERVER, &o, &cert,
                         &cert_len, &err),
           CT_E_INVALID, &err);
    /* usage must be a leaf usage */
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, csr_len, CT_CERT_CA, &o, &cert,
                         &cert_len, &err),
           CT_E_INVALID, &err);
    ck_err(ct_cert_issue(ctx, p.ca, p.ca_len, p.ca_key, csr, csr_len, CT_CERT_SERVER, NULL, &cert,
                         &cert_len, &err),
           CT_E_INVALID, &err);
    ct_free(csr);
    ct_key_free(other);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------- verification */

START_TEST(verify_good_and_wrong)
{
    ct_ctx *ctx = ct_test_ctx();
    pki a, b;
    uint8_t *bad;
    ct_error err;

    pki_make(ctx, &a);
    pki_make(ctx, &b);
    ck_ok(ct_cert_verify(ctx, a.ca, a.ca_len, a.srv, a.srv_len, CT_CERT_SERVER, &err), &err);
    ck_ok(ct_cert_verify(ctx, a.ca, a.ca_len, a.cli, a.cli_len, CT_CERT_CLIENT, &err), &err);
    ck_ok(ct_cert_verify(ctx, a.ca, a.ca_len, a.ca, a.ca_len, CT_CERT_CA, &err), &err);

    /* another CA */
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, b.srv, b.srv_len, CT_CERT_SERVER, &err), CT_E_CERT,
           &err);
    ck_assert_msg(strstr(err.message, "chain"), "%s", err.message);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, b.ca, b.ca_len, CT_CERT_CA, &err), CT_E_CERT, &err);
    /* wrong usage */
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, a.srv, a.srv_len, CT_CERT_CLIENT, &err), CT_E_CERT,
           &err);
    ck_assert_msg(strstr(err.message, "clientAuth"), "%s", err.message);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, a.cli, a.cli_len, CT_CERT_SERVER, &err), CT_E_CERT,
           &err);
    ck_assert_msg(strstr(err.message, "serverAuth"), "%s", err.message);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, a.srv, a.srv_len, CT_CERT_CA, &err), CT_E_CERT,
           &err);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, a.ca, a.ca_len, CT_CERT_SERVER, &err), CT_E_CERT,
           &err);
    /* a leaf as trust anchor */
    ck_err(ct_cert_verify(ctx, a.srv, a.srv_len, a.cli, a.cli_len, CT_CERT_CLIENT, &err),
           CT_E_CERT, &err);

    /* a flipped signature bit */
    bad = malloc(a.srv_len);
    ck_assert_ptr_nonnull(bad);
    memcpy(bad, a.srv, a.srv_len);
    bad[a.srv_len - 2] ^= 1;
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, bad, a.srv_len, CT_CERT_SERVER, &err), CT_E_CERT,
           &err);
    /* truncated and garbage */
    for (size_t i = 1; i < a.srv_len; i += ct_test_under_valgrind() ? 13 : 3)
        ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, a.srv, i, CT_CERT_SERVER, &err), CT_E_CERT, &err);
    for (size_t i = 1; i < a.ca_len; i += ct_test_under_valgrind() ? 13 : 3)
        ck_err(ct_cert_verify(ctx, a.ca, i, a.srv, a.srv_len, CT_CERT_SERVER, &err), CT_E_CERT,
               &err);
    memset(bad, 0x41, a.srv_len);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, bad, a.srv_len, CT_CERT_SERVER, &err), CT_E_CERT,
           &err);
    free(bad);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, NULL, 3, CT_CERT_SERVER, &err), CT_E_INVALID, &err);
    ck_err(ct_cert_verify(ctx, a.ca, a.ca_len, a.srv, a.srv_len, (ct_cert_usage)9, &err),
           CT_E_INVALID, &err);
    pki_free(&a);
    pki_free(&b);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(verify_uses_context_clock)
{
    fake_clock fc = {real_now_ms()};
    ct_ctx *ctx = clock_ctx(&fc);
    ct_key *ca_key = NULL, *k = NULL;
    uint8_t *ca = NULL, *leaf = NULL, *late = NULL;
    size_t ca_len, leaf_len, late_len;
    int64_t t0 = fc.wall_ms;
    ct_cert_options o;
    ct_error err;

    ck_ok(ct_key_generate(ctx, &ca_key, &err), &err);
    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    opts_init(&o, "CA");
    ck_ok(ct_ca_create(ctx, ca_key, &o, &ca, &ca_len, &err), &err); /* 3650 days */
    opts_init(&o, "leaf");
    o.days_valid = 2;
    issue(ctx, ca, ca_len, ca_key, k, CT_CERT_SERVER, &o, &leaf, &leaf_len);
    fc.wall_ms = t0 + 10 * DAY_MS;
    issue(ctx, ca, ca_len, ca_key, k, CT_CERT_SERVER, &o, &late, &late_len);

    fc.wall_ms = t0;
    ck_ok(ct_cert_verify(ctx, ca, ca_len, leaf, leaf_len, CT_CERT_SERVER, &err), &err);
    /* expired: after notAfter */
    fc.wall_ms = t0 + 3 * DAY_MS;
    ck_err(ct_cert_verify(ctx, ca, ca_len, leaf, leaf_len, CT_CERT_SERVER, &err), CT_E_CERT, &err);
    ck_assert_msg(strstr(err.message, "the certificate expired"), "%s", err.message);
    /* before notBefore (the CA itself is valid then) */
    fc.wall_ms = t0 + 5 * DAY_MS;
    ck_err(ct_cert_verify(ctx, ca, ca_len, late, late_len, CT_CERT_SERVER, &err), CT_E_CERT, &err);
    ck_assert_msg(strstr(err.message, "the certificate is not valid before"), "%s", err.message);
    fc.wall_ms = t0 + 11 * DAY_MS;
    ck_ok(ct_cert_verify(ctx, ca, ca_len, late, late_len, CT_CERT_SERVER, &err), &err);
    /* the CA expired */
    fc.wall_ms = t0 + 3651 * DAY_MS;
    ck_err(ct_cert_verify(ctx, ca, ca_len, ca, ca_len, CT_CERT_CA, &err), CT_E_CERT, &err);
    ck_assert_msg(strstr(err.message, "CA certificate expired"), "%s", err.message);
    /* the CA not yet valid */
    fc.wall_ms = t0 - 2 * DAY_MS;
    ck_err(ct_cert_verify(ctx, ca, ca_len, leaf, leaf_len, CT_CERT_SERVER, &err), CT_E_CERT, &err);

    ct_free(ca);
    ct_free(leaf);
    ct_free(late);
    ct_key_free(ca_key);
    ct_key_free(k);
    ct_ctx_free(ctx);
}
END_TEST

/* A PKI made in 2049/2050 (UTCTime/GeneralizedTime boundary), judged by openssl at that time. */
START_TEST(future_pki_and_time_encoding)
{
    /* 2049-12-31T23:30:00Z */
    fake_clock fc = {(int64_t)2524606200 * 1000};
    ct_ctx *ctx = clock_ctx(&fc), *real = ct_test_ctx();
    ct_key *ca_key = NULL, *k = NULL;
    uint8_t *ca = NULL, *leaf = NULL;
    size_t ca_len, leaf_len;
    ct_cert_options o;
    char *cap, *leafp, *text;
    ct_error err;

    ck_ok(ct_key_generate(ctx, &ca_key, &err), &err);
    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    opts_init(&o, "CA");
    o.days_valid = 1;
    ck_ok(ct_ca_create(ctx, ca_key, &o, &ca, &ca_len, &err), &err);
    opts_init(&o, "leaf");
    issue(ctx, ca, ca_len, ca_key, k, CT_CERT_CLIENT, &o, &leaf, &leaf_len);
    cap = pem_file(ca, ca_len);
    leafp = pem_file(leaf, leaf_len);
    text = sh_out("openssl x509 -in '%s' -noout -startdate -enddate -dateopt iso_8601", cap);
    ck_assert_msg(strstr(text, "notBefore=2049-12-31 22:30:00Z"), "%s", text);
    ck_assert_msg(strstr(text, "notAfter=2050-01-01 23:30:00Z"), "%s", text);
    free(text);
    /* clamped: the leaf (365 days by default) ends with the CA */
    text = sh_out("openssl x509 -in '%s' -noout -enddate -dateopt iso_8601", leafp);
    ck_assert_msg(strstr(text, "notAfter=2050-01-01 23:30:00Z"), "%s", text);
    free(text);
    ck_assert_int_eq(sh("openssl verify -attime 2524606200 -CAfile '%s' -purpose sslclient '%s' "
                        ">/dev/null",
                        cap, leafp),
                     0);
    ck_ok(ct_cert_verify(ctx, ca, ca_len, leaf, leaf_len, CT_CERT_CLIENT, &err), &err);
    /* with the real clock it is not yet valid */
    ck_err(ct_cert_verify(real, ca, ca_len, leaf, leaf_len, CT_CERT_CLIENT, &err), CT_E_CERT,
           &err);
    /* after the CA expired, nothing more is issued */
    fc.wall_ms += 2 * DAY_MS;
    {
        uint8_t *csr = NULL, *cert = NULL;
        size_t csr_len, cert_len;
        ck_ok(ct_csr_create(ctx, k, &o, &csr, &csr_len, &err), &err);
        ck_err(ct_cert_issue(ctx, ca, ca_len, ca_key, csr, csr_len, CT_CERT_CLIENT, &o, &cert,
                             &cert_len, &err),
               CT_E_INVALID, &err);
        ck_assert_msg(strstr(err.message, "expired"), "%s", err.message);
        ct_free(csr);
    }
    /* a clock before 1950 cannot be encoded */
    ct_free(leaf);
    fc.wall_ms = (int64_t)-700000000 * 1000;
    ck_err(ct_ca_create(ctx, ca_key, &o, &leaf, &leaf_len, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(leaf);
    rm(cap);
    rm(leafp);
    ct_free(ca);
    ct_key_free(ca_key);
    ct_key_free(k);
    ct_ctx_free(ctx);
    ct_ctx_free(real);
}
END_TEST

/* --------------------------------------------------------------- options */

START_TEST(san_validation)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_key *k = NULL;
    ct_cert_options o;
    uint8_t *csr = NULL;
    size_t len;
    char label64[65], long_name[260], ok_name[254];
    ct_error err;
    static const char *bad_dns[] = {"",        "-a.com",   "a-.com",  "a..b",     ".a",
                                    "a.",      "a_b.com",  "*",       "*.",       "a.*.com",
                                    "**.a",    "x*.a",     "a b",     "1.2.3.4",  "é.com",
                                    "a/b",     "*.-a.com", "a.b.",    "broker.local\n"};
    static const char *bad_ip[] = {"",          "1.2.3",       "256.1.1.1",   "1.2.3.4/24",
                                   "::g",       "fe80::1%lo",  "localhost",   "01.2.3.4 ",
                                   " 1.2.3.4", "1.2.3.4.5",   "[::1]"};
    static const char *good_dns[] = {"*.broker.local", "a-b.c", "localhost", "x1.Y2.z3"};
    static const char *good_ip[] = {"10.0.0.1", "fe80::1", "::ffff:1.2.3.4", "0.0.0.0"};
    const char *one[1];

    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    opts_init(&o, "n");
    o.n_dns_names = 1;
    o.dns_names = one;
    for (size_t i = 0; i < sizeof bad_dns / sizeof bad_dns[0]; i++) {
        one[0] = bad_dns[i];
        ck_err(ct_csr_create(ctx, k, &o, &csr, &len, &err), CT_E_INVALID, &err);
        ck_assert_ptr_null(csr);
    }
    memset(label64, 'a', 64);
    label64[64] = '\0';
    one[0] = label64;
    ck_err(ct_csr_create(ctx, k, &o, &csr, &len, &err), CT_E_INVALID, &err);
    label64[63] = '\0';
    ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
    ct_free(csr);
    csr = NULL;
    /* 253 bytes is the limit */
    for (size_t i = 0; i < sizeof ok_name - 1; i++)
        ok_name[i] = (i % 2) ? '.' : 'a';
    ok_name[253] = '\0';
    one[0] = ok_name;
    ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
    ct_free(csr);
    csr = NULL;
    memcpy(long_name, ok_name, 253);
    memcpy(long_name + 253, ".a", 3);
    one[0] = long_name;
    ck_err(ct_csr_create(ctx, k, &o, &csr, &len, &err), CT_E_INVALID, &err);
    for (size_t i = 0; i < sizeof good_dns / sizeof good_dns[0]; i++) {
        one[0] = good_dns[i];
        ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
        ct_free(csr);
        csr = NULL;
    }

    opts_init(&o, "n");
    o.n_ip_addrs = 1;
    o.ip_addrs = one;
    for (size_t i = 0; i < sizeof bad_ip / sizeof bad_ip[0]; i++) {
        one[0] = bad_ip[i];
        ck_err(ct_csr_create(ctx, k, &o, &csr, &len, &err), CT_E_INVALID, &err);
    }
    for (size_t i = 0; i < sizeof good_ip / sizeof good_ip[0]; i++) {
        one[0] = good_ip[i];
        ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
        ct_free(csr);
        csr = NULL;
    }
    /* counts */
    {
        const char *many[CT_CERT_MAX_NAMES + 1];
        for (size_t i = 0; i < CT_CERT_MAX_NAMES + 1; i++)
            many[i] = "a.b";
        opts_init(&o, "n");
        o.dns_names = many;
        o.n_dns_names = CT_CERT_MAX_NAMES;
        ck_ok(ct_csr_create(ctx, k, &o, &csr, &len, &err), &err);
        ct_free(csr);
        csr = NULL;
        o.n_dns_names = CT_CERT_MAX_NAMES + 1;
        ck_err(ct_csr_create(ctx, k, &o, &csr, &len, &err), CT_E_INVALID, &err);
        o.n_dns_names = 1;
        o.dns_names = NULL;
        ck_err(ct_csr_create(ctx, k, &o, &csr, &len, &err), CT_E_INVALID, &err);
    }
    ct_key_free(k);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(options_validation)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_key *k = NULL;
    ct_cert_options o;
    uint8_t *der = NULL;
    size_t len;
    char cn[70];
    ct_error err;
    const char *dns[] = {"a.b"};

    ck_ok(ct_key_generate(ctx, &k, &err), &err);
    ck_err(ct_ca_create(ctx, k, NULL, &der, &len, &err), CT_E_INVALID, &err);
    opts_init(&o, "ca");
    o.version = 99;
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_VERSION, &err);
    ck_err(ct_csr_create(ctx, k, &o, &der, &len, &err), CT_E_VERSION, &err);
    opts_init(&o, NULL);
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    opts_init(&o, "");
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    memset(cn, 'c', sizeof cn);
    cn[64] = '\0';
    opts_init(&o, cn);
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    cn[63] = '\0';
    ck_ok(ct_ca_create(ctx, k, &o, &der, &len, &err), &err);
    ct_free(der);
    der = NULL;
    cn[63] = 'c';
    o.common_name = "ok";
    o.organization = cn;
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    o.organization = "bad\tname";
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    o.organization = "\xc3\x28"; /* invalid UTF-8 */
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    o.organization = "Gr\xc3\xbc\xc3\x9f" "e"; /* valid UTF-8 */
    ck_ok(ct_ca_create(ctx, k, &o, &der, &len, &err), &err);
    ct_free(der);
    der = NULL;
    o.organization = NULL;
    o.days_valid = 36501;
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    o.days_valid = 0;
    /* a CA has no SANs */
    o.dns_names = dns;
    o.n_dns_names = 1;
    ck_err(ct_ca_create(ctx, k, &o, &der, &len, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(der);
    /* NULL arguments */
    opts_init(&o, "x");
    ck_err(ct_ca_create(ctx, NULL, &o, &der, &len, &err), CT_E_INVALID, &err);
    ck_err(ct_ca_create(ctx, k, &o, NULL, &len, &err), CT_E_INVALID, &err);
    ck_err(ct_csr_create(ctx, k, NULL, &der, &len, &err), CT_E_INVALID, &err);
    ck_err(ct_key_generate(ctx, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_key_export(NULL, 1, NULL, &err), CT_E_INVALID, &err);
    ck_err(ct_key_public_der(NULL, &der, &len, &err), CT_E_INVALID, &err);
    ct_key_free(NULL);
    ct_key_free(k);
    ct_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------- PEM, hashes */

START_TEST(pem_roundtrip)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    char *pem = NULL, *path, *out;
    uint8_t *der = NULL, *ossl;
    size_t len, ol;
    ct_error err;

    pki_make(ctx, &p);
    ck_ok(ct_cert_der_to_pem(p.srv, p.srv_len, &pem, &err), &err);
    ck_assert(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    ck_assert(strstr(pem, "-----END CERTIFICATE-----\n"));
    ck_ok(ct_cert_pem_to_der(pem, strlen(pem), &der, &len, &err), &err);
    ck_assert(len == p.srv_len && memcmp(der, p.srv, len) == 0);
    ct_free(der);
    der = NULL;
    /* openssl reads our PEM back to the same DER */
    path = ct_test_tmpfile(pem, strlen(pem));
    out = tmp_path();
    ck_assert_int_eq(sh("openssl x509 -in '%s' -outform DER -out '%s'", path, out), 0);
    ossl = read_file(out, &ol);
    ck_assert(ol == p.srv_len && memcmp(ossl, p.srv, ol) == 0);
    free(ossl);
    rm(out);
    rm(path);
    ct_free(pem);
    pem = NULL;

    ck_err(ct_cert_der_to_pem((const uint8_t *)"garbage", 7, &pem, &err), CT_E_INVALID, &err);
    ck_assert_ptr_null(pem);
    ck_err(ct_cert_pem_to_der("garbage", 7, &der, &len, &err), CT_E_INVALID, &err);
    ck_err(ct_cert_pem_to_der("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                              56, &der, &len, &err),
           CT_E_INVALID, &err);
    ck_assert_ptr_null(der);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(room_hash_matches_sha256sum)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    uint8_t h[CT_ROOM_HASH_LEN];
    char got[65], want[65], *path, *out;
    ct_error err;

    pki_make(ctx, &p);
    ck_ok(ct_room_hash_operational(p.ca, p.ca_len, h, &err), &err);
    path = ct_test_tmpfile(p.ca, p.ca_len);
    out = sh_out("openssl dgst -sha256 -r '%s'", path);
    ck_assert_int_eq(sscanf(out, "%64s", want), 1);
    free(out);
    ck_assert_str_eq(ct_hex(h, 32, got), want);
    out = sh_out("sha256sum '%s'", path);
    ck_assert_int_eq(sscanf(out, "%64s", want), 1);
    free(out);
    ck_assert_str_eq(got, want);
    rm(path);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------ pins, dev certificates */

START_TEST(pin_matches_key_and_openssl)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    uint8_t pin[32], pin_pem[32], want[32], *spki = NULL;
    size_t spki_len = 0;
    char *pem = NULL, *path, *out, hex[65], ossl[65];
    ct_error err;

    pki_make(ctx, &p);
    ck_ok(ct_cert_pin_sha256(p.srv, p.srv_len, pin, &err), &err);
    ck_ok(ct_key_public_der(p.srv_key, &spki, &spki_len, &err), &err);
    ck_ok(ct_sha256(spki, spki_len, want), &err);
    ct_free(spki);
    ck_assert(memcmp(pin, want, 32) == 0);
    /* PEM: the first certificate of a chain (leaf, then CA) */
    {
        char *ca_pem = NULL, *chain;
        ck_ok(ct_cert_der_to_pem(p.srv, p.srv_len, &pem, &err), &err);
        ck_ok(ct_cert_der_to_pem(p.ca, p.ca_len, &ca_pem, &err), &err);
        chain = malloc(strlen(pem) + strlen(ca_pem) + 1);
        ck_assert_ptr_nonnull(chain);
        strcpy(chain, pem);
        strcat(chain, ca_pem);
        ck_ok(ct_cert_pin_sha256((const uint8_t *)chain, strlen(chain), pin_pem, &err), &err);
        ck_assert(memcmp(pin_pem, pin, 32) == 0);
        free(chain);
        ct_free(ca_pem);
    }
    /* openssl computes the same pin */
    path = ct_test_tmpfile(pem, strlen(pem));
    out = sh_out("openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform DER "
                 "| openssl dgst -sha256 -r",
                 path);
    ck_assert_int_eq(sscanf(out, "%64s", ossl), 1);
    ck_assert_str_eq(ct_hex(pin, 32, hex), ossl);
    free(out);
    rm(path);
    ct_free(pem);

    ck_err(ct_cert_pin_sha256((const uint8_t *)"garbage", 7, pin, &err), CT_E_INVALID, &err);
    ck_err(ct_cert_pin_sha256(NULL, 7, pin, &err), CT_E_INVALID, &err);
    ck_err(ct_cert_pin_sha256(p.srv, 0, pin, &err), CT_E_INVALID, &err);
    ck_err(ct_cert_pin_sha256(p.srv, p.srv_len / 2, pin, &err), CT_E_INVALID, &err);
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

START_TEST(dev_server_certificate)
{
    ct_ctx *ctx = ct_test_ctx();
    ct_cert_options o;
    uint8_t *ca = NULL, *cert = NULL, *spki = NULL, pin[32], want[32];
    size_t ca_len = 0, cert_len = 0, spki_len = 0;
    ct_key *key = NULL;
    char *path, *out;
    ct_error err;

    server_opts(&o);
    ck_ok(ct_cert_dev_server(ctx, &o, &ca, &ca_len, &cert, &cert_len, &key, &err), &err);
    ck_ok(ct_cert_verify(ctx, ca, ca_len, cert, cert_len, CT_CERT_SERVER, &err), &err);
    ck_ok(ct_cert_verify(ctx, ca, ca_len, ca, ca_len, CT_CERT_CA, &err), &err);
    /* the returned key is the certified one */
    ck_ok(ct_cert_pin_sha256(cert, cert_len, pin, &err), &err);
    ck_ok(ct_key_public_der(key, &spki, &spki_len, &err), &err);
    ck_ok(ct_sha256(spki, spki_len, want), &err);
    ck_assert(memcmp(pin, want, 32) == 0);
    ct_free(spki);
    /* the names asked for, as openssl sees them */
    path = pem_file(cert, cert_len);
    out = sh_out("openssl x509 -in '%s' -noout -ext subjectAltName", path);
    ck_assert_msg(strstr(out, "DNS:broker.local") && strstr(out, "IP Address:127.0.0.1") &&
                      strstr(out, "IP Address:0:0:0:0:0:0:0:1"),
                  "%s", out);
    free(out);
    rm(path);
    ct_free(ca);
    ct_free(cert);
    ct_key_free(key);

    /* bad options: nothing returned */
    o.common_name = NULL;
    ck_err(ct_cert_dev_server(ctx, &o, &ca, &ca_len, &cert, &cert_len, &key, &err), CT_E_INVALID,
           &err);
    ck_assert(!ca && !cert && !key && ca_len == 0 && cert_len == 0);
    ck_err(ct_cert_dev_server(ctx, NULL, &ca, &ca_len, &cert, &cert_len, &key, &err),
           CT_E_INVALID, &err);
    ck_err(ct_cert_dev_server(ctx, &o, &ca, &ca_len, &cert, &cert_len, NULL, &err), CT_E_INVALID,
           &err);
    ct_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------------- threads */

typedef struct worker {
    ct_ctx *ctx;
    const pki *p;
    int rounds, failures;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->rounds; i++) {
        ct_key *k = NULL;
        uint8_t *csr = NULL, *cert = NULL;
        size_t csr_len, cert_len;
        ct_cert_options o;
        ct_error err;
        opts_init(&o, "worker");
        /* one shared CA key, signing from several threads at once */
        if (ct_key_generate(w->ctx, &k, &err) != CT_OK ||
            ct_csr_create(w->ctx, k, &o, &csr, &csr_len, &err) != CT_OK ||
            ct_cert_issue(w->ctx, w->p->ca, w->p->ca_len, w->p->ca_key, csr, csr_len,
                          CT_CERT_CLIENT, &o, &cert, &cert_len, &err) != CT_OK ||
            ct_cert_verify(w->ctx, w->p->ca, w->p->ca_len, cert, cert_len, CT_CERT_CLIENT,
                           &err) != CT_OK)
            w->failures++;
        ct_free(csr);
        ct_free(cert);
        ct_key_free(k);
    }
    ct_thread_cleanup(); /* the per-thread FP_ECC cache (context.h) */
    return NULL;
}

START_TEST(shared_ca_key_across_threads)
{
    ct_ctx *ctx = ct_test_ctx();
    pki p;
    pthread_t t[4];
    worker w[4];
    pki_make(ctx, &p);
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){ctx, &p, ct_test_under_valgrind() ? 2 : 20, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].failures, 0);
    }
    pki_free(&p);
    ct_ctx_free(ctx);
}
END_TEST

Suite *ct_test_suite(void)
{
    Suite *s = suite_create("pki");
    TCase *keys = tcase_create("keys"), *chain = tcase_create("chain");
    TCase *req = tcase_create("requests"), *ver = tcase_create("verify");
    TCase *opt = tcase_create("options"), *misc = tcase_create("misc");

    tcase_add_test(keys, key_roundtrip);
    tcase_add_test(keys, key_load_openssl);
    tcase_add_test(keys, key_load_refuses);
    tcase_add_test(chain, ca_as_openssl_sees_it);
    tcase_add_test(chain, chain_openssl_verify);
    tcase_add_test(chain, chain_from_other_ca_fails_in_openssl);
    tcase_add_test(req, csr_openssl_verifies_ours);
    tcase_add_test(req, csr_interop_openssl);
    tcase_add_test(req, csr_tampering_refused);
    tcase_add_test(req, issue_refuses_wrong_ca_key);
    tcase_add_test(ver, verify_good_and_wrong);
    tcase_add_test(ver, verify_uses_context_clock);
    tcase_add_test(ver, future_pki_and_time_encoding);
    tcase_add_test(opt, san_validation);
    tcase_add_test(opt, options_validation);
    tcase_add_test(misc, pem_roundtrip);
    tcase_add_test(misc, room_hash_matches_sha256sum);
    tcase_add_test(misc, pin_matches_key_and_openssl);
    tcase_add_test(misc, dev_server_certificate);
    tcase_add_test(misc, shared_ca_key_across_threads);
    suite_add_tcase(s, keys);
    suite_add_tcase(s, chain);
    suite_add_tcase(s, req);
    suite_add_tcase(s, ver);
    suite_add_tcase(s, opt);
    suite_add_tcase(s, misc);
    return s;
}
