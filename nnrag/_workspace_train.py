"""The training half of :class:`nnrag.workspace.Workspace`: the engine, ``train``, early
stopping, ``tune`` and ``resume``, kept apart so each file of the Python API stays small.
:class:`TrainingMixin` relies on the workspace's stores (``home``, ``db``, ``runs``,
:meth:`~nnrag.workspace.Workspace.open`, ``run_store``, ``extract``, ``resolve``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnrag.extract import Emitted
    from nnrag.train import BatchReport, Engine, RunStore, TrainSpec
    from nnrag.train import Progress as TrainProgress
    from nnrag.train.stopping import Stopper

__all__ = ["TrainingMixin"]


class TrainingMixin:
    """Training, tuning and resuming over the workspace's run store and index."""

    home: Path
    db: Path
    runs: Path
    _scratch: Path | None

    if TYPE_CHECKING:
        def open(self, *, create: bool = False, readonly: bool = False) -> Any: ...
        def run_store(self, *, readonly: bool = False) -> RunStore: ...
        def extract(self, name: str) -> Emitted: ...
        def resolve(self, name: str, *, blocks_only: bool = True) -> str: ...
        def _changed(self) -> None: ...

    def engine(self, *, workers: int = 1, executor: str = "local",
               address: str | None = None, splice_from: str | Path | None = None) -> Engine:
        """The training engine over this workspace's run store and index; ``splice_from``:
        an index to splice packages that are not installed from (see :meth:`splice`)."""
        from nnrag.train import indexed_engine, make_executor

        if Path(self.db).exists():  # a wrong or damaged index fails here, before any training
            self.open()
        if self._scratch is None:
            from nnrag.train.engine import scratch_folder

            self._scratch = scratch_folder()
        return indexed_engine(self.run_store(), make_executor(executor, workers, address), self.db,
                              Path(splice_from) if splice_from is not None else None,
                              scratch=self._scratch)

    def train(self, specs: TrainSpec | dict[str, Any] | Sequence[TrainSpec | dict[str, Any]], *,
              workers: int = 1, executor: str = "local", address: str | None = None,
              progress: TrainProgress | None = None, force: bool = False,
              splice_from: str | Path | None = None, early_stop: str | Stopper = "off",
              early_stop_after: int = 2, predictor: str | Path | None = None) -> BatchReport:
        """Train ``specs`` (one or several, parsed or plain dicts) in sandboxes; twins reuse
        stored successful results unless ``force``. With ``splice_from`` (an index database),
        what a model imports from packages that are not installed is spliced in from that
        index first; the trained code (kept in the run store) says what was spliced.

        ``early_stop="predicted"`` stops a trial after epoch 1..``early_stop_after`` when the
        accuracy predictor (``predictor``, default the one ``nnrag predict fit`` saved) says
        its best cannot reach the best finished run of its dataset; such a run ends
        ``stopped``. A :class:`~nnrag.train.stopping.Stopper` may be given instead."""
        from nnrag.train import TrainSpec, parse_spec

        items = [specs] if isinstance(specs, TrainSpec | dict) else list(specs)
        parsed = [s if isinstance(s, TrainSpec) else parse_spec(s) for s in items]
        try:
            engine = self.engine(workers=workers, executor=executor, address=address,
                                 splice_from=splice_from)
            stopper = self.stopper(early_stop, engine.runs, early_stop_after, predictor)
            return engine.train(parsed, progress, force=force, stopper=stopper)
        finally:
            self._changed()

    def stopper(self, early_stop: str | Stopper, runs: RunStore | None = None,
                after: int = 2, predictor: str | Path | None = None) -> Stopper | None:
        """The early stopper ``early_stop`` names (``off``: None; ``predicted``: the fitted
        predictor's, over ``runs``); a :class:`Stopper` comes back as it is."""
        from nnrag.train.stopping import EARLY_STOP, EarlyStopError, Stopper

        if isinstance(early_stop, Stopper):
            return early_stop
        if early_stop == "off":
            return None
        if early_stop != "predicted":
            raise EarlyStopError(f"unknown early stopping {early_stop!r} (choose from "
                                 f"{', '.join(EARLY_STOP)})")
        from nnrag.predict import PredictedStopper, default_path

        return PredictedStopper.load(predictor if predictor is not None else default_path(),
                                     runs or self.run_store(), after)

    def tune(self, model: str, *, dataset: str, trials: int, sampler: str = "tpe",
             space: str | Path | dict[str, Any] | None = None, epochs: int = 1,
             study: str | None = None, storage: str | None = None, seed: int | None = None,
             limit: int | None = None, progress: Callable[[Any], None] | None = None,
             train_progress: TrainProgress | None = None, lemur: str | Path | None = None,
             workers: int = 1, executor: str = "local", address: str | None = None,
             llm_backend: str = "transformers", llm_model: str | None = None,
             warn: Callable[[str], None] | None = None, pruner: str = "none",
             early_stop_after: int = 2, predictor: str | Path | None = None) -> Any:
        """Run ``trials`` more trials of an Optuna study tuning ``model`` (a contract file or
        an indexed block name) on ``dataset``; each trial is one :meth:`train` call.
        ``sampler`` ``prior`` starts from the best configurations of the most similar models
        in the run store (and LEMUR's records with ``lemur``); ``llm`` asks the generate
        backend ``llm_backend`` for each configuration. ``workers`` > 1 or ``executor``
        ``ray`` trains trials in batches. ``pruner`` (``median``, ``hyperband``: Optuna's;
        ``predicted``: the accuracy predictor's, as ``train(early_stop="predicted")``) stops
        hopeless trials early (one trial at a time only). Returns a
        :class:`nnrag.tune.TuneResult` (the whole study's best, and a spec)."""
        from nnrag import tune_sources as _tune
        from nnrag.train.contract import declared_hyperparameters
        from nnrag.tune import load_space, parse_space, run_study
        from nnrag.tune.pruners import check_pruner
        from nnrag.tune.study import make_sampler

        make_sampler(sampler, seed)  # an unknown sampler fails before anything opens
        check_pruner(pruner)
        predicted = (self.stopper("predicted", None, early_stop_after, predictor)
                     if pruner == "predicted" else None)
        path = Path(model).expanduser()
        if path.is_file():
            ref: dict[str, Any] = {"file": str(path.resolve())}
            code = path.read_text(encoding="utf-8")
            declared = declared_hyperparameters(code)
        else:
            self.resolve(model)  # an unknown block: one line now, not a failed trial each
            ref, declared = {"block": model}, None
            code = self.extract(model).code
        parsed = (load_space(space, declared) if isinstance(space, str | Path)
                  else parse_space(space, declared))
        base: dict[str, Any] = {"model": ref, "dataset": dataset, "budget": {"epochs": epochs}}
        if seed is not None:
            base["seed"] = seed
        if limit is not None:
            base["limit"] = limit
        from nnrag.train import parse_spec

        metric = parse_spec(base, "tune").metric  # unknown dataset: one line, before a trial

        def train_one(spec: dict[str, Any],
                      stopper: Stopper | None = None) -> tuple[Any, list[tuple[int, float]]]:
            report = self.train(spec, progress=train_progress, early_stop=stopper or "off")
            return _tune.trial_values(self.run_store(), report.run_ids[0], metric)

        def runs() -> list[Any]:
            if not Path(self.runs).exists():
                return []
            store = self.run_store(readonly=True)
            return store.with_epochs(store.runs(limit=1 << 20))

        hook = _tune.sampler_hook(
            sampler, code, parsed, dataset, limit=limit, trials=trials, epochs=epochs,
            seed=seed, lemur=lemur, cache_dir=self.home / "cache", runs=runs,
            llm_backend=llm_backend, llm_model=llm_model, warn=warn)
        batched = workers > 1 or executor != "local"
        train_many = partial(_tune.train_batch, partial(
            self.train, workers=workers, executor=executor, address=address,
            progress=train_progress), self.run_store, metric=metric)

        name = study or f"{ref.get('block') or path.stem}-{dataset}"
        url = storage or f"sqlite:///{self.home / 'tune.db'}"
        if storage is None:
            self.home.mkdir(parents=True, exist_ok=True)
        return run_study(name=name, url=url, base=base, space=parsed, trials=trials,
                         sampler=sampler, seed=seed, train=train_one, progress=progress,
                         hook=hook, workers=workers,
                         train_many=train_many if batched else None,
                         pruner=pruner, predicted=predicted)

    def tune_study(self, study: str, storage: str | None = None) -> dict[str, Any]:
        """One study of ``storage`` (default ``$NNRAG_HOME/tune.db``) and all its trials."""
        from nnrag.exceptions import TuneStorageError
        from nnrag.tune.study import show_study

        if storage is None and not (self.home / "tune.db").exists():
            raise TuneStorageError(f"no studies yet in {self.home / 'tune.db'}; "
                                   "run nnrag tune MODEL first")
        return show_study(study, storage or f"sqlite:///{self.home / 'tune.db'}")

    def tune_studies(self, storage: str | None = None) -> list[dict[str, Any]]:
        """The studies in ``storage`` (default ``$NNRAG_HOME/tune.db``), best first."""
        from nnrag.tune import list_studies

        if storage is None and not (self.home / "tune.db").exists():
            return []  # a read: never creates the default storage
        return list_studies(storage or f"sqlite:///{self.home / 'tune.db'}")

    def resume(self, *, workers: int = 1, executor: str = "local", address: str | None = None,
               progress: TrainProgress | None = None) -> BatchReport:
        """Re-run every run a killed engine or worker left unfinished, with the same spec."""
        try:
            return self.engine(workers=workers, executor=executor, address=address).resume(progress)
        finally:
            self._changed()
