"""Every chart and package version the platform installs: the one place to bump them.

When a chart version changes here, ../shared/upstream must hold that version's values
and CRDs (the conformance tests read them); SOURCES.md there records what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ChartPin:
    chart: str
    version: str
    # None for OCI charts, whose `chart` is the full oci:// reference.
    repository: Optional[str]
    # Fixed Helm release name: resource names and service accounts derive from it.
    release_name: str
    namespace: str


CERT_MANAGER = ChartPin(
    chart="cert-manager",
    version="v1.21.1",
    repository="https://charts.jetstack.io",
    release_name="cert-manager",
    namespace="cert-manager",
)

ASO = ChartPin(
    chart="azure-service-operator",
    version="2.20.0",
    repository="https://raw.githubusercontent.com/Azure/azure-service-operator/main/v2/charts",
    release_name="aso",
    # ASO's webhooks and docs assume this namespace.
    namespace="azureserviceoperator-system",
)

KRO = ChartPin(
    chart="oci://registry.k8s.io/kro/charts/kro",
    version="0.9.3",
    repository=None,
    release_name="kro",
    namespace="kro-system",
)

CROSSPLANE = ChartPin(
    chart="crossplane",
    version="2.3.4",
    repository="https://charts.crossplane.io/stable",
    release_name="crossplane",
    namespace="crossplane-system",
)

ARGO_CD = ChartPin(
    chart="argo-cd",
    version="10.1.1",
    repository="https://argoproj.github.io/argo-helm",
    release_name="argocd",
    namespace="argocd",
)

CHARTS = {
    "cert_manager": CERT_MANAGER,
    "aso": ASO,
    "kro": KRO,
    "crossplane": CROSSPLANE,
    "argocd": ARGO_CD,
}
