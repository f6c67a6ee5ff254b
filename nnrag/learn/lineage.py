"""Parent -> child pairs in which the child trained better: "improve" examples' raw material.

nnrag records lineage in the index, not in the run store: ``nnrag mutate`` indexes each
valid mutant as package ``mutants`` with ``block_provenance`` (source ``mutate``,
``parent``: the target's file path or indexed name), and ``nnrag generate`` records, for
each model it trained and wrote back (package ``trained``), the references its prompt
showed (source ``generate``, ``references``: ``run:<id>`` or ``corpus:<file>``). The run
store says how each one trained. A node of the lineage is matched to its runs by what a run
records: the indexed block it trained (``spec.model.block``), the block its model was
written back as (``indexed_as``), the file it trained (``spec.model.file``) or, for inline
code, the structural fingerprint of the code (the engine's ``fingerprint`` column). A pair
counts when both sides have a successful run on the same dataset and metric and the
child's best is higher than the parent's; each side's best run gives its code and score.
The index and the run store are only read.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrag.learn.programs import Program, family_of

SOURCES = ("mutate", "generate")  # provenance sources that name a parent
PACKAGES = ("mutants", "trained")  # where those children are indexed


@dataclass(frozen=True)
class Improvement:
    """A parent and the child of it that trained better on ``dataset`` (same family)."""

    parent: Program
    child: Program
    kind: str  # mutate | generate
    dataset: str
    metric: str = "accuracy"  # what both scores are (the runs' spec metric)


class _Runs:
    """The successful runs on one dataset, looked up by what identifies a lineage node."""

    def __init__(self, rows: list[Any]) -> None:
        self.by_id: dict[int, Any] = {}
        self.by_key: dict[tuple[str, str], Any] = {}
        for row in rows:  # best first: the first run of a key is its best
            if not row.code:
                continue
            self.by_id[row.id] = row
            model = row.spec_dict.get("model", {})
            keys = [("fp", row.fingerprint)]
            if model.get("block"):
                keys.append(("block", str(model["block"])))
            if model.get("file"):
                keys.append(("file", _resolved(str(model["file"]))))
            if row.indexed_as:
                keys.append(("block", str(row.indexed_as)))
            for key in keys:
                self.by_key.setdefault(key, row)

    def best(self, keys: list[tuple[str, str]]) -> Any | None:
        found = [self.by_key[k] for k in keys if k in self.by_key]
        return max(found, key=lambda r: (r.best, -r.id)) if found else None


def _metric(row: Any) -> str:
    """The metric a run's ``best`` is (every registered metric is higher-is-better)."""
    return str(row.spec_dict.get("metric") or "accuracy")


def _resolved(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return path


def _fingerprint_key(code: str) -> list[tuple[str, str]]:
    from nnrag.index import code_fingerprint

    try:
        return [("fp", code_fingerprint(code))]
    except Exception:  # noqa: BLE001 - an unparsable file simply matches no run by code
        return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _classes(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def _children(store: Any, modules: list[dict[str, Any]]
              ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(qualname, module source, provenance)`` of every indexed child with a parent."""
    for module in sorted(modules, key=lambda m: m["name"]):
        if module["package"] not in PACKAGES or module["is_package"]:
            continue
        code = _read(Path(module["path"]))
        if code is None:
            continue
        for cls in _classes(code):
            prov = store.provenance(f"{module['name']}.{cls}")
            if prov and prov.get("source") in SOURCES:
                yield f"{module['name']}.{cls}", code, prov


def _parent_keys(store: Any, paths: dict[str, str], ref: str,
                 corpus: Path | None) -> tuple[list[tuple[str, str]], int | None]:
    """How to find a parent's runs: ``(keys, run id)`` for ``run:<id>``, ``corpus:<file>``,
    a file path or an indexed name (``paths``: module name -> file, from the index)."""
    if ref.startswith("run:"):
        try:
            return [], int(ref[4:])
        except ValueError:
            return [], None
    if ref.startswith("corpus:"):
        from nnrag.examples import corpus_dir
        from nnrag.exceptions import NnragError

        try:
            path = (corpus or corpus_dir()) / ref[len("corpus:"):]
        except NnragError:
            return [], None
        code = _read(path)
        keys = [("file", _resolved(str(path)))]
        return keys + (_fingerprint_key(code) if code is not None else []), None
    path = Path(ref)
    if path.suffix == ".py" and path.is_file():
        code = _read(path)
        keys = [("file", _resolved(ref))]
        return keys + (_fingerprint_key(code) if code is not None else []), None
    keys = [("block", ref)]
    for row in store.definitions_named(ref, qualified=True):
        code = _read(Path(paths[row["module"]])) if row["module"] in paths else None
        if code is not None:
            keys += _fingerprint_key(code)
    return keys, None


def lineage_improvements(index_db: Path, runs_db: Path, dataset: str, *,
                         corpus: Path | None = None, limit: int = 100_000) -> list[Improvement]:
    """Every recorded parent -> child pair whose child trained better on ``dataset``, in a
    stable order (child qualname, then parent). Empty without an index or a run store."""
    if not (Path(index_db).exists() and Path(runs_db).exists()):
        return []
    from nnrag.index import Store
    from nnrag.train.runstore import RunStore

    store_runs = RunStore(runs_db, readonly=True)
    try:
        runs = _Runs(store_runs.leaderboard(dataset, limit))
    finally:
        store_runs.close()
    out: list[Improvement] = []
    with Store(index_db, create=False, readonly=True) as store:
        modules = store.modules()
        paths = {m["name"]: m["path"] for m in modules}
        for qualname, code, prov in _children(store, modules):
            child = runs.best([("block", qualname), *_fingerprint_key(code)])
            if child is None or child.best is None:
                continue
            refs = ([prov.get("parent")] if prov["source"] == "mutate"
                    else list(prov.get("references") or []))
            for ref in sorted({str(r) for r in refs if r}):
                keys, run_id = _parent_keys(store, paths, ref, corpus)
                parent = runs.by_id.get(run_id) if run_id is not None else runs.best(keys)
                if (parent is None or parent.best is None or parent.id == child.id
                        or parent.fingerprint == child.fingerprint or child.best <= parent.best
                        or _metric(parent) != _metric(child)):
                    continue
                family = family_of(parent.name)
                out.append(Improvement(
                    Program(parent.name, family, parent.code, f"run:{parent.id}", parent.best),
                    Program(child.name, family, child.code, f"run:{child.id}", child.best),
                    str(prov["source"]), dataset, _metric(child)))
    return out
