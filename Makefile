# aks-platform: one entry point for people and CI.
#   make up STACK=dev      prerequisites check, venv, local state backend, stack, pulumi up
#   make kind STACK=kind   key pair + kind cluster whose issuer `make up STACK=kind` publishes
#   make forget-cluster STACK=x  after the stack's cluster was deleted outside Pulumi
#   make test              venv + every test (Pulumi mocks, GitOps manifests, the app) + workflow lint
#   make preview STACK=x   pulumi preview against Azure
#   make plan STACK=x      offline preview under mocks: build/plan-<stack>.{json,md}
#   make bench             build/bench.json
#   make docs              the config tables in docs/configuration.md and docs/stack.schema.json

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

.PHONY: venv test lint preflight login stack up preview destroy forget-cluster plan bench policy docs clean kubeconfig argocd app kind

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
# the deployer's roles, vCPU quota, PostgreSQL in the region, the deployer's membership of
# the cluster's admin groups). Says what to run, and stops.
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

# After a hybrid stack's cluster was deleted outside Pulumi (`kind delete cluster` before
# `make destroy`): drops the objects the state records on it, so `make up` re-creates them on
# the new cluster and `make destroy` can finish. pulumi-kubernetes drops an object only when
# its cluster is unreachable and PULUMI_K8S_DELETE_UNREACHABLE is true (pulumi/pulumi-kubernetes
# #2037, #2489); a refresh, because deleting a Helm Release on an unreachable cluster fails even
# then (#2675), while reading one honours it. Confirm only if the deletes it previews are the
# lost cluster's: a cluster that is merely down (Docker stopped) is unreachable too.
forget-cluster: stack
	PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh --stack $(STACK)

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
	$(PY) -m offline.policy_check

# Regenerates the config reference tables and the stack-file JSON Schema from stacks/config.py.
docs: venv
	$(PY) -m stacks.reference

# After `make up`: a kubeconfig for the stack's cluster (AKS stacks; a hybrid stack uses the
# kubeconfig you gave it: pass KUBECONFIG_FILE=<that file>), then port-forwards to Argo CD and
# to the reference app (VARIANT=aso or crossplane).
KUBECONFIG_FILE ?= .kube/$(STACK).yaml
VARIANT ?= aso

kubeconfig: stack
	@mkdir -p .kube
	@umask 077; if pulumi stack output kubeconfig --show-secrets --stack $(STACK) > $(KUBECONFIG_FILE) 2>/dev/null; then \
	  echo "wrote $(KUBECONFIG_FILE): export KUBECONFIG=$$PWD/$(KUBECONFIG_FILE)"; \
	else rm -f $(KUBECONFIG_FILE); \
	  echo "stack $(STACK) has no kubeconfig output (a hybrid stack uses your own kubeconfig and context)"; exit 1; fi

argocd:
	@test -f $(KUBECONFIG_FILE) || $(MAKE) --no-print-directory kubeconfig STACK=$(STACK)
	@echo "Argo CD on https://localhost:8080 (user admin). Initial password:"
	@echo "  kubectl --kubeconfig $(KUBECONFIG_FILE) -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d"
	kubectl --kubeconfig $(KUBECONFIG_FILE) -n argocd port-forward svc/argocd-server 8080:443

app:
	@test -f $(KUBECONFIG_FILE) || $(MAKE) --no-print-directory kubeconfig STACK=$(STACK)
	@echo "The reference app ($(VARIANT) variant) on http://localhost:8081"
	kubectl --kubeconfig $(KUBECONFIG_FILE) -n webapp-$(VARIANT) port-forward svc/uploads 8081:80

clean:
	rm -rf build .pytest_cache
