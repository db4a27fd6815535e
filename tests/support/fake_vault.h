/*
 * fake_vault.h - a local HTTPS server that behaves like HashiCorp Vault or
 * OpenBao for the calls libcloudtaser makes (../shared/fixtures/API.md):
 * KV version 2 (data, metadata, delete, undelete, destroy, config; versions,
 * soft delete, destroy, check-and-set, cas_required, max_versions, LIST and
 * ?list=true, 404 on empty lists, the invalid-path envelope), tokens with
 * policies (allow everything / none), X-Vault-Namespace, sys/health, both
 * flavours' bodies byte for byte, and fault injection.
 *
 * Built on libmicrohttpd with TLS (GnuTLS), one thread per connection,
 * listening on 127.0.0.1 with an ephemeral port. Test code only.
 */
#ifndef CT_FAKE_VAULT_H
#define CT_FAKE_VAULT_H

#include <stddef.h>
#include <stdint.h>

typedef struct fake_vault fake_vault;

typedef enum fv_flavour {
    FV_VAULT = 0,   /* HashiCorp Vault 1.21: mount_type, 2-error invalid token */
    FV_OPENBAO = 1  /* OpenBao 2.6: no mount_type, plain permission denied */
} fv_flavour;

typedef struct fv_options {
    fv_flavour flavour;
    const char *cert_file;      /* PEM; NULL: $CT_TEST_FIXTURES/tls/server.pem */
    const char *key_file;       /* PEM; NULL: $CT_TEST_FIXTURES/tls/server-key.pem */
    /* Require a client certificate issued by this CA (handshake fails
     * without one). NULL: none asked for. */
    const char *client_ca_file;
    const char *mount;          /* the KV v2 mount; NULL: "cloudtaser" */
    const char *mount2;         /* a second KV v2 mount, or NULL */
} fv_options;

/* Starts a server. Returns NULL (and prints why) on failure. */
fake_vault *fake_vault_start(const fv_options *o);
/* Stops it (waits for connection threads) and frees everything. */
void fake_vault_stop(fake_vault *fv);

uint16_t fake_vault_port(const fake_vault *fv);
/* "https://127.0.0.1:PORT" (owned by fv). */
const char *fake_vault_addr(const fake_vault *fv);

/* Tokens: policy 1 allows everything, 0 allows nothing (403). */
void fake_vault_add_token(fake_vault *fv, const char *token, int allow_all);
void fake_vault_remove_token(fake_vault *fv, const char *token);
/*
 * A token whose policy (named `policy`, listed with "default" in lookups)
 * allows exactly the paths (after /v1/) that start with one of `prefixes`,
 * as a Vault policy `path "<prefix>*"` would; everything else is 403
 * permission denied. Every known token may use auth/token/lookup-self and
 * renew-self (Vault's default policy), answered in the shape of the
 * fixtures vault-token-lookup-self.json / vault-token-renew-self.json.
 */
void fake_vault_add_token_prefixes(fake_vault *fv, const char *token, const char *policy,
                                   const char *const *prefixes, size_t n);
/*
 * Kubernetes-style login without TokenReview: POST auth/<mount>/login with
 * {"role":role,"jwt":jwt} answers the fixture's auth block for `token`
 * (which must be added too). Unknown role: 400 invalid role name; other
 * JWT: 403 permission denied; missing role/jwt: 400 (API.md A5).
 */
void fake_vault_add_login(fake_vault *fv, const char *mount, const char *role, const char *jwt,
                          const char *token);

/* Server state. */
void fake_vault_set_sealed(fake_vault *fv, int sealed);
/* 0 active, 1 standby (health 429), 2 performance standby (health 473). */
void fake_vault_set_standby(fake_vault *fv, int mode);
/*
 * The engine at the first mount: type "kv" (NULL too) with kv_version 2
 * (default) or 1 (KV version 1: data/K is a plain secret of that name,
 * writes answer 204), or another type ("transit": every path under the
 * mount is 404 unsupported path). sys/internal/ui/mounts/<path> reports it.
 */
void fake_vault_set_mount_engine(fake_vault *fv, const char *type, int kv_version);
/* 0: sys/internal/ui/mounts/<path> is served (default); else it answers
 * this status with "unsupported path", as a server without it. */
void fake_vault_set_preflight(fake_vault *fv, int status);
/* A prefix sys/internal/ui/mounts/<path> puts before the mount's path when
 * the request carries a namespace, as Vault does for a mount of a child
 * namespace ("admin/team1/"); NULL: none (default). */
