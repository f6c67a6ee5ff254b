"""The SQLite store behind the index: versioned schema, WAL, one short transaction per change.

Only :mod:`nnrag.index` writes the code tables (packages, files, modules, definitions,
imports); the ladder writes validation results through :meth:`Store.save_validation`, and
training writes metrics back through :meth:`Store.record_block_metric`. No SQL lives outside
this class and its query mixins (:mod:`._queries`, :mod:`._search_tables`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from nnrag._sqlite import INDEX, connect
from nnrag.exceptions import (
    CorruptStoreError,
    IndexMissingError,
    SchemaVersionError,
    StoreError,
    StoreMissingError,
)
from nnrag.index._model import FileScan
from nnrag.index._queries import CodeQueries
from nnrag.index._rows import BlockMetric
from nnrag.index._search_tables import SearchTables

# 2: block_info, block_fts, embeddings (search); 3: block_metrics; 4: block_provenance;
# 5: block_metrics.run_store (which run store the best run's id belongs to)
SCHEMA_VERSION = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS packages (
    name TEXT PRIMARY KEY, root TEXT NOT NULL, version TEXT, indexed_at REAL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, package TEXT NOT NULL, module TEXT, sha1 TEXT, size INTEGER,
    status TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS modules (
    name TEXT PRIMARY KEY, package TEXT NOT NULL, path TEXT NOT NULL,
    is_package INTEGER NOT NULL, future_annotations INTEGER NOT NULL, all_names TEXT,
    docstring TEXT);
CREATE TABLE IF NOT EXISTS definitions (
    id INTEGER PRIMARY KEY, module TEXT NOT NULL, name TEXT NOT NULL, qualname TEXT NOT NULL,
    kind TEXT NOT NULL, lineno INTEGER, end_lineno INTEGER, source TEXT NOT NULL,
    hash TEXT NOT NULL, guard TEXT NOT NULL DEFAULT '', stmt_index INTEGER, bases TEXT,
    is_abstract INTEGER, has_forward INTEGER, is_block INTEGER NOT NULL DEFAULT 0,
    docstring TEXT);
CREATE INDEX IF NOT EXISTS definitions_name ON definitions(name);
CREATE INDEX IF NOT EXISTS definitions_module ON definitions(module);
CREATE INDEX IF NOT EXISTS definitions_qualname ON definitions(qualname);
CREATE INDEX IF NOT EXISTS definitions_hash ON definitions(hash);
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY, module TEXT NOT NULL, local_name TEXT NOT NULL,
    target_module TEXT NOT NULL, target_name TEXT, level INTEGER, lineno INTEGER,
    guard TEXT NOT NULL DEFAULT '', stmt_index INTEGER);
CREATE INDEX IF NOT EXISTS imports_module ON imports(module);
CREATE TABLE IF NOT EXISTS validations (
    closure_hash TEXT PRIMARY KEY, rung INTEGER NOT NULL, rung_name TEXT NOT NULL,
    failed_rung TEXT, error_type TEXT, error_message TEXT, cause TEXT, detail TEXT,
    validated_at REAL);
CREATE TABLE IF NOT EXISTS block_validation (
    qualname TEXT PRIMARY KEY, def_hash TEXT NOT NULL, closure_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS block_info (
    definition_id INTEGER PRIMARY KEY, hash TEXT NOT NULL, embed_hash TEXT NOT NULL,
    category TEXT NOT NULL, fingerprint TEXT NOT NULL, embed_text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS block_info_fingerprint ON block_info(fingerprint);
CREATE INDEX IF NOT EXISTS block_info_embed_hash ON block_info(embed_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS block_fts USING fts5(
    name, path, docstring, identifiers, tokenize = 'porter unicode61');
CREATE TABLE IF NOT EXISTS embeddings (
    embed_hash TEXT NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (embed_hash, model));
CREATE TABLE IF NOT EXISTS block_metrics (
    qualname TEXT NOT NULL, dataset TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    run_id INTEGER, params INTEGER, recorded_at REAL, run_store TEXT,
    PRIMARY KEY (qualname, dataset, metric));
CREATE TABLE IF NOT EXISTS block_provenance (
    qualname TEXT PRIMARY KEY, source TEXT NOT NULL, detail TEXT NOT NULL, recorded_at REAL);
"""

# (table, column, declaration) added to an existing table by a later schema version.
_ADDED_COLUMNS = (("block_metrics", "run_store", "TEXT"),)

# Rungs of the validation ladder, in order; index = rung number.
RUNGS = ("none", "parse", "compile", "import", "instantiate", "forward", "backward")


def rung_number(name_or_number: str | int) -> int:
    """Accept ``"forward"`` or ``5``; raise a clear error for anything else."""
    if isinstance(name_or_number, int) or str(name_or_number).isdigit():
        value = int(name_or_number)
        if 0 <= value < len(RUNGS):
            return value
    elif name_or_number in RUNGS:
        return RUNGS.index(name_or_number)
    raise StoreError(f"unknown rung {name_or_number!r}; use one of {', '.join(RUNGS[1:])} or 1-6")


