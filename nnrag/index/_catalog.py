"""Keep the search side tables (categories, fingerprints, FTS5) in step with the blocks.

Run after every change to the block set, inside one transaction: rows of blocks that
disappeared or whose source changed are dropped, new ones are computed. Keyed by
definition id *and* content hash, so an unchanged re-index touches nothing, and a bumped
``search_generation`` tells the dense index (a file beside the database) to rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from nnrag.index._categories import categorize
from nnrag.index._fingerprint import fingerprint
from nnrag.index._rows import CatalogEntry, DefinitionRow
from nnrag.index._store import Store
from nnrag.index._text import block_text
from nnrag.logging import get_logger

logger = get_logger(__name__)

CATALOG_VERSION = "6"  # bump when text, category or fingerprint rules change
GENERATION_KEY = "search_generation"


@dataclass(frozen=True)
class CatalogReport:
    """What one sync changed."""

    added: int
    removed: int
    total: int


def sync_catalog(store: Store, progress: Callable[[int, int], None] | None = None) -> CatalogReport:
    """Bring ``block_info`` and ``block_fts`` in line with ``definitions.is_block``."""
    if store.get_meta("catalog_version") != CATALOG_VERSION:
        with store.transaction():
            store.clear_catalog()
            store.set_meta("catalog_version", CATALOG_VERSION)
    current = store.block_hashes()
    known = store.catalog_hashes()
    stale = [i for i, h in known.items() if current.get(i) != h]
    new = [i for i, h in current.items() if known.get(i) != h]
    if not stale and not new:
        return CatalogReport(0, 0, len(current))
    with store.transaction():
        store.drop_catalog(stale)
        for n, start in enumerate(range(0, len(new), 500)):
            store.add_catalog([_entry(row)
                               for row in store.block_definitions(new[start : start + 500])])
            if progress:
                progress(min(len(new), (n + 1) * 500), len(new))
        generation = int(store.get_meta(GENERATION_KEY) or 0) + 1
        store.set_meta(GENERATION_KEY, str(generation))
    logger.info("search catalog: %d added, %d removed", len(new), len(stale))
    return CatalogReport(len(new), len(stale), len(current))


def ensure_catalog(store: Store) -> None:
    """Cheap check before a read: sync if the catalog lags the blocks (an index built before
    search existed, or an interrupted sync)."""
    if store.block_count() != store.catalog_size():
        sync_catalog(store)


def _entry(row: DefinitionRow) -> CatalogEntry:
    """A block's category, fingerprint and search texts, from its ``definitions`` row."""
    text = block_text(row)
    try:
        bases = json.loads(row["bases"] or "[]")
    except ValueError:
        bases = []
    return CatalogEntry(row["id"], row["hash"], text.embed_hash,
                        categorize(row["source"], row["name"], bases), fingerprint(row["source"]),
                        text.embed, text.name_words, text.path_words, text.docstring,
                        text.identifiers)
