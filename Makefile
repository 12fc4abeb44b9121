# The two commands of the README: `make dev` (the service, offline) and `make test` (every test).
# Each sets up what it needs itself: a virtualenv in .venv with the pinned dependencies.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
PYTEST_WORKERS ?= 2
STAGE ?= dev
NPM_STAMP := node_modules/.package-lock.json
CDK := npx --no-install cdk

.PHONY: dev test test-fast lint venv bench tool-schema build synth deploy clean

$(DEPS_STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

venv: $(DEPS_STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

## make dev: the whole service offline on http://127.0.0.1:$${PORT:-8000}
dev: $(DEPS_STAMP)
	$(PY) -m local

## make test: lint, then unit, integration, infrastructure (cdk-nag, cfn-lint) and e2e tests
test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

## make lint: ruff (pyflakes, pycodestyle errors, import order, bugbear) and its formatter
lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## make test-fast: everything but the synthesized-template and local-stack tests
test-fast: $(DEPS_STAMP)
	$(PY) -m pytest tests/unit tests/integration -q

## make bench: cold-start and latency benchmarks (numbers, not pass/fail)
bench: $(DEPS_STAMP)
	$(PY) bench/run.py

## make tool-schema: regenerate docs/generate_image.tool.json from the code
tool-schema: $(DEPS_STAMP)
	PYTHONPATH=functions/generation:layers/common/python $(PY) -m image_service.tool > docs/generate_image.tool.json

## make build: the Lambda dependencies layer for arm64 (pip wheels, no Docker; cached in build/)
build: $(DEPS_STAMP)
	$(PY) -m infra.bundling

## make synth: CloudFormation for STAGE (default dev) into cdk.out/, checked by cdk-nag
synth: $(DEPS_STAMP) $(NPM_STAMP)
	$(CDK) synth -c stage=$(STAGE) --quiet

## make deploy: needs AWS credentials and `npx cdk bootstrap` once per account and region
deploy: $(DEPS_STAMP) $(NPM_STAMP)
	$(CDK) deploy -c stage=$(STAGE)

clean:
	rm -rf build cdk.out .pytest_cache
