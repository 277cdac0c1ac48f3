"""Crossplane: pinned chart and packages, ordering around asynchronous CRDs, workload identity."""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.chart_asserts import assert_pinned_release
import yaml

from components.argocd import ROOT_APPLICATION_DELETE_TIMEOUT
from components.crossplane import (
    FAMILY_PROVIDER,
    PROVIDER_CONFIG_DELETE_TIMEOUT,
    PROVIDER_TIMEOUT,
    SERVICE_ACCOUNT,
    Crossplane,
    CrossplaneArgs,
    crossplane_values,
)
from components.gitops_bridge import CROSSPLANE_PROVIDER_CONFIG
from components.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.versions import CROSSPLANE, CROSSPLANE_PROVIDERS
from offline.evaluate import UNKNOWN, Evaluation, RecordingMonitor, evaluate
from offline.mocks import SUBSCRIPTION_ID, TENANT_ID, mock_guid

PROVIDER = "kubernetes:pkg.crossplane.io/v1:Provider"
RUNTIME_CONFIG = "kubernetes:pkg.crossplane.io/v1beta1:DeploymentRuntimeConfig"
CLUSTER_PROVIDER_CONFIG = "kubernetes:azure.m.upbound.io/v1beta1:ClusterProviderConfig"
RELEASE = "kubernetes:helm.sh/v3:Release"
SERVICE_ACCOUNT_TYPE = "kubernetes:core/v1:ServiceAccount"

# Written out in full on purpose: a change of registry or version must show up here.
EXPECTED_PACKAGES = {
    "provider-family-azure": "xpkg.crossplane.io/crossplane-contrib/provider-family-azure:v2.7.0",
    "provider-azure-storage": "xpkg.crossplane.io/crossplane-contrib/provider-azure-storage:v2.7.0",
    "provider-azure-dbforpostgresql": "xpkg.crossplane.io/crossplane-contrib/provider-azure-dbforpostgresql:v2.7.0",
    "provider-azure-managedidentity": "xpkg.crossplane.io/crossplane-contrib/provider-azure-managedidentity:v2.7.0",
    "provider-azure-authorization": "xpkg.crossplane.io/crossplane-contrib/provider-azure-authorization:v2.7.0",
}
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SUB = "66666666-7777-8888-9999-000000000000"
TEN = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def program(client_id=CLIENT_ID, tenant_id=TEN, subscription_id=SUB, **extra):
    def run():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        xp = Crossplane(
            "crossplane",
            CrossplaneArgs(client_id=client_id, tenant_id=tenant_id, subscription_id=subscription_id, **extra),
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
        )
        return {"namespace": xp.namespace}

    return run


def program_with_identity():
    """The lead's wiring: an identity federated to SERVICE_ACCOUNT feeds the component."""

    def run():
        identity = WorkloadIdentity(
            "xp-wi",
            WorkloadIdentityArgs(
                identity_name="id-dev-crossplane",
                resource_group_name="rg-dev-platform",
                location="westeurope",
                oidc_issuer_url="https://westeurope.oic.prod-aks.azure.com/t/i/",
                service_accounts=[SERVICE_ACCOUNT],
            ),
        )
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        Crossplane(
            "crossplane",
            CrossplaneArgs(client_id=identity.client_id, tenant_id=identity.tenant_id, subscription_id=SUBSCRIPTION_ID),
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
        )
        return {}

    return run


def providers_by_name(ev: Evaluation):
    return {p.plain("metadata.name"): p for p in ev.by_type(PROVIDER)}


def runtime_configs_by_name(ev: Evaluation):
    return {r.plain("metadata.name"): r for r in ev.by_type(RUNTIME_CONFIG)}


def manifest(reg) -> dict:
    """The object as it would be applied: the CustomResource's inputs."""
    return {k: v for k, v in reg.plain().items() if k in ("apiVersion", "kind", "metadata", "spec")}


@pytest.mark.parametrize("preview", [False, True])
def test_chart_is_the_pinned_crossplane_release(preview):
    ev = evaluate(program(), preview=preview)
    release = ev.one(RELEASE)
    assert (CROSSPLANE.chart, CROSSPLANE.version, CROSSPLANE.namespace) == ("crossplane", "2.3.4", SERVICE_ACCOUNT.namespace)
    namespace = next(r for r in ev.by_type("kubernetes:core/v1:Namespace") if r.parent == release.parent)
    assert_pinned_release(ev, ev.one("aks-platform:crossplane:Crossplane"), namespace, release, CROSSPLANE)
    assert ev.outputs["namespace"].value == "crossplane-system"
    # Providers are Pulumi objects (with runtime config and waitFor), not chart values.
    assert "packages" not in release.plain("values")["provider"]


