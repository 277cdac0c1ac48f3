"""Hybrid: the platform on an existing cluster (Pulumi.hybrid.yaml), no AKS.

The `secure:` values of the stack file become marked stand-ins offline
(offline.evaluate.stack_config), so the program treats them exactly as it treats the
decrypted values: the tests follow those stand-ins through every registration's inputs and
every stack output, and require them to be inside a Secret wherever they appear.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import copy

import yaml


from components.aso import SERVICE_ACCOUNT as ASO_SA
from components.crossplane import CREDENTIALS_KEY, CREDENTIALS_SECRET, WORKLOAD_IDENTITY_USE_LABEL
from components.crossplane import SERVICE_ACCOUNT as CROSSPLANE_SA
from components.gitops_bridge import (
    ANN_APP_CLIENT_ID,
    ANN_APP_IDENTITY,
    ANN_APP_PRINCIPAL_ID,
    ANN_OIDC_ISSUER_URL,
    APP_CREDENTIALS_KEY,
    APP_CREDENTIALS_SECRET,
    APP_NAMESPACES,
)
from components.identity import AUDIENCE
from components.versions import CHARTS, CROSSPLANE, CROSSPLANE_PROVIDERS
from offline.evaluate import Evaluation, Registration, Secret
from stacks.hybrid import api_server
from offline.mocks import SUBSCRIPTION_ID, TENANT_ID, admin_kubeconfig
from stacks.config import ConfigError
from tests.conftest import run_program
from tests.role_asserts import app_group_roles, assert_exactly_the_controller_roles

K8S_PROVIDER = "pulumi:providers:kubernetes"
RELEASE = "kubernetes:helm.sh/v3:Release"
UAI = "azure-native:managedidentity:UserAssignedIdentity"
FIC = "azure-native:managedidentity:FederatedIdentityCredential"
SECRET = "kubernetes:core/v1:Secret"
CLUSTER_PROVIDER_CONFIG = "kubernetes:azure.m.upbound.io/v1beta1:ClusterProviderConfig"
RUNTIME_CONFIG = "kubernetes:pkg.crossplane.io/v1beta1:DeploymentRuntimeConfig"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"

MODES = [pytest.param(False, id="update"), pytest.param(True, id="preview")]
ISSUER = "https://oidc.example.com/clusters/kind-platform/"
# ASO's values that depend on how the controllers authenticate; every other value matches AKS.
ASO_AUTH_VALUES = {"useWorkloadIdentityAuth", "azureClientID", "azureClientSecret", "azureTenantID", "azureSubscriptionID"}


@pytest.fixture
def ev(shipped, request) -> Evaluation:
    return shipped("hybrid", request.param)


def both_modes(fn):
    return pytest.mark.parametrize("ev", MODES, indirect=True)(fn)


@pytest.fixture
def hybrid_config(stack_file) -> tuple[dict[str, Any], list[str]]:
    return stack_file("hybrid")


def sp_client_id(config: dict[str, Any]) -> str:
    return config["aks-platform:hybrid"]["servicePrincipalClientId"]


def non_secret_parts(value: Any) -> Any:
    """The inputs with everything inside a Secret blanked out."""
    if isinstance(value, Secret):
        return "[secret]"
    if isinstance(value, dict):
        return {k: non_secret_parts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [non_secret_parts(v) for v in value]
    return value


def secret_parts(value: Any) -> list[Any]:
    """Everything inside a Secret."""
    if isinstance(value, Secret):
        return [value.value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in secret_parts(v)]
    if isinstance(value, list):
        return [s for v in value for s in secret_parts(v)]
    return []


def exposed_in(ev: Evaluation, needle: str) -> list[str]:
    """Where `needle` appears outside a Secret: registrations' inputs and stack outputs."""
    found = [r.name for r in ev.resources if needle in json.dumps(non_secret_parts(r.inputs), default=str)]
    for key, out in ev.outputs.items():
        if needle in json.dumps(out.value, default=str):
            found.append(f"output {key}")
    return found


def carried_in_secrets(ev: Evaluation, needle: str) -> list[str]:
    return [r.name for r in ev.resources if needle in json.dumps(secret_parts(r.inputs), default=str)]


