"""``nnrag predict``: fit, evaluate and ask the accuracy predictor (:mod:`nnrag.predict`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import click

from nnrag.cli._common import FORMAT, emit_json, err, out, progress
from nnrag.exceptions import PredictError

_MODEL = click.option("--model", "model_file", type=click.Path(dir_okay=False, path_type=Path),
                      default=None,
                      help="Saved predictor (default: $NNRAG_HOME/predictor.json).")


@click.group()
def predict() -> None:
    """Predict the best accuracy a trial will reach, from its code, settings and first
    epochs (docs/predict.md)."""


def _model_path(path: Path | None) -> Path:
    from nnrag.predict import default_path

    return path if path is not None else default_path()


def _skipped(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "none"


@predict.command("fit")
@click.option("--lemur", "lemur_dir", type=click.Path(path_type=Path), default=None,
              help="A LEMUR export folder (models.jsonl.gz, stats.jsonl.gz).")
@click.option("--runs", "runs_db", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="An nnrag run store (default without --lemur: "
                                 "$NNRAG_HOME/runs.db).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to save it (default: $NNRAG_HOME/predictor.json).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Fit on the first N LEMUR trials only (a quick try).")
@click.option("--learner", type=click.Choice(["lightgbm", "sklearn"]), default=None,
              help="Gradient-boosting library (default: LightGBM if installed).")
@FORMAT
def fit(lemur_dir: Path | None, runs_db: Path | None, out_file: Path | None,
        limit: int | None, learner: str | None, fmt: str) -> None:
    """Fit a predictor on LEMUR's trials and/or an nnrag run store, and save it."""
    from nnrag.config import nnrag_home
    from nnrag.predict import Predictor, read_lemur, read_runs, trials_of

    if lemur_dir is None and runs_db is None:
        runs_db = nnrag_home() / "runs.db"
        if not runs_db.exists():
            raise PredictError(f"nothing to fit on: no run store at {runs_db}; give --lemur "
                               "DIR (a LEMUR export folder) or --runs FILE")
    reports = []
    start = time.monotonic()
    if lemur_dir is not None:
        with progress("reading LEMUR", fmt == "table") as update:
            reports.append(read_lemur(lemur_dir, progress=update, limit=limit))
    if runs_db is not None:
        reports.append(read_runs(runs_db))
    data = trials_of(reports)
    predictor = Predictor() if learner is None else Predictor(learner=learner)
    with progress("fitting (k = 0, 1, 2)", fmt == "table") as update:
        predictor.fit(data.trials, progress=update)
    path = predictor.save(_model_path(out_file))
    seconds = time.monotonic() - start
    trained = predictor.trained_on
    skipped = {**data.skipped, **trained["skipped"]}
    if fmt == "json":
        emit_json({"model": str(path), "sources": data.sources, "rows": data.row_count,
                   **trained, "skipped": skipped, "seconds": round(seconds, 1)})
        return
    out.print(f"fitted a {trained['learner']} predictor on {trained['trials']} trials of "
              f"{trained['models']} models from {', '.join(data.sources)} ({seconds:.0f}s)")
    out.print("datasets: " + ", ".join(f"{d} {n}" for d, n in trained["datasets"].items()))
    out.print("rows per k: " + ", ".join(f"k{k} {n}" for k, n in trained["rows"].items()))
    out.print(f"skipped: {_skipped(skipped)}")
    out.print(f"saved to {path}")


def _cell(value: Any, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


@predict.command("eval")
@click.option("--lemur", "lemur_dir", type=click.Path(path_type=Path), required=True,
              help="A LEMUR-format folder the predictor was not fitted on.")
@_MODEL
@FORMAT
def eval_(lemur_dir: Path, model_file: Path | None, fmt: str) -> None:
    """Score a saved predictor per k = 0, 1, 2 epochs seen, beside the naive baseline."""
    from nnrag.predict import Predictor, evaluate, read_lemur

    predictor = Predictor.load(_model_path(model_file))
    with progress("reading LEMUR", fmt == "table") as update:
        data = read_lemur(lemur_dir, progress=update)
    result = {k: s.to_dict() for k, s in evaluate(predictor, data.trials).items()}
    if fmt == "json":
        emit_json({**result, "skipped": dict(data.skipped), "trials": len(data.trials)})
        return
    from rich.table import Table

    table = Table("k", "n", "RMSE", "MAE", "r", "rho", "within 5", "within 10", "coverage",
                  "baseline RMSE", "baseline r")
    for key, s in result.items():
        table.add_row(key[1:], _cell(s["n"]), _cell(s["rmse"]), _cell(s["mae"]), _cell(s["r"]),
                      _cell(s["rho"]), _cell(s["within_5"], True), _cell(s["within_10"], True),
                      _cell(s["coverage"], True), _cell(s["baseline_rmse"]),
                      _cell(s["baseline_r"]))
    out.print(table)
    out.print(f"{len(data.trials)} trials; skipped: {_skipped(dict(data.skipped))}. Baseline: "
              "last observed accuracy (k = 0: the dataset's mean).")


def _hp(pairs: tuple[str, ...]) -> dict[str, Any]:
    hp: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--hp")
        try:
            number = float(value)
            hp[key] = number if math.isfinite(number) else value
        except ValueError:
            hp[key] = value
    return hp


def _curve(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not comma-separated numbers",
                                 param_hint="--curve") from None
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise click.BadParameter("accuracies are fractions between 0 and 1",
                                 param_hint="--curve")
    return values


@predict.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="The dataset it trains on (cifar-10, digits...).")
@click.option("--hp", "hps", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter: lr, momentum, batch, dropout, transform, epochs, params.")
@click.option("--curve", default=None, metavar="A1,A2",
              help="Accuracies of the first epochs, as fractions (0.41,0.55).")
@_MODEL
@FORMAT
def show(file: Path, dataset: str, hps: tuple[str, ...], curve: str | None,
         model_file: Path | None, fmt: str) -> None:
    """Predict the best accuracy of the model in FILE (read, never run) on DATASET."""
    from nnrag.predict import Predictor, parse_or_raise

    hp, values = _hp(hps), _curve(curve)
    try:
        code = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PredictError(f"{file} is not UTF-8 text; give the model's source file") from exc
    parse_or_raise(code, str(file))
    predictor = Predictor.load(_model_path(model_file))
    epochs = hp.pop("epochs", None)
    params = hp.pop("params", None)
    result = predictor.predict(code, hp, dataset, values,
                               epochs=int(epochs) if isinstance(epochs, float) else None,
                               params=int(params) if isinstance(params, float) else None)
    if fmt == "json":
        emit_json({"file": str(file), "dataset": dataset, **result.to_dict()})
        return
    seen = "a structure it was fitted on" if result.seen_structure else "a structure new to it"
    out.print(f"{file} on {dataset}: best accuracy {100 * result.mean:.1f}% "
              f"(90% interval {100 * result.low:.1f}-{100 * result.high:.1f}%), "
              f"from {result.k} epoch(s) seen; {seen}")
    if len(values) > result.k:
        err.print(f"note: only the first {result.k} epochs of --curve are used")
