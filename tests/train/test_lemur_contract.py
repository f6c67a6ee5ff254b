"""What LEMUR models rely on: train mode in ``learn``, every declared hyperparameter filled,
the user's data roots, fresh runs after failures, bounded evaluation (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from nnrag.cli import main
from nnrag.index import code_fingerprint, normalised_md5
from nnrag.train import datasets as D
from nnrag.train._scoring import write_trial_data
from nnrag.train.contract import declared_hyperparameters
from nnrag.train.engine import Engine
from nnrag.train.executors import LocalExecutor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import DECLARED_DEFAULTS, SpecError, TrainSpec, parse_spec
from tests.train.test_datasets import write_mnist_like

pytestmark = pytest.mark.sandbox

#: A LEMUR-style model: declares ``dropout_aux``, reads LEMUR's ``batch`` and ``transform``,
#: never calls ``self.train()`` itself, and refuses to learn in eval mode. ``EXPECTED`` is
#: replaced by the ``(dropout_aux, batch, transform)`` it must be given.
LEMUR = '''
import torch
from torch import nn


def supported_hyperparameters():
    """LEMUR's form: a literal set, after a docstring."""
    return {"lr", "momentum", "dropout", "dropout_aux"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        seen = (prm["dropout_aux"], prm["batch"], prm["transform"])
        if seen != EXPECTED:
            raise ValueError(f"prm gave {seen}, expected {EXPECTED}")
        self.drop = nn.Dropout(prm["dropout"])
        self.fc = nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], out_shape[0])

    def forward(self, x):
        return self.fc(self.drop(x.flatten(1)))

    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        if not self.training:
            raise RuntimeError("learn() entered in eval mode")
        for x, y in train_data:
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(x.to(self.device)), y.to(self.device))
            loss.backward()
            self.optimizer.step()
