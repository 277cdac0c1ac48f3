"""ClusterAdminReady: waits, bounded, until whoever runs `up` is cluster admin on an Entra-only AKS.

With Azure RBAC for Kubernetes authorization, cluster admin comes from Azure role assignments
("Azure Kubernetes Service RBAC Cluster Admin" on the cluster), and "new role assignments can
take up to five minutes to propagate and be updated by the authorization server" (AKS docs,
"Use Azure RBAC for Kubernetes Authorization"). pulumi-kubernetes does not wait for that: a
create is retried only on NotFound and NoMatch errors, five times with a doubling backoff
(provider/pkg/await/await.go, `retrier.Do(apierrors.IsNotFound, meta.IsNoMatchError)`), so a
Forbidden fails the first `up`. This dynamic resource sits between the grants and the
Kubernetes provider: on create (and when the grants change) it asks the API server, as the
identity running `up`, whether it may do what the add-ons do (SelfSubjectAccessReview, which
every authenticated user may create, decided by the same authorizers as any request), every
`interval` seconds until all are allowed, and fails with a message naming the groups and the
bound when they are not allowed by then. Preview never runs it (dynamic providers create only
in an update), and once created it does nothing on later `up`s while the grants are unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import pulumi
import pulumi.dynamic

# What the first add-ons do at cluster scope: namespaces, CRDs, cluster-wide RBAC.
ADMIN_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("create", "", "namespaces"),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
)
# AKS documents up to five minutes; twice that before giving up.
DEFAULT_TIMEOUT_SECONDS = 600
DEFAULT_INTERVAL_SECONDS = 10

# (verb, group, resource) -> allowed?
Reviewer = Callable[[str, str, str], bool]


class ClusterAdminTimeout(Exception):
    pass


def wait_for_cluster_admin(
    review: Reviewer,
    *,
    groups: Sequence[str],
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Poll `review` for every ADMIN_CHECKS entry until all are allowed; the seconds waited.

    Raises ClusterAdminTimeout at `timeout` with what is still denied and what to check.
    """
    start = clock()
    while True:
        denied = [c for c in ADMIN_CHECKS if not review(*c)]
        waited = clock() - start
        if not denied:
            return waited
        if waited >= timeout:
            shown = ", ".join(f"{verb} {resource + ('.' + group if group else '')}" for verb, group, resource in denied)
            raise ClusterAdminTimeout(
                f"the identity running `pulumi up` is still not cluster admin after {int(timeout)} seconds (denied: {shown}). "
                f"Cluster admin comes from 'Azure Kubernetes Service RBAC Cluster Admin' granted to the groups in "
                f"cluster.adminGroupObjectIds ({', '.join(groups)}); Azure documents up to five minutes for a new grant. "
                "Check that this identity is a member of one of them (`make preflight`) and sign in again if it was "
                "added since its token was issued; then run `pulumi up` again"
            )
        sleep(min(interval, max(timeout - waited, 0)))


def kubernetes_reviewer(kubeconfig: str) -> Reviewer:
    """SelfSubjectAccessReview through the official Kubernetes client (which runs the kubeconfig's
    exec plugin, kubelogin, for the token)."""
    import yaml
    from kubernetes import client, config

    api = client.AuthorizationV1Api(config.new_client_from_config_dict(yaml.safe_load(kubeconfig)))

    def review(verb: str, group: str, resource: str) -> bool:
        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource)
            )
        )
        try:
            return bool(api.create_self_subject_access_review(body).status.allowed)
        except client.ApiException as err:
            # 401/403 while the token or the grant is not yet accepted: not allowed yet.
            if err.status in (401, 403):
                return False
            raise

    return review


class _Provider(pulumi.dynamic.ResourceProvider):
    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        waited = wait_for_cluster_admin(
            kubernetes_reviewer(props["kubeconfig"]),
            groups=props["groups"],
            timeout=float(props["timeoutSeconds"]),
            interval=float(props["intervalSeconds"]),
        )
        return {"groups": props["groups"], "grants": props["grants"], "waitedSeconds": int(waited)}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_="cluster-admin-ready", outs=self._wait(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Only new grants need a new wait; a rotated kubeconfig does not.
        changed = [k for k in ("groups", "grants") if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(changes=bool(changed))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._wait(news))


@dataclass
class ClusterAdminReadyArgs:
    kubeconfig: pulumi.Input[str]  # a secret
    groups: Sequence[str]
    # The grants' IDs: a change (a group added) waits again.
    grants: Sequence[pulumi.Input[str]]
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS


class ClusterAdminReady(pulumi.dynamic.Resource):
    def __init__(self, name: str, args: ClusterAdminReadyArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            _Provider(),
            name,
            {
                "kubeconfig": pulumi.Output.secret(args.kubeconfig),
                "groups": list(args.groups),
                "grants": list(args.grants),
                "timeoutSeconds": args.timeout_seconds,
                "intervalSeconds": args.interval_seconds,
            },
            opts,
        )
