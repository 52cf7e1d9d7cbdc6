/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Socket activation: see io/socket-activation.h. */
#include "io/socket-activation.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <stdlib.h>
#include <unistd.h>

/* A decimal number with nothing around it, in [0, max]. */
static bool parse_number(const char *s, guint64 max, guint64 *out)
{
    return s && *s && g_ascii_string_to_unsigned(s, 10, 0, max, out, NULL);
}

int berth_socket_activation_take(GError **errp)
{
    g_autofree char *pid_s = g_strdup(g_getenv("LISTEN_PID"));
    g_autofree char *fds_s = g_strdup(g_getenv("LISTEN_FDS"));
    g_unsetenv("LISTEN_PID");
    g_unsetenv("LISTEN_FDS");
    g_unsetenv("LISTEN_FDNAMES");

    if (!pid_s) {
        return 0;
    }
    guint64 pid, n;
    if (!parse_number(pid_s, G_MAXINT32, &pid)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid LISTEN_PID '%s' in the environment", pid_s);
        return -1;
    }
    if ((pid_t) pid != getpid()) {
        return 0;   /* meant for the process that started us */
    }
    if (!parse_number(fds_s, 1024, &n)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid LISTEN_FDS '%s' in the environment", fds_s ? fds_s : "");
        return -1;
    }
    for (guint64 i = 0; i < n; i++) {
        int fd = BERTH_LISTEN_FDS_START + (int) i;
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
            int err = errno;
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                        "Socket activation: fd %d is not usable: %s", fd, g_strerror(err));
            return -1;
        }
    }
    return (int) n;
}
