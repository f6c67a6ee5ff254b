"""``nnrag tune`` with real training: which sampler and pruner finds the best configuration
in 1, 5, 10 and 20 trials, and at what cost.

A *task* is one corpus model on one dataset with one seed (the seed drives both the
sampler and the training). Each method runs one study of ``--trials`` trials through
:meth:`nnrag.workspace.Workspace.tune` exactly as ``nnrag tune`` does (sandboxed engine,
run store, Optuna storage), 3 epochs per trial, on the default search space (lr
log-uniform 1e-4..0.1, momentum 0..0.99, batch size 16/32/64/128). The best test accuracy
after the first n trials is read off the study; ``llm`` at n=1 is a separate one-shot study
(its prompt asks for the single best configuration).

Methods: ``random``, ``tpe``, ``tpe+median`` (Optuna's MedianPruner), ``prior``
(retrieval from LEMUR's records only: the run store is empty when it starts, so nothing
of the task itself can leak in), ``prior+runs`` (the same, in a workspace whose run store
already holds the ``random`` and ``tpe`` studies of the *other* models on the same dataset
and seed, read from ``--runs-from``: a user tuning their sixth model), ``prior+predicted``
(the accuracy predictor's early stop, fitted on LEMUR), ``llm`` (the embedded Gemma 3 270M
through llama-cpp, or ``--llm-model``).
Every method has its own workspace, except that ``tpe`` shares ``random``'s: Optuna's TPE
samples its first 10 trials with the same seeded random sampler, so those trials are the
same runs and the engine answers them from the run store; their time is counted as the
original's.

Fashion-MNIST is a fixed subsample (seeded): ``--fashion-train`` training and
``--fashion-test`` test images, written as IDX files under the benchmark's data folder.

Time is the wall time of each trial as seen by the study (sandbox, data loading, training,
evaluation and the sampler), summed over the first n trials.

    python benchmarks/tune_real.py [--jobs 2] [--out DIR] [--record LABEL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
from _shared import LEMUR, MODELS  # noqa: E402

DATASETS = ("digits", "fashion-mnist")
METHODS = ("random", "tpe", "tpe+median", "prior", "prior+runs", "prior+predicted", "llm")
BUDGETS = (1, 5, 10, 20)
#: method -> (sampler, pruner, workspace it runs in)
PLAN = {"random": ("random", "none", "random"), "tpe": ("tpe", "none", "random"),
        "tpe+median": ("tpe", "median", "tpe+median"), "prior": ("prior", "none", "prior"),
        "prior+runs": ("prior", "none", "prior+runs"),
        "prior+predicted": ("prior", "predicted", "prior+predicted"),
        "llm": ("llm", "none", "llm"), "llm-1shot": ("llm", "none", "llm-1shot")}


def write_idx(path: Path, array: Any) -> None:
    import numpy as np

    data = np.ascontiguousarray(array, dtype=np.uint8)
    path.write_bytes(struct.pack(">HBB", 0, 0x08, data.ndim)
                     + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes())


def fashion_subsample(data_root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """A fixed, seeded subsample of the installed Fashion-MNIST as IDX files."""
    import numpy as np

    from nnrag.train.datasets import read_idx

    folder = data_root / "fashion-mnist"
    if (folder / "done").exists():
        return
    src = Path("/usr/share/datasets/fashion-mnist")
    if not src.is_dir():
        sys.exit("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = read_idx(next(src.glob(f"{prefix}-images-idx3-ubyte*")))
        labels = read_idx(next(src.glob(f"{prefix}-labels-idx1-ubyte*")))
        keep = np.sort(rng.permutation(len(labels))[:n])
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images[keep])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels[keep])
        print(f"fashion-mnist {split}: {len(keep)} of {len(labels)}", file=sys.stderr)
    (folder / "done").write_text("")


def run_method(task_dir: Path, method: str, model: Path, dataset: str, seed: int,
               trials: int, epochs: int, predictor: Path, cache: Path,
               llm_backend: str, llm_model: str | None, lemur: Path = LEMUR,
               seed_runs: Sequence[Path] = ()) -> dict[str, Any]:
    """One study; per trial its value, outcome and wall seconds (a run answered from the
    run store costs what the original cost)."""
    from nnrag.workspace import open_workspace

    sampler, pruner, home_name = PLAN[method]
    home = task_dir / home_name
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "cache").exists():
        (home / "cache").symlink_to(cache)
    ws = open_workspace(home)
    if seed_runs and not Path(ws.runs).exists():  # once: a resumed task keeps its store
        copy_runs(seed_runs, ws.run_store())
    times_path = home / "trial_seconds.json"
    seconds: dict[str, float] = (json.loads(times_path.read_text())
                                 if times_path.exists() else {})
    rows: list[dict[str, Any]] = []
    last = [time.monotonic()]

    def progress(t: Any) -> None:
        now = time.monotonic()
        rows.append({"number": t.number, "value": t.value, "outcome": t.outcome,
                     "run": t.run, "seconds": now - last[0], "params": t.params})
        last[0] = now

    result = ws.tune(str(model), dataset=dataset, trials=trials, sampler=sampler,
                     epochs=epochs, study=method, seed=seed, progress=progress,
                     lemur=lemur if sampler == "prior" else None, pruner=pruner,
                     predictor=predictor if pruner == "predicted" else None,
                     llm_backend=llm_backend, llm_model=llm_model)
    store = ws.run_store(readonly=True)
    for row in rows:
        if row["run"] is None:
            continue
        record = store.get(row["run"])
        if record.duplicate_of is not None and str(record.duplicate_of) in seconds:
            row["seconds"] = seconds[str(record.duplicate_of)]
            row["answered_from_store"] = True
        else:
            seconds[str(row["run"])] = row["seconds"]
    times_path.write_text(json.dumps(seconds))
    return {"method": method, "best_value": result.best_value, "trials": rows}


def copy_runs(sources: Sequence[Path], store: Any) -> int:
    """The finished, trained runs (not those answered from a twin) of the run stores at
    ``sources``, written into ``store`` with their epochs; how many."""
    from nnrag.train.runstore import RunStore

    n = 0
    for source in sources:
        old = RunStore(source, readonly=True)
        done = [r for r in old.runs(limit=1 << 20) if r.status == "done"
                and r.outcome == "ok" and r.duplicate_of is None and r.code]
        for r in old.with_epochs(done):
            epochs: dict[int, dict[str, Any]] = {}
            for e in r.epochs:
                epochs.setdefault(e.epoch, {"epoch": e.epoch})[e.metric] = e.value
            new = store.create(r.name, r.dataset, r.spec_dict, r.spec_key, r.code_md5,
                               r.fingerprint, r.code)
            store.start(new)
            store.finish(new, {"outcome": r.outcome, "duration_s": r.duration_s,
                               "params": r.params, "epochs": list(epochs.values())},
                         r.spec_dict.get("metric") or "accuracy")
            n += 1
        old.close()
    return n


def other_models_runs(runs_from: Path, model: str, dataset: str, seed: int) -> list[Path]:
    """The run stores of the ``random``/``tpe`` studies of every other model on ``dataset``
    with ``seed`` under ``runs_from`` (an ``--out`` folder of an earlier run)."""
    stores = [runs_from / "work" / f"{m}-{dataset}-{seed}" / PLAN["tpe"][2] / "runs.db"
              for m in MODELS if m != model]
    missing = [str(p) for p in stores if not p.is_file()]
    if missing:
        raise SystemExit(f"prior+runs needs the tpe studies of the other models: no "
                         f"{missing[0]} (run --methods random tpe with --out {runs_from})")
    return stores


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    out = Path(task["out"]) / "tasks" / f"{task['model']}-{task['dataset']}-{task['seed']}.json"
    if out.exists():
        return json.loads(out.read_text())
    task_dir = Path(task["out"]) / "work" / out.stem
    from nnrag.examples import CORPUS

    model = CORPUS / f"{task['model']}.py"
    results = {}
    start = time.monotonic()
    for method in task["methods"]:
        trials = 1 if method == "llm-1shot" else task["trials"]
        seed_runs = (other_models_runs(Path(task["runs_from"]), task["model"], task["dataset"],
                                       task["seed"]) if method == "prior+runs" else [])
        results[method] = run_method(task_dir, method, model, task["dataset"], task["seed"],
                                     trials, task["epochs"], Path(task["predictor"]),
                                     Path(task["cache"]), task["llm_backend"],
                                     task["llm_model"], Path(task["lemur"]), seed_runs)
    doc = {"model": task["model"], "dataset": task["dataset"], "seed": task["seed"],
           "seconds": round(time.monotonic() - start, 1), "methods": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(out)
    return doc


def best_at(trials: list[dict[str, Any]], n: int) -> float:
    """The best accuracy among the first n trials (0 when none finished)."""
    values = [t["value"] for t in trials[:n] if t["value"] is not None]
    return max(values, default=0.0)


def seconds_at(trials: list[dict[str, Any]], n: int) -> float:
    return sum(t["seconds"] for t in trials[:n])


def summarize(docs: Sequence[dict[str, Any]], methods: Sequence[str],
              tolerance: float) -> dict[str, Any]:
    """Per method and budget: mean and spread of the best accuracy, mean wall time; the
    issue's two targets for ``prior``."""
    def curve(doc: dict[str, Any], method: str, n: int) -> float | None:
        if method == "llm" and n == 1 and "llm-1shot" in doc["methods"]:
            return best_at(doc["methods"]["llm-1shot"]["trials"], 1)
        got = doc["methods"].get(method)
        return None if got is None or len(got["trials"]) < n else best_at(got["trials"], n)

    def mean(values: list[float], digits: int = 4) -> float | None:
        return round(statistics.mean(values), digits) if values else None

    def accuracy(subset: Sequence[dict[str, Any]], method: str) -> dict[str, Any]:
        row: dict[str, Any] = {"method": method}
        have = [d for d in subset if curve(d, method, 1) is not None]
        row["tasks"] = len(have)
        for n in BUDGETS:
            row[f"mean_at_{n}"] = mean([v for d in have if (v := curve(d, method, n)) is not None])
        last = [v for d in have if (v := curve(d, method, BUDGETS[-1])) is not None]
        row[f"median_at_{BUDGETS[-1]}"] = round(statistics.median(last), 4) if last else None
        # spread: the std over seeds of a (model, dataset), averaged over them
        groups: dict[tuple[str, str], list[float]] = {}
        for d in have:
            if (v := curve(d, method, BUDGETS[-1])) is not None:
                groups.setdefault((d["model"], d["dataset"]), []).append(v)
        row[f"seed_std_at_{BUDGETS[-1]}"] = mean(
            [statistics.pstdev(g) for g in groups.values() if len(g) > 1])
        return row

    def cost(method: str) -> dict[str, Any]:
        row: dict[str, Any] = {"method": method}
        for n in BUDGETS:
            key = "llm-1shot" if method == "llm" and n == 1 else method
            row[f"seconds_at_{n}"] = mean(
                [seconds_at(d["methods"][key]["trials"], n) for d in docs
                 if key in d["methods"] and len(d["methods"][key]["trials"]) >= n], 1)
        trials = [t for d in docs for t in d["methods"].get(method, {}).get("trials", [])]
        row["stopped_pct"] = mean([100.0 * (t["outcome"] == "stopped") for t in trials], 1)
        row["failed_pct"] = mean(
            [100.0 * (t["outcome"] not in ("ok", "stopped")) for t in trials], 1)
        return row

    out: dict[str, Any] = {"tasks": len(docs),
                           "accuracy": [accuracy(docs, m) for m in methods]}
    datasets = sorted({d["dataset"] for d in docs})
    for ds in datasets:
        subset = [d for d in docs if d["dataset"] == ds]
        out[f"accuracy_{ds.replace('-', '_')}"] = [accuracy(subset, m) for m in methods]
    llm_tasks = [d for d in docs if "llm" in d["methods"]]
    if llm_tasks and len(llm_tasks) < len(docs):  # every method on the llm's tasks only
        out["accuracy_on_llm_tasks"] = [accuracy(llm_tasks, m) for m in methods]
    out["wall_seconds"] = [cost(m) for m in methods]
    targets: dict[str, Any] = {}
    for method in ("prior", "prior+runs"):  # the two targets, for each prior
        both = [d for d in docs if method in d["methods"] and "tpe" in d["methods"]]
        if not both:
            continue
        key = method.replace("+", "_")
        tpe20 = [best_at(d["methods"]["tpe"]["trials"], 20) for d in both]
        at5 = [best_at(d["methods"][method]["trials"], 5) for d in both]
        at1 = [best_at(d["methods"][method]["trials"], 1) for d in both]
        tpe10 = [best_at(d["methods"]["tpe"]["trials"], 10) for d in both]
        targets.update({
            "tasks": len(both),
            f"{key}5_reaches_tpe20_pct": round(100 * statistics.mean(
                [p >= t for p, t in zip(at5, tpe20, strict=True)]), 1),
            f"{key}5_within_tolerance_of_tpe20_pct": round(100 * statistics.mean(
                [p >= t - tolerance for p, t in zip(at5, tpe20, strict=True)]), 1),
            "tolerance": tolerance,
            f"{key}_one_shot_median": round(statistics.median(at1), 4),
            "tpe_at_10_median": round(statistics.median(tpe10), 4),
            f"{key}_one_shot_ge_tpe10_per_task_pct": round(100 * statistics.mean(
                [p >= t for p, t in zip(at1, tpe10, strict=True)]), 1),
        })
    return {**out, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS),
                    choices=list(METHODS))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--fashion-train", type=int, default=1000)
    ap.add_argument("--fashion-test", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2, help="tasks run at once")
    ap.add_argument("--llm-backend", default="llama-cpp")
    ap.add_argument("--llm-model", default=None)
    ap.add_argument("--tolerance", type=float, default=0.01,
                    help="accuracy within which prior@5 counts as reaching tpe@20 (also "
                         "reported strictly)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/nnrag-tune-real"),
                    help="work folder; finished tasks are kept, so a rerun resumes")
    ap.add_argument("--lemur", type=Path, default=LEMUR)
    ap.add_argument("--runs-from", type=Path,
                    help="an --out folder holding the random/tpe studies, whose other "
                         "models' runs seed prior+runs (default: --out)")
    ap.add_argument("--summarize-only", action="store_true")
    ap.add_argument("--also", type=Path, nargs="*", default=[],
                    help="other --out folders whose methods for the same tasks are added "
                         "to the summary (e.g. llm run on fewer seeds)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record")
    ap.add_argument("--note")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    os.environ["NNRAG_DATA"] = str(data)
    start = time.monotonic()
    methods = list(args.methods) + (["llm-1shot"] if "llm" in args.methods else [])
    summarized = list(args.methods)
    for other in args.also:  # the methods the other folders hold, in METHODS order
        found = {m for f in (other / "tasks").glob("*.json")
                 for m in json.loads(f.read_text())["methods"]}
        summarized += [m for m in METHODS if m in found and m not in summarized]
    tasks = [{"model": m, "dataset": d, "seed": s} for m in args.models
             for d in args.datasets for s in args.seeds]
    if not args.summarize_only:
        if "fashion-mnist" in args.datasets:
            fashion_subsample(data, args.fashion_train, args.fashion_test)
        cache, predictor = prepare(args)
        common = {"out": str(args.out), "methods": methods, "trials": args.trials,
                  "epochs": args.epochs, "predictor": str(predictor), "cache": str(cache),
                  "llm_backend": args.llm_backend, "llm_model": args.llm_model,
                  "lemur": str(args.lemur), "runs_from": str(args.runs_from or args.out)}
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_task, {**common, **t}): t for t in tasks}
            for i, fut in enumerate(as_completed(futures), 1):
                t = futures[fut]
                doc = fut.result()
                bests = {m: r["best_value"] for m, r in doc["methods"].items()}
                print(f"[{i}/{len(tasks)}] {t['model']} {t['dataset']} seed {t['seed']} "
                      f"({doc['seconds']:.0f}s): {bests}", file=sys.stderr, flush=True)
    docs = []
    for t in tasks:
        path = args.out / "tasks" / f"{t['model']}-{t['dataset']}-{t['seed']}.json"
        doc = json.loads(path.read_text()) if path.exists() else None
        for other in args.also:
            more = other / "tasks" / path.name
            if more.exists():
                extra = json.loads(more.read_text())
                doc = doc or {**extra, "methods": {}}
                doc["methods"].update(extra["methods"])
        if doc is not None:
            docs.append(doc)
    figures = {**summarize(docs, summarized, args.tolerance),
               "models": list(args.models), "datasets": list(args.datasets),
               "seeds": list(args.seeds), "trials": args.trials, "epochs": args.epochs,
               "fashion_subsample": [args.fashion_train, args.fashion_test],
               "llm": f"{args.llm_backend}:{args.llm_model or 'embedded'}"
               if "llm" in summarized else None,
               "seconds": round(time.monotonic() - start, 1)}
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**figures, "per_task": docs}, indent=1) + "\n")
    if args.record:
        _results.record("tune_real", args.record, figures, script=__file__, note=args.note)
    return 0


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """LEMUR's prior models read once into a shared cache, and the predictor fitted on
    LEMUR once, before the tasks fan out."""
    cache = args.out / "cache"
    cache.mkdir(exist_ok=True)
    predictor = args.out / "predictor.json"
    if {"prior", "prior+runs", "prior+predicted"} & set(args.methods):
        from nnrag.tune_sources import lemur_models

        t0 = time.monotonic()
        n = len(lemur_models(args.lemur, cache))
        print(f"LEMUR prior: {n} models ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
    if "prior+predicted" in args.methods and not predictor.exists():
        from nnrag.predict import Predictor, read_lemur

        t0 = time.monotonic()
        Predictor().fit(read_lemur(args.lemur).trials).save(predictor)
        print(f"predictor fitted on LEMUR ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
    return cache, predictor


if __name__ == "__main__":
    raise SystemExit(main())
