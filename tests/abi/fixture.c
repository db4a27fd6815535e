/* fixture.c - see include/fixture.h */
#include "fixture.h"
#include <stdlib.h>
#include <string.h>

struct ct_fx {
    ct_fx_kind kind;
    int a, b;
#if FX_VARIANT == 1
    char hidden_more[32];
#endif
};

int ct_fx_new(const ct_fx_options *o, ct_fx **out)
{
    ct_fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->kind = CT_FX_B;
    f->a = o ? o->a : 0;
    f->b = o ? o->b : 0;
    *out = f;
    return 0;
}

ct_fx_kind ct_fx_kind_of(const ct_fx *f) { return f->kind; }

int ct_fx_result_get(const ct_fx *f, ct_fx_result *out)
{
    memset(out, 0, sizeof *out);
    out->x = f->a + f->b;
    return 0;
}

#if FX_VARIANT == 3
int ct_fx_len(const char *s, uint32_t n)
#else
int ct_fx_len(const char *s, size_t n)
#endif
{
    size_t i = 0;
    while (i < n && s[i])
        i++;
    return (int)i;
}

#if FX_VARIANT != 2
void ct_fx_free(ct_fx *f) { free(f); }
#endif

#if FX_VARIANT == 1
int ct_fx_added(int v) { return v + 1; }
#endif
