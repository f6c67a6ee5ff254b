"""Retrieval-augmented LLM generation of architectures and training specs.

``generate(backend, GenerateConfig(...))`` prompts an LLM with reference models and
retrieved blocks, parses, fixes, validates, deduplicates and probes what it writes in the
sandbox, repairs failures, and trains the executable models through the execution engine.
Backends (``transformers``, ``llama-cpp``, ``openai``, ``replay``) share one interface and
are chosen by :class:`BackendConfig`; optional packages load only when a backend needs them.
"""

from nnrag.generate.backends import (
           BACKENDS,
           Backend,
           BackendConfig,
           Completion,
           Prompt,
           Sampling,
           make_backend,
)
from nnrag.generate.events import Generated, GenerateEvent, Probed, PromptFitted
from nnrag.generate.pipeline import Candidate, GenerateConfig, GenerateReport, Generator, generate

__all__ = ["BACKENDS", "Backend", "BackendConfig", "Candidate", "Completion", "GenerateConfig",
           "GenerateEvent", "GenerateReport", "Generated", "Generator", "Probed", "Prompt",
           "PromptFitted", "Sampling", "generate", "make_backend"]
