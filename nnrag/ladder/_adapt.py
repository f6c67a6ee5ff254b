"""Probe repair: read a failed forward's error message and reshape the probe to match.

The probe guesser cannot know a window size, a positional table's length or the width of
a flattening head, but PyTorch says it in the error: ``size of tensor a (64) must match
the size of tensor b (49)``, ``mat1 and mat2 shapes cannot be multiplied (2x512 and
2048x10)``, ``expected input[2, 8, 32, 32] to have 3 channels``. Each rule below turns
one such message into new shapes for the primary input; every tensor in the call that had
the primary's shape, and every integer argument equal to a changed size, follows along.
The ladder applies a few repairs in a row, so a block needing two facts can still pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from nnrag.ladder._probe import BATCH, Probe, describe

Shape = tuple[int, ...]
MAX_NUMEL = 1 << 22  # never build a probe over ~16 MB of float32
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], Shape], Iterator[Shape]]]] = []


def _rule(
    pattern: str,
) -> Callable[[Callable[..., Iterator[Shape]]], Callable[..., Iterator[Shape]]]:
    def register(fn: Callable[..., Iterator[Shape]]) -> Callable[..., Iterator[Shape]]:
        _RULES.append((re.compile(pattern, re.S), fn))
        return fn

    return register


def _replace(shape: Shape, old: int, new: int) -> Iterator[Shape]:
    """``shape`` with the non-batch dimensions equal to ``old`` set to ``new``."""
    if old != new and old in shape[1:]:
        yield (shape[0], *(new if d == old else d for d in shape[1:]))


def _square(n: int) -> int | None:
    r = math.isqrt(n)
    return r if r * r == n and r > 0 else None


def _tokens(shape: Shape, old: int, new: int) -> Iterator[Shape]:
    """A 4-d map whose ``H*W`` is the token count ``old``: make it ``new`` tokens."""
    side = _square(new)
    if side is None or len(shape) != 4:
        return
    if shape[2] * shape[3] == old:  # [B, C, H, W]
        yield (shape[0], shape[1], side, side)
    if shape[1] * shape[2] == old:  # [B, H, W, C]
        yield (shape[0], side, side, shape[3])


@_rule(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")
def _broadcast(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    a, b = int(m.group(1)), int(m.group(2))
    for old, new in ((a, b), (b, a)):
        yield from _replace(shape, old, new)
        yield from _tokens(shape, old, new)
    yield from _nudge(shape, a, b)


@_rule(r"Expected size (\d+) but got size (\d+)")
def _cat(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    want, got = int(m.group(1)), int(m.group(2))
    for old, new in ((got, want), (want, got)):
        yield from _replace(shape, old, new)
        yield from _tokens(shape, old, new)
    yield from _nudge(shape, want, got)


def _nudge(shape: Shape, a: int, b: int) -> Iterator[Shape]:
    """Branches of a map disagree by one pixel (stride-2 without padding): try odd sides."""
    if len(shape) == 4 and abs(a - b) == 1 and a not in shape[2:] and b not in shape[2:]:
        yield (*shape[:2], shape[2] + 3, shape[3] + 3)
        yield (*shape[:2], shape[2] + 1, shape[3] + 1)


@_rule(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
def _matmul(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    got, want = int(m.group(2)), int(m.group(3))
    if shape[-1] == got:
        yield (*shape[:-1], want)
    if len(shape) > 2 and math.prod(shape[1:]) == got:  # a flattening head
        spatial = math.prod(shape[2:])
        if want % spatial == 0:
            yield (shape[0], want // spatial, *shape[2:])
        yield (shape[0], want)
    if len(shape) > 2 and shape[1] == got:
        yield (*shape[:1], want, *shape[2:])
    yield from _flattened(shape, got, want)


def _flattened(shape: Shape, got: int, want: int) -> Iterator[Shape]:
    """A square map flattened after ``s``-fold downsampling: find the side giving ``want``."""
    if len(shape) != 4 or shape[2] != shape[3]:
        return
    for s in (1, 2, 4, 8, 16, 32):
        side = shape[2] // s
        if side == 0 or got % (side * side):
            continue
        channels = got // (side * side)
        if channels == 0:
            continue
        new_side = _square(want // channels) if want % channels == 0 else None
        if new_side is not None:
            yield (*shape[:2], new_side * s, new_side * s)
            return


@_rule(r"expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels")
def _channels(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    want, got = int(m.group(1)), int(m.group(2))
    if len(shape) >= 3 and shape[1] == got:
        yield (shape[0], want, *shape[2:])
    if len(shape) >= 3 and shape[-1] == got:  # channels-last input to a conv: go channels-first
        yield (shape[0], want, *shape[1:-1])
    yield from _replace(shape, got, want)


@_rule(r"permitted channel values are \[([\d, ]+)\], but found (\d+)")
def _image_channels(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    """Image transforms accept grey or RGB only: the probe's channels become the last allowed."""
    allowed = [int(c) for c in m.group(1).split(",")]
    if len(shape) >= 3 and shape[-3] == int(m.group(2)):
        yield (*shape[:-3], allowed[-1], *shape[-2:])


