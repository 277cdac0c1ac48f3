"""One way to install a pinned chart: its own namespace, a fixed release name, atomic."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.versions import ChartPin

# Helm's default (300 s) is short for a first install that pulls images onto new nodes.
DEFAULT_TIMEOUT_SECONDS = 600


def install_chart(
    name: str,
    pin: ChartPin,
    *,
    values: Mapping[str, Any],
    parent: pulumi.Resource,
    depends_on: Optional[Sequence[pulumi.Resource]] = None,
    namespace_labels: Optional[Mapping[str, str]] = None,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[k8s.core.v1.Namespace, k8s.helm.v3.Release]:
    """The namespace and the Helm release of `pin`, children of `parent`.

    The namespace is a resource of its own (not Helm's create_namespace) so that
    switching the add-on off deletes it, and so that other resources can wait on it.
    `atomic` rolls a failed install back instead of leaving a half-installed release.
    """
    namespace = k8s.core.v1.Namespace(
        f"{name}-ns",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=pin.namespace, labels=dict(namespace_labels or {}) or None),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    release = k8s.helm.v3.Release(
        f"{name}-release",
        name=pin.release_name,
        chart=pin.chart,
        version=pin.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository) if pin.repository else None,
        namespace=namespace.metadata.name,
        values=dict(values),
        atomic=True,
        cleanup_on_fail=True,
        timeout=timeout,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on or [])),
    )
    return namespace, release


def caller_depends_on(opts: Optional[pulumi.ResourceOptions]) -> list[pulumi.Resource]:
    """The resources in `opts.depends_on`, for children that must wait as their component does.

    A component's depends_on does not reach its children, so every Helm add-on forwards it to
    its release with this.
    """
    deps = opts.depends_on if opts else None
    if deps is None:
        return []
    if isinstance(deps, pulumi.Resource):
        return [deps]
    if isinstance(deps, (list, tuple)) and all(isinstance(d, pulumi.Resource) for d in deps):
        return list(deps)
    raise TypeError("opts.depends_on: allowed: a Resource or a list of Resources (not an Output)")
