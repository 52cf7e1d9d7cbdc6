/*
 * object-add and object-del over the object table of util/qmp-command.h,
 * and the object types that berth knows before io/ brings real ones: an
 * "iothread" (a thread running its own GMainContext, which exports may move
 * their data path to) and placeholders for TLS credentials and authz that
 * check their arguments like QEMU and then say they are not supported yet.
 * A module with a real implementation registers its type under the same
 * name and replaces the placeholder.
 */
#include "qapi/qapi.h"
#include "qapi/module-commands.h"

#include <string.h>

/* --- object-add --- */

/* Members every object has; placed after the type's own struct. */
typedef struct {
    char *qom_type;
    char *id;
} ObjectBase;

typedef struct {
    GPtrArray *names;
} TypeNames;

static void collect_type_name(const QmpObjectType *type, gpointer opaque)
{
    g_ptr_array_add(opaque, (gpointer) type->name);
}

static bool qmp_object_add_cmd(void *opaque, json_object **ret, GError **errp)
{
    QmpRawArgs *raw = opaque;
    g_autoptr(GPtrArray) names = g_ptr_array_new();

    qmp_object_type_foreach(collect_type_name, names);
    g_ptr_array_add(names, NULL);
    int index = argspec_discriminator(raw->args, "qom-type",
                                      (const char *const *) names->pdata, errp);
    if (index < 0) {
        return false;
    }
    const QmpObjectType *type = qmp_object_type_find(g_ptr_array_index(names, index));

    /*
     * The decoded struct is the type's own struct followed by ObjectBase, so
     * one argspec_decode() call sees the union of both tables and reports
     * unknown members exactly once. The base table is built here because
     * its offsets depend on the type.
     */
    size_t base_offset = (type->args_size + 15) & ~(size_t) 15;
    const ArgSpec base_members[] = {
        { .name = "qom-type", .type = ARG_STR,
          .offset = base_offset + offsetof(ObjectBase, qom_type),
          .present_offset = ARG_NO_PRESENCE },
        { .name = "id", .type = ARG_STR,
          .offset = base_offset + offsetof(ObjectBase, id),
          .present_offset = ARG_NO_PRESENCE },
        ARG_TABLE_END
    };
    g_autoptr(GPtrArray) tables = g_ptr_array_new();
    g_ptr_array_add(tables, (gpointer) base_members);
    for (size_t i = 0; type->args && type->args[i]; i++) {
        g_ptr_array_add(tables, (gpointer) type->args[i]);
    }
    g_ptr_array_add(tables, NULL);
    const ArgSpec *const *table_list = (const ArgSpec *const *) tables->pdata;

    g_autofree char *decoded = g_malloc0(base_offset + sizeof(ObjectBase));
    if (!argspec_decode(table_list, raw->args, raw->keyval, decoded, errp)) {
        return false;
    }
    ObjectBase *base = (ObjectBase *) (decoded + base_offset);
    bool ok = false;

    if (qmp_object_find(base->id, NULL)) {
        g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                    "attempt to add duplicate property '%s' to object (type 'container')",
                    base->id);
    } else {
        gpointer data = type->create(base->id, decoded, errp);
        ok = data && qmp_object_add(base->id, type, data, errp);
    }
    argspec_clear(table_list, decoded);
    return ok;
}

/* --- object-del --- */

typedef struct {
    char *id;
} ObjectDelArgs;

static const ArgSpec object_del_members[] = {
    ARG_REQUIRED("id", ARG_STR, ObjectDelArgs, id),
    ARG_TABLE_END
};
static const ArgSpec *const object_del_args[] = { object_del_members, NULL };

static bool qmp_object_del_cmd(void *opaque, json_object **ret, GError **errp)
{
    ObjectDelArgs *args = opaque;

    return qmp_object_del(args->id, errp);
}

const QmpCommandDef qapi_object_commands[] = {
    { .name = "object-add", .handler = qmp_object_add_cmd, .flags = QMP_CMD_RAW_ARGS },
    {
        .name = "object-del",
        .args = object_del_args,
        .args_size = sizeof(ObjectDelArgs),
        .handler = qmp_object_del_cmd,
    },
    QMP_COMMAND_END
};

/* --- iothread --- */

/* QEMU's tuning knobs; accepted so that its command lines work, unused. */
typedef struct {
    int64_t poll_max_ns, poll_grow, poll_shrink, aio_max_batch;
    int64_t thread_pool_min, thread_pool_max;
    bool has_poll_max_ns, has_poll_grow, has_poll_shrink, has_aio_max_batch;
    bool has_thread_pool_min, has_thread_pool_max;
} IOThreadArgs;

static const ArgSpec iothread_members[] = {
    ARG_OPTIONAL("poll-max-ns", ARG_INT, IOThreadArgs, poll_max_ns, has_poll_max_ns),
    ARG_OPTIONAL("poll-grow", ARG_INT, IOThreadArgs, poll_grow, has_poll_grow),
    ARG_OPTIONAL("poll-shrink", ARG_INT, IOThreadArgs, poll_shrink, has_poll_shrink),
    ARG_OPTIONAL("aio-max-batch", ARG_INT, IOThreadArgs, aio_max_batch, has_aio_max_batch),
    ARG_OPTIONAL("thread-pool-min", ARG_INT, IOThreadArgs, thread_pool_min,
                 has_thread_pool_min),
    ARG_OPTIONAL("thread-pool-max", ARG_INT, IOThreadArgs, thread_pool_max,
                 has_thread_pool_max),
    ARG_TABLE_END
};
static const ArgSpec *const iothread_args[] = { iothread_members, NULL };

/*
 * The object's data is its GMainContext (see the iothread note in
 * util/qmp-command.h); the thread and loop that run it are found again
 * through this table when the object is destroyed.
 */
