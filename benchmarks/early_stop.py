"""Early stopping on nnrag's own runs: epochs saved against the regret of the selected best
model, for no stopping, Optuna's MedianPruner and HyperbandPruner, and predicted stopping.

Real training happens once: every configuration (corpus models and a few seeded mutants of
two of them x learning rates x datasets) is trained for its full epoch budget by nnrag's
engine (sandboxed, recorded in a run store of its own), and its per-epoch test accuracy is
kept (``--curves``: configurations found there are not trained again). Each
policy is then *replayed* on those recorded curves, over many random orders of the
configurations, one study per dataset: a stopped configuration costs only the epochs it ran
and cannot be selected; the selected model is the best (by best accuracy) of those that ran
to the end. A stop decision only depends on the curve so far and on the runs already
finished, so replaying is exact for the predicted policy (the same rule as ``nnrag train
--early-stop predicted``: stop after epoch k <= ``--after`` when the predictor's 90% upper
bound is below the best finished run of the dataset) and for Optuna's pruners (a fresh
in-memory study per order, reported epoch by epoch).

Per policy and dataset: epochs saved (% of the no-stopping total), the share of orders whose
selected model is the true best (ties count as the same), and the mean and worst regret
(true best accuracy minus the selected model's). The issue's target: >= 40 % of epochs saved
with the same best model in >= 90 % of orders. The predictor is fitted on LEMUR
(``../shared/data/lemur``, other datasets than these) unless ``--predictor`` names one.

    python benchmarks/early_stop.py --epochs 5 --limit 1000 --orders 200 [--record LABEL]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
from _shared import LEMUR, MODELS  # noqa: E402

MUTATE = ("lenet5", "mlp")
LRS = (0.001, 0.01, 0.05, 0.2)
DATASETS = ("digits", "fashion-mnist")
POLICIES = ("none", "median", "hyperband", "predicted")


def model_files(models: list[str], mutate: list[str], mutants: int) -> list[Path]:
    """The corpus models' files, then ``mutants`` valid mutants of each of ``mutate``
    (nnrag's shape-preserving mutation, validated in the sandbox on digits' shape; seeded,
    so the same files every time)."""
    from nnrag.examples import CORPUS
    from nnrag.workspace import open_workspace

    files = [CORPUS / f"{m}.py" for m in models]
    if mutants:
        folder = Path(tempfile.gettempdir()) / "nnrag-early-stop-mutants"
        ws = open_workspace(Path(tempfile.mkdtemp(prefix="nnrag-early-stop-home-")))
        for m in mutate:
            result = ws.mutate(str(CORPUS / f"{m}.py"), n=mutants, dataset="digits",
                               out_dir=folder, index=False, seed=0)
            files += sorted(result.files)[:mutants]
    return files


def config_spec(model: Path, lr: float, dataset: str, epochs: int, limit: int) -> dict[str, Any]:
    return {"model": {"file": str(model), "name": model.stem},
            "dataset": dataset, "limit": limit, "seed": 0,
            "budget": {"epochs": epochs, "wall_s": 600, "memory_mb": 4096},
            "hyperparameters": {"lr": lr, "momentum": 0.9}}


def train_all(specs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Train every spec fully, once, through nnrag's engine; their curves and the time."""
    if not specs:
        return [], 0.0
    import torch

    from nnrag.train import Engine, LocalExecutor, RunStore, parse_spec

    torch.set_num_threads(1)
    start = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="nnrag-early-stop-"))
    runs = RunStore(folder / "runs.db")
    engine = Engine(runs, LocalExecutor(1))
    out = []
    for i, raw in enumerate(specs):
        spec = parse_spec(raw)
        report = engine.train([spec])
        run = runs.get(report.run_ids[0])
        curve = [e.value for e in run.epochs if e.metric == "accuracy"]
        print(f"[{i + 1}/{len(specs)}] {spec.model.label} lr={spec.hyperparameters.lr} "
              f"{spec.dataset}: {run.outcome} {[round(v or 0, 3) for v in curve]}",
              file=sys.stderr)
        out.append({"spec": raw, "outcome": run.outcome, "curve": curve,
                    "code": run.code, "duration_s": run.duration_s})
    runs.close()
    return out, time.monotonic() - start


