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

# Crossplane provider packages (crossplane-contrib/provider-upjet-azure), one release for all:
# a service package and the family it depends on must come from the same release and the
# same registry. xpkg.crossplane.io/crossplane-contrib is the community build, pullable
# without an account; Upbound's xpkg.upbound.io/upbound/* gives non-subscribers only main
# releases of the last 12 months (docs.upbound.io/providers/policies; upbound/docs#1000), so
# an exact pin there stops pulling as it ages. Mixing registries would install two family
# providers (a service package's dependency names the family in its own registry).
CROSSPLANE_PROVIDER_REGISTRY = "xpkg.crossplane.io/crossplane-contrib"
CROSSPLANE_PROVIDER_VERSION = "v2.7.0"
# Name -> exact package reference. The family comes first: it serves the ProviderConfig kinds
# and is what every service package depends on.
CROSSPLANE_PROVIDERS = {
    name: f"{CROSSPLANE_PROVIDER_REGISTRY}/{name}:{CROSSPLANE_PROVIDER_VERSION}"
    for name in (
        "provider-family-azure",
        "provider-azure-storage",
        "provider-azure-dbforpostgresql",
        "provider-azure-managedidentity",
        "provider-azure-authorization",
    )
}

# Composition functions: installed from Git (gitops/platform/crossplane/functions.yaml),
# pinned here too so this file stays the one place to read and bump versions; a test
# fails when the two disagree.
CROSSPLANE_FUNCTIONS = {
    "function-patch-and-transform": f"{CROSSPLANE_PROVIDER_REGISTRY}/function-patch-and-transform:v0.10.8",
    "function-cel-filter": f"{CROSSPLANE_PROVIDER_REGISTRY}/function-cel-filter:v0.2.0",
}

CHARTS = {
    "cert_manager": CERT_MANAGER,
    "aso": ASO,
    "kro": KRO,
    "crossplane": CROSSPLANE,
    "argocd": ARGO_CD,
}
