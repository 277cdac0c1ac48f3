"""What every kind of environment shares: app resource groups, identities, add-ons, tenants.

The native (AKS) and hybrid compositions each produce a :class:`PlatformTarget` (a
Kubernetes provider plus the facts about the cluster) and hand it to `build_platform`.
Add-ons depend on each other only where they must: ASO waits for cert-manager; KRO,
Crossplane, cert-manager and Argo CD install in parallel.

Teardown order (`pulumi destroy` deletes dependents first and waits for each Kubernetes
object to be gone): the root Application depends on everything the GitOps layer runs on
or acts through (every add-on, the controllers' identities with their federated
credentials and role assignments, the app resource groups, the node pools, the OIDC
issuer's documents where the platform publishes them), so the layer
is deleted, through Argo CD's cascade and the operators' finalizers down to Azure, while
all of that still exists. Each controller's release depends on its identity, so the
operators are uninstalled before their credentials and grants go. Tenants' objects depend
on the controllers that act in their namespaces (components.tenant has their own order).
docs/operations.md, "Teardown", says what it means for `make destroy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import resources

from components import aso as aso_module
from components import gitops_bridge as bridge
from components.app_principal import AppPrincipalCredentials, AppPrincipalCredentialsArgs
from components.argocd import ArgoCd, ArgoCdArgs
from components import crossplane as crossplane_module
from components.aso import AsoArgs, AzureServiceOperator
from components.cert_manager import CertManager, CertManagerArgs
from components.crossplane import Crossplane, CrossplaneArgs
from components.identity import PrincipalRoles, PrincipalRolesArgs, WorkloadIdentity, WorkloadIdentityArgs
from components.kro import Kro, KroArgs
from components.roles import app_scope_role_grants
from components.tenant import Tenant, TenantArgs, TenantGuard, TenantRoleGrant
from stacks.config import StackConfig


@dataclass
class ServicePrincipalAuth:
    """Hybrid without a public OIDC issuer: the controllers use a service principal."""

    client_id: str
    client_secret: pulumi.Output[str]
    # When known, the platform grants it the controllers' roles on the app resource groups.
    object_id: Optional[str] = None


@dataclass
class AppPrincipal:
    """The reference app's own service principal (a cluster without workload identity)."""

    client_id: str
    object_id: str
    client_secret: pulumi.Output[str]


@dataclass
class PlatformTarget:
    provider: k8s.Provider
    # None when the cluster has no public OIDC issuer (then `service_principal` is set).
    oidc_issuer_url: Optional[pulumi.Input[str]]
    tenant_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    platform_resource_group: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    service_principal: Optional[ServicePrincipalAuth] = None
    # Whether the cluster runs the Azure Workload Identity webhook (AKS does).
    identity_webhook: bool = True
    # Node pools the GitOps layer's workloads may run on besides the one the add-ons use (AKS
    # user pools): the layer is deleted before them on destroy.
    workload_nodes: Sequence[pulumi.Resource] = ()
    # Without workload identity: the app's own principal, if the stack names one.
    app_principal: Optional[AppPrincipal] = None
    # What serves the OIDC issuer's documents when the platform publishes them itself
    # (`make kind`): every federation and the GitOps layer need them until they are gone.
    issuer_publication: Sequence[pulumi.Resource] = ()