void fake_vault_set_mount_ns_prefix(fake_vault *fv, const char *prefix);
/* The mount's config cas_required. */
void fake_vault_set_cas_required(fake_vault *fv, int on);

typedef enum fv_fault {
    FV_FAULT_NONE = 0,
    FV_FAULT_STATUS,      /* answer `param` with {"errors":[body or "..."]} */
    FV_FAULT_429,         /* 429 quota error, Retry-After: param seconds (-1: none) */
    FV_FAULT_SLOW,        /* wait param ms, then serve normally */
    FV_FAULT_RESET,       /* close the connection without executing or answering */
    FV_FAULT_RESET_AFTER, /* execute the request, then close without answering */
    FV_FAULT_BIG,         /* 200 with a JSON body of param bytes */
    FV_FAULT_BADJSON,     /* 200 with a truncated JSON body */
    FV_FAULT_REDIRECT,    /* 307 to https://active.vault.example:8200/<same path> */
    FV_FAULT_HTML,        /* `param` status with a text/html proxy page */
    FV_FAULT_HOLD_AFTER,  /* execute (commit) the request, then wait param ms
                           * before answering (a client killed meanwhile never
                           * hears that its write landed) */
    FV_FAULT_429_DATE,    /* 429 with Retry-After as an HTTP date `param` s from now */
    FV_FAULT_STREAM,      /* 200, chunked body of param bytes (<= 0: endless) */
    FV_FAULT_STREAM_CLOSE, /* the same, HTTP/1.0 close-delimited (no Content-Length) */
    FV_FAULT_502_RETRY    /* 502 from a proxy with Retry-After: `param` s */
} fv_fault;

/*
 * Arms a fault for the next `count` requests (-1: until cleared) whose
 * method equals `method` (NULL: any) and whose path contains `path_sub`
 * (NULL: any). sys/health is never faulted. One fault at a time.
 */
void fake_vault_fault(fake_vault *fv, fv_fault f, int count, int param, const char *method,
                      const char *path_sub, const char *body);
void fake_vault_clear_fault(fake_vault *fv);

/* Requests seen (complete requests, faulted ones included), by method
 * (NULL: all). "LIST" counts GET ?list=true too. The mount check
 * (sys/internal/ui/mounts/..., never faulted) is counted only as
 * "PREFLIGHT". */
unsigned fake_vault_count(fake_vault *fv, const char *method);
void fake_vault_reset_counts(fake_vault *fv);
/* The X-Vault-Namespace of the last request ("" if none); copied into buf. */
void fake_vault_last_namespace(fake_vault *fv, char *buf, size_t n);
/* 1 if the last non-health request carried a token header. */
int fake_vault_last_had_token(fake_vault *fv);

/* Direct state, for tests: the current version of key (0: none) and the
 * number of versions kept. */
uint64_t fake_vault_current_version(fake_vault *fv, const char *mount, const char *key,
                                    int *nversions);

/* The current version's data as compact JSON (malloc'ed; NULL if none or
 * destroyed). */
char *fake_vault_data_json(fake_vault *fv, const char *mount, const char *key);
/* Soft-deletes / destroys the current version, as another tool would. */
void fake_vault_soft_delete(fake_vault *fv, const char *mount, const char *key);
void fake_vault_destroy_current(fake_vault *fv, const char *mount, const char *key);

/*
 * Auth methods (fake_vault_auth.c, API.md A5): `sys/auth/<path>` enables
 * "kubernetes" or "jwt"; auth/<path>/config and auth/<path>/role/<name>
 * configure them (allow-all token); POST auth/<path>/login (no token)
 * parses the JWT, checks the role's bound names and namespaces and calls
 * the configured kubernetes_host's TokenReview with token_reviewer_jwt
 * over HTTPS verified against kubernetes_ca_cert, as Vault does; answers
 * with the fixture shapes. Issued tokens have no KV access.
 */
/* Successful Kubernetes logins so far. */
unsigned fake_vault_logins(fake_vault *fv);
/* The stored config of auth mount `path` as compact JSON with sorted keys
 * (malloc'ed; NULL if the mount is missing or not configured). */
char *fake_vault_auth_config(fake_vault *fv, const char *path);

/* Logs each request to stderr ("fake-vault: METHOD /v1/path -> STATUS"). */
void fake_vault_set_verbose(fake_vault *fv, int on);

#endif
