/*
 * migrate_run.c - the operator side of the Secret migration (migrate.h):
 * apply (put, read back and compare, delete with preconditions, mark) and
 * restore (list, get, create, mark).
 *
 * The put request and the answers of migrate.get carry Secret values:
 * requests are serialised into ct_secret buffers, answers are wiped before
 * they are freed, and jansson's string copies are wiped in place first.
 */
#include "internal.h"
#include "migrate_internal.h"

#include "b64.h"
#include "json_wipe.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct run {
    const ct_migrate_run_options *o;
    ct_migrate_report *rep;
    int reached; /* the bridge has answered at least once */
} run;

/* Sends a request (serialised into a ct_secret) and parses the JSON answer. */
static ct_err call(run *r, json_t *req, json_t **ans, ct_error *err)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t need = json_dumpb(req, NULL, 0, flags), len = 0;
    ct_secret *buf = NULL;
    uint8_t *resp = NULL;
    ct_err rc;

    if (ans)
        *ans = NULL;
    if (need == 0)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if ((rc = ct_secret_new(need, &buf, err)) != CT_OK)
        return rc;
    json_dumpb(req, (char *)ct_secret_data(buf), need, flags);
    rc = r->o->request(r->o->request_arg, ct_secret_data(buf), need, &resp, &len, err);
    ct_secret_free(buf);
    if (rc != CT_OK) {
        if (rc != CT_E_CLOSED && rc != CT_E_TIMEOUT && rc != CT_E_UNSUPPORTED)
            r->reached = 1;
        if (resp) {
            ct_secure_wipe(resp, len);
            ct_free(resp);
        }
        return rc;
    }
    r->reached = 1;
    if (ans) {
        *ans = json_loadb((const char *)(resp ? resp : (const uint8_t *)""), len, 0, NULL);
        if (!json_is_object(*ans)) {
            ctp_json_free_wiped(*ans);
            *ans = NULL;
            rc = ctp_err(err, CT_E_PROTO, 0, "the bridge's answer is not a JSON object");
        }
    }
    if (resp) {
        ct_secure_wipe(resp, len);
        ct_free(resp);
    }
    return rc;
}

/*
 * A fatal error stops the run: the session is gone or does not answer
 * (every further request would wait for it), or the bridge does not serve
 * the migration at all. Stopping is safe: nothing is deleted unverified,
 * and running again resumes.
 */
static int fatal(const run *r, ct_err rc)
{
    return rc == CT_E_CLOSED || rc == CT_E_TIMEOUT || (!r->reached && rc == CT_E_UNSUPPORTED);
}

static ct_err progress(run *r, const char *ns, const char *name, ct_migrate_outcome o,
                       const char *msg, ct_error *err)
{
    ct_err rc = ctp_migrate_report_add(r->rep, ns, name, o, msg, err);
    if (rc == CT_OK && r->o->progress)
        r->o->progress(r->o->progress_arg, &r->rep->totals);
    return rc;
}

