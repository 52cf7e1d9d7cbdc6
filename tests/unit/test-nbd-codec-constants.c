/*
 * Unit tests for the NBD wire codec's constants (nbd/proto/codec*.c): magics,
 * option, reply and flag values checked against the NBD specification, the
 * names of commands, options, replies and errors, and the mapping between
 * NBD error values and errno.
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
    g_assert_cmpuint(NBD_MAX_PAYLOAD, ==, 33554432);
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
    g_assert_cmpuint(nbd_errno_to_nbd(0), ==, 0);
    g_assert_cmpuint(nbd_errno_to_nbd(EPERM), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_nbd(-EROFS), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_nbd(EIO), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOMEM), ==, NBD_ENOMEM);
    g_assert_cmpuint(nbd_errno_to_nbd(-EINVAL), ==, NBD_EINVAL);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOSPC), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(EDQUOT), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(EFBIG), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(EOVERFLOW), ==, NBD_EOVERFLOW);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOTSUP), ==, NBD_ENOTSUP);
    g_assert_cmpuint(nbd_errno_to_nbd(EOPNOTSUPP), ==, NBD_ENOTSUP);
    g_assert_cmpuint(nbd_errno_to_nbd(ESHUTDOWN), ==, NBD_ESHUTDOWN);
    g_assert_cmpuint(nbd_errno_to_nbd(ENOENT), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(ETIMEDOUT), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(12345), ==, NBD_EIO);

    g_assert_cmpint(nbd_error_to_errno(0), ==, 0);
    g_assert_cmpint(nbd_error_to_errno(NBD_EPERM), ==, EPERM);
    g_assert_cmpint(nbd_error_to_errno(NBD_ENOSPC), ==, ENOSPC);
    g_assert_cmpint(nbd_error_to_errno(NBD_ESHUTDOWN), ==, ESHUTDOWN);
    g_assert_cmpint(nbd_error_to_errno(NBD_EOVERFLOW), ==, EOVERFLOW);
    g_assert_cmpint(nbd_error_to_errno(NBD_ENOTSUP), ==, ENOTSUP);
    g_assert_cmpint(nbd_error_to_errno(9999), ==, EINVAL);
    g_assert_cmpint(nbd_error_to_errno(2), ==, EINVAL);   /* ENOENT is not an NBD value */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/nbd/codec/constants", test_constants);
    g_test_add_func("/nbd/codec/names", test_names);
    g_test_add_func("/nbd/codec/errno", test_errno_mapping);

    return g_test_run();
}
