/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Daemonizing, the pid file and signals for berthd and berth-nbd (see
 * berthd-os.h). The parent of a daemonizing process stays until the child
 * has either started serving or failed, so that `berthd --daemonize ... &&
 * use-it` is race free and a bad option still fails the command that
 * started it.
 */
#include "berthd-os.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1;
static char *pidfile_path;
static int pidfile_fd = -1;

static const char *prog(void)
{
    const char *name = g_get_prgname();

    return name ? name : "berthd";
}

int berthd_daemonize(void)
{
    int fds[2];

    if (pipe(fds) < 0) {
        fprintf(stderr, "%s: cannot daemonize: pipe: %s\n", prog(), g_strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: cannot daemonize: fork: %s\n", prog(), g_strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        char byte;
        ssize_t n;
        int status;

        close(fds[1]);
        do {
            n = read(fds[0], &byte, 1);
        } while (n < 0 && errno == EINTR);
        close(fds[0]);
        if (n == 1) {
            return 0;
        }
        /* The child ended before it was ready: its status is ours. */
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1;
    }
    close(fds[0]);
    ready_fd = fds[1];
    fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
    setsid();
    return -1;
}

void berthd_daemon_ready(void)
{
    if (ready_fd < 0) {
        return;
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) {
            close(null);
        }
    }
    /*
     * Unlike QEMU, no chdir("/"): relative paths from the command line
     * (sockets unlinked at exit) and from later QMP commands keep meaning
     * what the user meant.
     */
    char byte = 1;
    while (write(ready_fd, &byte, 1) < 0 && errno == EINTR) {
    }
    close(ready_fd);
    ready_fd = -1;
}

bool berthd_pidfile_create(const char *path, GError **errp)
{
    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        struct stat a, b;

        if (fd < 0) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                        "Could not create '%s': %s", path, g_strerror(errno));
            return false;
        }
        struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        if (fcntl(fd, F_SETLK, &lock) < 0) {
            int saved = errno;
            close(fd);
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved),
                        "Cannot lock pid file: %s", g_strerror(saved));
            return false;
        }
        /* A previous owner may have unlinked it between open and lock. */
        if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        g_autofree char *pid = g_strdup_printf("%d\n", (int) getpid());
        if (ftruncate(fd, 0) < 0 || write(fd, pid, strlen(pid)) != (ssize_t) strlen(pid)) {
            int saved = errno;
            close(fd);
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(saved),
                        "Failed to write pid file: %s", g_strerror(saved));
            return false;
        }
        pidfile_fd = fd;
        pidfile_path = g_canonicalize_filename(path, NULL);
        return true;
    }
}

void berthd_pidfile_remove(void)
{
    if (pidfile_fd < 0) {
        return;
    }
    unlink(pidfile_path);
    close(pidfile_fd);
    pidfile_fd = -1;
    g_clear_pointer(&pidfile_path, g_free);
}

static gboolean on_quit_signal(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_CONTINUE;
}

void berthd_quit_on_signals(GMainLoop *loop)
{
    signal(SIGPIPE, SIG_IGN);
    g_unix_signal_add(SIGINT, on_quit_signal, loop);
    g_unix_signal_add(SIGTERM, on_quit_signal, loop);
    g_unix_signal_add(SIGHUP, on_quit_signal, loop);
}

void berthd_raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
