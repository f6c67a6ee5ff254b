"""Structural edits with LibCST: activation and norm swaps, layers in and out, residuals.

Each function returns candidate edits as ``(kind, description, new source)``; nothing is
guaranteed valid here, the sandbox decides. Edits are found syntactically (calls whose
callee is a known torch.nn layer) or from the recording (where each module was built and
whether it keeps its input's shape; which additions in the traced graph join two tensors
of one shape), and they rewrite only the node concerned, so formatting and comments stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from nnrag.mutate._sites import parse

Edit = tuple[str, str, str]
ACTIVATIONS = ("ReLU", "GELU", "SiLU", "Hardswish", "Mish", "LeakyReLU", "ReLU6", "ELU")
FUNCTIONAL = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "hardswish": "Hardswish",
              "mish": "Mish", "leaky_relu": "LeakyReLU", "relu6": "ReLU6", "elu": "ELU"}
_FN_OF = {v: k for k, v in FUNCTIONAL.items()}
NORM_SWAPS = {
    "BatchNorm2d": ("GroupNorm(1, {c})", "InstanceNorm2d({c}, affine=True)"),
    "GroupNorm": ("BatchNorm2d({c})",),
    "InstanceNorm2d": ("BatchNorm2d({c})",),
    "LayerNorm": ("RMSNorm({c})",),
    "RMSNorm": ("LayerNorm({c})",),
}
_CHANNEL_KW = {"BatchNorm2d": "num_features", "InstanceNorm2d": "num_features",
               "GroupNorm": "num_channels", "LayerNorm": "normalized_shape",
               "RMSNorm": "normalized_shape"}
_INSERTABLE = {"Conv1d": "Conv1d({o}, {o}, 3, padding=1)",
               "Conv2d": "Conv2d({o}, {o}, 3, padding=1)",
               "Conv3d": "Conv3d({o}, {o}, 3, padding=1)", "Linear": "Linear({o}, {o})"}
_SHAPE_ONLY = set(ACTIVATIONS) | {"Dropout", "Dropout2d", "Identity", "Sigmoid", "Tanh", "Softmax",
                                  "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "RMSNorm",
                                  "InstanceNorm2d", "MaxPool2d", "AvgPool2d", "Flatten", "DropPath"}
RESIDUAL_CLASS = "NnragResidual"
_RESIDUAL_DEF = f'''

import torch as _nnrag_torch


class {RESIDUAL_CLASS}(_nnrag_torch.nn.Module):
    """Added by nnrag mutate: ``x + body(x)`` around a shape-preserving module."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)
