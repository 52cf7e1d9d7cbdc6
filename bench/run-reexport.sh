#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The NBD client under load: berthd and qemu-storage-daemon each open the same
# nbdkit export (memory plugin) with driver=nbd and re-export it; fio
# (ioengine=nbd) then runs against each re-export, alternating daemons. The
# medians and the berth/QSD ratio are printed. Report only, never pass/fail.
# Usage: bench/run-reexport.sh [path/to/berthd]   (env: RUNTIME=4 REPS=3 SIZE=256M)
set -euo pipefail
# shellcheck source=bench/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
berthd=${1:-build/tools/berthd}
runtime=${RUNTIME:-4}
reps=${REPS:-3}
size=${SIZE:-256M}
need fio nbdkit qemu-storage-daemon
bench_dir berth-reexport

nbdkit --foreground --exit-with-parent -U "$dir/peer.sock" memory "$size" 2>"$dir/nbdkit.log" &
pids+=($!)
wait_sock "$dir/peer.sock"
for d in berth qsd; do
    bin=$berthd
    [ "$d" = qsd ] && bin=qemu-storage-daemon
    "$bin" --blockdev driver=nbd,node-name=n0,server.type=unix,server.path="$dir/peer.sock" \
        --nbd-server addr.type=unix,addr.path="$dir/$d.sock" \
        --export type=nbd,id=e0,node-name=n0,name=,writable=on 2>"$dir/$d.log" &
    pids+=($!)
    wait_sock "$dir/$d.sock"
done

echo "re-export of an nbdkit memory export through driver=nbd"
compare berth berth qsd QSD
