"""Stack-level: the whole program per shipped stack, its outputs, secrecy and determinism."""

from __future__ import annotations

import json

import pytest

from offline.evaluate import Secret, unwrap
from tests.conftest import run_program

SHIPPED = ["dev", "prod"]
ALL_STACKS = ["dev", "prod", "hybrid", "tenants"]


def graph(ev) -> str:
    """The rendered graph as text: every registration with its inputs and edges."""
    return json.dumps(
        [
            {
                "urn": r.urn,
                "parent": r.parent,
                "provider": r.provider,
                "deps": r.dependencies,
                "prop_deps": r.property_dependencies,
                "protect": r.protect,
                "inputs": unwrap(r.inputs),
            }
            for r in ev.resources
        ],
        sort_keys=True,
    )


@pytest.mark.parametrize("stack", ALL_STACKS)
@pytest.mark.parametrize("preview", [False, True])
def test_same_config_renders_the_same_graph_twice(shipped, stack_file, stack, preview):
    """The session's evaluation of the stack (made earlier, other evaluations in between) and a fresh one."""
    config, secret = stack_file(stack)
    first = shipped(stack, preview=preview)
    second = run_program(config, secret, stack=stack, preview=preview)
    assert graph(first) == graph(second)
    assert len(first.resources) >= 5


@pytest.mark.parametrize("stack", SHIPPED)
def test_stack_outputs(shipped, stack):
    ev = shipped(stack)
    out = ev.outputs
    assert out["clusterName"].value == f"aks-{stack}"
    assert out["resourceGroupName"].value == f"rg-{stack}-platform"
    assert out["oidcIssuerUrl"].value.startswith("https://westeurope.oic.prod-aks.azure.com/")
    assert out["appResourceGroups"].value == [f"rg-{stack}-webapp"]
    # The kubeconfig is a secret; nothing else is.
    assert out["kubeconfig"].secret
    assert [k for k, v in out.items() if v.secret] == ["kubeconfig"]


@pytest.mark.parametrize("stack", SHIPPED)
def test_kubeconfig_is_secret_wherever_it_is_an_input(shipped, stack):
    ev = shipped(stack)
    kubeconfig = ev.outputs["kubeconfig"].value
    for reg in ev.resources:
        text = json.dumps(_non_secret_parts(reg.inputs))
        assert "certificate-authority-data" not in text, f"{reg.name} carries a kubeconfig outside a secret"
        assert kubeconfig.splitlines()[3] not in text
    provider = ev.one("pulumi:providers:kubernetes")
    assert isinstance(provider.input("kubeconfig"), Secret)


def _non_secret_parts(value):
    if isinstance(value, Secret):
        return "[secret]"
    if isinstance(value, dict):
        return {k: _non_secret_parts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_non_secret_parts(v) for v in value]
    return value


def test_prod_protects_cluster_identities_and_app_groups(shipped):
    ev = shipped("prod")
    protected_types = {
        "azure-native:containerservice:ManagedCluster",
        "azure-native:containerservice:AgentPool",
        "azure-native:resources:ResourceGroup",
        "azure-native:managedidentity:UserAssignedIdentity",
    }
    for reg in ev.resources:
        if reg.type in protected_types:
            assert reg.protect, f"{reg.type} {reg.name} is not protected in prod"


def test_dev_protects_nothing(shipped):
    ev = shipped("dev")
    assert not [r.name for r in ev.resources if r.protect]


def test_every_resource_is_a_child_of_a_component_or_an_app_group(shipped):
    """Pulumi component style: children with parent=self; only the stack wires top-level pieces."""
    ev = shipped("prod")
    components = {r.urn for r in ev.resources if not r.custom}
    for reg in ev.resources:
        if reg.custom and not reg.type.startswith("pulumi:providers:azure-native"):
            top_level_ok = reg.name.startswith("app-rg-")
            assert reg.parent in components or top_level_ok, f"{reg.type} {reg.name} has no component parent"