class Store(CodeQueries, SearchTables):
    """A handle on one index database."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        """Open (``create``: or create) the index at ``path``; ``readonly`` opens it with
        SQLite's ``mode=ro`` and never writes (an older schema is upgraded first, once)."""
        self.path = Path(path)
        self._create = create and not readonly
        self.readonly = readonly
        if not self._create and not self.path.exists():
            raise IndexMissingError(
                f"no index at {self.path}; build one with `nnrag index PATH` "
                f"(or point --db / NNRAG_DB at an existing one)"
            )
        if readonly:
            self._conn = self._connect(readonly=True)
            if self._schema_version() < SCHEMA_VERSION:  # upgrade once, then read
                self._conn.close()
                Store(self.path, create=False).close()
                self._conn = self._connect(readonly=True)
            self._check_version()
        else:
            self._conn = self._connect(readonly=False)
            self._migrate()
        if not readonly:
            self._conn.execute("PRAGMA foreign_keys=ON")

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        try:
            conn, _found = connect(self.path, INDEX, readonly=readonly, create=self._create)
        except StoreMissingError as exc:  # an empty file
            raise IndexMissingError(f"{exc}; build one with `nnrag index PATH --db "
                                    f"{self.path}`") from exc
        return conn

    @property
    def incomplete(self) -> str | None:
        """Why the index is not whole (an ``nnrag index`` run was interrupted), or ``None``."""
        running = self.get_meta("indexing")
        if running:
            return (f"index is incomplete: indexing {running} did not finish (interrupted, "
                    f"or still running); run the same `nnrag index` again (--db {self.path})")
        if self.get_meta("blocks_dirty") == "1":
            return (f"index is incomplete: an indexing run stopped before it marked the "
                    f"blocks; run `nnrag index` again (--db {self.path})")
        return None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema
    def _check_version(self) -> None:
        version = self._schema_version()
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has schema version {version}, newer than this nnrag "
                f"({SCHEMA_VERSION}); upgrade nnrag or use another --db"
            )

    def _migrate(self) -> None:
        self._check_version()
        if self._schema_version() < SCHEMA_VERSION:
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._add_columns()
                self.set_meta("schema_version", str(SCHEMA_VERSION))

    def _add_columns(self) -> None:
        """Columns added to a table after its first release: ``CREATE TABLE IF NOT EXISTS``
        leaves an older table as it was, so each one is added here when it is missing."""
        for table, column, decl in _ADDED_COLUMNS:
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def _schema_version(self) -> int:
        has_meta = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except (TypeError, ValueError) as exc:
            raise CorruptStoreError(f"{self.path} is damaged (schema version {row[0]!r}): run "
                                    f"`nnrag doctor --db {self.path}`, then re-index") from exc

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # -- writes (call inside ``transaction()``)
    def upsert_package(self, name: str, root: str, version: str | None) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO packages(name, root, version, indexed_at) VALUES (?,?,?,?)",
            (name, root, version, time.time()),
        )

    def file_hashes(self, package: str) -> dict[str, str | None]:
        rows = self._conn.execute("SELECT path, sha1 FROM files WHERE package=?", (package,))
        return {path: sha for path, sha in rows}

    def file_problems(self, package: str) -> dict[str, tuple[str, str]]:
        """``{path: (status, error)}`` of the files of ``package`` that could not be indexed."""
        rows = self._conn.execute(
            "SELECT path, status, error FROM files WHERE package=? AND status != 'ok'", (package,)
        )
        return {path: (status, error or "") for path, status, error in rows}

    def delete_file(self, path: str) -> None:
        row = self._conn.execute("SELECT module FROM files WHERE path=?", (path,)).fetchone()
        if row and row[0]:
            self._delete_module(row[0], path)
        self._conn.execute("DELETE FROM files WHERE path=?", (path,))

    def _delete_module(self, module: str, path: str) -> None:
        owner = self._conn.execute("SELECT path FROM modules WHERE name=?", (module,)).fetchone()
        if owner and owner[0] != path:
            return  # another file now provides this module name
        self._conn.execute("DELETE FROM definitions WHERE module=?", (module,))
        self._conn.execute("DELETE FROM imports WHERE module=?", (module,))
        self._conn.execute("DELETE FROM modules WHERE name=?", (module,))

    def record_problem(self, path: str, package: str, sha1: str | None, status: str,
                       error: str) -> None:
        self.delete_file(path)
        self._conn.execute(
            "INSERT INTO files(path, package, module, sha1, size, status, error)"
            " VALUES (?,?,?,?,?,?,?)",
            (path, package, None, sha1, None, status, error),
        )

    def save_scan(self, path: str, package: str, sha1: str, size: int, scan: FileScan) -> None:
        self.delete_file(path)
        self._delete_module(scan.module, path)
        self._conn.execute(
            "INSERT INTO files(path, package, module, sha1, size, status, error)"
            " VALUES (?,?,?,?,?,?,?)",
            (path, package, scan.module, sha1, size, "ok", None),
        )
        self._conn.execute(
            "INSERT OR REPLACE INTO modules(name, package, path, is_package, future_annotations,"
            " all_names, docstring) VALUES (?,?,?,?,?,?,?)",
            (
                scan.module, package, path, int(scan.is_package), int(scan.future_annotations),
                json.dumps(list(scan.all_names)) if scan.all_names is not None else None,
                scan.docstring,
            ),
        )
        self._conn.executemany(
            "INSERT INTO definitions(module, name, qualname, kind, lineno, end_lineno, source,"
            " hash, guard, stmt_index, bases, is_abstract, has_forward, docstring)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    scan.module, d.name, f"{scan.module}.{d.name}", d.kind, d.lineno, d.end_lineno,
                    d.source, d.hash, d.guard, d.stmt_index, json.dumps(list(d.bases)),
                    int(d.is_abstract), int(d.has_forward), d.docstring,
                )
                for d in scan.definitions
            ],
        )
        self._conn.executemany(
            "INSERT INTO imports(module, local_name, target_module, target_name, level, lineno,"
            " guard, stmt_index) VALUES (?,?,?,?,?,?,?,?)",
            [
                (scan.module, i.local_name, i.target_module, i.target_name, i.level, i.lineno,
                 i.guard, i.stmt_index)
                for i in scan.imports
            ],
        )

    def set_blocks(self, block_ids: set[int]) -> None:
        self._conn.execute("UPDATE definitions SET is_block=0 WHERE is_block=1")
        self._conn.executemany("UPDATE definitions SET is_block=1 WHERE id=?",
                               [(i,) for i in block_ids])

    def forget_file_hashes(self, package: str) -> None:
        """Make every file of ``package`` look changed, so the next run rescans it."""
        self._conn.execute("UPDATE files SET sha1 = NULL WHERE package = ?", (package,))

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (before copying the file)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- results written back by the ladder and by training (each its own transaction)
    def save_validation(self, qualname: str, def_hash: str, closure_hash: str,
                        result: dict[str, Any]) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO validations(closure_hash, rung, rung_name, failed_rung,"
                " error_type, error_message, cause, detail, validated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    closure_hash, result["rung"], RUNGS[result["rung"]], result.get("failed_rung"),
                    result.get("error_type"), result.get("error_message"), result.get("cause"),
                    json.dumps(result, sort_keys=True, default=str), time.time(),
                ),
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO block_validation(qualname, def_hash, closure_hash)"
                " VALUES (?,?,?)",
                (qualname, def_hash, closure_hash),
            )

    def record_provenance(self, qualname: str, source: str, detail: dict[str, Any]) -> None:
        """How a written-back block was made (``source`` e.g. ``generate``): prompt, parents,
        LLM."""
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO block_provenance(qualname, source, detail, recorded_at)"
                " VALUES (?,?,?,strftime('%s','now'))",
                (qualname, source, json.dumps(detail, sort_keys=True)),
            )

    def provenance(self, qualname: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT source, detail FROM block_provenance WHERE qualname=?",
                          (qualname,))
        return {"source": rows[0]["source"], **json.loads(rows[0]["detail"])} if rows else None

    def cached_validation(self, closure_hash: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT detail FROM validations WHERE closure_hash=?", (closure_hash,))
        return json.loads(rows[0]["detail"]) if rows else None

    def record_block_metric(self, metric: BlockMetric) -> None:
        """A trained block's result on a dataset and metric, kept only when it beats the one
        recorded (every registered metric is higher-is-better): retrieval ranks a block by
        the best it has done, not by whichever run happened to finish last."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO block_metrics(qualname, dataset, metric, value, run_id, params,"
                " recorded_at, run_store) VALUES (?,?,?,?,?,?,strftime('%s','now'),?)"
                " ON CONFLICT(qualname, dataset, metric) DO UPDATE SET value=excluded.value,"
                " run_id=excluded.run_id, params=excluded.params,"
                " recorded_at=excluded.recorded_at, run_store=excluded.run_store"
                " WHERE block_metrics.value IS NULL OR (excluded.value IS NOT NULL"
                " AND excluded.value > block_metrics.value)",
                (metric.qualname, metric.dataset, metric.metric, metric.value, metric.run_id,
                 metric.params, metric.run_store),
            )

    def block_metrics(self, qualname: str) -> list[BlockMetric]:
        """Every recorded result of one block (one per dataset and metric)."""
        rows = self._conn.execute(
            "SELECT qualname, dataset, metric, value, run_id, params, run_store"
            " FROM block_metrics WHERE qualname=? ORDER BY dataset, metric", (qualname,))
        return [BlockMetric(*r) for r in rows]

    def forget_validations(self, causes: list[str]) -> int:
        """Drop cached validation results with one of ``causes``, so they are run again."""
        with self.transaction():
            marks = ",".join("?" * len(causes))
            return self._conn.execute(
                f"DELETE FROM validations WHERE cause IN ({marks})", causes).rowcount

    def link_validation(self, qualname: str, def_hash: str, closure_hash: str) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO block_validation(qualname, def_hash, closure_hash)"
                " VALUES (?,?,?)",
                (qualname, def_hash, closure_hash),
            )
