/*
 * fake_vault_main.c - tests/fake-vault: the fake Vault / OpenBao server as a
 * process, for shell tests. Not installed.
 *
 *   fake-vault [--flavour vault|openbao] [--token T]... [--token-nopolicy T]...
 *              [--mount M] [--cas-required] [--cert PEM --key PEM] [--verbose]
 *              [--token-prefix TOKEN=PREFIX[,PREFIX]...]...
 *              [--login MOUNT:ROLE:JWT:TOKEN]... [--mount2 M]
 *              [--hold-after-write PATH:MS]
 *
 * --token-prefix: a token allowed only on paths (after /v1/) starting with
 * one of the prefixes (policy named after the token's first prefix).
 * --login: auth/MOUNT/login with {"role":ROLE,"jwt":JWT} answers TOKEN.
 * --hold-after-write: the first POST whose path contains PATH is executed
 * (committed) and its answer then held back for MS milliseconds
 * (FV_FAULT_HOLD_AFTER); with --verbose the request's line is printed
 * before the wait, so a test knows the write landed.
 *
 * Prints "listening 127.0.0.1:PORT" on stdout once it serves, then runs
 * until SIGTERM or SIGINT.
 */
#include "fake_vault.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_sig(int s)
{
    (void)s;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"flavour", required_argument, 0, 'f'},
        {"token", required_argument, 0, 't'},
        {"token-nopolicy", required_argument, 0, 'n'},
        {"mount", required_argument, 0, 'm'},
        {"cas-required", no_argument, 0, 'c'},
        {"cert", required_argument, 0, 'C'},
        {"key", required_argument, 0, 'K'},
        {"verbose", no_argument, 0, 'v'},
        {"token-prefix", required_argument, 0, 'P'},
        {"login", required_argument, 0, 'L'},
        {"mount2", required_argument, 0, 'M'},
        {"hold-after-write", required_argument, 0, 'H'},
        {0, 0, 0, 0},
    };
    const char *toks[16], *nopol[16];
    char *pref[16], *logins[16];
    int np = 0, nl = 0, hold_ms = 0;
    char *hold_path = NULL;
    int nt = 0, nn = 0, cas = 0, verbose = 0, c, i;
    fv_options o;
    fake_vault *fv;
    struct sigaction sa;

    memset(&o, 0, sizeof o);
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "vault") == 0)
                o.flavour = FV_VAULT;
            else if (strcmp(optarg, "openbao") == 0)
                o.flavour = FV_OPENBAO;
            else {
                fprintf(stderr, "fake-vault: --flavour vault|openbao\n");
                return 2;
            }
            break;
        case 't':
            if (nt < 16)
                toks[nt++] = optarg;
            break;
        case 'n':
            if (nn < 16)
                nopol[nn++] = optarg;
            break;
        case 'm':
            o.mount = optarg;
            break;
        case 'c':
            cas = 1;
            break;
        case 'C':
            o.cert_file = optarg;
            break;
        case 'K':
            o.key_file = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'P':
            if (np < 16 && strchr(optarg, '='))
                pref[np++] = optarg;
            break;
        case 'M':
            o.mount2 = optarg;
            break;
        case 'L':
            if (nl < 16)
                logins[nl++] = optarg;
            break;
        case 'H': {
            char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || (hold_ms = atoi(colon + 1)) <= 0) {
                fprintf(stderr, "fake-vault: --hold-after-write PATH:MS\n");
                return 2;
            }
            *colon = 0;
            hold_path = optarg;
            break;
        }
        default:
            fprintf(stderr, "usage: fake-vault [--flavour vault|openbao] [--token T]... "
                            "[--token-nopolicy T]... [--mount M] [--cas-required] "
                            "[--cert PEM --key PEM] [--verbose]\n");
            return 2;
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!(fv = fake_vault_start(&o)))
        return 1;
    for (i = 0; i < nt; i++)
        fake_vault_add_token(fv, toks[i], 1);
    for (i = 0; i < nn; i++)
        fake_vault_add_token(fv, nopol[i], 0);
    for (i = 0; i < np; i++) {
        const char *px[16];
        char *save = NULL, *eq = strchr(pref[i], '='), *tok;
        size_t n = 0;
        *eq = 0;
        for (tok = strtok_r(eq + 1, ",", &save); tok && n < 16; tok = strtok_r(NULL, ",", &save))
            px[n++] = tok;
        fake_vault_add_token_prefixes(fv, pref[i], n ? px[0] : "none", px, n);
    }
    for (i = 0; i < nl; i++) {
        char *f[4], *save = NULL;
        int k;
        for (k = 0; k < 4; k++)
            f[k] = strtok_r(k ? NULL : logins[i], ":", &save);
        if (f[3])
            fake_vault_add_login(fv, f[0], f[1], f[2], f[3]);
    }
    fake_vault_set_cas_required(fv, cas);
    if (hold_path)
        fake_vault_fault(fv, FV_FAULT_HOLD_AFTER, 1, hold_ms, "POST", hold_path, NULL);
    fake_vault_set_verbose(fv, verbose);
    printf("listening 127.0.0.1:%u\n", (unsigned)fake_vault_port(fv));
    fflush(stdout);
    while (!g_stop)
        pause(); /* the signal handler ends the wait */
    fake_vault_stop(fv);
    return 0;
}
