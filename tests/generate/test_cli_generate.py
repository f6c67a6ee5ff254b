"""``nnrag generate`` from the command line: figures as a table or JSON, clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

GOOD = """```python
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc = nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], out_shape[0])

    def forward(self, x):
        return self.fc(x.flatten(1))
```
```json
{"hyperparameters": {"lr": 0.1, "batch_size": 32, "optimizer": "sgd"}}
```"""


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps([GOOD, "no code here"]))
    return path


@pytest.mark.sandbox
def test_generate_json_figures(cli: Callable, outputs: Path, tmp_path: Path) -> None:
    result = cli("generate", "--backend", "replay", "--model", outputs, "--style", "chat",
                 "--n", "2", "--shots", "1", "--no-train", "--runs", tmp_path / "runs.db",
                 "--db", tmp_path / "index.db", "--save", tmp_path / "cands.jsonl",
                 "--format", "json", timeout=300)
    assert result.returncode == 0, result
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("prompts_sent", "parsed", "schema_valid", "unique", "executable",
                                 "trained")} == {
        "prompts_sent": 2, "parsed": 1, "schema_valid": 1, "unique": 1, "executable": 1,
        "trained": 0}
    assert data["backend"]["backend"] == "replay" and data["candidates"][1]["status"] == "unparsed"
    saved = [json.loads(line) for line in (tmp_path / "cands.jsonl").read_text().splitlines()]
    assert "class Net" in saved[0]["code"] and "Reference implementations" in saved[0]["prompt"]
    assert ("[1/2] unique" in result.stderr
            and "candidate 0 (repairs 0): executable" in result.stderr)


@pytest.mark.sandbox
def test_generate_table(cli: Callable, outputs: Path, tmp_path: Path) -> None:
    result = cli("generate", "--backend", "replay", "--model", outputs, "--style", "chat",
                 "--n", "1", "--runs", tmp_path / "runs.db", "--db", tmp_path / "index.db",
                 "--limit", "200", timeout=300)
    assert result.returncode == 0, result
    assert ("prompts sent  parsed  schema-valid  unique  executable  trained  best accuracy"
            in result.stdout)
    assert " trained " in result.stdout.splitlines()[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "imagenet-22k"], "unknown dataset 'imagenet-22k'"),
    (["--backend", "gpt5"], "unknown backend 'gpt5'"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"], "cannot reach the endpoint"),
    (["--model", "/no/such/model"], "model path /no/such/model does not exist"),
    (["--model", "missing.gguf"], "does not exist"),
    (["--backend", "replay", "--model", "OUTPUTS", "--context", "100"],
     "exceeds the 100-token context"),
])
def test_generate_errors_are_one_line_and_exit_2(cli: Callable, outputs: Path, args: list[str],
                                                  message: str) -> None:
    args = [str(outputs) if a == "OUTPUTS" else a for a in args]
    result = cli("generate", "--n", "1", *args, timeout=120)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr
