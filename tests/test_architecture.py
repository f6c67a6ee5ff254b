"""The import graph keeps the pipeline's stages layered, acyclic and behind their public faces.

nnrag is a stack of stage packages: the sandbox at the bottom, then the index, extraction,
the three consumers of extracted code (search, ladder, train), the pipelines that drive them
(mutate, generate), the Python API and, on top, the command line. A stage may use what lies
below it, never what lies above or beside it: that is what lets each one be tested, replaced
and reasoned about alone. This test reads every ``import`` statement (at any depth, function
bodies included, ``if TYPE_CHECKING:`` blocks excluded) with :mod:`ast`, so a lazy import
inside a function cannot hide an upward edge. Ruff's ``TID`` rules warn early about a few
private modules; this test is the complete rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nnrag"
SKIP = (PACKAGE / "examples" / "zoo",)  # example source to index, never imported

# Modules every stage may import (and that import nothing but each other).
BASE = frozenset({"config", "exceptions", "logging", "_imports", "_version", "examples",
                  "_sqlite"})
BASE_RANK = -1
RANKS: dict[str, int] = {
    "sandbox": 0,
    "index": 1,
    "extract": 2,
    "search": 3, "ladder": 3, "train": 3,
    "mutate": 4, "generate": 4, "predict": 4, "tune": 4, "learn": 4,
    "api": 5,  # nnrag/__init__.py, nnrag/workspace.py and their helpers
    "cli": 6,
}
API_MODULES = frozenset({"nnrag", "nnrag.workspace", "nnrag._workspace",
                         "nnrag._workspace_train", "nnrag.tune_sources"})

# Edges that break a rule today in files this change does not own. Each entry is
# (importing module, imported module); the lead empties this set when the owners' fixes land.
# An entry that no longer occurs fails the test, so the set cannot outlive its reason.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Edge:
    """One import statement: who imports what, and where it is written."""

    source: str  # dotted module that contains the statement
    target: str  # dotted module it imports
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield from _imports_in(stmt)
            continue
        yield from _imports_in(child)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _imports(node)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package file of this checkout."""
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _absolute(module: str | None, level: int, source: str, is_package: bool) -> str:
    if not level:
        return module or ""
    parts = source.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join([*anchor, *([module] if module else [])])


def edges_of(path: Path) -> list[Edge]:
    """The ``nnrag`` modules that ``path`` imports, one edge per imported module."""
    source = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Edge] = []
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _absolute(node.module, node.level, source, is_package)
            # ``from pkg import sub`` imports the module ``pkg.sub`` when there is one.
            targets = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base
                       for a in node.names]
        for target in dict.fromkeys(targets):
            if target == "nnrag" or target.startswith("nnrag."):
                found.append(Edge(source, target, path, node.lineno))
    return found


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if not any(p.is_relative_to(s) for s in SKIP))


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return [e for path in python_files(PACKAGE) for e in edges_of(path)]


def stage_of(module: str) -> str:
    """``index`` for ``nnrag.index._store``; ``base`` for config & co; ``api`` for the API."""
    if module in API_MODULES:
        return "api"
    top = module.split(".")[1]
    return "base" if top in BASE else top


def rank_of(stage: str) -> int:
    return BASE_RANK if stage == "base" else RANKS[stage]


def _check(found: list[tuple[Edge, str]]) -> list[str]:
    """Failure lines for the edges that KNOWN_VIOLATIONS does not excuse."""
    return [f"{e.where()}: {e.source} -> {e.target}: {why}" for e, why in found
            if (e.source, e.target) not in KNOWN_VIOLATIONS]


def test_every_module_belongs_to_a_stage() -> None:
    modules = {module_name(p) for p in python_files(PACKAGE)}
    unmapped = sorted(m for m in modules if stage_of(m) not in RANKS and stage_of(m) != "base")
    assert not unmapped, (
        "modules in no stage (add their package to RANKS in tests/test_architecture.py):\n  "
        + "\n  ".join(unmapped)
    )


def stage_violations(edges: list[Edge]) -> list[tuple[Edge, str]]:
    """Edges into a stage of higher rank, or into a sibling stage of the same rank."""
    found: list[tuple[Edge, str]] = []
    for e in edges:
        src, dst = stage_of(e.source), stage_of(e.target)
        if src == dst or dst == "base":
            continue
        if rank_of(dst) > rank_of(src):
            found.append((e, f"{src} (rank {rank_of(src)}) imports {dst} (rank {rank_of(dst)}), "
                             "a stage above it"))
        elif rank_of(dst) == rank_of(src):
            found.append((e, f"{src} imports its sibling stage {dst} (both rank {rank_of(src)}); "
                             "move the shared code down a stage or inject it"))
    return found


