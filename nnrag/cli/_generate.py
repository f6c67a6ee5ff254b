"""``nnrag generate``: registered on :data:`nnrag.cli.main`; formatting only.

The work is in :meth:`Workspace.generate`; this module turns options into a backend and a
:class:`~nnrag.generate.GenerateConfig`, prints progress on stderr and the figures on stdout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from nnrag.cli._common import (
    FORMAT,
    NON_NEGATIVE_FLOAT,
    POSITIVE_INT,
    PROBABILITY,
    SEED,
    WORKERS,
    emit_json,
    err,
    out,
    workspace,
    write_atomic,
)

if TYPE_CHECKING:
    from nnrag.generate import GenerateEvent


def _progress(fmt: str) -> Callable[[GenerateEvent], None]:
    from nnrag.generate import Generated, Probed
    from nnrag.train import TrialDeduplicated, TrialDone

    def show(event: GenerateEvent) -> None:
        if isinstance(event, Generated):
            extra = f" ({event.error})" if event.error and event.status != "unique" else ""
            err.print(f"[{event.index + 1}/{event.n}] {event.status}{extra}"[:300])
        elif isinstance(event, Probed):
            what = "executable" if event.ok else f"not executable: {event.error}"
            err.print(f"  candidate {event.index} (repairs {event.repairs}): {what}"[:300])
        elif isinstance(event, TrialDone):
            err.print(f"  train run {event.run} {event.name}: {event.outcome} in "
                      f"{event.duration_s or 0:.1f}s")
        elif isinstance(event, TrialDeduplicated):
            err.print(f"  train run {event.run} {event.name}: duplicate of run {event.of}, "
                      "not trained")

    return show


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


@click.command()
@click.option("--task", default="image-classification", show_default=True,
              type=click.Choice(["image-classification", "signal-classification"]))
@click.option("--dataset", default="digits", show_default=True,
              help="A registered dataset (nnrag datasets).")
@click.option("--n", "n", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="Prompts to send.")
@click.option("--shots", default=1, show_default=True, type=click.IntRange(0, 16),
              help="Reference implementations per prompt (run store and corpus).")
@click.option("--blocks", default=0, show_default=True, type=click.IntRange(0, 32),
              help="Blocks retrieved from the index per prompt (spliced in when used by name).")
@click.option("--backend", default="transformers", show_default=True,
              help="transformers | llama-cpp | openai | replay")
@click.option("--model", default=None,
              help="Model id, folder or .gguf (default: embedded Gemma 3 270M).")
@click.option("--adapter", default=None,
              help="LoRA adapter (transformers backend): a folder, a version number under "
                   "$NNRAG_HOME/adapters, or none (default: the newest adapter nnrag learn "
                   "published for this model, if any).")
@click.option("--base-url", default=None,
              help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
@click.option("--style", default="auto", show_default=True,
              type=click.Choice(["auto", "completion", "chat"]),
              help="Prompt style: completion for base models, chat for instruct models.")
@click.option("--dtype", default="auto", show_default=True,
              type=click.Choice(["auto", "bf16", "fp32", "8bit", "4bit"]))
@click.option("--context", default=None, type=POSITIVE_INT,
              help="Context length to assume (default: the model's).")
@click.option("--threads", default=None, type=click.IntRange(1, 1024),
              help="CPU threads for the model.")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--workers", default=1, show_default=True, type=WORKERS,
              help="Sandboxes in parallel.")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--temperature", default=0.8, show_default=True, type=NON_NEGATIVE_FLOAT)
@click.option("--top-p", default=0.95, show_default=True, type=PROBABILITY)
@click.option("--max-new-tokens", default=768, show_default=True, type=click.IntRange(16))
@click.option("--repairs", default=2, show_default=True, type=click.IntRange(0, 10),
              help="Repair prompts after an execution failure.")
@click.option("--constrained/--no-constrained", default=True, show_default=True,
              help="Constrain the spec to its JSON schema where the backend can.")
@click.option("--train/--no-train", default=True, show_default=True,
              help="Train executable models.")
@click.option("--limit", default=None, type=click.IntRange(1),
              help="Train on the first N samples only.")
@click.option("--runs", "runs_db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run store (default: $NNRAG_HOME/runs.db).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Block index for retrieval and write-back "
                   "(default: $NNRAG_DB or $NNRAG_HOME/index.db).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every candidate (prompt, answers, code, spec, sampling) "
                   "as JSON lines.")
@FORMAT
def generate(task: str, dataset: str, n: int, shots: int, blocks: int, backend: str,
             model: str | None, adapter: str | None, base_url: str | None, style: str, dtype: str,
             context: int | None, threads: int | None, epochs: int, workers: int, seed: int,
             temperature: float, top_p: float, max_new_tokens: int, repairs: int,
             constrained: bool, train: bool, limit: int | None, runs_db: Path | None,
             db: Path | None, save: Path | None, fmt: str) -> None:
    """Generate architectures and training specs with an LLM, grounded in references and
    blocks."""
    from nnrag.generate import BackendConfig, GenerateConfig, make_backend
    from nnrag.generate.pipeline import task_text

    task_text(task, dataset)  # unknown task or dataset: fail before loading a model
    config = GenerateConfig(task=task, dataset=dataset, n=n, shots=shots, blocks=blocks,
                            epochs=epochs, workers=workers, seed=seed, temperature=temperature,
                            top_p=top_p, max_new_tokens=max_new_tokens, repairs=repairs,
                            constrained=constrained, train=train, limit=limit, runs_db=runs_db,
                            index_db=db)
    ws = workspace(db, runs_db)
    if backend == "transformers":
        chosen = ws.adapter_for(model, adapter)
        adapter = str(chosen.path) if chosen else None
        err.print(f"adapter: {chosen.path} (version {chosen.number}, trained on {chosen.base})"
                  if chosen and chosen.number >= 0 else
                  f"adapter: {adapter}" if adapter else "adapter: none")
    elif adapter is not None and adapter.strip().lower() == "none":
        adapter = None
    llm = make_backend(BackendConfig(backend=backend, model=model, adapter=adapter,
                                     base_url=base_url, style=style, dtype=dtype, context=context,
                                     threads=threads))
    info = llm.describe()
    err.print(f"backend {info['backend']}: {info['model']} ({info['style']} prompts, context "
              f"{info['context_length']}, constrained spec: "
              f"{'yes' if info['constrained'] and constrained else 'no'})")
    try:
        report = ws.generate(config, llm, _progress(fmt))
    finally:
        llm.close()
    if save:
        write_atomic(save, "".join(json.dumps(cand.as_dict(full=True), default=str) + "\n"
                                   for cand in report.candidates))
    if fmt == "json":
        emit_json(report.as_dict())
        return
    table = Table("#", "status", "references", "tokens", "repairs", "best", "note", box=None)
    for c in report.candidates:
        note = c.error or ("; ".join(c.notes) if c.notes else "")
        table.add_row(str(c.index), c.status, ",".join(r.split(":", 1)[-1] for r in c.references),
                      str(c.prompt_tokens), str(c.repairs), _fmt(c.best), note[:80])
    out.print(table)
    summary = Table("prompts sent", "parsed", "schema-valid", "unique", "executable", "trained",
                    "best accuracy", "mean accuracy", "repairs used", box=None)
    summary.add_row(str(report.prompts_sent), str(report.parsed), str(report.schema_valid),
                    str(report.unique), str(report.executable), str(report.trained),
                    _fmt(report.best_accuracy), _fmt(report.mean_accuracy),
                    str(report.repairs_used))
    out.print(summary)
    out.print(f"{n} generations in {report.seconds:.1f}s ({report.generation_s:.1f}s in the LLM, "
              f"{report.completion_tokens} tokens); mean prompt "
              f"{report.mean_prompt_tokens:.0f} tokens; "
              f"{report.reprompts_used} re-prompts, {report.repaired} repaired, "
              f"{report.autofixed} auto-fixed, "
              f"{report.reused} reused from the run store")
    for note in report.notes:
        out.print(f"note: {note}")
