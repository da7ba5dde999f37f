"""The layers hold: no import cycle in the package, backends and pools are leaves of the
pipeline, and the outer layers (benchmarks, experiments) use the public API only.

Imports are read from the source with ``ast`` (inside functions too, as Python runs them);
imports of third-party packages do not count.
"""

from __future__ import annotations

import ast
import pathlib
import re

import coreselect

ROOT = pathlib.Path(coreselect.__file__).resolve().parent
REPO = ROOT.parent.parent


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, f in mods.items():
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                mod = ".".join(base + (node.module.split(".") if node.module else []))
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    group.append(w)
                    if w == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_is_in_an_import_cycle():
    cycles = _cycles(_graph())
    assert cycles == [], f"modules importing each other in a cycle: {cycles}"


def _imports_of(prefix: str) -> dict[str, set[str]]:
    graph = _graph()
    return {m: deps for m, deps in graph.items() if m == prefix or m.startswith(prefix + ".")}


def test_backends_are_leaves():
    allowed = {"coreselect.kernels", "coreselect._optional", "coreselect._progress"}
    for module, deps in _imports_of("coreselect.backends").items():
        if module == "coreselect.backends.dask":  # the deprecated alias of coreselect.pools.dask
            assert deps <= {"coreselect.pools.dask"}
            continue
        outside = {d for d in deps if not d.startswith("coreselect.backends")} - allowed
        assert not outside, f"{module} imports {sorted(outside)} (a backend is a leaf)"


def test_pools_know_nothing_of_the_pipeline():
    pipeline = {"coreselect.sampler", "coreselect.clustering", "coreselect.sensitivity",
                "coreselect.adaptive", "coreselect.regression", "coreselect.backends",
                "coreselect.cli", "coreselect.persist", "coreselect.diagnostics"}
    for module, deps in _imports_of("coreselect.pools").items():
        assert not deps & pipeline, f"{module} imports {sorted(deps & pipeline)}"


def test_outer_layers_use_the_public_api():
    # no private attributes of the sampler, no CLI internals, in experiments and benchmarks
    private = re.compile(r"\._(ooc|rng|query_points|device_chunk)\b|cli import _|cli\._")
    files = [*REPO.joinpath("benchmarks").glob("*.py"),
             *REPO.joinpath("experiments").glob("*.py"),
             *ROOT.joinpath("experiments").glob("*.py")]
    assert files
    for f in files:
        text = f.read_text()
        assert not private.search(text), f"{f.name} uses a private name: {private.search(text)}"
