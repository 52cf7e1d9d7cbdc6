#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# libberth exports exactly its public API: the functions declared in the
# installed headers (include/berth/), as listed in libberth.syms. Fails on a
# symbol that leaks out of the library, on a public function the library
# does not export, and on a list that has drifted from the headers.
#   check-exports.sh SRCDIR LIBBERTH.so CC
set -eu
src=$1 lib=$2 cc=${3:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# What the list says.
sed -n 's/^ *\([A-Za-z_][A-Za-z0-9_]*\);$/\1/p' "$src/libberth.syms" | sort -u > "$tmp/listed"

# What the library exports (functions and data defined in it).
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u > "$tmp/exported"

# What the public headers declare: every non-static prototype, from gcc.
for h in "$src"/include/berth/*/*.h; do
    echo "#include \"${h#$src/include/}\""
done > "$tmp/all.c"
# shellcheck disable=SC2046
"$cc" -std=gnu11 -D_GNU_SOURCE -I"$src/include" \
    $(pkg-config --cflags glib-2.0 gio-2.0 json-c gnutls) \
    -fsyntax-only -aux-info "$tmp/protos" "$tmp/all.c"
grep 'include/berth/' "$tmp/protos" | grep -v ' static ' |
    sed 's|^/\*[^*]*\*/ extern ||' | sed 's/ (.*//' |
    sed 's/.*[ *]//' | sort -u > "$tmp/declared"

status=0
report() {
    if [ -s "$2" ]; then
        echo "$1:" >&2
        sed 's/^/    /' "$2" >&2
        status=1
    fi
}
comm -23 "$tmp/exported" "$tmp/listed" > "$tmp/leaked"
comm -13 "$tmp/exported" "$tmp/listed" > "$tmp/missing"
comm -23 "$tmp/declared" "$tmp/listed" > "$tmp/unlisted"
comm -13 "$tmp/declared" "$tmp/listed" > "$tmp/stale"
report "exported by libberth but not in libberth.syms" "$tmp/leaked"
report "in libberth.syms but not exported (undefined?)" "$tmp/missing"
report "declared in include/berth/ but not in libberth.syms" "$tmp/unlisted"
report "in libberth.syms but declared in no public header" "$tmp/stale"
[ $status -eq 0 ] && echo "libberth exports $(wc -l < "$tmp/listed") symbols, all public"
exit $status
