"""The orchestrator: resolve model code, deduplicate, run trials, record, write back.

It is the run store's only writer. Before training, a trial's code is compared with every
successful run of the same spec by the MD5 of its whitespace-normalised text and by its
structural fingerprint (renamed variables, comments and formatting do not matter); a twin
returns the stored result (``force`` trains anyway). Failed runs are never twins: the same
spec is tried again. The hyperparameters a model declares are checked here too, from its
source, so a spec that cannot fill them fails before anything runs.

Model code is not trusted, so neither is anything a trial writes: the engine keeps the
test labels, scores the logits each trial writes (:mod:`nnrag.train._scoring`), and parses
every message strictly (:mod:`nnrag.train._channel`); a malformed one is that trial's
``error``. A trial whose engine keeps dying under it is re-run by ``resume`` at most
:data:`MAX_RERUNS` times, then ``quarantined``.

An injected :class:`~nnrag.train.stopping.Stopper` (``train(..., stopper=...)``) decides
after each scored epoch whether a trial goes on; the answer reaches the child as a file in
its run folder, and a stopped run ends ``stopped`` with the decision recorded. It never
answers a twin and is never written back.

The engine knows nothing of the block index: how a ``block:`` reference becomes code (the
``resolver``) and where a successful model goes (the ``on_trained`` sink) are given by the
caller. :mod:`nnrag.train.wiring` has the standard pair, which extracts blocks from the
index and writes trained models back into it, so retrieval can prefer proven blocks.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from nnrag.exceptions import NnragError
from nnrag.index import code_fingerprint, normalised_md5
from nnrag.logging import get_logger
from nnrag.sandbox import Limits, SandboxResult
from nnrag.train._channel import progress_name, run_dir_name
from nnrag.train._scoring import TrialData, TrialWatch, write_trial_data
from nnrag.train.contract import check_source, declared_hyperparameters
from nnrag.train.datasets import DatasetUnavailableError, available, label_sources
from nnrag.train.events import Progress, TrialDeduplicated, TrialDone, TrialEpoch
from nnrag.train.executors import Executor, LocalExecutor
from nnrag.train.runstore import RunRecord, RunStore
from nnrag.train.spec import SpecError, TrainSpec
from nnrag.train.stopping import (
    STOP_NAME,
    EarlyStopError,
    StopDecision,
    Stopper,
    go_name,
    wait_list,
    write_answer,
)

logger = get_logger(__name__)

#: How often ``resume`` re-runs a trial that never finished (its engine or worker died)
#: before giving up on it as ``quarantined``: a model that kills its orchestrator must not
#: be re-run forever.
MAX_RERUNS = 2


@dataclass
class BatchReport:
    """What one ``train`` call did."""

    run_ids: list[int] = field(default_factory=list)
    trained: int = 0
    deduplicated: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(frozen=True)
class Trained:
    """A successful run, as the write-back sink gets it."""

    record: RunRecord  # as finished: outcome, best, params
    spec: TrainSpec
    code: str  # the module that was trained
    block: str | None  # the class trained, when the code is an extracted block


# How a spec's model becomes ``(module code, block class name or None)``.
Resolver = Callable[[TrainSpec], tuple[str, str | None]]
@dataclass(frozen=True)
class NotIndexed:
    """What a write-back sink returns when it kept the model out of the index, and why
    (e.g. the file is too large to index): the run is marked, nothing points at a block
    that does not exist."""

    reason: str


# Where a successful model goes; returns the qualified name it was indexed as, or why not.
OnTrained = Callable[[Trained], str | NotIndexed | None]


def local_code(spec: TrainSpec) -> tuple[str, str | None]:
    """The default resolver: inline code and files; a block reference needs a real one."""
    ref = spec.model
    if ref.code is not None:
        return ref.code, None
    if ref.file is not None:
        try:
            return Path(ref.file).read_text(encoding="utf-8"), None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"model.file: cannot read {ref.file}: {exc}") from exc
    raise SpecError(
        f"model.block {ref.block!r}: this engine has no block resolver; build it with"
        " resolver=nnrag.train.wiring.index_resolver(db) to train indexed blocks"
    )


def scratch_folder() -> Path:
    """A new folder for trials' files, removed when this process exits."""
    folder = Path(tempfile.mkdtemp(prefix="nnrag-trials-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


class Engine:
    """Runs training specs through an executor and records everything in a run store."""

    def __init__(self, runs: RunStore, executor: Executor | None = None, *,
                 resolver: Resolver | None = None, on_trained: OnTrained | None = None,
                 scratch: Path | None = None) -> None:
        self.runs = runs
        self.executor = executor or LocalExecutor(1)
        self.resolver = resolver or local_code
        self.on_trained = on_trained  # None: successful models are only recorded
        # Pooled sandbox workers are tied to the scratch folder: engines that share one (a
        # workspace's, across a tune study's trials) reuse warm workers instead of starting
        # a fresh one, with its torch import, per call. Each batch removes what it wrote.
        self._scratch_dir: Path | None = scratch
        self._hidden_paths: tuple[str, ...] | None = None

    def train(self, specs: Sequence[TrainSpec], progress: Progress | None = None, *,
              force: bool = False, stopper: Stopper | None = None) -> BatchReport:
        """Train ``specs``; a stored successful twin answers unless ``force`` (twins within
        the batch are trained once either way). ``stopper`` decides after each epoch whether
        a trial goes on (:mod:`nnrag.train.stopping`); one it stops ends ``stopped``."""
        if stopper is not None and not self.executor.supports_stop:
            raise EarlyStopError(f"early stopping needs the local executor; the "
                                 f"{type(self.executor).__name__} cannot tell a running trial "
                                 "to stop (train with --executor local or --early-stop off)")
        report = BatchReport()
        todo: list[tuple[int, TrainSpec, dict[str, Any]]] = []
        in_batch: dict[tuple[str, str], int] = {}  # (spec key, md5 or fingerprint) -> run
        twins: list[tuple[int, int, TrainSpec]] = []  # (run, first run of its kind, spec)
        for dataset in sorted({spec.dataset for spec in specs}):  # before any run is made
            ok, why = available(dataset)
            if not ok:
                raise DatasetUnavailableError(why)
        resolved = [(spec, *self._checked(spec)) for spec in specs]
        for spec, code, block in resolved:
            md5, fp = normalised_md5(code), code_fingerprint(code)
            name = spec.model.label
            adapters = None if spec.shape is None else spec.plan().adapters
            run_id = self.runs.create(name, spec.dataset, spec.model_dump(), spec.key(), md5, fp,
                                      code, adapters)
            report.run_ids.append(run_id)
            twin = None if force else self.runs.finished_twin(spec.key(), md5, fp)
            if twin is not None and twin.id != run_id:
                self._answer_from(twin.id, run_id, spec, report, progress)
                continue
            first = in_batch.get((spec.key(), md5)) or in_batch.get((spec.key(), fp))
            if first is not None:  # the same model twice in one batch: train it once
                twins.append((run_id, first, spec))
                continue
            in_batch[(spec.key(), md5)] = in_batch[(spec.key(), fp)] = run_id
            todo.append((run_id, spec, {"code": code, "block": block,
                                        "module_name": f"nnrag_model_{run_id}"}))
        self._execute(todo, report, progress, stopper)
        for run_id, first, spec in twins:
            self._answer_from(first, run_id, spec, report, progress)
        return report

    def _checked(self, spec: TrainSpec) -> tuple[str, str | None]:
        """The spec's code and block name, once its source and hyperparameters pass."""
        code, block = self.resolver(spec)
        check_source(code, block=block)
        try:
            spec.prm(frozenset() if block else declared_hyperparameters(code))
        except SpecError as exc:
            raise SpecError(f"model {spec.model.label!r}: {exc}") from None
        return code, block

    def resume(self, progress: Progress | None = None, stale_after_s: float = 60.0) -> BatchReport:
        """Re-run, with the same spec and code, every run whose engine or worker died; one
        already started more than :data:`MAX_RERUNS` times is quarantined instead."""
        report = BatchReport()
        todo = []
        for row in self.runs.orphans(stale_after_s):
            if row.attempts > MAX_RERUNS:
                self.runs.quarantine(row.id, f"its trial was started {row.attempts} times and "
                                     "never finished; not re-run again")
                report.run_ids.append(row.id)
                report.count("quarantined")
                continue
            spec = self._stored_spec(row)
            if spec is None:
                report.run_ids.append(row.id)
                report.count("error")
                continue
            self.runs.requeue(row.id)
            report.run_ids.append(row.id)
            block = spec.model.block.rsplit(".", 1)[-1] if spec.model.block else None
            todo.append((row.id, spec, {"code": row.code, "block": block,
                                        "module_name": f"nnrag_model_{row.id}"}))
        self._execute(todo, report, progress)
        return report

    def _stored_spec(self, row: RunRecord) -> TrainSpec | None:
        """The spec a stored run was made with, or None after ending the run ``error``: a
        row written by an older nnrag may hold a spec this one refuses (a seed out of
        range), and one bad row must not stop every other run from resuming."""
        try:
            return TrainSpec.model_validate(row.spec_dict)
        except (ValueError, TypeError, NnragError) as exc:  # pydantic's errors are ValueErrors
            reason = " ".join(str(exc).split())[:500]
            self.runs.finish(row.id, {"outcome": "error",
                                      "error": f"stored spec is no longer valid: {reason}"},
                             "accuracy")
            return None

    def _answer_from(self, twin_id: int, run_id: int, spec: TrainSpec, report: BatchReport,
                     progress: Progress | None) -> None:
        """Record run ``run_id`` as a duplicate of the finished run ``twin_id``: copy, count,
        tell."""
        stored = self.runs.get(twin_id)
        epochs: dict[int, dict[str, Any]] = {}
        for e in stored.epochs:
            epochs.setdefault(e.epoch, {"epoch": e.epoch})[e.metric] = e.value
        result = stored.to_dict(("outcome", "error", "traceback", "params", "flops", "duration_s",
                                 "stopped_by"))
        result["epochs"] = [epochs[k] for k in sorted(epochs)]
        result["versions"] = json.loads(stored.versions or "{}")
        self.runs.start(run_id)
        self.runs.finish(run_id, result, spec.metric, duplicate_of=twin_id)
        report.deduplicated += 1
        report.count(cast(str, stored.outcome))  # a finished run has one
        if progress:
            progress(TrialDeduplicated(run_id, spec.model.label, twin_id))

    def _execute(self, todo: list[tuple[int, TrainSpec, dict[str, Any]]], report: BatchReport,
                 progress: Progress | None, stopper: Stopper | None = None) -> None:
        if not todo:
            return
        scratch = self._scratch()
        payloads: list[dict[str, Any]] = []
        watches: dict[int, TrialWatch] = {}
        datas: dict[tuple[str, int, int | None], TrialData] = {}  # one file per data key
        for run_id, spec, extra in todo:  # the parent loads the data; the child gets inputs
            key = (spec.dataset, spec.seed, spec.limit)
            data = datas[key] = datas.get(key) or write_trial_data(spec, scratch)
            watches[run_id] = TrialWatch(run_id, spec, data)
            payloads.append({**extra, "spec": spec.model_dump(), "run_id": run_id,
                             "data": f"../{data.name}", "progress": progress_name(run_id)})
        limits = Limits(wall_s=max(s.budget.wall_s for _, s, _ in todo),
                        memory_mb=max(s.budget.memory_mb for _, s, _ in todo))
        waits: dict[int, set[int]] = {}  # run -> epochs its child waits for an answer after
        decisions: dict[int, StopDecision] = {}
        if stopper is not None:
            for (run_id, spec, _), payload in zip(todo, payloads, strict=True):
                waits[run_id] = set(wait_list(stopper, spec))
                watches[run_id].pause_after = frozenset(waits[run_id])
                payload["stop"] = {"wait": sorted(waits[run_id]), "wait_s": limits.wall_s}
        running = {run_id for run_id, _, _ in todo}
        for run_id, _, _ in todo:
            self.runs.start(run_id)

        def poll(run_id: int) -> None:
            watch = watches[run_id]
            for row in watch.poll(scratch / run_dir_name(run_id)):
                self.runs.add_epoch(run_id, int(row["epoch"]), row)
                if progress:
                    progress(TrialEpoch(run_id, int(row["epoch"]),
                                        {k: v for k, v in row.items() if k != "epoch"}))
                if int(row["epoch"]) in waits.get(run_id, ()):
                    self._answer(stopper, watch, scratch / run_dir_name(run_id), decisions)

        def tick() -> None:
            for run_id in list(running):
                poll(run_id)
            self.runs.beat(sorted(running))

        def done(i: int, result: SandboxResult) -> None:
            run_id, spec, extra = todo[i]
            tick()
            watch = watches[run_id]
            while watch.pending and watch.failure is None and watch.nan_at is None:
                poll(run_id)  # lines held back for a stop decision
            value = watches[run_id].verdict(result)
            if run_id in decisions:
                value["stopped_by"] = decisions[run_id].to_dict()
            self.runs.finish(run_id, value, spec.metric)
            running.discard(run_id)
            report.trained += 1
            report.count(value["outcome"])
            if value["outcome"] == "ok" and self.on_trained is not None:
                self._write_back(run_id, spec, extra["code"], extra["block"])
            if progress:
                progress(TrialDone(run_id, spec.model.label, value.get("outcome"),
                                   value.get("error"), value.get("duration_s"),
                                   value.get("params")))

        try:
            self.executor.run(payloads, limits, done, tick, scratch,
                              task_dirs=[run_dir_name(run_id) for run_id, _, _ in todo],
                              hide=self._hidden())
        finally:
            for run_id, _, _ in todo:
                shutil.rmtree(scratch / run_dir_name(run_id), ignore_errors=True)
            for data in datas.values():
                (scratch / data.name).unlink(missing_ok=True)

    @staticmethod
    def _answer(stopper: Stopper | None, watch: TrialWatch, run_dir: Path,
                decisions: dict[int, StopDecision]) -> None:
        """Ask the stopper about the epoch just scored and tell the waiting child. A stopper
        that fails lets the run go on: stopping early is a saving, never a reason to lose a
        run."""
        assert stopper is not None
        epoch = len(watch.scored)
        try:
            decision = stopper.decide(watch.run_id, watch.spec, list(watch.scored))
        except Exception as exc:
            logger.warning("early stopping of run %d after epoch %d failed: %s",
                           watch.run_id, epoch, exc)
            decision = None
        if decision is None:
            write_answer(run_dir, go_name(epoch))
            return
        decision = StopDecision(decision.by, epoch, decision.details)
        decisions[watch.run_id] = decision
        watch.stopped_at = epoch  # from here on the parent scores nothing more
        write_answer(run_dir, STOP_NAME, str(epoch))

    def _hidden(self) -> tuple[str, ...]:
        """Every file that holds a dataset's labels, out of every trial's sight: the child
        gets test inputs only, and must not find their labels on disk either."""
        if self._hidden_paths is None:
            self._hidden_paths = tuple(label_sources())
        return self._hidden_paths

    def _scratch(self) -> Path:
        """The engine's scratch folder (given, or made on first use)."""
        if self._scratch_dir is None:
            self._scratch_dir = scratch_folder()
        return self._scratch_dir

    def _write_back(self, run_id: int, spec: TrainSpec, code: str, block: str | None) -> None:
        """Hand the trained model to the sink; record where it was indexed."""
        assert self.on_trained is not None
        try:
            result = self.on_trained(Trained(self.runs.get(run_id), spec, code, block))
            if isinstance(result, NotIndexed):
                self.runs.mark_not_indexed(run_id, result.reason)
            elif result:
                self.runs.mark_indexed(run_id, result)
        except Exception as exc:  # write-back is a bonus: never lose the run over it
            logger.warning("write-back of run %d failed: %s", run_id, exc)
            with suppress(Exception):  # the run store itself failing: the warning says it
                self.runs.mark_not_indexed(run_id, f"write-back failed: {exc}")
