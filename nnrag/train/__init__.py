"""Training in the contract: specs, datasets, the run store, the engine and its executors.

The engine gets blocks and writes models back through injected callables;
:mod:`nnrag.train.wiring` holds the standard ones, which use the block index.

The engine's names load on first use: sandboxed trials import this package for the
harness (``_trial``, ``contract``) and should not pay for the index (LibCST) they never use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nnrag.train._trial import estimate_flops
from nnrag.train._trial import run as run_trial
from nnrag.train.events import Progress, TrainEvent, TrialDeduplicated, TrialDone, TrialEpoch
from nnrag.train.executors import Executor, LocalExecutor, RayExecutor, make_executor
from nnrag.train.runstore import EpochRecord, RunRecord, RunStore
from nnrag.train.spec import SpecError, TrainSpec, load_spec, parse_spec

if TYPE_CHECKING:
    from nnrag.train._scoring import TrialData, write_trial_data
    from nnrag.train.engine import (
        BatchReport,
        Engine,
        NotIndexed,
        OnTrained,
        Resolver,
        Trained,
        local_code,
    )
    from nnrag.train.wiring import (
        index_resolver,
        index_writer,
        indexed_engine,
        trained_folder,
    )

_LAZY = {
    **dict.fromkeys(("BatchReport", "Engine", "NotIndexed", "OnTrained", "Resolver", "Trained",
                     "local_code"), "nnrag.train.engine"),
    **dict.fromkeys(("TrialData", "write_trial_data"), "nnrag.train._scoring"),
    **dict.fromkeys(("index_resolver", "index_writer", "indexed_engine", "trained_folder"),
                    "nnrag.train.wiring"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchReport", "Engine", "EpochRecord", "Executor", "LocalExecutor", "NotIndexed",
    "OnTrained", "Progress",
    "RayExecutor", "Resolver", "RunRecord", "RunStore", "SpecError", "TrainEvent", "TrainSpec",
    "Trained", "TrialData", "TrialDeduplicated", "TrialDone", "TrialEpoch", "estimate_flops",
    "index_resolver", "index_writer", "indexed_engine", "load_spec", "local_code",
    "make_executor", "parse_spec", "run_trial", "trained_folder", "write_trial_data",
]