def build_platform(cfg: StackConfig, target: PlatformTarget) -> dict[str, Any]:
    """`keepAppData`: destroy leaves the app resource groups in Azure (retainOnDelete), so
    what the GitOps layer marked detach-on-delete (ASO) or Orphan (Crossplane) survives."""
    addons = cfg.addons
    protect = pulumi.ResourceOptions(protect=cfg.protect)

    def on_cluster(*after: Optional[pulumi.Resource]) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            providers={"kubernetes": target.provider}, depends_on=[a for a in after if a is not None]
        )

    app_groups = {
        name: resources.ResourceGroup(
            f"app-rg-{name}",
            resource_group_name=name,
            location=cfg.location,
            tags=cfg.tag_map,
            opts=pulumi.ResourceOptions.merge(protect, pulumi.ResourceOptions(retain_on_delete=cfg.keep_app_data or None)),
        )
        for name in cfg.app_resource_groups
    }
    # Where ASO and Crossplane may create the app's resources: the app resource groups, or
    # the whole subscription only when the stack says so explicitly.
    scopes: dict[str, pulumi.Input[str]] = {name: group.id for name, group in app_groups.items()}
    if addons.aso.subscription_scope:
        scopes["subscription"] = pulumi.Output.concat("/subscriptions/", target.subscription_id)

    # Both controllers hold the same grants, Crossplane's storage data-plane calls included:
    # Contributor's Actions authorize them (components/crossplane.py says which and why).
    def controller_identity(key: str, service_account) -> Optional[WorkloadIdentity]:
        if target.oidc_issuer_url is None:
            return None
        return WorkloadIdentity(
            f"{key}-identity",
            WorkloadIdentityArgs(
                identity_name=f"id-{cfg.environment}-{key}",
                resource_group_name=target.platform_resource_group,
                location=cfg.location,
                oidc_issuer_url=target.oidc_issuer_url,
                service_accounts=[service_account],
                role_grants=app_scope_role_grants(scopes) if scopes else [],
                tags=cfg.tag_map,
            ),
            opts=protect,
        )

    def client_id_of(identity: Optional[WorkloadIdentity]) -> pulumi.Input[str]:
        return identity.client_id if identity else target.service_principal.client_id  # type: ignore[union-attr]

    outputs: dict[str, Any] = {"appResourceGroups": [g.name for g in app_groups.values()]}
    installed: dict[str, pulumi.Resource] = {}
    # What the GitOps layer needs to exist until it is gone (see the module docstring).
    gitops_dependencies: list[pulumi.Resource] = [
        *app_groups.values(), *target.workload_nodes, *target.issuer_publication
    ]

    sp = target.service_principal
    sp_roles: Optional[PrincipalRoles] = None
    if sp is not None and sp.object_id and scopes and (addons.aso.enabled or addons.crossplane.enabled):
        # One principal serves both controllers here, so it gets their grants once.
        sp_roles = PrincipalRoles(
            "service-principal-roles",
            PrincipalRolesArgs(principal_id=sp.object_id, role_grants=app_scope_role_grants(scopes)),
            opts=protect,
        )

    cert_manager = None
    if addons.cert_manager.enabled:
        cert_manager = CertManager("cert-manager", CertManagerArgs(), opts=on_cluster())
        installed["cert_manager"] = cert_manager

    if addons.aso.enabled:
        identity = controller_identity("aso", aso_module.SERVICE_ACCOUNT)
        gitops_dependencies.extend(r for r in (identity, sp_roles) if r is not None)
        installed["aso"] = AzureServiceOperator(
            "aso",
            AsoArgs(
                client_id=client_id_of(identity),
                tenant_id=target.tenant_id,
                subscription_id=target.subscription_id,
                crd_pattern=addons.aso.crd_pattern,
                client_secret=target.service_principal.client_secret if target.service_principal else None,
            ),
            # ASO's webhooks are served with cert-manager certificates. Its credentials and
            # grants exist before it starts and outlive it.
            opts=on_cluster(cert_manager, identity, sp_roles),
        )
        outputs["asoClientId"] = client_id_of(identity)

    if addons.kro.enabled:
        installed["kro"] = Kro(
            "kro",
            # The ASO groups this platform serves, and only the reference app's instance kind.
            KroArgs(
                managed_api_groups=addons.aso.api_groups,
                instance_resources=("webapps",),
            ),
            opts=on_cluster(),
        )

    if addons.crossplane.enabled:
        identity = controller_identity("crossplane", crossplane_module.SERVICE_ACCOUNT)
        gitops_dependencies.extend(r for r in (identity, sp_roles) if r is not None)
        installed["crossplane"] = Crossplane(
            "crossplane",
            CrossplaneArgs(
                client_id=client_id_of(identity),
                tenant_id=target.tenant_id,
                subscription_id=target.subscription_id,
                client_secret=target.service_principal.client_secret if target.service_principal else None,
                identity_webhook=target.identity_webhook,
            ),
            # Its credentials and grants exist before the providers start and outlive them.
            opts=on_cluster(identity, sp_roles),
        )
        outputs["crossplaneClientId"] = client_id_of(identity)

    app_credentials = None
    if addons.argocd.enabled and target.app_principal is not None:
        namespaces = [
            bridge.APP_NAMESPACES[variant]
            for variant, on in (("kro", addons.kro and addons.aso.enabled), ("crossplane", addons.crossplane))
            if on
        ]
        if namespaces:
            app_credentials = AppPrincipalCredentials(
                "app-principal",
                AppPrincipalCredentialsArgs(namespaces=namespaces, client_secret=target.app_principal.client_secret),
                opts=on_cluster(),
            )
    elif addons.argocd.enabled and target.oidc_issuer_url is None:
        # One line in `pulumi up`'s output; docs/hybrid.md says the same.
        pulumi.log.warn(
            "reference app: not deployed on this cluster (its Azure resources are still created): it has no "
            "workload identity and the stack names no app service principal (hybrid.appServicePrincipalClientId, "
            "hybrid.appServicePrincipalObjectId and the secret appServicePrincipalClientSecret)"
        )

    if addons.argocd.enabled:
        installed["argocd"] = ArgoCd(
            "argocd",
            ArgoCdArgs(
                repo_url=addons.argocd.repo_url or "",
                revision=addons.argocd.revision,
                path=addons.argocd.path,
                url=addons.argocd.url,
                cluster_labels=cluster_labels(cfg, target),
                cluster_annotations=cluster_annotations(cfg, target, outputs),
                # Every add-on installed so far: what the layer's objects are served by.
                gitops_dependencies=[*installed.values(), *dict.fromkeys(gitops_dependencies)],
            ),
            # The app's Secret exists before Argo CD can sync the app that reads it.
            opts=on_cluster(app_credentials),
        )

    if cfg.tenants:
        outputs["tenantClientIds"] = build_tenants(cfg, target, installed, on_cluster())
    return outputs


