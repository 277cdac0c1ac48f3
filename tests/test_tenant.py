"""Tenants across subscriptions: Pulumi.tenants.yaml evaluated as the real program runs it.

Per tenant: an explicit azure-native provider for its subscription that every tenant Azure
resource uses; a user-assigned identity federated (one credential after the other) to
exactly ASO's and the Crossplane providers' service accounts; role assignments inside the
tenant's subscription; namespaces labelled with the tenant, each with `aso-credential` and a
namespaced ProviderConfig; an AppProject confined to the tenant. Expected values come from
the stack file and the mocks, so the shipped example can change without touching the tests.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.aso import SERVICE_ACCOUNT as ASO_SA
from components.crossplane import SERVICE_ACCOUNT as CROSSPLANE_SA
from components.crossplane import managed_resource_groups
from components.gitops_bridge import IN_CLUSTER_SERVER
from components.identity import AUDIENCE, MAX_FEDERATED_CREDENTIALS
from components.roles import BUILTIN_ROLES, role_guid
from components.tenant import ASO_CREDENTIAL_SECRET, CROSSPLANE_NAMESPACED_PROVIDER_CONFIG, TENANT_LABEL
from components.versions import ARGO_CD, CHARTS
from offline.evaluate import UNKNOWN, Evaluation, Registration, Secret, stack_config
from offline.mocks import SUBSCRIPTION_ID, TENANT_ID, mock_guid
from stacks.config import PLATFORM_NAMESPACES
from tests.conftest import ROOT, run_program
from tests.gitops_support import cel

AZ_PROVIDER = "pulumi:providers:azure-native"
RG = "azure-native:resources:ResourceGroup"
UAI = "azure-native:managedidentity:UserAssignedIdentity"
FIC = "azure-native:managedidentity:FederatedIdentityCredential"
RA = "azure-native:authorization:RoleAssignment"
MC = "azure-native:containerservice:ManagedCluster"
NAMESPACE = "kubernetes:core/v1:Namespace"
SECRET = "kubernetes:core/v1:Secret"
PROVIDER_CONFIG = "kubernetes:azure.m.upbound.io/v1beta1:ProviderConfig"
CLUSTER_PROVIDER_CONFIG = "kubernetes:azure.m.upbound.io/v1beta1:ClusterProviderConfig"
APP_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"
TENANT = "aks-platform:tenant:Tenant"
RELEASE = "kubernetes:helm.sh/v3:Release"

MODES = [pytest.param(False, id="update"), pytest.param(True, id="preview")]


# --- the stack file: what the tests expect ------------------------------------------------

_CONFIG, _SECRET = stack_config("tenants")
ENVIRONMENT = _CONFIG["aks-platform:environment"]
TENANTS: list[dict[str, Any]] = _CONFIG["aks-platform:tenants"]
NAMES = [t["name"] for t in TENANTS]


def cfg(name: str) -> dict[str, Any]:
    return next(t for t in TENANTS if t["name"] == name)


def identity_name(name: str) -> str:
    return f"id-{ENVIRONMENT}-tenant-{name}"


def group_name(name: str) -> str:
    return f"rg-{ENVIRONMENT}-tenant-{name}"


def entra_tenant(name: str) -> str:
    """The tenant's Entra tenant: its own when the config names one, else the stack's."""
    return cfg(name).get("tenantId") or TENANT_ID


# --- the graph ------------------------------------------------------------------------------


def subtree(ev: Evaluation, root: Registration) -> list[Registration]:
    """Every registration below `root` (children, grandchildren, ...)."""
    by_urn = ev.by_urn()
    found = []
    for reg in ev.resources:
        parent = reg.parent
        while parent:
            if parent == root.urn:
                found.append(reg)
                break
            parent = by_urn[parent].parent if parent in by_urn else ""
    return found


def tenant(ev: Evaluation, name: str) -> Registration:
    return ev.one(TENANT, f"tenant-{name}")


def owned(ev: Evaluation, name: str, type_: str) -> list[Registration]:
    return [r for r in subtree(ev, tenant(ev, name)) if r.type == type_]


def provider_of(ev: Evaluation, name: str) -> Registration:
    [provider] = owned(ev, name, AZ_PROVIDER)
    return provider


def uses(reg: Registration, provider: Registration) -> bool:
    """Registration.provider is "<provider urn>::<provider id>"."""
    return bool(reg.provider) and reg.provider.rsplit("::", 1)[0] == provider.urn


@pytest.fixture
def ev(shipped, request) -> Evaluation:
    return shipped("tenants", request.param)


def both_modes(fn):
    return pytest.mark.parametrize("ev", MODES, indirect=True)(fn)


def flows(reg: Registration, key: str, expected: Any, source: Registration) -> bool:
    """Input `key` is `expected` (an update) or unknown in a preview, and comes from `source` either way."""
    return source.urn in reg.property_dependencies.get(key, []) and reg.plain(key) in (expected, UNKNOWN)


# --- the shipped example ----------------------------------------------------------------


def test_example_has_two_tenants_in_two_subscriptions_one_in_another_entra_tenant():
    assert len(TENANTS) == 2
    subscriptions = {t["subscriptionId"] for t in TENANTS}
    assert len(subscriptions) == 2 and SUBSCRIPTION_ID not in subscriptions
    assert [t["name"] for t in TENANTS if t.get("tenantId")] == ["analytics"]
    assert cfg("analytics")["tenantId"] != TENANT_ID


# --- providers: every tenant resource lives in the tenant's subscription ----------------


@both_modes
def test_each_tenant_has_an_explicit_provider_for_its_subscription(ev):
    for name in NAMES:
        provider = provider_of(ev, name)
        assert provider.plain("subscriptionId") == cfg(name)["subscriptionId"]
        assert provider.plain("tenantId") == entra_tenant(name)
        assert provider.plain("location") == cfg(name).get("location", _CONFIG["aks-platform:location"])
    assert provider_of(ev, "analytics").plain("tenantId") != provider_of(ev, "payments").plain("tenantId")


@both_modes
def test_every_tenant_azure_resource_uses_its_tenants_provider(ev):
    providers = {name: provider_of(ev, name) for name in NAMES}
    for name in NAMES:
        expected = {RG: 1, UAI: 1, FIC: 2, RA: len(cfg(name)["roles"])}
        for type_, count in expected.items():
            regs = owned(ev, name, type_)
            assert len(regs) == count, (name, type_, [r.name for r in regs])
            for reg in regs:
                assert uses(reg, providers[name]), f"{reg.name} uses {reg.provider or 'the default provider'}"
        # Nothing Azure under the tenant falls back to the default provider.
        azure = [r for r in subtree(ev, tenant(ev, name)) if r.custom and r.type.startswith("azure-native:")]
        assert azure and all(uses(r, providers[name]) for r in azure)
    # And no platform resource borrows a tenant's provider.
    tenant_urns = {r.urn for name in NAMES for r in subtree(ev, tenant(ev, name))}
    for reg in ev.resources:
        if reg.urn not in tenant_urns:
            assert not any(uses(reg, p) for p in providers.values()), reg.name


def test_mock_ids_carry_the_tenants_subscription(shipped):
    """In an update the mocks answer per provider: IDs are built from the tenant's subscription."""
    ev = shipped("tenants")
    for name in NAMES:
        sub = cfg(name)["subscriptionId"]
        principal = mock_guid("principal", sub, identity_name(name))
        for ra in owned(ev, name, RA):
            # The scope is the tenant group's ID as the mocks returned it.
            assert ra.plain("scope") == f"/subscriptions/{sub}/resourceGroups/{group_name(name)}"
            assert ra.plain("roleDefinitionId").startswith(f"/subscriptions/{sub}/providers/Microsoft.Authorization/")
            assert ra.plain("principalId") == principal
        assert ev.outputs["tenantClientIds"].value[name] == mock_guid("client", sub, identity_name(name))


