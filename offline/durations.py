"""Typical create durations per resource type, for the modelled deployment critical path.

These are ESTIMATES, not measurements of this platform: seconds for a first create in a
quiet region, chosen as round figures inside the ranges that are publicly reported or that
the resource's own behaviour implies. How each was chosen:

* AKS ManagedCluster, 540 s (9 min): Microsoft's own quick starts say cluster creation
  "takes a few minutes"; AKS claimed 5–6 minutes of provisioning in 2019, while an
  independent benchmark then measured 12–18 min on average (kubedex.com, "Is Azure
  Kubernetes (AKS) any less terrible?"). Today's runs of a 1–3 node cluster are commonly
  6–10 min; 9 min sits in the upper middle because the cluster also creates its node
  resource group, load balancer and the system pool's scale set.
* AgentPool, 300 s: a separate VM scale set — VM provisioning plus node bootstrap and
  Ready, reported as several minutes (Azure/AKS issues on node pools and autoscaling cite
  3–8 min for new nodes).
* Helm releases: ``atomic`` installs wait until every Deployment/Job of the chart is ready,
  which on a new cluster is dominated by image pulls and CRD establishment. Per chart:
  cert-manager 90 s (3 deployments + the startupapicheck job, which waits for the webhook),
  azure-service-operator 150 s (the operator installs the CRDs of its crdPattern when it
  starts, then becomes ready), kro 45 s (one controller), crossplane 75 s (core + RBAC
  manager), argo-cd 120 s (six components including repo-server and redis). Any other
  chart: 90 s.
* A Kubernetes object with ``pulumi.com/waitFor`` (the Crossplane Provider packages): 120 s,
  the package pull, its CRDs and the provider pod becoming Healthy. Without waitFor a
  custom resource is one API call: 2 s, like any other object not listed.
* ARM resources that are metadata only — resource group, user-assigned identity,
  federated credential, role assignment, maintenance configuration — 5–15 s: one PUT and
  its asynchronous completion. (Role assignments take longer to *propagate*, which the
  engine does not wait for.)
* The wait for the admin groups' Azure RBAC grant (components/cluster_access.py, the one
  dynamic resource), 300 s: AKS documents "up to five minutes" for a new role assignment to
  reach its authorizer; the wait polls every 10 s and stops at 10 minutes.
* Kubernetes objects applied directly (namespaces, service accounts, secrets, RBAC,
  config maps): 1–2 s. Providers: 2 s (the kubeconfig invoke that precedes the first use).

Every figure can be overridden: ``duration_of(reg, overrides={"<type>": seconds})``; the
bench records the table it used in build/bench.json.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from offline.evaluate import Secret

DEFAULT_SECONDS = 5.0
AZURE_DEFAULT_SECONDS = 30.0
KUBERNETES_DEFAULT_SECONDS = 2.0

BY_TYPE: dict[str, float] = {
    "azure-native:containerservice:ManagedCluster": 540.0,
    "azure-native:containerservice:AgentPool": 300.0,
    "azure-native:containerservice:MaintenanceConfiguration": 10.0,
    "azure-native:resources:ResourceGroup": 5.0,
    "azure-native:managedidentity:UserAssignedIdentity": 10.0,
    "azure-native:managedidentity:FederatedIdentityCredential": 10.0,
    "azure-native:authorization:RoleAssignment": 15.0,
    # components/cluster_access.py: the wait for the admin groups' grant to take effect.
    "pulumi-python:dynamic:Resource": 300.0,
    "pulumi:providers:kubernetes": 2.0,
    "pulumi:providers:azure-native": 0.0,
    "kubernetes:core/v1:Namespace": 2.0,
    "kubernetes:core/v1:ServiceAccount": 1.0,
    "kubernetes:core/v1:Secret": 1.0,
    "kubernetes:core/v1:ConfigMap": 1.0,
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole": 1.0,
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": 1.0,
    "kubernetes:rbac.authorization.k8s.io/v1:Role": 1.0,
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 1.0,
}

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# By the chart's name (the last path segment of `chart`, so OCI references match too).
HELM_BY_CHART: dict[str, float] = {
    "cert-manager": 90.0,
    "azure-service-operator": 150.0,
    "kro": 45.0,
    "crossplane": 75.0,
    "argo-cd": 120.0,
}
HELM_DEFAULT_SECONDS = 90.0
CUSTOM_RESOURCE_WAIT_FOR_SECONDS = 120.0
WAIT_FOR_ANNOTATION = "pulumi.com/waitFor"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Secret) else value


def chart_name(chart: Any) -> str:
    text = str(_plain(chart) or "")
    return text.rstrip("/").rsplit("/", 1)[-1]


def duration_of(type_: str, inputs: Mapping[str, Any], overrides: Optional[Mapping[str, float]] = None) -> tuple[float, str]:
    """(seconds, why) for one resource: its type's figure, a chart's, or a default."""
    overrides = overrides or {}
    if type_ in overrides:
        return float(overrides[type_]), "override"
    if type_ == HELM_RELEASE:
        chart = chart_name(inputs.get("chart"))
        if chart in HELM_BY_CHART:
            return HELM_BY_CHART[chart], f"helm chart {chart}"
        return HELM_DEFAULT_SECONDS, f"helm chart {chart or '?'} (default)"
    if type_ in BY_TYPE:
        return BY_TYPE[type_], "type"
    if type_.startswith("kubernetes:"):
        meta = _plain(inputs.get("metadata")) or {}
        annotations = _plain(meta.get("annotations")) if isinstance(meta, Mapping) else None
        if isinstance(annotations, Mapping) and WAIT_FOR_ANNOTATION in annotations:
            return CUSTOM_RESOURCE_WAIT_FOR_SECONDS, "kubernetes object with waitFor"
        return KUBERNETES_DEFAULT_SECONDS, "kubernetes object"
    if type_.startswith("azure-native:"):
        return AZURE_DEFAULT_SECONDS, "azure-native default"
    return DEFAULT_SECONDS, "default"


def table() -> dict[str, Any]:
    """The figures in use, for build/bench.json."""
    return {
        "byType": dict(sorted(BY_TYPE.items())),
        "helmReleaseByChart": dict(sorted(HELM_BY_CHART.items())),
        "helmReleaseDefault": HELM_DEFAULT_SECONDS,
        "customResourceWithWaitFor": CUSTOM_RESOURCE_WAIT_FOR_SECONDS,
        "kubernetesDefault": KUBERNETES_DEFAULT_SECONDS,
        "azureNativeDefault": AZURE_DEFAULT_SECONDS,
        "otherDefault": DEFAULT_SECONDS,
        "basis": "estimates (see offline/durations.py for how each was chosen), not measurements",
    }
