"""In-memory BM25: the same ranking and scores as SQLite's bm25(), derived arrays kept in step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nnrag.index import Store, index_path
from nnrag.search._lexical import LexicalIndex
from nnrag.search._searcher import BM25_WEIGHTS, Searcher, _fts_terms

FIXTURE = Path(__file__).parent.parent / "fixtures" / "search_tree"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "search_tree"
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture
def store(tree: Path, tmp_path: Path) -> Store:
    s = Store(tmp_path / "idx.db")
    index_path(s, tree, prefix="", package="fixture")
    Searcher(s)  # syncs the catalog
    return s


def sqlite_bm25(store: Store, words: list[str]) -> list[tuple[int, float]]:
    match = " OR ".join(f'"{w}"' for w in words)
    rows = store._conn.execute(
        "SELECT rowid, -bm25(block_fts, ?, ?, ?, ?) FROM block_fts WHERE block_fts MATCH ?"
        " ORDER BY 2 DESC, rowid", (*BM25_WEIGHTS, match)).fetchall()
    return [(int(i), float(s)) for i, s in rows]


@pytest.mark.parametrize("query", [
    "squeeze excitation channel attention",
    "multi head attention with relative position bias",
    "pooling pooled pools",  # three words, one stem: three phrases, as in FTS5
    "generalised mean pooling gem",
    "layer norm conv",
    "nothing matches zzzqqq",
])
def test_scores_equal_sqlite_bm25(store: Store, query: str) -> None:
    words = _fts_terms(query)
    mine = LexicalIndex(store, BM25_WEIGHTS).load().top(words, 1000)
    theirs = sqlite_bm25(store, words)
    assert [i for i, _ in mine] == [i for i, _ in theirs]
    assert all(abs(a - b) < 1e-9 for (_, a), (_, b) in zip(mine, theirs, strict=True))


def test_limit_keeps_the_best(store: Store) -> None:
    words = _fts_terms("attention pooling conv norm")
    index = LexicalIndex(store, BM25_WEIGHTS).load()
    assert index.top(words, 3) == index.top(words, 1000)[:3]


def test_stems_come_from_the_fts5_tokenizer(store: Store) -> None:
    index = LexicalIndex(store, BM25_WEIGHTS)
    assert index.stems(["pooling", "pooled", "attention", "zzz"]) == [
        "pool", "pool", "attent", "zzz"]


def test_arrays_follow_the_catalog(store: Store, tree: Path) -> None:
    first = LexicalIndex(store, BM25_WEIGHTS).load()
    assert first.rebuilt and first.path.exists() and len(first.rowids) == 9
    assert not LexicalIndex(store, BM25_WEIGHTS).load().rebuilt  # persisted and current
    assert LexicalIndex(store, (1.0, 1.0, 1.0, 1.0)).load().rebuilt  # other weights

    (tree / "blocks" / "misc.py").unlink()  # 4 blocks go away
    index_path(store, tree, prefix="", package="fixture")
    Searcher(store)
    stale = LexicalIndex(store, BM25_WEIGHTS).load()
    assert stale.rebuilt and len(stale.rowids) == 5
    assert stale.top(_fts_terms("squeeze excitation"), 10) == sqlite_bm25(
        store, _fts_terms("squeeze excitation"))

    first.path.write_bytes(b"not an npz file")  # corrupt: detected and rebuilt
    assert LexicalIndex(store, BM25_WEIGHTS).load().rebuilt


def test_searcher_notes_a_rebuild(store: Store) -> None:
    s = Searcher(store)
    s.search("squeeze excitation", mode="lexical")
    assert any("BM25" in n for n in s.notes)
    again = Searcher(store)
    assert again.search("squeeze excitation", mode="lexical")[0].name == "SqueezeExcite"
    assert not any("BM25" in n for n in again.notes)