'''


def lemur(expected: tuple[Any, ...], declares: str | None = None) -> str:
    code = LEMUR.replace("EXPECTED", repr(expected))
    if declares is not None:
        code = code.replace('{"lr", "momentum", "dropout", "dropout_aux"}', declares)
    return code


def spec(code: str, hp: dict[str, Any] | None = None, **kw: Any) -> TrainSpec:
    data: dict[str, Any] = {"model": {"code": code, "name": "lemur"}, "dataset": "digits",
                            "budget": {"epochs": 1, "wall_s": 20, "memory_mb": 1024},
                            "limit": 200, "hyperparameters": {"lr": 0.1, **(hp or {})}}
    data.update(kw)
    return parse_spec(data)


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(RunStore(tmp_path / "runs.db"), LocalExecutor(1))


# --- C1: learn() runs in train mode, every epoch --------------------------------------


def test_learn_is_entered_in_train_mode_every_epoch(engine: Engine) -> None:
    s = spec(lemur((0.2, 64, "none")), budget={"epochs": 3, "wall_s": 30, "memory_mb": 1024})
    run = engine.runs.get(engine.train([s]).run_ids[0])
    assert run.outcome == "ok", run.error
    assert {e.epoch for e in run.epochs} == {1, 2, 3}  # evaluated in between, eval mode each
    assert json.loads(run.versions or "{}")["device"] == "cpu"  # no GPU on the test machine


# --- C2: declared hyperparameters are filled, accepted at the top level, aliased -------


def test_declared_names_reach_the_model(engine: Engine) -> None:
    given = spec(lemur((0.3, 32, "standardize")), {"dropout_aux": 0.3, "batch_size": 32},
                 transform="standardize")
    default = spec(lemur((DECLARED_DEFAULTS["dropout_aux"], 64, "none")))
    report = engine.train([given, default])
    for run_id in report.run_ids:
        assert engine.runs.get(run_id).outcome == "ok", engine.runs.get(run_id).error


def test_prm_fills_checks_and_aliases() -> None:
    s = spec(lemur(()), {"dropout_aux": 0.5}, transform="flip")
    prm = s.prm({"lr", "dropout_aux", "norm_eps"})
    assert (prm["dropout_aux"], prm["norm_eps"], prm["lr"]) == (0.5, 1e-5, 0.1)
    assert (prm["batch"], prm["batch_size"], prm["transform"]) == (64, 64, "flip")
    with pytest.raises(SpecError, match=r"hyperparameters\.dropout_aux: .*not declared"):
        s.prm({"lr"})
    with pytest.raises(SpecError, match=r"declares 'score_thresh'.*hyperparameters\.score_thresh"):
        s.prm({"dropout_aux", "score_thresh"})


def test_num_classes_comes_from_the_dataset() -> None:
    s = spec(lemur((), declares='{"lr", "num_classes"}'))
    assert s.prm({"lr", "num_classes"})["num_classes"] == 10  # digits
    given = spec(lemur((), declares='{"lr", "num_classes"}'), {"num_classes": 3})
    assert given.prm({"lr", "num_classes"})["num_classes"] == 3


def test_inline_code_is_checked_when_parsed() -> None:
    code = lemur((), declares='{"lr", "score_thresh"}')
    with pytest.raises(SpecError, match="'score_thresh'"):
        spec(code)
    assert spec(code, {"score_thresh": 0.05}).prm({"score_thresh"})["score_thresh"] == 0.05
    with pytest.raises(SpecError, match=r"hyperparameters\.typo_rate"):
        spec(code, {"score_thresh": 0.05, "typo_rate": 1})


def test_file_models_are_checked_before_any_run(engine: Engine, tmp_path: Path) -> None:
    model = tmp_path / "m.py"
    model.write_text(lemur((), declares='{"lr", "nms_thresh"}'))
    s = parse_spec({"model": {"file": str(model)}, "dataset": "digits"})
    ok = spec(lemur((0.2, 64, "none")))
    with pytest.raises(SpecError, match="model 'm': .*'nms_thresh'"):
        engine.train([ok, s])
    assert engine.runs.runs() == []  # nothing queued for `resume` to find later


def test_declared_names_are_read_statically() -> None:
    assert declared_hyperparameters(lemur(())) == {"lr", "momentum", "dropout", "dropout_aux"}
    assert declared_hyperparameters("x = 1\n") == frozenset()
    computed = "def supported_hyperparameters():\n    return set(['lr'])\n"
    assert declared_hyperparameters(computed) is None
    assert declared_hyperparameters("def (:\n") is None


def test_computed_declarations_are_checked_in_the_trial(engine: Engine) -> None:
    code = lemur((), declares='set(["lr", "topk_candidates"])')
    run = engine.runs.get(engine.train([spec(code)]).run_ids[0])
    assert run.outcome == "error" and "'topk_candidates'" in (run.error or "")


# --- C3 and evaluation: the user's data roots, the spec's limit -----------------------


@pytest.fixture
def mnist_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """IDX files under a fresh $NNRAG_DATA; nothing of the system's data is visible."""
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", (tmp_path / "no-system-data",))
    monkeypatch.setenv("NNRAG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NNRAG_DATA", str(tmp_path / "data"))
    write_mnist_like(tmp_path / "data" / "mnist", n_train=120, n_test=90, seed=0)
    return tmp_path


def test_data_roots_reach_the_trial_and_force_reruns(mnist_home: Path) -> None:
    (mnist_home / "m.py").write_text(lemur((0.2, 64, "none")))
    (mnist_home / "spec.yaml").write_text(yaml.safe_dump(
        {"model": {"file": "m.py"}, "dataset": "mnist", "limit": 60,
         "budget": {"epochs": 1, "wall_s": 30, "memory_mb": 1024}}))
    runner = CliRunner()
    listed = runner.invoke(main, ["datasets", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert {d["name"]: d["available"] for d in json.loads(listed.stdout)}["mnist"] is True
    args = ["train", str(mnist_home / "spec.yaml"), "--runs", str(mnist_home / "runs.db"),
            "--db", str(mnist_home / "index.db"), "--format", "json"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["trained"] == 1
    again = json.loads(runner.invoke(main, args).stdout)
    assert (again["trained"], again["deduplicated"]) == (0, 1)
    forced = runner.invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (json.loads(forced.stdout)["trained"], json.loads(forced.stdout)["deduplicated"]) \
        == (1, 0)


def test_evaluation_is_bounded_by_limit(tmp_path: Path) -> None:
    data = write_trial_data(spec(lemur(()), limit=50), tmp_path)
    with np.load(tmp_path / data.name) as f:
        assert (len(f["train_x"]), len(f["test_x"]), len(data.test_y)) == (50, 50, 50)


# --- C4: only successful runs answer twins --------------------------------------------


def test_failed_runs_are_not_twins(engine: Engine) -> None:
    code = lemur((0.2, 64, "none"))
    s = spec(code)
    stale = engine.runs.create("lemur", "digits", s.model_dump(), s.key(), normalised_md5(code),
                               code_fingerprint(code), code)
    engine.runs.start(stale)  # a run that failed before the environment was fixed
    engine.runs.finish(stale, {"outcome": "error", "error": "ModuleNotFoundError: torchvision",
                               "epochs": []}, s.metric)
    fresh = engine.train([s])
    assert (fresh.trained, fresh.deduplicated) == (1, 0)
    assert engine.runs.get(fresh.run_ids[0]).outcome == "ok"
    twin = engine.train([s])
    assert twin.deduplicated == 1
    assert engine.runs.get(twin.run_ids[0]).duplicate_of == fresh.run_ids[0]
    forced = engine.train([s], force=True)
    assert (forced.trained, forced.deduplicated) == (1, 0)
