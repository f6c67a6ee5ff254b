"""The SQLite store: schema versioning, WAL, clear errors, atomic transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nnrag.exceptions import IndexMissingError, SchemaVersionError, StoreError
from nnrag.index import RUNGS, SCHEMA_VERSION, BlockMetric, Store, rung_number, scan_source


def test_schema_version_recorded_and_wal_on(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "index.db"
    with Store(db) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        tables = {
            r["name"] for r in store._rows("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"meta", "packages", "files", "modules", "definitions", "imports"} <= tables
    assert db.exists()
    with Store(db, create=False) as again:  # reopening keeps it
        assert again.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_missing_index_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "index.db"
    with pytest.raises(IndexMissingError, match="nnrag index"):
        Store(db, create=False)
    assert not db.exists()
    assert not db.parent.exists()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    with Store(db) as store, store.transaction():
        store.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(SchemaVersionError, match="newer than this nnrag"):
        Store(db)
    assert issubclass(SchemaVersionError, StoreError)


@pytest.mark.parametrize(
    "content", [b"hello, this is not a database\n" * 200, bytes(range(256)) * 64]
)
def test_non_sqlite_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "bogus.db"
    db.write_bytes(content)
    with pytest.raises(StoreError, match="bogus.db"):
        Store(db, create=False)
    assert db.read_bytes() == content  # never overwritten


def test_transaction_rolls_back_on_any_exception(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt), store.transaction():
        store.set_meta("k", "v")
        raise KeyboardInterrupt
    assert store.get_meta("k") is None
    with store.transaction():
        store.set_meta("k", "v")
    assert store.get_meta("k") == "v"


def test_save_scan_replaces_and_delete_file_removes(store: Store) -> None:
    scan = scan_source("import torch\n\nclass A:\n    pass\n\nB = 1\n", "pkg.mod")
    with store.transaction():
        store.save_scan("/src/pkg/mod.py", "pkg", "sha-1", 10, scan)
    assert store.file_hashes("pkg") == {"/src/pkg/mod.py": "sha-1"}
    assert [r["qualname"] for r in store._rows("SELECT qualname FROM definitions ORDER BY id")] == [
        "pkg.mod.A",
        "pkg.mod.B",
    ]
    assert len(store._rows("SELECT * FROM imports")) == 1

    rescan = scan_source("class C:\n    pass\n", "pkg.mod")
    with store.transaction():
        store.save_scan("/src/pkg/mod.py", "pkg", "sha-2", 10, rescan)
    assert [r["qualname"] for r in store._rows("SELECT qualname FROM definitions")] == ["pkg.mod.C"]
    assert store._rows("SELECT * FROM imports") == []
    assert len(store._rows("SELECT * FROM modules")) == 1

    with store.transaction():
        store.delete_file("/src/pkg/mod.py")
    for table in ("files", "modules", "definitions", "imports"):
        assert store._rows(f"SELECT * FROM {table}") == []


def test_record_problem_replaces_module_and_is_listed(store: Store) -> None:
    with store.transaction():
        store.save_scan("/src/pkg/mod.py", "pkg", "sha-1", 10, scan_source("A = 1\n", "pkg.mod"))
        store.record_problem(
            "/src/pkg/mod.py", "pkg", "sha-2", "syntax_error", "bad (line 1, column 2)"
        )
    assert store._rows("SELECT * FROM modules") == []
    assert store._rows("SELECT * FROM definitions") == []
    assert store.file_problems("pkg") == {
        "/src/pkg/mod.py": ("syntax_error", "bad (line 1, column 2)")
    }
    assert store.file_problems("other") == {}


def test_concurrent_reader_sees_committed_state_only(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    with Store(db) as writer, Store(db, create=False) as reader:
        with writer.transaction():
            writer.set_meta("visible", "1")
            assert reader.get_meta("visible") is None  # WAL: readers never see half a change
        assert reader.get_meta("visible") == "1"


def test_rung_number() -> None:
    assert rung_number("forward") == RUNGS.index("forward")
    assert rung_number(3) == 3
    assert rung_number("6") == 6
    for bad in ("fastest", 7, "-1"):
        with pytest.raises(StoreError, match="unknown rung"):
            rung_number(bad)


def test_locked_or_readonly_errors_are_store_errors(tmp_path: Path) -> None:
    """sqlite3 errors during open surface as StoreError, never as raw tracebacks."""
    db = tmp_path / "index.db"
    sqlite3.connect(db).execute("CREATE TABLE meta (key TEXT)").connection.close()  # wrong shape
    with pytest.raises(StoreError):
        Store(db)


def test_a_version_4_index_upgrades_without_losing_metrics(tmp_path: Path) -> None:
    """Schema 5 added block_metrics.run_store: an older index gains it, rows kept."""
    db = tmp_path / "old.db"
    with Store(db) as store:  # make it what nnrag wrote at schema 4
        store._conn.execute("DROP TABLE block_metrics")
        store._conn.execute(
            "CREATE TABLE block_metrics (qualname TEXT NOT NULL, dataset TEXT NOT NULL,"
            " metric TEXT NOT NULL, value REAL, run_id INTEGER, params INTEGER,"
            " recorded_at REAL, PRIMARY KEY (qualname, dataset, metric))")
        store._conn.execute("INSERT INTO block_metrics VALUES"
                            " ('trained.m.Net', 'digits', 'accuracy', 0.6, 3, 650, 1.0)")
        with store.transaction():
            store.set_meta("schema_version", "4")
    with Store(db, create=False) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "5"
        (old,) = store.block_metrics("trained.m.Net")
        assert (old.value, old.run_id, old.params, old.run_store) == (0.6, 3, 650, None)
        store.record_block_metric(BlockMetric("trained.m.Net", "digits", "accuracy", 0.5, 4,
                                              650, "/runs.db"))
        assert store.block_metrics("trained.m.Net") == [old]  # worse: the best is kept
        store.record_block_metric(BlockMetric("trained.m.Net", "digits", "accuracy", 0.7, 5,
                                              650, "/runs.db"))
        (best,) = store.block_metrics("trained.m.Net")
        assert (best.value, best.run_id, best.run_store) == (0.7, 5, "/runs.db")
    with Store(db, create=False) as store:  # reopening an upgraded index changes nothing
        assert len(store.block_metrics("trained.m.Net")) == 1
