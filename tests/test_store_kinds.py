"""Every store knows its kind: a run store is never indexed into, an index never gets run
tables, read commands never create or write a file, another program's database is left as
it was, and stores written before the kind stamp are recognised and stamped on write."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nnrag.index import Store
from nnrag.train import RunStore

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py

SPEC = """
model:
  name: m
  code: |
    import torch
    from torch import nn
    class Net(nn.Module):
        def __init__(self, in_shape, out_shape, prm, device):
            super().__init__()
            self.fc = nn.Linear(64, out_shape[0])
        def forward(self, x):
            return self.fc(x.flatten(1))
dataset: digits
budget: {epochs: 1, wall_s: 20, memory_mb: 1024}
"""


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def app_id(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA application_id").fetchone()[0])
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run_store(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    runs = RunStore(path)
    runs.create("m", "digits", {"a": 1}, "key", "md5", "fp", "code")
    runs.close()
    return path


def test_each_kind_stamps_its_own_application_id(tmp_path: Path, run_store: Path) -> None:
    from nnrag._sqlite import INDEX, RUNS

    Store(tmp_path / "index.db").close()
    assert app_id(tmp_path / "index.db") == INDEX.app_id
    assert app_id(run_store) == RUNS.app_id
    assert INDEX.app_id != RUNS.app_id and 0 not in (INDEX.app_id, RUNS.app_id)


def test_index_into_a_run_store_is_refused_and_changes_nothing(
        cli: Cli, run_store: Path, zoo_tree: Path) -> None:
    before = tables(run_store)
    result = cli("index", zoo_tree, "--db", run_store)
    assert result.returncode == 2, str(result)
    assert "is a run store, not an index" in result.stderr
    assert "Traceback" not in result.stderr
    assert tables(run_store) == before


def test_train_into_an_index_is_refused_before_training(
        cli: Cli, zoo_db_copy: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    before = tables(zoo_db_copy)
    result = cli("train", spec, "--runs", zoo_db_copy, "--db", tmp_path / "other.db")
    assert result.returncode == 2, str(result)
    assert "is an index, not a run store" in result.stderr
    assert tables(zoo_db_copy) == before and "runs" not in before


def test_train_with_a_run_store_as_the_index_is_refused(
        cli: Cli, run_store: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    result = cli("train", spec, "--runs", tmp_path / "new_runs.db", "--db", run_store)
    assert result.returncode == 2, str(result)
    assert "is a run store, not an index" in result.stderr
    assert "definitions" not in tables(run_store)


@pytest.mark.parametrize("command", ["runs", "leaderboard"])
def test_reading_runs_from_an_index_writes_nothing(
        cli: Cli, zoo_db_copy: Path, command: str) -> None:
    before = digest(zoo_db_copy)
    result = cli(command, "--runs", zoo_db_copy)
    assert result.returncode == 2, str(result)
    assert "is an index, not a run store" in result.stderr
    assert digest(zoo_db_copy) == before and "runs" not in tables(zoo_db_copy)


@pytest.mark.parametrize("command", [("runs", "--runs"), ("leaderboard", "--runs"),
                                     ("stats", "--db"), ("blocks", "--db"),
                                     ("extract", "X", "--db")])
def test_read_commands_never_create_a_store(cli: Cli, tmp_path: Path,
                                            command: tuple[str, ...]) -> None:
    target = tmp_path / "missing" / "new.db"
    result = cli(*command, target)
    assert result.returncode == 2, str(result)
    assert "no " in result.stderr and str(target) in result.stderr
    assert not target.parent.exists()


@pytest.mark.parametrize("command", [("stats", "--db"), ("runs", "--runs")])
def test_read_commands_leave_an_empty_file_empty(cli: Cli, tmp_path: Path,
                                                 command: tuple[str, ...]) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    result = cli(*command, empty)
    assert result.returncode == 2, str(result)
    assert "empty file" in result.stderr
    assert empty.stat().st_size == 0


def test_another_programs_database_is_left_alone(cli: Cli, tmp_path: Path,
                                                 zoo_tree: Path) -> None:
    other = tmp_path / "notes.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.commit()
    conn.close()
    before = digest(other)
    for args in (("index", zoo_tree, "--db", other), ("stats", "--db", other),
                 ("runs", "--runs", other)):
        result = cli(*args)
        assert result.returncode == 2, str(result)
        assert "another program" in result.stderr
    assert digest(other) == before


def test_an_unstamped_store_is_recognised_and_stamped_on_write(tmp_path: Path,
                                                               zoo_db_copy: Path) -> None:
    from nnrag._sqlite import INDEX, RUNS
    from nnrag.exceptions import WrongStoreError

    runs = tmp_path / "old_runs.db"
    RunStore(runs).close()
    for path in (zoo_db_copy, runs):  # as written before the kind stamp existed
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA application_id=0")
        conn.commit()
        conn.close()
    with Store(zoo_db_copy, readonly=True) as store:  # recognised, not stamped by a read
        assert store.block_count() > 0
    RunStore(runs, readonly=True).close()
    assert app_id(zoo_db_copy) == 0 and app_id(runs) == 0
    with pytest.raises(WrongStoreError):
        RunStore(zoo_db_copy)
    with pytest.raises(WrongStoreError):
        Store(runs)
    Store(zoo_db_copy).close()
    RunStore(runs).close()
    assert app_id(zoo_db_copy) == INDEX.app_id and app_id(runs) == RUNS.app_id


def test_a_readonly_open_never_creates(tmp_path: Path) -> None:
    from nnrag.exceptions import StoreMissingError

    with pytest.raises(StoreMissingError):
        RunStore(tmp_path / "nope.db", readonly=True)
    with pytest.raises(StoreMissingError):
        Store(tmp_path / "nope.db", readonly=True)
    assert not (tmp_path / "nope.db").exists()
