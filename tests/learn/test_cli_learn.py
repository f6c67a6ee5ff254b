"""``nnrag learn`` end to end on the tiny model: cycle 0 measures, cycle 1 fine-tunes and
publishes an adapter that ``nnrag generate`` then uses by default; bad input exits 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

FAST = ("--per-cycle", "1", "--steps", "1", "--max-length", "4096", "--max-new-tokens", "16",
        "--no-train")


@pytest.mark.sandbox
def test_one_tiny_cycle_end_to_end(cli: Callable, tiny_lm: Path, small_corpus: Path,
                                   nnrag_home: Path) -> None:
    result = cli("learn", "--base", tiny_lm, "--cycles", "1", "--corpus", small_corpus, *FAST,
                 "--format", "json", timeout=600)
    assert result.returncode == 0, result
    rows = json.loads(result.stdout)
    assert [r["cycle"] for r in rows] == [0, 1]
    assert rows[0]["adapter"] is None and rows[1]["adapter"] == 1
    assert rows[0]["prompts"] == rows[1]["prompts"] == 1
    assert rows[1]["train_examples"] > 0 and rows[1]["train_loss"] is not None
    assert rows[0]["dataset_hash"] == rows[1]["dataset_hash"]  # nothing new joined the pool
    manifest = json.loads((nnrag_home / "adapters" / "1" / "manifest.json").read_text())
    assert manifest["base"] == str(tiny_lm) and manifest["dataset_hash"] == rows[1]["dataset_hash"]
    assert (nnrag_home / "adapters" / "1" / "adapter_config.json").is_file()
    assert not [p for p in (nnrag_home / "adapters").iterdir() if p.name.startswith(".tmp-")]

    report = cli("learn", "--report", "--format", "json")
    assert report.returncode == 0, report
    assert json.loads(report.stdout) == rows
    table = cli("learn", "--report")
    assert "executable" in table.stdout and f"run {rows[0]['run']}" in table.stdout

    gen = ("generate", "--model", tiny_lm, "--n", "1", "--no-train", "--max-new-tokens", "16",
           "--repairs", "0", "--format", "json")
    used = cli(*gen, timeout=300)
    assert used.returncode == 0, used
    assert f"adapter: {nnrag_home / 'adapters' / '1'} (version 1" in used.stderr
    assert json.loads(used.stdout)["backend"]["adapter"] == str(nnrag_home / "adapters" / "1")
    off = cli(*gen, "--adapter", "none", timeout=300)
    assert off.returncode == 0 and "adapter: none" in off.stderr


def test_bad_input_is_one_line_and_exit_2(cli: Callable, tiny_lm: Path, tmp_path: Path,
                                          small_corpus: Path) -> None:
    missing = cli("learn", "--base", tmp_path / "nope", *FAST)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1

    broken = tmp_path / "broken_corpus"
    broken.mkdir()
    (broken / "bad.py").write_text('INPUT_KINDS = {"image"}\nx = 1\n')
    none = cli("learn", "--base", tiny_lm, "--corpus", broken, *FAST)
    assert none.returncode == 2 and "no proven programs for input shape" in none.stderr
    assert "Traceback" not in none.stderr

    other = tmp_path / "other_adapter"
    other.mkdir()
    (other / "adapter_config.json").write_text('{"base_model_name_or_path": "some/other-model"}')
    wrong = cli("generate", "--model", tiny_lm, "--adapter", other, "--n", "1", "--no-train")
    assert wrong.returncode == 2 and "not on" in wrong.stderr and "Traceback" not in wrong.stderr
    wrong_learn = cli("learn", "--base", tiny_lm, "--adapter", other, "--corpus", small_corpus,
                      *FAST)
    assert wrong_learn.returncode == 2 and "trained on 'some/other-model'" in wrong_learn.stderr


@pytest.mark.sandbox
def test_dataset_only_prints_the_manifest(cli: Callable, tiny_lm: Path,
                                          small_corpus: Path) -> None:
    result = cli("learn", "--base", tiny_lm, "--corpus", small_corpus, "--dataset-only",
                 "--max-length", "4096", "--format", "json", timeout=300)
    assert result.returncode == 0, result
    manifest = json.loads(result.stdout)
    assert manifest["counts"]["proven"] == 3 and manifest["format"]["tokenizer"] == str(tiny_lm)
    assert (Path(manifest["folder"]) / "train.jsonl").is_file()
    # an empty home: the run store and the index's lineage are read and hold nothing
    assert [s["kind"] for s in manifest["sources"]] == ["corpus", "runs", "lineage"]
    assert manifest["sources"][2]["programs"] == manifest["counts"]["improve_examples"] == 0
    assert manifest["format"]["blocks"] == 0 and manifest["counts"]["examples_with_blocks"] == 0
