"""The Python API: ``import nnrag`` stays light, the documented quick-start runs, and every
:class:`~nnrag.workspace.Workspace` method does on a small index what its CLI command does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nnrag
from nnrag.exceptions import (
    AmbiguousNameError,
    IndexMissingError,
    NameNotFoundError,
    NnragError,
    ScanError,
)
from nnrag.workspace import Block, ExportResult, PackageStats, Workspace, open_workspace

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api.md"
SE = "zoo.layers.conv.SqueezeExcite"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NNRAG_DB"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    """Validation and training keep sandbox workers for the next call; stop ours."""
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


@pytest.fixture
def ws(zoo_db_copy: Path, nnrag_home: Path) -> Iterator[Workspace]:
    with open_workspace(nnrag_home, db=zoo_db_copy) as workspace:
        yield workspace


# -- the package ----------------------------------------------------------------------------


def test_import_nnrag_is_light() -> None:
    code = ("import nnrag, sys; ws = nnrag.open_workspace(); "
            "heavy = [m for m in ('torch', 'libcst', 'numpy', 'faiss') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), check=False)
    assert proc.returncode == 0, proc.stderr


def test_lazy_reexports_are_the_real_classes() -> None:
    from nnrag.extract import Emitted
    from nnrag.index import Store
    from nnrag.ladder import Outcome
    from nnrag.search import Hit, Searcher
    from nnrag.train import Engine, RunStore, TrainSpec

    expected = {"Store": Store, "Searcher": Searcher, "Hit": Hit, "Emitted": Emitted,
                "Outcome": Outcome, "Engine": Engine, "RunStore": RunStore, "TrainSpec": TrainSpec,
                "Workspace": Workspace, "open_workspace": open_workspace}
    for name, value in expected.items():
        assert getattr(nnrag, name) is value, name
    assert set(nnrag.__all__) == {*expected, "NnragError", "__version__"}
    assert set(nnrag.__all__) <= set(dir(nnrag))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = nnrag.Nope  # type: ignore[attr-defined]
    # the lazy table is invisible to the import-graph test: keep it on public modules
    private = {n: m for n, m in nnrag._LAZY.items() if any(p.startswith("_") for p in m.split("."))}
    assert not private, private


README = ROOT / "README.md"


def _quick_start(doc: Path, heading: str) -> str:
    text = doc.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"{doc.name} has no ```python block under {heading!r}"
    return "\n".join(blocks)


@pytest.mark.parametrize(("doc", "heading"), [(DOCS, "## Quick start"),
                                              (README, "## Python quick-start")])
def test_the_documented_quick_start_runs(tmp_path: Path, doc: Path, heading: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _quick_start(doc, heading)], capture_output=True,
                          text=True, cwd=tmp_path, env=_env(NNRAG_HOME=str(tmp_path / "home")),
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "backward" in proc.stdout
    assert "class SqueezeExcite" in proc.stdout


def test_every_workspace_method_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    public = [n for n in vars(Workspace) if not n.startswith("_")]
    missing = [n for n in public if f"ws.{n}" not in text]
    assert not missing, f"docs/api.md does not describe: {missing}"


# -- opening --------------------------------------------------------------------------------


def test_open_workspace_paths(tmp_path: Path, nnrag_home: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    ws = open_workspace()
    assert (ws.home, ws.db, ws.runs) == (nnrag_home, nnrag_home / "index.db",
                                         nnrag_home / "runs.db")
    monkeypatch.setenv("NNRAG_DB", str(tmp_path / "env.db"))
    assert open_workspace().db == tmp_path / "env.db"  # as the CLI resolves it
    ws = open_workspace(tmp_path / "h", runs=tmp_path / "r.db")
    assert (ws.db, ws.runs) == (tmp_path / "h" / "index.db", tmp_path / "r.db")
    assert open_workspace(db=tmp_path / "x.db").db == tmp_path / "x.db"
    assert not (tmp_path / "h").exists()  # nothing is created before it is needed
    with pytest.raises(IndexMissingError):
        open_workspace(tmp_path / "h").open()


# -- index and extract ----------------------------------------------------------------------


def test_index_is_incremental_and_checks_first(zoo_tree: Path, tmp_path: Path) -> None:
    ws = open_workspace(tmp_path / "home")
    with pytest.raises(ScanError, match="does not exist"):
        ws.index(tmp_path / "absent")
    with pytest.raises(NnragError, match="give a path"):
        ws.index()
    assert not ws.db.exists()  # no database for a failed call
    seen: list[tuple[int, int]] = []
    first = ws.index(zoo_tree, progress=lambda d, t: seen.append((d, t)))
    assert (first.package, first.failed, first.blocks) == ("zoo", 0, 10)
    assert seen and seen[-1][0] == seen[-1][1]
    again = ws.index(zoo_tree)
    assert again.scanned == 0 and again.unchanged == first.scanned
    named = ws.index(zoo_tree / "layers", prefix="lay", package="lay")
    assert named.package == "lay" and "lay.conv.SqueezeExcite" in {b.qualname for b in ws.blocks()}
    ws.close()


def test_extract_and_resolve(ws: Workspace) -> None:
    emitted = ws.extract(SE)
    assert emitted.qualname == SE and "class SqueezeExcite" in emitted.code
    assert "zoo.helpers.make_divisible" in emitted.definitions
    assert ws.resolve("SqueezeExcite") == SE
    with pytest.raises(NameNotFoundError):
        ws.resolve("NoSuchBlock")


def test_resolve_ambiguous(ws: Workspace, zoo_tree: Path) -> None:
    ws.index(zoo_tree / "layers", prefix="copy", package="copy")
    with pytest.raises(AmbiguousNameError):
        ws.resolve("SqueezeExcite")


def test_blocks_export_stats(ws: Workspace, tmp_path: Path) -> None:
    blocks = ws.blocks()
    assert len(blocks) == 10 and all(isinstance(b, Block) for b in blocks)
    se = ws.blocks("*Excite")[0]
    assert (se.qualname, se.package, se.rung, se.rung_name) == (SE, "zoo", -1, "unvalidated")
    assert ws.blocks(min_rung="forward") == [] and ws.blocks(package="other") == []
    result = ws.export(tmp_path / "out")
    assert result == ExportResult(tmp_path / "out", 10)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["count"] == 10 and (tmp_path / "out" / f"{SE}.py").is_file()
    stats = ws.stats()
    assert isinstance(stats["zoo"], PackageStats)
    assert (stats["zoo"].blocks, stats["zoo"].validated, stats["zoo"].files) == (10, 0, {"ok": 10})
    assert set(stats["zoo"].as_dict()) == {"version", "root", "modules", "definitions", "blocks",
                                           "files", "validated", "rungs"}


@pytest.mark.sandbox
def test_validate(ws: Workspace) -> None:
    with pytest.raises(NnragError, match="give block names"):
        ws.validate()
    [outcome] = ws.validate([SE], max_rung="forward")
    assert (outcome.qualname, outcome.rung_name, outcome.cached) == (SE, "forward", False)
    [again] = ws.validate(["SqueezeExcite"], max_rung="forward")
    assert again.cached
    assert ws.blocks("*Excite")[0].rung_name == "forward"


# -- search ---------------------------------------------------------------------------------


def test_search_similar_duplicates(ws: Workspace) -> None:
    hits = ws.search("squeeze excitation", k=3, mode="lexical")
    assert hits[0].qualname == SE and [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert ws.search("squeeze excitation", mode="lexical", category="attention")[0].qualname == SE
    assert ws.search("squeeze excitation", mode="lexical", package="other") == []
    with pytest.raises(NnragError, match="unknown category"):
        ws.search("x", category="teleport")
    code = ws.extract(SE).code
    assert SE in {h.qualname for h in ws.search(code=code, mode="lexical")}
    similar = ws.similar("SqueezeExcite", 3, mode="lexical")
    assert similar and SE not in {h.qualname for h in similar}
    assert ws.searcher() is ws.searcher()  # kept warm between calls
    assert isinstance(ws.duplicates(), list)


def test_writes_refresh_the_searcher(ws: Workspace, zoo_tree: Path) -> None:
    before = ws.searcher()
    ws.index(zoo_tree / "layers", prefix="copy", package="copy")
    assert ws.searcher() is not before
    assert "copy.conv.SqueezeExcite" in {h.qualname for h in ws.search("squeeze", mode="lexical")}


def test_embed_then_dense_search(ws: Workspace) -> None:
    seen: list[int] = []
    report = ws.embed("hashing", progress=lambda d, t: seen.append(d))
    assert report.model == ws.embedder("hashing").name and report.embedded == report.total > 0
    assert ws.embed("hashing").embedded == 0  # incremental
    hits = ws.search("squeeze excitation", mode="dense", model="hashing", k=3)
    assert len(hits) == 3


# -- pipelines ------------------------------------------------------------------------------

NET = """import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc1 = nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, out_shape[0])

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))
"""


@pytest.mark.sandbox
def test_mutate(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tiny.py"
    path.write_text(NET)
    target = ws.load_target(str(path))
    assert target.block is None and target.label == "tiny"
    result = ws.mutate(target, 2, kinds=("activation",), out_dir=tmp_path / "mutants",
                       dataset="digits", jobs=1)
    assert result.report.valid and len(result.files) == len(result.report.valid)
    assert all(f.is_file() for f in result.files)
    assert result.indexed and all(n.startswith("mutants.") for n in result.indexed)
    assert {n for n in result.indexed} <= {b.qualname for b in ws.blocks(package="mutants")}


@pytest.mark.sandbox
def test_train_records_runs(ws: Workspace) -> None:
    spec = {"model": {"code": NET, "name": "tiny"}, "dataset": "digits", "limit": 300,
            "budget": {"epochs": 1, "wall_s": 60, "memory_mb": 1024},
            "hyperparameters": {"lr": 0.1}}
    from nnrag.train import parse_spec

    events: list[str] = []
    report = ws.train([spec], progress=lambda e: events.append(e.kind))
    assert report.trained == 1 and "done" in events
    run = ws.run_store().get(report.run_ids[0])
    assert run.name == "tiny" and run.outcome is not None
    twin = ws.train(parse_spec(spec))
    assert twin.deduplicated == 1  # the same model is not trained twice


@pytest.mark.sandbox
def test_generate_with_a_replayed_llm(ws: Workspace, tmp_path: Path) -> None:
    from nnrag.generate import BackendConfig, GenerateConfig, make_backend

    answer = f"```python\n{NET}```\n```json\n{{\"hyperparameters\": {{\"lr\": 0.1}}}}\n```"
    backend = make_backend(BackendConfig(backend="replay", style="chat",
                                         extra={"outputs": [answer]}))
    try:
        report = ws.generate(GenerateConfig(n=1, shots=0, train=False), backend)
    finally:
        backend.close()
    assert (report.prompts_sent, report.parsed, report.executable) == (1, 1, 1)


def test_workspace_is_a_context_manager(zoo_db_copy: Path) -> None:
    with open_workspace(db=zoo_db_copy) as ws:
        assert ws.store is ws.store
        searcher = ws.searcher()
    assert ws.searcher() is not searcher  # closing dropped the warm searchers
