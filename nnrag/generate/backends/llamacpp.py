"""llama-cpp backend: GGUF inference in-process, 5-9x faster than transformers on CPU.

The ``llama-cpp-python`` package is an optional extra (PyPI ships only its source; see
the README for a portable build). JSON-schema constrained output goes through llama.cpp's
grammar converter, which ignores numeric bounds: the pipeline re-validates with pydantic.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import BackendUnavailableError, ContextOverflowError, GenerateError
from nnrag.generate.backends.base import (
    Backend,
    BackendConfig,
    Completion,
    Prompt,
    Sampling,
    resolve_style,
)
from nnrag.generate.models import EMBEDDED_NAME, embedded_gguf, local_model_path

DEFAULT_CONTEXT = 8192  # llama.cpp allocates the KV cache up front: not the model's 32k


class LlamaCppBackend(Backend):
    name = "llama-cpp"
    supports_schema = True

    def __init__(self, config: BackendConfig) -> None:
        llama_cpp = optional_import("llama_cpp", "llama-cpp")
        self._llama_cpp = llama_cpp
        if config.model is None:
            path, self.model_id = embedded_gguf(), EMBEDDED_NAME
        else:
            local = local_model_path(config.model)
            if local is None or not local.is_file() or local.suffix != ".gguf":
                raise BackendUnavailableError(f"llama-cpp needs a .gguf file; "
                                              f"{config.model!r} is not one")
            path, self.model_id = local, str(local)
        self.n_ctx = int(config.context or DEFAULT_CONTEXT)
        threads = config.threads or max(1, min(4, os.cpu_count() or 1))
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=self.n_ctx,
                                           n_threads=threads, verbose=False, seed=0)
            except (ValueError, RuntimeError) as exc:
                raise BackendUnavailableError(f"llama.cpp cannot load {path}: {exc}") from None
        trained = int(self.llm.metadata.get("llama.context_length")
                      or self.llm.metadata.get(
                          f"{self.llm.metadata.get('general.architecture', '')}.context_length")
                      or self.n_ctx)
        self.context_length = min(self.n_ctx, trained)
        self.style = resolve_style(config.style,
                                   bool(self.llm.metadata.get("tokenizer.chat_template")))

    def _tokens(self, prompt: Prompt) -> list[int]:
        if prompt.style == "chat":
            # The chat handler renders the template; count the rendered text.
            text = self._render_chat(prompt)
            return self.llm.tokenize(text.encode(), add_bos=False, special=True)
        return self.llm.tokenize(prompt.text.encode(), add_bos=True, special=False)

    def _render_chat(self, prompt: Prompt) -> str:
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise GenerateError(f"{self.model_id} has no chat template; use --style completion")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos = self.llm.detokenize([self.llm.token_eos()]).decode(errors="ignore")
        bos = self.llm.detokenize([self.llm.token_bos()]).decode(errors="ignore")
        fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        return fmt(messages=list(prompt.messages)).prompt  # type: ignore[arg-type,unused-ignore]

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self._tokens(prompt))

    def generate(self, prompt: Prompt, sampling: Sampling,
                 schema: dict[str, Any] | None = None) -> Completion:
        tokens = self._tokens(prompt)
        if len(tokens) + sampling.max_new_tokens > self.context_length:
            raise ContextOverflowError(
                f"prompt of {len(tokens)} tokens + {sampling.max_new_tokens} new tokens "
                f"exceeds the {self.context_length}-token context of {self.model_id} "
                "(raise it with --context)")
        kwargs: dict[str, Any] = {"max_tokens": sampling.max_new_tokens,
                                  "temperature": sampling.temperature,
                                  "top_p": sampling.top_p, "seed": sampling.seed,
                                  "stop": list(sampling.stop) or None}
        if schema is not None:
            grammar = self._llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema),
                                                                    verbose=False)
            kwargs["grammar"] = grammar
            kwargs["stop"] = None
        self.llm.set_seed(sampling.seed)
        self.llm.reset()
        start = time.perf_counter()
        out = self.llm.create_completion(tokens, **kwargs)
        seconds = time.perf_counter() - start
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(choice["text"], len(tokens), int(usage.get("completion_tokens", 0)),
                          seconds, sampling, self.name, self.model_id, schema is not None,
                          choice.get("finish_reason"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()