def releases(ev: Evaluation) -> dict[str, Registration]:
    return {r.name: r for r in ev.by_type(RELEASE)}


# --- no AKS; the add-ons exactly as on AKS ---------------------------------------------------


@both_modes
def test_no_aks_is_registered(ev):
    assert [r.name for r in ev.resources if r.type.startswith("azure-native:containerservice:")] == []
    assert "kubeconfig" not in ev.outputs and "oidcIssuerUrl" not in ev.outputs and "clusterName" not in ev.outputs


@both_modes
def test_kubernetes_provider_comes_from_the_secret_kubeconfig(ev, hybrid_config):
    config, _ = hybrid_config
    [provider] = ev.by_type(K8S_PROVIDER)
    kubeconfig = provider.input("kubeconfig")
    assert isinstance(kubeconfig, Secret)
    assert kubeconfig.value == config["aks-platform:kubeconfig"]
    assert provider.plain("context") == config["aks-platform:hybrid"]["context"]
    # Every Kubernetes object goes to the existing cluster.
    for reg in ev.resources:
        if reg.custom and reg.type.startswith("kubernetes:"):
            assert reg.provider.rsplit("::", 1)[0] == provider.urn, reg.name


@both_modes
def test_the_five_releases_match_the_native_dev_stack(ev, shipped):
    dev = releases(shipped("dev", False))
    hybrid = releases(ev)
    assert len(hybrid) == len(CHARTS) == 5
    assert sorted(hybrid) == sorted(dev)
    for name, release in hybrid.items():
        for key in ("chart", "version", "repositoryOpts", "namespace", "name", "atomic", "timeout"):
            assert release.get(key) == dev[name].get(key), (name, key)
        values, dev_values = release.plain("values"), dev[name].plain("values")
        if name == "aso-release":
            values = {k: v for k, v in values.items() if k not in ASO_AUTH_VALUES}
            dev_values = {k: v for k, v in dev_values.items() if k not in ASO_AUTH_VALUES}
        assert values == dev_values, name


# --- service principal: the controllers' credentials and their secrecy -------------------------


@both_modes
def test_aso_authenticates_with_the_service_principal(ev, hybrid_config):
    config, _ = hybrid_config
    aso = releases(ev)["aso-release"]
    assert aso.plain("values.useWorkloadIdentityAuth") is False
    assert aso.plain("values.azureClientID") == sp_client_id(config)
    assert aso.plain("values.azureTenantID") == TENANT_ID
    assert aso.plain("values.azureSubscriptionID") == SUBSCRIPTION_ID
    secret = aso.input("values.azureClientSecret")
    assert isinstance(secret, Secret)
    assert secret.value == config["aks-platform:servicePrincipalClientSecret"]
    # No identity is created for the controllers: nothing to federate without an issuer.
    assert ev.by_type(UAI) == [] and ev.by_type(FIC) == []
    assert ev.outputs["asoClientId"].value == ev.outputs["crossplaneClientId"].value == sp_client_id(config)


@both_modes
def test_crossplane_reads_the_service_principal_from_a_secret(ev, hybrid_config):
    config, _ = hybrid_config
    cpc = ev.one(CLUSTER_PROVIDER_CONFIG)
    assert cpc.plain("spec.credentials") == {
        "source": "Secret",
        "secretRef": {"namespace": CROSSPLANE.namespace, "name": CREDENTIALS_SECRET, "key": CREDENTIALS_KEY},
    }
    assert cpc.plain("spec.clientID") == sp_client_id(config)
    [credentials] = [s for s in ev.by_type(SECRET) if s.get("metadata.name") == CREDENTIALS_SECRET]
    assert credentials.plain("metadata.namespace") == CROSSPLANE.namespace
    assert isinstance(credentials.input("stringData"), Secret)
    assert json.loads(credentials.plain("stringData")[CREDENTIALS_KEY]) == {
        "clientId": sp_client_id(config),
        "clientSecret": config["aks-platform:servicePrincipalClientSecret"],
        "tenantId": TENANT_ID,
        "subscriptionId": SUBSCRIPTION_ID,
    }
    assert ev.depends_on(cpc, credentials)
    # No workload identity wiring: no webhook label, no client ID annotation.
    for runtime in ev.by_type(RUNTIME_CONFIG):
        template = runtime.plain("spec.deploymentTemplate.spec.template")
        assert WORKLOAD_IDENTITY_USE_LABEL not in json.dumps(template)
    [sa] = ev.by_type(SERVICE_ACCOUNT)
    assert not sa.get("metadata.annotations")


