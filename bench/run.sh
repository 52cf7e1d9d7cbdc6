#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The whole benchmark matrix (bench/bench.py): berthd, nbdkit,
# qemu-storage-daemon and qemu-nbd on files on tmpfs and on disk, null devices
# and an NBD re-export; I/O-thread scaling, nbdcopy multi-conn and QMP latency
# under load. Results (CSV, markdown, plot) go to bench/results/<timestamp>/
# or $OUT. A report only: the exit status says whether the tool ran, never
# whether a figure was good.
# Usage: bench/run.sh [path/to/berthd]   (env: RUNTIME REPS SIZE QUICK=1 ...;
# see bench/bench.py)
set -euo pipefail
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/bench.py" "$@"
