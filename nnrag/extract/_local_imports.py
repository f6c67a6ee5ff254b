"""Imports inside function bodies, resolved like module-level ones.

An emitted module has no parent package, so a function-local ``from .consts import f``
cannot run there. Names such an import binds become free references of the definition
(carrying the import as their *origin*), so the closure resolves them with the same symbol
table as module-level names: an in-tree definition is emitted once at module level and the
local import is dropped (its uses renamed to the emitted name); an external object reached
through the tree (``from .utils import np``) is imported from its real source at module
level; a direct import of an installed package (``import torch.nn.functional as F``) stays
where it is. Only imports in function scopes qualify, and only when the import is the sole
binding of its name there: a class-body import binds a class attribute, and
``try: from .x import f / except ImportError: f = None`` must keep its fallback. Imports
that stay are made absolute by :class:`ImportRewrite` (and reported as gaps by the closure
when they still need the original package).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import BaseAssignment, FunctionScope, ImportAssignment

from nnrag.index import dotted


@dataclass(frozen=True, order=True)
class LocalImport:
    """``from <level dots><module> import <name> as <local>``; ``name`` "" for
    ``import <module> [as <local>]`` (then ``level`` is 0)."""

    level: int
    module: str
    name: str
    local: str


def _bound(alias: cst.ImportAlias, plain: bool) -> str:
    if alias.asname is not None:
        return alias.asname.name.value  # type: ignore[union-attr]
    full = dotted(alias.name) or ""
    return full.split(".")[0] if plain else full


def _origin(assignment: BaseAssignment) -> tuple[LocalImport, cst.ImportAlias] | None:
    """The import (and its alias node) behind one binding, if it is a local import."""
    if not isinstance(assignment, ImportAssignment):
        return None
    stmt = assignment.node
    if isinstance(stmt, cst.Import):
        for alias in stmt.names:
            local = _bound(alias, True)
            # ``import a.b`` binds ``a`` and is also recorded under the name ``a.b``
            if assignment.name in (local, alias.asname is None and dotted(alias.name)):
                return LocalImport(0, dotted(alias.name) or "", "", local), alias
    elif isinstance(stmt, cst.ImportFrom) and not isinstance(stmt.names, cst.ImportStar):
        module = dotted(stmt.module) if stmt.module is not None else ""
        for alias in stmt.names:
            if _bound(alias, False) == assignment.name:
                name = dotted(alias.name) or ""
                return LocalImport(len(stmt.relative), module or "", name, assignment.name), alias
    return None


def sole_origin(assignments: Sequence[BaseAssignment]) -> LocalImport | None:
    """The local import that alone binds a name, or None when anything else binds it too."""
    origins: set[LocalImport | None] = set()
    for a in assignments:
        if not isinstance(a.scope, FunctionScope):
            return None
        for b in (a, *a.scope.assignments[a.name]):
            found = _origin(b)
            origins.add(found[0] if found else None)
    return origins.pop() if len(origins) == 1 else None


def import_aliases(scopes: Sequence[object]) -> dict[LocalImport, list[cst.ImportAlias]]:
    """Alias nodes of the qualifying local imports, per import: what a drop removes."""
    found: dict[LocalImport, list[cst.ImportAlias]] = {}
    for scope in scopes:
        if not isinstance(scope, FunctionScope):
            continue
        for assignment in scope.assignments:
            hit = _origin(assignment)
            if hit is None or sole_origin([assignment]) is None:
                continue
            found.setdefault(hit[0], []).append(hit[1])
    return found


class ImportRewrite(cst.CSTTransformer):
    """Drops inlined aliases (and statements left empty) and makes relative imports absolute.

    ``absolute(level, module)`` is the absolute module of a relative import ("" when it climbs
    above the indexed root: left as written, and reported as a gap).
    """

    def __init__(self, drop: set[int], absolute: Callable[[int, str | None], str]) -> None:
        self.drop = drop
        self.absolute = absolute

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import
                     ) -> cst.Import | cst.RemovalSentinel:
        kept = [new for old, new in zip(original_node.names, updated_node.names, strict=True)
                if id(old) not in self.drop]
        if not kept:
            return cst.RemovalSentinel.REMOVE
        return updated_node.with_changes(names=_last_without_comma(kept))

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
                         ) -> cst.ImportFrom | cst.RemovalSentinel:
        if not isinstance(original_node.names, cst.ImportStar):
            kept = [new for old, new in zip(original_node.names, updated_node.names, strict=True)  # type: ignore[arg-type]
                    if id(old) not in self.drop]
            if not kept:
                return cst.RemovalSentinel.REMOVE
            if len(kept) < len(original_node.names):
                updated_node = updated_node.with_changes(names=_last_without_comma(kept))
        if original_node.relative:
            module = dotted(original_node.module) if original_node.module is not None else None
            target = self.absolute(len(original_node.relative), module)
            if target:
                updated_node = updated_node.with_changes(
                    relative=(), module=cst.parse_expression(target),
                    whitespace_before_import=cst.SimpleWhitespace(" "))
        return updated_node


def _last_without_comma(aliases: list[cst.ImportAlias]) -> list[cst.ImportAlias]:
    return [*aliases[:-1], aliases[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)]

