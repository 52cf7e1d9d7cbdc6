/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for util/argspec's nested objects: an ARG_OBJECT member decodes
 * into the sub-struct at its offset with the nested table's own offsets, so
 * one table (an address, say) is reused inside different outer structs and
 * at different depths. Errors keep QEMU's dotted names ('server.addr.port'),
 * keyval strings convert inside nested objects as at the top, and a failed
 * or cleared decode leaves nothing behind at any depth. Also: one object
 * decoded against several tables that each fill a struct of their own
 * (argspec_decode_targets), as blockdev-add does with the common members
 * and the driver's.
 */
#include <glib.h>
#include <string.h>

#include "berth/util/argspec.h"
#include "util/keyval.h"

#include "util/json.h"

/* The reusable part: an address, decoded by one table into its own struct. */
typedef struct {
    char *host;
    char *port;
    bool has_port;
    bool ipv4, has_ipv4;
    uint64_t timeout;
    bool has_timeout;
} Addr;

static const ArgSpec addr_members[] = {
    ARG_REQUIRED("host", ARG_STR, Addr, host),
    ARG_OPTIONAL("port", ARG_STR, Addr, port, has_port),
    ARG_OPTIONAL("ipv4", ARG_BOOL, Addr, ipv4, has_ipv4),
    ARG_OPTIONAL("timeout", ARG_SIZE, Addr, timeout, has_timeout),
    ARG_TABLE_END,
};

/* One outer struct: the address is not its first member. */
typedef struct {
    char *name;
    int64_t weight;
    bool has_weight;
    Addr addr;
    char *label;
    bool has_label;
} Server;

static const ArgSpec server_members[] = {
    ARG_REQUIRED("name", ARG_STR, Server, name),
    ARG_OPTIONAL("weight", ARG_INT, Server, weight, has_weight),
    ARG_NESTED_AT("addr", addr_members, Server, addr),
    ARG_OPTIONAL("label", ARG_STR, Server, label, has_label),
    ARG_TABLE_END,
};
static const ArgSpec *const server_tables[] = { server_members, NULL };

/* Another outer struct embeds the same address twice, at other offsets,
 * one of them optional with a presence flag. */
typedef struct {
    bool verbose, has_verbose;
    Addr primary;
    bool has_backup;
    Addr backup;
} Pair;

static const ArgSpec pair_members[] = {
    ARG_OPTIONAL("verbose", ARG_BOOL, Pair, verbose, has_verbose),
    ARG_NESTED_AT("primary", addr_members, Pair, primary),
    ARG_NESTED_OPTIONAL("backup", addr_members, Pair, backup, has_backup),
    ARG_TABLE_END,
};
static const ArgSpec *const pair_tables[] = { pair_members, NULL };

/* Nested in nested: a node holds a Server (which holds an Addr). */
typedef struct {
    char *id;
    bool has_server;
    Server server;
} Node;

static const ArgSpec node_members[] = {
    ARG_REQUIRED("id", ARG_STR, Node, id),
    ARG_NESTED_OPTIONAL("server", server_members, Node, server, has_server),
    ARG_TABLE_END,
};
static const ArgSpec *const node_tables[] = { node_members, NULL };

static bool decode_text(const ArgSpec *const *tables, const char *text, bool keyval,
                        void *out, GError **errp)
{
    g_autoptr(json_object) args = json_tokener_parse(text);

    g_assert_nonnull(args);
    return argspec_decode(tables, args, keyval, out, errp);
}

static void assert_addr_cleared(const Addr *a)
{
    g_assert_null(a->host);
    g_assert_null(a->port);
    g_assert_false(a->has_port || a->has_ipv4 || a->has_timeout);
}

static void assert_node_cleared(const Node *n)
{
    g_assert_null(n->id);
    g_assert_false(n->has_server);
    g_assert_null(n->server.name);
    g_assert_null(n->server.label);
    g_assert_false(n->server.has_weight || n->server.has_label);
    assert_addr_cleared(&n->server.addr);
}

