"""Kro: pinned OCI chart in aggregation RBAC mode, plus the aggregated least-privilege ClusterRole."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.chart_asserts import assert_pinned_release

from components.kro import AGGREGATE_LABEL, Kro, KroArgs
from components.versions import KRO
from offline.evaluate import Evaluation, evaluate
from tests.upstream_values import unknown_value_paths, upstream_provenance

RELEASE = "kubernetes:helm.sh/v3:Release"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
# The ASO groups the reference app's graph uses (stacks/config.py DEFAULT_ASO_CRD_PATTERN).
ASO_GROUPS = (
    "resources.azure.com",
    "dbforpostgresql.azure.com",
    "storage.azure.com",
    "managedidentity.azure.com",
    "authorization.azure.com",
)
READ_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]


def program(args: KroArgs = KroArgs(managed_api_groups=ASO_GROUPS)):
    def run() -> None:
        provider = k8s.Provider("k", kubeconfig=KUBECONFIG)
        Kro("kro", args, pulumi.ResourceOptions(providers={"kubernetes": provider}))

    return run


@pytest.fixture(params=[False, True], ids=["update", "preview"])
def ev(request) -> Evaluation:
    return evaluate(program(), preview=request.param)


def rules_by_group(role) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for rule in role.plain("rules"):
        for group in rule["apiGroups"]:
            assert group not in out, f"group {group!r} in two rules"
            out[group] = rule
    return out


def test_release_is_the_pinned_oci_chart_in_its_own_namespace(ev: Evaluation):
    component = ev.one("aks-platform:kro:Kro")
    release = ev.one(RELEASE)
    namespace = ev.one("kubernetes:core/v1:Namespace")
    assert KRO.namespace == "kro-system" and KRO.chart == "oci://registry.k8s.io/kro/charts/kro"
    assert_pinned_release(ev, component, namespace, release, KRO)
    provider = ev.one("pulumi:providers:kubernetes")
    for child in (namespace, release, ev.one(CLUSTER_ROLE)):
        assert child.parent == component.urn
        assert child.provider.startswith(provider.urn + "::")


def test_rbac_mode_is_aggregation(ev: Evaluation):
    assert ev.one(RELEASE).plain("values") == {"rbac": {"mode": "aggregation"}}


def test_cluster_role_is_aggregated_into_kro_controller(ev: Evaluation):
    role = ev.one(CLUSTER_ROLE)
    assert role.plain("metadata.labels") == {AGGREGATE_LABEL: "true"}
    assert AGGREGATE_LABEL == "rbac.kro.run/aggregate-to-controller"
    # A fixed name, under the chart's `<release>:controller` prefix.
    assert role.plain("metadata.name") == "kro:controller:platform-graph"
    # Aggregation is order-independent, so the role does not wait for the release.
    assert not ev.depends_on(role, ev.one(RELEASE))


def test_cluster_role_grants_the_graph_and_nothing_more(ev: Evaluation):
    rules = rules_by_group(ev.one(CLUSTER_ROLE))
    assert set(rules) == {*ASO_GROUPS, "apps", "", "kro.run"}
    # ASO kinds in the managed groups: full lifecycle, named verbs only.
    aso_rules = [r for g, r in rules.items() if g.endswith(".azure.com")]
    assert all(r["resources"] == ["*"] and r["verbs"] == READ_WRITE for r in aso_rules)
    # The core kinds the reference app's RGD creates.
    assert rules["apps"] == {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": READ_WRITE}
    assert sorted(rules[""]["resources"]) == ["serviceaccounts", "services"]
    assert rules[""]["verbs"] == READ_WRITE
    # Instances are created by users: kro watches them and writes finalizers and status only.
    assert rules["kro.run"]["verbs"] == ["get", "list", "watch", "update", "patch"]
    # No wildcard verbs and no RBAC/privilege verbs anywhere.
    for rule in rules.values():
        assert not {"*", "escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
    # Nothing outside the graph: no Secrets, no RBAC objects, no CRDs.
    assert "secrets" not in rules[""]["resources"]
    assert "rbac.authorization.k8s.io" not in rules and "apiextensions.k8s.io" not in rules


def test_instance_kinds_can_be_narrowed_to_named_plurals():
    ev = evaluate(program(KroArgs(managed_api_groups=ASO_GROUPS, instance_resources=["webapps"])))
    rule = rules_by_group(ev.one(CLUSTER_ROLE))["kro.run"]
    assert rule["resources"] == ["webapps", "webapps/status"]


def test_args_validate_groups():
    with pytest.raises(AssertionError, match="API group"):
        KroArgs(managed_api_groups=["Storage.Azure.com/*"])
    with pytest.raises(AssertionError, match="duplicate"):
        KroArgs(managed_api_groups=["storage.azure.com", "storage.azure.com"])
    with pytest.raises(AssertionError, match="at least one"):
        KroArgs(managed_api_groups=ASO_GROUPS, instance_resources=[])


def test_component_attributes():
    holder = {}

    def prog():
        provider = k8s.Provider("k", kubeconfig=KUBECONFIG)
        holder["kro"] = Kro("kro", KroArgs(ASO_GROUPS), pulumi.ResourceOptions(providers={"kubernetes": provider}))
        return {"namespace": holder["kro"].namespace, "role": holder["kro"].cluster_role.metadata.name}

    ev = evaluate(prog)
    assert isinstance(holder["kro"].release, k8s.helm.v3.Release)
    assert ev.outputs["namespace"].value == "kro-system"
    assert ev.outputs["role"].value == "kro:controller:platform-graph"


# --- conformance with the upstream chart (values.yaml; the chart has no schema) ---


@pytest.fixture
def chart(upstream: Path) -> Path:
    return upstream / "kro"


def test_upstream_data_is_the_pinned_version(chart: Path):
    assert f"v{KRO.version}" in upstream_provenance(chart, "values.yaml")


def test_values_conform_to_upstream_values(chart: Path):
    values = evaluate(program()).one(RELEASE).plain("values")
    assert unknown_value_paths(values, chart) == []


def test_aggregation_is_a_documented_rbac_mode(chart: Path):
    # rbac.mode is a plain string upstream; its allowed values are documented in the comment.
    text = (chart / "values.yaml").read_text()
    assert "# - aggregation:" in text and "Recommended setting is aggregation" in text


def test_misspelt_key_is_caught(chart: Path):
    assert unknown_value_paths({"rbac": {"mod": "aggregation"}}, chart) == ["rbac.mod"]
