"""A numpy BERT encoder for one query at a time: dense search without a torch import.

A fresh ``nnrag query`` used to spend seconds importing torch, transformers and
sentence-transformers to embed a handful of words, more than everything else it does. The
packaged all-MiniLM-L6-v2 is a plain BERT encoder with mean pooling: six layers of 384 wide,
a few million multiply-adds for a short query, which numpy does in milliseconds. This module
reads the model folder's ``tokenizer.json`` (with ``tokenizers``) and ``model.safetensors``
(with ``safetensors``) and computes what sentence-transformers' ``encode``
computes, to float32 rounding (``tests/search/test_bert.py`` holds it to cosine 1.0).

Only folders that are exactly that shape qualify (:func:`load_bert`); anything else returns
``None`` and the caller uses sentence-transformers. Batches (``nnrag embed``) still go
through sentence-transformers, which pads and batches them on torch's thread pool.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnrag.logging import get_logger

logger = get_logger(__name__)

_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling")
_NORMALIZE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, transposed for ``x @ w``."""

    qkv: np.ndarray  # [hidden, 3 * hidden]
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class BertEncoder:
    """A mean-pooled BERT sentence encoder in numpy (no torch, no transformers)."""

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any],
                 max_seq_length: int) -> None:
        self.tokenizer = tokenizer
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_seq_length = max_seq_length
        self.dim = int(config["hidden_size"])
        w = weights
        self.words = w["embeddings.word_embeddings.weight"]
        self.positions = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.norm0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = [self._layer(w, f"encoder.layer.{i}.")
                       for i in range(int(config["num_hidden_layers"]))]

    @staticmethod
    def _layer(w: dict[str, np.ndarray], p: str) -> _Layer:
        att = p + "attention."
        qkv = [att + f"self.{n}." for n in ("query", "key", "value")]
        return _Layer(
            qkv=np.concatenate([w[n + "weight"].T for n in qkv], axis=1),
            qkv_bias=np.concatenate([w[n + "bias"] for n in qkv]),
            out=np.ascontiguousarray(w[att + "output.dense.weight"].T),
            out_bias=w[att + "output.dense.bias"],
            norm1=(w[att + "output.LayerNorm.weight"], w[att + "output.LayerNorm.bias"]),
            up=np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
            up_bias=w[p + "intermediate.dense.bias"],
            down=np.ascontiguousarray(w[p + "output.dense.weight"].T),
            down_bias=w[p + "output.dense.bias"],
            norm2=(w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
        )

    def embed(self, text: str) -> np.ndarray:
        """``[1, dim]`` float32 of L2 norm 1: the mean of the last layer over the tokens.

        On one BLAS thread: a query's matrices are too small to split, and on shared cores
        starting and waiting for the pool's threads made the first call 30 times slower
        (0.27 s against 9 ms on 2 cores).
        """
        try:
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency
        except ImportError:  # pragma: no cover - scikit-learn is a core dependency
            return self._embed(text)
        with threadpool_limits(1, user_api="blas"):
            return self._embed(text)

    def _embed(self, text: str) -> np.ndarray:
        ids = np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)
        x = self.words[ids] + self.positions[: len(ids)] + self.token_type
        x = self._norm(x, self.norm0)
        for layer in self.layers:
            x = self._norm(x + self._attend(x, layer), layer.norm1)
            hidden = _gelu(x @ layer.up + layer.up_bias)
            x = self._norm(x + hidden @ layer.down + layer.down_bias, layer.norm2)
        pooled = x.mean(axis=0, keepdims=True)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)

    def _attend(self, x: np.ndarray, layer: _Layer) -> np.ndarray:
        n, d = x.shape
        q, k, v = np.split(x @ layer.qkv + layer.qkv_bias, 3, axis=1)
        head = d // self.heads
        q, k, v = (m.reshape(n, self.heads, head).transpose(1, 0, 2) for m in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(head))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        return context.transpose(1, 0, 2).reshape(n, d) @ layer.out + layer.out_bias

    def _norm(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + np.float32(self.eps)) * params[0] + params[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, ``x * Phi(x)``, with erf by Abramowitz and Stegun 7.1.26 (absolute
    error below 1.5e-7, float32's own rounding): numpy has no erf, and scipy costs an import."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                           + t * 1.061405429))))
    erf = np.sign(x) * (1 - poly * np.exp(-z * z))
    return (0.5 * x * (1 + erf)).astype(np.float32)


def load_bert(folder: Path) -> BertEncoder | None:
    """The numpy encoder for a sentence-transformers folder of a mean-pooled BERT, else None.

    ``None`` (never an error) for anything else: another architecture or pooling, a missing
    file, or ``tokenizers``/``safetensors`` not installed; sentence-transformers handles those.
    """
    try:
        modules = [m["type"] for m in _read(folder / "modules.json")]
        pooling_dir = folder / _read(folder / "modules.json")[1]["path"]
        pooling = _read(pooling_dir / "config.json")
        config = _read(folder / "config.json")
        st_config = _read(folder / "sentence_bert_config.json")
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if (tuple(modules[:2]) != _MODULES or modules[2:] not in ([], [_NORMALIZE])
            or modes != {"pooling_mode_mean_tokens"} or config.get("model_type") != "bert"
            or config.get("hidden_act") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
            or not (folder / "tokenizer.json").is_file()
            or not (folder / "model.safetensors").is_file()):
        return None
    try:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        max_len = int(st_config.get("max_seq_length") or config["max_position_embeddings"])
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_len)
        with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
            weights = {k: f.get_tensor(k) for k in f.keys()  # noqa: SIM118 - not a dict
                       if k.startswith(("embeddings.", "encoder."))}
        return BertEncoder(tokenizer, weights, config, max_len)
    except Exception as exc:  # an odd file: sentence-transformers may still read it
        logger.debug("numpy encoder unavailable for %s: %s", folder, exc)
        return None


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