@both_modes
def test_the_client_secret_is_a_secret_in_every_input_and_no_output(ev, hybrid_config):
    config, _ = hybrid_config
    client_secret = config["aks-platform:servicePrincipalClientSecret"]
    assert exposed_in(ev, client_secret) == []
    # Not vacuous: it does reach the two places that need it, inside Secrets.
    assert sorted(carried_in_secrets(ev, client_secret)) == ["aso-release", "crossplane-credentials"]
    assert not any(out.secret for out in ev.outputs.values())


@both_modes
def test_the_kubeconfig_is_a_secret_in_every_input_and_no_output(ev, hybrid_config):
    config, _ = hybrid_config
    kubeconfig = config["aks-platform:kubeconfig"]
    token = yaml.safe_load(kubeconfig)["users"][0]["user"]["token"]
    for needle in (kubeconfig, token, "client-key-data"):
        assert exposed_in(ev, needle) == [], needle
    assert carried_in_secrets(ev, token) == ["existing-cluster"]


# --- the reference app's own service principal -----------------------------------------------

APP_SECRET_KEY = "aks-platform:appServicePrincipalClientSecret"


@both_modes
def test_the_app_secret_reaches_only_a_secret_in_each_app_namespace(ev, hybrid_config):
    config, _ = hybrid_config
    app_secret = config[APP_SECRET_KEY]
    assert exposed_in(ev, app_secret) == []
    holders = carried_in_secrets(ev, app_secret)
    assert sorted(holders) == ["app-principal-webapp-aso-secret", "app-principal-webapp-crossplane-secret"]
    for name in holders:
        secret = ev.named(name)
        assert secret.type == SECRET
        assert secret.plain("metadata.name") == APP_CREDENTIALS_SECRET
        assert isinstance(secret.input("stringData"), Secret)
        assert secret.plain("stringData") == {APP_CREDENTIALS_KEY: app_secret}
    # Not the controllers' secret, and the controllers' secret is not in the app namespaces.
    controllers_secret = config["aks-platform:servicePrincipalClientSecret"]
    assert not set(carried_in_secrets(ev, controllers_secret)) & set(holders)


def test_the_app_secret_namespaces_are_the_app_applicationsets_destinations(shipped):
    from tests.gitops_support.argocd import load_docs
    from tests.conftest import ROOT

    ev = shipped("hybrid", False)
    destinations = {
        appset["spec"]["template"]["spec"]["destination"]["namespace"]
        for appset in load_docs(ROOT / "gitops" / "webapp-applicationsets.yaml")
    }
    assert set(APP_NAMESPACES.values()) == destinations
    secrets = [s for s in ev.by_type(SECRET) if s.get("metadata.name") == APP_CREDENTIALS_SECRET]
    namespaces = {
        n.plain("metadata.name"): n for n in ev.by_type("kubernetes:core/v1:Namespace") if n.name.startswith("app-principal-")
    }
    assert set(namespaces) == destinations == {s.plain("metadata.namespace") for s in secrets}
    for secret in secrets:
        # The namespace comes from the Namespace Pulumi creates, so the Secret waits for it.
        assert any(n.urn in secret.property_dependencies["metadata"] for n in namespaces.values())
    # Argo CD (and so the app) comes after the Secrets.
    argocd_release = releases(ev)["argocd-release"]
    assert all(ev.depends_on(argocd_release, s) for s in secrets)


