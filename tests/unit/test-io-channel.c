/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of io/channel.c's socket facts: the peer credentials of a
 * unix socket (SO_PEERCRED) and their absence on TCP.
 */
#include "berth/io/channel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_peer_cred_unix(void)
{
    int sv[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    BerthChannel *a = berth_channel_socket_new(sv[0]);
    BerthChannel *b = berth_channel_socket_new(sv[1]);
    pid_t pid = 0;
    uid_t uid = (uid_t) -1;
    gid_t gid = (gid_t) -1;
    g_autoptr(GError) err = NULL;
    g_assert_true(berth_channel_peer_cred(a, &pid, &uid, &gid, &err));
    g_assert_no_error(err);
    g_assert_cmpint(pid, ==, getpid());
    g_assert_cmpint(uid, ==, getuid());
    g_assert_cmpint(gid, ==, getgid());
    berth_channel_unref(a);
    berth_channel_unref(b);
}

static void test_peer_cred_tcp(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    g_assert_cmpint(lfd, >=, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    g_assert_cmpint(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(lfd, 1), ==, 0);
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *) &sa, &len), ==, 0);
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    g_assert_cmpint(connect(cfd, (struct sockaddr *) &sa, sizeof(sa)), ==, 0);
    BerthChannel *c = berth_channel_socket_new(cfd);
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    g_autoptr(GError) err = NULL;
    g_assert_false(berth_channel_peer_cred(c, &pid, &uid, &gid, &err));
    g_assert_no_error(err);
    berth_channel_unref(c);
    close(lfd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/io/channel/peer-cred-unix", test_peer_cred_unix);
    g_test_add_func("/io/channel/peer-cred-tcp", test_peer_cred_tcp);
    return g_test_run();
}
