"""The docs' key tables and the stack-file JSON Schema are generated from the declaration and current."""

from __future__ import annotations

import json

import pytest
import yaml
from jsonschema import Draft202012Validator

from stacks import reference
from stacks.config import StackConfig, secret_fields

STACKS = sorted(p.name for p in reference.ROOT.glob("Pulumi.*.yaml"))


def test_the_config_tables_in_the_docs_are_current():
    assert reference.DOC.read_text() == reference.document_with_tables(reference.DOC.read_text()), (
        "docs/configuration.md is stale: run `python -m stacks.reference`"
    )


def test_the_tables_list_every_declared_key():
    text = reference.markdown()
    for name, info in StackConfig.model_fields.items():
        assert f"| `{info.alias}` |" in text
    for heading in ("cluster.systemPool", "cluster.userPools[]", "cluster.network", "cluster.maintenanceWindow",
                    "addons.aso", "addons.argocd", "tenants[]", "tenants[].roles[]", "hybrid"):
        assert f"### `aks-platform:{heading}`" in text


def test_tenants_and_hybrid_docs_link_to_the_tables_instead_of_repeating_them():
    for page, anchor in (("tenants.md", "#aks-platformtenants"), ("hybrid.md", "#aks-platformhybrid")):
        text = (reference.ROOT / "docs" / page).read_text()
        assert f"configuration.md{anchor}" in text
        assert "| Key" not in text


def test_the_schema_file_is_current():
    assert reference.SCHEMA.read_text() == reference.schema_text(), "docs/stack.schema.json is stale: run `python -m stacks.reference`"
    Draft202012Validator.check_schema(json.loads(reference.SCHEMA.read_text()))


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(reference.SCHEMA.read_text()))


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_validate_against_the_schema(stack, validator):
    doc = yaml.safe_load((reference.ROOT / stack).read_text())
    assert [e.message for e in validator.iter_errors(doc)] == []


VALID_TENANT = {
    "name": "payments",
    "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    "namespaces": ["payments"],
    "sourceRepos": ["https://github.com/acme/payments.git"],
}


def stack_doc(**config):
    doc = yaml.safe_load((reference.ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"].update(config)
    return doc


@pytest.mark.parametrize(
    "config",
    [
        {"aks-platform:skuTier": "Free"},  # an unknown top-level key
        {"aks-platform:cluster": {"systemPool": {"maxPod": 30}}},  # a typo in a section
        {"aks-platform:cluster": {"skuTier": "Gold"}},
        {"aks-platform:cluster": {"systemPool": {"zones": ["4"]}}},
        {"aks-platform:addons": {"argocd": {"repoURL": "https://x"}}},
        {"aks-platform:tenants": [{**VALID_TENANT, "role": []}]},  # a typo in an otherwise valid tenant
        {"aks-platform:hybrid": {"kubeConfigPath": "~/.kube/config"}},
        {"aks-platform:protect": "yes"},
        {"aks-platform:kubeconfig": "apiVersion: v1"},  # a declared secret in plain text
        # The secure form is exactly {secure: <text>}, and only where a value (not a section) goes.
        {"aks-platform:tags": {"owner": {"secure": "v1:abc", "x": 1}}},
        {"aks-platform:tags": {"owner": {"secur": "v1:abc"}}},
        {"aks-platform:cluster": {"systemPool": {"secure": "v1:abc"}}},
        {"aks-platform:cluster": {"network": {"serviceCidr": {"secure": 1}}}},
    ],
)
def test_the_schema_flags_what_an_editor_should(config, validator):
    assert list(validator.iter_errors(stack_doc(**config)))


@pytest.mark.parametrize(
    "config",
    [
        {"aks-platform:protect": "true"},  # what `pulumi config set` writes
        {"aks-platform:cluster": {"adminGroupObjectIds": ["3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"], "systemPool": {"zones": [1, 2, 3], "count": "3"}}},
        {"aks-platform:tags": {"secure": "v1:abc"}},  # any key may be --secret
        # `pulumi config set --path --secret a.b x` writes {secure: ...} at the leaf, in any section.
        {"aks-platform:tags": {"owner": {"secure": "v1:abc"}}},
        {"aks-platform:cluster": {"adminGroupObjectIds": [{"secure": "v1:abc"}]}},
        {"aks-platform:cluster": {"adminGroupObjectIds": ["3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"], "systemPool": {"vmSize": {"secure": "v1:abc"}, "labels": {"team": {"secure": "v1:abc"}}}}},
        {"aks-platform:addons": {"argocd": {"repoUrl": {"secure": "v1:abc"}}}},
        {"aks-platform:tenants": [{"name": "ab", "subscriptionId": {"secure": "v1:abc"}, "namespaces": [{"secure": "v1:abc"}], "sourceRepos": ["https://x"], "roles": [{"role": "Reader", "scope": {"secure": "v1:abc"}}]}]},
        {"aks-platform:hybrid": {"context": {"secure": "v1:abc"}}},
        {"aks-platform:kubeconfig": {"secure": "v1:abc"}},
        {"azure-native:subscriptionId": "x"},  # another namespace
        {"aks-platform:tenants": [VALID_TENANT]},  # the tenant the typo case starts from
    ],
)
def test_the_schema_accepts_pulumis_forms(config, validator):
    assert [e.message for e in validator.iter_errors(stack_doc(**config))] == []


def test_the_secret_keys_take_only_the_secure_form():
    schema = json.loads(reference.SCHEMA.read_text())
    for alias in secret_fields():
        assert schema["properties"]["config"]["properties"][f"aks-platform:{alias}"]["$ref"] == "#/$defs/secure"
