"""The store's named queries and the frozen rows they return."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nnrag.index import BlockFacts, BlockMetric, PackageCounts, Store, index_path, sync_catalog

TREE = '''
from torch import nn


class Block(nn.Module):
    def forward(self, x):
        return x


def helper():
    return 1
'''


@pytest.fixture
def indexed(tmp_path: Path) -> Store:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "blocks.py").write_text(TREE)
    store = Store(tmp_path / "index.db")
    index_path(store, tmp_path / "tree", prefix="", package="tree")
    sync_catalog(store)
    return store


def test_package_counts(indexed: Store) -> None:
    counts = indexed.package_counts("tree")
    assert counts == PackageCounts(modules=1, definitions=2, blocks=1, files={"ok": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        counts.blocks = 3  # type: ignore[misc]


def test_definition_lookups(indexed: Store) -> None:
    (block,) = indexed.definitions_named("blocks.Block", qualified=True)
    assert indexed.definitions_named("Block", qualified=False) == [block]
    assert indexed.definitions_named("helper", qualified=False, blocks_only=True) == []
    assert indexed.definition(block["id"]) == block
    assert indexed.definition(10_000) is None
    assert [r["qualname"] for r in indexed.block_definitions()] == ["blocks.Block"]
    assert indexed.block_hashes() == indexed.catalog_hashes() == {block["id"]: block["hash"]}


def test_a_recorded_metric_shows_in_the_block_facts(indexed: Store) -> None:
    (facts,) = indexed.block_facts()
    assert isinstance(facts, BlockFacts) and facts.qualname == "blocks.Block"
    assert facts.rung == -1 and facts.proven is None
    indexed.record_block_metric(BlockMetric("blocks.Block", "digits", "accuracy", 0.9, 7, 1234))
    indexed.record_block_metric(BlockMetric("blocks.Block", "digits", "accuracy", 0.95, 8, 1234))
    (facts,) = indexed.block_facts()  # the same dataset and metric: replaced, not added
    assert (facts.proven, facts.proven_on, facts.proven_metric, facts.params) == (
        0.95, "digits", "accuracy", 1234)
    indexed.record_block_metric(BlockMetric("blocks.Block", "digits", "accuracy", 0.3, 9, 1234))
    (facts,) = indexed.block_facts()  # a later, worse run does not replace the best one
    assert facts.proven == 0.95
    (metric,) = indexed.block_metrics("blocks.Block")
    assert (metric.value, metric.run_id) == (0.95, 8)


def test_embeddings_round_trip_as_bytes(indexed: Store) -> None:
    ((embed_hash, text),) = indexed.missing_embeddings("m")
    assert "Block" in text and indexed.embed_hash_count() == 1
    indexed.save_embeddings("m", [(embed_hash, b"\0\0\x80?")])
    assert indexed.missing_embeddings("m") == [] and indexed.vector_count("m") == 1
    (block,) = indexed.block_definitions()
    assert indexed.block_vectors("m") == [(block["id"], b"\0\0\x80?")]
    assert indexed.block_vector(block["id"], "m") == b"\0\0\x80?"
    assert indexed.block_vector(block["id"], "other") is None