def predictor_for(args: argparse.Namespace) -> Any:
    from nnrag.predict import Predictor, read_lemur

    if args.predictor:
        return Predictor.load(args.predictor)
    t0 = time.monotonic()
    predictor = Predictor().fit(read_lemur(args.lemur).trials)
    print(f"predictor fitted on LEMUR in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return predictor


def predicted_stops(configs: list[dict[str, Any]], predictor: Any, after: int) -> list[list[
        float]]:
    """Each configuration's predicted upper bound after epochs 1..after (order-free)."""
    from nnrag.predict import spec_hyperparameters

    highs = []
    for c in configs:
        spec = c["spec"]
        row = []
        for k in range(1, after + 1):
            p = predictor.predict(c["code"], spec_hyperparameters(spec), spec["dataset"],
                                  c["curve"][:k], epochs=spec["budget"]["epochs"])
            row.append(p.high)
        highs.append(row)
    return highs


def replay_predicted(order: list[int], curves: list[list[float]], highs: list[list[float]],
                     after: int) -> tuple[int, list[int]]:
    """Epochs run and the configurations that ran to the end, under predicted stopping."""
    used, finished, reference = 0, [], None
    for i in order:
        curve = curves[i]
        stopped = False
        for k in range(1, len(curve) + 1):
            used += 1
            if (reference is not None and k <= after and k < len(curve)
                    and highs[i][k - 1] < reference):
                stopped = True
                break
        if not stopped:
            finished.append(i)
            reference = max(reference or 0.0, max(curve))
    return used, finished


def replay_optuna(order: list[int], curves: list[list[float]], pruner: Any,
                  name: str) -> tuple[int, list[int]]:
    import optuna

    # Named: HyperbandPruner assigns brackets by a hash of the study name and trial number.
    study = optuna.create_study(study_name=name, direction="maximize", pruner=pruner)
    used, finished = 0, []
    for i in order:
        trial = study.ask()
        curve = curves[i]
        pruned = False
        for k, value in enumerate(curve, 1):
            used += 1
            trial.report(value, k)
            if k < len(curve) and trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, max(curve))
            finished.append(i)
    return used, finished


