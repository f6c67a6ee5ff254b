"""Predict the best accuracy a training trial will reach, before or early in training.

Fitted on real learning curves (LEMUR's exported trials, nnrag's own run store), from the
model's source read statically, its hyperparameters, the dataset, and the first k epochs'
accuracies. ``Predictor().fit(trials).predict(code, hp, dataset, curve=[...])`` gives a
:class:`Prediction` with a 90% interval; :func:`evaluate` scores a predictor per k.
"""

from pathlib import Path

from nnrag.predict._evaluate import KS, Scores, baseline, evaluate, scores
from nnrag.predict._features import (
    LAYERS,
    LEMUR_DATASETS,
    LEMUR_TRAIN_SIZES,
    SOURCE_FEATURES,
    dataset_facts,
    feature_names,
    parse_or_raise,
    source_features,
)
from nnrag.predict._predictor import FORMAT_VERSION, K_MAX, Prediction, Predictor
from nnrag.predict._records import (
    LEMUR_FILES,
    ReadReport,
    Trial,
    model_family,
    read_lemur,
    read_runs,
    spec_hyperparameters,
    trials_of,
)
from nnrag.predict._stopper import PredictedStopper


def default_path() -> Path:
    """Where ``nnrag predict fit`` saves and the other commands look: under $NNRAG_HOME."""
    from nnrag.config import nnrag_home

    return nnrag_home() / "predictor.json"

__all__ = [
    "FORMAT_VERSION", "K_MAX", "KS", "LAYERS", "LEMUR_DATASETS", "LEMUR_FILES",
    "LEMUR_TRAIN_SIZES",
    "PredictedStopper", "Prediction", "Predictor", "ReadReport", "SOURCE_FEATURES", "Scores",
    "Trial", "baseline", "dataset_facts", "default_path", "evaluate", "feature_names",
    "model_family", "parse_or_raise", "read_lemur", "read_runs", "scores", "source_features",
    "spec_hyperparameters", "trials_of",
]
