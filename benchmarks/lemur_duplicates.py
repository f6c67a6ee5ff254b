"""How many of LEMUR's models are the same network: structural duplicates across the zoo.

LEMUR's zoo was grown by AST mutation (``ast-*``), a genetic search (``ga-*``) and
retrieval-augmented generation (``rag-*``) around a few hand-written classics. Two files are
the same *structure* when nnrag's fingerprint matches with names and constants abstracted,
and the same *configuration* when it matches with constants kept (what training dedups on).
Each group's files, distinct structures and configurations, and its largest cluster:

    python benchmarks/lemur_duplicates.py --json FILE
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
import _shared  # noqa: E402

LEMUR = _shared.LEMUR / "models.jsonl.gz"
GROUPS = ("ast", "ga", "rag")


def group(name: str) -> str:
    """``ast``, ``ga`` or ``rag`` for a generated variant (by its name's prefix), else
    ``classic``."""
    head = re.split(r"[-_]", name, maxsplit=1)[0]
    return head if head in GROUPS else "classic"


def fingerprints(code: str) -> tuple[str, str]:
    """(structure, configuration) fingerprints; a module LibCST cannot parse is its own."""
    from nnrag.index import fingerprint, normalised_md5

    try:
        return fingerprint(code, keep_literals=False), fingerprint(code, keep_literals=True)
    except Exception:  # noqa: BLE001 - an unparsable file is one structure of its own
        digest = normalised_md5(code)
        return digest, digest


def summarise(rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Counts for (name, structure, configuration) rows."""
    shapes = collections.Counter(s for _, s, _ in rows)
    configs = {c for _, _, c in rows}
    return {"files": len(rows), "structures": len(shapes), "configurations": len(configs),
            "largest_structure_files": max(shapes.values(), default=0),
            "files_sharing_a_structure": sum(n for n in shapes.values() if n > 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=LEMUR)
    ap.add_argument("--json")
    _results.add_arguments(ap)
    args = ap.parse_args(argv)

    from nnrag.index import read_lemur_models

    t0 = time.perf_counter()
    rows = [(name, *fingerprints(code)) for name, _, code in read_lemur_models(args.models)]
    seconds = time.perf_counter() - t0
    by_group: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for row in rows:
        by_group[group(row[0])].append(row)
    # structures a generated variant shares with a classic: mutants that stayed the original
    classic = {s for _, s, _ in by_group["classic"]}
    table = [{"group": g, **summarise(by_group[g]),
              "files_structurally_a_classic":
                  sum(1 for _, s, _ in by_group[g] if s in classic) if g in GROUPS else None}
             for g in (*GROUPS, "classic") if by_group[g]]
    table.append({"group": "all", **summarise(rows), "files_structurally_a_classic": None})
    results = {"groups": table, "seconds": round(seconds, 1)}
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.record:
        _results.record("lemur_duplicates", args.record, results, script=__file__, argv=argv,
                        note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
