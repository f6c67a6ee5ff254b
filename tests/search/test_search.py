"""Search: lexical, dense (hashing double), fusion, filters, duplicates, FAISS/SQLite sync."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from nnrag.exceptions import OptionalDependencyError
from nnrag.index import Store, index_path, split_identifier
from nnrag.search._embed import HashingEmbedder
from nnrag.search._searcher import Filters, QueryError, Searcher, duplicate_groups
from nnrag.search._vectors import VectorIndex, embed_blocks, missing_texts

FIXTURE = Path(__file__).parent.parent / "fixtures" / "search_tree"
EMB = HashingEmbedder(256)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "search_tree"
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture
def store(tree: Path, tmp_path: Path) -> Store:
    s = Store(tmp_path / "idx.db")
    index_path(s, tree, prefix="", package="fixture")
    embed_blocks(s, EMB)
    return s


def names(hits: list) -> list[str]:
    return [h.name for h in hits]


@pytest.mark.parametrize(
    ("ident", "words"),
    [
        ("MultiHeadAttention", ["multi", "head", "attention"]),
        ("rel_pos_bias", ["rel", "pos", "bias"]),
        ("SEModule", ["se", "module"]),
        ("Conv2dNormAct", ["conv", "2d", "norm", "act"]),
        ("GPT2Block", ["gpt", "2", "block"]),
    ],
)
def test_split_identifier(ident: str, words: list[str]) -> None:
    assert split_identifier(ident) == words


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("squeeze excitation channel attention", "SqueezeExcite"),
        ("relative position bias attention", "RelPosAttention"),
        ("generalised mean pooling", "GeMPool"),
        ("label smoothing cross entropy loss", "LabelSmoothingLoss"),
    ],
)
def test_known_query_ranks_the_block_first(store: Store, mode: str, query: str,
                                           expected: str) -> None:
    hits = Searcher(store, embedder=EMB).search(query, mode=mode, k=5)
    assert hits and hits[0].name == expected, names(hits)


def test_hybrid_fuses_both_rankings(store: Store) -> None:
    hits = Searcher(store, embedder=EMB).search("depthwise separable convolution", k=3)
    assert hits[0].name == "DepthwiseSeparableConv"
    assert set(hits[0].via) == {"lexical", "dense"}
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_query_by_code_finds_the_structural_twin(store: Store) -> None:
    code = (FIXTURE / "blocks" / "copies.py").read_text()
    hits = Searcher(store, embedder=EMB).search(code=code, k=3)
    assert {"RMSNorm", "T5LayerNorm"} <= set(names(hits[:2]))


def test_similar_excludes_the_block_itself(store: Store) -> None:
    row = store.definitions_named("RMSNorm", qualified=False)[0]
    hits = Searcher(store, embedder=EMB).similar(row["id"], k=3)
    assert "RMSNorm" not in names(hits) and hits[0].name == "T5LayerNorm"


def test_filters(store: Store) -> None:
    s = Searcher(store, embedder=EMB)
    hits = s.search("layer", k=20, filters=Filters(category="normalization"))
    assert hits and {h.category for h in hits} == {"normalization"}
    assert s.search("attention", k=20, filters=Filters(package="nope")) == []
    # never validated: a rung or parameter filter keeps nothing
    assert s.search("attention", k=20, filters=Filters(min_rung=5)) == []
    assert s.search("attention", k=20, filters=Filters(max_params=10**9)) == []


def test_collapse_folds_duplicates(store: Store) -> None:
    s = Searcher(store, embedder=EMB)
    plain = s.search("root mean square normalisation", k=5)
    assert {"RMSNorm", "T5LayerNorm"} <= set(names(plain))
    folded = s.search("root mean square normalisation", k=5, collapse=True)
    first = next(h for h in folded if h.name in ("RMSNorm", "T5LayerNorm"))
    assert len(first.duplicates) == 1
    assert len({h.name for h in folded} & {"RMSNorm", "T5LayerNorm"}) == 1
    groups = duplicate_groups(store)
    assert [sorted(r["qualname"].split(".")[-1] for r in g) for g in groups] == [
        ["RMSNorm", "T5LayerNorm"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "empty query"),
        ({"text": "  ?! "}, "empty query"),
        ({"text": "x", "mode": "fuzzy"}, "unknown mode"),
    ],
)
def test_bad_queries(store: Store, kwargs: dict, message: str) -> None:
    text = kwargs.pop("text")
    with pytest.raises(QueryError, match=message):
        Searcher(store, embedder=EMB).search(text, **kwargs)


def test_unknown_category_lists_the_valid_ones() -> None:
    with pytest.raises(QueryError, match="attention, convolution"):
        Filters(category="transformers")


def test_embedding_is_incremental_and_resumable(store: Store, tree: Path) -> None:
    assert embed_blocks(store, EMB).embedded == 0  # nothing changed: nothing re-embedded
    path = tree / "blocks" / "conv.py"
    path.write_text(path.read_text().replace("reduction=4", "reduction=8"))
    index_path(store, tree, prefix="", package="fixture")
    assert len(missing_texts(store, EMB.name)) == 1

    class Flaky(HashingEmbedder):
        calls = 0

        def embed(self, texts: list[str]) -> np.ndarray:
            Flaky.calls += 1
            if Flaky.calls > 1:
                raise KeyboardInterrupt
            return super().embed(texts)

    (tree / "blocks" / "more.py").write_text(
        "from torch import nn\n"
        + "".join(
            f"class Extra{i}(nn.Module):\n    def forward(self, x):\n        return x * {i}\n\n"
            for i in range(5)
        )
    )
    index_path(store, tree, prefix="", package="fixture")
    todo = len(missing_texts(store, EMB.name))
    with pytest.raises(KeyboardInterrupt):
        embed_blocks(store, Flaky(256), batch=2)
    assert len(missing_texts(store, EMB.name)) == todo - 2  # the first batch was committed
    assert embed_blocks(store, EMB).embedded == todo - 2


def test_vector_index_follows_the_store(store: Store, tree: Path) -> None:
    index = VectorIndex(store, EMB.name).load()
    assert index.rebuilt and index.count == 9
    assert not VectorIndex(store, EMB.name).load().rebuilt  # persisted and current: reused

    (tree / "blocks" / "misc.py").unlink()  # 4 blocks go away
    index_path(store, tree, prefix="", package="fixture")
    stale = VectorIndex(store, EMB.name).load()
    assert stale.rebuilt and stale.count == 5
    hits = Searcher(store, embedder=EMB).search("generalised mean pooling", mode="dense", k=10)
    assert "GeMPool" not in names(hits)

    index.path.write_bytes(b"not a faiss file")  # corrupt: detected and rebuilt
    assert VectorIndex(store, EMB.name).load().rebuilt
    index.path.unlink()
    assert VectorIndex(store, EMB.name).load().count == 5


def test_without_the_search_extra_hybrid_falls_back(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnrag.search._searcher.dense_available", lambda: False)
    s = Searcher(store)
    hits = s.search("squeeze excitation", k=3)
    assert hits[0].name == "SqueezeExcite" and set(hits[0].via) == {"lexical"}
    assert any("nnrag[search]" in n for n in s.notes)
    with pytest.raises(OptionalDependencyError, match=r"nnrag\[search\]"):
        Searcher(store).search("squeeze", mode="dense")


def test_no_vectors_yet_says_to_embed(tree: Path, tmp_path: Path) -> None:
    s = Store(tmp_path / "fresh.db")
    index_path(s, tree, prefix="", package="fixture")
    searcher = Searcher(s, embedder=EMB)
    assert searcher.search("squeeze excitation", k=1)[0].name == "SqueezeExcite"
    assert any("nnrag embed" in n for n in searcher.notes)
    with pytest.raises(QueryError, match="nnrag embed"):
        Searcher(s, embedder=EMB).search("squeeze", mode="dense")


@pytest.mark.slow
def test_packaged_minilm_ranks_the_known_block_first(store: Store) -> None:
    from nnrag.search._embed import get_embedder

    minilm = get_embedder("minilm")
    assert minilm._bert is not None  # type: ignore[attr-defined]  # a query skips torch
    embed_blocks(store, minilm)
    hits = Searcher(store, embedder=minilm).search(
        "channel attention that rescales feature maps after global pooling", mode="dense", k=3
    )
    assert hits[0].name == "SqueezeExcite", names(hits)


def test_cli_query_similar_duplicates(cli, tree: Path, tmp_path: Path) -> None:  # noqa: ANN001
    import json

    db = tmp_path / "cli.db"
    assert cli("index", tree, "--db", db).returncode == 0
    lexical = cli("query", "squeeze excitation", "--db", db, "--model", "hashing",
                  "--format", "json")
    assert lexical.returncode == 0, lexical
    assert json.loads(lexical.stdout)[0]["name"] == "SqueezeExcite"
    assert "nnrag embed" in lexical.stderr  # hybrid asked, no vectors yet: says how
    # words in every block of a small index: BM25 floors their weight; the table still says
    # something (significant digits, the retriever and rank) and why the scores are tiny
    common = cli("query", "forward blocks", "--mode", "lexical", "--db", db, "-k", "2")
    assert common.returncode == 0 and "near zero" in common.stderr, common
    assert "lexical #1" in common.stdout and "lexical #2" in common.stdout
    assert "0.000" not in common.stdout and "e-06" in common.stdout
    weak = json.loads(cli("query", "forward blocks", "--mode", "lexical", "--db", db,
                          "--format", "json").stdout)
    assert 0 < weak[0]["score"] < 1e-3 and weak[0]["via"] == {"lexical": 1}
    emb = cli("embed", "--db", db, "--model", "hashing", "--format", "json")
    assert json.loads(emb.stdout)["embedded"] == 9, emb
    hits = json.loads(cli("query", "relative position bias attention", "--db", db, "--model",
                          "hashing", "--format", "json", "--show").stdout)
    assert hits[0]["name"] == "RelPosAttention" and "class RelPosAttention" in hits[0]["code"]
    sim = cli("similar", "RMSNorm", "--db", db, "--model", "hashing", "-k", "1")
    assert "T5LayerNorm" in sim.stdout, sim
    dup = json.loads(cli("duplicates", "--db", db, "--format", "json").stdout)
    assert [g["size"] for g in dup] == [2]
    code = tmp_path / "q.py"
    code.write_text((FIXTURE / "blocks" / "conv.py").read_text())
    by_code = cli("query", "--code", code, "--db", db, "--model", "hashing", "--format", "json")
    assert json.loads(by_code.stdout)[0]["name"] in ("SqueezeExcite", "DepthwiseSeparableConv")
    for args, message in [
        (("query", "", "--db", db), "empty query"),
        (("query", "--db", db), "give a query"),
        (("query", "x", "--category", "transformers", "--db", db), "unknown category"),
        (("query", "x", "--db", tmp_path / "missing.db"), "no index at"),
        (("similar", "NoSuchBlock", "--db", db), "no indexed definition"),
        (("query", "x", "--mode", "dense", "--db", db, "--model", "hashing-64"), "nnrag embed"),
    ]:
        bad = cli(*args)
        assert bad.returncode == 2 and message in bad.stderr, bad
        assert "Traceback" not in bad.stderr
    # a model that is not there: without the search extra that is what the error says
    bad = cli("embed", "--db", db, "--model", "/no/such/model")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad
    assert "cannot load embedding model" in bad.stderr or "nnrag[search]" in bad.stderr, bad


def test_large_collections_use_hnsw(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnrag.search._vectors.HNSW_THRESHOLD", 5)
    index = VectorIndex(store, EMB.name)
    index.build()
    assert "HNSW" in index.manifest_path.read_text()
    hits = Searcher(store, embedder=EMB).search("generalised mean pooling", mode="dense", k=1)
    assert hits[0].name == "GeMPool"


def test_vector_search_leaves_torch_threads_alone(store: Store) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    index = VectorIndex(store, EMB.name).load()
    assert index.search(EMB.embed(["squeeze excitation"])[0], 3)
    assert torch.get_num_threads() == before  # faiss and torch share OpenMP's thread setting
