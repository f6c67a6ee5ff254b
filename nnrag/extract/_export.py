"""Write validated blocks to a folder: one ``.py`` per block plus ``manifest.json``.

Files are written to a temporary folder next to the destination and moved into place, so
an interrupted export never leaves a half-written manifest. A block whose latest
validation says its file cannot work on its own (see :func:`broken_reason`) is skipped
unless asked for: an export is meant to be a folder of blocks that run.
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

from nnrag.exceptions import OutputError
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


def broken_reason(row: dict[str, Any]) -> str | None:
    """Why a block's emitted file is broken by its latest validation, or None.

    Broken: it was validated and failed at ``parse``, ``compile`` or ``import`` (the file
    does not even import), or failed anywhere for a ``resolver_gap`` (a name or module it
    needs was not inlined). Unvalidated blocks are not judged.
    """
    rung = row["rung"]
    if rung < 0 or not (rung < RUNGS.index("import") or row.get("cause") == "resolver_gap"):
        return None
    error = f"{row.get('error_type')}: {row.get('error_message')}" if row.get("error_type") \
        else "no error recorded"
    return (f"failed at {row.get('failed_rung') or RUNGS[min(rung + 1, len(RUNGS) - 1)]} "
            f"({row.get('cause') or 'unknown cause'}; {error})")


def export(store: Store, outdir: str | Path, *, min_rung: int = 0, include_broken: bool = False,
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the blocks validated at least ``min_rung`` (all, with 0) to ``outdir``.

    Returns ``outdir``, ``count`` and ``skipped`` (qualname and reason of each broken block
    left out; with ``include_broken`` they are written and marked ``broken`` instead).
    """
    outdir = Path(outdir)
    rows = []
    skipped = []
    for r in block_rows(store, min_rung=min_rung):
        reason = broken_reason(r)
        if reason and not include_broken:
            skipped.append({"qualname": r["qualname"], "reason": reason})
        else:
            rows.append({**r, "broken": reason})
    builder = ClosureBuilder(store)
    packages = {p["name"]: p for p in store.packages()}
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {outdir}: {exc.strerror or exc}") from exc
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
                "cause": r["cause"], "broken": r["broken"],
                "dependencies": list(e.definitions[1:]), "imports": list(e.imports),
                "unresolved": list(e.gaps),
            })
            if progress:
                progress(i + 1, len(rows))
        manifest = {"min_rung": RUNGS[min_rung], "count": len(entries), "blocks": entries,
                    "skipped": skipped}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if outdir.exists():
            old = outdir.with_name(f".{outdir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(outdir, old)
            os.replace(tmp, outdir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, outdir)
    except OSError as exc:  # the folder filled up, or its parent turned read-only
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {outdir}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"outdir": str(outdir), "count": len(entries), "skipped": skipped}


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
