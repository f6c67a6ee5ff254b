"""Named code units besides models: metrics and transforms, registered like timm's models.

One :class:`Registry` class serves both kinds; each entry keeps its provenance (the module
and function that defined it), and listing takes shell wildcards.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from nnrag.exceptions import NnragError, unknown_name


class UnknownEntryError(NnragError):
    """A metric or transform name that is not registered."""


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    provenance: str


class Registry:
    """Name -> callable, with provenance and wildcard listing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str,
                 description: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            doc = description or (fn.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, fn, doc, f"{fn.__module__}.{fn.__qualname__}")
            return fn

        return add

    def get(self, name: str) -> Callable[..., Any]:
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownEntryError(unknown_name(self.kind, name, self._entries, suggest=1))
        return entry.fn

    def list(self, pattern: str = "*") -> list[Entry]:
        return [e for n, e in sorted(self._entries.items()) if fnmatch.fnmatchcase(n, pattern)]


METRICS = Registry("metric")
TRANSFORMS = Registry("transform")


@METRICS.register("accuracy")
def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(-1) == target).float().mean())


@METRICS.register("top5")
def top5(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-5 accuracy (top-k with k = min(5, classes))."""
    k = min(5, logits.shape[-1])
    return float((logits.topk(k, -1).indices == target[:, None]).any(-1).float().mean())


@METRICS.register("macro_f1")
def macro_f1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Unweighted mean of per-class F1."""
    pred = logits.argmax(-1)
    scores = []
    for c in target.unique():
        tp = float(((pred == c) & (target == c)).sum())
        fp = float(((pred == c) & (target != c)).sum())
        fn = float(((pred != c) & (target == c)).sum())
        scores.append(2 * tp / max(1.0, 2 * tp + fp + fn))
    return sum(scores) / max(1, len(scores))


@TRANSFORMS.register("none")
def identity(x: torch.Tensor) -> torch.Tensor:
    """Inputs as the dataset gives them."""
    return x


@TRANSFORMS.register("standardize")
def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the whole split (per channel for images)."""
    dims = [0, *range(2, x.dim())]
    return (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp_min(1e-6)


@TRANSFORMS.register("flip")
def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror images left-right (a fixed, deterministic augmentation probe)."""
    return x.flip(-1)


def metric_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    return METRICS.get(name)


def transform_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return TRANSFORMS.get(name)
