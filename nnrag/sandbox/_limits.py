"""The sandbox's vocabulary: what a task may use (:class:`Limits`) and what came of it
(:class:`SandboxResult`).

Kept apart from the process handling so that callers, the pool and the worker handle can all
speak it without importing each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LIMITS", "STATUSES", "Limits", "SandboxResult", "result_from_answer"]

#: Every status a :class:`SandboxResult` can carry; anything else a worker says is a crash.
STATUSES = ("ok", "timeout", "oom", "error", "crashed")


@dataclass(frozen=True)
class Limits:
    """Per-task limits. ``memory_mb`` is on top of what the warm worker already maps;
    ``scratch_mb`` bounds the bytes a task may keep in its own scratch folder (a tmpfs, so
    they count as memory too; a caller's shared ``scratch`` is not bounded)."""

    wall_s: float = 60.0
    memory_mb: int = 4096
    network: bool = False
    max_output_bytes: int = 1_000_000
    scratch_mb: int = 1024


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one task; ``value`` is the entry's JSON-decoded return when ``ok``."""

    status: str
    value: Any
    error_type: str | None
    error_message: str | None
    traceback: str | None
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


#: The limits a caller gets by not choosing (one shared instance: :class:`Limits` is frozen).
DEFAULT_LIMITS = Limits()


def result_from_answer(answer: dict[str, Any]) -> SandboxResult:
    """Turn a worker's JSON answer into a result; the worker is not trusted to stay in the
    vocabulary, so an unknown status counts as a crash."""
    status = answer.get("status", "crashed")
    value = None
    if status == "ok":
        value = json.loads(answer["value"])
    return SandboxResult(
        status=status if status in STATUSES else "crashed",
        value=value,
        error_type=answer.get("error_type"),
        error_message=answer.get("error_message"),
        traceback=answer.get("traceback"),
        stdout=answer.get("stdout", ""),
        stderr=answer.get("stderr", ""),
        duration_s=float(answer.get("duration_s", 0.0)),
    )
