"""Numeric literal sites of a model's source: instrumentation and rewriting with LibCST.

A *site* is one integer or float literal, numbered in syntax-tree order. The same numbering
is used twice: to instrument the source for the recording run (each literal becomes a
tagged number, see :mod:`nnrag.mutate._expr`) and to rewrite the literals a plan changes,
leaving every other byte of the file as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from nnrag.exceptions import NnragError

SITE_FN = "__nnrag_site__"
INT_FN = "__nnrag_int__"


class MutationSourceError(NnragError):
    """Model source that cannot be parsed or rewritten; says where."""


@dataclass(frozen=True)
class Site:
    """One numeric literal: its number, value and where it is (1-based line, 0-based col)."""

    id: int
    value: int | float
    line: int
    col: int
    text: str
    call: str = ""  # the function the literal is an argument of (``range``, ``Conv2d``, ...)
    name: str = ""  # the variable, parameter or keyword it is bound to, when there is one


def parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise MutationSourceError(
            f"model source does not parse: line {exc.raw_line}, column {exc.raw_column}: "
            f"{exc.message}"
        ) from None


def _number(node: cst.Integer | cst.Float) -> int | float | None:
    try:
        return node.evaluated_value
    except (ValueError, SyntaxError):
        return None


class _Numbering(cst.CSTTransformer):
    """Visits literals in a fixed order; subclasses decide what becomes of each one."""

    def __init__(self) -> None:
        self.next_id = 0

    def _take(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def leave_Integer(self, original: cst.Integer, updated: cst.Integer) -> cst.BaseExpression:
        return self.literal(self._take(), original, updated)

    def leave_Float(self, original: cst.Float, updated: cst.Float) -> cst.BaseExpression:
        return self.literal(self._take(), original, updated)

    def literal(self, site_id: int, original: cst.Integer | cst.Float,
                updated: cst.Integer | cst.Float) -> cst.BaseExpression:
        return updated


def _leaf_name(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return ""


class _Collect(_Numbering):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[Site] = []
        self.calls: list[str] = []
        self.names: list[str] = []
        self.element_names: dict[int, str] = {}

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(_leaf_name(node.func))

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        self.calls.pop()
        return updated

    def _bind(self, name: str) -> None:
        self.names.append(name)

    def _unbind(self) -> None:
        self.names.pop()

    def visit_Assign(self, node: cst.Assign) -> None:
        target = node.targets[0].target
        self._bind(_leaf_name(target))
        if isinstance(target, cst.Tuple) and isinstance(node.value, cst.Tuple) and \
                len(target.elements) == len(node.value.elements):  # A, B = 64, 2
            for t, v in zip(target.elements, node.value.elements, strict=True):
                self.element_names[id(v.value)] = _leaf_name(t.value)

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        self._unbind()
        return updated

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._bind(_leaf_name(node.target))

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign) -> cst.AnnAssign:
        self._unbind()
        return updated

    def visit_Param(self, node: cst.Param) -> None:
        self._bind(node.name.value)

    def leave_Param(self, original: cst.Param, updated: cst.Param) -> cst.Param:
        self._unbind()
        return updated

    def visit_Arg(self, node: cst.Arg) -> None:
        self._bind(node.keyword.value if node.keyword else "")

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        self._unbind()
        return updated

    def literal(self, site_id: int, original: cst.Integer | cst.Float,
                updated: cst.Integer | cst.Float) -> cst.BaseExpression:
        value = _number(original)
        if value is not None:
            pos = self.get_metadata(PositionProvider, original).start
            name = (self.element_names.get(id(original))
                    or next((n for n in reversed(self.names) if n), ""))
            self.sites.append(Site(site_id, value, pos.line, pos.column, original.value,
                                   self.calls[-1] if self.calls else "", name))
        return updated


def collect_sites(source: str) -> list[Site]:
    """Every numeric literal of ``source``, numbered as the instrumentation numbers them."""
    collector = _Collect()
    MetadataWrapper(parse(source)).visit(collector)
    return collector.sites


class _Instrument(_Numbering):
    def literal(self, site_id: int, original: cst.Integer | cst.Float,
                updated: cst.Integer | cst.Float) -> cst.BaseExpression:
        if _number(original) is None:
            return updated
        return cst.Call(func=cst.Name(SITE_FN),
                        args=[cst.Arg(updated), cst.Arg(cst.Integer(str(site_id)))])

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if isinstance(updated.func, cst.Name) and updated.func.value == "int":
            return updated.with_changes(func=cst.Name(INT_FN))
        return updated


def instrument(source: str) -> str:
    """Source whose literals evaluate to tagged numbers (for the recording run only).

    Line numbers stay those of ``source`` (graph nodes map back to it by line); the two
    helpers it calls are installed as builtins by the recording child.
    """
    return parse(source).visit(_Instrument()).code


class _Replace(_Numbering):
    def __init__(self, values: Mapping[int, int | float]) -> None:
        super().__init__()
        self.values = values
        self.done: set[int] = set()

    def literal(self, site_id: int, original: cst.Integer | cst.Float,
                updated: cst.Integer | cst.Float) -> cst.BaseExpression:
        if site_id not in self.values:
            return updated
        self.done.add(site_id)
        return _literal(self.values[site_id], original)


def _literal(value: int | float, like: cst.Integer | cst.Float) -> cst.BaseExpression:
    if isinstance(like, cst.Integer) and float(value).is_integer():
        return like.with_changes(value=str(int(value)))
    if isinstance(like, cst.Integer):
        return cst.Float(repr(float(value)))
    return like.with_changes(value=repr(float(value)))


def rewrite_sites(source: str, values: Mapping[int, int | float]) -> str:
    """``source`` with literal site ``i`` set to ``values[i]``; everything else unchanged."""
    if any(isinstance(v, int | float) and v < 0 for v in values.values()):
        raise MutationSourceError("a literal site cannot be set to a negative number")
    replacer = _Replace(values)
    code = parse(source).visit(replacer).code
    missing = set(values) - replacer.done
    if missing:
        raise MutationSourceError(f"no literal site numbered {sorted(missing)} in the source")
    return code
