# Wattwise developer entry points. Every target sets up what it needs: on a fresh machine
# `make demo` and `make test` are the only two commands to run.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install when the dependency list changes, not on every run.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: help venv demo test bench lint crds-check

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP) ## create .venv and install wattwise with its test tools

demo: venv ## run the headline scenario on the simulated fleet (no GPU, no cluster)
	$(BIN)/wattwise simulate --scenario headline

test: venv ## run every test (unit, property, control plane)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv ## run the benchmarks and print their figures
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: venv ## ruff and mypy --strict
	$(BIN)/ruff check wattwise tests benchmarks
	$(BIN)/mypy

# Components add their own targets (control-plane binaries, chart, ...) in mk/*.mk.
-include mk/*.mk
