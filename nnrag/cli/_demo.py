"""``nnrag demo``: the first command a new user runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from nnrag.cli._common import err, out, progress, store_at

DEMO_MODELS = ("mlp", "lenet5", "resnet8", "resnet20", "mobilenetv2_small", "mlp_mixer_tiny")


@click.command()
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
    from nnrag.train.events import TrialDeduplicated, TrialDone
    from nnrag.train.executors import LocalExecutor
    from nnrag.train.runstore import RunStore
    from nnrag.train.spec import parse_spec
    from nnrag.train.wiring import indexed_engine

    base = home or nnrag_home() / "demo"
    store = store_at(base / "index.db", create=True)
    corpus = corpus_dir()
    for root, prefix in ((corpus, "corpus"), (ZOO, None)):
        report = index_path(store, root, prefix=prefix, package=prefix)
        out.print(f"index {root}: {report.definitions} definitions, {report.blocks} blocks "
                  f"({report.scanned} scanned, {report.unchanged} unchanged)")
    with progress("validating the zoo") as update:
        outcomes = do_validate(store, [f"zoo.{n}" for n in ("layers.conv.SqueezeExcite", "layers.mlp.Mlp",
                               "models.resnet.ResNetTiny", "models.vit.TinyViT")],
                               jobs=workers, progress=lambda d, t, _o: update(d, t))
    out.print("validate (sandboxed ladder): " + ", ".join(f"{o.qualname.rsplit('.', 1)[-1]} {o.rung_name}"
                                                          for o in outcomes))
    specs = [parse_spec({"model": {"file": str(corpus / f"{m}.py")}, "dataset": "digits",
                         "hyperparameters": {"lr": 0.05, "momentum": 0.9, "batch_size": 64},
                         "budget": {"epochs": epochs, "wall_s": 300}}) for m in DEMO_MODELS]
    runs = RunStore(base / "runs.db")
    engine = indexed_engine(runs, LocalExecutor(workers), store.path)

    def show(event: Any) -> None:
        if isinstance(event, TrialDone):
            err.print(f"  {event.name}: {event.outcome} in {event.duration_s or 0:.1f}s")
        elif isinstance(event, TrialDeduplicated):
            err.print(f"  {event.name}: already trained (run {event.of}), result reused")

    out.print(f"train {len(specs)} corpus models on digits, {epochs} epochs each, "
              f"{workers} sandboxed workers:")
    report = engine.train(specs, show)
    table = Table("#", "model", "test accuracy", "params", "seconds", box=None)
    for n, r in enumerate(runs.leaderboard("digits", 10), 1):
        table.add_row(str(n), r.name, f"{r.best:.4f}", str(r.params), f"{r.duration_s:.1f}")
    out.print("leaderboard (digits, chance 0.10):")
    out.print(table)
    out.print(f"{report.trained} trained, {report.deduplicated} reused; runs in {runs.path}, "
              f"index in {store.path} (try: nnrag query 'residual block' --db {store.path})")
