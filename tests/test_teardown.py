"""`pulumi destroy`, a tenant removed, a config change: the order and the cascade the graph implies.

The deletion order comes from the recorded registrations (offline.teardown): the engine
deletes a resource only after everything that depends on it (dependencies, property
dependencies, children, resources its provider serves) is gone, and pulumi-kubernetes
waits for each deleted object to disappear, finalizers included. So "A is deleted before B"
below is the engine's guarantee, not one possible schedule.
"""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.argocd import RESOURCES_FINALIZER, ArgoCd, ArgoCdArgs, is_timeout
from components.tenant import PROJECT_FINALIZER, TENANT_TEARDOWN_TIMEOUT
from offline import mocks
from offline.evaluate import UNKNOWN, Evaluation, Registration, evaluate
from offline.mocks import SUBSCRIPTION_ID, TENANT_ID
from offline.teardown import (
    KUBERNETES_PROVIDER,
    deleted_before,
    deletion_order,
    not_outlived,
    provider_replacement_reasons,
    replacement_reasons,
)
from tests.conftest import run_program

APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
APP_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
SECRET = "kubernetes:core/v1:Secret"
PROVIDER_CONFIG = "kubernetes:azure.m.upbound.io/v1beta1:ProviderConfig"
CLUSTER_PROVIDER_CONFIG = "kubernetes:azure.m.upbound.io/v1beta1:ClusterProviderConfig"
CROSSPLANE_PROVIDER = "kubernetes:pkg.crossplane.io/v1:Provider"
RG = "azure-native:resources:ResourceGroup"
UAI = "azure-native:managedidentity:UserAssignedIdentity"
FIC = "azure-native:managedidentity:FederatedIdentityCredential"
RA = "azure-native:authorization:RoleAssignment"
AGENT_POOL = "azure-native:containerservice:AgentPool"
MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
TENANT = "aks-platform:tenant:Tenant"
TENANT_GUARD = "aks-platform:tenant:TenantGuard"
# Not needed by the GitOps layer, so free to go in parallel with it: AKS's maintenance
# schedules. (Tenants have an order of their own, tested below.)
NOT_NEEDED_BY_THE_LAYER = {"azure-native:containerservice:MaintenanceConfiguration"}
# pulumi-kubernetes' own bound on waiting for a deleted object (provider/pkg/await/await.go).
PULUMI_KUBERNETES_DELETE_DEFAULT_MINUTES = 10


def _minutes(duration: str) -> float:
    parts = dict((unit, int(n)) for n, unit in re.findall(r"(\d+)([hms])", duration))
    return parts.get("h", 0) * 60 + parts.get("m", 0) + parts.get("s", 0) / 60


def _under(ev: Evaluation, reg: Registration, component_types: set[str]) -> bool:
    graph = ev.by_urn()
    parent = graph.get(reg.parent)
    while parent is not None:
        if parent.type in component_types:
            return True
        parent = graph.get(parent.parent)
    return False


def _platform_resources(ev: Evaluation) -> list[Registration]:
    """Every custom resource of the platform itself: not tenants', not the tenants' guard."""
    return [
        r
        for r in ev.resources
        if r.custom and r.type not in NOT_NEEDED_BY_THE_LAYER and not _under(ev, r, {TENANT, TENANT_GUARD})
    ]


def _hybrid_workload_identity(config: dict[str, Any], secret: list[str]) -> tuple[dict[str, Any], list[str]]:
    from tests.test_hybrid import workload_identity_config

    config, secret = workload_identity_config(config, secret)
    config["aks-platform:tenants"] = [
        {
            "name": "payments",
            "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            "namespaces": ["payments"],
            "sourceRepos": ["https://github.com/acme/payments.git"],
        }
    ]
    return config, secret


STACKS = ["dev", "prod", "tenants", "hybrid", "hybrid-workload-identity", "kind"]
_HYBRID_WI: list[Evaluation] = []


def _evaluate(name: str, shipped, stack_file) -> Evaluation:
    if name != "hybrid-workload-identity":
        return shipped(name)
    if not _HYBRID_WI:
        _HYBRID_WI.append(run_program(*_hybrid_workload_identity(*stack_file("hybrid")), stack="hybrid"))
    return _HYBRID_WI[0]


