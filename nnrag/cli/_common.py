"""Output helpers and shared options of the ``nnrag`` command line.

Every :class:`~nnrag.exceptions.NnragError` becomes a one-paragraph message on stderr and
its ``exit_code`` (2; 3 for a damaged store); an ``index`` run that skipped files exits 1;
success exits 0.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nnrag.exceptions import NnragError

if TYPE_CHECKING:
    from nnrag.workspace import Workspace

# Piped output is read by people and tools alike: do not squeeze tables into 80 columns.
# Markup off by default: block names, errors and notes contain brackets ("[at x.py:3]",
# "nnrag[search]"); the few styled lines pass markup=True and escape what they interpolate.
out = Console(highlight=False, soft_wrap=True, markup=False,
              width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                      show_default=True)
DB = click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Index database (default: $NNRAG_DB or $NNRAG_HOME/index.db, NNRAG_HOME=~/.nnrag).",
)


def workspace(db: Path | None = None, runs: Path | None = None) -> Workspace:
    """The workspace a command works in: ``$NNRAG_HOME``, with ``--db``/``--runs`` if given."""
    from nnrag.workspace import open_workspace

    ws = open_workspace(db=db, runs=runs)
    ws.on_warning = lambda message: err.print(f"warning: {message}")
    return ws


@contextmanager
def progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal; elsewhere (logs, CI) a line every 10 seconds."""
    if not enabled:
        yield lambda done, total: None
        return
    if not err.is_terminal:
        last = [time.monotonic()]

        def log(done: int, total: int) -> None:
            if (time.monotonic() - last[0] >= 10
                    or (done == total and done > 0 and time.monotonic() - start >= 10)):
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


def options(options: list[Any]) -> Any:
    """Apply a list of click options as one decorator (shared option groups)."""

    def wrap(fn: Any) -> Any:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return wrap


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NnragError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted; everything committed so far is kept")
            sys.exit(130)
