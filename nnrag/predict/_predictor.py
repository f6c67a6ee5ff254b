"""The predictor: best final accuracy of a trial from its code, settings and first k epochs.

One model per k (0 = zero-shot, before training; 1, 2 = after that many epochs). For k > 0
it learns the *gain* still to come over the best accuracy seen so far, so the answer can
never fall below what the trial already reached. Its interval is conformalised quantile
regression: 5% and 95% quantile models fitted on 80% of the models (split by model name),
then widened by the score that makes them cover 90% of the other 20%.

A saved predictor is one JSON file with a format version; a file of another version, or
whose features differ from this code's, is refused with a message to re-fit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnrag._imports import optional_import
from nnrag.exceptions import PredictError, PredictorVersionError
from nnrag.predict import _learner
from nnrag.predict._features import DatasetFacts, dataset_facts, feature_names, row
from nnrag.predict._records import Trial

FORMAT = "nnrag-predictor"
FORMAT_VERSION = 1
K_MAX = 2
ALPHA = 0.1  # the interval aims to cover 1 - ALPHA of outcomes
MIN_ROWS = 8


@dataclass(frozen=True)
class Prediction:
    """The predicted best accuracy of a trial, with a 90% interval, after ``k`` epochs."""

    mean: float
    low: float
    high: float
    k: int
    seen_structure: bool = False  # the model's structural fingerprint was in the training set

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "k": self.k,
                "seen_structure": self.seen_structure}


@dataclass
class _Head:
    """The three models of one k and the conformal widening of their interval."""

    mean: Any
    low: Any
    high: Any
    adjust: float
    row_count: int


def _calibration(name: str) -> bool:
    return int(hashlib.md5(name.encode()).hexdigest()[:8], 16) % 5 == 0


def _fingerprint(code: str | None) -> str | None:
    if code is None:
        return None
    from nnrag.index import code_fingerprint

    try:
        return code_fingerprint(code)
    except Exception:  # unparsable source has no structure to compare
        return None


@dataclass
class Predictor:
    """Fit with :meth:`fit`, ask with :meth:`predict`, keep with :meth:`save` / :meth:`load`."""

    learner: str = field(default_factory=_learner.default_learner)
    k_max: int = K_MAX
    seed: int = 0
    heads: dict[int, _Head] = field(default_factory=dict)
    trained_on: dict[str, Any] = field(default_factory=dict)
    fingerprints: set[str] = field(default_factory=set)

    # -- fitting
    def fit(self, records: Iterable[Trial],
            progress: Callable[[int, int], None] | None = None) -> Predictor:
        """Learn from ``records`` (trials with at least one epoch). Trials on a dataset the
        predictor knows nothing of are skipped and counted in :attr:`trained_on`."""
        if self.learner not in _learner.LEARNERS:
            raise PredictError(f"unknown learner {self.learner!r}; use one of "
                               f"{', '.join(_learner.LEARNERS)}")
        if self.learner == "lightgbm":
            optional_import("lightgbm", "predict")
        trials, skipped = self._usable(records)
        if len(trials) < MIN_ROWS:
            raise PredictError(f"only {len(trials)} usable trials to fit on (at least "
                               f"{MIN_ROWS} are needed); give more records")
        facts = {t.dataset: dataset_facts(t.dataset) for t in trials}
        self.heads = {}
        for k in range(self.k_max + 1):
            if progress is not None:
                progress(k, self.k_max + 1)
            chosen = [t for t in trials if len(t.curve) > k]
            if len(chosen) >= MIN_ROWS:
                self.heads[k] = self._fit_head(chosen, facts, k)
        if progress is not None:
            progress(self.k_max + 1, self.k_max + 1)
        codes = {t.code for t in trials if t.code is not None}
        self.fingerprints = {f for f in map(_fingerprint, codes) if f is not None}
        self.trained_on = {
            "trials": len(trials), "models": len({t.model for t in trials}),
            "datasets": dict(Counter(t.dataset for t in trials).most_common()),
            "skipped": dict(skipped), "rows": {str(k): h.row_count for k, h in self.heads.items()},
            "learner": self.learner,
        }
        return self

    @staticmethod
    def _usable(records: Iterable[Trial]) -> tuple[list[Trial], Counter[str]]:
        trials: list[Trial] = []
        skipped: Counter[str] = Counter()
        known: dict[str, bool] = {}
        for t in records:
            if not t.curve or not all(math.isfinite(a) for a in t.curve):
                skipped["no finite curve"] += 1
                continue
            if t.dataset not in known:
                try:
                    dataset_facts(t.dataset)
                    known[t.dataset] = True
                except PredictError:
                    known[t.dataset] = False
            if not known[t.dataset]:
                skipped["unknown dataset"] += 1
                continue
            trials.append(t)
        return trials, skipped

    def _fit_head(self, trials: Sequence[Trial], facts: dict[str, DatasetFacts],
                  k: int) -> _Head:
        x = np.array([row(t.code, t.hyperparameters, facts[t.dataset], t.curve, k,
                          epochs=t.epochs, params=t.params) for t in trials], dtype=float)
        base = np.array([max(t.curve[:k]) if k else 0.0 for t in trials])
        y = np.array([t.best for t in trials]) - base
        mean = _learner.fit(self.learner, x, y, quantile=None, seed=self.seed)
        calib = np.array([_calibration(t.model) for t in trials])
        if calib.sum() < 20 or (~calib).sum() < MIN_ROWS:
            calib[:] = False
        fit_x, fit_y = x[~calib], y[~calib]
        low = _learner.fit(self.learner, fit_x, fit_y, quantile=ALPHA / 2, seed=self.seed)
        high = _learner.fit(self.learner, fit_x, fit_y, quantile=1 - ALPHA / 2, seed=self.seed)
        adjust = 0.0
        if calib.any():
            cx, cy = x[calib], y[calib]
            scores = np.maximum(_learner.predict(low, cx) - cy, cy - _learner.predict(high, cx))
            level = min(1.0, (1 - ALPHA) * (1 + 1 / len(cy)))
            adjust = float(np.quantile(scores, level))
        return _Head(mean, low, high, adjust, len(trials))

    # -- predicting
    def _head(self, k: int) -> tuple[int, _Head]:
        if not self.heads:
            raise PredictError("this predictor is not fitted; run `nnrag predict fit` first")
        usable = [j for j in self.heads if j <= k]
        j = max(usable) if usable else min(self.heads)
        return j, self.heads[j]

    def predict(self, code: str | None, hyperparameters: dict[str, Any], dataset: str,
                curve: Sequence[float] = (), *, params: int | None = None,
                epochs: int | None = None) -> Prediction:
        """The best accuracy a trial of ``code`` on ``dataset`` will reach, given the
        accuracies of its first epochs (``curve``; empty before training). Only the first
        :attr:`k_max` epochs are used."""
        values = tuple(float(a) for a in curve)
        if not all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in values):
            raise PredictError("curve accuracies must be fractions between 0 and 1")
        trial = Trial("query", dataset, dict(hyperparameters), values, code=code,
                      params=params, epochs=epochs)
        k = min(len(values), self.k_max)
        prediction = self.predict_many([trial], k)[0]
        return Prediction(prediction.mean, prediction.low, prediction.high, prediction.k,
                          _fingerprint(code) in self.fingerprints)

    def predict_many(self, trials: Sequence[Trial], k: int) -> list[Prediction]:
        """Predictions for many trials seen up to epoch ``k`` each (each needs k epochs)."""
        j, head = self._head(k)
        facts = {t.dataset: dataset_facts(t.dataset) for t in trials}
        if not trials:
            return []
        x = np.array([row(t.code, t.hyperparameters, facts[t.dataset], t.curve, j,
                          epochs=t.epochs, params=t.params) for t in trials], dtype=float)
        floor = np.array([max(t.curve[:k]) if k else 0.0 for t in trials])
        base = np.array([max(t.curve[:j]) if j else 0.0 for t in trials])
        mean = base + _learner.predict(head.mean, x)
        low = base + _learner.predict(head.low, x) - head.adjust
        high = base + _learner.predict(head.high, x) + head.adjust
        mean = np.clip(mean, floor, 1.0)
        low = np.clip(np.minimum(low, mean), floor, 1.0)
        high = np.clip(np.maximum(high, mean), floor, 1.0)
        return [Prediction(float(m), float(lo), float(hi), j)
                for m, lo, hi in zip(mean, low, high, strict=True)]

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "learner": self.learner,
            "k_max": self.k_max, "seed": self.seed, "alpha": ALPHA,
            "trained_on": self.trained_on, "fingerprints": sorted(self.fingerprints),
            "heads": {str(k): {"features": list(feature_names(k)), "rows": h.row_count,
                               "adjust": h.adjust,
                               "mean": _learner.dump(self.learner, h.mean),
                               "low": _learner.dump(self.learner, h.low),
                               "high": _learner.dump(self.learner, h.high)}
                      for k, h in self.heads.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write the predictor to ``path`` (JSON) through a temporary file and a rename."""
        from nnrag.exceptions import OutputError

        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return target

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """A predictor saved by :meth:`save`; another format version is refused (re-fit).
        Load only files you wrote: a scikit-learn predictor holds a pickle."""
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise PredictError(f"no predictor at {source}; fit one with `nnrag predict fit`"
                               ) from exc
        except (OSError, ValueError) as exc:
            raise PredictError(f"{source} is not a saved predictor ({exc}); re-fit it with "
                               "`nnrag predict fit`") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PredictError(f"{source} is not a saved predictor; re-fit it with "
                               "`nnrag predict fit`")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise PredictorVersionError(
                f"{source} is a predictor of format version {version}, this nnrag reads "
                f"version {FORMAT_VERSION}; re-fit it with `nnrag predict fit`")
        learner = data.get("learner")
        if learner not in _learner.LEARNERS:
            raise PredictorVersionError(f"{source} uses learner {learner!r}, unknown here; "
                                        "re-fit it with `nnrag predict fit`")
        if learner == "lightgbm":
            optional_import("lightgbm", "predict")
        heads: dict[int, _Head] = {}
        try:
            for key, h in data["heads"].items():
                if h["features"] != list(feature_names(int(key))):
                    raise PredictorVersionError(
                        f"{source} was fitted on other features than this nnrag computes; "
                        "re-fit it with `nnrag predict fit`")
                heads[int(key)] = _Head(_learner.load(learner, h["mean"]),
                                        _learner.load(learner, h["low"]),
                                        _learner.load(learner, h["high"]),
                                        float(h["adjust"]), int(h["rows"]))
        except PredictorVersionError:
            raise
        except Exception as exc:  # a damaged model text: LightGBM or pickle errors vary
            raise PredictError(f"{source} is damaged ({type(exc).__name__}); re-fit it with "
                               "`nnrag predict fit`") from exc
        return cls(learner=learner, k_max=int(data.get("k_max", K_MAX)),
                   seed=int(data.get("seed", 0)), heads=heads,
                   trained_on=dict(data.get("trained_on") or {}),
                   fingerprints=set(data.get("fingerprints") or ()))
