# diten: the two entry points of the README's quick start.
#   make demo   sets up and runs the main job
#   make test   sets up and runs every check CI runs
# Both are idempotent: each step installs only what is missing.

SHELL := /bin/bash
CARGO ?= cargo
THUMB := thumbv7em-none-eabihf

# libtorch for tch 0.26: PyTorch 2.13.0 from PyPI in a virtual environment outside
# the clone (later clones reuse it). `libtorch` is a stable link to its `torch`
# package folder; tch finds it through LIBTORCH and the `diten` binary gets an
# rpath to its lib/ (trainer/build.rs), so it runs without extra environment.
TORCH_VERSION := 2.13.0
TORCH_VENV ?= $(HOME)/.cache/diten/torch-$(TORCH_VERSION)
export LIBTORCH ?= $(TORCH_VENV)/libtorch

.PHONY: setup torch demo test fmt lint unit thumb bench

setup: torch
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup target list --installed 2>/dev/null | grep -q '^$(THUMB)$$' || rustup target add $(THUMB)

torch:
	@if [ ! -e "$(LIBTORCH)/lib/libtorch_cpu.so" ]; then \
	  echo "== installing torch==$(TORCH_VERSION) into $(TORCH_VENV) (about 4.7 GB, once)" >&2; \
	  python3 -m venv "$(TORCH_VENV)" && \
	  "$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)" && \
	  ln -sfn "$$("$(TORCH_VENV)/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)" "$(TORCH_VENV)/libtorch"; \
	fi
	@test -e "$(LIBTORCH)/lib/libtorch_cpu.so" || { echo "error: no libtorch at $(LIBTORCH)" >&2; exit 1; }

demo: setup
	$(CARGO) build --release -p diten-trainer --bin diten
	@echo "== diten solve on SPEC §3.1's example slot" >&2
	./target/release/diten solve --instance examples/spec-slot.json
	@echo "== diten solve on a crowded 20-user, 21-server slot" >&2
	./target/release/diten solve --instance examples/u20-s21.json
	@echo "== diten compare: the baselines on 20 users, 9 and 15 servers, 150 slots, 2 seeds" >&2
	./target/release/diten compare --servers 9,15 --emd 0.2 --slots 150 --seeds 2 \
	    --policy nearest,nearest-random,sticky --out runs/demo-compare

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# the build without libtorch must keep working (solve, evaluate, compare)
	$(CARGO) clippy -p diten-trainer --no-default-features --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# Proves diten-controller is really no_std: it must build for a bare Cortex-M4F.
thumb:
	$(CARGO) build -p diten-controller --target $(THUMB) --release

test: setup fmt lint unit thumb

bench: setup
	$(CARGO) bench -p diten-controller --bench gamma
	$(CARGO) bench -p diten-controller --bench gamma --features std
	$(CARGO) bench -p diten-trainer --bench env
