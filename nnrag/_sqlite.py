"""How nnrag opens its SQLite stores: each store knows its kind, reads never write, and a
damaged file is named, never a traceback.

Every store (the index, the run store) stamps ``PRAGMA application_id`` with its own kind
when it is created; a store written before the stamp existed is recognised by its tables
and stamped on its next write-open. Opening a file of another kind (a run store as the
index, the index as a run store, some other program's database) is one
:class:`~nnrag.exceptions.WrongStoreError`, and nothing is written to it. Read commands
open with SQLite's ``mode=ro``: a missing file is an error, not a new empty store.

Every statement and every fetch goes through :class:`GuardedConnection`, which turns
SQLite's corruption errors (wherever they surface: at open or in the middle of a query)
into :class:`~nnrag.exceptions.CorruptStoreError`, naming the file and the way out
(``nnrag doctor``, re-index, another ``--runs``), and any other SQLite error into a
:class:`~nnrag.exceptions.StoreError` that names the file. :func:`check` is what
``nnrag doctor`` runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrag.exceptions import CorruptStoreError, StoreError, StoreMissingError, WrongStoreError


@dataclass(frozen=True)
class Kind:
    """One kind of nnrag store."""

    name: str
    app_id: int  # PRAGMA application_id: four ASCII letters, "nnrI" / "nnrR"
    tables: frozenset[str]  # tables that identify a store of this kind written before stamping
    thing: str  # "index", for messages
    noun: str  # "an index"
    option: str  # the CLI option that names such a file
    recover: str  # what to do when one is damaged


INDEX = Kind("index", 0x6E6E7249, frozenset({"files", "modules", "definitions"}), "index",
             "an index", "--db", "re-index into a new file (`nnrag index PATH --db NEW.db`)")
RUNS = Kind("runs", 0x6E6E7252, frozenset({"runs", "epochs"}), "run store", "a run store",
            "--runs",
            "move it aside and train into a new one (`--runs NEW.db`)")
KINDS = {k.name: k for k in (INDEX, RUNS)}

EMPTY, FOREIGN = "empty", "foreign"  # what detect() says of a file that is no nnrag store
_ERRORS = (sqlite3.Error, UnicodeDecodeError)  # the second: SQLite's message on damaged names
_HEADER = b"SQLite format 3\x00"
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)


def is_corruption(exc: Exception) -> bool:
    """Whether ``exc`` says the file is damaged (not locked, read-only or misused)."""
    if isinstance(exc, UnicodeDecodeError):  # SQLite's own message quotes damaged bytes
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return ("malformed" in text or "not a database" in text or "corrupt" in text
            or "could not decode" in text)


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` starts like an SQLite database (a text file given as --db does not)."""
    try:
        with path.open("rb") as f:
            return f.read(16) == _HEADER
    except OSError:
        return False


def translate(exc: Exception, path: Path, kind: Kind) -> StoreError:
    """The nnrag error for an SQLite error on the store at ``path``: a file that is no SQLite
    database at all is the wrong file (:class:`WrongStoreError`), damage in a real one is
    :class:`CorruptStoreError`, anything else a :class:`StoreError` naming the file."""
    detail = "".join(c if c.isprintable() else "?" for c in " ".join(str(exc).split()))
    detail = detail if len(detail) <= 100 else detail[:100] + "..."  # it may quote damaged text
    if is_corruption(exc) and not is_sqlite_file(path):
        return WrongStoreError(f"{path} is not a database (no SQLite header), not "
                               f"{kind.noun}; give {kind.option} {kind.noun}")
    if is_corruption(exc):
        return CorruptStoreError(
            f"{path} is damaged ({detail}): run `nnrag doctor {kind.option} {path}` to check it, "
            f"then {kind.recover}")
    return StoreError(f"{kind.thing} {path}: {detail}")


class _Cursor(sqlite3.Cursor):
    """A cursor whose statements and fetches raise nnrag's store errors."""

    def _fail(self, exc: Exception) -> StoreError:
        conn = self.connection
        assert isinstance(conn, GuardedConnection)
        return translate(exc, conn.store_path, conn.kind)

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            return super().execute(sql, parameters)
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        try:
            return super().executemany(sql, parameters)
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # In chunks: a per-row ``__next__`` in Python would double the cost of a scan.
        while rows := self.fetchmany(512):
            yield from rows

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except _ERRORS as exc:
            raise self._fail(exc) from exc


