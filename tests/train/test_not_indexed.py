"""A trained model the index keeps out (too large, unparsable) gets no block metric and no
``indexed_as``: the run is marked ``not_indexed`` with the reason, and ``nnrag runs`` says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nnrag.index import Store
from nnrag.train import NotIndexed, RunStore, Trained
from nnrag.train.engine import Engine
from nnrag.train.executors import LocalExecutor
from nnrag.train.spec import parse_spec
from nnrag.train.wiring import index_writer

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc = nn.Linear(64, out_shape[0])

    def forward(self, x):
        return self.fc(x.flatten(1))
'''
HUGE = NET + "\nWEIGHTS = [\n" + "    0.123456789,\n" * 700_000 + "]\n"  # about 11 MB inline


def finished_run(runs: RunStore, code: str) -> tuple[int, object]:
    spec = parse_spec({"model": {"code": code, "name": "big"}, "dataset": "digits",
                       "budget": {"epochs": 1}})
    run_id = runs.create("big", "digits", {"x": 1}, "key", "md5", "fp", code)
    runs.finish(run_id, {"outcome": "ok", "params": 650, "duration_s": 1.0,
                         "epochs": [{"epoch": 1, "accuracy": 0.9}]}, "accuracy")
    return run_id, spec


@pytest.mark.parametrize(("code", "reason"), [(HUGE, "too_large"),
                                              (NET + "\nclass Broken(:\n", "syntax_error")])
def test_a_model_the_index_skips_gets_no_metric(tmp_path: Path, code: str, reason: str) -> None:
    runs = RunStore(tmp_path / "runs.db")
    run_id, spec = finished_run(runs, code)
    write = index_writer(tmp_path / "index.db", tmp_path / "runs.db")
    result = write(Trained(runs.get(run_id), spec, code, None))  # type: ignore[arg-type]
    assert isinstance(result, NotIndexed) and result.reason.startswith(reason), result
    with Store(tmp_path / "index.db", readonly=True) as store:
        assert store.block_count() == 0
        names = [d["qualname"] for d in store.definitions_named("Net", qualified=False)]
        assert not names
        assert all(not store.block_metrics(q) for q in names)
        assert store._count("SELECT count(*) FROM block_metrics") == 0


def test_the_run_says_it_was_not_indexed(tmp_path: Path, cli: Callable[..., Any]) -> None:
    runs = RunStore(tmp_path / "runs.db")
    run_id, spec = finished_run(runs, HUGE)
    engine = Engine(runs, LocalExecutor(1),
                    on_trained=index_writer(tmp_path / "index.db", tmp_path / "runs.db"))
    engine._write_back(run_id, spec, HUGE, None)  # type: ignore[arg-type]
    record = runs.get(run_id)
    assert record.indexed_as is None and record.not_indexed is not None
    assert record.not_indexed.startswith("too_large")
    runs.close()
    table = cli("runs", "--runs", tmp_path / "runs.db")
    assert table.returncode == 0 and "not indexed: too_large" in table.stdout, str(table)
    listed = cli("runs", "--runs", tmp_path / "runs.db", "--format", "json")
    [row] = json.loads(listed.stdout)
    assert row["indexed_as"] is None and row["not_indexed"].startswith("too_large")


def test_a_model_the_index_keeps_is_recorded(tmp_path: Path) -> None:
    runs = RunStore(tmp_path / "runs.db")
    run_id, spec = finished_run(runs, NET)
    write = index_writer(tmp_path / "index.db", tmp_path / "runs.db")
    qualname = write(Trained(runs.get(run_id), spec, NET, None))  # type: ignore[arg-type]
    assert isinstance(qualname, str) and qualname.endswith(".Net")
    with Store(tmp_path / "index.db", readonly=True) as store:
        assert [m.value for m in store.block_metrics(qualname)] == [0.9]

