"""Error messages -> new primary probe shapes (``shape_repairs``): every matching rule adds.

PyTorch says in its errors what a block wanted: ``size of tensor a (64) must match the
size of tensor b (49)``, ``mat1 and mat2 shapes cannot be multiplied (2x512 and
2048x10)``, ``expected input[2, 8, 32, 32] to have 3 channels``. Each rule turns one such
message into shapes for the probe's primary input; all matching rules contribute, in
order, and the first few distinct shapes are tried (``probe_repairs.reshape``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

from nnrag.ladder.rules._registry import Registry

Shape = tuple[int, ...]
MAX_NUMEL = 1 << 22  # never build a probe over ~16 MB of float32
SHAPE_REPAIRS = Registry(
    "shape_repairs", "forward error message -> new primary shapes; all matching rules add"
)
ShapeFn = Callable[[re.Match[str], Shape], Iterator[Shape]]


def _rule(
    name: str, pattern: str, *, order: int, example: str, doc: str
) -> Callable[[ShapeFn], ShapeFn]:
    """Register ``fn(match, shape)`` to run when ``pattern`` matches the message."""
    rx = re.compile(pattern, re.S)

    def register(fn: ShapeFn) -> ShapeFn:
        def suggest(message: str, shape: Shape) -> list[Shape] | None:
            match = rx.search(message)
            return None if match is None else list(fn(match, shape))

        SHAPE_REPAIRS.add(name, suggest, doc=doc, example=example, order=order)
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


@_rule(
    "broadcast",
    r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)",
    order=10,
    example="timm WindowAttention",
    doc="'size of tensor a (64) must match ... b (49)': swap the sizes, tokens as H*W",
)
def _broadcast(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    a, b = int(m.group(1)), int(m.group(2))
    for old, new in ((a, b), (b, a)):
        yield from _replace(shape, old, new)
        yield from _tokens(shape, old, new)
    yield from _nudge(shape, a, b)


@_rule(
    "concat_size",
    r"Expected size (\d+) but got size (\d+)",
    order=20,
    example="torchvision InceptionA",
    doc="'Expected size 8 but got size 4' (torch.cat): make the sizes agree",
)
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


@_rule(
    "matmul",
    r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)",
    order=30,
    example="torchvision VGG",
    doc="'mat1 and mat2 shapes cannot be multiplied': the width (or flattened size) wanted",
)
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


@_rule(
    "conv_channels",
    r"expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels",
    order=40,
    example="timm PatchEmbed",
    doc="'expected input[...] to have 3 channels': the conv's channel count",
)
def _channels(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    want, got = int(m.group(1)), int(m.group(2))
    if len(shape) >= 3 and shape[1] == got:
        yield (shape[0], want, *shape[2:])
    if len(shape) >= 3 and shape[-1] == got:  # channels-last input to a conv: go channels-first
        yield (shape[0], want, *shape[1:-1])
    yield from _replace(shape, got, want)


@_rule(
    "image_channels",
    r"permitted channel values are \[([\d, ]+)\], but found (\d+)",
    order=50,
    example="torchvision ColorJitter",
    doc="image transforms accept grey or RGB only: the last allowed count",
)
def _image_channels(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    """Image transforms accept grey or RGB only: the probe's channels become the last allowed."""
    allowed = [int(c) for c in m.group(1).split(",")]
    if len(shape) >= 3 and shape[-3] == int(m.group(2)):
        yield (*shape[:-3], allowed[-1], *shape[-2:])


