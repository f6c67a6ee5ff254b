"""Input transforms and shape adapters: deterministic maps of a dataset's tensors.

A transform runs once on each split's whole input tensor before any loader, inside the
trial: cheap, deterministic, and the same for every epoch. Each one is fitted (where it
fits anything) on the *training* split only and then applied to every split, so
``standardize`` never peeks at test statistics. Each also states how it changes a sample's
shape, so a spec's list is checked against the dataset before anything runs.

LEMUR's models are designed for CIFAR-shaped inputs (3x32x32 or larger) and their pooling
collapses on 1x8x8 digits. A spec's ``shape: [C, H, W]`` names the input a model was
designed for; :func:`plan` picks the *adapters* that turn the dataset into it (``to_gray``
or ``to_rgb`` for the channels, ``resize_<N>`` for the side) and puts them before the spec's
own transforms. The engine records the adapters with the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nnrag.exceptions import NnragError
from nnrag.train.registry import Registry

__all__ = ["TRANSFORMS", "Plan", "Transform", "TransformError", "apply_transforms", "plan",
           "transform"]

Shape = tuple[int, ...]  # one sample's shape: (C, H, W) for images, (C, L) for signals

TRANSFORMS = Registry("transform")


class TransformError(NnragError):
    """A transform or ``shape`` that cannot apply to the dataset's inputs; says why."""


