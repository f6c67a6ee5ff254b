"""Constructor repairs (``init_repairs``): a failed ``cls(**kwargs)`` -> a better guess.

Two sources of evidence. The message: ``missing 1 required argument: 'x'`` (a ``**kwargs``
pass-through needed it), ``mode must be either 'batch' or 'row'``. And the traceback: the
innermost line of the block's own source names the argument that broke it, so ``for d in
depths`` failing with ``'int' object is not iterable`` means ``depths`` wants a sequence,
``dim * mlp_ratio`` failing on ``NoneType`` means that argument wants a number. The first
rule with an answer wins; a rule that recognises its case but cannot help returns ``STOP``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import linecache
import re
from pathlib import Path
from typing import Any

from nnrag.ladder._configs import set_eager
from nnrag.ladder._infer import init_parameters, layer_factory, values_for_name
from nnrag.ladder.rules._registry import STOP, Registry

_MISSING = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.*)")
_CHOICE = re.compile(
    r"\b([A-Za-z_][A-Za-z0-9_]*) (?:must|has to|should) be (?:either |one of )?[\[(]?'([^']+)'"
)
_WANTS_SEQ = re.compile(r"(not subscriptable|has no len\(\)|is not iterable|cannot unpack)")
_WANTS_INT = re.compile(
    r"must be tuple of ints, but found element of type float|"
    r"'float' object cannot be interpreted as an integer"
)
_WANTS_SCALAR = re.compile(
    r"element of type (tuple|list)|, not (tuple|list)\b|"
    r"'(tuple|list)' object cannot be interpreted|"
    r"unsupported operand type\(s\) for .*'(tuple|list)'"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A config that lacks a field the block reads, or leaves a required one unset (None).
_CFG_LACKS = re.compile(r"'(\w*(?:Config|Cfg))' object has no attribute '(\w+)'")
_CFG_UNSET = re.compile(r"`(\w+)` (?:config|argument|attribute) "
                        r"(?:needs|has) to be (?:specified|set)")
SEQ_LEN = 4  # stages for a per-stage list argument (depths, dims, drop-path rates, ...)
Kwargs = dict[str, Any]
INIT_REPAIRS = Registry(
    "init_repairs", "failed block constructor -> repaired kwargs; first answer wins"
)


@INIT_REPAIRS.register(
    "listed_choice", order=10, example="torchvision StochasticDepth",
    doc="'mode must be either 'batch' or 'row'': pass the first listed value",
)
def _listed_choice(cls: type, kwargs: Kwargs, exc: BaseException) -> Any:
    choice = _CHOICE.search(str(exc)) if isinstance(exc, ValueError) else None
    if choice is not None and choice.group(1) in kwargs:
        if kwargs[choice.group(1)] != choice.group(2):
            return {**kwargs, choice.group(1): choice.group(2)}
        return STOP
    return None


@INIT_REPAIRS.register(
    "config_field", order=20, example="transformers TimeSeriesTransformerModel",
    doc="a config lacks (or leaves unset) a field the block reads: set it by its name",
)
def _config_field_rule(cls: type, kwargs: Kwargs, exc: BaseException) -> Any:
    return _config_field(kwargs, str(exc))


@INIT_REPAIRS.register(
    "missing_argument", order=30, example="timm ConvNormAct",
    doc="a **kwargs pass-through needed an argument the signature does not show",
)
def _missing_argument(cls: type, kwargs: Kwargs, exc: BaseException) -> Any:
    missing = _MISSING.search(str(exc)) if isinstance(exc, TypeError) else None
    if missing is None:
        return None
    names = re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", missing.group(1))
    if not names or any(n in kwargs for n in names):
        return STOP
    return {**kwargs, **{n: _scalar_for(n) for n in names}}


@INIT_REPAIRS.register(
    "dataclass_field", order=40, example="timm MaxxVit",
    doc="a dataclass config leaves a size unset that the full model fills in",
)
def _dataclass_field_rule(cls: type, kwargs: Kwargs, exc: BaseException) -> Any:
    if not isinstance(exc, TypeError | AttributeError) or "NoneType" not in str(exc):
        return None
    params = {p.name: p for p in init_parameters(cls)}
    return _dataclass_field(kwargs, params, blamed_lines(exc))


@INIT_REPAIRS.register(
    "blamed_argument", order=50, example="timm RepViT",
    doc="the failing source line names an argument of the wrong kind: change its kind",
)
def _blamed_argument(cls: type, kwargs: Kwargs, exc: BaseException) -> Any:
    if not isinstance(exc, TypeError | AttributeError):
        return None
    return _from_traceback(cls, kwargs, exc)


def _config_field(kwargs: dict[str, Any], text: str) -> dict[str, Any] | None:
    """Give the config argument the field the message asks for, valued by its name.

    Composite transformers models read fields that only their parent config defines
    (``dropout_rate`` on a text sub-config), and time-series configs leave
    ``prediction_length`` unset on purpose: the block is fine once the field has a value.
    """
    m = _CFG_LACKS.search(text) or _CFG_UNSET.search(text)
    if m is None:
        return None
    field = m.group(m.lastindex or 1)
    owner = m.group(1) if m.re is _CFG_LACKS else None
    for key, cfg in kwargs.items():
        if not hasattr(cfg, "to_dict") or (owner and type(cfg).__name__ != owner):
            continue
        if getattr(cfg, field, None) is not None:
            return None  # already set: the message is about something else
        value = _scalar_for(field)
        if m.re is _CFG_UNSET and isinstance(value, int) and value < 4:
            value = 4  # a length or count left unset: small but not degenerate
        return {**kwargs, key: _with_field(cfg, field, value)}
    return None


def _with_field(cfg: Any, field: str, value: Any) -> Any:
    """A copy of ``cfg`` with ``field`` set, rebuilt when possible so derived fields follow."""
    with contextlib.suppress(Exception):
        new = type(cfg).from_dict({**cfg.to_dict(), field: value})
        if getattr(new, field, None) == value:
            set_eager(new)
            return new
    new = copy.deepcopy(cfg)
    with contextlib.suppress(Exception):
        setattr(new, field, value)
    return new


def _scalar_for(name: str) -> Any:
    vals = values_for_name(name)[1]
    return vals[0] if vals and not str(vals[0]).startswith("<") else 1


def blamed_line(exc: BaseException, folder: Path | None = None) -> str:
    """Source of the innermost traceback line inside the block's own module."""
    lines = blamed_lines(exc, folder)
    return lines[0] if lines else ""


