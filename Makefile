# aks-platform: one entry point for people and CI.
#   make up STACK=dev      prerequisites check, venv, local state backend, stack, pulumi up
#   make test              venv + every test (Pulumi mocks, GitOps manifests, the app) + workflow lint
#   make preview STACK=x   pulumi preview against Azure
#   make plan STACK=x      offline preview under mocks: build/plan-<stack>.{json,md}
#   make bench             build/bench.json

SHELL := /bin/bash
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A local file backend by default: no Pulumi Cloud account needed. Override with
# PULUMI_BACKEND_URL=azblob://... or https://api.pulumi.com.
PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_BACKEND_URL

APP_REQUIREMENTS := $(wildcard app/requirements.txt app/requirements-test.txt)

.PHONY: venv test lint preflight login stack up preview destroy plan bench policy clean

$(VENV)/.installed: requirements.txt $(APP_REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt $(addprefix -r ,$(APP_REQUIREMENTS))
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests $(wildcard app/tests)
	bash scripts/lint-workflows.sh

lint: venv
	bash scripts/lint-workflows.sh

# Runs before anything is created (the venv is local): the tools and the Azure login, the
# stack's shipped example values, then with az what the stack needs from Azure (providers,
# the deployer's roles, vCPU quota, PostgreSQL in the region). Says what to run, and stops.
# PREFLIGHT_SKIP=rbac,quota skips checks by name; see docs/preflight.md.
preflight: venv
	@$(PY) scripts/preflight.py $(STACK)

login: preflight
	@mkdir -p .pulumi-state
	pulumi login "$(PULUMI_BACKEND_URL)"

stack: login venv
	pulumi stack select --create $(STACK) --secrets-provider "$${PULUMI_SECRETS_PROVIDER:-passphrase}"

up: stack
	pulumi up --stack $(STACK)

preview: stack
	pulumi preview --stack $(STACK) --diff

destroy: stack
	pulumi destroy --stack $(STACK)

plan: venv
	$(PY) -m offline.plan $(STACK)

bench: venv
	$(PY) -m offline.bench

# The guardrails over every shipped stack, offline (the same rules as policy/ in pulumi).
policy: venv
	$(PY) -m policy.check

clean:
	rm -rf build .pytest_cache
