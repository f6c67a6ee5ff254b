"""``nnrag learn``: registered on :data:`nnrag.cli.main`; formatting only.

The loop is :meth:`Workspace.learn`; ``--report`` reads the logged cycles with
:meth:`Workspace.learn_report` and, with ``--out DIR``, draws them
(:func:`nnrag.learn.report.write_report`: ``learn.png`` and ``learn.html``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from nnrag.cli._common import FORMAT, emit_json, err, out, workspace

if TYPE_CHECKING:
    from nnrag.learn import Dataset


def _show_dataset(dataset: Dataset, fmt: str) -> None:
    manifest = {"folder": str(dataset.folder), **dataset.manifest}
    if fmt == "json":
        emit_json(manifest)
        return
    counts = manifest.get("counts", {})
    table = Table("programs", "no answer form", "duplicates", "proven", "too long",
                  "train examples", "held-out examples", box=None)
    table.add_row(*(str(counts.get(k, "")) for k in (
        "programs", "no_answer_form", "duplicates", "proven", "too_long", "train_examples",
        "heldout_examples")))
    out.print(table)
    failures = ", ".join(f"{k} {v}" for k, v in manifest.get("probe_failures", {}).items())
    out.print(f"probe failures by stage: {failures or 'none'}")
    out.print(f"held-out families: {', '.join(manifest.get('heldout_families', [])) or 'none'}")
    out.print(f"dataset {dataset.dataset_hash[:12]} in {dataset.folder}")


@click.command()
@click.option("--cycles", default=1, show_default=True, type=click.IntRange(0, 1000),
              help="Fine-tune-and-measure cycles after cycle 0 (which only measures).")
@click.option("--per-cycle", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="Prompts sent to measure the generator each cycle.")
@click.option("--method", default="sft", show_default=True,
              type=click.Choice(["sft", "grpo", "sft+grpo"]))
@click.option("--base", default=None,
              help="Base model: hub id (cached) or folder (default: embedded Gemma 3 270M).")
@click.option("--adapter", default="none", show_default=True,
              help="Adapter cycle 0 starts from: none, newest (for the base), a version or a "
                   "folder.")
@click.option("--dataset", "dataset_dir", default=None,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A built dataset folder to train on every cycle (default: build one from "
                   "the corpus, the run store and --lemur each cycle).")
@click.option("--task", default="image-classification", show_default=True,
              type=click.Choice(["image-classification", "signal-classification"]))
@click.option("--data", default="digits", show_default=True,
              help="The registered dataset the generated models are for (nnrag datasets).")
@click.option("--shots", default=1, show_default=True, type=click.IntRange(0, 16))
@click.option("--blocks", default=0, show_default=True, type=click.IntRange(0, 32),
              help="Blocks retrieved from the index per prompt, in the training examples and "
                   "when measuring (as nnrag generate --blocks).")
@click.option("--corpus", default=None, type=click.Path(file_okay=False, exists=True,
                                                       path_type=Path),
              help="A folder of contract models (default: the packaged seed corpus).")
@click.option("--lemur", default=None, type=click.Path(exists=True, path_type=Path),
              help="LEMUR models (folder or models.jsonl[.gz]) to add to the pool.")
@click.option("--lemur-limit", default=None, type=click.IntRange(1),
              help="Read only the first N LEMUR models.")
@click.option("--max-length", default=1536, show_default=True, type=click.IntRange(64),
              help="Tokens per training example (prompt cut to fit, as generate cuts it).")
@click.option("--steps", default=-1, show_default=True, type=int,
              help="SFT optimiser steps per cycle (-1: one epoch over the dataset).")
@click.option("--grpo-steps", default=10, show_default=True, type=click.IntRange(1))
@click.option("--reward-train/--no-reward-train", default=False, show_default=True,
              help="GRPO: add each running program's accuracy after one epoch to its reward.")
@click.option("--max-new-tokens", default=768, show_default=True, type=click.IntRange(16))
@click.option("--repairs", default=0, show_default=True, type=click.IntRange(0, 10),
              help="Repair prompts while measuring (0 measures the model alone).")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--limit", default=None, type=click.IntRange(1),
              help="Train generated models on the first N samples only.")
@click.option("--train/--no-train", default=True, show_default=True,
              help="Train the executable generated models (they join the pool).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--dataset-only", is_flag=True,
              help="Build the dataset (probing what it must) and print its manifest; no "
                   "fine-tune. Its folder can be given as --dataset.")
@click.option("--report", is_flag=True, help="Show the logged cycles instead of running.")
@click.option("--run", "run_id", default=None, help="With --report: this run (default: latest).")
@click.option("--all", "all_runs", is_flag=True, help="With --report: every run.")
@click.option("--out", "out_dir", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="With --report: also write learn.png (per-cycle rates and accuracy) and "
                   "learn.html (the table and the plot) into this folder.")
@FORMAT
def learn(cycles: int, per_cycle: int, method: str, base: str | None, adapter: str,
          dataset_dir: Path | None, task: str, data: str, shots: int, blocks: int,
          corpus: Path | None,
          lemur: Path | None, lemur_limit: int | None, max_length: int, steps: int,
          grpo_steps: int, reward_train: bool, max_new_tokens: int, repairs: int, epochs: int,
          limit: int | None, train: bool, workers: int, seed: int, dataset_only: bool,
          report: bool, run_id: str | None, all_runs: bool, out_dir: Path | None,
          fmt: str) -> None:
    """Fine-tune the generator on programs that provably run, cycle by cycle, and measure it."""
    if out_dir is not None and not report:
        raise click.UsageError("--out goes with --report")
    ws = workspace()
    if report:
        rows = ws.learn_report(run_id, all_runs=all_runs)
        if out_dir is not None and rows:
            from nnrag.learn.report import write_report

            for path in write_report(rows, out_dir, all_runs=all_runs):
                err.print(f"wrote {path}")
    else:
        from nnrag.learn.loop import LearnConfig

        config = LearnConfig(
            cycles=cycles, per_cycle=per_cycle, method=method, base=base,
            adapter=None if adapter == "newest" else adapter, dataset=dataset_dir, task=task,
            data=data, shots=shots, blocks=blocks, corpus=corpus, lemur=lemur,
            lemur_limit=lemur_limit, max_length=max_length, steps=steps,
            grpo_steps=grpo_steps, reward_train=reward_train,
            max_new_tokens=max_new_tokens, repairs=repairs, epochs=epochs, limit=limit,
            train=train, workers=workers, seed=seed)
        if dataset_only:
            _show_dataset(ws.learn_dataset(config), fmt)
            return
        rows = ws.learn(config, lambda line: err.print(line))
    if fmt == "json":
        emit_json([r.as_dict() for r in rows])
        return
    from nnrag.learn.report import TABLE_COLUMNS, cell

    if not rows:
        out.print("no learning cycles recorded (run nnrag learn)")
        return
    table = Table(*(["run"] if all_runs else []), *TABLE_COLUMNS, box=None)
    for r in rows:
        data_row = r.as_dict()
        table.add_row(*([r.run] if all_runs else []),
                      *(cell(c, data_row[c]) for c in TABLE_COLUMNS))
    out.print(table)
    out.print(f"run {rows[-1].run}, base {rows[-1].base}, method {rows[-1].method}")
