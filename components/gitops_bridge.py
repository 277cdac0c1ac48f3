"""The contract between the Pulumi side and the GitOps layer (GitOps Bridge style).

Pulumi writes the platform's facts onto Argo CD's in-cluster cluster Secret as labels and
annotations; ApplicationSets in ``gitops/`` read them with the cluster generator
(``{{metadata.annotations.<key>}}`` / ``{{metadata.labels.<key>}}``), so Git never
hard-codes a subscription, tenant or client ID. Both sides import or test against these
names, so a rename here breaks the tests of whichever side is left behind.
"""

from __future__ import annotations

import json
from typing import Optional

# Name of the cluster Secret in the argocd namespace, and the server it describes.
CLUSTER_SECRET_NAME = "in-cluster"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"

# Labels (selectors for ApplicationSets): "true"/"false" per add-on, plus identity of the env.
ADDON_LABELS = {
    "cert_manager": "enable_cert_manager",
    "aso": "enable_aso",
    "kro": "enable_kro",
    "crossplane": "enable_crossplane",
    "argocd": "enable_argocd",
}
LABEL_ENVIRONMENT = "environment"
LABEL_CLUSTER_NAME = "cluster_name"
CLUSTER_LABELS = frozenset({*ADDON_LABELS.values(), LABEL_ENVIRONMENT, LABEL_CLUSTER_NAME})

# Annotations (values that are not valid label values: URLs, GUID lists, paths).
ANN_TENANT_ID = "azure_tenant_id"
ANN_SUBSCRIPTION_ID = "azure_subscription_id"
ANN_LOCATION = "azure_location"
ANN_OIDC_ISSUER_URL = "oidc_issuer_url"
ANN_ASO_CLIENT_ID = "aso_client_id"
ANN_CROSSPLANE_CLIENT_ID = "crossplane_client_id"
ANN_APP_RESOURCE_GROUP = "app_resource_group"  # the first app resource group: the reference app's
ANN_APP_RESOURCE_GROUPS = "app_resource_groups"  # every app resource group, comma-separated
ANN_APP_IMAGE = "app_image"  # the reference app's container image
ANN_CROSSPLANE_PROVIDER_CONFIG = "crossplane_provider_config"  # ClusterProviderConfig name
# The reference app's own service principal (a cluster without workload identity): its IDs;
# its secret is never an annotation but the Secret APP_CREDENTIALS_SECRET below.
ANN_APP_CLIENT_ID = "app_client_id"
ANN_APP_PRINCIPAL_ID = "app_principal_id"
# How the reference app reaches Azure on this cluster, as the WebApp API's
# spec.platform.identity takes it: a JSON object (app_identity() below) the app
# ApplicationSets insert as is, so one template serves every mode with plain lookups.
ANN_APP_IDENTITY = "app_identity"
ANN_REPO_URL = "gitops_repo_url"
ANN_REVISION = "gitops_revision"
ANN_PATH = "gitops_path"
CLUSTER_ANNOTATIONS = frozenset(
    {
        ANN_TENANT_ID,
        ANN_SUBSCRIPTION_ID,
        ANN_LOCATION,
        ANN_OIDC_ISSUER_URL,
        ANN_ASO_CLIENT_ID,
        ANN_CROSSPLANE_CLIENT_ID,
        ANN_APP_RESOURCE_GROUP,
        ANN_APP_RESOURCE_GROUPS,
        ANN_APP_IMAGE,
        ANN_CROSSPLANE_PROVIDER_CONFIG,
        ANN_APP_CLIENT_ID,
        ANN_APP_PRINCIPAL_ID,
        ANN_APP_IDENTITY,
        ANN_REPO_URL,
        ANN_REVISION,
        ANN_PATH,
    }
)

# Argo CD objects the Pulumi side creates.
PLATFORM_PROJECT = "platform"  # AppProject of the root Application and the platform layer
ROOT_APPLICATION = "platform-root"
# Crossplane: the cluster-wide provider config (azure.m.upbound.io ClusterProviderConfig).
CROSSPLANE_PROVIDER_CONFIG = "default"

# The reference app, once per variant: the namespace each app ApplicationSet deploys to, by
# the add-on that serves it (gitops/webapp-applicationsets.yaml; a test holds them equal).
APP_NAMESPACES = {"kro": "webapp-aso", "crossplane": "webapp-crossplane"}
# With the app's own service principal: the Secret Pulumi creates in each app namespace and
# the key the app's Deployment reads (as AZURE_CLIENT_SECRET). Never in Git.
APP_CREDENTIALS_SECRET = "webapp-azure-credentials"
APP_CREDENTIALS_KEY = "clientSecret"


# The reference app's identity modes (spec.platform.identity.mode of both WebApp graphs):
# its own federated managed identity, a given service principal, or none (the app's Azure
# resources are created, its Deployment is not).
APP_IDENTITY_WORKLOAD_IDENTITY = "WorkloadIdentity"
APP_IDENTITY_SERVICE_PRINCIPAL = "ServicePrincipal"
APP_IDENTITY_NONE = "None"


def app_identity(
    oidc_issuer_url: Optional[str] = None, client_id: Optional[str] = None, principal_id: Optional[str] = None
) -> str:
    """The ANN_APP_IDENTITY value: workload identity when the cluster has an issuer, else the
    app's service principal when both its IDs are given, else none. Only the fields of the
    chosen mode are present (the graphs read the others only in their own mode)."""
    if oidc_issuer_url:
        value = {"mode": APP_IDENTITY_WORKLOAD_IDENTITY, "oidcIssuerUrl": oidc_issuer_url}
    elif client_id and principal_id:
        value = {"mode": APP_IDENTITY_SERVICE_PRINCIPAL, "clientId": client_id, "principalId": principal_id}
    else:
        value = {"mode": APP_IDENTITY_NONE}
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
