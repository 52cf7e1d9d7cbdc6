#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# fio (ioengine=nbd) against berthd and nbdkit serving the same file on tmpfs
# over a unix socket, in one run: 4k randread/randwrite at queue depth 32 and
# 1M sequential read/write at depth 8. Each job runs REPS times per server,
# alternating servers; the median IOPS and the berth/nbdkit ratio are printed.
# Usage: bench/run-fio.sh [path/to/berthd]   (env: RUNTIME=5 REPS=3 SIZE=1G)
set -euo pipefail
# shellcheck source=bench/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
berthd=${1:-build/tools/berthd}
runtime=${RUNTIME:-5}
reps=${REPS:-3}
size=${SIZE:-1G}
need fio nbdkit
bench_dir berth-bench

img=$dir/disk.img
# A fully written file, so both servers read real data.
dd if=/dev/urandom of="$img" bs=1M count=$(( $(numfmt --from=iec "$size") / 1048576 )) status=none

"$berthd" --blockdev driver=file,node-name=f0,filename="$img" \
    --nbd-server addr.type=unix,addr.path="$dir/berth.sock" \
    --export type=nbd,id=e0,node-name=f0,name=,writable=on 2>"$dir/berthd.log" &
pids+=($!)
nbdkit --foreground --exit-with-parent -U "$dir/nbdkit.sock" file "$img" 2>"$dir/nbdkit.log" &
pids+=($!)
wait_sock "$dir/berth.sock"
wait_sock "$dir/nbdkit.sock"

compare berth berth nbdkit nbdkit
