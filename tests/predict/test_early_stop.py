"""Predicted early stopping: a tiny fitted predictor stops a trial that cannot win, never
the first trial of a dataset nor one that can; the CLI's ``--early-stop predicted``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nnrag.examples import CORPUS
from nnrag.predict import PredictedStopper, Prediction, Predictor, read_lemur
from nnrag.train.runstore import RunStore
from nnrag.train.spec import TrainSpec, parse_spec
from nnrag.train.stopping import EarlyStopError
from nnrag.workspace import open_workspace

from ._lemur import write_lemur

MLP = CORPUS / "mlp.py"


def mlp_spec(lr: float = 0.05, epochs: int = 3, name: str = "mlp") -> dict[str, object]:
    return {"model": {"file": str(MLP), "name": name}, "dataset": "digits", "limit": 200,
            "budget": {"epochs": epochs, "wall_s": 60, "memory_mb": 2048},
            "hyperparameters": {"lr": lr, "momentum": 0.9}}


@pytest.fixture(scope="module")
def predictor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lemur")
    write_lemur(folder)
    return Predictor().fit(read_lemur(folder).trials).save(folder / "predictor.json")


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


def finished(runs: RunStore, best: float, *, limit: int | None = 200,
             outcome: str = "ok") -> int:
    """A finished run on digits whose best is ``best`` (the reference a trial must beat)."""
    spec = parse_spec({**mlp_spec(), "limit": limit})
    run = runs.create("ref", "digits", spec.model_dump(), spec.key(), "md5", "fp", "code")
    runs.start(run)
    runs.finish(run, {"outcome": outcome, "epochs": [{"epoch": 1, "accuracy": best}]},
                "accuracy")
    return run


class Fixed(Predictor):
    """A predictor that always answers the same interval."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.answer = Prediction((low + high) / 2, low, high, 1)

    def predict(self, *args: object, **kwargs: object) -> Prediction:  # type: ignore[override]
        return self.answer


def stopper_case(tmp_path: Path, high: float) -> tuple[PredictedStopper, RunStore, int,
                                                       TrainSpec]:
    runs = RunStore(tmp_path / "runs.db")
    spec = parse_spec(mlp_spec())
    run = runs.create("m", "digits", spec.model_dump(), spec.key(), "a", "b", MLP.read_text())
    return PredictedStopper(Fixed(0.1, high), runs, after=2), runs, run, spec


def test_stops_only_below_the_best_finished_run_of_the_same_dataset_and_limit(
        tmp_path: Path) -> None:
    stopper, runs, run, spec = stopper_case(tmp_path, high=0.5)
    rows = [{"epoch": 1, "accuracy": 0.3}]
    assert stopper.decide(run, spec, rows) is None  # the first trial: nothing to beat
    finished(runs, 0.9, outcome="stopped")
    finished(runs, 0.9, limit=None)  # full-size runs do not compare with limit 200
    assert stopper.decide(run, spec, rows) is None
    ref = finished(runs, 0.6)
    decision = stopper.decide(run, spec, rows)
    assert decision is not None and decision.by == "predicted" and decision.epoch == 1
    assert decision.details["high"] == 0.5 and decision.details["reference_run"] == ref
    assert decision.details["reference_best"] == 0.6 and decision.details["best_so_far"] == 0.3
    finished(runs, 0.5)  # equal to high: it might still tie, so it goes on
    assert stopper.decide(run, spec, rows) is not None  # the best reference (0.6) counts
    assert stopper.decide(run, spec, rows * 3) is None  # past --early-stop-after
    assert stopper.wait_epochs(spec) == (1, 2)


def test_a_trial_that_may_still_win_goes_on(tmp_path: Path) -> None:
    stopper, runs, run, spec = stopper_case(tmp_path, high=0.8)
    finished(runs, 0.8)
    assert stopper.decide(run, spec, [{"epoch": 1, "accuracy": 0.3}]) is None


