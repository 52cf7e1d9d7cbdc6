#!/usr/bin/env bash
# fio (ioengine=nbd) against berthd and nbdkit serving the same file on tmpfs
# over a unix socket, in one run: 4k randread/randwrite at queue depth 32 and
# 1M sequential read/write at depth 8. Each job runs REPS times per server,
# alternating servers; the median IOPS and the berth/nbdkit ratio are printed.
# Usage: bench/run-fio.sh [path/to/berthd]   (env: RUNTIME=5 REPS=3 SIZE=1G)
set -euo pipefail
berthd=${1:-build/tools/berthd}
runtime=${RUNTIME:-5}
reps=${REPS:-3}
size=${SIZE:-1G}
command -v fio >/dev/null && command -v nbdkit >/dev/null || {
    echo "bench: fio and nbdkit are needed (scripts/install-deps.sh)"; exit 1; }

dir=$(mktemp -d /dev/shm/berth-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

img=$dir/disk.img
# A fully written file, so both servers read real data.
dd if=/dev/urandom of="$img" bs=1M count=$(( $(numfmt --from=iec "$size") / 1048576 )) status=none

"$berthd" --blockdev driver=file,node-name=f0,filename="$img" \
    --nbd-server addr.type=unix,addr.path="$dir/berth.sock" \
    --export type=nbd,id=e0,node-name=f0,name=,writable=on 2>"$dir/berthd.log" &
pids+=($!)
nbdkit --foreground --exit-with-parent -U "$dir/nbdkit.sock" file "$img" 2>"$dir/nbdkit.log" &
pids+=($!)
for s in berth nbdkit; do
    for _ in $(seq 100); do [ -S "$dir/$s.sock" ] && break; sleep 0.1; done
    [ -S "$dir/$s.sock" ] || { echo "bench: $s did not start"; cat "$dir/$s"*.log; exit 1; }
done

run_job() { # server rw bs depth -> IOPS
    local out
    out=$(fio --output-format=json --name=job --ioengine=nbd \
        --uri="nbd+unix:///?socket=$dir/$1.sock" --rw="$2" --bs="$3" --iodepth="$4" \
        --size="$size" --time_based --runtime="$runtime" --ramp_time=1 2>/dev/null)
    /usr/bin/python3 -c '
import json, sys
text = sys.stdin.read()  # fio may print a line before the JSON
j = json.loads(text[text.index("{"):])["jobs"][0]
print(int(j["read"]["iops"] + j["write"]["iops"]))' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-22s %12s %12s %8s\n' workload "berth IOPS" "nbdkit IOPS" ratio
for job in "randread 4k 32" "randwrite 4k 32" "read 1M 8" "write 1M 8"; do
    set -- $job
    b=(); k=()
    for _ in $(seq "$reps"); do
        b+=("$(run_job berth "$1" "$2" "$3")")
        k+=("$(run_job nbdkit "$1" "$2" "$3")")
    done
    mb=$(median "${b[@]}"); mk=$(median "${k[@]}")
    printf '%-22s %12s %12s %8s\n' "$1 $2 qd$3" "$mb" "$mk" \
        "$(awk -v a="$mb" -v b="$mk" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done
