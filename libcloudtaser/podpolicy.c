/*
 * podpolicy.c - the pod policy of the embedded store (podpolicy.h): a
 * strict JSON reader (jansson) and the matching of a pod to path prefixes.
 * Pure: no store, no I/O except ct_pod_policy_load's one file (fuzzed
 * through ct_pod_policy_parse).
 */
#include "internal.h"
#include "podpolicy_internal.h"

#include <cloudtaser/podpolicy.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_NAME 253  /* Kubernetes object names (DNS subdomain) */
#define MAX_ROLE 128
#define MAX_PATH 1024
#define MAX_AUD 255

typedef struct rule {
    char *ns, *sa, *role, *cluster, *name;
    char **read, **list;
    size_t nread, nlist;
} rule;

struct ct_pod_policy {
    char *audience;
    char *migrated_mount;
    rule *rules;
    size_t n;
};

static void rule_clear(rule *r)
{
    size_t i;
    free(r->ns);
    free(r->sa);
    free(r->role);
    free(r->cluster);
    free(r->name);
    for (i = 0; i < r->nread; i++)
        free(r->read[i]);
    for (i = 0; i < r->nlist; i++)
        free(r->list[i]);
    free(r->read);
    free(r->list);
}

void ct_pod_policy_free(ct_pod_policy *p)
{
    size_t i;
    if (!p)
        return;
    for (i = 0; i < p->n; i++)
        rule_clear(&p->rules[i]);
    free(p->rules);
    free(p->audience);
    free(p->migrated_mount);
    free(p);
}

size_t ct_pod_policy_rule_count(const ct_pod_policy *p)
{
    return p ? p->n : 0;
}

const char *ctp_pod_policy_audience(const ct_pod_policy *p)
{
    return p ? p->audience : NULL;
}

const char *ctp_pod_policy_migrated_mount(const ct_pod_policy *p)
{
    return p ? p->migrated_mount : NULL;
}

/* Kubernetes names: lowercase DNS subdomain characters. */
static int k8s_name_ok(const char *s)
{
    size_t i, n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.'))
            return 0;
    return 1;
}

static int word_ok(const char *s, size_t max, int slash)
{
    size_t i, n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.' ||
              (slash && s[i] == '/')))
            return 0;
    return 1;
}

/* A Vault path: printable, no leading '/', no empty, "." or ".." segment
 * (a trailing '/' is allowed: it makes the entry a prefix). */
