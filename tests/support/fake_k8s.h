/*
 * fake_k8s.h - a fake Kubernetes API server for tests: HTTPS (libmicrohttpd
 * with TLS) on 127.0.0.1, an ephemeral port, serving exactly the calls
 * libcloudtaser makes, with the bodies, status codes and error strings of
 * ../shared/fixtures (k8s-*.json) and the behaviour of ../shared/fixtures/
 * API.md part B:
 *
 *   GET    /api/v1/namespaces/kube-system                      (configurable uid)
 *   GET    /api/v1/namespaces/{ns}/secrets?limit=&continue=&labelSelector=
 *   GET    /api/v1/namespaces/{ns}/secrets/{name}
 *   DELETE /api/v1/namespaces/{ns}/secrets/{name}              (preconditions)
 *   POST   /api/v1/namespaces/{ns}/secrets                     (create; 409 AlreadyExists)
 *   POST   /apis/authentication.k8s.io/v1/tokenreviews
 *   GET    /openid/v1/jwks
 *
 * Authentication: bearer tokens and client certificates (issued by the test
 * CA; the certificate's CN names the user), each with RBAC permissions; no
 * or a bad credential gets the 401 fixture, a missing permission a 403 whose
 * message names user, verb, resource and namespace as the API server does.
 * Differences from a real API server, on purpose: a client certificate from
 * an unknown CA gets a 401 instead of a failed TLS handshake; later list
 * pages show the current state, not a snapshot at the first page's
 * resourceVersion (the continue token and metadata carry the snapshot RV).
 *
 * Fault injection: the next N requests (optionally only those whose path
 * starts with a prefix) get a 500, 503, 429 (with Retry-After), a slow
 * answer, a connection reset, an oversized body, malformed JSON or an HTML
 * proxy error page.
 *
 * Thread-safety: the server runs its own threads (one per connection); the
 * fake_k8s_* calls may be made from the test thread at any time.
 */
#ifndef CT_FAKE_K8S_H
#define CT_FAKE_K8S_H

#include <stddef.h>
#include <stdint.h>

typedef struct fake_k8s fake_k8s;

/* RBAC permissions of a user. */
enum {
    FK_GET_NAMESPACES = 1 << 0,
    FK_LIST_SECRETS = 1 << 1,
    FK_GET_SECRETS = 1 << 2,
    FK_DELETE_SECRETS = 1 << 3,
    FK_CREATE_TOKENREVIEWS = 1 << 4,
    FK_GET_JWKS = 1 << 5,
    FK_CREATE_SECRETS = 1 << 6,
    FK_ALL = (1 << 7) - 1
};

typedef enum fake_k8s_fault {
    FK_FAULT_NONE = 0,
    FK_FAULT_500,       /* Status InternalError */
    FK_FAULT_503,       /* Status ServiceUnavailable */
    FK_FAULT_429,       /* Status TooManyRequests, Retry-After: see fake_k8s_set_retry_after */
    FK_FAULT_SLOW,      /* answers normally after fake_k8s_set_slow_ms (default 3000) */
    FK_FAULT_RESET,     /* closes the connection with a TCP RST, no answer */
    FK_FAULT_OVERSIZED, /* 200 with a chunked JSON body of 64 MiB */
    FK_FAULT_MALFORMED, /* 200 application/json, cut off in the middle */
    FK_FAULT_HTML       /* 502 text/html from a "proxy" */
} fake_k8s_fault;

/*
 * Starts the server on 127.0.0.1 (port chosen by the system) with
 * tls_dir/server.pem + server-key.pem, trusting tls_dir/ca.pem for client
 * certificates. The kube-system UID defaults to the fixture's. No users,
 * no Secrets. Returns NULL (with a message on stderr) on failure.
 */
fake_k8s *fake_k8s_start(const char *tls_dir);
void fake_k8s_stop(fake_k8s *fk);
uint16_t fake_k8s_port(const fake_k8s *fk);

/* Users: a bearer token, or a client certificate CN, with permissions. */
void fake_k8s_add_token(fake_k8s *fk, const char *token, const char *user, unsigned perms);
void fake_k8s_remove_token(fake_k8s *fk, const char *token);
void fake_k8s_add_cert_user(fake_k8s *fk, const char *cn, const char *user, unsigned perms);

void fake_k8s_set_namespace_uid(fake_k8s *fk, const char *uid);

/*
 * Secrets. A Secret is stored as a list item ({"metadata":..,"data":..,
 * "type":..}); metadata.namespace and .name are required, uid,
 * resourceVersion and creationTimestamp are filled in when absent.
 * Returns 0, or -1 (bad JSON, or the name exists).
 */
