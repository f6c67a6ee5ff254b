"""Free names of one definition, computed with LibCST's ScopeProvider (true LEGB).

Each definition is parsed on its own, so every name that its own statement does not bind
is *free* and must come from the module's global scope or from builtins. ScopeProvider
gives the LEGB rules for free: class bodies do not leak into methods, comprehensions and
lambdas have their own scopes, ``global``/``nonlocal`` are honoured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, field

import libcst as cst
from libcst.metadata import (
    BuiltinAssignment,
    FunctionScope,
    GlobalScope,
    MetadataWrapper,
    ParentNodeProvider,
    Scope,
    ScopeProvider,
)

from nnrag.extract._local_imports import LocalImport, import_aliases, sole_origin
from nnrag.index import dotted


@dataclass(frozen=True)
class Ref:
    """One use of a free name: ``chain`` is the dotted attribute path starting at it."""

    name: str
    chain: tuple[str, ...]  # ("layers", "conv", "Conv") for ``layers.conv.Conv``
    import_time: bool  # evaluated when the module is imported (bases, decorators, defaults, ...)
    annotation: bool
    rebind: bool = False  # ``X`` read while ``X = ...`` rebinds it: the previous binding
    origin: LocalImport | None = None  # bound by this import inside a function body


@dataclass
class Analysis:
    """The parsed definition plus the nodes that a rename would have to touch."""

    tree: cst.Module
    bound: tuple[str, ...]  # names this statement binds at module level
    refs: tuple[Ref, ...]
    ref_nodes: dict[
        int, list[tuple[cst.CSTNode, ...]]
    ]  # ref index -> per use, node per chain depth
    self_nodes: dict[str, list[cst.CSTNode]]  # name -> Name nodes referring to own bindings
    # function-local imports whose names are refs (with that origin): their alias nodes
    import_aliases: dict[LocalImport, list[cst.ImportAlias]] = field(default_factory=dict)


def _in_function(scope: Scope | None) -> bool:
    while scope is not None and not isinstance(scope, GlobalScope):
        if isinstance(scope, FunctionScope):
            return True
        scope = scope.parent
    return False


def analyse(source: str, future_annotations: bool = False, *, chains: bool = False) -> Analysis:
    """Find the free names of a definition's source (a module-level statement).

    With ``chains`` the attribute chain after each free name is recorded too
    (``layers.conv.Conv``); that needs a parent map, which costs as much again as the
    scope analysis, so the closure asks for it only when a name is bound to a module.
    """
    wrapper = MetadataWrapper(cst.parse_module(source), unsafe_skip_copy=True)
    scopes = wrapper.resolve(ScopeProvider)
    parents = wrapper.resolve(ParentNodeProvider) if chains else {}
    tree = wrapper.module
    global_scope = next((s for s in scopes.values() if isinstance(s, GlobalScope)), None)
    bound = _own_bindings(tree)
    rebinding = set(bound) if _is_plain_assignment(tree) else set()
    rebound: set[str] = set()
    if rebinding:  # ``X += ...`` reads X without an access node of its own
        for small in tree.body[0].body:  # type: ignore[attr-defined,union-attr]
            if isinstance(small, cst.AugAssign):
                rebound.update(n.value for n in _names_in(small.target))
    # (name, chain, import time, annotation, origin as a tuple: () for module-level names)
    grouped: dict[tuple[str, tuple[str, ...], bool, bool, tuple[object, ...]],
                  list[tuple[cst.CSTNode, ...]]] = {}
    self_nodes: dict[str, list[cst.CSTNode]] = {}
    seen_scopes: set[int] = set()
    for scope in scopes.values():
        if scope is None or id(scope) in seen_scopes:
            continue
        seen_scopes.add(id(scope))
        for access in scope.accesses:
            node = access.node
            referents = access.referents
            if isinstance(node, cst.Attribute):  # ``a.b.c`` after ``import a.b`` in a body
                origin = sole_origin(list(referents)) if referents else None
                head = _head(node)
                if origin is not None and head is not None:
                    chain, nodes = _chain(head, parents)
                    key = (head.value, chain, not _in_function(access.scope), False,
                           astuple(origin))
                    grouped.setdefault(key, []).append(nodes)
                continue
            if not isinstance(node, cst.Name):
                continue
            if referents and not all(isinstance(r, BuiltinAssignment) for r in referents):
                if all(r.scope is global_scope for r in referents):
                    if node.value not in bound:
                        # bound only through a ``global`` statement inside a function: the
                        # module-level binding lives elsewhere, so the name is free here.
                        chain, nodes = _chain(node, parents)
                        key = (node.value, chain, not _in_function(access.scope), False, ())
                        grouped.setdefault(key, []).append(nodes)
                        continue
                    self_nodes.setdefault(node.value, []).append(node)
                    continue
                origin = sole_origin(list(referents))
                if origin is not None:  # a function-local import: resolved like a global
                    chain, nodes = _chain(node, parents)
                    key = (node.value, chain, not _in_function(access.scope), False,
                           astuple(origin))
                    grouped.setdefault(key, []).append(nodes)
                continue
            if access.is_annotation and future_annotations:
                continue
            chain, nodes = _chain(node, parents)
            key = (node.value, chain, not _in_function(access.scope), bool(access.is_annotation),
                   ())
            grouped.setdefault(key, []).append(nodes)
    # Module-level names declared ``global`` and only assigned (``counter += 1``) have no
    # access at all.
    for name in _global_declarations(tree):
        if name in bound or any(k[0] == name for k in grouped):
            continue
        sites = ([a.node for a in global_scope.assignments[name]]  # type: ignore[attr-defined]
                 if global_scope else [])
        grouped[(name, (name,), False, False, ())] = [
            (n,) for n in sites if isinstance(n, cst.Name)]
    # Each distinct chain is one Ref; shorter prefixes are resolved by the closure.
    for key in [k for k in grouped if k[0] in rebinding]:  # ``X = f(X)``: X is the old X
        rebound.add(key[0])
        del grouped[key]
    refs = tuple(Ref(n, c, it, ann, origin=LocalImport(*o) if o else None)  # type: ignore[arg-type]
                 for (n, c, it, ann, o) in sorted(grouped))
    refs += tuple(Ref(n, (n,), True, False, rebind=True) for n in sorted(rebound))
    ref_nodes = {
        i: [] if r.rebind else grouped[(r.name, r.chain, r.import_time, r.annotation,
                                        astuple(r.origin) if r.origin else ())]
        for i, r in enumerate(refs)
    }
    for name in bound:  # the binding sites themselves (class/def names, assignment targets)
        for assignment in global_scope.assignments[name]:  # type: ignore[union-attr]
            target = assignment.node  # type: ignore[union-attr]  # global scopes hold Assignments
            if isinstance(target, cst.ClassDef | cst.FunctionDef):
                self_nodes.setdefault(name, []).append(target.name)
            elif isinstance(target, cst.Name):
                self_nodes.setdefault(name, []).append(target)
    aliases = import_aliases(list({id(s): s for s in scopes.values() if s is not None}.values()))
    return Analysis(tree, bound, refs, ref_nodes, self_nodes, aliases)


def _is_plain_assignment(tree: cst.Module) -> bool:
    return len(tree.body) == 1 and isinstance(tree.body[0], cst.SimpleStatementLine) and all(
        isinstance(s, cst.Assign | cst.AugAssign | cst.AnnAssign) for s in tree.body[0].body
    )


def _global_declarations(tree: cst.Module) -> set[str]:
    found: set[str] = set()

    class _Visitor(cst.CSTVisitor):
        def visit_Global(self, node: cst.Global) -> None:
            found.update(item.name.value for item in node.names)

    tree.visit(_Visitor())
    return found


def _own_bindings(tree: cst.Module) -> tuple[str, ...]:
    """Names the statement itself binds at module level (not via ``global`` in a body).

    A whole ``if``/``try`` statement kept as one unit binds what any branch binds.
    """
    names: set[str] = set()

    def walk(body: Sequence[cst.CSTNode]) -> None:
        for stmt in body:
            if isinstance(stmt, cst.ClassDef | cst.FunctionDef):
                names.add(stmt.name.value)
            elif isinstance(stmt, cst.If):
                walk(stmt.body.body)
                if stmt.orelse is not None:
                    walk([stmt.orelse] if isinstance(stmt.orelse, cst.If)
                         else stmt.orelse.body.body)
            elif isinstance(stmt, cst.Try | cst.With):
                walk(stmt.body.body)
                for part in (*getattr(stmt, "handlers", ()), getattr(stmt, "orelse", None),
                             getattr(stmt, "finalbody", None)):
                    if part is not None:
                        walk(part.body.body)
            elif isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    names.update(_small_bindings(small))

    walk(tree.body)
    return tuple(sorted(names))


def _small_bindings(small: cst.BaseSmallStatement) -> list[str]:
    if isinstance(small, cst.Assign):
        return [n.value for t in small.targets for n in _names_in(t.target)]
    if isinstance(small, cst.AnnAssign | cst.AugAssign):
        return [n.value for n in _names_in(small.target)]
    if isinstance(small, cst.Import):
        return [
            a.asname.name.value if a.asname else (dotted(a.name) or "").split(".")[0]  # type: ignore[union-attr]
            for a in small.names
        ]
    if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
        return [a.asname.name.value if a.asname else (dotted(a.name) or "") for a in small.names]  # type: ignore[union-attr]
    return []


def _names_in(node: cst.BaseExpression) -> list[cst.Name]:
    if isinstance(node, cst.Name):
        return [node]
    if isinstance(node, cst.Tuple | cst.List):
        return [n for el in node.elements for n in _names_in(el.value)]
    if isinstance(node, cst.StarredElement):
        return _names_in(node.value)
    return []


def _head(node: cst.BaseExpression) -> cst.Name | None:
    while isinstance(node, cst.Attribute):
        node = node.value
    return node if isinstance(node, cst.Name) else None


def _chain(
    node: cst.Name, parents: Mapping[cst.CSTNode, cst.CSTNode]
) -> tuple[tuple[str, ...], tuple[cst.CSTNode, ...]]:
    """The longest ``a.b.c`` attribute chain that starts at ``node``, and its node per depth."""
    chain = [node.value]
    nodes: list[cst.CSTNode] = [node]
    parent = parents.get(node)
    while isinstance(parent, cst.Attribute) and parent.value is nodes[-1]:
        chain.append(parent.attr.value)
        nodes.append(parent)
        parent = parents.get(parent)
    return tuple(chain), tuple(nodes)
