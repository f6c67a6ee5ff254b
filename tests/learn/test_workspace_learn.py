"""The workspace's wiring of the loop: a failed save publishes nothing; the dataset hook
builds in generate's format with the base's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nnrag import open_workspace
from nnrag._workspace import WorkspaceLearn
from nnrag.exceptions import LearnError
from nnrag.learn import Dataset
from nnrag.learn.loop import LearnConfig


def test_a_disk_full_save_publishes_nothing(tiny_lm: Path, small_corpus: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ws = open_workspace(tmp_path / "home")
    hooks = WorkspaceLearn(ws, LearnConfig(base=str(tiny_lm), corpus=small_corpus))

    def disk_full(source: str, folder: Path, out: Path, checkpoints: Path, **kw: Any) -> None:
        (out / "adapter_config.json").write_text("{}")  # half of an adapter
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nnrag.learn.sft.finetune", disk_full)
    with pytest.raises(LearnError, match="nothing was published"):
        hooks.finetune(Dataset(tmp_path, "h", 1, 0), "sft", 1, None)
    assert hooks.store.versions() == []
    assert not list((tmp_path / "home" / "adapters").glob(".tmp-*"))


def test_a_base_that_cannot_load_is_a_learn_error(tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home")
    with pytest.raises(LearnError, match="base model cannot be loaded"):
        WorkspaceLearn(ws, LearnConfig(base=str(tmp_path / "missing")))
