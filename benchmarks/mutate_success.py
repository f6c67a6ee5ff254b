"""How often `nnrag mutate` produces valid mutants: every corpus model + torchvision classifiers.

For each model: record it (sandbox), then propose and validate mutants until 10 unique valid
ones exist or the proposals run out. Prints, per model and overall: fx-traceable or not, valid
and validated mutants, seconds; then the share of fx-traceable models with >= 10 unique
valid mutants (target >= 90%), the share of validated mutants that are valid, and the time
per valid mutant. Torchvision models are taken from an index of torchvision's source (see
rag_executability.py; torchvision itself need not be importable). Prints figures, never
asserts them.

    python benchmarks/mutate_success.py --db benchmarks/_work/bench.db --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _figures import mutate_success as figures  # noqa: E402
from _results import add_arguments, record  # noqa: E402

from nnrag.examples import corpus_dir  # noqa: E402
from nnrag.exceptions import NnragError  # noqa: E402
from nnrag.mutate import Mutator, load_target  # noqa: E402
from nnrag.train.contract import input_kinds  # noqa: E402

TORCHVISION = {  # one per family; the input size each needs (fixed-size ViTs need 224)
    "alexnet.alexnet": 64, "convnext.convnext_tiny": 64, "densenet.densenet121": 64,
    "efficientnet.efficientnet_b0": 64, "googlenet.googlenet": 64, "inception.inception_v3": 299,
    "mnasnet.mnasnet0_5": 64, "mobilenetv2.mobilenet_v2": 64, "mobilenetv3.mobilenet_v3_small": 64,
    "regnet.regnet_x_400mf": 64, "regnet.regnet_y_400mf": 64, "resnet.resnet18": 64,
    "resnet.resnet50": 64, "resnet.resnext50_32x4d": 64, "shufflenetv2.shufflenet_v2_x0_5": 64,
    "squeezenet.squeezenet1_0": 64,
    "swin_transformer.swin_t": 64, "vgg.vgg11": 64, "vision_transformer.vit_b_16": 224,
    "maxvit.maxvit_t": 224,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=str(HERE / "_work" / "bench.db"),
                    help="index holding torchvision")
    ap.add_argument("--n", type=int, default=10, help="valid mutants wanted per model")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["corpus", "torchvision"], default=None)
    ap.add_argument("--models", default=None, help="comma-separated subset (names as printed)")
    ap.add_argument("--json", default=None)
    add_arguments(ap)
    args = ap.parse_args(argv)
    corpus = sorted(p.stem for p in corpus_dir().glob("*.py"))
    jobs: list[tuple[str, str, tuple[int, ...]]] = []
    if args.only != "torchvision":
        for name in corpus:  # signal-only models read MNIST-1D-shaped input
            kinds = input_kinds((corpus_dir() / f"{name}.py").read_text())
            jobs.append(("corpus", name,
                         (64, 1, 40) if kinds and "image" not in kinds else (64, 1, 8, 8)))
    if args.only != "corpus":
        jobs += [("torchvision", f"torchvision.models.{n}", (4, 3, s, s))
                 for n, s in TORCHVISION.items()]
    if args.models:
        wanted = set(args.models.split(","))
        jobs = [j for j in jobs if j[1] in wanted]
    rows = []
    for group, name, shape in jobs:
        t0 = time.perf_counter()
        row = {"group": group, "model": name, "input": list(shape)}
        try:
            target = load_target(name, db=Path(args.db))
            report = Mutator(target, in_shape=shape, num_classes=10, seed=args.seed,
                             jobs=args.jobs).run(args.n)
            row.update(traced=report.traced, valid=len(report.valid), validated=len(report.mutants),
                       params=report.params,
                       kinds={k: [sum(1 for m in report.valid if m.kind == k),
                                  sum(1 for m in report.mutants if m.kind == k)]
                              for k in sorted({m.kind for m in report.mutants})},
                       plans_rejected=report.rejected_by_plan, duplicates=report.duplicates)
        except NnragError as exc:
            row.update(traced=None, valid=0, validated=0, error=str(exc)[:300])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"{group:12s} {name:48s} traced={row['traced']!s:5s} valid {row['valid']:3d}/"
              f"{row['validated']:3d} {row['seconds']:6.1f}s {row.get('error', '')[:90]}",
              flush=True)
    summary = {}
    for group in ("corpus", "torchvision", "all"):
        sel = [r for r in rows if group in ("all", r["group"])]
        if not sel:
            continue
        traced = [r for r in sel if r["traced"]]
        valid = sum(r["valid"] for r in sel)
        summary[group] = {
            "models": len(sel), "recorded": sum(1 for r in sel if r["traced"] is not None),
            "fx_traceable": len(traced),
            "with_n_valid": sum(1 for r in traced if r["valid"] >= args.n),
            "share_with_n_valid_of_traceable": round(
                sum(1 for r in traced if r["valid"] >= args.n) / max(1, len(traced)), 3),
            "validated": sum(r["validated"] for r in sel), "valid": valid,
            "share_valid_of_validated": round(valid / max(1, sum(r["validated"] for r in sel)), 3),
            "seconds_per_valid_mutant": round(sum(r["seconds"] for r in sel) / max(1, valid), 2),
        }
    kinds: dict[str, list[int]] = {}
    for r in rows:
        for k, (v, n) in (r.get("kinds") or {}).items():
            kinds.setdefault(k, [0, 0])
            kinds[k][0] += v
            kinds[k][1] += n
    summary["kinds"] = {k: {"valid": v, "validated": n} for k, (v, n) in sorted(kinds.items())}
    print("\nper kind (valid / validated): "
          + ", ".join(f"{k} {v}/{n}" for k, (v, n) in sorted(kinds.items())))
    print(f"\n| set | models | fx-traceable | >= {args.n} unique valid | valid / validated "
          "| s per valid mutant |")
    print("|---|---:|---:|---:|---:|---:|")
    for group, s in summary.items():
        if group == "kinds":
            continue
        print(f"| {group} | {s['models']} | {s['fx_traceable']} | {s['with_n_valid']} "
              f"({s['share_with_n_valid_of_traceable']:.0%}) | {s['valid']} / {s['validated']} "
              f"({s['share_valid_of_validated']:.0%}) | {s['seconds_per_valid_mutant']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "rows": rows,
                                               "summary": summary}, indent=1))
    if args.record:
        record("mutate_success", args.record, figures(summary), script=__file__, argv=argv,
               note=args.note)
    return 0



if __name__ == "__main__":
    sys.exit(main())
