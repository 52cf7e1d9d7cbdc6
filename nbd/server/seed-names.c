/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The seed API's names for server connections (nbd_client_*), each the
 * nbd_conn_* call of the same meaning. See berth/nbd/server.h.
 */
#include "berth/nbd/server.h"

NBDClient *nbd_client_new(NBDExport *exp, BerthChannel *channel, const char *tls_creds,
                          const char *tls_authz, void (*close_cb)(NBDClient *client,
                                                                  bool negotiated))
{
    return nbd_conn_new(exp, channel, tls_creds, tls_authz, close_cb);
}

NBDClient *nbd_client_get(NBDClient *client)
{
    return nbd_conn_get(client);
}

void nbd_client_put(NBDClient *client)
{
    nbd_conn_put(client);
}

void nbd_client_close(NBDClient *client)
{
    nbd_conn_close(client);
}

void nbd_client_get_info(NBDClient *client, NBDClientInfo *info)
{
    nbd_conn_get_info(client, info);
}
