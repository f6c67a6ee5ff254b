"""The learning loop: measure the generator, fine-tune it on the proven pool, measure again.

Cycle 0 measures the generator as it is (the starting adapter, often none). Each later
cycle fine-tunes on the dataset built from every proven program known so far (the previous
cycle's generated models that trained are in the run store, so they join the pool),
publishes the adapter, and measures the generator with it on the same seeded prompts.
Every cycle's figures are appended to a log (:class:`CycleLog`). The steps that need
``generate`` (measuring, the prompt format, publishing adapters) are injected as
:class:`LoopHooks`: ``learn`` does not import its sibling.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from nnrag.exceptions import LearnError
from nnrag.learn.dataset import Dataset

METHODS = ("sft", "grpo", "sft+grpo")


@dataclass(frozen=True)
class Measured:
    """What one measurement of the generator found (``nnrag generate``'s figures)."""

    prompts: int
    parsed: int
    schema_valid: int
    unique: int
    novel: int
    executable: int
    trained: int
    best_accuracy: float | None
    mean_accuracy: float | None


@dataclass(frozen=True)
class Tuned:
    """What one fine-tune published."""

    adapter: int
    path: Path
    metrics: dict[str, Any]


@dataclass(frozen=True)
class CycleMetrics:
    """One row of the loop's log."""

    run: str
    cycle: int
    method: str
    base: str
    adapter: int | None
    dataset_hash: str | None
    train_examples: int
    prompts: int
    parsed: int
    schema_valid: int
    unique: int
    novel: int
    executable: int
    trained: int
    best_accuracy: float | None
    mean_accuracy: float | None
    train_loss: float | None
    heldout_loss: float | None
    dataset_s: float
    finetune_s: float
    measure_s: float
    wall_s: float
    created: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoopHooks(Protocol):
    """The loop's steps, supplied by the workspace."""

    def dataset(self, cycle: int) -> Dataset: ...

    def finetune(self, dataset: Dataset, method: str, cycle: int,
                 start: Tuned | None) -> Tuned: ...

    def measure(self, adapter: Tuned | None, pool: Dataset, cycle: int) -> Measured: ...


class CycleLog:
    """Per-cycle figures as JSON lines (``$NNRAG_HOME/learn/cycles.jsonl``); append only.

    Kept beside the adapters rather than in the run store (whose schema ``nnrag.train``
    owns); a torn last line from a killed write is skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, row: CycleMetrics) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row.as_dict(), sort_keys=True) + "\n")
        except OSError as exc:
            raise LearnError(f"cannot record cycle {row.cycle} in {self.path}: {exc} "
                             f"(its adapter, if any, is published: {row.adapter})") from None

    def read(self, run: str | None = None) -> list[CycleMetrics]:
        if not self.path.is_file():
            return []
        names = {f.name for f in fields(CycleMetrics)}
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                row = CycleMetrics(**{k: v for k, v in data.items() if k in names})
            except (ValueError, TypeError):
                continue
            if run is None or row.run == run:
                out.append(row)
        return out

    def last_run(self) -> str | None:
        rows = self.read()
        return rows[-1].run if rows else None


def run_loop(hooks: LoopHooks, log: CycleLog, *, cycles: int, method: str, base: str,
             start: Tuned | None = None,
             progress: Callable[[str], None] | None = None) -> list[CycleMetrics]:
    """Cycle 0 (measure) and ``cycles`` fine-tune-and-measure cycles; every row is logged
    as soon as its cycle ends, so a killed loop keeps the cycles it finished."""
    if method not in METHODS:
        raise LearnError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    if cycles < 0:
        raise LearnError("cycles must be >= 0")
    say = progress or (lambda line: None)
    run = uuid.uuid4().hex[:8]
    rows: list[CycleMetrics] = []
    adapter = start
    for cycle in range(cycles + 1):
        begin = time.perf_counter()
        t0 = time.perf_counter()
        pool = hooks.dataset(cycle)
        dataset_s = time.perf_counter() - t0
        say(f"cycle {cycle}: dataset {pool.dataset_hash[:12]} ({pool.train} train, "
            f"{pool.heldout} held-out examples) in {dataset_s:.1f}s")
        finetune_s, tuned_metrics = 0.0, {}
        if cycle > 0:
            t0 = time.perf_counter()
            adapter = hooks.finetune(pool, method, cycle, adapter)
            finetune_s = time.perf_counter() - t0
            tuned_metrics = adapter.metrics
            say(f"cycle {cycle}: adapter {adapter.adapter} at {adapter.path} in "
                f"{finetune_s:.1f}s")
        t0 = time.perf_counter()
        measured = hooks.measure(adapter, pool, cycle)
        measure_s = time.perf_counter() - t0
        row = CycleMetrics(
            run=run, cycle=cycle, method=method, base=base,
            adapter=adapter.adapter if adapter else None, dataset_hash=pool.dataset_hash,
            train_examples=pool.train, **asdict(measured),
            train_loss=tuned_metrics.get("train_loss"),
            heldout_loss=tuned_metrics.get("heldout_loss"), dataset_s=round(dataset_s, 3),
            finetune_s=round(finetune_s, 3), measure_s=round(measure_s, 3),
            wall_s=round(time.perf_counter() - begin, 3), created=time.time())
        log.append(row)
        rows.append(row)
        say(f"cycle {cycle}: {measured.executable}/{measured.prompts} executable, "
            f"{measured.trained} trained, {measured.novel} novel")
    return rows


@dataclass(frozen=True)
class LearnConfig:
    """One ``nnrag learn`` call (see docs/learn.md)."""

    cycles: int = 1
    per_cycle: int = 20
    method: str = "sft"
    base: str | None = None  # model id or folder; None: the embedded Gemma 3 270M
    adapter: str | None = "none"  # the starting adapter (cycle 0): none, newest (None), path
    dataset: Path | None = None  # a built dataset folder: a fixed pool instead of rebuilding
    task: str = "image-classification"
    data: str = "digits"
    shots: int = 1
    blocks: int = 0  # blocks retrieved from the index per prompt, as generate's --blocks
    corpus: Path | None = None  # None: the packaged seed corpus
    use_corpus: bool = True
    use_runs: bool = True
    lemur: Path | None = None
    lemur_limit: int | None = None
    max_length: int = 1536
    steps: int = -1  # SFT optimiser steps per cycle (-1: one epoch)
    grpo_steps: int = 10
    reward_train: bool = False  # GRPO bonus: accuracy after one epoch through the engine
    seed: int = 0
    epochs: int = 1
    limit: int | None = None
    train: bool = True
    max_new_tokens: int = 768
    repairs: int = 0
    workers: int = 1
    heldout_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise LearnError(f"unknown method {self.method!r}; use one of: {', '.join(METHODS)}")
        if self.cycles < 0 or self.per_cycle < 1:
            raise LearnError("--cycles must be >= 0 and --per-cycle >= 1")
