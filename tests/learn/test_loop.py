"""The loop's bookkeeping with stub steps: cycle 0 measures only, each cycle fine-tunes the
pool it built, rows are logged as cycles end (a killed loop keeps them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnrag.exceptions import LearnError
from nnrag.learn import Dataset
from nnrag.learn.loop import CycleLog, LearnConfig, Measured, Tuned, run_loop


class Steps:
    def __init__(self, tmp: Path, die_in: int | None = None) -> None:
        self.tmp, self.die_in = tmp, die_in
        self.calls: list[str] = []

    def dataset(self, cycle: int) -> Dataset:
        self.calls.append(f"dataset {cycle}")
        return Dataset(self.tmp, f"hash{cycle}", 10 + cycle, 2)

    def finetune(self, dataset: Dataset, method: str, cycle: int, start: Tuned | None) -> Tuned:
        self.calls.append(f"finetune {cycle} on {dataset.dataset_hash}")
        if cycle == self.die_in:
            raise KeyboardInterrupt
        return Tuned(cycle, self.tmp / str(cycle), {"train_loss": 1.0 / cycle})

    def measure(self, adapter: Tuned | None, pool: Dataset, cycle: int) -> Measured:
        self.calls.append(f"measure {cycle} with {adapter.adapter if adapter else None}")
        return Measured(4, 4, 3, 3, 2, cycle, cycle, 0.5 if cycle else None, None)


def test_cycles_are_measured_tuned_and_logged(tmp_path: Path) -> None:
    steps, log = Steps(tmp_path), CycleLog(tmp_path / "cycles.jsonl")
    rows = run_loop(steps, log, cycles=2, method="sft", base="tiny")
    assert steps.calls == ["dataset 0", "measure 0 with None", "dataset 1",
                           "finetune 1 on hash1", "measure 1 with 1", "dataset 2",
                           "finetune 2 on hash2", "measure 2 with 2"]
    assert [(r.cycle, r.adapter, r.executable, r.train_loss) for r in rows] == [
        (0, None, 0, None), (1, 1, 1, 1.0), (2, 2, 2, 0.5)]
    assert log.read() == rows and log.last_run() == rows[0].run


def test_a_killed_loop_keeps_its_finished_cycles(tmp_path: Path) -> None:
    log = CycleLog(tmp_path / "cycles.jsonl")
    with pytest.raises(KeyboardInterrupt):
        run_loop(Steps(tmp_path, die_in=2), log, cycles=3, method="sft", base="tiny")
    assert [r.cycle for r in log.read()] == [0, 1]
    with (tmp_path / "cycles.jsonl").open("a") as f:
        f.write('{"run": "torn", "cyc')  # a write cut short
    assert [r.cycle for r in log.read()] == [0, 1]


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(LearnError, match="unknown method 'dpo'"):
        LearnConfig(method="dpo")
    with pytest.raises(LearnError, match="--per-cycle >= 1"):
        LearnConfig(per_cycle=0)
