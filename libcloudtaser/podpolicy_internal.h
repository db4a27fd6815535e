/*
 * podpolicy_internal.h - private helpers of the pod policy (podpolicy.c)
 * for the embedded Vault handler (embedded_vault.c).
 */
#ifndef CTP_PODPOLICY_INTERNAL_H
#define CTP_PODPOLICY_INTERNAL_H

#include "cloudtaser/podpolicy.h"

/* The policy's "audience", or NULL (then: the pinned issuer). */
const char *ctp_pod_policy_audience(const ct_pod_policy *p);
/* The policy's "migrated_mount" (migrated Kubernetes Secrets), or NULL. */
const char *ctp_pod_policy_migrated_mount(const ct_pod_policy *p);
/* 1 if some rule (for cluster fp) accepts logins with this role name. */
int ctp_pod_policy_role_known(const ct_pod_policy *p, const char *fp, const char *role);
/*
 * Counts the rules that match the pod and appends their names (or
 * "<namespace>/<service account>") to `json_array` (a jansson array; may
 * be NULL).
 */
size_t ctp_pod_policy_names(const ct_pod_policy *p, const char *fp, const char *ns,
                            const char *sa, const char *role, void *json_array);

#endif
