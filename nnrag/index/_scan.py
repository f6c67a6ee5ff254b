"""Parse one Python file with LibCST into a :class:`FileScan`.

LibCST (not ``ast``) is used because it round-trips source exactly: the stored source of a
definition is byte-for-byte what the author wrote, comments included, which is what the
emitter later splices into scope-closed modules.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterator, Sequence

import libcst as cst

from nnrag.index._model import Definition, FileScan, ImportBinding

# Bump when what the scanner records changes: every file is then rescanned once.
SCANNER_VERSION = "2"


def normalised_hash(source: str) -> str:
    """SHA-1 of the source with comments and formatting removed.

    ``ast.unparse(ast.parse(...))`` canonicalises whitespace, quotes and parentheses, so two
    copies of a block that differ only in formatting share one content address.
    """
    try:
        canonical = ast.unparse(ast.parse(source))
    except SyntaxError:
        canonical = source
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def normalised_md5(code: str) -> str:
    """MD5 of the code with all whitespace runs collapsed (formatting does not matter).

    The run store's and the trained blocks' text identity; unlike :func:`normalised_hash` it
    needs no parse, so unparsable model code has one too.
    """
    return hashlib.md5(re.sub(r"\s+", " ", code).strip().encode()).hexdigest()


def resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Absolute module of ``from <'.' * level><target> import ...`` inside ``module``.

    Returns ``""`` when the relative import climbs above the top of the dotted name, which
    happens when a sub-folder of a package was indexed on its own.
    """
    if level == 0:
        return target or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level - 1 > len(parts):
        return ""
    base = parts[: len(parts) - (level - 1)]
    if target:
        base = [*base, target]
    return ".".join(p for p in base if p)


def dotted(node: cst.BaseExpression) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, ``None`` for anything else."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr.value}" if head else None
    if isinstance(node, cst.Call):  # e.g. a base built by a call: keep the callee
        return dotted(node.func)
    if isinstance(node, cst.Subscript):  # Generic[T] -> Generic
        return dotted(node.value)
    return None


def _docstring(body: Sequence[cst.CSTNode]) -> str | None:
    if body and isinstance(body[0], cst.SimpleStatementLine):
        first = body[0].body[0] if body[0].body else None
        if (isinstance(first, cst.Expr)
                and isinstance(first.value, cst.SimpleString | cst.ConcatenatedString)):
            value = first.value.evaluated_value
            return value if isinstance(value, str) else None
    return None


