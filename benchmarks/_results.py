"""The results files: one JSON per benchmark in ``benchmarks/results/<name>.json``.

A figure in the docs is only as good as what it says it was measured on, so every run is
stored with the commit it ran at, the machine and the command, and the docs' tables are
rendered from these files (``benchmarks/render.py``) instead of being typed in by hand.

Format::

    {"benchmark": NAME, "command": "python benchmarks/...", "machine": "2 cores, ...",
     "runs": [{"label": ..., "commit": ..., "date": ..., ...figures}, ...]}

The last run is the current figure; earlier ones stay as history. A run may override
``command`` and ``machine`` and may carry a ``note`` and ``load_average``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent
# keys of a run that describe it rather than hold a figure
RUN_METADATA = ("label", "commit", "date", "machine", "command", "note", "load_average")
FILE_KEYS = ("benchmark", "command", "machine", "runs")


def machine() -> str:
    """A one-line description of this machine: what a timing needs next to it."""
    accel = "CPU only"
    try:
        import torch

        if torch.cuda.is_available():
            accel = f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return (f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {accel}")


def commit() -> str:
    """The short commit of the checkout, marked when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".",
                                ":(exclude)benchmarks/results"], cwd=REPO).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+uncommitted" if dirty else head


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every benchmark shares for appending its run to the results file."""
    ap.add_argument("--record", metavar="LABEL",
                    help="append this run's figures to benchmarks/results/<name>.json under "
                         "LABEL, with the commit, machine and command")
    ap.add_argument("--note", help="with --record: what the figures need beside them "
                                   "(e.g. 'cores shared with other work')")


def command_line(script: str, argv: list[str]) -> str:
    """The command that reproduces a run: the script's arguments less --record and --note."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--record", "--note"):
            skip = True
            continue
        if arg.startswith(("--record=", "--note=")):
            continue
        kept.append(arg)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *kept])


def record(name: str, label: str, figures: dict[str, Any], *, script: str,
           argv: list[str] | None = None, note: str | None = None,
           results_dir: Path = RESULTS) -> Path:
    """Append one run to ``results_dir/<name>.json`` (created when missing)."""
    path = results_dir / f"{name}.json"
    command = command_line(script, sys.argv[1:] if argv is None else argv)
    here = machine()
    doc: dict[str, Any] = (json.loads(path.read_text()) if path.exists() else
                           {"benchmark": name, "command": command, "machine": here, "runs": []})
    clash = sorted(set(figures) & set(RUN_METADATA))
    if clash:
        raise ValueError(f"figures may not use the run's metadata keys: {clash}")
    run: dict[str, Any] = {"label": label, "commit": commit(),
                           "date": datetime.date.today().isoformat()}
    if command != doc["command"]:
        run["command"] = command
    if here != doc["machine"]:
        run["machine"] = here
    if note:
        run["note"] = note
    run["load_average"] = [round(x, 2) for x in os.getloadavg()]
    doc["runs"].append({**run, **figures})
    results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"recorded run {label!r} in {path}", file=sys.stderr)
    return path


def problems(doc: Any) -> list[str]:
    """What keeps a loaded results file from following the format (empty when it does)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    out = [f"missing {k!r}" for k in FILE_KEYS if k not in doc]
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        return [*out, "'runs' must be a non-empty list"]
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            out.append(f"run {i} is not an object")
            continue
        out += [f"run {i} has no {k!r}" for k in ("label", "commit") if k not in run]
    return out
