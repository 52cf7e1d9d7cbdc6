# SPDX-License-Identifier: GPL-2.0-or-later
# Convenience wrapper over meson, in the manner of QEMU's top-level Makefile.
#   make run    build, then serve the embedded default (1 GiB memory disk on
#               127.0.0.1:10809, QMP on ./berth-qmp.sock)
#   make check  build, then run every test (unit + functional)
#   make bench  build, then run the benchmark matrix against nbdkit,
#               qemu-storage-daemon and qemu-nbd (bench/run.sh; a report,
#               never pass/fail; env RUNTIME, REPS, SIZE, QUICK=1, OUT)
BUILD ?= build
MESON_FLAGS ?=

.PHONY: all deps deps-build deps-bench build run check check-unit bench clean

all: build

deps:
	@scripts/install-deps.sh all

deps-build:
	@scripts/install-deps.sh build

deps-bench:
	@scripts/install-deps.sh bench

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

build: deps-build $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	$(BUILD)/tools/berthd

check: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)
	meson test -C $(BUILD) --print-errorlogs

check-unit: deps-build $(BUILD)/build.ninja
	ninja -C $(BUILD)
	meson test -C $(BUILD) --suite unit --print-errorlogs

bench: deps-bench $(BUILD)/build.ninja
	ninja -C $(BUILD)
	bench/run.sh $(BUILD)/tools/berthd

clean:
	rm -rf $(BUILD)
