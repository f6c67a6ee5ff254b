"""``nnrag predict fit / eval / show`` and their refusals (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nnrag.cli import main

from ._lemur import model_code, write_lemur


def invoke(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def one_line_error(result: Any) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].lower().startswith("error"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A training folder, a held-out folder and a predictor fitted on the first."""
    root = tmp_path_factory.mktemp("predict_cli")
    train = write_lemur(root / "train", trials_per_model=6)
    held_out = write_lemur(root / "test", seed=1)
    model = root / "p.json"
    result = invoke("predict", "fit", "--lemur", train, "--out", model)
    assert result.exit_code == 0, result.output
    return train, held_out, model


def test_fit_says_what_it_was_trained_on(folders: tuple[Path, Path, Path]) -> None:
    train, _, model = folders
    result = invoke("predict", "fit", "--lemur", train, "--out", model.with_name("q.json"),
                    "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["trials"] == 36 and data["models"] == 6
    assert data["datasets"] == {"cifar-10": 18, "mnist": 18}
    assert data["skipped"] == {"other task": 1}
    text = invoke("predict", "fit", "--lemur", train, "--out", model.with_name("r.json"))
    assert "36 trials of 6 models" in text.stdout and "skipped: 1 other task" in text.stdout


def test_fit_defaults_to_nnrag_home(folders: tuple[Path, Path, Path], nnrag_home: Path) -> None:
    result = invoke("predict", "fit", "--lemur", folders[0], "--limit", "20")
    assert result.exit_code == 0, result.output
    assert (nnrag_home / "predictor.json").is_file()


def test_eval_json_has_the_documented_keys(folders: tuple[Path, Path, Path]) -> None:
    _, held_out, model = folders
    result = invoke("predict", "eval", "--lemur", held_out, "--model", model, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("k0", "k1", "k2"):
        assert {"rmse", "r", "n", "mae", "rho", "within_5", "within_10", "coverage",
                "baseline_rmse"} <= set(data[key])
        assert data[key]["n"] == 18
    table = invoke("predict", "eval", "--lemur", held_out, "--model", model)
    assert table.exit_code == 0 and "RMSE" in table.stdout


def test_show_prints_one_prediction_with_its_interval(folders: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text(model_code(32, 2))
    result = invoke("predict", "show", source, "--dataset", "cifar-10", "--hp", "lr=0.1",
                    "--hp", "transform=norm_32", "--curve", "0.41,0.55", "--model", folders[2],
                    "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["k"] == 2 and data["low"] <= data["mean"] <= data["high"]
    assert data["mean"] >= 0.55 and data["seen_structure"] is True
    text = invoke("predict", "show", source, "--dataset", "mnist", "--model", folders[2])
    assert "90% interval" in text.stdout and "0 epoch(s)" in text.stdout


def test_bad_inputs_are_one_line_and_exit_2(folders: tuple[Path, Path, Path],
                                            tmp_path: Path) -> None:
    train, _, model = folders
    assert "stats.jsonl.gz" in one_line_error(invoke("predict", "fit", "--lemur", tmp_path))
    assert "--lemur" in one_line_error(invoke("predict", "fit"))  # no runs.db in NNRAG_HOME
    assert "not a folder" in one_line_error(invoke("predict", "fit", "--lemur", model))
    broken = write_lemur(tmp_path / "broken")
    data = (broken / "stats.jsonl.gz").read_bytes()
    (broken / "stats.jsonl.gz").write_bytes(data[:-30])
    assert "truncated" in one_line_error(invoke("predict", "eval", "--lemur", broken,
                                                "--model", model))
    source = tmp_path / "bad.py"
    source.write_text("class Net(:\n")
    assert "does not parse" in one_line_error(
        invoke("predict", "show", source, "--dataset", "mnist", "--model", model))
    good = tmp_path / "good.py"
    good.write_text(model_code(8, 0))
    assert "predict fit" in one_line_error(
        invoke("predict", "show", good, "--dataset", "mnist", "--model", tmp_path / "no.json"))
    assert "--curve" in one_line_error(
        invoke("predict", "show", good, "--dataset", "mnist", "--curve", "0.4,x",
               "--model", model))
    assert "--curve" in one_line_error(
        invoke("predict", "show", good, "--dataset", "mnist", "--curve", "nan",
               "--model", model))
    assert "--hp" in one_line_error(
        invoke("predict", "show", good, "--dataset", "mnist", "--hp", "lr", "--model", model))
    assert "unknown dataset" in one_line_error(
        invoke("predict", "show", good, "--dataset", "imagenet-22k", "--model", model))
    old = json.loads(model.read_text())
    old["version"] = 0
    stale = tmp_path / "old.json"
    stale.write_text(json.dumps(old))
    assert "re-fit" in one_line_error(
        invoke("predict", "show", good, "--dataset", "mnist", "--model", stale))
    assert "re-fit" in one_line_error(invoke("predict", "eval", "--lemur", train,
                                             "--model", stale))


def test_records_with_missing_fields_or_nan_are_skipped_and_counted(tmp_path: Path) -> None:
    bad = [{"task": "img-classification", "dataset": "mnist", "model": "Tiny8-0", "epoch": 1,
            "uid": "n", "accuracy": float("inf")},
           {"task": "img-classification", "dataset": "mnist", "epoch": 1, "uid": "m",
            "accuracy": 0.5}]
    folder = write_lemur(tmp_path / "l", extra_rows=bad)
    result = invoke("predict", "fit", "--lemur", folder, "--out", tmp_path / "p.json",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    skipped = json.loads(result.stdout)["skipped"]
    assert skipped == {"other task": 1, "missing field": 1,
                       "non-finite or out-of-range accuracy": 1}
