"""Which input shape LEMUR's models take: how many build and run a forward pass at 3x32x32
and at 3x64x64 (the ``shape`` a spec gives them).

Each model of a seeded sample of ``models.jsonl.gz`` is built as the contract says,
``Net((batch, C, H, W), (classes,), prm, cpu)`` with ``prm`` filled as a trial fills it,
and given one batch of random inputs in eval mode: one sandboxed task per model and shape,
with a wall-clock limit (a task that runs past it counts as ``timeout``). No training, no
dataset. Failures are counted by stage (``load``: the module does not import, e.g. a
missing package; ``prm``: declared names nnrag cannot fill; ``build``; ``forward``;
``timeout``, ``oom`` or ``crashed`` from the sandbox) and by the error's type.

    python benchmarks/lemur_shapes.py --sample 200 --seed 0 --json FILE
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
import _shared  # noqa: E402

LEMUR = _shared.LEMUR / "models.jsonl.gz"
ENTRY = "nnrag.train._probe:forward"
PRELOAD = ("torch", "?nnrag.train._probe", "?nnrag.train.contract", "?nnrag.train.spec",
           "?nnrag.train._warm")


def load_models(path: Path, sample: int | None, seed: int) -> list[tuple[str, str]]:
    from nnrag.index import read_lemur_models

    models = [(name, code) for name, _, code in read_lemur_models(path)]
    if sample is not None and sample < len(models):
        models = random.Random(seed).sample(models, sample)
    return models


def verdict(result: Any) -> tuple[str, str | None]:
    """``ok`` or where it failed, and the error's type (first word of the message)."""
    if result.status != "ok":
        return result.status, result.error_type
    value = result.value or {}
    stage, error = value.get("stage", "crashed"), value.get("error")
    return stage, None if error is None else str(error).split(":")[0]


STAGES = ("load", "prm", "build", "forward", "timeout", "oom", "crashed")


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """What the results file keeps: one row per shape, one per ok/fails pattern."""
    rows = [{"shape": label, "ok": row["ok"], "ok_pct": row["ok_pct"],
             **{f"failed_{stage}": row["failed_at"].get(stage, 0) for stage in STAGES}}
            for label, row in doc["shapes"].items()]
    return {"models": doc["models"], "sample_seed": doc["sample_seed"], "batch": doc["batch"],
            "wall_s_per_task": doc["wall_s_per_task"], "shapes": rows,
            "patterns": [{"pattern": k, "models": v} for k, v in doc["ok_pattern"].items()],
            "seconds": doc["seconds"]}


def _message(result: Any) -> str:
    if result.status != "ok":
        return f"{result.status}: {result.error_type}: {result.error_message}"[:160]
    return str((result.value or {}).get("error"))[:160]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=LEMUR)
    ap.add_argument("--sample", type=int, default=200, help="seeded sample size (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shapes", default="3x32x32,3x64x64")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wall", type=float, default=60.0, help="wall limit per task, s")
    ap.add_argument("--memory", type=int, default=4096, help="memory limit per task, MB")
    ap.add_argument("--json", type=Path)
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    from nnrag.sandbox import Limits, run_many, shutdown_pool

    shapes = [[int(n) for n in s.split("x")] for s in args.shapes.split(",")]
    models = load_models(args.models, args.sample or None, args.seed)
    payloads = [{"code": code, "shape": shape, "classes": args.classes, "batch": args.batch}
                for _, code in models for shape in shapes]
    done = 0

    def progress(i: int, result: Any) -> None:
        nonlocal done
        done += 1
        if done % 50 == 0:
            print(f"  {done}/{len(payloads)} probes done", file=sys.stderr)

    t0 = time.perf_counter()
    try:
        results = run_many(ENTRY, payloads, limits=Limits(wall_s=args.wall,
                                                          memory_mb=args.memory),
                           jobs=args.workers, preload=PRELOAD, on_result=progress)
    finally:
        shutdown_pool()
    seconds = time.perf_counter() - t0
    per_shape: dict[str, Any] = {}
    per_model: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for j, shape in enumerate(shapes):
        label = "x".join(map(str, shape))
        verdicts = [verdict(results[i * len(shapes) + j]) for i in range(len(models))]
        for (name, _), (stage, _) in zip(models, verdicts, strict=True):
            per_model[name][label] = stage
        stages = collections.Counter(stage for stage, _ in verdicts)
        errors = collections.Counter(err for stage, err in verdicts if stage != "ok" and err)
        examples = [f"{name}: {_message(results[i * len(shapes) + j])}"
                    for i, (name, _) in enumerate(models) if verdicts[i][0] != "ok"]
        per_shape[label] = {"ok": stages["ok"],
                            "ok_pct": round(100 * stages["ok"] / len(models), 1),
                            "failed_at": {k: v for k, v in stages.items() if k != "ok"},
                            "error_types": dict(errors.most_common(8)),
                            "examples": examples[:6]}
    labels = ["x".join(map(str, s)) for s in shapes]
    both = collections.Counter(tuple(per_model[n][lb] == "ok" for lb in labels)
                               for n, _ in models)
    results_doc: dict[str, Any] = {
        "models": len(models), "sample_seed": args.seed, "batch": args.batch,
        "classes": args.classes, "wall_s_per_task": args.wall, "workers": args.workers,
        "shapes": per_shape,
        "ok_pattern": {" / ".join(f"{lb} {'ok' if ok else 'fails'}" for lb, ok
                                  in zip(labels, pattern, strict=True)): n
                       for pattern, n in both.most_common()},
        "seconds": round(seconds, 1),
    }
    print(json.dumps(results_doc, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**results_doc, "per_model": per_model}, indent=1) + "\n")
    if args.record:
        _results.record("lemur_shapes", args.record, figures(results_doc), script=__file__,
                        argv=argv, note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