/* The record of a Secret for migrate.put ({"op","record":{...}}). */
static json_t *put_request(const ct_k8s_secret *s, ct_error *err)
{
    json_t *req = json_object(), *rec = json_object(), *data = json_object(),
           *labels = json_object();
    size_t i, n;
    if (!req || !rec || !data || !labels)
        goto nomem;
    json_object_set_new(req, "op", json_string("migrate.put"));
    json_object_set_new(req, "record", rec);
    json_object_set_new(rec, "namespace", json_string(ct_k8s_secret_namespace(s)));
    json_object_set_new(rec, "name", json_string(ct_k8s_secret_name(s)));
    json_object_set_new(rec, "uid", json_string(ct_k8s_secret_uid(s)));
    json_object_set_new(rec, "resourceVersion", json_string(ct_k8s_secret_resource_version(s)));
    json_object_set_new(rec, "type", json_string(ct_k8s_secret_type(s)));
    json_object_set_new(rec, "labels", labels);
    json_object_set_new(rec, "data", data);
    for (i = 0; i < ct_k8s_secret_label_count(s); i++)
        json_object_set_new(labels, ct_k8s_secret_label_key(s, i),
                            json_string(ct_k8s_secret_label_value(s, i)));
    n = ct_k8s_secret_data_count(s);
    for (i = 0; i < n; i++) {
        const ct_secret *v = ct_k8s_secret_data_value(s, i);
        size_t el = ctp_b64_encoded_len(ct_secret_len(v), CTP_B64_STD);
        ct_secret *enc = NULL;
        json_t *js;
        if (ct_secret_new(el + 1, &enc, err) != CT_OK)
            goto fail;
        ctp_b64_encode(ct_secret_data(v), ct_secret_len(v), (char *)ct_secret_data(enc),
                       CTP_B64_STD);
        js = json_stringn((const char *)ct_secret_data(enc), el);
        ct_secret_free(enc);
        if (!js || json_object_set_new(data, ct_k8s_secret_data_key(s, i), js))
            goto nomem;
    }
    return req;
nomem:
    ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
fail:
    ctp_json_free_wiped(req);
    return NULL;
}

/* 1 if the stored record `rec` is byte for byte the Secret s (metadata and data). */
static int same(const ct_k8s_secret *s, json_t *rec, char *why, size_t whyn)
{
    json_t *data = json_object_get(rec, "data");
    const char *u = json_string_value(json_object_get(rec, "uid"));
    const char *rv = json_string_value(json_object_get(rec, "resourceVersion"));
    const char *t = json_string_value(json_object_get(rec, "type"));
    size_t i, n = ct_k8s_secret_data_count(s);
    if (!u || !rv || !t || strcmp(u, ct_k8s_secret_uid(s)) != 0 ||
        strcmp(rv, ct_k8s_secret_resource_version(s)) != 0 ||
        strcmp(t, ct_k8s_secret_type(s)) != 0) {
        snprintf(why, whyn, "the read-back copy has other metadata (uid, resourceVersion or "
                 "type)");
        return 0;
    }
    if (!json_is_object(data) || json_object_size(data) != n) {
        snprintf(why, whyn, "the read-back copy has %zu data keys, the Secret %zu",
                 json_is_object(data) ? json_object_size(data) : 0, n);
        return 0;
    }
    for (i = 0; i < n; i++) {
        const ct_secret *v = ct_k8s_secret_data_value(s, i);
        json_t *js = json_object_get(data, ct_k8s_secret_data_key(s, i));
        const char *b = json_string_value(js);
        size_t bl = json_string_length(js), got = 0, cap = ctp_b64_decoded_max(bl) + 1;
        ct_secret *dec = NULL;
        int ok;
        if (!b || ct_secret_new(cap, &dec, NULL) != CT_OK) {
            snprintf(why, whyn, "the read-back copy lacks data key %s",
                     ct_k8s_secret_data_key(s, i));
            return 0;
        }
        ok = ctp_b64_decode(b, bl, ct_secret_data(dec), cap, &got, CTP_B64_STD) == 0 &&
             got == ct_secret_len(v) && ct_memeq(ct_secret_data(dec), ct_secret_data(v), got);
        ct_secret_free(dec);
        if (!ok) {
            snprintf(why, whyn, "the read-back value of %s differs", ct_k8s_secret_data_key(s, i));
            return 0;
        }
    }
    return 1;
}

static ct_err mark(run *r, const char *ns, const char *name, const char *uid, const char *state,
                   const ct_k8s_secret *made, ct_error *err)
{
    json_t *req = json_pack("{s:s,s:s,s:s,s:s,s:s}", "op", "migrate.mark", "namespace", ns,
                            "name", name, "uid", uid, "state", state);
    ct_err rc;
    if (!req)
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    if (made) {
        json_object_set_new(req, "new_uid", json_string(ct_k8s_secret_uid(made)));
        json_object_set_new(req, "new_resourceVersion",
                            json_string(ct_k8s_secret_resource_version(made)));
    }
    rc = call(r, req, NULL, err);
    json_decref(req);
    return rc;
}