# --- identity: where it lives, and its federated credentials ------------------------------


@both_modes
def test_identity_lives_in_the_tenants_own_resource_group(ev):
    for name in NAMES:
        [group] = owned(ev, name, RG)
        [identity] = owned(ev, name, UAI)
        assert group.plain("resourceGroupName") == group_name(name)
        assert identity.plain("resourceName") == identity_name(name)
        assert flows(identity, "resourceGroupName", group_name(name), group)
        assert identity.plain("location") == group.plain("location") == cfg(name).get("location", "westeurope")
        assert ev.depends_on(identity, group)


@both_modes
def test_federated_credentials_are_asos_and_crossplanes_service_accounts_written_in_turn(ev):
    issuer = ev.outputs["oidcIssuerUrl"]
    cluster = ev.one(MC)
    for name in NAMES:
        [group] = owned(ev, name, RG)
        [identity] = owned(ev, name, UAI)
        fics = owned(ev, name, FIC)
        assert sorted(f.plain("subject") for f in fics) == sorted([ASO_SA.subject, CROSSPLANE_SA.subject])
        for fic in fics:
            assert fic.plain("audiences") == [AUDIENCE]
            assert flows(fic, "resourceName", identity_name(name), identity)
            assert flows(fic, "resourceGroupName", group_name(name), group)
            assert ev.depends_on(fic, identity)
            # The platform cluster's issuer: known in an update, unknown (from the cluster) in a preview.
            if issuer.known:
                assert fic.plain("issuer") == issuer.value
            else:
                assert fic.plain("issuer") == UNKNOWN
                assert cluster.urn in fic.property_dependencies["issuer"]
        # Serialized: exactly one waits directly for the other (Azure rejects concurrent writes).
        first, second = fics
        chained = [(a, b) for a, b in ((first, second), (second, first)) if a.urn in b.dependencies]
        assert len(chained) == 1, [f.name for f in fics]


