"""Cold start of a hybrid ``nnrag query``: a fresh process, wall and CPU time, per query encoder.

A user's first ``nnrag query`` (and every query from a shell) starts a new Python: its cost is
imports plus loading the model, the FAISS file and the BM25 arrays, not the search. This
times ``python -m nnrag.cli query TEXT --db DB --format json`` in fresh processes, for the
numpy encoder (what nnrag uses for the packaged MiniLM) and for sentence-transformers (what
it used before, and still uses for other models and for batches), and checks every answer
is hybrid (dense and lexical ranks). CPU time (user + sys of the child) is reported beside
wall time because a shared machine's wall time is noisy.

Without ``--db`` it builds the demo's index (seed corpus + zoo, embedded with the MiniLM)
in a scratch folder first. Needs the ``search`` extra.

    python benchmarks/query_cold_start.py --repeat 5 --json benchmarks/results/query_cold_start.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The query through the CLI's own entry point; "sentence-transformers" switches the numpy
# encoder off in that process only, as for a model it does not take.
RUNNER = """
import sys
if sys.argv[1] == "sentence-transformers":
    import nnrag.search._embed as embed
    embed.load_bert = lambda folder: None
from nnrag.cli import main
main(sys.argv[2:])
"""
ENCODERS = ("numpy", "sentence-transformers")


def build_index(home: Path) -> Path:
    """The demo's index without the training: seed corpus and zoo, embedded."""
    import nnrag
    from nnrag.examples import ZOO, corpus_dir

    ws = nnrag.open_workspace(home)
    ws.index(corpus_dir(), prefix="corpus", package="corpus")
    ws.index(ZOO)
    ws.embed()
    ws.searcher().warm()  # BM25 arrays and FAISS file on disk, as after `nnrag demo`
    ws.close()
    return ws.db


def one_run(encoder: str, text: str, db: Path) -> dict[str, Any]:
    """One fresh process: wall seconds, the child's user and sys CPU seconds, hybrid or not."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, encoder, "query", text, "--db", str(db), "--format",
         "json"], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"query failed ({encoder}): {proc.stderr[-2000:]}")
    hits = json.loads(proc.stdout)
    return {"wall_s": round(wall, 3), "user_s": round(after.ru_utime - before.ru_utime, 3),
            "sys_s": round(after.ru_stime - before.ru_stime, 3),
            "hybrid": bool(hits) and {"dense", "lexical"} <= set(hits[0]["via"]),
            "top": hits[0]["qualname"] if hits else None}


def commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, help="An embedded index (default: build the demo's).")
    ap.add_argument("--query", default="residual block")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--encoders", default=",".join(ENCODERS),
                    help=f"Comma-separated, of: {', '.join(ENCODERS)}.")
    ap.add_argument("--label", default="", help="What this run measures (kept in the JSON).")
    ap.add_argument("--json", type=Path, help="Write the figures here.")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nnrag-cold-start-") as scratch:
        db = args.db or build_index(Path(scratch))
        runs = []
        for encoder in args.encoders.split(","):
            one_run(encoder, args.query, db)  # page cache warm, as for a user's second shell
            trials = [one_run(encoder, args.query, db) for _ in range(args.repeat)]
            median = {k: round(statistics.median(t[k] for t in trials), 3)
                      for k in ("wall_s", "user_s", "sys_s")}
            runs.append({"label": args.label, "commit": commit(), "encoder": encoder,
                         "query": args.query, "repeat": args.repeat, "median": median,
                         "hybrid": all(t["hybrid"] for t in trials), "trials": trials})
            print(f"{encoder:>22}: median {median['wall_s']:.2f} s wall, "
                  f"{median['user_s'] + median['sys_s']:.2f} s CPU (user+sys) over "
                  f"{args.repeat} fresh processes; hybrid: {runs[-1]['hybrid']}")
    data = {
        "benchmark": "query_cold_start",
        "command": f"python benchmarks/query_cold_start.py --repeat {args.repeat} --json FILE",
        "commit": commit(),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
                   f"Python {platform.python_version()}, CPU only",
        "runs": runs,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
