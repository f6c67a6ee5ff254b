"""The parent's half of a trial: hand out inputs, keep the test labels, compute every score.

The engine writes each trial's data file (training inputs and labels, test *inputs*) into
scratch and keeps the test labels here. A :class:`TrialWatch` follows one running trial:
it reads the child's progress lines and logits files through :mod:`nnrag.train._channel`,
scores each epoch with the spec's registered metric, and finally turns the sandbox's
verdict plus the child's (checked) result into the dict the run store records. A child
that breaks the protocol fails alone, with the reason, and cannot forge a score: the best
it can do is predict the test inputs well.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnrag.sandbox import SandboxResult
from nnrag.train._channel import (
    ChannelError,
    data_name,
    load_logits,
    logits_name,
    parse_progress_line,
    parse_result,
    progress_name,
    read_new_lines,
)
from nnrag.train.datasets import load_dataset
from nnrag.train.registry import metric_fn
from nnrag.train.spec import TrainSpec


@dataclass(frozen=True)
class TrialData:
    """A written data file and the labels that stay with the parent."""

    name: str  # relative to scratch, as the child's payload names it
    test_y: torch.Tensor
    classes: int


def write_trial_data(spec: TrainSpec, scratch: Path) -> TrialData:
    """Load the spec's dataset here and write what the child may see into ``scratch``.

    ``limit`` bounds the training and the test split alike, so a small trial is cheap to
    evaluate too. The engine writes one file per dataset, seed and limit in a batch.
    """
    data = load_dataset(spec.dataset, seed=spec.seed, limit=spec.limit)
    (train_x, train_y), (test_x, test_y) = data.train.tensors, data.test.tensors
    if spec.limit is not None:
        test_x, test_y = test_x[: spec.limit], test_y[: spec.limit]
    key = hashlib.sha1(f"{spec.dataset}/{spec.seed}/{spec.limit}".encode()).hexdigest()[:16]
    name = data_name(key)
    tmp = scratch / f"{name}.tmp.npz"  # always rewritten: an earlier trial may have left one
    np.savez(tmp, train_x=train_x.numpy(), train_y=train_y.numpy(), test_x=test_x.numpy())
    tmp.replace(scratch / name)
    return TrialData(name, test_y, data.info.num_classes)


def score(logits: np.ndarray, labels: torch.Tensor, metric: str) -> dict[str, float]:
    """The spec's metric and the test loss, from logits the child produced."""
    t = torch.from_numpy(logits)
    loss = float(torch.nn.functional.cross_entropy(t, labels))
    return {metric: float(metric_fn(metric)(t, labels)), "test_loss": loss}


@dataclass
class TrialWatch:
    """The parent's record of one running trial: what it read, what it scored, what failed."""

    run_id: int
    spec: TrainSpec
    data: TrialData
    offset: int = 0
    scored: list[dict[str, float]] = field(default_factory=list)
    failure: str | None = None  # the first protocol violation; the run is then ``error``
    nan_at: int | None = None  # the epoch whose logits were not finite
    stopped_at: int | None = None  # the parent stopped the run after this epoch
    pause_after: frozenset[int] = frozenset()  # epochs a stop decision follows
    pending: list[bytes] = field(default_factory=list)  # lines read, not scored yet

    def poll(self, scratch: Path) -> list[dict[str, float]]:
        """Score every epoch announced since the last poll, up to the first one in
        ``pause_after`` (the engine decides on it before the next is scored); return the new
        rows."""
        if self.failure is not None or self.nan_at is not None:
            return []
        new: list[dict[str, float]] = []
        try:
            lines, self.offset = read_new_lines(scratch / progress_name(self.run_id),
                                                self.offset)
            self.pending.extend(lines)
            while self.pending:
                new.append(self._score_line(self.pending.pop(0), scratch))
                if self.nan_at is not None or new[-1]["epoch"] in self.pause_after:
                    break  # a stop decision comes first: what follows is read after it
        except ChannelError as exc:
            self.failure = str(exc)
        return new

    def _score_line(self, line: bytes, scratch: Path) -> dict[str, float]:
        row = parse_progress_line(line, self.spec.budget.epochs)
        if self.stopped_at is not None:
            raise ChannelError(f"it trained on to epoch {row.epoch} after being stopped "
                               f"after epoch {self.stopped_at}")
        if row.epoch != len(self.scored) + 1:
            raise ChannelError(f"progress row for epoch {row.epoch}, "
                               f"expected epoch {len(self.scored) + 1}")
        path = scratch / logits_name(self.run_id, row.epoch)
        logits = load_logits(path, len(self.data.test_y), self.data.classes)
        path.unlink(missing_ok=True)
        if not np.isfinite(logits).all():
            self.nan_at = row.epoch
        scored = {"epoch": row.epoch, **score(logits, self.data.test_y, self.spec.metric),
                  "epoch_s_self_reported": row.epoch_s}
        if row.train_loss is not None:
            scored["train_loss_self_reported"] = row.train_loss
        self.scored.append(scored)
        return scored

    def verdict(self, result: SandboxResult) -> dict[str, Any]:
        """What the run store records: the parent's scores, the child's word only where it
        cannot raise a run's standing (its errors, its self-described size)."""
        epochs = self.spec.budget.epochs
        out: dict[str, Any] = {"epochs": self.scored, "duration_s": round(result.duration_s, 3),
                               "params": None, "flops": None, "versions": {}, "error": None,
                               "traceback": None}
        if self.failure is not None:
            return {**out, "outcome": "error", "error": f"rejected trial output: {self.failure}"}
        if result.status != "ok":
            outcome = {"timeout": "timeout", "oom": "oom"}.get(result.status, "error")
            message = (f"{result.error_type}: {result.error_message}" if result.error_type
                       else result.status)
            return {**out, "outcome": outcome, "error": message[:2000],
                    "traceback": result.traceback}
        try:
            child = parse_result(result.value, epochs)
        except ChannelError as exc:
            return {**out, "outcome": "error", "error": f"rejected trial output: {exc}"}
        out.update(params=child.params, flops=child.flops, versions=dict(child.versions),
                   error=child.error, traceback=child.traceback)
        if self.nan_at is not None:
            return {**out, "outcome": "nan",
                    "error": f"non-finite test logits after epoch {self.nan_at}"}
        if child.outcome == "stopped" or self.stopped_at is not None:
            return {**out, **self._stop_verdict(child.outcome)}
        if child.outcome == "ok" and len(self.scored) < epochs:
            return {**out, "outcome": "error",
                    "error": f"rejected trial output: it claimed ok after {len(self.scored)} "
                             f"of {epochs} scored epochs"}
        return {**out, "outcome": child.outcome}

    def _stop_verdict(self, outcome: str) -> dict[str, Any]:
        """A stopped run is ``stopped`` only if the parent stopped it and the child ended
        exactly there; a child that stops on its own, or ends otherwise, is an ``error``."""
        if self.stopped_at is None:
            return {"outcome": "error",
                    "error": "rejected trial output: it stopped without being told to"}
        if outcome == "stopped" and len(self.scored) == self.stopped_at:
            return {"outcome": "stopped", "error": None}
        if outcome in ("error", "oom"):
            return {"outcome": outcome}
        return {"outcome": "error",
                "error": f"rejected trial output: it ended {outcome} after being stopped "
                         f"after epoch {self.stopped_at}"}