@_rule(r"split_sizes to sum exactly to (\d+).*split_sizes=\[([\d, ]+)\]")
def _split(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    total = sum(int(s) for s in m.group(2).split(","))
    yield from _replace(shape, int(m.group(1)), total)


@_rule(r"normalized_shape=\[(\d+)\], expected input with shape \[\*, \d+\]")
def _norm(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    want = int(m.group(1))
    if len(shape) == 4 and shape[1] == want:  # channels-first map into a channels-last norm
        yield (shape[0], shape[2], shape[3], want)
    yield (*shape[:-1], want)


@_rule(
    r"Expected (\d)D \(unbatched\) or (\d)D \(batched\) input to conv\w*"
    r"(?:, but got input of size: \[([\d, ]+)\])?"
)
def _conv_rank(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    rank = int(m.group(2))
    got = m.group(3).count(",") + 1 if m.group(3) else len(shape)
    if got == rank + 1 and len(shape) == rank and rank >= 3:
        # the block adds the channel axis itself: it wants [B, H, W] (or [B, L]), not a map
        yield (shape[0], *shape[2:])
    yield from _rerank(shape, rank)


@_rule(r"expected (\d)D (?:or (\d)D )?input \(got \dD input\)")
def _norm_rank(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    for rank in {int(g) for g in m.groups() if g} - {len(shape)}:
        yield from _rerank(shape, rank)


@_rule(r"shape '\[-1, (\d+)\]' is invalid for input of size (\d+)")
def _choices(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    """One score per row regrouped by the row's length (``logits.view(-1, num_choices)``
    with ``num_choices = input_ids.shape[1]``): the rows are choices, so add a choice axis."""
    groups, size = int(m.group(1)), int(m.group(2))
    if len(shape) == 2 and shape[1] == groups and size == shape[0]:
        yield (shape[0], 2, shape[1])


@_rule(r"shape '\[([-\d, ]+)\]' is invalid for input of size (\d+)")
def _fixed_grid(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    """A view onto a fixed token grid: ``x.view(B, heads, -1, 49)`` on a map wants 7x7, and
    ``x.view(B, 14, 14, C)`` on tokens wants 196 of them (attention with a fixed resolution)."""
    view = [int(d) for d in m.group(1).split(",")]
    if len(shape) == 4 and -1 in view and view[-1] > 1:
        side = _square(view[-1])
        if side and side * side != shape[2] * shape[3]:
            yield (shape[0], shape[1], side, side)
    if len(shape) == 3 and len(view) == 4 and -1 not in view and view[0] == shape[0]:
        tokens = view[1] * view[2]
        if tokens != shape[1] and view[3] == shape[2]:
            yield (shape[0], tokens, shape[2])


@_rule(r"(not enough|too many) values to unpack \(expected (\d)(?:, got (\d))?\)")
def _unpack(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    """``B, C, H, W = x.shape`` on a token tensor: the same features at the wanted rank."""
    want = int(m.group(2))
    got = int(m.group(3)) if m.group(3) else len(shape)
    fewer = m.group(1) == "not enough"
    if got == len(shape) and 2 <= want <= 5 and (want > got if fewer else want < got):
        yield from _rerank(shape, want)


def _rerank(shape: Shape, rank: int) -> Iterator[Shape]:
    """The same features as a channels-first tensor of ``rank`` dimensions."""
    if len(shape) == 3 and rank == 4:  # [B, N, C] tokens -> [B, C, s, s], or [B, C, L]
        side = _square(shape[1]) or 8
        yield (shape[0], shape[2], side, side)
        yield (shape[0], shape[1], shape[2], shape[2])
    elif len(shape) == 4 and rank == 3:
        yield (shape[0], shape[1], shape[2] * shape[3])
    elif len(shape) == 2 and rank == 3:
        yield (shape[0], shape[1], 8)
    elif len(shape) == 2 and rank == 4:
        yield (shape[0], shape[1], 8, 8)
    elif len(shape) > rank >= 2:
        yield (shape[0], shape[1], *shape[2:rank])
    elif rank == 5 and len(shape) == 4:
        yield (shape[0], shape[1], 4, shape[2], shape[3])


@_rule(
    r"(Kernel size can't be greater than actual input size|Output size is too small|"
    r"input image \(H: \d+, W: \d+\) is too small)"
)
def _grow(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    if len(shape) >= 3:
        yield (*shape[:2], *(min(256, d * 2) for d in shape[2:]))


@_rule(r"Input (?:height|image height|sequence length) \((\d+)\) doesn't match model(?: configuration)? \((\d+)\)")
def _fixed_size(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    yield from _replace(shape, int(m.group(1)), int(m.group(2)))


@_rule(r"\((\d+)\) should be divisible by (?:the )?patch size \((\d+)\)")
def _divisible(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    old, p = int(m.group(1)), int(m.group(2))
    if p > 0:
        yield from _replace(shape, old, max(p, -(-old // p) * p))


@_rule(r"(?:of length|size of) (\d+), but (?:found|got) (\d+)")
def _length(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    yield from _replace(shape, int(m.group(2)), int(m.group(1)))


def described(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Probe:
    """A probe of these inputs, with the description the ladder reports for it."""
    parts = [describe(a) for a in args] + [f"{k}: {describe(v)}" for k, v in kwargs.items()]
    return Probe(tuple(args), kwargs, "; ".join(parts))


def candidate_shapes(message: str, shape: Shape) -> list[Shape]:
    """New shapes for a primary input of ``shape`` that ``message`` suggests, best first."""
    out: list[Shape] = []
    for pattern, fn in _RULES:
        match = pattern.search(message)
        if match is None:
            continue
        for new in fn(match, shape):
            if new != shape and all(d > 0 for d in new) and math.prod(new) <= MAX_NUMEL:
                out.append(tuple(int(d) for d in new))
    return list(dict.fromkeys(out))


def primary(probe: Probe) -> torch.Tensor | None:
    """The tensor the probe was built around (the first argument, or its first element)."""
    first = probe.args[0] if probe.args else next(iter(probe.kwargs.values()), None)
    if isinstance(first, list | tuple) and first:
        first = first[0]
    if isinstance(first, dict) and first:
        first = next(iter(first.values()))
    return first if isinstance(first, torch.Tensor) else None


def adapt(
    probe: Probe, exc: BaseException, limit: int = 2, optional: Sequence[str] = ()
) -> list[Probe]:
    """Up to ``limit`` probes reshaped as ``exc``'s message asks; empty when none applies.

    ``optional`` names the forward parameters that default to None and that the probe left
    out: one of them used as a tensor on the failing line is given one.
    """
    x = primary(probe)
    if x is None or x.dim() == 0:
        return []
    filled = _fill_none(probe, exc, x, optional)
    if filled:
        return filled
    single = _one_of(probe, exc)
    if single is not None:
        return [single]
    if _UINT8.search(str(exc)) and x.is_floating_point():  # image ops on bytes
        return [_rebuild(probe, tuple(x.shape), tuple(x.shape), _as_bytes)]
    unbatched = _unbatched_pairs(probe, exc)
    if unbatched is not None:
        return [unbatched]
    unwrapped = _unwrap(probe, exc)
    if unwrapped is not None:
        return [unwrapped]
    old = tuple(x.shape)
    return [_rebuild(probe, old, new) for new in candidate_shapes(str(exc), old)[:limit]]


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


def _rebuild(
    probe: Probe,
    old: Shape,
    new: Shape,
    recast: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Probe:
    """``probe`` with the primary's shape changed; look-alike tensors and sizes follow.

    ``recast`` (a dtype change) replaces every float tensor shaped like the primary."""
    sizes = {o: n for o, n in zip(old[1:], new[1:], strict=False) if o != n and o != BATCH}
    if len(old) != len(new):
        sizes = {}

    def convert(value: Any, depth: int = 0) -> Any:
        if isinstance(value, torch.Tensor):
            if recast is not None and tuple(value.shape) == old and value.is_floating_point():
                return recast(value)
            return _resized(value, old, new, sizes)
        if isinstance(value, bool) or depth > 2:
            return value
        if isinstance(value, int):
            return sizes.get(value, value)
        if isinstance(value, list):
            return [convert(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return tuple(convert(v, depth + 1) for v in value)
        if isinstance(value, dict):
            return {k: convert(v, depth + 1) for k, v in value.items()}
        return value

    args = tuple(convert(a) for a in probe.args)
    kwargs = {k: convert(v) for k, v in probe.kwargs.items()}
    return described(args, kwargs)


def _resized(t: torch.Tensor, old: Shape, new: Shape, sizes: dict[int, int]) -> torch.Tensor:
    shape = tuple(t.shape)
    if shape == old:
        target = new
    elif sizes and t.dim() >= 2:
        target = (shape[0], *(sizes.get(d, d) for d in shape[1:]))
    else:
        return t
    if target == shape:
        return t
    if t.is_floating_point() or t.is_complex():
        return torch.randn(target, dtype=t.dtype)
    if t.dtype == torch.bool:
        return torch.ones(target, dtype=torch.bool)
    high = int(t.max()) + 1 if t.numel() else 2
    return torch.randint(0, max(1, high), target, dtype=t.dtype)