@both_modes
def test_role_assignments_stay_inside_the_tenants_subscription(ev):
    for name in NAMES:
        sub = cfg(name)["subscriptionId"]
        [group] = owned(ev, name, RG)
        [identity] = owned(ev, name, UAI)
        ras = owned(ev, name, RA)
        assert sorted(ra.plain("roleDefinitionId").rsplit("/", 1)[-1] for ra in ras if ra.plain("roleDefinitionId") != UNKNOWN) in (
            [],
            sorted(role_guid(r["role"]) for r in cfg(name)["roles"]),
        )
        for ra in ras:
            assert ra.plain("principalType") == "ServicePrincipal"
            assert identity.urn in ra.property_dependencies["principalId"]
            # Every configured scope is resourceGroup: the tenant's own group's ID.
            assert group.urn in ra.property_dependencies["scope"]
            scope = ra.plain("scope")
            assert scope == UNKNOWN or scope.lower().startswith(f"/subscriptions/{sub}/resourcegroups/")
    assert {r["scope"] for t in TENANTS for r in t["roles"]} == {"resourceGroup"}
    assert "Storage Blob Data Contributor" in {r["role"] for r in cfg("analytics")["roles"]}


def test_subscription_and_arm_id_scopes(stack_file):
    config, secret = stack_file("tenants")
    sub = cfg("payments")["subscriptionId"]
    arm_id = f"/subscriptions/{sub}/resourceGroups/rg-payments-data"
    config["aks-platform:tenants"][0]["roles"] = [
        {"role": "Reader", "scope": "subscription", "allowSubscriptionScope": True},
        {"role": "Contributor", "scope": arm_id},
    ]
    ev = run_program(config, secret, stack="tenants")
    scopes = {ra.plain("roleDefinitionId").rsplit("/", 1)[-1]: ra.plain("scope") for ra in owned(ev, "payments", RA)}
    assert scopes == {BUILTIN_ROLES["Reader"]: f"/subscriptions/{sub}", BUILTIN_ROLES["Contributor"]: arm_id}


# --- in the cluster: namespaces, credentials, projects -------------------------------------


@both_modes
def test_namespaces_are_labelled_with_their_tenant(ev):
    for name in NAMES:
        namespaces = owned(ev, name, NAMESPACE)
        assert sorted(n.plain("metadata.name") for n in namespaces) == sorted(cfg(name)["namespaces"])
        for ns in namespaces:
            assert ns.plain("metadata.labels") == {TENANT_LABEL: name}


