"""``nnrag tune``: hyperparameter optimisation on Optuna, one engine run per trial.

Formatting only, over :meth:`nnrag.Workspace.tune` and :meth:`nnrag.Workspace.tune_studies`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from nnrag.cli._common import (
    FORMAT,
    POSITIVE_INT,
    SEED,
    WORKERS,
    emit_json,
    err,
    out,
    workspace,
)


def _trial_line(t: Any) -> None:
    value = "" if t.value is None else f" best {t.value:.4f}"
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in sorted(t.params.items()))
    note = f" ({t.error})" if t.error and t.outcome != "ok" else ""
    err.print(f"trial {t.number} [run {t.run}]: {t.outcome}{value}  {params}{note}")


def _show(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        emit_json(data)
        return
    best = "" if data["best_value"] is None else f", best {data['best_value']:.4f}"
    out.print(f"study {data['study']} in {data['storage']}: {data['n_trials']} trials{best}")
    table = Table("trial", "state", "value", "run", "outcome", "source", "params", box=None)
    for t in data["trials"]:
        table.add_row(str(t["number"]), t["state"],
                      "" if t["value"] is None else f"{t['value']:.4f}", str(t["run"] or ""),
                      t["outcome"] or "", t.get("source") or "", str(t["params"]))
    out.print(table)


@click.command()
@click.argument("model", required=False)
@click.option("--dataset", default="digits", show_default=True)
@click.option("--trials", default=10, show_default=True, type=POSITIVE_INT,
              help="Trials to add to the study in this call.")
@click.option("--sampler", default="tpe", show_default=True,
              help="tpe or random (Optuna's); prior (start from the best configurations of "
                   "the most similar models, then TPE); llm (a generate backend proposes).")
@click.option("--lemur", "lemur_dir", default=None, type=click.Path(path_type=Path),
              help="With --sampler prior: also retrieve from this LEMUR export folder "
                   "(models.jsonl.gz, stats.jsonl.gz); default: the run store only.")
@click.option("--workers", default=1, show_default=True, type=WORKERS,
              help="Trials trained at once (Optuna ask/tell in batches).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where trials run: local sandboxes or Ray tasks.")
@click.option("--address", default=None,
              help="Ray cluster address (default: a local Ray instance).")
@click.option("--backend", "llm_backend", default="transformers", show_default=True,
              help="With --sampler llm: transformers | llama-cpp | openai | replay.")
@click.option("--llm-model", default=None,
              help="With --sampler llm: model id, folder, .gguf or replay file "
                   "(default: the embedded model).")
@click.option("--space", "space_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML search space: {name: {low, high, log}} or {name: {choices: [...]}}.")
@click.option("--epochs", default=1, show_default=True, type=POSITIVE_INT,
              help="Epochs per trial.")
@click.option("--limit", default=None, type=POSITIVE_INT,
              help="Train and evaluate each trial on the first N samples of each split.")
@click.option("--study", default=None, help="Study name (default: MODEL-DATASET).")
@click.option("--storage", default=None,
              help="Optuna storage URL (default: sqlite:///$NNRAG_HOME/tune.db).")
@click.option("--seed", default=None, type=SEED, help="Sampler and training seed.")
@click.option("--pruner", type=click.Choice(["none", "median", "hyperband", "predicted"]),
              default="none", show_default=True,
              help="Stop hopeless trials early: Optuna's MedianPruner or HyperbandPruner, or "
                   "the accuracy predictor (see `nnrag train --early-stop`); a stopped trial "
                   "is PRUNED.")
@click.option("--early-stop-after", "early_stop_after", type=click.IntRange(1, 2), default=2,
              show_default=True, help="With --pruner predicted: the last epoch a stop may "
                                      "follow.")
@click.option("--predictor", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --pruner predicted: the saved predictor (default: the one "
                   "`nnrag predict fit` wrote).")
@click.option("--list", "list_", is_flag=True, help="List the studies in the storage.")
@click.option("--show", "show_study", default=None, metavar="STUDY",
              help="One study's trials (state, value, params, run, outcome).")
@FORMAT
def tune(model: str | None, dataset: str, trials: int, sampler: str, lemur_dir: Path | None,
         workers: int, executor: str, address: str | None, llm_backend: str,
         llm_model: str | None, space_file: Path | None, epochs: int, limit: int | None,
         study: str | None, storage: str | None, seed: int | None, pruner: str,
         early_stop_after: int, predictor: Path | None, list_: bool,
         show_study: str | None, fmt: str) -> None:
    """Tune MODEL (a contract file or an indexed block name) on --dataset with Optuna.

    Each trial is one sandboxed `nnrag train` run, recorded in the run store; the study
    lives in Optuna's storage, so re-running the command resumes it."""
    ws = workspace()
    if show_study is not None:
        _show(ws.tune_study(show_study, storage), fmt)
        return
    if list_:
        rows = ws.tune_studies(storage)
        if fmt == "json":
            emit_json(rows)
            return
        if not rows:
            out.print("no studies yet")
            return
        table = Table("study", "trials", "best", "best params", box=None)
        for r in rows:
            table.add_row(r["study"], str(r["n_trials"]),
                          "" if r["best_value"] is None else f"{r['best_value']:.4f}",
                          str(r["best_params"]))
        out.print(table)
        return
    if model is None:
        raise click.UsageError("give MODEL (or --list)")
    result = ws.tune(model, dataset=dataset, trials=trials, sampler=sampler, space=space_file,
                     epochs=epochs, study=study, storage=storage, seed=seed, limit=limit,
                     progress=_trial_line, lemur=lemur_dir, workers=workers,
                     executor=executor, address=address, llm_backend=llm_backend,
                     llm_model=llm_model, warn=lambda line: err.print(f"warning: {line}"),
                     pruner=pruner, early_stop_after=early_stop_after, predictor=predictor)
    if fmt == "json":
        emit_json(result.to_dict())
    else:
        out.print(f"study {result.study} in {result.storage}: {result.n_trials} trials")
    if result.best_value is None:
        from nnrag.exceptions import TuneError

        last = result.trials[-1] if result.trials else None
        why = f" (last: {last.outcome}: {last.error})" if last and last.error else ""
        raise TuneError(f"no trial of study {result.study!r} ended ok{why}; its failed "
                        "trials are kept in the storage")
    if fmt == "json":
        return
    import yaml

    out.print(f"best accuracy {result.best_value:.4f} with {result.best_params}")
    out.print("nnrag train spec:")
    out.print(yaml.safe_dump(result.spec, sort_keys=False).rstrip())
