/*
 * fuzz_embedded_vault.c - the bridge's vault.http handler on the embedded
 * store (podpolicy.h) takes requests that pods shaped (through the broker):
 * hostile input. Each input is one request given to ct_embedded_vault_http
 * over a memory store with a pinned issuer key, a policy, a few secrets and
 * a live token; an input whose first byte is '!' is a login body instead
 * (the rest), and '?' a KV path read with the live token. Whatever comes
 * back must be a JSON object with a status, or an error.
 */
#include <cloudtaser/cloudtaser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP "0ad50c05-1153-4508-9237-4cb2912e2c23"
#define ISS "https://kubernetes.default.svc.cluster.local"
#define MIG "{\"data\":{\"k\":\"dg==\"},\"state\":\"copied\"}"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ct_ctx *ctx;
static ct_store *store;
static ct_embedded_vault *ev;
static char token[64];

static void run(const char *req, size_t len)
{
    uint8_t *resp = NULL;
    size_t rlen = 0;
    json_t *o;
    if (ct_embedded_vault_http(ev, FP, NULL, 1, (const uint8_t *)req, len, &resp, &rlen, NULL) !=
        CT_OK) {
        if (resp)
            abort(); /* an error must not leave an answer */
        return;
    }
    o = json_loadb((const char *)resp, rlen, 0, NULL);
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, "status")))
        abort();
    json_decref(o);
    free(resp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ct_embedded_vault_options o = CT_EMBEDDED_VAULT_OPTIONS_INIT;
    ct_pod_policy *p = NULL;
    ct_key *key = NULL;
    char *jwks = NULL, *jwt = NULL, rec[2048], pay[512], req[4096];
    uint8_t *resp = NULL;
    size_t len = 0;
    const char *pol = "{\"version\":1,\"migrated_mount\":\"k8s\",\"rules\":[{\"namespace\":"
                      "\"team-a\",\"service_account\":\"*\",\"read\":[\"secret/data/team-a/\","
                      "\"secret/metadata/\"],\"list\":[\"secret/metadata/\"]}]}";
    long long now;
    (void)argc;
    (void)argv;
    if (ct_ctx_new(NULL, &ctx, NULL) != CT_OK || ct_store_new_memory(ctx, &store, NULL) != CT_OK ||
        ct_key_generate(ctx, &key, NULL) != CT_OK || ct_jwks_from_key(key, &jwks, NULL) != CT_OK)
        abort();
    snprintf(rec, sizeof rec,
             "{\"v\":1,\"fingerprint\":\"" FP "\",\"initialized_at\":1,\"updated_at\":1,"
             "\"audience\":\"a\",\"jwks\":%s,\"issuer\":\"" ISS "\",\"subject\":\"s\","
             "\"reissues\":0,\"jtis\":[]}",
             jwks);
    if (ct_store_put(store, "clusters/" FP "/initialized", rec, strlen(rec), CT_STORE_ANY, NULL,
                     NULL) != CT_OK ||
        ct_embedded_kv_put(ctx, store, "secret", "team-a/db", "{\"p\":\"x\"}", 9, NULL, NULL) ||
        ct_embedded_kv_put(ctx, store, "secret", "team-a/sub/x", "{\"p\":1}", 7, NULL, NULL) ||
        ct_store_put(store, "clusters/" FP "/secrets/team-a/s", MIG, strlen(MIG), CT_STORE_ANY,
                     NULL, NULL) != CT_OK ||
        ct_pod_policy_parse(pol, strlen(pol), "fuzz", &p, NULL) != CT_OK ||
        (o.store = store, ct_embedded_vault_new(ctx, &o, &ev, NULL)) != CT_OK)
        abort();
    ct_embedded_vault_set_policy(ev, p);
    now = (long long)(ct_ctx_wall_ms(ctx) / 1000);
    snprintf(pay, sizeof pay,
             "{\"aud\":\"" ISS "\",\"exp\":%lld,\"iat\":%lld,\"iss\":\"" ISS "\","
             "\"sub\":\"system:serviceaccount:team-a:app\"}",
             now + 86400 * 365, now);
    if (ct_jwt_sign_es256(ctx, key, pay, &jwt, NULL) != CT_OK)
        abort();
    snprintf(req, sizeof req,
             "{\"method\":\"POST\",\"path\":\"auth/k/login\",\"body\":\"{\\\"role\\\":\\\"r\\\","
             "\\\"jwt\\\":\\\"%s\\\"}\"}",
             jwt);
    if (ct_embedded_vault_http(ev, FP, NULL, 1, (const uint8_t *)req, strlen(req), &resp, &len,
                               NULL) != CT_OK ||
        !strstr((const char *)resp, "ctb."))
        abort();
    memcpy(token, strstr((const char *)resp, "ctb."), 47);
    free(resp);
    ct_free(jwt);
    ct_free(jwks);
    ct_key_free(key);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *o;
    char *s;
    if (size && (data[0] == '!' || data[0] == '?')) {
        o = data[0] == '!'
                ? json_pack("{s:s, s:s, s:s%}", "method", "POST", "path", "auth/kubernetes/login",
                            "body", (const char *)data + 1, size - 1)
                : json_pack("{s:s, s:s%, s:s}", "method", "GET", "path", (const char *)data + 1,
                            size - 1, "token", token);
        if (!o)
            return 0; /* not UTF-8 */
        s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (s)
            run(s, strlen(s));
        free(s);
        return 0;
    }
    run((const char *)data, size);
    return 0;
}