static int vpath_ok(const char *s, int strict)
{
    size_t i, n = strlen(s), start = 0;
    if (n == 0 || n > MAX_PATH || s[0] == '/')
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f ||
            (strict && ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)))
            return 0;
    for (i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            size_t len = i - start;
            if (len == 0 && i != n)
                return 0;
            if ((len == 1 && s[start] == '.') ||
                (len == 2 && s[start] == '.' && s[start + 1] == '.'))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

static ct_err bad(ct_error *err, const char *src, size_t idx, const char *member,
                  const char *what)
{
    if (idx == (size_t)-1)
        return ctp_err(err, CT_E_INVALID, 0, "%s: \"%s\" %s", src, member, what);
    return ctp_err(err, CT_E_INVALID, 0, "%s: rules[%zu].%s %s", src, idx, member, what);
}

static ct_err take_paths(json_t *a, const char *src, size_t idx, const char *member,
                         char ***out, size_t *n, ct_error *err)
{
    size_t i;
    json_t *x;
    if (!json_is_array(a))
        return bad(err, src, idx, member, "must be an array of Vault paths");
    if (json_array_size(a) > CT_POD_POLICY_MAX_PATHS)
        return ctp_err(err, CT_E_TOOBIG, 0, "%s: rules[%zu].%s has more than %u paths", src,
                       idx, member, CT_POD_POLICY_MAX_PATHS);
    if (json_array_size(a) && !(*out = calloc(json_array_size(a), sizeof **out)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    json_array_foreach(a, i, x) {
        const char *s = json_string_value(x);
        if (!s || strlen(s) != json_string_length(x) || !vpath_ok(s, 1))
            return ctp_err(err, CT_E_INVALID, 0,
                           "%s: rules[%zu].%s[%zu] is not a Vault path (printable, no "
                           "leading '/', no empty, '.' or '..' segment, at most %d bytes)",
                           src, idx, member, i, MAX_PATH);
        if (!((*out)[i] = ctp_strdup(s)))
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        (*n)++;
    }
    return CT_OK;
}

static ct_err take_str(json_t *v, const char *src, size_t idx, const char *member,
                       int (*ok)(const char *), const char *what, char **out, ct_error *err)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v) || !ok(s))
        return bad(err, src, idx, member, what);
    if (!(*out = ctp_strdup(s)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    return CT_OK;
}

static int sa_ok(const char *s)
{
    return strcmp(s, "*") == 0 || k8s_name_ok(s);
}
static int role_ok(const char *s)
{
    return word_ok(s, MAX_ROLE, 0);
}
static int pname_ok(const char *s)
{
    return word_ok(s, MAX_ROLE, 1);
}
static int fp_ok(const char *s)
{
    char c[CT_FINGERPRINT_LEN + 1];
    return ct_fingerprint_canonical(s, c, NULL) == CT_OK && strcmp(c, s) == 0;
}
static int mount_name_ok(const char *s)
{
    return word_ok(s, 128, 0) && strcmp(s, "sys") != 0 && strcmp(s, "auth") != 0 &&
           strcmp(s, "identity") != 0 && strcmp(s, "cubbyhole") != 0 && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static int aud_ok(const char *s)
{
    size_t i, n = strlen(s);
    if (n == 0 || n > MAX_AUD)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static ct_err take_rule(json_t *o, const char *src, size_t idx, rule *r, ct_error *err)
{
    const char *k;
    json_t *v;
    ct_err rc;
    if (!json_is_object(o))
        return ctp_err(err, CT_E_INVALID, 0, "%s: rules[%zu] is not an object", src, idx);
    json_object_foreach(o, k, v) {
        if (strcmp(k, "namespace") == 0)
            rc = take_str(v, src, idx, k, k8s_name_ok,
                          "must be a Kubernetes namespace name ([a-z0-9.-], 1-253)", &r->ns,
                          err);
        else if (strcmp(k, "service_account") == 0)
            rc = take_str(v, src, idx, k, sa_ok,
                          "must be a service account name ([a-z0-9.-], 1-253) or \"*\"",
                          &r->sa, err);
        else if (strcmp(k, "role") == 0)
            rc = take_str(v, src, idx, k, role_ok, "must be 1-128 of [A-Za-z0-9._-]",
                          &r->role, err);
        else if (strcmp(k, "cluster") == 0)
            rc = take_str(v, src, idx, k, fp_ok,
                          "must be a cluster fingerprint (lowercase kube-system UID)",
                          &r->cluster, err);
        else if (strcmp(k, "name") == 0)
            rc = take_str(v, src, idx, k, pname_ok, "must be 1-128 of [A-Za-z0-9._/-]",
                          &r->name, err);
        else if (strcmp(k, "read") == 0)
            rc = take_paths(v, src, idx, k, &r->read, &r->nread, err);
        else if (strcmp(k, "list") == 0)
            rc = take_paths(v, src, idx, k, &r->list, &r->nlist, err);
        else
            rc = ctp_err(err, CT_E_INVALID, 0,
                         "%s: rules[%zu]: unknown member \"%.64s\" (known: namespace, "
                         "service_account, role, cluster, name, read, list)",
                         src, idx, k);
        if (rc != CT_OK)
            return rc;
    }
    if (!r->ns)
        return bad(err, src, idx, "namespace", "is required");
    if (!r->sa)
        return bad(err, src, idx, "service_account", "is required (a name or \"*\")");
    if (!r->nread && !r->nlist)
        return ctp_err(err, CT_E_INVALID, 0, "%s: rules[%zu] grants nothing (no \"read\" or "
                       "\"list\" path)", src, idx);
    return CT_OK;
}

ct_err ct_pod_policy_parse(const char *json, size_t len, const char *name,
                           ct_pod_policy **out, ct_error *err)
{
    const char *src = name && *name ? name : "pod policy";
    json_error_t je;
    json_t *o = NULL, *v, *rules = NULL;
    ct_pod_policy *p = NULL;
    const char *k;
    int have_version = 0;
    ct_err rc = CT_OK;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_pod_policy_parse: out is NULL");
    *out = NULL;
    if (!json && len)
        return ctp_err(err, CT_E_INVALID, 0, "ct_pod_policy_parse: json is NULL");
    if (len > CT_POD_POLICY_MAX_LEN)
        return ctp_err(err, CT_E_TOOBIG, 0, "%s: larger than %u bytes", src,
                       CT_POD_POLICY_MAX_LEN);
    o = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return ctp_err(err, CT_E_INVALID, 0, "%s: not valid JSON (line %d: %.80s)", src,
                       je.line, je.text);
    if (!json_is_object(o)) {
        rc = ctp_err(err, CT_E_INVALID, 0, "%s: not a JSON object", src);
        goto out;
    }
    if (!(p = ctp_calloc(1, sizeof *p))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    json_object_foreach(o, k, v) {
        if (strcmp(k, "version") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) != 1) {
                rc = bad(err, src, (size_t)-1, k, "must be 1");
                goto out;
            }
            have_version = 1;
        } else if (strcmp(k, "audience") == 0) {
            if ((rc = take_str(v, src, (size_t)-1, k, aud_ok,
                               "must be printable text of 1-255 bytes", &p->audience,
                               err)) != CT_OK)
                goto out;
        } else if (strcmp(k, "migrated_mount") == 0) {
            if ((rc = take_str(v, src, (size_t)-1, k, mount_name_ok,
                               "must be a mount name (1-128 of [A-Za-z0-9._-], not sys, auth, "
                               "identity or cubbyhole)",
                               &p->migrated_mount, err)) != CT_OK)
                goto out;
        } else if (strcmp(k, "rules") == 0) {
            rules = v;
        } else {
            rc = ctp_err(err, CT_E_INVALID, 0,
                         "%s: unknown member \"%.64s\" (known: version, audience, "
                         "migrated_mount, rules)", src,
                         k);
            goto out;
        }
    }
    if (!have_version) {
        rc = bad(err, src, (size_t)-1, "version", "is required (1)");
        goto out;
    }
    if (!json_is_array(rules)) {
        rc = bad(err, src, (size_t)-1, "rules", "is required (an array)");
        goto out;
    }
    if (json_array_size(rules) > CT_POD_POLICY_MAX_RULES) {
        rc = ctp_err(err, CT_E_TOOBIG, 0, "%s: more than %u rules", src,
                     CT_POD_POLICY_MAX_RULES);
        goto out;
    }
    if (json_array_size(rules) &&
        !(p->rules = ctp_calloc(json_array_size(rules), sizeof *p->rules))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (; p->n < json_array_size(rules);) {
        size_t i = p->n++;
        if ((rc = take_rule(json_array_get(rules, i), src, i, &p->rules[i], err)) != CT_OK)
            goto out;
    }
    *out = p;
    p = NULL;
out:
    ct_pod_policy_free(p);
    json_decref(o);
    return rc;
}

ct_err ct_pod_policy_load(const char *path, ct_pod_policy **out, ct_error *err)
{
    char *buf = NULL;
    struct stat st;
    size_t got = 0;
    ssize_t r;
    int fd, e;
    ct_err rc;

    if (!out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_pod_policy_load: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return ctp_err(err, CT_E_INVALID, 0, "ct_pod_policy_load: no file name");
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        e = errno;
        return ctp_err(err, e == ENOENT ? CT_E_NOTFOUND : CT_E_IO, e, "%s: %s", path,
                       strerror(e));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ctp_err(err, CT_E_IO, 0, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > CT_POD_POLICY_MAX_LEN) {
        close(fd);
        return ctp_err(err, CT_E_TOOBIG, 0, "%s: larger than %u bytes", path,
                       CT_POD_POLICY_MAX_LEN);
    }
    if (!(buf = malloc(CT_POD_POLICY_MAX_LEN + 1))) {
        close(fd);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    for (;;) {
        r = read(fd, buf + got, CT_POD_POLICY_MAX_LEN + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got > CT_POD_POLICY_MAX_LEN)
            break;
    }
    e = errno;
    close(fd);
    if (r < 0)
        rc = ctp_err(err, CT_E_IO, e, "%s: %s", path, strerror(e));
    else if (got > CT_POD_POLICY_MAX_LEN)
        rc = ctp_err(err, CT_E_TOOBIG, 0, "%s: larger than %u bytes", path,
                     CT_POD_POLICY_MAX_LEN);
    else
        rc = ct_pod_policy_parse(buf, got, path, out, err);
    free(buf);
    return rc;
}

/* ---- matching ---- */

static int rule_matches(const rule *r, const char *fp, const char *ns, const char *sa,
                        const char *role)
{
    if (strcmp(r->ns, ns) != 0)
        return 0;
    if (strcmp(r->sa, "*") != 0 && strcmp(r->sa, sa) != 0)
        return 0;
    if (r->cluster && (!fp || strcmp(r->cluster, fp) != 0))
        return 0;
    if (role && r->role && strcmp(r->role, role) != 0)
        return 0;
    return 1;
}

/* An entry ending in '/' covers everything below it; any other entry only
 * itself (or, as a directory, itself with a '/' added). */
static int entry_covers(const char *e, const char *path)
{
    size_t n = strlen(e), m = strlen(path);
    if (e[n - 1] == '/')
        return m >= n && memcmp(path, e, n) == 0;
    return strcmp(e, path) == 0 || (m == n + 1 && path[n] == '/' && memcmp(path, e, n) == 0);
}

int ct_pod_policy_allows(const ct_pod_policy *p, const char *fingerprint, const char *ns,
                         const char *sa, const char *role, const char *capability,
                         const char *path)
{
    char buf[MAX_PATH + 2];
    size_t i, j, n;
    int list;
    if (!p || !ns || !sa || !capability || !path)
        return 0;
    if (strcmp(capability, "list") == 0)
        list = 1;
    else if (strcmp(capability, "read") == 0)
        list = 0;
    else
        return 0;
    n = strlen(path);
    if (n == 0 || n > MAX_PATH)
        return 0;
    memcpy(buf, path, n + 1);
    if (list && buf[n - 1] != '/') { /* a directory: always with its '/' */
        buf[n] = '/';
        buf[n + 1] = 0;
    }
    if (!vpath_ok(buf, 0))
        return 0;
    for (i = 0; i < p->n; i++) {
        const rule *r = &p->rules[i];
        char **e = list ? r->list : r->read;
        size_t ne = list ? r->nlist : r->nread;
        if (!rule_matches(r, fingerprint, ns, sa, role))
            continue;
        for (j = 0; j < ne; j++)
            if (entry_covers(e[j], buf))
                return 1;
    }
    return 0;
}

int ctp_pod_policy_role_known(const ct_pod_policy *p, const char *fp, const char *role)
{
    size_t i;
    if (!p)
        return 0;
    for (i = 0; i < p->n; i++)
        if ((!p->rules[i].role || strcmp(p->rules[i].role, role) == 0) &&
            (!p->rules[i].cluster || (fp && strcmp(p->rules[i].cluster, fp) == 0)))
            return 1;
    return 0;
}

size_t ctp_pod_policy_names(const ct_pod_policy *p, const char *fp, const char *ns,
                            const char *sa, const char *role, void *json_array)
{
    json_t *a = json_array;
    size_t i, n = 0;
    char def[2 * MAX_NAME + 2];
    if (!p)
        return 0;
    for (i = 0; i < p->n; i++) {
        const rule *r = &p->rules[i];
        if (!rule_matches(r, fp, ns, sa, role))
            continue;
        n++;
        if (!a)
            continue;
        snprintf(def, sizeof def, "%s/%s", r->ns, r->sa);
        json_array_append_new(a, json_string(r->name ? r->name : def));
    }
    return n;
}
