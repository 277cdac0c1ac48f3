"""`make plan`: the offline preview's files, their determinism, masking and the component graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi_azure_native import resources

from offline.evaluate import PROJECT, REPO_ROOT, evaluate
from offline.plan import (
    ROOT_COMPONENT,
    available_stacks,
    main,
    plan_document,
    render_json,
    render_markdown,
    write_plan,
)
from policy.rules import SECRET, UNKNOWN_MARK

STACKS = available_stacks()


def test_there_are_stacks_to_plan():
    assert "dev" in STACKS and "prod" in STACKS


# `write_plan` once per (stack, mode) per session (per xdist worker): the tests that only read a
# plan share it, and the determinism tests compare their own fresh runs against it.
_PLANS: dict[tuple[str, str], tuple[dict, Path, Path]] = {}


@pytest.fixture
def planned(tmp_path_factory):
    def get(stack: str, mode: str) -> tuple[dict, Path, Path]:
        if (stack, mode) not in _PLANS:
            _PLANS[stack, mode] = write_plan(stack, mode, tmp_path_factory.mktemp(f"plan-{stack}-{mode}"))
        return _PLANS[stack, mode]

    return get


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("mode", ["preview", "update"])
def test_two_runs_write_the_same_bytes(tmp_path, planned, stack, mode):
    """A second `write_plan` in this process, after whatever else the session ran since the
    first, writes the first's bytes."""
    _, *first = planned(stack, mode)
    write_plan(stack, mode, tmp_path)
    for path in first:
        assert path.read_bytes() == (tmp_path / path.name).read_bytes(), path.name


PLAN_EVERY_STACK = """
import runpy, sys
print("hash probe", hash({probe!r}))
for stack in {stacks!r}:
    sys.argv = ["offline.plan", stack, "--out", {out!r}]
    try:
        runpy.run_module("offline.plan", run_name="__main__", alter_sys=True)  # = python -m offline.plan
    except SystemExit as e:
        if e.code:
            raise
"""
HASH_PROBE = "aks-platform hash seed probe"


def test_separate_processes_write_the_same_bytes(tmp_path, planned):
    """`python -m offline.plan <stack>` (what `make plan` runs) in a fresh interpreter with
    another hash seed than this one -> the files this process wrote. One interpreter plans
    every stack."""
    out = tmp_path / "fresh"
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = {**os.environ, "PYTHONHASHSEED": seed}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PLAN_EVERY_STACK.format(probe=HASH_PROBE, stacks=STACKS, out=str(out))],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.perf_counter() - started < 10 + 5 * len(STACKS)  # loose: ~1-2 s a stack
    # The two interpreters hash strings differently (a set's or dict's order of str keys could differ).
    assert f"hash probe {hash(HASH_PROBE)}\n" not in proc.stdout and "hash probe " in proc.stdout
    for stack in STACKS:
        assert f"plan {stack} (preview)" in proc.stdout
        assert f"wrote {out}/plan-{stack}.json and {out}/plan-{stack}.md" in proc.stdout
        _, *here = planned(stack, "preview")
        for path in here:
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    assert sorted(p.name for p in out.iterdir()) == sorted(f"plan-{s}.{ext}" for s in STACKS for ext in ("json", "md"))


