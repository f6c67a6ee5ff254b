"""One nnrag home (index database and run store) and everything you can do with it.

:func:`open_workspace` is the Python face of the ``nnrag`` command line: each CLI command
parses its options, makes one or two :class:`Workspace` calls and formats what they return.
The workspace opens the index once and keeps one warm :class:`~nnrag.search.Searcher` per
embedding model, so a notebook or a service answers many calls without reloading; writes
(indexing, validation, embedding, mutation, training) drop the searchers so the next query
sees them. Heavy stages are imported inside the methods that use them: opening a
workspace costs no torch, LibCST or FAISS import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnrag._workspace_train import TrainingMixin
from nnrag.config import default_db_path, nnrag_home
from nnrag.exceptions import NnragError
from nnrag.logging import get_logger

if TYPE_CHECKING:
    from nnrag._sqlite import Health as StoreHealth
    from nnrag.extract import Emitted, SpliceResult
    from nnrag.generate import Backend, GenerateConfig, GenerateReport
    from nnrag.generate.adapters import AdapterInfo
    from nnrag.generate.events import Progress as GenerateProgress
    from nnrag.index import IndexReport, LemurImport, Store
    from nnrag.ladder import Outcome
    from nnrag.learn import Dataset
    from nnrag.learn.loop import CycleMetrics, LearnConfig
    from nnrag.mutate import MutationReport, Target
    from nnrag.search import Embedder, EmbedReport, Filters, Hit, Searcher
    from nnrag.train import RunStore

Progress = Callable[[int, int], None]  # (done, total)
logger = get_logger(__name__)

__all__ = [
    "Block", "ExportResult", "MutateResult", "PackageStats", "Progress", "SkippedBlock",
    "Workspace", "open_workspace", "search_filters",
]


@dataclass(frozen=True)
class Block:
    """An indexed block and its latest validation (``rung`` -1: never validated)."""

    id: int
    qualname: str
    name: str
    module: str
    package: str
    path: str
    lineno: int
    end_lineno: int
    hash: str
    rung: int
    rung_name: str
    cause: str | None
    failed_rung: int | None
    error_type: str | None
    error_message: str | None


@dataclass(frozen=True)
class SkippedBlock:
    """A block :meth:`Workspace.export` left out because its file is broken, and why."""

    qualname: str
    reason: str


@dataclass(frozen=True)
class ExportResult:
    """Where :meth:`Workspace.export` wrote its files, how many blocks, and which it skipped."""

    outdir: Path
    count: int
    skipped: tuple[SkippedBlock, ...] = ()


@dataclass(frozen=True)
class PackageStats:
    """Counts for one indexed package; ``rungs`` counts a block at every rung it reached."""

    name: str
    version: str | None
    root: str
    modules: int
    definitions: int
    blocks: int
    files: dict[str, int]
    validated: int
    rungs: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The ``nnrag stats --format json`` entry (everything but the name, its key there)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


@dataclass(frozen=True)
class MutateResult:
    """A mutation run, the index names of its valid mutants and the files written."""

    report: MutationReport
    indexed: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()


def search_filters(*, category: str | None = None, min_rung: str | int = "none",
                   package: str | None = None, max_params: int | None = None,
                   proven: bool = False) -> Filters:
    """Check search filters (a bad category or rung is a clear error) and bundle them."""
    from nnrag.index import rung_number
    from nnrag.search import Filters

    return Filters(category, rung_number(min_rung), package, max_params, proven)


class Workspace(TrainingMixin):
    """An index database and a run store, with the pipeline's operations as methods.

    Create one with :func:`open_workspace`. The index opens on first use (it must exist,
    except for :meth:`index`, which creates it); :meth:`close` or ``with`` releases it.
    """

    def __init__(self, home: Path, db: Path, runs: Path) -> None:
        self.home, self.db, self.runs = home, db, runs
        self._store: Store | None = None
        self._searchers: dict[str | None, Searcher] = {}
        self._scratch: Path | None = None  # shared by this workspace's engines (warm workers)
        # Where warnings about the stores go (an incomplete index); the CLI prints them.
        self.on_warning: Callable[[str], None] = logger.warning

    def __repr__(self) -> str:
        return f"Workspace(home={str(self.home)!r}, db={str(self.db)!r}, runs={str(self.runs)!r})"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._searchers.clear()
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- the stores
    def open(self, *, create: bool = False, readonly: bool = False) -> Workspace:
        """Open the index now: a missing one (unless ``create``) is an error here, not later.

        ``readonly`` opens it for reading only (SQLite ``mode=ro``); a later write reopens it.
        An index that an interrupted ``nnrag index`` left incomplete is reported through
        :attr:`on_warning` (the CLI prints it), unless ``create`` (indexing finishes it).
        """
        if self._store is not None and self._store.readonly and not readonly:
            self._store.close()
            self._store = None
        if self._store is None:
            from nnrag.index import Store

            self._store = Store(self.db, create=create, readonly=readonly)
            why = None if create else self._store.incomplete
            if why:
                self.on_warning(why)
        return self

    @property
    def store(self) -> Store:
        """The index database (opened on first use; missing: :class:`IndexMissingError`)."""
        store = self.open()._store
        assert store is not None
        return store

    @property
    def reader(self) -> Store:
        """The index, for reading only: opened read-only unless it is already open."""
        store = self.open(readonly=True)._store
        assert store is not None
        return store

    def _changed(self) -> None:
        """The index was written: searchers hold a stale view of it."""
        self._searchers.clear()

    def run_store(self, *, readonly: bool = False) -> RunStore:
        """The run store of :meth:`train` (created on first use); ``readonly``: an existing
        one, opened for reading only (missing: :class:`StoreMissingError`)."""
        from nnrag.train import RunStore

        return RunStore(self.runs, readonly=readonly)

    def doctor(self, *, full: bool = True) -> list[StoreHealth]:
        """Check the index and the run store without changing them: kind, SQLite's
        ``integrity_check`` (``quick_check`` unless ``full``) and, for the index, whether an
        interrupted ``nnrag index`` left it incomplete."""
        from dataclasses import replace as with_

        from nnrag._sqlite import INDEX, RUNS, check
        from nnrag.index import Store

        index, runs = check(Path(self.db), INDEX, full=full), check(Path(self.runs), RUNS,
                                                                    full=full)
        if index.status == "ok":
            try:
                with Store(self.db, readonly=True) as store:
                    why = store.incomplete
            except NnragError as exc:
                index = with_(index, status="corrupt", problems=(str(exc),))
            else:
                if why:
                    index = with_(index, status="incomplete", problems=(why,))
        return [index, runs]

    # -- index and extract
    def index(self, path: str | Path | None = None, *, package: str | None = None,
              prefix: str | None = None, jobs: int = 2, max_file_mb: float = 2.0,
              progress: Progress | None = None) -> IndexReport:
        """Index the ``.py`` files under ``path``, or of the installed ``package``.

        With a path, ``package`` names the tree in the index (default: from ``prefix``, the
        dotted name of the folder itself, or the folder's name). Unchanged files are skipped.
        """
        from nnrag.exceptions import ScanError
        from nnrag.index import index_package, index_path, locate_package

        if path is None and package is None:
            raise NnragError("give a path to index or an installed package name")
        if path is not None and not Path(path).exists():  # fail before creating a database
            raise ScanError(f"path does not exist: {path}")
        if path is None:
            locate_package(str(package))
        store = self.open(create=True).store
        kwargs: dict[str, Any] = dict(
            progress=(lambda d, t, _p: progress(d, t)) if progress else None,
            jobs=jobs, max_bytes=int(max_file_mb * 1e6),
        )
        try:
            if path is None:
                return index_package(store, str(package), **kwargs)
            return index_path(store, path, prefix=prefix, package=package, **kwargs)
        finally:
            self._changed()

    def import_lemur(self, source: str | Path, *, stats: str | Path | None = None,
                     folder: str | Path | None = None, limit: int | None = None,
                     progress: Progress | None = None) -> LemurImport:
        """Bring LEMUR-format models (a folder of modules or LEMUR's ``models.jsonl.gz``) into
        the index as package ``lemur``, under their LEMUR names, with ``stats`` (LEMUR's
        ``stats.jsonl.gz``) recorded as reported results, never as runs of this machine.
        The modules are written to ``folder`` (default: ``lemur/`` beside the index)."""
        from nnrag.index import import_lemur

        store = self.open(create=True).store
        target = Path(folder) if folder is not None else Path(self.db).parent / "lemur"
        try:
            return import_lemur(store, source, target, stats=stats, limit=limit,
                                progress=(lambda d, t, _p: progress(d, t)) if progress else None)
        finally:
            self._changed()

    def extract(self, name: str) -> Emitted:
        """``name`` (short or qualified) as one scope-closed, self-contained module."""
        from nnrag.extract import extract

        return extract(self.reader, name)

    def resolve(self, name: str, *, blocks_only: bool = True) -> str:
        """The qualified name ``name`` refers to (unknown or ambiguous: a clear error)."""
        from nnrag.extract import ClosureBuilder

        return str(ClosureBuilder(self.reader).find(name, blocks_only=blocks_only)["qualname"])

    def blocks(self, pattern: str | None = None, *, min_rung: str | int = "none",
               package: str | None = None) -> list[Block]:
        """Indexed blocks (glob ``pattern`` over qualified or short names) with their rung."""
        from nnrag.extract import block_rows
        from nnrag.index import rung_number

        rows = block_rows(self.reader, min_rung=rung_number(min_rung), pattern=pattern,
                          package=package)
        names = [f.name for f in fields(Block)]
        return [Block(**{k: r[k] for k in names}) for r in rows]

    def export(self, outdir: str | Path, *, min_rung: str | int = "none",
               include_broken: bool = False, progress: Progress | None = None) -> ExportResult:
        """One ``.py`` per block plus ``manifest.json`` in ``outdir`` (replaced atomically).

        Blocks whose latest validation failed below ``import`` or for a ``resolver_gap`` are
        skipped (listed in ``skipped``) unless ``include_broken``: their files do not work.
        """
        from nnrag.extract import export
        from nnrag.index import rung_number

        result = export(self.reader, outdir, min_rung=rung_number(min_rung),
                        include_broken=include_broken, progress=progress)
        skipped = tuple(SkippedBlock(s["qualname"], s["reason"]) for s in result["skipped"])
        return ExportResult(Path(result["outdir"]), result["count"], skipped)

    def stats(self) -> dict[str, PackageStats]:
        """Counts per indexed package: modules, definitions, blocks, files, rungs reached."""
        from nnrag.extract import stats

        names = [f.name for f in fields(PackageStats)]
        return {name: PackageStats(**{k: p[k] for k in names if k != "name"}, name=name)
                for name, p in stats(self.reader)["packages"].items()}

    # -- the validation ladder
    def validate(self, names: Sequence[str] = (), *, all_blocks: bool = False, jobs: int = 1,
                 timeout: float = 60.0, memory_mb: int = 4096, max_rung: str | int = "backward",
                 force: bool = False, progress: Progress | None = None) -> list[Outcome]:
        """Climb parse .. ``max_rung`` for ``names`` (or every block) in the sandbox.

        Results are cached by closure hash; ``force`` re-runs them. Outcomes keep input order.
        """
        from nnrag.index import rung_number
        from nnrag.ladder import validate
        from nnrag.sandbox import Limits

        if not names and not all_blocks:
            raise NnragError("give block names to validate, or all_blocks=True")
        _check_limit("timeout", timeout, 7 * 24 * 3600)
        _check_limit("memory_mb", memory_mb, 1 << 20)
        _check_limit("jobs", jobs, 256)
        try:
            return validate(
                self.store, names, all_blocks=all_blocks, jobs=jobs, force=force,
                limits=Limits(wall_s=timeout, memory_mb=memory_mb), max_rung=rung_number(max_rung),
                progress=(lambda d, t, _o: progress(d, t)) if progress else None,
            )
        finally:
            self._changed()

    # -- search
    def searcher(self, model: str | None = None) -> Searcher:
        """The workspace's searcher for embedding ``model`` (kept warm between calls)."""
        if model not in self._searchers:
            from nnrag.search import Searcher

            self._searchers[model] = Searcher(self.store, model=model)
        return self._searchers[model]

    def search(self, text: str | None = None, *, code: str | None = None, k: int = 10,
               mode: str = "hybrid", collapse: bool = False, model: str | None = None,
               **filters: Any) -> list[Hit]:
        """Blocks ranked for words (``text``) or code (``code``).

        ``filters``: ``category``, ``min_rung``, ``package``, ``max_params``, ``proven``
        (see :func:`search_filters`). ``collapse`` folds structural duplicates into one hit.
        """
        searcher = self.searcher(model)
        return searcher.search(text, code=code, mode=mode, k=k, filters=search_filters(**filters),
                               collapse=collapse)

    def similar(self, name: str, k: int = 10, *, mode: str = "hybrid", collapse: bool = False,
                model: str | None = None, **filters: Any) -> list[Hit]:
        """Blocks most like the indexed block ``name`` (itself excluded)."""
        from nnrag.extract import ClosureBuilder

        row = ClosureBuilder(self.store).find(name, blocks_only=True)
        return self.searcher(model).similar(row["id"], mode=mode, k=k,
                                            filters=search_filters(**filters), collapse=collapse)

    def duplicates(self, *, min_size: int = 2,
                   package: str | None = None) -> list[list[dict[str, Any]]]:
        """Groups of structurally identical blocks (names and literals abstracted)."""
        from nnrag.search import duplicate_groups

        return duplicate_groups(self.store, min_size=min_size, package=package)

    def embedder(self, model: str | None = None) -> Embedder:
        """The embedding model ``model`` names (``None``: the default, ``"hashing"``: no model)."""
        from nnrag.search import get_embedder

        return get_embedder(model)

    def embed(self, model: str | Embedder | None = None, *, batch_size: int = 64,
              progress: Progress | None = None) -> EmbedReport:
        """Embed every block not embedded yet with ``model`` (incremental and resumable)."""
        from nnrag.index import sync_catalog
        from nnrag.search import VectorIndex, embed_blocks

        _check_limit("batch_size", batch_size, 65536)
        store = self.store
        sync_catalog(store)
        embedder = self.embedder(model) if model is None or isinstance(model, str) else model
        try:
            report = embed_blocks(store, embedder, progress=progress, batch=batch_size)
            VectorIndex(store, embedder.name).load()
        finally:
            self._changed()
        return report

    # -- pipelines
    def load_target(self, target: str, *, block: str | None = None) -> Target:
        """A model file, a corpus model name or an indexed block, ready to mutate."""
        from nnrag.mutate import load_target

        return load_target(target, db=self.db, block=block)

    def mutate(self, target: str | Target, n: int = 50, *, kinds: Sequence[str] | None = None,
               seed: int = 0, max_params: int | None = None, dataset: str | None = None,
               block: str | None = None, jobs: int = 2, out_dir: str | Path | None = None,
               index: bool = True, progress: Progress | None = None) -> MutateResult:
        """Up to ``n`` valid shape-preserving mutants of ``target``, validated in the sandbox.

        Shapes come from ``dataset`` (default: the target's kind, digits or MNIST-1D). Valid
        mutants go to ``out_dir`` as files and, with ``index``, into the index with lineage.
        """
        from nnrag.mutate import KINDS, Mutator, write_files, write_index
        from nnrag.train.datasets import dataset_info

        tgt = self.load_target(target, block=block) if isinstance(target, str) else target
        info = dataset_info(dataset or tgt.default_dataset())
        mutator = Mutator(tgt, in_shape=(64, *info.in_shape), num_classes=info.num_classes,
                          kinds=KINDS if kinds is None else tuple(kinds), seed=seed,
                          max_params=max_params, jobs=jobs)
        report = mutator.run(n, progress)
        files = write_files(report, Path(out_dir)) if out_dir else []
        indexed: list[str] = []
        if index and report.valid:
            indexed = write_index(report, self.db, self.home)
            self._changed()
        return MutateResult(report, tuple(indexed), tuple(files))

    def splice(self, code: str, *, index: str | Path | None = None,
               strict: bool = True) -> SpliceResult:
        """``code`` (a model module) with what it uses from packages that are not installed
        spliced in from ``index`` (default: this workspace's index), which holds the
        packages' source (``ws.index("src/torchvision", package="torchvision")``).

        ``strict``: a used name the index cannot provide raises
        :class:`~nnrag.exceptions.SpliceError`; otherwise it is reported and its import kept.
        """
        from nnrag.extract import splice
        from nnrag.index import Store

        if index is None:
            return splice(code, self.store, strict=strict)
        with Store(index, create=False) as store:
            return splice(code, store, strict=strict)

    def generate(self, config: GenerateConfig, backend: Backend,
                 progress: GenerateProgress | None = None) -> GenerateReport:
        """Prompt ``backend`` for models per ``config``; probe, repair and train them.

        The run store and the index default to this workspace's; the caller owns (and
        closes) the backend.
        """
        from nnrag.generate import Generator

        config = replace(config, runs_db=config.runs_db or self.runs,
                         index_db=config.index_db or self.db)
        try:
            return Generator(backend, config, progress).run()
        finally:
            self._changed()

    # -- the learning loop and its adapters
    def adapter_for(self, model: str | None, choice: str | None = None) -> AdapterInfo | None:
        """The adapter ``nnrag generate --model model --adapter choice`` loads: ``None``
        means the newest published for that base, ``'none'`` none, else a version number or
        a folder (refused when it was trained on another base)."""
        from nnrag.generate.adapters import AdapterStore
        from nnrag.generate.training import base_id

        return AdapterStore(self.home / "adapters").resolve(choice, base_id(model))

    def adapters(self) -> list[AdapterInfo]:
        """Every published adapter version, oldest first."""
        from nnrag.generate.adapters import AdapterStore

        return AdapterStore(self.home / "adapters").versions()

    def learn(self, config: LearnConfig,
              progress: Callable[[str], None] | None = None) -> list[CycleMetrics]:
        """Run ``nnrag learn``: cycle 0 measures the generator, each further cycle builds the
        dataset from every proven program, fine-tunes and publishes an adapter, and measures
        again. Per-cycle figures go to ``<home>/learn/cycles.jsonl``."""
        from nnrag._workspace import learn

        try:
            return learn(self, config, progress)
        finally:
            self._changed()

    def learn_dataset(self, config: LearnConfig) -> Dataset:
        """Build the dataset ``learn`` would train on first (prompts fitted with the base
        model's tokenizer), without fine-tuning; its folder can be passed as ``dataset``."""
        from nnrag._workspace import learn_dataset

        return learn_dataset(self, config)

    def learn_report(self, run: str | None = None, *,
                     all_runs: bool = False) -> list[CycleMetrics]:
        """The logged cycles of ``run`` (default: the latest run; ``all_runs``: every one)."""
        from nnrag.learn.loop import CycleLog

        log = CycleLog(self.home / "learn" / "cycles.jsonl")
        if all_runs:
            return log.read()
        run = run or log.last_run()
        return log.read(run) if run else []


def _check_limit(name: str, value: float, most: float) -> None:
    """A limit must be a finite number in (0, most]: a run under a nonsense limit would
    fail for the limit's sake, and its result could be cached as the block's own."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value <= most:  # False for nan too
        raise NnragError(f"{name} must be a number above 0 and at most {most:g}, "
                         f"got {value!r}")


def open_workspace(home: str | Path | None = None, *, db: str | Path | None = None,
                   runs: str | Path | None = None) -> Workspace:
    """The workspace at ``home`` (default ``$NNRAG_HOME``, else ``~/.nnrag``).

    ``db`` defaults to ``home/index.db`` (with no ``home``: ``$NNRAG_DB`` if set, as the
    CLI does) and ``runs`` to ``home/runs.db``. Nothing is opened or created yet.
    """
    base = Path(home).expanduser() if home is not None else nnrag_home()
    index_db = Path(db) if db is not None else (
        base / "index.db" if home is not None else default_db_path())
    return Workspace(base, index_db, Path(runs) if runs is not None else base / "runs.db")