def test_provider_packages_are_pinned_exactly_in_one_registry():
    assert CROSSPLANE_PROVIDERS == EXPECTED_PACKAGES
    assert next(iter(CROSSPLANE_PROVIDERS)) == FAMILY_PROVIDER
    ev = evaluate(program())
    providers = providers_by_name(ev)
    assert {name: p.plain("spec.package") for name, p in providers.items()} == EXPECTED_PACKAGES
    for p in providers.values():
        # Dependency resolution stays on: the explicit family satisfies it (see the component).
        assert "skipDependencyResolution" not in p.plain("spec")
        assert "namespace" not in p.plain("metadata")  # cluster-scoped


@pytest.mark.parametrize("preview", [False, True])
def test_ordering_release_family_services_then_provider_config(preview):
    ev = evaluate(program(), preview=preview)
    release = ev.one(RELEASE)
    providers = providers_by_name(ev)
    configs = runtime_configs_by_name(ev)
    family = providers[FAMILY_PROVIDER]
    assert len(providers) == len(configs) == 5
    for name, provider in providers.items():
        # Their CRDs come with the chart.
        assert release.urn in provider.dependencies
        assert release.urn in configs[name].dependencies
        assert configs[name].urn in provider.dependencies
        if name != FAMILY_PROVIDER:
            # The package manager must find the family already installed.
            assert family.urn in provider.dependencies
            assert not ev.depends_on(family, provider)
    cpc = ev.one(CLUSTER_PROVIDER_CONFIG)
    # Its CRD is installed by the family package, asynchronously: wait for every provider.
    for provider in providers.values():
        assert provider.urn in cpc.dependencies
        assert ev.depends_on(cpc, release)


@pytest.fixture
def custom_timeouts(monkeypatch):
    """Custom timeouts per resource name, read off the registrations."""
    seen: dict[str, tuple[str, str]] = {}
    original = RecordingMonitor.RegisterResource

    def register(self, request):
        if request.HasField("customTimeouts"):
            seen[request.name] = (request.customTimeouts.create, request.customTimeouts.update)
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", register)
    return seen


def test_providers_are_awaited_until_installed_and_healthy(custom_timeouts):
    ev = evaluate(program())
    for name, provider in providers_by_name(ev).items():
        wait_for = provider.plain("metadata.annotations")["pulumi.com/waitFor"]
        assert json.loads(wait_for) == ["condition=Installed", "condition=Healthy"]
        assert custom_timeouts[provider.name] == (PROVIDER_TIMEOUT, PROVIDER_TIMEOUT) == ("15m", "15m")


def _minutes(duration: str) -> float:
    h, m, sec = (re.search(rf"(\d+){unit}", duration) for unit in "hms")
    return sum(int(x.group(1)) * f for x, f in ((h, 60), (m, 1), (sec, 1 / 60)) if x)


def test_deleting_the_provider_config_waits_as_long_as_the_root_application():
    """Switching Crossplane off deletes the ClusterProviderConfig, which Crossplane holds
    while managed resources (a PostgreSQL server takes minutes to delete) still use it.
    pulumi-kubernetes' default wait is 10 minutes: the bound must be the stack's own, the
    one destroy gives the root Application for the same cascade."""
    cpc = evaluate(program()).one(CLUSTER_PROVIDER_CONFIG)
    assert cpc.custom_timeouts == {"delete": PROVIDER_CONFIG_DELETE_TIMEOUT}
    assert PROVIDER_CONFIG_DELETE_TIMEOUT == ROOT_APPLICATION_DELETE_TIMEOUT
    assert _minutes(cpc.custom_timeouts["delete"]) > 10
    # The bound given is the one recorded.
    cpc = evaluate(program(teardown_timeout="1h30m")).one(CLUSTER_PROVIDER_CONFIG)
    assert cpc.custom_timeouts == {"delete": "1h30m"}