def test_imports_point_down_the_stages(edges: list[Edge]) -> None:
    lines = _check(stage_violations(edges))
    assert not lines, "imports that do not point down the stages:\n  " + "\n  ".join(lines)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
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
                components.append(_cycle_through(graph, sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component (shortest from its first node)."""
    members, start = set(component), component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ()) & members):
                if nxt == start:
                    cycle = [node]
                    while cycle[-1] != start:
                        cycle.append(parents[cycle[-1]])
                    return [*reversed(cycle), start]
                if nxt not in parents:
                    parents[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component


def test_find_cycles_reports_a_concrete_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(edges: list[Edge]) -> None:
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.target != e.source:
            graph.setdefault(e.source, set()).add(e.target)
    cycles = find_cycles(graph)
    where = {(e.source, e.target): e.where() for e in edges}
    lines = [" -> ".join(c) + "\n      " + ", ".join(where[pair] for pair in pairwise(c))
             for c in cycles]
    assert not lines, "import cycles (module-level, function-local imports included):\n  " + (
        "\n  ".join(lines))


def private_violations(edges: list[Edge]) -> list[tuple[Edge, str]]:
    """Imports of a stage's ``_private`` modules from outside that stage.

    The owner is the stage (``nnrag.ladder``), not the innermost package: a stage's
    subpackages (``nnrag.ladder.rules``, ``nnrag.generate.backends``) organise its inside,
    and the stage's own modules may use their private parts; the rest of nnrag may not.
    """
    found = []
    for e in edges:
        parts = e.target.split(".")
        for i, part in enumerate(parts[1:], 1):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:min(i, 2)])
                if not (e.source == owner or e.source.startswith(owner + ".")):
                    found.append((e, f"imports private module {'.'.join(parts[:i + 1])} from "
                                     f"outside {owner}; import the public name from {owner}"))
                break
    return found


def test_private_modules_stay_inside_their_package(edges: list[Edge]) -> None:
    lines = _check(private_violations(edges))
    assert not lines, "imports of another package's _private module:\n  " + "\n  ".join(lines)


def test_benchmarks_use_public_names_only() -> None:
    bench = [e for path in python_files(ROOT / "benchmarks") for e in edges_of(path)]
    lines = _check(private_violations(bench))
    assert not lines, "benchmarks importing _private modules:\n  " + "\n  ".join(lines)


def test_known_violations_still_occur(edges: list[Edge]) -> None:
    """An excuse for an edge that is gone must go too."""
    present = {(e.source, e.target) for e in edges}
    stale = sorted(KNOWN_VIOLATIONS - present)
    assert not stale, "KNOWN_VIOLATIONS entries that no longer occur (delete them):\n  " + (
        "\n  ".join(f"{a} -> {b}" for a, b in stale))


def _edge(source: str, target: str) -> Edge:
    return Edge(source, target, PACKAGE / "x.py", 1)


def test_the_checker_flags_upward_sibling_and_private_edges() -> None:
    bad = [_edge("nnrag.index._store", "nnrag.search"), _edge("nnrag.train.engine", "nnrag.ladder"),
           _edge("nnrag.config", "nnrag.index"), _edge("nnrag.generate.pipeline", "nnrag.mutate")]
    good = [_edge("nnrag.cli._index", "nnrag.workspace"),
            _edge("nnrag.train.engine", "nnrag.extract"),
            _edge("nnrag.sandbox._worker", "nnrag.exceptions"),
            _edge("nnrag.index", "nnrag.index._store")]
    assert [e for e, _ in stage_violations(bad + good)] == bad
    private = [_edge("nnrag.search._searcher", "nnrag.index._store"),
               _edge("nnrag.workspace", "nnrag.train._trial"),
               _edge("nnrag.mutate._engine", "nnrag.generate.backends._x"),
               _edge("nnrag.cli._index", "nnrag.ladder.rules._shapes")]
    fine = [_edge("nnrag.index", "nnrag.index._store"), _edge("nnrag.cli", "nnrag._version"),
            _edge("nnrag.generate.backends.hf", "nnrag.generate.backends._x"),
            _edge("nnrag.ladder._adapt", "nnrag.ladder.rules._shapes")]
    assert [e for e, _ in private_violations(private + fine)] == private


def test_the_parser_sees_function_local_imports_and_skips_type_checking() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from nnrag.cli import main\nelse:\n    import nnrag.index\n"
        "def f():\n    from nnrag.extract import extract\n    from . import _runner\n"
    )
    names = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in _imports(tree)]
    assert names == ["typing", "nnrag.index", "nnrag.extract", None]
    assert _absolute(None, 1, "nnrag.sandbox._worker", False) == "nnrag.sandbox"
    assert _absolute("x", 2, "nnrag.index", True) == "nnrag.x"
