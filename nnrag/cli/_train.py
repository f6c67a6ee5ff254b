"""Training commands of the ``nnrag`` CLI: train, runs, show, resume, leaderboard, datasets,
transforms.

Formatting only, over :class:`nnrag.Workspace`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

if TYPE_CHECKING:
    from nnrag.train import RunStore

from nnrag.cli._common import (
    FORMAT,
    POSITIVE_INT,
    RUN_ID,
    WORKERS,
    emit_json,
    err,
    options,
    out,
    workspace,
)

RUNS = click.option("--runs", "runs_db", type=click.Path(dir_okay=False, path_type=Path),
                    default=None, help="Run store (default: $NNRAG_HOME/runs.db).")
EXECUTOR = [
    click.option("--workers", default=1, show_default=True, type=WORKERS,
                 help="Trials in parallel (1-256)."),
    click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                 show_default=True),
    click.option("--address", default=None,
                 help="Ray cluster address (default: a local Ray instance)."),
]

EARLY_STOP = [
    click.option("--early-stop", "early_stop", type=click.Choice(["off", "predicted"]),
                 default="off", show_default=True,
                 help="predicted: stop a trial after epoch 1..K when the accuracy predictor's "
                      "upper bound is below the best finished run of its dataset."),
    click.option("--early-stop-after", "early_stop_after", type=click.IntRange(1, 2),
                 default=2, show_default=True, help="K: the last epoch a stop may follow."),
    click.option("--predictor", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Saved predictor (default: the one `nnrag predict fit` wrote under "
                      "$NNRAG_HOME)."),
]


def _runs(path: Path | None) -> RunStore:
    """The run store, for a read command: read-only, and it must exist."""
    return workspace(runs=path).run_store(readonly=True)


def _printer() -> Any:
    """Per-epoch and per-run progress lines on stderr (stdout stays clean for --format json)."""

    from nnrag.train.events import TrialDeduplicated, TrialDone, TrialEpoch

    def show(event: Any) -> None:
        if isinstance(event, TrialEpoch):
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items()
                                if k not in ("run", "event") and isinstance(v, float))
            err.print(f"run {event.run} epoch {event.epoch}: {metrics}")
        elif isinstance(event, TrialDone):
            extra = f" ({event.error})" if event.error else ""
            err.print(f"run {event.run} {event.name}: {event.outcome} in "
                      f"{event.duration_s or 0:.1f}s{extra}")
        elif isinstance(event, TrialDeduplicated):
            err.print(f"run {event.run} {event.name}: duplicate of run {event.of}, not trained")

    return show


def _report(report: Any, runs: Any, fmt: str) -> None:
    """Print what a train or resume call did, then exit 1 if any of its runs did not end
    ``ok`` (error, timeout, oom, nan, quarantined): scripts and CI see the failure."""
    _print_report(report, runs, fmt)
    failed = sum(n for outcome, n in report.outcomes.items() if outcome not in ("ok", "stopped"))
    if failed:
        err.print(f"{failed} of {len(report.run_ids)} runs did not end ok or stopped "
                  "(exit status 1)")
        sys.exit(1)


def _print_report(report: Any, runs: Any, fmt: str) -> None:
    rows = [runs.get(i) for i in report.run_ids]
    if fmt == "json":
        emit_json({"trained": report.trained, "deduplicated": report.deduplicated,
                    "outcomes": report.outcomes,
                    "runs": [r.to_dict(("id", "name", "dataset", "outcome", "best", "params",
                                        "duration_s", "duplicate_of", "error", "adapters",
                                        "stopped_by"))
                             for r in rows]})
        return
    _run_table(rows)
    out.print(f"{report.trained} trained, {report.deduplicated} deduplicated (not re-trained); "
              + ", ".join(f"{k}: {v}" for k, v in sorted(report.outcomes.items())))


def _stop_note(stopped_by: str) -> str:
    """``stopped after epoch 2 by predicted: high 0.612 < best 0.874 (run 3)``."""
    import json

    d = json.loads(stopped_by)
    note = f"stopped after epoch {d.get('epoch')} by {d.get('by')}"
    if isinstance(d.get("high"), float) and isinstance(d.get("reference_best"), float):
        note += (f": high {d['high']:.3f} < best {d['reference_best']:.3f} "
                 f"(run {d.get('reference_run')})")
    return note


def _run_table(rows: list[Any]) -> None:
    table = Table("run", "model", "dataset", "outcome", "best", "params", "seconds", "note",
                  box=None)
    for r in rows:
        note = (f"duplicate of {r.duplicate_of}" if r.duplicate_of
                else _stop_note(r.stopped_by) if r.stopped_by
                else f"not indexed: {r.not_indexed}" if r.not_indexed else r.error or "")[:60]
        table.add_row(str(r.id), r.name, r.dataset, r.outcome or r.status,
                      "" if r.best is None else f"{r.best:.4f}", str(r.params or ""),
                      "" if r.duration_s is None else f"{r.duration_s:.1f}", note)
    out.print(table)


@click.command()
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@options(EXECUTOR)
@RUNS
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Block index for 'block:' models and write-back "
                   "(default: $NNRAG_DB or $NNRAG_HOME/index.db).")
@click.option("--force", is_flag=True,
              help="Train even when a successful run of the same spec and model is stored.")
@click.option("--splice-from", "splice_from", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Index of package source (e.g. torchvision's): what a model imports from a "
                   "package that is not installed is spliced in from it before training.")
@options(EARLY_STOP)
@FORMAT
def train(spec_file: Path, workers: int, executor: str, address: str | None, runs_db: Path | None,
          db: Path | None, force: bool, splice_from: Path | None, early_stop: str,
          early_stop_after: int, predictor: Path | None, fmt: str) -> None:
    """Train the model(s) of SPEC_FILE (YAML or JSON: one spec or a list) in the sandbox."""
    from nnrag.train.spec import load_spec

    specs = load_spec(spec_file)
    ws = workspace(db, runs_db)
    report = ws.train(specs, workers=workers, executor=executor, address=address,
                      progress=_printer(), force=force, splice_from=splice_from,
                      early_stop=early_stop, early_stop_after=early_stop_after,
                      predictor=predictor)
    _report(report, ws.run_store(), fmt)


@click.command()
@options(EXECUTOR)
@RUNS
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None)
@FORMAT
def resume(workers: int, executor: str, address: str | None, runs_db: Path | None, db: Path | None,
           fmt: str) -> None:
    """Re-run every run left unfinished by a killed engine or worker, with the same spec."""
    ws = workspace(db, runs_db)
    report = ws.resume(workers=workers, executor=executor, address=address, progress=_printer())
    if not report.run_ids and fmt == "table":
        out.print("nothing to resume")
        return
    _report(report, ws.run_store(), fmt)


@click.command()
@click.option("--limit", default=50, show_default=True, type=POSITIVE_INT)
@RUNS
@FORMAT
def runs(limit: int, runs_db: Path | None, fmt: str) -> None:
    """List recent runs."""
    from nnrag.train.runstore import LISTING_FIELDS

    rows = _runs(runs_db).runs(limit)
    if fmt == "json":
        emit_json([r.to_dict(LISTING_FIELDS) for r in rows])
        return
    _run_table(rows)


@click.command()
@click.argument("run_id", type=RUN_ID)
@RUNS
@FORMAT
def show(run_id: int, runs_db: Path | None, fmt: str) -> None:
    """One run: spec, outcome, per-epoch metrics, error and traceback."""
    run = _runs(runs_db).get(run_id)
    if fmt == "json":
        emit_json({**run.to_dict(), "spec": run.spec_dict})
        return
    out.print(f"run {run.id} {run.name} on {run.dataset}: {run.status} / {run.outcome}")
    for key in ("adapters", "best", "params", "flops", "duration_s", "duplicate_of", "indexed_as",
                "not_indexed", "stopped_by", "versions"):
        if getattr(run, key) is not None:
            out.print(f"  {key}: {getattr(run, key)}")
    table = Table("epoch", "metric", "value", box=None)
    for e in run.epochs:
        table.add_row(str(e.epoch), e.metric, "" if e.value is None else f"{e.value:.4f}")
    out.print(table)
    if run.traceback:
        out.print(run.traceback, markup=False, highlight=False)


@click.command()
@click.option("--dataset", help="Only runs on this dataset.")
@click.option("--limit", default=20, show_default=True, type=POSITIVE_INT)
@RUNS
@FORMAT
def leaderboard(dataset: str | None, limit: int, runs_db: Path | None, fmt: str) -> None:
    """Best finished runs, by their metric."""
    from nnrag.train.runstore import LEADERBOARD_FIELDS

    store = _runs(runs_db)
    if dataset is not None:
        dataset = _dataset_name(dataset, store)
    rows = store.leaderboard(dataset, limit)
    if fmt == "json":
        emit_json([r.to_dict(LEADERBOARD_FIELDS) for r in rows])
        return
    if not rows:
        on = f" on {dataset}" if dataset else ""
        out.print(f"no successful runs{on} in {store.path} yet")
        return
    table = Table("#", "model", "dataset", "best", "params", "MFLOPs", "seconds", "run", box=None)
    for n, r in enumerate(rows, 1):
        table.add_row(str(n), r.name, r.dataset, f"{r.best:.4f}", str(r.params),
                      "" if r.flops is None else f"{r.flops / 1e6:.2f}",
                      f"{r.duration_s:.1f}", str(r.id))
    out.print(table)


def _dataset_name(name: str, store: RunStore) -> str:
    """A dataset the store has runs on, else the registered name ``name`` spells (any case,
    ``_`` or ``-``); anything else is a usage error with close matches, never an empty
    table."""
    if name in store.datasets():
        return name
    from nnrag.train.datasets import dataset_info

    return dataset_info(name).name


@click.command()
@click.argument("pattern", default="*")
@FORMAT
def datasets(pattern: str, fmt: str) -> None:
    """Registered datasets, one sample's shape each, and whether each can be loaded here.

    A spec's `shape: [C, H, W]` adapts an image dataset to the shape a model expects
    (see `nnrag transforms`)."""
    from dataclasses import asdict

    from nnrag.train.datasets import available, list_datasets

    rows = []
    for info in list_datasets(pattern):
        ok, why = available(info.name)
        rows.append({**asdict(info), "available": ok, "reason": why})
    if fmt == "json":
        emit_json(rows)
        return
    table = Table("dataset", "kind", "shape", "classes", "chance", "available", box=None)
    for r in rows:
        table.add_row(r["name"], r["kind"], "x".join(map(str, r["in_shape"])),
                      str(r["num_classes"]), f"{r['chance']:.3f}",
                      "yes" if r["available"] else "no (see --format json)")
    out.print(table)


@click.command()
@click.argument("pattern", default="*")
@FORMAT
def transforms(pattern: str, fmt: str) -> None:
    """Registered input transforms (a spec's `transform`), families such as resize_<N> included."""
    from nnrag.train.transforms import TRANSFORMS

    entries = TRANSFORMS.list(pattern)
    rows = [{"name": e.name, "family": e.family is not None, "description": e.description,
             "provenance": e.provenance} for e in entries]
    if fmt == "json":
        emit_json(rows)
        return
    table = Table("transform", "description", box=None)
    for e in entries:
        table.add_row(e.name, e.description)
    out.print(table)
