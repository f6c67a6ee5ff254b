"""Write valid mutants to disk and to the index, with their parent recorded (lineage)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from nnrag.mutate._engine import Mutant, MutationReport


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_").lower() or "model"


def mutant_module(report: MutationReport, mutant: Mutant) -> str:
    return f"{_slug(report.target.label)}_{mutant.kind}_{mutant.md5[:8]}"


def write_files(report: MutationReport, folder: Path) -> list[Path]:
    """One ``.py`` per valid mutant (atomic writes); an existing identical file is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for mutant in report.valid:
        path = folder / f"{mutant_module(report, mutant)}.py"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(mutant.source, encoding="utf-8")
            tmp.replace(path)
        written.append(path)
    return written


def write_index(report: MutationReport, db: Path, home: Path) -> list[str]:
    """Index the valid mutants as package ``mutants`` and record each one's parent."""
    from nnrag.index import Store, index_path

    folder = home / "mutants"
    files = write_files(report, folder)
    (folder / "__init__.py").touch()
    store = Store(db)
    try:  # only this run's files: another home's mutants in a shared index stay
        index_path(store, folder, prefix="mutants", package="mutants",
                   only=[folder / "__init__.py", *files])
        names = []
        for mutant in report.valid:
            child = f"mutants.{mutant_module(report, mutant)}.{report.target.block or 'Net'}"
            store.record_provenance(child, "mutate", {
                "parent": report.target.origin, "kind": mutant.kind,
                "description": mutant.description, "params": mutant.params,
                "parent_params": report.params, "recorded_at": time.time(),
            })
            names.append(child)
        return names
    finally:
        store.close()