@pytest.mark.parametrize("bad", ["", "60", "1 hour", "-5m"])
def test_a_provider_config_teardown_timeout_that_is_no_duration_is_an_error_naming_it(bad):
    with pytest.raises(ValueError, match=rf"teardown_timeout {re.escape(repr(bad))}: allowed"):
        CrossplaneArgs(client_id=CLIENT_ID, tenant_id=TEN, subscription_id=SUB, teardown_timeout=bad)


def test_runtime_configs_run_every_provider_as_the_shared_workload_identity_account():
    ev = evaluate(program())
    providers = providers_by_name(ev)
    configs = runtime_configs_by_name(ev)
    sa = ev.one(SERVICE_ACCOUNT_TYPE)
    assert sa.plain("metadata.name") == SERVICE_ACCOUNT.name == "provider-azure"
    assert sa.plain("metadata.namespace") == SERVICE_ACCOUNT.namespace
    assert sa.plain("metadata.annotations") == {"azure.workload.identity/client-id": CLIENT_ID}
    # One runtime config per provider (a shared one loops, crossplane#5961).
    refs = [p.plain("spec.runtimeConfigRef") for p in providers.values()]
    assert len({r["name"] for r in refs}) == len(refs)
    for name, provider in providers.items():
        ref = provider.plain("spec.runtimeConfigRef")
        assert ref == {"apiVersion": "pkg.crossplane.io/v1beta1", "kind": "DeploymentRuntimeConfig", "name": name}
        assert sa.urn in provider.dependencies
        spec = configs[ref["name"]].plain("spec")
        template = spec["deploymentTemplate"]["spec"]["template"]
        assert template["spec"]["serviceAccountName"] == sa.plain("metadata.name")
        assert template["metadata"]["labels"] == {"azure.workload.identity/use": "true"}
        assert spec["deploymentTemplate"]["spec"]["selector"] == {}
        # Not serviceAccountTemplate: Crossplane would own the shared account (crossplane#7769).
        assert "serviceAccountTemplate" not in spec


@pytest.mark.parametrize("preview", [False, True])
def test_client_id_flows_from_the_workload_identity(preview):
    ev = evaluate(program_with_identity(), preview=preview)
    identity = ev.one("azure-native:managedidentity:UserAssignedIdentity")
    fic = ev.one("azure-native:managedidentity:FederatedIdentityCredential")
    assert fic.plain("subject") == "system:serviceaccount:crossplane-system:provider-azure"
    cpc = ev.one(CLUSTER_PROVIDER_CONFIG)
    sa = ev.one(SERVICE_ACCOUNT_TYPE)
    client_id = cpc.plain("spec.clientID")
    assert sa.plain("metadata.annotations")["azure.workload.identity/client-id"] == client_id
    assert cpc.plain("spec.subscriptionID") == SUBSCRIPTION_ID
    if preview:
        # Not known until the identity exists; the config waits for it.
        assert client_id == UNKNOWN
        assert cpc.plain("spec.tenantID") == UNKNOWN
    else:
        assert client_id == mock_guid("client", SUBSCRIPTION_ID, "id-dev-crossplane")
        assert cpc.plain("spec.tenantID") == TENANT_ID
    assert ev.depends_on(cpc, identity)
    assert ev.depends_on(sa, identity)


def test_cluster_provider_config_uses_workload_identity():
    ev = evaluate(program())
    cpc = ev.one(CLUSTER_PROVIDER_CONFIG)
    assert cpc.plain("apiVersion") == "azure.m.upbound.io/v1beta1"
    assert cpc.plain("kind") == "ClusterProviderConfig"
    assert cpc.plain("metadata") == {"name": CROSSPLANE_PROVIDER_CONFIG}  # cluster-scoped: no namespace
    assert CROSSPLANE_PROVIDER_CONFIG == "default"  # what namespaced MRs reference by default
    assert cpc.plain("spec") == {
        "credentials": {"source": "OIDCTokenFile"},
        "clientID": CLIENT_ID,
        "tenantID": TEN,
        "subscriptionID": SUB,
        "storageUseAzureAD": True,
    }
    # Only the namespaced (v2) API's config: no legacy azure.upbound.io ProviderConfig.
    assert not [r for r in ev.resources if "azure.upbound.io" in r.type]


def test_only_namespaced_managed_resources_of_the_installed_packages_are_activated():
    assert crossplane_values()["provider"]["defaultActivations"] == [
        "*.azure.m.upbound.io",
        "*.storage.azure.m.upbound.io",
        "*.dbforpostgresql.azure.m.upbound.io",
        "*.managedidentity.azure.m.upbound.io",
        "*.authorization.azure.m.upbound.io",
    ]


