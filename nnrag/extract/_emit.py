"""Render a :class:`Closure` as one self-contained module, byte-identically for equal input.

Layout: provenance header, ``__future__`` import, external imports (sorted), then the
definitions in an order where everything a statement needs while the module is imported
(bases, decorators, defaults, class attributes, constants) comes before it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import libcst as cst

from nnrag._version import __version__
from nnrag.extract._closure import Closure, ClosureBuilder, ExternalImport, Node, def_symbol
from nnrag.extract._local_imports import ImportRewrite
from nnrag.index import Store, resolve_relative


@dataclass(frozen=True)
class Emitted:
    """A scope-closed module and what it was made from."""

    qualname: str
    name: str  # the target's top-level name inside the emitted module
    code: str
    closure_hash: str  # SHA-1 of everything below the header
    definitions: tuple[str, ...]
    imports: tuple[str, ...]
    gaps: tuple[str, ...]
    def_hash: str


class _Rename(ImportRewrite):
    """One pass: renamed names, and function-local imports dropped or made absolute."""

    def __init__(self, mapping: dict[int, str], drop: set[int],
                 absolute: Callable[[int, str | None], str]) -> None:
        super().__init__(drop, absolute)
        self.mapping = mapping

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        new = self.mapping.get(id(original_node))
        return updated_node.with_changes(value=new) if new else updated_node

    def leave_Attribute(self, original_node: cst.Attribute,
                        updated_node: cst.Attribute) -> cst.BaseExpression:
        new = self.mapping.get(id(original_node))
        return cst.Name(new) if new else updated_node


def _statement_key(node: Node) -> tuple[str, int, int]:
    return (node.row["module"], node.row["lineno"], node.row["end_lineno"])


def _rewrite(closure: Closure, node: Node, bound_names: dict[str, str]) -> str:
    mapping: dict[int, str] = {}
    analysis = node.analysis
    for i, ref in enumerate(analysis.refs):
        uses = analysis.ref_nodes[i]
        target_name: str | None = None
        depth = 1
        for (ref_i, d), def_id in node.replace.items():
            if ref_i == i:
                depth = d
                key = node.external_locals.get(i) if def_id == -1 else def_symbol(closure, def_id)
                target_name = closure.names[key] if key else None
        if target_name is None and i in node.external_locals:
            target_name = closure.names[node.external_locals[i]]
        if target_name is None:
            continue
        for nodes in uses:
            if depth == 1 and target_name == ref.name:
                continue
            mapping[id(nodes[depth - 1])] = target_name
    for name, sites in analysis.self_nodes.items():
        new = bound_names.get(name)
        if new and new != name:
            for site in sites:
                mapping[id(site)] = new
    module = node.row["module"]
    is_package = bool(closure.modules.get(module, {}).get("is_package"))

    def absolute(level: int, target: str | None) -> str:
        return resolve_relative(module, is_package, level, target)

    rewrite = _Rename(mapping, node.dropped_imports, absolute)
    edit = mapping or _has_imports(node)
    code = analysis.tree.visit(rewrite).code if edit else analysis.tree.code
    return code.lstrip("\n").rstrip() + "\n"


def _has_imports(node: Node) -> bool:
    """Might the statement hold an import for ImportRewrite to edit? A cheap text check: a
    false positive only costs one more pass."""
    return "import " in node.analysis.tree.code


def _order(closure: Closure,
           groups: dict[tuple[str, int, int], list[Node]]) -> list[tuple[str, int, int]]:
    """Dependencies first; siblings in source order (module, line); the target last."""
    key_of = {n.def_id: _statement_key(n) for n in closure.nodes.values()}
    keys = list(dict.fromkeys(key_of[i] for i in closure.order))
    # Post-order DFS over every dependency gives a readable order ...
    post: list[tuple[str, int, int]] = []
    visited: set[tuple[str, int, int]] = set()

    def visit(k: tuple[str, int, int]) -> None:
        visited.add(k)
        for member in groups[k]:
            for dep in sorted(member.deps, key=lambda d: key_of[d]):  # siblings in source order
                dk = key_of[dep]
                if dk not in visited:
                    visit(dk)
        post.append(k)

    for k in keys:
        if k not in visited:
            visit(k)
    rank = {k: i for i, k in enumerate(post)}
    # ... then a stable topological sort on import-time edges makes it correct.
    needs: dict[tuple[str, int, int], set[tuple[str, int, int]]] = {k: set() for k in keys}
    for k in keys:
        for member in groups[k]:
            needs[k] |= {key_of[d] for d in member.import_deps if key_of[d] != k}
    users: dict[tuple[str, int, int], set[tuple[str, int, int]]] = {k: set() for k in keys}
    for k, deps in needs.items():
        for d in deps:
            users[d].add(k)
    waiting = {k: len(v) for k, v in needs.items()}
    ready = [(rank[k], k) for k in keys if waiting[k] == 0]
    heapq.heapify(ready)
    out: list[tuple[str, int, int]] = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(k)
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (rank[u], u))
    if len(out) < len(keys):  # an import-time cycle cannot run anyway: keep the DFS order
        out += [k for k in post if k not in out]
    return out


def _relative_path(closure: Closure, module: str) -> str:
    """Where the module lives relative to its import root: stable across machines."""
    info = closure.modules.get(module, {})
    suffix = "/__init__.py" if info.get("is_package") else ".py"
    return module.replace(".", "/") + suffix


def _one_binding(imps: Iterable[ExternalImport]) -> list[ExternalImport]:
    """Imports that bind one name to one object (``import torch.nn as nn`` and
    ``from torch import nn``): one of them suffices. ``import a.b`` and ``import a.c`` both
    bind ``a`` but also load different submodules, so those are all kept (and then no
    other form is needed)."""
    out: list[ExternalImport] = []
    for guarded in (False, True):
        group = sorted((i for i in imps if i.type_checking == guarded),
                       key=lambda i: i.statement())
        loaders = [i for i in group if i.name is None and "." in i.module
                   and i.local == i.module.split(".")[0]]
        out += loaders or group[:1]
    return out


def _merge_imports(statements: set[str]) -> list[str]:
    """``import`` lines first, then one ``from m import a, b as c`` line per module."""
    plain = sorted(s for s in statements if s.startswith("import "))
    froms: dict[str, list[str]] = {}
    for s in statements:
        if s.startswith("from "):
            module, _, names = s[5:].partition(" import ")
            froms.setdefault(module, []).append(names)
    return plain + [f"from {m} import {', '.join(sorted(set(n)))}"
                    for m, n in sorted(froms.items())]


@dataclass(frozen=True)
class Rendered:
    """The parts of an emitted module below its header, in the order they are written."""

    future_annotations: bool
    imports: tuple[str, ...]  # merged import lines (run-time ones)
    guarded: tuple[str, ...]  # merged TYPE_CHECKING-only import lines not also run-time
    statements: tuple[str, ...]  # the definitions' source, dependencies first
    sources: tuple[dict[str, Any], ...]  # the row of each statement (its first definition)
    import_statements: tuple[str, ...]  # every import statement, unmerged, sorted
    runtime_count: int  # distinct run-time import statements before merging

    def text(self, *, future: bool = True) -> str:
        """The module body (with its ``__future__`` import unless ``future`` is off)."""
        lines: list[str] = []
        if self.future_annotations and future:
            lines.append("from __future__ import annotations\n")
        if self.imports:
            lines.append("\n".join(self.imports) + "\n")
        if self.guarded:
            lines.append("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                         + "".join(f"    {s}\n" for s in self.guarded))
        return "\n\n".join([*lines, *self.statements])


def render(closure: Closure) -> Rendered:
    """Rewrite and order a closure's statements and collect the imports they need."""
    groups: dict[tuple[str, int, int], list[Node]] = {}
    for def_id in closure.order:
        groups.setdefault(_statement_key(closure.nodes[def_id]), []).append(closure.nodes[def_id])
    bodies: dict[tuple[str, int, int], str] = {}
    for key, members in groups.items():
        bound = {m.row["name"]: closure.names[def_symbol(closure, m.def_id)] for m in members}
        bodies[key] = _rewrite(closure, members[0], bound)
    ordered = _order(closure, groups)

    runtime: set[str] = set()
    guarded: set[str] = set()
    for symbol, imps in closure.externals.items():
        local = closure.names[symbol]
        for imp in _one_binding(imps):
            renamed = ExternalImport(imp.module, imp.name, local, imp.type_checking)
            (guarded if imp.type_checking else runtime).add(renamed.statement())
    return Rendered(closure.future_annotations, tuple(_merge_imports(runtime)),
                    tuple(_merge_imports(guarded - runtime)),
                    tuple(bodies[k] for k in ordered),
                    tuple(groups[k][0].row for k in ordered), tuple(sorted(runtime | guarded)),
                    len(runtime))


