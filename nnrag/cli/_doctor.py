"""``nnrag doctor``: check the index and the run store without changing them."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from nnrag.cli._common import DB, FORMAT, emit_json, out, workspace

# The exit status for what doctor finds, worst first (docs/cli.md, "Exit codes").
_EXIT = {"corrupt": 3, "wrong_kind": 2, "empty": 2, "incomplete": 1}
_ADVICE = {
    "corrupt": "damaged: re-index into a new file (index) or move it aside (run store)",
    "wrong_kind": "not this kind of store: give the right file",
    "empty": "an empty file: not a store yet",
    "incomplete": "an interrupted `nnrag index`: run it again",
    "missing": "not created yet",
}


@click.command()
@DB
@click.option("--runs", "runs_db", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Run store (default: $NNRAG_HOME/runs.db).")
@click.option("--quick", is_flag=True,
              help="SQLite's quick_check instead of the full integrity_check.")
@FORMAT
def doctor(db: Path | None, runs_db: Path | None, quick: bool, fmt: str) -> None:
    """Check the index and the run store (kind, integrity, interrupted indexing); read-only.

    Exits 3 if a store is damaged, 2 if one is of the wrong kind or empty, 1 if the index
    is incomplete, else 0 (a store not created yet is fine).
    """
    reports = workspace(db, runs_db).doctor(full=not quick)
    code = max((_EXIT.get(r.status, 0) for r in reports), default=0)
    if code == 2 and any(r.status == "corrupt" for r in reports):
        code = 3
    if fmt == "json":
        emit_json({"stores": [r.to_dict() for r in reports], "exit_code": code})
    else:
        table = Table("store", "file", "status", "note", box=None)
        for r in reports:
            note = "; ".join(r.problems)[:160] or _ADVICE.get(r.status, "")
            table.add_row(r.expected, r.path, r.status, note)
        out.print(table)
    sys.exit(code)
