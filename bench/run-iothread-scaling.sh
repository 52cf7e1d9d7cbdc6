#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# I/O-thread scaling of berthd, on its own: fio (ioengine=nbd, one
# connection per job, unix socket) against null-co (or memory) exports in
# four layouts, each run REPS times in turn, printing the median IOPS and
# MiB/s of every layout:
#   main x1    one export on the main loop, one fio job
#   main x2    two exports on the main loop, two jobs at once
#   io x1      one export on --object iothread io0, one job
#   io x2      two exports on io0 and io1, two jobs at once
# "io x2 / io x1" is the scaling figure; on a machine with N cores it can
# approach min(N - 1, 2) with fio's own threads competing for the cores.
# A report only: nothing here passes or fails on a figure.
# Usage: bench/run-iothread-scaling.sh [path/to/berthd]
#   env: RUNTIME=5 (s per run) REPS=3 RW=randread BS=4k QD=32 DRIVER=null-co|memory
set -euo pipefail

BERTHD=${1:-$(dirname "${BASH_SOURCE[0]}")/../build/tools/berthd}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
RW=${RW:-randread}
BS=${BS:-4k}
QD=${QD:-32}
DRIVER=${DRIVER:-null-co}
SIZE=$((1024 * 1024 * 1024))

command -v fio >/dev/null || { echo "fio not found" >&2; exit 1; }
[ -x "$BERTHD" ] || { echo "berthd not found at $BERTHD" >&2; exit 1; }

DIR=$(mktemp -d /tmp/berth-iot-bench.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

node() {   # node NAME
    case "$DRIVER" in
    null-co) echo "driver=null-co,node-name=$1,size=$SIZE,read-zeroes=off" ;;
    memory)  echo "driver=memory,node-name=$1,size=$SIZE" ;;
    *) echo "DRIVER must be null-co or memory" >&2; exit 1 ;;
    esac
}

# start_berthd N_EXPORTS IOTHREADS(yes|no)
start_berthd() {
    local n=$1 iot=$2 args=() i
    rm -f "$DIR/nbd.sock"
    for ((i = 0; i < n; i++)); do
        if [ "$iot" = yes ]; then args+=(--object "iothread,id=io$i"); fi
        args+=(--blockdev "$(node "n$i")")
    done
    args+=(--nbd-server "addr.type=unix,addr.path=$DIR/nbd.sock")
    for ((i = 0; i < n; i++)); do
        local e="type=nbd,id=e$i,node-name=n$i,name=e$i,writable=on"
        if [ "$iot" = yes ]; then e+=",iothread=io$i"; fi
        args+=(--export "$e")
    done
    "$BERTHD" "${args[@]}" 2>"$DIR/berthd.log" &
    PID=$!
    for ((i = 0; i < 100; i++)); do
        [ -S "$DIR/nbd.sock" ] && return 0
        sleep 0.05
    done
    echo "berthd did not start:" >&2; cat "$DIR/berthd.log" >&2; exit 1
}

stop_berthd() {
    kill "$PID"; wait "$PID" || true; PID=
}

# run_fio N_JOBS: prints "IOPS MIBS" summed over the jobs
run_fio() {
    local n=$1 jobs=() i
    for ((i = 0; i < n; i++)); do
        jobs+=(--name="e$i" --uri="nbd+unix:///e$i?socket=$DIR/nbd.sock")
    done
    fio --ioengine=nbd --rw="$RW" --bs="$BS" --iodepth="$QD" --size=$SIZE \
        --time_based --runtime="$RUNTIME" --ramp_time=1 \
        --output-format=json "${jobs[@]}" > "$DIR/fio.json"
    /usr/bin/python3 - "$DIR/fio.json" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
jobs = json.loads(text[text.index("{"):])["jobs"]     # after fio's "connected" lines
iops = sum(j[d]["iops"] for j in jobs for d in ("read", "write"))
bw = sum(j[d]["bw_bytes"] for j in jobs for d in ("read", "write")) / 2**20
print("%.0f %.1f" % (iops, bw))
EOF
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A IOPS BW
LAYOUTS=("main x1:1:no" "main x2:2:no" "io x1:1:yes" "io x2:2:yes")
echo "berthd $BERTHD; $DRIVER; fio $RW bs=$BS iodepth=$QD, ${RUNTIME}s x $REPS; $(nproc) cores"
for ((r = 1; r <= REPS; r++)); do
    for l in "${LAYOUTS[@]}"; do
        IFS=: read -r name n iot <<< "$l"
        start_berthd "$n" "$iot"
        read -r iops bw < <(run_fio "$n")
        stop_berthd
        IOPS[$name]+="$iops "
        BW[$name]+="$bw "
        printf '  rep %d  %-8s %10s IOPS %9s MiB/s\n' "$r" "$name" "$iops" "$bw"
    done
done
echo
printf '%-8s %12s %12s   (medians of %d)\n' layout IOPS MiB/s "$REPS"
declare -A MED
for l in "${LAYOUTS[@]}"; do
    name=${l%%:*}
    MED[$name]=$(tr ' ' '\n' <<< "${IOPS[$name]}" | grep . | median)
    bw=$(tr ' ' '\n' <<< "${BW[$name]}" | grep . | median)
    printf '%-8s %12s %12s\n' "$name" "${MED[$name]}" "$bw"
done
awk -v a="${MED[io x2]}" -v b="${MED[io x1]}" -v c="${MED[main x2]}" \
    'BEGIN { printf "io x2 / io x1 = %.2f;  io x2 / main x2 = %.2f\n", a / b, a / c }'
