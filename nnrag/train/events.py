"""What the engine tells a progress listener while a batch trains, as frozen values.

Listeners (the CLI's progress lines, the generation pipeline) match on the type instead of
on dict keys, so a renamed field is a type error, not a silently empty line. ``to_dict``
gives the flat form older listeners and JSON logs read (``{"event": "done", "run": 3, ...}``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class TrialEpoch:
    """A trial finished an epoch; ``metrics`` holds what the trial reported for it."""

    kind: ClassVar[str] = "epoch"
    run: int
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "event": self.kind, "epoch": self.epoch, **self.metrics}


@dataclass(frozen=True)
class TrialDone:
    """A trial ended: trained, or failed with ``outcome`` (error, timeout, oom, nan)."""

    kind: ClassVar[str] = "done"
    run: int
    name: str
    outcome: str | None
    error: str | None = None
    duration_s: float | None = None
    params: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


@dataclass(frozen=True)
class TrialDeduplicated:
    """A trial was not trained: run ``of`` already trained the same model on the same spec."""

    kind: ClassVar[str] = "duplicate"
    run: int
    name: str
    of: int

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


TrainEvent = TrialEpoch | TrialDone | TrialDeduplicated
Progress = Callable[[TrainEvent], None]
