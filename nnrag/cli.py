"""The ``nnrag`` command line: argument parsing and output formatting only.

Every :class:`~nnrag.exceptions.NnragError` becomes a one-paragraph message on stderr and
exit code 2; an ``index`` run that skipped files exits 1; success exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nnrag._version import __version__
from nnrag.config import default_db_path
from nnrag.exceptions import NnragError

# Piped output is read by people and tools alike: do not squeeze tables into 80 columns.
# Markup off by default: block names, errors and notes contain brackets ("[at x.py:3]",
# "nnrag[search]"); the few styled lines pass markup=True and escape what they interpolate.
out = Console(highlight=False, soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
DB = click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Index database (default: $NNRAG_DB or $NNRAG_HOME/index.db, NNRAG_HOME=~/.nnrag).",
)


def _store(db: Path | None, *, create: bool = False) -> Any:
    from nnrag.index import Store

    return Store(db or default_db_path(), create=create)


@contextmanager
def _progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal; elsewhere (logs, CI) a line every 10 seconds."""
    if not enabled:
        yield lambda done, total: None
        return
    if not err.is_terminal:
        last = [time.monotonic()]

        def log(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 10 or (done == total and done > 0 and time.monotonic() - start >= 10):
                last[0] = time.monotonic()
                err.print(f"{label}: {done}/{total} ({time.monotonic() - start:.0f}s)")

        start = time.monotonic()
        yield log
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _options(options: list[Any]) -> Any:
    """Apply a list of click options as one decorator (shared option groups)."""

    def wrap(fn: Any) -> Any:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return wrap


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NnragError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
            sys.exit(2)
        except KeyboardInterrupt:
            err.print("interrupted; everything committed so far is kept")
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="nnrag")
def main() -> None:
    """Index PyTorch code, extract self-contained blocks, and prove they run."""


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--package", "package", help="Index an installed package (located without importing it).")
@DB
@click.option("--jobs", default=2, show_default=True, help="Parser processes.")
@click.option("--max-file-mb", default=2.0, show_default=True, help="Skip larger (generated) files.")
@FORMAT
def index(path: Path | None, package: str | None, db: Path | None, jobs: int, max_file_mb: float, fmt: str) -> None:
    """Index the .py files of PATH (a repository or package folder) or of --package NAME."""
    from nnrag.exceptions import ScanError
    from nnrag.index import index_package, index_path, locate_package

    if (path is None) == (package is None):
        raise click.UsageError("give exactly one of PATH or --package NAME")
    if path is not None and not path.exists():  # fail before creating a database
        raise ScanError(f"path does not exist: {path}")
    if package is not None:
        locate_package(package)
    store = _store(db, create=True)
    with _progress("indexing", fmt == "table") as update:
        kwargs = dict(progress=lambda d, t, _p: update(d, t), jobs=jobs, max_bytes=int(max_file_mb * 1e6))
        report = index_package(store, package, **kwargs) if package else index_path(store, path, **kwargs)
    summary = {
        "package": report.package, "root": report.root, "db": str(store.path), "scanned": report.scanned,
        "unchanged": report.unchanged, "removed": report.removed, "definitions": report.definitions,
        "blocks": report.blocks, "failed": report.failed,
        "problems": [p.__dict__ for p in report.problems],
    }
    if fmt == "json":
        _emit_json(summary)
    else:
        for p in report.problems:
            where = f":{p.line}:{p.column}" if p.line else ""
            err.print(f"[yellow]skipped[/] {escape(f'{p.path}{where}: {p.kind}: {p.message}')}", markup=True)
        out.print(
            f"indexed {report.package} into {store.path}: {report.scanned} files scanned, "
            f"{report.unchanged} unchanged, {report.removed} removed, {report.failed} failed; "
            f"{report.definitions} definitions, {report.blocks} blocks"
        )
    sys.exit(1 if report.failed else 0)


