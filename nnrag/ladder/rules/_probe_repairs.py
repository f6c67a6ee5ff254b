"""Failed forward -> repaired probes (``probe_repairs``): the first rule with probes wins.

The probe guesser cannot know a window size, a positional table's length or which optional
argument the block really needs; the error says it. These rules look at the failed probe
and the exception: fill an argument that was None, drop one of two exclusive inputs, feed
bytes to image ops, and, last, reshape the primary input as the message suggests
(``shape_repairs``); every tensor that had the primary's shape and every integer equal to
a changed size follow along. The ladder applies a few repairs in a row, so a block needing
two facts can still pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from nnrag.ladder._probe import BATCH, Probe, described, rebuild
from nnrag.ladder.rules._registry import Registry
from nnrag.ladder.rules._shapes import SHAPE_REPAIRS, shape_candidates

PROBE_REPAIRS = Registry(
    "probe_repairs", "failed forward probe + exception -> repaired probes; first answer wins"
)
Fixes = list[Probe] | None


_BOTH = re.compile(r"(?:cannot|can't|can not) (?:specify|pass|provide) both (\w+) and (\w+)", re.I)


def _one_of(probe: Probe, exc: BaseException) -> Probe | None:
    """``You cannot specify both decoder_input_ids and decoder_inputs_embeds``: drop the
    second (embeddings are the derived spelling), or the first when only it was passed."""
    m = _BOTH.search(str(exc))
    if m is None:
        return None
    for name in (m.group(2), m.group(1)):
        if probe.kwargs.get(name) is not None:
            kwargs = {k: v for k, v in probe.kwargs.items() if k != name}
            return described(probe.args, kwargs)
    return None


_BATCH_CLASH = re.compile(
    r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at "
    r"non-singleton dimension [01]\b"
)


def _unbatched_pairs(probe: Probe, exc: BaseException) -> Probe | None:
    """Rotary ``(cos, sin)`` built per sample ``[B, L, D]`` for a block that wants one table
    ``[L, D]`` (vision rope): the batch axis lands on the heads. Drop it from the pairs."""
    m = _BATCH_CLASH.search(str(exc))
    if m is None or BATCH not in (int(m.group(1)), int(m.group(2))):
        return None
    kwargs = dict(probe.kwargs)
    changed = False
    for k, v in probe.kwargs.items():
        if (
            isinstance(v, tuple)
            and len(v) == 2
            and all(isinstance(t, torch.Tensor) and t.dim() == 3 and t.shape[0] == BATCH for t in v)
        ):
            kwargs[k] = (v[0][0], v[1][0])
            changed = True
    if not changed:
        return None
    return described(probe.args, kwargs)


_REQUIRED = re.compile(
    r"must be given|is required|must be provided|(have|has) to (specify|be provided)|"
    r"must specify|cannot be None|should not be none", re.I
)
_UINT8 = re.compile(r"(Only|expected|requires) (torch\.)?uint8|uint8 image tensors")


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 256, t.shape, dtype=torch.uint8)


_NONE = re.compile(r"'NoneType' object (has no attribute|is not subscriptable|is not iterable)|"
                   r"must be Tensor, not NoneType|NoneType' and|and 'NoneType'")


_SEQ_NOT_TENSOR = re.compile(r"must be Tensor, not (list|tuple)|'(list|tuple)' object has no "
                             r"attribute '(shape|size|dim|dtype|device|view|transpose)'")


def _unwrap(probe: Probe, exc: BaseException) -> Probe | None:
    """A list passed because ``forward`` was annotated ``tuple[Tensor]`` is used as a tensor."""
    first = probe.args[0] if probe.args else None
    if not isinstance(first, list | tuple) or not first or not _SEQ_NOT_TENSOR.search(str(exc)):
        return None
    if not isinstance(first[0], torch.Tensor):
        return None
    args = (first[0], *probe.args[1:])
    return described(args, probe.kwargs)


def _fill_none(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str] = ()
) -> list[Probe]:
    """A keyword that was None (passed, or left at its default) is used as a tensor on the
    failing line: give it one. A mask gets an attention mask ``[B, L]`` and, for masks that
    multiply the features (``x * padding_mask``), all-ones ``[B, L, 1]``."""
    text = str(exc)
    if _NONE.search(text):  # used on the failing line
        from nnrag.ladder._repair import blamed_line

        where = blamed_line(exc)
    elif _REQUIRED.search(text):  # named by a validation message: "bbox is required"
        where = text.split(" [at ")[0]
    else:
        return []
    left_out = {n: None for n in optional if n not in probe.kwargs}
    for name, value in {**probe.kwargs, **left_out}.items():
        if value is None and re.search(rf"\b{re.escape(name)}\b", where, re.I):
            if re.search(r"(^|_)ids$", name):
                fills: list[Any] = [torch.randint(0, 4, (x.shape[0], 8))]
            elif "mask" in name:
                seq = x.shape[1] if x.dim() >= 2 else 8
                fills = [torch.ones(x.shape[0], seq, dtype=torch.long)]
                if x.is_floating_point():  # [B, L, 1]: broadcasts over any feature width
                    fills.append(torch.ones(*x.shape[:-1], 1))
            else:
                fills = [x.clone()]
            out = []
            for fill in fills:
                out.append(described(probe.args, {**probe.kwargs, name: fill}))
            return out
    return []


@PROBE_REPAIRS.register(
    "fill_none", order=10, example="transformers DeformableDetrMultiscaleDeformableAttention",
    doc="an argument left None is used as a tensor on the failing line: give it one",
)
def _fill_none_rule(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str], limit: int
) -> Fixes:
    return _fill_none(probe, exc, x, optional) or None


@PROBE_REPAIRS.register(
    "one_of", order=20, example="transformers BartModel",
    doc="'cannot specify both decoder_input_ids and decoder_inputs_embeds': drop one",
)
def _one_of_rule(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str], limit: int
) -> Fixes:
    single = _one_of(probe, exc)
    return [single] if single is not None else None


@PROBE_REPAIRS.register(
    "uint8_image", order=30, example="torchvision RandomEqualize",
    doc="image ops that only take bytes: the primary (and look-alikes) as uint8",
)
def _uint8_image(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str], limit: int
) -> Fixes:
    if _UINT8.search(str(exc)) and x.is_floating_point():  # image ops on bytes
        return [rebuild(probe, tuple(x.shape), tuple(x.shape), _as_bytes)]
    return None


@PROBE_REPAIRS.register(
    "unbatched_rotary", order=40, example="transformers Qwen2VLVisionBlock",
    doc="per-sample (cos, sin) for a block wanting one [L, D] table: drop the batch axis",
)
def _unbatched_rule(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str], limit: int
) -> Fixes:
    unbatched = _unbatched_pairs(probe, exc)
    return [unbatched] if unbatched is not None else None


@PROBE_REPAIRS.register(
    "unwrap_list", order=50, example="torchvision MultiScaleRoIAlign",
    doc="a list passed for a tuple[Tensor] annotation is used as a tensor: unwrap it",
)
def _unwrap_rule(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str], limit: int
) -> Fixes:
    unwrapped = _unwrap(probe, exc)
    return [unwrapped] if unwrapped is not None else None


@PROBE_REPAIRS.register(
    "reshape", order=60, example="timm WindowAttention",
    doc="the primary input reshaped as the message suggests (the shape_repairs rules)",
)
def _reshape(
    probe: Probe, exc: BaseException, x: torch.Tensor, optional: Sequence[str], limit: int
) -> Fixes:
    old = tuple(x.shape)
    used = shape_candidates(str(exc), old)[:limit]
    for name in dict.fromkeys(name for _, name in used):
        SHAPE_REPAIRS.record(name)
    return [rebuild(probe, old, new) for new, _ in used] or None
