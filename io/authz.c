/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The authorization interface that a TLS server's tls-authz uses, and its
 * simplest implementation, authz-simple (one allowed identity). The list
 * types live in io/authz-list.c and io/authz-listfile.c; all three are
 * found by id here, whatever their type.
 */
#include "authz-int.h"

void authz_object_destroy(gpointer data)
{
    BerthAuthz *authz = data;
    authz->ops->free(authz);
}

/* --- authz-simple --- */

typedef struct {
    BerthAuthz parent;
    char *identity;
} AuthzSimple;

static bool authz_simple_is_allowed(BerthAuthz *authz, const char *identity)
{
    return g_str_equal(((AuthzSimple *) authz)->identity, identity);
}

static void authz_simple_free(BerthAuthz *authz)
{
    AuthzSimple *simple = (AuthzSimple *) authz;
    g_free(simple->identity);
    g_free(simple);
}

static const BerthAuthzOps authz_simple_ops = {
    .is_allowed = authz_simple_is_allowed,
    .free = authz_simple_free,
};

typedef struct {
    char *identity;
} AuthzSimpleArgs;

static const ArgSpec authz_simple_members[] = {
    ARG_REQUIRED("identity", ARG_STR, AuthzSimpleArgs, identity),
    ARG_TABLE_END
};
static const ArgSpec *const authz_simple_args[] = { authz_simple_members, NULL };

static gpointer authz_simple_create(const char *id, void *opaque, GError **errp)
{
    AuthzSimpleArgs *a = opaque;
    AuthzSimple *simple = g_new0(AuthzSimple, 1);
    simple->parent.ops = &authz_simple_ops;
    simple->identity = g_strdup(a->identity);
    return &simple->parent;
}

static const QmpObjectType authz_simple_type = {
    .name = BERTH_TYPE_AUTHZ_SIMPLE,
    .args = authz_simple_args,
    .args_size = sizeof(AuthzSimpleArgs),
    .create = authz_simple_create,
    .destroy = authz_object_destroy,
};

/* --- the interface --- */

static const QmpObjectType *const authz_types[] = {
    &authz_simple_type,
    &authz_list_type,
    &authz_listfile_type,
};

static bool is_authz_type(const QmpObjectType *type)
{
    for (size_t i = 0; i < G_N_ELEMENTS(authz_types); i++) {
        if (type == authz_types[i]) {
            return true;
        }
    }
    return false;
}

BerthAuthz *berth_authz_find(const char *id, GError **errp)
{
    QmpObject *obj = qmp_object_find(id, NULL);
    if (!obj || !is_authz_type(qmp_object_get_type(obj))) {
        qmp_error_setg(errp, "No authorization object with id '%s'", id);
        return NULL;
    }
    return qmp_object_get_data(obj);
}

bool berth_authz_is_allowed(BerthAuthz *authz, const char *identity)
{
    return authz && identity && authz->ops->is_allowed(authz, identity);
}

void berth_authz_object_types_init(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(authz_types); i++) {
        qmp_object_type_register(authz_types[i]);
    }
}
