/*
 * migrate_plan.c - the migration plan (classification of Secrets) and the
 * run report (migrate.h). No values are read here.
 */
#include "internal.h"
#include "migrate_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct plan_item {
    const ct_k8s_secret *s;
    ct_migrate_reason reason;
};

struct ct_migrate_plan {
    ct_k8s_secret_list **lists;
    size_t n_lists;
    struct plan_item *items;
    size_t n, to_migrate;
    char **ns; /* the namespaces in scope */
    size_t n_ns;
};

size_t ctp_migrate_plan_namespaces(const ct_migrate_plan *p, const char *const **out)
{
    *out = (const char *const *)p->ns;
    return p->n_ns;
}

ct_migrate_reason ct_migrate_classify(const ct_k8s_secret *s)
{
    const char *t;
    if (!s)
        return CT_MIGRATE_SKIP_NAME;
    t = ct_k8s_secret_type(s);
    if (strcmp(t, "kubernetes.io/service-account-token") == 0)
        return CT_MIGRATE_SKIP_SA_TOKEN;
    if (strcmp(t, "helm.sh/release.v1") == 0)
        return CT_MIGRATE_SKIP_HELM;
    if (strcmp(t, "bootstrap.kubernetes.io/token") == 0)
        return CT_MIGRATE_SKIP_BOOTSTRAP;
    if (ct_k8s_secret_has_owner(s))
        return CT_MIGRATE_SKIP_OWNED;
    if (strlen(ct_k8s_secret_namespace(s)) > 128 || strlen(ct_k8s_secret_name(s)) > 128)
        return CT_MIGRATE_SKIP_NAME;
    return CT_MIGRATE_GO;
}

const char *ct_migrate_reason_name(ct_migrate_reason r)
{
    switch (r) {
    case CT_MIGRATE_GO: return "migrate";
    case CT_MIGRATE_SKIP_SA_TOKEN: return "service-account-token";
    case CT_MIGRATE_SKIP_HELM: return "helm-release";
    case CT_MIGRATE_SKIP_BOOTSTRAP: return "bootstrap-token";
    case CT_MIGRATE_SKIP_OWNED: return "owned";
    case CT_MIGRATE_SKIP_NAME: return "name-too-long";
    default: return "unknown";
    }
}

const char *ct_migrate_reason_text(ct_migrate_reason r)
{
    switch (r) {
    case CT_MIGRATE_GO: return "will be copied to the vault, verified, then deleted";
    case CT_MIGRATE_SKIP_SA_TOKEN:
        return "a service-account token: Kubernetes manages it and clients read it from "
               "the API";
    case CT_MIGRATE_SKIP_HELM: return "a Helm release record: Helm needs it in Kubernetes";
    case CT_MIGRATE_SKIP_BOOTSTRAP:
        return "a bootstrap token: kubeadm and the kubelet need it in Kubernetes";
    case CT_MIGRATE_SKIP_OWNED:
        return "owned by another object (ownerReferences): its controller would recreate "
               "or garbage-collect it";
    case CT_MIGRATE_SKIP_NAME:
        return "namespace or name longer than 128 characters: not a valid store key segment";
    default: return "unknown";
    }
}

