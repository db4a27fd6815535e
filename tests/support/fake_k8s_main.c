/*
 * fake_k8s_main.c - tests/fake-k8s: the fake Kubernetes API server
 * (fake_k8s.h) as a program, for shell tests and for trying the CLI by hand.
 * Not installed.
 *
 *   fake-k8s --dir DIR [--tls-dir DIR] [--uid UUID] [--token TOKEN]
 *            [--user NAME] [--deny] [--seed] [--jwks FILE] [--fault KIND:COUNT]
 *            [--seconds N]
 *
 * Writes DIR/kubeconfig, kubeconfig-tokenfile, kubeconfig-cert,
 * kubeconfig-files, serviceaccount/{token,ca.crt,namespace} and env (see
 * fake_k8s_write_configs), then prints "listening 127.0.0.1:PORT" and serves
 * until SIGTERM or SIGINT, or for at most --seconds (default 600).
 * --deny: the token's user has no RBAC permission (every call is a 403).
 * --seed: the fixture Secrets in namespace payments.
 * --jwks: serve this JWK set at /openid/v1/jwks (default: the fixture's).
 * --fault: 500, 503, 429, slow, reset, oversized, malformed or html, for
 * the next COUNT requests.
 * --reviews FILE: TokenReview answers, one per line: "valid TOKEN USER_JSON
 * AUDIENCES_CSV" (USER_JSON without spaces) or "revoked TOKEN".
 * SIGHUP re-reads --reviews and --jwks (a rotation of the issuer keys) and
 * prints "reloaded" on stderr.
 * --populate NS:N: N Opaque Secrets s-0000.. in NS (data username=user-<i>,
 * password=p@ss"word\<i*7919>\n) plus four that a migration skips
 * (sa-token, sh.helm.release.v1.web.v1, bootstrap-token-abcdef, owned-tls).
 * --touch-before-delete NS/NAME: the first DELETE of that Secret finds it
 * modified (resourceVersion bumped) just before (fake_k8s_touch_before_delete).
 */
#include "fake_k8s.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FAKE_K8S_TLS_DIR
#define FAKE_K8S_TLS_DIR "tests/fixtures/tls"
#endif

static int usage(void)
{
    fputs("usage: fake-k8s --dir DIR [--tls-dir DIR] [--uid UUID] [--token TOKEN] "
          "[--user NAME] [--deny] [--seed] [--jwks FILE] [--fault KIND:COUNT] [--seconds N] "
          "[--populate NS:N] [--touch-before-delete NS/NAME]\n",
          stderr);
    return 2;
}

static int parse_fault(const char *s, fake_k8s_fault *f, int *count)
{
    static const struct { const char *name; fake_k8s_fault f; } k[] = {
        { "500", FK_FAULT_500 }, { "503", FK_FAULT_503 }, { "429", FK_FAULT_429 },
        { "slow", FK_FAULT_SLOW }, { "reset", FK_FAULT_RESET },
        { "oversized", FK_FAULT_OVERSIZED }, { "malformed", FK_FAULT_MALFORMED },
        { "html", FK_FAULT_HTML },
    };
    const char *colon = strchr(s, ':');
    size_t i, n = colon ? (size_t)(colon - s) : strlen(s);
    *count = colon ? atoi(colon + 1) : 1;
    for (i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strlen(k[i].name) == n && strncmp(s, k[i].name, n) == 0) {
            *f = k[i].f;
            return *count > 0 ? 0 : -1;
        }
    return -1;
}

static void load_reviews(fake_k8s *fk, const char *path)
{
    char line[32768];
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "fake-k8s: cannot read %s\n", path);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *kind = strtok_r(line, " \n", &save);
        char *tok = kind ? strtok_r(NULL, " \n", &save) : NULL;
        if (!tok)
            continue;
        if (strcmp(kind, "valid") == 0) {
            char *user = strtok_r(NULL, " \n", &save), *aud = strtok_r(NULL, " \n", &save);
            if (user && aud)
                fake_k8s_review_token(fk, tok, user, aud);
        } else if (strcmp(kind, "revoked") == 0) {
            fake_k8s_revoke_token(fk, tok);
        }
    }
    fclose(f);
}

