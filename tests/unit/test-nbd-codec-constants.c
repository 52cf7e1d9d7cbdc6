/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the NBD wire codec's constants (nbd/proto/codec*.c): magics,
 * option, reply and flag values checked against the NBD specification, the
 * names of commands, options, replies and errors, and the mapping between
 * NBD error values and errno (nbd/proto/errno.c), with the two values the
 * spec reserves for one request each.
 */
#include "nbd-codec-test-util.h"

/* ---------------------------------------------------------------------
 * Constants against the specification
 * --------------------------------------------------------------------- */

static void test_constants(void)
{
    g_assert_cmphex(NBD_MAGIC, ==, 0x4e42444d41474943ull);
    g_assert_cmphex(NBD_OPTS_MAGIC, ==, 0x49484156454f5054ull);
    g_assert_cmphex(NBD_REP_MAGIC, ==, 0x3e889045565a9ull);
    g_assert_cmphex(NBD_REQUEST_MAGIC, ==, 0x25609513);
    g_assert_cmphex(NBD_EXTENDED_REQUEST_MAGIC, ==, 0x21e41c71);
    g_assert_cmphex(NBD_SIMPLE_REPLY_MAGIC, ==, 0x67446698);
    g_assert_cmphex(NBD_STRUCTURED_REPLY_MAGIC, ==, 0x668e33ef);
    g_assert_cmphex(NBD_EXTENDED_REPLY_MAGIC, ==, 0x6e8a278c);
    g_assert_cmpuint(NBD_OPT_EXTENDED_HEADERS, ==, 11);
    g_assert_cmphex(NBD_REP_ERR_UNSUP, ==, 0x80000001u);
    g_assert_cmphex(NBD_REP_ERR_EXT_HEADER_REQD, ==, 0x8000000au);
    g_assert_cmphex(NBD_FLAG_BLOCK_STAT_PAYLOAD, ==, 0x1000);
    g_assert_cmphex(NBD_CMD_FLAG_PAYLOAD_LEN, ==, 0x20);
    g_assert_cmpuint(NBD_REPLY_TYPE_ERROR, ==, 32769);
    g_assert_cmpuint(NBD_REPLY_TYPE_ERROR_OFFSET, ==, 32770);
    g_assert_cmpuint(NBD_ESHUTDOWN, ==, 108);
    g_assert_cmpuint(NBD_MAX_PAYLOAD, ==, 67108864);
    g_assert_cmpuint(NBD_DEFAULT_MAX_BLOCK, ==, 33554432);
    g_assert_cmpuint(NBD_MAX_STRING, ==, 4096);
}

/* ---------------------------------------------------------------------
 * Names and errno mapping
 * --------------------------------------------------------------------- */

static void test_names(void)
{
    g_assert_cmpstr(nbd_cmd_name(NBD_CMD_WRITE_ZEROES), ==, "NBD_CMD_WRITE_ZEROES");
    g_assert_cmpstr(nbd_cmd_name(77), ==, "unknown command");
    g_assert_cmpstr(nbd_opt_name(NBD_OPT_EXTENDED_HEADERS), ==, "NBD_OPT_EXTENDED_HEADERS");
    g_assert_cmpstr(nbd_opt_name(99), ==, "unknown option");
    g_assert_cmpstr(nbd_rep_name(NBD_REP_ERR_TLS_REQD), ==, "NBD_REP_ERR_TLS_REQD");
    g_assert_cmpstr(nbd_rep_name(NBD_REP_ERR(99)), ==, "unknown error reply");
    g_assert_cmpstr(nbd_info_name(NBD_INFO_BLOCK_SIZE), ==, "NBD_INFO_BLOCK_SIZE");
    g_assert_cmpstr(nbd_reply_type_name(NBD_REPLY_TYPE_ERROR_OFFSET), ==,
                    "NBD_REPLY_TYPE_ERROR_OFFSET");
    g_assert_cmpstr(nbd_err_name(NBD_ESHUTDOWN), ==, "NBD_ESHUTDOWN");
    g_assert_cmpstr(nbd_mode_name(NBD_MODE_EXTENDED), ==, "extended");
    for (uint32_t i = 0; i < 16; i++) {
        g_assert_nonnull(nbd_cmd_name((uint16_t) i));
        g_assert_nonnull(nbd_opt_name(i));
        g_assert_nonnull(nbd_rep_name(i));
        g_assert_nonnull(nbd_rep_name(NBD_REP_ERR(i)));
    }
}