def emit(closure: Closure, packages: dict[str, dict[str, Any]]) -> Emitted:
    target = closure.target
    rendered = render(closure)
    body = rendered.text()
    closure_hash = hashlib.sha1(body.encode("utf-8")).hexdigest()

    row = target.row
    pkg_name = closure.modules.get(row["module"], {}).get("package", "")
    version = packages.get(pkg_name, {}).get("version") or "unknown"
    definitions = tuple(closure.nodes[i].row["qualname"] for i in closure.order)
    header = [
        f"# Scope-closed extraction of {row['qualname']} by nnrag {__version__}.",
        f"# package: {pkg_name} {version}",
        f"# source: {_relative_path(closure, row['module'])}:{row['lineno']}-{row['end_lineno']}"
        f" sha1={row['hash']}",
        f"# closure: {len(rendered.statements)} statements, {rendered.runtime_count} imports,"
        f" sha1={closure_hash}",
    ]
    for m in rendered.sources:
        header.append(f"#   {m['qualname']}  {_relative_path(closure, m['module'])}:"
                      f"{m['lineno']}-{m['end_lineno']}")
    for gap in closure.gaps:
        header.append(f"# unresolved: {gap}")
    code = "\n".join(header) + "\n\n" + body
    return Emitted(row["qualname"], closure.names[def_symbol(closure, target.def_id)], code,
                   closure_hash, definitions, rendered.import_statements, tuple(closure.gaps),
                   row["hash"])


def extract(store: Store, name: str, builder: ClosureBuilder | None = None) -> Emitted:
    """The scope-closed module of one indexed definition."""
    builder = builder or ClosureBuilder(store)
    row = builder.find(name)
    return emit(builder.build(row["id"]), {p["name"]: p for p in store.packages()})
