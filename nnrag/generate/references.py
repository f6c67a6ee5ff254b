"""Few-shot material: reference models for the task and blocks retrieved from the index.

References come from the run store (models trained on this dataset, best first, generated
ones included, so good generations feed later prompts) and from the seed corpus (models
whose ``INPUT_KINDS`` accept the dataset's kind), compacted for the prompt (see
:mod:`nnrag.generate.compact`). Each prompt takes ``shots`` of them from
distinct families, rotating through the ranking so a batch sees diverse references.
Blocks are retrieved lexically (no search extra needed) with the task and the references'
layer types as the query, and emitted scope-closed so they can be spliced in by name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from nnrag.exceptions import NnragError
from nnrag.generate.compact import compact_code
from nnrag.generate.prompts import BlockRef, Reference
from nnrag.logging import get_logger
from nnrag.train.contract import input_kinds

logger = get_logger(__name__)


def family_of(name: str) -> str:
    """``resnet20`` and ``resnet8`` are one family; ``se_resnet_small`` another."""
    base = re.sub(r"_(small|tiny|lite|narrow|\d+)$", "", name.lower())
    return re.sub(r"[\d_]+$", "", base) or name.lower()


def corpus_references(kind: str, corpus: Path | None = None) -> list[Reference]:
    from nnrag.examples import corpus_dir

    try:
        folder = corpus or corpus_dir()
    except NnragError:
        return []
    refs = []
    for path in sorted(folder.glob("*.py")):
        code = path.read_text(encoding="utf-8")
        if kind in input_kinds(code):
            refs.append(Reference(path.stem, family_of(path.stem), compact_code(code),
                                  f"corpus:{path.name}", full_code=code))
    return refs


def run_references(runs_db: Path, dataset: str, limit: int = 20) -> list[Reference]:
    """Trained models on ``dataset``, best first (read-only use of the run store)."""
    if not runs_db.exists():
        return []
    from nnrag.train.runstore import RunStore

    runs = RunStore(runs_db)
    try:
        refs = []
        for row in runs.leaderboard(dataset, limit):
            code = row.code
            if code and "class Net" in code:
                refs.append(Reference(row.name, family_of(row.name), compact_code(code),
                                      f"run:{row.id}", row.best, full_code=code))
        return refs
    finally:
        runs.close()


def ranked_references(dataset_kind: str, dataset: str, runs_db: Path | None,
                      corpus: Path | None = None) -> list[Reference]:
    """Every usable reference, best for the task first, one entry per distinct code."""
    from nnrag.index import normalised_md5

    ranked: list[Reference] = []
    seen: set[str] = set()
    # Trained models on the task first (best first); then the corpus, shortest first: small
    # models fit small contexts and are what a small LLM can follow.
    corpus_refs = sorted(corpus_references(dataset_kind, corpus), key=lambda r: len(r.code))
    for ref in [*(run_references(runs_db, dataset) if runs_db else []), *corpus_refs]:
        key = normalised_md5(ref.code)
        if key not in seen:
            seen.add(key)
            ranked.append(ref)
    return ranked


def pick_references(ranked: list[Reference], shots: int, index: int) -> list[Reference]:
    """``shots`` references of distinct families for the ``index``-th prompt.

    Starts at the best one for the first prompt and rotates for later ones, so a batch
    covers the ranking instead of showing every prompt the same examples.
    """
    if shots <= 0 or not ranked:
        return []
    start = (index * shots) % len(ranked)
    order = ranked[start:] + ranked[:start]
    out: list[Reference] = []
    families: set[str] = set()
    for ref in order:
        if ref.family not in families:
            out.append(ref)
            families.add(ref.family)
        if len(out) == shots:
            break
    return out


_LAYER = re.compile(r"nn\.([A-Z]\w+)\(")


def layer_words(refs: list[Reference]) -> list[str]:
    """Layer types the references build (``Conv2d``, ``BatchNorm2d``), most frequent first."""
    counts: dict[str, int] = {}
    for r in refs:
        for name in _LAYER.findall(r.code):
            counts[name] = counts.get(name, 0) + 1
    return [n for n, _ in sorted(counts.items(), key=lambda kv: -kv[1])]


def block_summary(code: str, name: str) -> str:
    """The class line, its docstring's first line and ``__init__``'s signature."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return f"class {name}(nn.Module): ..."
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            bases = ", ".join(ast.unparse(b) for b in node.bases)
            lines = [f"class {name}({bases}):"]
            doc = ast.get_docstring(node)
            if doc:
                lines.append(f'    """{doc.strip().splitlines()[0]}"""')
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in ("__init__", "forward"):
                    lines.append(f"    def {item.name}({ast.unparse(item.args)}): ...")
            return "\n".join(lines)
    return f"class {name}(nn.Module): ..."


def retrieve_blocks(db: Path, task: str, refs: list[Reference],
                    k: int) -> tuple[list[BlockRef], list[str]]:
    """``k`` blocks for the task from the index at ``db``; notes say why fewer came back."""
    if k <= 0:
        return [], []
    if not db.exists():
        return [], [f"no index at {db}: no blocks retrieved (build one with `nnrag index`)"]
    from nnrag.extract import extract
    from nnrag.index import Store
    from nnrag.search import Filters, Searcher

    notes: list[str] = []
    with Store(db, create=False) as store:
        searcher = Searcher(store)
        queries = [task.replace("-", " "), " ".join(layer_words(refs)[:6])]
        seen: set[str] = set()
        blocks: list[BlockRef] = []
        for query in [q for q in queries if q.strip()]:
            try:
                hits = searcher.search(query, mode="lexical", k=4 * k, filters=Filters(),
                                       collapse=True)
            except NnragError as exc:
                notes.append(f"block search {query!r} failed: {exc}")
                continue
            for hit in hits:
                if len(blocks) >= k:
                    break
                if (hit.qualname in seen or hit.package == "trained"
                        or hit.category == "architecture"):
                    continue
                seen.add(hit.qualname)
                try:
                    emitted = extract(store, hit.qualname)
                except NnragError as exc:
                    logger.info("block %s not extractable: %s", hit.qualname, exc)
                    continue
                blocks.append(BlockRef(emitted.name, hit.qualname,
                                       block_summary(emitted.code, emitted.name), emitted.code))
        if len(blocks) < k:
            notes.append(f"{len(blocks)} of {k} blocks retrieved from {db}")
    return blocks, notes
