"""The package's import graph: no cycles and no upward imports, lazy imports included.

    python tests/test_architecture.py [PACKAGE_DIR]   # prints levels, cycles, upward imports

An edge A -> B means module A imports module B (a package's `__init__` counts as the
package). Eager edges are module-level imports; lazy edges are imports inside functions,
which hide a dependency from Python's import order but not from a reader, so both count. A
module's level is the length of the longest import chain below it; an upward import is a
lazy edge that closes a cycle (a dependency pointing back up the levels).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ienet_tf"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The package module `name` refers to (a module, or the package owning a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, str]]:
    """{module: {imported module: "eager" | "lazy"}} for the package under `root`."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(files)
    graph: dict[str, dict[str, str]] = {name: {} for name in modules}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        lazy_nodes = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            kind = "lazy" if id(node) in lazy_nodes else "eager"
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is None:
                    continue
                # Importing a submodule runs every package __init__ above it first, except
                # those above the importing module too (already being imported).
                parts = resolved.split(".")
                for end in range(1, len(parts) + 1):
                    imported = ".".join(parts[:end])
                    if imported == name or name.startswith(imported + "."):
                        continue
                    if graph[name].get(imported) != "eager":
                        graph[name][imported] = kind
    return graph


def _sccs(graph: dict[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def analyse(root: Path = PACKAGE) -> dict:
    """Levels (the longest import chain below a module, lazy imports included), cycles
    (strongly connected modules), and upward imports: the lazy edges inside a cycle, which
    Python's import order hides but a reader does not."""
    graph = import_graph(root)
    cycles = _sccs(graph)
    in_cycle = {module: i for i, cycle in enumerate(cycles) for module in cycle}
    upward = sorted(
        (m, t)
        for m, targets in graph.items()
        for t, kind in targets.items()
        if kind == "lazy" and m in in_cycle and in_cycle[m] == in_cycle.get(t)
    )
    levels: dict[str, int] = {}

    def level(module, seen=()):
        if module in levels:
            return levels[module]
        below = [level(t, (*seen, module)) for t in graph[module] if t not in seen]
        levels[module] = 1 + max(below, default=-1)
        return levels[module]

    for module in graph:
        level(module)
    return {"levels": levels, "cycles": cycles, "upward": upward, "graph": graph}


def test_the_package_has_no_import_cycle():
    assert analyse()["cycles"] == []


def test_no_module_imports_upward_lazily():
    assert analyse()["upward"] == []


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else PACKAGE
    result = analyse(root)
    by_level: dict[int, list[str]] = {}
    for module, lvl in result["levels"].items():
        by_level.setdefault(lvl, []).append(module)
    for lvl in sorted(by_level):
        print(f"level {lvl}: {', '.join(sorted(by_level[lvl]))}")
    print(f"cycles ({len(result['cycles'])}):")
    for cycle in result["cycles"]:
        print("  " + " <-> ".join(cycle))
    print(f"upward (lazy) imports ({len(result['upward'])}):")
    for source, target in result["upward"]:
        print(f"  {source} -> {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