def test_after_and_a_missing_predictor_are_one_line_errors(tmp_path: Path) -> None:
    runs = RunStore(tmp_path / "runs.db")
    with pytest.raises(EarlyStopError, match="between 1 and 2"):
        PredictedStopper(Fixed(0, 1), runs, after=3)
    with pytest.raises(EarlyStopError, match="needs a fitted predictor.*nnrag predict fit"):
        PredictedStopper.load(tmp_path / "none.json", runs)


@pytest.mark.sandbox
def test_the_corpus_mlp_is_stopped_only_when_it_cannot_win(tmp_path: Path,
                                                           predictor_file: Path) -> None:
    ws = open_workspace(tmp_path / "home")
    first = ws.train(mlp_spec(lr=0.05), early_stop="predicted", predictor=predictor_file)
    assert first.outcomes == {"ok": 1}  # the first trial of a dataset is never stopped
    runs = ws.run_store()
    best = runs.get(first.run_ids[0]).best
    assert best is not None
    # A trial of a weak setting, against a best it cannot reach: stopped after epoch 1.
    finished(runs, 1.0)
    low = ws.train(mlp_spec(lr=1e-5, name="slow"), early_stop="predicted",
                   predictor=predictor_file, early_stop_after=1)
    run = runs.get(low.run_ids[0])
    assert run.outcome == "stopped", run.to_dict(("outcome", "error", "best"))
    stop = json.loads(run.stopped_by or "{}")
    assert stop["by"] == "predicted" and stop["epoch"] == 1 and stop["high"] < 1.0
    assert {e.epoch for e in run.epochs} == {1} and run.best == stop["best_so_far"]
    # The same spec without stopping trains again (a stopped run answers no twin) ...
    again = ws.train(mlp_spec(lr=1e-5, name="slow"))
    assert (again.trained, again.outcomes) == (1, {"ok": 1})
    # ... and a trial that can beat its reference is never stopped.
    runs.close()


@pytest.mark.sandbox
def test_a_trial_that_can_win_runs_to_the_end(tmp_path: Path, predictor_file: Path) -> None:
    ws = open_workspace(tmp_path / "home")
    finished(ws.run_store(), 0.05)  # below chance: any curve so far already beats it
    report = ws.train(mlp_spec(lr=1e-5), early_stop="predicted", predictor=predictor_file)
    assert report.outcomes == {"ok": 1}


@pytest.mark.sandbox
def test_cli_early_stop(cli, tmp_path: Path, nnrag_home: Path,  # noqa: ANN001
                        predictor_file: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(mlp_spec(epochs=2)))
    missing = cli("train", spec, "--early-stop", "predicted")
    assert missing.returncode == 2, missing
    assert "needs a fitted predictor" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr
    ok = cli("train", spec, "--early-stop", "predicted", "--predictor", predictor_file,
             "--format", "json")
    assert ok.returncode == 0, ok
    assert json.loads(ok.stdout)["outcomes"] == {"ok": 1}
    bad = cli("train", spec, "--early-stop", "predicted", "--early-stop-after", "3")
    assert bad.returncode == 2 and "--early-stop-after" in bad.stderr
    # a weak trial against a best it cannot reach: stopped, and that is not a failure
    finished(RunStore(nnrag_home / "runs.db"), 1.0)
    spec.write_text(json.dumps(mlp_spec(lr=1e-5, epochs=2, name="slow")))
    stop = cli("train", spec, "--early-stop", "predicted", "--early-stop-after", "1",
               "--predictor", predictor_file, "--format", "json")
    assert stop.returncode == 0, stop
    data = json.loads(stop.stdout)
    assert data["outcomes"] == {"stopped": 1}
    assert data["runs"][0]["stopped_by"]["by"] == "predicted"
    listing = cli("runs")
    assert "stopped after epoch 1 by predicted: high" in listing.stdout
