"""`make bench`: the critical-path model on hand-checked graphs, and the report's structure."""

from __future__ import annotations

import json
import os

import pytest

from offline import bench, durations
from offline.bench import deployment_model, downstream, ideal_path, longest_path
from offline.evaluate import evaluate
from offline.plan import available_stacks

# A platform in miniature (durations in seconds, picked so every sum is easy to check by hand):
#
#   rg(5) -> aks(540) -> pool(300) -> k8s(2) -> ns(2) -> certmgr(90) -> aso(150)
#   rg(5) -> id(10) ------------------------------------------------> fic(10)   (fic also waits aks)
#                                    k8s(2) -> kro(45)
WEIGHTS = {"rg": 5, "aks": 540, "pool": 300, "k8s": 2, "ns": 2, "certmgr": 90, "aso": 150, "id": 10, "fic": 10, "kro": 45}
WAITS_FOR = {
    "aks": ["rg"],
    "pool": ["aks"],
    "k8s": ["aks", "pool"],
    "ns": ["k8s"],
    "certmgr": ["ns", "k8s"],
    "aso": ["certmgr", "k8s"],
    "id": ["rg"],
    "fic": ["id", "aks"],
    "kro": ["k8s"],
}


def test_longest_path_on_a_hand_made_graph():
    total, chain = longest_path(WEIGHTS, WAITS_FOR)
    # 5 + 540 + 300 + 2 + 2 + 90 + 150 = 1089
    assert total == 1089
    assert chain == ["rg", "aks", "pool", "k8s", "ns", "certmgr", "aso"]


def test_ideal_is_the_cluster_plus_what_must_follow_it():
    assert downstream(WAITS_FOR, "aks") == {"pool", "k8s", "ns", "certmgr", "aso", "fic", "kro"}
    total, chain = ideal_path(WEIGHTS, WAITS_FOR, ["aks"])
    # 540 + 300 + 2 + 2 + 90 + 150 = 1084: the resource group is the 5 s gap.
    assert total == 1084
    assert chain == ["aks", "pool", "k8s", "ns", "certmgr", "aso"]


def test_a_serialised_addon_shows_in_the_path():
    """If kro (45 s) were made to wait for ASO, the chain grows by exactly 45 s."""
    total, chain = longest_path(WEIGHTS, {**WAITS_FOR, "kro": ["k8s", "aso"]})
    assert total == 1089 + 45 and chain[-2:] == ["aso", "kro"]


