"""The tabular learner behind the predictor: LightGBM when installed, else scikit-learn.

Both are gradient-boosted trees that take NaN as "unknown" and fit mean (squared error) and
quantile objectives. A fitted model is kept as text so a saved predictor is plain JSON:
LightGBM's own model text, or (scikit-learn) a base64 pickle, which is why
:meth:`Predictor.load` must only be given files this user wrote.
"""

from __future__ import annotations

import base64
import importlib.util
import pickle
from typing import Any, Protocol

import numpy as np

LEARNERS = ("lightgbm", "sklearn")
ROUNDS = 300


class Regressor(Protocol):
    def predict(self, x: np.ndarray) -> np.ndarray: ...


def default_learner() -> str:
    return "lightgbm" if importlib.util.find_spec("lightgbm") is not None else "sklearn"


def fit(learner: str, x: np.ndarray, y: np.ndarray, *, quantile: float | None,
        seed: int) -> Any:
    """A model of ``y`` (its mean, or its ``quantile``) given ``x``."""
    if learner == "lightgbm":
        import lightgbm as lgb

        params: dict[str, Any] = {
            "objective": "regression" if quantile is None else "quantile",
            "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
            "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
            "seed": seed, "num_threads": 1, "verbose": -1, "deterministic": True,
        }
        if quantile is not None:
            params["alpha"] = quantile
        return lgb.train(params, lgb.Dataset(x, y, free_raw_data=True), ROUNDS)
    from sklearn.ensemble import HistGradientBoostingRegressor

    # scikit-learn cannot bin a column with no known value (params of LEMUR trials): zero it
    x = np.where(np.isnan(x).all(axis=0), 0.0, x)

    model = HistGradientBoostingRegressor(
        loss="squared_error" if quantile is None else "quantile",
        quantile=quantile, learning_rate=0.05, max_iter=ROUNDS, random_state=seed)
    return model.fit(x, y)


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x), dtype=float)


def dump(learner: str, model: Any) -> str:
    if learner == "lightgbm":
        return str(model.model_to_string())
    return base64.b64encode(pickle.dumps(model)).decode("ascii")


def load(learner: str, text: str) -> Any:
    if learner == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_str=text)
    return pickle.loads(base64.b64decode(text.encode("ascii")))  # noqa: S301 (own file)
