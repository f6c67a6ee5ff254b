"""Splicing: a model that imports from a package that is not installed gets the definitions
it uses from an index of that package's *source*, pasted into its own module.

``from torchvision.ops import StochasticDepth``, ``import torchvision.models as m`` then
``m.resnet18(...)``, ``torchvision.ops.misc.Conv2dNormActivation``: each name is resolved
through the index (``__init__`` re-exports, star imports and all), the scope-closed
closure of every name is built at once with :class:`ClosureBuilder` (one module for all
of them, so shared helpers appear once), its statements are placed after the model's
docstring and ``__future__`` imports, the imports are removed and every use is rewritten
to name the spliced definition. Spliced names never take a name the model binds or reads
(they are renamed instead), and a header comment says what came from where.

Nothing of the model or of the package runs here: the model is parsed, the package is
read from the index; whether a package is installed is asked of the import system
without importing it. The result then runs in the sandbox like any model.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import libcst as cst

from nnrag.exceptions import SpliceError
from nnrag.extract._closure import ClosureBuilder, ExternalImport, def_symbol
from nnrag.extract._emit import render
from nnrag.extract._local_imports import ImportRewrite
from nnrag.extract._splice_uses import MissingImport, ModelUses, find_uses, installed
from nnrag.index import Binding, Store


@dataclass(frozen=True)
class Unresolved:
    """A name the model uses from a missing package that the index cannot provide."""

    package: str
    name: str  # as the model writes it: ``tv.ops.Nope``
    reason: str


@dataclass(frozen=True)
class SpliceResult:
    """A model module after splicing, and what was done to it."""

    code: str
    spliced: Mapping[str, str] = field(default_factory=dict)  # use as written -> qualname
    definitions: tuple[str, ...] = ()  # every indexed definition pasted in (discovery order)
    removed_imports: tuple[str, ...] = ()  # import statements (or parts) removed
    unresolved: tuple[Unresolved, ...] = ()  # their imports are kept as written
    gaps: tuple[str, ...] = ()  # what the closure itself could not resolve

    @property
    def complete(self) -> bool:
        return not self.unresolved

    @property
    def changed(self) -> bool:
        return bool(self.spliced or self.removed_imports)

    def summary(self) -> str:
        """One line for a log: what was spliced and what could not be."""
        parts = []
        if self.spliced:
            parts.append(f"spliced {', '.join(sorted(self.spliced))} "
                         f"({len(self.definitions)} definitions) from the index")
        if self.removed_imports and not self.spliced:
            parts.append(f"removed unused imports {', '.join(self.removed_imports)}")
        for u in self.unresolved:
            parts.append(f"cannot splice {u.name} ({u.package}): {u.reason}")
        return "; ".join(parts) or "nothing to splice"


@dataclass
class _Plan:
    """What each use becomes: a spliced definition or an import of an installed object."""

    roots: dict[int, None] = field(default_factory=dict)  # ordered set of definition ids
    to_def: dict[int, int] = field(default_factory=dict)  # id(node) -> definition id
    to_ext: dict[int, ExternalImport] = field(default_factory=dict)  # id(node) -> import
    spliced: dict[str, str] = field(default_factory=dict)
    unresolved: dict[str, Unresolved] = field(default_factory=dict)
    failed_locals: set[str] = field(default_factory=set)  # their imports stay
    freed: set[str] = field(default_factory=set)  # free names a star import provides


class Splicer:
    """Splices models against one index; resolution state is reused across models."""

    def __init__(self, store: Store, builder: ClosureBuilder | None = None, *,
                 is_installed: Mapping[str, bool] | None = None) -> None:
        self.store = store
        self.builder = builder or ClosureBuilder(store)
        self.is_installed = dict(is_installed or {})
        self._versions = {p["name"]: p.get("version") for p in store.packages()}

    def splice(self, code: str, *, strict: bool = True) -> SpliceResult:
        """``code`` with what it uses from packages that are not installed spliced in.

        ``strict``: a used name the index cannot provide raises :class:`SpliceError`;
        otherwise it is reported in :attr:`SpliceResult.unresolved` and its import kept
        (so the model fails the way it would have, naming the missing package).
        """
        uses = find_uses(code, self.is_installed)
        if not uses.imports and not uses.stars:
            return SpliceResult(code)
        plan = self._plan(uses)
        if strict and plan.unresolved:
            raise SpliceError((u.package, u.name, u.reason) for u in plan.unresolved.values())
        return self._apply(uses, plan)

    # -- resolution
    def _present(self, package: str) -> bool:
        return self.is_installed.get(package, installed(package))

    def _plan(self, uses: ModelUses) -> _Plan:
        plan = _Plan()
        by_local = {imp.local: imp for imp in uses.imports}  # the last binding wins
        for local, imp in by_local.items():
            for use in uses.uses.get(local, []):
                self._place(plan, imp, use.chain, use.nodes)
        if uses.stars:
            for name, nodes in uses.free.items():
                for star in reversed(uses.stars):  # the last star import wins
                    star_name = MissingImport(star.module, name, name, star.statement, None)
                    if self._place(plan, star_name, (), (nodes[0],), quiet=True):
                        for node in nodes[1:]:
                            self._place(plan, star_name, (), (node,))
                        break
                else:
                    plan.unresolved.setdefault(name, Unresolved(
                        uses.stars[-1].package, name,
                        "not bound in the model nor found through "
                        + ", ".join(f"'from {s.module} import *'" for s in uses.stars)))
        return plan

    def _place(self, plan: _Plan, imp: MissingImport, chain: tuple[str, ...],
               nodes: tuple[cst.CSTNode, ...], *, quiet: bool = False) -> bool:
        """Decide what one use becomes; False (and, unless ``quiet``, a reason) if nothing."""
        found = self._resolve(imp, chain)
        binding, depth = (Binding("unresolved"), len(chain)) if isinstance(found, str) else found
        written = imp.written(chain[:depth])
        reason = found if isinstance(found, str) else self._why_not(binding, written)
        if reason:
            if not quiet:
                plan.unresolved.setdefault(written, Unresolved(imp.package, written, reason))
                plan.failed_locals.add(imp.local)
            return False
        node = nodes[depth]
        if binding.kind == "definition" and binding.def_id is not None:
            plan.roots[binding.def_id] = None
            plan.to_def[id(node)] = binding.def_id
            plan.spliced[written] = binding.qualname
        else:  # an installed object the package re-exports (``torch.nn`` through it)
            path = binding.object_path
            plan.to_ext[id(node)] = (
                ExternalImport(path, None, path.split(".")[-1]) if binding.import_name is None
                else ExternalImport(binding.import_module, binding.import_name,
                                    binding.import_name))
            plan.spliced[written] = path
        if imp.alias is None:  # found through a star import: the name is the model's again
            plan.freed.add(imp.local)
        return True

    def _resolve(self, imp: MissingImport, chain: tuple[str, ...]) -> tuple[Binding, int] | str:
        """Follow the import and as much of the attribute chain as runs through modules."""
        table = self.builder.table
        if not table.in_tree(imp.package):
            return f"package '{imp.package}' is neither installed nor indexed"
        if imp.name is None:
            module = imp.bound_module
            if not table.in_tree(module):
                return f"module '{module}' is not in the index"
            binding = Binding("module", module)
        else:
            if not (table.in_tree(imp.module) or table.in_tree(f"{imp.module}.{imp.name}")):
                return f"module '{imp.module}' is not in the index"
            binding = table.resolve_import(imp.module, imp.name, imp.local)
        depth = 0
        while binding.kind == "module" and depth < len(chain):
            binding = table.resolve(binding.module, chain[depth])
            depth += 1
        return binding, depth

    def _why_not(self, binding: Binding, written: str) -> str:
        if binding.kind == "definition" and binding.def_id is not None:
            return ""
        if binding.kind == "external":
            top = binding.import_module.split(".")[0]
            if self._present(top):
                return ""
            return f"it comes from '{binding.import_module}', which is neither installed " \
                   "nor indexed"
        if binding.kind == "module":
            return f"'{written}' is a module used as a value; only definitions can be spliced"
        return binding.reason or f"'{written}' is not bound in the index"

    # -- rewriting
    def _apply(self, uses: ModelUses, plan: _Plan) -> SpliceResult:
        reserved = {k: v for k, v in uses.reserved.items() if k not in plan.freed}
        for local in plan.failed_locals:  # its import stays, so the name stays taken
            reserved.setdefault(local, None)
        rendered_text, future = "", False
        definitions: tuple[str, ...] = ()
        gaps: tuple[str, ...] = ()
        names: dict[int, str] = {}
        if plan.roots:
            first, *rest = plan.roots
            closure = self.builder.build(first, also=rest, reserved=reserved)
            names = {i: closure.names[def_symbol(closure, i)] for i in plan.roots}
            rendered = render(closure)
            rendered_text = rendered.text(future=False)
            future = closure.future_annotations
            definitions = tuple(closure.nodes[i].row["qualname"] for i in closure.order)
            gaps = tuple(closure.gaps)
            taken = set(reserved) | set(closure.names.values())
        else:
            taken = set(reserved)
        replace = {node: names[def_id] for node, def_id in plan.to_def.items()}
        imports: dict[str, str] = {}  # object path -> the import statement binding it
        bound: dict[str, str] = {}  # object path -> the local name it gets
        for node, imp in plan.to_ext.items():
            path = imp.bound_object()
            if path not in bound:
                local = imp.local
                if reserved.get(local) != path:  # else the model's own import binds it
                    n = 1
                    while local in taken:
                        local = f"{imp.local}_{n}"
                        n += 1
                    taken.add(local)
                    imports[path] = ExternalImport(imp.module, imp.name, local).statement()
                bound[path] = local
            replace[node] = bound[path]
        drop = {id(imp.alias) for imp in uses.imports
                if imp.alias is not None and imp.local not in plan.failed_locals}
        stars = {id(s.statement) for s in uses.stars} if not plan.unresolved else set()
        removed = tuple(dict.fromkeys(
            _written(imp) for imp in (*uses.imports, *uses.stars)
            if id(imp.alias) in drop or id(imp.statement) in stars))
        tree = uses.tree.visit(_Rewrite(replace, drop, stars))
        block = _header(plan, definitions, self._versions)
        block += "".join(f"{s}\n" for s in sorted(imports.values()))
        if rendered_text:
            block += ("\n" if imports else "") + rendered_text.rstrip("\n") + "\n"
        code = _insert(tree, block, future)
        return SpliceResult(code, dict(plan.spliced), definitions, removed,
                            tuple(plan.unresolved.values()), gaps)


def splice(code: str, store: Store, *, strict: bool = True,
           is_installed: Mapping[str, bool] | None = None) -> SpliceResult:
    """Splice into ``code`` what it uses from packages that are not installed, from the
    index ``store`` (see :class:`Splicer`)."""
    return Splicer(store, is_installed=is_installed).splice(code, strict=strict)


def splice_all(codes: Iterable[str], store: Store, *, strict: bool = False,
               is_installed: Mapping[str, bool] | None = None) -> list[SpliceResult]:
    """:func:`splice` for many models, resolving against one snapshot of the index."""
    splicer = Splicer(store, is_installed=is_installed)
    return [splicer.splice(code, strict=strict) for code in codes]


class _Rewrite(ImportRewrite):
    """Drops the spliced imports and points every use at what replaced it."""

    def __init__(self, replace: dict[int, str], drop: set[int], stars: set[int]) -> None:
        super().__init__(drop, lambda _level, _module: "")  # relative imports stay as written
        self.replace = replace
        self.stars = stars

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        new = self.replace.get(id(original_node))
        return updated_node.with_changes(value=new) if new else updated_node

    def leave_Attribute(self, original_node: cst.Attribute,
                        updated_node: cst.Attribute) -> cst.BaseExpression:
        new = self.replace.get(id(original_node))
        if new is None:
            return updated_node
        return cst.Name(new, lpar=updated_node.lpar, rpar=updated_node.rpar)

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
                         ) -> cst.ImportFrom | cst.RemovalSentinel:
        if id(original_node) in self.stars:
            return cst.RemovalSentinel.REMOVE
        return super().leave_ImportFrom(original_node, updated_node)


def _written(imp: MissingImport) -> str:
    if imp.alias is None:
        return f"from {imp.module} import *"
    if imp.name is None:
        suffix = f" as {imp.local}" if imp.local != imp.package else ""
        return f"import {imp.module}{suffix}"
    return f"from {imp.module} import {imp.name}" + (
        f" as {imp.local}" if imp.local != imp.name else "")


def _header(plan: _Plan, definitions: tuple[str, ...],
            versions: Mapping[str, str | None]) -> str:
    """The comment that says, in the model itself, what was spliced from where."""
    packages = sorted({q.split(".")[0] for q in definitions})
    if not plan.spliced and not plan.unresolved:
        return ""
    lines = ["# Spliced by nnrag from an index of the source of "
             + (", ".join(f"{p} {versions.get(p) or ''}".strip() for p in packages) or
                "packages that are not installed") + " (not installed here):"]
    for written, qualname in sorted(plan.spliced.items()):
        lines.append(f"#   {written} <- {qualname}")
    if definitions:
        lines += textwrap.wrap(f"{len(definitions)} definitions: {', '.join(definitions)}",
                               96, initial_indent="#   ", subsequent_indent="#     ",
                               break_on_hyphens=False)
    for u in plan.unresolved.values():
        lines.append(f"# not spliced: {u.name} ({u.package}): {u.reason}")
    return "\n".join(lines) + "\n"


def _insert(tree: cst.Module, block: str, future: bool) -> str:
    """``tree`` with ``block`` after its docstring and ``__future__`` imports (adding
    ``from __future__ import annotations`` when the spliced code needs it)."""
    head = 0
    has_future = False
    for i, stmt in enumerate(tree.body):
        if not isinstance(stmt, cst.SimpleStatementLine):
            break
        small = stmt.body[0]
        if i == 0 and isinstance(small, cst.Expr) and isinstance(
                small.value, cst.SimpleString | cst.ConcatenatedString):
            head = 1
            continue
        if isinstance(small, cst.ImportFrom) and isinstance(small.module, cst.Name) \
                and small.module.value == "__future__":
            names = small.names
            has_future = has_future or (not isinstance(names, cst.ImportStar) and any(
                isinstance(a.name, cst.Name) and a.name.value == "annotations" for a in names))
            head = i + 1
            continue
        break
    top = tree.with_changes(body=tree.body[:head], footer=(), has_trailing_newline=True)
    rest = tree.with_changes(body=tree.body[head:], header=())
    text = top.code
    if future and not has_future:
        text += "from __future__ import annotations\n"
    if not block:
        return text + rest.code
    if text and not text.endswith("\n\n"):
        text += "\n"
    return text + block + "\n\n" + rest.code
