# SPDX-License-Identifier: GPL-2.0-or-later
# Convenience wrapper over meson, in the manner of QEMU's top-level Makefile.
#   make run    build, then serve the embedded default (1 GiB memory disk on
#               127.0.0.1:10809, QMP on ./berth-qmp.sock)
#   make check  build, then run every test (unit + functional)
BUILD ?= build
MESON_FLAGS ?=

.PHONY: all deps deps-build build run check check-unit clean

all: build

deps:
	@scripts/install-deps.sh all

deps-build:
	@scripts/install-deps.sh build

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

clean:
	rm -rf $(BUILD)