@both_modes
def test_aso_credential_per_namespace_names_the_tenant_identity(ev):
    for name in NAMES:
        [identity] = owned(ev, name, UAI)
        secrets = owned(ev, name, SECRET)
        assert sorted(s.plain("metadata.namespace") for s in secrets) == sorted(cfg(name)["namespaces"])
        for secret in secrets:
            assert secret.plain("metadata.name") == ASO_CREDENTIAL_SECRET
            assert secret.plain("type") == "Opaque"
            assert isinstance(secret.input("stringData"), Secret)
            # The client ID flows from the identity (no copy of an ID in config).
            assert identity.urn in secret.property_dependencies["stringData"]
            data = secret.plain("stringData")
            if data == UNKNOWN:  # preview: the client ID is not known yet
                continue
            assert data == {
                "AZURE_SUBSCRIPTION_ID": cfg(name)["subscriptionId"],
                "AZURE_TENANT_ID": entra_tenant(name),
                "AZURE_CLIENT_ID": ev.outputs["tenantClientIds"].value[name],
            }


@both_modes
def test_namespaced_provider_config_per_namespace_acts_as_the_tenant(ev):
    cluster_config = ev.one(CLUSTER_PROVIDER_CONFIG)
    for name in NAMES:
        [identity] = owned(ev, name, UAI)
        configs = owned(ev, name, PROVIDER_CONFIG)
        assert sorted(c.plain("metadata.namespace") for c in configs) == sorted(cfg(name)["namespaces"])
        for pc in configs:
            assert pc.plain("metadata.name") == CROSSPLANE_NAMESPACED_PROVIDER_CONFIG
            spec = pc.plain("spec")
            assert spec["credentials"] == {"source": "OIDCTokenFile"}
            assert spec["subscriptionID"] == cfg(name)["subscriptionId"]
            assert spec["tenantID"] == entra_tenant(name)
            assert identity.urn in pc.property_dependencies["spec"]
            if spec["clientID"] != UNKNOWN:
                assert spec["clientID"] == ev.outputs["tenantClientIds"].value[name]
            # Its kind exists once the providers are healthy, which the ClusterProviderConfig waits for.
            assert ev.depends_on(pc, cluster_config)


