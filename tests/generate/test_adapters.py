"""The adapter store: versions appear only complete, newest per base, mismatches refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nnrag.exceptions import AdapterError
from nnrag.generate.adapters import AdapterStore


def _staged(store: AdapterStore) -> Path:
    folder = store.staging()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def test_publish_numbers_versions_and_picks_the_newest_per_base(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "adapters")
    a = store.publish(_staged(store), {"base": "m1", "dataset_hash": "d1"})
    b = store.publish(_staged(store), {"base": "m2"})
    c = store.publish(_staged(store), {"base": "m1", "metrics": {"loss": 1.5}})
    assert [v.number for v in store.versions()] == [1, 2, 3]
    assert (a.number, b.number, c.number) == (1, 2, 3)
    newest = store.newest("m1")
    assert newest is not None and newest.number == 3 and newest.metrics == {"loss": 1.5}
    assert store.newest("other") is None
    assert store.resolve(None, "m2").number == 2  # type: ignore[union-attr]
    assert store.resolve("none", "m1") is None
    assert store.resolve("1", "m1").dataset_hash == "d1"  # type: ignore[union-attr]
    assert store.resolve(str(c.path), "m1").number == -1  # type: ignore[union-attr]


def test_an_adapter_for_another_base_is_refused(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    info = store.publish(_staged(store), {"base": "gemma"})
    with pytest.raises(AdapterError, match="trained on 'gemma', not on 'qwen'"):
        store.resolve(str(info.path), "qwen")
    with pytest.raises(AdapterError, match="no such folder"):
        store.resolve(str(tmp_path / "missing"), "gemma")


def test_staging_and_half_written_folders_never_count(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    store.publish(_staged(store), {"base": "m"})
    _staged(store)  # a save killed before publish: a .tmp-* folder
    half = tmp_path / "7"  # a folder without a manifest (not written by publish)
    half.mkdir()
    (half / "adapter_config.json").write_text("{}")
    assert [v.number for v in store.versions()] == [1]
    assert store.newest("m").number == 1  # type: ignore[union-attr]


def test_a_failed_rename_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AdapterStore(tmp_path)
    staged = _staged(store)

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.publish(staged, {"base": "m"})
    monkeypatch.undo()
    assert store.versions() == []
    store.discard(staged)
    assert not staged.exists()


def test_a_manifest_without_base_is_refused(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path)
    with pytest.raises(AdapterError, match="base"):
        store.publish(_staged(store), {})


def test_a_plain_peft_folder_naming_no_base_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    info = AdapterStore(tmp_path / "adapters").resolve(str(folder), "any-model")
    assert info is not None and info.base == "?" and info.path == folder
