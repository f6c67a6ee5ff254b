"""Inputs of multi-scale deformable attention, recognised by their parameter names.

Deformable DETR-style blocks take a flattened multi-level feature map plus its layout:
``spatial_shapes`` (one ``(h, w)`` per level), ``level_start_index`` and per-query
``reference_points`` in ``[0, 1]``. They are optional in the signature but required in
practice, and only a consistent set works: the levels' areas must add up to the value's
length and their count must equal the block's ``n_levels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

LAYOUT_NAMES = frozenset(
    {"spatial_shapes", "spatial_shapes_list", "level_start_index", "reference_points",
     "valid_ratios"}
)


def _levels(module: nn.Module, init_kwargs: Mapping[str, Any]) -> int:
    modules = list(module.modules())[:200]
    for attr in ("n_levels", "num_levels", "num_feature_levels"):  # the attention's own first
        for m in modules:
            v = getattr(m, attr, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    for cfg in init_kwargs.values():
        v = getattr(cfg, "num_feature_levels", None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return 1


def multiscale_inputs(
    module: nn.Module, init_kwargs: Mapping[str, Any], x: torch.Tensor, names: set[str]
) -> dict[str, Any]:
    """Consistent layout arguments for the ``names`` the forward takes; empty if none fit."""
    if not names & LAYOUT_NAMES or x.dim() != 3:
        return {}
    batch, length = x.shape[0], x.shape[1]
    levels = _levels(module, init_kwargs)
    if length < levels:
        return {}
    # one row of pixels per level; the last level takes what does not divide evenly
    areas = [length // levels] * (levels - 1) + [length - (length // levels) * (levels - 1)]
    starts = [sum(areas[:i]) for i in range(levels)]
    values: dict[str, Any] = {
        "spatial_shapes": torch.tensor([[1, a] for a in areas]),
        "spatial_shapes_list": [(1, a) for a in areas],
        "level_start_index": torch.tensor(starts),
        "reference_points": torch.rand(batch, length, levels, 2),
        "valid_ratios": torch.ones(batch, levels, 2),
        "encoder_hidden_states": x.clone(),
    }
    return {k: v for k, v in values.items() if k in names}


KERNEL_NAMES = frozenset({"sampling_locations", "attention_weights"})


def kernel_inputs(x: torch.Tensor, names: set[str], heads: int = 2,
                  points: int = 2) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """The raw deformable-attention kernel (``value, spatial shapes, ..., sampling_locations,
    attention_weights``): ``value`` is split per head ``[B, L, heads, d]``, and the sampling
    grid and weights must agree with it on batch, heads, levels and points."""
    if not names >= KERNEL_NAMES or x.dim() != 3 or x.shape[-1] % heads:
        return None
    batch, length, dim = x.shape
    value = x.reshape(batch, length, heads, dim // heads)
    queries = length
    kwargs: dict[str, Any] = {
        "sampling_locations": torch.rand(batch, queries, heads, 1, points, 2),
        "attention_weights": torch.softmax(torch.rand(batch, queries, heads, 1, points), -1),
        "im2col_step": 64,
    }
    for prefix in ("", "value_", "input_"):
        kwargs[f"{prefix}spatial_shapes"] = torch.tensor([[1, length]])
        kwargs[f"{prefix}spatial_shapes_list"] = [(1, length)]
        kwargs[f"{prefix}level_start_index"] = torch.tensor([0])
    return value, {k: v for k, v in kwargs.items() if k in names}
