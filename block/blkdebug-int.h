/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rules of a blkdebug node (blkdebug-rules.c), apart from the driver
 * (blkdebug.c): QEMU's inject-error and set-state lists, the node's state
 * and its active rules. Private to block/.
 *
 * The model is QEMU's: a node has a state, 1 when it opens. When an event
 * fires, the rules for that event whose state is the current one (or which
 * have none, state 0) act: the inject-error ones replace the active rules
 * (if any of them act; otherwise the active rules stay), and a set-state
 * rule gives the state the event leaves behind (the first such rule in the
 * list, when several act). A request then fails with the first active rule
 * that covers its offset and type; a once rule that fails a request is
 * gone for good. Active rules stay active for later requests until another
 * event's inject-error rules replace them, whatever the state.
 *
 * Threads: one BlkdebugRules is shared by every thread that submits to the
 * node; blkdebug_rules_request() takes its lock. Parsing and clearing are
 * for the opening and closing thread only.
 */
#ifndef BERTH_BLOCK_BLKDEBUG_INT_H
#define BERTH_BLOCK_BLKDEBUG_INT_H

#include "block/block-int.h"

#include "util/json.h"

/* BlkdebugIOType, in QEMU's order; bit i of a mask is value i. */
enum {
    BLKDEBUG_IO_READ,
    BLKDEBUG_IO_WRITE,
    BLKDEBUG_IO_WRITE_ZEROES,
    BLKDEBUG_IO_DISCARD,
    BLKDEBUG_IO_FLUSH,
    BLKDEBUG_IO_BLOCK_STATUS,
    BLKDEBUG_IO_N
};

#define BLKDEBUG_MAX_RULES 1024
/* Most events one request fires (none, write_aio, pwritev for a write). */
#define BLKDEBUG_MAX_FIRED 4

typedef struct BlkdebugInject {
    int event;              /* index into blkdebug_event_names */
    int64_t state;          /* acts only in this state; 0: in any */
    guint iotypes;          /* mask of the request types it fails */
    int error;              /* positive errno; 0 lets the request through */
    int64_t offset;         /* a byte the request must cover, or -1 */
    bool once;
    bool immediately;       /* fail without the node's delay */
    bool removed;           /* a once rule that failed a request */
} BlkdebugInject;

typedef struct BlkdebugSetState {
    int event;
    int64_t state;          /* 0: in any */
    int64_t new_state;
} BlkdebugSetState;

typedef struct BlkdebugRules {
    GMutex lock;            /* through util/tsan.h */
    int64_t state;
    BlkdebugInject *inject;
    guint n_inject;
    BlkdebugSetState *set_state;
    guint n_set_state;
    guint *active;          /* indices into inject, in list order */
    guint n_active;
    /* The events a request of each type fires, in firing order. */
    int fired[BLKDEBUG_IO_N][BLKDEBUG_MAX_FIRED];
    guint n_fired[BLKDEBUG_IO_N];
} BlkdebugRules;

/* What a request of one type makes fail, if anything. */
typedef struct BlkdebugVerdict {
    int error;              /* 0: the request goes on */
    bool immediately;
} BlkdebugVerdict;

/* QEMU 7.2's BlkdebugEvent names, NULL-terminated. */
extern const char *const blkdebug_event_names[];
extern const char *const blkdebug_iotype_names[];

/* Initialises *r (state 1, no rules), then decodes the inject-error and
 * set-state lists (either may be NULL) as QEMU does, refusing events berth
 * does not fire. On failure *r is cleared again. */
bool blkdebug_rules_init(BlkdebugRules *r, json_object *inject, json_object *set_state,
                         bool keyval, GError **errp);
void blkdebug_rules_clear(BlkdebugRules *r);

/* Fires the events a request of this type (BLKDEBUG_IO_*) fires at a berth
 * blkdebug node, then checks the request against the active rules. */
BlkdebugVerdict blkdebug_rules_request(BlkdebugRules *r, int iotype, uint64_t offset,
                                       uint64_t bytes);

/* The current state (for tests and queries). */
int64_t blkdebug_rules_state(BlkdebugRules *r);

#endif