def simulate(configs: list[dict[str, Any]], highs: list[list[float]], orders: int, after: int,
             seed: int, epochs: int) -> list[dict[str, Any]]:
    import optuna

    from nnrag.tune.pruners import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    pooled: dict[str, list[tuple[int, int, float]]] = {p: [] for p in POLICIES}
    for dataset in sorted({c["spec"]["dataset"] for c in configs}):
        idx = [i for i, c in enumerate(configs) if c["spec"]["dataset"] == dataset]
        curves = [configs[i]["curve"] for i in idx]
        hs = [highs[i] for i in idx]
        bests = [max(c) for c in curves]
        true_best = max(bests)
        total = sum(len(c) for c in curves)
        rng = random.Random(seed)
        tallies: dict[str, list[tuple[int, float]]] = {p: [] for p in POLICIES}
        for n in range(orders):
            order = list(range(len(curves)))
            rng.shuffle(order)
            name = f"{dataset}-{n}"
            results = {
                "none": (total, order),
                "median": replay_optuna(order, curves, make_pruner("median", epochs), name),
                "hyperband": replay_optuna(order, curves, make_pruner("hyperband", epochs),
                                           name),
                "predicted": replay_predicted(order, curves, hs, after),
            }
            for policy, (used, finished) in results.items():
                chosen = max((bests[i] for i in finished), default=0.0)
                tallies[policy].append((used, true_best - chosen))
                pooled[policy].append((used, total, true_best - chosen))
        for policy in POLICIES:
            used = [u for u, _ in tallies[policy]]
            regret = [r for _, r in tallies[policy]]
            rows.append({
                "dataset": dataset, "policy": policy, "configs": len(curves),
                "epochs_saved_pct": round(100 * (1 - sum(used) / (total * orders)), 1),
                "same_best_pct": round(100 * sum(r <= 1e-9 for r in regret) / orders, 1),
                "mean_regret": round(sum(regret) / orders, 4),
                "worst_regret": round(max(regret), 4),
            })
    for policy in POLICIES:  # every dataset's orders together
        runs = pooled[policy]
        rows.append({
            "dataset": "all", "policy": policy, "configs": len(configs),
            "epochs_saved_pct": round(100 * (1 - sum(u for u, _, _ in runs)
                                             / sum(t for _, t, _ in runs)), 1),
            "same_best_pct": round(100 * sum(r <= 1e-9 for _, _, r in runs) / len(runs), 1),
            "mean_regret": round(sum(r for _, _, r in runs) / len(runs), 4),
            "worst_regret": round(max(r for _, _, r in runs), 4),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--mutate", default=",".join(MUTATE),
                    help="corpus models to add mutants of (empty: none)")
    ap.add_argument("--mutants", type=int, default=2, help="mutants of each --mutate model")
    ap.add_argument("--lrs", default=",".join(map(str, LRS)))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=1000,
                    help="train and test on the first N samples of each split (a fixed "
                         "subsample: the same for every configuration)")
    ap.add_argument("--orders", type=int, default=200, help="random trial orders replayed")
    ap.add_argument("--after", type=int, default=2, help="predicted: stop after epoch <= K")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--curves", type=Path, default=Path(tempfile.gettempdir())
                    / "nnrag-early-stop-curves.json",
                    help="the trained curves: reused when they hold these configurations")
    ap.add_argument("--lemur", type=Path, default=LEMUR)
    ap.add_argument("--predictor", type=Path, help="a saved predictor instead of fitting one")
    ap.add_argument("--json", type=Path)
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    files = model_files(args.models.split(","), args.mutate.split(",") if args.mutate else [],
                        args.mutants)
    specs = [config_spec(f, float(lr), d, args.epochs, args.limit)
             for d in args.datasets.split(",") for f in files for lr in args.lrs.split(",")]
    cached = (json.loads(args.curves.read_text()) if args.curves.exists()
              else {"configs": [], "train_s": 0.0})
    known = {json.dumps(c["spec"], sort_keys=True): c for c in cached["configs"]}
    missing = [s for s in specs if json.dumps(s, sort_keys=True) not in known]
    print(f"{len(specs) - len(missing)} trained curves reused from {args.curves}, "
          f"{len(missing)} to train", file=sys.stderr)
    trained, took = train_all(missing)
    known.update({json.dumps(c["spec"], sort_keys=True): c for c in trained})
    train_s = cached["train_s"] + took
    args.curves.write_text(json.dumps({"configs": list(known.values()), "train_s": train_s}))
    configs = [known[json.dumps(s, sort_keys=True)] for s in specs]
    usable = [c for c in configs if c["outcome"] == "ok" and len(c["curve"]) == args.epochs
              and all(v is not None and math.isfinite(v) for v in c["curve"])]
    predictor = predictor_for(args)
    highs = predicted_stops(usable, predictor, args.after)
    rows = simulate(usable, highs, args.orders, args.after, args.seed, args.epochs)
    for row in rows:
        print(json.dumps(row))
    figures = {"configs": len(usable), "failed_configs": len(configs) - len(usable),
               "models": [f.stem for f in files], "lrs": [float(x) for x in args.lrs.split(",")],
               "datasets": args.datasets.split(","), "epochs": args.epochs,
               "limit": args.limit, "orders": args.orders, "after": args.after,
               "train_s": round(train_s, 1),
               "train_s_note": "real training of every configuration once, summed over "
                               "the runs that trained them",
               "predictor": (str(args.predictor) if args.predictor
                             else "fitted on LEMUR (all image-classification trials)"),
               "table": rows,
               "curves": [{"model": c["spec"]["model"]["name"],
                           "lr": c["spec"]["hyperparameters"]["lr"],
                           "dataset": c["spec"]["dataset"],
                           "curve": [round(v, 4) for v in c["curve"]]} for c in usable]}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if args.record:
        _results.record("early_stop", args.record, figures, script=__file__, note=args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
