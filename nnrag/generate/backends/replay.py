"""Replay backend: answers with recorded LLM outputs, in order (tests, re-analysis).

``BackendConfig(backend="replay", model=FILE)`` where FILE is JSON: a list of strings, or
``{"outputs": [...]}``; ``extra={"outputs": [...]}`` gives them inline. It lets the whole
pipeline (parse, fix, repair, dedup, sandbox, train) run deterministically on outputs that
a real model produced once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnrag.exceptions import BackendUnavailableError
from nnrag.generate.backends.base import (
    Backend,
    BackendConfig,
    Completion,
    Prompt,
    Sampling,
    apply_stops,
)


class ReplayBackend(Backend):
    name = "replay"

    def __init__(self, config: BackendConfig) -> None:
        outputs = config.extra.get("outputs")
        if outputs is None:
            if not config.model:
                raise BackendUnavailableError("the replay backend needs --model FILE "
                                              "(JSON list of outputs)")
            path = Path(config.model).expanduser()
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BackendUnavailableError(
                    f"cannot read recorded outputs {path}: {exc}") from None
            outputs = data.get("outputs") if isinstance(data, dict) else data
        if (not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs)
                or not outputs):
            raise BackendUnavailableError("recorded outputs must be a non-empty list of strings")
        self.outputs = list(outputs)
        self.model_id = str(config.model or "inline")
        self.style = "chat" if config.style == "chat" else "completion"
        self.context_length = int(config.context or 32768)
        self.calls = 0
        self.prompts: list[Prompt] = []

    def count_tokens(self, prompt: Prompt) -> int:
        return len(prompt.flat().split())

    def generate(self, prompt: Prompt, sampling: Sampling,
                 schema: dict[str, Any] | None = None) -> Completion:
        # as a server would
        text, _ = apply_stops(self.outputs[self.calls % len(self.outputs)], sampling.stop)
        self.calls += 1
        self.prompts.append(prompt)
        return Completion(text, self.count_tokens(prompt), len(text.split()), 0.0, sampling,
                          self.name, self.model_id, False, "stop")
