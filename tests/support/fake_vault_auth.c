/*
 * fake_vault_auth.c - auth methods of the fake Vault (included by
 * fake_vault.c; not compiled alone): enabling mounts (sys/auth/<path>),
 * the Kubernetes auth method (config, roles, login) and the JWT method's
 * config, as ../shared/fixtures/API.md A5 describes them.
 *
 * The Kubernetes login does what Vault does: parse the JWT (no signature
 * check: no pem_keys), match the service account name and namespace
 * against the role, then ALWAYS call
 * POST {kubernetes_host}/apis/authentication.k8s.io/v1/tokenreviews with
 * Authorization: Bearer <token_reviewer_jwt>, body
 * {"spec":{"token":<jwt>,"audiences":[<the JWT's aud>]}} over HTTPS
 * verified against kubernetes_ca_cert (libcurl), and accept only a 200-206
 * answer with status.authenticated true, no status.error, overlapping
 * audiences and the username and uid of the claims. Any failure of the
 * review is 403 {"errors":["permission denied"]}.
 *
 * The JWT method's login (API.md A5 "JWT auth method with static keys",
 * and Vault's documented auth/jwt API: vault-plugin-auth-jwt path_login.go
 * and path_role.go, whose messages are copied) is fully offline: the
 * signature must verify (GnuTLS, independently of the library under test)
 * against one of the config's jwt_validation_pubkeys with an algorithm of
 * jwt_supported_algs (RS256, ES256 here); then iss against bound_issuer,
 * exp/nbf (60 s leeway), aud against the role's bound_audiences (required
 * when the token has an aud), sub against bound_subject, bound_claims (JSON
 * pointers, string or list of strings), and the role's user_claim must be
 * present. The answer's metadata is {"role": ...} plus the claim_mappings.
 */

typedef struct fv_role {
    char *name;
    json_t *names, *namespaces, *policies; /* arrays of strings */
    json_t *body; /* the JWT method's role as written */
    int ttl;
    struct fv_role *next;
} fv_role;

typedef struct fv_auth {
    char *path; /* "kubernetes", "kubernetes-0ad50c05", "jwt" */
    char *type; /* "kubernetes" or "jwt" */
    json_t *config; /* NULL until configured */
    fv_role *roles;
    struct fv_auth *next;
} fv_auth;

/* What a login needs after the state lock is released (the review call). */
typedef struct fv_login {
    char *host, *ca, *reviewer, *jwt, *role;
    json_t *aud;               /* the JWT's aud */
    char sa_name[256], sa_ns[256], sa_uid[64];
    json_t *policies;
    int ttl;
    char *mount_type;
    json_t *meta; /* set: a JWT login, already verified (no TokenReview) */
} fv_login;

static void login_free(fv_login *l)
{
    if (!l)
        return;
    free(l->host);
    free(l->ca);
    free(l->reviewer);
    free(l->jwt);
    free(l->role);
    free(l->mount_type);
    json_decref(l->meta);
    json_decref(l->aud);
    json_decref(l->policies);
    free(l);
}

static fv_auth *find_auth(fake_vault *fv, const char *path, size_t n)
{
    fv_auth *m;
    for (m = fv->auths; m; m = m->next)
        if (strlen(m->path) == n && strncmp(m->path, path, n) == 0)
            return m;
    return NULL;
}

static void free_auths(fake_vault *fv)
{
    fv_auth *m = fv->auths;
    while (m) {
        fv_auth *nm = m->next;
        fv_role *r = m->roles;
        while (r) {
            fv_role *nr = r->next;
            free(r->name);
            json_decref(r->names);
            json_decref(r->namespaces);
            json_decref(r->policies);
            json_decref(r->body);
            free(r);
            r = nr;
        }
        free(m->path);
        free(m->type);
        json_decref(m->config);
        free(m);
        m = nm;
    }
    fv->auths = NULL;
}

/* base64url (no padding) decode into a NUL-terminated buffer; NULL on error. */
static char *b64url_decode(const char *s, size_t n)
{
    static const char al[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 3 / 4 + 4);
    uint32_t acc = 0;
    int bits = 0;
    size_t i, o = 0;
    if (!out)
        return NULL;
    for (i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(al, s[i]) : NULL;
        if (!p) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)(p - al);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = 0;
    return out;
}

