"""The pool of proven programs the learning loop learns from: corpus, LEMUR zoo, trained runs.

Each source yields :class:`Program` s in the LEMUR contract; whether one really runs on the
task's shape is decided later by the sandbox probe (:mod:`nnrag.learn.dataset`). The LEMUR
file is streamed (it is never copied); the run store is read only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nnrag.exceptions import NnragError

_UUID = re.compile(r"-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$|-[0-9a-f]{32}$")


@dataclass(frozen=True)
class Program:
    """A model module in the contract and where it came from."""

    name: str
    family: str
    code: str
    source: str  # corpus:<file> | lemur:<name> | run:<id>
    score: float | None = None

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()


def family_of(name: str) -> str:
    """A model family for held-out splits: ``resnet20`` and ``resnet8`` are one, so are
    LEMUR's ``ast-dimension-AlexNet-<uuid>`` variants of AlexNet and its ``ga-<n>``
    genetic-search models."""
    base = _UUID.sub("", name)
    parts = base.split("-")
    if parts[0] == "ast" and len(parts) >= 3:
        base = parts[2]
    elif parts[0] in ("ga", "rag") and len(parts) > 1:
        base = parts[0]
    base = re.sub(r"_(small|tiny|lite|narrow|\d+)$", "", base.lower())
    return re.sub(r"[\d_]+$", "", base) or base or name.lower()


def corpus_programs(kind: str, folder: Path | None = None) -> Iterator[Program]:
    """The seed corpus's models whose ``INPUT_KINDS`` accept ``kind`` (image, signal)."""
    from nnrag.examples import corpus_dir
    from nnrag.train.contract import input_kinds

    try:
        root = folder or corpus_dir()
    except NnragError:
        return
    for path in sorted(root.glob("*.py")):
        code = path.read_text(encoding="utf-8")
        if kind in input_kinds(code):
            yield Program(path.stem, family_of(path.stem), code, f"corpus:{path.name}")


def lemur_programs(source: Path, limit: int | None = None) -> Iterator[Program]:
    """LEMUR's models (folder or JSON lines, streamed); the first ``limit`` when given."""
    from nnrag.index import read_lemur_models

    for n, (name, _path, code) in enumerate(read_lemur_models(source)):
        if limit is not None and n >= limit:
            return
        yield Program(name, family_of(name), code, f"lemur:{name}")


def run_programs(runs_db: Path, dataset: str | None = None,
                 limit: int = 10_000) -> Iterator[Program]:
    """Models that trained (outcome ok) in the run store, best first."""
    if not runs_db.exists():
        return
    from nnrag.train.runstore import RunStore

    runs = RunStore(runs_db)
    try:
        rows = runs.leaderboard(dataset, limit)
    finally:
        runs.close()
    for row in rows:
        if row.code and "class Net" in row.code:
            yield Program(row.name, family_of(row.name), row.code, f"run:{row.id}", row.best)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
