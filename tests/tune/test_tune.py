"""``nnrag tune`` end to end on tiny budgets: real sandboxed trials of the corpus MLP on
digits, a study that resumes, Optuna's own API reading the storage, failed trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnrag.examples import CORPUS
from nnrag.workspace import open_workspace

optuna = pytest.importorskip("optuna")
MLP = Path(CORPUS) / "mlp.py"
TINY = ("--dataset", "digits", "--limit", "120", "--epochs", "1")


def test_study_runs_resumes_and_opens_in_optuna(cli, nnrag_home: Path,  # noqa: ANN001
                                                 tmp_path: Path) -> None:
    r = cli("tune", MLP, *TINY, "--trials", "2", "--sampler", "random", "--seed", "3",
            "--study", "s1", "--format", "json", timeout=300)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["study"] == "s1" and first["n_trials"] == 2
    assert first["storage"] == f"sqlite:///{nnrag_home / 'tune.db'}"
    assert set(first["best_params"]) == {"lr", "momentum", "batch_size", "dropout",
                                         "optimizer", "scheduler", "transform"}
    assert 0.0 <= first["best_value"] <= 1.0
    best = dict(first["best_params"])
    assert first["spec"]["transform"] == best.pop("transform")  # a spec field, not an hp
    assert first["spec"]["hyperparameters"] == best
    assert r.stderr.count("trial ") == 2  # progress per trial, on stderr

    # a killed or finished study resumes: trials accumulate
    r = cli("tune", MLP, *TINY, "--trials", "1", "--sampler", "random", "--seed", "3",
            "--study", "s1", "--format", "json", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_trials"] == 3

    study = optuna.load_study(study_name="s1", storage=first["storage"])
    assert len(study.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(t.user_attrs["outcome"] == "ok" and t.user_attrs["run"] for t in study.trials)
    assert all(t.intermediate_values for t in study.trials)  # per-epoch reports
    assert study.best_value == pytest.approx(max(t.value for t in study.trials))

    # every trial is a run in the run store
    runs = {row.id for row in open_workspace(nnrag_home).run_store(readonly=True).runs(50)}
    assert {t.user_attrs["run"] for t in study.trials} <= runs

    # the returned spec trains as it is
    spec = tmp_path / "best.json"
    spec.write_text(json.dumps(first["spec"]))
    assert cli("train", spec, "--format", "json", timeout=300).returncode == 0

    listed = cli("tune", "--list", "--format", "json")
    assert [s["study"] for s in json.loads(listed.stdout)] == ["s1"]

    # the same name with another space is refused, nothing lost
    other = tmp_path / "space.yaml"
    other.write_text("lr: {low: 0.01, high: 0.02}\n")
    r = cli("tune", MLP, *TINY, "--trials", "1", "--study", "s1", "--space", other)
    assert r.returncode == 2 and "another search space" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert len(optuna.load_study(study_name="s1", storage=first["storage"]).trials) == 3


def test_a_failing_trial_is_a_failed_optuna_trial(nnrag_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(MLP.read_text().replace("self.to(self.device)",
                                           "raise RuntimeError('boom in setup')"))
    ws = open_workspace(nnrag_home)
    seen = []
    result = ws.tune(str(bad), dataset="digits", trials=2, sampler="random", seed=0,
                     limit=120, study="bad", progress=seen.append)
    assert result.n_trials == 2 and result.best_value is None and result.spec is None
    assert [t.outcome for t in seen] == ["error", "error"]
    study = optuna.load_study(study_name="bad", storage=result.storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all(t.user_attrs["outcome"] == "error" and "boom" in t.user_attrs["error"]
               for t in study.trials)


@pytest.mark.parametrize(("args", "words"), [
    (("--sampler", "cmaes"), "unknown sampler"),
    (("--space", "SPACE"), "greater than high"),
    (("--storage", "nosuchdb://x/y"), "cannot open the study storage"),
    (("--dataset", "no-such-dataset"), "dataset"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path: Path, args: tuple[str, ...],  # noqa: ANN001
                                      words: str) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("momentum: {low: 0.9, high: 0.1}\n")
    args = tuple(str(space) if a == "SPACE" else a for a in args)
    r = cli("tune", MLP, "--trials", "1", *args)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "trial " not in r.stderr  # nothing ran


def test_unknown_block_and_a_model_that_always_fails_exit_2(cli, tmp_path: Path) -> None:  # noqa: ANN001
    r = cli("tune", "NoSuchBlock", "--trials", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "trial " not in r.stderr

    bad = tmp_path / "bad.py"
    bad.write_text(MLP.read_text().replace("self.to(self.device)",
                                           "raise RuntimeError('boom in setup')"))
    r = cli("tune", bad, *TINY, "--trials", "1", "--study", "b")
    assert r.returncode == 2, r
    last = r.stderr.strip().splitlines()[-1]
    assert "no trial of study 'b' ended ok" in last and "boom" in last


def test_show_reads_one_study(cli, nnrag_home: Path) -> None:  # noqa: ANN001
    url = f"sqlite:///{nnrag_home / 'tune.db'}"
    study = optuna.create_study(study_name="made", storage=url, direction="maximize")
    study.enqueue_trial({"lr": 0.01})
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)})
    trial.report(0.5, 1)
    trial.set_user_attr("outcome", "ok")
    study.tell(trial, 0.5)
    r = cli("tune", "--show", "made", "--format", "json")
    assert r.returncode == 0, r
    data = json.loads(r.stdout)
    assert data["n_trials"] == 1 and data["best_value"] == 0.5
    assert data["trials"][0] == {"number": 0, "state": "COMPLETE", "value": 0.5,
                                 "params": {"lr": 0.01}, "run": None, "outcome": "ok",
                                 "error": None, "source": None, "epochs": {"1": 0.5}}
    r = cli("tune", "--show", "missing")
    assert r.returncode == 2 and "no study 'missing'" in r.stderr and "made" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
