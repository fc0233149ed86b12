# The README's two commands: `make demo` runs the main job on the built-in default,
# `make test` passes the tests. Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
DEMO_PATIENTS ?= 200
PIP_QUIET ?= -q

.PHONY: demo test lint install install-dev clean help

help:
	@echo "make demo   - create .venv, install, generate a synthetic dataset, check it, write a preview"
	@echo "make test   - install dev extras and run ruff, mypy and pytest"
	@echo "make lint   - ruff check and mypy"
	@echo "make clean  - remove $(DEMO_OUT) and caches (keeps .venv)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip

# Stamp files make re-runs instant; they are redone when pyproject.toml changes.
$(VENV)/.stamp-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -e '.[synth]'
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-core
	$(BIN)/pip install $(PIP_QUIET) -e '.[dev]'
	@touch $@

install: $(VENV)/.stamp-core
install-dev: $(VENV)/.stamp-dev

demo: install
	$(BIN)/edgevcf data synth --out $(DEMO_OUT)/data --patients $(DEMO_PATIENTS) --fast --seed 0
	$(BIN)/edgevcf data check $(DEMO_OUT)/data/manifest.csv
	@echo
	@echo "Demo data:    $(DEMO_OUT)/data/manifest.csv"
	@echo "Look at:      $(DEMO_OUT)/data/preview.png  (fresh / old / no-fracture films, fractured levels outlined)"

lint: install-dev
	$(BIN)/ruff check edgevcf tests benchmarks
	$(BIN)/mypy edgevcf

test: install-dev
	$(BIN)/ruff check edgevcf tests benchmarks
	$(BIN)/mypy edgevcf
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