def _is_type_checking(test: cst.BaseExpression) -> bool:
    name = dotted(test)
    return name in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _handler_catches_import_error(handler: cst.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = ([dotted(e.value) for e in handler.type.elements]
             if isinstance(handler.type, cst.Tuple) else [dotted(handler.type)])
    return any(n and n.split(".")[-1] in {"ImportError", "ModuleNotFoundError", "Exception"}
               for n in names)


class _Scanner:
    def __init__(self, module: str, is_package: bool, tree: cst.Module) -> None:
        self.module = module
        self.is_package = is_package
        self.tree = tree
        self.text = tree.code
        self._cursor = 0
        self._located: dict[int, tuple[int, int, str]] = {}
        self._unit: cst.If | cst.Try | None = None
        self.definitions: list[Definition] = []
        self.imports: list[ImportBinding] = []
        self.all_names: tuple[str, ...] | None = None
        self.future_annotations = False
        self._index = 0

    # -- walking module-level statements, descending into if/try/with but not def/class
    def walk(self, body: Sequence[cst.BaseStatement] | Sequence[cst.BaseSmallStatement],
             guard: str) -> None:
        for stmt in body:
            self._index += 1
            if (
                not guard and self._unit is None and isinstance(stmt, cst.If | cst.Try)
                and not (isinstance(stmt, cst.If) and _is_type_checking(stmt.test))
                and self._self_contained(stmt)
            ):
                # A module-level ``if``/``try`` that imports nothing from the tree is kept
                # whole: every name it binds maps to the full statement, so its run-time
                # choice (``if 'X' in os.environ``, ``except ImportError: has_apex = False``)
                # survives extraction instead of being decided once by the resolver.
                self._unit = stmt
                try:
                    self.walk([stmt], "unit")
                finally:
                    self._unit = None
            elif isinstance(stmt, cst.If):
                self._walk_if(stmt, guard)
            elif isinstance(stmt, cst.Try):
                inner = guard or "try"
                self.walk(stmt.body.body, inner)
                for handler in stmt.handlers:
                    fallback = ("except" if _handler_catches_import_error(handler)
                                else (guard or "except"))
                    self.walk(handler.body.body, guard or fallback)
                if stmt.orelse:
                    self.walk(stmt.orelse.body.body, guard or "try")
                if stmt.finalbody:
                    self.walk(stmt.finalbody.body.body, guard)
            elif isinstance(stmt, cst.With):
                self.walk(stmt.body.body, guard)
            elif isinstance(stmt, cst.ClassDef):
                self._add_class(stmt, guard)
            elif isinstance(stmt, cst.FunctionDef):
                self._add(stmt, stmt.name.value, "function", guard)
            elif isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    self._small(stmt, small, guard)

    def _self_contained(self, stmt: cst.CSTNode) -> bool:
        top = self.module.split(".")[0]
        found = False

        class _Imports(cst.CSTVisitor):
            def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
                nonlocal found
                module = dotted(node.module) if node.module else ""
                found |= bool(node.relative) or (module or "").split(".")[0] == top

            def visit_Import(self, node: cst.Import) -> None:
                nonlocal found
                found |= any((dotted(a.name) or "").split(".")[0] == top for a in node.names)

            def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
                return False  # imports inside functions are the function's own business

        stmt.visit(_Imports())
        return not found

    def _walk_if(self, stmt: cst.If, guard: str) -> None:
        if _is_type_checking(stmt.test):
            self.walk(stmt.body.body, "type_checking")
            if isinstance(stmt.orelse, cst.Else):
                self.walk(stmt.orelse.body.body, guard)
            return
        self.walk(stmt.body.body, guard or "if")
        orelse = stmt.orelse
        if isinstance(orelse, cst.If):
            self._walk_if(orelse, guard or "else")
        elif isinstance(orelse, cst.Else):
            self.walk(orelse.body.body, guard or "else")

    def _small(self, line: cst.SimpleStatementLine, small: cst.BaseSmallStatement,
               guard: str) -> None:
        if isinstance(small, cst.Import):
            for alias in small.names:
                full = dotted(alias.name) or ""
                # ``import a.b`` binds ``a``; the full path is kept so emission can repeat it.
                local = alias.asname.name.value if alias.asname else full.split(".")[0]  # type: ignore[union-attr]
                self._import(local, full, None, 0, line, guard)
        elif isinstance(small, cst.ImportFrom):
            level = len(small.relative)
            mod = dotted(small.module) if small.module else None
            target_module = resolve_relative(self.module, self.is_package, level, mod)
            if target_module == "__future__":
                if not isinstance(small.names, cst.ImportStar) and any(
                    a.name.value == "annotations" for a in small.names  # type: ignore[union-attr]
                ):
                    self.future_annotations = True
                return
            if isinstance(small.names, cst.ImportStar):
                self._import("*", target_module, "*", level, line, guard)
                return
            for alias in small.names:
                name = (alias.name.value if isinstance(alias.name, cst.Name)
                        else dotted(alias.name) or "")
                local = alias.asname.name.value if alias.asname else name  # type: ignore[union-attr]
                self._import(local, target_module, name, level, line, guard)
        elif isinstance(small, cst.Assign | cst.AnnAssign | cst.AugAssign):
            targets: list[cst.BaseExpression] = (
                [t.target for t in small.targets] if isinstance(small, cst.Assign)
                else [small.target]
            )
            names = [n for t in targets for n in _target_names(t)]
            if names == ["__all__"] and isinstance(small, cst.Assign | cst.AnnAssign):
                self.all_names = _literal_strings(small.value)
            if isinstance(small, cst.AnnAssign) and small.value is None:
                return  # a bare annotation binds nothing at run time
            for name in dict.fromkeys(names):
                self._add(line, name, "assign", guard)

    def _import(
        self, local: str, target_module: str, target_name: str | None, level: int,
        node: cst.CSTNode, guard: str,
    ) -> None:
        if self._unit is not None:
            if local != "*":
                self._add(node, local, "import", "")
            return
        self.imports.append(
            ImportBinding(
                local_name=local,
                target_module=target_module,
                target_name=target_name,
                level=level,
                lineno=self._locate(node)[0],
                guard=guard,
                stmt_index=self._index,
            )
        )

    def _locate(self, node: cst.CSTNode) -> tuple[int, int, str]:
        """First and last line of a statement (decorators included, leading comments not).

        Statements are visited in source order, so the statement's first code line is the
        next line after the cursor that matches it; this is exact and ~3x cheaper than
        LibCST's PositionProvider, which re-renders the whole module.
        """
        cached = self._located.get(id(node))
        if cached:
            return cached
        bare = node.with_changes(leading_lines=()) if hasattr(node, "leading_lines") else node
        code = self.tree.code_for_node(bare).rstrip("\n")
        first = code.split("\n", 1)[0]
        match = re.compile(r"^[ \t]*" + re.escape(first), re.M).search(self.text, self._cursor)
        pos = match.start() if match else self._cursor
        start = self.text.count("\n", 0, pos) + 1
        if match:
            self._cursor = match.end()
        leading = "".join(self.tree.code_for_node(line)
                          for line in getattr(node, "leading_lines", ()))
        self._located[id(node)] = (start, start + code.count("\n"), leading + code + "\n")
        return self._located[id(node)]

    def _add_class(self, node: cst.ClassDef, guard: str) -> None:
        bases = tuple(d for a in node.bases if (d := dotted(a.value)))
        metaclass = [dotted(k.value) for k in node.keywords
                     if k.keyword and k.keyword.value == "metaclass"]
        methods = [s for s in node.body.body if isinstance(s, cst.FunctionDef)]
        abstract = any(
            (dotted(d.decorator) or "").split(".")[-1] in {"abstractmethod", "abstractproperty"}
            for m in methods for d in m.decorators
        ) or any(b.split(".")[-1] == "ABC" for b in bases) or any(
            (m or "").split(".")[-1] == "ABCMeta" for m in metaclass
        )
        has_forward = any(m.name.value == "forward" for m in methods) or any(
            isinstance(s, cst.SimpleStatementLine)
            and any(isinstance(x, cst.Assign)
                    and "forward" in [n for t in x.targets for n in _target_names(t.target)]
                    for x in s.body)
            for s in node.body.body
        )
        self._add(node, node.name.value, "class", guard, bases, abstract, has_forward,
                  _docstring(node.body.body))

    def _add(
        self, node: cst.CSTNode, name: str, kind: str, guard: str, bases: tuple[str, ...] = (),
        abstract: bool = False, has_forward: bool = False, doc: str | None = None,
    ) -> None:
        if self._unit is not None:
            node, guard = self._unit, ""
        start, end, source = self._locate(node)
        if kind == "function" and isinstance(node, cst.FunctionDef):
            doc = _docstring(node.body.body) if isinstance(node.body, cst.IndentedBlock) else None
        self.definitions.append(
            Definition(
                name=name, kind=kind, lineno=start, end_lineno=end,
                source=source, hash=normalised_hash(source), guard=guard, stmt_index=self._index,
                bases=bases, is_abstract=abstract, has_forward=has_forward, docstring=doc,
            )
        )


def _target_names(node: cst.BaseExpression) -> Iterator[str]:
    if isinstance(node, cst.Name):
        yield node.value
    elif isinstance(node, cst.Tuple | cst.List):
        for el in node.elements:
            yield from _target_names(el.value)
    elif isinstance(node, cst.StarredElement):
        yield from _target_names(node.value)


def _literal_strings(node: cst.BaseExpression | None) -> tuple[str, ...] | None:
    if isinstance(node, cst.List | cst.Tuple | cst.Set):
        out = []
        for el in node.elements:
            if isinstance(el.value, cst.SimpleString) and isinstance(el.value.evaluated_value, str):
                out.append(el.value.evaluated_value)
        return tuple(out)
    return None


def scan_source(source: str | bytes, module: str, is_package: bool = False) -> FileScan:
    """Scan one file's source. Raises ``libcst.ParserSyntaxError`` or ``UnicodeDecodeError``."""
    tree = cst.parse_module(source)
    scanner = _Scanner(module, is_package, tree)
    scanner.walk(tree.body, "")
    text = scanner.text
    return FileScan(
        module=module,
        is_package=is_package,
        future_annotations=scanner.future_annotations,
        definitions=tuple(scanner.definitions),
        imports=tuple(scanner.imports),
        all_names=scanner.all_names,
        line_count=text.count("\n") + 1,
        docstring=_docstring(tree.body),
    )
