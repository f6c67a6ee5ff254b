"""LEMUR's zoo into the index: names, structures, reported (not measured) results."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import nnrag
from nnrag.cli import main
from nnrag.index import REPORTED, lemur_module
from nnrag.index._lemur import LemurFormatError, read_lemur_models
from nnrag.search import Filters, Searcher

LEMUR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lemur"

MODEL = '''
import torch
import torch.nn as nn


def supported_hyperparameters():
    return {{"lr", "momentum"}}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear({width}, {classes}))

    def forward(self, x):
        return self.body(x)
'''


def _zoo(tmp_path: Path) -> tuple[Path, Path]:
    models = [("AlexNet", MODEL.format(width=64, classes=10)),
              ("ast-dimension-AlexNet-0f3a", MODEL.format(width=32, classes=10)),  # constants
              ("ga-115", MODEL.replace("nn.Flatten(), ", "nn.Flatten(), nn.ReLU(), ")
               .format(width=64, classes=10))]  # fmt: skip
    source = tmp_path / "models.jsonl.gz"
    with gzip.open(source, "wt") as f:
        for name, code in models:
            f.write(json.dumps({"model": name, "path": f"ab/nn/nn/{name}.py", "code": code}) + "\n")
    stats = tmp_path / "stats.jsonl"
    records = [{"model": "AlexNet", "dataset": "cifar-10", "metric": "acc", "accuracy": 0.61},
               {"model": "AlexNet", "dataset": "cifar-10", "metric": "acc", "accuracy": 0.72},
               {"model": "AlexNet", "dataset": "cifar-10", "metric": "acc", "accuracy": "nan"},
               {"model": "ga-115", "dataset": "mnist", "metric": "acc", "accuracy": 0.98},
               {"model": "not-imported", "dataset": "mnist", "metric": "acc", "accuracy": 1.0}]
    stats.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    return source, stats


def test_import_names_structures_and_reported_results(tmp_path: Path) -> None:
    source, stats = _zoo(tmp_path)
    ws = nnrag.open_workspace(tmp_path, db=tmp_path / "index.db", runs=tmp_path / "runs.db")
    done = ws.import_lemur(source, stats=stats)
    assert (done.models, done.written, done.index.failed) == (3, 3, 0)
    assert (done.structures, done.configurations) == (2, 3)  # the ast-* copy: constants only
    assert done.results == 2 and done.datasets == ("cifar-10", "mnist")
    alex = f"lemur.{lemur_module('AlexNet')}.Net"
    (metric,) = ws.store.block_metrics(alex)
    assert (metric.value, metric.metric, metric.run_store) == (0.72, "acc", REPORTED)  # best
    assert ws.store.provenance(alex) == {"source": "lemur", "lemur_name": "AlexNet",
                                         "lemur_path": "ab/nn/nn/AlexNet.py",
                                         "sha256": ws.store.provenance(alex)["sha256"]}
    hits = Searcher(ws.store).search("linear", k=5, filters=Filters(proven=True))
    assert hits and all("reported by LEMUR, not measured here" in (h.trained or "")
                        for h in hits)  # fmt: skip
    again = ws.import_lemur(source)
    assert again.written == 0 and again.index.unchanged == 3


def test_a_folder_of_modules_imports_too(tmp_path: Path) -> None:
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "ResNet.py").write_text(MODEL.format(width=64, classes=10))
    assert [name for name, _, _ in read_lemur_models(folder)] == ["ResNet"]


@pytest.mark.parametrize(("name", "module"), [("ga-115", "ga_115"), ("3d-net", "m_3d_net"),
                                              ("rag-ab.c", "rag_ab_c")])
def test_lemur_names_become_module_names(name: str, module: str) -> None:
    assert lemur_module(name) == module


def test_a_bad_source_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "models.jsonl"
    bad.write_text('{"model": "x"}\n')
    with pytest.raises(LemurFormatError, match=r"models.jsonl:1: .*'code'"):
        list(read_lemur_models(bad))
    outcome = CliRunner().invoke(main, ["lemur", "import", str(bad), "--db",
                                        str(tmp_path / "i.db")])
    assert outcome.exit_code != 0 and "Traceback" not in outcome.output
    assert "models.jsonl:1" in outcome.output


def test_cli_imports_and_reports_json(tmp_path: Path) -> None:
    source, stats = _zoo(tmp_path)
    outcome = CliRunner().invoke(main, ["lemur", "import", str(source), "--stats", str(stats),
                                        "--db", str(tmp_path / "i.db"), "--format", "json"])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    assert (data["models"], data["structures"], data["reported_results"]) == (3, 2, 2)


@pytest.mark.skipif(not (LEMUR / "models.jsonl.gz").is_file(), reason="no LEMUR data here")
def test_real_lemur_models_import(tmp_path: Path) -> None:
    ws = nnrag.open_workspace(tmp_path, db=tmp_path / "index.db", runs=tmp_path / "runs.db")
    done = ws.import_lemur(LEMUR / "models.jsonl.gz", limit=25)
    assert done.models == 25 and done.index.failed == 0
    assert done.index.blocks >= 25  # every model's Net, plus its helper modules
