/*
 * fixture.h - a tiny library in several versions (FX_VARIANT), for
 * tests/abi/test_abi_check.sh: proves that scripts/abi-check.sh passes
 * compatible changes and fails incompatible ones.
 *   0 baseline
 *   1 compatible: a function added, a member appended to the versioned option
 *     struct, an enumerator appended, the opaque type's hidden layout changed
 *   2 a function removed
 *   3 a parameter type changed (size_t -> uint32_t)
 *   4 a member inserted in the middle of the option struct
 *   5 a member appended to a plain public struct (no version field)
 *   6 an enumerator renumbered
 */
#ifndef FIXTURE_H
#define FIXTURE_H
#include <stddef.h>
#include <stdint.h>

#define CT_API __attribute__((visibility("default")))

typedef struct ct_fx ct_fx;

typedef enum ct_fx_kind {
    CT_FX_A = 0,
#if FX_VARIANT == 6
    CT_FX_B = 7,
#else
    CT_FX_B = 1,
#endif
#if FX_VARIANT == 1
    CT_FX_C = 2,
#endif
    CT_FX_FORCE_INT32_ = 0x7fffffff
} ct_fx_kind;

typedef struct ct_fx_options {
    uint32_t version;
    int a;
#if FX_VARIANT == 4
    int inserted;
#endif
    int b;
#if FX_VARIANT == 1
    int appended;
#endif
} ct_fx_options;

typedef struct ct_fx_result {
    int x;
#if FX_VARIANT == 5
    int y;
#endif
} ct_fx_result;

CT_API int ct_fx_new(const ct_fx_options *o, ct_fx **out);
CT_API ct_fx_kind ct_fx_kind_of(const ct_fx *f);
CT_API int ct_fx_result_get(const ct_fx *f, ct_fx_result *out);
#if FX_VARIANT == 3
CT_API int ct_fx_len(const char *s, uint32_t n);
#else
CT_API int ct_fx_len(const char *s, size_t n);
#endif
#if FX_VARIANT != 2
CT_API void ct_fx_free(ct_fx *f);
#endif
#if FX_VARIANT == 1
CT_API int ct_fx_added(int v);
#endif
#endif