int fake_k8s_add_secret_json(fake_k8s *fk, const char *json);
/* kv: NULL-terminated key, raw value pairs (base64-encoded by the server). */
int fake_k8s_add_secret(fake_k8s *fk, const char *ns, const char *name, const char *type,
                        const char *const *kv);
/* The three fixture Secrets (namespace payments), list resourceVersion 184532. */
void fake_k8s_seed_fixture_secrets(fake_k8s *fk);
/* Bumps a Secret's resourceVersion (someone modified it). 0 or -1. */
int fake_k8s_touch_secret(fake_k8s *fk, const char *ns, const char *name);
/*
 * Test hook: the next DELETE of ns/name first bumps the Secret's
 * resourceVersion (someone modified it between the client's read and its
 * delete), once. 0, or -1 if there is no such Secret.
 */
int fake_k8s_touch_before_delete(fake_k8s *fk, const char *ns, const char *name);
/* Deletes a Secret outright (test setup). 0 or -1. */
int fake_k8s_remove_secret(fake_k8s *fk, const char *ns, const char *name);
/*
 * The data of a Secret as JSON text ({"key":"base64",...}), malloc'd, or
 * NULL if there is none.
 */
char *fake_k8s_secret_data_json(fake_k8s *fk, const char *ns, const char *name);
/* Gives a Secret a new uid (deleted and recreated). 0 or -1. */
int fake_k8s_set_secret_uid(fake_k8s *fk, const char *ns, const char *name, const char *uid);
/* Reads uid/resourceVersion of a Secret (buffers of 64). 1 if it exists, else 0. */
int fake_k8s_secret_meta(fake_k8s *fk, const char *ns, const char *name, char *uid, char *rv);
size_t fake_k8s_secret_count(fake_k8s *fk, const char *ns);

/* The next n list requests that carry a continue token get 410 Expired. */
void fake_k8s_expire_continue(fake_k8s *fk, int n);
/* etcd compaction: every continue token issued so far is expired from now on. */
void fake_k8s_compact(fake_k8s *fk);

/*
 * TokenReview: registers a token that reviews as authenticated with the
 * given "user" object (JSON, e.g. the fixture's) and audiences
 * (comma-separated). Any other token reviews as unauthenticated with the
 * fixture's error text.
 */
void fake_k8s_review_token(fake_k8s *fk, const char *token, const char *user_json,
                           const char *audiences_csv);

/*
 * Revokes a token registered with fake_k8s_review_token (its pod or
 * service account was deleted): it then reviews as unauthenticated with
 * the API server's "service account token has been invalidated" error.
 */
void fake_k8s_revoke_token(fake_k8s *fk, const char *token);

/* The JWK set served (default: the fixture k8s-jwks.json). Copied. */
void fake_k8s_set_jwks(fake_k8s *fk, const char *json);

/* Faults: the next `count` requests whose path starts with prefix (NULL: any). */
void fake_k8s_inject(fake_k8s *fk, fake_k8s_fault f, int count, const char *prefix);
void fake_k8s_set_slow_ms(fake_k8s *fk, int ms);
void fake_k8s_set_retry_after(fake_k8s *fk, int seconds); /* 429's Retry-After; default 1 */

/* Observations. */
unsigned fake_k8s_requests(fake_k8s *fk, const char *prefix); /* count since start/reset */
void fake_k8s_reset_log(fake_k8s *fk);
/*
 * Request i (0 = oldest kept; the last 256 are kept) as
 * "METHOD /path?decoded-args user=NAME accept=VALUE ctype=VALUE"
 * (user "-" when unauthenticated). Returns 0, or -1 if there is no such request.
 */
int fake_k8s_request_line(fake_k8s *fk, size_t i, char *buf, size_t n);

/*
 * Writes, into dir: kubeconfig (token auth: `token`, CA data),
 * kubeconfig-tokenfile (tokenFile: dir/token), kubeconfig-cert (client
 * certificate and key as -data, for CN "cloudtaser test client"),
 * kubeconfig-files (certificate-authority, client-certificate, client-key
 * as paths into tls_dir), serviceaccount/{token,ca.crt,namespace} and env
 * (KUBERNETES_SERVICE_HOST=127.0.0.1, KUBERNETES_SERVICE_PORT=<port>).
 * Returns 0 or -1.
 */
int fake_k8s_write_configs(fake_k8s *fk, const char *dir, const char *tls_dir,
                           const char *token);

#endif
