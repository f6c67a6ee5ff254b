"""Block vectors: an incremental, resumable embedding cache and the FAISS index beside the db.

Vectors are cached in SQLite by (embedded-text hash, model), committed batch by batch, so
an interrupted ``nnrag embed`` resumes where it stopped and a re-index never re-embeds an
unchanged block. The FAISS file (``<db>.<model>.faiss``) is derived data: a JSON manifest
records the catalog generation and vector count it was built from, and a mismatch (or a
missing or unreadable file) rebuilds it from the cache, never silently serving stale hits.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnrag._imports import optional_import
from nnrag.index import GENERATION_KEY, Store
from nnrag.logging import get_logger
from nnrag.search._embed import Embedder

logger = get_logger(__name__)

HNSW_THRESHOLD = 50_000  # exact inner product below this many vectors, HNSW above
EMBED_BATCH = 64


@dataclass(frozen=True)
class EmbedReport:
    """Outcome of one ``embed_blocks`` run."""

    model: str
    embedded: int
    cached: int
    total: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def missing_texts(store: Store, model: str) -> list[tuple[str, str]]:
    """``(embed_hash, text)`` of blocks whose vector for ``model`` is not cached yet."""
    return store.missing_embeddings(model)


def embed_blocks(
    store: Store,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
    batch: int = EMBED_BATCH,
) -> EmbedReport:
    """Embed every block without a cached vector; each batch is its own transaction."""
    todo = missing_texts(store, embedder.name)
    total = store.embed_hash_count()
    start = time.perf_counter()
    done = 0
    if progress:
        progress(0, len(todo))
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        vectors = embedder.embed([text for _, text in chunk])
        store.save_embeddings(embedder.name, [(h, v.astype(np.float32).tobytes())
                                              for (h, _), v in zip(chunk, vectors, strict=True)])
        done += len(chunk)
        if progress:
            progress(done, len(todo))
    seconds = time.perf_counter() - start
    return EmbedReport(embedder.name, done, total - len(todo), total, seconds)


def block_vectors(store: Store, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``(definition ids, vectors)`` of every block with a cached vector for ``model``."""
    rows = store.block_vectors(model)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    return ids, vectors


def vector_for(store: Store, definition_id: int, model: str) -> np.ndarray | None:
    raw = store.block_vector(definition_id, model)
    return np.frombuffer(raw, dtype=np.float32).copy() if raw is not None else None


class VectorIndex:
    """The FAISS index of one model's block vectors, loaded or rebuilt as needed."""

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)
        self.path = store.path.with_name(f"{store.path.name}.{slug}.faiss")
        self.manifest_path = self.path.with_suffix(".json")
        self.rebuilt = False
        self.index: Any = None
        self.count = 0

    def stored_count(self) -> int:
        """Blocks with a cached vector for this model (what the index should hold)."""
        return self.store.vector_count(self.model)

    def _state(self) -> dict[str, Any]:
        generation = self.store.get_meta(GENERATION_KEY) or "0"
        return {"model": self.model, "generation": generation, "count": self.stored_count()}

    def load(self) -> VectorIndex:
        """Load the persisted index if its manifest matches the store, else rebuild it."""
        faiss = optional_import("faiss", "search")
        state = self._state()
        try:
            manifest = json.loads(self.manifest_path.read_text())
            if {k: manifest.get(k) for k in state} == state:
                self.index = faiss.read_index(str(self.path))
                if self.index.ntotal == state["count"]:
                    self.count = state["count"]
                    return self
                logger.warning("FAISS index %s has %d vectors, expected %d: rebuilding",
                               self.path, self.index.ntotal, state["count"])
            else:
                logger.info("FAISS index %s is stale: rebuilding", self.path)
        except (OSError, ValueError, RuntimeError):
            logger.info("no usable FAISS index at %s: building it", self.path)
        self.build(state)
        return self

    def build(self, state: dict[str, Any] | None = None) -> None:
        faiss = optional_import("faiss", "search")
        state = state or self._state()
        ids, vectors = block_vectors(self.store, self.model)
        dim = vectors.shape[1] if len(ids) else 1
        if len(ids) >= HNSW_THRESHOLD:
            inner = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = 128
        else:
            inner = faiss.IndexFlatIP(dim)
        index = faiss.IndexIDMap2(inner)
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors), ids)
        self.index = index
        self.count = len(ids)
        self.rebuilt = True
        _atomic(self.path, lambda tmp: faiss.write_index(index, tmp))
        _atomic(self.manifest_path,
                lambda tmp: Path(tmp).write_text(
                    json.dumps({**state, "kind": type(inner).__name__})))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """``(definition id, cosine)`` of the ``k`` nearest blocks."""
        if self.index is None or self.count == 0:
            return []
        k = min(k, self.count)
        faiss = optional_import("faiss", "search")
        threads = faiss.omp_get_max_threads()
        # One query scans 10,000 vectors in about a millisecond on one core; waking OpenMP
        # threads costs more. The setting is shared with torch (the same OpenMP runtime
        # variable), so it is put back at once: the query embedding keeps its threads.
        faiss.omp_set_num_threads(1)
        try:
            scores, ids = self.index.search(vector.reshape(1, -1).astype(np.float32), k)
        finally:
            faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


def _atomic(path: Path, write: Callable[[str], object]) -> None:
    """Write via a temporary file in the same folder, then rename: never a half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