@pytest.mark.parametrize("stack", STACKS)
def test_plan_lists_every_registration_with_its_edges(planned, shipped, stack):
    """The plan file against another update-mode evaluation of the same stack."""
    doc, json_path, _ = planned(stack, "update")
    ev = shipped(stack)
    on_disk = json.loads(json_path.read_text())
    assert on_disk == json.loads(render_json(doc))
    assert [r["urn"] for r in on_disk["resources"]] == sorted(r.urn for r in ev.resources)
    by_urn = {r.urn: r for r in ev.resources}
    for entry in on_disk["resources"]:
        reg = by_urn[entry["urn"]]
        assert (entry["type"], entry["name"], entry["custom"], entry["protect"]) == (reg.type, reg.name, reg.custom, reg.protect)
        assert entry["dependencies"] == sorted(reg.dependencies)
        assert entry["propertyDependencies"] == reg.property_dependencies
        assert entry["provider"] == (reg.provider.rsplit("::", 1)[0] if reg.provider else "")
        # Everything a resource waits for is a recorded custom resource.
        assert all(by_urn[w].custom for w in entry["waitsFor"])
        assert entry["parent"].startswith(f"urn:pulumi:{stack}::{PROJECT}::")
    summary = on_disk["summary"]
    assert summary["resources"] == sum(1 for r in ev.resources if r.custom)
    assert summary["components"] == sum(1 for r in ev.resources if not r.custom)
    assert sum(c["resources"] for c in on_disk["components"]) == summary["resources"]
    assert on_disk["stack"] == stack and on_disk["mode"] == "update"


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_are_masked_and_never_written(planned, shipped, stack):
    ev = shipped(stack)
    doc, json_path, md_path = planned(stack, "update")
    planned = {r["urn"]: r["inputs"] for r in doc["resources"]}
    masked = 0
    for reg in ev.resources:
        masked += _assert_masked(reg.inputs, planned[reg.urn], reg.name)
    assert masked == doc["summary"]["secretInputs"] >= 1
    assert all(v == SECRET for k, v in doc["outputs"].items() if ev.outputs[k].secret)
    # Every kubeconfig's credentials (the provider's input, the stack output) appear nowhere.
    text = json_path.read_text() + md_path.read_text()
    kubeconfigs = [v for v in _secret_strings([r.inputs for r in ev.resources]) if "kind: Config" in v]
    kubeconfigs += [o.value for o in ev.outputs.values() if o.secret and "kind: Config" in str(o.value)]
    credential_lines = {
        ln.strip() for kc in kubeconfigs for ln in kc.splitlines() if any(k in ln for k in ("-data:", "token:", "--tenant-id"))
    }
    assert credential_lines, "every shipped stack hands the Kubernetes provider a kubeconfig"
    for line in credential_lines:
        assert line not in text


def _secret_strings(value, inside=False) -> list:
    from offline.evaluate import Secret

    if isinstance(value, Secret):
        return _secret_strings(value.value, True)
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_strings(v, inside)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_strings(v, inside)]
    return [value] if inside and isinstance(value, str) else []


def _assert_masked(raw, planned, where) -> int:
    """Wherever the evaluation holds a Secret, the plan holds "[secret]"; returns how many."""
    from offline.evaluate import Secret

    if isinstance(raw, Secret):
        assert planned == SECRET, where
        return 1
    if isinstance(raw, dict):
        assert set(raw) == set(planned), where
        return sum(_assert_masked(raw[k], planned[k], f"{where}.{k}") for k in raw)
    if isinstance(raw, list):
        assert len(raw) == len(planned), where
        return sum(_assert_masked(r, p, f"{where}[{i}]") for i, (r, p) in enumerate(zip(raw, planned, strict=True)))
    assert planned == raw, where
    return 0