typedef struct {
    GMainContext *context;
    GMainLoop *loop;
    GThread *thread;
} IOThread;

static GHashTable *iothreads; /* GMainContext * -> IOThread * */

static gpointer iothread_run(gpointer opaque)
{
    IOThread *iot = opaque;

    g_main_context_push_thread_default(iot->context);
    g_main_loop_run(iot->loop);
    g_main_context_pop_thread_default(iot->context);
    return NULL;
}

static gpointer iothread_create(const char *id, void *args, GError **errp)
{
    IOThread *iot = g_new0(IOThread, 1);
    g_autofree char *name = g_strdup_printf("iothread-%s", id);

    iot->context = g_main_context_new();
    iot->loop = g_main_loop_new(iot->context, FALSE);
    iot->thread = g_thread_try_new(name, iothread_run, iot, errp);
    if (!iot->thread) {
        g_main_loop_unref(iot->loop);
        g_main_context_unref(iot->context);
        g_free(iot);
        return NULL;
    }
    if (!iothreads) {
        iothreads = g_hash_table_new(NULL, NULL);
    }
    g_hash_table_insert(iothreads, iot->context, iot);
    return iot->context;
}

static gboolean iothread_stop(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}

static void iothread_destroy(gpointer data)
{
    IOThread *iot = g_hash_table_lookup(iothreads, data);

    g_return_if_fail(iot != NULL);
    g_hash_table_remove(iothreads, data);
    /* Quit from inside the thread so the loop cannot miss the request. */
    g_main_context_invoke(iot->context, iothread_stop, iot->loop);
    g_thread_join(iot->thread);
    g_main_loop_unref(iot->loop);
    g_main_context_unref(iot->context);
    g_free(iot);
}

static const QmpObjectType iothread_type = {
    .name = "iothread",
    .args = iothread_args,
    .args_size = sizeof(IOThreadArgs),
    .create = iothread_create,
    .destroy = iothread_destroy,
};

/* --- placeholders: TLS credentials and authz --- */

typedef struct {
    char *dir, *priority, *passwordid, *username;
    int endpoint;
    bool verify_peer, sanity_check, loaded;
    bool has_dir, has_endpoint, has_priority, has_passwordid, has_username;
    bool has_verify_peer, has_sanity_check, has_loaded;
} TlsCredsArgs;

static const char *const tls_endpoints[] = { "client", "server", NULL };

#define TLS_CREDS_COMMON_MEMBERS \
    ARG_OPTIONAL("dir", ARG_STR, TlsCredsArgs, dir, has_dir), \
    ARG_ENUM_OPTIONAL("endpoint", tls_endpoints, TlsCredsArgs, endpoint, has_endpoint), \
    ARG_OPTIONAL("verify-peer", ARG_BOOL, TlsCredsArgs, verify_peer, has_verify_peer), \
    ARG_OPTIONAL("priority", ARG_STR, TlsCredsArgs, priority, has_priority), \
    ARG_OPTIONAL("loaded", ARG_BOOL, TlsCredsArgs, loaded, has_loaded)

static const ArgSpec tls_x509_members[] = {
    TLS_CREDS_COMMON_MEMBERS,
    ARG_OPTIONAL("sanity-check", ARG_BOOL, TlsCredsArgs, sanity_check, has_sanity_check),
    ARG_OPTIONAL("passwordid", ARG_STR, TlsCredsArgs, passwordid, has_passwordid),
    ARG_TABLE_END
};
static const ArgSpec *const tls_x509_args[] = { tls_x509_members, NULL };

static const ArgSpec tls_psk_members[] = {
    TLS_CREDS_COMMON_MEMBERS,
    ARG_OPTIONAL("username", ARG_STR, TlsCredsArgs, username, has_username),
    ARG_TABLE_END
};
static const ArgSpec *const tls_psk_args[] = { tls_psk_members, NULL };

typedef struct {
    char *identity;
    bool has_identity;
} AuthzSimpleArgs;

static const ArgSpec authz_simple_members[] = {
    ARG_OPTIONAL("identity", ARG_STR, AuthzSimpleArgs, identity, has_identity),
    ARG_TABLE_END
};
static const ArgSpec *const authz_simple_args[] = { authz_simple_members, NULL };

static gpointer not_supported_yet(const char *id, void *args, GError **errp)
{
    g_set_error(errp, QMP_ERROR, QMP_ERROR_GENERIC,
                "Object '%s': TLS credentials and authorization are not supported yet", id);
    return NULL;
}

static const QmpObjectType tls_x509_placeholder = {
    .name = "tls-creds-x509",
    .args = tls_x509_args,
    .args_size = sizeof(TlsCredsArgs),
    .create = not_supported_yet,
};

static const QmpObjectType tls_psk_placeholder = {
    .name = "tls-creds-psk",
    .args = tls_psk_args,
    .args_size = sizeof(TlsCredsArgs),
    .create = not_supported_yet,
};

static const QmpObjectType authz_simple_placeholder = {
    .name = "authz-simple",
    .args = authz_simple_args,
    .args_size = sizeof(AuthzSimpleArgs),
    .create = not_supported_yet,
};

void qapi_object_types_init(void)
{
    qmp_object_type_register(&iothread_type);
    /* Leave a real implementation that registered first in place. */
    if (!qmp_object_type_find(tls_x509_placeholder.name)) {
        qmp_object_type_register(&tls_x509_placeholder);
    }
    if (!qmp_object_type_find(tls_psk_placeholder.name)) {
        qmp_object_type_register(&tls_psk_placeholder);
    }
    if (!qmp_object_type_find(authz_simple_placeholder.name)) {
        qmp_object_type_register(&authz_simple_placeholder);
    }
}