@both_modes
def test_the_cluster_secret_names_the_app_principal_by_its_ids_only(ev, hybrid_config):
    config, _ = hybrid_config
    hybrid = config["aks-platform:hybrid"]
    cluster_secret = next(s for s in ev.by_type(SECRET) if s.name == "argocd-cluster-secret")
    annotations = cluster_secret.plain("metadata.annotations")
    assert annotations[ANN_APP_CLIENT_ID] == hybrid["appServicePrincipalClientId"]
    assert annotations[ANN_APP_PRINCIPAL_ID] == hybrid["appServicePrincipalObjectId"]
    assert ANN_OIDC_ISSUER_URL not in annotations
    # What the app ApplicationSets pass to both graphs: the IDs, known in a preview too, no secret.
    assert json.loads(annotations[ANN_APP_IDENTITY]) == {
        "mode": "ServicePrincipal",
        "clientId": hybrid["appServicePrincipalClientId"],
        "principalId": hybrid["appServicePrincipalObjectId"],
    }
    assert config[APP_SECRET_KEY] not in json.dumps(annotations)


def test_without_the_app_principal_the_app_is_skipped_with_one_line(hybrid_config, monkeypatch):
    import pulumi

    config, secret = hybrid_config
    hybrid = dict(config["aks-platform:hybrid"])
    hybrid.pop("appServicePrincipalClientId")
    hybrid.pop("appServicePrincipalObjectId")
    config["aks-platform:hybrid"] = hybrid
    del config[APP_SECRET_KEY]
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warnings.append(msg))
    ev = run_program(config, [k for k in secret if k != APP_SECRET_KEY], stack="hybrid")
    [line] = [w for w in warnings if w.startswith("reference app:")]
    assert "\n" not in line and "hybrid.appServicePrincipalClientId" in line
    assert "Azure resources are still created" in line
    assert [s for s in ev.by_type(SECRET) if s.get("metadata.name") == APP_CREDENTIALS_SECRET] == []
    # The gitops side agrees: the graphs get no identity, so they skip the Deployment only
    # (tests/test_hybrid_apps.py runs them on this instance).
    cluster_secret = next(s for s in ev.by_type(SECRET) if s.name == "argocd-cluster-secret")
    assert json.loads(cluster_secret.plain(f"metadata.annotations.{ANN_APP_IDENTITY}")) == {"mode": "None"}


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c, h: h.pop("appServicePrincipalObjectId"), "also hybrid.appServicePrincipalObjectId"),
        (lambda c, h: c.pop(APP_SECRET_KEY), "also appServicePrincipalClientSecret"),
        (lambda c, h: h.update(appServicePrincipalClientId=h["servicePrincipalClientId"]), "not the controllers'"),
    ],
)
def test_the_app_principal_must_be_complete_and_its_own(hybrid_config, change, expected):
    config, secret = hybrid_config
    hybrid = dict(config["aks-platform:hybrid"])
    change(config, hybrid)
    config["aks-platform:hybrid"] = hybrid
    message = config_error(config, [k for k in secret if k in config])
    assert expected in message
    assert "offline-stand-in-for" not in message  # no secret echoed


def test_a_plain_app_secret_is_an_error(hybrid_config):
    config, secret = hybrid_config
    message = config_error(config, [k for k in secret if k != APP_SECRET_KEY])
    [line] = [ln for ln in message.splitlines() if f"{APP_SECRET_KEY}:" in ln]
    assert "--secret" in line and config[APP_SECRET_KEY] not in message


# --- workload identity: the cluster's public OIDC issuer --------------------------------------


def workload_identity_config(config: dict[str, Any], secret: list[str]) -> tuple[dict[str, Any], list[str]]:
    hybrid = dict(config["aks-platform:hybrid"])
    hybrid.pop("servicePrincipalClientId")
    hybrid.pop("servicePrincipalObjectId", None)
    # The app gets its own federated identity here: no app principal either.
    hybrid.pop("appServicePrincipalClientId", None)
    hybrid.pop("appServicePrincipalObjectId", None)
    hybrid["oidcIssuerUrl"] = ISSUER
    config["aks-platform:hybrid"] = hybrid
    dropped = {"aks-platform:servicePrincipalClientSecret", "aks-platform:appServicePrincipalClientSecret"}
    for key in dropped:
        config.pop(key, None)
    return config, [k for k in secret if k not in dropped]


