"""The GRPO reward on known completions: no parse 0, each rung higher, repeats cost nothing;
and trl's GRPOTrainer runs two steps on the tiny model with it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nnrag.examples import corpus_dir
from nnrag.generate.training import TrainingFormat
from nnrag.learn import RUNGS, SandboxReward, rung_reward


def _completion(fmt: TrainingFormat, code: str) -> str:
    answer = fmt.answer(code)
    assert answer is not None
    return answer


def test_rungs_are_ordered() -> None:
    assert rung_reward({"ok": True}) == 1.0
    order = [rung_reward({"ok": False, "stage": s}) for s in
             ("import", "build", "forward", "backward")]
    assert order == sorted(order) and order[0] > 0 and order[-1] < RUNGS["ok"]


@pytest.mark.sandbox
def test_rewards_of_known_programs() -> None:
    fmt = TrainingFormat("image-classification", "digits")
    mlp = (corpus_dir() / "mlp.py").read_text()
    good = _completion(fmt, mlp)
    wrong_shape = _completion(fmt, mlp.replace("return self.net(x)", "return self.net(x)[:, :3]"))
    no_build = _completion(fmt, mlp.replace("super().__init__()", "super().__init__()\n"
                                            "        raise RuntimeError('no')"))
    reward = SandboxReward(fmt)
    values = reward(None, ["there is no code here", no_build, wrong_shape, good, good])
    assert values == [0.0, RUNGS["build"], RUNGS["forward"], 1.0, 1.0]
    assert reward.probed == 3  # the repeated program was probed once
    assert reward(None, [good]) == [1.0] and reward.probed == 3


def test_the_accuracy_bonus_is_added_once_per_program() -> None:
    class AllRun:
        def code_from(self, completion: str) -> str | None:
            return completion or None

        def program(self, answer: str) -> str:
            return answer

        def describe(self) -> dict[str, Any]:
            return {"in_shape": [8, 1, 8, 8], "num_classes": 10}

        def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]:
            return [{"ok": True, "stage": "backward"} for _ in codes]

    trained: list[str] = []

    def accuracy(codes: Sequence[str]) -> list[float | None]:
        trained.extend(codes)
        return [0.5 if c == "a" else None for c in codes]

    reward = SandboxReward(AllRun(), accuracy=accuracy)
    assert reward(None, ["a", "b", "", "a"]) == [1.5, 1.0, 0.0, 1.5]
    assert reward(None, ["a"]) == [1.5] and trained == ["a", "b"]


def test_grpo_runs_two_steps_on_the_tiny_model(tiny_lm: Path, tiny_rows: Path,
                                               tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from nnrag.learn.grpo import GRPOSettings, grpo

    class Scored:
        def code_from(self, completion: str) -> str | None:
            return completion if "nn" in completion else None

        def program(self, answer: str) -> str:
            return answer

        def describe(self) -> dict[str, Any]:
            return {"in_shape": [8, 1, 8, 8], "num_classes": 10}

        def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]:
            return [{"ok": False, "stage": "build"} for _ in codes]

    reward = SandboxReward(Scored())
    result = grpo(str(tiny_lm), tiny_rows, reward, tmp_path / "adapter", tmp_path / "ck",
                  settings=GRPOSettings(num_generations=2, max_completion_length=12, max_steps=2,
                                        save_steps=1, prompts=4), resume=False)
    assert result.steps == 2 and reward.calls >= 2
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
