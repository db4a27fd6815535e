/*
 * relay_proto.c - the beacon wire format (docs/PROTOCOL.md 1.2, 1.3): the
 * 40-byte hello and the one-byte status names.
 */
#include "internal.h"

#include <string.h>

static const uint8_t hello_magic[4] = {0x43, 0x54, 0x42, 0x4E}; /* "CTBN" */

ct_err ct_beacon_hello_encode(ct_beacon_role role, const uint8_t room[32],
                              uint8_t out[CT_BEACON_HELLO_LEN])
{
    if (!room || !out)
        return CT_E_INVALID;
    if (role != CT_ROLE_OPERATOR && role != CT_ROLE_BRIDGE)
        return CT_E_INVALID;
    memcpy(out, hello_magic, 4);
    out[4] = CT_BEACON_VERSION;
    out[5] = (uint8_t)role;
    out[6] = 0;
    out[7] = 0;
    memcpy(out + 8, room, 32);
    return CT_OK;
}

ct_err ct_beacon_hello_decode(const uint8_t *in, size_t len, ct_beacon_role *role,
                              uint8_t room[32], ct_beacon_status *status)
{
    ct_beacon_status st = CT_BEACON_BAD_HELLO;
    ct_err rc = CT_E_PROTO;

    if (!in || !role || !room) {
        rc = CT_E_INVALID;
        goto out;
    }
    /* Order matters: the magic says "this is a hello at all", the version
     * says how to read the rest, so a future version may redefine role and
     * flags without a version-1 beacon calling it malformed. */
    if (len != CT_BEACON_HELLO_LEN || memcmp(in, hello_magic, 4) != 0)
        goto out;
    if (in[4] != CT_BEACON_VERSION) {
        st = CT_BEACON_BAD_VERSION;
        rc = CT_E_VERSION;
        goto out;
    }
    if (in[5] != CT_ROLE_OPERATOR && in[5] != CT_ROLE_BRIDGE)
        goto out;
    if (in[6] != 0 || in[7] != 0)
        goto out;
    *role = (ct_beacon_role)in[5];
    memcpy(room, in + 8, 32);
    st = CT_BEACON_WAITING;
    rc = CT_OK;
out:
    if (status)
        *status = st;
    return rc;
}

const char *ct_beacon_status_name(int status)
{
    switch (status) {
    case CT_BEACON_WAITING:
        return "WAITING";
    case CT_BEACON_PAIRED:
        return "PAIRED";
    case CT_BEACON_BAD_HELLO:
        return "BAD_HELLO";
    case CT_BEACON_ROOM_BUSY:
        return "ROOM_BUSY";
    case CT_BEACON_RATE_LIMITED:
        return "RATE_LIMITED";
    case CT_BEACON_DRAINING:
        return "DRAINING";
    case CT_BEACON_TIMEOUT:
        return "TIMEOUT";
    case CT_BEACON_OVERLOADED:
        return "OVERLOADED";
    case CT_BEACON_BAD_VERSION:
        return "VERSION";
    default:
        return "UNKNOWN";
    }
}
