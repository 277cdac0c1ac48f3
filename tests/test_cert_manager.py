"""CertManager: the pinned chart, its values, and their conformance with the upstream chart."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.chart_asserts import assert_pinned_release

from components.cert_manager import CertManager, CertManagerArgs
from components.versions import CERT_MANAGER
from offline.evaluate import Evaluation, evaluate
from tests.upstream_values import unknown_value_paths, upstream_provenance

RELEASE = "kubernetes:helm.sh/v3:Release"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"


def program() -> None:
    provider = k8s.Provider("k", kubeconfig=KUBECONFIG)
    CertManager("cert-manager", CertManagerArgs(), pulumi.ResourceOptions(providers={"kubernetes": provider}))


def run(preview: bool) -> Evaluation:
    return evaluate(program, preview=preview)


@pytest.fixture(params=[False, True], ids=["update", "preview"])
def ev(request) -> Evaluation:
    return run(request.param)


def test_release_is_the_pinned_chart_in_its_own_namespace(ev: Evaluation):
    component = ev.one("aks-platform:cert_manager:CertManager")
    namespace = ev.one("kubernetes:core/v1:Namespace")
    release = ev.one(RELEASE)
    assert CERT_MANAGER.namespace == "cert-manager"
    assert_pinned_release(ev, component, namespace, release, CERT_MANAGER)


def test_values_install_and_keep_crds_and_keep_leases_out_of_kube_system(ev: Evaluation):
    values = ev.one(RELEASE).plain("values")
    assert values["crds"] == {"enabled": True, "keep": True}
    assert values["global"] == {"leaderElection": {"namespace": "cert-manager"}}
    assert set(values) == {"crds", "global", "webhook"}


AKS_EXPRESSIONS = [
    {"key": "control-plane", "operator": "NotIn", "values": ["true"]},
    {"key": "kubernetes.azure.com/managedby", "operator": "NotIn", "values": ["aks"]},
]


def test_webhook_selectors_already_carry_what_the_aks_admissions_enforcer_adds(ev: Evaluation):
    webhook = ev.one(RELEASE).plain("values.webhook")
    validating = webhook["validatingWebhookConfiguration"]["namespaceSelector"]["matchExpressions"]
    mutating = webhook["mutatingWebhookConfiguration"]["namespaceSelector"]["matchExpressions"]
    # The chart's own opt-out label is kept; the AKS exclusions are added to both.
    assert validating == [
        {"key": "cert-manager.io/disable-validation", "operator": "NotIn", "values": ["true"]},
        *AKS_EXPRESSIONS,
    ]
    assert mutating == AKS_EXPRESSIONS
    assert set(webhook) == {"validatingWebhookConfiguration", "mutatingWebhookConfiguration"}


def test_nothing_secret_is_registered(ev: Evaluation):
    from offline.evaluate import Secret

    def has_secret(value) -> bool:
        if isinstance(value, Secret):
            return True
        if isinstance(value, dict):
            return any(has_secret(v) for v in value.values())
        if isinstance(value, list):
            return any(has_secret(v) for v in value)
        return False

    assert not [r.name for r in ev.resources if r.type != "pulumi:providers:kubernetes" and has_secret(r.inputs)]


def test_component_attributes():
    holder = {}

    def prog():
        provider = k8s.Provider("k", kubeconfig=KUBECONFIG)
        holder["cm"] = CertManager("cert-manager", CertManagerArgs(), pulumi.ResourceOptions(providers={"kubernetes": provider}))
        return {"namespace": holder["cm"].namespace}

    ev = evaluate(prog)
    assert isinstance(holder["cm"].release, k8s.helm.v3.Release)
    assert ev.outputs["namespace"].value == "cert-manager"


# --- conformance with the upstream chart (values.yaml + values.schema.json) ---


@pytest.fixture
def chart(upstream: Path) -> Path:
    return upstream / "cert-manager"


def test_chart_default_validating_selector_is_the_one_kept(chart: Path):
    import yaml

    upstream_values = yaml.safe_load((chart / "values.yaml").read_text())
    default = upstream_values["webhook"]["validatingWebhookConfiguration"]["namespaceSelector"]["matchExpressions"]
    ours = run(preview=False).one(RELEASE).plain("values.webhook.validatingWebhookConfiguration.namespaceSelector")
    assert ours["matchExpressions"][: len(default)] == default


def test_upstream_data_is_the_pinned_version(chart: Path):
    assert CERT_MANAGER.version.lstrip("v") in upstream_provenance(chart, "values.yaml")
    assert CERT_MANAGER.version.lstrip("v") in upstream_provenance(chart, "values.schema.json")


def test_values_conform_to_upstream_values_and_schema(chart: Path):
    values = run(preview=False).one(RELEASE).plain("values")
    assert (chart / "values.schema.json").is_file()
    assert unknown_value_paths(values, chart) == []


def test_misspelt_nested_key_is_caught_by_values_yaml_where_the_schema_is_open(chart: Path):
    # The schema leaves global.leaderElection open (no additionalProperties: false), so
    # only the values.yaml walk catches this one.
    values = {"global": {"leaderElection": {"namspace": "cert-manager"}}}
    assert unknown_value_paths(values, chart) == ["global.leaderElection.namspace"]


def test_misspelt_top_level_key_is_reported_once(chart: Path):
    # Both checks see it (values.yaml and the schema's additionalProperties: false).
    assert unknown_value_paths({"crd": {"enabled": True}}, chart) == ["crd"]


def test_wrong_type_is_caught_by_the_schema(chart: Path):
    found = unknown_value_paths({"crds": {"enabled": "yes", "keep": True}}, chart)
    assert len(found) == 1 and found[0].startswith("crds.enabled: ") and "boolean" in found[0]


def test_keys_documented_only_in_the_schema_are_known(chart: Path):
    # values.yaml has leaseDuration only as a comment; the schema declares it.
    assert unknown_value_paths({"global": {"leaderElection": {"leaseDuration": "60s"}}}, chart) == []


def test_open_maps_and_lists_take_any_content(chart: Path):
    values = {
        "podLabels": {"team": "platform"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "config": {"apiVersion": "controller.config.cert-manager.io/v1alpha1", "kind": "ControllerConfiguration"},
    }
    assert unknown_value_paths(values, chart) == []
