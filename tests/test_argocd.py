"""ArgoCd: pinned chart and values, health checks (executed), GitOps Bridge bootstrap, exact project."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.chart_asserts import assert_pinned_release
import yaml

from components import gitops_bridge as bridge
from components.argocd import (
    ADMIN_PASSWORD_COMMAND,
    HEALTH_CHECKS,
    PLATFORM_CLUSTER_RESOURCES,
    PLATFORM_NAMESPACED_RESOURCES,
    PLATFORM_XR_GROUPS,
    WEBHOOK_KINDS,
    ArgoCd,
    ArgoCdArgs,
    argocd_values,
)
from components.versions import ARGO_CD
from offline.evaluate import UNKNOWN, evaluate

ROOT = Path(__file__).resolve().parent.parent
GITOPS = ROOT / "gitops"

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"

REPO = "https://github.com/example/aks-platform.git"
LABELS = {"environment": "dev", "cluster_name": "aks-dev", "enable_aso": "true", "enable_crossplane": "false"}
ANNOTATIONS = {
    "azure_tenant_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "oidc_issuer_url": "https://westeurope.oic.prod-aks.azure.com/t/i/",
    "crossplane_provider_config": "default",
}


def args(**overrides) -> ArgoCdArgs:
    values = dict(repo_url=REPO, revision="main", path="gitops", cluster_labels=LABELS, cluster_annotations=ANNOTATIONS)
    values.update(overrides)
    return ArgoCdArgs(**values)


def program(make_args=args, holder=None):
    def run():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        argocd = ArgoCd("argocd", make_args(), opts=pulumi.ResourceOptions(providers={"kubernetes": provider}))
        if holder is not None:
            holder["argocd"] = argocd
        return {"namespace": argocd.namespace}

    return run


def manifest(reg) -> dict:
    return {k: v for k, v in reg.plain().items() if k in ("apiVersion", "kind", "metadata", "spec")}


@pytest.mark.parametrize("preview", [False, True])
def test_chart_is_the_pinned_argo_cd_release(preview):
    ev = evaluate(program(), preview=preview)
    release = ev.one(RELEASE)
    assert (ARGO_CD.chart, ARGO_CD.version, ARGO_CD.namespace) == ("argo-cd", "10.1.1", "argocd")
    namespace = next(r for r in ev.by_type("kubernetes:core/v1:Namespace") if r.parent == release.parent)
    assert_pinned_release(ev, ev.one("aks-platform:argocd:ArgoCd"), namespace, release, ARGO_CD)
    assert release.plain("values") == argocd_values()
    assert ev.outputs["namespace"].value == "argocd"


# Values: health checks and diff customizations.


def customizations() -> dict:
    return yaml.safe_load(argocd_values()["configs"]["cm"]["resource.customizations"])


def test_health_checks_cover_aso_kro_and_platform_composites():
    checks = customizations()
    assert {key: value["health.lua"] for key, value in checks.items()} == HEALTH_CHECKS
    # Keys are Argo CD's "<group>/<kind>" with wildcards (only allowed in this single key).
    for group_kind, asked in [
        ("resources.azure.com/ResourceGroup", "*.azure.com/*"),
        ("dbforpostgresql.azure.com/FlexibleServer", "*.azure.com/*"),
        ("kro.run/WebApp", "kro.run/*"),
        ("kro.run/ResourceGraphDefinition", "kro.run/*"),
        ("crossplane.aks-platform.internal/WebApp", PLATFORM_XR_GROUPS),
    ]:
        assert [k for k in checks if fnmatch.fnmatchcase(group_kind, k)] == [asked], group_kind
    for lua in HEALTH_CHECKS.values():
        assert lua.rstrip().endswith("return hs")


def test_platform_xr_pattern_matches_the_gitops_xrd_group():
    xrd = yaml.safe_load((GITOPS / "platform/crossplane/webapp-xrd.yaml").read_text())
    group = xrd["spec"]["group"]
    assert fnmatch.fnmatchcase(f"{group}/{xrd['spec']['names']['kind']}", PLATFORM_XR_GROUPS)
    # Argo CD's built-ins cover only *.crossplane.io and *.upbound.io: this one needs ours.
    assert not group.endswith((".crossplane.io", ".upbound.io"))


def test_webhook_diffs_from_the_aks_admissions_enforcer_are_ignored():
    cm = argocd_values()["configs"]["cm"]
    for kind in WEBHOOK_KINDS:
        spec = yaml.safe_load(cm[f"resource.customizations.ignoreDifferences.admissionregistration.k8s.io_{kind}"])
        assert set(spec) == {"jqPathExpressions", "managedFieldsManagers"}
        assert spec["managedFieldsManagers"] == ["admissionsenforcer"]
        joined = " ".join(spec["jqPathExpressions"])
        assert "namespaceSelector" in joined and "kubernetes.azure.com/managedby" in joined and "control-plane" in joined
    assert set(WEBHOOK_KINDS) == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def test_dex_is_off():
    assert argocd_values()["dex"] == {"enabled": False}


def test_external_url_reaches_argocd_cm_and_notifications_only_when_given():
    # The chart renders argocd-cm's url from global.domain unless configs.cm.url is set
    # (its mergeOverwrite ignores empty values): without a URL nothing is sent, and nothing
    # of ours pretends to know one.
    assert "url" not in argocd_values()["configs"]["cm"] and "notifications" not in argocd_values()
    values = argocd_values("https://argocd.platform.test/argo")
    assert values["configs"]["cm"]["url"] == values["notifications"]["argocdUrl"] == "https://argocd.platform.test/argo"
    assert args(url="https://argocd.platform.test").url == "https://argocd.platform.test"
    for bad in ("argocd.platform.test", "https://argocd.platform.test/", "ftp://x", "https://a b"):
        with pytest.raises(ValueError, match=re.escape(f"url {bad!r}")):
            args(url=bad)


# The Lua scripts, run as Argo CD runs them: Lua 5.1 (gopher-lua), `obj` global, no standard libraries.



@pytest.fixture
def health():
    """Run a health script on an object: (status, message)."""
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa (Lua 5.1) runs the health checks")
    return lambda lua_source, obj: _run_health(lua51, lua_source, obj)


def _run_health(lua51, lua_source: str, obj: dict) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    g = runtime.globals()
    for lib in ("string", "table", "os", "io", "math", "require", "load", "loadstring", "dofile", "loadfile"):
        g[lib] = None
    g.obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(lua_source)
    status, message = result["status"], result["message"]
    assert status in ("Healthy", "Progressing", "Degraded", "Suspended"), status
    return status, message


def aso(*conditions, generation=1):
    obj = {"apiVersion": "resources.azure.com/v1api20200601", "kind": "ResourceGroup", "metadata": {"generation": generation}}
    if conditions:
        obj["status"] = {"conditions": list(conditions)}
    return obj


def ready(status, **fields):
    return {"type": "Ready", "status": status, "observedGeneration": 1, **fields}


@pytest.mark.parametrize(
    "obj, expected",
    [
        (aso(), "Progressing"),
        (aso(ready("True")), "Healthy"),
        (aso(ready("False", severity="Info", reason="Reconciling", message="in progress")), "Progressing"),
        (aso(ready("False", severity="Info", reason="WaitingForOwner")), "Progressing"),
        (aso(ready("False", severity="Warning", reason="AuthorizationFailed", message="retrying")), "Progressing"),
        (aso(ready("False", severity="Error", reason="BadRequest", message="invalid sku")), "Degraded"),
        (aso(ready("True"), generation=2), "Progressing"),  # condition is about an older spec
        (aso({"type": "Other", "status": "True"}), "Progressing"),
    ],
)
def test_aso_health(health, obj, expected):
    status, message = health(HEALTH_CHECKS["*.azure.com/*"], obj)
    assert status == expected
    if obj.get("status") and obj["status"]["conditions"][0].get("message"):
        assert message == obj["status"]["conditions"][0]["message"]


def kro_obj(kind: str, state=None, conditions=(), generation=1, **metadata):
    obj = {"apiVersion": "kro.run/v1alpha1", "kind": kind, "metadata": {"generation": generation, **metadata}}
    if state is not None or conditions:
        obj["status"] = {"conditions": [{"observedGeneration": 1, **c} for c in conditions]}
        if state is not None:
            obj["status"]["state"] = state
    return obj


def cond(type_, status, **fields):
    return {"type": type_, "status": status, **fields}


@pytest.mark.parametrize(
    "obj, expected",
    [
        (kro_obj("WebApp"), "Progressing"),
        (kro_obj("WebApp", "IN_PROGRESS", [cond("Ready", "False", message="waiting for server")]), "Progressing"),
        (kro_obj("WebApp", "ACTIVE", [cond("Ready", "True", message="kro says ACTIVE")]), "Healthy"),
        (kro_obj("WebApp", "DELETING", [cond("Ready", "False")]), "Progressing"),
        (kro_obj("WebApp", "ERROR", [cond("Ready", "False", message="bad")]), "Degraded"),
        (kro_obj("WebApp", "FAILED", [cond("Ready", "False")]), "Degraded"),
        # Status written for an older spec: not Healthy yet, whatever it says.
        (kro_obj("WebApp", "ACTIVE", [cond("Ready", "True")], generation=2), "Progressing"),
        # Being deleted: Progressing until gone, even if the last status said ACTIVE.
        (kro_obj("WebApp", "ACTIVE", [cond("Ready", "True")], deletionTimestamp="2026-01-01T00:00:00Z"), "Progressing"),
        (kro_obj("ResourceGraphDefinition", "Active", [cond("Ready", "True"), cond("GraphAccepted", "True")]), "Healthy"),
        # Inactive while a graph revision compiles (conditions Unknown): transient, not Degraded.
        (kro_obj("ResourceGraphDefinition", "Inactive", [cond("Ready", "Unknown", reason="Pending"),
                                                         cond("GraphRevisionsResolved", "Unknown")]), "Progressing"),
        (kro_obj("ResourceGraphDefinition", "Inactive", [cond("Ready", "False"),
                                                         cond("GraphAccepted", "False", message="cycle in graph")]), "Degraded"),
        # A False condition from an older generation no longer counts.
        (kro_obj("ResourceGraphDefinition", "Inactive", [cond("Ready", "Unknown"),
                                                         cond("GraphAccepted", "False", observedGeneration=0)]), "Progressing"),
    ],
)
def test_kro_health(health, obj, expected):
    status, message = health(HEALTH_CHECKS["kro.run/*"], obj)
    assert status == expected
    if expected == "Degraded" and obj["kind"] == "ResourceGraphDefinition":
        assert message == "cycle in graph"
    assert HEALTH_CHECKS["*.kro.run/*"] == HEALTH_CHECKS["kro.run/*"]


def test_argo_cd_has_no_health_check_of_its_own_for_the_kinds_the_platform_covers(upstream):
    """Each custom check is the only one for its kinds: Argo CD's built-ins (v3.4) cover
    *.crossplane.io and *.upbound.io, which no key here matches."""
    for key in HEALTH_CHECKS:
        for builtin in ("apiextensions.crossplane.io/Composition", "storage.azure.upbound.io/Account",
                        "azure.m.upbound.io/ClusterProviderConfig"):
            assert not fnmatch.fnmatchcase(builtin, key), (key, builtin)


@pytest.mark.parametrize(
    "conditions, expected",
    [
        (None, "Progressing"),
        ([{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False", "reason": "Creating"}], "Progressing"),
        ([{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "True", "reason": "Available"}], "Healthy"),
        ([{"type": "Synced", "status": "False", "reason": "ReconcileError", "message": "boom"}, {"type": "Ready", "status": "True"}], "Degraded"),
    ],
)
def test_platform_composite_health(health, conditions, expected):
    obj = {"apiVersion": "crossplane.aks-platform.internal/v1alpha1", "kind": "WebApp", "metadata": {}}
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    assert health(HEALTH_CHECKS[PLATFORM_XR_GROUPS], obj)[0] == expected


# GitOps Bridge: the cluster Secret.


@pytest.mark.parametrize("preview", [False, True])
def test_cluster_secret_carries_the_bridge_contract(preview):
    ev = evaluate(program(), preview=preview)
    secret = ev.one(SECRET)
    meta = secret.plain("metadata")
    assert meta["name"] == bridge.CLUSTER_SECRET_NAME == "in-cluster"
    assert meta["namespace"] == "argocd"
    assert meta["labels"] == {**LABELS, "argocd.argoproj.io/secret-type": "cluster"}
    assert meta["annotations"] == {
        **ANNOTATIONS,
        bridge.ANN_REPO_URL: REPO,
        bridge.ANN_REVISION: "main",
        bridge.ANN_PATH: "gitops",
    }
    data = secret.plain("stringData")
    assert data["name"] == "in-cluster"
    assert data["server"] == bridge.IN_CLUSTER_SERVER == "https://kubernetes.default.svc"
    assert json.loads(data["config"]) == {"tlsClientConfig": {"insecure": False}}
    # No credential in it: in-cluster access is Argo CD's own service account.
    assert "bearerToken" not in data["config"] and "password" not in data["config"]


def test_outputs_from_other_resources_flow_into_labels_and_annotations():
    def make():
        client_id = pulumi.Output.from_input("0000").apply(lambda _: "11111111-2222-3333-4444-555555555555")
        return args(cluster_annotations={**ANNOTATIONS, bridge.ANN_CROSSPLANE_CLIENT_ID: client_id})

    ev = evaluate(program(make))
    annotations = ev.one(SECRET).plain("metadata.annotations")
    assert annotations[bridge.ANN_CROSSPLANE_CLIENT_ID] == "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"cluster_labels": {**LABELS, "team": "a"}}, "cluster labels ['team']"),
        ({"cluster_labels": {"argocd.argoproj.io/secret-type": "repository"}}, "cluster labels ['argocd.argoproj.io/secret-type']"),
        ({"cluster_annotations": {**ANNOTATIONS, "azure_client_secret": "x"}}, "cluster annotations ['azure_client_secret']"),
        ({"cluster_labels": {"environment": "https://not-a-label-value"}}, "cluster label environment="),
        ({"cluster_annotations": {bridge.ANN_REPO_URL: "https://github.com/other/repo.git"}}, "gitops_repo_url="),
        ({"cluster_annotations": {bridge.ANN_PATH: "elsewhere"}}, "gitops_path="),
        ({"path": "/abs"}, "path '/abs'"),
    ],
)
def test_invalid_bridge_metadata_is_rejected_before_anything_registers(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        args(**overrides)


def test_matching_repo_annotations_are_accepted():
    a = args(cluster_annotations={**ANNOTATIONS, bridge.ANN_REPO_URL: REPO, bridge.ANN_REVISION: "main"})
    assert a.source_annotations()[bridge.ANN_REPO_URL] == REPO


def test_bridge_keys_in_use_are_all_allowed():
    assert set(LABELS) <= bridge.CLUSTER_LABELS
    assert set(ANNOTATIONS) <= bridge.CLUSTER_ANNOTATIONS
    assert {bridge.ANN_REPO_URL, bridge.ANN_REVISION, bridge.ANN_PATH} <= bridge.CLUSTER_ANNOTATIONS


# AppProject and root Application.


@pytest.mark.parametrize("preview", [False, True])
def test_project_and_root_application_wait_for_their_crds_and_the_bridge(preview):
    ev = evaluate(program(), preview=preview)
    release, secret = ev.one(RELEASE), ev.one(SECRET)
    project, root = ev.one(PROJECT), ev.one(APPLICATION)
    # AppProject/Application CRDs are chart templates.
    assert release.urn in project.dependencies
    assert release.urn in root.dependencies
    # First sync already sees the labels and the project.
    assert project.urn in root.dependencies
    assert secret.urn in root.dependencies
    # The Secret needs no Argo CD CRD: only its namespace.
    assert not ev.depends_on(secret, release)


def test_root_application_syncs_the_top_level_of_the_gitops_path():
    ev = evaluate(program())
    root = ev.one(APPLICATION)
    assert root.plain("metadata") == {
        "name": bridge.ROOT_APPLICATION,
        "namespace": "argocd",
        # Deleting it deletes the GitOps layer (tests/test_teardown.py).
        "finalizers": ["resources-finalizer.argocd.argoproj.io"],
    }
    spec = root.plain("spec")
    assert spec["project"] == bridge.PLATFORM_PROJECT == "platform"
    assert spec["source"] == {"repoURL": REPO, "targetRevision": "main", "path": "gitops", "directory": {"recurse": False}}
    assert spec["destination"] == {"server": bridge.IN_CLUSTER_SERVER, "namespace": "argocd"}
    policy = spec["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert policy["retry"]["limit"] > 0
    assert set(policy["retry"]["backoff"]) == {"duration", "factor", "maxDuration"}
    assert policy["syncOptions"] == ["PruneLast=true"]


def test_project_allows_exactly_what_the_root_app_and_its_platform_apps_apply():
    ev = evaluate(program())
    project = ev.one(PROJECT)
    assert project.plain("metadata") == {"name": "platform", "namespace": "argocd"}
    spec = project.plain("spec")
    assert spec["sourceRepos"] == [REPO]

    namespaced, cluster, namespaces = platform_layer_footprint()
    assert {(r["group"], r["kind"]) for r in spec["namespaceResourceWhitelist"]} == namespaced
    assert {(r["group"], r["kind"]) for r in spec["clusterResourceWhitelist"]} == cluster
    assert spec["clusterResourceWhitelist"] == []  # present and empty: no cluster-scoped kind
    assert spec["destinations"] == [{"server": bridge.IN_CLUSTER_SERVER, "namespace": ns} for ns in sorted(namespaces)]
    assert set(PLATFORM_NAMESPACED_RESOURCES) == namespaced and set(PLATFORM_CLUSTER_RESOURCES) == cluster


# Kinds whose scope the footprint below knows; a new kind in gitops/ must be classified here.
NAMESPACED_KINDS = {("argoproj.io", "ApplicationSet"), ("argoproj.io", "AppProject"), ("argoproj.io", "Application")}
CLUSTER_KINDS = {("", "Namespace"), ("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "ClusterRoleBinding")}


def platform_layer_footprint() -> tuple[set, set, set]:
    """(namespaced kinds, cluster kinds, namespaces) that project `platform` deploys, read off gitops/.

    The root Application applies gitops/*.yaml (recurse: false); the ApplicationSets there
    whose template uses project `platform` apply their path's kustomization.
    """
    objects: list[tuple[dict, str]] = []
    top = sorted(p for p in GITOPS.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert top, "gitops/ has no top-level manifests"
    for path in top:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            objects.append((doc, "argocd"))
            if doc.get("kind") == "ApplicationSet":
                template = doc["spec"]["template"]["spec"]
                if template["project"] != bridge.PLATFORM_PROJECT:
                    continue
                source_path = template["source"]["path"].replace("{{.metadata.annotations.gitops_path}}", "gitops")
                directory = ROOT / source_path
                kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
                for resource in kustomization["resources"]:
                    for child in yaml.safe_load_all((directory / resource).read_text()):
                        if isinstance(child, dict):
                            objects.append((child, template["destination"]["namespace"]))
    namespaced, cluster, namespaces = set(), set(), set()
    for doc, default_ns in objects:
        group = doc["apiVersion"].rpartition("/")[0]
        key = (group, doc["kind"])
        if key in NAMESPACED_KINDS:
            namespaced.add(key)
            namespaces.add(doc["metadata"].get("namespace", default_ns))
        elif key in CLUSTER_KINDS:
            cluster.add(key)
        else:
            raise AssertionError(f"classify {key} (namespaced or cluster-scoped) in this test")
    return namespaced, cluster, namespaces


def test_component_shape_and_admin_password_is_not_read():
    holder = {}
    ev = evaluate(program(holder=holder))
    argocd = holder["argocd"]
    assert isinstance(argocd.release, k8s.helm.v3.Release)
    assert isinstance(argocd.cluster_secret, k8s.core.v1.Secret)
    assert isinstance(argocd.project, k8s.apiextensions.CustomResource)
    assert isinstance(argocd.root_application, k8s.apiextensions.CustomResource)
    # Decision: not read into state (see the module docstring); the command says where it is.
    assert not hasattr(argocd, "admin_password")
    assert argocd.admin_password_command == ADMIN_PASSWORD_COMMAND
    assert "-n argocd get secret argocd-initial-admin-secret" in ADMIN_PASSWORD_COMMAND
    component = ev.one("aks-platform:argocd:ArgoCd")
    provider_urn = ev.one("pulumi:providers:kubernetes").urn
    for reg in ev.resources:
        if reg.type.startswith("kubernetes:"):
            assert reg.parent == component.urn
            assert reg.name.startswith("argocd-")
            assert reg.provider.startswith(provider_urn)
    assert UNKNOWN not in json.dumps(ev.one(APPLICATION).plain())


# Conformance with the pinned upstream chart and CRDs (skipped without ../shared/upstream).

# argocd-cm keys Argo CD documents (operator-manual/argocd-cm.yaml): configs.cm is copied
# verbatim into that ConfigMap, so its keys are checked against Argo CD, not the chart.
ARGOCD_CM_KEY = re.compile(
    r"^resource\.customizations(\.(health|ignoreDifferences|ignoreResourceUpdates|actions|knownTypeFields|useOpenLibs)"
    r"\.([a-z0-9.-]+_)?[A-Za-z0-9]+)?$"
)


def test_values_are_known_to_the_chart(upstream):
    from tests.upstream_values import unknown_value_paths

    values = argocd_values("https://argocd.platform.test")
    assert unknown_value_paths(values, upstream / "argo-cd", free_form=["configs.cm"]) == []
    chart_cm = yaml.safe_load((upstream / "argo-cd/values.yaml").read_text())["configs"]["cm"]
    for key in values["configs"]["cm"]:
        assert key in chart_cm or key == "url" or ARGOCD_CM_KEY.fullmatch(key), key
    # The chart's own defaults under configs.cm stay (Helm merges maps).
    assert not set(values["configs"]["cm"]) & set(chart_cm)


def test_custom_resources_conform_to_upstream_crds(upstream):
    from tests.gitops_support.crds import crd_validator, errors

    ev = evaluate(program())
    for crd_file, reg in [("appproject-crd.yaml", ev.one(PROJECT)), ("application-crd.yaml", ev.one(APPLICATION))]:
        validator = crd_validator(upstream / "argo-cd/crds" / crd_file, "v1alpha1")
        obj = manifest(reg)
        assert errors(validator, obj) == []
        bad = {**obj, "spec": {**obj["spec"], "sourceRepo": [REPO]}}  # misspelt field
        assert errors(validator, bad)


def test_callers_depends_on_reaches_the_release():
    def run():
        provider = k8s.Provider("k", kubeconfig="apiVersion: v1\nkind: Config\n")
        before = k8s.core.v1.Namespace("before", opts=pulumi.ResourceOptions(provider=provider))
        ArgoCd("argocd", args(), opts=pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=[before]))
        return {}

    ev = evaluate(run)
    assert ev.named("before").urn in ev.one(RELEASE).dependencies


def test_the_release_carries_the_external_url_when_the_stack_gives_one():
    ev = evaluate(program(lambda: args(url="https://argocd.platform.test")))
    values = ev.one(RELEASE).plain("values")
    assert values["configs"]["cm"]["url"] == "https://argocd.platform.test"
    assert values["notifications"]["argocdUrl"] == "https://argocd.platform.test"
