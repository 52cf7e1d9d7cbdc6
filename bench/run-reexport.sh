#!/usr/bin/env bash
# The NBD client under load: berthd and qemu-storage-daemon each open the same
# nbdkit export (memory plugin) with driver=nbd and re-export it; fio
# (ioengine=nbd) then runs against each re-export, alternating daemons. The
# medians and the berth/QSD ratio are printed. Report only, never pass/fail.
# Usage: bench/run-reexport.sh [path/to/berthd]   (env: RUNTIME=4 REPS=3 SIZE=256M)
set -euo pipefail
berthd=${1:-build/tools/berthd}
runtime=${RUNTIME:-4}
reps=${REPS:-3}
size=${SIZE:-256M}
for t in fio nbdkit qemu-storage-daemon; do
    command -v "$t" >/dev/null || { echo "bench: $t is needed (scripts/install-deps.sh)"; exit 1; }
done

dir=$(mktemp -d /dev/shm/berth-reexport.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

wait_sock() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "bench: $1 did not appear"; cat "$dir"/*.log; exit 1
}

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

run_job() { # daemon rw bs depth -> IOPS
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

echo "re-export of an nbdkit memory export through driver=nbd"
printf '%-22s %12s %12s %8s\n' workload "berth IOPS" "QSD IOPS" ratio
for job in "randread 4k 32" "randwrite 4k 32" "read 1M 8" "write 1M 8"; do
    set -- $job
    b=(); q=()
    for _ in $(seq "$reps"); do
        b+=("$(run_job berth "$1" "$2" "$3")")
        q+=("$(run_job qsd "$1" "$2" "$3")")
    done
    mb=$(median "${b[@]}"); mq=$(median "${q[@]}")
    printf '%-22s %12s %12s %8s\n' "$1 $2 qd$3" "$mb" "$mq" \
        "$(awk -v a="$mb" -v b="$mq" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done
