# The README's two commands: `make demo` runs the main job on the built-in default,
# `make test` passes the tests. Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
DEMO_PATIENTS ?= 300
DEMO_EPOCHS ?= 6
DEMO_ARCH ?= mobilenet_v3_large
PIP_QUIET ?= -q

.PHONY: demo test lint install install-dev clean help

help:
	@echo "make demo   - create .venv, install, synthesise data, train a quick model, evaluate it"
	@echo "make test   - install dev extras and run ruff, mypy and pytest"
	@echo "make lint   - ruff check and mypy"
	@echo "make clean  - remove $(DEMO_OUT) and caches (keeps .venv)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip

# Stamp files make re-runs instant; they are redone when pyproject.toml changes.
$(VENV)/.stamp-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -e '.[synth,train,report]'
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-core
	$(BIN)/pip install $(PIP_QUIET) -e '.[dev]'
	@touch $@

install: $(VENV)/.stamp-core
install-dev: $(VENV)/.stamp-dev

demo: install
	$(BIN)/edgevcf data synth --out $(DEMO_OUT)/data --patients $(DEMO_PATIENTS) --fast --seed 0
	$(BIN)/edgevcf data check $(DEMO_OUT)/data/manifest.csv
	$(BIN)/edgevcf train --arch $(DEMO_ARCH) --data $(DEMO_OUT)/data/manifest.csv \
		--out $(DEMO_OUT)/runs/$(DEMO_ARCH) --epochs $(DEMO_EPOCHS)
	$(BIN)/edgevcf evaluate $(DEMO_OUT)/runs/$(DEMO_ARCH)/model.safetensors \
		--data $(DEMO_OUT)/data/manifest.csv --split test --out $(DEMO_OUT)/eval
	@echo
	@echo "Demo data:    $(DEMO_OUT)/data/manifest.csv"
	@echo "Look at:      $(DEMO_OUT)/data/preview.png  (fresh / old / no-fracture films, fractured levels outlined)"
	@echo "Model:        $(DEMO_OUT)/runs/$(DEMO_ARCH)/model.safetensors  ($(DEMO_EPOCHS) quick epochs: a smoke run, not the reference model)"
	@echo "Evaluation:   $(DEMO_OUT)/eval/report.md and roc.png"

lint: install-dev
	$(BIN)/ruff check edgevcf tests benchmarks
	$(BIN)/mypy edgevcf

test: install-dev
	$(BIN)/ruff check edgevcf tests benchmarks
	$(BIN)/mypy edgevcf
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
