/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * State shared by the copy-before-write filter's two files: the write path
 * (copy-before-write.c, which owns the state: opened and freed with the
 * node) and the snapshot side (copy-before-write-snapshot.c). Everything in
 * CbwState below `lock` is guarded by it; the rest is fixed at open.
 * Private to those two files.
 */
#ifndef BERTH_BLOCK_COPY_BEFORE_WRITE_INT_H
#define BERTH_BLOCK_COPY_BEFORE_WRITE_INT_H

#include "block/copy-before-write.h"

G_BEGIN_DECLS

enum {
    CL_COPY = 1,        /* still to copy before it may change */
    CL_BUSY = 2,        /* a write is copying it */
    CL_DONE = 4,        /* copied: the snapshot's bytes are in target */
    CL_ACCESS = 8,      /* readable through the snapshot */
};

typedef enum { ON_CBW_ERROR_BREAK_GUEST_WRITE, ON_CBW_ERROR_BREAK_SNAPSHOT } OnCbwError;

typedef struct CbwWrite CbwWrite;

/* A snapshot read of clusters [first, end) of file, in flight. */
typedef struct CbwFrozen {
    uint64_t first, end;
    struct CbwFrozen *prev, *next;
} CbwFrozen;

typedef struct CbwState {
    BlockDriverState *file;     /* bs->children's references */
    BlockDriverState *target;
    uint64_t cluster;           /* bytes, a power of two */
    unsigned shift;
    uint64_t size;              /* of the snapshot, fixed at open */
    uint64_t n_clusters;
    OnCbwError on_error;

    GMutex lock;                /* guards everything below */
    uint8_t *state;             /* CL_* per cluster */
    CbwFrozen *frozen;
    CbwWrite *waiters;          /* writes waiting for a change of state */
    int snapshot_error;         /* -errno once broken (break-snapshot) */
} CbwState;

/* The writes waiting for a change of state, taken off the list (lock held). */
CbwWrite *cbw_take_waiters_locked(CbwState *s);
/* Let each of them look again (no lock held): they go on or wait again. */
void cbw_wake_waiters(CbwWrite *list);

G_END_DECLS

#endif
