#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs libberth into a scratch DESTDIR, builds the host program with
# only `pkg-config --cflags --libs berth` from there (so it sees the
# installed public headers, never the private ones of the source tree) and
# runs it. A sanitizer build of libberth needs the host built with the same
# -fsanitize flags.
set -eu
src=$1 builddir=$2 out=$3 sanitize=${4:-none}
dest=$(mktemp -d "${TMPDIR:-/tmp}/berth-embed.XXXXXX")
trap 'rm -rf "$dest"' EXIT
meson install -C "$builddir" --destdir "$dest" --no-rebuild --quiet >/dev/null
pc=$(find "$dest" -name berth.pc | head -n 1)
[ -n "$pc" ] || { echo "berth.pc was not installed" >&2; exit 1; }
# The .pc names the real prefix; point a copy of it into the scratch tree.
mkdir "$dest/pc"
sed "s|^prefix=|prefix=$dest|" "$pc" > "$dest/pc/berth.pc"
export PKG_CONFIG_PATH="$dest/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
flags=$(pkg-config --cflags --libs berth)
san=""
[ "$sanitize" = none ] || san="-fsanitize=$sanitize"
${CC:-cc} -std=gnu11 -Wall -Wextra -Werror $san -o "$out" "$src" $flags
libdir=$(pkg-config --variable=libdir berth)
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$out"