static void check_node_error(const char *text, bool keyval, const char *expected)
{
    Node n = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_false(decode_text(node_tables, text, keyval, &n, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, expected);
    assert_node_cleared(&n);
}

static void test_offset_in_outer_struct(void)
{
    Server s = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(server_tables,
        "{\"name\":\"s\",\"weight\":3,\"addr\":{\"host\":\"h\",\"port\":\"10809\","
        "\"ipv4\":true},\"label\":\"L\"}", false, &s, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(s.name, ==, "s");
    g_assert_true(s.has_weight);
    g_assert_cmpint(s.weight, ==, 3);
    g_assert_cmpstr(s.addr.host, ==, "h");
    g_assert_true(s.addr.has_port);
    g_assert_cmpstr(s.addr.port, ==, "10809");
    g_assert_true(s.addr.has_ipv4 && s.addr.ipv4);
    g_assert_false(s.addr.has_timeout);
    /* The members around the sub-struct were not overwritten by it. */
    g_assert_cmpstr(s.label, ==, "L");

    argspec_clear(server_tables, &s);
    g_assert_null(s.name);
    g_assert_null(s.label);
    assert_addr_cleared(&s.addr);
}

static void test_one_table_in_two_structs(void)
{
    Pair p = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(pair_tables,
        "{\"primary\":{\"host\":\"a\",\"timeout\":5},"
        "\"backup\":{\"host\":\"b\",\"port\":\"2\"}}", false, &p, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(p.primary.host, ==, "a");
    g_assert_true(p.primary.has_timeout);
    g_assert_cmpuint(p.primary.timeout, ==, 5);
    g_assert_false(p.primary.has_port);
    g_assert_true(p.has_backup);
    g_assert_cmpstr(p.backup.host, ==, "b");
    g_assert_cmpstr(p.backup.port, ==, "2");
    g_assert_false(p.backup.has_timeout);
    g_assert_false(p.has_verbose);
    argspec_clear(pair_tables, &p);
    assert_addr_cleared(&p.primary);
    assert_addr_cleared(&p.backup);
    g_assert_false(p.has_backup);
}

static void test_optional_presence(void)
{
    Pair p = { 0 };
    g_autoptr(GError) err = NULL;

    /* Absent: the flag stays false and the sub-struct untouched. */
    g_assert_true(decode_text(pair_tables, "{\"primary\":{\"host\":\"a\"}}", false, &p, &err));
    g_assert_no_error(err);
    g_assert_false(p.has_backup);
    assert_addr_cleared(&p.backup);
    argspec_clear(pair_tables, &p);

    /* Required members inside an optional object still apply once it is given. */
    g_assert_false(decode_text(pair_tables, "{\"primary\":{\"host\":\"a\"},\"backup\":{}}",
                               false, &p, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'backup.host' is missing");
    g_assert_false(p.has_backup);
    assert_addr_cleared(&p.primary);
    g_clear_error(&err);

    /* A required object may not be left out; null is no object either. */
    g_assert_false(decode_text(pair_tables, "{\"backup\":{\"host\":\"b\"}}", false, &p, &err));
    g_assert_cmpstr(err->message, ==, "Parameter 'primary' is missing");
    g_clear_error(&err);
    g_assert_false(decode_text(pair_tables, "{\"primary\":{\"host\":\"a\"},\"backup\":null}",
                               false, &p, &err));
    g_assert_cmpstr(err->message, ==, "Invalid parameter type for 'backup', expected: object");
    g_assert_false(p.has_backup);
}

static void test_nested_in_nested(void)
{
    Node n = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_text(node_tables,
        "{\"id\":\"n0\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":\"h\","
        "\"ipv4\":false}}}", false, &n, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(n.id, ==, "n0");
    g_assert_true(n.has_server);
    g_assert_cmpstr(n.server.name, ==, "s");
    g_assert_cmpstr(n.server.addr.host, ==, "h");
    g_assert_true(n.server.addr.has_ipv4 && !n.server.addr.ipv4);
    argspec_clear(node_tables, &n);
    assert_node_cleared(&n);

    g_assert_true(decode_text(node_tables, "{\"id\":\"n1\"}", false, &n, &err));
    g_assert_false(n.has_server);
    argspec_clear(node_tables, &n);
}

static void test_nested_errors(void)
{
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\"}}", false,
                     "Parameter 'server.addr' is missing");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{}}}", false,
                     "Parameter 'server.addr.host' is missing");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":[]}}", false,
                     "Invalid parameter type for 'server.addr', expected: object");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":1}}}", false,
                     "Invalid parameter type for 'server.addr.host', expected: string");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":\"h\","
                     "\"ipv4\":1}}}", false,
                     "Invalid parameter type for 'server.addr.ipv4', expected: boolean");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":\"h\","
                     "\"x\":1}}}", false, "Parameter 'server.addr.x' is unexpected");
    /* Everything decoded before the failure, at every depth, is freed. */
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"weight\":1,"
                     "\"addr\":{\"host\":\"h\",\"port\":\"1\"},\"label\":5}}", false,
                     "Invalid parameter type for 'server.label', expected: string");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":\"h\"}},"
                     "\"y\":1}", false, "Parameter 'y' is unexpected");
}