def test_preview_mode_shows_unknowns_and_update_mode_none(planned):
    stack = "dev" if "dev" in STACKS else STACKS[0]
    preview, _, _ = planned(stack, "preview")
    update, _, _ = planned(stack, "update")
    assert preview["summary"]["unknownInputs"] > 0
    assert update["summary"]["unknownInputs"] == 0
    cluster = next(r for r in preview["resources"] if r["type"].endswith("ManagedCluster"))
    provider = next(r for r in preview["resources"] if r["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] in (SECRET, UNKNOWN_MARK)
    assert cluster["inputs"]["oidcIssuerProfile"] == {"enabled": True}
    assert json.dumps(preview).count(UNKNOWN_MARK) >= 1


def test_unknown_stack_is_a_clear_error(capsys):
    assert main(["no-such-stack"]) == 2
    err = capsys.readouterr().err
    assert "no-such-stack" in err and f"available: {', '.join(STACKS)}" in err


def test_invalid_mode_is_rejected():
    with pytest.raises(SystemExit):
        main(["dev", "--mode", "apply"])


def test_a_policy_violation_fails_make_plan(tmp_path, capsys):
    """A stack file that says production but does not protect: the plan is written, exit 1."""
    root = tmp_path / "repo"
    root.mkdir()
    base = "prod" if "prod" in STACKS else STACKS[0]
    text = (REPO_ROOT / f"Pulumi.{base}.yaml").read_text().replace("aks-platform:protect: true", "aks-platform:protect: false")
    (root / "Pulumi.unguarded.yaml").write_text(text.replace("environment: dev", "environment: prod"))
    assert main(["unguarded", "--mode", "update", "--root", str(root), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION prod-resources-protected" in out
    doc = json.loads((tmp_path / "out" / "plan-unguarded.json").read_text())
    assert {v["rule"] for v in doc["policy"]["violations"]} == {"prod-resources-protected"}


# --- components and the Mermaid graph, on a program made for it ---------------------------------


class Box(pulumi.ComponentResource):
    def __init__(self, name, opts=None):
        super().__init__("test:index:Box", name, None, opts)


def _component_program():
    """net: a resource group. app: a provider and a config map using it, a child component
    `inner` whose namespace uses the provider and whose config map takes the group's name.
    late: declares depends_on net, but its child does not wait. top: a top-level config map
    using the provider."""
    net = Box("net")
    rg = resources.ResourceGroup("rg", resource_group_name="rg-x", opts=pulumi.ResourceOptions(parent=net))
    app = Box("app")
    provider = k8s.Provider("k8s", kubeconfig=pulumi.Output.secret("kubeconfig"), opts=pulumi.ResourceOptions(parent=app))
    inner = Box("inner", opts=pulumi.ResourceOptions(parent=app))
    k8s.core.v1.Namespace("ns", opts=pulumi.ResourceOptions(parent=inner, provider=provider))
    k8s.core.v1.ConfigMap(
        "cm", data={"group": rg.name}, opts=pulumi.ResourceOptions(parent=inner, provider=provider)
    )
    late = Box("late", opts=pulumi.ResourceOptions(depends_on=[net]))
    resources.ResourceGroup("rg-late", resource_group_name="rg-late", opts=pulumi.ResourceOptions(parent=late))
    k8s.core.v1.ConfigMap("top", data={"a": "b"}, opts=pulumi.ResourceOptions(provider=provider))


def test_components_are_the_nearest_component_ancestor_and_edges_follow_the_resources():
    ev = evaluate(_component_program, stack="test")
    doc = plan_document(ev, "test", "update")
    comp = {c["name"]: c for c in doc["components"]}
    name_of = {c["urn"]: c["name"] for c in doc["components"]}
    res = {r["name"]: r for r in doc["resources"]}
    assert {n: name_of[res[n]["component"]] for n in ("rg", "k8s", "ns", "cm", "rg-late", "top")} == {
        "rg": "net", "k8s": "app", "ns": "inner", "cm": "inner", "rg-late": "late", "top": ROOT_COMPONENT,
    }
    assert {n: c["resources"] for n, c in comp.items()} == {ROOT_COMPONENT: 1, "net": 1, "app": 1, "inner": 2, "late": 1}
    edges = {n: sorted(name_of[d] for d in c["dependsOn"]) for n, c in comp.items()}
    # inner -> app through the provider, inner -> net through a property dependency (rg.name),
    # the stack's top-level config map -> app through its provider.
    assert edges == {ROOT_COMPONENT: ["app"], "net": [], "app": [], "inner": ["app", "net"], "late": []}
    assert [name_of[d] for d in comp["late"]["declaredDependsOnOnly"]] == ["net"]
    md = render_markdown(doc)
    ids = {c["name"]: f"c{i}" for i, c in enumerate(doc["components"])}
    for src, dests in edges.items():
        for dest in dests:
            assert f"  {ids[src]} --> {ids[dest]}" in md
    assert f"  {ids['late']} -.-> {ids['net']}" in md
    assert "```mermaid\nflowchart LR\n" in md
    assert "| inner | `test:index:Box` | 2 | 1× ConfigMap, 1× Namespace |" in md


def test_evaluation_restores_the_sdks_stack_capture_even_when_the_program_fails():
    """offline.evaluate skips the SDK's per-registration stack walk only while it evaluates."""
    from pulumi.runtime import resource as sdk_resource

    capture = sdk_resource._get_stack_trace
    evaluate(_component_program, stack="test")
    assert sdk_resource._get_stack_trace is capture

    def failing():
        Box("half")
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        evaluate(failing, stack="test")
    assert sdk_resource._get_stack_trace is capture
