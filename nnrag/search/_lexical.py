"""FTS5's BM25, computed in memory from the FTS5 table's own postings.

``bm25(block_fts, ...)`` in SQLite visits every row that matches any query word and decodes
its position lists; an OR of 20 words of which some ("model", "layer") occur in most blocks
makes that the slowest part of a query (~40 ms on 10,000 blocks). The same scores are a
sum over query terms of ``idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len / avglen))``, so
this module reads the postings once (the ``fts5vocab`` instance table: term, row, column),
keeps them as a term x block sparse matrix of column-weighted frequencies, and scores a
query with a few numpy operations per term (under 5 ms).

The arrays are derived data beside the database (``<db>.bm25.npz``), like the FAISS index:
they record the catalog generation and row count they were built from, and are rebuilt
when either changes. Query words are stemmed by FTS5's own tokenizer (a scratch FTS5 table
in the connection's temp schema), so the scores equal SQLite's, term for term.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnrag.index import CATALOG_VERSION, GENERATION_KEY, Store
from nnrag.logging import get_logger
from nnrag.search._vectors import _atomic

logger = get_logger(__name__)

K1 = 1.2  # FTS5's bm25 constants
B = 0.75
COLUMNS = ("name", "path", "docstring", "identifiers")
FORMAT = 1  # bump when the arrays' layout changes


class LexicalIndex:
    """Column-weighted term frequencies of every block, and BM25 scoring over them."""

    def __init__(self, store: Store, weights: Sequence[float]) -> None:
        self.store = store
        self.weights = tuple(float(w) for w in weights)
        self.path = store.path.with_name(f"{store.path.name}.bm25.npz")
        self.rebuilt = False
        self._stems: dict[str, str | None] = {}
        self.terms: dict[str, int] = {}
        self.rowids = np.zeros(0, dtype=np.int64)
        self.indptr = np.zeros(1, dtype=np.int64)
        self.docs = np.zeros(0, dtype=np.int32)
        self.freqs = np.zeros(0, dtype=np.float64)
        self.norm = np.zeros(0, dtype=np.float64)  # k1 * (1 - b + b * len / avglen), per block

    # -- building and loading
    def _state(self) -> dict[str, Any]:
        rows = self.store.fts_size()
        return {"format": FORMAT, "catalog": CATALOG_VERSION, "weights": list(self.weights),
                "generation": self.store.get_meta(GENERATION_KEY) or "0", "rows": int(rows)}

    def load(self) -> LexicalIndex:
        """Read the arrays beside the database if they match it, else build (and save) them."""
        state = self._state()
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if json.loads(str(data["state"])) == state:
                    self._set(data["terms"].tolist(), data["rowids"], data["indptr"],
                              data["docs"], data["freqs"], data["lengths"])
                    return self
            logger.info("BM25 arrays %s are stale: rebuilding", self.path)
        except (OSError, ValueError, KeyError):
            logger.info("no usable BM25 arrays at %s: building them", self.path)
        self.build(state)
        return self

    def build(self, state: dict[str, Any] | None = None) -> None:
        state = state or self._state()
        weight = dict(zip(COLUMNS, self.weights, strict=True))
        terms: list[str] = []
        term_ids: list[int] = []
        rows: list[int] = []
        cols: list[float] = []
        last = None
        for term, doc, col in self.store.fts_postings():
            if term != last:
                terms.append(term)
                last = term
            term_ids.append(len(terms) - 1)
            rows.append(doc)
            cols.append(weight[col])
        rowids = np.array(sorted(self.store.fts_rowids()), dtype=np.int64)
        t = np.array(term_ids, dtype=np.int64)
        d = np.searchsorted(rowids, np.array(rows, dtype=np.int64))
        w = np.array(cols, dtype=np.float64)
        if len(t) > 1 and np.any(np.diff(t * max(1, len(rowids)) + d) < 0):
            order = np.lexsort((d, t))  # fts5vocab lists term by term, row by row; be sure
            t, d, w = t[order], d[order], w[order]
        lengths = np.bincount(d, minlength=len(rowids)).astype(np.int32)
        # one entry per (term, block): the instances come sorted by term then block
        key = t * max(1, len(rowids)) + d
        starts = (np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key)
                  else np.zeros(0, dtype=np.int64))
        freqs = np.add.reduceat(w, starts) if len(key) else np.zeros(0)
        docs = d[starts].astype(np.int32)
        indptr = np.searchsorted(t[starts], np.arange(len(terms) + 1)).astype(np.int64)
        self._set(terms, rowids, indptr, docs, freqs, lengths)
        self.rebuilt = True
        _save(self.path, state=np.array(json.dumps(state)), terms=np.array(terms, dtype=str),
              rowids=rowids, indptr=indptr, docs=docs, freqs=freqs, lengths=lengths)

    def _set(self, terms: list[str], rowids: np.ndarray, indptr: np.ndarray, docs: np.ndarray,
             freqs: np.ndarray, lengths: np.ndarray) -> None:
        self.terms = {term: i for i, term in enumerate(terms)}
        self.rowids, self.indptr, self.docs = rowids, indptr, docs
        self.freqs = freqs.astype(np.float64)
        avg = float(lengths.sum()) / len(lengths) if len(lengths) else 1.0
        self.norm = K1 * (1.0 - B + B * lengths.astype(np.float64) / max(avg, 1e-9))

    # -- querying
    def stems(self, words: Sequence[str]) -> list[str]:
        """Each word as FTS5's porter tokenizer indexes it (one token per word, or none)."""
        todo = [w for w in dict.fromkeys(words) if w not in self._stems]
        if todo:
            found = self.store.porter_tokens(todo)
            for i, word in enumerate(todo):
                tokens = found.get(i, [])
                self._stems[word] = tokens[0] if len(tokens) == 1 else None
        return [s for s in (self._stems[w] for w in words) if s is not None]

    def scores(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, scores)`` of every block matching a word; one term per word, as FTS5
        counts a phrase per word even when two words share a stem."""
        n = len(self.rowids)
        total = np.zeros(n, dtype=np.float64)
        hit = np.zeros(n, dtype=bool)
        for stem in self.stems(words):
            t = self.terms.get(stem)
            if t is None:
                continue
            lo, hi = self.indptr[t], self.indptr[t + 1]
            docs, f = self.docs[lo:hi], self.freqs[lo:hi]
            idf = math.log((n - (hi - lo) + 0.5) / ((hi - lo) + 0.5))
            idf = idf if idf > 0 else 1e-6
            total[docs] += idf * f * (K1 + 1.0) / (f + self.norm[docs])
            hit[docs] = True
        positions = np.flatnonzero(hit)
        return positions, total[positions]

    def top(self, words: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """``(rowid, score)`` of the best ``limit`` blocks, best first (ties: lower rowid)."""
        positions, scores = self.scores(words)
        if len(positions) > limit:
            keep = np.argpartition(-scores, limit - 1)[:limit]
            positions, scores = positions[keep], scores[keep]
        order = np.lexsort((positions, -scores))
        return [(int(self.rowids[p]), float(s))
                for p, s in zip(positions[order], scores[order], strict=True)]


def _save(path: Path, **arrays: np.ndarray) -> None:
    """Write via a temporary file in the same folder, then rename: never a half file."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds badly

    try:
        _atomic(path, write)
    except OSError as exc:  # a read-only folder: keep the arrays in memory
        logger.warning("cannot save BM25 arrays to %s: %s", path, exc)
