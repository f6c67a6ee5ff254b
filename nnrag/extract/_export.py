"""Write validated blocks to a folder: one ``.py`` per block plus ``manifest.json``.

Files are written to a temporary folder next to the destination and moved into place, so
an interrupted export never leaves a half-written manifest.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnrag.extract._closure import ClosureBuilder
from nnrag.extract._emit import emit
from nnrag.index import RUNGS, Store


def block_rows(store: Store, *, min_rung: int = 0, pattern: str | None = None,
               package: str | None = None) -> list[dict[str, Any]]:
    """Blocks with their latest validation (rung -1 when never validated)."""
    rows = store.blocks_with_validation()
    out = []
    for r in rows:
        if min_rung > 0 and r["rung"] < min_rung:
            continue
        if package and r["package"] != package:
            continue
        if pattern and not (fnmatch.fnmatchcase(r["qualname"], pattern)
                            or fnmatch.fnmatchcase(r["name"], pattern)):
            continue
        r["rung_name"] = RUNGS[r["rung"]] if r["rung"] >= 0 else "unvalidated"
        out.append(r)
    return out


def export(store: Store, outdir: str | Path, *, min_rung: int = 0,
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    outdir = Path(outdir)
    rows = block_rows(store, min_rung=min_rung)
    builder = ClosureBuilder(store)
    packages = {p["name"]: p for p in store.packages()}
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    entries = []
    try:
        for i, r in enumerate(rows):
            e = emit(builder.build(r["id"]), packages)
            filename = f"{r['qualname']}.py"
            (tmp / filename).write_text(e.code, encoding="utf-8")
            entries.append({
                "name": e.name, "qualname": r["qualname"], "file": filename,
                "package": r["package"],
                "source": {"path": r["path"], "lines": [r["lineno"], r["end_lineno"]]},
                "hash": r["hash"], "closure_hash": e.closure_hash, "rung": r["rung_name"],
                "dependencies": list(e.definitions[1:]), "imports": list(e.imports),
                "unresolved": list(e.gaps),
            })
            if progress:
                progress(i + 1, len(rows))
        manifest = {"min_rung": RUNGS[min_rung], "count": len(entries), "blocks": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if outdir.exists():
            old = outdir.with_name(f".{outdir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(outdir, old)
            os.replace(tmp, outdir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"outdir": str(outdir), "count": len(entries)}


def stats(store: Store) -> dict[str, Any]:
    """Counts per package and per rung (a block counts at every rung it reached)."""
    out: dict[str, Any] = {"packages": {}}
    for p in store.packages():
        name = p["name"]
        counts = store.package_counts(name)
        rows = block_rows(store, package=name)
        rungs = {rung: sum(1 for r in rows if r["rung"] >= i)
                 for i, rung in enumerate(RUNGS) if i > 0}
        out["packages"][name] = {
            "version": p["version"], "root": p["root"], "modules": counts.modules,
            "definitions": counts.definitions, "blocks": counts.blocks, "files": dict(counts.files),
            "validated": sum(1 for r in rows if r["rung"] >= 0), "rungs": rungs,
        }
    return out
