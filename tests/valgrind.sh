#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# valgrind memcheck over berth; fails on any memory error or definite leak.
#
#   tests/valgrind.sh [--unit] [--functional] [BUILDDIR]
#
# --unit (the default): every unit test program under memcheck.
# --functional: the functional suite with berthd under memcheck
#   (BERTH_VALGRIND=1, see tests/functional/berth_harness.py).
# BUILDDIR (default build-valgrind) is set up when missing with
# -Dio_uring=disabled: valgrind does not model io_uring, so the file driver
# uses its worker threads there (aio=threads). docs/testing.rst has more.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=0
functional=0
builddir=build-valgrind
for arg in "$@"; do
    case "$arg" in
    --unit) unit=1 ;;
    --functional) functional=1 ;;
    -h|--help) sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "valgrind.sh: unknown option $arg" >&2; exit 2 ;;
    *) builddir=$arg ;;
    esac
done
if [ "$unit" = 0 ] && [ "$functional" = 0 ]; then
    unit=1
fi
if ! command -v valgrind >/dev/null; then
    echo "valgrind.sh: valgrind is not installed" >&2
    exit 1
fi
if [ ! -f "$builddir/build.ninja" ]; then
    meson setup "$builddir" -Dio_uring=disabled
fi
ninja -C "$builddir"

supp=$PWD/tests/valgrind.supp
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
vg="$vg --show-leak-kinds=definite --suppressions=$supp"

if [ "$unit" = 1 ]; then
    # The C test programs only: exports, spdx and embed-* are shell scripts
    # (the embed programs are built by the script, against the installed
    # flags, so the wrapper would watch the compiler).
    mapfile -t tests < <(meson test -C "$builddir" --no-rebuild --list --suite unit 2>/dev/null |
                         sed -n 's|^berth:unit / ||p' | grep -v -x -e exports -e spdx -e 'embed-.*')
    meson test -C "$builddir" --no-rebuild --print-errorlogs --timeout-multiplier 4 \
        --wrapper "$vg" "${tests[@]}"
fi
if [ "$functional" = 1 ]; then
    BERTH_VALGRIND=1 meson test -C "$builddir" --no-rebuild --print-errorlogs \
        --timeout-multiplier 4 --suite functional
fi
