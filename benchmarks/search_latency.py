"""Speed of `nnrag query`: warm-process latency, CLI cold start, embedding, no-op re-index.

Builds on the index of ``search_quality.py`` and, to pass 10,000 blocks, adds more real
code: installed ``torch`` itself and any extra package folders given with ``--extra``
(e.g. an unpacked diffusers wheel). Prints figures, never asserts them.

    python benchmarks/search_latency.py --src SRC --extra /path/to/diffusers
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _figures import search_latency as figures  # noqa: E402
from _results import add_arguments, record  # noqa: E402
from rag_executability import index_all, log, obtain_sources  # noqa: E402
from search_quality import PACKAGES  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src")
    ap.add_argument("--dl", default=str(HERE / "_work" / "dl"))
    ap.add_argument("--db", default=str(HERE / "_work" / "search.db"))
    ap.add_argument("--extra", action="append", default=[], help="another package folder to index")
    ap.add_argument("--no-torch", action="store_true", help="do not index the installed torch")
    ap.add_argument("--queries", default=str(HERE / "queries" / "query_set.json"))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--init-files", default="none")
    ap.add_argument("--json")
    ap.add_argument("--no-index", action="store_true",
                    help="time --db as it is "
                         "(no re-index; the no-op figure is then a catalog check)")
    add_arguments(ap)
    args = ap.parse_args(argv)

    from nnrag.index import Store, index_package, sync_catalog
    from nnrag.search import Searcher, embed_blocks, get_embedder

    store = Store(args.db)
    roots = {} if args.no_index else obtain_sources(args, PACKAGES)
    for extra in [] if args.no_index else args.extra:
        path = Path(extra).resolve()
        roots[path.name] = path

    def reindex() -> None:
        if args.no_index:
            sync_catalog(store)
            return
        index_all(store, roots, jobs=2)
        if not args.no_torch:
            index_package(store, "torch", jobs=2)

    reindex()
    blocks = store.block_count()
    log(f"[index] {blocks} blocks in total")

    t0 = time.perf_counter()
    embedder = get_embedder(args.model)
    load_s = time.perf_counter() - t0
    report = embed_blocks(store, embedder)
    log(f"[embed] {report.embedded} new in {report.seconds:.0f}s ({report.per_second:.1f}/s)")

    t0 = time.perf_counter()
    reindex()
    noop_s = time.perf_counter() - t0

    queries = [q["query"] for q in json.loads(Path(args.queries).read_text())["queries"]]
    searcher = Searcher(store, embedder=embedder)
    searcher.search("warm up", mode="hybrid", k=10)
    lat: dict[str, dict[str, float]] = {}
    for mode in ("lexical", "dense", "hybrid"):
        times = []
        for _ in range(args.repeat):
            for q in queries:
                t = time.perf_counter()
                searcher.search(q, mode=mode, k=10)
                times.append((time.perf_counter() - t) * 1000)
        lat[mode] = {"p50_ms": round(statistics.median(times), 1),
                     "p95_ms": round(pct(times, 0.95), 1), "n": len(times)}
    cold: dict[str, float] = {}
    for mode in ("lexical", "hybrid"):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnrag.cli", "query", queries[0], "--mode", mode,
                        "--db", args.db, "--model", args.model, "--format", "json"],
                       check=True, capture_output=True)
        cold[mode] = round(time.perf_counter() - t, 2)
    result: dict[str, Any] = {
        "blocks": blocks, "model": embedder.name, "model_load_s": round(load_s, 2),
        "embedded_now": report.embedded, "embed_per_s": round(report.per_second, 1),
        "noop_reindex_s": round(noop_s, 2), "latency": lat, "cli_cold_s": cold,
    }
    print(f"\n{blocks} blocks indexed; model {embedder.name} (load {load_s:.1f}s)\n")
    print("| mode | p50 ms | p95 ms | queries |\n|---|---:|---:|---:|")
    for mode, r in lat.items():
        print(f"| {mode} | {r['p50_ms']} | {r['p95_ms']} | {r['n']} |")
    print("\nCLI cold start (process start to results): "
          + ", ".join(f"{m} {s:.2f}s" for m, s in cold.items()))
    if report.embedded:
        print(f"embedding: {report.embedded} blocks at {report.per_second:.1f} blocks/s")
    print(f"re-index with nothing changed: {noop_s:.2f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.record:
        record("search_latency", args.record, figures(result), script=__file__, argv=argv,
               note=args.note)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
