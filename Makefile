# Two commands: `make run` serves companion on http://127.0.0.1:5000 (COMPANION_PORT changes it),
# `make test` installs everything the tests need and runs them all (lint, SQLite, PostgreSQL).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml (or the lock of the Node tools) changes.
PY_STAMP := $(VENV)/.companion-installed
NODE_STAMP := node_modules/.companion-installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run install test lint format system-deps node-deps clean

help:
	@echo "make run     set up (venv, config, database, demo data) and serve on http://127.0.0.1:$${COMPANION_PORT:-5000}"
	@echo "make test    install what the tests need (pip, apt, npm) and run lint + all tests"
	@echo "make lint    ruff check and ruff format --check"
	@echo "make format  ruff format and ruff check --fix"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): pyproject.toml | $(BIN)/python
	@t0=$$SECONDS; \
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'; \
	touch $@; \
	echo "make: Python packages installed in $$((SECONDS - t0)) s"

install: $(PY_STAMP)

run: $(PY_STAMP)
	$(BIN)/companion init
	$(BIN)/companion db upgrade
	$(BIN)/companion demo
	exec $(BIN)/companion run

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

system-deps:
	@t0=$$SECONDS; scripts/system-deps.sh; echo "make: system packages checked in $$((SECONDS - t0)) s"

$(NODE_STAMP): package.json package-lock.json
	@t0=$$SECONDS; \
	npm ci --no-audit --no-fund --loglevel=error; \
	touch $@; \
	echo "make: Node tools (Stoplight Prism) installed in $$((SECONDS - t0)) s"

node-deps: system-deps $(NODE_STAMP)

test: lint system-deps node-deps
	scripts/test.sh $(PYTEST_ARGS)

clean:
	rm -rf .tmp
