"""Early stopping through the engine: the stop channel into a sandboxed trial, outcome
``stopped``, dedup and write-back of stopped runs, and a child that disobeys."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from nnrag.train.engine import Engine
from nnrag.train.executors import Executor, LocalExecutor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import TrainSpec, parse_spec
from nnrag.train.stopping import EarlyStopError, StopDecision, Stopper, wait_list
from nnrag.train.wiring import indexed_engine
from tests.train.test_engine import GOOD

pytestmark = pytest.mark.sandbox

# A model whose module, run in the child, rewires the harness: the child is untrusted.
IGNORES_STOP = GOOD + '''
import nnrag.train._trial as _harness
_harness._told_to_stop = lambda epoch, wait_s: False
'''
STOPS_ITSELF = GOOD + '''
import nnrag.train._trial as _harness
_harness._told_to_stop = lambda epoch, wait_s: True
'''


def spec(code: str = GOOD, epochs: int = 3, **kw: object) -> TrainSpec:
    data = {"model": {"code": code, "name": kw.pop("name", "m")}, "dataset": "digits",
            "budget": {"epochs": epochs, "wall_s": 30, "memory_mb": 1024}, "limit": 200,
            "hyperparameters": {"lr": 0.1}}
    data.update(kw)
    return parse_spec(data)


class After(Stopper):
    """Stops every run after epoch ``k`` (never, with k=None); records what it was asked."""

    def __init__(self, k: int | None) -> None:
        self.k = k
        self.asked: list[tuple[int, int]] = []

    def decide(self, run_id: int, spec: TrainSpec,
               epochs: Sequence[dict[str, float]]) -> StopDecision | None:
        self.asked.append((run_id, len(epochs)))
        if self.k is not None and len(epochs) == self.k:
            return StopDecision("test", 0, {"seen": epochs[-1]["accuracy"]})
        return None


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return indexed_engine(RunStore(tmp_path / "runs.db"), LocalExecutor(1), tmp_path / "index.db")


def test_a_stop_ends_the_trial_exactly_after_epoch_k(engine: Engine) -> None:
    stopper = After(1)
    report = engine.train([spec()], stopper=stopper)
    run = engine.runs.get(report.run_ids[0])
    assert report.outcomes == {"stopped": 1}
    assert run.outcome == "stopped" and run.error is None
    assert {e.epoch for e in run.epochs} == {1}
    accuracy = next(e.value for e in run.epochs if e.metric == "accuracy")
    assert run.best == accuracy
    stopped = run.to_dict()["stopped_by"]
    assert stopped == {"by": "test", "epoch": 1, "seen": accuracy}
    assert stopper.asked == [(run.id, 1)]
    assert run.indexed_as is None and run.not_indexed is None  # never written back
    assert engine.resume(stale_after_s=0).run_ids == []  # a stopped run is done, not orphaned


def test_a_stopper_that_lets_go_changes_nothing(engine: Engine) -> None:
    stopper = After(None)
    report = engine.train([spec()], stopper=stopper)
    run = engine.runs.get(report.run_ids[0])
    assert run.outcome == "ok" and run.stopped_by is None
    assert {e.epoch for e in run.epochs} == {1, 2, 3}
    assert [k for _, k in stopper.asked] == [1, 2]  # never asked about the last epoch
    assert run.indexed_as is not None


def test_a_stopped_run_never_answers_a_twin(engine: Engine) -> None:
    first = engine.train([spec()], stopper=After(1))
    again = engine.train([spec()])
    run = engine.runs.get(again.run_ids[0])
    assert (again.trained, again.deduplicated) == (1, 0)
    assert run.duplicate_of is None and run.outcome == "ok"
    assert engine.runs.best_finished("digits", 200).id == run.id  # type: ignore[union-attr]
    third = engine.train([spec()], stopper=After(1))  # now the ok run answers, unstopped
    assert third.deduplicated == 1
    assert engine.runs.get(third.run_ids[0]).duplicate_of == run.id
    assert first.run_ids[0] != run.id


def test_a_twin_in_the_same_batch_is_recorded_stopped_too(engine: Engine) -> None:
    report = engine.train([spec(), spec(name="again")], stopper=After(2))
    runs = [engine.runs.get(i) for i in report.run_ids]
    assert [r.outcome for r in runs] == ["stopped", "stopped"]
    assert runs[1].duplicate_of == runs[0].id
    assert json.loads(runs[1].stopped_by or "{}")["epoch"] == 2


def test_a_child_that_ignores_the_stop_is_an_error(engine: Engine) -> None:
    report = engine.train([spec(IGNORES_STOP)], stopper=After(1))
    run = engine.runs.get(report.run_ids[0])
    assert run.outcome == "error"
    assert "after being stopped after epoch 1" in (run.error or "")
    assert {e.epoch for e in run.epochs} == {1}  # nothing scored past the stop
    assert json.loads(run.stopped_by or "{}")["epoch"] == 1


def test_a_child_that_stops_on_its_own_is_an_error(engine: Engine) -> None:
    report = engine.train([spec(STOPS_ITSELF)], stopper=After(None))
    run = engine.runs.get(report.run_ids[0])
    assert run.outcome == "error" and "without being told" in (run.error or "")


def test_without_a_stopper_the_child_never_waits(engine: Engine) -> None:
    report = engine.train([spec(STOPS_ITSELF)])  # its patched wait is never called
    assert report.outcomes == {"ok": 1}


def test_an_executor_without_the_channel_is_refused(tmp_path: Path) -> None:
    class Remote(Executor):
        def run(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("must not run")

    engine = Engine(RunStore(tmp_path / "runs.db"), Remote())
    with pytest.raises(EarlyStopError, match="local executor"):
        engine.train([spec()], stopper=After(1))
    assert engine.runs.runs() == []


def test_wait_list_skips_the_last_epoch() -> None:
    class Early(After):
        def wait_epochs(self, spec: TrainSpec) -> tuple[int, ...]:
            return (1, 2, 5)

    assert wait_list(After(None), spec(epochs=4)) == [1, 2, 3]
    assert wait_list(Early(None), spec(epochs=2)) == [1]


def test_runs_and_show_say_why_a_run_stopped(engine: Engine, cli) -> None:  # noqa: ANN001
    report = engine.train([spec()], stopper=After(2))
    path = engine.runs.path
    listing = cli("runs", "--runs", path)
    assert listing.returncode == 0, listing
    assert "stopped" in listing.stdout and "stopped after epoch 2 by test" in listing.stdout
    rows = json.loads(cli("runs", "--runs", path, "--format", "json").stdout)
    assert rows[0]["outcome"] == "stopped" and rows[0]["stopped_by"]["epoch"] == 2
    shown = cli("show", str(report.run_ids[0]), "--runs", path)
    assert "stopped_by" in shown.stdout and '"by": "test"' in shown.stdout
