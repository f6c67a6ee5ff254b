"""``nnrag mutate``: formatting and options only; the work is in :meth:`Workspace.mutate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from nnrag.cli._common import (
    DB,
    FORMAT,
    NON_NEGATIVE_INT,
    SEED,
    WORKERS,
    emit_json,
    err,
    out,
    progress,
    workspace,
)

if TYPE_CHECKING:
    from nnrag.workspace import Workspace


def _kinds(value: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in value.split(",") if k.strip())


@click.command()
@click.argument("target")
@click.option("--n", "n", type=click.IntRange(min=1), default=50, show_default=True,
              help="Valid mutants wanted: exactly this many, or fewer with the reason.")
@click.option("--kinds", default="width,depth,activation,norm,residual", show_default=True,
              help="Comma-separated mutation kinds.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="0 .. 2**32-1.")
@click.option("--max-params", type=NON_NEGATIVE_INT, default=None,
              help="Reject mutants with more parameters.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each valid mutant to DIR/<name>.py.")
@click.option("--train", "train_on", default=None, metavar="DATASET",
              help="Train the valid mutants on DATASET with the execution engine.")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1, 10_000),
              help="Epochs per trained mutant (with --train).")
@click.option("--dataset", default=None,
              help="Input/output shapes come from this dataset "
                   "(default: the --train one, else digits, "
                   "or mnist1d for models whose INPUT_KINDS is signal only).")
@click.option("--block", default=None, help="Mutate this class of a model file instead of its Net.")
@click.option("--jobs", default=2, show_default=True, type=WORKERS,
              help="Sandboxed workers validating mutants (1-256).")
@click.option("--no-index", is_flag=True, help="Do not write valid mutants to the index.")
@DB
@FORMAT
def mutate(target: str, n: int, kinds: str, seed: int, max_params: int | None, out_dir: Path | None,
           train_on: str | None, epochs: int, dataset: str | None, block: str | None, jobs: int,
           no_index: bool, db: Path | None, fmt: str) -> None:
    """Shape-preserving mutants of TARGET (a model file, a corpus model or an indexed block)."""
    ws = workspace(db)
    tgt = ws.load_target(target, block=block)
    with progress(f"mutating {tgt.label}", enabled=fmt == "table") as update:
        result = ws.mutate(tgt, n, kinds=_kinds(kinds), seed=seed, max_params=max_params,
                           dataset=train_on or dataset, jobs=jobs, out_dir=out_dir,
                           index=not no_index, progress=update)
    report, indexed, files = result.report, list(result.indexed), list(result.files)
    trained = _train(ws, report, indexed, train_on, epochs) if train_on and report.valid else []
    if fmt == "json":
        emit_json(_as_json(report, indexed, files, trained))
        return
    _print(report, indexed, files, trained)


def _train(ws: Workspace, report: Any, indexed: list[str], dataset: str,
           epochs: int) -> list[Any]:
    from nnrag.train import parse_spec

    names: list[str | None] = list(indexed) if indexed else [None] * len(report.valid)
    specs = []
    for mutant, name in zip(report.valid, names, strict=True):
        model: dict[str, Any] = (
            {"code": mutant.source,
             "name": f"{report.target.label}-{mutant.kind}-{mutant.md5[:8]}"}
            if report.target.block is None or name is None else {"block": name})
        specs.append(parse_spec({"model": model, "dataset": dataset, "budget": {"epochs": epochs}}))
    result = ws.train(specs, workers=2)
    runs = ws.run_store()
    return [runs.get(i) for i in result.run_ids]


def _as_json(report: Any, indexed: list[str], files: list[Path],
             trained: list[Any]) -> dict[str, Any]:
    return {
        "target": report.target.origin, "params": report.params, "flops": report.flops,
        "traced": report.traced, "trace_error": report.trace_error, "disabled": report.disabled,
        "proposed": report.proposed, "rejected_by_plan": report.rejected_by_plan,
        "duplicates": report.duplicates, "validated": len(report.mutants),
        "wanted": report.wanted, "valid": len(report.valid), "shortfall": report.shortfall,
        "seconds": round(report.seconds, 2), "indexed": indexed, "files": [str(f) for f in files],
        "mutants": [{"md5": m.md5, "kind": m.kind, "description": m.description, "valid": m.valid,
                     "rung": m.rung, "params": m.params, "flops": m.flops, "error": m.error}
                    for m in report.mutants],
        "trained": [r.to_dict(("name", "outcome", "best")) for r in trained],
    }


def _print(report: Any, indexed: list[str], files: list[Path], trained: list[Any]) -> None:
    if not report.traced:
        err.print(f"torch.fx could not trace {report.target.label} ({report.trace_error}); "
                  f"disabled: {', '.join(report.disabled)}")
    table = Table("hash", "kind", "params", "delta", "MACs delta", "validated", box=None)
    table.add_column("change", overflow="fold")  # whole: a cut line hides what changed
    for m in report.mutants:
        delta = "" if m.params is None else f"{(m.params - report.params) / report.params:+.1%}"
        macs = ("" if not (m.flops and report.flops)
                else f"{(m.flops - report.flops) / report.flops:+.1%}")
        status = "yes" if m.valid else f"no ({m.rung}: {(m.error or '')[:60]})"
        table.add_row(m.md5[:8], m.kind, "" if m.params is None else f"{m.params:,}", delta, macs,
                      status, m.description)
    out.print(table)
    out.print(f"{report.target.label}: {report.params:,} params; {len(report.valid)} valid of "
              f"{len(report.mutants)} validated ({report.duplicates} duplicates skipped, "
              f"{report.rejected_by_plan} plans rejected before running) in {report.seconds:.1f}s")
    if report.shortfall:
        out.print(f"only {len(report.valid)} of the {report.wanted} wanted: {report.shortfall}")
    if indexed:
        out.print(f"indexed {len(indexed)} mutants with lineage, e.g. {indexed[0]}")
    if files:
        out.print(f"wrote {len(files)} files to {files[0].parent}")
    for r in trained:
        best = "" if r.best is None else f"{r.best:.4f}"
        out.print(f"trained {r.name}: {r.outcome} {best}")
