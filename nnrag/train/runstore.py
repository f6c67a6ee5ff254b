"""The run store: every trial, its spec, outcome and per-epoch metrics, in SQLite.

One writer (the orchestrator) and any number of readers: WAL, a busy timeout, and one
short transaction per state change, so killing the engine at any moment loses no finished
run and leaves nothing half-written. Schema changes are numbered migrations applied in
order inside a transaction; a database newer than this code is refused, not guessed at.
A heartbeat column and the engine's owner token (:mod:`nnrag.train._owner`) let ``resume``
find runs whose worker (or engine) died: a dead owner at once, a silent one after
:data:`STALE_AFTER_S`. Reads come back
as frozen :class:`RunRecord` values; no SQL (and no connection) leaves this module.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from nnrag._sqlite import RUNS, connect
from nnrag.exceptions import CorruptStoreError, SchemaVersionError, StoreError, StoreMissingError
from nnrag.train import _owner

# Each entry upgrades the schema by one version; never edit a released entry, append.
MIGRATIONS: tuple[str, ...] = (
    # 1: runs and per-epoch metric rows
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, dataset TEXT NOT NULL,
        spec TEXT NOT NULL, spec_key TEXT NOT NULL, code_md5 TEXT NOT NULL,
        fingerprint TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, error TEXT,
        created REAL NOT NULL, started REAL, finished REAL, heartbeat REAL,
        params INTEGER, duration_s REAL, best REAL);
    CREATE INDEX runs_status ON runs(status);
    CREATE INDEX runs_dedup ON runs(spec_key, fingerprint);
    CREATE TABLE epochs (
        run_id INTEGER NOT NULL REFERENCES runs(id), epoch INTEGER NOT NULL,
        metric TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, epoch, metric));
    """,
    # 2: FLOPs, library versions, traceback, code, dedup link, write-back marker
    """
    ALTER TABLE runs ADD COLUMN flops INTEGER;
    ALTER TABLE runs ADD COLUMN versions TEXT;
    ALTER TABLE runs ADD COLUMN traceback TEXT;
    ALTER TABLE runs ADD COLUMN code TEXT;
    ALTER TABLE runs ADD COLUMN duplicate_of INTEGER;
    ALTER TABLE runs ADD COLUMN indexed_as TEXT;
    """,
    # 3: how often a run's trial was started, so resume can quarantine one that never ends
    """
    ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: the engine process running a run (host:pid:start time), so resume sees at once
    # that a run's engine died, before its heartbeat goes stale (nnrag.train._owner)
    """
    ALTER TABLE runs ADD COLUMN owner TEXT;
    """,
    # 5: the shape adapters a spec's ``shape`` chose (JSON list; NULL without a shape)
    """
    ALTER TABLE runs ADD COLUMN adapters TEXT;
    """,
    # 6: why a successful run's model is not in the index (too large, unparsable, no block)
    """
    ALTER TABLE runs ADD COLUMN not_indexed TEXT;
    """,
    # 7: why a run was stopped early (outcome ``stopped``): the decision as JSON
    """
    ALTER TABLE runs ADD COLUMN stopped_by TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
MAX_STORED_INT = 2**62  # SQLite's INTEGER overflows at 2**63; larger counts are stored NULL
STALE_AFTER_S = 60.0  # a running trial without a heartbeat for this long is orphaned
# What ``nnrag runs`` and ``nnrag leaderboard`` show of a run (and emit as JSON).
LISTING_FIELDS = ("id", "name", "dataset", "status", "outcome", "best", "params", "duration_s",
                  "duplicate_of", "error", "adapters", "indexed_as", "not_indexed", "stopped_by")
LEADERBOARD_FIELDS = ("id", "name", "dataset", "best", "params", "flops", "duration_s")


