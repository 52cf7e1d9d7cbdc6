/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the libFuzzer targets in tests/fuzz/ share: a quiet, strict GLib
 * setup (criticals abort, chatter is dropped), a temporary directory, and
 * the peer that feeds one input to a real berth endpoint as a byte stream
 * over a socketpair while the main context runs it.
 *
 * The peer writes the input as fast as the other side takes it, reads and
 * throws away (or keeps) whatever comes back, and shuts its write side
 * when the input is spent. The endpoint must then finish on its own: a
 * target waits for that with fuzz_run_until(), which aborts (a finding,
 * with the input saved by libFuzzer) if it has not happened within
 * FUZZ_DEADLINE_SEC — a connection berth keeps open after its peer has
 * said everything and hung up is a hang. (Time this thread spent waiting
 * for a CPU does not count.)
 *
 * Ownership: a FuzzPeer owns its fd; the input it sends is borrowed.
 * Threads: the main context's thread (the one libFuzzer calls us on).
 */
#ifndef BERTH_TESTS_FUZZ_UTIL_H
#define BERTH_TESTS_FUZZ_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long an endpoint may take to finish after the peer hung up. */
#define FUZZ_DEADLINE_SEC 5

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_log_writer_quiet(const gchar *domain, GLogLevelFlags level,
                                         const gchar *message, gpointer opaque)
{
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
        fprintf(stderr, "%s: %s\n", domain ? domain : "", message);
    }
}

/*
 * Once per process: programmer errors (g_critical, g_return_if_fail)
 * become aborts, so that libFuzzer reports them; messages about peers
 * (g_info, g_debug, g_message, g_warning) are dropped, at hundreds of
 * thousands of executions they would only slow the run down.
 */
static inline void fuzz_glib_setup(void)
{
    g_log_set_always_fatal(G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
    g_log_set_default_handler(fuzz_log_writer_quiet, NULL);
    g_log_set_handler("berth", G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
                      fuzz_log_writer_quiet, NULL);
}

/* A private temporary directory, removed at exit if it is empty. */
static inline const char *fuzz_tmpdir(void)
{
    static char *dir;
    if (!dir) {
        GError *err = NULL;
        dir = g_dir_make_tmp("berth-fuzz-XXXXXX", &err);
        if (!dir) {
            fprintf(stderr, "fuzz: no temporary directory: %s\n", err->message);
            abort();
        }
    }
    return dir;
}

G_GNUC_NORETURN G_GNUC_PRINTF(1, 2) static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Both ends of a new non-blocking socketpair; [0] goes to berth. */
static inline void fuzz_socketpair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        fuzz_fail("socketpair: %s", g_strerror(errno));
    }
}

typedef struct FuzzPeer {
    int fd;
    const uint8_t *data;
    size_t len, sent;
    bool shut;              /* write side shut: the input is spent (or refused) */
    bool eof;               /* the endpoint closed its side */
    GByteArray *keep;       /* what came back, when the target wants it */
} FuzzPeer;

static inline void fuzz_peer_init(FuzzPeer *p, int fd, const uint8_t *data, size_t len)
{
    *p = (FuzzPeer) { .fd = fd, .data = data, .len = len };
}

/* Send what the socket takes and drain what it has; true on progress. */
static inline bool fuzz_peer_step(FuzzPeer *p)
{
    bool progress = false;
    while (!p->shut && p->sent < p->len) {
        ssize_t n = send(p->fd, p->data + p->sent, p->len - p->sent, MSG_NOSIGNAL);
        if (n > 0) {
            p->sent += (size_t) n;
            progress = true;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        /* The endpoint closed on us: the rest of the input is not wanted. */
        p->sent = p->len;
    }
    if (!p->shut && p->sent == p->len) {
        shutdown(p->fd, SHUT_WR);
        p->shut = true;
        progress = true;
    }
    while (!p->eof) {
        uint8_t buf[65536];
        ssize_t n = recv(p->fd, buf, sizeof(buf), 0);
        if (n > 0) {
            if (p->keep) {
                g_byte_array_append(p->keep, buf, (guint) n);
            }
            progress = true;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        p->eof = true;      /* 0, or ECONNRESET */
        progress = true;
    }
    return progress;
}

static inline void fuzz_peer_close(FuzzPeer *p)
{
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
}

/*
 * How long this thread has waited for a CPU while it could run, in
 * microseconds (the second field of its schedstat); 0 where the kernel
 * does not say.
 */
static inline gint64 fuzz_run_delay_us(void)
{
    unsigned long long on_cpu = 0, waited = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "re");
    if (!f) {
        return 0;
    }
    if (fscanf(f, "%llu %llu", &on_cpu, &waited) != 2) {
        waited = 0;
    }
    fclose(f);
    return (gint64) (waited / 1000);
}

/*
 * Feed the peer's input and run the main context until done(opaque); abort
 * (naming `what`) if that has not happened FUZZ_DEADLINE_SEC after the
 * input was spent. p may be NULL (only the main context runs).
 */
static inline void fuzz_run_until(FuzzPeer *p, bool (*done)(gpointer opaque), gpointer opaque,
                                  const char *what)
{
    gint64 start = 0, waited_at_start = 0;
    while (!done(opaque)) {
        bool progress = p ? fuzz_peer_step(p) : false;
        while (g_main_context_iteration(NULL, FALSE)) {
            progress = true;
        }
        if (!p || p->shut) {
            gint64 now = g_get_monotonic_time();
            if (!start) {
                start = now;
                waited_at_start = fuzz_run_delay_us();
            } else if (now - start > FUZZ_DEADLINE_SEC * G_USEC_PER_SEC &&
                       now - start - (fuzz_run_delay_us() - waited_at_start) >
                           FUZZ_DEADLINE_SEC * G_USEC_PER_SEC) {
                /* Time spent waiting for a CPU does not count: a long run
                 * at nice 19 beside a busy machine can wait seconds for its
                 * turn, while in a real hang this loop mostly sleeps and
                 * hardly ever waits to run. */
                fuzz_fail("%s did not finish within %d s of the input's end", what,
                          FUZZ_DEADLINE_SEC);
            }
        }
        if (!progress) {
            g_usleep(50);   /* a worker thread or a timer is due: let it run */
        }
    }
}

/* Run whatever is ready on the main context, a bounded number of times. */
static inline void fuzz_drain_main_context(void)
{
    for (int i = 0; i < 1000 && g_main_context_iteration(NULL, FALSE); i++) {
    }
}

#endif /* BERTH_TESTS_FUZZ_UTIL_H */
