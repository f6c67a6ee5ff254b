"""Named reads of the code tables (modules, definitions, imports, validations).

A mixin of :class:`~nnrag.index.Store`: every other module asks the store a question by name
instead of writing SQL, so the schema can change in one place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nnrag.index._rows import DefinitionRow, PackageCounts


class Queries:
    """The connection and the one raw-row helper the store's query mixins share."""

    _conn: sqlite3.Connection

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit: an interrupted run leaves either all of it or none of it."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        cur = self._conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return int(self._conn.execute(sql, params).fetchone()[0] or 0)


class CodeQueries(Queries):
    """Reads of what the scanner stored."""

    def packages(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM packages ORDER BY name")

    def modules(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM modules")

    def definition_heads(self) -> list[DefinitionRow]:
        """Every definition without its source: what name resolution needs, cheaply."""
        return self._rows(
            "SELECT id, module, name, qualname, kind, guard, stmt_index, bases, is_abstract,"
            " has_forward, hash, lineno, end_lineno FROM definitions"
        )

    def imports(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM imports ORDER BY module, stmt_index")

    def definition(self, def_id: int) -> DefinitionRow | None:
        rows = self._rows("SELECT * FROM definitions WHERE id=?", (def_id,))
        return rows[0] if rows else None

    def definitions_named(self, name: str, *, qualified: bool,
                          blocks_only: bool = False) -> list[DefinitionRow]:
        """Definitions whose ``qualname`` (or, unqualified, ``name``) is ``name``."""
        column = "qualname" if qualified else "name"
        where = " AND is_block=1" if blocks_only else ""
        return self._rows(f"SELECT * FROM definitions WHERE {column}=?{where}", (name,))

    def block_definitions(self, ids: list[int] | None = None) -> list[DefinitionRow]:
        """Every block's full row by qualified name, or the blocks ``ids`` (any order)."""
        if ids is None:
            return self._rows("SELECT * FROM definitions WHERE is_block=1 ORDER BY qualname")
        marks = ",".join("?" * len(ids))
        return self._rows(f"SELECT * FROM definitions WHERE id IN ({marks})", ids)

    def block_count(self) -> int:
        return self._count("SELECT count(*) FROM definitions WHERE is_block=1")

    def block_hashes(self) -> dict[int, str]:
        """``{definition id: content hash}`` of every block."""
        return dict(self._conn.execute("SELECT id, hash FROM definitions WHERE is_block=1"))

    def blocks_with_validation(self) -> list[dict[str, Any]]:
        """Every block with its file, package and latest validation (rung -1: never)."""
        return self._rows(
            "SELECT d.id, d.qualname, d.name, d.module, d.lineno, d.end_lineno, d.hash, m.package,"
            " m.path, coalesce(v.rung, -1) AS rung, v.cause, v.failed_rung, v.error_type,"
            " v.error_message"
            " FROM definitions d JOIN modules m ON m.name = d.module"
            " LEFT JOIN block_validation b ON b.qualname = d.qualname AND b.def_hash = d.hash"
            " LEFT JOIN validations v ON v.closure_hash = b.closure_hash"
            " WHERE d.is_block = 1 ORDER BY d.qualname"
        )

    def package_counts(self, package: str) -> PackageCounts:
        modules = self._count(
            "SELECT count(DISTINCT m.name) FROM modules m WHERE m.package=?", (package,))
        definitions, blocks = self._conn.execute(
            "SELECT count(*), coalesce(sum(d.is_block), 0) FROM definitions d"
            " JOIN modules m ON m.name = d.module WHERE m.package=?", (package,)).fetchone()
        files = dict(self._conn.execute(
            "SELECT status, count(*) FROM files WHERE package=? GROUP BY status", (package,)))
        return PackageCounts(modules, int(definitions or 0), int(blocks or 0), files)