static int load_jwks(fake_k8s *fk, const char *path)
{
    char buf[65536 + 1];
    size_t n;
    FILE *f = fopen(path, "r");
    if (!f || (n = fread(buf, 1, sizeof buf - 1, f)) == 0) {
        fprintf(stderr, "fake-k8s: cannot read %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    buf[n] = '\0';
    fake_k8s_set_jwks(fk, buf);
    return 0;
}

static int do_populate(fake_k8s *fk, const char *spec)
{
    char ns[256], name[64], v1[64], v2[64], j[1024];
    const char *colon = strchr(spec, ':');
    const char *kv[] = { "username", v1, "password", v2, NULL }, *tok[] = { "token", "abc", NULL };
    long n, i;
    if (!colon || (size_t)(colon - spec) >= sizeof ns || (n = atol(colon + 1)) <= 0 ||
        n > 100000)
        return -1;
    snprintf(ns, sizeof ns, "%.*s", (int)(colon - spec), spec);
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof name, "s-%04ld", i);
        snprintf(v1, sizeof v1, "user-%ld", i);
        snprintf(v2, sizeof v2, "p@ss\"word\\%ld\n", i * 7919);
        if (fake_k8s_add_secret(fk, ns, name, "Opaque", kv) != 0)
            return -1;
    }
    snprintf(j, sizeof j,
             "{\"metadata\":{\"namespace\":\"%s\",\"name\":\"owned-tls\",\"ownerReferences\":"
             "[{\"apiVersion\":\"cert-manager.io/v1\",\"kind\":\"Certificate\",\"name\":\"web\","
             "\"uid\":\"3c1e9a57-0b2d-4c8e-9f61-7a4d2e5b8c90\",\"controller\":true}]},"
             "\"type\":\"kubernetes.io/tls\",\"data\":{\"tls.crt\":\"Y2VydA==\"}}", ns);
    return fake_k8s_add_secret(fk, ns, "sa-token", "kubernetes.io/service-account-token", tok) ||
           fake_k8s_add_secret(fk, ns, "sh.helm.release.v1.web.v1", "helm.sh/release.v1", tok) ||
           fake_k8s_add_secret(fk, ns, "bootstrap-token-abcdef", "bootstrap.kubernetes.io/token",
                               tok) ||
           fake_k8s_add_secret_json(fk, j) ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *tls = FAKE_K8S_TLS_DIR, *uid = NULL, *token = "fake-admin-token";
    const char *user = "system:serviceaccount:cloudtaser:cloudtaser-operator", *jwks = NULL;
    const char *reviews = NULL;
    time_t end;
    const char *populate = NULL, *touch = NULL;
    fake_k8s_fault fault = FK_FAULT_NONE;
    int deny = 0, seed = 0, seconds = 600, fault_count = 0, i, sig = 0;
    struct timespec ts;
    sigset_t set;
    fake_k8s *fk;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--deny") == 0) {
            deny = 1;
            continue;
        }
        if (strcmp(a, "--seed") == 0) {
            seed = 1;
            continue;
        }
        if (!v)
            return usage();
        if (strcmp(a, "--dir") == 0)
            dir = v;
        else if (strcmp(a, "--tls-dir") == 0)
            tls = v;
        else if (strcmp(a, "--uid") == 0)
            uid = v;
        else if (strcmp(a, "--token") == 0)
            token = v;
        else if (strcmp(a, "--user") == 0)
            user = v;
        else if (strcmp(a, "--jwks") == 0)
            jwks = v;
        else if (strcmp(a, "--reviews") == 0)
            reviews = v;
        else if (strcmp(a, "--populate") == 0)
            populate = v;
        else if (strcmp(a, "--touch-before-delete") == 0)
            touch = v;
        else if (strcmp(a, "--seconds") == 0)
            seconds = atoi(v);
        else if (strcmp(a, "--fault") == 0) {
            if (parse_fault(v, &fault, &fault_count) != 0)
                return usage();
        } else
            return usage();
        i++;
    }
    if (!dir || seconds <= 0)
        return usage();

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server's threads start */

    fk = fake_k8s_start(tls);
    if (!fk)
        return 1;
    fake_k8s_add_token(fk, token, user, deny ? 0 : FK_ALL);
    fake_k8s_add_cert_user(fk, "cloudtaser test client", "cloudtaser-test-client",
                           deny ? 0 : FK_ALL);
    if (uid)
        fake_k8s_set_namespace_uid(fk, uid);
    if (seed)
        fake_k8s_seed_fixture_secrets(fk);
    if (jwks && load_jwks(fk, jwks) != 0) {
        fake_k8s_stop(fk);
        return 1;
    }
    if (reviews)
        load_reviews(fk, reviews);
    if (fault != FK_FAULT_NONE)
        fake_k8s_inject(fk, fault, fault_count, NULL);
    if (populate && do_populate(fk, populate) != 0) {
        fake_k8s_stop(fk);
        return usage();
    }
    if (touch) {
        char ns[256];
        const char *slash = strchr(touch, '/');
        if (!slash || (size_t)(slash - touch) >= sizeof ns) {
            fake_k8s_stop(fk);
            return usage();
        }
        snprintf(ns, sizeof ns, "%.*s", (int)(slash - touch), touch);
        if (fake_k8s_touch_before_delete(fk, ns, slash + 1) != 0) {
            fprintf(stderr, "fake-k8s: --touch-before-delete: no Secret %s\n", touch);
            fake_k8s_stop(fk);
            return 1;
        }
    }
    if (fake_k8s_write_configs(fk, dir, tls, token) != 0) {
        fprintf(stderr, "fake-k8s: cannot write the configuration files into %s\n", dir);
        fake_k8s_stop(fk);
        return 1;
    }
    printf("listening 127.0.0.1:%u\n", (unsigned)fake_k8s_port(fk));
    fflush(stdout);

    end = time(NULL) + seconds;
    for (;;) {
        time_t now = time(NULL);
        if (now >= end) {
            sig = 0;
            break;
        }
        ts.tv_sec = end - now;
        ts.tv_nsec = 0;
        sig = sigtimedwait(&set, NULL, &ts);
        if (sig != SIGHUP)
            break;
        if (reviews)
            load_reviews(fk, reviews);
        if (jwks)
            (void)load_jwks(fk, jwks);
        fprintf(stderr, "fake-k8s: reloaded\n");
    }
    fprintf(stderr, "fake-k8s: %s after %u requests\n", sig > 0 ? "stopping" : "time is up",
            fake_k8s_requests(fk, NULL));
    fake_k8s_stop(fk);
    return 0;
}
