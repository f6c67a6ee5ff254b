"""Frozen rows the store hands out, so callers read named fields instead of SQL columns.

Only rows with a fixed shape are typed here. Full ``definitions`` rows stay mappings: the
closure builder, the ladder and the catalog text read (and pass on) whichever columns they
need, so one fixed type would only mirror the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A full ``definitions`` row (or the columns of it a query selected), keyed by column.
DefinitionRow = dict[str, Any]


@dataclass(frozen=True)
class BlockFacts:
    """What search filters and ranks a block by: its catalog facts, best rung and metric."""

    id: int
    qualname: str
    name: str
    package: str
    category: str
    fingerprint: str
    rung: int  # -1 when never validated
    params: int | None
    proven: float | None  # best recorded training metric, if a trained block
    proven_on: str | None
    proven_metric: str | None
    proven_source: str | None = None  # the metric's run store (REPORTED: LEMUR's own figure)


@dataclass(frozen=True)
class CatalogEntry:
    """One block's search side rows: ``block_info`` (category, fingerprint, embedding text)
    and ``block_fts`` (the four weighted text columns)."""

    definition_id: int
    hash: str
    embed_hash: str
    category: str
    fingerprint: str
    embed_text: str
    name_words: str
    path_words: str
    docstring: str
    identifiers: str


@dataclass(frozen=True)
class PackageCounts:
    """How much of one package the index holds (``nnrag stats``)."""

    modules: int
    definitions: int
    blocks: int
    files: dict[str, int] = field(default_factory=dict)  # status -> count


@dataclass(frozen=True)
class BlockMetric:
    """A training result written back beside a trained block, so retrieval can prefer it.

    ``run_id`` is the run's id in ``run_store`` (the runs database's path): one index can be
    shared by several run stores, whose ids overlap.
    """

    qualname: str
    dataset: str
    metric: str
    value: float | None
    run_id: int
    params: int | None
    run_store: str | None = None
