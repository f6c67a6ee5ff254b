#!/usr/bin/env python
"""Executability of scope-closed blocks from real libraries: torchvision, timm, transformers.

Indexes the real sources of torchvision 0.29.1, timm 1.0.31 and the
``transformers/models/*/modeling_*.py`` files of transformers 5.24.0, emits every block
(concrete ``nn.Module`` subclass) as a scope-closed module and climbs the validation
ladder in the sandbox (parse, compile, import, instantiate, forward, backward). Prints,
per package and overall, the targets found and the share reaching each rung, a table of
failure causes and the index/validate times.

Reference: the published NN-RAG figure, 941 of 1,289 targets (73.0%) executable, where
executable meant only that the module's top level ran in-process (~ our rung 3, import,
which we run sandboxed).

Typical runs (from the repository root, in the project's venv)::

    python benchmarks/rag_executability.py --sample 50            # quick look, ~5 min
    python benchmarks/rag_executability.py --sample transformers=1500 \
        --json benchmarks/_work/results.json --markdown benchmarks/_work/results.md

Sources: with ``--src DIR`` the package folders ``DIR/{timm,torchvision,transformers}``
are used; otherwise the pinned wheels are fetched with ``pip download --no-deps`` into
``benchmarks/_work/dl`` (skipped when present) and unpacked under ``benchmarks/_work/src``.
transformers needs to be importable (its modeling files import the library itself);
timm and torchvision need not be (their blocks inline all in-tree code).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _figures import rag_executability as figures  # noqa: E402
from _results import add_arguments, record  # noqa: E402

WORK = HERE / "_work"
PINS = {"torchvision": "0.29.1", "timm": "1.0.31", "transformers": "5.24.0"}
ORDER = ("timm", "torchvision", "transformers")
REFERENCE = (941, 1289)  # NN-RAG: executable (top level ran in-process) / targets
RUNG_NAMES = ("none", "parse", "compile", "import", "instantiate", "forward", "backward")
CAUSES = ("resolver_gap", "missing_package", "needs_arguments", "shape_inference",
          "sandbox_denied", "genuine_error")
_MODELING = re.compile(r"^transformers/models/([^/]+)/(modeling_[^/]+\.py)$")


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- sources
def _wheel(dl: Path, pkg: str) -> Path:
    pattern = f"{pkg}-{PINS[pkg]}-*.whl"
    found = sorted(dl.glob(pattern))
    if found:
        return found[0]
    log(f"[src] pip download --no-deps {pkg}=={PINS[pkg]} -> {dl}")
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-d", str(dl), f"{pkg}=={PINS[pkg]}"],
        check=True,
    )
    found = sorted(dl.glob(pattern))
    if not found:
        raise SystemExit(f"pip download produced no wheel matching {pattern} in {dl}")
    return found[0]


def _unpack(wheel: Path, pkg: str, dest: Path) -> Path:
    """Unzip the ``pkg/`` folder of a wheel into ``dest/pkg`` (once)."""
    target = dest / pkg
    stamp = dest / f".{pkg}.{wheel.name}.done"
    if stamp.exists() and target.is_dir():
        return target
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(f"{pkg}/") and m.endswith(".py")]
        for m in members:
            zf.extract(m, dest)
    stamp.write_text("ok\n")
    log(f"[src] unpacked {len(members)} .py files of {wheel.name} into {target}")
    return target


def transformers_tree(pkg_dir: Path, dest: Path, init_files: str = "none") -> Path:
    """``transformers/models/<m>/modeling_*.py`` copied into a scratch tree.

    The layout keeps the module names ``transformers.models.<m>.modeling_<m>``, so the
    scanner turns ``from ...modeling_utils import X`` into ``transformers.modeling_utils``
    (external: transformers is installed) and ``from ..bert.modeling_bert import Y`` into an
    in-tree definition. By default no ``__init__.py`` is written: an empty in-tree
    ``__init__`` would claim the package and leave everything the real one exports
    unresolved (``from ... import initialization as init`` in 413 files,
    ``from ..auto import AutoModel`` in ~100). ``init_files``: ``none`` | ``models``
    (each ``models/<m>/``) | ``all`` (also ``transformers/`` and ``transformers/models/``).
    """
    root = dest / "transformers"
    shutil.rmtree(root, ignore_errors=True)
    n = 0
    for src in sorted((pkg_dir / "models").glob("*/modeling_*.py")):
        rel = f"transformers/models/{src.parent.name}/{src.name}"
        if not _MODELING.match(rel):
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        if init_files in ("models", "all"):
            (out.parent / "__init__.py").touch()
        n += 1
    if init_files == "all":
        (root / "__init__.py").touch()
        (root / "models" / "__init__.py").touch()
    log(f"[src] transformers: {n} modeling files in {root} (__init__.py files: {init_files})")
    return root


def obtain_sources(args: argparse.Namespace, packages: list[str]) -> dict[str, Path]:
    roots: dict[str, Path] = {}
    src_dir = WORK / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        if args.src:
            pkg_dir = Path(args.src).expanduser().resolve() / pkg
            if not pkg_dir.is_dir():
                raise SystemExit(f"--src {args.src}: no folder {pkg_dir}")
        else:
            pkg_dir = _unpack(_wheel(Path(args.dl), pkg), pkg, WORK / "unpacked")
        if pkg == "transformers":
            roots[pkg] = transformers_tree(pkg_dir, src_dir / "transformers_models",
                                           args.init_files)
        else:
            roots[pkg] = pkg_dir
    return roots


# --------------------------------------------------------------------------- phases
def index_all(store: Any, roots: dict[str, Path], jobs: int) -> dict[str, dict[str, Any]]:
    from nnrag.index import index_path

    info: dict[str, dict[str, Any]] = {}
    for pkg, root in roots.items():
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, path: str, pkg: str = pkg, t0: float = t0,
                     last: list[float] = last) -> None:
            now = time.perf_counter()
            if done == total or now - last[0] > 30:
                last[0] = now
                log(f"[index] {pkg}: {done}/{total} files, {now - t0:.0f}s")

        if pkg == "transformers":
            report = index_path(store, root, prefix="transformers", package="transformers",
                                progress=progress, jobs=jobs)
        else:
            report = index_path(store, root, prefix=pkg, package=pkg, progress=progress, jobs=jobs)
        dt = time.perf_counter() - t0
        info[pkg] = {
            "index_s": round(dt, 1), "files_scanned": report.scanned,
            "files_unchanged": report.unchanged, "file_problems": len(report.problems),
            "definitions": report.definitions, "blocks": report.blocks,
        }
        log(f"[index] {pkg}: {report.scanned} scanned, {report.unchanged} unchanged, "
            f"{len(report.problems)} problems, {report.definitions} definitions, "
            f"{report.blocks} blocks in {dt:.1f}s")
        for p in report.problems[:5]:
            log(f"[index]   problem: {p}")
    return info


def block_names(store: Any, pkg: str) -> list[str]:
    rows = store.blocks_with_validation()  # ordered by qualname
    return list(dict.fromkeys(r["qualname"] for r in rows if r["package"] == pkg))


def parse_sample(spec: str | None, packages: list[str]) -> dict[str, int | None]:
    """``--sample 50`` (each package) or ``--sample transformers=1500,timm=100``."""
    out: dict[str, int | None] = dict.fromkeys(packages)
    if not spec:
        return out
    for part in spec.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            if k.strip() not in out:
                raise SystemExit(f"--sample: unknown package {k!r}")
            out[k.strip()] = int(v)
        else:
            out = dict.fromkeys(packages, int(part))
    return out


def select_targets(store: Any, packages: list[str], args: argparse.Namespace,
                   builder: Any) -> dict[str, list[str]]:
    samples = parse_sample(args.sample, packages)
    targets: dict[str, list[str]] = {}
    for pkg in packages:
        names = block_names(store, pkg)
        found = len(names)
        n = samples[pkg]
        if n is not None and n < len(names):
            names = sorted(random.Random(f"{args.seed}:{pkg}").sample(names, n))
        if args.limit_per_package is not None:
            names = names[: args.limit_per_package]
        ok = []
        for name in names:  # validate(names=...) stops on the first unknown / ambiguous name
            try:
                builder.find(name)
                ok.append(name)
            except Exception as exc:
                log(f"[targets] {pkg}: skipping {name}: {type(exc).__name__}: {exc}")
        targets[pkg] = ok
        log(f"[targets] {pkg}: {found} blocks found, {len(ok)} selected")
    return targets


def validate_all(store: Any, targets: dict[str, list[str]], args: argparse.Namespace,
                 builder: Any,
                 on_package: Any = None) -> tuple[dict[str, list[Any]], dict[str, float]]:
    from nnrag.ladder import validate
    from nnrag.sandbox import Limits

    limits = Limits(wall_s=float(args.timeout), memory_mb=args.memory_mb)
    results: dict[str, list[Any]] = {}
    times: dict[str, float] = {}
    grand_total = sum(len(v) for v in targets.values())
    grand_done = 0
    t_all = time.perf_counter()
    for pkg, names in targets.items():
        if not names:
            results[pkg], times[pkg] = [], 0.0
            continue
        t0 = time.perf_counter()
        state = {"last": t0, "count": 0, "rung5": 0, "before": grand_done}

        def progress(done: int, total: int, outcome: Any, pkg: str = pkg, t0: float = t0,
                     state: dict[str, Any] = state) -> None:
            state["count"] = done
            state["rung5"] += int(outcome.rung >= 5)
            now = time.perf_counter()
            if done % 100 == 0 or done == total or now - state["last"] > 60:
                state["last"] = now
                log(f"[validate] {pkg}: {done}/{total} "
                    f"({state['before'] + done}/{grand_total} overall), "
                    f"{state['rung5']} at forward+, {now - t0:.0f}s ({now - t_all:.0f}s total)")

        log(f"[validate] {pkg}: {len(names)} targets, jobs={args.jobs}, timeout={args.timeout}s")
        results[pkg] = validate(store, names, jobs=args.jobs, limits=limits, force=args.force,
                                progress=progress, builder=builder)
        times[pkg] = round(time.perf_counter() - t0, 1)
        grand_done += len(names)
        log(f"[validate] {pkg}: done in {times[pkg]:.1f}s "
            f"({times[pkg] / max(1, len(names)):.2f}s/block)")
        if on_package:
            on_package(results, times)
    return results, times


# --------------------------------------------------------------------------- report
_NUM = re.compile(r"\b\d+\b")
_AT = re.compile(r"\s*\[at [^\]]*\]\s*$")
_BLOCKFILE = re.compile(r"nnrag_block_[0-9a-f]+")


def shorten(error_type: str | None, message: str | None, width: int = 140) -> str:
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    text = _AT.sub("", _BLOCKFILE.sub("<block>", text))
    text = _NUM.sub("N", text)
    line = f"{error_type or '?'}: {text}" if text else f"{error_type or '?'}"
    return line if len(line) <= width else line[: width - 1] + "…"


def summarise(outcomes: list[Any]) -> dict[str, Any]:
    n = len(outcomes)
    at_least = {RUNG_NAMES[k]: sum(1 for o in outcomes if o.rung >= k) for k in range(1, 7)}
    return {
        "targets": n,
        "reached": at_least,
        "percent": {k: (round(100.0 * v / n, 1) if n else 0.0) for k, v in at_least.items()},
        "cached": sum(1 for o in outcomes if o.cached),
    }


def cause_tables(
        outcomes: list[Any]) -> tuple[dict[str, dict[str, int]], dict[str, list[list[Any]]]]:
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    messages: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[tuple[str, str], str] = {}
    for o in outcomes:
        if o.rung >= 6:
            continue
        cause = o.cause or "unknown"
        failed = o.failed_rung or RUNG_NAMES[min(o.rung + 1, 6)]
        table[cause][failed] += 1
        line = shorten(o.error_type, o.error_message)
        messages[cause][line] += 1
        examples.setdefault((cause, line), o.qualname)
    top = {c: [[cnt, msg, examples[(c, msg)]] for msg, cnt in ctr.most_common(10)]
           for c, ctr in messages.items()}
    return {c: dict(v) for c, v in table.items()}, top


def _pct(v: float) -> str:
    return f"{v:5.1f}%"


def render_text(report: dict[str, Any]) -> str:
    out: list[str] = []
    rows = [*report["packages"].items(), ("overall", report["overall"])]
    head = f"{'package':<13}{'targets':>8}" + "".join(f"{r:>12}" for r in RUNG_NAMES[1:])
    out += ["", "Share of targets reaching each rung (a block counts at every rung up to its own)",
            head, "-" * len(head)]
    for name, s in rows:
        out.append(f"{name:<13}{s['targets']:>8}" + "".join(
            f"{_pct(s['percent'][r]):>12}" for r in RUNG_NAMES[1:]))
    ref = 100.0 * REFERENCE[0] / REFERENCE[1]
    ov = report["overall"]
    out += ["", f"NN-RAG reference: {REFERENCE[0]}/{REFERENCE[1]} = {ref:.1f}% executable "
            f"(module top level ran in-process)."]
    out.append(f"nnrag: {ov['reached']['import']}/{ov['targets']} = {ov['percent']['import']:.1f}% "
               f"import (sandboxed), {ov['reached']['forward']}/{ov['targets']} = "
               f"{ov['percent']['forward']:.1f}% forward, "
               f"{ov['reached']['backward']}/{ov['targets']}"
               f" = {ov['percent']['backward']:.1f}% backward.")
    out.append("Targets: rung 3 >= 95%, rung 5 >= 80% over >= 2,000 targets -> "
               f"import {'MET' if ov['percent']['import'] >= 95 else 'not met'}, "
               f"forward {'MET' if ov['percent']['forward'] >= 80 else 'not met'}, "
               f"size {'MET' if ov['targets'] >= 2000 else 'not met'}.")
    failed_cols = list(RUNG_NAMES[1:])
    out += ["", "Failure causes (cause x failed rung)",
            f"{'cause':<17}" + "".join(f"{r:>12}" for r in failed_cols) + f"{'total':>8}"]
    for cause, by in sorted(report["causes"].items(), key=lambda kv: -sum(kv[1].values())):
        out.append(f"{cause:<17}" + "".join(f"{by.get(r, 0):>12}" for r in failed_cols)
                   + f"{sum(by.values()):>8}")
    for cause, msgs in report["top_messages"].items():
        out += ["", f"Top messages: {cause}"]
        out += [f"  {cnt:>5}  {msg}   (e.g. {ex})" for cnt, msg, ex in msgs]
    out += ["", "Timings (wall seconds)", f"{'package':<13}{'files':>7}{'index_s':>9}"
            f"{'targets':>9}{'validate_s':>12}{'s/block':>9}"]
    for name, t in report["timings"].items():
        n = (report["overall"] if name == "overall"
             else report["packages"].get(name, {})).get("targets", 0)
        out.append(f"{name:<13}{t.get('files', 0):>7}{t['index_s']:>9.1f}{n:>9}"
                   f"{t['validate_s']:>12.1f}{t['validate_s'] / max(1, n):>9.2f}")
    return "\n".join(out)


def render_markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"Executability over real sources "
        f"({', '.join(f'{p} {v}' for p, v in report['versions'].items())}); "
        f"{cfg['jobs']} jobs, {cfg['timeout']} s per block, sample: {cfg['sample'] or 'all blocks'}"
        + (f" (seed {cfg['seed']})" if cfg["sample"] else "") + ".",
        "",
        "| package | targets | " + " | ".join(RUNG_NAMES[1:]) + " | index s | validate s |",
        "|---|---:|" + "---:|" * 6 + "---:|---:|",
    ]
    for name, s in [*report["packages"].items(), ("**overall**", report["overall"])]:
        t = report["timings"].get(name.strip("*"), {})
        lines.append(
            f"| {name} | {s['targets']} | "
            + " | ".join(f"{s['percent'][r]:.1f}%" for r in RUNG_NAMES[1:])
            + f" | {t.get('index_s', 0):.0f} | {t.get('validate_s', 0):.0f} |")
    ref = 100.0 * REFERENCE[0] / REFERENCE[1]
    ov = report["overall"]
    lines += ["", f"NN-RAG reference: {REFERENCE[0]} of {REFERENCE[1]:,} targets ({ref:.1f}%) "
              f"executable (top level ran in-process); "
              f"nnrag: {ov['percent']['import']:.1f}% import "
              f"(sandboxed), {ov['percent']['forward']:.1f}% forward, "
              f"{ov['percent']['backward']:.1f}% backward over {ov['targets']:,} targets.", "",
              "| cause | " + " | ".join(RUNG_NAMES[1:]) + " | total |",
              "|---|" + "---:|" * 7]
    for cause, by in sorted(report["causes"].items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"| {cause} | " + " | ".join(str(by.get(r, 0)) for r in RUNG_NAMES[1:])
                     + f" | {sum(by.values())} |")
    return "\n".join(lines) + "\n"


def build_report(args: argparse.Namespace, targets: dict[str, list[str]],
                 results: dict[str, list[Any]], index_info: dict[str, dict[str, Any]],
                 val_times: dict[str, float], versions: dict[str, str]) -> dict[str, Any]:
    everything = [o for pkg in results for o in results[pkg]]
    causes, top = cause_tables(everything)
    timings = {
        pkg: {"index_s": index_info.get(pkg, {}).get("index_s", 0.0),
              "files": index_info.get(pkg, {}).get("files_scanned", 0)
              + index_info.get(pkg, {}).get("files_unchanged", 0),
              "validate_s": val_times.get(pkg, 0.0)}
        for pkg in results
    }
    timings["overall"] = {k: round(sum(t[k] for t in timings.values()), 1)
                          for k in ("index_s", "files", "validate_s")}
    return {
        "config": {"packages": list(results), "sample": args.sample, "seed": args.seed,
                   "limit_per_package": args.limit_per_package, "jobs": args.jobs,
                   "timeout": args.timeout, "memory_mb": args.memory_mb, "db": str(args.db)},
        "versions": versions,
        "reference": {"executable": REFERENCE[0], "targets": REFERENCE[1],
                      "percent": round(100.0 * REFERENCE[0] / REFERENCE[1], 1)},
        "index": index_info,
        "packages": {pkg: summarise(results[pkg]) for pkg in results},
        "overall": summarise(everything),
        "causes": causes,
        "top_messages": top,
        "timings": timings,
        "outcomes": [
            {"package": pkg, "qualname": o.qualname, "rung": o.rung, "failed_rung": o.failed_rung,
             "cause": o.cause, "error_type": o.error_type,
             "error_message": (o.error_message or "")[:600], "cached": o.cached,
             "gaps": list(o.detail.get("gaps", []))[:5],
             "init_args": o.detail.get("init_args"), "input_desc": o.detail.get("input_desc"),
             "rules_fired": list(o.rules_fired)}
            for pkg in results for o in results[pkg]
        ],
    }


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="folder holding timm/, torchvision/, transformers/ "
                    "package folders (default: pip download the pinned wheels)")
    ap.add_argument("--dl", default=str(WORK / "dl"), help="wheel download folder")
    ap.add_argument("--db", default=str(WORK / "bench.db"), help="index database")
    ap.add_argument("--packages", default=",".join(ORDER))
    ap.add_argument("--sample", help="N per package, or PKG=N[,PKG=N] (deterministic with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-per-package", type=int)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="wall seconds per block")
    ap.add_argument("--memory-mb", type=int, default=4096, help="memory per block")
    ap.add_argument("--json", help="write the full results here")
    ap.add_argument("--markdown", help="write the README tables here")
    ap.add_argument("--force", action="store_true",
                    help="start from an empty database (re-index and re-validate everything)")
    ap.add_argument("--retry", default="",
                    help="comma-separated causes whose cached results are dropped and re-run "
                    "(e.g. missing_package after installing a dependency)")
    ap.add_argument("--init-files", choices=("none", "models", "all"), default="none",
                    help="empty __init__.py files in the transformers scratch tree (default none)")
    ap.add_argument("--index-only", action="store_true")
    add_arguments(ap)
    args = ap.parse_args(argv)

    packages = [p.strip() for p in args.packages.split(",") if p.strip()]
    unknown = [p for p in packages if p not in PINS]
    if unknown:
        raise SystemExit(f"--packages: unknown {unknown}; choose from {', '.join(ORDER)}")
    if "transformers" in packages:
        try:
            import transformers  # noqa: F401  (the emitted modeling blocks import it)
        except ImportError:
            log("[warn] transformers is not importable: its blocks will fail at import "
                f"(pip install -c constraints.txt transformers=={PINS['transformers']})")

    from nnrag.extract import ClosureBuilder
    from nnrag.index import Store

    roots = obtain_sources(args, packages)
    db = Path(args.db)
    if args.force:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = Store(db)
    t0 = time.perf_counter()
    index_info = index_all(store, roots, args.jobs)
    log(f"[index] all packages in {time.perf_counter() - t0:.1f}s")
    versions = {p["name"]: p["version"] or PINS.get(p["name"], "?") for p in store.packages()
                if p["name"] in packages}
    if args.index_only:
        return 0
    retry = [c.strip() for c in args.retry.split(",") if c.strip()]
    if retry:
        gone = store.forget_validations(retry)
        log(f"[validate] dropped {gone} cached results with cause in {retry}")
    builder = ClosureBuilder(store)
    targets = select_targets(store, packages, args, builder)

    def partial(results: dict[str, list[Any]], times: dict[str, float]) -> None:
        if args.json:  # a long run leaves usable results behind after each package
            rep = build_report(args, targets, results, index_info, times, versions)
            Path(f"{args.json}.partial").write_text(json.dumps(rep, indent=1, default=str))

    results, val_times = validate_all(store, targets, args, builder, partial)
    report = build_report(args, targets, results, index_info, val_times, versions)
    log(render_text(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        log(f"\nwrote {args.json}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(render_markdown(report))
        log(f"wrote {args.markdown}")
    if args.record:
        record("rag_executability", args.record, figures(report), script=__file__, argv=argv,
               note=args.note)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
