"""Early stopping: an injected per-epoch decision that ends a running trial after epoch k.

The engine asks a :class:`Stopper` after each scored epoch whether the run should go on. The
answer reaches the sandboxed child as a file in its run folder (``go-<k>`` or ``stop``,
written atomically by the parent): a child told that stopping is on waits after each epoch
the stopper decides on until one of the two appears, so a stop is deterministic, it ends
exactly after epoch k. The child is untrusted and may ignore the answer; the parent stops
scoring at k whatever the child does, and a child that trains on is that run's ``error``
(or ``timeout``, when the sandbox ends it at its wall limit).

A stopped run is recorded with outcome ``stopped``, its epochs so far, its best so far and
the decision (``stopped_by``, JSON): it never answers a deduplication twin as if trained to
the end, and its model is not written back to the index as trained.

Stoppers here know nothing of what decides: the accuracy predictor
(:class:`nnrag.predict.PredictedStopper`) and Optuna's pruners (:mod:`nnrag.tune.pruners`)
sit above this package and are injected by the caller.
"""

from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrag.exceptions import NnragError
from nnrag.train.spec import TrainSpec

#: What the ``--early-stop`` options accept; ``off`` is the default.
EARLY_STOP = ("off", "predicted")


class EarlyStopError(NnragError):
    """Early stopping was asked for where it cannot work (the Ray executor, no fitted
    predictor); the message says what to change."""


@dataclass(frozen=True)
class StopDecision:
    """Why a run was stopped after ``epoch``: who decided (``by``) and on what figures
    (``details``: the prediction and the reference for ``predicted``, the reported value for
    Optuna's pruners). Stored as the run's ``stopped_by`` JSON."""

    by: str
    epoch: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "epoch": self.epoch, **self.details}


class Stopper(abc.ABC):
    """Decides, after a scored epoch of a running trial, whether to stop it there."""

    def wait_epochs(self, spec: TrainSpec) -> tuple[int, ...] | None:
        """The epochs after which this stopper may stop a run of ``spec`` (the child waits
        for the answer only there); None: after every epoch but the last."""
        return None

    @abc.abstractmethod
    def decide(self, run_id: int, spec: TrainSpec,
               epochs: Sequence[dict[str, float]]) -> StopDecision | None:
        """Stop run ``run_id`` now? ``epochs`` are its scored rows so far (``epoch``, the
        spec's metric, ``test_loss``...), the last one just finished. None: go on."""


def wait_list(stopper: Stopper, spec: TrainSpec) -> list[int]:
    """The epochs the child waits for an answer after: never the last one (it ends anyway)."""
    last = spec.budget.epochs
    chosen = stopper.wait_epochs(spec)
    epochs = range(1, last) if chosen is None else chosen
    return sorted({int(e) for e in epochs if 1 <= int(e) < last})


def go_name(epoch: int) -> str:
    """The answer file that lets a run go on after ``epoch`` (in its run folder)."""
    return f"go-{epoch}"


STOP_NAME = "stop"


def write_answer(run_dir: Path, name: str, body: str = "") -> bool:
    """Write an answer file into a child's run folder: a fresh temporary file (never one the
    child planted: ``mkstemp`` creates it exclusively) renamed over ``name``. False if the
    folder refuses it (the child put a directory there, say); the parent's decision holds
    regardless."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".answer-", dir=run_dir)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, run_dir / name)
        return True
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False
