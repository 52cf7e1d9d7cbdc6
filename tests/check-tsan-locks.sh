#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# berth locks every GMutex and waits on every GCond through util/tsan.h's
# wrappers, which tell ThreadSanitizer what the (uninstrumented) GLib call
# does; a bare call would make the TSan build report races that are not
# there (docs/testing.rst). Usage: check-tsan-locks.sh SOURCE_ROOT
set -euo pipefail
cd "$1"
pattern='\bg_(mutex_lock|mutex_unlock|mutex_trylock|mutex_clear|cond_wait|cond_wait_until)[[:space:]]*\('
if found=$(grep -rnE "$pattern" --include='*.c' --include='*.h' \
               block io monitor nbd qapi tools util include tests/unit tests/embed |
           grep -v '^util/tsan.h:'); then
    echo "$found"
    echo "use berth_mutex_lock() and friends (util/tsan.h) for the calls above"
    exit 1
fi
echo "every GMutex and GCond goes through util/tsan.h"
