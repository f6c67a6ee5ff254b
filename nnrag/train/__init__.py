"""Training in the contract: specs, datasets, the run store, the engine and its executors.

The engine gets blocks and writes models back through injected callables;
:mod:`nnrag.train.wiring` holds the standard ones, which use the block index.
"""

from nnrag.train._trial import estimate_flops
from nnrag.train._trial import run as run_trial
from nnrag.train.engine import BatchReport, Engine, OnTrained, Resolver, Trained, local_code
from nnrag.train.events import Progress, TrainEvent, TrialDeduplicated, TrialDone, TrialEpoch
from nnrag.train.executors import Executor, LocalExecutor, RayExecutor, make_executor
from nnrag.train.runstore import EpochRecord, RunRecord, RunStore
from nnrag.train.spec import SpecError, TrainSpec, load_spec, parse_spec
from nnrag.train.wiring import index_resolver, index_writer, indexed_engine

__all__ = [
    "BatchReport", "Engine", "EpochRecord", "Executor", "LocalExecutor", "OnTrained", "Progress",
    "RayExecutor", "Resolver", "RunRecord", "RunStore", "SpecError", "TrainEvent", "TrainSpec",
    "Trained", "TrialDeduplicated", "TrialDone", "TrialEpoch", "estimate_flops", "index_resolver",
    "index_writer", "indexed_engine", "load_spec", "local_code", "make_executor", "parse_spec",
    "run_trial",
]
