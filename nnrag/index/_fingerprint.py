"""A structural fingerprint of one definition, so that copies of a block group together.

Blocks are copied across files and packages (``# Copied from ... with Llama->Mistral``,
vendored timm layers) with their names, constants and comments changed. :func:`fingerprint`
hashes a *normalised* AST that abstracts exactly those away:

* comments and formatting (by parsing), docstrings, bare strings and type annotations;
* the definition's own name, its parameters and locals, and every ``self.<attr>`` the class
  itself assigns (or registers with ``register_buffer`` & co.): placeholders numbered by first
  occurrence. Bindings follow Python's scoping rules, so renaming one function's ``x``
  consistently never disturbs another's;
* numbers and prose strings (anything with a space), replaced by their type (``$int``).
  Word-like strings are options (``ACT2FN["silu"]``, ``mode="bicubic"``) and stay, as do
  ``einsum``/``rearrange`` patterns: on the real index abstracting them merged ``silu`` and
  ``sigmoid`` gates. Numbers still merge ``transpose(1, 2)`` with ``transpose(2, 3)``:
  a group means "the same code up to constants".

Everything else stays verbatim: external API (``nn.Conv2d``, ``F.relu``, ``torch.cat``), other
classes and helpers, bases, decorators, method names (the interface: ``nn.Module`` calls
``forward``), keywords of external calls, ``True``/``False``/``None`` and every operator and
control-flow node; so ``F.relu`` and ``F.gelu`` differ, as do blocks a layer or branch apart.
The dump that is hashed leaves out empty fields, so it is stable across processes (no ``id()``
or ``hash()`` reaches it) and across Python versions that only add optional AST fields.
Sources that do not parse are hashed verbatim.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
import textwrap
from typing import Any

_WORD = re.compile(r"[A-Za-z_][\w.:-]{0,39}")
_PATTERN_CALLS = frozenset({"einsum", "rearrange", "repeat", "reduce", "Rearrange", "Reduce"})
_REGISTER = frozenset({"register_buffer", "register_parameter", "add_module"})
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_BODIES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.AsyncFor,
           ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.TryStar, ast.ExceptHandler,
           ast.match_case)  # fmt: skip
_SKIPPED_FIELDS = frozenset({"ctx", "kind", "type_comment"})


class _Scope:
    """One Python scope: what it binds, imports and declares global."""

    def __init__(self, index: int, kind: str, parent: _Scope | None) -> None:
        self.index, self.kind, self.parent = index, kind, parent
        self.bound: set[str] = set()
        self.imported: set[str] = set()
        self.globals: set[str] = set()  # ``global x``: x is the module's, not ours
        self.nonlocals: set[str] = set()  # ``nonlocal x``: x is an enclosing function's
        self.params: set[str] = set()


def _strip(tree: ast.AST) -> None:
    """Drop docstrings, bare string statements and annotations, in place."""
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            node.annotation = None
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        if not isinstance(node, _BODIES):
            continue
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list):
                continue
            kept: list[ast.stmt] = []
            for stmt in stmts:
                if isinstance(stmt, ast.AnnAssign):
                    if stmt.value is None:
                        continue  # a bare declaration computes nothing
                    stmt = ast.copy_location(ast.Assign([stmt.target], stmt.value), stmt)
                value = stmt.value if isinstance(stmt, ast.Expr) else None
                if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                    kept.append(stmt)
            setattr(node, field, kept or ([ast.Pass()] if field == "body" and stmts else []))


class _Normaliser:
    """Resolve every binding of one definition, then rename it to a positional placeholder."""

    def __init__(self, tree: ast.Module, keep_literals: bool = False) -> None:
        self.keep_literals = keep_literals
        self.opened: dict[int, _Scope] = {}  # id(node) -> the scope it opens; lookups only
        self.ids = itertools.count()
        self.module = _Scope(next(self.ids), "module", None)
        self.classes: set[int] = set()  # indices of the top-level classes' scopes
        self.receivers: set[str] = {"self", "cls"}
        self.methods: dict[str, _Scope] = {}
        self.attrs: set[str] = set()  # attributes the class itself assigns
        self.names: dict[tuple[object, ...], str] = {}
        self.issued: dict[str, int] = {}  # placeholders handed out, per kind
        self._collect(tree, self.module)

    # -- pass 1: who binds what
    def _collect(self, node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, _FUNCTIONS):
            if not isinstance(node, ast.Lambda):
                scope.bound.add(node.name)
                for deco in node.decorator_list:
                    self._collect(deco, scope)
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    self._collect(default, scope)
            inner = self.opened[id(node)] = _Scope(next(self.ids), "function", scope)
            inner.params = {a.arg for a in _all_args(node.args)}
            inner.bound |= inner.params
            if scope.index in self.classes and not isinstance(node, ast.Lambda):
                self.methods[node.name] = inner  # and its first parameter is a receiver:
                static = any(_leaf(d) == "staticmethod" for d in node.decorator_list)
                positional = node.args.posonlyargs + node.args.args
                self.receivers |= {positional[0].arg} if positional and not static else set()
            for stmt in node.body if isinstance(node.body, list) else [node.body]:
                self._collect(stmt, inner)
            return
        if isinstance(node, ast.ClassDef):
            scope.bound.add(node.name)
            for child in [*node.bases, *node.keywords, *node.decorator_list]:
                self._collect(child, scope)
            inner = self.opened[id(node)] = _Scope(next(self.ids), "class", scope)
            if scope is self.module:
                self.classes.add(inner.index)
            for stmt in node.body:
                self._collect(stmt, inner)
            # method and nested-class names are the class's interface: they keep their names
            defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            inner.bound -= {s.name for s in node.body if isinstance(s, defs)}
            if inner.index in self.classes:
                self.attrs |= inner.bound
            return
        if isinstance(node, _COMPREHENSIONS):
            scope = self.opened[id(node)] = _Scope(next(self.ids), "comprehension", scope)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            scope.bound.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            scope.bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            scope.imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Global):
            scope.globals |= set(node.names)
        elif isinstance(node, ast.Nonlocal):
            scope.nonlocals |= set(node.names)
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            if isinstance(node.value, ast.Name) and node.value.id in self.receivers:
                self.attrs.add(node.attr)
        elif isinstance(node, ast.Call) and _leaf(node.func) in _REGISTER and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.attrs.add(first.value)
        for child in ast.iter_child_nodes(node):
            self._collect(child, scope)

    # -- pass 2: rename
    def _key(self, name: str, scope: _Scope) -> tuple[object, ...] | None:
        """The placeholder key of the binding ``name`` refers to; ``None`` if external."""
        here: _Scope | None = scope
        while here is not None:
            if (here.kind == "class" and here is not scope) or name in here.nonlocals:
                here = here.parent  # a class body is not an enclosing scope of its methods
                continue
            if name in here.globals or name in here.imported:
                return None
            if name in here.bound:
                if here is self.module:
                    return ("d", name)
                if here.index in self.classes:
                    return ("a", name)
                return ("v", here.index, name)
            here = here.parent
        return None

    def _placeholder(self, key: tuple[object, ...]) -> str:
        if key not in self.names:
            kind = str(key[0])
            self.issued[kind] = self.issued.get(kind, -1) + 1
            self.names[key] = f"${kind}{self.issued[kind]}"
        return self.names[key]

    def _rename(self, name: str, scope: _Scope) -> str:
        key = self._key(name, scope)
        return name if key is None else self._placeholder(key)

    def rename(self, node: ast.AST, scope: _Scope) -> ast.AST:
        """Rewrite ``node`` and its children; returns its replacement."""
        inner = self.opened.get(id(node), scope)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if scope.index not in self.classes:  # methods keep their names
                node.name = self._rename(node.name, scope)
        elif isinstance(node, ast.arg):
            node.arg = self._rename(node.arg, scope)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            node.name = self._rename(node.name, scope)
        elif isinstance(node, ast.Name):
            node.id = self._rename(node.id, scope)
            return node
        elif isinstance(node, ast.Attribute):
            value = node.value
            owner = isinstance(value, ast.Name) and (
                value.id in self.receivers or self._key(value.id, scope) == ("d", value.id)
            )
            if owner and node.attr in self.attrs:
                node.attr = self._placeholder(("a", node.attr))
        elif isinstance(node, ast.Call):
            self._call(node, scope)
        elif isinstance(node, ast.Constant):
            return node if self.keep_literals else _literal(node)
        elif isinstance(node, ast.JoinedStr):
            return ast.Name(id="$str")
        for field, value in ast.iter_fields(node):
            body_scope = inner if field in ("body", "args", "generators", "elt", "key",
                                            "value") else scope  # fmt: skip
            if isinstance(value, list):
                setattr(node, field, [self._child(v, body_scope) for v in value])
            elif isinstance(value, ast.AST):
                setattr(node, field, self._child(value, body_scope))
        return node

    def _child(self, value: Any, scope: _Scope) -> Any:
        return self.rename(value, scope) if isinstance(value, ast.AST) else value

    def _call(self, node: ast.Call, scope: _Scope) -> None:
        leaf = _leaf(node.func)
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if leaf in _PATTERN_CALLS:
                node.args[0] = ast.Name(id=f"$pattern:{first.value}")
            elif leaf in _REGISTER and first.value in self.attrs:
                node.args[0] = ast.Name(id=self._placeholder(("a", first.value)))
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            method = self.methods.get(func.attr) if func.value.id in self.receivers else None
            for kw in node.keywords:  # ``self.helper(x, scale=s)`` names a param of ours
                if method is not None and kw.arg in method.params:
                    kw.arg = self._placeholder(("v", method.index, kw.arg))


def _all_args(args: ast.arguments) -> list[ast.arg]:
    extra = [a for a in (args.vararg, args.kwarg) if a is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *extra]


def _leaf(func: ast.AST) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.Constant) -> ast.AST:
    """Numbers and prose become their type; word-like strings, bools, ``None``, ``...`` stay."""
    value = node.value
    if value is None or value is Ellipsis or isinstance(value, bool):
        return node
    if isinstance(value, str) and _WORD.fullmatch(value):
        return node
    return ast.Name(id=f"${type(value).__name__}")


def _dump(node: Any) -> str:
    """``ast.dump`` without contexts and empty fields, whose defaults vary between versions."""
    if isinstance(node, list):
        return "[" + ",".join(_dump(item) for item in node) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    fields = [
        f"{name}={_dump(value)}"
        for name, value in ast.iter_fields(node)
        if name not in _SKIPPED_FIELDS and value is not None and value != []
    ]
    return f"{type(node).__name__}({','.join(fields)})"


def fingerprint(source: str, *, keep_literals: bool = False) -> str:
    """40-hex SHA-1 of the normalised AST of ``source`` (see the module docstring).

    ``keep_literals=True`` keeps numbers and strings: training deduplication needs it, as
    ResNet-8 and ResNet-20 differ only in a depth constant.
    """
    try:
        tree = ast.parse(textwrap.dedent(source))
    except (SyntaxError, ValueError):
        return hashlib.sha1(b"unparsed\0" + source.encode("utf-8", "surrogatepass")).hexdigest()
    _strip(tree)
    normaliser = _Normaliser(tree, keep_literals)
    normaliser.rename(tree, normaliser.module)
    return hashlib.sha1(_dump(tree).encode("utf-8", "surrogatepass")).hexdigest()


def code_fingerprint(code: str) -> str:
    """The structural identity of a whole model for training deduplication: constants kept,
    so a different depth or width is a different model."""
    return fingerprint(code, keep_literals=True)
