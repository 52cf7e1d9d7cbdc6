#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Every source file, script and build file carries an SPDX licence line in
# its first three lines. Usage: check-spdx.sh SOURCE_ROOT
set -euo pipefail
cd "$1"
missing=0
while IFS= read -r f; do
    case "$f" in
        *.c|*.h|*.py|*.sh|*meson.build|meson_options.txt|Makefile|.ci/run) ;;
        *) continue ;;
    esac
    [ -f "$f" ] || continue
    if ! head -3 "$f" | grep -q 'SPDX-License-Identifier: '; then
        echo "no SPDX-License-Identifier line: $f"
        missing=$((missing + 1))
    fi
done < <(if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
             git ls-files
         else
             find . -path ./build\* -prune -o -type f -print | sed 's|^\./||'
         fi)
if [ "$missing" -gt 0 ]; then
    echo "$missing file(s) without a licence line"
    exit 1
fi
echo "every file has its SPDX line"
