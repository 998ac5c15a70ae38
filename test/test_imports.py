"""Imports only go down: the package's import graph, built with ``ast``, has no cycles.

Two graphs: the imports that run when a module is imported (module level, ``TYPE_CHECKING``
blocks left out) and every import, including the lazy ones inside functions, which still say
which module depends on which. A module imports another when it names it in ``import`` /
``from ... import`` (a ``from package import name`` that names a submodule counts for that
submodule; submodules reaching their own package's ``__init__`` do not count).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ros2_inst3d"

def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph(function_level: bool) -> dict[str, set[str]]:
    """module -> the package modules it imports."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, is_package) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if _type_checking_block(node) or (
                    not function_level and isinstance(node, (ast.FunctionDef,
                                                             ast.AsyncFunctionDef))):
                skip |= {id(child) for child in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = name.split(".") if is_package else name.split(".")[:-1]
                if node.level:
                    base = base[:len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module
                           for a in node.names]
            for target in targets:
                if target in mods and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_graph_sees_the_package():
    graph = import_graph(function_level=True)
    assert len(graph) > 60
    assert "ros2_inst3d.errors" in graph["ros2_inst3d.segmenter"]
    assert "ros2_inst3d.data.batching" in graph["ros2_inst3d.model.inference"]


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_at_import_time():
    assert cycles(import_graph(function_level=False)) == []


def test_no_import_cycle_counting_lazy_imports():
    assert cycles(import_graph(function_level=True)) == []


def test_error_types_and_file_constants_sit_below_their_users():
    graph = import_graph(function_level=True)
    assert graph["ros2_inst3d.errors"] == set()
    assert graph["ros2_inst3d.schema"] == {"ros2_inst3d.errors"}
    assert "ros2_inst3d.segmenter" not in graph["ros2_inst3d.model.inference"]
    assert "ros2_inst3d.evaluation" not in graph["ros2_inst3d.data.datasets"]
    model_modules = [m for m in graph if m.startswith("ros2_inst3d.model.")]
    assert not any("ros2_inst3d.data.datasets" in graph[m] for m in model_modules)
    synthetic = [m for m in graph if m.startswith("ros2_inst3d.synthetic")]
    assert len(synthetic) >= 5
    assert not any(m.startswith("ros2_inst3d.synthetic") for d in ("datasets", "batching")
                   for m in graph[f"ros2_inst3d.data.{d}"])