static void test_nested_keyval(void)
{
    Node n = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) args = keyval_parse(
        "id=n0,server.name=s,server.weight=-2,server.addr.host=h,server.addr.ipv4=on,"
        "server.addr.timeout=1k", NULL, &err);

    g_assert_no_error(err);
    g_assert_true(argspec_decode(node_tables, args, true, &n, &err));
    g_assert_no_error(err);
    g_assert_true(n.has_server);
    g_assert_cmpint(n.server.weight, ==, -2);
    g_assert_true(n.server.addr.has_ipv4 && n.server.addr.ipv4);
    g_assert_cmpuint(n.server.addr.timeout, ==, 1024);
    argspec_clear(node_tables, &n);
    assert_node_cleared(&n);

    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":\"h\","
                     "\"ipv4\":\"maybe\"}}}", true,
                     "Parameter 'server.addr.ipv4' expects 'on' or 'off'");
    check_node_error("{\"id\":\"n\",\"server\":{\"name\":\"s\",\"addr\":{\"host\":\"h\","
                     "\"timeout\":\"-1\"}}}", true,
                     "Parameter 'server.addr.timeout' expects a non-negative number below 2^64");
    check_node_error("{\"id\":\"n\",\"server\":\"x\"}", true,
                     "Invalid parameter type for 'server', expected: object");
}