@pytest.fixture(params=STACKS)
def stack(request, shipped, stack_file) -> Evaluation:
    return _evaluate(request.param, shipped, stack_file)


def _root(ev: Evaluation) -> Registration:
    return ev.one(APPLICATION)


# --- destroy: the GitOps layer first ------------------------------------------------------


def test_destroy_deletes_the_gitops_layer_before_anything_it_runs_on(stack):
    ev = stack
    root = _root(ev)
    platform = _platform_resources(ev)
    # Not vacuous: the operators, identities and groups of this stack are among them.
    kinds = {r.type for r in platform}
    assert {RELEASE, CROSSPLANE_PROVIDER, CLUSTER_PROVIDER_CONFIG, RA} <= kinds
    if ev.by_type(MANAGED_CLUSTER):
        assert {UAI, FIC, RG, MANAGED_CLUSTER} <= kinds

    # The guarantee: every other platform resource outlives the root Application.
    assert not_outlived(ev, root, platform) == []
    # And so in the order the graph implies, the root Application comes before all of them.
    order = deletion_order(ev)
    assert all(order.index(root.urn) < order.index(r.urn) for r in platform if r.urn != root.urn)


ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
BLOB = "azure-native:storage:Blob"


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
def test_the_published_issuer_outlives_everything_that_exchanges_tokens_with_it(shipped, preview):
    """kind: Entra ID fetches the issuer's documents at every token exchange, so the two blobs
    and their account go last: after the root Application (whose cascade needs ASO and
    Crossplane to authenticate), every federated credential and both controllers; and on
    `up` they exist before anything is federated to them."""
    ev = shipped("kind", preview)
    documents = ev.by_type(BLOB) + ev.by_type(CONTAINER) + ev.by_type(ACCOUNT)
    assert len(ev.by_type(BLOB)) == 2 and len(documents) == 4
    federations = ev.by_type(FIC)
    assert {f.plain("subject").split(":")[2] for f in federations} == {"azureserviceoperator-system", "crossplane-system"}
    controllers = [r for r in ev.by_type(RELEASE) if r.plain("name") in ("aso", "crossplane")]
    controllers += ev.by_type(CROSSPLANE_PROVIDER)
    cluster_secret = next(s for s in ev.by_type(SECRET) if s.name.endswith("-cluster-secret"))
    for dependent in [_root(ev), cluster_secret, *federations, *controllers]:
        assert not_outlived(ev, dependent, documents) == [], dependent.name
    order = deletion_order(ev)
    assert max(order.index(r.urn) for r in [_root(ev), *federations]) < min(order.index(d.urn) for d in documents)


def test_user_pools_outlive_the_gitops_layer(shipped):
    ev = shipped("prod")
    pools = ev.by_type(AGENT_POOL)
    assert pools, "prod declares user pools"
    assert all(deleted_before(ev, _root(ev), pool) for pool in pools)


def test_controllers_are_uninstalled_before_their_credentials_and_grants(stack):
    ev = stack
    aso = [r for r in ev.by_type(RELEASE) if r.plain("name") == "aso"]
    crossplane = [r for r in ev.by_type(RELEASE) if r.plain("name") == "crossplane"] + ev.by_type(CROSSPLANE_PROVIDER)
    grants = [r for r in _platform_resources(ev) if r.type in (FIC, RA)]

    def of(prefix: str) -> list[Registration]:
        return [g for g in grants if g.name.startswith(prefix)]

    # Workload identity: each controller's own identity; a hybrid service principal: its roles.
    pairs = [(aso, of("aso-identity-") + of("service-principal-roles-")),
             (crossplane, of("crossplane-identity-") + of("service-principal-roles-"))]
    assert all(controllers and needed for controllers, needed in pairs)
    for controllers, needed in pairs:
        for controller in controllers:
            assert not_outlived(ev, controller, needed) == [], controller.name


def test_root_application_cascades_on_destroy_and_the_wait_is_bounded(stack):
    root = _root(stack)
    # Argo CD deletes the layer before it lets the Application go.
    assert root.plain("metadata.finalizers") == [RESOURCES_FINALIZER]
    # Pulumi really deletes it, and waits for it, with a bound of the stack's own: without
    # customTimeouts.delete pulumi-kubernetes would give up after its 10-minute default,
    # and destroy would go on to uninstall the operators the layer still needs.
    assert not root.deleted_with and not root.retain_on_delete
    assert set(root.custom_timeouts) == {"delete"} and is_timeout(root.custom_timeouts["delete"])


