# The two commands of the README: `make dev` (the service, offline) and `make test` (every test).
# Each sets up what it needs itself: a virtualenv in .venv with the pinned dependencies.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2
STAGE ?= dev
NPM_STAMP := node_modules/.package-lock.json
# The CDK CLI and jsii run on the Node pinned in package.json (node_modules/.bin/node), whatever
# Node the machine has; npx puts it first on PATH, the tests get it from here.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
CDK := npx --no-install cdk

# Dependency sets (see requirements*.txt), one constraints.txt for all. uv installs them: same
# pins, several times faster than pip (README, "First run"). It is pip-installed into the venv
# and uses that venv's Python: it never downloads one.
UV_VERSION := 0.13.8
UV := $(VENV)/bin/uv
export UV_PYTHON_DOWNLOADS := never
install = $(UV) pip install --quiet --python $(PY) -c constraints.txt -r $(1) && touch $@

.PHONY: dev test test-fast lint venv bench tool-schema models-check build synth deploy clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# What `make dev` runs: the Lambda runtime, moto's server, the emulators' image encoder.
$(VENV)/.deps-local: $(UV) constraints.txt requirements.txt requirements-local.txt
	$(call install,requirements-local.txt)

# The CDK app and its template checks.
$(VENV)/.deps-infra: $(UV) constraints.txt requirements.txt requirements-infra.txt
	$(call install,requirements-infra.txt)

# Everything the tests need (local + infra + test tools).
$(VENV)/.deps-dev: $(UV) constraints.txt requirements.txt requirements-local.txt requirements-infra.txt requirements-dev.txt
	$(call install,requirements-dev.txt)

venv: $(VENV)/.deps-dev

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

## make dev: the whole service offline on http://127.0.0.1:$${PORT:-8000}
dev: $(VENV)/.deps-local
	$(PY) -m local

## make test: lint, then unit, integration, infrastructure (cdk-nag, cfn-lint) and e2e tests
test: lint $(NPM_STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

## make lint: ruff (pyflakes, pycodestyle errors, import order, bugbear) and its formatter
lint: $(VENV)/.deps-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## make test-fast: everything but the synthesized-template and local-stack tests
test-fast: $(VENV)/.deps-dev
	$(PY) -m pytest tests/unit tests/integration -q

## make bench: the functions as deployed (built like `make build`, for this machine's Python)
## against the openai SDK, LiteLLM and the floor: one table of ratios (numbers, not pass/fail).
## The contenders come from requirements-bench.txt, pip-installed into build/bench/ (not .venv).
bench: $(VENV)/.deps-local
	$(PY) bench/run.py

## make tool-schema: regenerate docs/generate_image.tool.json from the code
tool-schema: $(VENV)/.deps-local
	PYTHONPATH=functions/generation:layers/common/python $(PY) -m image_service.tool > docs/generate_image.tool.json

## make models-check: compare the model catalog with the providers' model lists (emulators for
## providers without a key); exit 0 no drift, 1 drift, 2 a list unreadable. ARGS="--today 2026-12-01"
models-check: $(VENV)/.deps-local
	$(PY) -m local.models_check $(ARGS)

## make build: every Lambda asset in build/: each function's dependencies layer for arm64 (pip
## wheels, no Docker), the common layer and the code, with bytecode when python3.14 is on PATH
build: $(VENV)/.deps-infra
	$(PY) -m infra.bundling

## make synth: CloudFormation for STAGE (default dev) into cdk.out/, checked by cdk-nag
synth: $(VENV)/.deps-infra $(NPM_STAMP)
	$(CDK) synth -c stage=$(STAGE) --quiet

## make deploy: needs AWS credentials and `npx cdk bootstrap` once per account and region
deploy: $(VENV)/.deps-infra $(NPM_STAMP)
	$(CDK) deploy -c stage=$(STAGE)

clean:
	rm -rf build cdk.out .pytest_cache