static void test_discriminator_in_nested(void)
{
    static const char *const kinds[] = { "tcp", "unix", NULL };
    g_autoptr(GError) err = NULL;
    g_autoptr(json_object) args =
        json_tokener_parse("{\"server\":{\"addr\":{\"kind\":\"unix\"}}}");

    g_assert_cmpint(argspec_discriminator(args, "server.addr.kind", kinds, &err), ==, 1);
    g_assert_no_error(err);
    g_assert_cmpint(argspec_discriminator(args, "server.addr.type", kinds, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Parameter 'server.addr.type' is missing");
}

/* Common members in one struct, a "driver's" members in another. */
typedef struct {
    char *id;
    bool ro, has_ro;
} Common;

static const ArgSpec common_members[] = {
    ARG_REQUIRED("id", ARG_STR, Common, id),
    ARG_OPTIONAL("read-only", ARG_BOOL, Common, ro, has_ro),
    ARG_TABLE_END,
};

static bool decode_targets(const char *text, bool keyval, Common *c, Server *s, GError **errp)
{
    g_autoptr(json_object) args = json_tokener_parse(text);
    const ArgSpecTarget targets[] = { { common_members, c }, { server_members, s } };

    g_assert_nonnull(args);
    return argspec_decode_targets(targets, G_N_ELEMENTS(targets), args, keyval, errp);
}

static void test_targets(void)
{
    Common c = { 0 };
    Server s = { 0 };
    ArgSpecTarget targets[] = { { common_members, &c }, { server_members, &s } };
    g_autoptr(GError) err = NULL;

    g_assert_true(decode_targets("{\"id\":\"x\",\"name\":\"n\",\"read-only\":\"on\","
                                 "\"addr\":{\"host\":\"h\"}}", true, &c, &s, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(c.id, ==, "x");
    g_assert_true(c.has_ro && c.ro);
    g_assert_cmpstr(s.name, ==, "n");
    g_assert_cmpstr(s.addr.host, ==, "h");

    argspec_clear_targets(targets, G_N_ELEMENTS(targets));
    g_assert_null(c.id);
    g_assert_false(c.has_ro);
    g_assert_null(s.name);
    assert_addr_cleared(&s.addr);

    /* A NULL table is an empty one. */
    targets[1] = (ArgSpecTarget) { NULL, NULL };
    g_autoptr(json_object) only_id = json_tokener_parse("{\"id\":\"y\"}");
    g_assert_true(argspec_decode_targets(targets, 2, only_id, false, &err));
    g_assert_cmpstr(c.id, ==, "y");
    argspec_clear_targets(targets, 2);
    g_assert_null(c.id);
}

static void test_targets_errors(void)
{
    static const char *const cases[][2] = {
        /* Tables are checked in order: the first table's members first. */
        { "{\"read-only\":1,\"weight\":\"w\"}", "Parameter 'id' is missing" },
        { "{\"id\":\"x\",\"read-only\":1,\"weight\":\"w\"}",
          "Invalid parameter type for 'read-only', expected: boolean" },
        { "{\"id\":\"x\",\"weight\":\"w\"}", "Parameter 'name' is missing" },
        { "{\"id\":\"x\",\"name\":\"n\",\"addr\":{\"host\":\"h\"},\"weight\":\"w\"}",
          "Invalid parameter type for 'weight', expected: integer" },
        /* Unknown members: only after every table's members, across all tables. */
        { "{\"id\":\"x\",\"bogus\":1,\"name\":\"n\",\"addr\":{\"host\":\"h\",\"q\":1}}",
          "Parameter 'addr.q' is unexpected" },
        { "{\"id\":\"x\",\"bogus\":1,\"name\":\"n\",\"addr\":{\"host\":\"h\"}}",
          "Parameter 'bogus' is unexpected" },
        { "[]", "Invalid parameter type, expected: object" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        Common c = { 0 };
        Server s = { 0 };
        g_autoptr(GError) err = NULL;

        g_assert_false(decode_targets(cases[i][0], false, &c, &s, &err));
        g_assert_cmpstr(err->message, ==, cases[i][1]);
        /* Both structs are cleared, not only the one that failed. */
        g_assert_null(c.id);
        g_assert_false(c.has_ro);
        g_assert_null(s.name);
        g_assert_null(s.label);
        assert_addr_cleared(&s.addr);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/argspec/nested/offset", test_offset_in_outer_struct);
    g_test_add_func("/argspec/nested/reuse", test_one_table_in_two_structs);
    g_test_add_func("/argspec/nested/optional-presence", test_optional_presence);
    g_test_add_func("/argspec/nested/nested-in-nested", test_nested_in_nested);
    g_test_add_func("/argspec/nested/errors", test_nested_errors);
    g_test_add_func("/argspec/nested/keyval", test_nested_keyval);
    g_test_add_func("/argspec/nested/discriminator", test_discriminator_in_nested);
    g_test_add_func("/argspec/targets/decode", test_targets);
    g_test_add_func("/argspec/targets/errors", test_targets_errors);
    return g_test_run();
}