def test_parallel_branches_take_the_longer_one_and_ties_are_deterministic():
    weights = {"a": 1, "b": 10, "c": 10, "d": 1}
    total, chain = longest_path(weights, {"b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert total == 12 and chain == ["a", "b", "d"]  # b and c tie: the smaller name wins


def test_edges_to_unknown_nodes_are_ignored_and_cycles_rejected():
    assert longest_path({"x": 3}, {"x": ["not-a-node"]}) == (3, ["x"])
    assert longest_path({}, {}) == (0.0, [])
    with pytest.raises(ValueError, match="cycle"):
        longest_path({"a": 1, "b": 1}, {"a": ["b"], "b": ["a"]})


def test_no_cluster_no_ideal():
    assert ideal_path({"a": 1}, {}, []) is None


def test_durations_distinguish_charts_and_wait_for():
    secs = lambda t, i: durations.duration_of(t, i)[0]  # noqa: E731
    release = durations.HELM_RELEASE
    assert secs(release, {"chart": "azure-service-operator"}) > secs(release, {"chart": "cert-manager"}) > secs(release, {"chart": "kro"})
    assert secs(release, {"chart": "oci://registry.k8s.io/kro/charts/kro"}) == durations.HELM_BY_CHART["kro"]
    assert secs(release, {"chart": "something-else"}) == durations.HELM_DEFAULT_SECONDS
    provider = {"apiVersion": "pkg.crossplane.io/v1", "kind": "Provider", "metadata": {"annotations": {"pulumi.com/waitFor": "x"}}}
    assert secs("kubernetes:pkg.crossplane.io/v1:Provider", provider) == durations.CUSTOM_RESOURCE_WAIT_FOR_SECONDS
    assert secs("kubernetes:pkg.crossplane.io/v1:Provider", {"metadata": {}}) == durations.KUBERNETES_DEFAULT_SECONDS
    assert secs("azure-native:containerservice:ManagedCluster", {}) >= 8 * 60
    assert durations.duration_of("azure-native:containerservice:ManagedCluster", {}, {"azure-native:containerservice:ManagedCluster": 1})[0] == 1


def test_deployment_model_follows_the_recorded_graph():
    """The floor program: group -> cluster -> provider (the kubeconfig invoke waits for the cluster)."""
    model = deployment_model(evaluate(bench.floor_program, stack="floor"))
    assert [step["name"] for step in model["chain"]] == ["floor-rg", "floor-aks", "floor-k8s"]
    by_type = durations.BY_TYPE
    expected = by_type["azure-native:resources:ResourceGroup"] + by_type["azure-native:containerservice:ManagedCluster"] + by_type["pulumi:providers:kubernetes"]
    assert model["criticalPathSeconds"] == expected
    assert [s["name"] for s in model["ideal"]["chain"]] == ["floor-aks", "floor-k8s"]
    assert model["gapSeconds"] == by_type["azure-native:resources:ResourceGroup"]
    assert model["chain"][-1]["finishesAt"] == expected


def test_bench_report_structure_with_tiny_repetitions(tmp_path):
    stacks = available_stacks()
    stack = "dev" if "dev" in stacks else stacks[0]
    out = tmp_path / "bench.json"
    started = _cpu_seconds()
    assert bench.main(["--reps", "1", "--no-suite", "--no-rss", "--stacks", stack, "--out", str(out)]) == 0
    cpu = _cpu_seconds() - started
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "evaluation", "suite", "deployment", "benchProcess"}
    ev = report["evaluation"]
    assert ev["floor"]["program"] == bench.FLOOR_DESCRIPTION and ev["floor"]["resources"] == 3
    for entry in (ev["floor"], ev["stacks"][stack]):
        assert entry["repetitions"] == 1
        assert 0 < entry["minSeconds"] <= entry["medianSeconds"] <= entry["maxSeconds"]
        assert entry["peakTracedMiB"] > 0 and entry["cpuMedianSeconds"] > 0 and entry["gcFrozenMedianSeconds"] > 0
    ratio = ev["stacks"][stack]["ratioToFloor"]
    assert ratio["time"] == round(ev["stacks"][stack]["medianSeconds"] / ev["floor"]["medianSeconds"], 2)
    assert report["suite"] == {"skipped": True}
    model = report["deployment"]["stacks"][stack]
    assert model["chain"] and model["criticalPathSeconds"] == model["chain"][-1]["finishesAt"]
    assert model["ideal"]["seconds"] <= model["criticalPathSeconds"] <= model["serialSeconds"]
    assert model["ideal"]["chain"][0]["type"] == "azure-native:containerservice:ManagedCluster"
    assert report["deployment"]["durations"]["basis"].startswith("estimates")
    assert "ManagedCluster" in report["deployment"]["idealDefinition"]
    # The run costs what it evaluates, relative to an evaluation measured in the same run (CPU
    # time, children included, so other load on the machine does not count and a subprocess
    # it should not start does): per program a warm-up, a timed, a gc-frozen and a traced run
    # (tracemalloc: several times slower), and the stack's update run for the model, ~15-20x
    # the floor's and the stack's evaluations together.
    one_each = ev["floor"]["cpuMedianSeconds"] + ev["stacks"][stack]["cpuMedianSeconds"]
    assert cpu < 50 * one_each, f"bench.main took {cpu:.2f} s CPU, {cpu / one_each:.0f}x one evaluation of the floor and {stack}"


def _cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
