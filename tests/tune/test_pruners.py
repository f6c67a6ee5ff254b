"""Pruners in ``nnrag tune``: Optuna's MedianPruner and HyperbandPruner and the predictor,
through the engine's stop channel; a pruned trial is PRUNED in Optuna and ``stopped`` in the
run store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nnrag.examples import CORPUS
from nnrag.exceptions import TuneError
from nnrag.train.spec import TrainSpec, parse_spec
from nnrag.train.stopping import StopDecision, Stopper
from nnrag.tune.pruners import OptunaStopper, make_pruner, trial_stopper
from nnrag.tune.space import parse_space
from nnrag.tune.study import run_study
from nnrag.workspace import open_workspace

optuna = pytest.importorskip("optuna")
MLP = Path(CORPUS) / "mlp.py"
BASE = {"model": {"file": str(MLP)}, "dataset": "digits", "limit": 120,
        "budget": {"epochs": 3}}


class Record:
    """What ``train`` hands back to the study: the run's id, outcome, best, error."""

    def __init__(self, outcome: str, best: float | None) -> None:
        self.id, self.outcome, self.best, self.error, self.status = 1, outcome, best, None, "done"


def fake_train(curves: list[list[float]]) -> Any:
    """A ``train`` that plays each curve in turn through the stopper, as the engine does."""
    queue = list(curves)

    def train(spec_dict: dict[str, Any], stopper: Stopper | None) -> tuple[Record, list]:
        spec = parse_spec(spec_dict)
        rows: list[dict[str, float]] = []
        for epoch, value in enumerate(queue.pop(0), 1):
            rows.append({"epoch": epoch, "accuracy": value})
            if stopper is not None and epoch < spec.budget.epochs and \
                    stopper.decide(1, spec, rows) is not None:
                return Record("stopped", max(r["accuracy"] for r in rows)), \
                    [(int(r["epoch"]), r["accuracy"]) for r in rows]
        return Record("ok", max(r["accuracy"] for r in rows)), \
            [(int(r["epoch"]), r["accuracy"]) for r in rows]

    return train


def study_of(url: str, pruner: str, curves: list[list[float]],
             predicted: Stopper | None = None) -> Any:
    space = parse_space({"lr": {"low": 1e-3, "high": 0.1, "log": True}}, None)
    result = run_study(name="s", url=url, base=BASE, space=space, trials=len(curves),
                       sampler="random", seed=0, train=fake_train(curves), pruner=pruner,
                       predicted=predicted)
    return result, optuna.load_study(study_name="s", storage=url)


def test_median_prunes_a_trial_below_the_median_after_its_startup(tmp_path: Path) -> None:
    good = [0.8, 0.85, 0.9]
    result, study = study_of(f"sqlite:///{tmp_path / 't.db'}", "median",
                             [good, good, good, [0.1, 0.2, 0.3], [0.8, 0.86, 0.95]])
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 3 + ["PRUNED", "COMPLETE"]
    pruned = study.trials[3]
    assert pruned.intermediate_values == {1: 0.1}  # reported once, stopped after epoch 1
    assert pruned.user_attrs["outcome"] == "stopped"
    assert [t.outcome for t in result.trials][3] == "stopped"
    assert result.best_value == pytest.approx(0.95)
    assert study.trials[4].intermediate_values == {1: 0.8, 2: 0.86, 3: 0.95}


def test_no_pruner_never_stops(tmp_path: Path) -> None:
    curves = [[0.8, 0.9, 0.9]] * 3 + [[0.1, 0.1, 0.1]]
    _, study = study_of(f"sqlite:///{tmp_path / 't.db'}", "none", curves)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4


