#!/bin/sh
# Builds embed-host.c with only `pkg-config --cflags --libs berth` (pointed at
# the build tree's uninstalled berth.pc) and runs it. A sanitizer build of
# libberth needs the host built with the same -fsanitize flags.
set -eu
src=$1 builddir=$2 out=$3 sanitize=${4:-none}
export PKG_CONFIG_PATH="$builddir/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
flags=$(pkg-config --cflags --libs berth)
san=""
[ "$sanitize" = none ] || san="-fsanitize=$sanitize"
${CC:-cc} -std=gnu11 -Wall -Wextra -Werror $san -o "$out" "$src" $flags
LD_LIBRARY_PATH="$builddir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$out"
