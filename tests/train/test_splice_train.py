"""Training with ``splice_from``: a model that imports a package that is not installed
(``tests/fixtures/fakevision``, torchvision-like) trains once that package's definitions are
spliced in from an index of its source; the run store keeps the spliced code."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nnrag import open_workspace

pytestmark = pytest.mark.sandbox

MODEL = '''
import torch
import torch.nn as nn
import fakevision.models as fm
from fakevision.ops import StochasticDepth as SD


def supported_hyperparameters():
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.drop = SD(0.1)
        self.body = fm.tiny_net(num_classes=out_shape[0], in_channels=in_shape[1])

    def forward(self, x):
        return self.body(self.drop(x))

    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"],
                                         momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        for x, y in train_data:
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(x), y)
            loss.backward()
            self.optimizer.step()
'''


def spec(name: str = "spliced") -> dict[str, object]:
    return {"model": {"code": MODEL, "name": name}, "dataset": "digits", "limit": 200,
            "budget": {"epochs": 1, "wall_s": 60, "memory_mb": 2048},
            "hyperparameters": {"lr": 0.05, "momentum": 0.9}}


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


def test_train_splices_the_missing_package(fakevision_db: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    ws = open_workspace(tmp_path / "home")
    with caplog.at_level(logging.INFO, logger="nnrag.train.wiring"):
        report = ws.train(spec(), splice_from=fakevision_db)
    run = ws.run_store().get(report.run_ids[0])
    assert run.outcome == "ok", (run.error, run.traceback)
    assert run.code is not None
    assert "#   fm.tiny_net <- fakevision.models.tiny.tiny_net" in run.code
    assert "import fakevision" not in run.code and "from fakevision" not in run.code
    assert any("spliced SD, fm.tiny_net" in r.getMessage() for r in caplog.records)


def test_without_splice_from_the_trial_fails_naming_the_package(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home")
    report = ws.train(spec("unspliced"))
    run = ws.run_store().get(report.run_ids[0])
    assert run.outcome == "error"
    assert "fakevision" in f"{run.error} {run.traceback}"


def test_cli_train_splice_from(fakevision_db: Path, tmp_path: Path,
                               cli: Callable[..., object]) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec("cli")))
    result = cli("train", spec_file, "--splice-from", fakevision_db, "--format", "json")
    assert result.returncode == 0, result  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["outcomes"] == {"ok": 1}
    missing = cli("train", spec_file, "--splice-from", tmp_path / "nope.db")
    assert missing.returncode == 2 and "nope.db" in missing.stderr  # type: ignore[attr-defined]
