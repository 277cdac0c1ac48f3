"""The native environment: a new AKS cluster and the platform on it."""

from __future__ import annotations

from typing import Any

import pulumi

from components.cluster import AksCluster, AksClusterArgs
from stacks.config import StackConfig
from stacks.platform import PlatformTarget, build_platform


def build(cfg: StackConfig) -> dict[str, Any]:
    assert cfg.cluster is not None
    cluster = AksCluster(
        "platform",
        AksClusterArgs(
            cluster_name=cfg.cluster_name,
            location=cfg.location,
            cluster=cfg.cluster,
            resource_group_name=cfg.resource_group_name,
            create_resource_group=cfg.existing_resource_group is None,
            tags=cfg.tag_map,
        ),
        opts=pulumi.ResourceOptions(protect=cfg.protect),
    )
    target = PlatformTarget(
        provider=cluster.provider,
        oidc_issuer_url=cluster.oidc_issuer_url,
        tenant_id=cluster.tenant_id,
        subscription_id=cluster.subscription_id,
        platform_resource_group=cluster.resource_group_name,
        cluster_name=cluster.cluster_name,
        # The app's pods may run on the user pools: the GitOps layer is deleted before them.
        workload_nodes=cluster.user_pools,
    )
    outputs = build_platform(cfg, target)
    return {
        "kubeconfig": cluster.kubeconfig,
        "clusterName": cluster.cluster_name,
        "resourceGroupName": cluster.resource_group_name,
        "oidcIssuerUrl": cluster.oidc_issuer_url,
        **outputs,
    }
