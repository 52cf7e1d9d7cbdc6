/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for io/socket-address: SocketAddress's tables in the flat and
 * the legacy layout, embedded in an outer struct the way commands use them,
 * with qemu-storage-daemon 7.2's error texts for the same inputs.
 */
#include <glib.h>
#include <string.h>

#include "io/socket-address.h"
#include "util/keyval.h"

#include "util/json.h"

/* A command that holds an address, not at the start of its struct. */
typedef struct {
    char *name;
    bool has_name;
    BerthSocketAddressArgs addr;
} Cmd;

static json_object *parse(const char *text)
{
    json_object *obj = json_tokener_parse(text);

    g_assert_nonnull(obj);
    return obj;
}

/* Cmd's table, with the address table of `type` in the given layout. */
#define CMD_MEMBERS(TYPE, LEGACY) { \
        ARG_OPTIONAL("name", ARG_STR, Cmd, name, has_name), \
        ARG_NESTED_AT("addr", berth_socket_address_table((TYPE), (LEGACY)), Cmd, addr), \
        ARG_TABLE_END, \
    }

/* Decode `text` with its address under "addr" (flat or legacy, as asked). */
static bool decode(const char *text, bool legacy, bool keyval, Cmd *out, GError **errp)
{
    g_autoptr(json_object) args = parse(text);
    int type = berth_socket_address_args_type(args, "addr.type", errp);

    if (type < 0) {
        return false;
    }
    const ArgSpec members[] = CMD_MEMBERS((BerthAddrType) type, legacy);
    const ArgSpec *const tables[] = { members, NULL };
    return argspec_decode(tables, args, keyval, out, errp);
}

static void cmd_clear(Cmd *c, bool legacy)
{
    const ArgSpec members[] = CMD_MEMBERS((BerthAddrType) c->addr.type, legacy);
    const ArgSpec *const tables[] = { members, NULL };

    argspec_clear(tables, c);
    g_assert_null(c->name);
    g_assert_null(c->addr.un.path);
    g_assert_null(c->addr.inet.host);
    g_assert_null(c->addr.inet.port);
    g_assert_null(c->addr.inet.to);
    g_assert_null(c->addr.fd.str);
    g_assert_false(c->addr.un.has_tight || c->addr.inet.has_ipv4 || c->addr.inet.has_to);
}

static void check_error(const char *text, bool legacy, bool keyval, const char *expected)
{
    Cmd c = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_false(decode(text, legacy, keyval, &c, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, expected);
    g_assert_null(c.addr.un.path);
    g_assert_null(c.addr.inet.host);
    g_assert_null(c.name);
}

static void test_flat(void)
{
    Cmd c = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode("{\"name\":\"n\",\"addr\":{\"type\":\"unix\",\"path\":\"/s\","
                         "\"tight\":false}}", false, false, &c, &err));
    g_assert_no_error(err);
    g_assert_cmpint(c.addr.type, ==, BERTH_ADDR_UNIX);
    g_assert_cmpstr(c.addr.un.path, ==, "/s");
    g_assert_true(c.addr.un.has_tight && !c.addr.un.tight);
    g_assert_false(c.addr.un.has_abstract);
    g_assert_cmpstr(c.name, ==, "n");
    BerthSocketAddress view = berth_socket_address_args_view(&c.addr);
    g_assert_cmpint(view.type, ==, BERTH_ADDR_UNIX);
    g_assert_true(view.path == c.addr.un.path);
    g_assert_null(view.host);
    cmd_clear(&c, false);

    g_assert_true(decode("{\"addr\":{\"type\":\"inet\",\"host\":\"::1\",\"port\":\"10809\","
                         "\"numeric\":true,\"to\":\"10810\",\"ipv4\":false,\"ipv6\":true,"
                         "\"keep-alive\":false}}", false, false, &c, &err));
    g_assert_no_error(err);
    g_assert_cmpint(c.addr.type, ==, BERTH_ADDR_INET);
    g_assert_cmpstr(c.addr.inet.host, ==, "::1");
    g_assert_cmpstr(c.addr.inet.port, ==, "10809");
    g_assert_cmpstr(c.addr.inet.to, ==, "10810");
    g_assert_true(c.addr.inet.has_numeric && c.addr.inet.numeric);
    g_assert_true(c.addr.inet.has_ipv4 && !c.addr.inet.ipv4);
    g_assert_true(c.addr.inet.has_ipv6 && c.addr.inet.ipv6);
    g_assert_true(c.addr.inet.has_keep_alive && !c.addr.inet.keep_alive);
    view = berth_socket_address_args_view(&c.addr);
    g_assert_cmpstr(view.host, ==, "::1");
    g_assert_cmpstr(view.port, ==, "10809");
    g_assert_null(view.path);
    cmd_clear(&c, false);

    g_assert_true(decode("{\"addr\":{\"type\":\"fd\",\"str\":\"3\"}}", false, false, &c, &err));
    g_assert_cmpint(c.addr.type, ==, BERTH_ADDR_FD);
    view = berth_socket_address_args_view(&c.addr);
    g_assert_cmpint(view.type, ==, BERTH_ADDR_FD);
    g_assert_cmpstr(view.fd, ==, "3");
    cmd_clear(&c, false);
}

static void test_legacy(void)
{
    Cmd c = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode("{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"h\","
                         "\"port\":\"1\"}}}", true, false, &c, &err));
    g_assert_no_error(err);
    g_assert_cmpint(c.addr.type, ==, BERTH_ADDR_INET);
    g_assert_cmpstr(c.addr.inet.host, ==, "h");
    g_assert_cmpstr(c.addr.inet.port, ==, "1");
    cmd_clear(&c, true);

    g_assert_true(decode("{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"/p\","
                         "\"abstract\":true}}}", true, false, &c, &err));
    g_assert_cmpstr(c.addr.un.path, ==, "/p");
    g_assert_true(c.addr.un.has_abstract && c.addr.un.abstract);
    cmd_clear(&c, true);
}