/* The JWT's claims (NULL if it is not a JWS compact token with a JSON payload). */
static json_t *jwt_claims(const char *jwt)
{
    const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    json_error_t je;
    json_t *c;
    char *p;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return NULL;
    p = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!p)
        return NULL;
    c = json_loads(p, 0, &je);
    free(p);
    if (!json_is_object(c)) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* Go's path.Match subset Vault uses for bound names: "*" or a "prefix*" glob. */
static int glob_bound(json_t *list, const char *v)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
        const char *g = json_string_value(x);
        size_t gl;
        if (!g)
            continue;
        gl = strlen(g);
        if (strcmp(g, "*") == 0 || strcmp(g, v) == 0 ||
            (gl > 0 && g[gl - 1] == '*' && strncmp(g, v, gl - 1) == 0))
            return 1;
    }
    return 0;
}

static json_t *str_array_or(json_t *v)
{
    /* Vault accepts a list or a comma-separated string */
    if (json_is_array(v))
        return json_incref(v);
    if (json_is_string(v)) {
        json_t *a = json_array();
        char *s = strdup(json_string_value(v)), *save = NULL, *t;
        for (t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            if (*t)
                json_array_append_new(a, json_string(t));
        }
        free(s);
        return a;
    }
    return json_array();
}

/* Requests to sys/auth/... and auth/... that need a token (lock held). */
static int auth_serve(fake_vault *fv, const char *method, const char *path, json_t *body,
                      answer *a)
{
    fv_auth *m;
    const char *rest, *slash;
    int write = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;

    if (strncmp(path, "sys/auth/", 9) == 0) {
        const char *p = path + 9, *type = json_string_value(json_object_get(body, "type"));
        size_t n = strlen(p);
        while (n > 0 && p[n - 1] == '/')
            n--;
        if (!write || n == 0) {
            answer_errors(a, 405, 1, MSG_UNSUPPORTED);
            return 1;
        }
        if (find_auth(fv, p, n)) {
            char msg[400];
            snprintf(msg, sizeof msg, "path is already in use at %.*s/", (int)n, p);
            answer_errors(a, 400, 1, msg);
            return 1;
        }
        if (!type || (strcmp(type, "kubernetes") != 0 && strcmp(type, "jwt") != 0)) {
            char msg[200];
            snprintf(msg, sizeof msg, "plugin not found in the catalog: %s", type ? type : "");
            answer_errors(a, 400, 1, msg);
            return 1;
        }
        m = calloc(1, sizeof *m);
        m->path = strndup(p, n);
        m->type = strdup(type);
        m->next = fv->auths;
        fv->auths = m;
        answer_empty(a, 204);
        return 1;
    }
    if (strncmp(path, "auth/", 5) != 0)
        return 0;
    slash = strchr(path + 5, '/');
    if (!slash || !(m = find_auth(fv, path + 5, (size_t)(slash - path - 5))))
        return 0;
    rest = slash + 1;
    if (strcmp(rest, "config") == 0) {
        if (write) {
            if (strcmp(m->type, "kubernetes") == 0 &&
                !json_is_string(json_object_get(body, "kubernetes_host"))) {
                answer_errors(a, 400, 1, "no host provided");
                return 1;
            }
            if (strcmp(m->type, "jwt") == 0) {
                json_t *k = json_object_get(body, "jwt_validation_pubkeys");
                if (!json_is_array(k) || json_array_size(k) == 0) {
                    answer_errors(a, 400, 1, "exactly one of 'jwt_validation_pubkeys', "
                                  "'jwks_url', 'jwks_pairs' or 'oidc_discovery_url' must be "
                                  "set");
                    return 1;
                }
            }
            json_decref(m->config);
            m->config = json_deep_copy(body);
            answer_empty(a, 204);
            return 1;
        }
        if (strcmp(method, "GET") == 0) {
            json_t *d;
            if (!m->config) {
                answer_errors(a, 404, 0);
                return 1;
            }
            d = json_deep_copy(m->config);
            if (strcmp(m->type, "kubernetes") == 0) {
                /* the reviewer JWT is never read back, only whether it is set */
                json_object_set_new(d, "token_reviewer_jwt_set",
                                    json_boolean(json_object_get(d, "token_reviewer_jwt")));
                json_object_del(d, "token_reviewer_jwt");
            }
            answer_json(a, 200, envelope(fv, d, NULL, m->type));
            return 1;
        }
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        return 1;
    }
    if (strncmp(rest, "role/", 5) == 0 && rest[5] && write) {
        fv_role *r, **pp;
        const char *name = rest + 5;
        if (strcmp(m->type, "kubernetes") == 0) {
            json_t *n = json_object_get(body, "bound_service_account_names"),
                   *ns = json_object_get(body, "bound_service_account_namespaces");
            if (!n) {
                answer_errors(a, 400, 1, "\"bound_service_account_names\" can not be empty");
                return 1;
            }
            if (!ns) {
                answer_errors(a, 400, 1, "\"bound_service_account_namespaces\" can not be "
                              "empty");
                return 1;
            }
        }
        if (strcmp(m->type, "jwt") == 0) {
            const char *rt = json_string_value(json_object_get(body, "role_type"));
            if (!json_is_string(json_object_get(body, "user_claim"))) {
                answer_errors(a, 400, 1, "a user claim must be defined on the role");
                return 1;
            }
            if (rt && strcmp(rt, "jwt") != 0 && strcmp(rt, "oidc") != 0) {
                answer_errors(a, 400, 1, "invalid 'role_type'");
                return 1;
            }
        }
        for (pp = &m->roles; *pp; pp = &(*pp)->next)
            if (strcmp((*pp)->name, name) == 0)
                break;
        r = *pp;
        if (!r) {
            r = calloc(1, sizeof *r);
            r->name = strdup(name);
            *pp = r;
        } else {
            json_decref(r->names);
            json_decref(r->namespaces);
            json_decref(r->policies);
            json_decref(r->body);
        }
        r->body = json_deep_copy(body);
        r->names = str_array_or(json_object_get(body, "bound_service_account_names"));
        r->namespaces = str_array_or(json_object_get(body, "bound_service_account_namespaces"));
        r->policies = str_array_or(json_object_get(body, "token_policies")
                                       ? json_object_get(body, "token_policies")
                                       : json_object_get(body, "policies"));
        r->ttl = json_is_integer(json_object_get(body, "token_ttl"))
                     ? (int)json_integer_value(json_object_get(body, "token_ttl"))
                     : 3600;
        answer_empty(a, 204);
        return 1;
    }
    return 0;
}