/* One Secret: returns CT_OK after recording its outcome, or a fatal error. */
static ct_err migrate_one(run *r, ct_k8s_client *c, const ct_k8s_secret *s, ct_error *err)
{
    const char *ns = ct_k8s_secret_namespace(s), *name = ct_k8s_secret_name(s);
    char msg[768], why[200];
    json_t *req, *rec = NULL;
    ct_error e;
    int deleted = 0;
    ct_err rc;

    /* 1. copy */
    if (!(req = put_request(s, &e)))
        return progress(r, ns, name, CT_MIGRATE_FAILED, e.message, err);
    rc = call(r, req, NULL, &e);
    ctp_json_free_wiped(req);
    if (fatal(r, rc))
        return ctp_err(err, rc, 0, "the bridge cannot be reached or does not serve the "
                       "migration: %s", e.message);
    if (rc == CT_E_CONFLICT)
        return progress(r, ns, name, CT_MIGRATE_SKIPPED, e.message, err);
    if (rc != CT_OK) {
        snprintf(msg, sizeof msg, "copy to the vault failed (%s): %s; the Secret is kept",
                 ct_err_name(rc), e.message);
        return progress(r, ns, name, CT_MIGRATE_FAILED, msg, err);
    }
    /* 2. read back and compare */
    req = json_pack("{s:s,s:s,s:s}", "op", "migrate.get", "namespace", ns, "name", name);
    rc = req ? call(r, req, &rec, &e) : ctp_err(&e, CT_E_NOMEM, ENOMEM, "out of memory");
    json_decref(req);
    if (rc != CT_OK) {
        ct_err fr = rc;
        snprintf(msg, sizeof msg, "read-back from the vault failed (%s): %s; the Secret is "
                 "kept", ct_err_name(rc), e.message);
        rc = progress(r, ns, name, CT_MIGRATE_FAILED, msg, err);
        if (rc == CT_OK && fatal(r, fr))
            rc = ctp_err(err, fr, 0, "the bridge stopped answering: %s", e.message);
        return rc;
    }
    if (!same(s, rec, why, sizeof why)) {
        ctp_json_free_wiped(rec);
        snprintf(msg, sizeof msg, "verification failed: %s; the Secret is kept", why);
        return progress(r, ns, name, CT_MIGRATE_FAILED, msg, err);
    }
    ctp_json_free_wiped(rec);
    /* 3. delete with preconditions */
    rc = ct_k8s_delete_secret(c, ns, name, ct_k8s_secret_uid(s),
                              ct_k8s_secret_resource_version(s), &deleted, &e);
    if (rc == CT_E_CONFLICT)
        return progress(r, ns, name, CT_MIGRATE_KEPT,
                        "changed during migration (uid or resourceVersion): kept in "
                        "Kubernetes; re-run to migrate the new version", err);
    if (rc != CT_OK && rc != CT_E_NOTFOUND) {
        snprintf(msg, sizeof msg, "copied and verified, but the delete failed (%s): %s",
                 ct_err_name(rc), e.message);
        return progress(r, ns, name, CT_MIGRATE_FAILED, msg, err);
    }
    /* 4. journal */
    rc = mark(r, ns, name, ct_k8s_secret_uid(s), CTP_MIGRATE_DELETED, NULL, &e);
    if (rc != CT_OK) {
        ct_err fr = rc;
        snprintf(msg, sizeof msg, "copied, verified and deleted from Kubernetes, but the vault "
                 "copy could not be marked deleted (%s): %s", ct_err_name(rc), e.message);
        rc = progress(r, ns, name, CT_MIGRATE_FAILED, msg, err);
        if (rc == CT_OK && fatal(r, fr))
            rc = ctp_err(err, fr, 0, "the bridge stopped answering: %s", e.message);
        return rc;
    }
    return progress(r, ns, name, CT_MIGRATE_MIGRATED,
                    deleted ? "" : "deletion pending (finalizers)", err);
}

