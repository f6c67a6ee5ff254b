"""Shared fixtures of the learning-loop tests: the tiny in-process causal LM (session-wide,
the one ``tests/generate`` builds) and a small dataset made from the corpus without the
sandbox (a stub format whose probe passes everything but one program)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.generate.conftest import build_tiny_model


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    # a long context: generate's fixed prompt (task, contract, one reference) fits in it
    return build_tiny_model(tmp_path_factory.mktemp("learn_tiny") / "model", chat=False,
                            context=8192)


def write_rows(folder: Path, rows: list[dict[str, Any]], heldout: Sequence[dict[str, Any]] = ()
               ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout))
    (folder / "manifest.json").write_text(json.dumps({
        "dataset_hash": "test", "counts": {"train_examples": len(rows),
                                           "heldout_examples": len(heldout)}}))
    return folder


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three corpus models of three families (few sandbox probes)."""
    from nnrag.examples import corpus_dir

    folder = tmp_path_factory.mktemp("small_corpus")
    for name in ("mlp.py", "lenet5.py", "alexnet_small.py"):
        (folder / name).write_text((corpus_dir() / name).read_text())
    return folder


@pytest.fixture
def tiny_rows(tmp_path: Path) -> Path:
    rows = [{"prompt": "# digits\n```python\nclass Net(nn.Module):\n",
             "completion": f"        self.fc = nn.Linear({8 * (i + 1)}, 10)\n```\n"}
            for i in range(6)]
    return write_rows(tmp_path / "ds", rows, rows[:2])
