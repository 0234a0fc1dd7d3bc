# The two commands: `make dev` runs the whole system locally, `make test` runs the tests.
# Each does its own set-up on a fresh machine (virtualenv, pinned packages, servers).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements-dev.txt shared/requirements.txt layers/connector_deps/requirements.txt

.PHONY: dev test lint typecheck venv databases build cfn-lint openapi bench

$(VENV)/.installed: $(REQS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# PostgreSQL 15 and MariaDB on loopback (installed from Debian packages when missing).
databases:
	scripts/databases.sh start

test: venv databases
	$(PY) -m pytest
	$(MAKE) client-test

# The Python client and CLI (client/), installed as a user installs it: a fresh
# virtualenv holding only `pip install ./client` and pytest, so nothing of the server
# can leak into it. Its tests start the local stack with the project's interpreter.
CLIENT_VENV := .venv-client

.PHONY: client-test
client-test: venv
	rm -rf $(CLIENT_VENV)
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CLIENT_VENV)/bin/python -m pip install --quiet "./client[test]"
	cd client && DATASOURCES_SERVER_PYTHON=$(abspath $(PY)) ../$(CLIENT_VENV)/bin/python -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# openapi.yaml is generated from the pydantic models; tests/unit/test_openapi.py fails when stale.
openapi: venv
	$(PY) scripts/gen_openapi.py

typecheck: venv
	$(VENV)/bin/mypy
	cd client && ../$(VENV)/bin/mypy

# The local stack: template.yaml's routes, queue worker and emulated AWS (moto) on
# 127.0.0.1, PORT (3000) and LOCAL_AWS_PORT (4566). See local/stack.py.
dev: venv
	$(PY) -m local.stack

cfn-lint: venv
	$(VENV)/bin/cfn-lint template.yaml

# checkov has its own virtualenv: its pinned dependencies clash with the project's.
# Every skip is justified inline in template.yaml (Metadata.checkov.skip[].comment);
# --skip-download keeps it offline (no platform guidelines are fetched).
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30

$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

.PHONY: checkov
checkov: $(CHECKOV_VENV)/.installed
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation \
		--skip-download --compact --quiet

# SAM CLI has its own virtualenv: its pinned dependencies clash with the project's.
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
# sam build resolves the layers with the functions' runtime (python3.13), which must be
# on PATH: pyenv's 3.13 if there is one, else a python3.13 on PATH.
PYENV_ROOT_DIR := $(or $(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
PY313_BIN ?= $(firstword $(wildcard $(PYENV_ROOT_DIR)/versions/3.13.*/bin) $(dir $(shell command -v python3.13 2>/dev/null)))

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

# arm64 build on any host, no Docker: SAM's pip workflow downloads manylinux aarch64
# wheels. check_build.py then enforces Lambda's 250 MB limit and aarch64-only binaries.
build: venv $(SAM_VENV)/.installed
	@test -n "$(PY313_BIN)" || { echo "sam build needs Python 3.13 (pyenv install 3.13)" >&2; exit 1; }
	PATH="$(PY313_BIN):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build
	$(PY) scripts/check_build.py .aws-sam/build

# `make bench`: cold start, warm latency, sync throughput from PostgreSQL and MariaDB
# (beside each server's floor and dlt) and memory; prints one table and writes
# bench/results.json. dlt runs in its own venv so its dependencies cannot disturb the
# product's pins.
BENCH_VENV := .venv-bench

.PHONY: bench

$(BENCH_VENV)/.installed: bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: venv $(BENCH_VENV)/.installed
	scripts/databases.sh start >/dev/null
	$(PY) -m bench.run
