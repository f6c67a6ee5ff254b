"""LEMUR's zoo through ``nnrag train``: how many of its models train, and why the rest fail.

Each model of ``models.jsonl.gz`` (all, or a seeded sample) is trained for one epoch on an
offline image dataset presented as an RGB shape the zoo was designed for (``shape:
[3, S, S]``: gray -> RGB, resized; ``--side``, default 64: LEMUR trained its models at 32 to
512 pixels, and ``lemur_shapes.py`` measured that 32 pixels collapses the pooling of about
half of them while 64 builds 97.5%), on a fixed training subsample, sandboxed, with a wall
budget per model. Models that import torchvision get it from an index of torchvision's
*source* (``--torchvision-wheel``, unpacked, never installed), spliced in before the trial.
Every failure gets a cause: ``missing_package`` (neither installed nor indexed),
``timeout``, ``oom``, ``wrong_output`` (logits that are not one row of class scores per
image, refused by the parent), ``harness`` (nnrag's side: spec, channel, sandbox) or ``model``
(an error raised in the model's own code, with the line). It also counts the zoo's
structures two ways (names and constants abstracted; constants kept).

    python benchmarks/lemur_zoo.py --sample 400 --seed 0 --json FILE
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import random
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
import _shared  # noqa: E402

LEMUR = _shared.LEMUR / "models.jsonl.gz"
STATS = LEMUR.with_name("stats.jsonl.gz")
WHEEL = Path("/work/bench-src/dl/torchvision-0.29.1-cp311-cp311-manylinux_2_28_x86_64.whl")
HARNESS = re.compile(r"rejected trial output|SandboxError|SpecError|WorkerDied|BadResult")
# the parent refused the trial's logits by size: the model's output is not one row of class
# scores per image (a captioning or detection head), so it cannot be a classifier's result
WRONG_OUTPUT = re.compile(r"rejected trial output: logits file")
MISSING = re.compile(r"No module named '([\w.]+)'")


def load_models(path: Path, sample: int | None, seed: int,
                every_torchvision: bool = False) -> list[tuple[str, str]]:
    """All models, or a seeded sample (plus, with ``every_torchvision``, every model that
    imports torchvision, so the splicing target is measured on all of them)."""
    from nnrag.index import read_lemur_models

    models = [(name, code) for name, _, code in read_lemur_models(path)]
    if sample is not None and sample < len(models):
        chosen = random.Random(seed).sample(models, sample)
        if every_torchvision:
            names = {name for name, _ in chosen}
            chosen += [m for m in models if "torchvision" in m[1] and m[0] not in names]
        models = chosen
    return models


def lemur_tasks(stats: Path) -> dict[str, str]:
    """Each model's task as LEMUR recorded it (its most frequent one): the zoo also holds
    detection, segmentation, captioning and text models, which a classification run cannot
    be expected to train, so the figures are broken down by task."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    if stats.is_file():
        with gzip.open(stats, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                counts[str(row["model"])][str(row["task"])] += 1
    return {name: c.most_common(1)[0][0] for name, c in counts.items()}


def torchvision_source(wheel: Path, work: Path) -> Path | None:
    """The wheel's ``torchvision/`` folder, unpacked (source only; nothing is installed)."""
    if not wheel.is_file():
        return None
    target = work / "src"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target, [n for n in z.namelist()
                              if n.startswith("torchvision/") and n.endswith(".py")])
    return target / "torchvision"


def cause(run: Any) -> str:
    """One failure's category, from what the run store recorded."""
    if run.outcome in ("timeout", "oom"):
        return str(run.outcome)
    text = f"{run.error or ''}\n{run.traceback or ''}"
    if WRONG_OUTPUT.search(text):
        return "wrong_output"
    if HARNESS.search(text):
        return "harness"
    if MISSING.search(text):
        return "missing_package"
    return "model"