static ct_err check_opts(const ct_migrate_run_options *o, ct_migrate_report **out,
                         ct_error *err)
{
    if (out)
        *out = NULL;
    if (!o || !out || !o->request)
        return ctp_err(err, CT_E_INVALID, 0, "migrate: NULL options, out or request function");
    if (o->version != CT_MIGRATE_RUN_OPTIONS_VERSION)
        return ctp_err(err, CT_E_VERSION, 0, "ct_migrate_run_options: unknown version %u",
                       o->version);
    return CT_OK;
}

/*
 * Completes the journal of an interrupted run: a copy still "copied" whose
 * Secret is gone from Kubernetes (or was replaced: another uid) was
 * verified and then deleted by a run killed before its mark: mark it
 * "deleted" now. A copy whose Secret is still there is left alone (it was
 * kept or failed, and is reported as such).
 */
static ct_err reconcile(run *r, ct_k8s_client *c, const ct_migrate_plan *plan, ct_error *err)
{
    const char *const *nss;
    size_t nn = ctp_migrate_plan_namespaces(plan, &nss), i, j;
    char *after = NULL;
    int more = 1;
    ct_err rc = CT_OK;

    while (more && rc == CT_OK) {
        json_t *req = json_pack("{s:s,s:s,s:i}", "op", "migrate.list", "state",
                                CTP_MIGRATE_COPIED, "limit", 1000), *ans = NULL, *recs, *x;
        ct_error e;
        if (req && after)
            json_object_set_new(req, "after", json_string(after));
        rc = req ? call(r, req, &ans, &e) : ctp_err(&e, CT_E_NOMEM, ENOMEM, "out of memory");
        json_decref(req);
        if (rc != CT_OK) {
            rc = ctp_err(err, rc, 0, "completing the journal: listing the copies failed: %s",
                         e.message);
            break;
        }
        recs = json_object_get(ans, "records");
        more = json_is_true(json_object_get(ans, "more"));
        free(after);
        after = json_string_value(json_object_get(ans, "last"))
                    ? ctp_strdup(json_string_value(json_object_get(ans, "last")))
                    : NULL;
        if (!after)
            more = 0;
        json_array_foreach(recs, i, x) {
            const char *ns = json_string_value(json_object_get(x, "namespace"));
            const char *name = json_string_value(json_object_get(x, "name"));
            const char *uid = json_string_value(json_object_get(x, "uid"));
            ct_k8s_secret *s = NULL;
            ct_err g;
            int in = 0;
            for (j = 0; j < nn; j++)
                in |= strcmp(nss[j], ns) == 0;
            if (!in)
                continue;
            g = ct_k8s_get_secret(c, ns, name, &s, &e);
            if (g == CT_OK && strcmp(ct_k8s_secret_uid(s), uid) == 0) {
                ct_k8s_secret_free(s);
                continue; /* still there: kept or failed, reported above */
            }
            ct_k8s_secret_free(s);
            if (g != CT_OK && g != CT_E_NOTFOUND)
                continue; /* unknown: leave it for the next run */
            r->rep->totals.total++;
            g = mark(r, ns, name, uid, CTP_MIGRATE_DELETED, NULL, &e);
            if (g == CT_OK)
                rc = progress(r, ns, name, CT_MIGRATE_MIGRATED,
                              "deleted by an interrupted run; journal completed", err);
            else if (fatal(r, g))
                rc = ctp_err(err, g, 0, "the bridge stopped answering: %s", e.message);
            if (rc != CT_OK)
                break;
        }
        json_decref(ans);
    }
    free(after);
    return rc;
}

