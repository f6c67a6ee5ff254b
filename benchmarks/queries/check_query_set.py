#!/usr/bin/env python
"""Check the labelled query set against an nnrag index.

Usage::

    python benchmarks/queries/check_query_set.py INDEX.db [QUERY_SET.json]

Loads the query set (default: ``query_set.json`` next to this script), opens the index
read-only and verifies that the file is well formed and that every ``relevant`` name is
a qualname with ``is_block = 1``. Prints counts per package and per query and exits
non-zero on any problem. Standard library only.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections import Counter
from pathlib import Path

PACKAGES = ("timm", "torchvision", "transformers", "torch", "diffusers", "kornia")
NAMES_A_TERM = "names a term"


def package_of(qualname: str) -> str:
    return qualname.split(".", 1)[0]


def load_blocks(db_path: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT qualname FROM definitions WHERE is_block = 1").fetchall()
    finally:
        con.close()
    return {row[0] for row in rows}


def check_query(query: dict, blocks: set[str], seen_ids: set[str]) -> list[str]:
    problems = []
    qid = query.get("id")
    if not isinstance(qid, str) or not re.fullmatch(r"[qh]\d{3}", qid):
        problems.append(f"bad id {qid!r}")
    elif qid in seen_ids:
        problems.append(f"duplicate id {qid}")
    else:
        seen_ids.add(qid)
    if not isinstance(query.get("query"), str) or not query["query"].strip():
        problems.append(f"{qid}: empty query text")
    if query.get("kind") != "text":
        problems.append(f"{qid}: kind must be 'text', got {query.get('kind')!r}")
    if "note" in query and not isinstance(query["note"], str):
        problems.append(f"{qid}: note must be a string")
    unknown = set(query) - {"id", "query", "kind", "relevant", "note"}
    if unknown:
        problems.append(f"{qid}: unknown keys {sorted(unknown)}")
    relevant = query.get("relevant")
    if not isinstance(relevant, list) or not relevant:
        problems.append(f"{qid}: relevant must be a non-empty list")
        return problems
    if len(set(relevant)) != len(relevant):
        problems.append(f"{qid}: duplicate relevant names")
    for name in relevant:
        if not isinstance(name, str):
            problems.append(f"{qid}: non-string relevant entry {name!r}")
        elif package_of(name) not in PACKAGES:
            problems.append(f"{qid}: {name} is not under {'/'.join(PACKAGES)}")
        elif name not in blocks:
            problems.append(f"{qid}: {name} is not a block (is_block=1) in the index")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    db_path = Path(argv[1])
    json_path = Path(argv[2]) if len(argv) == 3 else Path(__file__).with_name("query_set.json")
    if not db_path.is_file():
        print(f"no such index: {db_path}")
        return 2

    doc = json.loads(json_path.read_text())
    problems = []
    if doc.get("version") != 1:
        problems.append(f"version must be 1, got {doc.get('version')!r}")
    if not isinstance(doc.get("description"), str) or not doc["description"].strip():
        problems.append("missing description")
    queries = doc.get("queries")
    if not isinstance(queries, list) or not queries:
        print("queries must be a non-empty list")
        return 1

    blocks = load_blocks(db_path)
    print(f"index: {db_path} ({len(blocks)} blocks)")
    print(f"query set: {json_path} ({len(queries)} queries)\n")

    seen_ids: set[str] = set()
    queries_per_pkg: Counter[str] = Counter()
    labels_per_pkg: Counter[str] = Counter()
    names_per_pkg: dict[str, set[str]] = {pkg: set() for pkg in PACKAGES}
    print(f"{'id':<5} {'timm':>5} {'tv':>5} {'hf':>5} {'total':>6}  query")
    for query in queries:
        problems.extend(check_query(query, blocks, seen_ids))
        per_pkg = Counter(
            package_of(name) for name in query.get("relevant") or [] if isinstance(name, str)
        )
        for pkg in PACKAGES:
            if per_pkg[pkg]:
                queries_per_pkg[pkg] += 1
                labels_per_pkg[pkg] += per_pkg[pkg]
        for name in query.get("relevant") or []:
            if isinstance(name, str) and package_of(name) in names_per_pkg:
                names_per_pkg[package_of(name)].add(name)
        text = str(query.get("query", ""))
        text = text if len(text) <= 70 else text[:67] + "..."
        counts = " ".join(f"{per_pkg[pkg]:>5}" for pkg in PACKAGES)
        print(f"{query.get('id', '?'):<5} {counts} {sum(per_pkg.values()):>6}  {text}")

    named = sum(NAMES_A_TERM in str(query.get("note", "")) for query in queries)
    print(f"\n{'package':<13} {'queries':>8} {'labels':>7} {'distinct names':>15}")
    for pkg in PACKAGES:
        print(
            f"{pkg:<13} {queries_per_pkg[pkg]:>8} {labels_per_pkg[pkg]:>7} "
            f"{len(names_per_pkg[pkg]):>15}"
        )
    total_labels = sum(labels_per_pkg.values())
    total_names = sum(len(names) for names in names_per_pkg.values())
    print(f"{'all':<13} {len(queries):>8} {total_labels:>7} {total_names:>15}")
    print(
        f"\nqueries marked '{NAMES_A_TERM}': {named} of {len(queries)} ({named / len(queries):.0%})"
    )

    if problems:
        print(f"\n{len(problems)} problem(s):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
