#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs the Debian packages berth needs to build, run and test, skipping
# those already present. Used by `make run`, `make check`, `make bench` and
# .ci/run. Usage: scripts/install-deps.sh [build|bench|all]
set -euo pipefail

build_pkgs="meson ninja-build pkg-config gcc libglib2.0-dev libgnutls28-dev libjson-c-dev liburing-dev librbd-dev"
# The fuzz targets (.ci/run, docs/security.rst): clang and libFuzzer.
fuzz_pkgs="clang libclang-rt-14-dev"
test_pkgs="python3 python3-docutils systemd python3-libnbd libnbd-bin qemu-utils qemu-system-common nbdkit nbd-server fio gnutls-bin"
# The rbd driver's tests: a one-node cluster (tests/ceph/micro-ceph.sh), the rbd
# tool, and QEMU's rbd driver to compare with.
test_pkgs="$test_pkgs ceph-mon ceph-osd ceph-common qemu-block-extra"
# bench/run.sh: the peers and fio are test packages already; the plot needs gnuplot.
bench_pkgs="gnuplot-nox"

case "${1:-all}" in
    build) pkgs="$build_pkgs" ;;
    *) pkgs="$build_pkgs $test_pkgs $fuzz_pkgs $bench_pkgs" ;;
esac

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "berth: installing missing packages:$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends $missing
