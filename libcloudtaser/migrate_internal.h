/*
 * migrate_internal.h - private parts of the Secret migration (migrate.h).
 */
#ifndef CTP_MIGRATE_INTERNAL_H
#define CTP_MIGRATE_INTERNAL_H

#include "internal.h"

struct report_item {
    char *ns, *name, *msg;
    ct_migrate_outcome outcome;
};

struct ct_migrate_report {
    struct report_item *items;
    size_t n, cap;
    ct_migrate_progress totals;
    int64_t start_ms;
};

/* A new empty report for `total` Secrets; NULL on allocation failure. */
ct_migrate_report *ctp_migrate_report_new(size_t total);
/* Appends an item and updates the totals. Errors: CT_E_NOMEM. */
ct_err ctp_migrate_report_add(ct_migrate_report *r, const char *ns, const char *name,
                              ct_migrate_outcome o, const char *msg, ct_error *err);

/* The namespaces of the plan's scope (borrowed); returns their number. */
size_t ctp_migrate_plan_namespaces(const ct_migrate_plan *p, const char *const **out);

/* Record states. */
#define CTP_MIGRATE_COPIED "copied"
#define CTP_MIGRATE_DELETED "deleted"
#define CTP_MIGRATE_RESTORED "restored"

#endif