@_rule(
    "split_sizes",
    r"split_sizes to sum exactly to (\d+).*split_sizes=\[([\d, ]+)\]",
    order=60,
    example="timm MixedConv2d",
    doc="'split_sizes to sum exactly to N': the channels the split wants",
)
def _split(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    total = sum(int(s) for s in m.group(2).split(","))
    yield from _replace(shape, int(m.group(1)), total)


@_rule(
    "layernorm_width",
    r"normalized_shape=\[(\d+)\], expected input with shape \[\*, \d+\]",
    order=70,
    example="timm ConvNeXtBlock",
    doc="'normalized_shape=[C], expected input ...': LayerNorm's width, channels-last",
)
def _norm(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    want = int(m.group(1))
    if len(shape) == 4 and shape[1] == want:  # channels-first map into a channels-last norm
        yield (shape[0], shape[2], shape[3], want)
    yield (*shape[:-1], want)


@_rule(
    "conv_rank",
    r"Expected (\d)D \(unbatched\) or (\d)D \(batched\) input to conv\w*"
    r"(?:, but got input of size: \[([\d, ]+)\])?",
    order=80,
    example="espnet Conv2dSubsampling",
    doc="'Expected 3D or 4D input to conv2d': the conv's rank (or drop the channel axis)",
)
def _conv_rank(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    rank = int(m.group(2))
    got = m.group(3).count(",") + 1 if m.group(3) else len(shape)
    if got == rank + 1 and len(shape) == rank and rank >= 3:
        # the block adds the channel axis itself: it wants [B, H, W] (or [B, L]), not a map
        yield (shape[0], *shape[2:])
    yield from _rerank(shape, rank)


@_rule(
    "norm_rank",
    r"expected (\d)D (?:or (\d)D )?input \(got \dD input\)",
    order=90,
    example="torchvision BasicBlock",
    doc="'expected 4D input (got 3D input)': the norm's rank",
)
def _norm_rank(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    for rank in {int(g) for g in m.groups() if g} - {len(shape)}:
        yield from _rerank(shape, rank)


@_rule(
    "choice_axis",
    r"shape '\[-1, (\d+)\]' is invalid for input of size (\d+)",
    order=100,
    example="transformers BertForMultipleChoice",
    doc="one score per row regrouped by the row length: add a choice axis",
)
def _choices(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    """One score per row regrouped by the row's length (``logits.view(-1, num_choices)``
    with ``num_choices = input_ids.shape[1]``): the rows are choices, so add a choice axis."""
    groups, size = int(m.group(1)), int(m.group(2))
    if len(shape) == 2 and shape[1] == groups and size == shape[0]:
        yield (shape[0], 2, shape[1])


@_rule(
    "fixed_grid",
    r"shape '\[([-\d, ]+)\]' is invalid for input of size (\d+)",
    order=110,
    example="timm LevitAttention",
    doc="a view onto a fixed token grid (x.view(B, 14, 14, C)): that many tokens",
)
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


@_rule(
    "unpack_rank",
    r"(not enough|too many) values to unpack \(expected (\d)(?:, got (\d))?\)",
    order=120,
    example="timm SwinTransformerBlock",
    doc="'B, C, H, W = x.shape' on tokens: the same features at the wanted rank",
)
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
    "grow_sides",
    r"(Kernel size can't be greater than actual input size|Output size is too small|"
    r"input image \(H: \d+, W: \d+\) is too small)",
    order=130,
    example="torchvision InceptionAux",
    doc="kernel or output too small: double the spatial sides",
)
def _grow(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    if len(shape) >= 3:
        yield (*shape[:2], *(min(256, d * 2) for d in shape[2:]))


@_rule(
    "model_input_size",
    r"Input (?:height|image height|sequence length) \((\d+)\) "
    r"doesn't match model(?: configuration)? \((\d+)\)",
    order=140,
    example="transformers ViTPatchEmbeddings",
    doc="'Input height (32) doesn't match model (224)': the configured size",
)
def _fixed_size(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    yield from _replace(shape, int(m.group(1)), int(m.group(2)))


@_rule(
    "patch_divisible",
    r"\((\d+)\) should be divisible by (?:the )?patch size \((\d+)\)",
    order=150,
    example="transformers SwinPatchEmbeddings",
    doc="'(30) should be divisible by patch size (4)': round the side up",
)
def _divisible(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    old, p = int(m.group(1)), int(m.group(2))
    if p > 0:
        yield from _replace(shape, old, max(p, -(-old // p) * p))


@_rule(
    "sequence_length",
    r"(?:of length|size of) (\d+), but (?:found|got) (\d+)",
    order=160,
    example="transformers CLIPTextEmbeddings",
    doc="'of length 64, but got 8': the length the block wants",
)
def _length(m: re.Match[str], shape: Shape) -> Iterator[Shape]:
    yield from _replace(shape, int(m.group(2)), int(m.group(1)))


def shape_candidates(message: str, shape: Shape) -> list[tuple[Shape, str]]:
    """New shapes for a primary of ``shape`` that ``message`` suggests, best first, each
    with the rule that suggested it first (recorded by the caller when it is used)."""
    out: dict[Shape, str] = {}
    for rule in SHAPE_REPAIRS:
        for new in rule.fn(message, shape) or ():
            if new != shape and all(d > 0 for d in new) and math.prod(new) <= MAX_NUMEL:
                out.setdefault(tuple(int(d) for d in new), rule.name)
    return list(out.items())


def candidate_shapes(message: str, shape: Shape) -> list[Shape]:
    """New shapes for a primary input of ``shape`` that ``message`` suggests, best first."""
    return [new for new, _ in shape_candidates(message, shape)]
