"""``nnrag lemur import``: LEMUR's model zoo (and its recorded results) into the index."""

from __future__ import annotations

from pathlib import Path

import click

from nnrag.cli._common import DB, FORMAT, emit_json, out, progress, workspace


@click.group()
def lemur() -> None:
    """LEMUR (ABrain-One/nn-dataset): import its models in the contract nnrag trains."""


@lemur.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--stats", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="LEMUR's stats.jsonl.gz: each model's best recorded result per dataset is "
                   "kept as a reported figure (not measured here).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the modules are written (default: lemur/ beside the index).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Import only the first N models.")
@DB
@FORMAT
def import_(source: Path, stats: Path | None, folder: Path | None, limit: int | None,
            db: Path | None, fmt: str) -> None:
    """Index SOURCE (a folder of LEMUR modules, or LEMUR's models.jsonl.gz) as package
    `lemur`, one block per model under its LEMUR name."""
    ws = workspace(db)
    with progress("importing", fmt == "table") as update:
        done = ws.import_lemur(source, stats=stats, folder=folder, limit=limit, progress=update)
    summary = {"db": str(ws.db), "folder": done.folder, "models": done.models,
               "written": done.written, "blocks": done.index.blocks,
               "failed": done.index.failed, "reported_results": done.results,
               "datasets": list(done.datasets), "structures": done.structures,
               "configurations": done.configurations}
    if fmt == "json":
        emit_json(summary)
        return
    out.print(f"imported {done.models} LEMUR models into {ws.db} (package lemur, modules in "
              f"{done.folder}; {done.written} written, {done.index.failed} failed to parse)")
    out.print(f"{done.structures} distinct structures (names and constants abstracted), "
              f"{done.configurations} with their constants")
    if stats is not None:
        out.print(f"{done.results} reported results on {', '.join(done.datasets) or 'no dataset'}"
                  " (LEMUR's figures, not measured here)")
