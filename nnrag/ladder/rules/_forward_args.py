"""Secondary ``forward`` arguments -> probe values (``forward_args``): first match wins.

The probe builder fixes the primary tensor ``x``; every other parameter of ``forward`` is
filled here from its name and annotation. A rule returns ``(True, value)``; an optional
parameter that no earlier rule claims keeps its default (``optional_default`` stops the
search), and a required one that no rule recognises gets None.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnrag.ladder._probe_args import (
    _EMPTY,
    _IDS,
    _LIST_ANN,
    _MASK,
    _PACKED,
    _POS_IDS,
    _RESIDUAL,
    _ROPE,
    _ROUTE_IDX,
    _ROUTE_W,
    _SAME,
    _SIDE,
    _STR_LIST_ANN,
    _TENSORISH,
    BATCH,
    SEQ,
    _ann_text,
    _is_hw,
    _levels,
    _listed_choice,
    _residual,
    _rope,
    _routing,
    _unpacked,
)
from nnrag.ladder.rules._registry import STOP, Registry

FORWARD_ARGS = Registry(
    "forward_args", "secondary forward parameter -> probe value; first match wins"
)
Filled = tuple[bool, Any] | None


@dataclass(frozen=True)
class ArgContext:
    """One parameter to fill, beside the primary probe tensor ``x`` of the call."""

    p: inspect.Parameter
    x: torch.Tensor
    side: int
    ns: Mapping[str, Any]
    kw: Mapping[str, Any]
    module: nn.Module | None

    @property
    def name(self) -> str:
        return self.p.name

    @property
    def required(self) -> bool:
        return self.p.default is _EMPTY and self.p.kind is not self.p.VAR_KEYWORD

    @property
    def seq(self) -> int:
        return self.x.shape[1] if self.x.dim() >= 2 else SEQ

    @property
    def ann(self) -> str:
        return _ann_text(self.p)


def fill(ctx: ArgContext) -> tuple[bool, Any]:
    """``(use, value)`` for one parameter; ``(False, None)`` leaves the default."""
    found: tuple[bool, Any] | None = FORWARD_ARGS.first(ctx)
    if found is not None:
        return found
    return (True, None) if ctx.required else (False, None)


@FORWARD_ARGS.register(
    "rotary_pair", order=10, example="transformers LlamaAttention",
    doc="position_embeddings as (cos, sin): by annotation or 'cos, sin = ...' in forward",
)
def _rotary_pair(ctx: ArgContext) -> Filled:
    if _ROPE.search(ctx.name):
        ann = ctx.ann.lower()
        if not ann or "tuple" in ann or _unpacked(ctx.module, ctx.name):
            return True, _rope(ctx.ns, ctx.kw, ctx.x)
    return None


@FORWARD_ARGS.register(
    "optional_default", order=20, example="timm Attention",
    doc="optional parameters keep their defaults: the block decides what None means",
)
def _optional_default(ctx: ArgContext) -> Any:
    return STOP if not ctx.required else None


@FORWARD_ARGS.register(
    "position_table", order=30, example="transformers DetrAttention",
    doc="a required additive position embedding (or rope table) shaped like x",
)
def _position_table(ctx: ArgContext) -> Filled:
    return (True, ctx.x.clone()) if _ROPE.search(ctx.name) else None


@FORWARD_ARGS.register(
    "packed_starts", order=40, example="transformers Qwen2VLVisionBlock",
    doc="cu_seqlens of a packed [tokens, hidden] batch: one sequence",
)
def _packed_starts(ctx: ArgContext) -> Filled:
    x = ctx.x
    if _PACKED.match(ctx.name) and x.dim() == 2 and x.is_floating_point():
        return True, torch.tensor([0, x.shape[0]], dtype=torch.int32)
    return None


@FORWARD_ARGS.register(
    "moe_routing", order=50, example="timm CondConv2d",
    doc="MoE expert ids and routing weights consistent with the expert count",
)
def _moe_routing(ctx: ArgContext) -> Filled:
    if _ROUTE_IDX.match(ctx.name) or _ROUTE_W.match(ctx.name):
        return True, _routing(ctx.name, ctx.x, ctx.kw, ctx.module)
    return None


@FORWARD_ARGS.register(
    "token_ids", order=60, example="transformers BlipTextModel",
    doc="token ids beside an image primary: small ints, not a float copy",
)
def _token_ids(ctx: ArgContext) -> Filled:
    x = ctx.x
    if _IDS.search(ctx.name) and ctx.name != "labels" and x.is_floating_point():
        return True, torch.randint(0, 4, (x.shape[0] if x.dim() else BATCH, SEQ))
    return None


@FORWARD_ARGS.register(
    "position_ids", order=70, example="transformers LlamaDecoderLayer",
    doc="position ids 0..L-1 per sample",
)
def _position_ids(ctx: ArgContext) -> Filled:
    if _POS_IDS.match(ctx.name):
        return True, torch.arange(ctx.seq).unsqueeze(0).expand(BATCH, ctx.seq)
    return None


@FORWARD_ARGS.register(
    "mask_none", order=80, example="transformers BertSelfAttention",
    doc="a required mask or bias passed as None: no masking",
)
def _mask_none(ctx: ArgContext) -> Filled:
    return (True, None) if _MASK.search(ctx.name) else None


@FORWARD_ARGS.register(
    "feature_levels", order=90, example="torchvision LastLevelP6P7",
    doc="per-level maps beside per-level maps (FPN extra blocks)",
)
def _feature_levels(ctx: ArgContext) -> Filled:
    return (True, _levels(ctx.x)) if _LIST_ANN.match(ctx.ann) else None


@FORWARD_ARGS.register(
    "level_names", order=100, example="torchvision LastLevelP6P7",
    doc="the names of those levels (List[str])",
)
def _level_names(ctx: ArgContext) -> Filled:
    if _STR_LIST_ANN.match(ctx.ann):
        return True, [str(i) for i in range(len(_levels(ctx.x)))]
    return None


@FORWARD_ARGS.register(
    "side", order=110, example="transformers SegformerMixFFN",
    doc="height/width by name: the probe's side",
)
def _side(ctx: ArgContext) -> Filled:
    return (True, ctx.side) if _SIDE.match(ctx.name) else None


@FORWARD_ARGS.register(
    "hw_pair", order=120, example="transformers SwinLayer",
    doc="a (height, width) pair by name (input_dimensions) or tuple[int, int]",
)
def _hw_pair(ctx: ArgContext) -> Filled:
    return (True, (ctx.side, ctx.side)) if _is_hw(ctx.p) else None


@FORWARD_ARGS.register(
    "device", order=130, example="transformers DetrSinePositionEmbedding",
    doc="position-embedding builders take the device to build on",
)
def _device(ctx: ArgContext) -> Filled:
    ann = ctx.ann
    if ctx.name == "device" or ann.endswith("device") or "device|" in ann:
        return True, ctx.x.device
    return None


@FORWARD_ARGS.register(
    "dtype", order=140, example="transformers DetrSinePositionEmbedding",
    doc="... and the dtype to build in",
)
def _dtype(ctx: ArgContext) -> Filled:
    if ctx.name == "dtype" or ctx.ann.endswith("dtype"):
        return True, ctx.x.dtype
    return None


@FORWARD_ARGS.register(
    "listed_choice", order=150, example="transformers Gemma3RotaryEmbedding",
    doc="layer_type when the config (or block) lists layer_types: the first listed",
)
def _listed(ctx: ArgContext) -> Filled:
    choice = _listed_choice(ctx.name, ctx.kw, ctx.module)
    return (True, choice) if choice is not None else None


@FORWARD_ARGS.register(
    "timestep", order=160, example="diffusers ResnetBlock2D",
    doc="diffusion timesteps / noise levels: one scalar per sample",
)
def _timestep(ctx: ArgContext) -> Filled:
    if re.search(r"(^t$|timestep|time|^sigma|noise_level)", ctx.name):
        return True, torch.rand(BATCH)
    return None


@FORWARD_ARGS.register(
    "residual", order=170, example="transformers BertSelfOutput",
    doc="the residual of a projection block: shaped like its last linear's output",
)
def _residual_rule(ctx: ArgContext) -> Filled:
    if _RESIDUAL.match(ctx.name) and ctx.module is not None:
        return True, _residual(ctx.module, ctx.x)
    return None


@FORWARD_ARGS.register(
    "same_as_primary", order=180, example="timm CrossAttention",
    doc="keys, values, skips and other tensors by name or annotation: a copy of x",
)
def _same_as_primary(ctx: ArgContext) -> Filled:
    if _SAME.match(ctx.name) or "Tensor" in str(ctx.p.annotation) or _TENSORISH.search(ctx.name):
        return True, ctx.x.clone()
    return None


@FORWARD_ARGS.register(
    "int_size", order=190, example="timm SwinTransformerBlock",
    doc="partition/window sizes and other ints: 4 divides every probe side",
)
def _int_size(ctx: ArgContext) -> Filled:
    if "int" in str(ctx.p.annotation) or re.search(r"(^p$|size$|^ws$|^n$)", ctx.name):
        return True, 4
    return None