def test_component_shape():
    holder = {}

    def run():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        holder["xp"] = Crossplane(
            "xp",
            CrossplaneArgs(client_id=CLIENT_ID, tenant_id=TEN, subscription_id=SUB),
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
        )
        return {}

    ev = evaluate(run)
    xp = holder["xp"]
    assert len(xp.providers) == 5 and len(xp.runtime_configs) == 5
    assert isinstance(xp.release, k8s.helm.v3.Release)
    assert isinstance(xp.provider_config, k8s.apiextensions.CustomResource)
    component = ev.one("aks-platform:crossplane:Crossplane")
    provider_urn = ev.one("pulumi:providers:kubernetes").urn
    for reg in ev.resources:
        if reg.type.startswith("kubernetes:"):
            assert reg.parent == component.urn
            assert reg.name.startswith("xp-")
            assert reg.provider.startswith(provider_urn)


# Conformance with the pinned upstream chart and CRDs (skipped without ../shared/upstream).


def test_values_are_known_to_the_chart(upstream):
    from tests.upstream_values import unknown_value_paths

    assert unknown_value_paths(crossplane_values(), upstream / "crossplane") == []


def test_custom_resources_conform_to_upstream_crds(upstream):
    from tests.gitops_support.crds import crd_validator, errors

    ev = evaluate(program())
    checks = [
        (upstream / "crossplane/crds/pkg.crossplane.io_providers.yaml", "v1", ev.by_type(PROVIDER)),
        (upstream / "crossplane/crds/pkg.crossplane.io_deploymentruntimeconfigs.yaml", "v1beta1", ev.by_type(RUNTIME_CONFIG)),
        (
            upstream / "provider-upjet-azure/azure.m.upbound.io_clusterproviderconfigs.yaml",
            "v1beta1",
            ev.by_type(CLUSTER_PROVIDER_CONFIG),
        ),
    ]
    for crd_path, version, regs in checks:
        assert regs
        # libyaml: the DeploymentRuntimeConfig CRD is 0.7 MB, ~5 s with the pure-Python loader.
        crd = yaml.load(crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        # Cluster-scoped kinds must not carry a namespace (the provider cannot tell before the CRD exists).
        assert crd["spec"]["scope"] == "Cluster"
        validator = crd_validator(crd_path, version)
        for reg in regs:
            obj = manifest(reg)
            assert errors(validator, obj) == [], reg.name
            assert "namespace" not in obj["metadata"]
        # The check is strict: a misspelt field fails.
        bad = manifest(regs[0])
        bad["spec"] = {**bad["spec"], "unknownField": True}
        assert errors(validator, bad)


# Service principal mode (hybrid clusters without a public OIDC issuer).


def sp_program(preview_secret="s3cr3t-value"):
    def run():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        Crossplane(
            "crossplane",
            CrossplaneArgs(client_id=CLIENT_ID, tenant_id=TEN, subscription_id=SUB, client_secret=preview_secret),
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
        )
        return {}

    return run


@pytest.mark.parametrize("preview", [False, True])
def test_service_principal_credentials_live_in_a_secret(preview):
    from offline.evaluate import Secret

    ev = evaluate(sp_program(), preview=preview)
    cpc = ev.one(CLUSTER_PROVIDER_CONFIG)
    secret = ev.one("kubernetes:core/v1:Secret")
    assert secret.plain("metadata") == {"name": "azure-service-principal", "namespace": "crossplane-system"}
    assert cpc.plain("spec.credentials") == {
        "source": "Secret",
        "secretRef": {"namespace": "crossplane-system", "name": "azure-service-principal", "key": "credentials"},
    }
    assert cpc.plain("spec.clientID") == CLIENT_ID
    assert secret.urn in cpc.dependencies
    # The client secret is only ever a secret value, and nowhere else.
    assert isinstance(secret.input("stringData"), Secret) or isinstance(secret.input("stringData.credentials"), Secret)
    assert json.loads(secret.plain("stringData.credentials")) == {
        "clientId": CLIENT_ID,
        "clientSecret": "s3cr3t-value",
        "tenantId": TEN,
        "subscriptionId": SUB,
    }
    for reg in ev.resources:
        if reg is not secret:
            assert "s3cr3t-value" not in json.dumps(reg.plain(), default=str), reg.name
    # No workload identity wiring then.
    assert "annotations" not in ev.one(SERVICE_ACCOUNT_TYPE).plain("metadata")
    for config in ev.by_type(RUNTIME_CONFIG):
        template = config.plain("spec.deploymentTemplate.spec.template")
        assert "metadata" not in template
        assert template["spec"]["serviceAccountName"] == SERVICE_ACCOUNT.name


def test_workload_identity_mode_creates_no_credentials_secret():
    ev = evaluate(program())
    assert ev.by_type("kubernetes:core/v1:Secret") == []


def test_service_principal_objects_conform_to_upstream_crds(upstream):
    from tests.gitops_support.crds import crd_validator, errors

    ev = evaluate(sp_program())
    validator = crd_validator(upstream / "provider-upjet-azure/azure.m.upbound.io_clusterproviderconfigs.yaml", "v1beta1")
    assert errors(validator, manifest(ev.one(CLUSTER_PROVIDER_CONFIG))) == []
    validator = crd_validator(upstream / "crossplane/crds/pkg.crossplane.io_deploymentruntimeconfigs.yaml", "v1beta1")
    for config in ev.by_type(RUNTIME_CONFIG):
        assert errors(validator, manifest(config)) == []


def test_callers_depends_on_reaches_the_release():
    def run():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        before = k8s.core.v1.Namespace("before", opts=pulumi.ResourceOptions(provider=provider))
        Crossplane(
            "crossplane",
            CrossplaneArgs(client_id=CLIENT_ID, tenant_id=TEN, subscription_id=SUB),
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=[before]),
        )
        return {}

    ev = evaluate(run)
    assert ev.named("before").urn in ev.one(RELEASE).dependencies


