"""Named code units besides models: metrics and transforms, registered like timm's models.

One :class:`Registry` class serves both kinds; each entry keeps its provenance (the module
and function that defined it), and listing takes shell wildcards. A *family* is one entry
for a whole set of names, ``<prefix>_<N>`` for any N in a range (``resize_32``,
``resize_64``): a factory builds the member from N, so no list of sizes is ever hard-coded.
The transforms and their registry, ``TRANSFORMS``, live in :mod:`nnrag.train.transforms`.
"""

from __future__ import annotations

import fnmatch
import re
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
    #: For a family: the range of N in ``<prefix>_<N>`` (``fn`` builds a member from N).
    family: tuple[int, int] | None = None


_WHOLE = re.compile(r"[1-9][0-9]*")  # no sign, no leading zero: one spelling per member


class Registry:
    """Name -> callable, with provenance, families and wildcard listing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._families: dict[str, Entry] = {}  # prefix -> entry named "<prefix>_<N>"

    def register(self, name: str, description: str = "", *,
                 provenance: str | None = None) -> Callable[[Any], Any]:
        def add(fn: Any) -> Any:
            doc = description or (fn.__doc__ or "").strip().split("\n")[0]
            where = provenance or f"{fn.__module__}.{fn.__qualname__}"
            self._entries[name] = Entry(name, fn, doc, where)
            return fn

        return add

    def register_family(self, prefix: str, description: str = "", *, low: int = 1,
                        high: int = 4096) -> Callable[[Callable[[int], Any]], Callable[[int], Any]]:
        """Register ``factory(n)`` for every name ``<prefix>_<n>`` with ``low <= n <= high``."""

        def add(factory: Callable[[int], Any]) -> Callable[[int], Any]:
            doc = description or (factory.__doc__ or "").strip().split("\n")[0]
            self._families[prefix] = Entry(f"{prefix}_<N>", factory, doc,
                                           f"{factory.__module__}.{factory.__qualname__}",
                                           (low, high))
            return factory

        return add

    def get(self, name: str) -> Any:
        """The entry's callable; a family member is built from its N."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.fn
        prefix, _, n = name.rpartition("_")
        family = self._families.get(prefix)
        if family is not None and family.family is not None:
            low, high = family.family
            if _WHOLE.fullmatch(n) and low <= int(n) <= high:
                return family.fn(int(n))
            raise UnknownEntryError(
                f"{self.kind} {name!r}: {family.name} takes a whole number N from {low} to "
                f"{high} (e.g. {prefix}_32), got {n!r}")
        raise UnknownEntryError(unknown_name(self.kind, name, self.names(), suggest=1))

    def names(self) -> list[str]:
        """Every name and family (``resize_<N>``), sorted."""
        return sorted([*self._entries, *(e.name for e in self._families.values())])

    def list(self, pattern: str = "*") -> list[Entry]:
        """Entries and families whose name (``resize_<N>`` for a family) matches ``pattern``."""
        entries = {**self._entries, **{e.name: e for e in self._families.values()}}
        return [e for n, e in sorted(entries.items()) if fnmatch.fnmatchcase(n, pattern)]


METRICS = Registry("metric")


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


def metric_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    return METRICS.get(name)
