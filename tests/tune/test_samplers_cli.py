"""``nnrag tune --sampler prior|llm``, ``--workers`` and ``--executor ray`` end to end on tiny
budgets (real sandboxed trials of the corpus MLP on digits)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from nnrag.examples import CORPUS

optuna = pytest.importorskip("optuna")
MLP = Path(CORPUS) / "mlp.py"
TINY = ("--dataset", "digits", "--limit", "120", "--epochs", "1")


def fake_lemur(folder: Path, code: str) -> Path:
    """A LEMUR export holding one model (``code``) with three recorded mnist trials."""
    folder.mkdir()
    with gzip.open(folder / "models.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"model": "TinyMLP-1", "code": code}) + "\n")
    rows = [("a", 0.02, 0.9, 64, 0.1, 0.97), ("b", 0.05, 0.5, 16, 0.3, 0.80),
            ("c", 0.3, 0.0, 32, 0.0, 0.11)]  # c: at chance, never copied
    with gzip.open(folder / "stats.jsonl.gz", "wt") as fh:
        for uid, lr, mom, batch, drop, acc in rows:
            for epoch in (1, 2):
                fh.write(json.dumps({"task": "img-classification", "dataset": "mnist",
                                     "metric": "acc", "model": "TinyMLP-1", "uid": uid,
                                     "epoch": epoch, "accuracy": acc - 0.01 * (2 - epoch),
                                     "lr": lr, "momentum": mom, "batch": batch,
                                     "dropout": drop, "transform": "norm_28"}) + "\n")
    return folder


def trials_of(storage: str, name: str) -> list:  # noqa: ANN401 - Optuna's FrozenTrial
    return optuna.load_study(study_name=name, storage=storage).trials


def test_prior_from_lemur_then_from_the_run_store(cli, nnrag_home: Path,  # noqa: ANN001
                                                  tmp_path: Path) -> None:
    lemur = fake_lemur(tmp_path / "lemur", MLP.read_text())
    r = cli("tune", MLP, *TINY, "--trials", "3", "--sampler", "prior", "--lemur", lemur,
            "--seed", "1", "--study", "p1", "--format", "json", timeout=400)
    assert r.returncode == 0, r.stderr
    storage = json.loads(r.stdout)["storage"]
    trials = trials_of(storage, "p1")
    first, second, third = trials
    # the best record first, adapted: 120 samples -> batch <= 15 -> 16, lr x 16/64
    assert first.params["batch_size"] == 16
    assert first.params["lr"] == pytest.approx(0.02 * 16 / 64)
    assert first.params["momentum"] == pytest.approx(0.9)
    assert first.params["dropout"] == pytest.approx(0.1)
    prov = json.loads(first.user_attrs["nnrag_provenance"])
    assert first.user_attrs["nnrag_source"] == "prior"
    assert prov["source"] == "lemur" and prov["model"] == "TinyMLP-1"
    assert prov["similarity"] == 1.0 and prov["dataset"] == "mnist"
    assert second.user_attrs["nnrag_source"] == "prior"
    assert second.params["lr"] == pytest.approx(0.05)  # batch 16 fits: not scaled
    assert third.user_attrs["nnrag_source"] == "tpe"  # the record at chance is not copied
    assert list((nnrag_home / "cache").glob("tune-prior-lemur-*.json.gz"))  # cached

    # a second model-alike study with only the run store: its best ok run comes first
    best_run = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    r = cli("tune", MLP, *TINY, "--trials", "1", "--sampler", "prior", "--seed", "2",
            "--study", "p2", "--format", "json", timeout=300)
    assert r.returncode == 0, r.stderr
    (only,) = trials_of(storage, "p2")
    prov = json.loads(only.user_attrs["nnrag_provenance"])
    assert prov["source"] == "runs" and prov["record"] == f"run {best_run.user_attrs['run']}"
    assert only.params == pytest.approx(best_run.params)


def test_prior_without_records_warns_and_a_bad_lemur_dir_exits_2(  # noqa: ANN001
        cli, tmp_path: Path) -> None:
    r = cli("tune", MLP, *TINY, "--trials", "1", "--sampler", "prior", "--study", "none",
            timeout=300)
    assert r.returncode == 0, r.stderr
    assert "warning: prior: no model similar to this one" in r.stderr
    assert "plain TPE" in r.stderr

    for bad in (tmp_path / "missing", tmp_path / "empty"):
        if bad.name == "empty":
            bad.mkdir()
        r = cli("tune", MLP, *TINY, "--trials", "1", "--sampler", "prior", "--lemur", bad)
        assert r.returncode == 2, r.stderr
        assert "cannot read LEMUR records" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "trial " not in r.stderr

    r = cli("tune", MLP, *TINY, "--trials", "1", "--sampler", "nope")
    assert r.returncode == 2 and "unknown sampler 'nope'" in r.stderr and "prior" in r.stderr


def test_llm_sampler_with_replayed_answers(cli, tmp_path: Path) -> None:  # noqa: ANN001
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([
        'Try this:\n```json\n{"lr": 0.03, "momentum": 0.8, "batch_size": 32}\n```',
        '```json\n{"lr": 7.0}\n```',  # out of range: TPE's suggestion instead
    ]))
    r = cli("tune", MLP, *TINY, "--trials", "2", "--sampler", "llm", "--backend", "replay",
            "--llm-model", answers, "--study", "l1", "--seed", "0", "--format", "json",
            timeout=300)
    assert r.returncode == 0, r.stderr
    storage = json.loads(r.stdout)["storage"]
    first, second = trials_of(storage, "l1")
    assert first.user_attrs["nnrag_source"] == "llm"
    assert first.params["lr"] == 0.03 and first.params["batch_size"] == 32
    assert second.user_attrs["nnrag_source"] == "tpe-fallback"
    assert second.params["lr"] != 7.0
    study = optuna.load_study(study_name="l1", storage=storage)
    assert study.user_attrs["nnrag_llm_proposals"] == 2
    assert study.user_attrs["nnrag_llm_fallbacks"] == 1
    shown = json.loads(cli("tune", "--show", "l1", "--format", "json").stdout)
    assert [t["source"] for t in shown["trials"]] == ["llm", "tpe-fallback"]


def test_workers_train_a_batch_at_once(cli) -> None:  # noqa: ANN001
    r = cli("tune", MLP, *TINY, "--trials", "3", "--workers", "2", "--sampler", "random",
            "--seed", "4", "--study", "w2", "--format", "json", timeout=400)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["n_trials"] == 3 and len(data["trials"]) == 3
    trials = trials_of(data["storage"], "w2")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["run"] for t in trials}) == 3


def test_ray_executor_runs_the_trials(cli) -> None:  # noqa: ANN001
    """Ray on one local CPU (about 40 s here, Ray's start included)."""
    pytest.importorskip("ray")
    start = time.monotonic()
    r = cli("tune", MLP, *TINY, "--trials", "2", "--executor", "ray", "--workers", "1",
            "--sampler", "random", "--seed", "5", "--study", "ray", "--format", "json",
            timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["n_trials"] == 2 and data["best_value"] is not None
    assert time.monotonic() - start < 600
