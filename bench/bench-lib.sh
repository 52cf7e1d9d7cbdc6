# SPDX-License-Identifier: GPL-2.0-or-later
# Shared by the bench/run-*.sh scripts (sourced, not run): the scratch
# directory on tmpfs and the servers' clean-up, waiting for a unix socket,
# and fio runs against two servers with the medians and their ratio printed.
# The sourcing script sets runtime, reps and size first.
# shellcheck shell=bash disable=SC2154

# need TOOL...: exit unless every TOOL is on PATH.
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "bench: $t is needed (scripts/install-deps.sh)"; exit 1; }
    done
}

# bench_dir NAME: a scratch directory $dir on tmpfs, removed at exit after
# killing the background servers whose pids are added to $pids.
bench_dir() {
    dir=$(mktemp -d "/dev/shm/$1.XXXXXX")
    pids=()
    trap cleanup EXIT
}
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}

# wait_sock PATH: wait up to 10 s for a server's unix socket.
wait_sock() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "bench: $1 did not appear"; cat "$dir"/*.log; exit 1
}

run_job() { # server rw bs depth -> IOPS, against $dir/server.sock
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

# compare A A_LABEL B B_LABEL: 4k random and 1M sequential reads and writes,
# each run $reps times per server ($dir/A.sock, $dir/B.sock), alternating;
# prints the median IOPS of each and the A/B ratio.
compare() {
    local a=$1 b=$3 job ma mb
    printf '%-22s %12s %12s %8s\n' workload "$2 IOPS" "$4 IOPS" ratio
    for job in "randread 4k 32" "randwrite 4k 32" "read 1M 8" "write 1M 8"; do
        set -- $job
        local ia=() ib=()
        for _ in $(seq "$reps"); do
            ia+=("$(run_job "$a" "$1" "$2" "$3")")
            ib+=("$(run_job "$b" "$1" "$2" "$3")")
        done
        ma=$(median "${ia[@]}"); mb=$(median "${ib[@]}")
        printf '%-22s %12s %12s %8s\n' "$1 $2 qd$3" "$ma" "$mb" \
            "$(awk -v a="$ma" -v b="$mb" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    done
}
