"""Benchmarks: `make bench` (python -m offline.bench) writes build/bench.json and prints it.

(a) Evaluation cost. Each shipped stack (every Pulumi.<stack>.yaml) and a minimal
    one-cluster program — one ResourceGroup, one ManagedCluster, the kubeconfig invoke and a
    Kubernetes provider, :func:`floor_program` — are evaluated the same way, under the
    project's mocks in preview mode (what ``make plan`` does). The floor is what any AKS
    program costs here; ``ratioToFloor`` is stack / floor.

    * time: wall-clock seconds of ``offline.evaluate.evaluate`` (perf_counter), after one
      warm-up evaluation (reported as ``firstRunSeconds``: it includes importing the
      program's modules); median, min and max of ``--reps`` repetitions, and the median CPU
      time of this process (process_time), which other load on the machine disturbs less;
      ``gcFrozenMedianSeconds``: the same after ``gc.freeze()`` of everything alive before
      the run (the imported modules), i.e. without the cyclic GC re-scanning them;
    * memory, two honest measures: ``peakTracedMiB`` is the peak of Python heap allocations
      during one evaluation (tracemalloc; excludes memory that C extensions allocate
      outside Python's allocator, e.g. gRPC/protobuf arenas), measured in its own pass
      because tracemalloc slows the code it traces; ``rssMiB`` (unless --no-rss) is the
      peak resident set size (VmHWM) of a fresh subprocess that evaluates the program twice
      — interpreter and imports included, which dominate it — and ``rssAfterFirstRunMiB``
      that peak after the first evaluation, so the difference is what a repeat run adds.

(b) The test suite's wall time: ``pytest -q tests -p no:cacheprovider`` in a subprocess,
    without tests/test_bench.py (which runs this module). ``--no-suite`` skips it.

(c) The modelled deployment critical path of each stack, from its update-mode evaluation.
    Nodes are the custom resources, weighted by the typical create durations of
    :mod:`offline.durations` (estimates; the table is written into the JSON). A resource
    starts when everything it waits for has finished — its dependencies, property
    dependencies, provider and custom parent (:meth:`offline.plan.Graph.direct_edges`) —
    with unlimited parallelism. The critical path is the longest chain: the modelled
    duration of a first ``pulumi up``.

    ``ideal`` is the floor for the same stack: for each ManagedCluster, its create duration
    plus the longest chain among the resources that transitively wait for it (the ones that
    truly require the cluster), assuming everything that does not need the cluster runs
    while it is being created; the largest over clusters. ``gapSeconds`` = critical path −
    ideal is time the graph spends on work that could overlap the cluster. A stack without
    a ManagedCluster (an existing cluster) has no ideal (null).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from offline import durations
from offline.evaluate import REPO_ROOT, Evaluation, available_stacks, evaluate, evaluate_stack, load_stack
from offline.plan import Graph

MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
FLOOR_DESCRIPTION = "one ResourceGroup + one ManagedCluster + the kubeconfig invoke + a Kubernetes provider"
MIB = 1024 * 1024


# --- (a) the floor program and the measurements -----------------------------------------------


def floor_program() -> dict[str, Any]:
    """The least an AKS platform program registers: a cluster the provider can reach."""
    import pulumi
    import pulumi_kubernetes as k8s
    from pulumi_azure_native import containerservice, resources

    group = resources.ResourceGroup("floor-rg", resource_group_name="rg-floor", location="westeurope")
    cluster = containerservice.ManagedCluster(
        "floor-aks",
        resource_name_="aks-floor",
        resource_group_name=group.name,
        location="westeurope",
        dns_prefix="aks-floor",
        identity=containerservice.ManagedClusterIdentityArgs(type="SystemAssigned"),
        agent_pool_profiles=[
            containerservice.ManagedClusterAgentPoolProfileArgs(
                name="system", mode="System", vm_size="Standard_D4ds_v5", count=1, os_type="Linux"
            )
        ],
        oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=True),
        security_profile=containerservice.ManagedClusterSecurityProfileArgs(
            workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(enabled=True)
        ),
    )
    creds = containerservice.list_managed_cluster_admin_credentials_output(
        resource_group_name=group.name,
        resource_name=cluster.name,
        opts=pulumi.InvokeOutputOptions(depends_on=[cluster]),
    )
    kubeconfig = pulumi.Output.secret(creds.kubeconfigs.apply(lambda kcs: base64.b64decode(kcs[0].value).decode()))
    k8s.Provider("floor-k8s", kubeconfig=kubeconfig)
    return {"kubeconfig": kubeconfig}


def evaluate_floor(preview: bool = True) -> Evaluation:
    return evaluate(floor_program, stack="floor", preview=preview)


def _stack_runner(stack: str, mode: str = "preview") -> Callable[[], Evaluation]:
    load_stack(stack)  # fail early and clearly on an unknown stack
    return lambda: evaluate_stack(stack, mode)


def measure(run: Callable[[], Evaluation], reps: int) -> dict[str, Any]:
    """Time (warm-up + `reps` timed runs) and tracemalloc peak (one more run) of `run`."""
    gc.collect()
    started = time.perf_counter()
    ev = run()
    first = time.perf_counter() - started
    times, cpu = [], []
    for _ in range(max(1, reps)):
        gc.collect()
        started, cpu_started = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    # The same with the objects alive before the run (imported modules: pulumi_azure_native
    # alone tracks ~10^5) moved out of the collector's reach, as gc.freeze() after the
    # imports would in a test session: how much of the time is the cyclic GC scanning them.
    frozen = []
    gc.collect()
    gc.freeze()
    try:
        for _ in range(max(1, reps)):
            started = time.perf_counter()
            run()
            frozen.append(time.perf_counter() - started)
    finally:
        gc.unfreeze()
    gc.collect()
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "resources": sum(1 for r in ev.resources if r.custom),
        "registrations": len(ev.resources),
        "repetitions": len(times),
        "medianSeconds": round(statistics.median(times), 4),
        "minSeconds": round(min(times), 4),
        "maxSeconds": round(max(times), 4),
        "cpuMedianSeconds": round(statistics.median(cpu), 4),
        "gcFrozenMedianSeconds": round(statistics.median(frozen), 4),
        "firstRunSeconds": round(first, 4),
        "peakTracedMiB": round(peak / MIB, 2),
    }


_RSS_SCRIPT = r"""
import json, sys
sys.path.insert(0, {root!r})