static void test_errno_mapping(void)
{
    const NBDRequest read = { .type = NBD_CMD_READ };

    g_assert_cmpuint(nbd_errno(0, &read), ==, 0);
    g_assert_cmpuint(nbd_errno(EPERM, &read), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno(-EROFS, &read), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno(EIO, &read), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno(ENOMEM, &read), ==, NBD_ENOMEM);
    g_assert_cmpuint(nbd_errno(-EINVAL, &read), ==, NBD_EINVAL);
    g_assert_cmpuint(nbd_errno(ENOSPC, &read), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno(EDQUOT, &read), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno(EFBIG, &read), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno(ESHUTDOWN, &read), ==, NBD_ESHUTDOWN);
    g_assert_cmpuint(nbd_errno(ENOENT, &read), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno(ETIMEDOUT, &read), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno(12345, &read), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno(EIO, NULL), ==, NBD_EIO);

    g_assert_cmpint(nbd_error_to_errno(0), ==, 0);
    g_assert_cmpint(nbd_error_to_errno(NBD_EPERM), ==, EPERM);
    g_assert_cmpint(nbd_error_to_errno(NBD_ENOSPC), ==, ENOSPC);
    g_assert_cmpint(nbd_error_to_errno(NBD_ESHUTDOWN), ==, ESHUTDOWN);
    g_assert_cmpint(nbd_error_to_errno(NBD_EOVERFLOW), ==, EOVERFLOW);
    g_assert_cmpint(nbd_error_to_errno(NBD_ENOTSUP), ==, ENOTSUP);
    g_assert_cmpint(nbd_error_to_errno(9999), ==, EINVAL);
    g_assert_cmpint(nbd_error_to_errno(2), ==, EINVAL);   /* ENOENT is not an NBD value */
}

/*
 * The spec keeps NBD_ENOTSUP for a WRITE_ZEROES with FAST_ZERO and
 * NBD_EOVERFLOW for a READ with DF: the same errno on any other request, or
 * on those commands without the flag, is NBD_EINVAL.
 */
static void test_errno_request_aware(void)
{
    static const struct {
        uint16_t type, flags;
        uint32_t enotsup, eoverflow;
    } cases[] = {
        { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, NBD_ENOTSUP, NBD_EINVAL },
        { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE,
          NBD_ENOTSUP, NBD_EINVAL },
        { NBD_CMD_WRITE_ZEROES, 0, NBD_EINVAL, NBD_EINVAL },
        { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, NBD_EINVAL, NBD_EINVAL },
        { NBD_CMD_READ, NBD_CMD_FLAG_DF, NBD_EINVAL, NBD_EOVERFLOW },
        { NBD_CMD_READ, NBD_CMD_FLAG_DF | NBD_CMD_FLAG_FUA, NBD_EINVAL, NBD_EOVERFLOW },
        { NBD_CMD_READ, 0, NBD_EINVAL, NBD_EINVAL },
        /* The flag on the wrong command does not count. */
        { NBD_CMD_WRITE, NBD_CMD_FLAG_FAST_ZERO, NBD_EINVAL, NBD_EINVAL },
        { NBD_CMD_WRITE, NBD_CMD_FLAG_DF, NBD_EINVAL, NBD_EINVAL },
        { NBD_CMD_TRIM, 0, NBD_EINVAL, NBD_EINVAL },
        { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, NBD_EINVAL, NBD_EINVAL },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        NBDRequest r = { .type = cases[i].type, .flags = cases[i].flags, .length = 4096 };
        g_assert_cmpuint(nbd_errno(ENOTSUP, &r), ==, cases[i].enotsup);
        g_assert_cmpuint(nbd_errno(-EOPNOTSUPP, &r), ==, cases[i].enotsup);
        g_assert_cmpuint(nbd_errno(-EOVERFLOW, &r), ==, cases[i].eoverflow);
        /* Other errors do not depend on the request. */
        g_assert_cmpuint(nbd_errno(ENOSPC, &r), ==, NBD_ENOSPC);
        g_assert_cmpuint(nbd_errno(EIO, &r), ==, NBD_EIO);
    }
    /* Without a request neither exception applies. */
    g_assert_cmpuint(nbd_errno(ENOTSUP, NULL), ==, NBD_EINVAL);
    g_assert_cmpuint(nbd_errno(EOVERFLOW, NULL), ==, NBD_EINVAL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/constants", test_constants);
    g_test_add_func("/nbd/codec/names", test_names);
    g_test_add_func("/nbd/codec/errno", test_errno_mapping);
    g_test_add_func("/nbd/codec/errno-request-aware", test_errno_request_aware);

    return g_test_run();
}
