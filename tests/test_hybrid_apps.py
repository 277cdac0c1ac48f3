"""The reference app on every shipped hybrid stack: what Argo CD generates from the cluster
Secret the program really writes, and what the two WebApp graphs then do with it.

For each hybrid stack file (Pulumi.hybrid.yaml with the app's service principal, the same
without it, its workload-identity variant, Pulumi.kind.yaml) and the AKS dev stack: the
program runs offline, its cluster Secret feeds the ApplicationSets (Argo CD's cluster
generator with missingkey=error, tests/gitops_support/argocd.py), both app ApplicationSets
are selected and every key their templates read resolves; the WebApp each renders validates
against both graphs' instance schemas and names the identity mode the stack implies; and
the graphs, run on that instance (kro: KroRun in test_gitops; Crossplane: P&T and
cel-filter), create the Deployment exactly when the app has an identity.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from components.gitops_bridge import (
    ANN_APP_CLIENT_ID,
    ANN_APP_IDENTITY,
    ANN_APP_PRINCIPAL_ID,
    ANN_OIDC_ISSUER_URL,
    ANN_PATH,
    APP_IDENTITY_NONE,
    APP_IDENTITY_SERVICE_PRINCIPAL,
    APP_IDENTITY_WORKLOAD_IDENTITY,
    CLUSTER_SECRET_NAME,
)
from offline.evaluate import stack_config
from tests.conftest import ROOT, run_program
from tests.gitops_support import argocd, kro
from tests.gitops_support.crds import errors, make_validator, object_jsonschema
from tests.test_gitops import KroRun, kro_instance_schema, xp_desired, xrd_schema
from tests.test_hybrid import workload_identity_config

APP_SECRET_KEY = "aks-platform:appServicePrincipalClientSecret"
APPSETS = ROOT / "gitops" / "webapp-applicationsets.yaml"


def without_app_principal(config: dict[str, Any], secret: list[str]) -> tuple[dict[str, Any], list[str]]:
    hybrid = dict(config["aks-platform:hybrid"])
    hybrid.pop("appServicePrincipalClientId")
    hybrid.pop("appServicePrincipalObjectId")
    config["aks-platform:hybrid"] = hybrid
    del config[APP_SECRET_KEY]
    return config, [k for k in secret if k != APP_SECRET_KEY]


# stack file, how the tests change it, the identity mode the app must get
VARIANTS = {
    "hybrid": ("hybrid", None, APP_IDENTITY_SERVICE_PRINCIPAL),
    "hybrid-without-app-principal": ("hybrid", without_app_principal, APP_IDENTITY_NONE),
    "hybrid-workload-identity": ("hybrid", workload_identity_config, APP_IDENTITY_WORKLOAD_IDENTITY),
    "kind": ("kind", None, APP_IDENTITY_WORKLOAD_IDENTITY),
    "dev": ("dev", None, APP_IDENTITY_WORKLOAD_IDENTITY),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """(name, config, the cluster Secret as Argo CD reads it, expected identity mode)."""
    stack, change, mode = VARIANTS[request.param]
    config, secret = stack_config(stack)
    config, secret = copy.deepcopy(config), list(secret)
    if change:
        config, secret = change(config, secret)
    ev = run_program(config, secret, stack=stack)
    (cluster,) = [s for s in ev.by_type("kubernetes:core/v1:Secret") if s.get("metadata.name") == CLUSTER_SECRET_NAME]
    secret_doc = {"metadata": cluster.plain("metadata"), "stringData": cluster.plain("stringData")}
    return request.param, config, secret_doc, mode


def generated(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {app["metadata"]["name"]: app for appset in argocd.load_docs(APPSETS) for app in argocd.generate(appset, cluster)}


def webapp_of(app: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    """The WebApp Argo CD applies for a generated Application (kustomize + its JSON patch)."""
    source = app["spec"]["source"]
    prefix = cluster["metadata"]["annotations"][ANN_PATH] + "/"
    assert source["path"].startswith(prefix), source["path"]
    directory = ROOT / "gitops" / source["path"][len(prefix):]
    (webapp,) = [d for d in argocd.kustomize_build(Path(directory), source["kustomize"]["patches"]) if d["kind"] == "WebApp"]
    return webapp


def test_both_app_applicationsets_generate_and_resolve_every_key(variant):
    name, config, cluster, mode = variant
    apps = generated(cluster)  # missingkey=error: a key that does not resolve raises
    assert set(apps) == {f"{CLUSTER_SECRET_NAME}-webapp-aso", f"{CLUSTER_SECRET_NAME}-webapp-crossplane"}, name
    annotations = cluster["metadata"]["annotations"]
    identity = json.loads(annotations[ANN_APP_IDENTITY])
    assert identity["mode"] == mode, name
    # The one identity value agrees with the annotations it is derived from.
    if mode == APP_IDENTITY_WORKLOAD_IDENTITY:
        assert identity == {"mode": mode, "oidcIssuerUrl": annotations[ANN_OIDC_ISSUER_URL]}
    elif mode == APP_IDENTITY_SERVICE_PRINCIPAL:
        hybrid = config["aks-platform:hybrid"]
        assert identity == {"mode": mode, "clientId": hybrid["appServicePrincipalClientId"],
                            "principalId": hybrid["appServicePrincipalObjectId"]}
        assert (annotations[ANN_APP_CLIENT_ID], annotations[ANN_APP_PRINCIPAL_ID]) == (
            identity["clientId"], identity["principalId"])
    else:
        assert identity == {"mode": mode}
        assert not {ANN_OIDC_ISSUER_URL, ANN_APP_CLIENT_ID, ANN_APP_PRINCIPAL_ID} & set(annotations)


def test_the_instances_validate_and_the_graphs_follow_the_mode(variant):
    name, _, cluster, mode = variant
    apps = generated(cluster)
    kro_webapp = webapp_of(apps[f"{CLUSTER_SECRET_NAME}-webapp-aso"], cluster)
    xp_webapp = webapp_of(apps[f"{CLUSTER_SECRET_NAME}-webapp-crossplane"], cluster)
    for webapp, schema in ((kro_webapp, kro_instance_schema()), (xp_webapp, xrd_schema())):
        problems = errors(make_validator(object_jsonschema(schema)), webapp)
        assert not problems, (name, problems)
        assert webapp["spec"]["platform"]["identity"]["mode"] == mode
    # kro, on the instance as the API server stores it (defaults applied).
    spec = kro.apply_defaults(kro_instance_schema()["properties"]["spec"], kro_webapp["spec"])
    meta = {**kro_webapp["metadata"], "uid": "uid", "labels": {}, "annotations": {}, "generation": 1}
    run = KroRun(instance={**kro_webapp, "metadata": meta, "spec": spec})
    has_identity = mode != APP_IDENTITY_NONE
    assert bool(run.render("deployment")) is has_identity, name
    assert len(run.render("identity")) == len(run.render("federatedCredential")) == int(mode == APP_IDENTITY_WORKLOAD_IDENTITY)
    assert run.render("server") and run.render("storage"), "the app's Azure resources exist in every mode"
    # Crossplane, with the status its composed resources report in that mode.
    xr = copy.deepcopy(xp_webapp)
    xr["spec"] = kro.apply_defaults(xrd_schema()["properties"]["spec"], xr["spec"])  # the API server's defaults
    xr["status"] = {"postgresHost": "pg", "storageAccountUrl": "https://st/", "storageAccountId": "/st"}
    if mode == APP_IDENTITY_WORKLOAD_IDENTITY:
        xr["status"].update(identityClientId="c", identityPrincipalId="p", identityName="id-x")
    desired = xp_desired(xr=xr)
    assert ("deployment" in desired) is has_identity, name
    assert ("identity" in desired) is (mode == APP_IDENTITY_WORKLOAD_IDENTITY), name
    assert {"postgres-server", "storage-account"} <= set(desired)