ct_err ct_migrate_apply(ct_k8s_client *c, const ct_migrate_plan *plan,
                        const ct_migrate_run_options *opts, ct_migrate_report **out,
                        ct_error *err)
{
    run r = { .o = opts };
    size_t i, n;
    ct_err rc;

    if ((rc = check_opts(opts, out, err)) != CT_OK)
        return rc;
    if (!c || !plan)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_apply: NULL client or plan");
    n = ct_migrate_plan_count(plan);
    if (!(r.rep = ctp_migrate_report_new(n)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    for (i = 0; i < n && rc == CT_OK; i++) {
        const ct_k8s_secret *s = ct_migrate_plan_secret(plan, i);
        ct_migrate_reason why = ct_migrate_plan_reason(plan, i);
        if (why != CT_MIGRATE_GO)
            rc = progress(&r, ct_k8s_secret_namespace(s), ct_k8s_secret_name(s),
                          CT_MIGRATE_SKIPPED, ct_migrate_reason_text(why), err);
        else
            rc = migrate_one(&r, c, s, err);
    }
    if (rc == CT_OK)
        rc = reconcile(&r, c, plan, err);
    *out = r.rep;
    return rc;
}

/* ------------------------------------------------------------ restore */

static int ns_wanted(const ct_migrate_run_options *o, const char *ns)
{
    size_t i;
    if (!o->namespaces || !o->n_namespaces)
        return 1;
    for (i = 0; i < o->n_namespaces; i++)
        if (o->namespaces[i] && strcmp(o->namespaces[i], ns) == 0)
            return 1;
    return 0;
}

/* Recreates the Secret of one record. CT_OK after recording the outcome. */
static ct_err restore_one(run *r, ct_k8s_client *c, const char *key, ct_error *err)
{
    char msg[768];
    json_t *req, *rec = NULL, *data, *labels, *x;
    const char *ns, *name, *type, *uid, *k;
    const char **keys = NULL, **lab = NULL;
    ct_secret **vals = NULL;
    size_t n = 0, nl = 0, i;
    ct_k8s_secret *made = NULL;
    ct_error e;
    ct_err rc;

    req = json_pack("{s:s,s:s}", "op", "migrate.get", "key", key);
    rc = req ? call(r, req, &rec, &e) : ctp_err(&e, CT_E_NOMEM, ENOMEM, "out of memory");
    json_decref(req);
    if (fatal(r, rc))
        return ctp_err(err, rc, 0, "the bridge cannot be reached: %s", e.message);
    if (rc != CT_OK) {
        snprintf(msg, sizeof msg, "read from the vault failed (%s): %s", ct_err_name(rc),
                 e.message);
        return progress(r, "", key, CT_MIGRATE_FAILED, msg, err);
    }
    ns = json_string_value(json_object_get(rec, "namespace"));
    name = json_string_value(json_object_get(rec, "name"));
    type = json_string_value(json_object_get(rec, "type"));
    uid = json_string_value(json_object_get(rec, "uid"));
    data = json_object_get(rec, "data");
    labels = json_object_get(rec, "labels");
    if (!ns || !name || !type || !uid || !json_is_object(data)) {
        ctp_json_free_wiped(rec);
        return progress(r, "", key, CT_MIGRATE_FAILED, "not a migrated Secret record", err);
    }
    if (!ns_wanted(r->o, ns)) {
        ctp_json_free_wiped(rec);
        r->rep->totals.total--; /* not in this run's scope */
        return CT_OK;
    }
    n = json_object_size(data);
    nl = json_is_object(labels) ? json_object_size(labels) : 0;
    keys = calloc(n + 1, sizeof *keys);
    vals = calloc(n + 1, sizeof *vals);
    lab = calloc(2 * nl + 1, sizeof *lab);
    if (!keys || !vals || !lab) {
        rc = ctp_err(&e, CT_E_NOMEM, ENOMEM, "out of memory");
        goto done;
    }
    i = 0;
    json_object_foreach(data, k, x) {
        const char *b = json_string_value(x);
        size_t bl = json_string_length(x), got = 0, cap = ctp_b64_decoded_max(bl) + 1;
        if (!b || (rc = ct_secret_new(cap, &vals[i], &e)) != CT_OK ||
            ctp_b64_decode(b, bl, ct_secret_data(vals[i]), cap, &got, CTP_B64_STD) != 0) {
            rc = ctp_err(&e, CT_E_PROTO, 0, "the vault copy's value of %s is not base64", k);
            goto done;
        }
        (void)ct_secret_truncate(vals[i], got);
        keys[i++] = k;
    }
    i = 0;
    if (nl) {
        json_object_foreach(labels, k, x) {
            lab[i++] = k;
            lab[i++] = json_string_value(x) ? json_string_value(x) : "";
        }
    }
    rc = ct_k8s_create_secret(c, ns, name, type, lab, keys, (const ct_secret *const *)vals, n,
                              &made, &e);
done:
    if (rc == CT_E_CONFLICT)
        rc = progress(r, ns, name, CT_MIGRATE_EXISTS, "a Secret of that name exists in "
                      "Kubernetes: left alone", err);
    else if (rc != CT_OK) {
        snprintf(msg, sizeof msg, "restore failed (%s): %s", ct_err_name(rc), e.message);
        rc = progress(r, ns, name, CT_MIGRATE_FAILED, msg, err);
    } else {
        ct_err mr = mark(r, ns, name, uid, CTP_MIGRATE_RESTORED, made, &e);
        if (mr != CT_OK) {
            snprintf(msg, sizeof msg, "recreated, but the vault copy could not be marked "
                     "restored (%s): %s", ct_err_name(mr), e.message);
            rc = progress(r, ns, name, CT_MIGRATE_RESTORED, msg, err);
        } else {
            rc = progress(r, ns, name, CT_MIGRATE_RESTORED, "", err);
        }
    }
    ct_k8s_secret_free(made);
    for (i = 0; vals && i < n; i++)
        ct_secret_free(vals[i]);
    free(vals);
    free(keys);
    free(lab);
    ctp_json_free_wiped(rec);
    return rc;
}

ct_err ct_migrate_restore(ct_k8s_client *c, const ct_migrate_run_options *opts,
                          ct_migrate_report **out, ct_error *err)
{
    run r = { .o = opts };
    char *after = NULL;
    ct_err rc;
    int more = 1;

    if ((rc = check_opts(opts, out, err)) != CT_OK)
        return rc;
    if (!c)
        return ctp_err(err, CT_E_INVALID, 0, "ct_migrate_restore: NULL client");
    if (!(r.rep = ctp_migrate_report_new(0)))
        return ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
    while (more && rc == CT_OK) {
        json_t *req = json_pack("{s:s,s:i}", "op", "migrate.list", "limit", 500), *ans = NULL,
               *keys, *k;
        size_t i;
        ct_error e;
        if (req && after)
            json_object_set_new(req, "after", json_string(after));
        rc = req ? call(&r, req, &ans, &e) : ctp_err(&e, CT_E_NOMEM, ENOMEM, "out of memory");
        json_decref(req);
        if (rc != CT_OK) {
            rc = ctp_err(err, rc, 0, "listing the vault copies failed: %s", e.message);
            break;
        }
        keys = json_object_get(ans, "keys");
        more = json_is_true(json_object_get(ans, "more"));
        r.rep->totals.total += json_array_size(keys);
        json_array_foreach(keys, i, k) {
            const char *ks = json_string_value(k);
            if (!ks)
                continue;
            if ((rc = restore_one(&r, c, ks, err)) != CT_OK)
                break;
            free(after);
            if (!(after = ctp_strdup(ks))) {
                rc = ctp_err(err, CT_E_NOMEM, ENOMEM, "out of memory");
                break;
            }
        }
        if (!json_array_size(keys))
            more = 0;
        json_decref(ans);
    }
    free(after);
    *out = r.rep;
    return rc;
}
