"""What a model module takes from packages that are not installed, and where it uses it.

The model is parsed, never imported: its module-level imports are read with LibCST, and
LibCST's ScopeProvider says which names in the module (at any depth) refer to each import,
with the attribute chain written after them (``tv.ops.misc.Conv2dNormActivation``).
Whether a package is installed is asked of the import system without importing it
(:func:`importlib.util.find_spec` on the top-level name only, which runs no package code).
The names the module already uses or binds anywhere are collected too, so that spliced
definitions never take one of them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import libcst as cst
from libcst.metadata import (
    ImportAssignment,
    MetadataWrapper,
    ParentNodeProvider,
    ScopeProvider,
)

from nnrag.extract._scope import _chain, _head
from nnrag.index import dotted


@lru_cache(maxsize=256)
def installed(package: str) -> bool:
    """Can ``import package`` (a top-level name) succeed here? Asked without importing it."""
    if package in sys.builtin_module_names:
        return True
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class MissingImport:
    """One alias of a module-level import from a package that is not installed:
    ``from module import name as local`` or (``name`` None) ``import module [as local]``."""

    module: str
    name: str | None
    local: str
    statement: cst.Import | cst.ImportFrom
    alias: cst.ImportAlias | None  # the node to drop (None for a star import)

    @property
    def package(self) -> str:
        return self.module.split(".")[0]

    @property
    def bound_module(self) -> str:
        """For ``import a.b`` (no alias) the name ``a`` is bound to module ``a``."""
        return self.module if self.local != self.package else self.package

    def written(self, chain: tuple[str, ...] = ()) -> str:
        """The use as the model spells it, for reports: ``tv.ops.StochasticDepth``."""
        return ".".join((self.local, *chain))


@dataclass(frozen=True)
class Use:
    """One use of a name bound by a missing import, with the attributes written after it;
    ``nodes[k]`` is the expression covering the name and the first ``k`` attributes."""

    local: str
    chain: tuple[str, ...]
    nodes: tuple[cst.CSTNode, ...]


@dataclass
class ModelUses:
    """A parsed model and everything splicing needs to know about it."""

    tree: cst.Module
    imports: list[MissingImport]  # per alias, in source order
    uses: dict[str, list[Use]]  # local name -> its uses
    stars: list[MissingImport]  # ``from missing.module import *``
    free: dict[str, list[cst.Name]]  # names used but bound nowhere (a star import's?)
    # every name the module binds or reads; those bound by a module-level import of an
    # installed package map to the object they bind (``{"nn": "torch.nn"}``), others to None
    reserved: dict[str, str | None] = field(default_factory=dict)


def _bound_object(module: str, name: str | None, asname: str | None) -> str:
    if name is not None:
        return f"{module}.{name}"
    return module if asname else module.split(".")[0]


def find_uses(code: str, is_installed: Mapping[str, bool] | None = None) -> ModelUses:
    """Parse ``code`` and find its imports from packages that are not installed, and uses.

    ``is_installed`` overrides the import system for the packages it names (tests, and a
    package that should be spliced although it is installed here).
    """
    overrides = dict(is_installed or {})

    def present(package: str) -> bool:
        return overrides[package] if package in overrides else installed(package)

    wrapper = MetadataWrapper(cst.parse_module(code), unsafe_skip_copy=True)
    scopes = wrapper.resolve(ScopeProvider)
    parents = wrapper.resolve(ParentNodeProvider)
    tree = wrapper.module
    found = ModelUses(tree, [], {}, [], {})
    installed_objects: dict[str, str] = {}
    statements: dict[int, cst.CSTNode] = {}  # id(import statement) -> itself
    for line in tree.body:
        if not isinstance(line, cst.SimpleStatementLine):
            continue
        for small in line.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    module = dotted(alias.name) or ""
                    asname = alias.asname.name.value if alias.asname else None  # type: ignore[union-attr]
                    local = asname or module.split(".")[0]
                    if present(module.split(".")[0]):
                        installed_objects[local] = _bound_object(module, None, asname)
                        continue
                    found.imports.append(MissingImport(module, None, local, small, alias))
                    statements[id(small)] = small
            elif isinstance(small, cst.ImportFrom) and not small.relative and small.module:
                module = dotted(small.module) or ""
                if isinstance(small.names, cst.ImportStar):
                    if not present(module.split(".")[0]):
                        found.stars.append(MissingImport(module, "*", "*", small, None))
                        statements[id(small)] = small
                    continue
                for alias in small.names:
                    name = dotted(alias.name) or ""
                    asname = alias.asname.name.value if alias.asname else None  # type: ignore[union-attr]
                    local = asname or name
                    if present(module.split(".")[0]):
                        installed_objects[local] = _bound_object(module, name, asname)
                        continue
                    found.imports.append(MissingImport(module, name, local, small, alias))
                    statements[id(small)] = small

    missing_locals = {imp.local for imp in found.imports}
    reserved: dict[str, str | None] = {}
    seen: set[int] = set()
    for scope in scopes.values():
        if scope is None or id(scope) in seen:
            continue
        seen.add(id(scope))
        for assignment in scope.assignments:
            if isinstance(assignment, ImportAssignment) and id(assignment.node) in statements:
                continue  # the import is dropped: its name is free for what replaces it
            reserved.setdefault(assignment.name.split(".")[0], None)
        for access in scope.accesses:
            node = access.node
            referents = list(access.referents)
            missing = [r for r in referents if isinstance(r, ImportAssignment)
                       and id(r.node) in statements]
            head = _head(node) if isinstance(node, cst.Attribute) else node
            if not isinstance(head, cst.Name):
                continue
            if missing and len(missing) == len(referents) and head.value in missing_locals:
                chain, nodes = _chain(head, parents)
                found.uses.setdefault(head.value, []).append(Use(head.value, chain[1:], nodes))
                continue
            reserved.setdefault(head.value, None)
            if not referents:
                found.free.setdefault(head.value, []).append(head)
    for local, path in installed_objects.items():
        reserved[local] = path
    for uses in found.uses.values():  # one use per head node (``import a.b`` records two)
        unique = {id(u.nodes[0]): u for u in uses}
        uses[:] = list(unique.values())
    found.reserved = reserved
    return found