@main.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout.")
@DB
@FORMAT
def extract(name: str, output: Path | None, db: Path | None, fmt: str) -> None:
    """Print NAME as one scope-closed, self-contained module."""
    from dataclasses import asdict

    from nnrag.extract import extract as do_extract

    emitted = do_extract(_store(db), name)
    if output:
        tmp = output.with_name(f".{output.name}.tmp")
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(emitted.code, encoding="utf-8")
        os.replace(tmp, output)
    if fmt == "json":
        _emit_json({**asdict(emitted), "output": str(output) if output else None})
        return
    if output:
        err.print(f"wrote {output} ({len(emitted.definitions)} definitions, {len(emitted.imports)} imports)")
    else:
        click.echo(emitted.code, nl=False)
    for gap in emitted.gaps:
        err.print(f"[yellow]unresolved:[/] {escape(gap)}", markup=True)


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_blocks", is_flag=True, help="Validate every block in the index.")
@click.option("--jobs", default=1, show_default=True, help="Sandbox workers in parallel.")
@click.option("--timeout", default=60.0, show_default=True, help="Wall-clock seconds per block.")
@click.option("--memory-mb", default=4096, show_default=True, help="Memory a block may allocate.")
@click.option("--max-rung", default="backward", show_default=True, help="Stop climbing at this rung.")
@click.option("--force", is_flag=True, help="Ignore cached results.")
@DB
@FORMAT
def validate(names: tuple[str, ...], all_blocks: bool, jobs: int, timeout: float, memory_mb: int,
             max_rung: str, force: bool, db: Path | None, fmt: str) -> None:
    """Climb the validation ladder (parse .. backward) for NAMES or --all, in the sandbox."""
    from nnrag.index import RUNGS, rung_number
    from nnrag.ladder import validate as do_validate
    from nnrag.sandbox import Limits

    if not names and not all_blocks:
        raise click.UsageError("give block NAMES or --all")
    store = _store(db)
    with _progress("validating", fmt == "table") as update:
        outcomes = do_validate(
            store, names, all_blocks=all_blocks, jobs=jobs, force=force,
            limits=Limits(wall_s=timeout, memory_mb=memory_mb), max_rung=rung_number(max_rung),
            progress=lambda d, t, _o: update(d, t),
        )
    if fmt == "json":
        _emit_json([{**o.__dict__, "rung_name": o.rung_name} for o in outcomes])
        return
    table = Table("block", "rung", "cause", "error", "cached", box=None)
    for o in outcomes:
        colour = "green" if o.rung == 6 else "yellow" if o.rung >= 3 else "red"
        error = f"{o.error_type}: {o.error_message}"[:90] if o.error_type else ""
        table.add_row(o.qualname, Text(o.rung_name, style=colour), o.cause or "", error, "yes" if o.cached else "")
    out.print(table)
    counts = {r: sum(1 for o in outcomes if o.rung >= i) for i, r in enumerate(RUNGS) if i >= 3}
    out.print(f"{len(outcomes)} blocks; reached " + ", ".join(f"{r}: {n}" for r, n in counts.items()))


@main.command()
@click.option("--pattern", help="Glob over qualified or simple names, e.g. '*Attention*'.")
@click.option("--min-rung", default="none", show_default=True, help="Only blocks validated at least this far.")
@click.option("--package", help="Only this package.")
@DB
@FORMAT
def blocks(pattern: str | None, min_rung: str, package: str | None, db: Path | None, fmt: str) -> None:
    """List indexed blocks with their validation rung."""
    from nnrag.extract import block_rows
    from nnrag.index import rung_number

    rows = block_rows(_store(db), min_rung=rung_number(min_rung), pattern=pattern, package=package)
    if fmt == "json":
        _emit_json([{k: r[k] for k in ("qualname", "name", "package", "path", "lineno", "end_lineno",
                                      "hash", "rung_name", "cause")} for r in rows])
        return
    table = Table("block", "package", "lines", "rung", "cause", box=None)
    for r in rows:
        table.add_row(r["qualname"], r["package"], f"{r['lineno']}-{r['end_lineno']}", r["rung_name"], r["cause"] or "")
    out.print(table)
    out.print(f"{len(rows)} blocks")


@main.command()
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--min-rung", default="none", show_default=True,
              help="import|instantiate|forward|backward: only blocks validated at least this far.")
@DB
@FORMAT
def export(outdir: Path, min_rung: str, db: Path | None, fmt: str) -> None:
    """Write one .py per block plus manifest.json into OUTDIR."""
    from nnrag.extract import export as do_export
    from nnrag.index import rung_number

    with _progress("exporting", fmt == "table") as update:
        result = do_export(_store(db), outdir, min_rung=rung_number(min_rung), progress=update)
    if fmt == "json":
        _emit_json(result)
    else:
        out.print(f"exported {result['count']} blocks to {result['outdir']} (manifest.json)")