@pytest.mark.parametrize("bound", ["90m", "2h", "45m30s"])
def test_the_root_applications_wait_is_the_one_configured(bound):
    """The bound recorded on the root Application is the one the caller gives, whatever it is."""
    root = _root(_argocd(teardown_timeout=bound))
    assert root.custom_timeouts == {"delete": bound}


# --- a config change: never a cascade -----------------------------------------------------

REPO = "https://github.com/example/aks-platform.git"


def _argocd(name: str = "argocd", **overrides) -> Evaluation:
    values: dict[str, Any] = dict(repo_url=REPO, revision="main", path="gitops")
    values.update(overrides)

    def program():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        ArgoCd(name, ArgoCdArgs(**values), opts=pulumi.ResourceOptions(providers={"kubernetes": provider}))

    return evaluate(program)


@pytest.mark.parametrize(
    "change",
    [
        {"repo_url": "https://github.com/fork/aks-platform.git"},
        {"revision": "v1.2.3"},
        {"path": "platform/gitops"},
        {"repo_url": "git@github.com:fork/aks-platform.git", "revision": "release", "path": "deploy"},
    ],
)
def test_a_change_of_repo_revision_or_path_updates_the_root_application_in_place(change):
    ev_before, ev_after = _argocd(), _argocd(**change)
    before, after = _root(ev_before), _root(ev_after)
    # The object that would cascade if it were ever deleted.
    assert after.plain("metadata.finalizers") == [RESOURCES_FINALIZER]
    assert before.plain("spec.source") != after.plain("spec.source")
    # Same URN, same name and namespace, same provider, nothing that forces a replacement.
    assert replacement_reasons(before, after, ev_before, ev_after) == []
    assert after.replace_on_changes == [] and not after.delete_before_replace
    # Not vacuous: the same check sees a replacement when the identity moves (a renamed component).
    assert replacement_reasons(before, _root(_argocd("gitops", **change)))


def test_a_stack_config_change_keeps_the_root_applications_identity(stack_file):
    config, secret = stack_file("dev")
    ev_before = run_program(copy.deepcopy(config), secret, stack="dev")
    argocd = config["aks-platform:addons"]["argocd"]
    argocd.update(repoUrl="https://github.com/fork/aks-platform.git", revision="v2", path="platform")
    ev_after = run_program(config, secret, stack="dev")
    before, after = _root(ev_before), _root(ev_after)
    assert after.plain("spec.source.repoURL") == "https://github.com/fork/aks-platform.git"
    assert after.plain("metadata.finalizers") == [RESOURCES_FINALIZER]
    # Its provider included: the cluster's kubeconfig is the same, so is the provider.
    assert replacement_reasons(before, after, ev_before, ev_after) == []


# --- the Kubernetes provider: replacing it replaces (and so deletes) everything it serves ----


def _provider(**inputs: Any) -> Registration:
    return Registration(
        urn="urn:pulumi:dev::aks-platform::pulumi:providers:kubernetes::k", type=KUBERNETES_PROVIDER, name="k",
        parent="", custom=True, provider="", dependencies=[], property_dependencies={}, protect=False,
        ignore_changes=[], delete_before_replace=False, inputs=inputs,
    )


def _with_ca(kubeconfig: str, ca: bytes) -> str:
    return kubeconfig.replace(base64.b64encode(b"mock-ca").decode(), base64.b64encode(ca).decode())


