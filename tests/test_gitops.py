"""gitops/: every manifest validates against the pinned upstream CRDs, and one sync converges.

What is checked, offline and in seconds:
* each YAML document under gitops/ parses and validates strictly (unknown fields rejected)
  against the CRD in ../shared/upstream for its group/kind/version, and so does every
  object kro or the Composition creates (ASO kinds, namespaced Upbound MRs) and each
  function's input; only core Kubernetes kinds, which have no CRD, get structural checks;
* the ApplicationSets render, for a cluster Secret built from components.gitops_bridge,
  into Applications that validate, point at existing paths and projects, and inject every
  Azure fact from the Secret (nothing is a literal in Git);
* kro: each resource template validates against its CRD; every CEL expression compiles
  in kro's environment (cel-expr-python) with only the names kro gives it there and
  evaluates on samples carrying every declared field; everything the app needs is Ready
  before the Deployment starts; Crossplane: the Composition's patches read and write
  declared XR fields and render valid names, its cel-filter expressions evaluate to the
  intended decisions (the Deployment only once every composed Azure resource is Ready);
  both variants expose the same spec;
* the AppProjects allow exactly the kinds and namespaces the Applications deploy, pin
  every RBAC kind by name, the API Applications never prune, and the root prunes no
  ApplicationSet whose deletion would delete the APIs or the instances;
* secure defaults (no secrets, Entra-only PostgreSQL, TLS, storage lockdown, 0.0.0.0 only
  in dev).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from components.gitops_bridge import (
    ADDON_LABELS,
    ANN_APP_CLIENT_ID,
    ANN_APP_IDENTITY,
    ANN_APP_IMAGE,
    ANN_APP_PRINCIPAL_ID,
    ANN_APP_RESOURCE_GROUP,
    ANN_APP_RESOURCE_GROUPS,
    ANN_ASO_CLIENT_ID,
    ANN_CROSSPLANE_CLIENT_ID,
    ANN_CROSSPLANE_PROVIDER_CONFIG,
    ANN_LOCATION,
    ANN_OIDC_ISSUER_URL,
    ANN_PATH,
    ANN_REPO_URL,
    ANN_REVISION,
    ANN_SUBSCRIPTION_ID,
    ANN_TENANT_ID,
    APP_CREDENTIALS_KEY,
    APP_CREDENTIALS_SECRET,
    APP_IDENTITY_NONE,
    APP_IDENTITY_SERVICE_PRINCIPAL,
    APP_IDENTITY_WORKLOAD_IDENTITY,
    CLUSTER_ANNOTATIONS,
    CLUSTER_LABELS,
    CLUSTER_SECRET_NAME,
    CROSSPLANE_PROVIDER_CONFIG,
    IN_CLUSTER_SERVER,
    LABEL_CLUSTER_NAME,
    LABEL_ENVIRONMENT,
    PLATFORM_PROJECT,
    app_identity,
)
from tests.gitops_support import argocd, cel, kro, pt
from tests.gitops_support.crds import (
    REPO_ROOT,
    errors,
    upstream_schemas,
    make_validator,
    object_jsonschema,
    split_api_version,
    upstream_dir,
    validator_for,
)
from tests.gitops_support.simpleschema import to_openapi

GITOPS = REPO_ROOT / "gitops"
UPSTREAM = upstream_dir()

# Kinds that have no CRD anywhere (built into Kubernetes): structural checks only.
CORE_GROUPS = {"", "apps", "rbac.authorization.k8s.io"}
# Core kinds whose status kro expressions read have no CRD: the fields, from the Kubernetes
# API (apps/v1 DeploymentStatus), so the reference check has something to check against.
# Every other kind kro or the Composition creates has its CRD pinned in shared/upstream.
CORE_STATUS_FIELDS = {
    ("apps", "Deployment"): {"conditions", "availableReplicas", "readyReplicas", "replicas", "observedGeneration"},
}
# Integer status fields among those above (the others are strings, conditions a list).
CORE_INTEGER_FIELDS = {"availableReplicas", "readyReplicas", "replicas", "observedGeneration"}
KRO_GROUP = "kro.run"
XP_GROUP = "crossplane.aks-platform.internal"
APP_ENV = {
    "PGHOST", "PGDATABASE", "PGUSER", "AZURE_POSTGRES_ENTRA",
    "AZURE_STORAGE_ACCOUNT_URL", "AZURE_STORAGE_CONTAINER", "MAX_UPLOAD_BYTES",
}
# The Azure-name expression every kro variant resource uses (same scheme as the Composition).
KRO_NAME = (
    '${{"{prefix}" + "%x".format([hash.sha256(schema.spec.platform.subscriptionId + "/" + '
    'schema.spec.platform.resourceGroup + "/" + schema.metadata.namespace + "/" + '
    'schema.metadata.name)]).substring(0, 16)}}'
)
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# A cluster Secret as Pulumi writes it; the values are test data, not platform defaults.
FAKE_FACTS = {
    ANN_TENANT_ID: "11111111-2222-3333-4444-555555555555",
    ANN_SUBSCRIPTION_ID: "66666666-7777-8888-9999-000000000000",
    ANN_LOCATION: "westeurope",
    ANN_OIDC_ISSUER_URL: "https://westeurope.oic.prod-aks.azure.com/11111111-2222-3333-4444-555555555555/abc/",
    ANN_ASO_CLIENT_ID: "aaaaaaaa-0000-0000-0000-000000000001",
    ANN_CROSSPLANE_CLIENT_ID: "aaaaaaaa-0000-0000-0000-000000000002",
    ANN_APP_RESOURCE_GROUP: "rg-apps-test",
    ANN_APP_RESOURCE_GROUPS: "rg-apps-test,rg-apps-other",
    ANN_APP_IMAGE: "registry.test/aks-platform-webapp:test",
    ANN_CROSSPLANE_PROVIDER_CONFIG: CROSSPLANE_PROVIDER_CONFIG,
    ANN_REPO_URL: "https://git.test/fork/aks-platform.git",
    ANN_REVISION: "main",
    ANN_PATH: "gitops",
}
# The app's own service principal on a cluster without workload identity (test data).
FAKE_APP_PRINCIPAL = {ANN_APP_CLIENT_ID: "bbbbbbbb-0000-0000-0000-000000000001",
                      ANN_APP_PRINCIPAL_ID: "bbbbbbbb-0000-0000-0000-000000000002"}
WI, SP, NO_IDENTITY = APP_IDENTITY_WORKLOAD_IDENTITY, APP_IDENTITY_SERVICE_PRINCIPAL, APP_IDENTITY_NONE
IDENTITY_MODES = (WI, SP, NO_IDENTITY)


def facts(identity: str = WI) -> dict[str, str]:
    """The cluster Secret's annotations as Pulumi writes them for each way the app reaches Azure:
    the issuer (AKS, or hybrid with one), the app's own principal, or neither."""
    out = dict(FAKE_FACTS)
    if identity == WI:
        out[ANN_APP_IDENTITY] = app_identity(oidc_issuer_url=out[ANN_OIDC_ISSUER_URL])
    else:
        del out[ANN_OIDC_ISSUER_URL]
        if identity == SP:
            out.update(FAKE_APP_PRINCIPAL)
        out[ANN_APP_IDENTITY] = app_identity(
            client_id=out.get(ANN_APP_CLIENT_ID), principal_id=out.get(ANN_APP_PRINCIPAL_ID))
    assert json.loads(out[ANN_APP_IDENTITY])["mode"] == identity
    return out


def cluster_secret(environment: str = "dev", identity: str = WI, **label_overrides: str) -> dict[str, Any]:
    labels = {"argocd.argoproj.io/secret-type": "cluster", LABEL_ENVIRONMENT: environment, LABEL_CLUSTER_NAME: "aks-test"}
    labels.update({label: "true" for label in ADDON_LABELS.values()})
    labels.update(label_overrides)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CLUSTER_SECRET_NAME, "namespace": "argocd", "labels": labels, "annotations": facts(identity)},
        "stringData": {"name": CLUSTER_SECRET_NAME, "server": IN_CLUSTER_SERVER},
    }


# --- inventory ---------------------------------------------------------------------------