@main.command()
@DB
@FORMAT
def stats(db: Path | None, fmt: str) -> None:
    """Counts per package and per rung."""
    from nnrag.extract import stats as do_stats

    data = do_stats(_store(db))
    if fmt == "json":
        _emit_json(data)
        return
    table = Table("package", "version", "modules", "definitions", "blocks", "validated",
                  "import", "instantiate", "forward", "backward", box=None)
    for name, p in data["packages"].items():
        r = p["rungs"]
        table.add_row(name, p["version"] or "", str(p["modules"]), str(p["definitions"]), str(p["blocks"]),
                      str(p["validated"]), str(r["import"]), str(r["instantiate"]), str(r["forward"]),
                      str(r["backward"]))
    out.print(table)


DEMO_MODELS = ("mlp", "lenet5", "resnet8", "resnet20", "mobilenetv2_small", "mlp_mixer_tiny")


@main.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo keeps its index and runs (default: $NNRAG_HOME/demo).")
@click.option("--workers", default=2, show_default=True, help="Trials in parallel.")
@click.option("--epochs", default=3, show_default=True)
def demo(home: Path | None, workers: int, epochs: int) -> None:
    """Index the seed corpus and the example zoo, validate the zoo, train corpus models on digits."""
    from nnrag.config import nnrag_home
    from nnrag.examples import ZOO, corpus_dir
    from nnrag.index import index_path
    from nnrag.ladder import validate as do_validate
    from nnrag.train.engine import Engine
    from nnrag.train.executors import LocalExecutor
    from nnrag.train.runstore import RunStore
    from nnrag.train.spec import parse_spec

    base = home or nnrag_home() / "demo"
    store = _store(base / "index.db", create=True)
    corpus = corpus_dir()
    for root, prefix in ((corpus, "corpus"), (ZOO, None)):
        report = index_path(store, root, prefix=prefix, package=prefix)
        out.print(f"index {root}: {report.definitions} definitions, {report.blocks} blocks "
                  f"({report.scanned} scanned, {report.unchanged} unchanged)")
    with _progress("validating the zoo") as update:
        outcomes = do_validate(store, [f"zoo.{n}" for n in ("layers.conv.SqueezeExcite", "layers.mlp.Mlp",
                               "models.resnet.ResNetTiny", "models.vit.TinyViT")],
                               jobs=workers, progress=lambda d, t, _o: update(d, t))
    out.print("validate (sandboxed ladder): " + ", ".join(f"{o.qualname.rsplit('.', 1)[-1]} {o.rung_name}"
                                                          for o in outcomes))
    specs = [parse_spec({"model": {"file": str(corpus / f"{m}.py")}, "dataset": "digits",
                         "hyperparameters": {"lr": 0.05, "momentum": 0.9, "batch_size": 64},
                         "budget": {"epochs": epochs, "wall_s": 300}}) for m in DEMO_MODELS]
    runs = RunStore(base / "runs.db")
    engine = Engine(runs, LocalExecutor(workers), index_db=store.path)

    def show(event: dict[str, Any]) -> None:
        if event["event"] == "done":
            err.print(f"  {event['name']}: {event['outcome']} in {event.get('duration_s') or 0:.1f}s")
        elif event["event"] == "duplicate":
            err.print(f"  {event['name']}: already trained (run {event['of']}), result reused")

    out.print(f"train {len(specs)} corpus models on digits, {epochs} epochs each, "
              f"{workers} sandboxed workers:")
    report = engine.train(specs, show)
    table = Table("#", "model", "test accuracy", "params", "seconds", box=None)
    for n, r in enumerate(runs.leaderboard("digits", 10), 1):
        table.add_row(str(n), r["name"], f"{r['best']:.4f}", str(r["params"]), f"{r['duration_s']:.1f}")
    out.print("leaderboard (digits, chance 0.10):")
    out.print(table)
    out.print(f"{report.trained} trained, {report.deduplicated} reused; runs in {runs.path}, "
              f"index in {store.path} (try: nnrag query 'residual block' --db {store.path})")


# Importing these modules registers their commands on ``main``.
from nnrag import _cli_generate, _cli_mutate, _cli_search, _cli_train  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    # ``python -m nnrag.cli``: run the imported module's group, which has every command.
    from nnrag.cli import main as _main

    _main()