ct_err ct_migrate_plan_new(ct_k8s_client *c, const ct_migrate_scope *scope,
                           ct_migrate_plan **out, ct_error *err)
{
    ct_k8s_list_options lo = CT_K8S_LIST_OPTIONS_INIT;
    const char *one[1] = { NULL };
    const char *const *nss = one;
    size_t nn = 1, i, j, total = 0;
    ct_migrate_plan *p;
    ct_err rc = CT_OK;

    if (out)
        *out = NULL;
    if (!c || !out)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_plan_new: NULL argument");
    if (scope && scope->version != CT_MIGRATE_SCOPE_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_migrate_scope: unknown version %u",
                       scope->version);
    if (scope && scope->namespaces && scope->n_namespaces) {
        nss = scope->namespaces;
        nn = scope->n_namespaces;
    }
    lo.label_selector = scope ? scope->label_selector : NULL;
    if (!(p = calloc(1, sizeof *p)) || !(p->lists = calloc(nn, sizeof *p->lists)) ||
        !(p->ns = calloc(nn, sizeof *p->ns))) {
        if (p)
            free(p->lists);
        free(p);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    for (i = 0; i < nn; i++) {
        if (!(p->ns[i] = ctp_strdup(nss[i] ? nss[i] : ct_k8s_client_namespace(c)))) {
            rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
            goto fail;
        }
        p->n_ns++;
    }
    for (i = 0; i < nn; i++) {
        rc = ct_k8s_list_secrets(c, nss[i], &lo, &p->lists[i], err);
        if (rc != CT_OK)
            goto fail;
        p->n_lists++;
        total += ct_k8s_secret_list_count(p->lists[i]);
    }
    if (total && !(p->items = calloc(total, sizeof *p->items))) {
        rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        goto fail;
    }
    for (i = 0; i < p->n_lists; i++)
        for (j = 0; j < ct_k8s_secret_list_count(p->lists[i]); j++) {
            struct plan_item *it = &p->items[p->n++];
            it->s = ct_k8s_secret_list_get(p->lists[i], j);
            it->reason = ct_migrate_classify(it->s);
            if (it->reason == CT_MIGRATE_GO)
                p->to_migrate++;
        }
    *out = p;
    return CT_OK;
fail:
    ct_migrate_plan_free(p);
    return rc;
}

size_t ct_migrate_plan_count(const ct_migrate_plan *p)
{
    return p ? p->n : 0;
}

const ct_k8s_secret *ct_migrate_plan_secret(const ct_migrate_plan *p, size_t i)
{
    return p && i < p->n ? p->items[i].s : NULL;
}

ct_migrate_reason ct_migrate_plan_reason(const ct_migrate_plan *p, size_t i)
{
    return p && i < p->n ? p->items[i].reason : CT_MIGRATE_SKIP_NAME;
}

size_t ct_migrate_plan_to_migrate(const ct_migrate_plan *p)
{
    return p ? p->to_migrate : 0;
}

static ct_err dump_out(json_t *o, char **json, ct_error *err)
{
    *json = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return *json ? CT_OK : ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
}

ct_err ct_migrate_plan_json(const ct_migrate_plan *p, char **json, ct_error *err)
{
    json_t *o, *a;
    size_t i;
    if (!p || !json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_plan_json: NULL argument");
    o = json_object();
    a = json_array();
    if (!o || !a || json_object_set_new(o, "secrets", a)) {
        json_decref(o);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    for (i = 0; i < p->n; i++) {
        const ct_k8s_secret *s = p->items[i].s;
        ct_migrate_reason r = p->items[i].reason;
        json_t *it = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "namespace",
                               ct_k8s_secret_namespace(s), "name", ct_k8s_secret_name(s), "type",
                               ct_k8s_secret_type(s), "action",
                               r == CT_MIGRATE_GO ? "migrate" : "skip", "reason",
                               ct_migrate_reason_name(r), "why", ct_migrate_reason_text(r));
        if (!it || json_array_append_new(a, it)) {
            json_decref(o);
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        }
    }
    json_object_set_new(o, "migrate", json_integer((json_int_t)p->to_migrate));
    json_object_set_new(o, "skip", json_integer((json_int_t)(p->n - p->to_migrate)));
    return dump_out(o, json, err);
}

void ct_migrate_plan_free(ct_migrate_plan *p)
{
    size_t i;
    if (!p)
        return;
    for (i = 0; i < p->n_lists; i++)
        ct_k8s_secret_list_free(p->lists[i]);
    for (i = 0; i < p->n_ns; i++)
        free(p->ns[i]);
    free(p->ns);
    free(p->lists);
    free(p->items);
    free(p);
}

/* ------------------------------------------------------------ report */

const char *ct_migrate_outcome_name(ct_migrate_outcome o)
{
    switch (o) {
    case CT_MIGRATE_MIGRATED: return "migrated";
    case CT_MIGRATE_SKIPPED: return "skipped";
    case CT_MIGRATE_KEPT: return "kept";
    case CT_MIGRATE_FAILED: return "failed";
    case CT_MIGRATE_RESTORED: return "restored";
    case CT_MIGRATE_EXISTS: return "exists";
    default: return "unknown";
    }
}

ct_migrate_report *ctp_migrate_report_new(size_t total)
{
    ct_migrate_report *r = calloc(1, sizeof *r);
    if (r) {
        r->totals.total = total;
        r->start_ms = ctp_mono_ms();
    }
    return r;
}

ct_err ctp_migrate_report_add(ct_migrate_report *r, const char *ns, const char *name,
                              ct_migrate_outcome o, const char *msg, ct_error *err)
{
    struct report_item *it;
    int64_t el;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct report_item *ni = realloc(r->items, cap * sizeof *ni);
        if (!ni)
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        r->items = ni;
        r->cap = cap;
    }
    it = &r->items[r->n];
    it->ns = ctp_strdup(ns);
    it->name = ctp_strdup(name);
    it->msg = ctp_strdup(msg ? msg : "");
    if (!it->ns || !it->name || !it->msg) {
        free(it->ns);
        free(it->name);
        free(it->msg);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    it->outcome = o;
    r->n++;
    r->totals.done++;
    switch (o) {
    case CT_MIGRATE_MIGRATED: r->totals.migrated++; break;
    case CT_MIGRATE_SKIPPED: r->totals.skipped++; break;
    case CT_MIGRATE_KEPT: r->totals.kept++; break;
    case CT_MIGRATE_FAILED: r->totals.failed++; break;
    case CT_MIGRATE_RESTORED: r->totals.restored++; break;
    case CT_MIGRATE_EXISTS: r->totals.exists++; break;
    default: break;
    }
    el = ctp_mono_ms() - r->start_ms;
    r->totals.elapsed_s = (double)el / 1000.0;
    r->totals.rate = el > 0 ? (double)r->totals.done * 1000.0 / (double)el : 0.0;
    return CT_OK;
}

size_t ct_migrate_report_count(const ct_migrate_report *r)
{
    return r ? r->n : 0;
}

const char *ct_migrate_report_namespace(const ct_migrate_report *r, size_t i)
{
    return r && i < r->n ? r->items[i].ns : NULL;
}

const char *ct_migrate_report_name(const ct_migrate_report *r, size_t i)
{
    return r && i < r->n ? r->items[i].name : NULL;
}

ct_migrate_outcome ct_migrate_report_outcome(const ct_migrate_report *r, size_t i)
{
    return r && i < r->n ? r->items[i].outcome : CT_MIGRATE_FAILED;
}

const char *ct_migrate_report_message(const ct_migrate_report *r, size_t i)
{
    return r && i < r->n ? r->items[i].msg : NULL;
}

void ct_migrate_report_totals(const ct_migrate_report *r, ct_migrate_progress *out)
{
    if (!out)
        return;
    if (!r)
        memset(out, 0, sizeof *out);
    else
        *out = r->totals;
}

ct_err ct_migrate_report_json(const ct_migrate_report *r, char **json, ct_error *err)
{
    json_t *o, *a;
    size_t i;
    if (!r || !json)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_report_json: NULL argument");
    o = json_object();
    a = json_array();
    if (!o || !a || json_object_set_new(o, "items", a)) {
        json_decref(o);
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    }
    for (i = 0; i < r->n; i++) {
        json_t *it = json_pack("{s:s,s:s,s:s,s:s}", "namespace", r->items[i].ns, "name",
                               r->items[i].name, "outcome",
                               ct_migrate_outcome_name(r->items[i].outcome), "message",
                               r->items[i].msg);
        if (!it || json_array_append_new(a, it)) {
            json_decref(o);
            return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
        }
    }
#define T(f) json_object_set_new(o, #f, json_integer((json_int_t)r->totals.f))
    T(total);
    T(migrated);
    T(skipped);
    T(kept);
    T(failed);
    T(restored);
    T(exists);
#undef T
    json_object_set_new(o, "seconds", json_real(r->totals.elapsed_s));
    json_object_set_new(o, "rate", json_real(r->totals.rate));
    return dump_out(o, json, err);
}

void ct_migrate_report_free(ct_migrate_report *r)
{
    size_t i;
    if (!r)
        return;
    for (i = 0; i < r->n; i++) {
        free(r->items[i].ns);
        free(r->items[i].name);
        free(r->items[i].msg);
    }
    free(r->items);
    free(r);
}
