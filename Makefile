# diten: the two entry points of the README's quick start.
#   make demo   sets up and runs the main job
#   make test   sets up and runs every check CI runs
# Both are idempotent: each step installs only what is missing.

SHELL := /bin/bash
CARGO ?= cargo
THUMB := thumbv7em-none-eabihf

.PHONY: setup demo test fmt lint unit thumb bench

setup:
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup target list --installed 2>/dev/null | grep -q '^$(THUMB)$$' || rustup target add $(THUMB)

demo: setup
	$(CARGO) build --release -p diten-trainer --bin diten
	@echo "== diten solve on SPEC §3.1's example slot" >&2
	./target/release/diten solve --instance examples/spec-slot.json
	@echo "== diten solve on a crowded 20-user, 21-server slot" >&2
	./target/release/diten solve --instance examples/u20-s21.json

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# Proves diten-controller is really no_std: it must build for a bare Cortex-M4F.
thumb:
	$(CARGO) build -p diten-controller --target $(THUMB) --release

test: setup fmt lint unit thumb

bench:
	$(CARGO) bench -p diten-controller --bench gamma