@dataclass(frozen=True)
class EpochRecord:
    """One metric of one epoch of a run."""

    epoch: int
    metric: str
    value: float | None


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``; ``epochs`` is filled by :meth:`RunStore.get` only.

    ``spec`` and ``versions`` stay the JSON text the store holds (``spec_dict`` parses it);
    ``adapters`` is the JSON list of transforms the spec's ``shape`` chose (``to_rgb``,
    ``resize_32``), None for a spec without ``shape``; :meth:`to_dict` gives it as a list.
    ``stopped_by`` is the JSON decision that stopped a ``stopped`` run (who, after which
    epoch, on what figures); :meth:`to_dict` gives it as a dict.
    """

    id: int
    name: str
    dataset: str
    spec: str
    spec_key: str
    code_md5: str
    fingerprint: str
    status: str
    outcome: str | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    params: int | None
    duration_s: float | None
    best: float | None
    flops: int | None = None
    versions: str | None = None
    traceback: str | None = None
    code: str | None = None
    duplicate_of: int | None = None
    indexed_as: str | None = None
    attempts: int = 0
    owner: str | None = None
    adapters: str | None = None
    not_indexed: str | None = None  # why the trained model is not in the index, if it is not
    stopped_by: str | None = None  # JSON: the decision that stopped the run early
    epochs: tuple[EpochRecord, ...] = ()

    @property
    def spec_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.spec))

    def to_dict(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The record as plain data (epochs as dicts), or only ``keys`` of it: the JSON form."""
        data = asdict(self)
        data["epochs"] = [asdict(e) for e in self.epochs]
        data["adapters"] = None if self.adapters is None else json.loads(self.adapters)
        data["stopped_by"] = None if self.stopped_by is None else json.loads(self.stopped_by)
        return data if keys is None else {k: data[k] for k in keys}


_COLUMNS = tuple(f.name for f in fields(RunRecord) if f.name != "epochs")


