"""What each benchmark keeps of a run in its results file (``benchmarks/results/``).

A script's ``--json`` report holds everything (per-block outcomes, every miss); the results
file keeps only the figures the docs show, as lists of rows and single values, so
``render.py`` can lay them out without knowing the benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RUNGS = ("parse", "compile", "import", "instantiate", "forward", "backward")


def search_latency(result: dict[str, Any]) -> dict[str, Any]:
    rows = [{"mode": mode, "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "queries": r["n"]}
            for mode, r in result["latency"].items()]
    return {"latency": rows, "blocks": result["blocks"], "cli_cold_s": result["cli_cold_s"],
            "model_load_s": result["model_load_s"], "noop_reindex_s": result["noop_reindex_s"]}


def search_quality(results: dict[str, Any], blocks: int, packages: list[str],
                   queries: str) -> dict[str, Any]:
    rows = [{"mode": mode, "recall@1": r["recall@1"], "recall@10": r["recall@10"],
             "mrr": r["mrr"], "queries": r["queries"],
             "missed_top_10": sorted(m["id"] for m in r["misses"]
                                     if m["rank"] is None or m["rank"] > 10)}
            for mode, r in results.items()]
    return {"modes": rows, "blocks": blocks, "packages": packages,
            "query_set": f"benchmarks/queries/{Path(queries).name}"}


def mutate_success(summary: dict[str, Any]) -> dict[str, Any]:
    sets = [{"set": name, **{k: v for k, v in s.items() if k != "recorded"}}
            for name, s in summary.items() if name != "kinds"]
    kinds = [{"kind": k, **v} for k, v in summary["kinds"].items()]
    return {"sets": sets, "kinds": kinds}


def rag_executability(report: dict[str, Any]) -> dict[str, Any]:
    """Share of targets reaching each rung, the counts behind them, and the failure causes."""
    summaries = {**report["packages"], "overall": report["overall"]}
    timings = report["timings"]
    share = [{"package": pkg, "targets": s["targets"],
              **{f"{r}_pct": s["percent"][r] for r in RUNGS},
              "validate_s": round(timings.get(pkg, {}).get("validate_s", 0.0))}
             for pkg, s in summaries.items()]
    reached = [{"package": pkg, **s["reached"]} for pkg, s in summaries.items()]
    causes = [{"cause": cause, **{r: by.get(r, 0) for r in RUNGS}, "total": sum(by.values())}
              for cause, by in sorted(report["causes"].items(),
                                      key=lambda kv: -sum(kv[1].values()))]
    return {"share": share, "reached": reached, "causes": causes,
            "versions": report["versions"], "reference_nn_rag": report["reference"]}