@both_modes
def test_app_project_is_confined_to_the_tenant(ev):
    argocd = ev.one(RELEASE, "argocd-release")
    for name in NAMES:
        [project] = owned(ev, name, APP_PROJECT)
        assert project.plain("metadata.namespace") == ARGO_CD.namespace
        assert project.plain("metadata.name") == f"tenant-{name}"
        spec = project.plain("spec")
        assert spec["destinations"] == [{"server": IN_CLUSTER_SERVER, "namespace": ns} for ns in cfg(name)["namespaces"]]
        assert spec["sourceRepos"] == cfg(name)["sourceRepos"]
        # Empty: no cluster-scoped kind (CRDs, ClusterRoles, ClusterProviderConfigs, Namespaces).
        assert spec["clusterResourceWhitelist"] == []
        assert "clusterResourceBlacklist" not in spec
        # No whitelist: namespaced kinds other than the blacklisted ones are allowed.
        assert "namespaceResourceWhitelist" not in spec
        denied = {(d["group"], d["kind"]) for d in spec["namespaceResourceBlacklist"]}
        assert {("", "Secret"), ("azure.m.upbound.io", "ProviderConfig")} <= denied
        assert {("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "RoleBinding")} <= denied
        assert spec.get("sourceNamespaces", []) == []
        assert ev.depends_on(project, argocd)


@both_modes
def test_tenants_share_no_namespace_repository_or_identity(ev):
    projects = {name: owned(ev, name, APP_PROJECT)[0].plain("spec") for name in NAMES}
    namespaces = {name: {d["namespace"] for d in spec["destinations"]} for name, spec in projects.items()}
    repos = {name: set(spec["sourceRepos"]) for name, spec in projects.items()}
    a, b = NAMES
    assert not namespaces[a] & namespaces[b]
    assert not repos[a] & repos[b]
    assert not (namespaces[a] | namespaces[b]) & PLATFORM_NAMESPACES
    clients = ev.outputs["tenantClientIds"]
    if clients.known:
        assert len(set(clients.value.values())) == 2
        assert not set(clients.value.values()) & {ev.outputs["asoClientId"].value, ev.outputs["crossplaneClientId"].value}


def test_tenant_objects_conform_to_upstream_crds(shipped, upstream):
    from tests.gitops_support.crds import crd_validator, errors

    ev = shipped("tenants")
    pc_validator = crd_validator(upstream / "provider-upjet-azure/azure.m.upbound.io_providerconfigs.yaml", "v1beta1")
    project_validator = crd_validator(upstream / "argo-cd/crds/appproject-crd.yaml", "v1alpha1")
    configs, projects = ev.by_type(PROVIDER_CONFIG), ev.by_type(APP_PROJECT)
    assert len(configs) == sum(len(t["namespaces"]) for t in TENANTS) and len(projects) == len(TENANTS) + 1
    for reg in configs:
        assert errors(pc_validator, manifest(reg)) == [], reg.name
    for reg in projects:
        assert errors(project_validator, manifest(reg)) == [], reg.name
    # The validators reject unknown fields, so they would catch a misspelt key.
    bad = manifest(configs[0])
    bad["spec"]["clientId"] = bad["spec"].pop("clientID")
    assert errors(pc_validator, bad)
    bad = manifest(next(p for p in projects if p.name.startswith("tenant-")))
    bad["spec"]["namespaceResourceBlackList"] = bad["spec"].pop("namespaceResourceBlacklist")
    assert errors(project_validator, bad)


def manifest(reg: Registration) -> dict:
    return {k: v for k, v in reg.plain().items() if k in ("apiVersion", "kind", "metadata", "spec")}


# --- TenantGuard: tenants' managed resources never use the platform's ClusterProviderConfig ----


def admission(spec: dict, operation: str, obj: dict | None, old: dict | None = None, group: str = "storage.azure.m.upbound.io") -> bool | None:
    """What the API server decides with this policy, its CEL run by a real engine.

    None: the policy does not apply (a match condition is false); else whether the request
    is admitted. Variables are evaluated up front (the API server does so lazily; the
    expressions have no side effects, so the result is the same).
    """
    data = {
        "object": obj,
        "oldObject": old,
        "request": {"operation": operation, "resource": {"group": group, "version": "v1beta1", "resource": "accounts"},
                    "namespace": "team-a", "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller"}},
        "params": None,
        "namespaceObject": {"metadata": {"name": "team-a", "labels": {TENANT_LABEL: "a"}}},
    }
    for condition in spec["matchConditions"]:
        if not cel.evaluate(cel.ADMISSION, condition["expression"], data):
            return None
    data["variables"] = {v["name"]: cel.evaluate(cel.ADMISSION, v["expression"], data) for v in spec.get("variables", [])}
    return all(cel.evaluate(cel.ADMISSION, v["expression"], data) for v in spec["validations"])


def managed(kind: str | None, name: str = "default", **metadata: Any) -> dict:
    obj: dict = {"apiVersion": "storage.azure.m.upbound.io/v1beta1", "kind": "Account",
                 "metadata": {"name": "st", "namespace": "team-a", **metadata}, "spec": {"forProvider": {}}}
    if kind is not None:
        obj["spec"]["providerConfigRef"] = {"kind": kind, "name": name}
    return obj


@both_modes
def test_tenant_guard_covers_every_crossplane_azure_group(ev):
    policy = ev.one(POLICY)
    binding = ev.one(BINDING)
    spec = policy.plain("spec")
    assert spec["failurePolicy"] == "Fail"
    [condition] = spec["matchConditions"]

    def matched(group: str) -> bool:
        return admission(spec, "CREATE", managed("ProviderConfig"), group=group) is not None

    # The family's own group serves managed kinds too (ResourceGroup, Subscription, ...).
    groups = managed_resource_groups()
    assert "azure.m.upbound.io" in groups
    assert all(matched(g) for g in groups)
    assert not any(matched(g) for g in ("", "apps", "storage.azure.com", "azure.upbound.io", "storage.azure.upbound.io"))
    assert set(spec["matchConstraints"]["resourceRules"][0]["operations"]) == {"CREATE", "UPDATE"}

    cluster, own = managed("ClusterProviderConfig"), managed("ProviderConfig")
    # CREATE: only the namespace's own ProviderConfig.
    assert admission(spec, "CREATE", cluster) is False
    assert admission(spec, "CREATE", own) is True
    # ProviderConfigUsage keeps providerConfigRef at the top level, with no spec.
    usage = {"apiVersion": "azure.m.upbound.io/v1beta1", "kind": "ProviderConfigUsage", "metadata": {"name": "u"},
             "providerConfigRef": {"kind": "ClusterProviderConfig", "name": "default"}}
    assert admission(spec, "CREATE", usage, group="azure.m.upbound.io") is True
    # UPDATE that introduces the platform's config, or switches to another cluster-wide one: denied.
    assert admission(spec, "UPDATE", cluster, old=own) is False
    assert admission(spec, "UPDATE", managed("ClusterProviderConfig", "other"), old=cluster) is False
    # Also while being deleted: a deleting object must not gain the platform's identity.
    deleting = {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["finalizer.managedresource.crossplane.io"]}
    assert admission(spec, "UPDATE", managed("ClusterProviderConfig", **deleting), old=managed("ProviderConfig", **deleting)) is False
    # An object created before the label or the policy: its reconciles and, above all, the
    # UPDATE that removes its finalizer during deletion pass, so it never sticks.
    assert admission(spec, "UPDATE", managed("ClusterProviderConfig", **deleting), old=managed("ClusterProviderConfig", **deleting)) is True
    assert admission(spec, "UPDATE", managed("ClusterProviderConfig", deletionTimestamp="2026-01-01T00:00:00Z"),
                     old=managed("ClusterProviderConfig", **deleting)) is True
    assert admission(spec, "UPDATE", cluster, old=cluster) is True
    # Tenants' own objects are never in the way.
    assert admission(spec, "UPDATE", managed("ProviderConfig", **deleting), old=own) is True
    assert admission(spec, "UPDATE", usage, old=usage, group="azure.m.upbound.io") is True
    # The expressions are real CEL: a typo fails to compile rather than silently allowing.
    with pytest.raises(cel.CelError):
        cel.compile(cel.ADMISSION, condition["expression"].replace("request", "reqest"))

    bspec = binding.plain("spec")
    assert bspec["validationActions"] == ["Deny"]
    assert bspec["matchResources"]["namespaceSelector"] == {"matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]}
    assert ev.depends_on(binding, policy)


def test_without_crossplane_no_provider_configs_guard_or_crossplane_credential(stack_file):
    config, secret = stack_file("tenants")
    config["aks-platform:addons"]["crossplane"] = {"enabled": False}
    ev = run_program(config, secret, stack="tenants")
    assert ev.by_type(POLICY) == [] and ev.by_type(BINDING) == [] and ev.by_type(PROVIDER_CONFIG) == []
    for name in NAMES:
        assert [f.plain("subject") for f in owned(ev, name, FIC)] == [ASO_SA.subject]
        assert len(owned(ev, name, SECRET)) == len(cfg(name)["namespaces"])


def test_without_aso_or_argocd_no_aso_credential_or_project(stack_file):
    config, secret = stack_file("tenants")
    config["aks-platform:addons"] = {
        "aso": {"enabled": False},
        "kro": {"enabled": False},
        "argocd": {"enabled": False},
    }
    ev = run_program(config, secret, stack="tenants")
    assert ev.by_type(APP_PROJECT) == []
    for name in NAMES:
        assert owned(ev, name, SECRET) == []
        assert [f.plain("subject") for f in owned(ev, name, FIC)] == [CROSSPLANE_SA.subject]
        assert len(owned(ev, name, PROVIDER_CONFIG)) == len(cfg(name)["namespaces"])


def test_tenants_never_add_credentials_to_a_shared_identity(stack_file):
    """Each tenant has its own identity: 21 tenants stay far below Azure's 20 credentials per identity."""
    config, secret = stack_file("tenants")
    base = config["aks-platform:tenants"][0]
    config["aks-platform:tenants"] = [
        {**copy.deepcopy(base), "name": f"team{i:02d}", "namespaces": [f"team{i:02d}"]} for i in range(MAX_FEDERATED_CREDENTIALS + 1)
    ]
    ev = run_program(config, secret, stack="tenants")
    per_identity: dict[str, int] = {}
    for fic in ev.by_type(FIC):
        per_identity[fic.plain("resourceName")] = per_identity.get(fic.plain("resourceName"), 0) + 1
    assert len(per_identity) == MAX_FEDERATED_CREDENTIALS + 1 + 2  # the tenants' and the platform's two
    assert max(per_identity.values()) == 2


def test_tenant_resources_are_protected_with_the_stack(shipped):
    ev = shipped("tenants")
    assert _CONFIG["aks-platform:protect"] is True
    for name in NAMES:
        for reg in owned(ev, name, RG) + owned(ev, name, UAI) + owned(ev, name, NAMESPACE):
            assert reg.protect, reg.name


# --- platform namespaces ------------------------------------------------------------------


def _gitops_namespaces() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "gitops").rglob("*.yaml"):
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "Namespace":
                found.add(doc["metadata"]["name"])
            for dest in (doc.get("spec") or {}).get("destinations") or []:
                if isinstance(dest, dict) and isinstance(dest.get("namespace"), str) and "{{" not in dest["namespace"]:
                    found.add(dest["namespace"])
    return found


def test_platform_namespaces_cover_the_charts_and_the_gitops_layer():
    gitops = _gitops_namespaces()
    assert {"webapp-aso", "webapp-crossplane"} <= gitops
    assert gitops <= PLATFORM_NAMESPACES
    assert {pin.namespace for pin in CHARTS.values()} <= PLATFORM_NAMESPACES


@pytest.mark.parametrize("caller", ["ci", "person"])
def test_a_tenant_in_another_entra_tenant_is_reached_and_credited_there(stack_file, caller):
    """The program names each tenant's Entra tenant on its explicit provider (so its resources
    and identity live there) and in the tenant's ASO credential: the tenant's own tenantId, or
    else the stack's azure-native:tenantId, never the default tenant of whoever runs `up`."""
    from offline.evaluate import evaluate
    from offline.mocks import PERSON_TENANT_ID, AzureMocks
    from stacks import build
    from stacks.validation import from_pulumi

    config, secret = stack_file("tenants")
    ev = evaluate(lambda: build(from_pulumi()), config=config, secret_keys=secret, stack="tenants", mocks=AzureMocks(caller=caller))
    providers = {r.plain("subscriptionId"): r for r in ev.by_type("pulumi:providers:azure-native")}
    stack_tenant = config["azure-native:tenantId"]
    for name in ("payments", "analytics"):
        expected = cfg(name).get("tenantId") or stack_tenant
        assert providers[cfg(name)["subscriptionId"]].plain("tenantId") == expected != PERSON_TENANT_ID
        [credential] = [
            s for s in ev.by_type("kubernetes:core/v1:Secret")
            if s.plain("metadata.name") == ASO_CREDENTIAL_SECRET and s.plain("metadata.namespace") == cfg(name)["namespaces"][0]
        ]
        assert credential.plain("stringData")["AZURE_TENANT_ID"] == expected
    assert cfg("analytics")["tenantId"] != stack_tenant


# --- the platform's reference app is a platform-namespace app -----------------------------


@both_modes
def test_tenant_projects_deny_the_platforms_webapp_kinds(ev):
    """Neither WebApp API works for a tenant, so no tenant project may deploy one: the
    Crossplane Composition pins every composed managed resource to the platform's
    ClusterProviderConfig, which TenantGuard denies in a tenant namespace (the XR would never
    become Ready), and the kro RGD acts on the platform's facts through kro's own controller.
    The kinds are read from the manifests, so a renamed group or kind fails here."""
    from tests.test_gitops import rgd, xp_desired, xrd

    kro_schema = rgd()["spec"]["schema"]
    served = {
        (kro_schema.get("group", "kro.run"), kro_schema["kind"]),
        (xrd()["spec"]["group"], xrd()["spec"]["names"]["kind"]),
    }
    assert len(served) == 2
    for name in NAMES:
        [project] = owned(ev, name, APP_PROJECT)
        denied = {(d["group"], d["kind"]) for d in project.plain("spec")["namespaceResourceBlacklist"]}
        assert served <= denied, name

    # Why the Crossplane one cannot work there: TenantGuard denies every composed managed
    # resource the Composition would create in a tenant namespace.
    spec = ev.one(POLICY).plain("spec")
    composed = [obj for obj in xp_desired().values() if "providerConfigRef" in obj.get("spec", {})]
    assert composed
    for obj in composed:
        group = obj["apiVersion"].split("/")[0]
        obj = {**obj, "metadata": {"name": "x", "namespace": "team-a"}}
        assert admission(spec, "CREATE", obj, group=group) is False, obj["kind"]
