"""What `pulumi destroy` and a config change do with a recorded graph: deletion order, replacement.

Deletion order. The engine deletes a resource only after every resource that depends on it
is gone: its explicit and property dependencies, the children it parents, the resources
its provider serves, and those `deletedWith` it. A dependency on a component is expanded by
the SDK into its custom descendants before it is recorded, so the recorded edges are the
engine's. :func:`deletion_order` is the reverse topological order of that graph (Python's
graphlib does the sorting); :func:`deleted_before` is the guarantee itself: `first` is gone
before `then` is deleted exactly when `first` depends on `then`, directly or through others.
Resources with no path between them may be deleted at the same time.

Replacement. :func:`replacement_reasons` models what makes Pulumi replace a Kubernetes
custom resource instead of updating it: a different URN (type token, name or parent chain:
the old object is deleted, the new one created), a change of `metadata.name` or
`metadata.namespace` (pulumi-kubernetes' forceNew fields for kinds it has no special rules
for, provider/pkg/provider/provider.go Diff and diff.go), and `replaceOnChanges` paths whose
value changed. Given both evaluations, it also sees the resource's provider being replaced,
which replaces every resource it serves: pulumi-kubernetes' DiffConfig (provider/pkg/
provider/provider.go, v4.32; util.go getActiveClusterFromConfig), see
:func:`provider_replacement_reasons`. Not modelled: the forceNew fields of built-in kinds
(Deployments' selectors, Secrets' data, ...), `pulumi.com/replaceUnready`, Helm releases,
and providers of other packages.
"""

from __future__ import annotations

import graphlib
from typing import Any, Iterable, Optional

import yaml

from offline.evaluate import UNKNOWN, Evaluation, Registration, unwrap


def _needs(reg: Registration) -> set[str]:
    """URNs that must outlive `reg` on destroy."""
    needs = set(reg.dependencies)
    for deps in reg.property_dependencies.values():
        needs.update(deps)
    if reg.parent:
        needs.add(reg.parent)
    if reg.provider:
        needs.add(reg.provider.rsplit("::", 1)[0])
    if reg.deleted_with:
        needs.add(reg.deleted_with)
    needs.discard(reg.urn)
    return needs


def deletion_graph(ev: Evaluation) -> dict[str, set[str]]:
    """URN -> the URNs deleted only after it (what it needs), for the recorded resources."""
    known = {r.urn for r in ev.resources}
    return {r.urn: {u for u in _needs(r) if u in known} for r in ev.resources}


def deletion_order(ev: Evaluation) -> list[str]:
    """Every recorded URN in an order `pulumi destroy` may delete them: dependents first."""
    sorter = graphlib.TopologicalSorter({urn: set() for urn in ev.by_urn()})
    for urn, needs in deletion_graph(ev).items():
        for need in needs:
            # `need` may be deleted only once `urn` is gone.
            sorter.add(need, urn)
    return list(sorter.static_order())


def outlives(ev: Evaluation, first: Registration) -> set[str]:
    """URNs of everything deleted only after `first` is gone (transitively)."""
    graph = deletion_graph(ev)
    seen: set[str] = set()
    stack = list(graph.get(first.urn, ()))
    while stack:
        urn = stack.pop()
        if urn in seen:
            continue
        seen.add(urn)
        stack.extend(graph.get(urn, ()))
    return seen


def deleted_before(ev: Evaluation, first: Registration, then: Registration) -> bool:
    """Whether destroy deletes (and, for Kubernetes objects, awaits) `first` before it deletes `then`."""
    return then.urn in outlives(ev, first)


def not_outlived(ev: Evaluation, first: Registration, others: Iterable[Registration]) -> list[str]:
    """The names of `others` that destroy may delete before `first` is gone (the violations)."""
    after = outlives(ev, first)
    return sorted(f"{r.type}::{r.name}" for r in others if r.urn != first.urn and r.urn not in after)


# pulumi-kubernetes: "Changing the identity of the resource always causes a replacement."
IDENTITY_FIELDS = ("metadata.name", "metadata.namespace")


def _at(inputs: dict[str, Any], path: str) -> Any:
    value: Any = unwrap(inputs)
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"
# The provider inputs that select the cluster (DiffConfig replaces on them).
_CLUSTER_KEYS = ("kubeconfig", "context", "cluster")