'''


def _leaf(func: cst.BaseExpression) -> str:
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return ""


def _base(func: cst.BaseExpression) -> str | None:
    """``nn`` of ``nn.Conv2d``; None for a bare name (we would not know what to import)."""
    if isinstance(func, cst.Attribute):
        return cst.Module([]).code_for_node(func.value)
    return None


def _simple(node: cst.BaseExpression) -> bool:
    """An expression safe to repeat: names, attributes, numbers, arithmetic, subscripts."""
    if isinstance(node, cst.Name | cst.Integer | cst.Attribute):
        return True
    if isinstance(node, cst.BinaryOperation):
        return _simple(node.left) and _simple(node.right)
    if isinstance(node, cst.Subscript):
        return _simple(node.value)
    return False


def _arg(call: cst.Call, index: int, keyword: str) -> cst.BaseExpression | None:
    for a in call.args:
        if a.keyword is not None and a.keyword.value == keyword:
            return a.value
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return positional[index].value if index < len(positional) else None


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


class _Calls(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self) -> None:
        self.calls: list[tuple[int, cst.Call, tuple[int, int, int, int]]] = []

    def visit_Call(self, node: cst.Call) -> None:
        r = self.get_metadata(PositionProvider, node)
        self.calls.append((len(self.calls), node,
                           (r.start.line, r.end.line, r.start.column, r.end.column)))


class _ReplaceNth(cst.CSTTransformer):
    def __init__(self, index: int, make: Callable[[cst.Call], cst.BaseExpression]) -> None:
        self.index, self.make, self.seen = index, make, -1
        self.open: list[int] = []  # numbers of the calls being visited, innermost last

    def visit_Call(self, node: cst.Call) -> None:
        self.seen += 1
        self.open.append(self.seen)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        return self.make(updated) if self.open.pop() == self.index else updated


def _calls(module: cst.Module) -> list[tuple[int, cst.Call, tuple[int, int, int, int]]]:
    visitor = _Calls()
    MetadataWrapper(module, unsafe_skip_copy=True).visit(visitor)
    return visitor.calls


def _replace(module: cst.Module, index: int, make: Callable[[cst.Call], cst.BaseExpression]) -> str:
    return module.visit(_ReplaceNth(index, make)).code


def _expr(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


def _to(text: str) -> Callable[[cst.Call], cst.BaseExpression]:
    """Replace the call by the expression ``text``."""
    return lambda _call: _expr(text)


def _followed(base: str, layer: str) -> Callable[[cst.Call], cst.BaseExpression]:
    """Wrap the call as ``Sequential(call, ReLU(), layer)``."""
    return lambda call: _expr(f"{base}.Sequential({_code(call)}, {base}.ReLU(), {base}.{layer})")


def _without_arg(i: int) -> Callable[[cst.Call], cst.BaseExpression]:
    """The call without its ``i``-th argument."""
    return lambda call: call.with_changes(args=[x for j, x in enumerate(call.args) if j != i])


def _layer_calls(
    module: cst.Module,
) -> Iterator[tuple[int, cst.Call, tuple[int, int, int, int], str, str]]:
    """Calls written ``base.Name(...)`` (``nn.ReLU()``, ``F.relu(x)``): ``(index, call, pos,
    name, base)``. A bare ``ReLU()`` is skipped: an edit would not know what to import."""
    for index, call, pos in _calls(module):
        base = _base(call.func)
        if base is not None:
            yield index, call, pos, _leaf(call.func), base


def activation_edits(source: str) -> Iterator[Edit]:
    module = parse(source)
    for index, call, pos, name, base in _layer_calls(module):
        if name in ACTIVATIONS:
            for new in ACTIVATIONS:
                if new != name:
                    yield ("activation", f"line {pos[0]}: {name} -> {new}",
                           _replace(module, index, _to(f"{base}.{new}()")))
        elif name in FUNCTIONAL and call.args and not call.args[0].star:
            fbase = base if base not in ("torch",) else "torch.nn.functional"
            first = _code(call.args[0].value)
            for new in ACTIVATIONS:
                if new != FUNCTIONAL[name]:
                    fn = _FN_OF[new]
                    yield ("activation", f"line {pos[0]}: {name}() -> {fn}()",
                           _replace(module, index, _to(f"{fbase}.{fn}({first})")))


def norm_edits(source: str) -> Iterator[Edit]:
    module = parse(source)
    for index, call, pos, name, base in _layer_calls(module):
        if name not in NORM_SWAPS:
            continue
        channels = _arg(call, 1 if name == "GroupNorm" else 0, _CHANNEL_KW[name])
        if channels is None or not _simple(channels):
            continue
        for template in NORM_SWAPS[name]:
            new = template.format(c=_code(channels))
            yield ("norm", f"line {pos[0]}: {name} -> {new.split('(')[0]}",
                   _replace(module, index, _to(f"{base}.{new}")))


def layer_edits(source: str) -> Iterator[Edit]:
    """Insert a width-preserving layer after a conv/linear; drop one element of a Sequential."""
    module = parse(source)
    for index, call, pos, name, base in _layer_calls(module):
        if name in _INSERTABLE:
            out = _arg(call, 1, "out_channels" if name != "Linear" else "out_features")
            if out is not None and _simple(out):
                extra = _INSERTABLE[name].format(o=_code(out))
                yield ("depth", f"line {pos[0]}: {name} + ReLU + {extra.split('(')[0]}",
                       _replace(module, index, _followed(base, extra)))
        if name == "Sequential" and len(call.args) >= 2 and not any(a.star for a in call.args):
            for i, a in enumerate(call.args):
                if isinstance(a.value, cst.Call):
                    yield ("depth",
                           f"line {pos[0]}: drop {_leaf(a.value.func)} (Sequential item {i})",
                           _replace(module, index, _without_arg(i)))


def residual_edits(source: str, record: dict[str, Any],
                   residual_lines: list[int]) -> Iterator[Edit]:
    """Wrap shape-preserving modules in ``x + f(x)``; drop the identity of traced additions."""
    module = parse(source)
    calls = _calls(module)
    modules = record["modules"]
    by_pos: dict[tuple[int, ...], list[str]] = {}
    for path, info in modules.items():
        if path and info.get("pos"):
            by_pos.setdefault(tuple(info["pos"]), []).append(path)
    for index, call, pos in calls:
        paths = by_pos.get(pos)
        if not paths or _leaf(call.func) in _SHAPE_ONLY | {"Sequential", RESIDUAL_CLASS}:
            continue
        ok = all(
            (s := modules[p].get("shapes")) and isinstance(s[0], list) and s[0] == s[1]
            and sum(m["params"] for q, m in modules.items() if q == p or q.startswith(p + ".")) > 0
            for p in paths
        )
        if ok:
            code = _replace(module, index,
                            lambda c: cst.Call(cst.Name(RESIDUAL_CLASS), [cst.Arg(c)]))
            yield ("residual", f"line {pos[0]}: add x + {_leaf(call.func)}(x)",
                   code + _RESIDUAL_DEF)
    for line in sorted(set(residual_lines)):
        edited = _drop_addition(module, line)
        if edited is not None:
            yield ("residual", f"line {line}: remove the residual addition", edited)


class _DropAdd(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, line: int) -> None:
        self.line, self.done = line, False

    def _here(self, node: cst.CSTNode) -> bool:
        return not self.done and self.get_metadata(PositionProvider, node).start.line == self.line

    def leave_BinaryOperation(self, original: cst.BinaryOperation,
                              updated: cst.BinaryOperation) -> cst.BaseExpression:
        if isinstance(updated.operator, cst.Add) and self._here(original) and \
                not isinstance(updated.left, cst.Integer | cst.Float | cst.SimpleString) and \
                not isinstance(updated.right, cst.Integer | cst.Float | cst.SimpleString):
            self.done = True
            keep_right = isinstance(updated.left, cst.Name) and isinstance(updated.right, cst.Call)
            return updated.right if keep_right else updated.left
        return updated

    def leave_AugAssign(self, original: cst.AugAssign,
                        updated: cst.AugAssign) -> cst.BaseSmallStatement:
        if isinstance(updated.operator, cst.AddAssign) and self._here(original):
            self.done = True
            return cst.Pass()
        return updated


def _drop_addition(module: cst.Module, line: int) -> str | None:
    transformer = _DropAdd(line)
    code = MetadataWrapper(module).visit(transformer).code
    return code if transformer.done else None