/* base64url (no padding) into a new buffer of *len bytes; NULL on error. */
static unsigned char *b64url_bin(const char *s, size_t n, size_t *len)
{
    char *p = b64url_decode(s, n);
    if (!p)
        return NULL;
    *len = n * 6 / 8;
    return (unsigned char *)p;
}

/* 1 if the JWS signature verifies with one of the PEM keys (GnuTLS). */
static int jwt_sig_ok(const char *jwt, const char *alg, json_t *pems)
{
    const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    gnutls_datum_t data, sig, der = {NULL, 0};
    unsigned char *raw;
    size_t rl = 0, i;
    json_t *k;
    int ok = 0, ec = strcmp(alg, "ES256") == 0;

    if (!d2 || (!ec && strcmp(alg, "RS256") != 0))
        return 0;
    raw = b64url_bin(d2 + 1, strlen(d2 + 1), &rl);
    if (!raw)
        return 0;
    data.data = (unsigned char *)jwt;
    data.size = (unsigned)(d2 - jwt);
    sig.data = raw;
    sig.size = (unsigned)rl;
    if (ec) { /* JWS carries r || s; GnuTLS wants the DER Ecdsa-Sig-Value */
        gnutls_datum_t r = {raw, 32}, s = {raw + 32, 32};
        if (rl != 64 || gnutls_encode_rs_value(&der, &r, &s) < 0) {
            free(raw);
            return 0;
        }
        sig = der;
    }
    json_array_foreach(pems, i, k) {
        gnutls_pubkey_t pk;
        gnutls_datum_t pd;
        if (!json_is_string(k) || gnutls_pubkey_init(&pk) < 0)
            continue;
        pd.data = (unsigned char *)(uintptr_t)json_string_value(k);
        pd.size = (unsigned)json_string_length(k);
        if (gnutls_pubkey_import(pk, &pd, GNUTLS_X509_FMT_PEM) >= 0 &&
            gnutls_pubkey_verify_data2(pk, ec ? GNUTLS_SIGN_ECDSA_SHA256 : GNUTLS_SIGN_RSA_SHA256,
                                       0, &data, &sig) >= 0)
            ok = 1;
        gnutls_pubkey_deinit(pk);
        if (ok)
            break;
    }
    gnutls_free(der.data);
    free(raw);
    return ok;
}

