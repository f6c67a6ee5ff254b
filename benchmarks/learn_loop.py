"""`nnrag learn` figures: does fine-tuning on proven programs make the generator write
models that run? (issue 18's benchmark; no figures recorded yet)

Runs the loop on a fresh workspace: cycle 0 measures the base model (default: the embedded
Gemma 3 270M) on ``--per-cycle`` seeded prompts for digits at shots 1; each further cycle
builds the dataset from every proven program (the corpus, optionally LEMUR's zoo, and the
models the previous cycles trained), fine-tunes a LoRA adapter (``--method``), publishes it
and measures again on the same prompts. Prints per cycle: executable, trained, unique and
novel rates, best and mean accuracy after ``--epochs``, and the wall seconds of each stage
(dataset build with its sandbox probes, fine-tune, measurement with generation, probes
and training). Targets (issue 18): cycle 0 ~0% executable; after the first SFT cycle >= 50%
executable with >= 80% unique and novel; >= 60% by cycle 3 without a collapse of
uniqueness.

    python benchmarks/learn_loop.py --cycles 3 --per-cycle 20 \
        --lemur ../shared/data/lemur/models.jsonl.gz --json benchmarks/_work/learn.json

``--base qwen-coder`` uses Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF joined from its PyPI
chunk packages and sha256-checked, see ``chunked_gguf.py``; benchmark only) as a second base.
Hours on a 2-core CPU; a GPU (the device machine) runs the fine-tunes in minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _results import add_arguments, record  # noqa: E402
from chunked_gguf import MODELS, resolve  # noqa: E402


def pct(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f}%)" if whole else str(part)


def acc(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| cycle | adapter | examples | executable | trained | unique | novel | best acc "
             "| mean acc | dataset s | fine-tune s | measure s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = r["prompts"]
        lines.append(f"| {r['cycle']} | {r['adapter'] or ''} | {r['train_examples']} "
                     f"| {pct(r['executable'], n)} | {pct(r['trained'], n)} "
                     f"| {pct(r['unique'], n)} | {pct(r['novel'], n)} "
                     f"| {acc(r['best_accuracy'])} | {acc(r['mean_accuracy'])} "
                     f"| {r['dataset_s']:.0f} | {r['finetune_s']:.0f} | {r['measure_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--per-cycle", type=int, default=20)
    ap.add_argument("--method", default="sft", choices=["sft", "grpo", "sft+grpo"])
    ap.add_argument("--base", default=None,
                    help="model id, folder, .gguf, or a chunked benchmark model "
                         f"({', '.join(MODELS)}); default: the embedded Gemma 3 270M")
    ap.add_argument("--lemur", type=Path, default=None, help="LEMUR models.jsonl.gz to add")
    ap.add_argument("--lemur-limit", type=int, default=None)
    ap.add_argument("--steps", type=int, default=-1, help="SFT steps per cycle (-1: an epoch)")
    ap.add_argument("--max-length", type=int, default=1536)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="training samples per model")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None,
                    help="workspace (default: a fresh temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    add_arguments(ap)
    args = ap.parse_args()

    import nnrag
    from nnrag.learn.loop import LearnConfig

    base = str(resolve(args.base)) if args.base in MODELS else args.base
    home = args.home or Path(tempfile.mkdtemp(prefix="nnrag-learn-"))
    ws = nnrag.open_workspace(home)
    config = LearnConfig(cycles=args.cycles, per_cycle=args.per_cycle, method=args.method,
                         base=base, task="image-classification", data="digits", shots=1,
                         lemur=args.lemur, lemur_limit=args.lemur_limit, steps=args.steps,
                         max_length=args.max_length, epochs=args.epochs, limit=args.limit,
                         workers=args.workers, seed=args.seed, repairs=0)
    start = time.perf_counter()
    rows = [r.as_dict() for r in ws.learn(config, lambda line: print(line, file=sys.stderr))]
    markdown = table(rows)
    print(markdown)
    print(f"\n{len(rows)} cycles in {time.perf_counter() - start:.0f}s; workspace {home}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows, "markdown": markdown}, indent=2))
    if args.record:
        record("learn_loop" + (f"_{Path(str(args.base)).stem}" if args.base else ""),
               args.record, {"cycles": rows}, script=__file__, note=args.note)


if __name__ == "__main__":
    main()
