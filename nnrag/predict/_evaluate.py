"""How good a predictor is on trials it was not fitted on, per k, beside a naive baseline.

The baseline is "last observed accuracy": after k epochs, guess that the trial ends where it
is now (k = 0 has nothing observed; its baseline is each dataset's mean best accuracy in
the evaluated trials, an optimistic stand-in since it peeks at them).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nnrag.predict._predictor import Predictor
from nnrag.predict._records import Trial

KS = (0, 1, 2)


@dataclass(frozen=True)
class Scores:
    """Accuracy of predictions of the best accuracy (fractions, so 0.05 = 5 points)."""

    n: int
    rmse: float
    mae: float
    r: float
    rho: float
    within_5: float
    within_10: float
    coverage: float  # share of outcomes inside [low, high]
    baseline_rmse: float
    baseline_r: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(a), dtype=float)


def scores(truth: np.ndarray, mean: np.ndarray, low: np.ndarray | None,
           high: np.ndarray | None, baseline: np.ndarray) -> Scores:
    """The figures of one set of predictions against the truth."""
    n = len(truth)
    if n == 0:
        nan = math.nan
        return Scores(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    err = np.abs(mean - truth)
    cover = (float(np.mean((low <= truth) & (truth <= high)))
             if low is not None and high is not None else math.nan)
    return Scores(
        n=n, rmse=float(np.sqrt(np.mean(err**2))), mae=float(np.mean(err)),
        r=_corr(mean, truth), rho=_corr(_ranks(mean), _ranks(truth)),
        within_5=float(np.mean(err <= 0.05)), within_10=float(np.mean(err <= 0.10)),
        coverage=cover, baseline_rmse=float(np.sqrt(np.mean((baseline - truth) ** 2))),
        baseline_r=_corr(baseline, truth),
    )


def baseline(trials: Sequence[Trial], k: int) -> np.ndarray:
    """Last observed accuracy after k epochs; for k = 0, the dataset's mean best."""
    if k:
        return np.array([t.curve[k - 1] for t in trials])
    by_dataset: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        by_dataset[t.dataset].append(t.best)
    means = {d: float(np.mean(v)) for d, v in by_dataset.items()}
    return np.array([means[t.dataset] for t in trials])


def evaluate(predictor: Predictor, trials: Sequence[Trial],
             ks: Sequence[int] = KS) -> dict[str, Scores]:
    """Scores per k (keys ``k0``, ``k1``...) on the trials that ran more than k epochs
    (after k epochs of a k-epoch trial there is nothing left to predict)."""
    usable, _ = predictor._usable(trials)
    out: dict[str, Scores] = {}
    for k in ks:
        chosen = [t for t in usable if len(t.curve) > k]
        predictions = predictor.predict_many(chosen, k)
        truth = np.array([t.best for t in chosen])
        out[f"k{k}"] = scores(truth, np.array([p.mean for p in predictions]),
                              np.array([p.low for p in predictions]),
                              np.array([p.high for p in predictions]), baseline(chosen, k))
    return out
