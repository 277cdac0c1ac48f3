"""Tenant config: every validation rule names the key, the value and what is allowed; nothing registers on error."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offline.mocks import admin_kubeconfig
from stacks.config import PLATFORM_NAMESPACES, ConfigError
from stacks.validation import load
from tests.conftest import run_program
from tests.test_config import BASE

SUB_A = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
SUB_B = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
ENTRA = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"

HYBRID_SP: dict[str, Any] = {
    "kind": "hybrid",
    "environment": "hybrid",
    "location": "westeurope",
    "appResourceGroups": ["rg-hybrid-webapp"],
    "hybrid": {"servicePrincipalClientId": "5b9c3f0e-2d7a-4e1b-8c6f-0a9d8e7f6c5b"},
    "kubeconfig": admin_kubeconfig("kind-platform", "local"),
    "servicePrincipalClientSecret": "not-a-real-secret",
    "addons": BASE["addons"],
}
HYBRID_SECRETS = frozenset({"kubeconfig", "servicePrincipalClientSecret"})


def tenant(**overrides: Any) -> dict[str, Any]:
    t = {
        "name": "payments",
        "subscriptionId": SUB_A,
        "namespaces": ["payments"],
        "sourceRepos": ["https://github.com/acme/payments.git"],
    }
    t.update(overrides)
    return {k: v for k, v in t.items() if v is not ...}


def other(**overrides: Any) -> dict[str, Any]:
    return tenant(**{"name": "analytics", "subscriptionId": SUB_B, "namespaces": ["analytics"], **overrides})


def with_tenants(*tenants: dict[str, Any], base: dict[str, Any] = BASE) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    raw["tenants"] = list(tenants)
    return raw


def problems(raw: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(raw, secret_keys)
    return err.value.problems


def test_two_tenants_load_with_defaults():
    cfg = load(with_tenants(tenant(), other(tenantId=ENTRA, location="northeurope")))
    payments, analytics = cfg.tenants
    assert payments.tenant_id is None and payments.location is None
    # No roles given: Contributor on the tenant's own resource group.
    assert [(r.role, r.scope) for r in payments.roles] == [("Contributor", "resourceGroup")]
    assert (analytics.tenant_id, analytics.location) == (ENTRA, "northeurope")
    assert cfg.tenant_resource_group(payments) == "rg-dev-tenant-payments"
    assert cfg.tenant_identity_name(payments) == "id-dev-tenant-payments"


TENANT_CASES = [
        pytest.param([tenant(), other(name="payments")], "tenants[1].name", "a name no other tenant has", id="duplicate-name"),
        pytest.param([tenant(name="Payments")], "tenants[0].name", "DNS-safe", id="uppercase-name"),
        pytest.param([tenant(name="pay_ments")], "tenants[0].name", "DNS-safe", id="underscore-name"),
        pytest.param([tenant(name="p")], "tenants[0].name", "2-20", id="short-name"),
        pytest.param([tenant(name="a" * 21)], "tenants[0].name", "2-20", id="long-name"),
        pytest.param([tenant(name="payments-")], "tenants[0].name", "DNS-safe", id="trailing-hyphen"),
        pytest.param([tenant(name=...)], "tenants[0].name", "required", id="no-name"),
        pytest.param([tenant(), other(namespaces=["payments"])], "tenants[1].namespaces[0]", "no other tenant has", id="shared-namespace"),
        pytest.param([tenant(namespaces=["payments", "payments"])], "tenants[0].namespaces[1]", "no other tenant has", id="namespace-twice"),
        pytest.param([tenant(namespaces=["Payments"])], "tenants[0].namespaces[0]", "RFC 1123", id="non-dns-namespace"),
        pytest.param([tenant(namespaces=["argocd"])], "tenants[0].namespaces[0]", "the platform does not own", id="argocd"),
        pytest.param([tenant(namespaces=["crossplane-system"])], "tenants[0].namespaces[0]", "the platform does not own", id="crossplane-system"),
        pytest.param([tenant(namespaces=["kube-system"])], "tenants[0].namespaces[0]", "the platform does not own", id="kube-system"),
        pytest.param([tenant(namespaces=["webapp-aso"])], "tenants[0].namespaces[0]", "the platform does not own", id="gitops-app-namespace"),
        pytest.param([tenant(namespaces=[])], "tenants[0].namespaces", "at least one namespace", id="no-namespace"),
        pytest.param([tenant(subscriptionId="8c1d2e3f-4a5b-4c6d-8e7f")], "tenants[0].subscriptionId", "GUID", id="bad-subscription"),
        pytest.param([tenant(subscriptionId=...)], "tenants[0].subscriptionId", "required", id="no-subscription"),
        pytest.param([tenant(tenantId="contoso.onmicrosoft.com")], "tenants[0].tenantId", "GUID", id="bad-tenant-id"),
        pytest.param(
            [tenant(roles=[{"role": "Contributor", "scope": f"/subscriptions/{SUB_B}/resourceGroups/rg-x"}])],
            "tenants[0].roles[0].scope", f"/subscriptions/{SUB_A}/", id="scope-in-another-subscription",
        ),
        pytest.param(
            [tenant(roles=[{"role": "Contributor", "scope": f"/subscriptions/{SUB_A}"}])],
            "tenants[0].roles[0].scope", "allowSubscriptionScope", id="raw-subscription-id-scope",
        ),
        pytest.param(
            [tenant(roles=[{"role": "Contributor", "scope": "rg-payments"}])],
            "tenants[0].roles[0].scope", "ARM ID under", id="scope-not-an-arm-id",
        ),
        pytest.param(
            [tenant(roles=[{"role": "Contributor", "scope": "subscription"}])],
            "tenants[0].roles[0].scope", "only with allowSubscriptionScope: true", id="subscription-without-opt-in",
        ),
        pytest.param([tenant(roles=[{"role": "Superuser"}])], "tenants[0].roles[0].role", "role definition GUID", id="unknown-role"),
        pytest.param([tenant(roles=[])], "tenants[0].roles", "at least one", id="empty-roles"),
        pytest.param([tenant(sourceRepos=[])], "tenants[0].sourceRepos", "at least one Git URL", id="empty-source-repos"),
        pytest.param([tenant(sourceRepos=...)], "tenants[0].sourceRepos", "at least one Git URL", id="no-source-repos"),
        pytest.param([tenant(sourceRepos=["ftp://x/y"])], "tenants[0].sourceRepos[0]", "Git URLs", id="bad-source-repo"),
        pytest.param([tenant(location="West Europe")], "tenants[0].location", "Azure region", id="bad-location"),
        pytest.param([tenant(namespace=["payments"])], "tenants[0].namespace", "no such setting", id="unknown-key"),
        pytest.param([tenant(roles=[{"role": "Reader", "scop": "resourceGroup"}])], "tenants[0].roles[0].scop", "no such setting", id="unknown-role-key"),
        pytest.param([tenant(roles=[{"role": "Reader", "scope": "subscription", "allowSubscriptionScope": "yes"}])], "tenants[0].roles[0].allowSubscriptionScope", "true or false", id="opt-in-not-a-bool"),
        pytest.param([tenant(roles={"role": "Reader"})], "tenants[0].roles", "a list", id="roles-not-a-list"),
        pytest.param(["payments"], "tenants[0]", "a mapping", id="tenant-not-a-mapping"),
]


@pytest.mark.parametrize("tenants, key, allowed", TENANT_CASES)
def test_each_tenant_rule_names_key_value_and_allowed(tenants, key, allowed):
    found = problems(with_tenants(*tenants))
    # One problem, one message: exactly one, on the key, saying what is allowed.
    [msg] = found
    assert msg.startswith(f"aks-platform:{key}: got "), found
    assert allowed in msg, msg


def test_platform_namespaces_are_listed_in_the_message():
    [msg] = [p for p in problems(with_tenants(tenant(namespaces=["argocd"]))) if "namespaces" in p]
    assert "'argocd'" in msg
    for ns in ("argocd", "crossplane-system", "azureserviceoperator-system", "webapp-aso"):
        assert ns in PLATFORM_NAMESPACES and ns in msg


def test_scopes_inside_the_subscription_are_accepted():
    arm_id = f"/subscriptions/{SUB_A.upper()}/resourceGroups/rg-payments-data"
    cfg = load(
        with_tenants(
            tenant(
                roles=[
                    {"role": "Contributor", "scope": arm_id},
                    {"role": "Reader", "scope": "subscription", "allowSubscriptionScope": True},
                    {"role": "acdd72a7-3385-48ef-bd42-f606fba81ae7"},
                ]
            )
        )
    )
    assert [(r.role, r.scope) for r in cfg.tenants[0].roles] == [
        ("Contributor", arm_id),
        ("Reader", "subscription"),
        ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "resourceGroup"),
    ]


def test_tenants_need_workload_identity_not_a_service_principal():
    found = problems(with_tenants(tenant(), base=HYBRID_SP), HYBRID_SECRETS)
    [msg] = [p for p in found if p.startswith("aks-platform:tenants:")]
    assert "workload identity" in msg and "oidcIssuerUrl" in msg
    # The same tenant on a hybrid cluster with a public OIDC issuer is fine.
    raw = with_tenants(tenant(), base=HYBRID_SP)
    raw["hybrid"] = {"oidcIssuerUrl": "https://issuer.example.com/cluster/"}
    del raw["servicePrincipalClientSecret"]
    assert load(raw, frozenset({"kubeconfig"})).tenants[0].name == "payments"


def test_all_tenant_problems_are_reported_together():
    found = problems(with_tenants(tenant(name="X", subscriptionId="x", namespaces=["argocd"], sourceRepos=[])))
    keys = {p.split(": got ")[0].split(":")[1] for p in found}
    assert keys == {"tenants[0].name", "tenants[0].subscriptionId", "tenants[0].namespaces[0]", "tenants[0].sourceRepos"}


def test_invalid_tenant_config_registers_nothing():
    """The error is raised by the real program before any resource (not even the cluster) is registered."""
    raw = with_tenants(tenant(), other(namespaces=["payments"]))
    config = {f"aks-platform:{k}": v for k, v in raw.items()}
    with pytest.raises(ConfigError, match=r"tenants\[1\]\.namespaces\[0\]"):
        run_program(config)
    from pulumi.runtime.settings import SETTINGS

    assert SETTINGS.monitor.registrations == []


def test_shipped_tenants_stack_is_valid(stack_file):
    raw_config, secret = stack_file("tenants")
    raw = {k.split(":", 1)[1]: v for k, v in raw_config.items() if k.startswith("aks-platform:")}
    cfg = load(raw, frozenset(s.split(":", 1)[1] for s in secret))
    assert [t.name for t in cfg.tenants] == ["payments", "analytics"]
