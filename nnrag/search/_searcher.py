"""Query the block index: BM25 (FTS5), dense (FAISS), and their reciprocal-rank fusion.

A :class:`Searcher` loads the per-block facts it filters and prints (category, rung,
parameter count, fingerprint) and the BM25 postings (:mod:`nnrag.search._lexical`) once, so
a warm process answers a query with a few numpy operations, one embedding and one FAISS
search. Filters apply before fusion, so ranks are
ranks among the blocks the user can see. Duplicates (same structural fingerprint) can be
collapsed into the best-ranked copy.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nnrag.exceptions import NnragError, OptionalDependencyError
from nnrag.index import (
    CATEGORIES,
    REPORTED,
    RUNGS,
    BlockFacts,
    ConceptMatcher,
    Store,
    ensure_catalog,
    query_text,
    split_identifier,
    words_of,
)
from nnrag.logging import get_logger
from nnrag.search._embed import Embedder, dense_available, get_embedder, model_name
from nnrag.search._lexical import LexicalIndex
from nnrag.search._vectors import VectorIndex, vector_for

logger = get_logger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "dense", "lexical")
RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al. 2009)
POOL = 200  # candidates taken from each retriever before fusion
BM25_WEIGHTS = (10.0, 2.0, 3.0, 1.0)  # name, module path, docstring, identifiers
MAX_QUERY_TERMS = 64


class QueryError(NnragError):
    """A query that cannot be run as given (empty, unknown category or mode)."""


@dataclass(frozen=True)
class Filters:
    """What a hit must satisfy; None means no constraint."""

    category: str | None = None
    min_rung: int = 0
    package: str | None = None
    max_params: int | None = None
    proven: bool = False  # only blocks trained by the engine (written back with a metric)

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise QueryError(
                f"unknown category {self.category!r}; use one of: {', '.join(CATEGORIES)}"
            )


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    definition_id: int
    qualname: str
    name: str
    package: str
    category: str
    rung: int
    params: int | None
    via: dict[str, int] = field(default_factory=dict)  # retriever -> rank in it
    duplicates: tuple[str, ...] = ()
    trained: str | None = None  # best written-back result, e.g. "accuracy 0.978 on digits"

    @property
    def rung_name(self) -> str:
        return RUNGS[self.rung] if self.rung >= 0 else "unvalidated"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "score": float(f"{self.score:.6g}"), "qualname": self.qualname,
            "name": self.name, "package": self.package, "category": self.category,
            "rung": self.rung_name, "params": self.params, "via": self.via,
            "duplicates": list(self.duplicates), "trained": self.trained,
        }


class Searcher:
    """Searches one store; keep it around to answer many queries from a warm process."""

    def __init__(self, store: Store, *, model: str | None = None,
                 embedder: Embedder | None = None) -> None:
        self.store = store
        self.notes: list[str] = []
        ensure_catalog(store)
        self._embedder = embedder
        self._model = model
        self.model_name = embedder.name if embedder is not None else model_name(model)
        self._vectors: VectorIndex | None = None
        self._bm25: LexicalIndex | None = None
        self._concepts: ConceptMatcher | None = None
        self.meta = self._load_meta()

    # -- facts per block
    def _load_meta(self) -> dict[int, BlockFacts]:
        return {r.id: r for r in self.store.block_facts()}

    def _keep(self, def_id: int, filters: Filters) -> bool:
        m = self.meta.get(def_id)
        if m is None:
            return False
        if filters.category and m.category != filters.category:
            return False
        if filters.package and m.package != filters.package:
            return False
        if filters.min_rung > 0 and m.rung < filters.min_rung:
            return False
        if filters.proven and m.proven is None:
            return False
        limit = filters.max_params
        return limit is None or (m.params is not None and m.params <= limit)

    # -- retrievers
    def lexical(self, text: str, filters: Filters = Filters(),
                limit: int = POOL) -> list[tuple[int, float]]:
        terms = _fts_terms(text)
        if not terms:
            return []
        rows = self.bm25().top(terms, limit * 5 if _active(filters) else limit)
        hits = [(i, s) for i, s in rows if self._keep(i, filters)]
        return hits[:limit]

    def bm25(self) -> LexicalIndex:
        """FTS5's BM25 over the catalog, in memory (built once per catalog change)."""
        if self._bm25 is None:
            self._bm25 = LexicalIndex(self.store, BM25_WEIGHTS).load()
            if self._bm25.rebuilt:
                self.notes.append(f"rebuilt the BM25 arrays ({len(self._bm25.rowids)} blocks)")
        return self._bm25

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self._model)
        return self._embedder

    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            self._vectors = VectorIndex(self.store, self.model_name).load()
            if self._vectors.rebuilt:
                self.notes.append(f"rebuilt the vector index ({self._vectors.count} vectors)")
        return self._vectors

    def dense_vector(self, vector: np.ndarray, filters: Filters = Filters(),
                     limit: int = POOL, exclude: int | None = None) -> list[tuple[int, float]]:
        index = self.vectors()
        k = index.count if _active(filters) else limit + 1
        hits = [(i, s) for i, s in index.search(vector, k)
                if i != exclude and self._keep(i, filters)]
        return hits[:limit]

    def warm(self, mode: str = "hybrid") -> float:
        """Load the model, the vector index and the BM25 arrays now (seconds taken), not in the
        first query."""
        import time

        start = time.perf_counter()
        if mode != "dense":
            self.bm25()
        ready = mode != "lexical" and self._dense_ready()
        if ready and VectorIndex(self.store, self.model_name).stored_count() > 0:
            self.vectors()
            _ = self.embedder
        return time.perf_counter() - start

    # -- the entry points
    def search(self, text: str | None = None, *, code: str | None = None, mode: str = "hybrid",
               k: int = 10, filters: Filters = Filters(), collapse: bool = False) -> list[Hit]:
        """Rank blocks for a query in words (``text``) or in code (``code``)."""
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
        query = query_text(code) if code is not None else (text or "")
        if not query.strip() or not re.search(r"\w", query):
            raise QueryError("empty query: give words to search for, or --code FILE")
        mode = self._usable_mode(mode)
        if code is None:  # a description: name the block family it describes, if one fits
            concept = self.concepts().best(_fts_terms(query))
            query = f"{query} ({concept.concept})" if concept else query
        lists: dict[str, list[tuple[int, float]]] = {}
        if mode in ("lexical", "hybrid"):  # a few ms in memory: no thread for the embedding
            lists["lexical"] = self.lexical(query, filters)
        if mode != "lexical":
            lists["dense"] = self.dense_vector(self.embedder.embed([query])[0], filters)
        return self._rank(lists, k, collapse)

    def concepts(self) -> ConceptMatcher:
        if self._concepts is None:
            self._concepts = ConceptMatcher()
        return self._concepts

    def similar(self, definition_id: int, *, mode: str = "hybrid", k: int = 10,
                filters: Filters = Filters(), collapse: bool = False) -> list[Hit]:
        """Blocks like an indexed one (itself excluded), by its stored vector and its words."""
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
        text = self.store.embed_text(definition_id)
        if text is None:
            raise QueryError(f"definition {definition_id} is not a block in the search catalog")
        mode = self._usable_mode(mode)
        lists: dict[str, list[tuple[int, float]]] = {}
        if mode in ("lexical", "hybrid"):
            lists["lexical"] = [h for h in self.lexical(text, filters, POOL + 1)
                                if h[0] != definition_id]
        if mode in ("dense", "hybrid"):
            vec = vector_for(self.store, definition_id, self.model_name)
            if vec is None:
                vec = self.embedder.embed([text])[0]
            lists["dense"] = self.dense_vector(vec, filters, POOL, exclude=definition_id)
        return self._rank(lists, k, collapse)

    def _usable_mode(self, mode: str) -> str:
        if mode == "lexical":
            return mode
        if not self._dense_ready():
            if mode == "dense":
                raise OptionalDependencyError(
                    "dense search needs the search extra: "
                    "pip install 'nnrag[search]' -c constraints.txt"
                )
            self.notes.append("dense search is off (install nnrag[search] to enable it): "
                              "lexical only")
            return "lexical"
        count = VectorIndex(self.store, self.model_name).stored_count()
        if count == 0:
            msg = (f"no block vectors for {self.model_name} yet: "
                   "run `nnrag embed` to enable dense search")
            if mode == "dense":
                raise QueryError(msg)
            self.notes.append(msg + " (lexical only for now)")
            return "lexical"
        missing = len(self.meta) - count
        if missing > 0:
            self.notes.append(f"{missing} blocks have no vector yet (run `nnrag embed`)")
        return mode

    def _dense_ready(self) -> bool:
        if importlib.util.find_spec("faiss") is None:
            return False
        if self._embedder is not None or (self._model or "").startswith("hashing"):
            return True
        return dense_available()

    def _rank(self, lists: dict[str, list[tuple[int, float]]], k: int, collapse: bool) -> list[Hit]:
        if len(lists) == 1:
            (source, ranked), = lists.items()
            scored = [(i, s, {source: r}) for r, (i, s) in enumerate(ranked, 1)]
        else:
            fused: dict[int, float] = {}
            via: dict[int, dict[str, int]] = {}
            for source, ranked in lists.items():
                for r, (i, _) in enumerate(ranked, 1):
                    fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + r)
                    via.setdefault(i, {})[source] = r
            order = sorted(fused, key=lambda i: (-fused[i], self.meta[i].qualname))
            scored = [(i, fused[i], via[i]) for i in order]
        return self._hits(scored, k, collapse)

    def _hits(self, scored: Sequence[tuple[int, float, dict[str, int]]], k: int,
              collapse: bool) -> list[Hit]:
        kept: list[tuple[int, float, dict[str, int]]] = []
        copies: dict[str, list[str]] = {}
        seen: dict[str, int] = {}
        for i, s, via in scored:
            fp = self.meta[i].fingerprint
            if collapse and fp in seen:
                copies[fp].append(self.meta[i].qualname)
                continue
            if len(kept) >= k:
                if not collapse:
                    break
                continue
            seen[fp] = i
            copies.setdefault(fp, [])
            kept.append((i, s, via))
        out = []
        for rank, (i, s, via) in enumerate(kept, 1):
            m = self.meta[i]
            dups = tuple(copies.get(m.fingerprint, ())) if collapse else ()
            trained = (f"{m.proven_metric} {m.proven:.3f} on {m.proven_on}"
                       if m.proven is not None else None)
            if trained and m.proven_source == REPORTED:
                trained += " (reported by LEMUR, not measured here)"
            out.append(Hit(rank, s, i, m.qualname, m.name, m.package, m.category,
                           int(m.rung), m.params, via, dups, trained))
        return out


def _active(filters: Filters) -> bool:
    return bool(filters.category or filters.package or filters.min_rung > 0
                or filters.max_params is not None or filters.proven)


def _fts_terms(text: str) -> list[str]:
    """Distinct query words for FTS5 (quoted later, so no FTS syntax leaks through)."""
    words = words_of(text)
    for token in re.findall(r"[A-Za-z][A-Za-z0-9]*", text):
        words += split_identifier(token)
    terms = [w.lower() for w in words if len(w) > 1 and w.isalnum()]
    return list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]


def duplicate_groups(store: Store, *, min_size: int = 2,
                     package: str | None = None) -> list[list[dict[str, Any]]]:
    """Blocks sharing a structural fingerprint, biggest groups first."""
    ensure_catalog(store)
    rows = store.fingerprint_rows()
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["fingerprint"], []).append(r)
    out = [g for g in groups.values() if len(g) >= min_size
           and (package is None or any(r["package"] == package for r in g))]
    return sorted(out, key=lambda g: (-len(g), g[0]["qualname"]))
