"""OpenAI-compatible HTTP backend (vLLM, llama.cpp server, Ollama, ...) via a base URL.

Standard library only (urllib): chat prompts go to ``/chat/completions``, completion
prompts to ``/completions``. A JSON schema is passed as ``response_format`` (honoured by
vLLM, llama.cpp server and Ollama); servers that ignore it are still re-validated.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from nnrag.exceptions import BackendUnavailableError, ContextOverflowError, GenerateError
from nnrag.generate.backends.base import Backend, BackendConfig, Completion, Prompt, Sampling

DEFAULT_CONTEXT = 8192
CHARS_PER_TOKEN = 3.5  # the server tokenises; locally we can only estimate


class OpenAIBackend(Backend):
    name = "openai"
    supports_schema = True

    def __init__(self, config: BackendConfig) -> None:
        base = config.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise BackendUnavailableError("the openai backend needs --base-url "
                                          "(e.g. http://localhost:8000/v1) or $OPENAI_BASE_URL")
        self.base = base.rstrip("/")
        self.key = config.api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.timeout = config.timeout_s
        self.model_id = config.model or self._first_model()
        self.style = "completion" if config.style == "completion" else "chat"
        self.context_length = int(config.context or DEFAULT_CONTEXT)

    def _post(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.key}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            if exc.code == 400 and "context" in detail.lower():
                raise ContextOverflowError(f"{self.base}: the server says the prompt is too long: "
                                           f"{detail}") from None
            raise GenerateError(f"{self.base}{path} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendUnavailableError(f"cannot reach the endpoint {self.base}: {reason}; "
                                          "is the server running and --base-url right?") from None
        except json.JSONDecodeError as exc:
            raise GenerateError(f"{self.base}{path} did not answer JSON: {exc}") from None

    def _first_model(self) -> str:
        models = self._post("/models", None).get("data") or []
        if not models:
            raise BackendUnavailableError(f"{self.base}/models lists no model; give --model")
        return str(models[0]["id"])

    def count_tokens(self, prompt: Prompt) -> int:
        return int(len(prompt.flat()) / CHARS_PER_TOKEN) + 1

    def generate(self, prompt: Prompt, sampling: Sampling,
                 schema: dict[str, Any] | None = None) -> Completion:
        estimate = self.count_tokens(prompt)
        if estimate + sampling.max_new_tokens > self.context_length:
            raise ContextOverflowError(
                f"prompt of about {estimate} tokens + {sampling.max_new_tokens} new tokens "
                f"exceeds the {self.context_length}-token context set for {self.model_id} "
                "(--context)")
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": sampling.max_new_tokens,
                                "temperature": sampling.temperature, "top_p": sampling.top_p,
                                "seed": sampling.seed}
        if sampling.stop and schema is None:
            body["stop"] = list(sampling.stop)[:4]
        if schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "spec", "schema": schema,
                                                       "strict": True}}
        start = time.perf_counter()
        if prompt.style == "chat":
            body["messages"] = list(prompt.messages)
            answer = self._post("/chat/completions", body)
            choice = (answer.get("choices") or [{}])[0]
            text = (choice.get("message") or {}).get("content") or ""
        else:
            body["prompt"] = prompt.text
            answer = self._post("/completions", body)
            choice = (answer.get("choices") or [{}])[0]
            text = choice.get("text") or ""
        usage = answer.get("usage") or {}
        return Completion(text, int(usage.get("prompt_tokens") or estimate),
                          int(usage.get("completion_tokens") or 0), time.perf_counter() - start,
                          sampling, self.name, self.model_id, schema is not None,
                          choice.get("finish_reason"))
