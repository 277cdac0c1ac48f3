"""Offline preview: `make plan STACK=<stack>` (python -m offline.plan <stack> [--mode preview|update]).

Runs the real program for `Pulumi.<stack>.yaml` under the project's mocks — no credentials,
no cloud — and writes

* ``build/plan-<stack>.json``: every registration (type, name, URN, parent, nearest
  component, provider, dependencies, property dependencies, protect, inputs with secrets as
  ``"[secret]"`` and values unknown before apply as ``"[unknown]"``), the stack outputs
  (masked the same way), per-component counts, the component graph and the policy check;
* ``build/plan-<stack>.md``: resources per component and a Mermaid graph of the components;

and prints the summary. Same config, same bytes: no timestamps, no absolute paths, every
list sorted (inputs keep the program's order, which is deterministic).

``--mode preview`` (default) evaluates as a first ``pulumi preview`` would: every value a
cloud computes (IDs, the OIDC issuer URL, identity client IDs) is unknown. ``--mode update``
shows the mocks' computed values instead (stand-ins derived from names, not real IDs).

The policy rules (policy/rules.py, the same functions the policy pack runs) are checked on
the evaluated graph; the exit code is 1 when any is violated (after the files are written).
In preview mode a rule cannot judge a value that is still unknown; the tests check every
shipped stack in update mode, where all values are known.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from offline.evaluate import (
    PROJECT,
    REPO_ROOT,
    Evaluation,
    Registration,
    UnknownStack,
    available_stacks,
    evaluate_stack,
    load_stack,
    mask,
    output_value,
)
from offline.policy_check import check_evaluation
from policy.rules import SECRET, UNKNOWN_MARK

ROOT_COMPONENT = "(stack)"  # where resources registered at the top level are counted


def _count(value: Any, mark: str) -> int:
    if isinstance(value, dict):
        return sum(_count(v, mark) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v, mark) for v in value)
    return int(value == mark)


# --- The graph -------------------------------------------------------------------------------


def provider_urn(ref: str) -> str:
    """A provider reference is '<urn>::<id>'; the URN is what resources wait for."""
    return ref.rsplit("::", 1)[0] if ref else ""


@dataclass
class Graph:
    """Registrations by URN, with what each waits for and its nearest component."""

    ev: Evaluation

    def __post_init__(self) -> None:
        self.by_urn: dict[str, Registration] = {r.urn: r for r in self.ev.resources}
        self.children: dict[str, list[str]] = {}
        for r in self.ev.resources:
            self.children.setdefault(r.parent, []).append(r.urn)

    def component_of(self, urn: str) -> str:
        """The URN of the nearest ComponentResource ancestor (not the resource itself), or ROOT_COMPONENT."""
        parent = self.by_urn[urn].parent
        while parent in self.by_urn:
            if not self.by_urn[parent].custom:
                return parent
            parent = self.by_urn[parent].parent
        return ROOT_COMPONENT

    def custom_descendants(self, urn: str) -> list[str]:
        found: list[str] = []
        stack = list(self.children.get(urn, []))
        while stack:
            child = stack.pop()
            if self.by_urn[child].custom:
                found.append(child)
            stack.extend(self.children.get(child, []))
        return sorted(found)

    def direct_edges(self, urn: str) -> set[str]:
        """What the engine makes this registration wait for: dependencies, property
        dependencies, its provider and a custom parent (a child's URN needs its parent's).

        A component's own depends_on is *not* included: the SDK sends only the parent URN for
        a child (pulumi/runtime/resource.py), so children do not wait for it unless the
        component forwards it. A dependency on a component means its custom descendants
        (the SDK expands those too; expanding again here is harmless).
        """
        reg = self.by_urn[urn]
        targets = set(reg.dependencies)
        for deps in reg.property_dependencies.values():
            targets.update(deps)
        if reg.provider:
            targets.add(provider_urn(reg.provider))
        parent = self.by_urn.get(reg.parent)
        if parent is not None and parent.custom:
            targets.add(parent.urn)
        resolved: set[str] = set()
        for target in targets:
            found = self.by_urn.get(target)
            if found is None:
                continue
            if found.custom:
                resolved.add(target)
            else:
                resolved.update(self.custom_descendants(target))
        resolved.discard(urn)
        return resolved

    def declared_component_edges(self, component_urn: str) -> set[str]:
        """Custom resources a component's own options (depends_on, ...) name."""
        return self.direct_edges(component_urn) if component_urn in self.by_urn else set()


def _component_key(graph: Graph, urn: str) -> str:
    return urn if urn in graph.by_urn and not graph.by_urn[urn].custom else graph.component_of(urn)


