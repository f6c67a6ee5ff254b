"""Hyperparameter optimisation on Optuna: every trial is one sandboxed engine run.

Samplers ``tpe`` and ``random`` (Optuna's), ``prior`` (retrieval warm start,
:mod:`nnrag.tune.prior`) and ``llm`` (:mod:`nnrag.tune.samplers`); trials one at a time or in
batches (:mod:`nnrag.tune.parallel`); the search space from the model's declared
hyperparameters (overridable with YAML); studies in Optuna's RDB storage.
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
