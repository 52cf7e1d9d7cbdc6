/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Chardevs on file descriptors the process already has: `stdio` (QMP on
 * standard input and output, for scripts that drive the daemon through a
 * pipe) and `socket,fd=N` without server=on (a connected socket handed
 * over by the parent). Both carry exactly one session, started when
 * --monitor attaches to them; a listening fd (server=on) is a listener
 * like any other and stays in chardev.c.
 *
 * stdio is shared with the rest of the process, so it is handled with
 * care: the session works on duplicates of fds 0 and 1 (fds 0 and 1 stay
 * open, and no later socket can be given those numbers), and the
 * O_NONBLOCK flag that the session sets on the shared file descriptions,
 * and the terminal's ISIG flag that signal=off clears, are put back when
 * the chardev goes, so the shell that started us gets its terminal back as
 * it was. Error texts are QEMU's where it has one.
 */
#include "monitor-int.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

struct ChardevStdio {
    int saved_fl[2];            /* F_GETFL of fds 0 and 1, -1 if unknown */
    bool restore_termios;
    struct termios saved_tio;
};

static bool stdio_in_use;
static bool stdio_forbidden;

void monitor_set_daemonize(bool daemonize)
{
    stdio_forbidden = daemonize;
}

ChardevStdio *chardev_stdio_open(bool signal, GError **errp)
{
    if (stdio_forbidden) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                            "cannot use stdio with -daemonize");
        return NULL;
    }
    if (stdio_in_use) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                            "cannot use stdio by multiple character devices");
        return NULL;
    }
    ChardevStdio *st = g_new0(ChardevStdio, 1);
    st->saved_fl[0] = fcntl(STDIN_FILENO, F_GETFL);
    st->saved_fl[1] = fcntl(STDOUT_FILENO, F_GETFL);
    if (st->saved_fl[0] < 0 || st->saved_fl[1] < 0) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                            "stdio: standard input or output is not open");
        g_free(st);
        return NULL;
    }
    /* Without a terminal there is nothing to send signals: signal=off
     * needs no work then. */
    if (!signal && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &st->saved_tio) == 0) {
        struct termios tio = st->saved_tio;
        tio.c_lflag &= ~(tcflag_t) ISIG;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &tio) == 0) {
            st->restore_termios = true;
        }
    }
    stdio_in_use = true;
    return st;
}

bool chardev_stdio_fds(ChardevStdio *st, int *in_fd, int *out_fd, GError **errp)
{
    (void) st;
    *in_fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    *out_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (*in_fd < 0 || *out_fd < 0) {
        int saved = errno;
        if (*in_fd >= 0) {
            close(*in_fd);
        }
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved), "stdio: %s",
                    g_strerror(saved));
        return false;
    }
    return true;
}

void chardev_stdio_close(ChardevStdio *st)
{
    if (!st) {
        return;
    }
    for (int fd = 0; fd < 2; fd++) {
        fcntl(fd, F_SETFL, st->saved_fl[fd]);
    }
    if (st->restore_termios) {
        tcsetattr(STDIN_FILENO, TCSANOW, &st->saved_tio);
    }
    stdio_in_use = false;
    g_free(st);
}

/* QEMU's checks and words for a numeric fd= of a socket chardev. */
int chardev_parse_fd(const char *str, GError **errp)
{
    char *end = NULL;
    gint64 v = str && *str ? g_ascii_strtoll(str, &end, 10) : -1;

    if (!str || !*str || *end || v < 0 || v > G_MAXINT) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Unable to parse FD number %s", str ? str : "");
        return -1;
    }
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt((int) v, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "File descriptor '%s' is not a socket", str);
        return -1;
    }
    return (int) v;
}

int chardev_connected_fd(const char *id, const char *str, GError **errp)
{
    int fd = chardev_parse_fd(str, errp);
    int type = 0, acc = 0;
    socklen_t len = sizeof(type);

    if (fd < 0) {
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "chardev '%s': file descriptor '%s' is not a stream socket", id, str);
        return -1;
    }
    len = sizeof(acc);
    /* QEMU would wait forever on it; say what is wrong instead. */
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && acc) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "chardev '%s': file descriptor '%s' is a listening socket: "
                    "add server=on", id, str);
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}
