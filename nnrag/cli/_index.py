"""Index commands: index, extract, validate, blocks, export, stats."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nnrag.cli._common import (
    DB,
    FILE_MB,
    FORMAT,
    MEMORY_MB,
    TIMEOUT_S,
    WORKERS,
    echo_code,
    emit_json,
    err,
    out,
    progress,
    workspace,
    write_atomic,
)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--package", "package",
              help="Index an installed package (located without importing it).")
@DB
@click.option("--jobs", default=2, show_default=True, type=WORKERS,
              help="Parser processes (1-256).")
@click.option("--max-file-mb", default=2.0, show_default=True, type=FILE_MB,
              help="Skip larger (generated) files.")
@FORMAT
def index(path: Path | None, package: str | None, db: Path | None, jobs: int, max_file_mb: float,
          fmt: str) -> None:
    """Index the .py files of PATH (a repository or package folder) or of --package NAME."""
    if (path is None) == (package is None):
        raise click.UsageError("give exactly one of PATH or --package NAME")
    ws = workspace(db)
    with progress("indexing", fmt == "table") as update:
        report = ws.index(path, package=package, jobs=jobs, max_file_mb=max_file_mb,
                          progress=update)
    summary = {
        "package": report.package, "root": report.root, "db": str(ws.db), "scanned": report.scanned,
        "unchanged": report.unchanged, "removed": report.removed, "definitions": report.definitions,
        "blocks": report.blocks, "failed": report.failed,
        "problems": [p.__dict__ for p in report.problems],
    }
    if fmt == "json":
        emit_json(summary)
    else:
        for p in report.problems:
            where = f":{p.line}:{p.column}" if p.line else ""
            err.print(f"[yellow]skipped[/] {escape(f'{p.path}{where}: {p.kind}: {p.message}')}",
                      markup=True)
        out.print(
            f"indexed {report.package} into {ws.db}: {report.scanned} files scanned, "
            f"{report.unchanged} unchanged, {report.removed} removed, {report.failed} failed; "
            f"{report.definitions} definitions, {report.blocks} blocks"
        )
    sys.exit(1 if report.failed else 0)


@click.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE instead of stdout.")
@DB
@FORMAT
def extract(name: str, output: Path | None, db: Path | None, fmt: str) -> None:
    """Print NAME as one scope-closed, self-contained module."""
    from dataclasses import asdict

    emitted = workspace(db).extract(name)
    if output:
        write_atomic(output, emitted.code)
    if fmt == "json":
        emit_json({**asdict(emitted), "output": str(output) if output else None})
        return
    if output:
        err.print(f"wrote {output} ({len(emitted.definitions)} definitions, "
                  f"{len(emitted.imports)} imports)")
    else:
        echo_code(emitted.code)
    for gap in emitted.gaps:
        err.print(f"[yellow]unresolved:[/] {escape(gap)}", markup=True)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_blocks", is_flag=True, help="Validate every block in the index.")
@click.option("--jobs", default=1, show_default=True, type=WORKERS,
              help="Sandbox workers in parallel (1-256).")
@click.option("--timeout", default=60.0, show_default=True, type=TIMEOUT_S,
              help="Wall-clock seconds per block (> 0, at most a week).")
@click.option("--memory-mb", default=4096, show_default=True, type=MEMORY_MB,
              help="Memory a block may allocate (1 .. 1048576).")
@click.option("--max-rung", default="backward", show_default=True,
              help="Stop climbing at this rung.")
@click.option("--force", is_flag=True, help="Ignore cached results.")
@DB
@FORMAT
def validate(names: tuple[str, ...], all_blocks: bool, jobs: int, timeout: float, memory_mb: int,
             max_rung: str, force: bool, db: Path | None, fmt: str) -> None:
    """Climb the validation ladder (parse .. backward) for NAMES or --all, in the sandbox."""
    from nnrag.index import RUNGS

    if not names and not all_blocks:
        raise click.UsageError("give block NAMES or --all")
    ws = workspace(db)
    with progress("validating", fmt == "table") as update:
        outcomes = ws.validate(names, all_blocks=all_blocks, jobs=jobs, timeout=timeout,
                               memory_mb=memory_mb, max_rung=max_rung, force=force,
                               progress=update)
    if fmt == "json":
        emit_json([{**o.__dict__, "rung_name": o.rung_name} for o in outcomes])
        return
    table = Table("block", "rung", "cause", "error", "cached", box=None)
    for o in outcomes:
        colour = "green" if o.rung == 6 else "yellow" if o.rung >= 3 else "red"
        error = f"{o.error_type}: {o.error_message}"[:90] if o.error_type else ""
        table.add_row(o.qualname, Text(o.rung_name, style=colour), o.cause or "", error,
                      "yes" if o.cached else "")
    out.print(table)
    counts = {r: sum(1 for o in outcomes if o.rung >= i) for i, r in enumerate(RUNGS) if i >= 3}
    out.print(f"{len(outcomes)} blocks; reached "
              + ", ".join(f"{r}: {n}" for r, n in counts.items()))


@click.command()
@click.option("--pattern", help="Glob over qualified or simple names, e.g. '*Attention*'.")
@click.option("--min-rung", default="none", show_default=True,
              help="Only blocks validated at least this far.")
@click.option("--package", help="Only this package.")
@DB
@FORMAT
def blocks(pattern: str | None, min_rung: str, package: str | None, db: Path | None,
           fmt: str) -> None:
    """List indexed blocks with their validation rung."""
    rows = workspace(db).blocks(pattern, min_rung=min_rung, package=package)
    if fmt == "json":
        emit_json([{k: getattr(r, k) for k in ("qualname", "name", "package", "path", "lineno",
                                               "end_lineno", "hash", "rung_name", "cause")}
                   for r in rows])
        return
    table = Table("block", "package", "lines", "rung", "cause", box=None)
    for r in rows:
        table.add_row(r.qualname, r.package, f"{r.lineno}-{r.end_lineno}", r.rung_name,
                      r.cause or "")
    out.print(table)
    out.print(f"{len(rows)} blocks")


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--min-rung", default="none", show_default=True,
              help="import|instantiate|forward|backward: only blocks validated at least this far.")
@click.option("--include-broken", is_flag=True,
              help="Also write blocks whose validation failed below import or for a "
                   "resolver_gap (marked broken in the manifest); skipped by default.")
@DB
@FORMAT
def export(outdir: Path, min_rung: str, include_broken: bool, db: Path | None,
           fmt: str) -> None:
    """Write one .py per block plus manifest.json into OUTDIR."""
    ws = workspace(db)
    with progress("exporting", fmt == "table") as update:
        result = ws.export(outdir, min_rung=min_rung, include_broken=include_broken,
                           progress=update)
    for s in result.skipped:
        err.print(f"[yellow]skipped[/] {escape(f'{s.qualname}: {s.reason}')}", markup=True)
    if fmt == "json":
        emit_json({"outdir": str(result.outdir), "count": result.count,
                   "skipped": [{"qualname": s.qualname, "reason": s.reason}
                               for s in result.skipped]})
        return
    out.print(f"exported {result.count} blocks to {result.outdir} (manifest.json)")
    if result.skipped:
        out.print(f"skipped {len(result.skipped)} broken blocks (validation failed below "
                  "import or for a resolver_gap); --include-broken writes them")


@click.command()
@DB
@FORMAT
def stats(db: Path | None, fmt: str) -> None:
    """Counts per package and per rung."""
    packages = workspace(db).stats()
    if fmt == "json":
        emit_json({"packages": {name: p.as_dict() for name, p in packages.items()}})
        return
    table = Table("package", "version", "modules", "definitions", "blocks", "validated",
                  "import", "instantiate", "forward", "backward", box=None)
    for name, p in packages.items():
        r = p.rungs
        table.add_row(name, p.version or "", str(p.modules), str(p.definitions), str(p.blocks),
                      str(p.validated), str(r["import"]), str(r["instantiate"]), str(r["forward"]),
                      str(r["backward"]))
    out.print(table)