@pytest.mark.parametrize("preview", [False, True])
def test_workload_identity_with_the_clusters_issuer(hybrid_config, preview):
    config, secret = workload_identity_config(*hybrid_config)
    ev = run_program(config, secret, stack="hybrid", preview=preview)
    assert [r.name for r in ev.resources if r.type.startswith("azure-native:containerservice:")] == []
    # One identity per controller, each federated to its service account with the configured issuer.
    assert len(ev.by_type(UAI)) == 2
    fics = {f.plain("subject"): f for f in ev.by_type(FIC)}
    assert sorted(fics) == sorted([ASO_SA.subject, CROSSPLANE_SA.subject])
    for fic in fics.values():
        assert fic.plain("issuer") == ISSUER and fic.plain("audiences") == [AUDIENCE]
        # The identity's name flows from the identity (unknown in a preview).
        assert any(u.urn in fic.property_dependencies["resourceName"] for u in ev.by_type(UAI))
    aso = releases(ev)["aso-release"]
    assert aso.plain("values.useWorkloadIdentityAuth") is True
    assert "azureClientSecret" not in aso.plain("values")
    identity = next(u for u in ev.by_type(UAI) if u.plain("resourceName") == "id-hybrid-aso")
    assert identity.urn in aso.property_dependencies["values"]
    assert ev.one(CLUSTER_PROVIDER_CONFIG).plain("spec.credentials") == {"source": "OIDCTokenFile"}
    assert not [s for s in ev.by_type(SECRET) if s.get("metadata.name") == CREDENTIALS_SECRET]
    cluster_secret = next(s for s in ev.by_type(SECRET) if s.name == "argocd-cluster-secret")
    assert cluster_secret.plain(f"metadata.annotations.{ANN_OIDC_ISSUER_URL}") == ISSUER


def test_workload_identity_hybrid_takes_tenants(hybrid_config):
    config, secret = workload_identity_config(*hybrid_config)
    config["aks-platform:tenants"] = [
        {
            "name": "payments",
            "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            "namespaces": ["payments"],
            "sourceRepos": ["https://github.com/acme/payments.git"],
        }
    ]
    ev = run_program(config, secret, stack="hybrid")
    tenant_fics = [f for f in ev.by_type(FIC) if f.plain("resourceName") == "id-hybrid-tenant-payments"]
    assert len(tenant_fics) == 2 and {f.plain("issuer") for f in tenant_fics} == {ISSUER}


# --- kubeconfigPath: a file instead of a secret value ------------------------------------


def test_kubeconfig_path_is_read_into_a_secret(hybrid_config, tmp_path):
    config, secret = hybrid_config
    content = admin_kubeconfig("kind-platform", "local", config["aks-platform:hybrid"]["context"])
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    config["aks-platform:hybrid"] = {**config["aks-platform:hybrid"], "kubeconfigPath": str(path)}
    del config["aks-platform:kubeconfig"]
    secret = [k for k in secret if k != "aks-platform:kubeconfig"]
    ev = run_program(config, secret, stack="hybrid")
    kubeconfig = ev.one(K8S_PROVIDER).input("kubeconfig")
    assert isinstance(kubeconfig, Secret) and kubeconfig.value == content
    token = yaml.safe_load(content)["users"][0]["user"]["token"]
    assert exposed_in(ev, token) == []
    assert len(ev.by_type(RELEASE)) == 5


# --- validation: nothing registers on error, and nothing secret is echoed ---------------------


