"""Stack-level add-on wiring: ordering, identities to service accounts, toggles, pins."""

from __future__ import annotations

import pytest

from components import aso as aso_module
from components import crossplane as crossplane_module
from components.roles import BUILTIN_ROLES
from components.versions import CHARTS
from offline.evaluate import Evaluation
from tests.conftest import run_program
from tests.role_asserts import app_group_roles, assert_exactly_the_controller_roles

RELEASE = "kubernetes:helm.sh/v3:Release"
FIC = "azure-native:managedidentity:FederatedIdentityCredential"
UAMI = "azure-native:managedidentity:UserAssignedIdentity"
COMPONENTS = {
    "cert_manager": "aks-platform:cert_manager:CertManager",
    "aso": "aks-platform:aso:AzureServiceOperator",
    "kro": "aks-platform:kro:Kro",
    "crossplane": "aks-platform:crossplane:Crossplane",
    "argocd": "aks-platform:argocd:ArgoCd",
}


def releases(ev: Evaluation) -> dict[str, object]:
    """Helm releases keyed by the add-on whose chart they install."""
    by_chart = {pin.chart: key for key, pin in CHARTS.items()}
    return {by_chart[r.plain("chart")]: r for r in ev.by_type(RELEASE)}


@pytest.mark.parametrize("preview", [False, True])
def test_dev_has_every_addon_pinned(shipped, preview):
    ev = shipped("dev", preview)
    found = releases(ev)
    assert set(found) == set(CHARTS)
    for key, release in found.items():
        pin = CHARTS[key]
        assert release.plain("version") == pin.version
        assert release.plain("name") == pin.release_name
        assert release.plain("namespace") == pin.namespace
        assert release.plain("atomic") is True
        assert release.get("repositoryOpts.repo") == pin.repository
    kinds = {r.type.split(":")[-1] for r in ev.resources}
    assert {"Provider", "DeploymentRuntimeConfig", "ClusterProviderConfig", "AppProject", "Application"} <= kinds
    assert len(ev.by_type("kubernetes:pkg.crossplane.io/v1:Provider")) == 5


def test_only_aso_waits_for_cert_manager_the_rest_install_in_parallel(shipped):
    ev = shipped("dev")
    found = releases(ev)
    assert ev.depends_on(found["aso"], found["cert_manager"])
    independent = ["cert_manager", "kro", "crossplane", "argocd"]
    for a in independent:
        for b in independent + ["aso"]:
            if a != b:
                assert not ev.depends_on(found[a], found[b]), f"{a} waits for {b}"
    # Nothing waits for ASO either, among the add-ons.
    for other in independent:
        assert not ev.depends_on(found[other], found["aso"])


def test_custom_resources_wait_for_their_operator(shipped):
    ev = shipped("dev")
    found = releases(ev)
    for reg in ev.resources:
        group = reg.type.split(":")[1].split("/")[0] if reg.type.startswith("kubernetes:") else ""
        if group in ("pkg.crossplane.io", "azure.m.upbound.io"):
            assert ev.depends_on(reg, found["crossplane"]), reg.name
        if group == "argoproj.io":
            assert ev.depends_on(reg, found["argocd"]), reg.name
    providers = ev.by_type("kubernetes:pkg.crossplane.io/v1:Provider")
    config = ev.one("kubernetes:azure.m.upbound.io/v1beta1:ClusterProviderConfig")
    assert all(ev.depends_on(config, p) for p in providers)


def _identity_for(ev: Evaluation, name: str):
    return next(r for r in ev.by_type(UAMI) if r.plain("resourceName") == name)


