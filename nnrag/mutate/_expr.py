"""Integers that remember which source literals they were computed from.

The recording run replaces every numeric literal of the model source with a tagged number.
Arithmetic on tagged numbers builds a small expression tree whose leaves are literal sites,
so after construction each layer width is known *as a function of the literals*: changing
literal 7 from 16 to 24 predicts every width exactly, however the code derived it
(``planes * 4``, ``int(dim * mlp_ratio)``, ``make_divisible(...)``). Plain Python numbers
are used everywhere else; only the recording child creates tagged ones.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

Expr = Any  # ("site", id) | ("const", value) | (op, arg, ...): plain tuples, JSON-friendly

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
    "truediv": operator.truediv, "mod": operator.mod, "pow": operator.pow,
}
_UNARY: dict[str, Callable[[Any], Any]] = {
    "neg": operator.neg, "int": int, "round": round, "floor": math.floor, "ceil": math.ceil,
    "abs": abs,
}


def evaluate(expr: Expr, values: Mapping[int, float]) -> Any:
    """The value of ``expr`` when literal site ``i`` holds ``values[i]``."""
    head = expr[0]
    if head == "site":
        return values[expr[1]]
    if head == "const":
        return expr[1]
    if head in _UNARY:
        return _UNARY[head](evaluate(expr[1], values))
    return _BINARY[head](evaluate(expr[1], values), evaluate(expr[2], values))


def sites(expr: Expr) -> set[int]:
    """The literal sites ``expr`` depends on."""
    if expr[0] == "site":
        return {expr[1]}
    if expr[0] == "const":
        return set()
    out: set[int] = set()
    for arg in expr[1:]:
        out |= sites(arg)
    return out


def _expr_of(value: Any) -> Expr | None:
    if isinstance(value, TaggedInt | TaggedFloat):
        return value.expr
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return ("const", value)
    return None


def tag(value: Any, expr: Expr) -> Any:
    """Wrap a computed number; anything that is not an int or float stays as it is."""
    if isinstance(value, bool) or expr is None:
        return value
    if isinstance(value, int):
        return TaggedInt(value, expr)
    if isinstance(value, float):
        return TaggedFloat(value, expr)
    return value


def _binary(name: str, reflected: bool) -> Callable[[Any, Any], Any]:
    fn = _BINARY[name]

    def method(self: Any, other: Any) -> Any:
        other_expr = _expr_of(other)
        if other_expr is None:
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        ea, eb = (other_expr, self.expr) if reflected else (self.expr, other_expr)
        result = fn(plain(a), plain(b))
        return tag(result, (name, ea, eb))

    return method


def _unary(name: str) -> Callable[[Any], Any]:
    fn = _UNARY[name]

    def method(self: Any, *args: Any) -> Any:
        if args and args[0] is not None:  # round(x, ndigits): not a width computation
            return round(plain(self), *args)
        return tag(fn(plain(self)), (name, self.expr))

    return method


def plain(value: Any) -> Any:
    """The untagged number (anything else unchanged)."""
    if isinstance(value, TaggedInt):
        return int.__int__(value)
    if isinstance(value, TaggedFloat):
        return float.__float__(value)
    return value


class _Arith:
    expr: Expr
    __add__ = _binary("add", False)
    __radd__ = _binary("add", True)
    __sub__ = _binary("sub", False)
    __rsub__ = _binary("sub", True)
    __mul__ = _binary("mul", False)
    __rmul__ = _binary("mul", True)
    __floordiv__ = _binary("floordiv", False)
    __rfloordiv__ = _binary("floordiv", True)
    __truediv__ = _binary("truediv", False)
    __rtruediv__ = _binary("truediv", True)
    __mod__ = _binary("mod", False)
    __rmod__ = _binary("mod", True)
    __pow__ = _binary("pow", False)
    __neg__ = _unary("neg")
    __abs__ = _unary("abs")
    __round__ = _unary("round")
    __floor__ = _unary("floor")
    __ceil__ = _unary("ceil")


class TaggedInt(_Arith, int):  # type: ignore[misc]  # _Arith's generic operators stand in for int's
    """An ``int`` that carries the expression it was computed by."""

    def __new__(cls, value: int, expr: Expr) -> TaggedInt:
        obj = int.__new__(cls, value)
        obj.expr = expr
        return obj

    __index__ = int.__index__
    __hash__ = int.__hash__


class TaggedFloat(_Arith, float):  # type: ignore[misc]  # likewise for float's
    """A ``float`` that carries its expression; ``int()`` of it stays tagged."""

    def __new__(cls, value: float, expr: Expr) -> TaggedFloat:
        obj = float.__new__(cls, value)
        obj.expr = expr
        return obj

    __hash__ = float.__hash__


def site(value: Any, site_id: int) -> Any:
    """What an instrumented literal evaluates to in the recording run."""
    return tag(value, ("site", site_id))


def tagged_int(value: Any = 0, *args: Any) -> Any:
    """``int()`` for instrumented code: CPython's ``int(x)`` always returns an exact int, so
    the instrumentation calls this instead to keep the tag."""
    if args or not isinstance(value, TaggedInt | TaggedFloat):
        return int(value, *args)
    return tag(int(plain(value)), ("int", value.expr))


def expr_of(value: Any) -> Expr | None:
    """The expression behind a recorded constructor argument (None: not a number we track)."""
    if isinstance(value, TaggedInt | TaggedFloat):
        return value.expr
    return None
