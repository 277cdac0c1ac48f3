"""The house rules: imports run one way (components -> stacks -> policy -> offline), with no cycle.

The import graph is read from the source with `ast`, every `import` statement anywhere in a
module (top level, inside functions, under `try`/`if TYPE_CHECKING`), so an import hidden in a
function counts as much as one at the top. An edge goes to the most specific project module
named: `from stacks.config import X` -> stacks.config; `from stacks import native` ->
stacks.native; `from stacks import build` -> stacks (its __init__). Importing a submodule also
runs its package's __init__, which Python handles in order; that implicit edge is not counted.

policy/ is below offline/: the pack's rules (policy/rules.py) run inside Pulumi's policy
runtime, which loads policy/ on its own (policy/requirements.txt, no stacks/ or offline/), so
policy/ may import nothing of the program; offline/ evaluates stacks and runs those rules on
what the mocks record (offline/policy_check.py), so it imports policy/, never the reverse.
Both checks also run on the packages (each package one node, an edge wherever one of its
modules imports another package's), so two packages that import each other through
different modules (offline.plan -> policy.x -> offline.evaluate) fail as a cycle too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Lower number = lower layer. A module may import its own layer or below, never above.
LAYERS = {"components": 0, "stacks": 1, "policy": 2, "offline": 3, "__main__": 4}
PACKAGES = ("components", "stacks", "offline", "policy")


def project_modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for the program's packages and __main__.py."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    if (root / "__main__.py").is_file():
        modules["__main__"] = root / "__main__.py"
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted `name` that is a project module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                target = _resolve(f"{source}.{alias.name}", modules) or _resolve(source, modules)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} (layer {source.split('.')[0]}) imports {target} (layer {target.split('.')[0]})"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to top-level packages (a package's own imports dropped)."""
    packages: dict[str, set[str]] = {}
    for source, targets in graph.items():
        top = source.split(".")[0]
        packages.setdefault(top, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != top)
    return packages


def test_every_package_has_a_layer_of_its_own():
    """One layer per package: a shared layer would let two packages import each other."""
    assert sorted(LAYERS.values()) == list(range(len(LAYERS)))
    assert set(PACKAGES) | {"__main__"} == set(LAYERS)


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph(ROOT)) == []


def test_no_package_imports_a_higher_layer():
    assert upward_imports(package_graph(import_graph(ROOT))) == []


def test_no_import_cycle_even_through_function_level_imports():
    assert cycles(import_graph(ROOT)) == []


def test_no_import_cycle_between_packages():
    assert cycles(package_graph(import_graph(ROOT))) == []


def test_components_know_nothing_of_the_stack_file():
    graph = import_graph(ROOT)
    assert not [(s, t) for s, ts in graph.items() if s.startswith("components") for t in ts if not t.startswith("components")]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_a_hidden_upward_import_and_a_hidden_cycle(tmp_path):
    """The walker sees imports inside functions, relative imports and `from pkg import module`."""
    _write(
        tmp_path,
        {
            "components/__init__.py": "",
            "components/cluster.py": "def f():\n    from stacks.config import ClusterConfig\n",
            "stacks/__init__.py": "",
            "stacks/config.py": "from ..components import cluster\n",
            "offline/__init__.py": "",
            "offline/evaluate.py": "",
            "offline/plan.py": "import json\n\ndef doc():\n    from policy import check\n",
            "policy/__init__.py": "",
            "policy/check.py": "from offline.evaluate import Evaluation\n",
        },
    )
    graph = import_graph(tmp_path)
    assert graph["components.cluster"] == {"stacks.config"}
    assert upward_imports(graph) == [
        "components.cluster (layer components) imports stacks.config (layer stacks)",
        "policy.check (layer policy) imports offline.evaluate (layer offline)",
    ]
    # No module cycle between offline and policy, but the packages import each other.
    assert cycles(graph) == [["components.cluster", "stacks.config"]]
    packages = package_graph(graph)
    assert cycles(packages) == [["components", "stacks"], ["offline", "policy"]]
    assert upward_imports(packages) == [
        "components (layer components) imports stacks (layer stacks)",
        "policy (layer policy) imports offline (layer offline)",
    ]


@pytest.mark.parametrize("package", ["components", "stacks"])
def test_readme_architecture_table_names_every_module(package):
    """Each module of components/ and stacks/ has a row in the README's table, and each
    path the table names exists."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:\w+/)+\w+\.py)`", table))
    for path in named:
        assert (ROOT / path).is_file(), f"README architecture table names {path}, which does not exist"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"}
    assert sorted(modules - named) == []
