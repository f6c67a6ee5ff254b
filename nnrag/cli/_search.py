"""Search commands of the ``nnrag`` CLI: embed, query, similar, duplicates.

Registered on :data:`nnrag.cli.main` when that module is imported; kept apart so the core
commands stay readable. Output formatting only: the work is in :class:`nnrag.workspace.Workspace`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from nnrag.cli._common import (
    DB,
    FORMAT,
    NON_NEGATIVE_INT,
    emit_json,
    err,
    options,
    out,
    progress,
    workspace,
)

MODEL = click.option(
    "--model", default=None,
    help="Embedding model: 'minilm' (packaged all-MiniLM-L6-v2, default), a local folder, "
         "or 'hashing' (no model; for tests). Env: NNRAG_EMBED_MODEL.",
)
FILTERS = [
    click.option("--category", help="Only this category (see `nnrag query --help`)."),
    click.option("--min-rung", default="none", show_default=True,
                 help="Only blocks validated at least this far."),
    click.option("--package", help="Only this package."),
    click.option("--max-params", type=NON_NEGATIVE_INT,
                 help="Only blocks with at most this many parameters (validated ones)."),
    click.option("--proven", is_flag=True,
                 help="Only blocks trained by `nnrag train` (with their best metric)."),
]
SEARCH = [
    click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid",
                 show_default=True),
    click.option("-k", "--top", "k", default=10, show_default=True,
                 type=click.IntRange(1, 10_000), help="Number of hits (1-10000)."),
    click.option("--collapse", is_flag=True,
                 help="Fold structural duplicates into the best-ranked copy."),
    click.option("--show", is_flag=True, help="Print the scope-closed code of each hit."),
]

# Below this, a lexical-only top score means FTS5 floored the idf of every query word (words
# in over half the blocks of a small index): three decimals would print 0.000 for every hit.
WEAK_BM25 = 1e-3


def _filters(category: str | None, min_rung: str, package: str | None, max_params: int | None,
             proven: bool = False) -> dict[str, Any]:
    """The filter options as keywords of the workspace's searches, checked before any work."""
    from nnrag.workspace import search_filters

    search_filters(category=category, min_rung=min_rung, package=package, max_params=max_params,
                   proven=proven)
    return {"category": category, "min_rung": min_rung, "package": package,
            "max_params": max_params, "proven": proven}


def _warm(ws: Any, model: str | None, mode: str) -> Any:
    """The workspace's searcher, loaded now so the query's time is the query's."""
    searcher = ws.searcher(model)
    loaded = searcher.warm(mode)
    if loaded > 1:
        searcher.notes.append(f"model and vector index loaded in {loaded:.1f}s")
    return searcher


def _print_hits(ws: Any, searcher: Any, hits: list[Any], fmt: str, show: bool,
                seconds: float) -> None:
    for note in searcher.notes:
        err.print(f"note: {note}")
    code: dict[str, str] = {}
    if show:
        for h in hits:
            code[h.qualname] = ws.extract(h.qualname).code
    if fmt == "json":
        emit_json([{**h.as_dict(), **({"code": code[h.qualname]} if show else {})} for h in hits])
        return
    if hits and all(set(h.via) == {"lexical"} for h in hits) and hits[0].score < WEAK_BM25:
        err.print("note: the query words occur in most blocks of this index, so their BM25 "
                  "weight is near zero; the hits are still in rank order")
    trained = any(h.trained for h in hits)
    table = Table("#", "score", "matched", "block", "package", "category", "rung",
                  *(["trained"] if trained else []), box=None)
    for h in hits:
        extra = f" (+{len(h.duplicates)} copies)" if h.duplicates else ""
        matched = ", ".join(f"{source} #{rank}" for source, rank in sorted(h.via.items()))
        table.add_row(str(h.rank), f"{h.score:.3g}", matched, h.qualname + extra, h.package,
                      h.category, h.rung_name, *([h.trained or ""] if trained else []))
    out.print(table)
    out.print(f"{len(hits)} hits in {seconds * 1000:.0f} ms")
    for h in hits if show else []:
        out.rule(h.qualname)
        out.print(code[h.qualname], markup=False, highlight=False)


@click.command()
@MODEL
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 65536),
              help="Blocks per model call (1-65536).")
