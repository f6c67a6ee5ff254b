"""The block-family glossary: name matching, BM25 enrichment, query-side family naming."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from nnrag.index import Store, index_path
from nnrag.index._concepts import (
    ConceptMatcher,
    concept_text,
    concepts,
    matching_concepts,
    parse_concepts,
)
from nnrag.index._text import block_text, family_text, query_text, spelled_out
from nnrag.search._embed import HashingEmbedder
from nnrag.search._searcher import Searcher, _fts_terms
from nnrag.search._vectors import embed_blocks

FIXTURE = Path(__file__).parent.parent / "fixtures" / "search_tree"

GLOSSARY = parse_concepts("""
- concept: squeeze-and-excitation
  names: [squeeze excite, se]
  about: channel attention from globally pooled features through a sigmoid gate
- concept: resnet bottleneck
  names: [bottleneck]
  about: residual block of 1x1 3x3 1x1 convolutions
- concept: transformer block
  names: [=block]
  about: attention and mlp with residuals
- concept: wav2vec2
  names: [wav2vec2]
  about: speech model
- concept: feature encoder
  names: [feature encoder]
  about: strided convolutions over the waveform
- concept: drop block
  names: [drop block]
  about: drops square regions
""")


def families(name: str) -> list[str]:
    return [c.concept for c in matching_concepts(name, GLOSSARY)]


@pytest.mark.parametrize(("name", "expected"), [
    ("SqueezeExcite", ["squeeze-and-excitation"]),
    ("EffectiveSEModule", ["squeeze-and-excitation"]),  # "module" is a generic tail
    ("SEBottleneck", ["resnet bottleneck"]),  # a bottleneck with SE inside, not SE itself
    ("Block", ["transformer block"]),
    ("SparseMoeBlock", []),  # "=block" is the whole name only
    ("Wav2Vec2FeatureEncoder", ["feature encoder"]),  # a model prefix is not the model
    ("DropBlock2d", ["drop block"]),  # tails are peeled one at a time
    ("Selector", []),
])
def test_names_match_the_end_of_a_class_name(name: str, expected: list[str]) -> None:
    assert families(name) == expected


def test_packaged_glossary_is_well_formed() -> None:
    glossary = concepts()
    assert len(glossary) >= 100
    assert len({c.concept for c in glossary}) == len(glossary)
    assert all(c.names and len(c.about.split()) >= 5 for c in glossary)


def test_block_text_adds_the_family_to_bm25_and_the_embedded_text() -> None:
    row = {"name": "SEModule", "qualname": "pkg.SEModule", "docstring": "SE block.",
           "source": "class SEModule(nn.Module):\n    def forward(self, x):\n        return x\n"}
    text = block_text(row)
    assert text.docstring.startswith("SE block. squeeze-and-excitation:")
    head, code = text.embed.split("\n", 1)
    about = next(c.about for c in concepts() if c.concept == "squeeze-and-excitation")
    assert f"a squeeze-and-excitation: {about}" in head  # before the docstring and the code,
    assert head.index("squeeze-and-excitation") < head.index("SE block.")  # never truncated
    assert code.startswith("class SEModule")
    assert family_text("SEModule") in head
    assert concept_text("NothingKnown") == "" and family_text("NothingKnown") == ""
    plain = block_text({**row, "name": "NothingKnown", "qualname": "pkg.NothingKnown"})
    assert "squeeze" not in plain.embed  # blocks of no family embed as before


def test_the_embedded_text_names_every_family_but_describes_one() -> None:
    found = matching_concepts("EfficientAdditiveAttention")  # its own family, then attention
    assert len(found) >= 2
    text = family_text("EfficientAdditiveAttention")
    assert text == f"a {', '.join(c.concept for c in found)}: {found[0].about}"
    assert found[1].about not in text


def test_matcher_names_a_described_family() -> None:
    matcher = ConceptMatcher(GLOSSARY, min_score=0.5)
    best = matcher.best(_fts_terms("channel attention through a sigmoid gate over pooled features"))
    assert best is not None and best.concept == "squeeze-and-excitation"
    assert matcher.best(_fts_terms("tokenizer vocabulary merges")) is None
    assert matcher.best([]) is None
    strict = ConceptMatcher(GLOSSARY, min_score=1e9)
    assert strict.best(_fts_terms("channel attention sigmoid gate")) is None


class Recording(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(256)
        self.seen: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return super().embed(texts)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    tree = tmp_path / "search_tree"
    shutil.copytree(FIXTURE, tree, ignore=shutil.ignore_patterns("__pycache__"))
    s = Store(tmp_path / "idx.db")
    index_path(s, tree, prefix="", package="fixture")
    embed_blocks(s, HashingEmbedder(256))
    return s


def test_a_description_finds_the_block_through_its_family(store: Store) -> None:
    query = "recalibrate channel responses with a sigmoid gate after a global average pool"
    hits = Searcher(store).search(query, mode="lexical", k=3)
    assert hits[0].name == "SqueezeExcite"


def test_a_description_finds_the_block_densely_through_its_family(store: Store) -> None:
    emb = HashingEmbedder(256)  # the words of the family's description, none of its name
    query = emb.embed(["squeezes each channel to a scalar, then reweight the channels"])[0]
    hits = Searcher(store, embedder=emb).dense_vector(query, limit=3)
    assert store._conn.execute("SELECT name FROM definitions WHERE id=?",
                              (hits[0][0],)).fetchone()[0] == "SqueezeExcite"


def test_the_dense_query_gets_the_family_name(store: Store) -> None:
    emb = Recording()
    searcher = Searcher(store, embedder=emb)
    emb.seen.clear()
    searcher.search("squeeze and excitation: channel attention with global average pooling,"
                    " reduction and a sigmoid gate that rescales channels", mode="dense", k=3)
    assert emb.seen[-1].endswith("(squeeze-and-excitation)")
    code = "class SEModule:\n    def forward(self, x):\n        return x.sigmoid()\n"
    searcher.search(code=code, mode="dense", k=3)
    assert emb.seen[-1] == query_text(code)  # code queries are left alone


def test_abbreviated_names_are_spelled_out_for_bm25() -> None:
    row = {"name": "ClassAttn", "qualname": "pkg.ClassAttn", "docstring": "",
           "source": "class ClassAttn(nn.Module):\n    def forward(self, x):\n        return x\n"}
    assert block_text(row).name_words.split() == ["classattn", "class", "attn", "attention"]
    assert spelled_out(["dw", "conv", "block"]) == [
        "dw", "depthwise", "conv", "convolution", "block"]
