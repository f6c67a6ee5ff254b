"""Pruners for ``nnrag tune``: Optuna's, or the accuracy predictor's, over the engine's stop
channel (:mod:`nnrag.train.stopping`).

Each trial of a study is one sandboxed engine run. With ``median`` or ``hyperband`` the run
gets an :class:`OptunaStopper`: after each epoch the engine asks it, it reports the epoch's
metric to the Optuna trial (``trial.report``) and stops the run when ``trial.should_prune()``
says so. With ``predicted`` the caller's predictor stopper decides (this package cannot
import the predictor: the workspace injects it). Either way a stopped run is recorded
``stopped`` in the run store and told to Optuna as PRUNED.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import TuneError
from nnrag.train.spec import TrainSpec
from nnrag.train.stopping import StopDecision, Stopper

PRUNERS = ("none", "median", "hyperband", "predicted")
#: Finished trials MedianPruner waits for before it prunes (Optuna's default is 5; tuning
#: budgets here are small).
MEDIAN_STARTUP_TRIALS = 3


def check_pruner(name: str) -> str:
    if name not in PRUNERS:
        raise TuneError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")
    return name


def make_pruner(name: str, epochs: int) -> Any:
    """The Optuna pruner the study is opened with: Optuna's for ``median`` and
    ``hyperband`` (epochs are its steps), none (NopPruner) for ``none`` and ``predicted``,
    whose decisions are not Optuna's."""
    check_pruner(name)
    optuna = optional_import("optuna", "tune")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    return optuna.pruners.NopPruner()


class OptunaStopper(Stopper):
    """Reports each scored epoch to one Optuna trial and stops the run when the study's
    pruner prunes it."""

    def __init__(self, trial: Any, name: str) -> None:
        self.trial = trial
        self.name = name
        self.reported: set[int] = set()

    def decide(self, run_id: int, spec: TrainSpec,
               epochs: Sequence[dict[str, float]]) -> StopDecision | None:
        row = epochs[-1]
        value = row.get(spec.metric)
        if value is None or not math.isfinite(value):
            return None
        step = int(row["epoch"])
        self.trial.report(float(value), step)
        self.reported.add(step)
        if not self.trial.should_prune():
            return None
        return StopDecision(self.name, step, {"value": float(value),
                                              "trial": self.trial.number})


def trial_stopper(name: str, trial: Any, predicted: Stopper | None) -> Stopper | None:
    """The stopper one trial's run gets under pruner ``name``."""
    if name in ("median", "hyperband"):
        return OptunaStopper(trial, name)
    if name == "predicted":
        if predicted is None:
            raise TuneError("--pruner predicted needs the predictor's stopper")
        return predicted
    return None


def reported_steps(stopper: Stopper | None) -> set[int]:
    """The epochs a stopper already reported to Optuna (reported again, Optuna warns)."""
    return set(stopper.reported) if isinstance(stopper, OptunaStopper) else set()
