/*
 * store_cli.h - the record-store flags shared by cloudtaser (source ...) and
 * cloudtaser-bridge: the embedded SQLite store (--store) or HashiCorp Vault /
 * OpenBao (--vault-* flags, VAULT_* variables).
 *
 * Choice: --store PATH picks SQLite; otherwise --vault-address or VAULT_ADDR
 * picks Vault; otherwise SQLite at $CLOUDTASER_STORE or the default path.
 * Vault flags win over VAULT_* variables (ct_vault_options_from_env fills
 * only what the flags left unset).
 */
#ifndef CT_TOOLS_STORE_CLI_H
#define CT_TOOLS_STORE_CLI_H

#include "cloudtaser/cloudtaser.h"

#include <getopt.h>

#define STORE_DEFAULT_PATH "./cloudtaser-store.db"

/* getopt_long codes of the store flags (above any tool's own codes). */
enum {
    STORE_OPT_STORE = 0x1000,
    STORE_OPT_VAULT_ADDRESS,
    STORE_OPT_VAULT_TOKEN,
    STORE_OPT_VAULT_TOKEN_FILE,
    STORE_OPT_VAULT_NAMESPACE,
    STORE_OPT_VAULT_CACERT,
    STORE_OPT_VAULT_CAPATH,
    STORE_OPT_VAULT_CLIENT_CERT,
    STORE_OPT_VAULT_CLIENT_KEY,
    STORE_OPT_VAULT_MOUNT,
    STORE_OPT_VAULT_SKIP_VERIFY,
    STORE_OPT_FORCE_INSECURE,
    STORE_OPT_END_
};

/* Entries for a tool's struct option array. */
#define STORE_LONG_OPTIONS                                                          \
    {"store", required_argument, 0, STORE_OPT_STORE},                               \
    {"vault-address", required_argument, 0, STORE_OPT_VAULT_ADDRESS},               \
    {"vault-token", required_argument, 0, STORE_OPT_VAULT_TOKEN},                   \
    {"vault-token-file", required_argument, 0, STORE_OPT_VAULT_TOKEN_FILE},         \
    {"vault-namespace", required_argument, 0, STORE_OPT_VAULT_NAMESPACE},           \
    {"vault-cacert", required_argument, 0, STORE_OPT_VAULT_CACERT},                 \
    {"vault-capath", required_argument, 0, STORE_OPT_VAULT_CAPATH},                 \
    {"vault-client-cert", required_argument, 0, STORE_OPT_VAULT_CLIENT_CERT},       \
    {"vault-client-key", required_argument, 0, STORE_OPT_VAULT_CLIENT_KEY},         \
    {"vault-mount", required_argument, 0, STORE_OPT_VAULT_MOUNT},                   \
    {"vault-skip-verify", no_argument, 0, STORE_OPT_VAULT_SKIP_VERIFY},             \
    {"force-insecure", no_argument, 0, STORE_OPT_FORCE_INSECURE}

#define STORE_FLAGS_HELP                                                                    \
"Record store (SQLite by default; Vault with --vault-address or VAULT_ADDR):\n"           \
"  --store PATH             the SQLite record store (default: $CLOUDTASER_STORE,\n"       \
"                           else " STORE_DEFAULT_PATH "); created with mode 0600\n"       \
"  --vault-address URL      HashiCorp Vault / OpenBao, https://host:port (VAULT_ADDR)\n"  \
"  --vault-token TOKEN      the token (VAULT_TOKEN; else ~/.vault-token); visible to\n"   \
"                           other local users while the command starts: prefer\n"       \
"                           VAULT_TOKEN or --vault-token-file\n"                        \
"  --vault-token-file FILE  read the token from FILE\n"                                   \
"  --vault-namespace NS     Vault Enterprise / OpenBao namespace (VAULT_NAMESPACE)\n"     \
"  --vault-cacert FILE      CA bundle that verifies Vault (VAULT_CACERT)\n"                \
"  --vault-capath DIR       directory of CA certificates (VAULT_CAPATH)\n"                \
"  --vault-client-cert FILE client certificate for Vault (VAULT_CLIENT_CERT)\n"           \
"  --vault-client-key FILE  its private key (VAULT_CLIENT_KEY)\n"                         \
"  --vault-mount PATH       the KV version 2 mount (default: " CT_VAULT_DEFAULT_MOUNT ")\n" \
"  --vault-skip-verify      no TLS verification (VAULT_SKIP_VERIFY): refused unless\n"   \
"  --force-insecure         is given too\n"

typedef struct store_flags {
    const char *sqlite_path; /* --store */
    ct_vault_options vault;  /* the --vault-* flags, then the environment */
    int any_vault_flag;
    char *token_arg;         /* --vault-token's argv string, wiped once copied */
    /* after store_flags_open: what was opened, for messages */
    int is_vault;
    char desc[600];
    char records_prefix[300]; /* "cloudtaser/data/" for Vault, "" for SQLite */
} store_flags;

/* Zeroes the flags. */
void store_flags_init(store_flags *f);

/*
 * Takes one getopt_long result: 1 if it was a store flag (consumed), 0 if
 * not.
 */
int store_flags_take(store_flags *f, int opt, char *arg);

/*
 * Checks the combination (prints a usage error and returns 2), then opens
 * the store (prints "PROG: store ...: message" and returns 1, or 2 for an
 * invalid Vault configuration), else 0 with *out set. Opening contacts no
 * server. Wipes the --vault-token argument once the store holds its copy.
 */
int store_flags_open(const char *prog, store_flags *f, ct_ctx *ctx, ct_store **out);

#endif
