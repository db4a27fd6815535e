/*
 * fuzz_claim_record.c - clusters/<fp>/initialized, the one-time claim
 * (bootstrap_record.c, PROTOCOL.md 2.4), is read back from the store by
 * every bridge: a store another tool (or an attacker with write access to
 * one path) edited is hostile input. The decoder must never over-read or
 * crash, and whatever it accepts must be the record of the cluster it was
 * asked about and survive an encode/decode round trip unchanged; the
 * encoding is canonical (encoding the decoded copy gives the same text).
 * The replay-list helpers (prune, has_jti, add_jti) run on the result.
 *
 * The record code is internal (ctp_boot_record_*): meson links its object
 * and the error helpers into this program.
 */
#include "bootstrap_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seed corpus uses this fingerprint; anything else is refused. */
static const char FP[] = "3f9c2b1e-7d4a-4c8e-9b6f-1a2d3e4f5a6b";

static int same(const ctp_boot_record *a, const ctp_boot_record *b)
{
    size_t i;
    if (strcmp(a->fingerprint, b->fingerprint) != 0 || a->initialized_at != b->initialized_at ||
        a->updated_at != b->updated_at || strcmp(a->audience, b->audience) != 0 ||
        strcmp(a->issuer, b->issuer) != 0 || strcmp(a->subject, b->subject) != 0 ||
        a->reissues != b->reissues || a->n_jtis != b->n_jtis || !a->jwks != !b->jwks ||
        (a->jwks && strcmp(a->jwks, b->jwks) != 0))
        return 0;
    for (i = 0; i < a->n_jtis; i++)
        if (strcmp(a->jtis[i].id, b->jtis[i].id) != 0 || a->jtis[i].exp != b->jtis[i].exp)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctp_boot_record *r = NULL, *again = NULL;
    char *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0, i;

    if (ctp_boot_record_decode("clusters/x/initialized", FP, data, size, &r, NULL) != CT_OK) {
        if (r)
            abort(); /* a refusal hands nothing out */
        return 0;
    }
    if (strcmp(r->fingerprint, FP) != 0 || r->n_jtis > CTP_BOOT_MAX_JTIS ||
        (r->jwks && (!r->issuer[0] || !r->subject[0])))
        abort();
    for (i = 0; i < r->n_jtis; i++)
        if (!r->jtis[i].id[0] || !ctp_boot_record_has_jti(r, r->jtis[i].id))
            abort();
    if (ctp_boot_record_encode(r, &enc, &len, NULL) != CT_OK)
        abort(); /* everything the decoder accepts can be written back */
    if (len != strlen(enc) ||
        ctp_boot_record_decode("k", FP, (const uint8_t *)enc, len, &again, NULL) != CT_OK ||
        !same(r, again) || ctp_boot_record_encode(again, &enc2, &len2, NULL) != CT_OK ||
        len2 != len || memcmp(enc, enc2, len) != 0)
        abort();
    /* the replay list: pruning keeps only entries still in their window */
    ctp_boot_record_prune(again, 1700000000);
    for (i = 0; i < again->n_jtis; i++)
        if (again->jtis[i].exp < 1700000000 - (int64_t)CTP_BOOT_LEEWAY_S)
            abort();
    if (ctp_boot_record_add_jti(again, "fuzz-jti", 1) == 0 &&
        !ctp_boot_record_has_jti(again, "fuzz-jti"))
        abort();
    ct_free(enc);
    ct_free(enc2);
    ctp_boot_record_free(r);
    ctp_boot_record_free(again);
    return 0;
}
