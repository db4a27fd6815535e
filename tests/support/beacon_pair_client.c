/*
 * beacon_pair_client.c - one peer of a beacon pairing, for the shell tests
 * of cloudtaser-beacon: ct_beacon_connect (verifying the beacon by pin or
 * CA), then sends one line to the partner and reads the partner's line.
 *
 *   beacon_pair_client --port P (--pin HEX | --ca FILE) --role operator|bridge
 *       --room-name NAME --send TEXT [--host ADDR] [--server-name NAME]
 *       [--connect-timeout MS] [--pair-timeout MS] [--hold MS]
 *
 * The room is SHA-256(NAME). Prints "got TEXT" for the partner's line, then
 * either ends its direction with close_notify and waits for the partner's
 * end ("closed"), or with --hold waits up to MS for the connection to end
 * whichever way (the beacon draining or stopping) and prints "ended NAME".
 * Exit: 0 ok, 2 usage, 3 the beacon failed verification (CT_E_CERT),
 * 4 refused by the beacon (prints the status), 5 timeout, 1 anything else.
 */
#include <cloudtaser/cloudtaser.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_pin(const char *s, uint8_t pin[32])
{
    if (strlen(s) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        pin[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int fail(ct_err rc, const ct_error *err, const char *what)
{
    fprintf(stderr, "error %s: %s: %s (os_error %d)\n", ct_err_name(rc), what, err->message,
            (int)err->os_error);
    if (rc == CT_E_CERT)
        return 3;
    if (rc == CT_E_REFUSED) {
        /* a beacon status byte, or the TCP connection itself (errno) */
        if (err->os_error >= CT_BEACON_BAD_HELLO && err->os_error <= CT_BEACON_BAD_VERSION)
            printf("refused %s\n", ct_beacon_status_name(err->os_error));
        else
            printf("refused tcp\n");
        return 4;
    }
    if (rc == CT_E_TIMEOUT)
        return 5;
    return 1;
}

int main(int argc, char **argv)
{
    ct_beacon_options bo = CT_BEACON_OPTIONS_INIT;
    const char *role_s = NULL, *room_name = NULL, *send = NULL;
    int hold_ms = -1, status = 1;
    uint8_t pin[32], room[32];
    char line[1024], msg[1100];
    size_t have = 0;
    ct_ctx *ctx = NULL;
    ct_conn *c = NULL;
    ct_error err;
    ct_err rc;
    ct_beacon_role role;

    bo.host = "127.0.0.1";
    bo.connect_timeout_ms = 5000;
    bo.pair_timeout_ms = 10000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            goto usage;
        i++;
        if (!strcmp(a, "--port"))
            bo.port = (uint16_t)atoi(v);
        else if (!strcmp(a, "--host"))
            bo.host = v;
        else if (!strcmp(a, "--pin")) {
            if (parse_pin(v, pin) != 0)
                goto usage;
            bo.pin_sha256 = pin;
        } else if (!strcmp(a, "--ca"))
            bo.ca_file = v;
        else if (!strcmp(a, "--server-name"))
            bo.server_name = v;
        else if (!strcmp(a, "--role"))
            role_s = v;
        else if (!strcmp(a, "--room-name"))
            room_name = v;
        else if (!strcmp(a, "--send"))
            send = v;
        else if (!strcmp(a, "--connect-timeout"))
            bo.connect_timeout_ms = atoi(v);
        else if (!strcmp(a, "--pair-timeout"))
            bo.pair_timeout_ms = atoi(v);
        else if (!strcmp(a, "--hold"))
            hold_ms = atoi(v);
        else
            goto usage;
    }
    if (!bo.port || !role_s || !room_name || !send || strlen(send) > 512 ||
        (!bo.pin_sha256 && !bo.ca_file))
        goto usage;
    if (!strcmp(role_s, "operator"))
        role = CT_ROLE_OPERATOR;
    else if (!strcmp(role_s, "bridge"))
        role = CT_ROLE_BRIDGE;
    else
        goto usage;
    ct_sha256(room_name, strlen(room_name), room);

    ct_error_clear(&err);
    if ((rc = ct_ctx_new(NULL, &ctx, &err)) != CT_OK) {
        status = fail(rc, &err, "context");
        goto out;
    }
    if ((rc = ct_beacon_connect(ctx, &bo, role, room, &c, &err)) != CT_OK) {
        status = fail(rc, &err, "ct_beacon_connect");
        goto out;
    }
    printf("paired\n");
    fflush(stdout);
    snprintf(msg, sizeof msg, "%s\n", send);
    if ((rc = ct_conn_send_all(c, msg, strlen(msg), NULL, 5000, &err)) != CT_OK) {
        status = fail(rc, &err, "send");
        goto out;
    }
    while (!memchr(line, '\n', have)) {
        size_t got = 0;
        if (have == sizeof line) {
            fprintf(stderr, "error: no newline in %zu bytes\n", have);
            goto out;
        }
        if ((rc = ct_conn_recv(c, line + have, sizeof line - have, &got, 5000, &err)) != CT_OK) {
            status = fail(rc, &err, "recv");
            goto out;
        }
        have += got;
    }
    *(char *)memchr(line, '\n', have) = '\0';
    printf("got %s\n", line);
    fflush(stdout);
    if (hold_ms >= 0) {
        uint8_t b;
        size_t got = 0;
        rc = ct_conn_recv(c, &b, 1, &got, hold_ms, &err);
        printf("ended %s\n", rc == CT_OK ? "data" : ct_err_name(rc));
        status = 0;
        goto out;
    }
    if ((rc = ct_conn_shutdown_write(c, 5000, &err)) != CT_OK) {
        status = fail(rc, &err, "shutdown_write");
        goto out;
    }
    {
        uint8_t b;
        size_t got = 0;
        rc = ct_conn_recv(c, &b, 1, &got, 5000, &err);
        if (rc != CT_E_CLOSED) {
            status = fail(rc == CT_OK ? CT_E_PROTO : rc, &err, "waiting for the partner's end");
            goto out;
        }
    }
    printf("closed\n");
    status = 0;
out:
    ct_conn_free(c);
    ct_ctx_free(ctx);
    ct_thread_cleanup();
    return status;
usage:
    fprintf(stderr, "usage: %s --port P (--pin HEX | --ca FILE) --role operator|bridge "
                    "--room-name NAME --send TEXT [--host ADDR] [--server-name NAME] "
                    "[--connect-timeout MS] [--pair-timeout MS] [--hold MS]\n",
            argv[0]);
    return 2;
}
