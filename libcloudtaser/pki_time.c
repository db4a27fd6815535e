/*
 * pki_time.c - certificate times: ASN.1 UTCTime / GeneralizedTime <-> Unix
 * seconds (proleptic UTC), and the clock they are compared with.
 *
 * Validity periods are computed from, and checked against, the context's
 * wall clock (ct_ctx_wall_ms), never wolfSSL's view of the system clock.
 */
#include "pki_internal.h"

#include <stdio.h>
#include <string.h>

static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
#define CTP_TIME_MIN ((int64_t)-631152000)    /* 1950-01-01T00:00:00Z */
#define CTP_TIME_MAX ((int64_t)253402300799)  /* 9999-12-31T23:59:59Z */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Writes tag, length and value; returns the size or -1 when out of range. */
int ctp_pki_time_encode(int64_t t, uint8_t out[CTC_DATE_SIZE])
{
    char buf[20];
    int64_t days, secs, y;
    int m, d, n;

    if (t < CTP_TIME_MIN || t > CTP_TIME_MAX)
        return -1;
    days = floor_div(t, 86400);
    secs = t - days * 86400;
    civil_from_days(days, &y, &m, &d);
    if (y < 2050)
        n = snprintf(buf, sizeof buf, "%02d%02d%02d%02d%02d%02dZ", (int)(y % 100), m, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    else
        n = snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02dZ", (int)y, m, d,
                     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    if (n != 13 && n != 15)
        return -1;
    out[0] = y < 2050 ? 0x17 : 0x18;
    out[1] = (uint8_t)n;
    memcpy(out + 2, buf, (size_t)n);
    return n + 2;
}

static int digits(const uint8_t *p, int n, int *v)
{
    int i, x = 0;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return 0;
}

/* Parses a DER time (tag, length, value) in the RFC 5280 profile. */
static int time_decode(const uint8_t *p, int len, int64_t *t)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, s, off, n, leap;
    if (!p || len < 2 || p[1] + 2 != len)
        return -1;
    n = p[1];
    p += 2;
    if (n == 13 && p[-2] == 0x17) {
        if (digits(p, 2, &y) != 0)
            return -1;
        y += y < 50 ? 2000 : 1900;
        off = 2;
    } else if (n == 15 && p[-2] == 0x18) {
        if (digits(p, 4, &y) != 0)
            return -1;
        off = 4;
    } else {
        return -1;
    }
    if (p[n - 1] != 'Z' || digits(p + off, 2, &mo) || digits(p + off + 2, 2, &d) ||
        digits(p + off + 4, 2, &h) || digits(p + off + 6, 2, &mi) || digits(p + off + 8, 2, &s))
        return -1;
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
        mi > 59 || s > 59)
        return -1;
    *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}

/* "2035-01-02 03:04:05Z" for messages. */
const char *ctp_pki_time_str(int64_t t, char buf[32])
{
    int64_t days = floor_div(t, 86400), secs = t - days * 86400, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, 32, "%04lld-%02d-%02d %02d:%02d:%02dZ", (long long)y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
    return buf;
}

int64_t ctp_pki_wall_seconds(const ct_ctx *ctx)
{
    return floor_div(ct_ctx_wall_ms(ctx), 1000);
}

/* The validity period of a parsed certificate. 0 on success. */
int ctp_pki_dc_dates(const DecodedCert *dc, int64_t *not_before, int64_t *not_after)
{
    if (time_decode(dc->beforeDate, dc->beforeDateLen, not_before) != 0 ||
        time_decode(dc->afterDate, dc->afterDateLen, not_after) != 0)
        return -1;
    return 0;
}