/* A claim by JSON pointer ("/a/b") or plain name. */
static json_t *claim_at(json_t *cl, const char *ptr)
{
    char buf[256], *save = NULL, *t;
    json_t *v = cl;
    if (ptr[0] != '/')
        return json_object_get(cl, ptr);
    snprintf(buf, sizeof buf, "%s", ptr + 1);
    for (t = strtok_r(buf, "/", &save); t && v; t = strtok_r(NULL, "/", &save))
        v = json_object_get(v, t);
    return v;
}

static int in_list(json_t *list_or_str, const char *v)
{
    size_t i;
    json_t *x;
    if (json_is_string(list_or_str))
        return strcmp(json_string_value(list_or_str), v) == 0;
    json_array_foreach(list_or_str, i, x)
        if (json_is_string(x) && strcmp(json_string_value(x), v) == 0)
            return 1;
    return 0;
}

/* POST auth/<jwt mount>/login: everything offline (lock held). */
static int jwt_login(fake_vault *fv, fv_auth *m, const char *method, const char *body,
                     size_t blen, answer *a, fv_login **out)
{
    json_t *in, *role, *jwt, *cl = NULL, *hd = NULL, *rb, *v, *aud, *bc, *cm, *meta;
    const char *tok, *d1, *alg, *uc, *rt;
    json_error_t je;
    fv_role *r;
    fv_login *l;
    char *h;
    const char *fail = NULL;
    unsigned code = 403;
    time_t now = time(NULL);
    size_t i;
    (void)fv;

    if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0) {
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        return 1;
    }
    in = json_loadb(body ? body : "{}", body ? blen : 2, 0, &je);
    role = json_object_get(in, "role");
    jwt = json_object_get(in, "jwt");
    if (!json_is_object(in)) {
        json_decref(in);
        answer_errors(a, 400, 1, "error parsing JSON");
        return 1;
    }
    if (!json_is_string(jwt) || !json_string_length(jwt)) {
        json_decref(in);
        answer_errors(a, 400, 1, "missing token");
        return 1;
    }
    if (!json_is_string(role) || !json_string_length(role)) {
        json_decref(in);
        answer_errors(a, 400, 1, "missing role");
        return 1;
    }
    for (r = m->roles; r; r = r->next)
        if (strcmp(r->name, json_string_value(role)) == 0)
            break;
    if (!r) {
        char msg[300];
        snprintf(msg, sizeof msg, "role \"%.200s\" could not be found", json_string_value(role));
        json_decref(in);
        answer_errors(a, 400, 1, msg);
        return 1;
    }
    if (!m->config) {
        json_decref(in);
        answer_errors(a, 400, 1, "could not load configuration");
        return 1;
    }
    rb = r->body;
    rt = json_string_value(json_object_get(rb, "role_type"));
    if (!rt || strcmp(rt, "jwt") != 0) {
        json_decref(in);
        answer_errors(a, 400, 1, "role with oidc role_type is not allowed");
        return 1;
    }
    tok = json_string_value(jwt);
    d1 = strchr(tok, '.');
    h = d1 ? b64url_decode(tok, (size_t)(d1 - tok)) : NULL;
    hd = h ? json_loads(h, 0, &je) : NULL;
    free(h);
    cl = jwt_claims(tok);
    alg = json_string_value(json_object_get(hd, "alg"));
    if (!cl || !alg) {
        fail = "error validating token: go-jose/go-jose: compact JWS format must have three "
               "parts";
        code = 400;
    } else if (json_object_get(m->config, "jwt_supported_algs")
                   ? !in_list(json_object_get(m->config, "jwt_supported_algs"), alg)
                   : strcmp(alg, "RS256") != 0) {
        fail = "error validating token: token signed with an unsupported algorithm";
    } else if (!jwt_sig_ok(tok, alg, json_object_get(m->config, "jwt_validation_pubkeys"))) {
        fail = "error validating token: error verifying token signature: no known key "
               "successfully validated the token signature";
    } else if (json_is_string(json_object_get(m->config, "bound_issuer")) &&
               !json_equal(json_object_get(cl, "iss"),
                           json_object_get(m->config, "bound_issuer"))) {
        fail = "error validating claims: validation failed, invalid issuer claim (iss)";
    } else if (!json_is_integer(json_object_get(cl, "exp")) ||
               json_integer_value(json_object_get(cl, "exp")) + 60 < (json_int_t)now) {
        fail = "error validating claims: validation failed, token is expired (exp)";
    } else if (json_is_integer(json_object_get(cl, "nbf")) &&
               json_integer_value(json_object_get(cl, "nbf")) - 60 > (json_int_t)now) {
        fail = "error validating claims: validation failed, token not valid yet (nbf)";
    }
    aud = json_object_get(cl, "aud");
    if (!fail && aud) {
        json_t *ba = json_object_get(rb, "bound_audiences");
        int hit = 0;
        if (!json_array_size(ba) && !json_is_string(ba)) {
            fail = "error validating claims: audience claim found in JWT but no audiences bound "
                   "to the role";
        } else {
            json_t *x;
            if (json_is_string(aud))
                hit = in_list(ba, json_string_value(aud));
            json_array_foreach(aud, i, x)
                if (json_is_string(x) && in_list(ba, json_string_value(x)))
                    hit = 1;
            if (!hit)
                fail = "error validating claims: validation failed, invalid audience claim "
                       "(aud)";
        }
    }
    if (!fail && json_is_string(json_object_get(rb, "bound_subject")) &&
        !json_equal(json_object_get(rb, "bound_subject"), json_object_get(cl, "sub")))
        fail = "error validating claims: sub claim does not match bound subject";
    bc = json_object_get(rb, "bound_claims");
    if (!fail && json_is_object(bc)) {
        const char *ptr;
        json_object_foreach(bc, ptr, v) {
            json_t *c = claim_at(cl, ptr);
            if (!json_is_string(c) || !in_list(v, json_string_value(c))) {
                fail = "error validating claims: claim does not match any associated bound "
                       "claim values";
                break;
            }
        }
    }
    uc = json_string_value(json_object_get(rb, "user_claim"));
    if (!fail && (!uc || !json_is_string(claim_at(cl, uc))))
        fail = "error validating claims: claim not found in token: user_claim";
    if (fail) {
        json_decref(hd);
        json_decref(cl);
        json_decref(in);
        answer_errors(a, code, 1, fail);
        return 1;
    }
    meta = json_pack("{s:s}", "role", r->name);
    cm = json_object_get(rb, "claim_mappings");
    if (json_is_object(cm)) {
        const char *ptr;
        json_object_foreach(cm, ptr, v) {
            json_t *c = claim_at(cl, ptr);
            if (json_is_string(v) && json_is_string(c))
                json_object_set(meta, json_string_value(v), c);
        }
    }
    l = calloc(1, sizeof *l);
    l->role = strdup(r->name);
    l->policies = json_incref(r->policies);
    l->ttl = r->ttl;
    l->mount_type = strdup("jwt");
    l->meta = meta;
    json_decref(hd);
    json_decref(cl);
    json_decref(in);
    *out = l;
    return 1;
}

