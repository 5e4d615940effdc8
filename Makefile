# Development commands. Every target brings its own virtual environment up to date first, so a fresh
# machine needs only Python 3.10+ and make. `make help` lists the targets.

VENV ?= .venv
# Newest Airflow release this provider is checked against (`release-check` also checks the floor).
AIRFLOW_NEWEST := 3.3.2
# Airflow release the development environment runs on; `make test AIRFLOW_VERSION=3.1.0 VENV=.venv-3.1.0
# PYTHON=python3.10` runs the suite on the oldest supported release (and Python) instead.
AIRFLOW_VERSION ?= $(AIRFLOW_NEWEST)
PYTEST_ARGS ?=
# Interpreter a new $(VENV) is created with (an existing one keeps its own): CI runs the newest Airflow
# on python3.11 and the oldest on python3.10.
PYTHON ?= python3
# Further Python releases `release-check` installs the wheel on (with the newest Airflow) and smoke-tests.
RELEASE_PYTHONS ?= python3.12 python3.13

BIN := $(VENV)/bin
STAMP := $(VENV)/.kumulos-dev-$(AIRFLOW_VERSION).stamp
# Pins an old Airflow release needs from its era (see the file), when there is one for this version.
CONSTRAINTS := $(wildcard .ci/constraints/airflow-$(AIRFLOW_VERSION).txt)
# Older Airflow releases get the test tools only: the pinned lint tools need newer libraries than the
# ones an old release is pinned to, and linting does not depend on the Airflow version anyway.
EXTRAS := $(if $(filter $(AIRFLOW_NEWEST),$(AIRFLOW_VERSION)),dev,test)
INSTALL_ARGS := -e ".[$(EXTRAS)]" "apache-airflow==$(AIRFLOW_VERSION)" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# mysqlclient (the MySQL provider's driver in the test tools) has no Linux wheel: it compiles against the
# MariaDB client library, which pkg-config must find. Where it is missing and apt is there, install it.
BUILD_PACKAGES := libmariadb-dev pkg-config
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
BENCHMARKS := $(filter-out bench/_%.py,$(sort $(wildcard bench/*.py)))

.PHONY: help venv test lint format demo bench bench-smoke dist release-check e2e clean

help:
	@echo "make venv           create/update $(VENV) (Airflow $(AIRFLOW_VERSION), package editable, $(EXTRAS) tools)"
	@echo "make test           run the whole test suite (PYTEST_ARGS='-k ...' to narrow it)"
	@echo "make lint           ruff check, ruff format --check, mypy"
	@echo "make format         apply ruff's fixes and formatting"
	@echo "make demo           example DAG kumulos_segment_refresh on 10,000 emulated users"
	@echo "make bench          every benchmark in bench/ at full size"
	@echo "make bench-smoke    every benchmark at a tiny size (--smoke)"
	@echo "make dist           sdist and wheel into dist/"
	@echo "make release-check  build, inspect, install the wheel on the newest and oldest Airflow, smoke-test"
	@echo "make e2e            end-to-end scenario (.ci/e2e.sh), if present"
	@echo "make clean          remove build output and caches (keeps $(VENV))"

venv: $(STAMP)

# Re-installs only when pyproject.toml or the constraints changed (uv makes a no-op install take a second).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	pkg-config --exists libmariadb 2>/dev/null || ! command -v apt-get >/dev/null \
		|| { $(SUDO) apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(BUILD_PACKAGES); }
	$(BIN)/python -m pip install -q --upgrade uv \
		&& $(BIN)/uv pip install --python $(BIN)/python $(INSTALL_ARGS) \
		|| $(BIN)/python -m pip install $(INSTALL_ARGS)
	rm -f $(VENV)/.kumulos-dev-*.stamp
	touch $@

test: venv
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: venv
	$(BIN)/python demo/run_demo.py

bench: venv
	@set -e; for script in $(BENCHMARKS); do echo "== $$script"; $(BIN)/python $$script; done

bench-smoke: venv
	@set -e; for script in $(BENCHMARKS); do echo "== $$script --smoke"; $(BIN)/python $$script --smoke; done

dist: venv
	rm -rf dist
	$(BIN)/python -m build --installer uv --outdir dist .

release-check: dist
	VENV=$(VENV) AIRFLOW_NEWEST=$(AIRFLOW_NEWEST) RELEASE_PYTHONS="$(RELEASE_PYTHONS)" bash .ci/release_check.sh dist

e2e: venv
	@if [ -x .ci/e2e.sh ]; then VENV=$(VENV) .ci/e2e.sh; else echo "no executable .ci/e2e.sh: nothing to run"; fi

clean:
	rm -rf dist build .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find $(wildcard airflow_provider_kumulos tests bench demo example_dags .ci) -name __pycache__ -type d -prune \
		-exec rm -rf {} +