def component_graph(graph: Graph) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(real, declared-only) edges between components.

    real: component A -> B when a custom resource under A waits (dependency, property
    dependency, provider or custom parent) for a custom resource under B.
    declared-only: A -> B when only A's own options name B's resources (its children don't wait).
    """
    real: dict[str, set[str]] = {}
    declared: dict[str, set[str]] = {}
    for reg in graph.ev.resources:
        if not reg.custom:
            continue
        source = graph.component_of(reg.urn)
        for target in graph.direct_edges(reg.urn):
            dest = graph.component_of(target)
            if dest != source:
                real.setdefault(source, set()).add(dest)
    for reg in graph.ev.resources:
        if reg.custom:
            continue
        for target in graph.declared_component_edges(reg.urn):
            dest = graph.component_of(target)
            if dest != reg.urn and dest not in real.get(reg.urn, set()):
                declared.setdefault(reg.urn, set()).add(dest)
    return real, declared


# --- The plan document -----------------------------------------------------------------------


def plan_document(ev: Evaluation, stack: str, mode: str, environment: Optional[str] = None) -> dict[str, Any]:
    graph = Graph(ev)
    root_urn = f"urn:pulumi:{stack}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{stack}"
    resources = []
    per_component: dict[str, dict[str, int]] = {}
    for reg in ev.resources:
        inputs = mask(reg.inputs)
        component = graph.component_of(reg.urn)
        resources.append(
            {
                "urn": reg.urn,
                "type": reg.type,
                "name": reg.name,
                "custom": reg.custom,
                # Top-level: the stack. (The mocks keep the first stack resource of a process,
                # so its recorded URN can name another stack; the canonical one is written.)
                "parent": reg.parent if reg.parent in graph.by_urn else root_urn,
                "component": component,
                "provider": provider_urn(reg.provider),
                "dependencies": sorted(reg.dependencies),
                "propertyDependencies": {k: sorted(v) for k, v in sorted(reg.property_dependencies.items())},
                "waitsFor": sorted(graph.direct_edges(reg.urn)),
                "protect": reg.protect,
                "ignoreChanges": sorted(reg.ignore_changes),
                "deleteBeforeReplace": reg.delete_before_replace,
                "inputs": inputs,
            }
        )
        if reg.custom:
            counts = per_component.setdefault(component, {})
            counts[reg.type] = counts.get(reg.type, 0) + 1

    # The stack first, then by name (URN to break ties): stable, and readable in the tables.
    components_list = [ROOT_COMPONENT] + [r.urn for r in sorted((r for r in ev.resources if not r.custom), key=lambda r: (r.name, r.urn))]
    real, declared = component_graph(graph)
    components = []
    for urn in components_list:
        reg = graph.by_urn.get(urn)
        counts = per_component.get(urn, {})
        components.append(
            {
                "urn": urn,
                "name": reg.name if reg else ROOT_COMPONENT,
                "type": reg.type if reg else "pulumi:pulumi:Stack",
                "resources": sum(counts.values()),
                "byType": dict(sorted(counts.items())),
                "dependsOn": sorted(real.get(urn, set())),
                "declaredDependsOnOnly": sorted(declared.get(urn, set())),
            }
        )

    custom = [r for r in resources if r["custom"]]
    by_type: dict[str, int] = {}
    for r in custom:
        by_type[r["type"]] = by_type.get(r["type"], 0) + 1
    outputs = {k: mask(output_value(v)) for k, v in sorted(ev.outputs.items())}
    violations = check_evaluation(ev, stack=stack, environment=environment)
    return {
        "project": PROJECT,
        "stack": stack,
        "environment": environment,
        "mode": mode,
        "summary": {
            "resources": len(custom),
            "components": len(components_list) - 1,
            "protected": sum(1 for r in custom if r["protect"]),
            "unknownInputs": sum(_count(r["inputs"], UNKNOWN_MARK) for r in custom),
            "secretInputs": sum(_count(r["inputs"], SECRET) for r in custom),
            "byType": dict(sorted(by_type.items())),
            "policyViolations": len(violations),
        },
        "components": components,
        "resources": resources,
        "outputs": outputs,
        "policy": {"violations": [v.as_dict() for v in violations]},
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def render_markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# Offline plan: stack `{doc['stack']}` ({doc['mode']} mode)",
        "",
        "Evaluated under the project's mocks (`make plan`): no credentials, no cloud. "
        + ("Values a cloud computes are `[unknown]`, as in a first `pulumi preview`. " if doc["mode"] == "preview" else "Computed values are the mocks' stand-ins. ")
        + "Secrets are `[secret]`.",
        "",
        summary_line(doc),
        "",
        "## Resources per component",
        "",
        "| component | type | resources | of which |",
        "| --- | --- | ---: | --- |",
    ]
    for comp in doc["components"]:
        if comp["urn"] == ROOT_COMPONENT and not comp["resources"]:
            continue
        of_which = ", ".join(f"{n}× {_short_type(t)}" for t, n in comp["byType"].items()) or "—"
        lines.append(f"| {comp['name']} | `{comp['type']}` | {comp['resources']} | {of_which} |")
    lines += ["", "## Component graph", "", "A → B: something under A waits for something under B "
              "(dependency, property dependency, provider or parent). Dashed: only declared on "
              "the component (its children do not wait).", "", "```mermaid", "flowchart LR"]
    ids = {comp["urn"]: f"c{i}" for i, comp in enumerate(doc["components"])}
    shown = {c["urn"] for c in doc["components"]
             if c["resources"] or c["dependsOn"] or c["declaredDependsOnOnly"] or c["urn"] != ROOT_COMPONENT}
    shown |= {d for c in doc["components"] for d in c["dependsOn"] + c["declaredDependsOnOnly"]}
    for comp in doc["components"]:
        if comp["urn"] in shown:
            lines.append(f'  {ids[comp["urn"]]}["{_label(comp["name"])}<br/>{_label(comp["type"])} ({comp["resources"]})"]')
    for comp in doc["components"]:
        for dest in comp["dependsOn"]:
            lines.append(f"  {ids[comp['urn']]} --> {ids[dest]}")
        for dest in comp["declaredDependsOnOnly"]:
            lines.append(f"  {ids[comp['urn']]} -.-> {ids[dest]}")
    lines += ["```", "", "## Policy (policy/rules.py)", ""]
    violations = doc["policy"]["violations"]
    if violations:
        lines += [f"- **{v['rule']}** `{v['resource']}`: {v['message']}" for v in violations]
    else:
        lines.append("No violations." + (" (Values unknown in preview are not judged.)" if doc["mode"] == "preview" else ""))
    lines += ["", "## Stack outputs", "", "| output | value |", "| --- | --- |"]
    for key, value in doc["outputs"].items():
        text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
        text = text.replace("|", "\\|").replace("`", "'").replace("\n", " ")
        lines.append(f"| {key} | `{text}` |")
    return "\n".join(lines) + "\n"


def _short_type(type_: str) -> str:
    """'azure-native:containerservice:AgentPool' -> 'AgentPool'; providers keep their package."""
    if type_.startswith("pulumi:providers:"):
        return f"Provider ({type_.rsplit(':', 1)[-1]})"
    return type_.rsplit(":", 1)[-1]


def summary_line(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    policy = "policy: ok" if not s["policyViolations"] else f"policy: {s['policyViolations']} violation(s)"
    return (
        f"{s['resources']} resources in {s['components']} components; {s['protected']} protected; "
        f"{s['unknownInputs']} input values unknown until apply; {s['secretInputs']} secret input values masked; {policy}."
    )


def summary_text(doc: dict[str, Any]) -> str:
    lines = [f"plan {doc['stack']} ({doc['mode']}): {summary_line(doc)}"]
    width = max((len(c["name"]) for c in doc["components"]), default=10)
    for comp in doc["components"]:
        if comp["resources"]:
            after = f"  after: {', '.join(_short(d) for d in comp['dependsOn'])}" if comp["dependsOn"] else ""
            lines.append(f"  {comp['name']:<{width}} {comp['resources']:>3}{after}")
    for v in doc["policy"]["violations"]:
        lines.append(f"  VIOLATION {v['rule']}: {v['message']}")
    return "\n".join(lines)


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn != ROOT_COMPONENT else ROOT_COMPONENT


def write_plan(stack: str, mode: str = "preview", out_dir: Path = REPO_ROOT / "build", root: Path = REPO_ROOT) -> tuple[dict[str, Any], Path, Path]:
    config, _ = load_stack(stack, root)
    ev = evaluate_stack(stack, mode, root)
    env = config.get(f"{PROJECT}:environment")
    doc = plan_document(ev, stack, mode, environment=env if isinstance(env, str) else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"plan-{stack}.json"
    md_path = out_dir / f"plan-{stack}.md"
    json_path.write_text(render_json(doc))
    md_path.write_text(render_markdown(doc))
    return doc, json_path, md_path


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="a stack with a Pulumi.<stack>.yaml (here: " + ", ".join(available_stacks()) + ")")
    parser.add_argument("--mode", choices=("preview", "update"), default="preview",
                        help="preview: computed values unknown, as a first preview (default); update: the mocks' values")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build", help="output folder (default: build/)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)  # where Pulumi.<stack>.yaml live
    args = parser.parse_args(list(argv) if argv is not None else None)
    started = time.perf_counter()
    try:
        doc, json_path, md_path = write_plan(args.stack, args.mode, args.out, args.root)
    except UnknownStack as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_text(doc))
    print(f"wrote {_rel(json_path)} and {_rel(md_path)} in {time.perf_counter() - started:.1f}s")
    return 1 if doc["policy"]["violations"] else 0


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