def hwm_kib():
    # VmHWM: this process's peak RSS. (Not getrusage's ru_maxrss: Linux carries the parent's
    # high-water mark across fork+exec into it, so a child would report the bench's own peak.)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")

from offline import bench
from offline.evaluate import evaluate_stack
target = {target!r}
run = (lambda: bench.evaluate_floor(preview=True)) if target == "(floor)" else (lambda: evaluate_stack(target, "preview"))
run()  # imports every module the program uses
before = hwm_kib()
run()
print(json.dumps({{"afterImports": before, "after": hwm_kib()}}))
"""


def measure_rss(target: str) -> dict[str, Any]:
    """Peak RSS (VmHWM, Linux) of a fresh process that evaluates `target` twice.

    ``rssMiB``: the whole process (interpreter, imports, two evaluations).
    ``rssAfterFirstRunMiB``: the peak after the first evaluation, which imported everything.
    """
    if not Path("/proc/self/status").exists():
        return {"rss": "unavailable (needs Linux /proc)"}
    script = _RSS_SCRIPT.format(root=str(REPO_ROOT), target=target)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"rssError": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "rssMiB": round(data["after"] / 1024, 1),
        "rssAfterFirstRunMiB": round(data["afterImports"] / 1024, 1),
    }


def _ratio(a: float, b: float) -> Optional[float]:
    return round(a / b, 2) if b else None


def evaluation_costs(stacks: Sequence[str], reps: int, rss: bool) -> dict[str, Any]:
    floor = measure(lambda: evaluate_floor(preview=True), reps)
    if rss:
        floor.update(measure_rss("(floor)"))
    result: dict[str, Any] = {"mode": "preview", "floor": {"program": FLOOR_DESCRIPTION, **floor}, "stacks": {}}
    for stack in stacks:
        m = measure(_stack_runner(stack), reps)
        if rss:
            m.update(measure_rss(stack))
        m["ratioToFloor"] = {
            "time": _ratio(m["medianSeconds"], floor["medianSeconds"]),
            "cpu": _ratio(m["cpuMedianSeconds"], floor["cpuMedianSeconds"]),
            "peakTraced": _ratio(m["peakTracedMiB"], floor["peakTracedMiB"]),
            "resources": _ratio(m["resources"], floor["resources"]),
        }
        if rss and "rssMiB" in m and "rssMiB" in floor:
            m["ratioToFloor"]["rss"] = _ratio(m["rssMiB"], floor["rssMiB"])
        result["stacks"][stack] = m
    return result


# --- (b) the test suite ------------------------------------------------------------------------

SUITE_COMMAND = ["-m", "pytest", "-q", "tests", "-p", "no:cacheprovider", "--ignore=tests/test_bench.py"]


def suite_time(timeout: int = 1800) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *SUITE_COMMAND], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if re.search(r"\b(passed|failed|error|no tests ran)\b", line)), "")
    return {
        "command": "python " + " ".join(SUITE_COMMAND),
        "wallSeconds": round(seconds, 2),
        "exitCode": proc.returncode,
        "summary": summary.strip("= "),
    }


# --- (c) the modelled critical path ------------------------------------------------------------


def longest_path(weights: Mapping[str, float], waits_for: Mapping[str, Iterable[str]]) -> tuple[float, list[str]]:
    """The heaviest chain of a DAG: (total weight, nodes from first to last).

    `weights[n]` is node n's duration; `waits_for[n]` the nodes n starts after (edges to
    nodes outside `weights` are ignored). Ties go to the lexicographically smallest node,
    so the answer is deterministic. Raises ValueError on a cycle.
    """
    finish: dict[str, float] = {}
    best_pred: dict[str, Optional[str]] = {}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str) -> float:
        if state.get(node) == 2:
            return finish[node]
        if state.get(node) == 1:
            raise ValueError(f"dependency cycle through {node}")
        state[node] = 1
        start, pred = 0.0, None
        for p in sorted(set(waits_for.get(node, ())) & weights.keys()):
            f = visit(p)
            if f > start:
                start, pred = f, p
        finish[node] = start + weights[node]
        best_pred[node] = pred
        state[node] = 2
        return finish[node]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(weights) + 100))
    for node in sorted(weights):
        visit(node)
    if not weights:
        return 0.0, []
    end = min(weights, key=lambda n: (-finish[n], n))
    chain = [end]
    while best_pred[chain[-1]] is not None:
        chain.append(best_pred[chain[-1]])  # type: ignore[arg-type]
    return finish[end], chain[::-1]


def downstream(waits_for: Mapping[str, Iterable[str]], anchor: str) -> set[str]:
    """Every node that transitively waits for `anchor` (not `anchor` itself)."""
    dependents: dict[str, set[str]] = {}
    for node, preds in waits_for.items():
        for p in preds:
            dependents.setdefault(p, set()).add(node)
    seen: set[str] = set()
    todo = [anchor]
    while todo:
        for nxt in dependents.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    seen.discard(anchor)
    return seen


def ideal_path(
    weights: Mapping[str, float], waits_for: Mapping[str, Iterable[str]], anchors: Iterable[str]
) -> Optional[tuple[float, list[str]]]:
    """Max over anchors of: anchor's weight + the longest chain among the nodes that wait for it."""
    best: Optional[tuple[float, list[str]]] = None
    for anchor in sorted(anchors):
        sub = {anchor} | downstream(waits_for, anchor)
        sub_weights = {n: weights[n] for n in sub if n in weights}
        sub_edges = {n: [p for p in waits_for.get(n, ()) if p in sub] for n in sub}
        # Inside the subgraph every node waits (transitively) for the anchor; start it at 0.
        total, chain = longest_path(sub_weights, sub_edges)
        if chain and chain[0] != anchor:  # only possible for an isolated anchor
            chain = [anchor, *chain]
        if best is None or total > best[0]:
            best = (total, chain)
    return best