def model_line(run: Any) -> str:
    """The last traceback line inside the model's own module, if any."""
    lines = [ln.strip() for ln in (run.traceback or "").splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        if "nnrag_model_" in lines[i] and i + 1 < len(lines):
            return f"{lines[i]} -> {lines[i + 1]}"
    return (run.error or "")[:160]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=LEMUR)
    ap.add_argument("--sample", type=int, default=None, help="seeded sample size (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--limit", type=int, default=2000, help="training (and test) subsample")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--every-torchvision", action="store_true",
                    help="add every torchvision-importing model to the sample")
    ap.add_argument("--side", type=int, default=64, help="present images as 3 x SIDE x SIDE")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-mb", type=int, default=4096, help="memory budget per model")
    ap.add_argument("--wall", type=float, default=180.0, help="wall budget per model, s")
    ap.add_argument("--torchvision-wheel", type=Path, default=WHEEL)
    ap.add_argument("--json")
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    import nnrag
    from nnrag.train.datasets import available

    ok, why = available(args.dataset)
    if not ok:
        print(f"{args.dataset} is not available here ({why}); using digits", file=sys.stderr)
        args.dataset = "digits"
    work = Path(tempfile.mkdtemp(prefix="nnrag-lemur-zoo-"))
    ws = nnrag.open_workspace(work, db=work / "index.db", runs=work / "runs.db")
    t0 = time.perf_counter()
    source = torchvision_source(args.torchvision_wheel, work)
    if source is not None:
        ws.index(source, prefix="torchvision", package="torchvision")
    index_s = time.perf_counter() - t0
    models = load_models(args.models, args.sample, args.seed, args.every_torchvision)
    hp = {"lr": 0.01, "momentum": 0.9, "batch_size": 64, "dropout": 0.2}
    specs = [{"model": {"code": code, "name": name}, "dataset": args.dataset,
              "shape": [3, args.side, args.side], "limit": args.limit, "hyperparameters": hp,
              "budget": {"epochs": args.epochs, "wall_s": args.wall, "memory_mb": args.memory_mb}}
             for name, code in models]
    uses_tv = {name for name, code in models if "torchvision" in code}
    tasks = lemur_tasks(args.models.with_name(STATS.name))
    from nnrag.train.spec import SpecError, parse_spec

    accepted: list[Any] = []
    rejected: dict[str, str] = {}  # refused before any run (e.g. undeclared-default names)
    for spec in specs:
        try:
            accepted.append(parse_spec(spec))
        except SpecError as exc:
            rejected[spec["model"]["name"]] = str(exc)
    done = 0

    def progress(event: Any) -> None:
        nonlocal done
        if type(event).__name__ in ("TrialDone", "TrialDeduplicated"):
            done += 1
            if done % 25 == 0:
                print(f"  {done}/{len(specs)} trials done", file=sys.stderr)

    t0 = time.perf_counter()
    report = ws.train(accepted, workers=args.workers, progress=progress,
                      splice_from=ws.db if source is not None else None)
    train_s = time.perf_counter() - t0
    runs = [ws.run_store().get(i) for i in report.run_ids]
    outcomes = collections.Counter(str(r.outcome) for r in runs)
    outcomes.update({"spec_rejected": len(rejected)} if rejected else {})
    failed = [r for r in runs if r.outcome != "ok"]
    causes = collections.Counter(cause(r) for r in failed)
    causes.update({"spec_rejected": len(rejected)} if rejected else {})
    by_task: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"models": 0, "ok": 0})
    for name, _ in models:
        by_task[tasks.get(name, "unrecorded")]["models"] += 1
    for r in runs:
        by_task[tasks.get(r.name, "unrecorded")]["ok"] += r.outcome == "ok"
    cls = by_task.get("img-classification", {"models": 0, "ok": 0})
    missing = collections.Counter(m.group(1).split(".")[0] for r in failed
                                  if (m := MISSING.search(f"{r.error}\n{r.traceback}")))
    tv_ok = sum(1 for r in runs if r.name in uses_tv and r.outcome == "ok")
    structures = ws.import_lemur(args.models, folder=work / "lemur")  # the whole zoo
    results: dict[str, Any] = {
        "models": len(specs), "dataset": args.dataset, "shape": [3, args.side, args.side],
        "limit": args.limit, "epochs": args.epochs, "workers": args.workers,
        "outcomes": dict(outcomes), "trained_pct": round(100 * outcomes["ok"] / len(specs), 1),
        "by_lemur_task": dict(by_task),
        "classification_trained_pct": round(100 * cls["ok"] / max(cls["models"], 1), 1),
        "failure_causes": dict(causes), "missing_packages": dict(missing),
        "torchvision": {"models": len(uses_tv), "trained": tv_ok,
                        "source_indexed": source is not None},
        "examples": {**{c: [f"{r.name}: {model_line(r)}" for r in failed if cause(r) == c][:5]
                        for c in causes if c != "spec_rejected"},
                     **({"spec_rejected": [f"{n}: {m[:200]}" for n, m in rejected.items()][:5]}
                        if rejected else {})},
        "structures": {"all_models": structures.models,
                       "names_and_constants_abstracted": structures.structures,
                       "constants_kept": structures.configurations},
        "seconds": {"index_torchvision": round(index_s, 1), "train": round(train_s, 1)},
    }
    print(json.dumps({k: v for k, v in results.items() if k != "examples"}, indent=1))
    for c, lines in results["examples"].items():
        print(f"\n{c}:\n  " + "\n  ".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.record:
        _results.record("lemur_zoo", args.record, results, script=__file__, argv=argv,
                        note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
