"""Hyperparameter optimisation on Optuna: every trial is one sandboxed engine run.

First slice of issue 20: ``tpe`` and ``random`` samplers, the search space from the model's
declared hyperparameters (overridable with YAML), studies in Optuna's RDB storage.
"""

from nnrag.tune.space import DEFAULTS, Param, default_space, load_space, parse_space
from nnrag.tune.study import (
    SAMPLERS,
    TrialResult,
    TuneResult,
    list_studies,
    run_study,
)

__all__ = ["DEFAULTS", "SAMPLERS", "Param", "TrialResult", "TuneResult", "default_space",
           "list_studies", "load_space", "parse_space", "run_study"]