def test_hyperband_is_optunas_with_epochs_as_steps(tmp_path: Path) -> None:
    pruner = make_pruner("hyperband", 5)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("predicted", 5), optuna.pruners.NopPruner)
    _, study = study_of(f"sqlite:///{tmp_path / 't.db'}", "hyperband",
                        [[0.5, 0.6, 0.7]] * 4 + [[0.01, 0.01, 0.01]] * 4)
    states = {t.state.name for t in study.trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states


def test_predicted_uses_the_injected_stopper(tmp_path: Path) -> None:
    class Below(Stopper):
        def decide(self, run_id: int, spec: TrainSpec,
                   epochs: Sequence[dict[str, float]]) -> StopDecision | None:
            return StopDecision("predicted", 0) if epochs[-1]["accuracy"] < 0.5 else None

    _, study = study_of(f"sqlite:///{tmp_path / 't.db'}", "predicted",
                        [[0.6, 0.7, 0.8], [0.2, 0.3, 0.4]], predicted=Below())
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.trials[1].intermediate_values == {1: 0.2}
    with pytest.raises(TuneError, match="predictor"):
        trial_stopper("predicted", None, None)
    with pytest.raises(TuneError, match="unknown pruner"):
        make_pruner("asha", 3)


def test_optuna_stopper_skips_non_finite_values() -> None:
    class Trial:
        number = 0

        def report(self, value: float, step: int) -> None:
            raise AssertionError("must not report")

    spec = parse_spec(BASE)
    assert OptunaStopper(Trial(), "median").decide(1, spec, [{"epoch": 1,
                                                                "accuracy": float("nan")}]) is None


@pytest.mark.sandbox
def test_a_real_trial_pruned_by_median_is_stopped_in_the_run_store(nnrag_home: Path) -> None:
    ws = open_workspace(nnrag_home)
    kw: dict[str, Any] = {"dataset": "digits", "sampler": "random", "limit": 120,
                          "epochs": 3, "study": "m",
                          "space": {"lr": {"low": 1e-5, "high": 2e-5, "log": True}}}
    first = ws.tune(str(MLP), trials=1, seed=0, **kw)
    study = optuna.load_study(study_name="m", storage=first.storage)
    done = study.trials[0]
    for _ in range(3):  # three finished trials far above anything lr=1e-5 reaches
        study.add_trial(optuna.trial.create_trial(
            params=done.params, distributions=done.distributions, value=0.99,
            intermediate_values={1: 0.99, 2: 0.99, 3: 0.99}))
    seen: list[Any] = []
    ws.tune(str(MLP), trials=1, pruner="median", progress=seen.append, seed=1, **kw)
    trial = optuna.load_study(study_name="m", storage=first.storage).trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values.keys() == {1}
    run = ws.run_store().get(trial.user_attrs["run"])
    assert run.outcome == "stopped" and {e.epoch for e in run.epochs} == {1}
    assert json.loads(run.stopped_by or "{}")["by"] == "median"
    assert seen[-1].outcome == "stopped"


@pytest.mark.sandbox
def test_cli_pruner_options(cli, tmp_path: Path) -> None:  # noqa: ANN001
    r = cli("tune", MLP, "--trials", "1", "--pruner", "predicted")
    assert r.returncode == 2 and "needs a fitted predictor" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1 and "trial " not in r.stderr
    r = cli("tune", MLP, "--trials", "1", "--pruner", "asha")
    assert r.returncode == 2 and "asha" in r.stderr
    r = cli("tune", MLP, "--dataset", "digits", "--limit", "120", "--epochs", "2", "--trials",
            "2", "--pruner", "hyperband", "--seed", "1", "--format", "json", timeout=300)
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["n_trials"] == 2


def test_a_pruner_with_batched_trials_is_refused_before_the_study_opens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    space = parse_space({"lr": {"low": 0.001, "high": 0.1, "log": True}}, None)
    with pytest.raises(TuneError, match="one at a time"):
        run_study(name="s", url=url, base=BASE, space=space, trials=2, sampler="random",
                  seed=0, train=fake_train([[0.5]]), pruner="median",
                  train_many=lambda specs: [])
    assert not (tmp_path / "tune.db").exists()
