"""Execution engine figures: sandbox overhead, trials per hour, deduplication savings.

1. Overhead: the same training (corpus model, digits, fixed seed) in-process versus through
   the engine (sandbox start, dataset load, result transfer, run-store writes), for a short
   and a ~10 s trial. Target: under 1.5 s absolute, under 20% on a 10 s trial.
2. Throughput: trials per hour on digits with 2 workers over a batch of corpus models.
3. Dedup: a batch holding reformatted / renamed copies of the same models; how many runs
   were answered from the store instead of trained.

    python benchmarks/engine_overhead.py
"""

from __future__ import annotations

import argparse
import json
import re
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

from nnrag.examples import corpus_dir  # noqa: E402

CORPUS = corpus_dir()


def in_process(model: str, epochs: int, limit: int | None) -> float:
    """Seconds to build and train ``model`` in this process, as the trial does."""
    import torch

    from nnrag.train import TrainSpec, write_trial_data
    from nnrag.train import run_trial as run

    with tempfile.TemporaryDirectory() as tmp:
        import os

        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            torch.set_num_threads(1)
            spec = _spec(model, epochs, limit)
            data = write_trial_data(TrainSpec.model_validate(spec), Path(tmp))
            t0 = time.perf_counter()
            out = run({"code": (CORPUS / f"{model}.py").read_text(), "spec": spec,
                       "data": data.name,
                       "module_name": f"inproc_{model}_{epochs}_{time.monotonic_ns()}"})
            took = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
    assert out["outcome"] == "ok", out.get("error")
    return took


def _spec(model: str, epochs: int, limit: int | None, seed: int = 0) -> dict[str, Any]:
    from nnrag.train.spec import parse_spec

    return parse_spec({"model": {"file": str(CORPUS / f"{model}.py")}, "dataset": "digits",
                       "seed": seed, "limit": limit,
                       "hyperparameters": {"lr": 0.05},
                       "budget": {"epochs": epochs, "wall_s": 600}}).model_dump()


def through_engine(engine: Any, model: str, epochs: int, limit: int | None, seed: int) -> float:
    from nnrag.train.spec import TrainSpec

    t0 = time.perf_counter()
    report = engine.train([TrainSpec.model_validate(_spec(model, epochs, limit, seed))])
    took = time.perf_counter() - t0
    assert report.trained == 1, report
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    add_arguments(ap)
    args = ap.parse_args(argv)

    from nnrag.train.engine import Engine
    from nnrag.train.executors import LocalExecutor
    from nnrag.train.runstore import RunStore
    from nnrag.train.spec import TrainSpec

    work = Path(tempfile.mkdtemp(prefix="nnrag-engine-bench-"))
    results: dict[str, Any] = {}
    # 1. overhead: a short trial and a ~10 s one (resnet20, several epochs)
    rows = []
    for label, model, epochs in (("short", "mlp", 1), ("10s", "resnet20", 6)):
        engine = Engine(RunStore(work / f"{label}.db"), LocalExecutor(1))  # no write-back
        inproc = [in_process(model, epochs, None) for _ in range(args.repeat)]
        # each engine run uses another seed, so none is answered by deduplication
        # the first call starts the pooled sandbox workers (Python + torch); later calls reuse them
        sandboxed = [through_engine(engine, model, epochs, None, seed)
                     for seed in range(args.repeat + 1)]
        a, cold, b = statistics.median(inproc), sandboxed[0], statistics.median(sandboxed[1:])
        rows.append({"trial": label, "model": model, "epochs": epochs, "in_process_s": round(a, 2),
                     "engine_cold_s": round(cold, 2), "engine_s": round(b, 2),
                     "overhead_s": round(b - a, 2), "overhead_pct": round(100 * (b - a) / a, 1)})
    results["overhead"] = rows

    # 2. throughput with 2 workers
    models = ["mlp", "lenet5", "resnet8", "resnet20", "mobilenetv2_small", "mlp_mixer_tiny",
              "densenet_small", "squeezenet_small", "vgg11_small", "convnext_narrow"]
    engine = Engine(RunStore(work / "throughput.db"), LocalExecutor(2))
    specs = [TrainSpec.model_validate(_spec(m, 2, None)) for m in models]
    t0 = time.perf_counter()
    report = engine.train(specs)
    took = time.perf_counter() - t0
    results["throughput"] = {"trials": report.trained, "seconds": round(took, 1), "epochs": 2,
                             "trials_per_hour": round(3600 * report.trained / took),
                             "outcomes": report.outcomes}

    # 3. dedup: every model once more, reformatted and renamed
    batch = []
    for m in models[:6]:
        code = (CORPUS / f"{m}.py").read_text()
        variant = code.replace("    ", "  ")  # re-indented
        variant = re.sub(r"\bself\.(features|classifier|head|stem)\b", r"self.renamed_\1", variant)
        variant = "# a reformatted, renamed copy\n" + variant.replace("\n\n", "\n\n\n")
        spec = _spec(m, 2, None)
        spec["model"] = {"code": variant, "name": f"{m}_copy"}
        batch.append(TrainSpec.model_validate(spec))
    batch += specs[:4]  # and four verbatim repeats
    t0 = time.perf_counter()
    report = engine.train(batch)
    took = time.perf_counter() - t0
    results["dedup"] = {"batch": len(batch), "trained": report.trained,
                        "deduplicated": report.deduplicated, "seconds": round(took, 1)}

    print("\n| trial | model | epochs | in-process s | engine s (warm) | overhead s | overhead % "
          "| first call s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['trial']} | {r['model']} | {r['epochs']} | {r['in_process_s']} "
              f"| {r['engine_s']} | "
              f"{r['overhead_s']} | {r['overhead_pct']} | {r['engine_cold_s']} |")
    t = results["throughput"]
    print(f"\nthroughput: {t['trials']} trials ({t['epochs']} epochs each on digits) "
          f"in {t['seconds']} s "
          f"with 2 workers = {t['trials_per_hour']} trials/hour; outcomes {t['outcomes']}")
    d = results["dedup"]
    print(f"dedup: a batch of {d['batch']} (6 reformatted/renamed copies + 4 verbatim repeats): "
          f"{d['deduplicated']} answered from the store, {d['trained']} trained, {d['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.record:
        record("engine_overhead", args.record, results, script=__file__, argv=argv,
               note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
