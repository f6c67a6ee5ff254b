"""LoRA SFT on the tiny model: answer-only loss, two steps, and resume after a kill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nnrag.exceptions import LearnError
from nnrag.learn.sft import IGNORE, SFTSettings, finetune, latest_checkpoint, tokenize_example

SETTINGS = SFTSettings(max_steps=2, save_steps=1, max_length=128, grad_accum=2)


def test_the_prompt_is_masked_and_a_long_prompt_loses_its_start(tiny_lm: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    row = tokenize_example(tok, "class Net(nn.Module):\n", "    pass\n```\n", 512)
    answer = tok("    pass\n```\n", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert row["labels"][-len(answer):] == answer
    assert set(row["labels"][: -len(answer)]) == {IGNORE}
    short = tokenize_example(tok, "x = 1\n" * 200, "    pass\n```\n", 24)
    assert len(short["input_ids"]) == 24 and short["labels"][-len(answer):] == answer


def test_two_steps_write_an_adapter(tiny_lm: Path, tiny_rows: Path, tmp_path: Path) -> None:
    result = finetune(str(tiny_lm), tiny_rows, tmp_path / "adapter", tmp_path / "ck",
                      settings=SETTINGS, resume=False)
    assert result.steps == 2 and result.train_loss is not None and result.heldout_loss
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert result.resumed_from is None


class Killed(Exception):
    pass


def _kill_after_first_save() -> Any:
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 1:
                raise Killed

    return Kill()


def test_a_killed_finetune_resumes_from_its_last_checkpoint(tiny_lm: Path, tiny_rows: Path,
                                                            tmp_path: Path) -> None:
    checkpoints = tmp_path / "ck"
    with pytest.raises(Killed):
        finetune(str(tiny_lm), tiny_rows, tmp_path / "a1", checkpoints, settings=SETTINGS,
                 callbacks=[_kill_after_first_save()])
    assert not (tmp_path / "a1").exists()  # no adapter from a killed run
    last = latest_checkpoint(checkpoints)
    assert last is not None and last.name == "checkpoint-1"
    result = finetune(str(tiny_lm), tiny_rows, tmp_path / "a2", checkpoints, settings=SETTINGS)
    assert result.resumed_from == str(last) and result.steps == 2


def test_a_base_that_cannot_load_is_one_clear_error(tiny_rows: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(LearnError, match="cannot load base model"):
        finetune(str(tmp_path / "no-such-model"), tiny_rows, tmp_path / "a", tmp_path / "ck",
                 settings=SETTINGS)
