# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates/refreshes .venv; torch==2.13.0 (CPU build) goes in first so that
# nothing later resolves `torch` to a CUDA build. The demo needs only the core;
# the tests need every extra (pipeline, service, data sets, bench, Ray) and the dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0

$(VENV)/.core: pyproject.toml $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.all: pyproject.toml $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,all]"
	touch $@ $(VENV)/.core

.PHONY: install demo test lint bench
install: $(VENV)/.all

demo: $(VENV)/.core
	$(BIN)/obliviate demo

test: $(VENV)/.all
	$(BIN)/python -m pytest

lint: $(VENV)/.all
	$(BIN)/ruff check src tests bench