def _active_cluster(config: dict[str, Any]) -> Optional[Any]:
    """getActiveClusterFromConfig: the kubeconfig's cluster entry the provider talks to (the
    `context` input overrides current-context, `cluster` the context's cluster), or None
    when there is none."""
    kubeconfig = config.get("kubeconfig")
    if not isinstance(kubeconfig, str):
        return None
    try:
        parsed = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        return None
    if not isinstance(parsed, dict) or not parsed.get("clusters"):
        return None
    contexts = {c.get("name"): c.get("context") or {} for c in parsed.get("contexts") or []}
    clusters = {c.get("name"): c.get("cluster") for c in parsed.get("clusters") or []}
    context = contexts.get(config.get("context") or parsed.get("current-context"))
    if context is None:
        return None
    return clusters.get(config.get("cluster") or context.get("cluster"))


def provider_replacement_reasons(old: Registration, new: Registration) -> list[str]:
    """Why Pulumi would replace a Kubernetes provider (empty: an update or no change), as
    pulumi-kubernetes' DiffConfig decides:
    - with `clusterIdentifier` set, and unchanged, never (every other change is an update);
      changed from one value to another, always (adding or removing it alone is not);
    - otherwise when `kubeconfig`, `context` or `cluster` is unknown (a preview whose
      kubeconfig comes from a resource being changed), or when the cluster entry those
      select changed (its server, its CA data, ...), and `renderYamlToDirectory` changes.
    """
    olds, news = unwrap(old.inputs), unwrap(new.inputs)
    if olds == news:
        return []
    reasons = []
    old_id, new_id = olds.get("clusterIdentifier"), news.get("clusterIdentifier")
    if old_id is not None and new_id is not None and old_id != new_id:
        reasons.append("clusterIdentifier")
    if new_id is not None and new_id == old_id:
        return []
    for key in _CLUSTER_KEYS:
        if news.get(key) == UNKNOWN:
            return reasons + [f"{key} (unknown)"]
    changed = {k for k in set(olds) | set(news) if olds.get(k) != news.get(k)}
    if "renderYamlToDirectory" in changed:
        reasons.append("renderYamlToDirectory")
    old_cluster, new_cluster = _active_cluster(olds), _active_cluster(news)
    if old_cluster is not None and new_cluster is not None and old_cluster != new_cluster:
        reasons.extend(k for k in _CLUSTER_KEYS if k in changed)
    return reasons


def _provider_of(ev: Evaluation, reg: Registration) -> Optional[Registration]:
    return ev.by_urn().get(reg.provider.rsplit("::", 1)[0]) if reg.provider else None


def replacement_reasons(
    old: Registration,
    new: Registration,
    before: Optional[Evaluation] = None,
    after: Optional[Evaluation] = None,
) -> list[str]:
    """Why Pulumi would replace `old` with `new` (empty: an in-place update or no change).

    `before` and `after`, the evaluations `old` and `new` come from, let it see the
    resource's provider too: a replaced Kubernetes provider replaces what it serves.
    """
    if (before is None) != (after is None):
        raise ValueError("replacement_reasons: allowed: both evaluations (before and after) or neither")
    reasons = []
    if before is not None and after is not None:
        old_provider, new_provider = _provider_of(before, old), _provider_of(after, new)
        if old_provider is not None and new_provider is not None and new_provider.type == KUBERNETES_PROVIDER:
            if old_provider.urn != new_provider.urn:
                reasons.append(f"provider {old_provider.urn} -> {new_provider.urn}")
            else:
                reasons.extend(f"provider {new_provider.name}: {r}"
                               for r in provider_replacement_reasons(old_provider, new_provider))
    if old.urn != new.urn:
        reasons.append(f"URN {old.urn} -> {new.urn}")
    for path in IDENTITY_FIELDS:
        if _at(old.inputs, path) != _at(new.inputs, path):
            reasons.append(path)
    for path in new.replace_on_changes:
        if path == "*" or _at(old.inputs, path) != _at(new.inputs, path):
            reasons.append(f"replaceOnChanges {path}")
    return reasons
