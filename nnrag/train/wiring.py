"""The engine's standard wiring to the block index: where blocks come from, where models go.

The only module of :mod:`nnrag.train` that touches the index and the extractor, so the
engine stays testable with any resolver and sink. Every command that trains (``train``,
``resume``, ``demo``, ``mutate``, ``generate``) builds its engine with :func:`indexed_engine`.
"""

from __future__ import annotations

import re
from pathlib import Path

from nnrag.config import default_db_path, nnrag_home
from nnrag.extract import extract
from nnrag.index import BlockMetric, Store, index_path, normalised_md5
from nnrag.train.engine import Engine, OnTrained, Resolver, Trained, local_code
from nnrag.train.executors import Executor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import TrainSpec


def index_resolver(index_db: Path | None = None) -> Resolver:
    """Inline code and files as usual; a ``block:`` reference is extracted from the index at
    ``index_db`` (default: ``$NNRAG_DB`` or ``$NNRAG_HOME/index.db``) as a closed module."""

    def resolve(spec: TrainSpec) -> tuple[str, str | None]:
        if spec.model.block is None:
            return local_code(spec)
        with Store(index_db or default_db_path(), create=False) as store:
            emitted = extract(store, str(spec.model.block))
        return emitted.code, emitted.name

    return resolve


def index_writer(index_db: Path | None = None) -> OnTrained:
    """Write a trained model into the index as ``trained.<name>_<md5>`` (a file under
    ``$NNRAG_HOME/trained``, then indexed) with its best metric beside it."""

    def write(trained: Trained) -> str:
        spec, record = trained.spec, trained.record
        folder = nnrag_home() / "trained"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").touch()
        slug = re.sub(r"\W+", "_", spec.model.label).strip("_").lower() or "model"
        module = f"{slug}_{normalised_md5(trained.code)[:8]}"
        target = folder / f"{module}.py"
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_text(trained.code, encoding="utf-8")
            tmp.replace(target)
        qualname = f"trained.{module}.{trained.block or 'Net'}"
        with Store(index_db or default_db_path()) as store:
            index_path(store, folder, prefix="trained", package="trained")
            store.record_block_metric(BlockMetric(qualname, spec.dataset, spec.metric, record.best,
                                                  record.id, record.params))
        return qualname

    return write


def indexed_engine(runs: RunStore, executor: Executor | None = None,
                   index_db: Path | None = None) -> Engine:
    """An engine that trains indexed blocks and writes successful models back to the index."""
    return Engine(runs, executor, resolver=index_resolver(index_db),
                  on_trained=index_writer(index_db))
