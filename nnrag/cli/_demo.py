"""``nnrag demo``: the first command a new user runs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from nnrag.cli._common import err, out, progress

DEMO_MODELS = ("mlp", "lenet5", "resnet8", "resnet20", "mobilenetv2_small", "mlp_mixer_tiny")


@click.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo keeps its index, runs and trained models "
                   "(default: $NNRAG_HOME/demo).")
@click.option("--workers", default=2, show_default=True, help="Trials in parallel.")
@click.option("--epochs", default=3, show_default=True)
def demo(home: Path | None, workers: int, epochs: int) -> None:
    """Index the seed corpus and the example zoo, validate the zoo, train corpus models on
    digits."""
    import nnrag
    from nnrag.config import nnrag_home
    from nnrag.examples import ZOO, corpus_dir
    from nnrag.train import TrainEvent, TrialDeduplicated, TrialDone, parse_spec

    base = home or nnrag_home() / "demo"
    ws = nnrag.open_workspace(base, db=base / "index.db", runs=base / "runs.db")
    corpus = corpus_dir()
    for root, prefix in ((corpus, "corpus"), (ZOO, None)):
        indexed = ws.index(root, prefix=prefix, package=prefix)
        out.print(f"index {root}: {indexed.definitions} definitions, {indexed.blocks} blocks "
                  f"({indexed.scanned} scanned, {indexed.unchanged} unchanged)")
    zoo_blocks = [f"zoo.{n}" for n in ("layers.conv.SqueezeExcite", "layers.mlp.Mlp",
                                       "models.resnet.ResNetTiny", "models.vit.TinyViT")]
    with progress("validating the zoo") as update:
        outcomes = ws.validate(zoo_blocks, jobs=workers, progress=update)
    out.print("validate (sandboxed ladder): "
              + ", ".join(f"{o.qualname.rsplit('.', 1)[-1]} {o.rung_name}" for o in outcomes))
    specs = [parse_spec({"model": {"file": str(corpus / f"{m}.py")}, "dataset": "digits",
                         "hyperparameters": {"lr": 0.05, "momentum": 0.9, "batch_size": 64},
                         "budget": {"epochs": epochs, "wall_s": 300}}) for m in DEMO_MODELS]

    def show(event: TrainEvent) -> None:
        if isinstance(event, TrialDone):
            err.print(f"  {event.name}: {event.outcome} in {event.duration_s or 0:.1f}s")
        elif isinstance(event, TrialDeduplicated):
            err.print(f"  {event.name}: already trained (run {event.of}), result reused")

    out.print(f"train {len(specs)} corpus models on digits, {epochs} epochs each, "
              f"{workers} sandboxed workers:")
    trained = ws.train(specs, workers=workers, progress=show)
    table = Table("#", "model", "test accuracy", "params", "seconds", box=None)
    for n, r in enumerate(ws.run_store().leaderboard("digits", 10), 1):
        table.add_row(str(n), r.name, f"{r.best:.4f}", str(r.params), f"{r.duration_s:.1f}")
    out.print("leaderboard (digits, chance 0.10):")
    out.print(table)
    out.print(f"{trained.trained} trained, {trained.deduplicated} reused; runs in {ws.runs}, "
              f"index in {ws.db} (try: nnrag query 'residual block' --db {ws.db})")
    ws.close()