/* POST auth/<path>/login (no token needed; lock held). 1 if handled. */
static int auth_login(fake_vault *fv, const char *method, const char *path, const char *body,
                      size_t blen, answer *a, fv_login **out)
{
    const char *slash;
    fv_auth *m;
    fv_role *r;
    json_t *in, *role, *jwt, *cl, *k, *sa;
    json_error_t je;
    fv_login *l;
    const char *name = NULL, *ns = NULL, *uid = NULL;

    *out = NULL;
    if (strncmp(path, "auth/", 5) != 0 || !(slash = strchr(path + 5, '/')) ||
        strcmp(slash, "/login") != 0)
        return 0;
    if (!(m = find_auth(fv, path + 5, (size_t)(slash - path - 5))))
        return 0;
    if (strcmp(m->type, "jwt") == 0)
        return jwt_login(fv, m, method, body, blen, a, out);
    if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0) {
        answer_errors(a, 405, 1, MSG_UNSUPPORTED);
        return 1;
    }
    in = json_loadb(body ? body : "{}", body ? blen : 2, 0, &je);
    if (!json_is_object(in)) {
        json_decref(in);
        answer_errors(a, 400, 1, "error parsing JSON");
        return 1;
    }
    role = json_object_get(in, "role");
    jwt = json_object_get(in, "jwt");
    if (!json_is_string(role) || !json_string_length(role)) {
        json_decref(in);
        answer_errors(a, 400, 1, "missing role");
        return 1;
    }
    if (!json_is_string(jwt) || !json_string_length(jwt)) {
        json_decref(in);
        answer_errors(a, 400, 1, "missing jwt");
        return 1;
    }
    for (r = m->roles; r; r = r->next)
        if (strcmp(r->name, json_string_value(role)) == 0)
            break;
    if (!r) {
        char msg[300];
        snprintf(msg, sizeof msg, "invalid role name \"%.200s\"", json_string_value(role));
        json_decref(in);
        answer_errors(a, 400, 1, msg);
        return 1;
    }
    if (!m->config) {
        json_decref(in);
        answer_errors(a, 500, 1, "could not load backend configuration");
        return 1;
    }
    cl = jwt_claims(json_string_value(jwt));
    if (!cl) {
        json_decref(in);
        answer_errors(a, 403, 1, "go-jose/go-jose: compact JWS format must have three parts");
        return 1;
    }
    k = json_object_get(cl, "kubernetes.io");
    if (json_is_object(k)) { /* projected token */
        sa = json_object_get(k, "serviceaccount");
        ns = json_string_value(json_object_get(k, "namespace"));
        name = json_string_value(json_object_get(sa, "name"));
        uid = json_string_value(json_object_get(sa, "uid"));
    } else { /* legacy secret token */
        ns = json_string_value(json_object_get(cl, "kubernetes.io/serviceaccount/namespace"));
        name = json_string_value(
            json_object_get(cl, "kubernetes.io/serviceaccount/service-account.name"));
        uid = json_string_value(
            json_object_get(cl, "kubernetes.io/serviceaccount/service-account.uid"));
    }
    if (!name || !ns || !uid) {
        json_decref(cl);
        json_decref(in);
        answer_errors(a, 403, 1, "could not parse the service account from the token");
        return 1;
    }
    if (!glob_bound(r->names, name)) {
        json_decref(cl);
        json_decref(in);
        answer_errors(a, 403, 1, "service account name not authorized");
        return 1;
    }
    if (!glob_bound(r->namespaces, ns)) {
        json_decref(cl);
        json_decref(in);
        answer_errors(a, 403, 1, "namespace not authorized");
        return 1;
    }
    l = calloc(1, sizeof *l);
    l->host = strdup(json_string_value(json_object_get(m->config, "kubernetes_host")));
    l->ca = json_is_string(json_object_get(m->config, "kubernetes_ca_cert"))
                ? strdup(json_string_value(json_object_get(m->config, "kubernetes_ca_cert")))
                : NULL;
    /* no token_reviewer_jwt (and not in a pod): the client's own JWT (API.md A5) */
    l->reviewer = strdup(json_is_string(json_object_get(m->config, "token_reviewer_jwt"))
                             ? json_string_value(json_object_get(m->config,
                                                                 "token_reviewer_jwt"))
                             : json_string_value(jwt));
    l->jwt = strdup(json_string_value(jwt));
    l->role = strdup(r->name);
    l->aud = json_object_get(cl, "aud");
    l->aud = json_is_string(l->aud) ? json_pack("[O]", l->aud)
                                    : json_is_array(l->aud) ? json_incref(l->aud) : json_array();
    snprintf(l->sa_name, sizeof l->sa_name, "%s", name);
    snprintf(l->sa_ns, sizeof l->sa_ns, "%s", ns);
    snprintf(l->sa_uid, sizeof l->sa_uid, "%s", uid);
    l->policies = json_incref(r->policies);
    l->ttl = r->ttl;
    l->mount_type = strdup("kubernetes");
    json_decref(cl);
    json_decref(in);
    *out = l;
    return 1;
}