def test_aso_identity_is_federated_to_the_service_account_the_chart_runs(shipped):
    ev = shipped("dev")
    release = releases(ev)["aso"]
    values = release.plain("values")
    fics = [f for f in ev.by_type(FIC) if f.name.startswith("aso-identity")]
    assert [f.plain("subject") for f in fics] == [
        f"system:serviceaccount:{release.plain('namespace')}:{values['serviceAccount']['name']}"
    ] == [aso_module.SERVICE_ACCOUNT.subject]
    assert fics[0].plain("issuer") == ev.outputs["oidcIssuerUrl"].value
    # The identity's client ID flows into the chart values and the stack output.
    assert values["azureClientID"] == ev.outputs["asoClientId"].value
    assert values["useWorkloadIdentityAuth"] is True
    assert _identity_for(ev, "id-dev-aso").plain("resourceGroupName") == "rg-dev-platform"


def test_crossplane_identity_is_federated_to_the_providers_service_account(shipped):
    ev = shipped("dev")
    sa = ev.one("kubernetes:core/v1:ServiceAccount")
    fics = [f for f in ev.by_type(FIC) if f.name.startswith("crossplane-identity")]
    subject = f"system:serviceaccount:{sa.plain('metadata.namespace')}:{sa.plain('metadata.name')}"
    assert [f.plain("subject") for f in fics] == [subject] == [crossplane_module.SERVICE_ACCOUNT.subject]
    client_id = ev.outputs["crossplaneClientId"].value
    assert sa.plain("metadata.annotations")["azure.workload.identity/client-id"] == client_id
    config = ev.one("kubernetes:azure.m.upbound.io/v1beta1:ClusterProviderConfig")
    assert config.plain("spec.clientID") == client_id
    assert config.plain("spec.credentials.source") == "OIDCTokenFile"
    # Every provider pod runs as that account.
    for runtime in ev.by_type("kubernetes:pkg.crossplane.io/v1beta1:DeploymentRuntimeConfig"):
        pod = runtime.plain("spec.deploymentTemplate.spec.template.spec")
        assert pod["serviceAccountName"] == sa.plain("metadata.name")


def test_controllers_hold_exactly_contributor_and_the_constrained_rbac_admin(shipped):
    """Both identities, Crossplane's included, on the app resource group and nowhere else."""
    ev = shipped("prod")
    for identity in ("aso-identity", "crossplane-identity"):
        grants = [r for r in ev.by_type("azure-native:authorization:RoleAssignment") if r.name.startswith(identity)]
        assert all(g.plain("principalType") == "ServicePrincipal" for g in grants)
        held = app_group_roles(grants)
        assert set(held) == {"rg-prod-webapp"}, identity
        assert_exactly_the_controller_roles(held["rg-prod-webapp"])


def test_gitops_bridge_secret_carries_the_platform_facts(shipped):
    ev = shipped("dev")
    secret = next(r for r in ev.by_type("kubernetes:core/v1:Secret") if r.plain("metadata.name") == "in-cluster")
    labels = secret.plain("metadata.labels")
    annotations = secret.plain("metadata.annotations")
    assert labels["argocd.argoproj.io/secret-type"] == "cluster"
    assert {labels[k] for k in ("enable_cert_manager", "enable_aso", "enable_kro", "enable_crossplane", "enable_argocd")} == {"true"}
    assert labels["environment"] == "dev"
    assert annotations["aso_client_id"] == ev.outputs["asoClientId"].value
    assert annotations["crossplane_client_id"] == ev.outputs["crossplaneClientId"].value
    assert annotations["oidc_issuer_url"] == ev.outputs["oidcIssuerUrl"].value
    assert annotations["app_resource_group"] == "rg-dev-webapp"
    assert annotations["gitops_repo_url"] == "https://github.com/aks-platform/aks-platform.git"
    assert annotations["gitops_path"] == "gitops"
    root = ev.one("kubernetes:argoproj.io/v1alpha1:Application")
    assert root.plain("spec.source.repoURL") == annotations["gitops_repo_url"]


