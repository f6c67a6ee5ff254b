"""How fast ``random``, ``tpe`` and ``prior`` find a good configuration, on a surrogate made of
LEMUR's recorded trials (no training: many repetitions are cheap).

A *configuration* is one LEMUR model on one dataset with at least ``--min-trials`` recorded
trials (image classification). Its recorded trials form a lookup table: a method's suggestion
is snapped to the nearest recorded hyperparameter vector (lr and batch in log scale, every
numeric dimension scaled to the configuration's recorded range, a different transform
counting 1) and its value is that record's best accuracy, which the method is told. The
search space of a configuration spans its records: lr log-uniform and momentum and dropout
uniform over their recorded ranges, batch and transform the recorded values (dimensions that
not every record carries are left out).

``prior`` is ``nnrag tune --sampler prior``'s retrieval (:func:`nnrag.tune.prior.
warm_configs`, same similarity, mapping and dataset rule) over every LEMUR model except the
target's own *family* (so neither the target's own records nor its near-copies help), then
TPE. Simple regret after n picks = the configuration's best recorded value minus the best
value found in the first n picks.

    python benchmarks/tune_surrogate.py [--min-trials 30] [--seeds 10] [--record LABEL]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
from _shared import LEMUR  # noqa: E402

PICKS = (1, 5, 10, 20)
METHODS = ("random", "tpe", "prior")
NUMERIC = ("lr", "momentum", "batch", "dropout")
LOG = ("lr", "batch")


class Config:
    """One (model, dataset): its records as vectors and the space they span."""

    def __init__(self, model: str, dataset: str, trials: list[Any]) -> None:
        self.model, self.dataset = model, dataset
        self.family = trials[0].family
        hps = [t.hyperparameters for t in trials]
        self.dims = [d for d in NUMERIC if all(_num(h.get(d)) is not None for h in hps)]
        if "lr" in self.dims:  # a log dimension needs positive values
            self.dims = [d for d in self.dims if d not in LOG or all(h[d] > 0 for h in hps)]
        transforms = sorted({str(h.get("transform")) for h in hps})
        self.transforms = transforms if len(transforms) > 1 else []
        self.rows = [({d: float(h[d]) for d in self.dims}, str(h.get("transform")), t.best)
                     for h, t in zip(hps, trials, strict=True)]
        self.best = max(v for *_, v in self.rows)
        self.lo = {d: min(r[d] for r, _, _ in self.rows) for d in self.dims}
        self.hi = {d: max(r[d] for r, _, _ in self.rows) for d in self.dims}

    def space(self) -> dict[str, Any]:
        """The configuration's search space as nnrag's :class:`~nnrag.tune.space.Param`s,
        under nnrag's names (LEMUR's ``batch`` is ``batch_size``)."""
        from nnrag.tune.space import Param

        out: dict[str, Any] = {}
        for d in self.dims:
            name = "batch_size" if d == "batch" else d
            if d == "batch":
                out[name] = Param(name, choices=tuple(sorted({int(r[d]) for r, _, _ in
                                                               self.rows})))
            elif self.lo[d] == self.hi[d]:
                out[name] = Param(name, choices=(self.lo[d],))
            else:
                out[name] = Param(name, self.lo[d], self.hi[d], log=d in LOG)
        if self.transforms:
            out["transform"] = Param("transform", choices=tuple(self.transforms))
        return out

    def _scaled(self, d: str, v: float) -> float:
        lo, hi = self.lo[d], self.hi[d]
        if d in LOG:
            lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, 1e-12))
        return 0.0 if hi == lo else (v - lo) / (hi - lo)

    def snap(self, params: dict[str, Any]) -> float:
        """The value of the recorded trial nearest to ``params``."""
        want = {d: self._scaled(d, float(params["batch_size" if d == "batch" else d]))
                for d in self.dims if ("batch_size" if d == "batch" else d) in params}
        best_i, best_d = 0, math.inf
        for i, (r, transform, _) in enumerate(self.rows):
            dist = sum((self._scaled(d, r[d]) - w) ** 2 for d, w in want.items())
            if self.transforms and params.get("transform") not in (None, transform):
                dist += 1.0
            if dist < best_d:
                best_i, best_d = i, dist
        return self.rows[best_i][2]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def run_method(method: str, config: Config, seed: int, budget: int,
               warm: list[Any]) -> list[float]:
    """The best value found after each of ``budget`` picks."""
    import optuna

    from nnrag.tune.samplers import PriorHook, make_sampler
    from nnrag.tune.space import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = config.space()
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(method, seed))
    if method == "prior":
        PriorHook(warm).start(study)
    found, best = [], -math.inf
    for _ in range(budget):
        trial = study.ask()
        value = config.snap(suggest(trial, space))
        study.tell(trial, value)
        best = max(best, value)
        found.append(best)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lemur", type=Path, default=LEMUR)
    ap.add_argument("--min-trials", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--max-configs", type=int, default=0, help="0: every configuration")
    ap.add_argument("--json", type=Path)
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    from nnrag import tune_sources as _tune
    from nnrag.predict import read_lemur
    from nnrag.tune.prior import warm_configs

    start = time.monotonic()
    data = read_lemur(args.lemur)
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for t in data.trials:
        groups[(t.model, t.dataset)].append(t)
    configs = [Config(m, d, ts) for (m, d), ts in sorted(groups.items())
               if len(ts) >= args.min_trials]
    configs = [c for c in configs if c.dims and "lr" in c.dims]
    if args.max_configs:
        configs = configs[:args.max_configs]
    models = _tune.models_of_trials(data.trials)
    by_name = {m.name: m for m in models}
    read_s = time.monotonic() - start

    budget = max(PICKS)
    regrets: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in METHODS}
    per_config: list[dict[str, Any]] = []
    sampler_s: dict[str, float] = dict.fromkeys(METHODS, 0.0)
    warm_counts = []
    for config in configs:
        target = by_name[config.model]
        distance, useful = _tune.dataset_rule(config.dataset)
        warm = warm_configs((target.fingerprint, target.features), models, config.space(),
                            config.dataset, distance=distance, useful=useful,
                            exclude=lambda m, fam=config.family: m.family == fam)
        warm_counts.append(len(warm))
        row: dict[str, Any] = {"model": config.model, "dataset": config.dataset,
                               "records": len(config.rows), "best": round(config.best, 4)}
        for method in METHODS:
            t0 = time.monotonic()
            at = defaultdict(list)
            for seed in range(args.seeds):
                found = run_method(method, config, seed, budget, warm)
                for n in PICKS:
                    regret = config.best - found[n - 1]
                    regrets[method][n].append(regret)
                    at[n].append(regret)
            sampler_s[method] += time.monotonic() - t0
            row[f"{method}_regret_at_5"] = round(statistics.mean(at[5]), 4)
        per_config.append(row)
        print(json.dumps(row), file=sys.stderr)

    def table(keep: set[tuple[str, str]] | None) -> list[dict[str, Any]]:
        rows = []
        for method in METHODS:
            out: dict[str, Any] = {"method": method}
            for n in PICKS:
                values = regrets[method][n]
                if keep is not None:  # the per-config lists are in config order, seeds inner
                    values = [v for i, v in enumerate(values)
                              if (configs[i // args.seeds].model,
                                  configs[i // args.seeds].dataset) in keep]
                out[f"regret_at_{n}"] = round(statistics.mean(values), 4)
                out[f"median_at_{n}"] = round(statistics.median(values), 4)
            out["solved_at_5_pct"] = round(100 * statistics.mean(
                [v <= 0.01 for v in (regrets[method][5] if keep is None else [
                    v for i, v in enumerate(regrets[method][5])
                    if (configs[i // args.seeds].model, configs[i // args.seeds].dataset)
                    in keep])]), 1)
            rows.append(out)
        return rows

    big = {(c.model, c.dataset) for c in configs if len(c.rows) >= 50}
    figures: dict[str, Any] = {
        "configurations": len(configs), "min_trials": args.min_trials, "seeds": args.seeds,
        "configurations_with_50": len(big),
        "regret": table(None),
        "regret_50_or_more_trials": table(big) if big else [],
        "prior_warm_configs_mean": round(statistics.mean(warm_counts), 2) if warm_counts else 0,
        "sampler_ms_per_pick": {m: round(1000 * s / max(1, len(configs) * args.seeds * budget),
                                         2) for m, s in sampler_s.items()},
        "read_s": round(read_s, 1),
        "seconds": round(time.monotonic() - start, 1),
    }
    text = json.dumps({**figures, "per_configuration": per_config}, indent=1)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(text + "\n")
    if args.record:
        _results.record("tune_surrogate", args.record, figures, script=__file__,
                        note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