def test_every_managed_resource_the_gitops_layer_composes_is_installed_and_activated():
    """gitops/ uses only namespaced kinds of the installed packages, through our ClusterProviderConfig."""
    import fnmatch
    from pathlib import Path

    gitops = Path(__file__).resolve().parent.parent / "gitops"
    activations = crossplane_values()["provider"]["defaultActivations"]
    used: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            api = node.get("apiVersion")
            if isinstance(api, str) and "upbound.io/" in api:
                group = api.split("/")[0]
                used.add(group)
                ref = (node.get("spec") or {}).get("providerConfigRef")
                assert ref in (None, {"kind": "ClusterProviderConfig", "name": CROSSPLANE_PROVIDER_CONFIG}), ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(gitops.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            walk(doc)
    assert used, "gitops/ composes no Crossplane managed resources"
    for group in used:
        assert group.endswith(".azure.m.upbound.io") or group == "azure.m.upbound.io", group
        # An MRD is named <plural>.<group>; some activation pattern must match it.
        assert any(fnmatch.fnmatchcase(f"things.{group}", pattern) for pattern in activations), group
        package = "provider-family-azure" if group == "azure.m.upbound.io" else f"provider-azure-{group.split('.')[0]}"
        assert package in CROSSPLANE_PROVIDERS, group


def test_crossplane_identity_holds_what_aso_holds_and_no_storage_data_role(stack_file):
    """Contributor's Actions authorize every storage call the providers make (see the comment
    above CrossplaneArgs), so the Crossplane identity holds exactly ASO's grants, per scope,
    even when the stack grants the controllers the whole subscription: no data-plane role
    anywhere."""
    from components.roles import RBAC_ADMIN_ROLE
    from components.roles import BUILTIN_ROLES
    from tests.conftest import run_program

    config, secret = stack_file("dev")
    config["aks-platform:addons"]["aso"] = {"subscriptionScope": True}
    ev = run_program(config, secret, stack="dev")
    assignments = ev.by_type("azure-native:authorization:RoleAssignment")

    def held(identity: str) -> set[tuple[str, str]]:
        return {
            (g.plain("scope").rsplit("/", 1)[1], g.plain("roleDefinitionId").rsplit("/", 1)[1])
            for g in assignments
            if g.name.startswith(identity)
        }

    crossplane = held("crossplane-identity")
    assert crossplane == held("aso-identity")
    assert {role for _, role in crossplane} == {BUILTIN_ROLES["Contributor"], BUILTIN_ROLES[RBAC_ADMIN_ROLE]}
    assert {scope for scope, _ in crossplane} == {"rg-dev-webapp", SUBSCRIPTION_ID}
