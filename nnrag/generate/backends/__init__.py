"""LLM backends behind one interface; built lazily so optional packages stay optional."""

from __future__ import annotations

from nnrag.exceptions import UnknownBackendError
from nnrag.generate.backends.base import (
    STYLES,
    Backend,
    BackendConfig,
    Completion,
    Prompt,
    Sampling,
    resolve_style,
)

BACKENDS: tuple[str, ...] = ("transformers", "llama-cpp", "openai", "replay")


def make_backend(config: BackendConfig) -> Backend:
    """Load the backend ``config.backend`` names (imports its packages only now)."""
    name = config.backend
    if name == "transformers":
        from nnrag.generate.backends.hf import TransformersBackend

        return TransformersBackend(config)
    if name in ("llama-cpp", "llama_cpp", "llamacpp"):
        from nnrag.generate.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config)
    if name == "openai":
        from nnrag.generate.backends.openai import OpenAIBackend

        return OpenAIBackend(config)
    if name == "replay":
        from nnrag.generate.backends.replay import ReplayBackend

        return ReplayBackend(config)
    raise UnknownBackendError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "STYLES", "Backend", "BackendConfig", "Completion", "Prompt", "Sampling",
           "make_backend", "resolve_style"]
