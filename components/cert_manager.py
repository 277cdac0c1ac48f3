"""CertManager: cert-manager from its Helm chart, with its CRDs, self-contained in its namespace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.helm import install_chart
from components.versions import CERT_MANAGER


# What AKS's admissions enforcer adds to every webhook's namespaceSelector that lacks it
# (Azure/AKS#1771; AKS FAQ "Can admission controller webhooks impact kube-system and internal
# AKS namespaces?"). Declaring them up front keeps `helm upgrade` from reverting the
# enforcer's patch on each upgrade and the enforcer from re-adding it.
AKS_WEBHOOK_EXCLUSIONS: tuple[dict[str, Any], ...] = (
    {"key": "control-plane", "operator": "NotIn", "values": ["true"]},
    {"key": "kubernetes.azure.com/managedby", "operator": "NotIn", "values": ["aks"]},
)
# The chart's own default for its validating webhooks (values.yaml), kept when extending it.
_DISABLE_VALIDATION = {"key": "cert-manager.io/disable-validation", "operator": "NotIn", "values": ["true"]}


@dataclass
class CertManagerArgs:
    """Nothing to choose yet: the chart pin and the values below are the platform's decision."""


def cert_manager_values() -> dict[str, Any]:
    return {
        # The chart installs the CRDs (as templates, so `helm upgrade` upgrades them too);
        # `keep` leaves them behind on uninstall, since deleting a CRD deletes every
        # Certificate/Issuer in the cluster (ASO's included).
        "crds": {"enabled": True, "keep": True},
        "global": {
            # The chart's default lease namespace is kube-system, which belongs to AKS's own
            # system components; with the leases (and the Role/RoleBinding the chart creates for
            # them) in cert-manager's namespace, cert-manager needs no RBAC in kube-system at all.
            "leaderElection": {"namespace": CERT_MANAGER.namespace},
        },
        "webhook": {
            "validatingWebhookConfiguration": {
                "namespaceSelector": {"matchExpressions": [_DISABLE_VALIDATION, *AKS_WEBHOOK_EXCLUSIONS]},
            },
            "mutatingWebhookConfiguration": {
                "namespaceSelector": {"matchExpressions": list(AKS_WEBHOOK_EXCLUSIONS)},
            },
        },
    }


class CertManager(pulumi.ComponentResource):
    """cert-manager; ASO's webhook and metrics certificates are issued by it.

    The chart's post-install `startupapicheck` Job (on by default) blocks the atomic install
    until the cert-manager webhook answers, so a Release that depends on this one starts only
    when Certificates and Issuers can be created.
    """

    namespace: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: Optional[CertManagerArgs] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:cert_manager:CertManager", name, None, opts)
        namespace, self.release = install_chart(name, CERT_MANAGER, values=cert_manager_values(), parent=self)
        self.namespace = namespace.metadata.name
        self.register_outputs({"namespace": self.namespace, "release": self.release.name})
