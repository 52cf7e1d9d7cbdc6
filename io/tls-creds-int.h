/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The inside of BerthTlsCreds, shared by io/tls-creds.c (which loads it)
 * and io/tls.c (which makes sessions from it). Nothing outside io/ sees it.
 */
#ifndef BERTH_IO_TLS_CREDS_INT_H
#define BERTH_IO_TLS_CREDS_INT_H

#include "berth/io/tls-creds.h"

#include <gnutls/gnutls.h>

struct BerthTlsCreds {
    gint refcount;
    BerthTlsCredsKind kind;
    BerthTlsEndpoint endpoint;
    bool verify_peer;
    char *dir;
    char *username;                             /* PSK client */
    gnutls_priority_t priority;
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t psk_server;
    gnutls_psk_client_credentials_t psk_client;
    gnutls_dh_params_t dh;
};

#endif
