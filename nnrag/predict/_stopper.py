"""Predicted early stopping: end a trial whose best possible accuracy cannot win.

After each of the first ``after`` epochs of a trial, the predictor reads the model's code,
its settings, the dataset and the curve so far, and gives a 90% interval for the best
accuracy the trial will reach. When the interval's top (``high``) is below the best
finished (``ok``) run on the same dataset, sample limit and metric in the run store, the
trial is stopped there. With no finished run to beat (the first trial of a dataset) nothing
is ever stopped; a metric other than accuracy (the predictor's target) is never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nnrag.exceptions import PredictError
from nnrag.logging import get_logger
from nnrag.predict._predictor import K_MAX, Predictor
from nnrag.predict._records import spec_hyperparameters
from nnrag.train.runstore import RunStore
from nnrag.train.spec import TrainSpec
from nnrag.train.stopping import EarlyStopError, StopDecision, Stopper

logger = get_logger(__name__)


class PredictedStopper(Stopper):
    """Stops a run after epoch k (1..``after``) when its predicted best cannot reach the
    best finished run of its dataset."""

    def __init__(self, predictor: Predictor, runs: RunStore, after: int = K_MAX) -> None:
        if not 1 <= after <= predictor.k_max:
            raise EarlyStopError(f"--early-stop-after must be between 1 and "
                                 f"{predictor.k_max} (the epochs the predictor reads), got "
                                 f"{after}")
        self.predictor = predictor
        self.runs = runs
        self.after = after

    @classmethod
    def load(cls, path: str | Path, runs: RunStore, after: int = K_MAX) -> PredictedStopper:
        """The stopper over the predictor saved at ``path`` (``nnrag predict fit`` writes
        one); none there is one line saying how to fit it."""
        try:
            predictor = Predictor.load(path)
        except PredictError as exc:
            raise EarlyStopError(f"--early-stop predicted needs a fitted predictor: {exc}"
                                 ) from None
        return cls(predictor, runs, after)

    def wait_epochs(self, spec: TrainSpec) -> tuple[int, ...]:
        return tuple(range(1, self.after + 1))

    def decide(self, run_id: int, spec: TrainSpec,
               epochs: Sequence[dict[str, float]]) -> StopDecision | None:
        k = len(epochs)
        if spec.metric != "accuracy" or not 1 <= k <= self.after or k >= spec.budget.epochs:
            return None
        reference = self.runs.best_finished(spec.dataset, spec.limit, spec.metric)
        if reference is None or reference.best is None:
            return None  # the first trial of a dataset: nothing to lose to
        curve = [float(row.get("accuracy", float("nan"))) for row in epochs]
        run = self.runs.get(run_id)
        try:
            prediction = self.predictor.predict(run.code, spec_hyperparameters(run.spec_dict),
                                                spec.dataset, curve,
                                                epochs=spec.budget.epochs)
        except PredictError as exc:  # a curve it cannot read (a diverged epoch): go on
            logger.info("no prediction for run %d after epoch %d: %s", run_id, k, exc)
            return None
        if prediction.high >= reference.best:
            return None
        return StopDecision("predicted", k, {
            **prediction.to_dict(), "best_so_far": max(curve),
            "reference_run": reference.id, "reference_best": reference.best})
