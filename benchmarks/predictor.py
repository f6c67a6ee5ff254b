"""How well ``nnrag predict`` predicts a LEMUR trial's best accuracy on model families it has
never seen, after k = 0, 1, 2 epochs, beside the naive "last observed accuracy" baseline and
NNGPT's published figures (RMSE 0.145, Pearson r 0.78, after two epochs, from an 8B LLM).

The image-classification trials of ``../shared/data/lemur`` are split by model *family*
(:func:`nnrag.predict.model_family`: every ``ast-*-AlexNet-*`` variant is AlexNet; genetic
``ga-*`` and generated ``rag-*`` models are one family each) into grouped folds, so no
architecture is on both sides. Each fold fits a predictor on the others and predicts its
trials; the figures are over all folds' predictions pooled. A trial counts at k when it ran
more than k epochs (after its last epoch nothing is left to predict).

    python benchmarks/predictor.py --folds 5 --json FILE [--sample N] [--record LABEL]
"""

from __future__ import annotations

import argparse
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
from _shared import LEMUR  # noqa: E402

NNGPT = {"predictor": "NNGPT (published, 8B LLM, k = 2)", "rmse": 0.145, "r": 0.78}


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lemur", type=Path, default=LEMUR)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--sample", type=int, default=0, help="seeded sample of trials (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learner", choices=["lightgbm", "sklearn"], default=None)
    ap.add_argument("--json", type=Path)
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    import numpy as np
    from sklearn.model_selection import GroupKFold

    from nnrag.predict import KS, Predictor, baseline, read_lemur, scores

    start = time.monotonic()
    data = read_lemur(args.lemur)
    trials = data.trials
    if args.sample:
        trials = random.Random(args.seed).sample(trials, min(args.sample, len(trials)))
    families = [t.family for t in trials]
    print(f"{len(trials)} trials, {len(set(families))} families, read in "
          f"{time.monotonic() - start:.0f}s", file=sys.stderr)
    pooled: dict[int, dict[str, list[float]]] = {
        k: {"truth": [], "mean": [], "low": [], "high": [], "base": []} for k in KS}
    fit_s: list[float] = []
    predict_s, predicted = 0.0, 0
    folds = GroupKFold(n_splits=args.folds)
    for i, (train, test) in enumerate(folds.split(trials, groups=families)):
        fitted_on = [trials[j] for j in train]
        held_out = [trials[j] for j in test]
        t0 = time.monotonic()
        predictor = (Predictor() if args.learner is None else Predictor(learner=args.learner))
        predictor.fit(fitted_on)
        fit_s.append(time.monotonic() - t0)
        for k in KS:
            chosen = [t for t in held_out if len(t.curve) > k]
            t0 = time.monotonic()
            out = predictor.predict_many(chosen, k)
            predict_s += time.monotonic() - t0
            predicted += len(chosen)
            pooled[k]["truth"] += [t.best for t in chosen]
            pooled[k]["mean"] += [p.mean for p in out]
            pooled[k]["low"] += [p.low for p in out]
            pooled[k]["high"] += [p.high for p in out]
            pooled[k]["base"] += list(baseline(chosen, k))
        print(f"fold {i + 1}/{args.folds}: {len(held_out)} held-out trials of "
              f"{len({t.family for t in held_out})} families, fit {fit_s[-1]:.0f}s",
              file=sys.stderr)
    rows, baselines = [], []
    for k in KS:
        p = {name: np.array(v) for name, v in pooled[k].items()}
        s = scores(p["truth"], p["mean"], p["low"], p["high"], p["base"])
        rows.append({"k": k, "n": s.n, "rmse": _round(s.rmse), "mae": _round(s.mae),
                     "r": _round(s.r), "rho": _round(s.rho), "within_5_pct": _pct(s.within_5),
                     "within_10_pct": _pct(s.within_10), "coverage_90_pct": _pct(s.coverage)})
        baselines.append({"k": k, "baseline": "last observed accuracy" if k else
                          "dataset mean of the held-out trials",
                          "rmse": _round(s.baseline_rmse), "r": _round(s.baseline_r)})
    figures: dict[str, Any] = {
        "trials": len(trials), "families": len(set(families)), "folds": args.folds,
        "sample": args.sample or "all", "learner": predictor.learner,
        "predictor": rows, "baseline": baselines, "reference": [NNGPT],
        "fit_s_per_fold": round(sum(fit_s) / len(fit_s), 1),
        "predict_us_per_trial": round(1e6 * predict_s / max(1, predicted), 1),
        "seconds": round(time.monotonic() - start, 1),
    }
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.record:
        _results.record("predictor", args.record, figures, script=__file__, note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
