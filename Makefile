# The two commands: `make dev` runs the whole system locally, `make test` runs the tests.
# Each does its own set-up on a fresh machine (virtualenv, pinned packages, servers).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements-dev.txt shared/requirements.txt layers/connector_deps/requirements.txt

.PHONY: dev test lint typecheck venv databases

$(VENV)/.installed: $(REQS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy
