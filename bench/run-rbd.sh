#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The rbd row of the matrix (bench/rbd.py): fio over NBD against berthd's and
# qemu-storage-daemon's rbd exports, and `rbd bench`, on a one-node Ceph
# cluster started for the run. Prints a table with ratios.
# Usage: bench/run-rbd.sh [path/to/berthd]   (env: RUNTIME REPS RAMP IMAGE_SIZE_MIB OUT)
set -euo pipefail
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/rbd.py" "$@"
