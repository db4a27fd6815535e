/*
 * ct_bench_http.c - a small HTTPS load generator for Vault-API reads
 * (libcurl; bench/broker.sh drives it against the broker and directly
 * against the fake Vault in the same run).
 *
 * Usage: ct-bench-http URL TOKEN CAFILE [--n N] [--conns C] [--seconds S]
 *   latency:    N sequential GETs on one kept-alive connection: p50, p90,
 *               p99 (ms);
 *   throughput: C connections, each with one request in flight at a time,
 *               for S seconds (libcurl multi): reads/s.
 * Every answer must be 200, otherwise it exits 1. Prints one line:
 *   p50_ms P p90_ms P p99_ms P n N reads_per_s R conns C errors E
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static size_t sink(char *p, size_t sz, size_t nm, void *u)
{
    (void)p;
    (void)u;
    return sz * nm;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static CURL *mk(const char *url, const char *ca, struct curl_slist *h)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

int main(int argc, char **argv)
{
    const char *url, *tok, *ca;
    int n = 2000, conns = 64, secs = 5, i, errors = 0;
    long done = 0;
    char th[512];
    struct curl_slist *h = NULL;
    double *lat, t0, end;
    CURL *c, **hs;
    CURLM *m;

    if (argc < 4) {
        fprintf(stderr, "usage: ct-bench-http URL TOKEN CAFILE [--n N] [--conns C] "
                        "[--seconds S]\n");
        return 2;
    }
    url = argv[1];
    tok = argv[2];
    ca = argv[3];
    for (i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            secs = atoi(argv[i + 1]);
    }
    if (n < 10 || conns < 1 || conns > 4096 || secs < 1)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(th, sizeof th, "X-Vault-Token: %s", tok);
    h = curl_slist_append(h, th);

    /* latency: sequential on one connection (first request warms it up) */
    lat = calloc((size_t)n, sizeof *lat);
    c = mk(url, ca, h);
    for (i = -1; i < n; i++) {
        long code = 0;
        double t = now_ms();
        if (curl_easy_perform(c) != CURLE_OK ||
            (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code), code != 200)) {
            fprintf(stderr, "ct-bench-http: request failed (status %ld)\n", code);
            return 1;
        }
        if (i >= 0)
            lat[i] = now_ms() - t;
    }
    curl_easy_cleanup(c);
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);

    /* throughput: conns connections, one request in flight each */
    m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conns);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)conns);
    hs = calloc((size_t)conns, sizeof *hs);
    for (i = 0; i < conns; i++) {
        hs[i] = mk(url, ca, h);
        curl_multi_add_handle(m, hs[i]);
    }
    t0 = now_ms();
    end = t0 + secs * 1000.0;
    for (;;) {
        int running = 0, q;
        CURLMsg *msg;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &q))) {
            long code = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK || code != 200)
                errors++;
            else
                done++;
            curl_multi_remove_handle(m, msg->easy_handle);
            if (now_ms() < end)
                curl_multi_add_handle(m, msg->easy_handle);
        }
        if (running == 0 && now_ms() >= end)
            break;
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    end = now_ms();
    printf("p50_ms %.3f p90_ms %.3f p99_ms %.3f n %d reads_per_s %.0f conns %d errors %d\n",
           lat[n / 2], lat[(int)(n * 0.9)], lat[(int)(n * 0.99)], n,
           (double)done * 1000.0 / (end - t0), conns, errors);
    for (i = 0; i < conns; i++)
        curl_easy_cleanup(hs[i]);
    free(hs);
    free(lat);
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