class RunStore:
    """A handle on one runs database (default ``$NNRAG_HOME/runs.db``)."""

    def __init__(self, path: str | Path, *, upgrade_to: int = SCHEMA_VERSION,
                 readonly: bool = False) -> None:
        """Open (or create) the run store at ``path``; ``readonly`` opens an existing one
        with SQLite's ``mode=ro`` and never writes (an older schema is upgraded first)."""
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise StoreMissingError(f"no run store at {self.path}; train something first "
                                    "(`nnrag train SPEC`) or give --runs an existing one")
        self._conn = self._connect(readonly)
        if readonly:
            if self.version < SCHEMA_VERSION:  # upgrade once, then read
                self._conn.close()
                RunStore(self.path).close()
                self._conn = self._connect(readonly)
            self._migrate(0)  # only checks the version
        else:
            self._migrate(upgrade_to)

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        try:
            conn, _found = connect(self.path, RUNS, readonly=readonly, create=True)
        except StoreMissingError as exc:  # an empty file
            raise StoreMissingError(f"{exc}; train into it with `nnrag train SPEC --runs "
                                    f"{self.path}`") from exc
        return conn

    def close(self) -> None:
        self._conn.close()

    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, target: int) -> None:
        current = self.version
        if current < 0 or (current == 0 and self._has_runs()):
            raise CorruptStoreError(
                f"{self.path} is damaged (run-store schema {current}): run `nnrag doctor "
                f"--runs {self.path}` to check it, then move it aside and train into a new one")
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has run-store schema {current}, newer than this nnrag "
                f"({SCHEMA_VERSION}); upgrade nnrag or use another --runs file"
            )
        for version in range(current + 1, target + 1):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={version}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _has_runs(self) -> bool:
        """Whether the runs table exists (a store at schema 0 must not have it)."""
        return self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone() is not None

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self._conn.execute(sql, params)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return int(cur.lastrowid or 0)

    # -- writes (the orchestrator only)
    def create(self, name: str, dataset: str, spec: dict[str, Any], spec_key: str,
               code_md5: str, fingerprint: str, code: str,
               adapters: Sequence[str] | None = None) -> int:
        return self._write(
            "INSERT INTO runs(name, dataset, spec, spec_key, code_md5, fingerprint, status,"
            " created, code, adapters) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (name, dataset, json.dumps(spec, sort_keys=True), spec_key, code_md5, fingerprint,
             "queued", time.time(), code, None if adapters is None else json.dumps(list(adapters))),
        )

    def start(self, run_id: int) -> None:
        """Mark the run running, owned by this process (the store's one writer)."""
        now = time.time()
        self._write("UPDATE runs SET status='running', started=?, heartbeat=?, owner=?,"
                    " attempts=attempts+1 WHERE id=?", (now, now, _owner.current(), run_id))

    def beat(self, run_ids: list[int]) -> None:
        if run_ids:
            marks = ",".join("?" * len(run_ids))
            self._write(f"UPDATE runs SET heartbeat=? WHERE id IN ({marks})",
                        (time.time(), *run_ids))

    def add_epoch(self, run_id: int, epoch: int, metrics: dict[str, float]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT OR REPLACE INTO epochs(run_id, epoch, metric, value) VALUES (?,?,?,?)",
                [(run_id, _epoch(epoch), str(k)[:100], _real(v)) for k, v in metrics.items()
                 if k != "epoch"],
            )
            self._conn.execute("UPDATE runs SET heartbeat=? WHERE id=?", (time.time(), run_id))
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def finish(self, run_id: int, result: dict[str, Any], metric: str,
               duplicate_of: int | None = None) -> None:
        """Record the outcome and every epoch row in one transaction."""
        epochs = result.get("epochs") or []
        values = [_real(e.get(metric)) for e in epochs]
        best = max((v for v in values if v is not None and v == v), default=None)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("DELETE FROM epochs WHERE run_id=?", (run_id,))
            self._conn.executemany(
                "INSERT INTO epochs(run_id, epoch, metric, value) VALUES (?,?,?,?)",
                [(run_id, _epoch(e["epoch"]), str(k)[:100], _real(v)) for e in epochs
                 for k, v in e.items() if k != "epoch" and _real(v) is not None],
            )
            self._conn.execute(
                "UPDATE runs SET status='done', outcome=?, error=?, traceback=?, finished=?,"
                " params=?, flops=?, duration_s=?, best=?, versions=?, duplicate_of=?,"
                " stopped_by=? WHERE id=?",
                (result.get("outcome"), result.get("error"), result.get("traceback"), time.time(),
                 _count(result.get("params")), _count(result.get("flops")),
                 _real(result.get("duration_s")), best,
                 json.dumps(result.get("versions") or {}), duplicate_of,
                 None if result.get("stopped_by") is None
                 else json.dumps(result["stopped_by"], sort_keys=True), run_id),
            )
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def mark_indexed(self, run_id: int, qualname: str) -> None:
        self._write("UPDATE runs SET indexed_as=?, not_indexed=NULL WHERE id=?",
                    (qualname, run_id))

    def mark_not_indexed(self, run_id: int, reason: str) -> None:
        """A successful run whose model did not reach the index, and why (shown by
        ``nnrag runs``): nothing in the index points at it."""
        self._write("UPDATE runs SET not_indexed=?, indexed_as=NULL WHERE id=?",
                    (reason[:500], run_id))

    def quarantine(self, run_id: int, reason: str) -> None:
        """Give up on a run whose trial never finishes: done, outcome ``quarantined``."""
        self._write("UPDATE runs SET status='done', outcome='quarantined', error=?, finished=?"
                    " WHERE id=?", (reason, time.time(), run_id))

    def requeue(self, run_id: int) -> None:
        self._write("UPDATE runs SET status='queued', started=NULL, heartbeat=NULL, owner=NULL"
                    " WHERE id=?", (run_id,))

    # -- reads
    def _records(self, where: str, params: tuple[Any, ...] = ()) -> list[RunRecord]:
        cur = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE {where}", params)
        return [RunRecord(*row) for row in cur.fetchall()]

    def get(self, run_id: int) -> RunRecord:
        """One run with its per-epoch metrics."""
        rows = self._records("id=?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id} in {self.path}; list them with `nnrag runs`")
        epochs = self._conn.execute(
            "SELECT epoch, metric, value FROM epochs WHERE run_id=? ORDER BY epoch, metric",
            (run_id,),
        )
        return replace(rows[0], epochs=tuple(EpochRecord(*e) for e in epochs))

    def with_epochs(self, records: Sequence[RunRecord]) -> list[RunRecord]:
        """``records`` with their per-epoch metrics filled in, in one query per 500 runs
        (what :meth:`get` does for one)."""
        rows: dict[int, list[EpochRecord]] = {}
        ids = [r.id for r in records]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            cur = self._conn.execute(
                "SELECT run_id, epoch, metric, value FROM epochs WHERE run_id IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY run_id, epoch, metric", chunk)
            for run_id, *epoch in cur.fetchall():
                rows.setdefault(run_id, []).append(EpochRecord(*epoch))
        return [replace(r, epochs=tuple(rows.get(r.id, ()))) for r in records]

    def runs(self, limit: int = 100) -> list[RunRecord]:
        """The latest runs, newest first."""
        return self._records("1 ORDER BY id DESC LIMIT ?", (limit,))

    def finished_twin(self, spec_key: str, code_md5: str, fingerprint: str) -> RunRecord | None:
        """A successful, non-duplicate run of the same spec whose code is the same (text or
        structure). Failed runs never answer: their cause may be the environment (a missing
        package, a dataset not yet installed), so the same spec runs again once it is fixed."""
        rows = self._records(
            "status='done' AND outcome='ok' AND duplicate_of IS NULL AND spec_key=?"
            " AND (code_md5=? OR fingerprint=?)"
            " ORDER BY id LIMIT 1",
            (spec_key, code_md5, fingerprint),
        )
        return rows[0] if rows else None

    def orphans(self, stale_after_s: float = STALE_AFTER_S) -> list[RunRecord]:
        """Runs left queued or running by an engine (or worker) that is gone: a running run
        whose owner process has exited, or whose heartbeat is older than ``stale_after_s``
        (an owner on another host, or a live engine whose trial stopped reporting)."""
        cutoff = time.time() - stale_after_s
        rows = self._records("status IN ('queued', 'running') ORDER BY id")
        return [r for r in rows if r.status == "queued" or (r.heartbeat or 0) < cutoff
                or _owner.alive(r.owner) is False]

    def datasets(self) -> list[str]:
        """Every dataset some run of this store was trained on."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT dataset FROM runs ORDER BY 1")]

    def best_finished(self, dataset: str, limit: int | None,
                      metric: str = "accuracy") -> RunRecord | None:
        """The best finished, successful run on ``dataset`` with the same sample ``limit``
        and ``metric`` (accuracies on another subsample do not compare): what early stopping
        measures a running trial against. Stopped and failed runs never count."""
        rows = self._records(
            "status='done' AND outcome='ok' AND duplicate_of IS NULL AND dataset=?"
            " AND best IS NOT NULL AND json_extract(spec, '$.limit') IS ?"
            " AND COALESCE(json_extract(spec, '$.metric'), 'accuracy')=?"
            " ORDER BY best DESC, id LIMIT 1", (dataset, limit, metric))
        return rows[0] if rows else None

    def leaderboard(self, dataset: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Finished, successful, non-duplicate runs, best metric first."""
        where = "status='done' AND outcome='ok' AND duplicate_of IS NULL"
        params: tuple[Any, ...] = ()
        if dataset:
            where += " AND dataset=?"
            params = (dataset,)
        return self._records(f"{where} ORDER BY best DESC, duration_s ASC LIMIT ?",
                             (*params, limit))


def _count(value: Any) -> int | None:
    """An integer the store can hold, or NULL: what reaches SQLite never overflows it."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STORED_INT:
        return value
    return None


def _real(value: Any) -> float | None:
    """A number as REAL, or None for anything else (strings, huge ints, bools)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _epoch(value: Any) -> int:
    epoch = _count(value)
    if epoch is None:
        raise StoreError(f"epoch {str(value)[:40]!r} is not a storable epoch number")
    return epoch
