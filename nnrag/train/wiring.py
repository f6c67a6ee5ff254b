"""The engine's standard wiring to the block index: where blocks come from, where models go.

A trained model is written as a file in the ``trained/`` folder beside its run store
(``$NNRAG_HOME/trained`` for the default ``$NNRAG_HOME/runs.db``) and only that file is
indexed: an index shared by several homes keeps every home's trained blocks, and an
invocation never writes another run store's models into the index.

The only module of :mod:`nnrag.train` that touches the index and the extractor, so the
engine stays testable with any resolver and sink. Every command that trains (``train``,
``resume``, ``demo``, ``mutate``, ``generate``) builds its engine with :func:`indexed_engine`.

With ``splice_from`` (an index database) the resolver also splices: a model that imports
from a package that is not installed (``from torchvision.ops import StochasticDepth``) gets
the definitions it uses from that index of the package's source, pasted into its module
before the trial (:func:`nnrag.extract.splice`). The trained code, and so the run store,
holds the spliced module with a header saying what came from where; a log line says it too.
Names the index cannot provide are logged and their imports kept, so that one trial fails
(naming the missing package) rather than the whole batch.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from pathlib import Path

from nnrag.config import default_db_path, nnrag_home
from nnrag.extract import Splicer, SpliceResult, extract
from nnrag.index import BlockMetric, Store, index_path, normalised_md5
from nnrag.logging import get_logger
from nnrag.train.engine import Engine, NotIndexed, OnTrained, Resolver, Trained, local_code
from nnrag.train.executors import Executor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import TrainSpec

logger = get_logger(__name__)


def splicer(index_db: Path) -> Callable[[str], SpliceResult]:
    """Splice model code from the index at ``index_db`` (opened, and its symbol table built,
    on first use, then kept: a batch of models shares one view of the index)."""
    cached: list[Splicer] = []

    def run(code: str) -> SpliceResult:
        if not cached:
            store = Store(index_db, create=False)
            cached.append(Splicer(store))
            weakref.finalize(cached[0], store.close)  # closed with the resolver
        return cached[0].splice(code, strict=False)

    return run


def index_resolver(index_db: Path | None = None, splice_from: Path | None = None) -> Resolver:
    """Inline code and files as usual; a ``block:`` reference is extracted from the index at
    ``index_db`` (default: ``$NNRAG_DB`` or ``$NNRAG_HOME/index.db``) as a closed module.
    With ``splice_from``, what the code imports from packages that are not installed is
    spliced in from that index."""
    splice = splicer(splice_from) if splice_from is not None else None

    def resolve(spec: TrainSpec) -> tuple[str, str | None]:
        if spec.model.block is None:
            code, block = local_code(spec)
        else:
            with Store(index_db or default_db_path(), create=False) as store:
                emitted = extract(store, str(spec.model.block))
            code, block = emitted.code, emitted.name
        if splice is not None:
            result = splice(code)
            if result.changed or result.unresolved:
                log = logger.info if result.complete else logger.warning
                log("model %r: %s", spec.model.label, result.summary())
            code = result.code
        return code, block

    return resolve


def trained_folder(runs: RunStore | Path) -> Path:
    """Where the models trained into run store ``runs`` are written: ``trained/`` beside it."""
    path = runs.path if isinstance(runs, RunStore) else Path(runs)
    return path.expanduser().absolute().parent / "trained"


def index_writer(index_db: Path | None = None, runs: Path | None = None) -> OnTrained:
    """Write a trained model into the index as ``trained.<name>_<md5>`` (a file in
    :func:`trained_folder` of the run store ``runs``, default ``$NNRAG_HOME/runs.db``) with
    its best metric beside it.

    Only that file is indexed, and only its block's metric is recorded (when it beats the
    one recorded): nothing else in the index changes. When the index keeps the file out
    (too large, unparsable) or finds no block of that name in it, no metric is recorded
    and the sink returns :class:`NotIndexed` with the reason, which the run keeps.
    """
    run_store = (runs or nnrag_home() / "runs.db").expanduser().absolute()
    folder = trained_folder(run_store)

    def write(trained: Trained) -> str | NotIndexed:
        spec, record = trained.spec, trained.record
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
            report = index_path(store, folder, prefix="trained", package="trained",
                                only=[folder / "__init__.py", target])
            problems = [p for p in report.problems if Path(p.path) == target.resolve()]
            if problems:
                return NotIndexed(f"{problems[0].kind}: {problems[0].message}")
            if not store.definitions_named(qualname, qualified=True, blocks_only=True):
                return NotIndexed(f"{qualname} is not a block of the indexed file")
            store.record_block_metric(BlockMetric(qualname, spec.dataset, spec.metric, record.best,
                                                  record.id, record.params,
                                                  str(run_store)))
        return qualname

    return write


def indexed_engine(runs: RunStore, executor: Executor | None = None,
                   index_db: Path | None = None, splice_from: Path | None = None,
                   scratch: Path | None = None) -> Engine:
    """An engine that trains indexed blocks and writes successful models back to the index
    (files in :func:`trained_folder` of ``runs``); ``splice_from``: an index to splice
    packages that are not installed from (see :func:`index_resolver`)."""
    return Engine(runs, executor, resolver=index_resolver(index_db, splice_from),
                  on_trained=index_writer(index_db, runs.path), scratch=scratch)
