# aks-platform: one entry point for people and CI.
#   make up STACK=dev      prerequisites check, venv, local state backend, stack, pulumi up
#   make kind STACK=kind   key pair + kind cluster whose issuer `make up STACK=kind` publishes
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

.PHONY: venv test lint preflight login stack up preview destroy plan bench policy clean kind

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

# Runs before anything is created: says what to install or run, and stops.
preflight:
	@$(PYTHON) scripts/preflight.py $(STACK)

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

# A kind cluster for a stack with hybrid.serviceAccountPublicKeyPath (Pulumi.kind.yaml):
# generates the service-account key pair under .kind/ (ignored by Git), writes the kind
# config naming the issuer `make up` publishes, and creates the cluster.
kind: venv
	$(PY) scripts/kind_cluster.py $(STACK)

plan: venv
	$(PY) -m offline.plan $(STACK)

bench: venv
	$(PY) -m offline.bench

# The guardrails over every shipped stack, offline (the same rules as policy/ in pulumi).
policy: venv
	$(PY) -m policy.check

clean:
	rm -rf build .pytest_cache