@dataclass(frozen=True)
class Transform:
    """``apply(x, train)`` maps a split's inputs (``train``: the training split's, to fit
    on); ``shape`` maps one sample's shape, raising :class:`TransformError` where the
    transform does not apply."""

    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    shape: Callable[[Shape], Shape]

    def __call__(self, x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
        return self.apply(x, train)


def _same(shape: Shape) -> Shape:
    return shape


def _register(name: str, shape: Callable[[Shape], Shape] = _same
              ) -> Callable[[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
                            Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    def add(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
            ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        TRANSFORMS.register(name, doc, provenance=f"{fn.__module__}.{fn.__qualname__}")(
            Transform(fn, shape))
        return fn

    return add


def transform(name: str) -> Transform:
    """The registered transform ``name`` (a family member such as ``resize_64`` included)."""
    found = TRANSFORMS.get(name)
    assert isinstance(found, Transform)
    return found


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


# --- the transforms ----------------------------------------------------------------


@_register("none")
def identity(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Inputs as the dataset gives them."""
    return x


@_register("standardize")
def standardize(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per channel, with the training split's mean and std."""
    dims = [0, *range(2, train.dim())]
    mean = train.mean(dims, keepdim=True)
    std = train.std(dims, keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


@_register("flip")
def hflip(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Mirror images left-right (a fixed, deterministic augmentation probe)."""
    return x.flip(-1)


def _rgb_shape(shape: Shape) -> Shape:
    if shape[0] not in (1, 3):
        raise TransformError(f"to_rgb replicates 1 channel into 3; inputs {_fmt(shape)} have "
                             f"{shape[0]}")
    return (3, *shape[1:])


@_register("to_rgb", _rgb_shape)
def to_rgb(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Gray to 3 channels by replication (3-channel inputs pass unchanged)."""
    return x if x.shape[1] == 3 else x.repeat(1, 3, *([1] * (x.dim() - 2)))


@_register("to_gray", lambda shape: (1, *shape[1:]))
def to_gray(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """One channel, the mean of the channels."""
    return x.mean(1, keepdim=True)


@TRANSFORMS.register_family("resize", "Bilinear resize of images to NxN (any N from 1 to 4096)",
                            low=1, high=4096)
def resize(n: int) -> Transform:
    """The ``resize_<n>`` transform: bilinear to ``n x n``, antialiased when shrinking."""

    def shape(s: Shape) -> Shape:
        if len(s) != 3:
            raise TransformError(f"resize_{n} resizes images (C, H, W); inputs {_fmt(s)} "
                                 "are not images")
        return (s[0], n, n)

    def apply(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) == (n, n):
            return x
        shrink = n < x.shape[2] or n < x.shape[3]
        out = [torch.nn.functional.interpolate(x[i:i + 4096], size=(n, n), mode="bilinear",
                                               align_corners=False, antialias=shrink)
               for i in range(0, len(x), 4096)]  # in chunks: no full-size intermediate
        return torch.cat(out) if out else x.new_empty((0, x.shape[1], n, n))

    return Transform(apply, shape)


# --- pipelines ---------------------------------------------------------------------


def apply_transforms(names: Sequence[str], train: torch.Tensor, test: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``names`` in order over both splits; each step is fitted on the training split
    as the steps before it left it."""
    for name in names:
        step = transform(name)
        train, test = step(train, train), step(test, train)
    return train, test


def out_shape(names: Sequence[str], shape: Shape) -> Shape:
    """One sample's shape after ``names``; :class:`TransformError` names the step that fails."""
    for name in names:
        try:
            shape = tuple(transform(name).shape(tuple(shape)))
        except TransformError as exc:
            raise TransformError(f"transform {name!r} does not apply to inputs "
                                 f"{_fmt(shape)}: {exc}") from None
    return shape


@dataclass(frozen=True)
class Plan:
    """What a trial does to the inputs: the adapters ``shape`` needs, then the spec's own
    transforms; ``in_shape`` is one sample's shape as the model gets it."""

    adapters: tuple[str, ...]
    transforms: tuple[str, ...]
    in_shape: Shape

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.adapters, *self.transforms)


def adapters_for(source: Shape, target: Shape) -> tuple[str, ...]:
    """The channel adapter and resize that turn images ``source`` into ``target`` (channel
    reduction before the resize and replication after it: the cheaper order, same result)."""
    (c, h, w), (tc, th, tw) = source, target
    if c != tc and (c, tc) not in ((1, 3), (3, 1)):
        raise TransformError(f"cannot adapt {c}-channel inputs to {tc} channels: nnrag "
                             "converts gray to RGB (to_rgb) and RGB to gray (to_gray) only")
    resize: tuple[str, ...] = ()
    if (h, w) != (th, tw):
        if th != tw:
            raise TransformError("nnrag resizes to a square NxN (resize_<N>); give equal H "
                                 "and W")
        resize = (f"resize_{th}",)
    return (*(("to_gray",) if (c, tc) == (3, 1) else ()), *resize,
            *(("to_rgb",) if (c, tc) == (1, 3) else ()))


def plan(dataset: str, kind: str, source: Shape, transforms: Sequence[str],
         shape: Shape | None = None) -> Plan:
    """Check the spec's ``transforms`` on dataset ``source`` inputs and, given ``shape``,
    prepend the adapters that make the model's inputs exactly ``shape`` (none when the
    spec's transforms already do)."""
    names = tuple(n for n in transforms if n != "none")
    if shape is None:
        return Plan((), names, out_shape(names, source))
    shape = tuple(shape)
    if kind != "image" or len(source) != 3:
        raise TransformError(f"shape {_fmt(shape)} applies to image datasets; {dataset!r} is "
                             f"a {kind} dataset with inputs {_fmt(source)}")
    try:
        if out_shape(names, source) == shape:
            return Plan((), names, shape)
    except TransformError:
        pass  # they may apply once adapted
    try:
        adapters = adapters_for(source, shape)
    except TransformError as exc:
        raise TransformError(f"shape {_fmt(shape)} for {dataset!r} inputs {_fmt(source)}: "
                             f"{exc}") from None
    got = out_shape((*adapters, *names), source)
    if got != shape:
        raise TransformError(
            f"the transforms {', '.join(names)} turn the adapted inputs ({', '.join(adapters)}) "
            f"into {_fmt(got)}, not shape {_fmt(shape)}")
    return Plan(adapters, names, shape)
