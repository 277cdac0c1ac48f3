"""The native environment: a new AKS cluster and the platform on it."""

from __future__ import annotations

from typing import Any

import pulumi

from components.cluster import AksCluster, AksClusterArgs, MaintenanceWindowArgs, NetworkArgs, NodePoolArgs
from stacks.config import ClusterConfig, NodePool, StackConfig
from stacks.platform import PlatformTarget, build_platform


def build(cfg: StackConfig) -> dict[str, Any]:
    assert cfg.cluster is not None
    cluster = AksCluster("platform", cluster_args(cfg), opts=pulumi.ResourceOptions(protect=cfg.protect))
    target = PlatformTarget(
        provider=cluster.provider,
        oidc_issuer_url=cluster.oidc_issuer_url,
        tenant_id=cfg.tenant_id,
        subscription_id=cfg.subscription_id,
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


def cluster_args(cfg: StackConfig) -> AksClusterArgs:
    """The stack's `cluster` settings in the component's own terms."""
    c: ClusterConfig = cfg.cluster  # type: ignore[assignment]
    window = c.maintenance_window
    return AksClusterArgs(
        cluster_name=cfg.cluster_name,
        location=cfg.location,
        tenant_id=cfg.tenant_id,
        resource_group_name=cfg.resource_group_name,
        create_resource_group=cfg.existing_resource_group is None,
        system_pool=_pool(c.system_pool, c.subnet_of(c.system_pool)),
        user_pools=[_pool(p, c.subnet_of(p)) for p in c.user_pools],
        kubernetes_version=c.kubernetes_version,
        sku_tier=c.sku_tier,
        upgrade_channel=c.upgrade_channel,
        node_os_upgrade_channel=c.node_os_upgrade_channel,
        local_accounts=c.local_accounts,
        admin_group_object_ids=list(c.admin_group_object_ids),
        api_server_authorized_ip_ranges=list(c.api_server_authorized_ip_ranges),
        network=NetworkArgs(
            dataplane=c.network.dataplane,
            network_policy=c.network.network_policy,
            pod_cidr=c.network.pod_cidr,
            service_cidr=c.network.service_cidr,
            dns_service_ip=c.network.dns_service_ip,
            outbound_type=c.network.outbound_type,
            route_table_id=c.network.route_table_id,
        ),
        assign_subnet_role=c.network.assign_subnet_role,
        maintenance_window=MaintenanceWindowArgs(
            day_of_week=window.day_of_week,
            start_time=window.start_time,
            duration_hours=window.duration_hours,
            utc_offset=window.utc_offset,
            interval_weeks=window.interval_weeks,
        )
        if window
        else None,
        kubelogin_mode=c.kubelogin_mode,
        tags=cfg.tag_map,
    )


def _pool(pool: NodePool, subnet: str | None) -> NodePoolArgs:
    return NodePoolArgs(
        name=pool.name,
        vm_size=pool.vm_size,
        count=pool.count,
        min_count=pool.min_count,
        max_count=pool.max_count,
        zones=list(pool.zones),
        max_pods=pool.max_pods,
        os_disk_size_gb=pool.os_disk_size_gb,
        labels=dict(pool.labels),
        taints=list(pool.taints),
        vnet_subnet_id=subnet,
    )
