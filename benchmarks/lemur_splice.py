"""How many of LEMUR's torchvision models splice from an index of torchvision's source, and
how many of those then import and build.

torchvision is not installed: its wheel's ``.py`` files are unpacked (never installed) and
indexed as package ``torchvision``. Every model of ``models.jsonl.gz`` that mentions
torchvision is spliced (:class:`nnrag.extract.Splicer`, not strict); each one that splices
fully is then imported, and its ``Net((2, 3, 32, 32), (10,), prm, cpu)`` built, in a fresh
isolated interpreter per model with a wall limit (model code is not trusted: it never runs
in this process; use the sandbox for anything beyond this count).

    python benchmarks/lemur_splice.py --torchvision-wheel torchvision-0.29.1-...whl
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from lemur_zoo import LEMUR, WHEEL, torchvision_source  # noqa: E402

PROBE = r"""
import importlib.util, sys, torch
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("m", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print("IMPORTED", flush=True)
prm = {"lr": 0.01, "momentum": 0.9, "dropout": 0.2, "batch": 4, "transform": "none",
       "dropout_aux": 0.2, "attention_dropout": 0.0, "stochastic_depth_prob": 0.1,
       "norm_eps": 1e-5, "norm_momentum": 0.1, "norm_std": 0.02, "pretrained": 0.0,
       "beta1": 0.9, "beta2": 0.999, "patch_size": 0.25}
m.Net((2, 3, 32, 32), (10,), prm, torch.device("cpu"))
print("BUILT", flush=True)
"""


def probe(path: Path, timeout: float) -> tuple[bool, bool, str]:
    """(imported, built, last error line) of one spliced module, in its own interpreter."""
    try:
        done = subprocess.run([sys.executable, "-I", "-c", PROBE, str(path)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, False, f"timeout ({timeout:.0f} s)"
    last = (done.stderr.strip().splitlines() or [""])[-1]
    return "IMPORTED" in done.stdout, "BUILT" in done.stdout, last[:160]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=LEMUR)
    ap.add_argument("--torchvision-wheel", type=Path, default=WHEEL)
    ap.add_argument("--timeout", type=float, default=60.0, help="per model, s")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from nnrag.extract import Splicer
    from nnrag.index import Store, index_path, read_lemur_models

    work = Path(tempfile.mkdtemp(prefix="nnrag-lemur-splice-"))
    source = torchvision_source(args.torchvision_wheel, work)
    if source is None:
        print(f"no wheel at {args.torchvision_wheel}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with Store(work / "tv.db") as store:
        index_path(store, source, prefix="torchvision", package="torchvision")
    index_s = time.perf_counter() - t0
    models = [(n, c) for n, _, c in read_lemur_models(args.models) if "torchvision" in c]
    unresolved: collections.Counter[str] = collections.Counter()
    spliced: list[tuple[str, Path]] = []
    names = 0
    t0 = time.perf_counter()
    with Store(work / "tv.db", create=False) as store:
        splicer = Splicer(store)
        for name, code in models:
            result = splicer.splice(code, strict=False)
            unresolved.update(f"{u.package}: {u.reason}" for u in result.unresolved)
            names += bool(result.spliced)
            if result.complete:  # nothing left that needs torchvision (maybe only unused)
                path = work / f"model_{len(spliced)}.py"
                path.write_text(result.code, encoding="utf-8")
                spliced.append((name, path))
    splice_s = time.perf_counter() - t0
    imported = built = 0
    failures: collections.Counter[str] = collections.Counter()
    for _name, path in spliced:
        did_import, did_build, error = probe(path, args.timeout)
        imported += did_import
        built += did_build
        if not did_build:
            failures[error] += 1
    results = {
        "models_mentioning_torchvision": len(models), "spliced_fully": len(spliced),
        "with_definitions_spliced": names,
        "imported": imported, "built": built, "unresolved": dict(unresolved),
        "build_failures": dict(failures.most_common()),
        "seconds": {"index_torchvision": round(index_s, 1), "splice_all": round(splice_s, 1)},
    }
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
