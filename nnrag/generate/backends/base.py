"""One interface for every LLM backend: a prompt in, text and its accounting out.

A backend is chosen by name (``transformers``, ``llama-cpp``, ``openai``, ``replay``) and
built from a :class:`BackendConfig`; the pipeline never knows which one it talks to. Every
answer carries the sampling parameters and seed it was produced with, so a generation can
be reproduced and is recorded with the model it produced.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from nnrag.exceptions import GenerateError

Style = Literal["completion", "chat"]
STYLES: tuple[str, ...] = ("auto", "completion", "chat")


@dataclass(frozen=True)
class Sampling:
    """How to sample; recorded with every generation."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 768
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise GenerateError(
                f"bad sampling parameters: temperature {self.temperature} (>= 0), top_p "
                f"{self.top_p} (0 < top_p <= 1), max_new_tokens {self.max_new_tokens} (>= 1)"
            )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt in the style the model takes.

    ``completion``: ``text`` is continued verbatim (base models; it ends where the code
    begins). ``chat``: ``messages`` go through the model's chat template.
    """

    style: Style
    text: str = ""
    messages: tuple[dict[str, str], ...] = ()

    def flat(self) -> str:
        """A readable single string (records, token estimates for chat endpoints)."""
        if self.style == "completion":
            return self.text
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages)


@dataclass(frozen=True)
class Completion:
    """One generated answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    sampling: Sampling
    backend: str
    model: str
    constrained: bool = False
    finish_reason: str | None = None

    def record(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "sampling": self.sampling.as_dict(),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3), "constrained": self.constrained,
                "finish_reason": self.finish_reason}


@dataclass(frozen=True)
class BackendConfig:
    """Everything a backend may need; each backend reads the fields it understands.

    ``model`` is a model id, a local folder, a ``.gguf`` file, or ``None`` for the embedded
    default (Gemma 3 270M). ``style`` ``auto`` picks chat when the model has a chat
    template, completion otherwise.
    """

    backend: str = "transformers"
    model: str | None = None
    adapter: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    style: str = "auto"
    dtype: str = "auto"  # auto | bf16 | fp32 | 8bit | 4bit
    context: int | None = None  # override the model's context length
    timeout_s: float = 600.0
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise GenerateError(f"unknown prompt style {self.style!r}; "
                                f"use one of: {', '.join(STYLES)}")


class Backend(abc.ABC):
    """A loaded model that answers prompts."""

    name: str = "?"
    model_id: str = "?"
    style: Style = "completion"
    context_length: int = 2048
    #: whether ``generate(..., schema=...)`` enforces a JSON schema while decoding
    supports_schema: bool = False

    @abc.abstractmethod
    def generate(self, prompt: Prompt, sampling: Sampling,
                 schema: dict[str, Any] | None = None) -> Completion:
        """Sample one answer. ``schema`` constrains the output to JSON of that schema
        where the backend can (see :attr:`supports_schema`); otherwise it is ignored."""

    @abc.abstractmethod
    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the prompt occupies in the model's context (chat template included)."""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "style": self.style,
                "context_length": self.context_length, "constrained": self.supports_schema}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model (servers: nothing)."""


def resolve_style(requested: str, has_chat_template: bool) -> Style:
    if requested == "auto":
        return "chat" if has_chat_template else "completion"
    return "chat" if requested == "chat" else "completion"


def apply_stops(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Cut at the first stop string (backends without native stop support)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
