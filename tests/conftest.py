"""Shared fixtures: an isolated ``NNRAG_HOME`` for every test and a pre-built zoo index.

Kept cheap on purpose: nothing here imports torch unless it is already installed, and the
zoo is indexed once per session (the block marker imports torch once in this process).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:  # tests run on a couple of shared cores; torch's default thread pool only hurts there
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency, but stay importable
    pass

from nnrag.examples import ZOO
from nnrag.index import Store, index_path


@pytest.fixture(autouse=True)
def nnrag_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own NNRAG_HOME, so nothing ever touches ``~/.nnrag``."""
    home = tmp_path_factory.mktemp("nnrag_home")
    monkeypatch.setenv("NNRAG_HOME", str(home))
    monkeypatch.delenv("NNRAG_DB", raising=False)
    return home


@pytest.fixture(scope="session")
def zoo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled zoo (at ``<tmp>/zoo``) indexed into ``<tmp>/zoo.db``.

    Shared by the whole session: treat it as read-only (copy it with ``zoo_db_copy``).
    """
    base = tmp_path_factory.mktemp("zoo_index")
    tree = base / "zoo"
    shutil.copytree(ZOO, tree, ignore=shutil.ignore_patterns("__pycache__"))
    db = base / "zoo.db"
    with Store(db) as store:
        report = index_path(store, tree)
    assert report.failed == 0, report.problems
    return db


@pytest.fixture
def zoo_db_copy(zoo_db: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the session's zoo index."""
    with Store(zoo_db) as store:  # fold the WAL into the main file before copying it
        store.checkpoint()
    target = tmp_path / "zoo.db"
    shutil.copyfile(zoo_db, target)
    return target


@pytest.fixture
def zoo_tree(tmp_path: Path) -> Path:
    """A private, writable copy of the zoo source tree at ``tmp_path / 'zoo'``."""
    tree = tmp_path / "zoo"
    shutil.copytree(ZOO, tree, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:  # shown by pytest when an assertion on the result fails
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@pytest.fixture
def cli(nnrag_home: Path) -> Callable[..., CliResult]:
    """Run the real CLI in a subprocess: ``cli("index", path, "--format", "json")``."""

    def run(*args: object, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        full_env = {k: v for k, v in os.environ.items() if k != "NNRAG_DB"}
        full_env.update({"NNRAG_HOME": str(nnrag_home), "COLUMNS": "200", **(env or {})})
        proc = subprocess.run(
            [sys.executable, "-m", "nnrag.cli", *map(str, args)],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_tree(tmp_path: Path) -> Callable[[dict[str, str], str], Path]:
    """``write_tree({"pkg/__init__.py": "", "pkg/a.py": "..."})`` -> the root folder."""

    def write(files: dict[str, str], root: str = "tree") -> Path:
        base = tmp_path / root
        for rel, text in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        base.mkdir(parents=True, exist_ok=True)
        return base

    return write


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store in ``tmp_path``."""
    with Store(tmp_path / "index.db") as s:
        yield s


FAKEVISION = Path(__file__).resolve().parent / "fixtures" / "fakevision"


@pytest.fixture(scope="session")
def fakevision_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of ``tests/fixtures/fakevision`` (a torchvision-like package that is not
    installed), as ``ws.index(source, package=..., prefix=...)`` builds one from a wheel.

    Shared by the whole session: treat it as read-only.
    """
    base = tmp_path_factory.mktemp("fakevision_index")
    tree = base / "src" / "fakevision"
    shutil.copytree(FAKEVISION, tree, ignore=shutil.ignore_patterns("__pycache__"))
    db = base / "fakevision.db"
    with Store(db) as store:
        report = index_path(store, tree, prefix="fakevision", package="fakevision")
    assert report.failed == 0, report.problems
    return db
