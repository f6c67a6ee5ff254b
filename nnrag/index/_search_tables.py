"""Named reads and writes of the search side tables: catalog, FTS5 postings, embeddings.

A mixin of :class:`~nnrag.index.Store`. The catalog sync and the search package read and
write these tables only through it; vectors cross as raw ``float32`` bytes, so the store
needs no numpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nnrag.index._queries import Queries
from nnrag.index._rows import BlockFacts, CatalogEntry


class SearchTables(Queries):
    """``block_info``, ``block_fts`` and ``embeddings``; writes run inside the caller's
    ``transaction()`` unless a method says it opens its own."""

    _qwords_ready = False

    # -- catalog (written by the catalog sync)
    def clear_catalog(self) -> None:
        self._conn.execute("DELETE FROM block_info")
        self._conn.execute("DELETE FROM block_fts")

    def catalog_hashes(self) -> dict[int, str]:
        """``{definition id: content hash}`` the catalog was computed from."""
        return dict(self._conn.execute("SELECT definition_id, hash FROM block_info"))

    def catalog_size(self) -> int:
        return self._count("SELECT count(*) FROM block_info")

    def drop_catalog(self, ids: list[int]) -> None:
        self._conn.executemany("DELETE FROM block_info WHERE definition_id=?", [(i,) for i in ids])
        self._conn.executemany("DELETE FROM block_fts WHERE rowid=?", [(i,) for i in ids])

    def add_catalog(self, entries: list[CatalogEntry]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO block_info(definition_id, hash, embed_hash, category,"
            " fingerprint, embed_text) VALUES (?,?,?,?,?,?)",
            [(e.definition_id, e.hash, e.embed_hash, e.category, e.fingerprint, e.embed_text)
             for e in entries],
        )
        self._conn.executemany(
            "INSERT INTO block_fts(rowid, name, path, docstring, identifiers) VALUES (?,?,?,?,?)",
            [(e.definition_id, e.name_words, e.path_words, e.docstring, e.identifiers)
             for e in entries],
        )

    def embed_text(self, definition_id: int) -> str | None:
        row = self._conn.execute(
            "SELECT embed_text FROM block_info WHERE definition_id=?", (definition_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def block_facts(self) -> list[BlockFacts]:
        """Every catalogued block with its best rung and its best recorded training metric."""
        rows = self._conn.execute(
            "SELECT d.id, d.qualname, d.name, m.package, i.category, i.fingerprint,"
            " coalesce(v.rung, -1) AS rung,"
            " coalesce(json_extract(v.detail, '$.param_count'), t.params) AS params,"
            " t.value AS proven, t.dataset AS proven_on, t.metric AS proven_metric,"
            " t.run_store AS proven_source"
            " FROM block_info i JOIN definitions d ON d.id = i.definition_id"
            " JOIN modules m ON m.name = d.module"
            " LEFT JOIN block_validation b ON b.qualname = d.qualname AND b.def_hash = d.hash"
            " LEFT JOIN validations v ON v.closure_hash = b.closure_hash"
            " LEFT JOIN (SELECT qualname, dataset, metric, max(value) AS value, params, run_store"
            "  FROM block_metrics GROUP BY qualname) t ON t.qualname = d.qualname"
        )
        return [BlockFacts(*row) for row in rows]

    def fingerprint_rows(self) -> list[dict[str, Any]]:
        """``fingerprint, qualname, package, category`` of every block, grouped by fingerprint."""
        return self._rows(
            "SELECT i.fingerprint, d.qualname, m.package, i.category FROM block_info i"
            " JOIN definitions d ON d.id = i.definition_id JOIN modules m ON m.name = d.module"
            " ORDER BY i.fingerprint, d.qualname"
        )

    # -- FTS5 postings (the in-memory BM25 reads them once)
    def fts_size(self) -> int:
        return self._count("SELECT count(*) FROM block_fts")

    def fts_rowids(self) -> list[int]:
        return [r[0] for r in self._conn.execute("SELECT rowid FROM block_fts")]

    def fts_postings(self) -> Iterator[tuple[str, int, str]]:
        """``(term, rowid, column)`` of every token instance, term by term."""
        self._conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.nnrag_fts_instance"
                           " USING fts5vocab(main, 'block_fts', 'instance')")
        yield from self._conn.execute("SELECT term, doc, col FROM temp.nnrag_fts_instance")

    def porter_tokens(self, words: list[str]) -> dict[int, list[str]]:
        """``{position in words: tokens}`` as the FTS5 porter tokenizer indexes each word
        (a scratch table in the connection's temp schema, so no file is written)."""
        conn = self._conn
        if not self._qwords_ready:
            conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.nnrag_qwords"
                         " USING fts5(word, tokenize = 'porter unicode61')")
            conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.nnrag_qwords_i"
                         " USING fts5vocab(temp, 'nnrag_qwords', 'instance')")
            self._qwords_ready = True
        conn.execute("DELETE FROM temp.nnrag_qwords")
        conn.executemany("INSERT INTO temp.nnrag_qwords(rowid, word) VALUES (?, ?)",
                         list(enumerate(words)))
        found: dict[int, list[str]] = {}
        for doc, term in conn.execute("SELECT doc, term FROM temp.nnrag_qwords_i"):
            found.setdefault(doc, []).append(term)
        conn.execute("DELETE FROM temp.nnrag_qwords")
        return found

    # -- embeddings (a cache keyed by embedding text hash and model)
    def missing_embeddings(self, model: str) -> list[tuple[str, str]]:
        """``(embed_hash, text)`` of blocks whose vector for ``model`` is not cached yet."""
        return list(self._conn.execute(
            "SELECT DISTINCT b.embed_hash, b.embed_text FROM block_info b LEFT JOIN embeddings e"
            " ON e.embed_hash = b.embed_hash AND e.model = ? WHERE e.embed_hash IS NULL"
            " ORDER BY b.embed_hash",
            (model,),
        ))

    def embed_hash_count(self) -> int:
        return self._count("SELECT count(DISTINCT embed_hash) FROM block_info")

    def save_embeddings(self, model: str, vectors: list[tuple[str, bytes]]) -> None:
        """Cache ``(embed_hash, float32 bytes)`` pairs, in a transaction of their own."""
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings(embed_hash, model, vector) VALUES (?,?,?)",
                [(h, model, v) for h, v in vectors],
            )

    def block_vectors(self, model: str) -> list[tuple[int, bytes]]:
        """``(definition id, float32 bytes)`` of every block with a vector for ``model``."""
        return self._conn.execute(
            "SELECT b.definition_id, e.vector FROM block_info b JOIN embeddings e"
            " ON e.embed_hash = b.embed_hash AND e.model = ? ORDER BY b.definition_id",
            (model,),
        ).fetchall()

    def block_vector(self, definition_id: int, model: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT e.vector FROM block_info b JOIN embeddings e ON e.embed_hash = b.embed_hash"
            " AND e.model = ? WHERE b.definition_id = ?",
            (model, definition_id),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def vector_count(self, model: str) -> int:
        """Blocks with a cached vector for ``model``."""
        return self._count(
            "SELECT count(*) FROM block_info b JOIN embeddings e ON e.embed_hash = b.embed_hash"
            " AND e.model = ?",
            (model,),
        )
