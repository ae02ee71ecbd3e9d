# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: install test-deps demo test dev seed bench readme fault-report clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

# the per-vendor run limit and the warm run launcher of deploy/dagster.yaml apply under `make dev` too
$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@
	printf 'concurrency:\n  pools:\n    granularity: run\n    default_limit: 2\n' >> $@
	printf 'run_launcher:\n  module: delivery_platform.runs.launcher\n  class: WarmRunLauncher\n' >> $@

# What the tests need beyond pip: Azurite (npm); Chromium, PostgreSQL, OpenSSH's sshd and faketime (Debian);
# pigz (bench).
test-deps: install $(VENV)/.bench-installed
	@if [ ! -x node_modules/.bin/azurite-blob ]; then npm install --no-audit --no-fund --silent; fi
	@missing=""; \
	 command -v chromium >/dev/null || missing="$$missing chromium"; \
	 command -v pigz >/dev/null || missing="$$missing pigz"; \
	 test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	 command -v faketime >/dev/null || missing="$$missing faketime"; \
	 command -v gpg >/dev/null || missing="$$missing gnupg"; \
	 ( command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ) || missing="$$missing postgresql"; \
	 if [ -n "$$missing" ]; then \
	   echo "installing with apt-get:$$missing"; \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	 fi

seed: install
	$(PY) -m delivery_platform.warehouse seed --days 30 --scale 1

demo: install
	$(PY) -m delivery_platform.warehouse seed --days 30 --scale 1 --ispot-events-per-day 60000
	$(PY) -m delivery_platform.demo

# Two workers: most tests wait on servers, subprocesses and the browser, so two share the two cores
# well (2 cores: 597-778 s in four runs on two workers; 831 s in one process at the last CI run).
# `worksteal` keeps both busy to the end; every server a test needs listens on a free port of its own worker.
TEST_WORKERS ?= 2
test: test-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal
	$(PY) -m delivery_platform_tests.fault_report

dev: install
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

# the benchmark's own dependencies (dlt, isal, zlib-ng: the `bench` extra) and pigz
bench: install $(VENV)/.bench-installed
	@command -v pigz >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz >/dev/null)
	$(PY) -m bench.run $(BENCH_ARGS)

# README sections generated from the code: spec tables from the pandera models, the fault table from the last test run
readme: install
	$(PY) -m delivery_platform.spec_docs

fault-report: install
	$(PY) -m delivery_platform_tests.fault_report

clean:
	rm -rf data/staging data/outbox data/returns data/ledger.sqlite data/warehouse.duckdb