typedef struct fv_buf {
    char *p;
    size_t n;
} fv_buf;

static size_t fv_on_data(char *p, size_t sz, size_t nm, void *u)
{
    fv_buf *b = u;
    char *np;
    if (b->n + sz * nm > (1u << 20))
        return 0;
    np = realloc(b->p, b->n + sz * nm + 1);
    if (!np)
        return 0;
    b->p = np;
    memcpy(b->p + b->n, p, sz * nm);
    b->n += sz * nm;
    b->p[b->n] = 0;
    return sz * nm;
}

/* The TokenReview call; 1 if it authenticates the claims' service account. */
static int token_review(fake_vault *fv, const fv_login *l)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct curl_blob ca;
    json_t *rqj, *resp = NULL, *st, *user, *x;
    json_error_t je;
    fv_buf b = { NULL, 0 };
    char url[1200], *auth, *body, want[600];
    long code = 0;
    size_t i, j;
    int ok = 0, overlap = 0;

    if (!c)
        return 0;
    snprintf(url, sizeof url, "%s/apis/authentication.k8s.io/v1/tokenreviews", l->host);
    while (strstr(url, "//apis"))
        memmove(strstr(url, "//apis"), strstr(url, "//apis") + 1, strlen(strstr(url, "//apis")));
    rqj = json_pack("{s:{s:s,s:O}}", "spec", "token", l->jwt, "audiences", l->aud);
    body = json_dumps(rqj, JSON_COMPACT);
    json_decref(rqj);
    auth = malloc(strlen(l->reviewer) + 32);
    sprintf(auth, "Authorization: Bearer %s", l->reviewer);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (l->ca) {
        ca.data = l->ca;
        ca.len = strlen(l->ca);
        ca.flags = CURL_BLOB_COPY;
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fv_on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(auth);
    free(body);
    if (fv->verbose)
        fprintf(stderr, "fake-vault: TokenReview %s -> %ld\n", url, code);
    if (code < 200 || code > 206 || !b.p)
        goto out;
    resp = json_loads(b.p, 0, &je);
    st = json_object_get(resp, "status");
    user = json_object_get(st, "user");
    if (!json_is_true(json_object_get(st, "authenticated")) ||
        (json_is_string(json_object_get(st, "error")) &&
         json_string_length(json_object_get(st, "error")) > 0))
        goto out;
    json_array_foreach(json_object_get(st, "audiences"), i, x) {
        json_t *y;
        json_array_foreach(l->aud, j, y)
            if (json_equal(x, y))
                overlap = 1;
    }
    if (json_array_size(l->aud) && !overlap)
        goto out;
    snprintf(want, sizeof want, "system:serviceaccount:%s:%s", l->sa_ns, l->sa_name);
    if (!json_string_value(json_object_get(user, "username")) ||
        strcmp(json_string_value(json_object_get(user, "username")), want) != 0)
        goto out;
    if (!json_string_value(json_object_get(user, "uid")) ||
        strcmp(json_string_value(json_object_get(user, "uid")), l->sa_uid) != 0)
        goto out;
    ok = 1;
out:
    json_decref(resp);
    free(b.p);
    return ok;
}

