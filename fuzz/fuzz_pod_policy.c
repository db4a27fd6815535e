/*
 * fuzz_pod_policy.c - the bridge's pod policy file (podpolicy.h) is
 * operator-written configuration, but a bad file must be an error, never a
 * crash. Feeds arbitrary bytes to ct_pod_policy_parse; for a policy that
 * parses, asks ct_pod_policy_allows a few questions, including paths that
 * try to climb out of a prefix (which must never be allowed).
 */
#include <cloudtaser/cloudtaser.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = { "secret/data/team-a/app/db", "secret/metadata/team-a/",
                                         "secret/metadata/team-a", "a", "a/b/c/" };
    static const char *const climbs[] = { "secret/data/team-a/../team-b/x", "a/./b", "a//b",
                                          "/a", "../a" };
    ct_pod_policy *p = NULL;
    ct_error err;
    size_t i;

    if (ct_pod_policy_parse((const char *)data, size, "fuzz.json", &p, &err) != CT_OK) {
        if (p || !memchr(err.message, 0, sizeof err.message))
            abort();
        return 0;
    }
    if (ct_pod_policy_rule_count(p) > CT_POD_POLICY_MAX_RULES)
        abort();
    for (i = 0; i < sizeof paths / sizeof *paths; i++) {
        (void)ct_pod_policy_allows(p, NULL, "team-a", "app", "app", "read", paths[i]);
        (void)ct_pod_policy_allows(p, "0ad50c05-1153-4508-9237-4cb2912e2c23", "a", "b", NULL,
                                   "list", paths[i]);
    }
    for (i = 0; i < sizeof climbs / sizeof *climbs; i++)
        if (ct_pod_policy_allows(p, NULL, "team-a", "app", "app", "read", climbs[i]) ||
            ct_pod_policy_allows(p, NULL, "a", "b", "r", "list", climbs[i]))
            abort(); /* a path with an empty, "." or ".." segment was allowed */
    ct_pod_policy_free(p);
    return 0;
}
