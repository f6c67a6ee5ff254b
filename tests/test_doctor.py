"""Damaged and incomplete stores: one clear error (exit 3) naming the file and
``nnrag doctor``, a warning for an interrupted index, and ``nnrag doctor`` itself."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nnrag.index._indexer as indexer
from nnrag.index import Store, index_path
from nnrag.train import RunStore

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py


def damage(path: Path, table: str) -> None:
    """Flip every byte of the last 4 KB page of ``table`` (a page the commands read: a flip
    in a page no query touches goes unnoticed until ``nnrag doctor``)."""
    conn = sqlite3.connect(path)
    page = conn.execute("SELECT max(pageno) FROM dbstat WHERE name=?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = (page - 1) * size
    data[start:start + size] = bytes(b ^ 0xFF for b in data[start:start + size])
    path.write_bytes(bytes(data))


@pytest.fixture
def broken_index(zoo_db_copy: Path) -> Path:
    damage(zoo_db_copy, "definitions")
    return zoo_db_copy


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize("command", [("extract", "zoo.layers.conv.SqueezeExcite"), ("blocks",),
                                     ("stats",), ("validate", "--all")])
def test_a_damaged_index_is_one_error_with_exit_3(cli: Cli, broken_index: Path,
                                                   command: tuple[str, ...]) -> None:
    result = cli(*command, "--db", broken_index)
    assert result.returncode == 3, str(result)
    line = one_error_line(result.stderr)
    assert str(broken_index) in line and "nnrag doctor" in line and "re-index" in line


def test_a_damaged_run_store_is_one_error_with_exit_3(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    runs = RunStore(path)
    for n in range(400):  # enough rows for several pages
        runs.create(f"model{n}", "digits", {"n": n, "pad": "x" * 200}, f"k{n}", "md5", "fp",
                    "code " * 50)
    runs._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    runs.close()
    damage(path, "runs")
    for command in (("runs", "--limit", "1000"), ("show", "400")):
        result = cli(*command, "--runs", path)
        assert result.returncode == 3, str(result)
        line = one_error_line(result.stderr)
        assert str(path) in line and "nnrag doctor" in line


def test_doctor_reports_each_store(cli: Cli, zoo_db_copy: Path, tmp_path: Path) -> None:
    result = cli("doctor", "--db", zoo_db_copy, "--runs", tmp_path / "runs.db",
                 "--format", "json")
    assert result.returncode == 0, str(result)
    stores = {s["expected"]: s for s in json.loads(result.stdout)["stores"]}
    assert stores["index"]["status"] == "ok" and stores["index"]["found"] == "index"
    assert stores["runs"]["status"] == "missing"
    assert not (tmp_path / "runs.db").exists()  # doctor creates nothing


def test_doctor_finds_damage_and_exits_3(cli: Cli, broken_index: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs.db"
    RunStore(runs).close()
    result = cli("doctor", "--db", broken_index, "--runs", runs, "--format", "json")
    assert result.returncode == 3, str(result)
    stores = {s["expected"]: s for s in json.loads(result.stdout)["stores"]}
    assert stores["index"]["status"] == "corrupt" and stores["index"]["problems"]
    assert stores["runs"]["status"] == "ok"
    table = cli("doctor", "--db", broken_index, "--runs", runs, "--quick")
    assert table.returncode == 3 and "corrupt" in table.stdout


def test_doctor_names_a_store_of_the_wrong_kind(cli: Cli, zoo_db_copy: Path) -> None:
    result = cli("doctor", "--db", zoo_db_copy, "--runs", zoo_db_copy, "--format", "json")
    assert result.returncode == 2, str(result)
    stores = {s["expected"]: s for s in json.loads(result.stdout)["stores"]}
    assert stores["runs"]["status"] == "wrong_kind" and stores["runs"]["found"] == "index"


def test_an_interrupted_index_warns_until_it_is_indexed_again(
        cli: Cli, zoo_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "index.db"

    def killed(store: Store) -> int:  # the process dies after the files are committed
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "mark_blocks", killed)
    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        index_path(store, zoo_tree)
    monkeypatch.undo()
    for command in (("blocks",), ("stats",)):
        result = cli(*command, "--db", db)
        assert result.returncode == 0, str(result)
        assert "warning: index is incomplete" in result.stderr and "nnrag index" in result.stderr
    doctor = cli("doctor", "--db", db, "--format", "json")
    assert doctor.returncode == 1, str(doctor)
    assert json.loads(doctor.stdout)["stores"][0]["status"] == "incomplete"
    again = cli("index", zoo_tree, "--db", db)
    assert again.returncode == 0 and "10 blocks" in again.stdout, str(again)
    result = cli("blocks", "--db", db)
    assert "warning" not in result.stderr and "10 blocks" in result.stdout, str(result)


def test_a_damaged_copy_is_named_by_the_python_api(broken_index: Path, tmp_path: Path) -> None:
    import nnrag
    from nnrag.exceptions import CorruptStoreError

    target = tmp_path / "copy.db"
    shutil.copyfile(broken_index, target)
    ws = nnrag.open_workspace(tmp_path, db=target)
    with pytest.raises(CorruptStoreError, match="copy.db"):
        ws.blocks()
