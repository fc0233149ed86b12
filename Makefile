# The README's two commands: `make demo` runs the main job on the built-in default,
# `make test` passes the tests. Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
DEMO_FLAGS ?=
PIP_QUIET ?= -qq

.PHONY: demo test lint install install-dev clean help

help:
	@echo "make demo   - create .venv, install, synthesise data, train a quick model, export it to"
	@echo "              every target runnable here, verify and bench the bundles (DEMO_FLAGS=--quick)"
	@echo "make test   - install dev extras and run ruff, mypy and pytest"
	@echo "make lint   - ruff check and mypy"
	@echo "make clean  - remove $(DEMO_OUT) and caches (keeps .venv)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip

# Stamp files make re-runs instant; they are redone when pyproject.toml changes.
$(VENV)/.stamp-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -e '.[synth,train,report,export]'
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-core
	$(BIN)/pip install $(PIP_QUIET) -e '.[dev]'
	@touch $@

# OpenSSF's model-signing, the peer the signing tests check both directions against, in a venv
# of its own: its Sigstore stack (34 packages) conflicts with the export toolchain's pins and
# never belongs on a cart.
TOOLS ?= .venv-tools
$(TOOLS)/.stamp: Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install $(PIP_QUIET) 'model-signing==1.1.1' pyOpenSSL
	@touch $@

install: $(VENV)/.stamp-core
install-dev: $(VENV)/.stamp-dev $(TOOLS)/.stamp

demo: install
	$(BIN)/edgevcf demo --out $(DEMO_OUT) $(DEMO_FLAGS)

lint: install-dev
	$(BIN)/ruff check edgevcf tests benchmarks
	$(BIN)/mypy edgevcf

test: install-dev
	$(BIN)/ruff check edgevcf tests benchmarks
	$(BIN)/mypy edgevcf
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
