"""The ground floor: a fork server and worker pool that run untrusted code in child processes.

It imports no other stage of nnrag; callers hand it an entry point (``"module:function"``)
and JSON-able payloads, and get :class:`SandboxResult` verdicts back.
"""

from nnrag.sandbox._check import LayerState, ProbeOutcome, SandboxCheck, check
from nnrag.sandbox._limits import Limits, SandboxResult
from nnrag.sandbox._pool import WorkerPool
from nnrag.sandbox._runner import isolation_report, run_function, run_many, shutdown_pool

__all__ = [
    "LayerState",
    "Limits",
    "ProbeOutcome",
    "SandboxCheck",
    "SandboxResult",
    "WorkerPool",
    "check",
    "isolation_report",
    "run_function",
    "run_many",
    "shutdown_pool",
]
