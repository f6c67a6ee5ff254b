"""LEMUR's model zoo in the index: its modules as blocks under their LEMUR names, and
(optionally) the results LEMUR recorded for them, marked as reported, not measured here.

LEMUR (ABrain-One/nn-dataset) ships each model as one module in the contract nnrag trains
(``supported_hyperparameters()``, ``class Net``), as a folder of ``.py`` files or, in
nnrag's shared data, as ``models.jsonl.gz`` (one ``{"model", "path", "sha256", "code"}`` per
line). Each becomes ``<folder>/<module>.py`` (the name made an identifier) and is indexed as
package ``lemur``, so search, ``--proven``, generation references and duplicates see it like
any block; its LEMUR name and path are kept as provenance. ``stats.jsonl.gz`` (one training
record per line) gives each model's best recorded value per dataset and metric, stored as a
block metric whose run store is :data:`REPORTED`: search shows it as LEMUR's figure.
Both files are streamed: the stats are 150 MB unpacked.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nnrag.exceptions import NnragError
from nnrag.index._fingerprint import fingerprint
from nnrag.index._indexer import index_path
from nnrag.index._model import IndexReport
from nnrag.index._rows import BlockMetric
from nnrag.index._store import Store

__all__ = ["REPORTED", "LemurImport", "import_lemur", "lemur_module", "read_lemur_models"]

#: The ``run_store`` of a block metric LEMUR recorded (not a run of this machine).
REPORTED = "lemur:reported"
PACKAGE = "lemur"


class LemurFormatError(NnragError):
    """A LEMUR source that is neither a folder of modules nor LEMUR's JSON lines."""


@dataclass(frozen=True)
class LemurImport:
    """What an import did: models read and written, the index report, results recorded."""

    folder: str
    models: int
    written: int
    index: IndexReport
    results: int
    datasets: tuple[str, ...]
    structures: int  # distinct structures, names and constants abstracted
    configurations: int  # distinct structures with their constants (what training dedups)


def lemur_module(name: str) -> str:
    """A LEMUR name (``ast-dimension-AlexNet-<md5>``) as a module name (an identifier)."""
    module = re.sub(r"\W", "_", name)
    return module if module[:1].isalpha() else f"m_{module}"


def read_lemur_models(source: str | Path) -> Iterator[tuple[str, str, str]]:
    """``(LEMUR name, path in LEMUR, code)`` for every model of a folder or a JSON-lines file
    (gzipped or not)."""
    path = Path(source).expanduser()
    if path.is_dir():
        for file in sorted(path.glob("*.py")):
            if file.name != "__init__.py":
                yield file.stem, str(file), file.read_text(encoding="utf-8")
        return
    if not path.is_file():
        raise LemurFormatError(f"{path}: no such file or folder")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:  # type: ignore[operator]
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield str(row["model"]), str(row.get("path", "")), str(row["code"])
            except (ValueError, KeyError, TypeError) as exc:
                raise LemurFormatError(
                    f"{path}:{number}: not a LEMUR model line (needs 'model' and 'code'): {exc}"
                ) from exc


def _write_if_changed(path: Path, code: str) -> bool:
    """Atomic write; ``False`` when the file already holds ``code`` (a re-import is cheap)."""
    if path.is_file() and path.read_text(encoding="utf-8") == code:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lemur-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(code)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def _best_results(stats: Path, names: dict[str, str]) -> dict[tuple[str, str, str], float]:
    """(qualname, dataset, metric) -> the best value LEMUR recorded, for imported models."""
    best: dict[tuple[str, str, str], float] = {}
    opener = gzip.open if stats.suffix == ".gz" else open
    with opener(stats, "rt", encoding="utf-8") as lines:  # type: ignore[operator]
        for line in lines:
            try:
                row = json.loads(line)
                qualname = names.get(str(row["model"]))
                value = float(row["accuracy"])
                if qualname is None:
                    continue
                key = (qualname, str(row["dataset"]), str(row.get("metric") or "accuracy"))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged record costs that record only
            if value == value and value > best.get(key, -1.0):  # NaN never wins
                best[key] = value
    return best


def import_lemur(
    store: Store, source: str | Path, folder: str | Path, *, stats: str | Path | None = None,
    limit: int | None = None, progress: Callable[[int, int, str], None] | None = None,
) -> LemurImport:
    """Write LEMUR's models into ``folder``, index them as package ``lemur``, and record
    ``stats``' best results as reported metrics. Re-running it updates only what changed."""
    target = Path(folder).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    provenance: dict[str, dict[str, str]] = {}
    shapes: set[str] = set()
    configs: set[str] = set()
    written = 0
    for count, (name, lemur_path, code) in enumerate(read_lemur_models(source), 1):
        if limit is not None and count > limit:
            break
        module = lemur_module(name)
        written += _write_if_changed(target / f"{module}.py", code)
        shapes.add(_fingerprint(code, keep_literals=False))
        configs.add(_fingerprint(code, keep_literals=True))
        names[name] = f"{PACKAGE}.{module}.Net"
        provenance[names[name]] = {"lemur_name": name, "lemur_path": lemur_path,
                                   "sha256": hashlib.sha256(code.encode()).hexdigest()}
    report = index_path(store, target, prefix=PACKAGE, package=PACKAGE, progress=progress)
    indexed = {q for q in provenance if store.definitions_named(q, qualified=True)}
    for qualname in indexed:  # a model LibCST cannot parse is a file problem, not a block
        store.record_provenance(qualname, "lemur", provenance[qualname])
    names = {name: q for name, q in names.items() if q in indexed}
    results: dict[tuple[str, str, str], float] = {}
    if stats is not None:
        results = _best_results(Path(stats).expanduser(), names)
        for (qualname, dataset, metric), value in results.items():
            store.record_block_metric(BlockMetric(qualname, dataset, metric, value, 0, None,
                                                  REPORTED))
    return LemurImport(str(target), len(provenance), written, report, len(results),
                       tuple(sorted({d for _, d, _ in results})), len(shapes), len(configs))


def _fingerprint(code: str, keep_literals: bool) -> str:
    """The structural fingerprint, or the text's hash for a module LibCST cannot parse."""
    try:
        return fingerprint(code, keep_literals=keep_literals)
    except Exception:  # a broken model is its own structure
        return hashlib.sha256(code.encode()).hexdigest()
