"""Crossplane: the core from its Helm chart, the Azure provider packages, and their credentials.

Ordering, and why preview passes on a fresh cluster and on an existing one:

None of the kinds created here comes with the chart: the Crossplane 2.3.4 chart has no
crds/ directory. The core's own CRDs (pkg.crossplane.io Provider, DeploymentRuntimeConfig,
Function, the apiextensions kinds) are installed by the Crossplane pod itself, whose init
container runs ``crossplane core init`` from the image. The Helm release is atomic and
waits for the crossplane Deployment to be available, which happens only after that init
container has installed them, so the Provider and DeploymentRuntimeConfig objects, which
depend on the release, find their kinds. The ClusterProviderConfig kind comes later
still: the family provider package installs it asynchronously, minutes after its Provider
object is accepted, while pulumi-kubernetes retries a create whose kind is missing for only
about 30 seconds. So every Provider carries ``pulumi.com/waitFor`` on its Installed and
Healthy conditions (pulumi-kubernetes 4.18+), with explicit create/update timeouts, and the
ClusterProviderConfig depends on the Providers.

* First ``pulumi up`` of a new cluster: the kubeconfig is unknown during preview, so the
  Kubernetes provider is not configured and every object here previews as a create
  without the cluster being asked. During the update the release installs Crossplane (and,
  through its init container, the core CRDs); the family Provider is created and awaited
  until Healthy, then the service Providers, and only then the ClusterProviderConfig, whose
  CRD exists by that time.
* Crossplane switched on later, on a running cluster: the preview reaches the cluster, and
  none of the three kinds is served yet: not the ClusterProviderConfig, and not the
  Provider and DeploymentRuntimeConfig either, since no Crossplane pod has run
  ``core init``. The provider treats a kind the cluster does not serve as "not known yet"
  (no server-side dry run) rather than an error, so the preview shows creates for all of
  them, unvalidated by the API server: a mistake in those objects shows only in the update.
  The update then runs in the same order as above. (The Kubernetes provider must not set
  ``rejectUnknownResources``, which would turn that case into a preview error.)

Deleting: Pulumi removes the ClusterProviderConfig first, then the Providers, then the
release. Crossplane holds the ClusterProviderConfig (an ``in-use`` finalizer) while managed
resources still use it, so switching Crossplane off waits until the GitOps layer has
removed its managed resources, up to ``teardown_timeout`` (by default the root
Application's bound, 60 minutes, not pulumi-kubernetes' 10-minute default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.argocd import ROOT_APPLICATION_DELETE_TIMEOUT, is_timeout
from components.gitops_bridge import CROSSPLANE_PROVIDER_CONFIG
from components.helm import caller_depends_on, install_chart
from components.identity import ServiceAccountRef
from components.versions import CROSSPLANE, CROSSPLANE_PROVIDERS

FAMILY_PROVIDER = "provider-family-azure"

# The one Kubernetes service account every Azure provider pod runs as, and that the
# Crossplane identity is federated to. Pulumi creates it and each DeploymentRuntimeConfig
# names it in the pod template (`serviceAccountName`), so Crossplane uses it without owning
# it (crossplane/crossplane#4925, v1.14+). Naming a shared account through
# `serviceAccountTemplate` instead makes every provider revision claim its ownerReferences
# in turn, a reconcile loop that never settles (crossplane/crossplane#7769, #5458).
SERVICE_ACCOUNT = ServiceAccountRef(CROSSPLANE.namespace, "provider-azure")

# Crossplane's name for the provider's container in the runtime Deployment it builds.
RUNTIME_CONTAINER = "package-runtime"

WORKLOAD_IDENTITY_USE_LABEL = "azure.workload.identity/use"
WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"

# Service principal mode only (clusters without a public OIDC issuer): the Secret holding
# the provider's credentials JSON, and its key.
CREDENTIALS_SECRET = "azure-service-principal"
CREDENTIALS_KEY = "credentials"

# Installed: the package's CRDs exist; Healthy: its controller Deployment is available.
PROVIDER_WAIT_FOR = '["condition=Installed","condition=Healthy"]'
# Upbound quotes up to 5 minutes for a provider to become Healthy; pulling the package and
# its image onto a new node takes longer on a cold cluster.
PROVIDER_TIMEOUT = "15m"
# How long deleting the ClusterProviderConfig waits. Crossplane holds it (`in-use`
# finalizer) until no managed resource uses it, i.e. until the GitOps layer's Crossplane
# resources are deleted in Azure (a PostgreSQL flexible server alone takes minutes), the
# same cascade the root Application's delete waits for; without a bound of its own,
# pulumi-kubernetes gives up after its 10-minute default (provider/pkg/await/await.go
# Deletion) and switching Crossplane off fails half-way.
PROVIDER_CONFIG_DELETE_TIMEOUT = ROOT_APPLICATION_DELETE_TIMEOUT

# The managed-resource API groups of the v2 (namespaced) kinds each installed package serves.
MANAGED_GROUP_SUFFIX = "azure.m.upbound.io"


def managed_resource_groups() -> list[str]:
    """`azure.m.upbound.io` for the family, `<service>.azure.m.upbound.io` for each service."""
    groups = []
    for name in CROSSPLANE_PROVIDERS:
        if name == FAMILY_PROVIDER:
            groups.append(MANAGED_GROUP_SUFFIX)
        else:
            groups.append(f"{name.removeprefix('provider-azure-')}.{MANAGED_GROUP_SUFFIX}")
    return groups


def crossplane_values() -> dict[str, Any]:
    return {
        "provider": {
            # The chart's default activation policy activates every managed resource
            # definition ("*"), legacy cluster-scoped `*.azure.upbound.io` kinds included.
            # The GitOps layer uses only the namespaced v2 kinds, so only those get CRDs
            # (the packages declare SafeStart, which makes activation apply to them).
            "defaultActivations": [f"*.{group}" for group in managed_resource_groups()],
        },
    }


# No storage data-plane role for the providers' identity: Contributor on the app resource
# groups covers every storage call azurerm makes for the Composition's kinds, data-plane
# ones included. (An earlier version granted Storage Queue Data Reader and Storage Blob Data
# Contributor here, on the premise that Contributor grants no data-plane access; for these
# calls that premise was wrong.)
# * provider-upjet-azure v2.7.0 wraps azurerm 4.80. With `storageUseAzureAD` the data-plane
#   calls carry the identity's Entra token. azurerm's storage account read
#   (resourceStorageAccountRead) calls Get Queue Service Properties (`queue_properties`) and
#   Get Blob Service Properties (`static_website`) on the data plane. upjet's Container
#   external name makes the ID the container's data-plane URL (config/externalname.go
#   storageContainer), so azurerm reads it by Resource Manager once `storageAccountId` is set
#   and deletes it with Delete Container on the data plane (storage_container_resource.go).
# * Microsoft's "Authorize with Microsoft Entra ID (REST API)", "Permissions for calling data
#   operations" (learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory)
#   authorizes these by control-plane Actions: Get Queue Service Properties by
#   `Microsoft.Storage/storageAccounts/queueServices/read`, Get Blob Service Properties by
#   `.../blobServices/read`, Get Container Properties by `.../blobServices/containers/read`,
#   Delete Container by `.../blobServices/containers/delete`. Contributor's Actions are `*`.
#   Storage Queue Data Reader does not even hold `queueServices/read`; Storage Blob Data
#   Contributor lists `containers/*` under Actions, the same ones.
# * Seen in practice: microsoft/PubSec-Info-Assistant#922 (Contributor on the resource group
#   fixes azurerm's "retrieving queue properties" 403), Azure/azure-sdk-for-net#15279 (an
#   owner with no data role gets the queue service's properties), and
#   hashicorp/terraform-provider-azurerm#25521 (maintainers point to the same table).
# Only the blobs' *contents* need a DataAction, and the providers never touch them: the
# app's own identity gets Storage Blob Data Contributor on its account, by the Composition.


@dataclass
class CrossplaneArgs:
    """The identity the providers act as (its client ID) and where."""

    client_id: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    # Only for clusters without a public OIDC issuer (hybrid): authenticate as the service
    # principal `client_id` with this secret instead of workload identity.
    client_secret: Optional[pulumi.Input[str]] = None
    # With workload identity: True where the cluster runs the Azure Workload Identity webhook
    # (AKS), which projects the token into pods labelled for it. False elsewhere (a hybrid
    # cluster with a public issuer): the runtime configs then project the token themselves.
    identity_webhook: bool = True
    # customTimeouts.delete of the ClusterProviderConfig: how long switching Crossplane off
    # waits for the managed resources still using it to be deleted.
    teardown_timeout: str = PROVIDER_CONFIG_DELETE_TIMEOUT

    def __post_init__(self) -> None:
        if not is_timeout(self.teardown_timeout):
            raise ValueError(f"teardown_timeout {self.teardown_timeout!r}: allowed: a duration such as '60m' or '1h30m'")

    @property
    def workload_identity(self) -> bool:
        return self.client_secret is None


class Crossplane(pulumi.ComponentResource):
    """Crossplane, the provider-upjet-azure packages, and the ClusterProviderConfig they use.

    Credentials: workload identity (the providers' pods run as SERVICE_ACCOUNT, federated to
    `client_id`), or, given `client_secret`, a service principal whose JSON credentials sit
    in a Secret in crossplane-system (nothing of it in outputs).

    Every provider gets a DeploymentRuntimeConfig of its own (reusing one across providers
    keeps their revisions reconciling endlessly, crossplane/crossplane#5961); all of them
    run as SERVICE_ACCOUNT. The family provider is declared explicitly, pinned like the
    rest, and created before the service providers: the package manager then finds their
    dependency already installed at the pinned version instead of installing the family
    itself (at a version it picks, without our runtime config, so without Azure
    credentials). Dependency resolution stays on, so a version mismatch between family and
    services is reported by Crossplane rather than run.

    Only the cluster-scoped ClusterProviderConfig of the namespaced `azure.m.upbound.io`
    API is created: namespaced managed resources reference
    `{kind: ClusterProviderConfig, name: default}` by default. The legacy
    `azure.upbound.io` ProviderConfig would serve only cluster-scoped managed resources,
    which the GitOps layer does not use and whose definitions are not activated.
    """

    namespace: pulumi.Output[str]
    release: k8s.helm.v3.Release
    service_account: k8s.core.v1.ServiceAccount
    runtime_configs: dict[str, k8s.apiextensions.CustomResource]
    providers: list[k8s.apiextensions.CustomResource]
    provider_config: k8s.apiextensions.CustomResource
    # Service principal mode only: the credentials Secret the ClusterProviderConfig reads.
    credentials_secret: Optional[k8s.core.v1.Secret]

    def __init__(self, name: str, args: CrossplaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:crossplane:Crossplane", name, None, opts)
        # A component's depends_on does not reach its children: the release waits as asked.
        namespace, self.release = install_chart(
            name, CROSSPLANE, values=crossplane_values(), parent=self, depends_on=caller_depends_on(opts)
        )
        self.namespace = namespace.metadata.name

        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-provider-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SERVICE_ACCOUNT.name,
                namespace=self.namespace,
                # Read by the AKS workload identity webhook, which injects AZURE_CLIENT_ID.
                annotations={WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION: args.client_id} if args.workload_identity else None,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.runtime_configs = {}
        self.providers = []
        family: Optional[k8s.apiextensions.CustomResource] = None
        # The family first: every service provider waits for it.
        for package, ref in sorted(CROSSPLANE_PROVIDERS.items(), key=lambda item: item[0] != FAMILY_PROVIDER):
            runtime_config = k8s.apiextensions.CustomResource(
                f"{name}-runtime-{package}",
                api_version="pkg.crossplane.io/v1beta1",
                kind="DeploymentRuntimeConfig",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=package),
                spec=_runtime_config_spec(args.workload_identity, args.identity_webhook),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )
            self.runtime_configs[package] = runtime_config
            after: list[pulumi.Resource] = [self.release, runtime_config, self.service_account]
            if family is not None:
                after.append(family)
            provider = k8s.apiextensions.CustomResource(
                f"{name}-provider-{package}",
                api_version="pkg.crossplane.io/v1",
                kind="Provider",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=package,
                    annotations={"pulumi.com/waitFor": PROVIDER_WAIT_FOR},
                ),
                spec={
                    "package": ref,
                    "runtimeConfigRef": {
                        "apiVersion": "pkg.crossplane.io/v1beta1",
                        "kind": "DeploymentRuntimeConfig",
                        "name": package,
                    },
                },
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=after,
                    custom_timeouts=pulumi.CustomTimeouts(create=PROVIDER_TIMEOUT, update=PROVIDER_TIMEOUT),
                ),
            )
            if package == FAMILY_PROVIDER:
                family = provider
            self.providers.append(provider)

        self.credentials_secret = None
        if args.workload_identity:
            # The webhook mounts the federated token at /var/run/secrets/azure/tokens/
            # azure-identity-token (AZURE_FEDERATED_TOKEN_FILE), the provider's default
            # oidcTokenFilePath; the provider exchanges it for an Entra token of this client ID.
            credentials: dict[str, Any] = {"source": "OIDCTokenFile"}
        else:
            self.credentials_secret = k8s.core.v1.Secret(
                f"{name}-credentials",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=CREDENTIALS_SECRET, namespace=self.namespace),
                # The service principal JSON the provider reads (clientId, clientSecret, ...).
                string_data={
                    CREDENTIALS_KEY: pulumi.Output.secret(
                        pulumi.Output.all(args.client_id, args.client_secret, args.tenant_id, args.subscription_id).apply(
                            lambda v: json.dumps(
                                {"clientId": v[0], "clientSecret": v[1], "tenantId": v[2], "subscriptionId": v[3]},
                                sort_keys=True,
                            )
                        )
                    )
                },
                type="Opaque",
                opts=pulumi.ResourceOptions(parent=self),
            )
            credentials = {
                "source": "Secret",
                "secretRef": {"namespace": CROSSPLANE.namespace, "name": CREDENTIALS_SECRET, "key": CREDENTIALS_KEY},
            }
        self.provider_config = k8s.apiextensions.CustomResource(
            f"{name}-cluster-provider-config",
            api_version="azure.m.upbound.io/v1beta1",
            kind="ClusterProviderConfig",
            # Cluster-scoped: no namespace.
            metadata=k8s.meta.v1.ObjectMetaArgs(name=CROSSPLANE_PROVIDER_CONFIG),
            spec={
                "credentials": credentials,
                "clientID": args.client_id,
                "tenantID": args.tenant_id,
                "subscriptionID": args.subscription_id,
                # The app's storage accounts have shared-key access off: the provider must
                # reach the blob data plane (containers) with Entra tokens.
                "storageUseAzureAD": True,
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.providers, *([self.credentials_secret] if self.credentials_secret else [])],
                custom_timeouts=pulumi.CustomTimeouts(delete=args.teardown_timeout),
            ),
        )

        self.register_outputs(
            {
                "namespace": self.namespace,
                "release": self.release.name,
                "providers": list(CROSSPLANE_PROVIDERS),
                "provider_config": CROSSPLANE_PROVIDER_CONFIG,
            }
        )


# Where the provider reads the federated token by default, and the webhook writes it.
TOKEN_DIR = "/var/run/secrets/azure/tokens"
TOKEN_FILE = "azure-identity-token"
TOKEN_AUDIENCE = "api://AzureADTokenExchange"


def _runtime_config_spec(workload_identity: bool, identity_webhook: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": RUNTIME_CONTAINER}
    template: dict[str, Any] = {
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT.name,
            # Required by the CRD; Crossplane fills in the image and the rest.
            "containers": [container],
        },
    }
    if workload_identity and identity_webhook:
        # The AKS webhook mutates only pods that carry this label.
        template["metadata"] = {"labels": {WORKLOAD_IDENTITY_USE_LABEL: "true"}}
    elif workload_identity:
        # No webhook on this cluster: project the service account token with Entra's
        # audience at the path the provider reads (OIDCTokenFile's default), as the webhook
        # would. The client and tenant IDs come from the ClusterProviderConfig.
        template["spec"]["volumes"] = [
            {
                "name": TOKEN_FILE,
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"audience": TOKEN_AUDIENCE, "expirationSeconds": 3600, "path": TOKEN_FILE}}
                    ]
                },
            }
        ]
        container["volumeMounts"] = [{"name": TOKEN_FILE, "mountPath": TOKEN_DIR, "readOnly": True}]
    return {
        "deploymentTemplate": {
            "spec": {
                # Required by the CRD; Crossplane replaces it with its own labels.
                "selector": {},
                "template": template,
            },
        },
    }
