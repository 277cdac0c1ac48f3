"""Kro: kro (Kube Resource Orchestrator) from its Helm chart, with aggregated, least-privilege RBAC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.helm import install_chart
from components.versions import KRO

# In aggregation mode the chart's ClusterRole `<release>:controller` unions every ClusterRole
# carrying this label (kro values.yaml, `rbac.mode`).
AGGREGATE_LABEL = "rbac.kro.run/aggregate-to-controller"

# Core kinds the reference app's ResourceGraphDefinition creates, by API group.
APP_CORE_RESOURCES: dict[str, tuple[str, ...]] = {
    "apps": ("deployments",),
    "": ("services", "serviceaccounts"),
}

# Resources in an RGD's graph: kro server-side-applies them, reads them back to resolve
# references and readiness, and deletes them with the instance. No deletecollection,
# no escalate/bind/impersonate.
GRAPH_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
# Instances of RGD-generated kinds are created by their users; kro only watches them and
# writes finalizers (main resource) and status.
INSTANCE_VERBS = ("get", "list", "watch", "update", "patch")

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


@dataclass
class KroArgs:
    # API groups of the Azure (ASO) resources the graphs create, e.g. "storage.azure.com".
    managed_api_groups: Sequence[str]
    # Group of the kinds RGDs generate (RGD spec.schema.group; kro's default is kro.run).
    instance_api_group: str = "kro.run"
    # Plurals of those kinds ("*": every kind in instance_api_group). Narrow this to the
    # reference app's kinds once its RGD is final; "<plural>/status" is added for each.
    instance_resources: Sequence[str] = ("*",)

    def __post_init__(self) -> None:
        # Invariants, not user-facing refusals: the groups come from addons.aso.crdPattern,
        # which the config step checks (DNS subdomains under azure.com, each once).
        groups = list(self.managed_api_groups)
        bad = [g for g in groups if not _DNS_SUBDOMAIN.fullmatch(g)]
        assert not bad, f"KroArgs.managed_api_groups: {bad}: API group names such as 'storage.azure.com'"
        assert len(set(groups)) == len(groups), f"KroArgs.managed_api_groups: duplicate groups in {groups}"
        assert _DNS_SUBDOMAIN.fullmatch(self.instance_api_group), f"KroArgs.instance_api_group: {self.instance_api_group!r}"
        assert self.instance_resources, "KroArgs.instance_resources: '*' or at least one resource plural"


def kro_values() -> dict[str, Any]:
    # "aggregation" instead of the chart's default "unrestricted" (a */*/* ClusterRole):
    # kro then holds only its own static permissions plus the aggregated roles below.
    return {"rbac": {"mode": "aggregation"}}


def kro_rules(args: KroArgs) -> list[k8s.rbac.v1.PolicyRuleArgs]:
    rules: list[k8s.rbac.v1.PolicyRuleArgs] = []
    if args.managed_api_groups:
        rules.append(
            k8s.rbac.v1.PolicyRuleArgs(
                api_groups=sorted(args.managed_api_groups), resources=["*"], verbs=list(GRAPH_VERBS)
            )
        )
    for group, resources in sorted(APP_CORE_RESOURCES.items()):
        rules.append(k8s.rbac.v1.PolicyRuleArgs(api_groups=[group], resources=list(resources), verbs=list(GRAPH_VERBS)))
    if list(args.instance_resources) == ["*"]:
        instance_resources = ["*"]
    else:
        instance_resources = sorted({r for plural in args.instance_resources for r in (plural, f"{plural}/status")})
    rules.append(
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[args.instance_api_group], resources=instance_resources, verbs=list(INSTANCE_VERBS)
        )
    )
    return rules


class Kro(pulumi.ComponentResource):
    """kro in `kro-system`, and the ClusterRole that lets it manage the reference app's graph.

    The ClusterRole needs no ordering against the release: Kubernetes' ClusterRole aggregation
    controller recomputes `kro:controller` whenever a labelled ClusterRole or the aggregated
    role itself appears or changes, so the rules land in kro's role whichever comes first.
    """

    namespace: pulumi.Output[str]
    release: k8s.helm.v3.Release
    cluster_role: k8s.rbac.v1.ClusterRole

    def __init__(self, name: str, args: KroArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:kro:Kro", name, None, opts)
        namespace, self.release = install_chart(name, KRO, values=kro_values(), parent=self)
        self.cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-graph-role",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                # A fixed name (no auto-naming suffix): stable across runs and readable in audits.
                name=f"{KRO.release_name}:controller:platform-graph",
                labels={AGGREGATE_LABEL: "true"},
            ),
            rules=kro_rules(args),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace = namespace.metadata.name
        self.register_outputs(
            {"namespace": self.namespace, "release": self.release.name, "cluster_role": self.cluster_role.metadata.name}
        )