static void test_errors(void)
{
    check_error("{}", false, false, "Parameter 'addr' is missing");
    check_error("{\"addr\":{}}", false, false, "Parameter 'addr.type' is missing");
    check_error("{\"addr\":{\"type\":\"vsock\",\"cid\":\"2\",\"port\":\"1\"}}", false, false,
                "Parameter 'addr.type' does not accept value 'vsock'");
    check_error("{\"addr\":{\"type\":5}}", false, false,
                "Invalid parameter type for 'addr.type', expected: string");
    check_error("{\"addr\":{\"type\":\"unix\"}}", false, false,
                "Parameter 'addr.path' is missing");
    check_error("{\"addr\":{\"type\":\"unix\",\"path\":\"p\",\"host\":\"h\"}}", false, false,
                "Parameter 'addr.host' is unexpected");
    check_error("{\"addr\":{\"type\":\"inet\",\"host\":\"h\"}}", false, false,
                "Parameter 'addr.port' is missing");
    check_error("{\"addr\":{\"type\":\"inet\",\"host\":\"h\",\"port\":1}}", false, false,
                "Invalid parameter type for 'addr.port', expected: string");
    check_error("{\"addr\":{\"type\":\"fd\"}}", false, false, "Parameter 'addr.str' is missing");
    /* A flat address is not a legacy one, and the other way round. */
    check_error("{\"addr\":{\"type\":\"unix\",\"path\":\"p\"}}", true, false,
                "Parameter 'addr.data' is missing");
    check_error("{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"p\"}}}", false, false,
                "Parameter 'addr.path' is missing");
    check_error("{\"addr\":{\"type\":\"unix\",\"data\":5}}", true, false,
                "Invalid parameter type for 'addr.data', expected: object");
    check_error("{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"p\",\"x\":1}}}", true, false,
                "Parameter 'addr.data.x' is unexpected");
    check_error("{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"h\"}}}", true, false,
                "Parameter 'addr.data.port' is missing");
    /* keyval strings */
    check_error("{\"addr\":{\"type\":\"unix\",\"path\":\"p\",\"tight\":\"maybe\"}}", false, true,
                "Parameter 'addr.tight' expects 'on' or 'off'");
    check_error("{\"addr\":{\"type\":\"inet\",\"host\":\"h\",\"port\":\"1\",\"ipv4\":\"x\"}}",
                false, true, "Parameter 'addr.ipv4' expects 'on' or 'off'");
}

static void test_keyval(void)
{
    Cmd c = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) args = keyval_parse(
        "addr.type=inet,addr.host=127.0.0.1,addr.port=0,addr.keep-alive=on", NULL, &err);

    g_assert_no_error(err);
    g_assert_true(decode(json_object_to_json_string(args), false, true, &c, &err));
    g_assert_no_error(err);
    g_assert_true(c.addr.inet.has_keep_alive && c.addr.inet.keep_alive);
    g_assert_cmpstr(berth_socket_address_args_unsupported(&c.addr), ==, "keep-alive");
    cmd_clear(&c, false);
}

static void test_unsupported(void)
{
    BerthSocketAddressArgs a = { .type = BERTH_ADDR_INET };

    g_assert_null(berth_socket_address_args_unsupported(&a));
    /* numeric and keep-alive only when on; the others when given at all */
    a.inet.has_numeric = a.inet.has_keep_alive = true;
    g_assert_null(berth_socket_address_args_unsupported(&a));
    a.inet.keep_alive = true;
    g_assert_cmpstr(berth_socket_address_args_unsupported(&a), ==, "keep-alive");
    a.inet.numeric = true;
    g_assert_cmpstr(berth_socket_address_args_unsupported(&a), ==, "numeric");
    a.inet.has_ipv6 = true;
    g_assert_cmpstr(berth_socket_address_args_unsupported(&a), ==, "ipv6");
    a.inet.has_ipv4 = true;
    g_assert_cmpstr(berth_socket_address_args_unsupported(&a), ==, "ipv4");
    a.inet.has_to = true;
    g_assert_cmpstr(berth_socket_address_args_unsupported(&a), ==, "to");
    /* unix members are all implemented (abstract=on is the caller's) */
    BerthSocketAddressArgs u = { .type = BERTH_ADDR_UNIX, .un.has_abstract = true,
                                 .un.abstract = true, .un.has_tight = true };
    g_assert_null(berth_socket_address_args_unsupported(&u));
}

static void test_tables(void)
{
    g_assert_true(berth_socket_address_table(BERTH_ADDR_UNIX, false) ==
                  berth_socket_address_flat_unix);
    g_assert_true(berth_socket_address_table(BERTH_ADDR_INET, true) ==
                  berth_socket_address_legacy_inet);
    g_assert_true(berth_socket_address_table(BERTH_ADDR_FD, true) ==
                  berth_socket_address_legacy_fd);
    g_assert_cmpstr(berth_socket_address_types[BERTH_ADDR_INET], ==, "inet");
    g_assert_null(berth_socket_address_types[3]);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/io/socket-address/flat", test_flat);
    g_test_add_func("/io/socket-address/legacy", test_legacy);
    g_test_add_func("/io/socket-address/errors", test_errors);
    g_test_add_func("/io/socket-address/keyval", test_keyval);
    g_test_add_func("/io/socket-address/unsupported", test_unsupported);
    g_test_add_func("/io/socket-address/tables", test_tables);
    return g_test_run();
}