def test_the_provider_model_follows_pulumi_kubernetes_diff_config():
    kubeconfig = mocks.admin_kubeconfig("aks-dev", "westeurope")
    rotated = _with_ca(kubeconfig, b"rotated-ca")
    assert rotated != kubeconfig
    same = _provider(kubeconfig=kubeconfig)
    # No change, or a change that leaves the active cluster as it was: an update.
    assert provider_replacement_reasons(same, _provider(kubeconfig=kubeconfig)) == []
    assert provider_replacement_reasons(same, _provider(kubeconfig=kubeconfig, enableServerSideApply=True)) == []
    # The active cluster's entry changed (here its CA), or the kubeconfig is unknown: replaced.
    assert provider_replacement_reasons(same, _provider(kubeconfig=rotated)) == ["kubeconfig"]
    assert provider_replacement_reasons(same, _provider(kubeconfig=UNKNOWN)) == ["kubeconfig (unknown)"]
    # With an unchanged clusterIdentifier, neither replaces.
    pinned = _provider(kubeconfig=kubeconfig, clusterIdentifier="aks-dev")
    assert provider_replacement_reasons(pinned, _provider(kubeconfig=rotated, clusterIdentifier="aks-dev")) == []
    assert provider_replacement_reasons(pinned, _provider(kubeconfig=UNKNOWN, clusterIdentifier="aks-dev")) == []
    # A changed one always replaces; merely adding one does not suppress the kubeconfig rule.
    assert "clusterIdentifier" in provider_replacement_reasons(
        pinned, _provider(kubeconfig=kubeconfig, clusterIdentifier="aks-other"))
    assert provider_replacement_reasons(same, _provider(kubeconfig=rotated, clusterIdentifier="aks-dev")) == ["kubeconfig"]
    # And replacement_reasons passes it on to every object the provider serves.
    ev_before, ev_after = _argocd_on(kubeconfig), _argocd_on(rotated)
    assert replacement_reasons(_root(ev_before), _root(ev_after), ev_before, ev_after) == ["provider k: kubeconfig"]
    with pytest.raises(ValueError, match="both evaluations"):
        replacement_reasons(_root(ev_before), _root(ev_after), ev_before)


def _argocd_on(kubeconfig: str) -> Evaluation:
    def program():
        provider = k8s.Provider("k", kubeconfig=kubeconfig)
        ArgoCd("argocd", ArgoCdArgs(repo_url=REPO, revision="main", path="gitops"),
               opts=pulumi.ResourceOptions(providers={"kubernetes": provider}))

    return evaluate(program)


def test_a_rotated_cluster_ca_replaces_nothing_on_the_cluster(stack_file, monkeypatch):
    """AKS's certificate rotation gives the next `pulumi up` a kubeconfig with new CA data for
    the same cluster: nothing on the cluster may be replaced."""
    config, secret = stack_file("dev")
    ev_before = run_program(copy.deepcopy(config), secret, stack="dev")
    original = mocks._kubeconfig
    monkeypatch.setattr(mocks, "_kubeconfig", lambda *a, **kw: _with_ca(original(*a, **kw), b"rotated-ca"))
    ev_after = run_program(config, secret, stack="dev")
    root_before, root_after = _root(ev_before), _root(ev_after)
    assert root_before.urn == root_after.urn
    assert replacement_reasons(root_before, root_after, ev_before, ev_after) == []


# --- a tenant removed -----------------------------------------------------------------------


def _tenant_parts(ev: Evaluation, tenant: str) -> dict[str, list[Registration]]:
    component = ev.named(f"tenant-{tenant}")
    inside = [r for r in ev.resources if r.custom and _tenant_of(ev, r) == component.urn]

    def by(*types: str) -> list[Registration]:
        return [r for r in inside if r.type in types]

    return {
        "project": by(APP_PROJECT),
        "namespaces": by(NAMESPACE),
        "credentials": by(SECRET, PROVIDER_CONFIG),
        "grants": by(FIC, RA),
        "identity": by(UAI),
        "group": by(RG),
    }


def _tenant_of(ev: Evaluation, reg: Registration) -> str:
    graph = ev.by_urn()
    parent = graph.get(reg.parent)
    while parent is not None and parent.type != TENANT:
        parent = graph.get(parent.parent)
    return parent.urn if parent else ""


TENANT_STACKS = ["tenants", "hybrid-workload-identity"]


@pytest.fixture(params=TENANT_STACKS)
def tenant_stack(request, shipped, stack_file) -> Evaluation:
    return _evaluate(request.param, shipped, stack_file)