@DB
@FORMAT
def embed(model: str | None, batch_size: int, db: Path | None, fmt: str) -> None:
    """Embed every block not embedded yet (incremental; safe to interrupt and resume)."""
    ws = workspace(db).open()  # a missing index is the first error, before a model loads
    embedder = ws.embedder(model)
    with progress(f"embedding with {embedder.name}", fmt == "table") as update:
        report = ws.embed(embedder, batch_size=batch_size, progress=update)
    data = {"model": report.model, "embedded": report.embedded, "cached": report.cached,
            "total": report.total, "seconds": round(report.seconds, 2),
            "per_second": round(report.per_second, 1)}
    if fmt == "json":
        emit_json(data)
    else:
        out.print(f"{report.embedded} blocks embedded ({report.per_second:.1f}/s), {report.cached} "
                  f"already cached, {report.total} in total; model {report.model}")


@click.command()
@click.argument("text", required=False)
@click.option("--code", "code_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Query with the code in FILE instead of words.")
@options(SEARCH)
@options(FILTERS)
@MODEL
@DB
@FORMAT
def query(text: str | None, code_file: Path | None, mode: str, k: int, collapse: bool, show: bool,
          category: str | None, min_rung: str, package: str | None, max_params: int | None,
          proven: bool, model: str | None, db: Path | None, fmt: str) -> None:
    """Search blocks by words (TEXT) or by code (--code FILE).

    Categories: attention, convolution, transformer_block, pooling, normalization,
    activation, embedding, loss, architecture, utility.
    """
    from nnrag.exceptions import NnragError

    if text is None and code_file is None:
        raise NnragError("give a query: nnrag query 'words ...' or nnrag query --code FILE")
    code = None
    if code_file is not None:
        try:
            code = code_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NnragError(f"cannot read {code_file}: {exc}") from exc
    ws = workspace(db).open()  # a missing index is the first error, before the filters
    filters = _filters(category, min_rung, package, max_params, proven)
    searcher = _warm(ws, model, mode)
    start = time.perf_counter()
    hits = ws.search(text, code=code, mode=mode, k=k, collapse=collapse, model=model, **filters)
    _print_hits(ws, searcher, hits, fmt, show, time.perf_counter() - start)


@click.command()
@click.argument("name")
@options(SEARCH)
@options(FILTERS)
@MODEL
@DB
@FORMAT
def similar(name: str, mode: str, k: int, collapse: bool, show: bool, category: str | None,
            min_rung: str, package: str | None, max_params: int | None, proven: bool,
            model: str | None, db: Path | None, fmt: str) -> None:
    """Blocks most like the indexed block NAME."""
    ws = workspace(db)
    qualname = ws.resolve(name)  # an unknown name fails before a model loads
    searcher = _warm(ws, model, mode)
    filters = _filters(category, min_rung, package, max_params, proven)
    start = time.perf_counter()
    hits = ws.similar(qualname, k, mode=mode, collapse=collapse, model=model, **filters)
    _print_hits(ws, searcher, hits, fmt, show, time.perf_counter() - start)


@click.command()
@click.option("--min-size", default=2, show_default=True, type=click.IntRange(2, 2**31 - 1),
              help="Smallest group to report (at least 2).")
@click.option("--package", help="Only groups with a member in this package.")
@DB
@FORMAT
def duplicates(min_size: int, package: str | None, db: Path | None, fmt: str) -> None:
    """Groups of structurally identical blocks (names and literals abstracted)."""
    groups = workspace(db).duplicates(min_size=min_size, package=package)
    if fmt == "json":
        emit_json([{"fingerprint": g[0]["fingerprint"], "size": len(g),
                     "members": [{"qualname": r["qualname"], "package": r["package"]} for r in g]}
                    for g in groups])
        return
    table = Table("group", "size", "category", "members", box=None)
    for n, g in enumerate(groups, 1):
        names = (", ".join(r["qualname"] for r in g[:4])
                 + (f", ... (+{len(g) - 4})" if len(g) > 4 else ""))
        table.add_row(str(n), str(len(g)), g[0]["category"], names)
    out.print(table)
    copies = sum(len(g) - 1 for g in groups)
    out.print(f"{len(groups)} groups; {copies} blocks are copies of another")