def deployment_model(ev: Evaluation, overrides: Optional[Mapping[str, float]] = None) -> dict[str, Any]:
    graph = Graph(ev)
    custom = [r for r in ev.resources if r.custom]
    weights: dict[str, float] = {}
    why: dict[str, str] = {}
    for reg in custom:
        weights[reg.urn], why[reg.urn] = durations.duration_of(reg.type, reg.inputs, overrides)
    waits_for = {reg.urn: sorted(graph.direct_edges(reg.urn)) for reg in custom}
    total, chain = longest_path(weights, waits_for)

    def describe(nodes: list[str]) -> list[dict[str, Any]]:
        out, clock = [], 0.0
        for urn in nodes:
            reg = graph.by_urn[urn]
            out.append(
                {
                    "name": reg.name,
                    "type": reg.type,
                    "seconds": weights[urn],
                    "basis": why[urn],
                    "finishesAt": round(clock + weights[urn], 1),
                }
            )
            clock += weights[urn]
        return out

    anchors = [r.urn for r in custom if r.type == MANAGED_CLUSTER]
    ideal = ideal_path(weights, waits_for, anchors) if anchors else None
    return {
        "criticalPathSeconds": round(total, 1),
        "criticalPathMinutes": round(total / 60, 1),
        "chain": describe(chain),
        "ideal": None
        if ideal is None
        else {
            "seconds": round(ideal[0], 1),
            "minutes": round(ideal[0] / 60, 1),
            "chain": describe(ideal[1]),
        },
        "gapSeconds": None if ideal is None else round(total - ideal[0], 1),
        "serialSeconds": round(sum(weights.values()), 1),
        "resources": len(custom),
    }