def build_tenants(
    cfg: StackConfig, target: PlatformTarget, installed: dict[str, pulumi.Resource], on_cluster: pulumi.ResourceOptions
) -> dict[str, pulumi.Output[str]]:
    """Each tenant in its own subscription; one admission guard for all of them."""
    assert target.oidc_issuer_url is not None, "config validation allows tenants only with workload identity"
    addons = cfg.addons
    crossplane = installed.get("crossplane")
    argocd = installed.get("argocd")
    if crossplane is not None:
        TenantGuard("tenant-guard", opts=on_cluster)
    client_ids: dict[str, pulumi.Output[str]] = {}
    for tenant in cfg.tenants:
        component = Tenant(
            f"tenant-{tenant.name}",
            TenantArgs(
                tenant_name=tenant.name,
                subscription_id=tenant.subscription_id,
                tenant_id=tenant.tenant_id or target.tenant_id,
                location=tenant.location or cfg.location,
                resource_group_name=cfg.tenant_resource_group(tenant),
                identity_name=cfg.tenant_identity_name(tenant),
                oidc_issuer_url=target.oidc_issuer_url,
                namespaces=tenant.namespaces,
                roles=[TenantRoleGrant(role=r.role, scope=r.scope) for r in tenant.roles],
                source_repos=tenant.source_repos,
                aso_service_account=aso_module.SERVICE_ACCOUNT if addons.aso.enabled else None,
                crossplane_service_account=crossplane_module.SERVICE_ACCOUNT if crossplane is not None else None,
                argocd=argocd is not None,
                # The namespaced ProviderConfig kind exists once the providers are healthy.
                crossplane_ready=[crossplane.provider_config] if crossplane is not None else [],  # type: ignore[attr-defined]
                argocd_ready=[argocd.release] if argocd is not None else [],  # type: ignore[attr-defined]
                # The controllers that act in the tenant's namespaces: uninstalled only after them.
                controllers=[c for c in (installed.get("aso"), crossplane, installed.get("kro")) if c is not None],
                tags=cfg.tag_map,
            ),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(protect=cfg.protect)),
        )
        client_ids[tenant.name] = component.client_id
    return client_ids


def cluster_labels(cfg: StackConfig, target: PlatformTarget) -> dict[str, pulumi.Input[str]]:
    """Selectors for the ApplicationSets: which add-ons are on, and which environment."""
    labels: dict[str, pulumi.Input[str]] = {
        bridge.ADDON_LABELS[key]: "true" if on else "false" for key, on in cfg.addons.enabled().items()
    }
    labels[bridge.LABEL_ENVIRONMENT] = cfg.environment
    labels[bridge.LABEL_CLUSTER_NAME] = target.cluster_name
    return labels


def cluster_annotations(cfg: StackConfig, target: PlatformTarget, outputs: dict[str, Any]) -> dict[str, pulumi.Input[str]]:
    """The platform's facts for Git to template, so no ID is ever written into the repository."""
    annotations: dict[str, pulumi.Input[str]] = {
        bridge.ANN_TENANT_ID: target.tenant_id,
        bridge.ANN_SUBSCRIPTION_ID: target.subscription_id,
        bridge.ANN_LOCATION: cfg.location,
    }
    if target.oidc_issuer_url is not None:
        annotations[bridge.ANN_OIDC_ISSUER_URL] = target.oidc_issuer_url
    if "asoClientId" in outputs:
        annotations[bridge.ANN_ASO_CLIENT_ID] = outputs["asoClientId"]
    if "crossplaneClientId" in outputs:
        annotations[bridge.ANN_CROSSPLANE_CLIENT_ID] = outputs["crossplaneClientId"]
        annotations[bridge.ANN_CROSSPLANE_PROVIDER_CONFIG] = bridge.CROSSPLANE_PROVIDER_CONFIG
    if cfg.app_resource_groups:
        annotations[bridge.ANN_APP_RESOURCE_GROUP] = cfg.app_resource_groups[0]
        annotations[bridge.ANN_APP_RESOURCE_GROUPS] = ",".join(cfg.app_resource_groups)
    if target.app_principal is not None:
        annotations[bridge.ANN_APP_CLIENT_ID] = target.app_principal.client_id
        annotations[bridge.ANN_APP_PRINCIPAL_ID] = target.app_principal.object_id
    # The one value the app ApplicationSets read for the app's identity, in every mode.
    principal = target.app_principal
    annotations[bridge.ANN_APP_IDENTITY] = (
        pulumi.Output.from_input(target.oidc_issuer_url).apply(lambda url: bridge.app_identity(oidc_issuer_url=url))
        if target.oidc_issuer_url is not None
        else bridge.app_identity(
            client_id=principal.client_id if principal else None, principal_id=principal.object_id if principal else None
        )
    )
    if cfg.addons.argocd.app_image:
        annotations[bridge.ANN_APP_IMAGE] = cfg.addons.argocd.app_image
    return annotations
