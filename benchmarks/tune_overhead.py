"""What a sampler of ``nnrag tune`` costs per trial, next to what one trial costs.

Sampler overhead: ``--trials`` trials of a study in Optuna's SQLite storage (as ``nnrag
tune`` keeps it), each one ask (with the sampler's hook: ``prior``'s enqueued
configurations, ``llm``'s proposal from the replay backend, so without a model's own
latency), the suggestions and a tell, with a made-up value instead of training. ``prior``'s
one-off retrieval (LEMUR's records read and cached, then the cache read, and the nearest
models' configurations mapped) is reported apart. Trial time: the corpus MLP on digits, one
epoch, ``limit`` 300, as one sandboxed engine run (``force``: trained, not deduplicated).

    python benchmarks/tune_overhead.py [--trials 20] [--runs 3] [--record LABEL]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
from _shared import LEMUR  # noqa: E402

SAMPLERS = ("random", "tpe", "prior", "llm")


def sampler_ms(sampler: str, trials: int, folder: Path, hook: Any) -> list[float]:
    """Milliseconds per trial spent in Optuna and the sampler's hook."""
    from nnrag.tune import default_space
    from nnrag.tune.samplers import make_sampler, mark
    from nnrag.tune.space import suggest
    from nnrag.tune.study import load_or_create

    space = default_space({"dropout"})
    study = load_or_create(sampler, f"sqlite:///{folder / 'tune.db'}", space,
                           make_sampler(sampler, 0))
    if hook is not None:
        hook.start(study)
    rng = random.Random(0)
    out = []
    for _ in range(trials):
        t0 = time.perf_counter()
        attrs = hook.before_ask(study) if hook is not None else {}
        trial = study.ask()
        mark(trial, attrs, sampler)
        suggest(trial, space)
        study.tell(trial, rng.random())
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lemur", type=Path, default=LEMUR)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="real trials timed")
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from nnrag import tune_sources as _tune
    from nnrag.examples import CORPUS
    from nnrag.tune import default_space
    from nnrag.tune.prior import warm_configs
    from nnrag.tune.samplers import LLMHook, PriorHook
    from nnrag.workspace import open_workspace

    mlp = Path(CORPUS) / "mlp.py"
    code = mlp.read_text()
    space = default_space({"dropout"})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        models = _tune.lemur_models(args.lemur, folder / "cache")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        models = _tune.lemur_models(args.lemur, folder / "cache")
        distance, useful = _tune.dataset_rule("digits")
        warm = warm_configs(_tune.code_target(code), models, space, "digits",
                            train_size=300, distance=distance, useful=useful)
        retrieval = time.perf_counter() - t0
        answers = json.dumps(['```json\n{"lr": 0.03, "momentum": 0.8}\n```'])
        (folder / "answers.json").write_text(answers)
        for sampler in SAMPLERS:
            hook: Any = None
            if sampler == "prior":
                hook = PriorHook(warm)
            elif sampler == "llm":
                ask, parse = _tune.llm_asker("replay", str(folder / "answers.json"), 0)
                hook = LLMHook(ask, parse, code, space)
            ms = sampler_ms(sampler, args.trials, folder, hook)
            rows.append({"sampler": sampler, "mean_ms": round(statistics.mean(ms), 1),
                         "median_ms": round(statistics.median(ms), 1),
                         "max_ms": round(max(ms), 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)

        ws = open_workspace(folder / "home")
        spec = {"model": {"file": str(mlp)}, "dataset": "digits", "limit": 300,
                "budget": {"epochs": 1}, "hyperparameters": {"lr": 0.05, "momentum": 0.9}}
        ws.train(spec, force=True)  # warm the dataset cache and the sandbox's imports
        seconds = []
        for seed in range(args.runs):
            t0 = time.perf_counter()
            ws.train({**spec, "seed": seed}, force=True)
            seconds.append(time.perf_counter() - t0)
    trial_ms = 1000 * statistics.median(seconds)
    for row in rows:
        row["pct_of_trial"] = round(100 * row["mean_ms"] / trial_ms, 2)
    figures = {
        "trials": args.trials, "samplers": rows,
        "trial_ms": round(trial_ms), "trial": "corpus MLP, digits, 1 epoch, limit 300, "
                                               f"median of {args.runs} sandboxed runs",
        "prior_lemur_first_read_s": round(cold, 1),
        "prior_retrieval_cached_ms": round(1000 * retrieval),
        "prior_enqueued": len(warm),
    }
    print(json.dumps(figures, indent=1))
    if args.record:
        _results.record("tune_overhead", args.record, figures, script=__file__, note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