def yaml_files() -> list[Path]:
    return sorted(p for p in GITOPS.rglob("*") if p.suffix in (".yaml", ".yml"))


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in gitops/ (kustomization files excluded)."""
    out = []
    for path in yaml_files():
        if path.name == "kustomization.yaml":
            continue
        for doc in argocd.load_docs(path):
            out.append((path, doc))
    return out


def by_kind(kind: str, group: str | None = None) -> list[dict[str, Any]]:
    return [
        d for _, d in manifests()
        if d["kind"] == kind and (group is None or split_api_version(d["apiVersion"])[0] == group)
    ]


def one(kind: str, group: str | None = None) -> dict[str, Any]:
    found = by_kind(kind, group)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rgd() -> dict[str, Any]:
    return one("ResourceGraphDefinition", "kro.run")


def xrd() -> dict[str, Any]:
    return one("CompositeResourceDefinition", "apiextensions.crossplane.io")


def composition() -> dict[str, Any]:
    return one("Composition", "apiextensions.crossplane.io")


def step_input(function: str) -> dict[str, Any]:
    steps = [s for s in composition()["spec"]["pipeline"] if s["functionRef"]["name"] == function]
    assert len(steps) == 1, function
    return steps[0]["input"]


def applications(environment: str = "dev", identity: str = WI, **labels: str) -> list[dict[str, Any]]:
    secret = cluster_secret(environment, identity, **labels)
    return [app for appset in by_kind("ApplicationSet") for app in argocd.generate(appset, secret)]


def app_named(suffix: str, environment: str = "dev", identity: str = WI) -> dict[str, Any]:
    found = [a for a in applications(environment, identity) if a["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, suffix
    return found[0]


def app_dir(app: dict[str, Any]) -> Path:
    path = app["spec"]["source"]["path"]
    prefix = FAKE_FACTS[ANN_PATH] + "/"
    assert path.startswith(prefix), path
    return GITOPS / path[len(prefix):]


def rendered(app: dict[str, Any]) -> list[dict[str, Any]]:
    """What Argo CD applies for a generated Application (directory or kustomize)."""
    directory = app_dir(app)
    src = app["spec"]["source"]
    if (directory / "kustomization.yaml").exists():
        return argocd.kustomize_build(directory, src.get("kustomize", {}).get("patches"))
    assert "kustomize" not in src, f"{directory} has kustomize options but no kustomization.yaml"
    return [d for p in sorted(directory.glob("*.yaml")) for d in argocd.load_docs(p)]


def kro_instance_schema() -> dict[str, Any]:
    s = rgd()["spec"]["schema"]
    return {"type": "object", "properties": {"spec": to_openapi(s["spec"], s.get("types"))}}


def xrd_version() -> dict[str, Any]:
    (v,) = xrd()["spec"]["versions"]
    return v


def xrd_schema() -> dict[str, Any]:
    return xrd_version()["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def upstream() -> Path:
    if not UPSTREAM.is_dir():
        pytest.skip(f"{UPSTREAM} is absent: no upstream CRDs to validate against")
    return UPSTREAM


# --- every manifest ----------------------------------------------------------------------

def test_every_yaml_document_parses_with_identity():
    files = yaml_files()
    assert len(files) >= 10
    for path in files:
        docs = argocd.load_docs(path)
        assert docs, f"{path}: empty"
        for doc in docs:
            assert isinstance(doc, dict), path
            assert doc.get("apiVersion") and doc.get("kind"), path
            if path.name != "kustomization.yaml":
                assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} without metadata.name"


def test_every_manifest_validates_against_its_upstream_crd(upstream):
    checked = set()
    crds = upstream_schemas()
    for path, doc in manifests():
        group, version = split_api_version(doc["apiVersion"])
        kind = doc["kind"]
        if (group, kind) in {(KRO_GROUP, "WebApp"), (XP_GROUP, "WebApp")}:
            continue  # CRDs generated from gitops/ itself: test_app_instances_*
        if group in CORE_GROUPS:
            continue  # structural checks above
        served = sorted(v for (g, k, v) in crds if (g, k) == (group, kind))
        assert served, f"{path}: no CRD for {group}/{kind} in {upstream}"
        assert version in served, f"{path}: {group}/{kind} {version} not served (serves {served})"
        problems = errors(validator_for(group, kind, version), doc)
        assert not problems, f"{path} {kind}/{doc['metadata']['name']}:\n" + "\n".join(problems)
        checked.add((group, kind))
    assert {("kro.run", "ResourceGraphDefinition"), ("apiextensions.crossplane.io", "Composition"),
            ("apiextensions.crossplane.io", "CompositeResourceDefinition"), ("pkg.crossplane.io", "Function"),
            ("argoproj.io", "ApplicationSet"), ("argoproj.io", "AppProject")} <= checked


def test_strict_validation_rejects_unknown_fields(upstream):
    """The validator really is closed: a typo in a known manifest must fail."""
    doc = copy.deepcopy(by_kind("Function", "pkg.crossplane.io")[0])
    doc["spec"]["pakage"] = doc["spec"].pop("package")
    assert errors(validator_for("pkg.crossplane.io", "Function", "v1"), doc)
    app = copy.deepcopy(app_named("-webapp-aso"))
    app["spec"]["syncPolicy"]["retry"]["backof"] = {}
    assert errors(validator_for("argoproj.io", "Application", "v1alpha1"), app)


def test_crd_conversion_closes_objects_and_honours_kubernetes_extensions():
    schema = {
        "type": "object",
        "properties": {
            "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
            "port": {"x-kubernetes-int-or-string": True},
            "maybe": {"type": "string", "nullable": True},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"b": {"type": "integer"}}}},
        },
    }
    v = make_validator(object_jsonschema(schema))
    ok = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "closed": {"a": "s"},
          "open": {"a": "s", "extra": 1}, "port": "http", "maybe": None, "map": {"k": {"b": 1}}}
    assert not errors(v, ok)
    assert not errors(v, {**ok, "port": 8080})
    for bad in ({"closed": {"a": "s", "typo": 1}}, {"map": {"k": {"b": 1, "c": 2}}}, {"port": 1.5},
                {"metadata": {"name": "n", "nmespace": "x"}}, {"extra": True}):
        assert errors(v, {**ok, **bad}), bad


def test_conversion_leaves_the_upstream_schema_untouched():
    """Converted schemas share leaves with the cached upstream ones: converting must not
    modify what every later test reads."""
    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string", "enum": ["x"], "nullable": True},
        "p": {"x-kubernetes-int-or-string": True, "type": "string"},
        "o": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"metadata": {"type": "object"}}}}}
    before = copy.deepcopy(schema)
    object_jsonschema(schema)
    assert schema == before


def test_the_parsed_upstream_cache_gives_what_yaml_gives(tmp_path, monkeypatch):
    """upstream files are parsed once and kept as JSON by content: reading the cache gives
    exactly the YAML's documents, and content JSON cannot carry exactly is never cached."""
    from tests.gitops_support import crds

    monkeypatch.setattr(crds, "CACHE_DIR", tmp_path / "cache")
    parse = crds._parsed.__wrapped__  # past the in-process cache
    plain = tmp_path / "crd.yaml"
    plain.write_text("kind: CustomResourceDefinition\nspec: {versions: [{name: v1, served: true}], n: 1.5}\n---\n"
                     "kind: Other\nlist: [a, null, true, 3]\n")
    expected = tuple(d for d in yaml.safe_load_all(plain.read_text()) if isinstance(d, dict))
    assert parse(str(plain), 0, 0) == expected
    (entry,) = (tmp_path / "cache").iterdir()
    assert json.loads(entry.read_text()) == list(expected)
    entry.write_text(json.dumps([{"kind": "FromTheCache"}]))  # the cache is what is read next
    assert parse(str(plain), 0, 0) == ({"kind": "FromTheCache"},)
    odd = tmp_path / "odd.yaml"
    odd.write_text("kind: X\nports: {8080: http}\n")  # an integer key: JSON would make it "8080"
    assert parse(str(odd), 0, 0) == ({"kind": "X", "ports": {8080: "http"}},)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_no_secret_and_no_azure_id_is_committed():
    for path in yaml_files():
        text = path.read_text()
        assert not GUID.search(text), f"{path}: a GUID literal; Azure IDs come from the cluster Secret"
        assert "/subscriptions/" not in text.replace("/subscriptions/${", ""), f"{path}: literal ARM ID"
        for word in ("administratorLoginPassword", "administratorPassword", "connectionString", "accountKey"):
            assert word not in text, f"{path}: {word}"
    assert not by_kind("Secret"), "no Secret belongs in Git"


# --- root directory, ApplicationSets and generated Applications ---------------------------

def test_root_holds_only_applicationsets_in_ordered_waves():
    waves = {}
    for path in sorted(GITOPS.glob("*.yaml")):
        for doc in argocd.load_docs(path):
            assert doc["kind"] == "ApplicationSet", f"{path}: the root Application syncs only ApplicationSets"
            waves[doc["metadata"]["name"]] = int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    # projects before APIs before instances
    assert waves["app-projects"] < waves["webapp-api-kro"] == waves["webapp-api-crossplane"]
    assert waves["webapp-api-kro"] < waves["webapp-aso"] == waves["webapp-crossplane"]


def test_templates_read_only_contract_labels_and_annotations():
    used = set()
    for appset in by_kind("ApplicationSet"):
        for action in argocd.template_fields(appset["spec"]["template"]):
            path = argocd.lookup_path(action)
            if path[0] == "metadata":
                assert path[1] in ("labels", "annotations") and len(path) == 3, action
                allowed = CLUSTER_LABELS if path[1] == "labels" else CLUSTER_ANNOTATIONS
                assert path[2] in allowed, f"{appset['metadata']['name']}: {action} is not in the contract"
                used.add(path[2])
            else:
                assert path in (("name",), ("server",)), action
        for gen in appset["spec"]["generators"]:
            assert set(gen["clusters"]["selector"]["matchLabels"]) <= CLUSTER_LABELS
    assert {ANN_SUBSCRIPTION_ID, ANN_TENANT_ID, ANN_APP_RESOURCE_GROUP, ANN_LOCATION, ANN_APP_IDENTITY,
            ANN_APP_IMAGE, ANN_REPO_URL, ANN_REVISION, ANN_PATH, LABEL_ENVIRONMENT} <= used


def test_a_missing_annotation_stops_generation():
    secret = cluster_secret()
    del secret["metadata"]["annotations"][ANN_APP_IMAGE]
    appset = next(a for a in by_kind("ApplicationSet") if a["metadata"]["name"] == "webapp-aso")
    with pytest.raises(argocd.TemplateError, match="app_image"):
        argocd.generate(appset, secret)


def test_addon_labels_select_the_applications():
    names = lambda **labels: sorted(a["metadata"]["name"] for a in applications(**labels))  # noqa: E731
    every = names()
    assert every == sorted(f"{CLUSTER_SECRET_NAME}-{n}" for n in (
        "app-projects", "webapp-api-kro", "webapp-api-crossplane", "webapp-aso", "webapp-crossplane"))
    no_xp = names(enable_crossplane="false")
    assert not any("crossplane" in n for n in no_xp) and any("webapp-aso" in n for n in no_xp)
    no_aso = names(enable_aso="false")
    assert not any(n.endswith(("-kro", "-aso")) for n in no_aso) and any("webapp-crossplane" in n for n in no_aso)


def test_generated_applications_validate_and_sync_safely(upstream):
    validator = validator_for("argoproj.io", "Application", "v1alpha1")
    projects = {p["metadata"]["name"] for p in by_kind("AppProject")} | {PLATFORM_PROJECT}
    for app in applications():
        name = app["metadata"]["name"]
        assert not errors(validator, app), (name, errors(validator, app))
        spec = app["spec"]
        assert spec["project"] in projects, name
        assert spec["source"]["repoURL"] == FAKE_FACTS[ANN_REPO_URL]
        assert spec["source"]["targetRevision"] == FAKE_FACTS[ANN_REVISION]
        assert app_dir(app).is_dir(), name
        assert spec["destination"]["server"] == IN_CLUSTER_SERVER
        sync = spec["syncPolicy"]
        assert sync["automated"]["selfHeal"] is True, name
        retry = sync["retry"]
        assert retry["limit"] >= 10 and retry["backoff"]["factor"] >= 2 and retry["backoff"]["maxDuration"], name


