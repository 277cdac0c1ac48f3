"""AzureServiceOperator: ASO v2 from its Helm chart, authenticating with workload identity.

The operator exchanges its own service account token (projected by the chart with audience
api://AzureADTokenExchange) for an Entra token, so the identity it acts as needs exactly one
federated credential, for :data:`SERVICE_ACCOUNT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.helm import caller_depends_on, install_chart
from components.identity import ServiceAccountRef
from components.roles import app_scope_role_grants
from components.versions import ASO

# The chart names its service account `azureserviceoperator-default` when serviceAccount.name
# is empty (templates/_helpers.tpl); the values below set that name explicitly, so the
# federated credential's subject and the rendered service account cannot drift apart.
SERVICE_ACCOUNT = ServiceAccountRef(ASO.namespace, "azureserviceoperator-default")

# `<group>.azure.com/<Kind or glob>`; the chart joins patterns with ';', so none may contain one.
_CRD_PATTERN_ITEM = re.compile(r"^[a-z0-9.*?-]+\.azure\.com/[A-Za-z0-9*?]+$")


@dataclass
class AsoArgs:
    client_id: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    # Which ASO CRDs the operator installs and reconciles, e.g. "storage.azure.com/*".
    crd_pattern: Sequence[str]
    # Only for clusters without a public OIDC issuer (hybrid): authenticate as the service
    # principal `client_id` with this secret instead of workload identity.
    client_secret: Optional[pulumi.Input[str]] = None

    def __post_init__(self) -> None:
        # Invariants, not user-facing refusals: the config step (addons.aso.crdPattern) refuses
        # an empty, malformed or duplicated pattern before anything is registered.
        patterns = list(self.crd_pattern)
        # An empty crdPattern on a fresh install makes the operator pod exit (values.yaml).
        assert patterns, "AsoArgs.crd_pattern: at least one '<group>.azure.com/*' pattern"
        bad = [p for p in patterns if not _CRD_PATTERN_ITEM.fullmatch(p)]
        assert not bad, f"AsoArgs.crd_pattern: {bad}: '<group>.azure.com/*' or '<group>.azure.com/<Kind>'"
        assert len(set(patterns)) == len(patterns), f"AsoArgs.crd_pattern: duplicate patterns in {patterns}"


def aso_values(args: AsoArgs) -> dict[str, Any]:
    values: dict[str, Any] = {
        # The chart renders these IDs (and USE_WORKLOAD_IDENTITY_AUTH) into its controller
        # settings Secret, aso-controller-settings; with workload identity no client secret
        # exists anywhere.
        "useWorkloadIdentityAuth": args.client_secret is None,
        "azureClientID": args.client_id,
        "azureTenantID": args.tenant_id,
        "azureSubscriptionID": args.subscription_id,
        "crdPattern": ";".join(args.crd_pattern),
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT.name},
    }
    if args.client_secret is not None:
        # Secret in Pulumi state and in the release's values, whatever the caller passed.
        values["azureClientSecret"] = pulumi.Output.secret(args.client_secret)
    return values


class AzureServiceOperator(pulumi.ComponentResource):
    """ASO in `azureserviceoperator-system`; exposes no secret (a client secret, if given,
    stays inside the release's values).

    Every ASO webhook and its metrics endpoint are served with cert-manager certificates,
    so the caller passes the CertManager component in `opts.depends_on`. A component's
    depends_on does not reach its children, so it is forwarded to the Helm release here.
    ASO's CRDs are not in the chart: the operator installs those matching crd_pattern when it
    starts, i.e. after this release is ready, not at preview time.
    """

    namespace: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: AsoArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:aso:AzureServiceOperator", name, None, opts)
        namespace, self.release = install_chart(
            name, ASO, values=aso_values(args), parent=self, depends_on=caller_depends_on(opts)
        )
        self.namespace = namespace.metadata.name
        self.register_outputs({"namespace": self.namespace, "release": self.release.name})


# The name the ASO interface was specified with: the grants every app-creating controller gets.
aso_role_grants = app_scope_role_grants