@pytest.mark.parametrize("addon", ["aso", "kro", "crossplane", "argocd", "cert_manager"])
def test_switching_an_addon_off_removes_it_and_its_dependents_only(shipped, stack_file, addon):
    config, secret = stack_file("dev")
    addons = dict(config["aks-platform:addons"])
    key = {"cert_manager": "certManager"}.get(addon, addon)
    addons[key] = {**addons.get(key, {}), "enabled": False}
    if addon == "cert_manager":
        # ASO cannot run without cert-manager (config validation says so): both go.
        addons["aso"] = {"enabled": False}
    config["aks-platform:addons"] = addons
    off = run_program(config, secret, stack="dev")
    on = shipped("dev")
    removed = {r.urn for r in on.resources} - {r.urn for r in off.resources}
    assert not ({r.urn for r in off.resources} - {r.urn for r in on.resources}), "switching off added resources"
    gone_components = {addon} | ({"aso"} if addon == "cert_manager" else set())
    expected = set()
    for gone in gone_components:
        component = on.one(COMPONENTS[gone])
        expected |= {r.urn for r in on.resources if r.urn == component.urn or _under(on, r, component.urn)}
        identity = f"{gone}-identity"
        expected |= {r.urn for r in on.resources if r.name.startswith(identity)}
    assert removed == expected
    assert releases(off).keys() == set(CHARTS) - gone_components


def _under(ev: Evaluation, reg, ancestor_urn: str) -> bool:
    graph = ev.by_urn()
    parent = reg.parent
    while parent:
        if parent == ancestor_urn:
            return True
        parent = graph[parent].parent if parent in graph else ""
    return False


def test_stack_outputs_include_identity_client_ids(shipped):
    ev = shipped("prod")
    assert ev.outputs["asoClientId"].value == _identity_client_id(ev, "id-prod-aso")
    assert ev.outputs["crossplaneClientId"].value == _identity_client_id(ev, "id-prod-crossplane")
    assert ev.outputs["asoClientId"].value != ev.outputs["crossplaneClientId"].value


def _identity_client_id(ev: Evaluation, name: str) -> str:
    from offline.mocks import SUBSCRIPTION_ID, mock_guid

    _identity_for(ev, name)
    return mock_guid("client", SUBSCRIPTION_ID, name)


def test_kro_rbac_covers_what_the_reference_graph_creates(shipped):
    """The ClusterRole the platform gives kro matches the RGD in gitops/: every group it uses is
    granted, and the core kinds granted are exactly the ones it creates."""
    import yaml

    from tests.conftest import ROOT

    rgd = yaml.safe_load((ROOT / "gitops/platform/kro/webapp-rgd.yaml").read_text())
    used = {}
    for resource in rgd["spec"]["resources"]:
        template = resource["template"]
        group = template["apiVersion"].rsplit("/", 1)[0] if "/" in template["apiVersion"] else ""
        used.setdefault(group, set()).add(template["kind"])
    ev = shipped("dev")
    role = ev.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    rules = role.plain("rules")
    granted = {g: set(r["resources"]) for r in rules for g in r["apiGroups"]}
    for group in used:
        assert group in granted, f"kro may not manage {group}"
    plural = {"ServiceAccount": "serviceaccounts", "Service": "services", "Deployment": "deployments"}
    assert granted[""] == {plural[k] for k in used[""]}
    assert granted["apps"] == {plural[k] for k in used["apps"]}
    # Instances: only the WebApp kind the RGD defines, and its status.
    kind = rgd["spec"]["schema"]["kind"].lower() + "s"
    assert granted["kro.run"] == {kind, f"{kind}/status"}


def test_gitops_function_packages_are_the_pinned_ones():
    """versions.py is the one place to read versions: Git's Function manifests must match it."""
    import yaml

    from components.versions import CROSSPLANE_FUNCTIONS
    from tests.conftest import ROOT

    docs = [d for d in yaml.safe_load_all((ROOT / "gitops/platform/crossplane/functions.yaml").read_text()) if d]
    assert {d["metadata"]["name"]: d["spec"]["package"] for d in docs if d["kind"] == "Function"} == CROSSPLANE_FUNCTIONS
