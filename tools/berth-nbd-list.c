/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * berth-nbd -L: connect to an NBD server (unix socket, or TCP with -b/-p),
 * list its exports with the client library's nbd_list_exports(), and print
 * them in the layout qemu-nbd -L uses, so that scripts reading one read the
 * other: a count, then per export its name, description, size and
 * transmission flags, block sizes (when the server advertised them) and
 * metadata contexts.
 */
#include "berth-nbd.h"

#include "berth/nbd/client.h"
#include "berth/io/net-listener.h"
#include "berth/io/tls-creds.h"

#include <inttypes.h>
#include <stdio.h>

/* Names of the transmission flags, by bit, as qemu-nbd -L prints them. */
static const char *const flag_names[] = {
    [1] = "readonly",
    [2] = "flush",
    [3] = "fua",
    [4] = "rotational",
    [5] = "trim",
    [6] = "zeroes",
    [7] = "df",
    [8] = "multi",
    [9] = "resize",
    [10] = "cache",
    [11] = "fast-zero",
};

static void print_entry(const NBDExportListEntry *e)
{
    printf(" export: '%s'\n", e->name);
    if (e->description && *e->description) {
        printf("  description: %s\n", e->description);
    }
    if (e->has_info && (e->info.flags & NBD_FLAG_HAS_FLAGS)) {
        printf("  size:  %" PRIu64 "\n", e->info.size);
        printf("  flags: 0x%x (", e->info.flags);
        for (size_t bit = 0; bit < G_N_ELEMENTS(flag_names); bit++) {
            if (flag_names[bit] && (e->info.flags & (1u << bit))) {
                printf(" %s", flag_names[bit]);
            }
        }
        printf(" )\n");
    }
    /* nbd_list_exports() leaves the block sizes 0 when not advertised. */
    if (e->has_info && e->info.min_block) {
        printf("  min block: %" PRIu32 "\n", e->info.min_block);
        printf("  opt block: %" PRIu32 "\n", e->info.pref_block);
        printf("  max block: %" PRIu32 "\n", e->info.max_block);
    }
    guint n = e->meta_contexts ? g_strv_length(e->meta_contexts) : 0;
    if (n) {
        printf("  available meta contexts: %u\n", n);
        for (guint i = 0; i < n; i++) {
            printf("   %s\n", e->meta_contexts[i]);
        }
    }
}

static BerthTlsCreds *find_client_creds(const char *id)
{
    g_autoptr(GError) err = NULL;
    BerthTlsCreds *creds = berth_tls_creds_find(id, &err);

    if (!creds) {
        berth_nbd_error("Failed to get TLS creds: %s", err->message);
        return NULL;
    }
    if (berth_tls_creds_get_endpoint(creds) != BERTH_TLS_ENDPOINT_CLIENT) {
        berth_nbd_error("Failed to get TLS creds: '%s' has endpoint=server; listing "
                        "needs endpoint=client", id);
        return NULL;
    }
    return creds;
}

int berth_nbd_list(const BerthNbdOptions *o)
{
    g_autofree char *default_port = g_strdup_printf("%d", NBD_DEFAULT_PORT);
    BerthSocketAddress addr = { .type = BERTH_ADDR_UNIX, .path = (char *) o->sockpath };
    const char *hostname = o->tls_hostname;
    BerthTlsCreds *creds = NULL;
    g_autoptr(GError) err = NULL;

    if (!o->sockpath) {
        addr.type = BERTH_ADDR_INET;
        addr.host = (char *) (o->bind ? o->bind : "0.0.0.0");
        addr.port = o->port ? (char *) o->port : default_port;
        if (!hostname) {
            hostname = addr.host;
        }
    }
    if (o->tls_creds && !(creds = find_client_creds(o->tls_creds))) {
        return 1;
    }
    int fd = berth_socket_connect(&addr, &err);
    if (fd < 0) {
        berth_nbd_error("%s", err->message);
        return 1;
    }
    g_autoptr(BerthChannel) ch = berth_channel_socket_new(fd);
    g_autoptr(NBDExportList) list = nbd_list_exports(ch, creds, hostname, &err);
    if (!list) {
        berth_nbd_error("%s", err->message);
        return 1;
    }
    printf("exports available: %u\n", list->entries->len);
    for (guint i = 0; i < list->entries->len; i++) {
        print_entry(g_ptr_array_index(list->entries, i));
    }
    return 0;
}
