"""What the generation pipeline tells a progress listener, as frozen values.

Like the engine's events (:mod:`nnrag.train.events`, passed through unchanged while the
pipeline trains), listeners match on the type; ``to_dict`` gives the flat JSON form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from nnrag.train import TrainEvent


@dataclass(frozen=True)
class PromptFitted:
    """Candidate ``index``'s prompt fits the context: ``tokens`` long after ``cuts``."""

    kind: ClassVar[str] = "prompt"
    index: int
    tokens: int
    cuts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self), "cuts": list(self.cuts)}


@dataclass(frozen=True)
class Generated:
    """Candidate ``index`` (of ``n``) was answered, parsed and deduplicated: ``status``."""

    kind: ClassVar[str] = "generated"
    index: int
    n: int
    status: str
    error: str | None
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self), "notes": list(self.notes)}


@dataclass(frozen=True)
class Probed:
    """Candidate ``index`` ran (``ok``) or failed the sandbox probe after ``repairs``."""

    kind: ClassVar[str] = "probe"
    index: int
    ok: bool
    error: str | None
    repairs: int

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


GenerateEvent = PromptFitted | Generated | Probed | TrainEvent
Progress = Callable[[GenerateEvent], None]
