/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * object-add and object-del over the object table of util/qmp-command.h,
 * and the "iothread" object type (an I/O thread of util/iothread.h, whose
 * context exports may move their data path to). TLS credentials and authz
 * objects belong to io/ (io/tls-creds.c) and are registered from here with
 * the rest.
 */
#include "berth/qapi/qapi.h"
#include "qapi/module-commands.h"

#include "berth/io/authz.h"
#include "berth/io/secret.h"
#include "berth/io/tls-creds.h"
#include "util/iothread.h"

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
        qmp_error_setg(errp, "attempt to add duplicate property '%s' to object (type 'container')",
                       base->id);
    } else {
        gpointer data = type->create_ex
                        ? type->create_ex(base->id, decoded, raw->keyval, errp)
                        : type->create(base->id, decoded, errp);
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

/* For query-qmp-schema: qom-type and id, then each type's own members. */
static const ArgSpec object_add_base_members[] = {
    { .name = "qom-type", .type = ARG_STR, .present_offset = ARG_NO_PRESENCE },
    { .name = "id", .type = ARG_STR, .present_offset = ARG_NO_PRESENCE },
    ARG_TABLE_END
};
static const ArgSpec *const object_add_base[] = { object_add_base_members, NULL };

typedef struct {
    QmpVariantFunc fn;
    gpointer opaque;
} TypeVariant;

static void object_type_variant(const QmpObjectType *type, gpointer opaque)
{
    TypeVariant *tv = opaque;
    tv->fn(type->name, type->args, tv->opaque);
}

static void object_add_variants(QmpVariantFunc fn, gpointer opaque)
{
    TypeVariant tv = { fn, opaque };
    qmp_object_type_foreach(object_type_variant, &tv);
}

static const QmpArgsUnion object_add_schema = {
    .base = object_add_base, .tag = "qom-type", .foreach_variant = object_add_variants,
};

const QmpCommandDef qapi_object_commands[] = {
    { .name = "object-add", .handler = qmp_object_add_cmd, .flags = QMP_CMD_RAW_ARGS,
      .raw_schema = &object_add_schema },
    {
        .name = "object-del",
        .args = object_del_args,
        .args_size = sizeof(ObjectDelArgs),
        .handler = qmp_object_del_cmd,
    },
    QMP_COMMAND_END
};

/* --- iothread --- */

/*
 * QEMU's tuning knobs. poll-max-ns, poll-grow and poll-shrink set the
 * thread's adaptive polling (util/iothread.h). QEMU polls for up to 32768
 * ns by default, looking at rings in memory; berth's polling looks with
 * poll() system calls, which on this project's 2-vCPU machine cost more
 * than the wake-ups they save (4k reads at queue depth 1 of a null node:
 * about 49k IOPS polling against 62k without), so it is off unless asked
 * for (docs/qmp.rst). aio-max-batch and the thread-pool sizes have no counterpart
 * in berth (no batch limit; one worker pool for the process): their
 * defaults are accepted so that QEMU's command lines work, other values are
 * refused.
 */
#define IOTHREAD_POLL_MAX_NS_DEFAULT 0
#define IOTHREAD_THREAD_POOL_MAX_DEFAULT 64

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
 * The object's data is its thread's GMainContext (see the iothread note in
 * util/qmp-command.h); the thread itself is found again through this table
 * when the object is destroyed.
 */
static GHashTable *iothreads; /* GMainContext * -> BerthIOThread * */

static bool check_non_negative(bool given, int64_t value, const char *name, GError **errp)
{
    if (given && value < 0) {
        qmp_error_setg(errp, "%s value must be in range [0, %" G_GINT64_FORMAT "]", name,
                       G_MAXINT64);
        return false;
    }
    return true;
}

static gpointer iothread_create(const char *id, void *opaque, GError **errp)
{
    IOThreadArgs *args = opaque;
    if (!check_non_negative(args->has_poll_max_ns, args->poll_max_ns, "poll-max-ns", errp) ||
        !check_non_negative(args->has_poll_grow, args->poll_grow, "poll-grow", errp) ||
        !check_non_negative(args->has_poll_shrink, args->poll_shrink, "poll-shrink", errp) ||
        !check_non_negative(args->has_aio_max_batch, args->aio_max_batch, "aio-max-batch",
                            errp)) {
        return NULL;
    }
    int64_t pool_min = args->has_thread_pool_min ? args->thread_pool_min : 0;
    int64_t pool_max = args->has_thread_pool_max ? args->thread_pool_max
                                                 : IOTHREAD_THREAD_POOL_MAX_DEFAULT;
    if (pool_min < 0 || pool_max < 0 || pool_min > pool_max) {
        qmp_error_setg(errp, "bad thread-pool-min/thread-pool-max values");
        return NULL;
    }
    if (args->has_aio_max_batch && args->aio_max_batch != 0) {
        qmp_error_setg(errp, "aio-max-batch=%" G_GINT64_FORMAT " is not supported: berth "
                       "sets no batch limit (only 0, the default, is accepted)",
                       args->aio_max_batch);
        return NULL;
    }
    if (pool_min != 0 || pool_max != IOTHREAD_THREAD_POOL_MAX_DEFAULT) {
        qmp_error_setg(errp, "thread-pool-min=%" G_GINT64_FORMAT " thread-pool-max=%"
                       G_GINT64_FORMAT " is not supported: berth has one worker pool for "
                       "the whole process (only the defaults, 0 and %d, are accepted)",
                       pool_min, pool_max, IOTHREAD_THREAD_POOL_MAX_DEFAULT);
        return NULL;
    }
    BerthIOThreadPolling polling = {
        .max_ns = args->has_poll_max_ns ? args->poll_max_ns : IOTHREAD_POLL_MAX_NS_DEFAULT,
        .grow = args->has_poll_grow ? args->poll_grow : 0,
        .shrink = args->has_poll_shrink ? args->poll_shrink : 0,
    };
    g_autofree char *name = g_strdup_printf("iothread-%s", id);
    BerthIOThread *iot = berth_iothread_new_polling(name, &polling, errp);

    if (!iot) {
        return NULL;
    }
    if (!iothreads) {
        iothreads = g_hash_table_new(NULL, NULL);
    }
    GMainContext *ctx = berth_iothread_get_context(iot);
    g_hash_table_insert(iothreads, ctx, iot);
    return ctx;
}

static void iothread_destroy(gpointer data)
{
    BerthIOThread *iot = iothreads ? g_hash_table_lookup(iothreads, data) : NULL;

    g_return_if_fail(iot != NULL);
    g_hash_table_remove(iothreads, data);
    berth_iothread_free(iot);
}

static const QmpObjectType iothread_type = {
    .name = "iothread",
    .args = iothread_args,
    .args_size = sizeof(IOThreadArgs),
    .create = iothread_create,
    .destroy = iothread_destroy,
};

void qapi_object_types_init(void)
{
    qmp_object_type_register(&iothread_type);
    /* TLS credentials, secrets and authz live with the channels that use them. */
    berth_secret_object_type_init();
    berth_authz_object_types_init();
    berth_tls_object_types_init();
}
