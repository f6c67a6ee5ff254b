"""How one ``forward`` argument's value is shaped from its name and annotation.

The probe builder (``_probe.py``) decides *which* arguments a block needs; this module
holds the vocabulary of names and annotations that say *what kind* of value one is (a
(height, width) pair, a side length, a list or dict of feature maps, a residual) and turns
the primary probe tensor into it. Kept apart so that vocabulary can grow without the
builder growing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

_EMPTY = inspect.Parameter.empty
_SIDE = re.compile(r"^(h|w|height|width|H|W|hh|ww)$", re.I)
_HW = re.compile(
    r"^(hw|size|hw_shape|feat_size|spatial_shape|shape|hw_size|x_size|resolution|"
    r"(input|image|img|feat|grid|patch)_(dimensions|dims|resolution|shape|hw))$"
)
_PAIR_ANN = re.compile(r"^(Tuple|tuple)\[int,int\]")  # ``tuple[int, int]``: a (height, width)
_LENGTH = re.compile(r"^(seqlen|seq_len|seq_length|length|num_tokens|num_positions)$")
_SIZE_ANN = re.compile(r"(^|[.'<])Size('>)?$")  # ``torch.Size``: the probe's own shape


_LIST_ANN = re.compile(r"^(typing\.)?(List|list|Sequence|Tuple|tuple|Iterable)\[.*Tensor")
_STR_LIST_ANN = re.compile(r"^(typing\.)?(List|list|Sequence)\[str\]$")
_DICT_ANN = re.compile(r"^(typing\.)?(Dict|dict|Mapping|OrderedDict)\[.*Tensor")
_RESIDUAL = re.compile(r"^(input_tensor|residual|shortcut|identity|skip|res)$")


def _ann_text(p: inspect.Parameter) -> str:
    ann = p.annotation
    if ann is _EMPTY:
        return ""
    if isinstance(ann, type):  # ``int``, ``torch.Size``: the name, not "<class 'int'>"
        return ann.__name__
    text = ann if isinstance(ann, str) else str(ann)
    return text.strip("'\"").replace(" ", "").removeprefix("typing.")


def _levels(x: torch.Tensor) -> list[torch.Tensor]:
    """Two feature levels (the second at half resolution) for multi-scale heads."""
    if x.dim() in (3, 4, 5) and x.is_floating_point() and min(x.shape[2:]) >= 2:
        pool = {3: nn.functional.avg_pool1d, 4: nn.functional.avg_pool2d}.get(x.dim())
        small = pool(x, 2) if pool is not None else nn.functional.avg_pool3d(x, 2)
        return [x, small.contiguous()]
    return [x, x.clone()]


def _unpacked(module: nn.Module | None, name: str) -> bool:
    """``cos, sin = position_embeddings`` in ``forward``: a pair, whatever the annotation."""
    if module is None:
        return False
    try:
        text = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False
    return re.search(rf"^\s*\w+\s*,\s*\w+\s*=\s*{re.escape(name)}\s*$", text, re.M) is not None


def _is_hw(p: inspect.Parameter) -> bool:
    """A (height, width) pair: by name (``input_dimensions``) or by ``tuple[int, int]``."""
    return bool(_HW.match(p.name) or _PAIR_ANN.match(_ann_text(p)))


def _listed_choice(name: str, kw: Mapping[str, Any], module: nn.Module | None) -> Any:
    """``layer_type`` when the config (or block) lists ``layer_types``: the first listed."""
    owners = [v for v in kw.values() if hasattr(v, "to_dict")] + [module]
    for owner in owners:
        values = getattr(owner, f"{name}s", None)
        if isinstance(values, list | tuple) and values and isinstance(values[0], str | int):
            return values[0]
    return None


def _container(p: inspect.Parameter, x: torch.Tensor, side: int = 8) -> Any:
    """Wrap the primary tensor when ``forward`` is annotated to take a list or dict of maps.

    Position-embedding builders take only what they describe: a primary annotated
    ``torch.Size`` gets the probe tensor's shape, an ``int`` (``width``, ``seqlen``) a side or
    a sequence length.
    """
    text = _ann_text(p)
    if _SIZE_ANN.search(text):
        return x.shape
    named = (_SIDE.match(p.name) and len(p.name) > 2) or _LENGTH.match(p.name)  # a bare ``h`` is a hidden state
    if text == "int" or (named and not text):
        return side if _SIDE.match(p.name) or x.dim() < 3 else x.shape[1]
    if _LIST_ANN.match(text):
        return _levels(x)
    if _DICT_ANN.match(text):
        return {str(i): t for i, t in enumerate(_levels(x))}
    return x


def _residual(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Residual input of a projection block: shaped like the output of its last linear."""
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is not None and x.dim() >= 2 and x.shape[-1] == last.in_features:
        return torch.randn(*x.shape[:-1], last.out_features)
    return x.clone()