def blamed_lines(exc: BaseException, folder: Path | None = None) -> list[str]:
    """Traceback lines inside the block's own module, innermost first.

    The innermost line is usually a helper's (``nn.Conv2d(in_dim, hidden_dim)`` in a nested
    block); the line that passed the bad value down (``in_dim * mlp_ratio``) is further out.
    """
    folder = folder or Path.cwd()
    lines: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if Path(filename).parent == folder:
            lines.append(linecache.getline(filename, tb.tb_lineno))
        tb = tb.tb_next
    return lines[::-1]


def _from_traceback(cls: type, kwargs: dict[str, Any], exc: BaseException) -> dict[str, Any] | None:
    params = {p.name: p for p in init_parameters(cls)}
    lines = blamed_lines(exc)
    names = [n for line in lines for n in _IDENT.findall(line) if n in params]
    names = list(dict.fromkeys(names))
    text = str(exc)
    for name in names:
        current = kwargs.get(name, params[name].default)
        if current is inspect.Parameter.empty:
            current = None
        new = _better(name, current, text, cls.__name__, params)
        if new is not None and not _same(new, current):
            return {**kwargs, name: new}
    return None


_DOTTED = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b")


def _dataclass_field(
    kwargs: dict[str, Any], params: dict[str, Any], lines: list[str]
) -> dict[str, Any] | None:
    """``to_2tuple(cfg.window_size)`` failing on None: a dataclass config argument leaves a
    field unset that the full model fills in (timm's MaxxVit sets window sizes from the
    image size). Give the first unset field on the failing lines a value by its name."""
    for line in lines:
        for owner, field in _DOTTED.findall(line):
            if owner not in params:
                continue
            value = kwargs.get(owner, params[owner].default)
            if not dataclasses.is_dataclass(value) or isinstance(value, type):
                continue
            if (field not in {f.name for f in dataclasses.fields(value)}
                    or getattr(value, field) is not None):
                continue
            try:
                new = dataclasses.replace(value, **{field: _scalar_for(field)})
            except Exception:
                continue
            return {**kwargs, owner: new}
    for owner, p in params.items():  # not named on the lines: unset sizes are the usual gap
        value = kwargs.get(owner, p.default)
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            continue
        new = value
        for f in dataclasses.fields(value):  # one at a time: ``__post_init__`` derives the rest
            if f.name.endswith("_size") and getattr(new, f.name) is None:
                with contextlib.suppress(Exception):
                    new = dataclasses.replace(new, **{f.name: _scalar_for(f.name)})
        if new is not value:
            return {**kwargs, owner: new}
    return None


def _better(name: str, current: Any, text: str, owner: str, params: dict[str, Any]) -> Any:
    """A replacement for ``current`` given the error ``text`` it caused (None: no idea)."""
    scalar = current is None or isinstance(current, int | float) and not isinstance(current, bool)
    if _WANTS_SEQ.search(text) and scalar:
        item = current if current is not None else _scalar_for(name)
        if not isinstance(item, int | float):
            item = 1
        return [item] * SEQ_LEN
    if _WANTS_SCALAR.search(text) and isinstance(current, tuple | list) and current:
        return current[0]
    if _WANTS_INT.search(text) and isinstance(current, float):
        return max(1, int(current))
    if "NoneType" in text and current is None:
        if "not callable" in text:
            return layer_factory(name, owner, set(params))
        return _scalar_for(name)
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:
        return False
