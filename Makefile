# Loyalty Warehouse — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every package of the environment at an exact version (and hash): `make lock` writes it from
# pyproject.toml, `make setup` installs exactly it.
LOCK := requirements.lock
UV_VERSION := 0.13.8
UV := $(BIN)/uv
MANIFEST := dbt/target/manifest.json
RAW_DIR ?= data/raw
WAREHOUSE ?= data/warehouse.duckdb
DAGSTER_HOME := $(CURDIR)/.dagster_home
PUBLISH_DIR ?= data/published
# The browser test of the HTML report drives the distribution's Chromium (never `playwright install`).
CHROMIUM ?= /usr/bin/chromium
# pip's "Location ... is ignored" notices about absent local mirrors are noise.
PIP_QUIET := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

.PHONY: help setup lock prepare sample run report status browser test bench dev clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# --compile-bytecode: every package's .pyc written at install time. Python otherwise compiles a
# module from source on each import unless it may write its cache, which PYTHONDONTWRITEBYTECODE
# (set in many container images, this project's CI among them) forbids: then every process paid
# ~2.5 s for Dagster, ~2.4 s for Great Expectations and ~1.3 s for dbt, every run.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version'
	@test -x $(UV) || $(BIN)/pip install --quiet uv==$(UV_VERSION) $(PIP_QUIET)
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes --compile-bytecode $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --compile-bytecode -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install exactly requirements.lock, then the package itself

lock: ## re-resolve every dependency of pyproject.toml into requirements.lock (then: make setup)
	@test -x $(UV) || $(BIN)/pip install --quiet uv==$(UV_VERSION) $(PIP_QUIET)
	$(UV) pip compile pyproject.toml --extra dev --extra spark --extra thumbnails --python-version 3.11 --generate-hashes --quiet -o $(LOCK)

$(MANIFEST): $(STAMP) $(shell find dbt/models dbt/macros dbt/tests -type f 2>/dev/null) dbt/dbt_project.yml
	$(BIN)/python -m dagster_project.dbt_project

prepare: $(MANIFEST) ## parse the dbt project into its manifest (needed before Dagster loads)

sample: $(STAMP) ## generate the bundled sample landing files into data/raw (if absent)
	@if [ -d $(RAW_DIR)/transactions ]; then echo "sample data present in $(RAW_DIR)"; \
	else $(BIN)/loyalty sample --out $(RAW_DIR); fi

run: prepare sample ## set up, then run the whole pipeline on the sample data, print the CLV table and the report's path
	$(BIN)/loyalty run --raw-dir $(RAW_DIR) --warehouse $(WAREHOUSE) --publish-dir $(PUBLISH_DIR) --as-of $$($(BIN)/python -m dagster_project.sample_data --print-as-of)
	@$(BIN)/loyalty report --warehouse $(WAREHOUSE)
	@report=$(abspath $(PUBLISH_DIR))/report/loyalty_report_$$($(BIN)/python -m dagster_project.sample_data --print-as-of).html; \
	test -f $$report || { echo "no KPI report at $$report" >&2; exit 1; }; echo "KPI report: $$report"

report: $(STAMP) ## print the flow matrix and CLV/portfolio table of the warehouse
	@$(BIN)/loyalty report --warehouse $(WAREHOUSE)

status: $(STAMP) ## print the last runs (as-of, outcome, duration, rows in, failed checks) from the run log
	@$(BIN)/loyalty status --warehouse $(WAREHOUSE)

browser: ## make sure Chromium (/usr/bin/chromium) is there for the report's browser test; as root it installs it with apt-get
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the report's browser test (about 1.5 min)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
			|| { echo "apt-get install chromium failed" >&2; exit 1; }; \
		test -x $(CHROMIUM) || { echo "chromium installed, but not at $(CHROMIUM): set CHROMIUM=/path" >&2; exit 1; }; \
	else echo "the browser test needs Chromium at $(CHROMIUM): install it (sudo apt-get install chromium) or set CHROMIUM=/path" >&2; exit 1; fi

# Test files run on this many workers (pytest-xdist; one file stays on one worker, so its module
# fixtures are built once): a test spends most of its time in one process waiting for dbt or DuckDB.
TEST_WORKERS ?= 2

test: prepare browser ## set up, then run every test (pytest, which runs dbt build with its unit and data tests, and the browser test)
	LOYALTY_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# ENGINE=spark: the pipeline runs with engine: spark (local session), beside the same DuckDB run,
# floor and pandas; its block in BENCHMARKS.md is its own (SIZES=1M,10M by default).
# The DuckDB default measures every size of the performance targets in one run (~13 min on 2 cores
# plus ~2.5 min generating the data once; the 100M data and its warehouse take ~12 GB of disk):
# SIZES=1M,10M for a quick one. BENCH_ARGS: more options of `loyalty bench` (e.g. --profile 10M).
ENGINE ?= duckdb
comma := ,
BENCH_SIZES := $(if $(filter spark,$(ENGINE)),1M$(comma)10M,1M$(comma)10M$(comma)50M$(comma)100M)

bench: prepare ## benchmark pipeline vs raw DuckDB vs pandas (SIZES=1M,10M,50M,100M by default; ENGINE=spark) into BENCHMARKS.md
	$(BIN)/loyalty bench --engine $(ENGINE) --sizes $(or $(SIZES),$(BENCH_SIZES)) --out BENCHMARKS.md $(BENCH_ARGS)

dev: prepare ## start `dagster dev` (web UI on http://localhost:3000) with DAGSTER_HOME in the project
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	@# No -m: Dagster reads [tool.dagster] in pyproject.toml (module and the location name loyalty_warehouse).
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev

clean: ## remove generated data, the warehouse, dbt target and Dagster home (keeps .venv)
	rm -rf data/raw data/exports data/published data/*.duckdb data/*.duckdb.* data/*.spark dbt/target dbt/logs $(DAGSTER_HOME)
