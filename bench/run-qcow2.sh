#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The qcow2 row of the matrix (bench/qcow2.py): fio over NBD against berthd's
# and qemu-storage-daemon's exports of a fully allocated qcow2 image and of
# the same data as a raw file, on tmpfs. Prints a table with ratios.
# Usage: bench/run-qcow2.sh [path/to/berthd]   (env: RUNTIME REPS RAMP IMAGE_SIZE_MIB WORKLOADS OUT)
set -euo pipefail
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/qcow2.py" "$@"
