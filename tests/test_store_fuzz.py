"""Damage copies of real small stores at random places and run the read commands on them:
each ends with its result or one ``error:`` line and a documented exit code, never a
traceback. Seeded, so a failure names the case that reproduces it."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnrag.cli import main
from nnrag.index import Store
from nnrag.train import RunStore

CASES = int(os.environ.get("NNRAG_FUZZ_CASES", "36"))  # more: NNRAG_FUZZ_CASES=600
DOCUMENTED = {0, 1, 2, 3}  # docs/cli.md, "Exit codes"
INDEX_COMMANDS = (("extract", "zoo.layers.conv.SqueezeExcite"), ("blocks",), ("stats",),
                  ("stats", "--format", "json"), ("doctor", "--quick"))
RUN_COMMANDS = (("runs", "--limit", "500"), ("show", "7"), ("leaderboard",),
                ("doctor", "--quick"))


@pytest.fixture(scope="module")
def originals(zoo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real index (the zoo) and a real run store, each folded into one file."""
    base = tmp_path_factory.mktemp("fuzz_originals")
    index = base / "index.db"
    with Store(zoo_db) as store:
        store.checkpoint()
    shutil.copyfile(zoo_db, index)
    runs_path = base / "runs.db"
    runs = RunStore(runs_path)
    for n in range(120):
        run = runs.create(f"model{n}", "digits", {"n": n, "lr": 0.1 * n}, f"key{n}", "md5",
                          "fp", f"# model {n}\n" * 20)
        runs.finish(run, {"outcome": "ok" if n % 3 else "error", "params": 1000 + n,
                          "duration_s": 1.5, "epochs": [{"epoch": e, "accuracy": 0.1 * e}
                                                        for e in range(1, 4)]}, "accuracy")
    runs._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    runs.close()
    return {"index": index, "runs": runs_path}


def damaged_copy(original: Path, target: Path, rng: random.Random, header: bool = False) -> str:
    """Copy ``original`` to ``target`` with up to 4 KB overwritten at a random offset past
    the file header (``header``: up to 8 bytes of the 100-byte header); returns what was
    done (for the failure message)."""
    data = bytearray(original.read_bytes())
    if header:
        start = rng.randrange(0, 100)
        end = start + rng.randint(1, 8)
    else:
        start = rng.randrange(100, len(data) - 1)
        end = min(len(data), start + rng.randint(1, 4096))
    if rng.random() < 0.5:
        data[start:end] = bytes(b ^ 0xFF for b in data[start:end])
        how = "flipped"
    else:
        data[start:end] = rng.randbytes(end - start)
        how = "random"
    target.write_bytes(bytes(data))
    return f"{how} bytes {start}..{end} of {len(data)}"


@pytest.mark.parametrize("case", range(CASES))
def test_read_commands_on_a_damaged_store_fail_cleanly(
        case: int, originals: dict[str, Path], tmp_path: Path) -> None:
    rng = random.Random(1700 + case)
    kind = "index" if case % 2 == 0 else "runs"
    target = tmp_path / f"{kind}.db"
    what = damaged_copy(originals[kind], target, rng, header=case % 4 == 3)
    option = "--db" if kind == "index" else "--runs"
    commands = INDEX_COMMANDS if kind == "index" else RUN_COMMANDS
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(main, [*command, option, str(target)])
        where = f"case {case} ({kind}: {what}), nnrag {' '.join(command)}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{where}: {result.exc_info}")
        assert result.exit_code in DOCUMENTED, f"{where}: exit {result.exit_code}"
        assert "Traceback" not in result.stderr, f"{where}: {result.stderr}"
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if result.exit_code in (2, 3) and command[0] != "doctor":
            assert len(errors) == 1, f"{where}: {result.stderr}"
        if result.exit_code == 3 and command[0] != "doctor":
            assert "nnrag doctor" in errors[0] and str(target) in errors[0], where


def test_the_fuzz_cases_do_find_damage(originals: dict[str, Path], tmp_path: Path) -> None:
    """The cases are not all harmless: ``nnrag doctor`` finds many of them damaged."""
    runner = CliRunner()
    found = 0
    for case in range(CASES):
        rng = random.Random(1700 + case)
        kind = "index" if case % 2 == 0 else "runs"
        target = tmp_path / f"{case}.db"
        damaged_copy(originals[kind], target, rng, header=case % 4 == 3)
        option = "--db" if kind == "index" else "--runs"
        result = runner.invoke(main, ["doctor", option, str(target)])
        found += result.exit_code == 3
    assert found >= CASES // 3, found  # 22 of 36 when written
