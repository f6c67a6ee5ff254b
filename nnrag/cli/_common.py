"""Output helpers and shared options of the ``nnrag`` command line.

Every :class:`~nnrag.exceptions.NnragError` becomes a one-paragraph message on stderr and
its ``exit_code`` (2; 3 for a damaged store), and so does every usage error (a bad option
value, out of its range) and an output file or folder that cannot be written (exit 2); an
``index`` run that skipped files exits 1; success exits 0.

Numeric options take their types from here (:data:`POSITIVE_INT`, :data:`SEED`, ...), so a
value that would only fail deep inside a command (or, worse, be cached) is refused before
anything runs. Everything printed goes through :class:`SafeConsole`: block, model and file
names come from untrusted code, and a control character in them must not reach a terminal.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from nnrag.exceptions import NnragError

if TYPE_CHECKING:
    from nnrag.workspace import Workspace

# C0 controls but newline and tab, DEL, C1 controls (0x9b is a one-byte CSI on some
# terminals), and the bidirectional overrides that make text read other than it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), inert."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                        else f"\\u{ord(m[0]):04x}", text)


class SafeConsole(Console):
    """A rich console that never writes a control character it was given.

    Every string rich prints (arguments of ``print``, table cells, rule titles) becomes a
    :class:`~rich.text.Text` through :meth:`render_str`, so escaping there covers them all;
    ``Text`` objects built by hand are escaped in :meth:`print`. Rich's own styling (colour
    codes) is added after this, so it still works on a terminal.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(safe_text(text), **kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        clean = [_safe_text_object(o) if isinstance(o, Text) else o for o in objects]
        super().print(*clean, **kwargs)


def _safe_text_object(text: Text) -> Text:
    plain = safe_text(text.plain)
    if plain == text.plain:
        return text
    return Text(plain, style=text.style)


# Piped output is read by people and tools alike: do not squeeze tables into 80 columns.
# Markup off by default: block names, errors and notes contain brackets ("[at x.py:3]",
# "nnrag[search]"); the few styled lines pass markup=True and escape what they interpolate.
out = SafeConsole(highlight=False, soft_wrap=True, markup=False,
                  width=None if sys.stdout.isatty() else 200)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True, markup=False)


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` and ``inf`` (``nan`` passes
    every comparison of a plain range)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


# The ranges every command's options are checked against (docs/cli.md lists them).
POSITIVE_INT = click.IntRange(min=1, max=2**31 - 1)
NON_NEGATIVE_INT = click.IntRange(min=0, max=2**62)
WORKERS = click.IntRange(min=1, max=256)
SEED = click.IntRange(min=0, max=2**32 - 1)  # what numpy, torch and scikit-learn all take
RUN_ID = click.IntRange(min=1, max=2**63 - 1)
TIMEOUT_S = FiniteFloatRange(min=0, max=7 * 24 * 3600, min_open=True)
MEMORY_MB = click.IntRange(min=1, max=1 << 20)
FILE_MB = FiniteFloatRange(min=0, max=1 << 20)
NON_NEGATIVE_FLOAT = FiniteFloatRange(min=0, max=1e6)
PROBABILITY = FiniteFloatRange(min=0, max=1, min_open=True)

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
    """JSON on stdout; ``json.dumps`` escapes control characters (``\\u001b``) itself."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def echo_code(code: str) -> None:
    """Source code on stdout: exact when piped (it is a file), inert on a terminal."""
    click.echo(safe_text(code) if sys.stdout.isatty() else code, nl=False)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename:
    readers see the old file or the new one, never half of it. An unwritable place is an
    :class:`~nnrag.exceptions.OutputError`, one line at the CLI."""
    from nnrag.exceptions import OutputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _error(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    sys.exit(code)


class Group(click.Group):
    """The ``nnrag`` group: every failure it knows of is one line on stderr, never a
    traceback (see the module docstring for the exit codes)."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:  # click's own is four lines, with the usage text
            where = exc.ctx.command_path if exc.ctx else "nnrag"
            _error(f"{' '.join(exc.format_message().split())} (see: {where} --help)",
                   exc.exit_code)
        except click.ClickException as exc:
            _error(" ".join(exc.format_message().split()), exc.exit_code)
        except click.Abort:
            _error("aborted", 1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NnragError as exc:
            _error(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted; everything committed so far is kept")
            sys.exit(130)
        except OSError as exc:  # a file or folder the command had to write or read
            if exc.errno == errno.EPIPE:  # stdout closed early (| head): click's to handle
                raise
            where = f" {exc.filename}" if exc.filename else ""
            _error(f"cannot use{where}: {exc.strerror or exc}", 2)