def config_error(config: dict[str, Any], secret: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        run_program(config, secret, stack="hybrid")
    from pulumi.runtime.settings import SETTINGS

    assert SETTINGS.monitor.registrations == []
    return str(err.value)


def test_plain_kubeconfig_is_an_error_naming_the_key_and_secret(hybrid_config):
    config, secret = hybrid_config
    message = config_error(config, [k for k in secret if k != "aks-platform:kubeconfig"])
    [line] = [ln for ln in message.splitlines() if "aks-platform:kubeconfig:" in ln]
    assert "--secret" in line
    # The value itself is not echoed.
    assert "client-key-data" not in message and yaml.safe_load(config["aks-platform:kubeconfig"])["users"][0]["user"]["token"] not in message


def test_plain_client_secret_is_an_error(hybrid_config):
    config, secret = hybrid_config
    message = config_error(config, [k for k in secret if k != "aks-platform:servicePrincipalClientSecret"])
    assert "aks-platform:servicePrincipalClientSecret:" in message and "--secret" in message
    assert config["aks-platform:servicePrincipalClientSecret"] not in message


def test_kubeconfig_and_kubeconfig_path_together_are_an_error(hybrid_config, tmp_path):
    config, secret = hybrid_config
    path = tmp_path / "kubeconfig"
    path.write_text(admin_kubeconfig("kind-platform", "local"))
    config["aks-platform:hybrid"] = {**config["aks-platform:hybrid"], "kubeconfigPath": str(path)}
    message = config_error(config, secret)
    assert "aks-platform:hybrid.kubeconfigPath:" in message and "exactly one" in message


def test_no_kubeconfig_at_all_is_an_error(hybrid_config):
    config, secret = hybrid_config
    del config["aks-platform:kubeconfig"]
    message = config_error(config, [k for k in secret if k != "aks-platform:kubeconfig"])
    assert "aks-platform:hybrid.kubeconfigPath:" in message and "exactly one" in message


def test_missing_kubeconfig_file_is_an_error(hybrid_config, tmp_path):
    config, secret = hybrid_config
    config["aks-platform:hybrid"] = {**config["aks-platform:hybrid"], "kubeconfigPath": str(tmp_path / "absent")}
    del config["aks-platform:kubeconfig"]
    message = config_error(config, [k for k in secret if k != "aks-platform:kubeconfig"])
    assert "a readable kubeconfig file" in message


def test_neither_issuer_nor_service_principal_is_an_error(hybrid_config):
    config, secret = hybrid_config
    config["aks-platform:hybrid"] = {
        k: v for k, v in config["aks-platform:hybrid"].items() if k not in ("servicePrincipalClientId", "servicePrincipalObjectId")
    }
    del config["aks-platform:servicePrincipalClientSecret"]
    message = config_error(config, [k for k in secret if k != "aks-platform:servicePrincipalClientSecret"])
    assert "aks-platform:hybrid.servicePrincipalClientId:" in message
    assert "oidcIssuerUrl" in message and "servicePrincipalClientSecret" in message


def test_issuer_and_service_principal_together_are_an_error(hybrid_config):
    config, secret = hybrid_config
    config["aks-platform:hybrid"] = {**config["aks-platform:hybrid"], "oidcIssuerUrl": ISSUER}
    message = config_error(config, secret)
    assert "aks-platform:hybrid.oidcIssuerUrl:" in message and "exactly one of oidcIssuerUrl" in message


def test_a_cluster_section_is_an_error_for_hybrid(hybrid_config):
    config, secret = hybrid_config
    config["aks-platform:cluster"] = {"skuTier": "Free"}
    message = config_error(config, secret)
    assert "aks-platform:cluster:" in message and "existing cluster" in message


def test_service_principal_gets_the_controllers_roles_on_the_app_groups(hybrid_config):
    """With its object ID, the service principal holds what the identities hold on AKS, no more."""
    config, secret = hybrid_config
    object_id = config["aks-platform:hybrid"]["servicePrincipalObjectId"]
    ev = run_program(config, secret, stack="hybrid")
    grants = ev.by_type("azure-native:authorization:RoleAssignment")
    for grant in grants:
        assert grant.plain("principalId") == object_id
        assert grant.plain("principalType") == "ServicePrincipal"
    # Crossplane is on in this stack too, and needs no storage data-plane role
    # (components/crossplane.py): exactly Contributor and the constrained RBAC Administrator.
    held = app_group_roles(grants)
    assert set(held) == {"rg-hybrid-webapp"}
    assert_exactly_the_controller_roles(held["rg-hybrid-webapp"])
    # No identities in this mode, so no platform resource group to hold them: only the app's.
    groups = [g.plain("resourceGroupName") for g in ev.by_type("azure-native:resources:ResourceGroup")]
    assert groups == ["rg-hybrid-webapp"] and "resourceGroupName" not in ev.outputs
    # Without the object ID the program cannot grant anything, and does not.
    del config["aks-platform:hybrid"]["servicePrincipalObjectId"]
    assert run_program(config, secret, stack="hybrid").by_type("azure-native:authorization:RoleAssignment") == []


def test_object_id_without_client_id_is_an_error(hybrid_config):
    config, secret = hybrid_config
    config["aks-platform:hybrid"]["oidcIssuerUrl"] = ISSUER
    del config["aks-platform:hybrid"]["servicePrincipalClientId"]
    del config["aks-platform:servicePrincipalClientSecret"]
    message = config_error(config, [k for k in secret if k != "aks-platform:servicePrincipalClientSecret"])
    assert "aks-platform:hybrid.servicePrincipalObjectId:" in message


@pytest.mark.parametrize("preview", [False, True])
def test_workload_identity_without_the_webhook_projects_the_token_itself(hybrid_config, upstream, preview):
    """An existing cluster need not run Azure's workload identity webhook: each provider pod
    mounts a service account token for Entra's audience where the provider reads it."""
    from components.crossplane import TOKEN_DIR, TOKEN_FILE
    from tests.gitops_support.crds import errors, validator_for

    config, secret = workload_identity_config(*hybrid_config)
    ev = run_program(config, secret, stack="hybrid", preview=preview)
    validator = validator_for("pkg.crossplane.io", "DeploymentRuntimeConfig", "v1beta1")
    runtimes = ev.by_type(RUNTIME_CONFIG)
    assert len(runtimes) == len(CROSSPLANE_PROVIDERS)
    for runtime in runtimes:
        template = runtime.plain("spec.deploymentTemplate.spec.template")
        assert "metadata" not in template  # no webhook label: nothing else would mutate the pod
        [volume] = template["spec"]["volumes"]
        [source] = volume["projected"]["sources"]
        assert source["serviceAccountToken"]["audience"] == AUDIENCE
        [container] = template["spec"]["containers"]
        [mount] = container["volumeMounts"]
        assert mount["name"] == volume["name"]
        assert f"{mount['mountPath']}/{source['serviceAccountToken']['path']}" == f"{TOKEN_DIR}/{TOKEN_FILE}"
        assert template["spec"]["serviceAccountName"] == CROSSPLANE_SA.name
        manifest = {k: v for k, v in runtime.plain().items() if k in ("apiVersion", "kind", "metadata", "spec")}
        assert errors(validator, manifest) == []


def test_aks_relies_on_the_webhook_instead(shipped):
    for runtime in shipped("dev").by_type(RUNTIME_CONFIG):
        template = runtime.plain("spec.deploymentTemplate.spec.template")
        assert template["metadata"]["labels"] == {WORKLOAD_IDENTITY_USE_LABEL: "true"}
        assert "volumes" not in template["spec"]


def test_the_provider_is_replaced_only_when_the_api_server_changes(hybrid_config):
    """The provider names the API server of the chosen context: a rotated credential in the
    kubeconfig updates it in place; another server (a recreated kind cluster) replaces it and
    every object on it."""
    config, secret = hybrid_config
    ev = run_program(copy.deepcopy(config), list(secret), stack="hybrid")
    provider = ev.one(K8S_PROVIDER)
    identifier = provider.input("clusterIdentifier")
    kubeconfig = yaml.safe_load(provider.input("kubeconfig").value)
    context = config["aks-platform:hybrid"].get("context") or kubeconfig["current-context"]
    cluster = next(c["context"]["cluster"] for c in kubeconfig["contexts"] if c["name"] == context)
    server = next(c["cluster"]["server"] for c in kubeconfig["clusters"] if c["name"] == cluster)
    # Derived from the secret kubeconfig, so kept secret too.
    assert isinstance(identifier, Secret) and identifier.value == server

    rotated = copy.deepcopy(kubeconfig)
    for user in rotated["users"]:
        user["user"] = {"token": "rotated-token"}
    assert api_server(yaml.safe_dump(rotated), context) == server
    moved = copy.deepcopy(kubeconfig)
    for c in moved["clusters"]:
        c["cluster"]["server"] = "https://127.0.0.1:40123"
    assert api_server(yaml.safe_dump(moved), context) == "https://127.0.0.1:40123"
