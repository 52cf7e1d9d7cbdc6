/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Which strings may name a node, a drive or a block export: QEMU's rule for
 * identifiers, so that names that work with QEMU work with berth and the
 * other way round. Each caller keeps its own error text (QEMU's, which
 * differs per kind of name). A pure function.
 */
#ifndef BERTH_UTIL_ID_H
#define BERTH_UTIL_ID_H

#include <stdbool.h>

/* A letter first, then letters, digits, '-', '.' and '_'. NULL is not. */
bool berth_id_wellformed(const char *id);

#endif