static void random_b62(char *out, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t r[64];
    size_t i;
    if (n > sizeof r || getrandom(r, n, 0) != (ssize_t)n)
        memset(r, 7, sizeof r);
    for (i = 0; i < n; i++)
        out[i] = al[r[i] % 62];
    out[n] = 0;
}

/* Finishes a login after the lock was released: the review, then the answer. */
static void login_finish(fake_vault *fv, fv_login *l, answer *a)
{
    json_t *env, *auth, *meta, *pol;
    char tok[40], acc[40], ent[37];
    fv_token *t;

    if (!l->meta && !token_review(fv, l)) {
        answer_errors(a, 403, 1, "permission denied");
        return;
    }
    memcpy(tok, "hvs.", 4);
    random_b62(tok + 4, 24);
    random_b62(acc, 24);
    uuid(ent);
    pol = json_array();
    json_array_append_new(pol, json_string("default"));
    json_array_extend(pol, l->policies);
    if (l->meta)
        meta = json_deep_copy(l->meta);
    else
        meta = json_pack("{s:s,s:s,s:s,s:s,s:s}", "role", l->role, "service_account_name",
                         l->sa_name, "service_account_namespace", l->sa_ns,
                         "service_account_secret_name", "", "service_account_uid", l->sa_uid);
    auth = json_pack("{s:s,s:s,s:O,s:O,s:o,s:i,s:b,s:s,s:s,s:b,s:n,s:i}", "client_token", tok,
                     "accessor", acc, "policies", pol, "token_policies", pol, "metadata", meta,
                     "lease_duration", l->ttl, "renewable", 1, "entity_id", ent, "token_type",
                     "service", "orphan", 1, "mfa_requirement", "num_uses", 0);
    json_decref(pol);
    env = envelope(fv, NULL, NULL, l->mount_type);
    json_object_set_new(env, "auth", auth);
    answer_json(a, 200, env);
    /* the token exists from now on (its policies are not modelled: no KV access) */
    t = calloc(1, sizeof *t);
    t->token = strdup(tok);
    t->allow = 0;
    pthread_mutex_lock(&fv->mu);
    t->next = fv->tokens;
    fv->tokens = t;
    fv->logins++;
    pthread_mutex_unlock(&fv->mu);
}
