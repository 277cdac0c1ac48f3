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
value changed. Not modelled: the forceNew fields of built-in kinds (Deployments' selectors,
Secrets' data, ...), `pulumi.com/replaceUnready`, and Helm releases.
"""

from __future__ import annotations

import graphlib
from typing import Any, Iterable

from offline.evaluate import Evaluation, Registration, unwrap


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


def replacement_reasons(old: Registration, new: Registration) -> list[str]:
    """Why Pulumi would replace `old` with `new` (empty: an in-place update or no change)."""
    reasons = []
    if old.urn != new.urn:
        reasons.append(f"URN {old.urn} -> {new.urn}")
    for path in IDENTITY_FIELDS:
        if _at(old.inputs, path) != _at(new.inputs, path):
            reasons.append(path)
    for path in new.replace_on_changes:
        if path == "*" or _at(old.inputs, path) != _at(new.inputs, path):
            reasons.append(f"replaceOnChanges {path}")
    return reasons
