"""The minimal transitive closure of a definition: what must be emitted for it to run.

Starting from the target, every free name of every reached definition is resolved with
the :class:`~nnrag.index.SymbolTable`; in-tree definitions are followed, external imports
are collected, builtins are dropped, and what cannot be resolved is recorded as a gap.
Names that collide (two different objects wanting the same top-level name) are renamed
deterministically; the first claimant in discovery order keeps its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from nnrag.exceptions import AmbiguousNameError, NameNotFoundError
from nnrag.extract._local_imports import LocalImport
from nnrag.extract._scope import Analysis, Ref, analyse
from nnrag.index import Binding, Store, SymbolTable, dotted, resolve_relative


@dataclass(frozen=True)
class ExternalImport:
    """``import module [as local]`` (name is None) or ``from module import name [as local]``."""

    module: str
    name: str | None
    local: str
    type_checking: bool = False

    def statement(self) -> str:
        if self.name is None:
            if (self.local == self.module.split(".")[0] and "." in self.module
                    or self.local == self.module):
                return f"import {self.module}"
            return f"import {self.module} as {self.local}"
        suffix = f" as {self.local}" if self.local != self.name else ""
        return f"from {self.module} import {self.name}{suffix}"

    def bound_object(self) -> str:
        """The dotted path of the object the import binds ``local`` to (``import a.b``
        binds ``a``; ``import a.b as c`` and ``from a import b`` bind ``a.b``)."""
        if self.name is not None:
            return f"{self.module}.{self.name}"
        top = self.module.split(".")[0]
        return top if self.local == top else self.module


@dataclass
class Node:
    """One in-tree statement of the closure."""

    def_id: int
    row: dict[str, Any]
    analysis: Analysis
    deps: set[int] = field(default_factory=set)  # any use
    import_deps: set[int] = field(default_factory=set)  # needed while the module is imported
    # (ref index, chain depth consumed) -> def id, for rewriting ``mod.sub.Name`` chains
    replace: dict[tuple[int, int], int] = field(default_factory=dict)
    external_locals: dict[int, str] = field(default_factory=dict)  # ref index -> symbol key
    # ids of function-local import aliases whose every use now names an emitted definition
    dropped_imports: set[int] = field(default_factory=set)


@dataclass
class Closure:
    target: Node
    nodes: dict[int, Node]
    order: list[int]  # discovery order (deterministic)
    externals: dict[str, set[ExternalImport]]  # symbol key -> imports binding that object
    names: dict[str, str]  # symbol key -> emitted top-level name
    gaps: list[str]
    future_annotations: bool
    modules: dict[str, dict[str, Any]]


def def_symbol(closure: Closure, def_id: int) -> str:
    """Naming key of a definition: its qualified name, so that successive bindings of one
    module-level variable (``X = f(X)`` after ``class X``) keep one emitted name."""
    return f"def:{closure.nodes[def_id].row['qualname']}"


class ClosureBuilder:
    """Resolves closures against one store snapshot; analyses are cached per definition."""

    def __init__(self, store: Store, table: SymbolTable | None = None) -> None:
        self.store = store
        self.table = table or SymbolTable(store)
        self._rows: dict[int, dict[str, Any]] = {}
        self._analyses: dict[int, Analysis] = {}
        self._local_imports: dict[int, list[str]] = {}

    # -- name lookup for users
    def find(self, name: str, *, blocks_only: bool = False) -> dict[str, Any]:
        """One definition by qualified or simple name; ambiguity lists the candidates."""
        rows = self.store.definitions_named(name, qualified=True, blocks_only=blocks_only)
        if not rows:
            rows = self.store.definitions_named(name, qualified=False, blocks_only=blocks_only)
        if not rows and "." in name:  # qualified through a re-export: ``timm.layers.Mlp``
            module, _, attr = name.rpartition(".")
            if self.table.in_tree(module):
                binding = self.table.resolve(module, attr)
                if binding.kind == "definition" and binding.def_id is not None:
                    found = self.store.definition(binding.def_id)
                    rows = [found] if found else []
        if not rows:
            raise NameNotFoundError(
                f"no indexed definition named {name!r}; "
                f"list them with `nnrag blocks --pattern '*{name.split('.')[-1]}*'`"
            )
        # One statement may bind the name several times (guards): pick the binding the
        # module itself resolves to.
        by_qual: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_qual.setdefault(r["qualname"], []).append(r)
        if len(by_qual) > 1:
            blocks = [q for q, rs in by_qual.items() if any(r["is_block"] for r in rs)]
            if len(blocks) == 1 and not blocks_only:
                by_qual = {blocks[0]: by_qual[blocks[0]]}
            else:
                raise AmbiguousNameError(name, sorted(by_qual))
        (qual, candidates), = by_qual.items()
        if len(candidates) > 1:
            module, _, attr = qual.rpartition(".")
            chosen = self.table.resolve(module, attr)
            for r in candidates:
                if r["id"] == chosen.def_id:
                    return r
        return candidates[0]

    def row(self, def_id: int) -> dict[str, Any]:
        if def_id not in self._rows:
            row = self.store.definition(def_id)
            if row is None:
                raise IndexError(f"no definition {def_id} in {self.store.path}")
            self._rows[def_id] = row
        return self._rows[def_id]

    def analysis(self, def_id: int) -> Analysis:
        """Free names of a definition; with attribute chains when one names a module."""
        if def_id not in self._analyses:
            row = self.row(def_id)
            future = bool(self.table.modules.get(row["module"], {}).get("future_annotations"))
            quick = analyse(row["source"], future)
            if any(self._first_binding(row, r).kind == "module" for r in quick.refs):
                quick = analyse(row["source"], future, chains=True)
            self._analyses[def_id] = quick
        return self._analyses[def_id]

    # -- closure
    def build(self, def_id: int, *, also: Sequence[int] = (),
              reserved: Mapping[str, str | None] | None = None) -> Closure:
        """The closure of ``def_id`` (and of the further roots ``also``: one module for
        several definitions, as splicing needs).

        ``reserved`` names are taken already (by the module the closure is spliced into):
        no emitted definition gets one, and an external import gets one only when the name
        is bound to the same object there (``{"torch": "torch", "Net": None}``).
        """
        nodes: dict[int, Node] = {}
        order: list[int] = []
        externals: dict[str, set[ExternalImport]] = {}
        gaps: list[str] = []
        queue = [def_id, *also]
        while queue:
            current = queue.pop(0)
            if current in nodes:
                continue
            row = self.row(current)
            node = Node(current, row, self.analysis(current))
            nodes[current] = node
            order.append(current)
            if isinstance(node.analysis.tree.body[0], cst.If | cst.Try):
                # A kept-whole ``if``/``try`` may bind its names only on some paths: the
                # bindings before it must exist too (``def f(): False`` then
                # ``if lib_loaded(): def f(): True``).
                for name in node.analysis.bound:
                    self._depend_on_previous(node, name, nodes, queue)
            for i, ref in enumerate(node.analysis.refs):
                if ref.rebind:  # ``X = update(X)``: the previous binding of X in this module
                    if not self._depend_on_previous(node, ref.name, nodes, queue):
                        gaps.append(f"{row['qualname']}: no earlier binding of '{ref.name}'")
                    continue
                binding, depth = self._resolve_chain(row, ref)
                if binding.kind == "builtin":
                    continue
                if ref.origin is not None and not self._inlinable(row, ref.origin, binding,
                                                                  depth):
                    continue  # the function keeps its import (made absolute when emitted)
                if binding.type_checking:
                    if binding.kind == "external":
                        imp = ExternalImport(binding.import_module, binding.import_name, ref.name,
                                             True)
                        externals.setdefault(f"ext:{imp.module}:{imp.name}:{ref.name}",
                                             set()).add(imp)
                        node.external_locals[i] = f"ext:{imp.module}:{imp.name}:{ref.name}"
                    continue
                if binding.kind == "definition" and binding.def_id is not None:
                    node.deps.add(binding.def_id)
                    if ref.import_time:
                        node.import_deps.add(binding.def_id)
                    node.replace[(i, depth)] = binding.def_id
                    if binding.def_id not in nodes:
                        queue.append(binding.def_id)
                elif binding.kind == "external" and depth == 1:
                    key = f"ext:{binding.object_path}:{ref.name}"
                    imp = ExternalImport(binding.import_module, binding.import_name, ref.name)
                    externals.setdefault(key, set()).add(imp)
                    node.external_locals[i] = key
                elif binding.kind == "external":
                    # ``utils.np.zeros`` through an in-tree module: import the object directly.
                    local = ref.chain[depth - 1]
                    key = f"ext:{binding.object_path}:{local}"
                    imp = ExternalImport(binding.import_module, binding.import_name, local)
                    externals.setdefault(key, set()).add(imp)
                    node.external_locals[i] = key
                    node.replace[(i, depth)] = -1  # marker: replace chain prefix by the local
                else:
                    what = ".".join(ref.chain[:depth])
                    reason = binding.reason or ("an in-tree module used as a value"
                                                if binding.kind == "module" else "")
                    gaps.append(f"{row['qualname']}: cannot resolve '{what}' ({reason})")
            node.dropped_imports = _dropped_imports(node)
        for node in nodes.values():
            gaps.extend(self._local_tree_imports(node))
        future = any(self.table.modules.get(n.row["module"], {}).get("future_annotations")
                     for n in nodes.values())
        closure = Closure(nodes[def_id], nodes, order, externals, {}, sorted(set(gaps)), future,
                          self.table.modules)
        closure.names = self._assign_names(closure, reserved or {})
        return closure

    def _local_tree_imports(self, node: Node) -> list[str]:
        """Imports inside function bodies that still reach into the indexed tree (those not
        inlined, see :mod:`nnrag.extract._local_imports`) need the original package at run
        time, which the user should know; a name an installed package provides is fine.

        Cached per definition: ``validate --all`` builds closures that share most nodes.
        """
        if node.def_id not in self._local_imports:
            self._local_imports[node.def_id] = self._find_local_tree_imports(node)
        return self._local_imports[node.def_id]

    def _find_local_tree_imports(self, node: Node) -> list[str]:
        module = node.row["module"]
        found: list[str] = []
        table = self.table
        absolute = self.absolute
        dropped = node.dropped_imports

        class _Visitor(cst.CSTVisitor):
            def visit_ImportFrom(self, imp: cst.ImportFrom) -> None:
                target = absolute(module, len(imp.relative),
                                  dotted(imp.module) if imp.module else None)
                if not (table.in_tree(target) or imp.relative):
                    return
                star = isinstance(imp.names, cst.ImportStar)
                kept = [] if star else [a for a in imp.names if id(a) not in dropped]  # type: ignore[union-attr]
                if not (star or kept):
                    return
                if star or not target or any(  # an installed package's name works as is
                    table.resolve_import(target, dotted(a.name), "_").kind != "external"
                    for a in kept
                ):
                    found.append(f"{node.row['qualname']}: local import from '{target or '.'}' "
                                 "is not inlined")

            def visit_Import(self, imp: cst.Import) -> None:
                for alias in imp.names:
                    name = dotted(alias.name) or ""
                    if table.in_tree(name) and id(alias) not in dropped:
                        found.append(f"{node.row['qualname']}: local import of '{name}' "
                                     "is not inlined")

        for stmt in node.analysis.tree.body:
            if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
                stmt.visit(_Visitor())
        return found

    def _depend_on_previous(self, node: Node, name: str, nodes: dict[int, Node],
                            queue: list[int]) -> bool:
        """Make the earlier module-level binding of ``name`` an import-time dependency."""
        previous = self._previous_binding(node.row, name)
        if previous is None:
            return False
        node.deps.add(previous)
        node.import_deps.add(previous)
        if previous not in nodes:
            queue.append(previous)
        return True

    def _previous_binding(self, row: dict[str, Any], name: str) -> int | None:
        earlier = [
            d for d in self.table.defs_by_name.get((row["module"], name), [])
            if d["stmt_index"] < row["stmt_index"]
        ]
        return max(earlier, key=lambda d: d["stmt_index"])["id"] if earlier else None

    def _inlinable(self, row: dict[str, Any], origin: LocalImport, binding: Binding,
                   depth: int) -> bool:
        """Can a use of a function-local import name something emitted at module level?

        In-tree definitions are emitted; an external object reached *through* the tree
        (``from .utils import np``) is imported from its real source at module level, as a
        module-level import of it would be. A direct import of an installed package
        (``import torch.nn.functional as F``) already works and stays where it is.
        """
        if binding.type_checking:
            return False
        if binding.kind == "definition":
            return binding.def_id is not None
        if binding.kind != "external":
            return False
        return depth > 1 or self.table.in_tree(
            self.absolute(row["module"], origin.level, origin.module))

    def _first_binding(self, row: dict[str, Any], ref: Ref) -> Binding:
        """What the head of a reference is bound to: a module-level name of the definition's
        module, or what its function-local import imports."""
        if ref.origin is None:
            return self.table.resolve(row["module"], ref.name)
        origin = ref.origin
        return self.table.resolve_import(self.absolute(row["module"], origin.level, origin.module),
                                         origin.name or None, origin.local)

    def absolute(self, module: str, level: int, target: str | None) -> str:
        """The absolute module of ``from <level dots><target> import`` inside ``module``."""
        is_package = bool(self.table.modules.get(module, {}).get("is_package"))
        return resolve_relative(module, is_package, level, target or None)

    def _resolve_chain(self, row: dict[str, Any], ref: Ref) -> tuple[Binding, int]:
        """Resolve as much of ``chain`` as runs through in-tree modules; return depth used."""
        chain = ref.chain
        binding = self._first_binding(row, ref)
        depth = 1
        while binding.kind == "module" and depth < len(chain):
            binding = self.table.resolve(binding.module, chain[depth])
            depth += 1
        return binding, depth

    def _assign_names(self, closure: Closure,
                      reserved: Mapping[str, str | None]) -> dict[str, str]:
        names: dict[str, str] = {}
        taken: set[str] = set()
        # The target keeps its name; then definitions and imports in discovery order.
        # (key, wanted name, origin module, object an external import binds or None)
        wanted: list[tuple[str, str, str, str | None]] = []
        for def_id in closure.order:
            node = closure.nodes[def_id]
            wanted.append((def_symbol(closure, def_id), node.row["name"], node.row["module"],
                           None))
            for i, _ref in enumerate(node.analysis.refs):
                key = node.external_locals.get(i)
                if key:
                    imp = next(iter(sorted(closure.externals[key], key=lambda e: e.statement())))
                    wanted.append((key, imp.local, imp.module, imp.bound_object()))

        def free(candidate: str, bound: str | None) -> bool:
            if candidate in taken:
                return False
            return candidate not in reserved or (bound is not None
                                                 and reserved[candidate] == bound)

        for key, name, origin, bound in wanted:
            if key in names:
                continue
            candidate = name
            if not free(candidate, bound):
                candidate = f"{name}_{origin.split('.')[-1]}".replace("-", "_")
                n = 2
                while not free(candidate, None):
                    candidate = f"{name}_{origin.split('.')[-1]}_{n}"
                    n += 1
            taken.add(candidate)
            names[key] = candidate
        return names


def _dropped_imports(node: Node) -> set[int]:
    """Alias nodes of local imports all of whose uses were rewritten to emitted names."""
    replaced = {i for (i, _depth) in node.replace} | set(node.external_locals)
    refs = node.analysis.refs
    used = {r.origin for r in refs if r.origin is not None}
    kept = {r.origin for i, r in enumerate(refs) if r.origin is not None and i not in replaced}
    return {id(alias) for origin in used - kept
            for alias in node.analysis.import_aliases.get(origin, [])}