def test_instances_skip_dry_run_until_their_crd_exists():
    for group in (KRO_GROUP, XP_GROUP):
        (webapp,) = by_kind("WebApp", group)
        ann = webapp["metadata"]["annotations"]
        assert "SkipDryRunOnMissingResource=true" in ann["argocd.argoproj.io/sync-options"]
        ns = [d for d in by_kind("Namespace") if d["metadata"]["name"] == webapp["metadata"]["namespace"]]
        assert len(ns) == 1
        assert int(ns[0]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < int(
            ann["argocd.argoproj.io/sync-wave"])
        assert ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_in_each_api_application_dependencies_come_in_earlier_waves():
    def wave(d: dict[str, Any]) -> int:
        return int(d["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    xp = {d["kind"]: wave(d) for d in rendered(app_named("-webapp-api-crossplane"))}
    assert xp["Function"] < xp["CompositeResourceDefinition"] < xp["Composition"]
    assert xp["ClusterRole"] < xp["Composition"]


# --- projects --------------------------------------------------------------------------------

def test_appprojects_allow_exactly_what_their_applications_deploy(upstream):
    apps = applications()
    for project in [d for d in rendered(app_named("-app-projects")) if d["kind"] == "AppProject"]:
        name = project["metadata"]["name"]
        assert project["spec"]["sourceRepos"] == [FAKE_FACTS[ANN_REPO_URL]], name
        assert not errors(validator_for("argoproj.io", "AppProject", "v1alpha1"), project)
        members = [a for a in apps if a["spec"]["project"] == name]
        assert members, name
        cluster_kinds, ns_kinds, namespaces = set(), set(), set()
        for app in members:
            namespaces.add(app["spec"]["destination"]["namespace"])
            for d in rendered(app):
                group, _ = split_api_version(d["apiVersion"])
                if "namespace" in d["metadata"] or d["kind"] == "WebApp":
                    ns_kinds.add((group, d["kind"]))
                    namespaces.add(d["metadata"]["namespace"])
                else:
                    cluster_kinds.add((group, d["kind"], d["metadata"]["name"]))
        spec = project["spec"]
        assert {(d["server"], d["namespace"]) for d in spec["destinations"]} == {
            (IN_CLUSTER_SERVER, ns) for ns in namespaces}, name
        allowed_cluster = {(w["group"], w["kind"]) for w in spec["clusterResourceWhitelist"]}
        assert allowed_cluster == {(g, k) for g, k, _ in cluster_kinds}, name
        for w in spec["clusterResourceWhitelist"]:
            if "name" in w:  # pinned to names: exactly the ones deployed
                assert {n for g, k, n in cluster_kinds if (g, k) == (w["group"], w["kind"])} == {
                    x["name"] for x in spec["clusterResourceWhitelist"] if (x["group"], x["kind"]) == (w["group"], w["kind"])}
        if ns_kinds:
            assert {(w["group"], w["kind"]) for w in spec["namespaceResourceWhitelist"]} == ns_kinds, name
        else:
            assert spec.get("namespaceResourceBlacklist") == [{"group": "*", "kind": "*"}], name


API_KINDS = {("kro.run", "ResourceGraphDefinition"), ("apiextensions.crossplane.io", "CompositeResourceDefinition")}


def root_application() -> dict[str, Any]:
    """The root Application as components.argocd creates it (its finalizer and spec)."""
    from components.argocd import RESOURCES_FINALIZER, _root_application_spec

    spec = _root_application_spec(FAKE_FACTS[ANN_REPO_URL], FAKE_FACTS[ANN_REVISION], FAKE_FACTS[ANN_PATH])
    return {"metadata": {"finalizers": [RESOURCES_FINALIZER]}, "spec": spec}


def test_applications_that_deliver_the_platform_apis_never_prune():
    """Deleting an RGD or an XRD deletes its CRD, every WebApp and, through ASO or
    Crossplane, the databases and storage behind them. Nothing prunes them:
    - their Applications never prune automatically;
    - the root Application (which prunes) never prunes the ApplicationSets that generate
      those Applications, on a path or revision without them (Prune=false on the live
      ApplicationSet): deleting one would delete its Applications (ownerReference), whose
      resources finalizer deletes the RGD or XRD.
    `pulumi destroy` must still remove them all, through the root's cascade: no
    Delete=false, no preserveResourcesOnDeletion anywhere on that path."""
    root = root_application()
    assert root["spec"]["syncPolicy"]["automated"]["prune"] is True
    delivering: dict[str, list[dict[str, Any]]] = {}
    # The root syncs the top level of gitops/ only (directory.recurse: false).
    assert root["spec"]["source"]["directory"] == {"recurse": False}
    for path in sorted(GITOPS.glob("*.yaml")):
        for appset in argocd.load_docs(path):
            if appset["kind"] != "ApplicationSet":
                continue
            for environment in ("dev", "prod"):
                for app in argocd.generate(appset, cluster_secret(environment)):
                    objs = rendered(app)
                    if {(split_api_version(d["apiVersion"])[0], d["kind"]) for d in objs} & API_KINDS:
                        delivering.setdefault(appset["metadata"]["name"], []).append(app)
    assert len(delivering) == 2, sorted(delivering)
    appsets = {d["metadata"]["name"]: d for d in by_kind("ApplicationSet")}
    for name, apps in delivering.items():
        appset = appsets[name]
        assert not argocd.pruned_by_sync(appset), f"{name}: the root Application would prune it"
        assert argocd.deleted_with(root, appset), f"{name}: destroy (the root's cascade) would leave it"
        for app in apps:
            app_name = app["metadata"]["name"]
            sync = app["spec"]["syncPolicy"]
            assert sync.get("automated", {}).get("prune", False) is False, app_name
            options = sync.get("syncOptions", [])
            assert "Prune=true" not in options and "Replace=true" not in options, app_name
            for d in rendered(app):
                if (split_api_version(d["apiVersion"])[0], d["kind"]) in API_KINDS:
                    assert argocd.deleted_with(app, d), f"{app_name}: destroy would leave {d['kind']}"
    app_names = {app["metadata"]["name"] for apps in delivering.values() for app in apps}
    assert {n.rsplit("-webapp-api-", 1)[1] for n in app_names} == {"kro", "crossplane"}
    # Both API kinds are really delivered by them (an RGD or XRD moved elsewhere fails here).
    delivered = {(split_api_version(d["apiVersion"])[0], d["kind"])
                 for suffix in ("-webapp-api-kro", "-webapp-api-crossplane") for d in rendered(app_named(suffix))}
    assert API_KINDS <= delivered


INSTANCE_KINDS = {(KRO_GROUP, "WebApp"), (XP_GROUP, "WebApp")}


def test_the_root_never_prunes_what_would_delete_webapp_instances():
    """Every object the root Application syncs whose deletion cascades into deleting WebApp
    instances (an ApplicationSet whose Applications deliver an API or an instance: the
    ApplicationSet goes, its Applications with it by ownerReference, and their resources
    finalizer deletes what they applied, and ASO or Crossplane the databases and storage)
    carries Prune=false, so a root path or revision without it deletes nothing; and still
    goes with the root's cascade on destroy, down to the instances."""
    root = root_application()
    guarded: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(GITOPS.glob("*.yaml")):
        for doc in argocd.load_docs(path):
            key = (split_api_version(doc["apiVersion"])[0], doc["kind"])
            assert key not in API_KINDS | INSTANCE_KINDS and doc["kind"] != "Application", (
                f"{path.name}: {doc['kind']} synced by the root directly: guard it like the ApplicationSets")
            if doc["kind"] != "ApplicationSet":
                continue
            name = doc["metadata"]["name"]
            for environment in ("dev", "prod"):
                for app in argocd.generate(doc, cluster_secret(environment)):
                    for d in rendered(app):
                        kind = (split_api_version(d["apiVersion"])[0], d["kind"])
                        if kind in API_KINDS | INSTANCE_KINDS:
                            guarded.setdefault(name, set()).add(kind)
                            assert argocd.deleted_with(app, d), f"{app['metadata']['name']}: destroy would leave {d['kind']}"
            if name in guarded:
                assert not argocd.pruned_by_sync(doc), f"{path.name}: {name}: the root Application would prune it"
                assert argocd.deleted_with(root, doc), f"{name}: destroy (the root's cascade) would leave it"
    # Both APIs and both instances are found (a guard nothing reaches would prove nothing).
    assert set().union(*guarded.values()) == API_KINDS | INSTANCE_KINDS
    assert len(guarded) == 4, sorted(guarded)


def test_the_deletion_model_reads_what_argo_cd_reads():
    """The model behind the test above: Prune=false and Delete=false as Argo CD parses them
    (comma-separated, on the object or, for Delete, in the Application's syncOptions), the
    finalizer the ApplicationSet controller adds unless told to preserve resources."""
    marked = {"metadata": {"annotations": {argocd.SYNC_OPTIONS: "SkipDryRunOnMissingResource=true,Prune=false"}}}
    assert not argocd.pruned_by_sync(marked) and argocd.pruned_by_sync({"metadata": {}})
    app = {"metadata": {"finalizers": [argocd.RESOURCES_FINALIZER]}, "spec": {"syncPolicy": {}}}
    obj = {"kind": "ResourceGraphDefinition", "metadata": {}}
    assert argocd.deleted_with(app, obj)
    assert not argocd.deleted_with(app, {"kind": "X", "metadata": {"annotations": {argocd.SYNC_OPTIONS: "Delete=false"}}})
    assert not argocd.deleted_with({**app, "spec": {"syncPolicy": {"syncOptions": ["Delete=false"]}}}, obj)
    assert not argocd.deleted_with({"metadata": {}, "spec": {}}, obj)
    assert not argocd.deleted_with(app, {"kind": "CustomResourceDefinition", "metadata": {}})
    appset = copy.deepcopy(by_kind("ApplicationSet")[0])
    assert argocd.generate(appset, cluster_secret())[0]["metadata"]["finalizers"] == [argocd.RESOURCES_FINALIZER]
    appset["spec"]["syncPolicy"] = {"preserveResourcesOnDeletion": True}
    assert "finalizers" not in argocd.generate(appset, cluster_secret())[0]["metadata"]


def test_every_whitelisted_rbac_kind_is_pinned_by_name():
    """Without a name, anything merged into a synced path could create any ClusterRole (or
    binding) in the cluster: every rbac.authorization.k8s.io entry an AppProject whitelists
    names the one object it allows."""
    projects = [d for d in rendered(app_named("-app-projects")) if d["kind"] == "AppProject"]
    assert projects
    checked = 0
    for project in projects:
        spec = project["spec"]
        for key in ("clusterResourceWhitelist", "namespaceResourceWhitelist"):
            for entry in spec.get(key, []):
                if entry["group"] in ("rbac.authorization.k8s.io", "*"):
                    assert entry["group"] != "*", f"{project['metadata']['name']} {key}: group '*' admits RBAC"
                    assert entry["kind"] != "*" and entry.get("name") and "*" not in entry["name"], (
                        f"{project['metadata']['name']} {key}: {entry} is not pinned by name")
                    checked += 1
    assert checked >= 1


# --- app instances: IDs flow from the Secret ----------------------------------------------------

@pytest.mark.parametrize("identity", IDENTITY_MODES)
@pytest.mark.parametrize("variant", ["aso", "crossplane"])
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_app_instances_get_platform_facts_from_the_cluster_secret(variant, environment, identity):
    app = app_named(f"-webapp-{variant}", environment, identity)
    (base,) = [d for d in argocd.load_docs(app_dir(app) / "webapp.yaml")]
    assert "platform" not in base["spec"] and "image" not in base["spec"], "injected fields must not be in Git"
    (webapp,) = [d for d in rendered(app) if d["kind"] == "WebApp"]
    assert webapp["spec"]["image"] == FAKE_FACTS[ANN_APP_IMAGE]
    assert webapp["spec"]["platform"] == {
        "subscriptionId": FAKE_FACTS[ANN_SUBSCRIPTION_ID],
        "tenantId": FAKE_FACTS[ANN_TENANT_ID],
        "resourceGroup": FAKE_FACTS[ANN_APP_RESOURCE_GROUP],
        "location": FAKE_FACTS[ANN_LOCATION],
        "identity": {
            WI: {"mode": WI, "oidcIssuerUrl": FAKE_FACTS[ANN_OIDC_ISSUER_URL]},
            SP: {"mode": SP, "clientId": FAKE_APP_PRINCIPAL[ANN_APP_CLIENT_ID],
                 "principalId": FAKE_APP_PRINCIPAL[ANN_APP_PRINCIPAL_ID]},
            NO_IDENTITY: {"mode": NO_IDENTITY},
        }[identity],
        "environment": environment,
    }
    assert webapp["metadata"]["namespace"] == app["spec"]["destination"]["namespace"] == f"webapp-{variant}"
    schema = kro_instance_schema() if variant == "aso" else xrd_schema()
    validator = make_validator(object_jsonschema(schema))
    assert not errors(validator, webapp), errors(validator, webapp)
    broken = copy.deepcopy(webapp)
    broken["spec"]["database"]["size"] = "huge"
    assert errors(validator, broken)
    for field, bad in (("mode", "Secret"), ("clientId", "app"), ("oidcIssuerUrl", "http://issuer")):
        broken = copy.deepcopy(webapp)
        broken["spec"]["platform"]["identity"][field] = bad
        assert errors(validator, broken), field


def test_both_variants_expose_the_same_spec():
    def normal(s: dict[str, Any]) -> Any:
        keep = ("type", "enum", "default", "minimum", "maximum", "pattern", "minLength", "maxLength",
                "maxItems", "minItems")
        out: dict[str, Any] = {k: s[k] for k in keep if k in s}
        for k in ("minimum", "maximum"):
            if k in out:
                out[k] = float(out[k])
        if "properties" in s:
            out["properties"] = {k: normal(v) for k, v in s["properties"].items()}
            out["required"] = sorted(s.get("required", []))
        if "items" in s:
            out["items"] = normal(s["items"])
        return out

    kro_spec = normal(kro_instance_schema()["properties"]["spec"])
    xp_spec = normal(xrd_schema()["properties"]["spec"])
    assert kro_spec == xp_spec
    assert set(kro_spec["properties"]) == {"image", "replicas", "maxUploadBytes", "database", "storage", "platform"}
    assert rgd()["spec"]["schema"]["kind"] == xrd()["spec"]["names"]["kind"] == "WebApp"
    assert xrd()["spec"]["scope"] == rgd()["spec"]["schema"]["scope"] == "Namespaced"
    assert xrd()["apiVersion"] == "apiextensions.crossplane.io/v2"


# --- kro ---------------------------------------------------------------------------------------

def rgd_resources() -> list[dict[str, Any]]:
    return rgd()["spec"]["resources"]


def test_kro_resource_ids_are_unique_cel_identifiers():
    ids = [r["id"] for r in rgd_resources()]
    assert len(ids) == len(set(ids))
    for i in ids:
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", i), i
        assert i not in ("schema", "each") and i not in kro.CEL_NAMESPACES


def kro_sample_instance(environment: str = "dev", identity: str = WI) -> dict[str, Any]:
    """The rendered reference instance with the API server's defaults applied."""
    (webapp,) = [d for d in rendered(app_named("-webapp-aso", environment, identity)) if d["kind"] == "WebApp"]
    spec = kro.apply_defaults(kro_instance_schema()["properties"]["spec"], webapp["spec"])
    spec["database"]["allowedIpRanges"] = [{"name": "egress", "startIpAddress": "203.0.113.10", "endIpAddress": "203.0.113.20"}]
    meta = {"name": webapp["metadata"]["name"], "namespace": webapp["metadata"]["namespace"], "uid": "uid",
            "labels": {}, "annotations": {}, "generation": 1}
    return {**webapp, "metadata": meta, "spec": spec}


RESOURCE_META = {"name": "x", "namespace": "x", "uid": "x", "labels": {}, "annotations": {}, "generation": 1}
# An upstream-shaped condition: every field CRDs declare for Ready-style conditions.
SAMPLE_CONDITION = {"type": "Ready", "status": "True", "reason": "x", "message": "x", "severity": "x",
                    "observedGeneration": 1, "lastTransitionTime": "x"}


def kro_observed_sample(res: dict[str, Any]) -> dict[str, Any]:
    """What kro would hand an expression for this resource: every field its CRD declares.

    Core kinds: the template (spec as written) and the status fields in CORE_STATUS_FIELDS,
    or no status.
    """
    tpl = res["template"]
    group, version = split_api_version(tpl["apiVersion"])
    key = (group, tpl["kind"], version)
    crds = upstream_schemas() if UPSTREAM.is_dir() else {}
    if key in crds:
        obj = cel.sample(crds[key])
    else:
        obj = copy.deepcopy(tpl)
        fields = CORE_STATUS_FIELDS.get((group, tpl["kind"]))
        if fields is not None:
            obj["status"] = {f: [SAMPLE_CONDITION] if f == "conditions" else 1 if f in CORE_INTEGER_FIELDS else "x"
                             for f in fields}
    obj["metadata"] = dict(RESOURCE_META)
    return obj


def kro_collection(res: dict[str, Any]) -> bool:
    return bool(res.get("forEach"))


class KroRun:
    """One instance through kro v0.9.3's graph, resource by resource in file order (each
    resource's dependencies come before it), with samples standing in for observed state.

    Modelled after pkg/runtime: a resource is excluded when an includeWhen is false or a
    resource it reads is excluded (IsIgnored, node.go); a collection's items are what its
    forEach evaluates to, and its expressions that read no iterator are evaluated even when
    there are none (hardResolveCollection, node_resolve.go); readers see a collection as the
    list of its observed items. What a resource reports (what later ones read) is its sample
    with the applied template over it: the spec and name kro set, the status of a sample.
    Everything is evaluated by the real CEL engine.
    """

    def __init__(self, environment: str = "dev", identity: str = WI, instance: dict[str, Any] | None = None):
        self.instance = instance or kro_sample_instance(environment, identity)
        self.scope: dict[str, Any] = {"schema": self.instance}
        self.excluded: set[str] = set()
        self.items: dict[str, list[dict[str, Any]]] = {}  # collection id -> iterator bindings
        deps = kro_dependencies()
        for res in rgd_resources():
            rid = res["id"]
            if deps[rid] & self.excluded or not all(self.condition(c) for c in res.get("includeWhen", [])):
                self.excluded.add(rid)
                continue
            if kro_collection(res):
                self.items[rid] = kro_iterators(res, self.scope)
            applied = [_overlay(kro_observed_sample(res), obj) for obj in self.render(rid)]
            self.scope[rid] = applied if kro_collection(res) else applied[0]

    def condition(self, cond: str) -> bool:
        assert kro.is_standalone(cond), cond
        value = cel.evaluate(cel.KRO, kro.expressions(cond)[0], self.scope)
        assert isinstance(value, bool), cond
        return value

    def bindings(self, res: dict[str, Any]) -> list[dict[str, Any]]:
        """The iterator values of each item (one empty binding for a plain resource)."""
        return self.items[res["id"]] if kro_collection(res) else [{}]

    def evaluate(self, res: dict[str, Any], expr: str, binding: dict[str, Any]) -> Any:
        return cel.evaluate(cel.KRO, expr, {**self.scope, **binding})

    def render(self, rid: str) -> list[dict[str, Any]]:
        """The objects kro would apply for a resource: none when excluded, one per item."""
        if rid in self.excluded:
            return []
        (res,) = [r for r in rgd_resources() if r["id"] == rid]
        return [kro.fill_expressions(res["template"], None, lambda e, b=b: self.evaluate(res, e, b))
                for b in self.bindings(res)]


def _overlay(observed: Any, applied: Any) -> Any:
    """`applied` over `observed`, key by key (lists and scalars replaced)."""
    if isinstance(observed, dict) and isinstance(applied, dict):
        return {**observed, **{k: _overlay(observed.get(k), v) for k, v in applied.items()}}
    return copy.deepcopy(applied)


def kro_activation(identity: str = WI) -> dict[str, Any]:
    """schema = the real instance; each resource id = a full sample (a list for collections)."""
    return KroRun(identity=identity).scope


def kro_iterators(res: dict[str, Any], scope: dict[str, Any]) -> list[dict[str, Any]]:
    """The forEach bindings kro expands for `scope` (the instance and the resources read)."""
    dims = []
    for entry in res.get("forEach", []):
        ((var, source),) = entry.items()
        assert kro.is_standalone(source), f"{res['id']}: forEach {source!r}"
        values = cel.evaluate(cel.KRO, kro.expressions(source)[0], scope)
        assert isinstance(values, list), f"{res['id']}: forEach {var} is not a list"
        dims.append([(var, v) for v in values])
    out: list[dict[str, Any]] = [{}]
    for dim in dims:  # the cartesian product, as kro expands several dimensions
        out = [{**b, var: v} for b in out for var, v in dim]
    return out


def kro_dependencies() -> dict[str, set[str]]:
    """Resource id -> the ids its template, forEach and includeWhen read (kro's DAG edges)."""
    ids = {r["id"] for r in rgd_resources()}
    deps: dict[str, set[str]] = {}
    for res in rgd_resources():
        iterators = {next(iter(e)) for e in res.get("forEach", [])}
        found: set[str] = set()
        sources = [v for _, v in kro.walk_strings(res["template"])]
        sources += [next(iter(e.values())) for e in res.get("forEach", [])] + list(res.get("includeWhen", []))
        for value in sources:
            for expr in kro.expressions(value):
                found |= cel.variables_read(cel.KRO, expr, (ids - {res["id"]}) | iterators | {"schema"})
        deps[res["id"]] = found - iterators - {"schema"}
    return deps


@pytest.mark.parametrize("identity", IDENTITY_MODES)
def test_kro_templates_validate_against_upstream_crds(upstream, identity):
    crds = upstream_schemas()
    run = KroRun(identity=identity)
    validated = set()
    ids = {r["id"] for r in rgd_resources()}
    for res in rgd_resources():
        tpl = res["template"]
        group, version = split_api_version(tpl["apiVersion"])
        key = (group, tpl["kind"], version)
        assert tpl["metadata"]["name"], res["id"]
        assert "namespace" not in tpl["metadata"], f"{res['id']}: kro puts namespaced resources in the instance's namespace"
        if res["id"] in run.excluded:
            continue
        if key in crds:
            for binding in run.bindings(res):
                scope = {"schema": run.instance, **binding}

                def resolve(expr: str) -> Any:
                    # Values that come from the instance are computed by CEL; values read from
                    # another resource's status are unknown here and take a sample of the type.
                    if cel.variables_read(cel.KRO, expr, set(scope) | ids) <= set(scope):
                        return cel.evaluate(cel.KRO, expr, scope)
                    return None

                doc = kro.fill_expressions(tpl, object_jsonschema(crds[key]), resolve)
                problems = errors(validator_for(*key), doc)
                assert not problems, f"{res['id']}:\n" + "\n".join(problems)
                validated.add(tpl["kind"])
        else:
            served = sorted(v for (g, k, v) in crds if (g, k) == (group, tpl["kind"]))
            assert group in CORE_GROUPS, f"{res['id']}: {key} has no CRD in {upstream} (serves {served})"
            assert "spec" in tpl or tpl["kind"] == "ServiceAccount", res["id"]
    expected = {"StorageAccount", "StorageAccountsBlobService", "StorageAccountsBlobServicesContainer",
                "FlexibleServer", "FlexibleServersDatabase", "FlexibleServersFirewallRule", "FlexibleServersConfiguration"}
    if identity != NO_IDENTITY:
        expected |= {"RoleAssignment", "FlexibleServersAdministrator"}
    if identity == WI:
        expected |= {"UserAssignedIdentity", "FederatedIdentityCredential"}
    assert validated >= expected


@pytest.mark.parametrize("identity", IDENTITY_MODES)
def test_every_kro_expression_type_checks_and_evaluates_on_declared_fields(upstream, identity):
    """Each ${...} compiles in kro's environment with only the names kro gives it there, and
    evaluates, in each identity mode, wherever kro would evaluate it, on samples carrying
    every field the CRDs declare: a misspelt field fails, and so does a read of an identity
    field the mode does not carry (which kro would wait on forever: a missing key is
    "data pending", pkg/runtime/errors.go)."""
    spec = rgd()["spec"]
    ids = {r["id"] for r in spec["resources"]}
    run = KroRun(identity=identity)
    count = 0
    for res in spec["resources"]:
        iterator_names = {next(iter(e)) for e in res.get("forEach", [])}
        for cond in res.get("includeWhen", []):
            (expr,) = kro.expressions(cond)
            cel.compile(cel.KRO, expr, {"schema"})
            run.condition(cond)
            count += 1
        for entry in res.get("forEach", []):
            ((_, source),) = entry.items()
            cel.compile(cel.KRO, kro.expressions(source)[0], ({"schema"} | ids) - {res["id"]})
            count += 1
        for path, value in kro.walk_strings(res["template"]):
            for expr in kro.expressions(value):
                # A template may read the instance, its iterators and other resources, never itself.
                cel.compile(cel.KRO, expr, ({"schema"} | ids | iterator_names) - {res["id"]})
                count += 1
        for cond in res.get("readyWhen", []):
            assert kro.is_standalone(cond), f"{res['id']} readyWhen: {cond!r}"
            (expr,) = kro.expressions(cond)
            # kro evaluates readyWhen on the resource alone; on each item for collections.
            own = "each" if kro_collection(res) else res["id"]
            cel.compile(cel.KRO, expr, {own})
            assert isinstance(cel.evaluate(cel.KRO, expr, {own: kro_observed_sample(res)}), bool), res["id"]
            count += 1
        if res["id"] in run.excluded:
            continue
        # Evaluated as kro evaluates them: expressions without an iterator once (even for a
        # collection with no items), the others per item.
        for path, value in kro.walk_strings(res["template"]):
            for expr in kro.expressions(value):
                where = f"{res['id']} {'.'.join(map(str, path))} ({identity})"
                reads_iterator = bool(cel.variables_read(cel.KRO, expr, ({"schema"} | ids | iterator_names) - {res["id"]})
                                      & iterator_names)
                bindings = run.bindings(res) if reads_iterator else [{}]
                for binding in bindings:
                    result = run.evaluate(res, expr, binding)
                    if not kro.is_standalone(value):
                        assert isinstance(result, (str, int)), f"{where}: embedded in a string but yields {result!r}"
    for path, value in kro.walk_strings(spec["schema"].get("status", {})):
        for expr in kro.expressions(value):
            cel.compile(cel.KRO, expr, {"schema"} | ids)
            assert isinstance(cel.evaluate(cel.KRO, expr, run.scope), str), (path, identity)
            count += 1
    assert count > 70


def test_kro_expression_check_catches_typos_and_forbidden_reads(upstream):
    """The check above must be able to fail: the engine reports misspelt fields and names."""
    scope = kro_activation()
    with pytest.raises(cel.CelError, match="subscriptoinId"):
        cel.evaluate(cel.KRO, '"%x".format([hash.sha256(schema.spec.platform.subscriptoinId)])', scope)
    with pytest.raises(cel.CelError):
        cel.evaluate(cel.KRO, "server.status.fqdn", scope)
    assert cel.evaluate(cel.KRO, "server.status.fullyQualifiedDomainName", scope) == "x"
    # readyWhen sees only its own resource: reading another is an undeclared reference.
    with pytest.raises(cel.CelError, match="undeclared reference"):
        cel.compile(cel.KRO, 'database.status.conditions.exists(c, c.type == "Ready") && server.status.id != ""', {"database"})
    # An identity field the mode does not carry is a missing key (kro: data pending forever).
    for identity, absent in ((SP, "oidcIssuerUrl"), (WI, "clientId"), (NO_IDENTITY, "principalId")):
        with pytest.raises(cel.CelError, match=absent):
            cel.evaluate(cel.KRO, f"schema.spec.platform.identity.{absent}", kro_activation(identity))
    # The name scheme: the same digest the Composition computes.
    seed = "s/r/n/app"
    assert cel.evaluate(cel.KRO, '"%x".format([hash.sha256(x)]).substring(0, 16)', {"x": seed}) == (
        hashlib.sha256(seed.encode()).hexdigest()[:16])


def kro_ready(res: dict[str, Any], observed: dict[str, Any]) -> bool:
    """kro v0.9.3's readiness of one observed object (an item, for collections): every
    readyWhen true; a missing field is "data pending", i.e. not ready yet, and any other
    evaluation error is a bug (pkg/runtime/node_readiness.go, errors.go)."""
    own = "each" if kro_collection(res) else res["id"]
    for cond in res["readyWhen"]:
        (expr,) = kro.expressions(cond)
        try:
            value = cel.evaluate(cel.KRO, expr, {own: observed})
        except cel.CelError as err:
            if "not found" in str(err).lower() or "no such" in str(err):
                return False
            raise
        assert isinstance(value, bool), (res["id"], value)
        if not value:
            return False
    return True


def test_kro_ready_means_ready_for_the_current_spec():
    """Right after a spec change the controller's last report still says Ready=True (ASO)
    or Available=True (the Deployment), computed for the previous generation: that must not
    count, or kro starts dependants (and reports the instance ready) against the old spec.
    ASO stamps each condition with the generation it saw (conditions[].observedGeneration in
    every pinned ASO CRD); a Deployment reports status.observedGeneration."""
    checked = set()
    for res in rgd_resources():
        if not res.get("readyWhen"):
            continue
        kind = res["template"]["kind"]
        ready_type = "Available" if kind == "Deployment" else "Ready"

        def observed(seen: int | None, generation: int = 3) -> dict[str, Any]:
            condition = {"type": ready_type, "status": "True", "reason": "Succeeded", "lastTransitionTime": "x"}
            status: dict[str, Any] = {"conditions": [condition]}
            if seen is not None:
                if kind == "Deployment":  # DeploymentCondition has no observedGeneration
                    status["observedGeneration"] = seen
                else:
                    condition["observedGeneration"] = seen
            return {"metadata": {**RESOURCE_META, "generation": generation}, "status": status}

        assert kro_ready(res, observed(seen=3)), res["id"]
        assert not kro_ready(res, observed(seen=2)), f"{res['id']}: a Ready condition for the previous spec counts"
        assert not kro_ready(res, observed(seen=None)), res["id"]
        checked.add(kind)
    assert {"Deployment", "FlexibleServer", "FlexibleServersDatabase", "FlexibleServersFirewallRule",
            "FlexibleServersConfiguration", "FlexibleServersAdministrator", "StorageAccount",
            "StorageAccountsBlobServicesContainer", "RoleAssignment", "UserAssignedIdentity",
            "FederatedIdentityCredential"} <= checked
    # What the sample stands for is what the pinned CRDs declare.
    if UPSTREAM.is_dir():
        crds = upstream_schemas()
        for res in rgd_resources():
            group, version = split_api_version(res["template"]["apiVersion"])
            key = (group, res["template"]["kind"], version)
            if group.endswith(".azure.com"):
                conditions = crds[key]["properties"]["status"]["properties"]["conditions"]["items"]
                assert conditions["properties"]["observedGeneration"]["type"] == "integer", key


def test_kro_starts_the_app_only_after_everything_it_needs_is_ready():
    """kro v0.9.3 creates a resource once every resource it reads passes its readyWhen; one
    without readyWhen counts as ready as soon as it exists (pkg/runtime/node_readiness.go)."""
    resources = {r["id"]: r for r in rgd_resources()}
    deps = kro_dependencies()

    def closure(rid: str) -> set[str]:
        seen: set[str] = set()
        todo = [rid]
        while todo:
            for dep in deps[todo.pop()] - seen:
                seen.add(dep)
                todo.append(dep)
        return seen

    needed = set().union(*deps.values())
    azure = {rid for rid, r in resources.items() if r["template"]["apiVersion"].split("/")[0].endswith(".azure.com")}
    # Every Azure resource is something the app needs before it starts.
    assert azure <= closure("deployment"), f"the Deployment does not wait for {sorted(azure - closure('deployment'))}"
    for rid in sorted(needed | azure):
        res = resources[rid]
        if res["template"]["kind"] == "ServiceAccount":
            continue  # no status: existing is being ready
        (cond,) = res.get("readyWhen", [None])
        assert cond, f"{rid} is needed by {sorted(r for r, d in deps.items() if rid in d)} but has no readyWhen"
        (expr,) = kro.expressions(cond)
        own = "each" if kro_collection(res) else rid
        ready_type = "Available" if res["template"]["kind"] == "Deployment" else "Ready"

        def ready(conditions: list[dict[str, Any]]) -> bool:
            # Conditions for the current generation (the next test covers stale ones).
            return kro_ready(res, {"metadata": dict(RESOURCE_META), "status": {
                "observedGeneration": RESOURCE_META["generation"],
                "conditions": [{**c, "observedGeneration": RESOURCE_META["generation"]} for c in conditions]}})

        assert ready([{"type": ready_type, "status": "True"}]), rid
        assert not ready([{"type": ready_type, "status": "False", "reason": "Reconciling"}]), rid
        assert not ready([{"type": "Other", "status": "True"}]), rid
        assert not ready([]), rid
    # An excluded resource excludes whatever reads it (IsIgnored is contagious): nothing that
    # always exists may read a resource that includeWhen can drop.
    # A reader of an optional resource states the same condition itself, so that the rule is
    # visible where it applies (the Deployment), and nothing else disappears by contagion.
    for rid, d in deps.items():
        own = set(resources[rid].get("includeWhen", []))
        for dep in d:
            missing = set(resources[dep].get("includeWhen", [])) - own
            assert not missing, f"{rid} reads {dep}, which includeWhen {sorted(missing)} may exclude"
    assert resources["deployment"].get("includeWhen"), "the Deployment is skipped without an identity"


def test_kro_owners_are_the_existing_app_resource_group():
    """Top-level Azure resources use owner.armId (ASO never owns or creates the group)."""
    arm = "/subscriptions/${schema.spec.platform.subscriptionId}/resourceGroups/${schema.spec.platform.resourceGroup}"
    ids = {r["id"] for r in rgd_resources()}
    run = KroRun(identity=WI)  # every resource exists in this mode
    assert not run.excluded and all(run.items.values())
    for res in rgd_resources():
        named = {"metadata": {"name": f"name-of-{res['id']}"}}
        run.scope[res["id"]] = [named] * len(run.scope[res["id"]]) if kro_collection(res) else named
    for res in rgd_resources():
        tpl = res["template"]
        if not tpl["apiVersion"].split("/")[0].endswith(".azure.com"):
            continue
        owner = tpl["spec"]["owner"]
        if tpl["kind"] in ("UserAssignedIdentity", "StorageAccount", "FlexibleServer"):
            assert owner == {"armId": arm}, res["id"]
        else:  # children are owned by a sibling in the graph, by name
            (expr,) = kro.expressions(owner["name"])
            iterators = kro_iterators(res, run.scope) if kro_collection(res) else [{}]
            for binding in iterators:
                got = cel.evaluate(cel.KRO, expr, {**run.scope, **binding})
                assert got in {f"name-of-{i}" for i in ids - {res['id']}}, res["id"]
    assert not [r for r in rgd_resources() if r["template"]["kind"] == "ResourceGroup"]


# --- Crossplane -----------------------------------------------------------------------------

def sample_xr(environment: str = "dev", ranges: int = 3, identity: str = WI) -> dict[str, Any]:
    """The rendered instance from Git plus defaults, with `ranges` firewall ranges and the
    status the composed resources report (the identity's IDs only where one is composed)."""
    (webapp,) = [d for d in rendered(app_named("-webapp-crossplane", environment, identity)) if d["kind"] == "WebApp"]
    webapp = copy.deepcopy(webapp)
    webapp["spec"]["database"]["allowedIpRanges"] = [
        {"name": f"egress{i}", "startIpAddress": f"203.0.113.{i}", "endIpAddress": f"203.0.113.{i}"}
        for i in range(ranges)
    ]
    webapp["status"] = {
        "postgresHost": "pg.postgres.database.azure.com",
        "storageAccountUrl": "https://st.blob.core.windows.net/",
        "identityClientId": "client", "identityPrincipalId": "principal", "identityName": "id-x",
        "storageAccountId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/st",
    }
    if identity != WI:
        for field in ("identityClientId", "identityPrincipalId", "identityName"):
            del webapp["status"][field]
    return webapp


def test_functions_are_pinned_and_every_step_uses_one(upstream):
    functions = {f["metadata"]["name"]: f for f in by_kind("Function", "pkg.crossplane.io")}
    for name, fn in functions.items():
        assert re.fullmatch(rf"xpkg\.crossplane\.io/crossplane-contrib/{name}:v\d+\.\d+\.\d+", fn["spec"]["package"]), name
    steps = [s["functionRef"]["name"] for s in composition()["spec"]["pipeline"]]
    assert set(steps) == set(functions)
    crds = upstream_schemas()
    for step in composition()["spec"]["pipeline"]:
        group, version = split_api_version(step["input"]["apiVersion"])
        key = (group, step["input"]["kind"], version)
        assert key in {("pt.fn.crossplane.io", "Resources", "v1beta1"), ("cel.fn.crossplane.io", "Filters", "v1beta1")}
        assert key in crds, f"{step['step']}: the function's input CRD is not pinned in {upstream}"
        doc = {**step["input"], "metadata": {"name": step["step"]}}
        assert not errors(validator_for(*key), doc), (step["step"], errors(validator_for(*key), doc))
    assert composition()["spec"]["mode"] == "Pipeline"
    assert composition()["spec"]["compositeTypeRef"] == {
        "apiVersion": f"{xrd()['spec']['group']}/{xrd_version()['name']}", "kind": xrd()["spec"]["names"]["kind"]}
    assert xrd()["spec"]["defaultCompositionRef"]["name"] == composition()["metadata"]["name"]


def test_composition_patches_use_declared_xr_fields():
    schema = xrd_schema()
    checked = 0
    for res, direction, path in pt.composite_paths(step_input("function-patch-and-transform")):
        segs = [s for s in pt.parse_path(path) if not isinstance(s, int)]
        if segs[0] == "metadata":
            assert segs[1] in ("name", "namespace", "labels", "annotations", "uid"), (res, path)
        else:
            if direction == "to":
                assert segs[0] == "status", f"{res}: writes {path} on the XR"
            node = schema
            for s in segs:
                node = kro.schema_at(node, (s,)) or (node.get("items", {}) and kro.schema_at(node["items"], (s,)))
                assert node, f"{res}: {path} is not declared in the XRD"
        checked += 1
    assert checked > 40


def test_composed_resources_render_and_are_namespaced_upbound_resources(upstream):
    pt_input = step_input("function-patch-and-transform")
    crds = upstream_schemas()
    validated = set()
    # What the pipeline composes in each identity mode, validated against the provider's CRDs.
    for identity in IDENTITY_MODES:
        for name, obj in xp_desired(identity=identity).items():
            group, version = split_api_version(obj["apiVersion"])
            assert "namespace" not in obj.get("metadata", {}), f"{name}: composed into the XR's namespace"
            if group in CORE_GROUPS:
                assert obj["metadata"]["name"] == "uploads", name
                continue
            assert group.endswith(".azure.m.upbound.io") and version == "v1beta1", f"{name}: namespaced MRs only"
            assert obj["spec"]["providerConfigRef"] == {"kind": "ClusterProviderConfig", "name": CROSSPLANE_PROVIDER_CONFIG}
            key = (group, obj["kind"], version)
            assert key in crds, f"{name}: {key} is not pinned in {upstream}"
            obj = {**obj, "metadata": {"name": name, **obj.get("metadata", {})}}
            assert not errors(validator_for(*key), obj), (identity, name, errors(validator_for(*key), obj))
            validated.add((identity, obj["kind"]))
    assert {(SP, "RoleAssignment"), (SP, "FlexibleServerActiveDirectoryAdministrator"), (WI, "RoleAssignment"),
            (WI, "FlexibleServerActiveDirectoryAdministrator"), (WI, "FederatedIdentityCredential")} <= validated
    desired = pt.render(pt_input, sample_xr())
    # the Azure names the scheme promises, identical to the kro variant's
    xr = sample_xr()
    seed = "/".join([xr["spec"]["platform"]["subscriptionId"], xr["spec"]["platform"]["resourceGroup"],
                     xr["metadata"]["namespace"], xr["metadata"]["name"]])
    digest = hashlib.sha256(seed.encode()).hexdigest()[:16]
    ext = lambda n: desired[n]["metadata"]["annotations"]["crossplane.io/external-name"]  # noqa: E731
    assert ext("storage-account") == f"st{digest}" and re.fullmatch(r"[a-z0-9]{3,24}", ext("storage-account"))
    assert ext("postgres-server") == f"pg-{digest}"
    assert desired["identity"]["spec"]["forProvider"]["name"] == f"id-{digest}"
    for kind, prefix in (("StorageAccount", "st"), ("FlexibleServer", "pg-"), ("UserAssignedIdentity", "id-")):
        (res,) = kro_template(kind)
        assert res["template"]["spec"]["azureName"] == KRO_NAME.format(prefix=prefix), kind
    fw = [desired[f"postgres-firewall-allowed-{i}"]["spec"]["forProvider"] for i in range(3)]
    assert [f["startIpAddress"] for f in fw] == ["203.0.113.0", "203.0.113.1", "203.0.113.2"]
    assert desired["postgres-server"]["spec"]["forProvider"]["skuName"] == "B_Standard_B1ms"
    assert desired["postgres-server"]["spec"]["forProvider"]["storageMb"] == 32768


@functools.lru_cache(maxsize=None)
def _cel_filter_expressions(composition_mtime_ns: int) -> dict[str, str]:
    filters = step_input("function-cel-filter")["filters"]
    assert len({f["name"] for f in filters}) == len(filters), "one filter per resource name"
    return {f["name"]: f["expression"] for f in filters}


def cel_filter_expressions() -> dict[str, str]:
    """Resource name -> the Composition's cel-filter expression (parsed once per file version)."""
    return dict(_cel_filter_expressions((GITOPS / "platform/crossplane/webapp-composition.yaml").stat().st_mtime_ns))


def cel_filter(name: str, xr: dict[str, Any], observed: tuple[str, ...] | dict[str, dict[str, Any]] = ()) -> bool:
    """function-cel-filter v0.2.0's decision for one resource: keep it when the expression is true.

    `observed`: the composed resources that exist, by name: a tuple of names (objects with
    no status yet) or name -> the object Crossplane observed. fn.go hands the expression
    the request's State message, where each observed resource is `{resource: <object>}`.
    """
    expr = cel_filter_expressions()[name]
    objects = observed if isinstance(observed, dict) else {n: {} for n in observed}
    state = {"composite": {"resource": xr}, "resources": {n: {"resource": obj} for n, obj in objects.items()}}
    result = cel.evaluate(cel.CEL_FILTER, expr, {"observed": state, "desired": {"composite": {"resource": xr}}, "context": {}})
    assert isinstance(result, bool), (name, result)
    return result


def mr_observed(obj: dict[str, Any], *conditions: dict[str, str]) -> dict[str, Any]:
    """A composed resource as Crossplane observes it, with these status conditions."""
    return {**obj, "status": {"conditions": [{"lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "x", **c}
                                             for c in conditions]}}


READY = {"type": "Ready", "status": "True", "reason": "Available"}
SYNCED = {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"}


def test_cel_filters_name_real_resources_and_gate_zero_ip_to_dev():
    names = {r["name"] for r in step_input("function-patch-and-transform")["resources"]}
    filters = {f["name"]: f["expression"] for f in step_input("function-cel-filter")["filters"]}
    assert set(filters) <= names
    # Every expression type-checks with the function's variables and evaluates on an XR that
    # carries every field the XRD declares (a misspelt field is a missing key).
    full = {"apiVersion": "x/v1", "kind": "WebApp", "metadata": {"name": "x", "namespace": "x"}, **cel.sample(xrd_schema())}
    for name in filters:
        cel_filter(name, full)
    assert xrd_schema()["properties"]["spec"]["properties"]["database"]["properties"]["allowedIpRanges"]["maxItems"] == 3
    for environment in ("dev", "prod"):
        for ranges in range(4):
            xr = sample_xr(environment, ranges)
            assert cel_filter("postgres-firewall-azure-services", xr) is (environment == "dev")
            for i in range(3):
                assert cel_filter(f"postgres-firewall-allowed-{i}", xr) is (ranges > i), (environment, ranges, i)
    # Resources that need IDs from siblings wait for them, then are never dropped again.
    bare = sample_xr()
    del bare["status"]
    for gated in ("blob-contributor", "postgres-entra-admin", "deployment"):
        # Everything else composed and Ready: only the XR's status decides.
        converged = {n: mr_observed(o, READY) for n, o in xp_desired().items() if n != gated}
        assert not cel_filter(gated, bare), gated
        assert not cel_filter(gated, bare, converged), gated
        assert cel_filter(gated, sample_xr(), converged), gated
        assert cel_filter(gated, bare, observed=(gated,)), gated
        for missing in sample_xr()["status"]:
            partial = sample_xr()
            del partial["status"][missing]
            if cel_filter(gated, partial, converged):
                continue  # this resource does not need that ID
            assert cel_filter(gated, partial, observed=(gated,)), (gated, missing)
    with pytest.raises(cel.CelError):
        cel.evaluate(cel.CEL_FILTER, "observed.composite.resource.spec.platfrom.environment == 'dev'",
                     {"observed": {"composite": {"resource": full}}})


@pytest.mark.parametrize("identity", [WI, SP])
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_crossplane_starts_the_app_only_after_everything_it_needs_is_ready(environment, identity):
    """The Deployment is composed once every Azure resource composed for this XR reports
    Ready (not merely exists): the same rule kro's readyWhen enforces for the ASO variant.
    Crossplane itself creates composed resources in no order and waits for none."""
    for ranges in range(4):
        xr = sample_xr(environment, ranges, identity=identity)
        desired = xp_desired(environment, identity, xr)
        assert "deployment" in desired, (environment, identity, ranges)
        azure = {n: o for n, o in desired.items() if split_api_version(o["apiVersion"])[0].endswith(".azure.m.upbound.io")}
        firewall = {n for n in azure if n.startswith("postgres-firewall-")}
        assert len(firewall) == ranges + (environment == "dev"), firewall
        assert {"postgres-server", "postgres-database", "postgres-require-tls", "postgres-tls-min-version",
                "postgres-entra-admin", "storage-account", "storage-container", "blob-contributor"} <= set(azure)
        assert ({"identity", "federated-credential"} <= set(azure)) is (identity == WI)
        others = {n: mr_observed(o, READY, SYNCED) for n, o in desired.items() if n not in azure and n != "deployment"}
        ready = {n: mr_observed(o, READY, SYNCED) for n, o in azure.items()}
        assert cel_filter("deployment", xr, {**others, **ready})
        # Only what this XR composes is waited for: extra Ready rules change nothing.
        assert cel_filter("deployment", xr, ready)
        for name, obj in azure.items():
            for state in (None,  # not created yet
                          mr_observed(obj),  # created, no status yet
                          mr_observed(obj, SYNCED),  # applied, Azure still creating it
                          mr_observed(obj, {"type": "Ready", "status": "False", "reason": "Creating"}, SYNCED),
                          mr_observed(obj, {"type": "Ready", "status": "Unknown", "reason": "x"})):
                observed = {**others, **ready}
                if state is None:
                    del observed[name]
                else:
                    observed[name] = state
                assert not cel_filter("deployment", xr, observed), (environment, identity, ranges, name, state)
        # Once running, the app stays through a later hiccup of one of its resources.
        hiccup = {**ready, "postgres-server": mr_observed(azure["postgres-server"], SYNCED), "deployment": {}}
        assert cel_filter("deployment", xr, hiccup)


# --- the workload and secure defaults, both variants --------------------------------------------

def kro_template(kind: str, **where: Any) -> list[dict[str, Any]]:
    return [r for r in rgd_resources() if r["template"]["kind"] == kind and all(r.get(k) == v for k, v in where.items())]


def xp_compose(xr: dict[str, Any], observed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One run of the pipeline: P&T renders, then cel-filter keeps what it decides to."""
    names = set(cel_filter_expressions())
    return {name: obj for name, obj in pt.render(step_input("function-patch-and-transform"), xr).items()
            if name not in names or cel_filter(name, xr, observed)}


def xp_desired(environment: str = "dev", identity: str = WI, xr: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """What the pipeline composes once converged: Crossplane runs it again after each
    composed resource it created becomes Ready (in this model, at once), until nothing changes."""
    xr = xr or sample_xr(environment, identity=identity)
    observed: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        desired = xp_compose(xr, observed)
        if set(desired) == set(observed):
            return desired
        observed = {name: mr_observed(obj, READY, SYNCED) for name, obj in desired.items()}
    raise AssertionError(f"the pipeline does not converge: {sorted(desired)}")


def pod_environment(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The variables the kubelet gives the container: values, and secretKeyRefs resolved
    from `secrets` (a missing optional one leaves the variable unset, a required one fails)."""
    out = {}
    for e in container["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            assert set(e["valueFrom"]) == {"secretKeyRef"}, e
            found = secrets.get(ref["name"], {}).get(ref["key"])
            if found is None:
                assert ref.get("optional") is True, f"{e['name']}: the pod would not start without {ref['name']}"
                continue
            out[e["name"]] = found
        else:
            out[e["name"]] = e.get("value", "")
    return out


APP_SECRET_VALUE = "app-secret-for-the-test"


@pytest.mark.parametrize("identity", [WI, SP])
def test_workload_runs_as_the_apps_own_principal_with_the_app_contract(identity):
    """One Deployment per variant serves both modes: workload identity (its own identity,
    a token the pod projects itself, no webhook) or the app's service principal (its client
    ID, its secret from the Secret Pulumi creates, no token). The app then picks its
    credential from the variables the pod really gets (app/webapp/azure_auth.py)."""
    from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

    from app.webapp.azure_auth import azure_credential
    from app.webapp.settings import Settings

    run = KroRun(identity=identity)
    (kro_dep,) = run.render("deployment")
    xp = xp_desired(identity=identity)
    xp_dep = xp["deployment"]
    if identity == WI:
        expected_client = {id(kro_dep): run.scope["identity"][0]["status"]["clientId"], id(xp_dep): "client"}
    else:
        expected_client = {id(kro_dep): FAKE_APP_PRINCIPAL[ANN_APP_CLIENT_ID], id(xp_dep): FAKE_APP_PRINCIPAL[ANN_APP_CLIENT_ID]}
    # The Secret exists only where Pulumi creates it: with the app's service principal.
    secrets = {APP_CREDENTIALS_SECRET: {APP_CREDENTIALS_KEY: APP_SECRET_VALUE}} if identity == SP else {}
    for dep in (kro_dep, xp_dep):
        pod = dep["spec"]["template"]
        # No webhook involved: clusters without the Azure Workload Identity webhook (kind,
        # k3d) and AKS run the same Deployment.
        assert "azure.workload.identity/use" not in pod["metadata"].get("labels", {})
        (c,) = pod["spec"]["containers"]
        env = pod_environment(c, secrets)
        assert (env["AZURE_CLIENT_ID"], env["AZURE_TENANT_ID"]) == (expected_client[id(dep)], FAKE_FACTS[ANN_TENANT_ID])
        assert env["AZURE_AUTHORITY_HOST"] == "https://login.microsoftonline.com/"
        (ref,) = [e["valueFrom"]["secretKeyRef"] for e in c["env"] if e["name"] == "AZURE_CLIENT_SECRET"]
        assert (ref["name"], ref["key"], ref["optional"]) == (APP_CREDENTIALS_SECRET, APP_CREDENTIALS_KEY, identity != SP)
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}} and mounts["tmp"]["mountPath"] == "/tmp"
        # With the settings' default time limits (the test's fake status values are no URLs).
        defaults = {f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING}
        credential = azure_credential(SimpleNamespace(**defaults), env)
        if identity == WI:
            (source,) = volumes["azure-identity-token"]["projected"]["sources"]
            token = source["serviceAccountToken"]
            assert token["audience"] == "api://AzureADTokenExchange" and token["expirationSeconds"] >= 3600
            mount = mounts["azure-identity-token"]
            assert mount["readOnly"] is True
            assert env["AZURE_FEDERATED_TOKEN_FILE"] == f"{mount['mountPath']}/{token['path']}"
            assert "AZURE_CLIENT_SECRET" not in env
            assert isinstance(credential, WorkloadIdentityCredential)
        else:
            # No token projected, none pointed to: the secret is the one credential.
            assert set(volumes) == set(mounts) == {"tmp"}
            assert not env["AZURE_FEDERATED_TOKEN_FILE"]
            assert env["AZURE_CLIENT_SECRET"] == APP_SECRET_VALUE
            assert isinstance(credential, ClientSecretCredential)
        assert APP_ENV <= set(env) and all(env[k] for k in APP_ENV), env
        assert env["AZURE_POSTGRES_ENTRA"] == "true" and env["PORT"] == "8080"
        # Liveness on the gunicorn master's own listener (app/gunicorn.conf.py, HEALTH_PORT 8081).
        assert c["ports"] == [{"name": "http", "containerPort": 8080}, {"name": "health", "containerPort": 8081}]
        assert c["livenessProbe"]["httpGet"]["port"] == "health"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The service account: annotated with the identity's client ID, which the credential trusts.
    (sa,) = run.render("serviceAccount")
    assert kro_dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert xp_dep["spec"]["template"]["spec"]["serviceAccountName"] == xp["service-account"]["metadata"]["name"]
    assert xp["service"]["spec"]["selector"] == xp_dep["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "uploads"}
    if identity == WI:
        assert sa["metadata"]["annotations"] == {"azure.workload.identity/client-id": expected_client[id(kro_dep)]}
        (identity_obj,) = run.render("identity")
        (fic,) = run.render("federatedCredential")
        assert fic["spec"]["owner"] == {"name": identity_obj["metadata"]["name"]}
        assert fic["spec"]["subject"] == f"system:serviceaccount:{run.instance['metadata']['namespace']}:{sa['metadata']['name']}"
        assert fic["spec"]["issuer"] == FAKE_FACTS[ANN_OIDC_ISSUER_URL]
        assert fic["spec"]["audiences"] == ["api://AzureADTokenExchange"]
        assert xp["service-account"]["metadata"]["annotations"]["azure.workload.identity/client-id"] == "client"
        f = xp["federated-credential"]["spec"]["forProvider"]
        assert f["subject"] == f"system:serviceaccount:webapp-crossplane:{xp['service-account']['metadata']['name']}"
        assert f["issuer"] == FAKE_FACTS[ANN_OIDC_ISSUER_URL] and f["audience"] == ["api://AzureADTokenExchange"]
    else:
        # No identity, no federation: the given principal is used as it is.
        assert run.render("identity") == run.render("federatedCredential") == []
        assert not sa["metadata"].get("annotations")
        assert "identity" not in xp and "federated-credential" not in xp
        assert "annotations" not in xp["service-account"]["metadata"]


@pytest.mark.parametrize("variant", ["aso", "crossplane"])
def test_the_secret_name_in_both_graphs_is_the_one_pulumi_creates(variant):
    """The Deployment reads exactly the Secret components.app_principal writes."""
    text = (GITOPS / "platform" / ("kro/webapp-rgd.yaml" if variant == "aso" else "crossplane/webapp-composition.yaml")).read_text()
    assert text.count(f"name: {APP_CREDENTIALS_SECRET}") == 1 and f"key: {APP_CREDENTIALS_KEY}" in text


def test_without_an_identity_the_azure_resources_exist_but_no_grant_or_deployment():
    """Service-principal mode without the app's principal: Pulumi prints one line; the graphs
    still create the database and the storage, and nothing that needs a principal."""
    run = KroRun(identity=NO_IDENTITY)
    assert run.excluded == {"blobContributor", "pgAdmin", "deployment"}
    assert run.items["identity"] == run.items["federatedCredential"] == []
    azure = {r["id"] for r in rgd_resources() if r["template"]["apiVersion"].split("/")[0].endswith(".azure.com")}
    created = {rid for rid in azure if run.render(rid)}
    assert created == azure - {"identity", "federatedCredential", "blobContributor", "pgAdmin"}
    assert {"storage", "container", "server", "database"} <= created
    (service,) = run.render("service")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "uploads"}
    xp = xp_desired(identity=NO_IDENTITY)
    dropped = {r["name"] for r in step_input("function-patch-and-transform")["resources"]} - set(xp)
    assert dropped == {"identity", "federated-credential", "blob-contributor", "postgres-entra-admin", "deployment"}
    assert {"storage-account", "storage-container", "postgres-server", "postgres-database"} <= set(xp)
    # Also when they had been created under another mode: nothing keeps them.
    xr = sample_xr(identity=NO_IDENTITY)
    for name in ("blob-contributor", "postgres-entra-admin", "deployment", "identity", "federated-credential"):
        assert not cel_filter(name, xr, observed=(name,)), name


def test_storage_is_locked_down_in_both_variants():
    (st,) = kro_template("StorageAccount")
    s = st["template"]["spec"]
    assert (s["allowBlobPublicAccess"], s["allowSharedKeyAccess"], s["minimumTlsVersion"], s["supportsHttpsTrafficOnly"]) == (
        False, False, "TLS1_2", True)
    (container,) = kro_template("StorageAccountsBlobServicesContainer")
    assert container["template"]["spec"]["publicAccess"] == "None"
    (ra,) = kro_template("RoleAssignment")
    assert ra["template"]["spec"]["roleDefinitionReference"] == {"wellKnownName": "Storage Blob Data Contributor"}
    assert ra["template"]["spec"]["owner"]["kind"] == "StorageAccount"
    desired = xp_desired()
    a = desired["storage-account"]["spec"]["forProvider"]
    assert (a["allowNestedItemsToBePublic"], a["sharedAccessKeyEnabled"], a["minTlsVersion"], a["httpsTrafficOnlyEnabled"]) == (
        False, False, "TLS1_2", True)
    assert desired["storage-container"]["spec"]["forProvider"]["containerAccessType"] == "private"
    r = desired["blob-contributor"]["spec"]["forProvider"]
    assert r["roleDefinitionName"] == "Storage Blob Data Contributor" and r["scope"].endswith("/storageAccounts/st")


def test_postgres_is_entra_only_with_tls_in_both_variants():
    (server,) = kro_template("FlexibleServer")
    auth = server["template"]["spec"]["authConfig"]
    assert (auth["activeDirectoryAuth"], auth["passwordAuth"]) == ("Enabled", "Disabled")
    assert "administratorLogin" not in server["template"]["spec"]
    tls = {r["template"]["spec"]["azureName"]: r["template"]["spec"]["value"] for r in kro_template("FlexibleServersConfiguration")}
    assert tls == {"require_secure_transport": "on", "ssl_min_protocol_version": "TLSv1.2"}

    desired = xp_desired()
    f = desired["postgres-server"]["spec"]["forProvider"]
    assert f["authentication"] == {"activeDirectoryAuthEnabled": True, "passwordAuthEnabled": False,
                                   "tenantId": FAKE_FACTS[ANN_TENANT_ID]}
    assert not {"administratorLogin", "administratorPasswordSecretRef", "autoGeneratePassword"} & set(f)
    cfg = {desired[n]["spec"]["forProvider"]["name"]: desired[n]["spec"]["forProvider"]["value"]
           for n in ("postgres-require-tls", "postgres-tls-min-version")}
    assert cfg == tls


@pytest.mark.parametrize("identity", [WI, SP])
def test_the_apps_principal_is_the_entra_admin_and_blob_contributor(identity):
    """Both grants go to the app's principal: its identity's, or the given service principal's
    object ID (principalType ServicePrincipal either way: a managed identity is one)."""
    run = KroRun(identity=identity)
    (admin,) = run.render("pgAdmin")
    (blob,) = run.render("blobContributor")
    xp = xp_desired(identity=identity)
    ad = xp["postgres-entra-admin"]["spec"]["forProvider"]
    ra = xp["blob-contributor"]["spec"]["forProvider"]
    if identity == WI:
        uai = run.scope["identity"][0]
        kro_expected = (uai["status"]["principalId"], uai["spec"]["azureName"])
        xp_expected = ("principal", "id-x")
    else:
        kro_expected = xp_expected = (FAKE_APP_PRINCIPAL[ANN_APP_PRINCIPAL_ID], FAKE_APP_PRINCIPAL[ANN_APP_CLIENT_ID])
    assert (admin["spec"]["azureName"], admin["spec"]["principalName"], admin["spec"]["principalType"]) == (
        *kro_expected, "ServicePrincipal")
    assert admin["spec"]["tenantId"] == FAKE_FACTS[ANN_TENANT_ID]
    assert (blob["spec"]["principalId"], blob["spec"]["principalType"]) == (kro_expected[0], "ServicePrincipal")
    assert (ad["objectId"], ad["principalName"], ad["principalType"]) == (*xp_expected, "ServicePrincipal")
    assert (ra["principalId"], ra["principalType"]) == (xp_expected[0], "ServicePrincipal")
    # The app signs in to PostgreSQL as that role.
    (dep,) = run.render("deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PGUSER"] == kro_expected[1]
    xp_env = {e["name"]: e.get("value") for e in xp["deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert xp_env["PGUSER"] == xp_expected[1]
    if identity == SP:
        # A status left over from an earlier workload-identity mode does not win over the spec.
        stale = sample_xr(identity=SP)
        stale["status"].update(sample_xr(identity=WI)["status"])
        again = xp_desired(xr=stale)
        assert again["postgres-entra-admin"]["spec"]["forProvider"]["objectId"] == FAKE_APP_PRINCIPAL[ANN_APP_PRINCIPAL_ID]
        assert again["blob-contributor"]["spec"]["forProvider"]["principalId"] == FAKE_APP_PRINCIPAL[ANN_APP_PRINCIPAL_ID]
        assert again["deployment"]["spec"]["template"]["spec"]["containers"][0]["env"][8]["value"] == (
            FAKE_APP_PRINCIPAL[ANN_APP_CLIENT_ID])


def test_zero_ip_firewall_rule_exists_only_in_dev():
    zero = [r for r in rgd_resources()
            if r["template"]["kind"] == "FlexibleServersFirewallRule" and r["template"]["spec"]["startIpAddress"] == "0.0.0.0"]
    assert len(zero) == 1
    # One rule in dev, none elsewhere: kro expands the collection over what CEL returns.
    for environment, count in (("dev", 1), ("prod", 0), ("staging", 0)):
        instance = kro_sample_instance(environment)
        assert instance["spec"]["platform"]["environment"] == environment
        ((_, source),) = zero[0]["forEach"][0].items()
        assert len(cel.evaluate(cel.KRO, kro.expressions(source)[0], {"schema": instance})) == count, environment
    (allowed,) = [r for r in kro_template("FlexibleServersFirewallRule") if r["id"] != zero[0]["id"]]
    assert allowed["forEach"] == [{"ipRange": "${schema.spec.database.allowedIpRanges}"}]
    for r in rgd_resources():
        if r["id"] != zero[0]["id"]:
            assert "0.0.0.0" not in yaml.safe_dump(r), r["id"]
    pt_resources = step_input("function-patch-and-transform")["resources"]
    zero_xp = [r["name"] for r in pt_resources if "0.0.0.0" in yaml.safe_dump(r)]
    assert zero_xp == ["postgres-firewall-azure-services"]
    # the environment reaching the gate is the cluster label, per environment
    for env in ("dev", "prod"):
        (webapp,) = [d for d in rendered(app_named("-webapp-crossplane", env)) if d["kind"] == "WebApp"]
        assert webapp["spec"]["platform"]["environment"] == env


# --- the README the lead links -------------------------------------------------------------------

def test_readme_explains_the_flow_and_lists_the_kinds_for_rbac():
    text = (GITOPS / "README.md").read_text()
    assert "```mermaid" in text
    assert "fork" in text.lower()
    for res in rgd_resources():
        tpl = res["template"]
        assert f"`{tpl['apiVersion']}` `{tpl['kind']}`" in text or f"| `{tpl['kind']}` |" in text, tpl["kind"]
    for group in {split_api_version(r["template"]["apiVersion"])[0] for r in rgd_resources()} - {""}:
        assert f"`{group}`" in text, group
