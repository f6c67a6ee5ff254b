"""Propose, validate and keep mutants of one model.

The recording and every mutant run in the sandbox (model code is untrusted); planning and
rewriting happen here, on data. Mutants are deduplicated by the engine's structural
fingerprint with literals kept (two mutants that differ only in formatting or names are
one), validated in batches, and the valid ones can be written to the index with their
parent recorded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nnrag.exceptions import NnragError
from nnrag.index import code_fingerprint, normalised_md5
from nnrag.logging import get_logger
from nnrag.mutate._analyse import analyse
from nnrag.mutate._edits import activation_edits, layer_edits, norm_edits, residual_edits
from nnrag.mutate._graph import Constraints
from nnrag.mutate._plan import Plan, Planner
from nnrag.mutate._sites import collect_sites, instrument, rewrite_sites
from nnrag.mutate._target import MutationTargetError, Target
from nnrag.sandbox import Limits, run_function, run_many

log = get_logger(__name__)
KINDS = ("width", "depth", "activation", "norm", "residual")
LIMITS = Limits(wall_s=60, memory_mb=4096)
MAX_REPEATS = 200
_PRELOAD = ("torch", "torch.fx", "nnrag.mutate._record", "nnrag.train.contract")


class MutationError(NnragError):
    """The original model itself cannot be recorded (does not build or run)."""


@dataclass(frozen=True)
class Mutant:
    """One proposed mutant and what the sandbox said about it."""

    kind: str
    description: str
    source: str
    md5: str
    predicted: dict[str, int] | None
    valid: bool
    rung: str
    params: int | None
    flops: int | None
    error: str | None
    ports: dict[str, dict[str, int]] | None = None


@dataclass
class MutationReport:
    target: Target
    params: int
    flops: int | None
    out_shape: list[int]
    traced: bool
    trace_error: str | None
    disabled: list[str]
    mutants: list[Mutant] = field(default_factory=list)
    proposed: int = 0
    rejected_by_plan: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    wanted: int = 0
    shortfall: str | None = None  # why fewer than ``wanted`` mutants are valid, if they are

    @property
    def valid(self) -> list[Mutant]:
        return [m for m in self.mutants if m.valid]


def record_target(target: Target, in_shape: tuple[int, ...], num_classes: int,
                  limits: Limits) -> dict[str, Any]:
    payload = {"source": target.source, "instrumented": instrument(target.source),
               "in_shape": list(in_shape), "num_classes": num_classes, "block": target.block}
    result = run_function("nnrag.mutate._record:record", payload, limits=limits, preload=_PRELOAD)
    if not result.ok:
        raise MutationError(f"recording {target.label} failed in the sandbox ({result.status}): "
                            f"{result.error_type}: {result.error_message}")
    value = result.value
    if not value.get("ok"):
        raise MutationError(f"{target.label} does not {value.get('stage', 'run')} with input shape "
                            f"{list(in_shape)}: {value.get('error')}")
    return value


class Mutator:
    """Mutants of one target; ``run`` returns a :class:`MutationReport`."""

    def __init__(self, target: Target, *, in_shape: tuple[int, ...], num_classes: int,
                 kinds: tuple[str, ...] = KINDS, seed: int = 0, max_params: int | None = None,
                 jobs: int = 2, limits: Limits = LIMITS) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise MutationTargetError(f"unknown mutation kind(s) {sorted(unknown)}; "
                                      f"use {', '.join(KINDS)}")
        self.target, self.kinds, self.seed = target, kinds, seed
        self.in_shape, self.num_classes = in_shape, num_classes
        self.max_params, self.jobs, self.limits = max_params, jobs, limits
        self._planner: Planner | None = None

    def run(self, n: int, progress: Callable[[int, int], None] | None = None) -> MutationReport:
        start = time.perf_counter()
        record = record_target(self.target, self.in_shape, self.num_classes, self.limits)
        cons = analyse(record)
        disabled = [] if cons.traced else [
            "residual edits (need the fx graph)",
            "width constraints (width plans follow only what the code derives from shared "
            "literals; the sandbox judges each one)",
        ]
        report = MutationReport(self.target, record["params"], record["flops"], record["out_shape"],
                                cons.traced, record.get("trace_error"), disabled, wanted=n)
        seen = {code_fingerprint(self.target.source)}
        proposals = self._proposals(record, cons, report)
        base = {"in_shape": list(self.in_shape), "num_classes": self.num_classes,
                "block": self.target.block, "out_shape": record["out_shape"]}
        batch_size = max(4, 4 * self.jobs)
        exhausted: str | None = None
        repeats = 0  # consecutive duplicates: a small design space is used up
        valid = 0
        while valid < n and exhausted is None:
            batch: list[tuple[str, str, str, Plan | None]] = []
            size = min(batch_size, max(self.jobs, n - valid))  # no big batch for the last few
            while len(batch) < size:
                item = next(proposals, None)
                if item is None:
                    exhausted = (f"every mutation kind ({', '.join(self.kinds)}) ran out of "
                                 "proposals for this model")
                    break
                if repeats >= MAX_REPEATS:
                    exhausted = (f"the last {MAX_REPEATS} proposals were all duplicates: the "
                                 "design space of these kinds is used up")
                    break
                kind, desc, code, plan = item
                fp = code_fingerprint(code)
                if fp in seen:
                    report.duplicates += 1
                    repeats += 1
                    continue
                repeats = 0
                seen.add(fp)
                batch.append(item)
            if not batch:
                break
            results = run_many("nnrag.mutate._record:check",
                               [{**base, "source": b[2]} for b in batch],
                               limits=self.limits, jobs=self.jobs, preload=_PRELOAD,
                               keep_workers=True)
            for (kind, desc, code, plan), res in zip(batch, results, strict=True):
                mutant = self._mutant(kind, desc, code, plan, res)
                if plan is not None and self._planner is not None:
                    self._planner.learn(plan, mutant.valid)
                if valid < n:  # a batch validates in parallel: what is past n is dropped
                    report.mutants.append(mutant)
                    valid += mutant.valid
            if progress:
                progress(valid, n)
        if valid < n:
            report.shortfall = exhausted or "no more proposals"
        report.seconds = time.perf_counter() - start
        return report

    def _mutant(self, kind: str, desc: str, code: str, plan: Plan | None, res: Any) -> Mutant:
        value = res.value if res.ok else {}
        ok = bool(value.get("ok"))
        error = (value.get("error") if res.ok
                 else f"{res.status}: {res.error_type}: {res.error_message}")
        params = value.get("params")
        if (ok and self.max_params is not None and params is not None
                and params > self.max_params):
            ok, error = False, f"{params:,} parameters > --max-params {self.max_params:,}"
        return Mutant(kind, desc, code, normalised_md5(code),
                      dict(plan.predicted) if plan and plan.predicted else None,
                      ok, value.get("rung", "none"), params, value.get("flops"), error,
                      value.get("ports"))

    def _proposals(self, record: dict[str, Any], cons: Constraints,
                   report: MutationReport) -> Iterator[tuple[str, str, str, Plan | None]]:
        rng = random.Random(self.seed)
        source = self.target.source
        planner = self._planner = Planner(collect_sites(source), cons, rng,
                                          record.get("geometry", ()))
        structural: dict[str, list[tuple[str, str, str]]] = {
            "activation": list(activation_edits(source)) if "activation" in self.kinds else [],
            "norm": list(norm_edits(source)) if "norm" in self.kinds else [],
            "residual": list(residual_edits(source, record,
                                            [r["line"] for r in cons.residuals if r["line"]]))
            if "residual" in self.kinds and cons.traced else [],
            "depth": list(layer_edits(source)) if "depth" in self.kinds else [],
        }
        for edits in structural.values():
            rng.shuffle(edits)
        kinds = list(self.kinds)
        misses = dict.fromkeys(kinds, 0)
        while kinds:
            kind = rng.choice(kinds)
            item = self._next(kind, planner, structural, source, rng)
            report.proposed += 1
            if item is None:
                misses[kind] += 1
                report.rejected_by_plan += 1
                if (misses[kind] >= 60
                        or (kind not in ("width", "depth") and not structural[kind])):
                    kinds.remove(kind)
                continue
            misses[kind] = 0
            yield item

    def _next(self, kind: str, planner: Planner, structural: dict[str, list[tuple[str, str, str]]],
              source: str, rng: random.Random) -> tuple[str, str, str, Plan | None] | None:
        if kind == "width":
            plan = planner.width()
            return None if plan is None else ("width", plan.description,
                                              rewrite_sites(source, dict(plan.changes)), plan)
        if kind == "depth" and (not structural["depth"] or rng.random() < 0.5):
            plan = planner.depth()
            if plan is not None:
                return ("depth", plan.description, rewrite_sites(source, dict(plan.changes)), plan)
        edits = structural.get(kind) or []
        if not edits:
            return None
        k, desc, code = edits.pop()
        return (k, desc, code, None)
