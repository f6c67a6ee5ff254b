"""Probe repair: read a failed forward's error message and reshape the probe to match.

The rules live in two registries: ``probe_repairs`` (what to do about a failed call: fill
a None argument, drop one of two exclusive inputs, recast, reshape) and ``shape_repairs``
(which shapes a message suggests for the primary input). This module is the ladder's entry.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnrag.ladder._probe import Probe, described, primary
from nnrag.ladder.rules._probe_repairs import PROBE_REPAIRS
from nnrag.ladder.rules._shapes import MAX_NUMEL, candidate_shapes


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
    fixes: list[Probe] | None = PROBE_REPAIRS.first(probe, exc, x, optional, limit)
    return fixes or []


__all__ = ["MAX_NUMEL", "adapt", "candidate_shapes", "described", "primary"]
