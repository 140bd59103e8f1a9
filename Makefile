# diten: the two entry points of the README's quick start.
#   make demo   builds (without libtorch or tract-onnx) and runs the main job
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

.PHONY: setup torch demo test fmt lint unit thumb bench fuzz

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

# The demo trains nothing, so it builds `diten` without the `torch` feature: no
# libtorch download (4.7 GB) and no torch-sys build on first contact. It reads no
# ONNX graph either (it runs the shipped policy.bin), so `--no-default-features`
# also leaves out `onnx`: tract-onnx was four fifths of this build's CPU time
# (README, performance). Such a `diten` fails with one line on a `.onnx` input.
demo:
	$(CARGO) build --release -p diten-trainer --no-default-features --bin diten
	@echo "== diten solve on SPEC §3.1's example slot" >&2
	./target/release/diten solve --instance examples/spec-slot.json
	@echo "== diten solve on a crowded 20-user, 21-server slot" >&2
	./target/release/diten solve --instance examples/u20-s21.json
	@echo "== diten demo: the shipped size-agnostic policy on 20 users and 15 servers through the controller vs the baselines, 750 slots" >&2
	./target/release/diten demo --out runs/demo

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# the builds without libtorch must keep working: `make demo`'s (no `onnx`
	@# either: solve, evaluate, compare, demo) and the Python package's (`onnx`)
	$(CARGO) clippy -p diten-trainer --no-default-features --all-targets -- -D warnings
	$(CARGO) clippy -p diten-trainer --no-default-features --features onnx --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# Proves diten-controller is really no_std: it must build for a bare Cortex-M4F.
thumb:
	$(CARGO) build -p diten-controller --target $(THUMB) --release

# The firmware test in `unit` needs what `firmware` installs, so it comes first.
test: setup fmt lint firmware unit thumb pytest

# The Python package (python/, module `diten`, built by maturin) and its tests, in a
# virtual environment outside the clone that later clones reuse. Here the wheel is
# built with cargo's dev profile, so it reuses the debug dependencies `unit` has
# just built instead of compiling them all again in release (`pip install ./python`
# alone builds release); the tests check the module against the debug `diten`
# binary `unit` built. Ray is installed for the sweep test
# (python/tests/test_ray.py, skipped where ray is missing); onnx and onnxruntime
# for the size-agnostic ONNX models (python/tests/test_onnx_general.py).
PY_VENV ?= $(HOME)/.cache/diten/py
PY_PACKAGES := maturin pytest gymnasium numpy pandas ray onnx onnxruntime
.PHONY: pytest
pytest:
	@test -x "$(PY_VENV)/bin/python" || python3 -m venv "$(PY_VENV)"
	@"$(PY_VENV)/bin/python" -c 'import maturin, pytest, gymnasium, numpy, pandas, ray, onnx, onnxruntime' 2>/dev/null || { \
	  echo "== installing $(PY_PACKAGES) into $(PY_VENV)" >&2; \
	  "$(PY_VENV)/bin/pip" install --quiet --disable-pip-version-check $(PY_PACKAGES); }
	$(CARGO) build -p diten-trainer --bin diten
	PATH="$(PY_VENV)/bin:$$PATH" MATURIN_PEP517_ARGS="--profile dev" "$(PY_VENV)/bin/pip" install \
	  --quiet --disable-pip-version-check --force-reinstall --no-deps --no-build-isolation ./python
	DITEN_BIN="$(CURDIR)/target/debug/diten" "$(PY_VENV)/bin/python" -m pytest -q -p no:cacheprovider python/tests

# The controller on a Cortex-M4F under QEMU (mps2-an386, see firmware-example/README.md):
# installs qemu-system-arm (apt) and the thumb target (rustup) when missing, then
# builds the firmware and runs it; its exit status is the firmware's.
.PHONY: firmware
firmware:
	@command -v qemu-system-arm >/dev/null || { \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "== installing qemu-system-arm" >&2; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends qemu-system-arm; }
	@rustup target list --installed 2>/dev/null | grep -q '^$(THUMB)$$' || rustup target add $(THUMB)
	cd firmware-example && $(CARGO) run --release

bench: setup
	$(CARGO) bench -p diten-controller --bench gamma
	$(CARGO) bench -p diten-controller --bench gamma --features host-math
	$(CARGO) bench -p diten-trainer --bench env

# Signs every shipped policy file (onnx-models/*/policy.bin and policy.onnx →
# FILE.sig) with SIGN_KEY at POLICY_VERSION. The default key is the committed TEST
# key (keys/test/, see its README): it must never sign a production policy. Signing
# is deterministic, so rerunning it after the models are re-shipped is all it takes.
SIGN_KEY ?= keys/test/policy-signing.key
POLICY_VERSION ?= 1
.PHONY: sign-models
sign-models: torch
	$(CARGO) build --release -p diten-trainer --bin diten
	@set -e; for f in onnx-models/*/policy.bin onnx-models/*/policy.onnx; do \
	  ./target/release/diten sign --key $(SIGN_KEY) --policy-version $(POLICY_VERSION) $$f; \
	done

# libFuzzer via cargo-fuzz (nightly): each target in turn for FUZZ_SECONDS. The seeds
# in fuzz/corpus/<target> are read only; what libFuzzer adds goes to the ignored
# fuzz/corpus-run/<target>. A crash, a leak, an input slower than FUZZ_TIMEOUT
# seconds or more than FUZZ_RSS_MB of memory fails the run (input in fuzz/artifacts).
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB ?= 2048
FUZZ_TARGETS := blob decide convert

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	$(CARGO) +nightly fuzz build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus-run/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s" >&2; \
	  $(CARGO) +nightly fuzz run $$t fuzz/corpus-run/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
	    -rss_limit_mb=$(FUZZ_RSS_MB) -detect_leaks=1 -print_final_stats=1; \
	done