def test_removing_a_tenant_deletes_its_kubernetes_objects_before_its_identity_and_grants(tenant_stack):
    ev = tenant_stack
    tenants = [r.name.removeprefix("tenant-") for r in ev.by_type(TENANT)]
    assert tenants
    for tenant in tenants:
        parts = _tenant_parts(ev, tenant)
        assert all(parts.values()), {k: len(v) for k, v in parts.items()}
        (project,) = parts["project"]
        kubernetes = parts["credentials"] + parts["namespaces"]
        azure = parts["grants"] + parts["identity"] + parts["group"]
        # 1. The project, before everything else of the tenant.
        assert not_outlived(ev, project, kubernetes + azure) == []
        # 2./3. Each credential before its namespace; the namespaces (so everything left in
        # them) before the identity, its federated credentials and role assignments.
        for credential in parts["credentials"]:
            (home,) = [n for n in parts["namespaces"] if n.plain("metadata.name") == credential.get("metadata.namespace")]
            assert deleted_before(ev, credential, home)
        for obj in kubernetes:
            assert not_outlived(ev, obj, azure) == [], obj.name
        # 4. Grants, then the identity, then its resource group.
        for grant in parts["grants"]:
            assert not_outlived(ev, grant, parts["identity"] + parts["group"]) == [], grant.name
        assert not_outlived(ev, parts["identity"][0], parts["group"]) == []
        # The project is the gate: Argo CD keeps it until no Application uses it.
        assert project.plain("metadata.finalizers") == [PROJECT_FINALIZER]
        assert project.custom_timeouts == {"delete": TENANT_TEARDOWN_TIMEOUT}
        assert _minutes(TENANT_TEARDOWN_TIMEOUT) > PULUMI_KUBERNETES_DELETE_DEFAULT_MINUTES


def test_tenants_objects_go_while_the_controllers_and_argo_cd_still_run(tenant_stack):
    ev = tenant_stack
    controllers = [r for r in ev.by_type(RELEASE) if r.plain("name") in ("aso", "crossplane", "kro")]
    controllers += ev.by_type(CROSSPLANE_PROVIDER) + ev.by_type(CLUSTER_PROVIDER_CONFIG)
    argocd = next(r for r in ev.by_type(RELEASE) if r.plain("name") == "argocd")
    for tenant in ev.by_type(TENANT):
        parts = _tenant_parts(ev, tenant.name.removeprefix("tenant-"))
        for namespace in parts["namespaces"]:
            assert not_outlived(ev, namespace, controllers) == []
        (project,) = parts["project"]
        assert deleted_before(ev, project, argocd)


# --- data kept on purpose ---------------------------------------------------------------------


def _platform_on_existing_cluster():
    from stacks.validation import from_pulumi
    from stacks.platform import PlatformTarget, build_platform

    def program():
        target = PlatformTarget(
            provider=k8s.Provider("cluster", kubeconfig="apiVersion: v1\nkind: Config\n"),
            oidc_issuer_url="https://oidc.example.com/cluster/",
            tenant_id=TENANT_ID,
            subscription_id=SUBSCRIPTION_ID,
            platform_resource_group="rg-platform",
            cluster_name="cluster",
        )
        return build_platform(from_pulumi(), target)

    return program


@pytest.mark.parametrize("keep", [False, True])
def test_keeping_app_data_leaves_the_app_resource_groups_in_azure(stack_file, keep):
    config, _ = stack_file("dev")
    if keep:
        config = {**config, "aks-platform:keepAppData": "true"}
    ev = evaluate(_platform_on_existing_cluster(), config=config)
    groups = ev.by_type(RG)
    assert groups and [g.retain_on_delete for g in groups] == [keep] * len(groups)
    # Either way the layer is deleted first: what Git did not mark detach-on-delete or
    # Orphan is deleted in Azure before the groups are released or deleted.
    assert not_outlived(ev, _root(ev), groups) == []


@pytest.mark.parametrize("bad", ["", "soon", "60", "m", "-5m"])
def test_a_teardown_timeout_that_is_no_duration_is_an_error_naming_it(bad):
    from components.tenant import TenantArgs

    with pytest.raises(ValueError, match=rf"teardown_timeout {re.escape(repr(bad))}: allowed"):
        ArgoCdArgs(repo_url=REPO, revision="main", path="gitops", teardown_timeout=bad)
    with pytest.raises(ValueError, match=rf"teardown_timeout {re.escape(repr(bad))}: allowed"):
        TenantArgs(
            tenant_name="payments", subscription_id="8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", tenant_id=TENANT_ID,
            location="westeurope", resource_group_name="rg", identity_name="id", oidc_issuer_url="https://i/",
            namespaces=["payments"], roles=[], source_repos=["https://github.com/acme/payments.git"], teardown_timeout=bad,
        )
