"""Sandboxed execution of untrusted code (see :mod:`nnrag.execute.sandbox`)."""

from nnrag.execute.sandbox import Limits, SandboxResult, isolation_report, run_function, run_many

__all__ = ["Limits", "SandboxResult", "isolation_report", "run_function", "run_many"]
