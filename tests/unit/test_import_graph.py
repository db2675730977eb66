"""The import graph of ``evoroute/``: no cycles (lazy, function-level imports included), no
streamlit anywhere in the library, and ``evoroute.core`` imports nothing else of evoroute.

Every module is parsed with :mod:`ast` (nothing is imported), so an import inside a function
counts the same as one at the top of the file. ``from x import y`` where ``y`` is a module is
an edge to ``x.y``; otherwise to ``x``. ``importlib.import_module("...")`` with a constant name
counts too, and a module that walks a package it imports with ``pkgutil.iter_modules`` (a
registry finding its entries) has an edge to every module of that package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "evoroute"
ROOT = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The evoroute module an import of ``name`` loads (its longest existing prefix)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Every imported name of a module with its line, relative imports resolved; ``from x
    import y`` gives ``x.y`` when that is a module of ``modules``, else ``x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for a in node.names:
                sub = f"{prefix}.{a.name}"
                out.append((sub if sub in modules else prefix, node.lineno))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module",
                                                                            "__import__")))):
            out.append((node.args[0].value, node.lineno))
    return out


def _graph() -> tuple[dict[str, dict[str, int]], dict[str, list[tuple[str, int]]]]:
    """evoroute module -> {imported evoroute module: first line}, and every raw import."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    raw: dict[str, list[tuple[str, int]]] = {}
    for mod, path in modules.items():
        raw[mod] = _imports(mod, path, modules)
        discovers = "pkgutil.iter_modules" in path.read_text(encoding="utf-8")
        for name, line in raw[mod]:
            if name == "evoroute" or name.startswith("evoroute."):
                target = _resolve(name, modules)
                if target is not None and target != mod:
                    graph[mod].setdefault(target, line)
                if discovers and target == name and modules[name].name == "__init__.py":
                    # a registry that imports every module of a package it walks with pkgutil
                    for sub in modules:
                        if sub.rpartition(".")[0] == name:
                            graph[mod].setdefault(sub, line)
    return graph, raw


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Cycles covering every module of each strongly connected component of more than one
    module (Tarjan's components; a shortest cycle through each module not yet shown)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out: list[list[str]] = []
    for comp in comps:
        shown: set[str] = set()
        for start in comp:
            if start not in shown:
                cycle = _one_cycle(graph, set(comp), start)
                shown.update(cycle)
                out.append(cycle)
    return out


def _one_cycle(graph: dict[str, dict[str, int]], comp: set[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` inside its component (breadth first)."""
    prev: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w in comp and w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start, start]


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    hops = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])]
    return "\n    ".join(hops)


def test_the_graph_sees_lazy_imports(tmp_path: Path) -> None:
    """Imports inside functions count; ``from pkg import module`` is an edge to pkg.module,
    ``from module import name`` to the module; relative imports are resolved."""
    src = tmp_path / "probe.py"
    src.write_text("import numpy\n"
                   "def f():\n"
                   "    from evoroute.storage import db\n"
                   "    from evoroute.core.types import ModelInfo\n"
                   "    from . import settings\n"
                   "    import importlib\n"
                   "    importlib.import_module('evoroute.core.errors')\n")
    modules = _modules()
    names = {name for name, _ in _imports("evoroute.probe", src, modules)}
    assert {"evoroute.storage.db", "evoroute.core.types", "evoroute.settings",
            "evoroute.core.errors", "numpy"} <= names
    graph, _ = _graph()
    assert len(graph) > 50


def test_no_import_cycles() -> None:
    graph, _ = _graph()
    cycles = _cycles(graph)
    if cycles:
        text = "\n".join(f"  {' -> '.join(c)}\n    {_describe(graph, c)}" for c in cycles)
        pytest.fail(f"{len(cycles)} import cycle(s) in evoroute/:\n{text}")


def test_library_never_imports_streamlit() -> None:
    _, raw = _graph()
    bad = [f"{m} line {line}: {name}" for m, names in raw.items() for name, line in names
           if name == "streamlit" or name.startswith("streamlit.")]
    assert not bad, "evoroute/ imports streamlit:\n" + "\n".join(bad)


def test_core_imports_nothing_else_of_evoroute() -> None:
    graph, _ = _graph()
    bad = [f"{m} (line {line}) -> {t}" for m, targets in graph.items()
           if m == "evoroute.core" or m.startswith("evoroute.core.")
           for t, line in targets.items()
           if t != "evoroute.core" and not t.startswith("evoroute.core.")]
    assert not bad, "evoroute.core imports the rest of evoroute:\n" + "\n".join(bad)