IDEAL_DEFINITION = (
    "For each ManagedCluster: its create duration plus the longest chain among the resources that "
    "transitively wait for it (dependencies, property dependencies, provider, custom parent), assuming "
    "everything that does not need the cluster runs while it is created; the maximum over clusters. "
    "Null when the stack creates no cluster."
)
CRITICAL_PATH_DEFINITION = (
    "Longest chain of custom resources, each weighted by offline/durations.py, where a resource starts "
    "when everything it waits for (dependencies, property dependencies, provider, custom parent) has "
    "finished; unlimited parallelism; update-mode evaluation under the mocks."
)


# --- the report ----------------------------------------------------------------------------------


def run_bench(
    stacks: Optional[Sequence[str]] = None, reps: int = 5, suite: bool = True, rss: bool = True
) -> dict[str, Any]:
    stacks = list(stacks) if stacks is not None else available_stacks()
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "cpus": os.cpu_count(),
        },
        "evaluation": evaluation_costs(stacks, reps, rss),
        "suite": suite_time() if suite else {"skipped": True},
        "deployment": {
            "definition": CRITICAL_PATH_DEFINITION,
            "idealDefinition": IDEAL_DEFINITION,
            "durations": durations.table(),
            "stacks": {stack: deployment_model(evaluate_stack(stack, "update")) for stack in stacks},
        },
    }
    report["benchProcess"] = {
        # ru_maxrss (KiB on Linux): this process's peak, every stack and repetition included.
        "maxRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wallSeconds": round(time.perf_counter() - started, 2),
    }
    return report


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline.bench", description="Write build/bench.json.")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per program (median reported)")
    parser.add_argument("--stacks", nargs="*", help="default: every Pulumi.<stack>.yaml")
    parser.add_argument("--no-suite", action="store_true", help="skip timing the test suite")
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measurements")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "bench.json")
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = run_bench(args.stacks, args.reps, suite=not args.no_suite, rss=not args.no_rss)
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text, end="")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
