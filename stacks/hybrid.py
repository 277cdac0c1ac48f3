"""The hybrid environment: the platform on an existing cluster (kind, k3d, another cloud).

No AKS: the Kubernetes provider comes from a kubeconfig (a secret config value or a file),
and the add-ons install exactly as on AKS. The controllers authenticate to Azure with
workload identity when the stack names the cluster's public OIDC issuer, or the public key
of a cluster whose issuer the platform publishes itself (`make kind`), otherwise with a
service principal whose secret stays a secret end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_azure_native import resources

from components.oidc_issuer import PublishedIssuer, PublishedIssuerArgs
from stacks.config import StackConfig
from stacks.platform import AppPrincipal, PlatformTarget, ServicePrincipalAuth, build_platform


def api_server(kubeconfig: str, context: Optional[str]) -> str:
    """The API server URL of `context` (or the current one) in a kubeconfig the config step
    has already checked."""
    doc = yaml.safe_load(kubeconfig)
    name = context or doc["current-context"]
    cluster = next(c["context"]["cluster"] for c in doc["contexts"] if c["name"] == name)
    return next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == cluster)


def build(cfg: StackConfig) -> dict[str, Any]:
    hybrid = cfg.hybrid
    assert hybrid is not None

    # Config validation has parsed the kubeconfig (secret or file) and found the context, and
    # refused an empty one: the provider would fall back to the machine's default kubeconfig.
    if cfg.kubeconfig is not None:
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cfg.kubeconfig.get_secret_value())
    else:
        # Read at run time so the file's content is a secret in state, never a plain input.
        kubeconfig = pulumi.Output.secret(Path(hybrid.kubeconfig_path or "").expanduser().read_text())
    provider = k8s.Provider(
        "existing-cluster",
        kubeconfig=kubeconfig,
        context=hybrid.context,
        # Replaced (with every object on it) only when the API server changes, not when a
        # credential in the kubeconfig is rotated (pulumi-kubernetes DiffConfig). A new kind
        # cluster has a new URL (kind picks the port): a new cluster, whose predecessor's
        # objects `make forget-cluster` drops from the state (docs/hybrid.md).
        cluster_identifier=kubeconfig.apply(lambda text: api_server(text, hybrid.context)),
    )

    # The controllers' identities (workload identity only) live in the platform resource
    # group; with a service principal there is nothing to put there, so none is created.
    group = None
    if hybrid.workload_identity and cfg.existing_resource_group is None:
        group = resources.ResourceGroup(
            "platform-rg",
            resource_group_name=cfg.resource_group_name,
            location=cfg.location,
            tags=cfg.tag_map,
            opts=pulumi.ResourceOptions(protect=cfg.protect),
        )

    # A cluster created by `make kind`: publish its issuer, then federate to it as on AKS.
    published = None
    if hybrid.service_account_public_key_path is not None:
        published = PublishedIssuer(
            "oidc-issuer",
            PublishedIssuerArgs(
                # Validated as an RSA public key by the config step.
                public_key_pem=Path(hybrid.service_account_public_key_path).expanduser().read_text(),
                resource_group_name=group.name if group else cfg.resource_group_name,
                location=cfg.location,
                tags=cfg.tag_map,
            ),
            opts=pulumi.ResourceOptions(protect=cfg.protect),
        )
    oidc_issuer_url = published.issuer_url if published else hybrid.oidc_issuer_url

    service_principal = None
    if not hybrid.workload_identity:
        # Config validation requires both and refuses an empty or pasted-JSON secret.
        assert hybrid.service_principal_client_id and cfg.service_principal_client_secret
        service_principal = ServicePrincipalAuth(
            client_id=hybrid.service_principal_client_id,
            client_secret=pulumi.Output.secret(cfg.service_principal_client_secret.get_secret_value()),
            object_id=hybrid.service_principal_object_id,
        )

    app_principal = None
    app_secret = cfg.app_service_principal_client_secret
    if hybrid.app_service_principal_client_id and hybrid.app_service_principal_object_id and app_secret is not None:
        app_principal = AppPrincipal(
            client_id=hybrid.app_service_principal_client_id,
            object_id=hybrid.app_service_principal_object_id,
            client_secret=pulumi.Output.secret(app_secret.get_secret_value()),
        )

    target = PlatformTarget(
        provider=provider,
        oidc_issuer_url=oidc_issuer_url,
        # The stack's own azure-native:tenantId / subscriptionId, not the deployer's defaults.
        tenant_id=cfg.tenant_id,
        subscription_id=cfg.subscription_id,
        platform_resource_group=group.name if group else cfg.resource_group_name,
        cluster_name=cfg.environment,
        service_principal=service_principal,
        # An existing cluster need not run the Azure Workload Identity webhook: the
        # Crossplane runtime configs project the token themselves (ASO always does).
        identity_webhook=False,
        app_principal=app_principal,
        # The issuer's URL already carries the dependency into every federation and the
        # cluster Secret; the root Application names it too, so the layer's cascade (which
        # needs ASO and Crossplane to exchange tokens) finishes before the issuer goes.
        issuer_publication=published.publication if published else (),
    )
    outputs = build_platform(cfg, target)
    if hybrid.workload_identity:
        outputs = {"resourceGroupName": target.platform_resource_group, **outputs}
    if published is not None:
        outputs["oidcIssuerUrl"] = published.issuer_url
        outputs["oidcIssuerStorageAccount"] = published.storage_account_name
    return outputs