class GuardedConnection(sqlite3.Connection):
    """An SQLite connection to one nnrag store: every error names the store's file."""

    store_path: Path
    kind: Kind

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:  # type: ignore[override]
        return self.cursor(_Cursor).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:  # type: ignore[override]
        return self.cursor(_Cursor).executemany(sql, parameters)


def detect(conn: sqlite3.Connection) -> str:
    """The kind of store ``conn`` is open on: a kind's name, :data:`EMPTY` or :data:`FOREIGN`."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    for kind in KINDS.values():
        if app_id == kind.app_id:
            return kind.name
    if app_id:
        return FOREIGN
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return EMPTY
    for kind in KINDS.values():
        if kind.tables <= tables:
            return kind.name
    return FOREIGN


def wrong_kind(path: Path, kind: Kind, found: str) -> WrongStoreError:
    """The one message for a file that is not a store of ``kind``."""
    other = KINDS.get(found)
    what = (f"is {other.noun}, not {kind.noun}" if other is not None
            else f"is an SQLite database of another program, not {kind.noun}")
    hint = f" (it belongs to {other.option})" if other is not None else ""
    return WrongStoreError(f"{path} {what}{hint}; give {kind.option} {kind.noun} "
                           "(nothing in this file was changed)")


def connect(path: Path, kind: Kind, *, readonly: bool, create: bool) -> tuple[GuardedConnection,
                                                                               str]:
    """Open the store of ``kind`` at ``path``; returns the connection and what it held
    (``kind.name`` or :data:`EMPTY`).

    ``readonly``: SQLite's ``mode=ro`` (a missing file is :class:`StoreMissingError`).
    Otherwise the file is created when ``create`` (else missing is an error too), put in WAL
    mode and stamped with the kind's application id.
    """
    if (readonly or not create) and not path.exists():
        raise StoreMissingError(f"no {kind.thing} at {path}")
    try:
        if readonly:
            conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30,
                                   isolation_level=None, factory=GuardedConnection)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                   factory=GuardedConnection)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open {kind.thing} {path}: {exc}") from exc
    assert isinstance(conn, GuardedConnection)
    conn.store_path, conn.kind = path, kind
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        found = detect(conn)
        if found not in (kind.name, EMPTY) or (found == EMPTY and (readonly or not create)):
            raise wrong_kind(path, kind, found) if found != EMPTY else StoreMissingError(
                f"{path} is an empty file, not {kind.noun}")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if int(conn.execute("PRAGMA application_id").fetchone()[0]) != kind.app_id:
                conn.execute(f"PRAGMA application_id={kind.app_id}")
    except BaseException:
        conn.close()
        raise
    return conn, found


@dataclass(frozen=True)
class Health:
    """What ``nnrag doctor`` found in one store file."""

    path: str
    expected: str  # the kind this file was given as
    status: str  # ok | missing | empty | wrong_kind | corrupt | incomplete
    found: str | None = None  # the kind it holds, when it could be read
    problems: tuple[str, ...] = ()
    stamped: bool = False  # carries its kind's application id
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "expected": self.expected, "status": self.status,
                "found": self.found, "problems": list(self.problems), "stamped": self.stamped,
                **self.extra}


def check(path: Path, kind: Kind, *, full: bool = True) -> Health:
    """Look at the store at ``path`` without changing it: its kind, then SQLite's
    ``integrity_check`` (``quick_check`` when not ``full``)."""
    if not path.exists():
        return Health(str(path), kind.name, "missing")
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30,
                               isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        return Health(str(path), kind.name, "corrupt", problems=(f"cannot open: {exc}",))
    try:
        found = detect(conn)
        stamped = int(conn.execute("PRAGMA application_id").fetchone()[0]) == kind.app_id
        if found == EMPTY:
            return Health(str(path), kind.name, "empty", found)
        if found != kind.name:
            return Health(str(path), kind.name, "wrong_kind", found,
                          (str(wrong_kind(path, kind, found)),))
        pragma = "integrity_check" if full else "quick_check"
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}(20)").fetchall()]
        if rows != ["ok"]:
            return Health(str(path), kind.name, "corrupt", found, tuple(rows), stamped)
        return Health(str(path), kind.name, "ok", found, (), stamped)
    except _ERRORS as exc:
        return Health(str(path), kind.name, "corrupt", problems=(str(exc),))
    finally:
        conn.close()
