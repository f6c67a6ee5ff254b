"""Retrieval quality of `nnrag query` on a labelled query set over real blocks.

Indexes timm, torchvision and transformers' ``models/*/modeling_*.py`` (the same sources as
``rag_executability.py``), embeds every block with the configured model (incremental:
cached vectors are reused), then for each mode (lexical, dense, hybrid) prints recall@1,
recall@10 and MRR over ``benchmarks/queries/query_set.json``.

recall@k is the fraction of queries with at least one relevant block among the first k
hits; MRR is the mean of 1/rank of the first relevant hit (0 when none is in the top 100).

    python benchmarks/search_quality.py --src /path/with/timm,torchvision,transformers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _figures import search_quality as figures  # noqa: E402
from _results import add_arguments, record  # noqa: E402
from rag_executability import index_all, log, obtain_sources  # noqa: E402

PACKAGES = ["timm", "torchvision", "transformers"]
CUTOFF = 100


def prepare(args: argparse.Namespace, packages: list[str]) -> Any:
    """Index the sources (incremental) and embed every block (incremental)."""
    from nnrag.index import Store, sync_catalog
    from nnrag.search import embed_blocks, get_embedder

    store = Store(args.db)
    if not args.no_index:
        index_all(store, obtain_sources(args, packages), jobs=2)
    sync_catalog(store)
    embedder = get_embedder(args.model)
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            log(f"[embed] {done}/{total}")

    report = embed_blocks(store, embedder, progress=progress)
    log(f"[embed] {report.embedded} embedded ({report.per_second:.1f}/s), {report.cached} cached")
    return store, embedder, report


def evaluate(store: Any, embedder: Any, queries: list[dict[str, Any]],
             modes: list[str]) -> dict[str, Any]:
    from nnrag.search import Searcher

    searcher = Searcher(store, embedder=embedder)
    out: dict[str, Any] = {}
    for mode in modes:
        r1 = r10 = rr = 0.0
        misses = []
        for q in queries:
            hits = searcher.search(q["query"], mode=mode, k=CUTOFF)
            relevant = set(q["relevant"])
            rank = next((h.rank for h in hits if h.qualname in relevant), None)
            r1 += rank == 1
            r10 += rank is not None and rank <= 10
            rr += 1.0 / rank if rank else 0.0
            if rank is None or rank > 10:
                misses.append({"id": q["id"], "query": q["query"], "rank": rank,
                               "top": [h.qualname for h in hits[:3]]})
        n = len(queries)
        out[mode] = {"recall@1": round(r1 / n, 3), "recall@10": round(r10 / n, 3),
                     "mrr": round(rr / n, 3), "queries": n, "misses": misses}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", help="folder holding timm/, torchvision/, transformers/ "
                    "(default: pip download)")
    ap.add_argument("--dl", default=str(HERE / "_work" / "dl"))
    ap.add_argument("--db", default=str(HERE / "_work" / "search.db"))
    ap.add_argument("--queries", default=str(HERE / "queries" / "query_set.json"))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--modes", default="lexical,dense,hybrid")
    ap.add_argument("--init-files", default="none")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-index", action="store_true",
                    help="search --db as it is (no re-index of the sources; the catalog and "
                         "missing vectors are still brought up to date)")
    add_arguments(ap)
    args = ap.parse_args(argv)
    queries = json.loads(Path(args.queries).read_text())["queries"]
    store, embedder, report = prepare(args, PACKAGES)
    blocks = store.catalog_size()
    # what the index holds, not what was asked
    packages = sorted({facts.package for facts in store.block_facts()})
    results = evaluate(store, embedder, queries, args.modes.split(","))
    print(f"\n{len(queries)} queries over {blocks} blocks ({', '.join(packages)}); "
          f"model {embedder.name}\n")
    print("| mode | recall@1 | recall@10 | MRR |\n|---|---:|---:|---:|")
    for mode, r in results.items():
        print(f"| {mode} | {r['recall@1']:.3f} | {r['recall@10']:.3f} | {r['mrr']:.3f} |")
    for mode, r in results.items():
        for m in r["misses"][:8]:
            log(f"[miss] {mode} {m['id']} rank={m['rank']} {m['query']!r} top={m['top']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"blocks": blocks, "packages": packages,
                                               "model": embedder.name, "results": results},
                                              indent=1))
    if args.record:
        name = "search_quality" + ("" if Path(args.queries).stem == "query_set"
                                   else f"_{Path(args.queries).stem}")
        record(name, args.record, figures(results, blocks, packages, args.queries),
               script=__file__, argv=argv, note=args.note)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
