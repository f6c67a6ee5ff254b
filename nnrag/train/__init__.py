"""Training in the contract: specs, datasets, the run store, the engine and its executors."""

from nnrag.train._trial import estimate_flops
from nnrag.train._trial import run as run_trial
from nnrag.train.engine import BatchReport, Engine
from nnrag.train.executors import Executor, LocalExecutor, RayExecutor, make_executor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import SpecError, TrainSpec, load_spec, parse_spec

__all__ = [
    "BatchReport", "Engine", "Executor", "LocalExecutor", "RayExecutor", "RunStore", "SpecError",
    "TrainSpec", "estimate_flops", "load_spec", "make_executor", "parse_spec", "run_trial",
]
