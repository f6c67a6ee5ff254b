"""Every backend path, with the tiny in-process model or a local HTTP server: no download."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nnrag.exceptions import (
    BackendUnavailableError,
    ContextOverflowError,
    GenerateError,
    UnknownBackendError,
)
from nnrag.generate import BackendConfig, Prompt, Sampling, make_backend

pytest.importorskip("transformers")

COMPLETION = Prompt("completion",
                    text="import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n")
CHAT = Prompt("chat", messages=({"role": "system", "content": "Write code."},
                                {"role": "user", "content": "A model for digits."}))


def test_transformers_completion_style_is_seeded_and_recorded(tiny_model: Path) -> None:
    llm = make_backend(BackendConfig(model=str(tiny_model), threads=1))
    import importlib.util

    assert llm.describe() == {"backend": "transformers", "model": str(tiny_model),
                              "style": "completion", "context_length": 512, "adapter": None,
                              "constrained": importlib.util.find_spec("xgrammar") is not None}
    sampling = Sampling(temperature=0.9, top_p=0.9, max_new_tokens=12, seed=7)
    a, b = llm.generate(COMPLETION, sampling), llm.generate(COMPLETION, sampling)
    assert a.text == b.text  # the same seed gives the same answer
    assert 0 < a.completion_tokens <= 12 and a.prompt_tokens == llm.count_tokens(COMPLETION)
    rec = a.record()
    assert rec["sampling"] == {"temperature": 0.9, "top_p": 0.9, "max_new_tokens": 12, "seed": 7,
                               "stop": []}
    assert rec["backend"] == "transformers" and rec["model"] == str(tiny_model)
    greedy = llm.generate(COMPLETION, Sampling(temperature=0, max_new_tokens=8, seed=1))
    assert greedy.text == llm.generate(COMPLETION,
                                       Sampling(temperature=0, max_new_tokens=8, seed=2)).text


def test_transformers_stop_strings_cut_the_answer(tiny_model: Path) -> None:
    llm = make_backend(BackendConfig(model=str(tiny_model)))
    free = llm.generate(COMPLETION, Sampling(temperature=1.0, max_new_tokens=40, seed=3))
    stop = free.text.strip()[:2]
    assert stop
    cut = llm.generate(COMPLETION,
                       Sampling(temperature=1.0, max_new_tokens=40, seed=3, stop=(stop,)))
    assert stop not in cut.text and free.text.startswith(cut.text)


def test_transformers_chat_style_uses_the_chat_template(tiny_chat_model: Path,
                                                        tiny_model: Path) -> None:
    llm = make_backend(BackendConfig(model=str(tiny_chat_model)))
    assert llm.style == "chat"
    answer = llm.generate(CHAT, Sampling(max_new_tokens=6, seed=0))
    rendered = llm.tokenizer.apply_chat_template(list(CHAT.messages), tokenize=False,
                                                 add_generation_prompt=True)
    assert answer.prompt_tokens == len(llm.tokenizer(rendered)["input_ids"])
    assert make_backend(BackendConfig(model=str(tiny_chat_model),
                                      style="completion")).style == "completion"
    base = make_backend(BackendConfig(model=str(tiny_model), style="chat"))
    with pytest.raises(GenerateError, match="no chat template"):
        base.generate(CHAT, Sampling(max_new_tokens=4))


def test_transformers_context_overflow_is_an_error(tiny_model: Path) -> None:
    llm = make_backend(BackendConfig(model=str(tiny_model), context=64))
    with pytest.raises(ContextOverflowError, match="64-token context"):
        llm.generate(Prompt("completion", text="x " * 200), Sampling(max_new_tokens=8))


def test_transformers_lora_adapter(tiny_model: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    plain = make_backend(BackendConfig(model=str(tiny_model)))
    adapted = make_backend(BackendConfig(model=str(tiny_model), adapter=str(tmp_path / "adapter")))
    assert type(adapted.model).__name__.startswith("PeftModel")
    greedy = Sampling(temperature=0, max_new_tokens=10)
    ids = plain.tokenizer(COMPLETION.text, return_tensors="pt")["input_ids"]
    # the adapter changes the model
    assert not (plain.model(ids).logits == adapted.model(ids).logits).all()
    adapted.generate(COMPLETION, greedy)
    with pytest.raises(BackendUnavailableError, match="adapter_config.json"):
        make_backend(BackendConfig(model=str(tiny_model), adapter=str(tmp_path)))


@pytest.mark.parametrize(("model", "message"), [
    ("/no/such/model", "does not exist"),
    ("./missing.gguf", "does not exist"),
])
def test_missing_model_path_is_a_clear_error(model: str, message: str) -> None:
    with pytest.raises(BackendUnavailableError, match=message):
        make_backend(BackendConfig(model=model))


def test_folder_without_config_and_wrong_file_type(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="no config.json"):
        make_backend(BackendConfig(model=str(tmp_path)))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(BackendUnavailableError, match="not a .gguf"):
        make_backend(BackendConfig(model=str(tmp_path / "weights.bin")))


def test_unknown_backend_and_style() -> None:
    with pytest.raises(UnknownBackendError,
                       match="use one of: transformers, llama-cpp, openai, replay"):
        make_backend(BackendConfig(backend="gpt5"))
    with pytest.raises(GenerateError, match="unknown prompt style"):
        BackendConfig(style="poetry")
    with pytest.raises(GenerateError, match="bad sampling"):
        Sampling(top_p=0)


def test_llama_cpp_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def deny(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", deny)
    from nnrag.exceptions import OptionalDependencyError

    with pytest.raises(OptionalDependencyError, match=r"nnrag\[llama-cpp\]"):
        make_backend(BackendConfig(backend="llama-cpp"))


# -- openai-compatible endpoint, served in-process -------------------------------------

class _Handler(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"data": [{"id": "tiny-coder"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        if body.get("max_tokens", 0) > 1000:
            self._send(400, {"error": {"message": "maximum context length exceeded"}})
        elif self.path.endswith("/chat/completions"):
            self._send(200, {"choices": [{"message": {"content": "```python\nclass Net: pass\n```"},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 21, "completion_tokens": 9}})
        elif self.path.endswith("/completions"):
            self._send(200, {"choices": [{"text": "    pass\n", "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
        else:
            self._send(404, {"error": "not found"})


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_openai_chat_completion_and_schema(server: str) -> None:
    llm = make_backend(BackendConfig(backend="openai", base_url=server))
    assert llm.model_id == "tiny-coder" and llm.style == "chat"  # first model listed by /models
    answer = llm.generate(CHAT, Sampling(max_new_tokens=50, seed=5, stop=("```",)))
    assert (answer.text.startswith("```python") and answer.prompt_tokens == 21
            and answer.completion_tokens == 9)
    path, body = _Handler.requests[-1]
    assert (path == "/v1/chat/completions" and body["seed"] == 5
            and body["messages"][1]["role"] == "user")
    llm.generate(CHAT, Sampling(max_new_tokens=50), schema={"type": "object"})
    assert _Handler.requests[-1][1]["response_format"]["json_schema"]["schema"] == {
        "type": "object"}
    plain = make_backend(BackendConfig(backend="openai", base_url=server, model="m",
                                       style="completion"))
    answer = plain.generate(COMPLETION, Sampling(max_new_tokens=20))
    assert answer.text == "    pass\n" and _Handler.requests[-1][0] == "/v1/completions"
    assert _Handler.requests[-1][1]["prompt"] == COMPLETION.text


def test_openai_errors(server: str) -> None:
    llm = make_backend(BackendConfig(backend="openai", base_url=server, model="m", context=100_000))
    with pytest.raises(ContextOverflowError, match="prompt is too long"):
        llm.generate(CHAT, Sampling(max_new_tokens=2000))
    small = make_backend(BackendConfig(backend="openai", base_url=server, model="m", context=10))
    with pytest.raises(ContextOverflowError, match="10-token context"):
        small.generate(CHAT, Sampling(max_new_tokens=20))
    with pytest.raises(BackendUnavailableError, match="cannot reach the endpoint"):
        make_backend(BackendConfig(backend="openai", base_url="http://127.0.0.1:9/v1", timeout_s=2))
    with pytest.raises(BackendUnavailableError, match="needs --base-url"):
        make_backend(BackendConfig(backend="openai"))


def test_replay_backend(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"outputs": ["a", "b"]}))
    llm = make_backend(BackendConfig(backend="replay", model=str(path)))
    assert [llm.generate(COMPLETION, Sampling()).text for _ in range(3)] == ["a", "b", "a"]
    with pytest.raises(BackendUnavailableError, match="cannot read recorded outputs"):
        make_backend(BackendConfig(backend="replay", model=str(tmp_path / "none.json")))


def test_transformers_schema_constrained_decoding(tiny_model: Path) -> None:
    """xgrammar makes even a random model write JSON of the spec schema (bounds included)."""
    pytest.importorskip("xgrammar")
    from nnrag.generate.spec_fixes import build_spec, spec_schema

    llm = make_backend(BackendConfig(model=str(tiny_model)))
    assert llm.supports_schema
    for seed in range(3):
        answer = llm.generate(Prompt("completion", text="spec: "),
                              Sampling(max_new_tokens=200, seed=seed, temperature=1.0),
                              schema=spec_schema())
        assert answer.constrained and answer.finish_reason == "stop"
        data = json.loads(answer.text)
        # pydantic agrees
        build_spec(data, code="class Net: pass", name="g", dataset="digits", epochs=1, seed=0)
