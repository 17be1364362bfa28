# Two commands: `make run` serves companion on http://127.0.0.1:5000 (COMPANION_PORT changes it),
# `make test` installs everything the tests need and runs them all (lint, SQLite, PostgreSQL).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml, the Python lock or the lock of the Node tools changes.
# `make run` installs what running needs; `make test` and `make lint` add the test tools.
RUN_STAMP := $(VENV)/.companion-run-installed
PY_STAMP := $(VENV)/.companion-installed
LOCK := requirements.lock
NODE_STAMP := node_modules/.companion-installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run install test lint format lock system-deps node-deps clean

help:
	@echo "make run     set up (venv, config, database, demo data) and serve on http://127.0.0.1:$${COMPANION_PORT:-5000}"
	@echo "make test    install what the tests need (pip, apt, npm) and run lint + all tests"
	@echo "make lint    ruff check, ruff format --check and mypy companion"
	@echo "make format  ruff format and ruff check --fix"
	@echo "make lock    rewrite requirements.lock after a change of dependencies"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every version comes from the lock (a constraints file: only what is asked for is installed).
$(RUN_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	@t0=$$SECONDS; \
	$(BIN)/python -m pip install --disable-pip-version-check -q -c $(LOCK) -e .; \
	touch $@; \
	echo "make: Python packages to run companion installed in $$((SECONDS - t0)) s"

$(PY_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	@t0=$$SECONDS; \
	$(BIN)/python -m pip install --disable-pip-version-check -q -c $(LOCK) -e '.[test]'; \
	touch $@ $(RUN_STAMP); \
	echo "make: Python packages (with the test tools) installed in $$((SECONDS - t0)) s"

install: $(PY_STAMP)

# Rewrite the lock from a fresh resolution of pyproject.toml (run after changing dependencies).
lock: | $(BIN)/python
	rm -rf .tmp/lock-venv
	$(PYTHON) -m venv .tmp/lock-venv
	.tmp/lock-venv/bin/python -m pip install --disable-pip-version-check -q '.[test]'
	{ echo "# Versions of every Python package companion and its tests use; make installs from it."; \
	  echo "# Written by 'make lock' from pyproject.toml; do not edit by hand."; \
	  .tmp/lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -E '^companion( |==)'; } > $(LOCK)
	rm -rf .tmp/lock-venv

run: $(RUN_STAMP)
	$(BIN)/companion init
	$(BIN)/companion db upgrade
	$(BIN)/companion demo
	exec $(BIN)/companion run

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy companion

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
