# fleetkey: the two commands of the README, and the steps they are made of.
#   make run    install what is missing, build, start fleetkeyd on ./fleetkey-data
#   make test   install what is missing, build, run every test tier, then again under ASan+UBSan
#   make install  the programs and the fleetkeyd systemd service (README: "Running as a service")
SHELL := /bin/bash
JOBS ?= $(shell nproc)
DATA_DIR ?= ./fleetkey-data
ARGS ?=

.PHONY: all deps build run install test test-release test-asan fuzz-smoke check-style check-deps format bench clean

all: build

deps:
	@./scripts/install-deps.sh

# Release build; the binaries land in build/bin/.
build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

run: build
	@exec build/bin/fleetkeyd --data-dir $(DATA_DIR) $(ARGS)

# The programs and the fleetkeyd systemd service (PREFIX=/usr/local, DESTDIR= for staging).
install: build
	@./scripts/install.sh

test: deps check-style check-deps test-release test-asan fuzz-smoke
	@echo "make test: all tiers passed (release and asan+ubsan)"

test-release: build
	@cd build/release && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

check-style:
	@./tools/check-format.sh

check-deps:
	@./tools/check-deps.sh

format:
	@./tools/check-format.sh --fix

# A short libFuzzer run of every fuzz target (FUZZ_SECONDS=600 make fuzz-smoke for longer).
fuzz-smoke: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-20} ./fuzz/run.sh

bench: build
	@./bench/run.sh

clean:
	rm -rf build
