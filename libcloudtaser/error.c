/* error.c - error names, messages and the caller-owned error detail. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ct_strerror(ct_err e)
{
    switch (e) {
#define CTP_MSG_(name, val, msg) \
    case CT_##name:              \
        return msg;
        CT_ERROR_LIST(CTP_MSG_)
#undef CTP_MSG_
    default:
        return "unknown error";
    }
}

const char *ct_err_name(ct_err e)
{
    switch (e) {
#define CTP_NAME_(name, val, msg) \
    case CT_##name:               \
        return "CT_" #name;
        CT_ERROR_LIST(CTP_NAME_)
#undef CTP_NAME_
    default:
        return "CT_E_UNKNOWN";
    }
}

void ct_error_clear(ct_error *err)
{
    if (!err)
        return;
    err->code = CT_OK;
    err->os_error = 0;
    err->message[0] = '\0';
}

CTP_PRINTF(4, 0)
static void fill(ct_error *err, ct_err code, int32_t os_error, const char *fmt, va_list ap)
{
    err->code = code;
    err->os_error = os_error;
    if (fmt) {
        int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
        if (n < 0)
            snprintf(err->message, sizeof err->message, "%s", ct_strerror(code));
    } else {
        snprintf(err->message, sizeof err->message, "%s", ct_strerror(code));
    }
}

ct_err ctp_err(ct_error *err, ct_err code, int32_t os_error, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, os_error, fmt, ap);
        va_end(ap);
    }
    return code;
}

ct_err ctp_err_keep(ct_error *err, ct_err code, int32_t os_error, const char *fmt, ...)
{
    if (err && !(err->code == code && err->message[0] != '\0')) {
        va_list ap;
        va_start(ap, fmt);
        fill(err, code, os_error, fmt, ap);
        va_end(ap);
    }
    return code;
}

void ct_free(void *p)
{
    free(p);
}
