"""What every kind of environment shares: app resource groups, identities and add-ons.

The native (AKS) and hybrid compositions each produce a :class:`PlatformTarget` (a
Kubernetes provider plus the facts about the cluster) and hand it to `build_platform`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import resources

from stacks.config import StackConfig


@dataclass
class PlatformTarget:
    provider: k8s.Provider
    oidc_issuer_url: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    platform_resource_group: pulumi.Input[str]
    cluster_name: pulumi.Input[str]


def build_platform(cfg: StackConfig, target: PlatformTarget) -> dict[str, Any]:
    app_groups = {
        name: resources.ResourceGroup(
            f"app-rg-{name}",
            resource_group_name=name,
            location=cfg.location,
            tags=cfg.tag_map,
            opts=pulumi.ResourceOptions(protect=cfg.protect),
        )
        for name in cfg.app_resource_groups
    }
    return {"appResourceGroups": [g.name for g in app_groups.values()]}
