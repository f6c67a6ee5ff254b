"""What one ``nnrag generate`` run is asked to do and what it found: the config, one record
per candidate (prompt to training result) and the run's figures (the CLI table and
``--format json``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GenerateConfig:
    """One ``nnrag generate`` call."""

    task: str = "image-classification"
    dataset: str = "digits"
    n: int = 20
    shots: int = 1
    blocks: int = 0
    epochs: int = 1
    workers: int = 1
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 768
    spec_max_new_tokens: int = 160
    repairs: int = 2  # repair prompts after an execution failure
    reprompts: int = 1  # re-prompts after a structural violation
    constrained: bool = True  # constrained decoding of the spec where the backend can
    train: bool = True
    limit: int | None = None
    wall_s: float = 300.0
    probe_wall_s: float = 60.0
    runs_db: Path | None = None
    index_db: Path | None = None
    corpus: Path | None = None


@dataclass
class Candidate:
    """Everything about one generated model, from its prompt to its training result."""

    index: int
    status: str = "pending"
    references: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    cuts: list[str] = field(default_factory=list)
    generations: list[dict[str, Any]] = field(default_factory=list)
    code: str | None = None
    spec: dict[str, Any] | None = None
    spliced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reprompts: int = 0
    repairs: int = 0
    error: str | None = None
    md5: str | None = None
    fingerprint: str | None = None
    duplicate_of: int | None = None
    copy_of: str | None = None  # a reference the answer reproduces: no new model
    probe: dict[str, Any] | None = None
    run_id: int | None = None
    outcome: str | None = None
    best: float | None = None
    indexed_as: str | None = None
    prompt: str = ""
    parsed: bool = False
    schema_valid: bool = False
    executable: bool = False

    def add_notes(self, notes: Iterable[str]) -> None:
        self.notes.extend(n for n in notes if n not in self.notes)

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not full:
            data.pop("prompt")
            data.pop("code")
        return data


@dataclass
class GenerateReport:
    """The figures of one run (the CLI table and ``--format json``)."""

    backend: dict[str, Any]
    config: dict[str, Any]
    prompts_sent: int = 0
    parsed: int = 0
    schema_valid: int = 0
    unique: int = 0
    reference_copies: int = 0  # schema-valid answers that reproduce a reference (not unique)
    executable: int = 0
    trained: int = 0
    reused: int = 0
    best_accuracy: float | None = None
    mean_accuracy: float | None = None
    repairs_used: int = 0
    repaired: int = 0
    reprompts_used: int = 0
    autofixed: int = 0
    generation_s: float = 0.0
    completion_tokens: int = 0
    mean_prompt_tokens: float = 0.0
    dedup_ms_per_program: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        keys = ("prompts_sent", "parsed", "schema_valid", "unique", "reference_copies",
                "executable", "trained", "reused", "best_accuracy", "mean_accuracy",
                "repairs_used", "repaired", "reprompts_used", "autofixed", "generation_s",
                "completion_tokens", "mean_prompt_tokens", "dedup_ms_per_program", "seconds")
        return {k: getattr(self, k) for k in keys}

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        return {**self.figures(), "n": self.config.get("n"), "backend": self.backend,
                "config": self.config, "notes": self.notes,
                "candidates": [c.as_dict(full) for c in self.candidates]}
